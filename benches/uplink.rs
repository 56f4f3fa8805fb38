//! Uplink benchmark (`cargo bench --bench uplink`): drain a 30-day backlog of minute records
//! (43,200 for one outlet with 8 factors, each two packets since a packet's CP stays within 950
//! characters) to an HJ 212 platform that acknowledges every packet, per send window (1, 2, 4,
//! 8, 16, 32), on loopback and through a link with 100 ms of round-trip time. Goals: the 30
//! days in under 30 s on loopback, in under 5 minutes over 100 ms RTT.
//!
//! The delay: run as root, the bench moves itself into a network namespace of its own (loopback
//! addresses only) and tries `tc qdisc add dev lo root netem delay 50ms`; where the kernel has no
//! netem it uses a userspace delay line instead, a proxy that holds every chunk 50 ms in each
//! direction (order kept, bandwidth unlimited). It prints which one it used. Over the delay, a
//! window below 16 cannot reach the goal (at most `window / RTT` uploads a second): those runs
//! stop after 60 s and report their rate and the projected drain time.
//!
//! `BENCH_QUICK=1`: 2 days instead of 30, and 20 s caps.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cems_gateway::compute::stats::Stat;
use cems_gateway::compute::{Level, Record};
use cems_gateway::config::validate;
use cems_gateway::live::Live;
use cems_gateway::model::{Flag, now_ms};
use cems_gateway::store::Store;
use cems_gateway::store::outbox::{Kind, Outbox};
use cems_gateway::time::Offset;
use cems_gateway::uplink::Link;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

const FACTORS: [&str; 8] = ["a21026", "a21002", "a34013", "a19001", "a01012", "a01013", "a01011", "a01014"];
const WINDOWS: [u32; 6] = [1, 2, 4, 8, 16, 32];
const ONE_WAY: Duration = Duration::from_millis(50);
const OFFSET: Offset = Offset::CHINA;

/// How the 100 ms of round-trip time is made.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Delay {
    Netem,
    DelayLine,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let days = if quick { 2 } else { 30 };
    let cap = Duration::from_secs(if quick { 20 } else { 60 });
    // Before any thread exists: the namespace then holds the whole process.
    let isolated = private_network();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("uplink.db");
    let (n_minutes, first) = seed(&db, days);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "Uplink backlog drain: {n_minutes} minute records ({days} days × 8 factors), platform acknowledging each packet{}:",
        if isolated { ", in a private network namespace" } else { "" }
    );
    println!("  loopback:");
    for window in WINDOWS {
        // Window 1 waits for each record's answers before the next: about 22 ms a record here
        // (the test platform writes each 9014 apart, without TCP_NODELAY), so the short cap too.
        let limit = if window >= 2 { Duration::from_secs(600) } else { cap };
        let (records, secs, packets) = rt.block_on(drain(&db, first, n_minutes, window, None, limit));
        report(window, records, secs, n_minutes, packets);
    }
    let delay = if isolated && netem() { Delay::Netem } else { Delay::DelayLine };
    match delay {
        Delay::Netem => println!("  100 ms RTT (tc netem: 50 ms each way on lo):"),
        Delay::DelayLine => println!(
            "  100 ms RTT (userspace delay line: every chunk held 50 ms each way, order kept; tc netem unavailable):"
        ),
    }
    for window in WINDOWS {
        let limit = if window >= 16 { Duration::from_secs(600) } else { cap };
        let (records, secs, packets) = rt.block_on(drain(&db, first, n_minutes, window, Some(delay), limit));
        report(window, records, secs, n_minutes, packets);
    }
}

fn report(window: u32, records: u64, secs: f64, total: i64, packets: u64) {
    let rate = records as f64 / secs;
    if records >= total as u64 {
        println!(
            "    window {window:>2}: {rate:>6.0} records/s ({packets} packets each), {total} records in {secs:.1} s"
        );
    } else {
        println!(
            "    window {window:>2}: {rate:>6.0} records/s ({packets} packets each; {records} records in {secs:.0} s; all {total} would take {:.0} s)",
            total as f64 / rate
        );
    }
}

/// Moves the process into a network namespace of its own with `lo` up (root only).
fn private_network() -> bool {
    if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
        return false;
    }
    std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status().is_ok_and(|s| s.success())
}

