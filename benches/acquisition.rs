//! Acquisition benchmarks (`cargo bench --bench acquisition`), run on this machine and
//! reported in the README:
//!
//! 1. Modbus TCP loopback throughput of the gateway's poller against a bare tokio-modbus
//!    request loop, both reading the same simulator.
//! 2. The daemon under 10,000 float points at a 1 s interval (200 devices × 50 floats over
//!    10 TCP buses): CPU % of one core and peak RSS.
//! 3. SQLite: sustained batched insert rate and bytes per stored sample.
//! 4. `check-config` of the daemon's 600 KB configuration (10,000 points): time and peak RSS.
//!
//! Set `BENCH_QUICK=1` for a short smoke run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{proc_stat_ticks, proc_status_kb};

use cems_gateway::acquire::{DevicePlan, Link};
use cems_gateway::config::validate;
use cems_gateway::model::{Flag, Sample};
use cems_gateway::sim::{self, Script, Sim};
use cems_gateway::store::Store;
use tokio::net::TcpListener;
use tokio_modbus::client::Reader;
use tokio_modbus::prelude::{Slave, tcp};

fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_config(address: &str) -> cems_gateway::config::Config {
    let text = format!(
        "[site]\nmn = \"B\"\npw = \"123456\"\n[storage]\npath = \"b.db\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"{address}\"\n[[device]]\nname = \"d\"\nbus = \"b\"\nslave = 10\nmax_gap = 20\n[[device.point]]\nfactor = \"a21026\"\naddress = 0\ntype = \"f32\"\n[[device.point]]\nfactor = \"a21002\"\naddress = 14\ntype = \"f32\"\n"
    );
    validate::parse(&text, Path::new("/tmp")).unwrap()
}

