//! The audit log: entries chained in the same transactions as records, analyzer states and
//! retention; SQL edits refused by triggers; edits made with the `sqlite3` CLI (records, or the
//! log itself after dropping the triggers) reported by `cems-gateway verify` with the first
//! broken link; the size cap never prunes records.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cems_gateway::compute::Level;
use cems_gateway::model::{Flag, Sample};
use cems_gateway::store::audit::AuditKind;
use cems_gateway::store::seal::{Handover, Sealer};
use cems_gateway::store::{Retention, Store};

use crate::support::record;

const OFFSET: i64 = 8 * 3600;

fn sample(ts_ms: i64, device: &str, factor: &str, flag: Flag) -> Sample {
    Sample { ts_ms, device: Arc::from(device), factor: Arc::from(factor), value: Some(1.0), flag }
}

/// A buffer with ten minutes and an hour of two factors, from 2026-01-01 08:00 plant time
/// (00:00 UTC).
fn seeded(dir: &Path) -> (PathBuf, PathBuf) {
    let db = dir.join("a.db");
    let (mut store, _) = Store::open(&db).unwrap();
    let base = 1_767_225_600 + OFFSET;
    let mut records = Vec::new();
    for i in 0..10 {
        for (factor, v) in [("a21026", 10.0), ("a21002", 30.0)] {
            records.push(record(Level::Minute, base + i * 60, factor, v + i as f64));
        }
    }
    store.upsert_records("kiln", &records, OFFSET).unwrap();
    store.upsert_records("kiln", &[record(Level::Hour, base, "a21026", 14.5)], OFFSET).unwrap();
    let cfg = dir.join("gw.toml");
    let text = cems_gateway::config::DEMO_CONFIG
        .replace("path = \"cems-demo.db\"", &format!("path = \"{}\"", db.display()));
    std::fs::write(&cfg, text).unwrap();
    (db, cfg)
}

fn verify(cfg: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
        .arg("verify")
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sqlite3(db: &Path, sql: &str) -> std::process::Output {
    Command::new("sqlite3").arg(db).arg(sql).output().expect("the sqlite3 CLI (apt package sqlite3)")
}

fn entries(db: &Path) -> i64 {
    Store::open_read_only(db).unwrap().chain_head().unwrap().map_or(0, |(seq, _)| seq)
}

#[test]
fn an_intact_buffer_verifies_with_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = seeded(dir.path());
    // Ten minute periods and one hour period: one entry each.
    assert_eq!(entries(&db), 11);
    let (code, out) = verify(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("audit chain intact: 11 entries, 11 record periods checked; head seq 11 hash "),
        "{out}"
    );
}

#[test]
fn rewriting_a_period_chains_only_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = seeded(dir.path());
    let (mut store, _) = Store::open(&db).unwrap();
    let base = 1_767_225_600 + OFFSET;
    // The figures worker rewrites recent periods every minute: the same content adds nothing.
    store.upsert_records("kiln", &[record(Level::Minute, base, "a21026", 10.0)], OFFSET).unwrap();
    assert_eq!(entries(&db), 11);
    // A late sample changes a minute: one new entry, and the chain still verifies.
    store.upsert_records("kiln", &[record(Level::Minute, base, "a21026", 10.5)], OFFSET).unwrap();
    assert_eq!(entries(&db), 12);
    assert_eq!(verify(&cfg).0, 0);
}

#[test]
fn a_record_edited_with_the_sqlite3_cli_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = seeded(dir.path());
    let start_ms = 1_767_225_600_000i64 + 3 * 60_000;
    let out = sqlite3(
        &db,
        &format!("UPDATE record SET avg = 1.0 WHERE level = 0 AND start = {start_ms} AND factor = 'a21026';"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, out) = verify(&cfg);
    assert_eq!(code, 1, "{out}");
    // The fourth minute was the fourth entry.
    assert!(
        out.contains(&format!(
            "audit chain BROKEN at seq 4 (record 0/{start_ms}/kiln): the record rows differ"
        )),
        "{out}"
    );
}

