//! The audit log edited with the `sqlite3` command-line shell, as someone at the plant could:
//! a record changed, records inserted or deleted, the log itself rewritten after dropping its
//! triggers; raw samples edited, deleted or inserted. `cems-gateway verify --db` (no
//! configuration, as an officer with a copy of the buffer runs it) reports the first broken link
//! every time, by outlet, level and plant time, and names every sealed minute of raw samples at
//! fault with its plant time.

use std::path::Path;
use std::process::Command;

use libtest_mimic::Failed;

use crate::need::{Need, Plan};
use crate::support::{SEALED_T0, audit_buffer, sealed_buffer, verify_with};

/// `verify --db DB`: no configuration, plant time as the buffer says (or UTC+8).
fn verify(db: &Path) -> (i32, String) {
    verify_with(&["--db".as_ref(), db.as_os_str()])
}

/// The tests of this module.
pub fn add(plan: &mut Plan) {
    plan.add(
        "sqlite3_cli::a_record_edited_is_reported",
        &[Need::Sqlite3],
        a_record_edited_with_the_sqlite3_cli_is_reported,
    );
    plan.add(
        "sqlite3_cli::records_inserted_or_deleted_by_hand_are_reported",
        &[Need::Sqlite3],
        records_inserted_or_deleted_by_hand_are_reported,
    );
    plan.add(
        "sqlite3_cli::the_log_refuses_sql_edits_and_catches_them_once_the_triggers_are_dropped",
        &[Need::Sqlite3],
        the_log_refuses_sql_edits_and_catches_them_once_the_triggers_are_dropped,
    );
    plan.add(
        "sqlite3_cli::a_raw_sample_edited_deleted_or_inserted_is_named",
        &[Need::Sqlite3],
        a_raw_sample_edited_deleted_or_inserted_is_named,
    );
    plan.add(
        "sqlite3_cli::raw_samples_changed_in_three_minutes_at_once_are_each_named",
        &[Need::Sqlite3],
        raw_samples_changed_in_three_minutes_at_once_are_each_named,
    );
    plan.add(
        "sqlite3_cli::a_minute_deleted_by_hand_after_a_prune_is_not_a_prune",
        &[Need::Sqlite3],
        a_minute_deleted_by_hand_after_a_prune_is_not_a_prune,
    );
}

fn sqlite3(db: &Path, sql: &str) -> std::process::Output {
    Command::new("sqlite3").arg(db).arg(sql).output().expect("running sqlite3")
}

fn a_record_edited_with_the_sqlite3_cli_is_reported() -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = audit_buffer(dir.path());
    let start_ms = 1_767_225_600_000i64 + 3 * 60_000;
    let out = sqlite3(
        &db,
        &format!("UPDATE record SET avg = 1.0 WHERE level = 0 AND start = {start_ms} AND factor = 'a21026';"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, out) = verify(&db);
    assert_eq!(code, 1, "{out}");
    // The fourth minute was the fourth entry; 00:03 UTC is 08:03 plant time.
    assert!(
        out.contains(
            "audit chain BROKEN at entry 4, the minute record of outlet \"kiln\" from 2026-01-01 08:03: the record rows differ"
        ),
        "{out}"
    );
    // This buffer was written without a gateway: it does not record its plant time.
    assert!(out.contains("note: plant time taken as UTC+8: this buffer does not record it"), "{out}");
    Ok(())
}

fn records_inserted_or_deleted_by_hand_are_reported() -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = audit_buffer(dir.path());
    let hour_ms = 1_767_225_600_000i64;
    let out = sqlite3(&db, &format!("DELETE FROM record WHERE level = 1 AND start = {hour_ms};"));
    assert!(out.status.success());
    let (code, out) = verify(&db);
    assert_eq!(code, 1);
    assert!(
        out.contains("entry 11, the hour record of outlet \"kiln\" from 2026-01-01 08:00: the chained record rows are gone"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (db, _) = audit_buffer(dir.path());
    let out = sqlite3(
        &db,
        "INSERT INTO record (level, outlet, factor, start, n_total, n_valid, avg, flag, exceeded) VALUES (2, 'kiln', 'a21026', 0, 1, 1, 3.0, 0, 0);",
    );
    assert!(out.status.success());
    let (code, out) = verify(&db);
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "the day record of outlet \"kiln\" from 1970-01-01: record rows that were never chained"
        ),
        "{out}"
    );
    Ok(())
}

fn the_log_refuses_sql_edits_and_catches_them_once_the_triggers_are_dropped() -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = audit_buffer(dir.path());
    for sql in ["UPDATE audit SET detail = 'x' WHERE seq = 5;", "DELETE FROM audit WHERE seq = 5;"] {
        let out = sqlite3(&db, sql);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("append-only"));
    }
    assert_eq!(verify(&db).0, 0);

    // Someone drops the triggers and rewrites an entry (and the record it vouches for).
    let out = sqlite3(
        &db,
        "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; \
         UPDATE audit SET detail = 'forged' WHERE seq = 5;",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, out) = verify(&db);
    assert_eq!(code, 1);
    assert!(
        out.contains("BROKEN at entry 5, the minute record of outlet \"kiln\" from 2026-01-01 08:04"),
        "{out}"
    );
    assert!(out.contains("does not match its hash"), "{out}");

    // Deleting an entry instead breaks the link of the next one.
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = audit_buffer(dir.path());
    sqlite3(&db, "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 7;");
    let (code, out) = verify(&db);
    assert_eq!(code, 1);
    assert!(out.contains("BROKEN at entry 8, ") && out.contains("does not follow entry 7"), "{out}");
    Ok(())
}

