//! The cost per minute of sealing the samples and of the statistics worker
//! (`cargo bench --bench figures`).
//!
//! A buffer holds `FIG_DEVICES` × `FIG_POINTS` float series at 1 s (default 200 × 50 = 10,000
//! points, the soak's load) from two minutes before hour H−1 to minute 56 of hour H; one device's
//! points feed the outlet. The writer's sealer and the worker then run through it minute by
//! minute as in the daemon (each minute sealed 5 s after it ends, then taken by the worker), and
//! the minutes in `FIG_AT` (default `5,55`: the first and the last minutes of hour H) are timed:
//! the seal (read back, hash, chain entry, handover) and the worker's round (evaluation of the
//! outlet's rows, minute records, and the hour when one closes) apart.
//!
//! Prepared buffers (samples only) are kept at `FIG_DB` (default under the system's temp dir)
//! and copied before each run; with `FIG_INPLACE=1` the prepared buffer itself is used (and
//! spent: it is sealed), which saves a copy of 2 GB at the default load. For instruction counts, run the bench binary under callgrind
//! with collection only in `measured_minute`:
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_minute*' target/release/deps/figures-…`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::env_u64;

use cems_gateway::config::{Config, validate};
use cems_gateway::figures::Figures;
use cems_gateway::live::Live;
use cems_gateway::model::{Flag, Sample};
use cems_gateway::store::Store;
use cems_gateway::store::seal::{Handover, Sealer};

const OFFSET: cems_gateway::time::Offset = cems_gateway::time::Offset::CHINA;
/// Hour H starts at 2026-03-02 10:00 plant time.
const HOUR_H: i64 = 1_772_416_800 + 8 * 3600;
const SETTLE: Duration = Duration::from_secs(5);

fn factor(d: u32, p: u32) -> String {
    match (d, p) {
        (0, 0) => "a19001".into(),
        (0, 1) => "a21026".into(),
        (0, 2) => "a21002".into(),
        (0, 3) => "a34013".into(),
        _ => format!("p{d:03}{p:03}"),
    }
}

fn config(db: &Path, devices: u32, points: u32) -> Config {
    let mut text = format!(
        "[site]\nmn = \"FIG\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n\
         [[outlet]]\nname = \"o\"\nprofile = \"cement-kiln\"\n",
        db.display()
    );
    for d in 0..devices {
        let outlet = if d == 0 { "outlet = \"o\"\n" } else { "" };
        text += &format!("[[device]]\nname = \"d{d}\"\nbus = \"b\"\nslave = 1\n{outlet}");
        for p in 0..points {
            text += &format!(
                "[[device.point]]\nfactor = \"{}\"\naddress = {}\ntype = \"f32\"\n",
                factor(d, p),
                (p * 2) % 124
            );
        }
    }
    validate::parse(&text, Path::new("/tmp")).expect("bench config")
}

/// Seeds one sample per series and second over `[from, to)` (local seconds).
fn seed(db: &Path, devices: u32, points: u32, from: i64, to: i64) {
    let (mut store, _) = Store::open(db).unwrap();
    let names: Vec<(Arc<str>, Vec<Arc<str>>)> = (0..devices)
        .map(|d| (Arc::from(format!("d{d}")), (0..points).map(|p| Arc::from(factor(d, p))).collect()))
        .collect();
    let started = Instant::now();
    let mut batch = Vec::with_capacity((devices * points) as usize);
    for t in from..to {
        let ts_ms = OFFSET.utc_ms(t);
        for (device, factors) in &names {
            for (i, f) in factors.iter().enumerate() {
                let value = if &**f == "a19001" { 11.0 } else { 20.0 + (t % 60) as f64 + i as f64 };
                batch.push(Sample {
                    ts_ms,
                    device: device.clone(),
                    factor: f.clone(),
                    value: Some(value),
                    flag: Flag::N,
                });
            }
        }
        store.insert(&batch).unwrap();
        batch.clear();
    }
    eprintln!(
        "seeded {} s × {} series in {:.0} s",
        to - from,
        devices * points,
        started.elapsed().as_secs_f64()
    );
}

