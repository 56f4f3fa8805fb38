//! The daemon's statistics worker and `report`, on a real store: minutes sealed by the writer
//! and handed to the worker become records; late data recomputes what it touched; a restart
//! catches up from the stored records; the records the worker builds minute by minute are the
//! ones a recompute from the samples gives; day records; the open hour published.

use std::sync::Arc;
use std::time::Duration;

use cems_gateway::compute::Level;
use cems_gateway::compute::evaluate::Record;
use cems_gateway::config::Config;
use cems_gateway::figures::{Figures, evaluate_range};
use cems_gateway::live::Live;
use cems_gateway::model::{Flag, Sample};
use cems_gateway::store::Store;
use cems_gateway::store::seal::{Handover, Sealer};
use cems_gateway::time::{Local, Offset};

use crate::support::kiln_config;

const OFFSET: Offset = Offset::CHINA;
const SETTLE: Duration = Duration::from_secs(5);

fn cfg(db: &std::path::Path) -> Config {
    kiln_config(db, "FIG1", "")
}

/// Plant-local seconds of `YYYY-MM-DD HH:MM:SS`.
fn parse_local(local: &str) -> i64 {
    Local::parse_display(local).expect("a local time").secs()
}

/// Local plant time → Unix ms with the +8 h offset.
fn utc_ms(local: &str) -> i64 {
    OFFSET.utc_ms(parse_local(local))
}

fn sample(ts_ms: i64, factor: &str, value: Option<f64>, flag: Flag) -> Sample {
    Sample { ts_ms, device: Arc::from("gas"), factor: Arc::from(factor), value, flag }
}

/// 12 samples a minute of SO2 `so2` at 13 % O2 over `[from, from + minutes)`.
fn samples(from: &str, minutes: i64, so2: f64) -> Vec<Sample> {
    let start = utc_ms(from);
    let mut out = Vec::new();
    for i in 0..minutes * 12 {
        let ts = start + i * 5000;
        for (factor, value) in [("a21026", so2), ("a19001", 13.0)] {
            out.push(sample(ts, factor, Some(value), Flag::N));
        }
    }
    out
}

/// The writer's side (the store and its sealer) and the worker, driven by hand.
struct Pipeline {
    store: Store,
    sealer: Sealer,
    worker: Figures,
    live: Arc<Live>,
}

impl Pipeline {
    fn open(db: &std::path::Path, cfg: &Config) -> Pipeline {
        let (mut store, _) = Store::open(db).unwrap();
        let handover = Arc::new(Handover::new([Arc::from("gas")]));
        let sealer = Sealer::start(&mut store, SETTLE, handover.clone()).unwrap();
        let live = Arc::new(Live::default());
        let worker = Figures::new(
            Arc::new(cfg.clone()),
            Store::open_secondary(db).unwrap(),
            live.clone(),
            handover.clone(),
        );
        Pipeline { store, sealer, worker, live }
    }

    /// The writer seals what has settled at `now` (local), and the worker takes it.
    fn at(&mut self, now: &str) {
        self.sealer.tick(&mut self.store, utc_ms(now)).unwrap();
        self.worker.round(Duration::ZERO).unwrap();
    }

    fn records(&self, level: Level) -> Vec<Record> {
        self.store.records("kiln", level, 0, i64::MAX, OFFSET).unwrap()
    }
}

fn so2_at<'a>(records: &'a [Record], local: &str) -> &'a Record {
    let start = parse_local(local);
    records
        .iter()
        .find(|r| r.factor == "a21026" && r.start == start)
        .unwrap_or_else(|| panic!("no SO2 record at {local}"))
}