/// One change at a time to a buffer whose raw samples are sealed (00:00–00:09 UTC, 08:00–08:09
/// plant time, series 1 SO2 and 2 O2 of `gas`, nothing in 00:05).
fn a_raw_sample_edited_deleted_or_inserted_is_named() -> Result<(), Failed> {
    let minute3 = SEALED_T0 + 3 * 60_000;
    let in_minute3 = "the raw samples of the minute from 2026-01-01 08:03 (sealed as 2026-01-01T00:03Z): ";
    let cases = [
        (
            format!("UPDATE sample SET value = 99.0 WHERE ts = {} AND series = 1;", minute3 + 10_000),
            format!("{in_minute3}the sample rows differ from their seal (24 rows sealed, 24 found): rows edited outside the gateway"),
        ),
        (
            format!("DELETE FROM sample WHERE ts = {} AND series = 2;", minute3 + 10_000),
            format!("{in_minute3}the sample rows differ from their seal (24 rows sealed, 23 found): rows deleted outside the gateway"),
        ),
        (
            format!("INSERT INTO sample (ts, series, value, flag) VALUES ({}, 1, 5.0, 0);", minute3 + 2500),
            format!("{in_minute3}the sample rows differ from their seal (24 rows sealed, 25 found): rows inserted outside the gateway"),
        ),
        (
            // The flag alone, from N to C: still an edit.
            format!("UPDATE sample SET flag = 5 WHERE ts = {minute3} AND series = 2;"),
            format!("{in_minute3}the sample rows differ from their seal (24 rows sealed, 24 found): rows edited outside the gateway"),
        ),
        (
            // A minute the gateway stored nothing in, older than the newest seal.
            format!("INSERT INTO sample (ts, series, value, flag) VALUES ({}, 1, 5.0, 0);", SEALED_T0 + 5 * 60_000 + 1000),
            "the raw samples of the minute from 2026-01-01 08:05 (sealed as 2026-01-01T00:05Z): sample rows in a minute that was never sealed: inserted outside the gateway".to_string(),
        ),
        (
            format!("DELETE FROM sample WHERE ts >= {minute3} AND ts < {};", minute3 + 60_000),
            format!("{in_minute3}the 24 sealed sample rows are gone and no retention explains it: deleted outside the gateway"),
        ),
        (
            "UPDATE series SET factor = 'a21002' WHERE id = 1;".to_string(),
            "series 1: the series differs from its chained device and factor: edited outside the gateway".to_string(),
        ),
    ];
    for (sql, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = sealed_buffer(dir.path());
        let out = sqlite3(&db, &sql);
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        let (code, out) = verify(&db);
        assert_eq!(code, 1, "{sql}: {out}");
        assert!(out.contains("audit chain BROKEN at ") && out.contains(&expected), "{sql}:\n{out}");
    }
    Ok(())
}

/// A sample edited in one minute, one deleted in another and one inserted in a third, in one
/// session: `verify` names all three minutes with their plant time, not only the first.
fn raw_samples_changed_in_three_minutes_at_once_are_each_named() -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sealed_buffer(dir.path());
    let at = |minute: i64, s: i64| SEALED_T0 + minute * 60_000 + s * 1000;
    let sql = format!(
        "UPDATE sample SET value = 7.5 WHERE ts = {} AND series = 1; \
         DELETE FROM sample WHERE ts = {} AND series = 2; \
         INSERT INTO sample (ts, series, value, flag) VALUES ({}, 2, 21.0, 0);",
        at(1, 20),
        at(4, 35),
        at(8, 2)
    );
    let out = sqlite3(&db, &sql);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, out) = verify(&db);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("raw samples at fault: 3\n"), "{out}");
    for (local, utc, what) in [
        ("08:01", "00:01", "(24 rows sealed, 24 found): rows edited"),
        ("08:04", "00:04", "(24 rows sealed, 23 found): rows deleted"),
        ("08:08", "00:08", "(24 rows sealed, 25 found): rows inserted"),
    ] {
        let line = format!(
            "the raw samples of the minute from 2026-01-01 {local} (sealed as 2026-01-01T{utc}Z): the sample rows differ from their seal {what} outside the gateway"
        );
        assert!(out.lines().any(|l| l.starts_with("  entry ") && l.contains(&line)), "{line}\n{out}");
    }
    // The first of them is the chain's first broken link.
    assert!(out.contains("audit chain BROKEN at entry ") && out.contains("from 2026-01-01 08:01"), "{out}");
    Ok(())
}

/// Retention prunes the oldest sealed minutes and says so; the oldest remaining minute deleted
/// by hand afterwards is not a prune.
fn a_minute_deleted_by_hand_after_a_prune_is_not_a_prune() -> Result<(), Failed> {
    use cems_gateway::store::{Retention, Store};
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sealed_buffer(dir.path());
    let (mut store, _) = Store::open(&db).unwrap();
    let age = Retention { max_age: std::time::Duration::from_secs(3600), max_bytes: u64::MAX };
    store.enforce_retention(age, SEALED_T0 + 62 * 60_000 + 30_000).unwrap();
    let (code, out) = verify(&db);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 pruned by retention"), "{out}");
    let out = sqlite3(&db, &format!("DELETE FROM sample WHERE ts < {};", SEALED_T0 + 3 * 60_000));
    assert!(out.status.success());
    let (code, out) = verify(&db);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the raw samples of the minute from 2026-01-01 08:02 (sealed as 2026-01-01T00:02Z): the 24 sealed sample rows are gone and no retention explains it"),
        "{out}"
    );
    Ok(())
}