/// CPU seconds of the whole process.
fn process_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// A minute in `FIG_AT`: what the instruction count covers.
#[inline(never)]
fn measured_minute(store: &mut Store, sealer: &mut Sealer, worker: &mut Figures, now: i64) -> (f64, f64) {
    minute_of_work(store, sealer, worker, now)
}

/// One minute of the daemon's statistics work at local time `now`: the writer seals what has
/// settled, the worker takes it. Returns the CPU seconds of each part.
fn minute_of_work(store: &mut Store, sealer: &mut Sealer, worker: &mut Figures, now: i64) -> (f64, f64) {
    let c0 = process_cpu_s();
    sealer.tick(store, OFFSET.utc_ms(now)).unwrap();
    let c1 = process_cpu_s();
    worker.round(Duration::ZERO).unwrap();
    (c1 - c0, process_cpu_s() - c1)
}

fn main() {
    let devices = env_u64("FIG_DEVICES", 200) as u32;
    let points = env_u64("FIG_POINTS", 50) as u32;
    let at: Vec<i64> = std::env::var("FIG_AT")
        .unwrap_or_else(|_| "5,55".into())
        .split(',')
        .filter_map(|m| m.trim().parse().ok())
        .collect();
    let seeded: PathBuf = std::env::var_os("FIG_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("cems-fig-sealed-{devices}x{points}.db")));
    let first = HOUR_H - 3600 - 120;
    let last = HOUR_H + 56 * 60;
    if !seeded.exists() {
        seed(&seeded, devices, points, first, last);
    }
    let dir = tempfile::tempdir_in(seeded.parent().unwrap_or(Path::new("."))).unwrap();
    let db = if std::env::var("FIG_INPLACE").is_ok_and(|v| v == "1") {
        seeded.clone()
    } else {
        let db = dir.path().join("run.db");
        std::fs::copy(&seeded, &db).unwrap();
        db
    };
    let cfg = config(&db, devices, points);
    let (mut store, _) = Store::open(&db).unwrap();
    let outlet_devices =
        cfg.devices.iter().filter(|d| d.outlet.is_some()).map(|d| Arc::from(d.name.as_str()));
    let handover = Arc::new(Handover::new(outlet_devices));
    let mut sealer = Sealer::start(&mut store, SETTLE, handover.clone()).unwrap();
    let mut worker =
        Figures::new(Arc::new(cfg), Store::open_secondary(&db).unwrap(), Arc::new(Live::default()), handover);
    println!("sealing and statistics, {devices} × {points} series at 1 s, one outlet of {points} factors:");
    let (mut seal_sum, mut work_sum, mut n) = (0.0, 0.0, 0);
    let mut minute = first;
    while minute < last {
        // The daemon's writer ticks every flush; the minute is sealed once it has settled.
        let now = minute + 60 + SETTLE.as_secs() as i64;
        let wall = Instant::now();
        let m = (minute - HOUR_H).div_euclid(60);
        let timed = minute >= HOUR_H && at.contains(&m);
        let (seal, work) = if timed {
            measured_minute(&mut store, &mut sealer, &mut worker, now)
        } else {
            minute_of_work(&mut store, &mut sealer, &mut worker, now)
        };
        if minute >= HOUR_H {
            (seal_sum, work_sum, n) = (seal_sum + seal, work_sum + work, n + 1);
        }
        if timed {
            println!(
                "  minute {m:>2} of hour H: {:.4} s wall; CPU: seal {seal:.4} s, worker {work:.4} s",
                wall.elapsed().as_secs_f64()
            );
        }
        minute += 60;
    }
    println!(
        "  mean over the {n} minutes of hour H: CPU seal {:.4} s, worker {:.4} s per minute",
        seal_sum / f64::from(n),
        work_sum / f64::from(n)
    );
    use cems_gateway::compute::Level;
    let count = |level| store.records("o", level, 0, i64::MAX, OFFSET).unwrap().len();
    let chain = store.chain_head().unwrap().map_or(0, |(seq, _)| seq);
    println!(
        "  stored: {} minute and {} hour records; audit chain {chain} entries",
        count(Level::Minute),
        count(Level::Hour)
    );
}