#[test]
fn sealed_minutes_become_records_late_data_recomputes_and_a_restart_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let cfg = cfg(&db);
    let mut p = Pipeline::open(&db, &cfg);
    p.store.insert(&samples("2026-03-01 08:00:00", 120, 20.0)).unwrap();
    p.store.insert(&samples("2026-03-01 10:00:00", 30, 40.0)).unwrap();
    p.at("2026-03-01 10:30:10");

    let hours = p.records(Level::Hour);
    let so2: Vec<_> = hours.iter().filter(|h| h.factor == "a21026").collect();
    // The first start computes today's hours that have samples: 10:00 is still open.
    assert_eq!(
        so2.iter().map(|h| h.start).collect::<Vec<_>>(),
        [8, 9].map(|h| parse_local(&format!("2026-03-01 0{h}:00:00")))
    );
    assert!(so2.iter().all(|h| h.stat.zs_avg == Some(27.5)), "20 × 11/8");
    let minutes = p.records(Level::Minute);
    assert_eq!(
        minutes.iter().filter(|m| m.factor == "a21026").count(),
        150,
        "08:00–10:29, sealed minutes only"
    );
    // The open hour's running figures: 30 sealed minutes at 40 → 55 converted, not yet valid (< 45).
    let open = &p.live.open_hours()["kiln"];
    assert_eq!(open.start, parse_local("2026-03-01 10:00:00"));
    assert_eq!((open.stats["a21026"].zs_avg, open.stats["a21026"].n_valid), (Some(55.0), 30));
    assert_eq!(open.limits["a21026"], 35.0);

    // Late data for 09:00–09:59 at a higher value: the writer seals those minutes again and
    // the worker recomputes them and the closed hour above.
    let late_start = utc_ms("2026-03-01 09:00:02");
    let late: Vec<Sample> =
        (0..720).map(|i| sample(late_start + i * 5000, "a21026", Some(44.0), Flag::N)).collect();
    p.store.insert(&late).unwrap();
    p.at("2026-03-01 10:30:20");
    let hours = p.records(Level::Hour);
    let h9 = so2_at(&hours, "2026-03-01 09:00:00");
    // Each minute now holds 12 samples at 20 and 12 at 44 → 32 → 32 × 11/8 = 44.
    assert_eq!(h9.stat.zs_avg, Some(44.0));
    assert!(h9.exceeded, "44 > 35");
    assert_eq!(so2_at(&p.records(Level::Minute), "2026-03-01 09:17:00").stat.n_total, 24);

    // A restart: a fresh writer and worker pick up from the chain and the stored records.
    drop(p);
    let mut p = Pipeline::open(&db, &cfg);
    p.at("2026-03-01 11:00:10");
    let hours = p.records(Level::Hour);
    assert_eq!(so2_at(&hours, "2026-03-01 09:00:00").stat.zs_avg, Some(44.0));
    let h10 = so2_at(&hours, "2026-03-01 10:00:00");
    assert_eq!((h10.stat.valid, h10.stat.n_valid), (false, 30), "only 30 minutes: not valid");
    let status = p.store.verify_chain(None, None).unwrap();
    assert!(status.verified, "{status:?}");
    let samples = status.samples.unwrap();
    assert_eq!((samples.minutes, samples.pending), (150, 0), "every minute sealed, the late ones again");
}

/// Poll `i` (every 5 s) of a plant whose values move, with the things that happen in a plant:
/// a calibration, a lost poll, O2 near air for a while, and a stretch without any data.
fn plant_poll(start_ms: i64, i: i64) -> Vec<Sample> {
    let ts = start_ms + i * 5000;
    let minute = i / 12;
    if (95..115).contains(&minute) {
        return Vec::new();
    }
    let so2 = 15.0 + (i % 37) as f64 * 0.7 + (minute % 7) as f64;
    let o2 = if (140..146).contains(&minute) { 20.7 } else { 9.0 + (i % 11) as f64 * 0.3 };
    let flag = match i % 300 {
        0..=5 => Flag::C,
        150 => Flag::B,
        _ => Flag::N,
    };
    let value = |v: f64| if flag == Flag::B { None } else { Some(v) };
    vec![sample(ts, "a21026", value(so2), flag), sample(ts, "a19001", value(o2), flag)]
}