#[test]
fn records_inserted_or_deleted_by_hand_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = seeded(dir.path());
    let hour_ms = 1_767_225_600_000i64;
    let out = sqlite3(&db, &format!("DELETE FROM record WHERE level = 1 AND start = {hour_ms};"));
    assert!(out.status.success());
    let (code, out) = verify(&cfg);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("seq 11 (record 1/{hour_ms}/kiln): the chained record rows are gone")),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = seeded(dir.path());
    let out = sqlite3(
        &db,
        "INSERT INTO record (level, outlet, factor, start, n_total, n_valid, avg, flag, exceeded) VALUES (2, 'kiln', 'a21026', 0, 1, 1, 3.0, 0, 0);",
    );
    assert!(out.status.success());
    let (code, out) = verify(&cfg);
    assert_eq!(code, 1);
    assert!(out.contains("record 2/0/kiln: record rows that were never chained"), "{out}");
}

#[test]
fn the_log_refuses_sql_edits_and_catches_them_once_the_triggers_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = seeded(dir.path());
    for sql in ["UPDATE audit SET detail = 'x' WHERE seq = 5;", "DELETE FROM audit WHERE seq = 5;"] {
        let out = sqlite3(&db, sql);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("append-only"));
    }
    assert_eq!(verify(&cfg).0, 0);

    // Someone drops the triggers and rewrites an entry (and the record it vouches for).
    let out = sqlite3(
        &db,
        "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; \
         UPDATE audit SET detail = 'forged' WHERE seq = 5;",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, out) = verify(&cfg);
    assert_eq!(code, 1);
    assert!(out.contains("BROKEN at seq 5 (record 0/"), "{out}");
    assert!(out.contains("does not match its hash"), "{out}");

    // Deleting an entry instead breaks the link of the next one.
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = seeded(dir.path());
    sqlite3(&db, "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 7;");
    let (code, out) = verify(&cfg);
    assert_eq!(code, 1);
    assert!(out.contains("BROKEN at seq 8 (") && out.contains("does not follow entry 7"), "{out}");
}

#[test]
fn analyzer_states_config_and_platform_entries_are_chained() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let (mut store, _) = Store::open(&db).unwrap();
    // N, N, then calibration on one factor (C wins the poll), T alone counts as normal.
    let polls = [
        vec![sample(1_000, "gas", "a21026", Flag::N), sample(1_000, "gas", "a19001", Flag::N)],
        vec![sample(2_000, "gas", "a21026", Flag::T), sample(2_000, "gas", "a19001", Flag::N)],
        vec![sample(3_000, "gas", "a21026", Flag::C), sample(3_000, "gas", "a19001", Flag::N)],
        vec![sample(4_000, "gas", "a21026", Flag::N), sample(4_000, "gas", "a19001", Flag::N)],
    ];
    for p in &polls[..2] {
        store.insert(p).unwrap();
    }
    drop(store);
    // The state survives a reopen: no new entry for the same state.
    let (mut store, _) = Store::open(&db).unwrap();
    store.insert(&polls[2..].concat()).unwrap();
    store.audit(AuditKind::Config, "start", "sha256=00").unwrap();
    store.audit(AuditKind::Platform, "province", "CN=1012 QN=1").unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let got: Vec<(String, String, String)> = conn
        .prepare("SELECT kind, subject, detail FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let got: Vec<(&str, &str, &str)> =
        got.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    assert_eq!(
        got,
        vec![
            // Series are chained when created: samples refer to them by number.
            ("series", "1", "\"gas\" \"a21026\""),
            ("series", "2", "\"gas\" \"a19001\""),
            ("analyzer", "gas", "-->N at_ms=1000"),
            ("analyzer", "gas", "N->C at_ms=3000"),
            ("analyzer", "gas", "C->N at_ms=4000"),
            ("config", "start", "sha256=00"),
            ("platform", "province", "CN=1012 QN=1"),
        ]
    );
    let status = store.verify_chain(None, None).unwrap();
    assert!(status.verified && status.entries == 7 && status.head_seq == Some(7), "{status:?}");
}

#[test]
fn retention_by_age_is_chained_and_the_size_cap_never_prunes_records() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = seeded(dir.path());
    let (mut store, _) = Store::open(&db).unwrap();
    let t0 = 1_767_225_600_000i64;
    let samples: Vec<Sample> = (0..200_000).map(|i| sample(t0 + i * 10, "gas", "a21026", Flag::N)).collect();
    store.insert(&samples).unwrap();
    let records = |s: &Store| s.records("kiln", Level::Minute, 0, i64::MAX, OFFSET).unwrap().len();
    assert_eq!(records(&store), 20);
    // Over the size cap: the oldest samples go, every record stays.
    let limit = store.used_bytes().unwrap() / 2;
    let far_future = Retention { max_age: Duration::from_secs(3650 * 86_400), max_bytes: limit };
    let deleted = store.enforce_retention(far_future, t0 + 2_000_000).unwrap();
    assert!(deleted > 0 && store.used_bytes().unwrap() <= limit);
    assert_eq!(store.samples(0, i64::MAX).unwrap().first().map(|s| s.ts_ms > t0), Some(true));
    assert_eq!(records(&store), 20, "no record is pruned for size");
    assert_eq!(verify(&cfg).0, 0);
    // By age: the first five minutes go, with a retention entry that explains their absence.
    let age = Retention { max_age: Duration::from_secs(3600), max_bytes: u64::MAX };
    store.enforce_retention(age, t0 + 3_600_000 + 5 * 60_000).unwrap();
    assert_eq!(records(&store), 10);
    let (code, out) = verify(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 record periods checked"), "{out}");
}

