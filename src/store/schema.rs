//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.
//!
//! A migration is never edited once released; changes go in a new entry.

use rusqlite::Connection;

/// Each entry brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: real-time samples. A series is one (device, factor); samples refer to it by number so
    // that a stored sample costs a few bytes besides its value. Keyed by time first: range
    // scans by period and retention by age are both index walks.
    "CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        factor TEXT NOT NULL,
        UNIQUE (device, factor)
    );
    CREATE TABLE sample (
        ts INTEGER NOT NULL,
        series INTEGER NOT NULL REFERENCES series(id),
        value REAL,
        flag INTEGER NOT NULL,
        PRIMARY KEY (ts, series)
    ) WITHOUT ROWID;",
    // 2: closed minute/hour/day records of each outlet, recomputed from the samples. `start`
    // is the period start in Unix milliseconds; `level` 0 minute, 1 hour, 2 day, 3 month.
    "CREATE TABLE record (
        level INTEGER NOT NULL,
        outlet TEXT NOT NULL,
        factor TEXT NOT NULL,
        start INTEGER NOT NULL,
        n_total INTEGER NOT NULL,
        n_valid INTEGER NOT NULL,
        min REAL,
        avg REAL,
        max REAL,
        zs_avg REAL,
        cou REAL,
        flag INTEGER NOT NULL,
        lim REAL,
        exceeded INTEGER NOT NULL,
        PRIMARY KEY (level, outlet, start, factor)
    ) WITHOUT ROWID;",
    // 3: per platform link, the start (Unix ms) of the newest period of each kind the platform
    // acknowledged; and settings the platforms set (intervals, password, clock offset).
    "CREATE TABLE uplink_cursor (
        uplink TEXT NOT NULL,
        kind INTEGER NOT NULL,
        start INTEGER NOT NULL,
        PRIMARY KEY (uplink, kind)
    ) WITHOUT ROWID;
    CREATE TABLE setting (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;",
    // 4: the audit log, append-only and hash-chained (see `store::audit`). Each entry's hash
    // covers the previous entry's hash, so an edited, removed or inserted entry breaks every
    // link after it; the triggers refuse edits through SQL, and `verify` catches the edits of
    // someone who drops them.
    "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        ts_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE INDEX audit_subject ON audit (kind, subject, seq);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 5: records carry the converted minimum and maximum and their validity (which flags count
    // as valid is configuration: an over-range `T` hour can be valid). Earlier records were
    // valid exactly when flagged N. The flow a00000 goes to table B.2's m³/s: the Rust part of
    // this migration ([`after`]) rescales the stored m³/h records and chains every period again.
    "ALTER TABLE record ADD COLUMN zs_min REAL;
    ALTER TABLE record ADD COLUMN zs_max REAL;
    ALTER TABLE record ADD COLUMN valid INTEGER NOT NULL DEFAULT 0;
    UPDATE record SET valid = (flag = 0);",
    // 6: anti-tampering evidence (see `store::params`, `store::marks`). Key analyzer
    // parameters as they change: each row is keyed by the seq of the audit entry written in the
    // same transaction (`pol` '' for every point of the device; `previous` NULL for the first
    // reading), append-only like the audit log. Operator marks (stopped, start-up, maintenance…
    // over a period; `end` NULL while open): a row holds a mark's current content, and `seq` is
    // the audit entry of its last add, edit or end; marks are never deleted. Corrections:
    // periods recomputed after they went out (a mark changed their flags), for each link's
    // queue to send again (`store::queue::corrections`).
    "CREATE TABLE parameter (
        seq INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        code TEXT NOT NULL,
        pol TEXT NOT NULL,
        ts INTEGER NOT NULL,
        value TEXT NOT NULL,
        previous TEXT
    );
    CREATE INDEX parameter_key ON parameter (device, code, pol, seq);
    CREATE INDEX parameter_time ON parameter (ts);
    CREATE TRIGGER parameter_no_update BEFORE UPDATE ON parameter
        BEGIN SELECT RAISE(ABORT, 'the parameter history is append-only'); END;
    CREATE TRIGGER parameter_no_delete BEFORE DELETE ON parameter
        BEGIN SELECT RAISE(ABORT, 'the parameter history is append-only'); END;
    CREATE TABLE mark (
        id INTEGER PRIMARY KEY,
        outlet TEXT NOT NULL,
        kind TEXT NOT NULL,
        start INTEGER NOT NULL,
        end INTEGER,
        reason TEXT NOT NULL,
        who TEXT NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX mark_time ON mark (outlet, start);
    CREATE TRIGGER mark_no_delete BEFORE DELETE ON mark
        BEGIN SELECT RAISE(ABORT, 'marks are never deleted: end or edit them'); END;
    CREATE TABLE correction (
        seq INTEGER PRIMARY KEY,
        outlet TEXT NOT NULL,
        level INTEGER NOT NULL,
        start INTEGER NOT NULL
    );",
];

/// The migration that moved the flow records to m³/s.
const FLOW_PER_SECOND: u32 = 5;

/// Applies the migrations the file has not seen yet, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<u32> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        after(i as u32 + 1, &tx)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
        tx.commit()?;
    }
    Ok(MIGRATIONS.len() as u32)
}

/// What a migration does besides its SQL, in the same transaction.
///
/// 5: the flow's stored records were in m³/h (its totals already in m³). They are rescaled to
/// m³/s rather than left in two units, and since that changes records the platforms and the
/// audit log have seen, it is said in a `migration` entry, followed by an entry for every
/// period with its new content (the content now covers the new columns too). Records are
/// otherwise recomputed from samples only; this is the one rewrite, and it is chained.
fn after(version: u32, tx: &Connection) -> rusqlite::Result<()> {
    if version != FLOW_PER_SECOND {
        return Ok(());
    }
    let periods: i64 = tx.query_row("SELECT count(*) FROM record", [], |r| r.get(0))?;
    if periods == 0 {
        return Ok(());
    }
    let rescaled = tx.execute(
        "UPDATE record SET min = min / 3600.0, avg = avg / 3600.0, max = max / 3600.0 WHERE factor = 'a00000'",
        [],
    )?;
    super::audit::append(
        tx,
        super::audit::AuditKind::Migration,
        "record schema 5",
        &format!(
            "columns zs_min, zs_max, valid added (valid = flag N, the rule of these records); \
             a00000 min, avg, max divided by 3600 (m3/h to m3/s, HJ 212-2017 table B.2) in {rescaled} rows; \
             every period chained again with its new content"
        ),
    )?;
    let n = super::audit::chain_existing(tx)?;
    tracing::info!(
        rescaled,
        periods = n,
        "Records moved to schema 5: the flow in m3/s, every period chained again."
    );
    Ok(())
}