/// Requests per second of the gateway's poller: `n` full device polls of one 16-register read.
async fn poller_rate(address: &str, n: u32) -> f64 {
    let cfg = bench_config(address);
    let plan = DevicePlan::new(cfg.devices[0].clone());
    assert_eq!((plan.blocks.len(), plan.blocks[0].count), (1, 16));
    let mut link = Link::new(cfg.buses[0].clone());
    let start = Instant::now();
    for _ in 0..n {
        let out = link.poll(&plan).await;
        assert!(out.error.is_none());
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

/// Requests per second of a bare tokio-modbus loop doing the same read.
async fn bare_rate(address: &str, n: u32) -> f64 {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut ctx = tcp::attach_slave(stream, Slave(10));
    let start = Instant::now();
    for _ in 0..n {
        let regs = ctx.read_holding_registers(0, 16).await.unwrap().unwrap();
        assert_eq!(regs.len(), 16);
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn bench_throughput() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let sim = Arc::new(Sim::new(Default::default(), Script::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(sim::serve_tcp(listener, sim));
        let n = if quick() { 2_000 } else { 20_000 };
        poller_rate(&address, 500).await; // warm-up
        bare_rate(&address, 500).await;
        let (mut p, mut b) = (Vec::new(), Vec::new());
        // Alternate which loop goes first, so that neither always runs on a warmer machine.
        for round in 0..6 {
            if round % 2 == 0 {
                p.push(poller_rate(&address, n).await);
                b.push(bare_rate(&address, n).await);
            } else {
                b.push(bare_rate(&address, n).await);
                p.push(poller_rate(&address, n).await);
            }
        }
        let (p, b) = (median(p), median(b));
        println!("1. Modbus TCP loopback, 16-register reads, median of 6 × {n}:");
        println!("   gateway poller  {p:>8.0} req/s (a full device poll: plan, deadline, decode, flags)");
        println!("   bare tokio-modbus {b:>6.0} req/s");
        println!("   ratio           {:>8.2}", p / b);
    });
}

fn bench_daemon_load() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_cems-gateway");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut sim = std::process::Command::new(bin)
        .args(["simulate", "--tcp", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut text = format!(
        "[site]\nmn = \"BENCH\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n",
        dir.path().join("load.db").display()
    );
    for b in 0..10 {
        text += &format!("[[bus]]\nname = \"b{b}\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n");
    }
    for d in 0..200u32 {
        text += &format!(
            "[[device]]\nname = \"d{d}\"\nbus = \"b{}\"\nslave = {}\npoll_interval_s = 1\n",
            d % 10,
            10 + d
        );
        for p in 0..50 {
            text += &format!("[[device.point]]\nfactor = \"p{p:03}\"\naddress = {}\ntype = \"f32\"\n", p * 2);
        }
    }
    let cfg_path = dir.path().join("load.toml");
    std::fs::write(&cfg_path, text).unwrap();
    bench_check_config(bin, &cfg_path);
    let mut gw = std::process::Command::new(bin)
        .args(["run", "--config"])
        .arg(&cfg_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = gw.id();
    let warmup = Duration::from_secs(if quick() { 3 } else { 10 });
    let window = Duration::from_secs(if quick() { 5 } else { 60 });
    std::thread::sleep(warmup);
    let hz = 100.0; // USER_HZ on Linux
    let (t0, c0) = (Instant::now(), proc_stat_ticks(pid));
    std::thread::sleep(window);
    let (t1, c1) = (Instant::now(), proc_stat_ticks(pid));
    let cpu = (c1 - c0) as f64 / hz / (t1 - t0).as_secs_f64() * 100.0;
    let hwm = proc_status_kb(pid, "VmHWM:");
    let rss = proc_status_kb(pid, "VmRSS:");
    let _ = gw.kill();
    let _ = gw.wait();
    let _ = sim.kill();
    let _ = sim.wait();
    let (store, _) = Store::open(&dir.path().join("load.db")).unwrap();
    let stored = store.count().unwrap();
    let expected = 10_000.0 * (warmup + window).as_secs_f64();
    println!(
        "2. Daemon, 10,000 f32 points at 1 s (200 devices × 50 floats, 10 TCP buses), {}s window:",
        window.as_secs()
    );
    println!("   CPU             {cpu:>8.1} % of one core");
    println!(
        "   peak RSS        {:>8.1} MB (VmHWM; VmRSS at end {:.1} MB)",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    println!(
        "   samples stored  {stored:>8} (≈ {:.0} % of the {expected:.0} slots in the run)",
        stored as f64 / expected * 100.0
    );
}

/// `check-config` of `cfg` (the first child process this bench waits for, so the children's
/// peak RSS is its own): the median time of five runs and the peak RSS.
fn bench_check_config(bin: &str, cfg: &Path) {
    let size = std::fs::metadata(cfg).unwrap().len();
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let out = std::process::Command::new(bin).arg("check-config").arg(cfg).output().unwrap();
        times.push(start.elapsed().as_secs_f64());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // SAFETY: getrusage only fills in the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    println!(
        "4. check-config of the same configuration ({:.0} KB, 10,000 points), median of 5:",
        size as f64 / 1024.0
    );
    println!("   time            {:>8.3} s", median(times));
    println!("   peak RSS        {:>8.1} MB", usage.ru_maxrss as f64 / 1024.0);
}

fn bench_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("insert.db");
    let (mut store, _) = Store::open(&path).unwrap();
    let batches = if quick() { 20 } else { 200 };
    let per_batch = 10_000;
    let devices: Vec<Arc<str>> = (0..200).map(|d| Arc::from(format!("d{d}"))).collect();
    let factors: Vec<Arc<str>> = (0..50).map(|p| Arc::from(format!("p{p:03}"))).collect();
    let mut ts = 1_795_000_000_000i64;
    let mut total = 0usize;
    let start = Instant::now();
    for _ in 0..batches {
        let batch: Vec<Sample> = (0..per_batch)
            .map(|i| Sample {
                ts_ms: ts,
                device: devices[i / 50 % 200].clone(),
                factor: factors[i % 50].clone(),
                value: Some(20.0 + (i % 97) as f64 * 0.173),
                flag: Flag::N,
            })
            .collect();
        ts += 1000;
        total += store.insert(&batch).unwrap();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    store.checkpoint().unwrap();
    let bytes = store.used_bytes().unwrap();
    let file = std::fs::metadata(&path).unwrap().len();
    println!("3. SQLite, {batches} batches × {per_batch} samples, synchronous=FULL, WAL:");
    println!("   insert rate     {rate:>8.0} samples/s");
    println!(
        "   bytes/sample    {:>8.1} (used pages; file {:.1} MB)",
        bytes as f64 / total as f64,
        file as f64 / 1e6
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and expects a quick run.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    bench_throughput();
    bench_sqlite();
    bench_daemon_load();
}