#[test]
fn verify_takes_a_range_and_refuses_a_bad_date() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, cfg) = seeded(dir.path());
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
            .arg("verify")
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // Entries are written now; the records are of 2026-01-01 08:00-08:10 plant time: five
    // minutes and the hour start in the range.
    let (code, out) = run(&["--from", "2026-01-01 08:00:00", "--to", "2026-01-01 08:05:00"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("0 entries, 6 record periods checked"), "{out}");
    let (code, out) = run(&["--from", "2000-01-01"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("11 entries, 11 record periods checked"), "{out}");
    assert_eq!(run(&["--from", "01/01/2026"]).0, Some(64));
}

/// 2026-01-01 00:00 UTC.
const T0: i64 = 1_767_225_600_000;

/// A buffer whose raw samples are sealed: ten minutes of two factors every 5 s from `T0`, but
/// none in the sixth minute (00:05), sealed by the writer's sealer at 00:10:06.
fn sealed(dir: &Path) -> (PathBuf, PathBuf) {
    let (db, cfg) = seeded(dir);
    let (mut store, _) = Store::open(&db).unwrap();
    let handover = Arc::new(Handover::new([]));
    let mut sealer = Sealer::start(&mut store, Duration::from_secs(5), handover).unwrap();
    let mut samples = Vec::new();
    for i in (0..120).filter(|i| i / 12 != 5) {
        for factor in ["a21026", "a19001"] {
            samples.push(sample(T0 + i * 5000, "gas", factor, Flag::N));
        }
    }
    store.insert(&samples).unwrap();
    sealer.tick(&mut store, T0 + 10 * 60_000 + 6000).unwrap();
    (db, cfg)
}

#[test]
fn sealed_samples_verify_and_the_output_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = sealed(dir.path());
    let (code, out) = verify(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("raw samples: 9 sealed minutes checked, 0 pruned by retention, 0 not sealed yet"),
        "{out}"
    );
    // One entry per sealed minute with rows, one per series, one for the analyzer's first state.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let kinds: Vec<(String, i64)> = conn
        .prepare("SELECT kind, count(*) FROM audit WHERE seq > 11 GROUP BY kind ORDER BY kind")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kinds, [("analyzer".into(), 1), ("samples".into(), 9), ("series".into(), 2)]);
    let detail: String = conn
        .query_row(
            "SELECT detail FROM audit WHERE kind = 'samples' AND subject = '2026-01-01T00:03Z'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(detail.starts_with("n=24 sha256="), "{detail}");
}

#[test]
fn a_raw_sample_edited_deleted_or_inserted_with_the_sqlite3_cli_is_named() {
    let minute3 = T0 + 3 * 60_000;
    let cases = [
        (
            format!("UPDATE sample SET value = 99.0 WHERE ts = {} AND series = 1;", minute3 + 10_000),
            "(samples 2026-01-01T00:03Z): the sample rows differ from their seal (24 rows sealed, 24 found): rows edited outside the gateway",
        ),
        (
            format!("DELETE FROM sample WHERE ts = {} AND series = 2;", minute3 + 10_000),
            "(samples 2026-01-01T00:03Z): the sample rows differ from their seal (24 rows sealed, 23 found): rows deleted outside the gateway",
        ),
        (
            format!("INSERT INTO sample (ts, series, value, flag) VALUES ({}, 1, 5.0, 0);", minute3 + 2500),
            "(samples 2026-01-01T00:03Z): the sample rows differ from their seal (24 rows sealed, 25 found): rows inserted outside the gateway",
        ),
        (
            // The flag alone, from N to C: still an edit.
            format!("UPDATE sample SET flag = 5 WHERE ts = {} AND series = 2;", minute3),
            "rows edited outside the gateway",
        ),
        (
            // A minute the gateway stored nothing in, older than the newest seal.
            format!(
                "INSERT INTO sample (ts, series, value, flag) VALUES ({}, 1, 5.0, 0);",
                T0 + 5 * 60_000 + 1000
            ),
            "samples 2026-01-01T00:05Z: sample rows in a minute that was never sealed: inserted outside the gateway",
        ),
        (
            format!("DELETE FROM sample WHERE ts >= {minute3} AND ts < {};", minute3 + 60_000),
            "(samples 2026-01-01T00:03Z): the 24 sealed sample rows are gone and no retention explains it: deleted outside the gateway",
        ),
        (
            "UPDATE series SET factor = 'a21002' WHERE id = 1;".to_string(),
            "(series 1): the series differs from its chained device and factor: edited outside the gateway",
        ),
    ];
    for (sql, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (db, cfg) = sealed(dir.path());
        let out = sqlite3(&db, &sql);
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        let (code, out) = verify(&cfg);
        assert_eq!(code, 1, "{sql}: {out}");
        assert!(out.contains("audit chain BROKEN at ") && out.contains(expected), "{sql}:\n{out}");
    }
}

