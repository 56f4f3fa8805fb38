//! Compliance benchmark (`cargo bench --bench compliance`): recompute one month of one outlet
//! from real-time samples at 5 s (8 factors, ≈ 535,000 samples each in March) streamed from a
//! real SQLite store; wall time in-process, and wall time and peak RSS of the `report` command.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cems_gateway::config::validate;
use cems_gateway::figures::evaluate_range;
use cems_gateway::model::{Flag, Sample};
use cems_gateway::store::Store;
use cems_gateway::time::{Local, Offset};

const FACTORS: [(&str, f64); 8] = [
    ("a21026", 20.0),
    ("a21002", 40.0),
    ("a34013", 5.0),
    ("a19001", 11.0),
    ("a01012", 130.0),
    ("a01013", -0.4),
    ("a01011", 14.0),
    ("a01014", 8.0),
];

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let days = if quick { 3 } else { 31 };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("month.db");
    let text = format!(
        "[site]\nmn = \"B\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n[[outlet]]\nname = \"kiln\"\nprofile = \"cement-kiln\"\nduct_area_m2 = 12.57\n[[device]]\nname = \"cems\"\nbus = \"b\"\nslave = 1\noutlet = \"kiln\"\n{}",
        db.display(),
        FACTORS
            .iter()
            .enumerate()
            .map(|(i, (f, _))| format!(
                "[[device.point]]\nfactor = \"{f}\"\naddress = {}\ntype = \"f32\"\n",
                i * 2
            ))
            .collect::<String>()
    );
    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    let config = validate::parse(&text, Path::new("/")).unwrap();

    let (mut store, _) = Store::open(&db).unwrap();
    let start_ms = Offset::CHINA.utc_ms(parse_local("2026-03-01 00:00:00"));
    let n_slots = days * 86_400 / 5;
    let device: Arc<str> = Arc::from("cems");
    let names: Vec<Arc<str>> = FACTORS.iter().map(|(f, _)| Arc::from(*f)).collect();
    let t0 = Instant::now();
    let mut batch = Vec::with_capacity(80_000);
    for slot in 0..n_slots {
        for (i, (_, base)) in FACTORS.iter().enumerate() {
            let wobble = ((slot * 7 + i as i64 * 13) % 100) as f64 / 100.0;
            batch.push(Sample {
                ts_ms: start_ms + slot * 5000,
                device: device.clone(),
                factor: names[i].clone(),
                value: Some(base + wobble),
                flag: Flag::N,
            });
        }
        if batch.len() >= 80_000 {
            store.insert(&batch).unwrap();
            batch.clear();
        }
    }
    store.insert(&batch).unwrap();
    store.checkpoint().unwrap();
    let n = store.count().unwrap();
    println!(
        "Compliance, {days} days × 8 factors at 5 s: {n} samples stored in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let outlet = config.outlet("kiln").unwrap();
    let t = Instant::now();
    let mut scanned = 0u64;
    store.for_each_sample(&["cems"], 0, i64::MAX, |_, _, _, _| scanned += 1).unwrap();
    println!(
        "   of which reading the samples from SQLite alone: {:.2} s ({scanned} rows)",
        t.elapsed().as_secs_f64()
    );
    let (from, to) = (parse_local("2026-03-01 00:00:00"), parse_local("2026-04-01 00:00:00"));
    let mut times = Vec::new();
    let mut hours = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let (outcome, _) = evaluate_range(&store, &config, outlet, from, to, |_| {}).unwrap();
        times.push(t.elapsed().as_secs_f64());
        hours = outcome.hours.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "   recompute in-process (stream from SQLite + evaluate): {:.2} s (median of 3; {} hour records)",
        times[1], hours
    );
    drop(store);

    for format in ["json", "table"] {
        let t = Instant::now();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
            .args(["report", "--month", "2026-03", "--format", format, "--config"])
            .arg(&cfg_path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        // SAFETY: wait4 fills the status and rusage we pass for our own child.
        let (status, maxrss_kb) = unsafe {
            let mut status = 0;
            let mut u: libc::rusage = std::mem::zeroed();
            libc::wait4(pid, &mut status, 0, &mut u);
            (status, u.ru_maxrss)
        };
        let wall = t.elapsed().as_secs_f64();
        let _ = child.try_wait();
        assert_eq!(status, 0, "report failed");
        println!(
            "   `cems-gateway report --month 2026-03 --format {format}`: {wall:.2} s, peak RSS {:.1} MB",
            maxrss_kb as f64 / 1024.0
        );
    }
}

/// Plant-local seconds of `YYYY-MM-DD HH:MM:SS`.
fn parse_local(s: &str) -> i64 {
    Local::parse_display(s).map(Local::secs).expect("a local time")
}