/// `tc netem` on the namespace's `lo`, if the kernel has it.
fn netem() -> bool {
    let delay = format!("{}ms", ONE_WAY.as_millis());
    std::process::Command::new("tc")
        .args(["qdisc", "add", "dev", "lo", "root", "netem", "delay", &delay])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// 30 days of minute records ending an hour ago; returns their number and the first start.
fn seed(db: &Path, days: i64) -> (i64, i64) {
    let (mut store, _) = Store::open(db).unwrap();
    let n_minutes = days * 1440;
    let now_local = OFFSET.local_secs(now_ms());
    let end = now_local - now_local.rem_euclid(3600) - 3600;
    let first = end - n_minutes * 60;
    let mut records = Vec::with_capacity(n_minutes as usize * FACTORS.len());
    for m in 0..n_minutes {
        for (i, f) in FACTORS.iter().enumerate() {
            let v = 10.0 + i as f64 + (m % 60) as f64 / 100.0;
            records.push(Record {
                level: Level::Minute,
                start: first + m * 60,
                factor: f.to_string(),
                stat: Stat {
                    n_total: 30,
                    n_valid: 30,
                    min: Some(v - 0.5),
                    avg: Some(v),
                    max: Some(v + 0.5),
                    zs_min: Some((v - 0.5) * 1.2),
                    zs_avg: Some(v * 1.2),
                    zs_max: Some((v + 0.5) * 1.2),
                    cou: Some(0.01),
                    flag: Flag::N,
                    valid: true,
                },
                limit: None,
                exceeded: false,
            });
        }
    }
    store.upsert_records("kiln", &records, OFFSET).unwrap();
    (n_minutes, first)
}

/// Drains the backlog with one link of `window`, through `delay`, for at most `limit`; returns
/// the minute records the platform got whole, the seconds it took and the packets per record.
async fn drain(
    db: &Path,
    first: i64,
    n: i64,
    window: u32,
    delay: Option<Delay>,
    limit: Duration,
) -> (u64, f64, u64) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut address = listener.local_addr().unwrap().to_string();
    let platform = cems_gateway::sim::platform::serve(listener, Duration::ZERO, false);
    if delay == Some(Delay::DelayLine) {
        address = delay_line(address).await;
    }
    let name = format!("w{window}{}", if delay.is_some() { "rtt" } else { "lo" });
    let text = format!(
        "[site]\nmn = \"BENCH01\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n[[outlet]]\nname = \"kiln\"\n[[device]]\nname = \"d\"\nbus = \"b\"\nslave = 1\noutlet = \"kiln\"\n[[device.point]]\nfactor = \"a21026\"\naddress = 0\ntype = \"f32\"\n[[uplink]]\nname = \"{name}\"\naddress = \"{address}\"\nrealtime = false\nhour = false\nday = false\nmin_interval = 1\nwindow = {window}\n",
        db.display()
    );
    let cfg = Arc::new(validate::parse(&text, Path::new("/")).unwrap());
    // The cursor is the start of the last acknowledged period: the minute before the backlog.
    let mut cursors = Store::open_secondary(db).unwrap();
    cursors.set_cursor(&name, Kind::Minute, OFFSET.utc_ms(first - 60)).unwrap();
    let (outbox, _thread) = Outbox::spawn(Store::open_secondary(db).unwrap());
    let link = Link::new(cfg.uplinks[0].clone(), cfg.clone(), outbox, Arc::new(Live::default())).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(link.run(stop_rx));
    let started = Instant::now();
    // A minute of 8 factors with their converted values is longer than one packet's CP (950
    // characters): each record travels as PNUM packets, which the platform counts one by one.
    let packets = || platform.snapshot().by_cn.get("2051").copied().unwrap_or(0);
    let per_record = || {
        platform
            .snapshot()
            .last
            .iter()
            .find(|p| p.cn == "2051")
            .and_then(|p| p.packets)
            .map_or(1, |(n, _)| u64::from(n))
    };
    while packets() < n as u64 * per_record() && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (records, secs) = (packets() / per_record(), started.elapsed().as_secs_f64());
    stop.send(true).unwrap();
    task.await.unwrap();
    (records, secs, per_record())
}

/// A proxy on loopback to `target` that holds every chunk [`ONE_WAY`] in each direction, in
/// order, without limiting bandwidth. Returns its address.
async fn delay_line(target: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&target).await else { continue };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(carry(cr, sw));
            tokio::spawn(carry(sr, cw));
        }
    });
    address
}

/// One direction of the delay line: chunks read now are written [`ONE_WAY`] later.
async fn carry(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let (tx, mut rx) = mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(65_536);
    tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if tx.send((tokio::time::Instant::now() + ONE_WAY, buf[..n].to_vec())).await.is_err() {
            return;
        }
    }
}
