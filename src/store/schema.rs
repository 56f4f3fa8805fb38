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
    // 5: anti-tampering evidence (see `store::params`, `store::marks`). Key analyzer
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

/// Applies the migrations the file has not seen yet, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<u32> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
        tx.commit()?;
    }
    Ok(MIGRATIONS.len() as u32)
}
