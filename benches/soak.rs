//! Soak (`cargo bench --bench soak`): the real daemon for an hour at 200 devices × 50 f32
//! points at 1 s over loopback (10 TCP buses, `cems-gateway simulate` as the analyzers), with
//! one outlet's records computed every minute, an HJ 212 uplink to a loopback platform that
//! acknowledges everything (real-time, minute, hour records) and the status page, whose
//! `/api/v1/status` is fetched every minute as an officer's browser would.
//!
//! Reported: RSS at start (after the warm-up), after 10 minutes and at the end (anonymous and
//! file-backed), the peak, CPU % of one core per interval, overall, and in the first and the
//! last 10 minutes, bytes written to the device (`/proc/<pid>/io` `write_bytes`), the store's
//! growth per hour (file + WAL), samples stored, and what the platform received. A line is
//! printed every `SOAK_REPORT_S`.
//!
//! Parameters by environment: `SOAK_SECS` (3600), `SOAK_DEVICES` (200), `SOAK_POINTS` (50),
//! `SOAK_REPORT_S` (300), `SOAK_OUTLET_DEVICES` (1: devices whose points feed the outlet).

use std::time::{Duration, Instant};

mod common;
use common::{env_u64, proc_io, proc_stat_ticks, proc_status_kb};

use cems_gateway::store::Store;

fn store_bytes(db: &std::path::Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|s| std::fs::metadata(format!("{}{s}", db.display())).map_or(0, |m| m.len()))
        .sum()
}

