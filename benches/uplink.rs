//! Uplink benchmark (`cargo bench --bench uplink`): drain a 30-day backlog of minute records
//! (43,200 frames for one outlet with 8 factors) to a loopback HJ 212 platform that acknowledges
//! every frame, with window 1 and with window 8. Goal: the 30 days in under 30 s.

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
use cems_gateway::uplink::Link;
use tokio::net::TcpListener;
use tokio::sync::watch;

const FACTORS: [&str; 8] = ["a21026", "a21002", "a34013", "a19001", "a01012", "a01013", "a01011", "a01014"];

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let days = if quick { 2 } else { 30 };
    let n_minutes = days * 1440;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("uplink.db");
    let (mut store, _) = Store::open(&db).unwrap();
    let offset = 8 * 3600;
    let now_local = now_ms() / 1000 + offset;
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
                    zs_avg: Some(v * 1.2),
                    cou: Some(0.01),
                    flag: Flag::N,
                },
                limit: None,
                exceeded: false,
            });
        }
    }
    store.upsert_records("kiln", &records, offset).unwrap();
    drop(records);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "Uplink backlog drain: {n_minutes} minute frames ({days} days × 8 factors), loopback platform acknowledging each:"
    );
    for window in [1u32, 8] {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap().to_string();
            let platform = cems_gateway::sim::platform::serve(listener, Duration::ZERO, false);
            let text = format!(
                "[site]\nmn = \"BENCH01\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n[[outlet]]\nname = \"kiln\"\n[[device]]\nname = \"d\"\nbus = \"b\"\nslave = 1\noutlet = \"kiln\"\n[[device.point]]\nfactor = \"a21026\"\naddress = 0\ntype = \"f32\"\n[[uplink]]\nname = \"w{window}\"\naddress = \"{address}\"\nrealtime = false\nhour = false\nday = false\nmin_interval = 1\nwindow = {window}\n",
                db.display()
            );
            let cfg = Arc::new(validate::parse(&text, Path::new("/")).unwrap());
            // The cursor is the start of the last acknowledged block: here the minute before the backlog.
            let mut cursors = Store::open_secondary(&db).unwrap();
            cursors.set_cursor(&format!("w{window}"), Kind::Minute, (first - offset - 60) * 1000).unwrap();
            let (outbox, _thread) = Outbox::spawn(Store::open_secondary(&db).unwrap());
            let link = Link::new(cfg.uplinks[0].clone(), cfg.clone(), outbox, Arc::new(Live::default())).unwrap();
            let (stop, stop_rx) = watch::channel(false);
            let started = Instant::now();
            let task = tokio::spawn(link.run(stop_rx));
            loop {
                let n = platform.snapshot().by_cn.get("2051").copied().unwrap_or(0);
                if n >= n_minutes as u64 {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(600), "stalled at {n}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let secs = started.elapsed().as_secs_f64();
            stop.send(true).unwrap();
            task.await.unwrap();
            println!("   window {window}: {secs:.1} s, {:.0} frames/s", n_minutes as f64 / secs);
        });
    }
}