#[test]
fn records_built_minute_by_minute_equal_a_recompute_from_the_samples() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("eq.db");
    let cfg = cfg(&db);
    let mut p = Pipeline::open(&db, &cfg);
    let start_ms = utc_ms("2026-03-01 07:58:00");
    let polls = 12 * 60 * 4;
    // The writer commits every second and seals each minute 5 s after it ends; the worker takes
    // what is handed over each time. A few polls arrive two minutes late.
    let mut held = Vec::new();
    for i in 0..polls {
        let poll = plant_poll(start_ms, i);
        if i % 173 == 7 {
            held.push((i + 24, poll));
        } else {
            p.store.insert(&poll).unwrap();
        }
        while let Some(pos) = held.iter().position(|(due, _)| *due <= i) {
            let (_, late) = held.remove(pos);
            p.store.insert(&late).unwrap();
        }
        let now_ms = start_ms + i * 5000 + 4000;
        p.sealer.tick(&mut p.store, now_ms).unwrap();
        p.worker.round(Duration::ZERO).unwrap();
    }
    for (_, late) in held {
        p.store.insert(&late).unwrap();
    }
    p.sealer.finish(&mut p.store).unwrap();
    p.worker.round(Duration::ZERO).unwrap();

    // One evaluation of the stored samples, as `report` does, with the worker's warm-up.
    let from = parse_local("2026-03-01 08:00:00");
    let to = parse_local("2026-03-01 11:58:00");
    let outlet = &cfg.outlets[0];
    let mut minutes = Vec::new();
    let (outcome, _) = evaluate_range(&p.store, &cfg, outlet, from - 120, to, |r| {
        if r.start >= from && r.start + 60 <= to {
            minutes.push(r.clone());
        }
    })
    .unwrap();
    let stored_minutes: Vec<Record> =
        p.store.records("kiln", Level::Minute, OFFSET.utc_ms(from), OFFSET.utc_ms(to), OFFSET).unwrap();
    minutes.sort_by(|a, b| (a.start, &a.factor).cmp(&(b.start, &b.factor)));
    assert!(minutes.len() > 400, "{}", minutes.len());
    assert_eq!(stored_minutes, minutes, "minute records");
    let hours: Vec<Record> =
        outcome.hours.into_iter().filter(|h| h.start >= from && h.start + 3600 <= to).collect();
    let stored_hours: Vec<Record> = p
        .store
        .records("kiln", Level::Hour, OFFSET.utc_ms(from), OFFSET.utc_ms(to - 3600) + 1, OFFSET)
        .unwrap();
    assert_eq!(hours.len(), 6, "three closed hours of two factors");
    assert_eq!(stored_hours, hours, "hour records");
    // Some hours are invalid, and the calibrations and the lost polls show in minute flags.
    assert!(
        stored_hours.iter().any(|h| !h.stat.valid) && stored_hours.iter().any(|h| h.stat.valid),
        "{stored_hours:#?}"
    );
    assert!(stored_minutes.iter().any(|m| m.stat.flag == Flag::C));
    let status = p.store.verify_chain(None, None).unwrap();
    assert!(status.verified, "{status:?}");
}