/// `GET path` on the status page, as a browser would; the reply is read and dropped.
fn fetch(address: &str, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let mut reply = Vec::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_end(&mut reply).is_ok()
        && reply.split(|b| *b == b'\n').next().is_some_and(|l| l.windows(5).any(|w| w == b" 200 "))
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn main() {
    let secs = env_u64("SOAK_SECS", 3600);
    let n_devices = env_u64("SOAK_DEVICES", 200) as u32;
    let n_points = env_u64("SOAK_POINTS", 50) as u32;
    let every = Duration::from_secs(env_u64("SOAK_REPORT_S", 300));
    let outlet_devices = env_u64("SOAK_OUTLET_DEVICES", 1) as u32;
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_cems-gateway");

    // The platform runs in this process, on its own runtime thread.
    let mut loopback = common::Loopback::start(bin);
    let db = dir.path().join("soak.db");
    let mut text = format!(
        "[site]\nmn = \"SOAK0000000001\"\npw = \"123456\"\n[storage]\npath = \"{}\"\nmax_size_mb = 65536\n\
         [web]\nlisten = \"127.0.0.1:0\"\n[[outlet]]\nname = \"o\"\nprofile = \"cement-kiln\"\n",
        db.display()
    );
    text += &common::soak_devices(&loopback.simulator_address, n_devices, n_points, outlet_devices);
    text += &format!(
        "[[uplink]]\nname = \"soak\"\naddress = \"{}\"\noutlet = \"o\"\nrealtime = true\nrtd_interval_s = 30\n\
         minute = true\nmin_interval = 1\nhour = true\nday = true\n",
        loopback.platform_address
    );
    let cfg_path = dir.path().join("soak.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let check = std::process::Command::new(bin).arg("check-config").arg(&cfg_path).output().unwrap();
    if !check.status.success() {
        loopback.stop_simulator();
        panic!("soak configuration invalid:\n{}", String::from_utf8_lossy(&check.stderr));
    }
    let log = std::fs::File::create(dir.path().join("gw.log")).unwrap();
    let mut gw =
        std::process::Command::new(bin).args(["run", "--config"]).arg(&cfg_path).stderr(log).spawn().unwrap();
    let pid = gw.id();
    let hz = 100.0; // USER_HZ on Linux
    let warmup = Duration::from_secs(30.min(secs / 4));
    std::thread::sleep(warmup);
    let log_text = std::fs::read_to_string(dir.path().join("gw.log")).unwrap_or_default();
    let page = log_text
        .lines()
        .find_map(|l| l.split("url=http://").nth(1))
        .map(|u| u.trim_end_matches('/').to_string())
        .expect("the status page's address in the log");
    let start = Instant::now();
    let (c0, b0, w0) = (proc_stat_ticks(pid), store_bytes(&db), proc_io(pid, "write_bytes"));
    let rss0 = proc_status_kb(pid, "VmRSS:");
    let mut next_fetch = Instant::now();
    let mut fetched = (0u32, 0u32);
    let mut first_10min: Option<f64> = None;
    println!(
        "soak: {n_devices} devices × {n_points} points at 1 s, {secs} s; after {} s warm-up: RSS {:.1} MB, store {:.1} MB",
        warmup.as_secs(),
        mb(rss0),
        b0 as f64 / 1e6
    );
    let mut rss_10min = None;
    let (mut last_t, mut last_c) = (start, c0);
    let mut cpu_intervals = Vec::new();
    let mut last_10min: Vec<(Instant, u64)> = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let left = Duration::from_secs(secs).saturating_sub(start.elapsed());
        let until = Instant::now() + every.min(left).max(Duration::from_millis(100));
        while Instant::now() < until {
            if Instant::now() >= next_fetch {
                next_fetch += Duration::from_secs(60);
                let ok = fetch(&page, "/api/v1/status");
                fetched = (fetched.0 + 1, fetched.1 + u32::from(ok));
            }
            if first_10min.is_none() && start.elapsed() >= Duration::from_secs(600) {
                first_10min =
                    Some((proc_stat_ticks(pid) - c0) as f64 / hz / start.elapsed().as_secs_f64() * 100.0);
            }
            last_10min.push((Instant::now(), proc_stat_ticks(pid)));
            last_10min.retain(|(t, _)| t.elapsed() <= Duration::from_secs(600));
            std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_secs(5)));
        }
        if let Ok(Some(status)) = gw.try_wait() {
            loopback.stop_simulator();
            let log = std::fs::read_to_string(dir.path().join("gw.log")).unwrap_or_default();
            panic!(
                "the gateway exited: {status}\n{}",
                log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
            );
        }
        let (t, c) = (Instant::now(), proc_stat_ticks(pid));
        let cpu = (c - last_c) as f64 / hz / (t - last_t).as_secs_f64() * 100.0;
        cpu_intervals.push(cpu);
        (last_t, last_c) = (t, c);
        let rss = proc_status_kb(pid, "VmRSS:");
        if rss_10min.is_none() && start.elapsed() >= Duration::from_secs(600) {
            rss_10min = Some(rss);
        }
        let r = loopback.platform.snapshot();
        println!(
            "  t={:>5} s  RSS {:>6.1} MB  CPU {cpu:>5.1} %  store {:>7.1} MB  platform 2011 ×{} 2051 ×{} 2061 ×{}",
            start.elapsed().as_secs(),
            mb(rss),
            store_bytes(&db) as f64 / 1e6,
            r.by_cn.get("2011").unwrap_or(&0),
            r.by_cn.get("2051").unwrap_or(&0),
            r.by_cn.get("2061").unwrap_or(&0),
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (proc_stat_ticks(pid) - c0) as f64 / hz / elapsed * 100.0;
    let (rss_end, hwm) = (proc_status_kb(pid, "VmRSS:"), proc_status_kb(pid, "VmHWM:"));
    let (anon, file) = (proc_status_kb(pid, "RssAnon:"), proc_status_kb(pid, "RssFile:"));
    let written = proc_io(pid, "write_bytes") - w0;
    let last = match (last_10min.first(), last_10min.last()) {
        (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => {
            Some((c1 - c0) as f64 / hz / (*t1 - *t0).as_secs_f64() * 100.0)
        }
        _ => None,
    };
    let b1 = store_bytes(&db);
    // A graceful stop (SIGTERM), so the store is complete when counted.
    // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = gw.wait();
    loopback.stop_simulator();
    let (store, _) = Store::open(&db).unwrap();
    let stored = store.count().unwrap();
    let chain = store.verify_chain(None, None).unwrap();
    let r = loopback.platform.snapshot();
    let growth = (b1.saturating_sub(b0)) as f64 / 1e6 / elapsed * 3600.0;
    let slots = f64::from(n_devices * n_points) * (elapsed + warmup.as_secs_f64());
    println!("soak result ({:.0} s):", elapsed);
    println!(
        "  RSS start {:.1} MB, after 10 min {}, end {:.1} MB (anonymous {:.1} MB, file-backed {:.1} MB), peak {:.1} MB",
        mb(rss0),
        rss_10min.map_or("n/a".to_string(), |k| format!("{:.1} MB", mb(k))),
        mb(rss_end),
        mb(anon),
        mb(file),
        mb(hwm)
    );
    println!(
        "  CPU {cpu:.2} % of one core overall; per interval min {:.2} max {:.2}; first 10 min {}, last 10 min {}",
        cpu_intervals.iter().copied().fold(f64::INFINITY, f64::min),
        cpu_intervals.iter().copied().fold(0.0, f64::max),
        first_10min.map_or("n/a".to_string(), |c| format!("{c:.2} %")),
        last.map_or("n/a".to_string(), |c| format!("{c:.2} %"))
    );
    println!(
        "  written to the device {:.0} MB ({:.0} MB per hour); status page fetched {} times, {} answered 200",
        written as f64 / 1e6,
        written as f64 / 1e6 / elapsed * 3600.0,
        fetched.0,
        fetched.1
    );
    println!(
        "  store growth {growth:.0} MB per hour (file + WAL; {:.1} → {:.1} MB)",
        b0 as f64 / 1e6,
        b1 as f64 / 1e6
    );
    println!("  samples stored {stored} (≈ {:.1} % of {slots:.0} slots)", stored as f64 / slots * 100.0);
    println!(
        "  platform received: 2011 ×{} 2051 ×{} 2061 ×{}, {} connection(s); audit chain {} ({} entries)",
        r.by_cn.get("2011").unwrap_or(&0),
        r.by_cn.get("2051").unwrap_or(&0),
        r.by_cn.get("2061").unwrap_or(&0),
        r.connections,
        if chain.verified { "verifies" } else { "BROKEN" },
        chain.entries
    );
}