#[test]
fn pruned_sealed_minutes_verify_as_pruned_and_a_prune_outside_the_rules_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = sealed(dir.path());
    let (mut store, _) = Store::open(&db).unwrap();
    // By age at 01:02:30 with an hour's retention: 00:00 and 00:01 go; 00:02 is kept whole.
    let age = Retention { max_age: Duration::from_secs(3600), max_bytes: u64::MAX };
    let deleted = store.enforce_retention(age, T0 + 62 * 60_000 + 30_000).unwrap();
    assert_eq!(deleted, 2 * 24);
    let (code, out) = verify(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("raw samples: 7 sealed minutes checked, 2 pruned by retention"), "{out}");
    // By size: whole minutes again, the oldest first, with the size that allowed it.
    let limit = store.used_bytes().unwrap() - 1;
    store
        .enforce_retention(Retention { max_age: Duration::from_secs(3650 * 86_400), max_bytes: limit }, T0)
        .unwrap();
    assert_eq!(store.samples(0, i64::MAX).unwrap().first().map(|s| s.ts_ms % 60_000), Some(0));
    let (code, out) = verify(&cfg);
    assert_eq!(code, 0, "{out}");
    // Deleting the oldest remaining minute by hand is not a prune.
    let oldest = store.samples(0, i64::MAX).unwrap()[0].ts_ms;
    sqlite3(&db, &format!("DELETE FROM sample WHERE ts < {};", oldest + 60_000));
    let (code, out) = verify(&cfg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sealed sample rows are gone and no retention explains it"), "{out}");

    // A retention entry whose recorded rule does not allow its range (an hour's retention,
    // cutting at the time it was written).
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = sealed(dir.path());
    let (mut store, _) = Store::open(&db).unwrap();
    let now = cems_gateway::model::now_ms();
    store.audit(AuditKind::Retention, "sample", &format!("ts<{now} rows=0 rule=age max_age_s=3600")).unwrap();
    let (code, out) = verify(&cfg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("(retention sample): a prune outside the retention rules"), "{out}");
}

#[test]
fn a_buffer_from_before_samples_were_chained_keeps_its_samples_as_unchained() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v4.db");
    {
        // The layout and rows an older gateway left: schema version 4, no seals.
        let conn = rusqlite::Connection::open(&db).unwrap();
        for sql in &cems_gateway::store::schema::MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO series (id, device, factor) VALUES (1, 'gas', 'a21026');
             INSERT INTO sample (ts, series, value, flag) VALUES ({T0}, 1, 1.0, 0), ({}, 1, 2.0, 0);",
            T0 + 90_000
        ))
        .unwrap();
    }
    let (mut store, _) = Store::open(&db).unwrap();
    let handover = Arc::new(Handover::new([]));
    let mut sealer = Sealer::start(&mut store, Duration::from_secs(5), handover).unwrap();
    store.insert(&[sample(T0 + 150_000, "gas", "a21026", Flag::N)]).unwrap();
    sealer.tick(&mut store, T0 + 200_000).unwrap();
    let status = store.verify_chain(None, None).unwrap();
    assert!(status.verified, "{status:?}");
    let samples = status.samples.unwrap();
    assert_eq!((samples.minutes, samples.unchained), (1, 2), "00:02 sealed; 00:00 and 00:01 from before");
}