/// An operator's mark on sealed samples, through the daemon's path (the sealer hands minutes
/// to the worker): the periods it covers are recomputed as F, the minutes after it are built by
/// the restarted stream with the mark, the records still equal one evaluation of the samples
/// (which applies the marks too), and `verify` finds the chain, every record and every sealed
/// minute intact: a recompute rewrites records, never samples.
#[test]
fn a_mark_recomputes_what_it_covers_and_the_chain_with_its_samples_stays_intact() {
    use cems_gateway::compute::marks::{Kind, Mark, Rules};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let cfg = cfg(&db);
    let mut p = Pipeline::open(&db, &cfg);
    p.store.insert(&samples("2026-03-01 08:00:00", 150, 20.0)).unwrap();
    p.at("2026-03-01 10:30:10");
    assert_eq!(so2_at(&p.records(Level::Hour), "2026-03-01 09:00:00").stat.flag, Flag::N);

    // The kiln stopped at 09:00 and is still stopped: an open mark, added at 10:30.
    let fmt = |ms: i64| ms.to_string();
    let rules = Rules { now_ms: utc_ms("2026-03-01 10:30:15"), window_ms: 72 * 3_600_000, fmt: &fmt };
    let mark = Mark {
        id: 0,
        outlet: "kiln".into(),
        kind: Kind::Stopped,
        start_ms: utc_ms("2026-03-01 09:00:00"),
        end_ms: None,
        reason: "kiln stopped".into(),
        who: "Wang".into(),
    };
    Store::open_secondary(&db).unwrap().add_mark(mark, rules, "cli").unwrap();
    // More samples come and the worker takes them: the mark is applied in the same round, to
    // the closed periods by a recompute and to the new minutes by the stream.
    p.store.insert(&samples("2026-03-01 10:30:00", 40, 20.0)).unwrap();
    p.at("2026-03-01 11:10:10");

    let hours = p.records(Level::Hour);
    assert_eq!(so2_at(&hours, "2026-03-01 08:00:00").stat.flag, Flag::N, "before the mark");
    assert_eq!(so2_at(&hours, "2026-03-01 09:00:00").stat.flag, Flag::F, "covered by the mark");
    let minutes = p.records(Level::Minute);
    assert_eq!(so2_at(&minutes, "2026-03-01 08:59:00").stat.flag, Flag::N, "before the mark");
    assert_eq!(so2_at(&minutes, "2026-03-01 10:14:00").stat.flag, Flag::F, "recomputed");
    assert_eq!(
        so2_at(&minutes, "2026-03-01 11:05:00").stat.flag,
        Flag::F,
        "built by the stream with the mark"
    );
    assert_eq!(so2_at(&hours, "2026-03-01 10:00:00").stat.flag, Flag::F);

    // The same records as one evaluation of the stored samples with the marks.
    let from = parse_local("2026-03-01 08:00:00");
    let to = parse_local("2026-03-01 11:09:00");
    let mut expected = Vec::new();
    evaluate_range(&p.store, &cfg, &cfg.outlets[0], from - 120, to, |r| {
        if r.start >= from && r.start + 60 <= to {
            expected.push(r.clone());
        }
    })
    .unwrap();
    expected.sort_by(|a, b| (a.start, &a.factor).cmp(&(b.start, &b.factor)));
    let stored: Vec<Record> =
        p.store.records("kiln", Level::Minute, OFFSET.utc_ms(from), OFFSET.utc_ms(to), OFFSET).unwrap();
    assert_eq!(stored, expected, "minute records");

    let status = p.store.verify_chain(None, None).unwrap();
    assert!(status.verified, "{status:?}");
    let samples = status.samples.unwrap();
    assert!(samples.faults.is_empty(), "{:?}", samples.faults);
    assert_eq!(samples.minutes, 190, "every sealed minute checked, none broken");
}

#[test]
fn day_records_after_midnight_and_report_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let cfg = cfg(&db);
    let mut p = Pipeline::open(&db, &cfg);
    p.store.insert(&samples("2026-03-01 00:00:00", 24 * 60, 20.0)).unwrap();
    p.at("2026-03-02 00:01:00");
    let days = p.records(Level::Day);
    let so2 = days.iter().find(|d| d.factor == "a21026").expect("day record");
    assert_eq!(
        (so2.start, so2.stat.n_valid, so2.stat.zs_avg),
        (parse_local("2026-03-01 00:00:00"), 24, Some(27.5))
    );
    drop(p);

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
    // Nothing handed over: the worker reads the store, as the demo's simulated past does.
    let handover = Arc::new(Handover::new([]));
    let mut worker = Figures::new(
        Arc::new(cfg.clone()),
        Store::open_secondary(&db).unwrap(),
        Arc::new(Live::default()),
        handover,
    );
    for minute in ["2026-03-02 09:01:10", "2026-03-02 09:02:10", "2026-03-02 09:03:10"] {
        worker.run_once(parse_local(minute)).unwrap();
    }
    assert_eq!(logs.count("Day records computed."), 0, "{}", logs.text());
    assert_eq!(logs.count("No data for a closed day"), 1, "{}", logs.text());
    // The next day closes: its records are computed and logged, once.
    for minute in ["2026-03-03 00:01:10", "2026-03-03 00:02:10"] {
        worker.run_once(parse_local(minute)).unwrap();
    }
    assert_eq!(logs.count("Day records computed."), 1, "{}", logs.text());
    let off = Offset::CHINA;
    assert!(!store.records("kiln", Level::Day, 0, i64::MAX, off).unwrap().is_empty());
}
