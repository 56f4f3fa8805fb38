//! The audit log edited with the `sqlite3` command-line shell, as someone at the plant could:
//! a record changed, records inserted or deleted, the log itself rewritten after dropping its
//! triggers. `cems-gateway verify --db` (no configuration, as an officer with a copy of the
//! buffer runs it) reports the first broken link every time, by outlet, level and plant time.

use std::path::Path;
use std::process::Command;

use libtest_mimic::Failed;

use crate::need::{Need, Plan};
use crate::support::{audit_buffer, verify_with};

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
