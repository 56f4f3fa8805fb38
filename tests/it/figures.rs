//! The daemon's statistics worker and `report`, on a real store: closed periods persisted,
//! recomputed after late data and after a restart, the open hour published, day records.

use std::sync::Arc;

use cems_gateway::compute::Level;
use cems_gateway::config::Config;
use cems_gateway::figures::Figures;
use cems_gateway::live::Live;
use cems_gateway::model::{Flag, Sample};
use cems_gateway::report::parse_local;
use cems_gateway::store::Store;

use crate::support::kiln_config;

fn cfg(db: &std::path::Path) -> Config {
    kiln_config(db, "FIG1", "")
}

/// Local plant time → Unix ms with the +8 h offset.
fn utc_ms(local: &str) -> i64 {
    (parse_local(local).unwrap() - 8 * 3600) * 1000
}

/// 12 samples a minute of SO2 `so2` at 13 % O2 over `[from, from + minutes)`.
fn samples(from: &str, minutes: i64, so2: f64) -> Vec<Sample> {
    let start = utc_ms(from);
    let mut out = Vec::new();
    for i in 0..minutes * 12 {
        let ts = start + i * 5000;
        for (factor, value) in [("a21026", so2), ("a19001", 13.0)] {
            out.push(Sample {
                ts_ms: ts,
                device: Arc::from("gas"),
                factor: Arc::from(factor),
                value: Some(value),
                flag: Flag::N,
            });
        }
    }
    out
}

#[test]
fn closed_periods_are_persisted_and_recomputed_after_late_data_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let cfg = cfg(&db);
    let (mut store, _) = Store::open(&db).unwrap();
    store.insert(&samples("2026-03-01 08:00:00", 120, 20.0)).unwrap();
    store.insert(&samples("2026-03-01 10:00:00", 30, 40.0)).unwrap();

    let live = Arc::new(Live::default());
    let mut worker = Figures::new(Arc::new(cfg.clone()), Store::open_secondary(&db).unwrap(), live.clone());
    let now = parse_local("2026-03-01 10:30:10").unwrap();
    worker.run_once(now).unwrap();

    let off = 8 * 3600;
    let hours = store.records("kiln", Level::Hour, 0, i64::MAX, off).unwrap();
    let so2: Vec<_> = hours.iter().filter(|h| h.factor == "a21026").collect();
    // The catch-up window starts at the previous hour (09:00): 10:00 is still open.
    assert_eq!(so2.len(), 1);
    assert_eq!(so2[0].start, parse_local("2026-03-01 09:00:00").unwrap());
    assert_eq!(so2[0].stat.zs_avg, Some(27.5), "20 × 11/8");
    let minutes = store.records("kiln", Level::Minute, 0, i64::MAX, off).unwrap();
    assert_eq!(
        minutes.iter().filter(|m| m.factor == "a21026").count(),
        90,
        "09:00–10:29, closed minutes only"
    );
    // The open hour's running figures: minutes at 40 → 55 converted, not yet valid (< 45). The
    // minute of the last sample (10:29) counts once a later sample closes it: 29 so far.
    let open = &live.open_hours()["kiln"];
    assert_eq!(open.start, parse_local("2026-03-01 10:00:00").unwrap());
    assert_eq!((open.stats["a21026"].zs_avg, open.stats["a21026"].n_valid), (Some(55.0), 29));
    assert_eq!(open.limits["a21026"], 35.0);

    // Late data for 09:00–09:59 at a higher value replaces the record at the next round.
    let late_start = utc_ms("2026-03-01 09:00:02");
    let late: Vec<Sample> = (0..720)
        .map(|i| Sample {
            ts_ms: late_start + i * 5000,
            device: Arc::from("gas"),
            factor: Arc::from("a21026"),
            value: Some(44.0),
            flag: Flag::N,
        })
        .collect();
    store.insert(&late).unwrap();
    // A restart: a fresh worker recomputes from the newest stored hour.
    drop(worker);
    let mut worker =
        Figures::new(Arc::new(cfg.clone()), Store::open_secondary(&db).unwrap(), Arc::new(Live::default()));
    worker.run_once(parse_local("2026-03-01 11:00:10").unwrap()).unwrap();
    let hours = store.records("kiln", Level::Hour, 0, i64::MAX, off).unwrap();
    let h9 = hours
        .iter()
        .find(|h| h.factor == "a21026" && h.start == parse_local("2026-03-01 09:00:00").unwrap())
        .unwrap();
    // Each minute now holds 12 samples at 20 and 12 at 44 → 32 → 32 × 11/8 = 44.
    assert_eq!(h9.stat.zs_avg, Some(44.0));
    assert!(h9.exceeded, "44 > 35");
    let h10 = hours
        .iter()
        .find(|h| h.factor == "a21026" && h.start == parse_local("2026-03-01 10:00:00").unwrap())
        .unwrap();
    assert_eq!((h10.stat.valid, h10.stat.n_valid), (false, 30), "only 30 minutes: not valid");
}

