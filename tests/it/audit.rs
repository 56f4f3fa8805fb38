//! The audit log: entries chained in the same transactions as records, analyzer states and
//! retention; `cems-gateway verify` on an intact buffer and over a range; the size cap never
//! prunes records. (Edits made with the `sqlite3` CLI are in `tests/peers/sqlite3_cli.rs`.)

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cems_gateway::compute::Level;
use cems_gateway::model::{Flag, Sample};
use cems_gateway::store::audit::AuditKind;
use cems_gateway::store::seal::{Handover, Sealer};
use cems_gateway::store::{Retention, Store};
use cems_gateway::time::Offset;

use crate::support::{SEALED_T0, audit_buffer, record, sealed_buffer, verify, verify_with};

const OFFSET: Offset = Offset::CHINA;

fn sample(ts_ms: i64, device: &str, factor: &str, flag: Flag) -> Sample {
    Sample { ts_ms, device: Arc::from(device), factor: Arc::from(factor), value: Some(1.0), flag }
}

fn entries(db: &Path) -> i64 {
    Store::open_read_only(db).unwrap().chain_head().unwrap().map_or(0, |(seq, _)| seq)
}

#[test]
fn an_intact_buffer_verifies_with_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = audit_buffer(dir.path());
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
    let (db, cfg) = audit_buffer(dir.path());
    let (mut store, _) = Store::open(&db).unwrap();
    let base = OFFSET.local_secs(1_767_225_600_000);
    // The figures worker rewrites recent periods every minute: the same content adds nothing.
    store.upsert_records("kiln", &[record(Level::Minute, base, "a21026", 10.0)], OFFSET).unwrap();
    assert_eq!(entries(&db), 11);
    // A late sample changes a minute: one new entry, and the chain still verifies.
    store.upsert_records("kiln", &[record(Level::Minute, base, "a21026", 10.5)], OFFSET).unwrap();
    assert_eq!(entries(&db), 12);
    assert_eq!(verify(&cfg).0, 0);
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
    let (db, cfg) = audit_buffer(dir.path());
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

/// An officer's copy of the buffer, verified on a laptop: `--db` alone, no configuration (the
/// plant time comes from the buffer when the gateway recorded it, else UTC+8, said so); a
/// missing file is exit 74, a command without a buffer a usage error.
#[test]
fn verify_needs_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = audit_buffer(dir.path());
    let (code, out) = verify_with(&["--db".as_ref(), db.as_os_str()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("audit chain intact: 11 entries, 11 record periods checked; head seq 11 hash "),
        "{out}"
    );
    assert!(out.contains("note: plant time taken as UTC+8"), "{out}");
    // A gateway records its plant time (here UTC+5:30): ranges are read in it.
    Store::open(&db).unwrap().0.set_setting("*", cems_gateway::store::UTC_OFFSET_SETTING, "19800").unwrap();
    let (code, out) =
        verify_with(&["--db".as_ref(), db.as_os_str(), "--from".as_ref(), "2026-01-01 05:35:00".as_ref()]);
    assert_eq!(code, 0, "{out}");
    // 05:35 at UTC+5:30 is 00:05 UTC: the last five minutes, not the hour.
    assert!(out.contains("5 record periods checked") && !out.contains("note:"), "{out}");
    let (code, _) = verify_with(&["--db".as_ref(), dir.path().join("missing.db").as_os_str()]);
    assert_eq!(code, 74);
    let (code, _) = verify_with(&[]);
    assert_eq!(code, 2, "clap: --db or --config is required");
}

#[test]
fn verify_takes_a_range_and_refuses_a_bad_date() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, cfg) = audit_buffer(dir.path());
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

/// Raw samples sealed minute by minute: `verify` checks each sealed minute against its seal
/// and counts them; the chain holds one entry per sealed minute with rows and one per series.
#[test]
fn sealed_samples_verify_and_the_output_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = sealed_buffer(dir.path());
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