#[test]
fn day_records_after_midnight_and_report_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let cfg = cfg(&db);
    let (mut store, _) = Store::open(&db).unwrap();
    store.insert(&samples("2026-03-01 00:00:00", 24 * 60, 20.0)).unwrap();
    let mut worker =
        Figures::new(Arc::new(cfg.clone()), Store::open_secondary(&db).unwrap(), Arc::new(Live::default()));
    worker.run_once(parse_local("2026-03-02 00:01:00").unwrap()).unwrap();
    let days = store.records("kiln", Level::Day, 0, i64::MAX, 8 * 3600).unwrap();
    let so2 = days.iter().find(|d| d.factor == "a21026").expect("day record");
    assert_eq!(
        (so2.start, so2.stat.n_valid, so2.stat.zs_avg),
        (parse_local("2026-03-01 00:00:00").unwrap(), 24, Some(27.5))
    );
    drop(store);

    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(&cfg_path, format!("[site]\nmn = \"FIG1\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n[[outlet]]\nname = \"kiln\"\nprofile = \"cement-kiln\"\nunlimited = [\"a21002\", \"a34013\"]\n[[device]]\nname = \"gas\"\nbus = \"b\"\nslave = 1\noutlet = \"kiln\"\n[[device.point]]\nfactor = \"a21026\"\naddress = 0\ntype = \"f32\"\n[[device.point]]\nfactor = \"a19001\"\naddress = 2\ntype = \"f32\"\n", db.display())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
        .args(["report", "--month", "2026-03", "--format", "json", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["outlet"], "kiln");
    assert_eq!(doc["month"], "2026-03");
    assert_eq!(doc["factors"]["a21026"]["valid_hours"], 24);
    assert_eq!(doc["factors"]["a21026"]["compliance_rate"], 1.0);
    // The rest of March has no data: those hours are not valid (B), outside the denominator.
    assert_eq!(doc["valid_hours"], 24);
    assert_eq!(doc["meets_95"], true);
    assert_eq!(doc["hours"][0]["start"], "2026-03-01 00:00");
}

/// A closed day without data gives no day record and is evaluated, and logged, once; a day with
/// data is logged once with its records.
#[test]
fn day_records_are_logged_only_when_some_were_computed() {
    let logs = crate::support::capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let cfg = cfg(&db);
    let (mut store, _) = Store::open(&db).unwrap();
    // Data today only: yesterday (the first day the worker looks at) has none.
    store.insert(&samples("2026-03-02 08:00:00", 60, 20.0)).unwrap();
    let mut worker =
        Figures::new(Arc::new(cfg.clone()), Store::open_secondary(&db).unwrap(), Arc::new(Live::default()));
    for minute in ["2026-03-02 09:01:10", "2026-03-02 09:02:10", "2026-03-02 09:03:10"] {
        worker.run_once(parse_local(minute).unwrap()).unwrap();
    }
    assert_eq!(logs.count("Day records computed."), 0, "{}", logs.text());
    assert_eq!(logs.count("No data for a closed day"), 1, "{}", logs.text());
    // The next day closes: its records are computed and logged, once.
    for minute in ["2026-03-03 00:01:10", "2026-03-03 00:02:10"] {
        worker.run_once(parse_local(minute).unwrap()).unwrap();
    }
    assert_eq!(logs.count("Day records computed."), 1, "{}", logs.text());
    let off = 8 * 3600;
    assert!(!store.records("kiln", Level::Day, 0, i64::MAX, off).unwrap().is_empty());
}