/// Retention that prunes sealed minutes stays verifiable (each pruned minute counted as pruned,
/// by age and by size), and a retention entry whose recorded rule does not allow its range is
/// reported. (Minutes deleted by hand are in `tests/peers/sqlite3_cli.rs`.)
#[test]
fn pruned_sealed_minutes_verify_as_pruned_and_a_prune_outside_the_rules_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = sealed_buffer(dir.path());
    let (mut store, _) = Store::open(&db).unwrap();
    // By age at 01:02:30 with an hour's retention: 00:00 and 00:01 go; 00:02 is kept whole.
    let age = Retention { max_age: Duration::from_secs(3600), max_bytes: u64::MAX };
    let deleted = store.enforce_retention(age, SEALED_T0 + 62 * 60_000 + 30_000).unwrap();
    assert_eq!(deleted, 2 * 24);
    let (code, out) = verify(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("raw samples: 7 sealed minutes checked, 2 pruned by retention"), "{out}");
    // By size: whole minutes again, the oldest first, with the size that allowed it.
    let limit = store.used_bytes().unwrap() - 1;
    store
        .enforce_retention(
            Retention { max_age: Duration::from_secs(3650 * 86_400), max_bytes: limit },
            SEALED_T0,
        )
        .unwrap();
    assert_eq!(store.samples(0, i64::MAX).unwrap().first().map(|s| s.ts_ms % 60_000), Some(0));
    let status = store.verify_chain(None, None).unwrap();
    assert!(status.verified, "{status:?}");
    let samples = status.samples.unwrap();
    assert!(samples.pruned > 2 && samples.minutes + samples.pruned == 9, "{samples:?}");

    // A retention entry whose recorded rule does not allow its range (an hour's retention,
    // cutting at the time it was written).
    let dir = tempfile::tempdir().unwrap();
    let (_db, cfg) = sealed_buffer(dir.path());
    let (mut store, _) = Store::open(&_db).unwrap();
    let now = cems_gateway::model::now_ms();
    store.audit(AuditKind::Retention, "sample", &format!("ts<{now} rows=0 rule=age max_age_s=3600")).unwrap();
    let (code, out) = verify(&cfg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("retention sample: a prune outside the retention rules"), "{out}");
}

/// A buffer written before samples were chained (at schema 4, before the audit log had
/// anything of samples, and at schema 6, the last before them) upgrades: its series are
/// chained, its samples counted as stored before the chain (never as inserted), and minutes
/// stored after the upgrade are sealed.
#[test]
fn a_buffer_from_before_samples_were_chained_keeps_its_samples_as_unchained() {
    for version in [4, 6] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("old.db");
        {
            // The layout and rows an older gateway left, no seals.
            let conn = rusqlite::Connection::open(&db).unwrap();
            for sql in &cems_gateway::store::schema::MIGRATIONS[..version] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", version as u32).unwrap();
            conn.execute_batch(&format!(
                "INSERT INTO series (id, device, factor) VALUES (1, 'gas', 'a21026');
                 INSERT INTO sample (ts, series, value, flag) VALUES ({SEALED_T0}, 1, 1.0, 0), ({}, 1, 2.0, 0);",
                SEALED_T0 + 90_000
            ))
            .unwrap();
        }
        let (mut store, _) = Store::open(&db).unwrap();
        let handover = Arc::new(Handover::new([]));
        let mut sealer = Sealer::start(&mut store, Duration::from_secs(5), handover).unwrap();
        store.insert(&[sample(SEALED_T0 + 150_000, "gas", "a21026", Flag::N)]).unwrap();
        sealer.tick(&mut store, SEALED_T0 + 200_000).unwrap();
        let status = store.verify_chain(None, None).unwrap();
        assert!(status.verified, "schema {version}: {status:?}");
        assert_eq!(status.first_broken, None, "schema {version}");
        let samples = status.samples.unwrap();
        assert_eq!(
            (samples.minutes, samples.unchained),
            (1, 2),
            "schema {version}: 00:02 sealed; 00:00 and 00:01 from before"
        );
        drop(store);
        // Opening it again changes nothing: the upgrade ran once, in its migration.
        let (store, _) = Store::open(&db).unwrap();
        let unchained: i64 = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM audit WHERE kind = 'retention' AND detail LIKE '%rule=unchained'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unchained, 1, "schema {version}");
        assert!(store.verify_chain(None, None).unwrap().verified);
    }
}

/// `export --db` reads a copy without its configuration: the outlets it has records of, in
/// plant time; raw data of one outlet needs the configuration (which devices are its); a
/// missing buffer is exit 74, as for `verify`.
#[test]
fn export_reads_a_copy_without_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = audit_buffer(dir.path());
    let export = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cems-gateway")).arg("export").args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let db_arg = db.to_str().unwrap();
    let (code, csv, _) =
        export(&["--db", db_arg, "--from", "2026-01-01", "--to", "2026-01-01", "--level", "minute"]);
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 20, "{csv}");
    assert!(lines[1].starts_with("2026-01-01 08:00:00,kiln,minute,a21002,"), "{csv}");
    let (code, _, err) =
        export(&["--db", db_arg, "--from", "2026-01-01", "--to", "2026-01-01", "--outlet", "kiln"]);
    assert_eq!(code, Some(64));
    assert!(err.contains("--outlet with --level raw needs --config"), "{err}");
    let missing = dir.path().join("missing.db");
    let (code, _, _) =
        export(&["--db", missing.to_str().unwrap(), "--from", "2026-01-01", "--to", "2026-01-01"]);
    assert_eq!(code, Some(74));
}
