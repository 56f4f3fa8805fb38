//! The buffer: the only module that touches SQLite.
//!
//! One file, WAL journal, `synchronous=FULL` (a committed batch survives power loss), schema by
//! [`schema`] migrations. At open the file is checked (`PRAGMA quick_check`); a file that is not
//! a database or fails the check is moved aside with a loud log line and a fresh one is started,
//! so a corrupt SD card file never turns into a crash loop.
//!
//! [`Store`] is the synchronous core; [`spawn_writer`] runs it on its own thread and batches the
//! samples that the bus tasks send into one transaction per flush interval. [`outbox`] owns the
//! platform links' queues on a thread of its own; [`params`] keeps the analyzers' parameter
//! history on another, and [`marks`] holds the operators' marks.

pub mod audit;
pub mod marks;
pub mod outbox;
pub mod params;
mod queue;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::compute::Record;
use crate::compute::stats::{Level, Stat};
use crate::lifecycle::Beat;
use crate::live::Live;
use crate::model::{Flag, Sample, now_ms};
use outbox::Kind;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("SQLite error on {path}: {reason}")]
    Sqlite { path: PathBuf, reason: rusqlite::Error },
    #[error("cannot prepare {path}: {reason}")]
    Io { path: PathBuf, reason: std::io::Error },
}

/// Keeps the `-wal` and `-shm` files when the last connection closes (emptied, not deleted):
/// members of the service's group, who may read the buffer but not write its folder, can then
/// open it read-only (`verify`, `report`, `export`, `backup`) while the daemon is stopped too.
fn keep_wal_files(conn: &Connection) -> rusqlite::Result<()> {
    conn.file_control(Some(rusqlite::MAIN_DB), rusqlite::FileControl::PersistWal(&mut 1))
}

/// The setting (scope `*`) under which the gateway records the plant's UTC offset in seconds.
pub const UTC_OFFSET_SETTING: &str = "utc_offset_s";

/// Retention settings.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

/// What [`Store::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenReport {
    Fresh,
    Existing,
    /// The old file was corrupt and now lives at this path.
    MovedAside(PathBuf),
}

/// A stored sample as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    pub ts_ms: i64,
    pub device: String,
    pub factor: String,
    pub value: Option<f64>,
    pub flag: Flag,
}

/// Synchronous access to the buffer file.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    series: HashMap<(Arc<str>, Arc<str>), i64>,
    /// Samples dropped because one with the same (time, series) was already stored, which
    /// happens only when the clock is stepped back by less than a poll interval.
    pub duplicates: u64,
    /// Each device's last chained analyzer state (loaded from the audit log on first use).
    analyzer_state: Option<HashMap<Arc<str>, char>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the buffer, checking and migrating it.
    pub fn open(path: &Path) -> Result<(Store, OpenReport), StoreError> {
        let io = |source| StoreError::Io { path: path.to_path_buf(), reason: source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let existed = path.exists();
        let report = match Self::open_checked(path) {
            Ok(store) => {
                return Ok((store, if existed { OpenReport::Existing } else { OpenReport::Fresh }));
            }
            Err(e) if existed => {
                let aside = aside_name(path);
                tracing::error!(path = %path.display(), moved_to = %aside.display(), error = %e, "Buffer file is corrupt: moved aside, starting a fresh one. Keep the moved file as evidence.");
                std::fs::rename(path, &aside).map_err(io)?;
                for suffix in ["-wal", "-shm"] {
                    let side = PathBuf::from(format!("{}{suffix}", path.display()));
                    if side.exists() {
                        let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
                    }
                }
                OpenReport::MovedAside(aside)
            }
            Err(e) => return Err(e),
        };
        Ok((Self::open_checked(path)?, report))
    }

    /// A second connection to a buffer that [`Store::open`] has already checked and migrated
    /// (used by the statistics worker beside the writer thread; WAL lets them work side by side).
    pub fn open_secondary(path: &Path) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sqlite { path: path.to_path_buf(), reason: source };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        keep_wal_files(&conn).map_err(sql)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            series: HashMap::new(),
            duplicates: 0,
            analyzer_state: None,
        })
    }

    /// A read-only connection for checking a buffer (`verify`), beside a running daemon or not.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sqlite { path: path.to_path_buf(), reason: source };
        if !path.exists() {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                reason: std::io::Error::new(std::io::ErrorKind::NotFound, "no buffer file"),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            series: HashMap::new(),
            duplicates: 0,
            analyzer_state: None,
        })
    }

    fn open_checked(path: &Path) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sqlite { path: path.to_path_buf(), reason: source };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        // Must be set before the first table exists to take effect.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(sql)?;
        let check: String = conn.pragma_query_value(None, "quick_check", |r| r.get(0)).map_err(sql)?;
        if check != "ok" {
            return Err(sql(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!("quick_check: {check}")),
            )));
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        keep_wal_files(&conn).map_err(sql)?;
        let before: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql)?;
        schema::migrate(&mut conn).map_err(sql)?;
        if before > 0 && before < 4 {
            // A buffer from before the audit log: its records are chained as they are now.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            let n = audit::chain_existing(&tx).map_err(sql)?;
            tx.commit().map_err(sql)?;
            tracing::info!(periods = n, "Existing records entered in the new audit log.");
        }
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            series: HashMap::new(),
            duplicates: 0,
            analyzer_state: None,
        };
        store.load_series().map_err(sql)?;
        Ok(store)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), reason: source }
    }

    fn load_series(&mut self) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare("SELECT id, device, factor FROM series")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        for row in rows {
            let (id, device, factor) = row?;
            self.series.insert((Arc::from(device), Arc::from(factor)), id);
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a batch in one transaction. Returns the number of samples written.
    pub fn insert(&mut self, samples: &[Sample]) -> Result<usize, StoreError> {
        if self.analyzer_state.is_none() {
            self.analyzer_state = Some(self.load_analyzer_state().map_err(|e| self.err(e))?);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::Sqlite { path: self.path.clone(), reason: e })?;
        let mut changes: Vec<(Arc<str>, char)> = Vec::new();
        let mut written = 0;
        let mut duplicates = 0;
        {
            let result: rusqlite::Result<()> = (|| {
                let mut new_series = tx.prepare_cached("INSERT INTO series (device, factor) VALUES (?1, ?2) ON CONFLICT DO UPDATE SET device = device RETURNING id")?;
                let mut insert = tx.prepare_cached("INSERT INTO sample (ts, series, value, flag) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")?;
                for s in samples {
                    let key = (s.device.clone(), s.factor.clone());
                    let id = match self.series.get(&key) {
                        Some(id) => *id,
                        None => {
                            let id: i64 =
                                new_series.query_row(params![&*s.device, &*s.factor], |r| r.get(0))?;
                            self.series.insert(key, id);
                            id
                        }
                    };
                    if insert.execute(params![s.ts_ms, id, s.value, s.flag.code()])? == 1 {
                        written += 1;
                    } else {
                        duplicates += 1;
                    }
                }
                // Analyzer state changes, in the same transaction as the samples that show them.
                let known = self.analyzer_state.as_ref().expect("loaded above");
                for (device, at_ms, state) in analyzer_states(samples) {
                    let last = changes.iter().rev().find(|(d, _)| **d == *device).map(|(_, s)| *s);
                    let old = last.or_else(|| known.get(device).copied());
                    if old != Some(state) {
                        let detail = format!("{}->{state} at_ms={at_ms}", old.unwrap_or('-'));
                        audit::append(&tx, audit::AuditKind::Analyzer, device, &detail)?;
                        changes.push((Arc::from(device), state));
                    }
                }
                Ok(())
            })();
            if let Err(e) = result {
                // Series ids cached in this transaction may not exist after the rollback.
                self.series.clear();
                drop(tx);
                let _ = self.load_series();
                return Err(self.err(e));
            }
        }
        tx.commit().map_err(|e| StoreError::Sqlite { path: self.path.clone(), reason: e })?;
        let known = self.analyzer_state.as_mut().expect("loaded above");
        known.extend(changes);
        if duplicates > 0 {
            self.duplicates += duplicates;
            tracing::warn!(
                duplicates,
                "Samples with an already stored (time, series) were not stored; the clock was probably stepped back."
            );
        }
        Ok(written)
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM sample", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Samples in `[from_ms, to_ms)`, oldest first.
    pub fn samples(&self, from_ms: i64, to_ms: i64) -> Result<Vec<StoredSample>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT s.ts, r.device, r.factor, s.value, s.flag FROM sample s JOIN series r ON r.id = s.series WHERE s.ts >= ?1 AND s.ts < ?2 ORDER BY s.ts, r.device, r.factor")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![from_ms, to_ms], |r| {
                Ok(StoredSample {
                    ts_ms: r.get(0)?,
                    device: r.get(1)?,
                    factor: r.get(2)?,
                    value: r.get(3)?,
                    flag: Flag::from_code(r.get(4)?).unwrap_or(Flag::D),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// Calls `f` for every sample of `devices` in `[from_ms, to_ms)`, oldest first, without
    /// collecting them (a month of raw data is streamed). Returns the number of samples.
    pub fn for_each_sample(
        &self,
        devices: &[&str],
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(i64, &Arc<str>, Option<f64>, Flag),
    ) -> Result<u64, StoreError> {
        self.for_each_sample_of(Some(devices), from_ms, to_ms, |ts, _, factor, value, flag| {
            f(ts, factor, value, flag);
            true
        })
    }

    /// Stores closed records of an outlet, replacing earlier versions of the same periods.
    /// `utc_offset_s` turns the records' local period starts into Unix time.
    pub fn upsert_records(
        &mut self,
        outlet: &str,
        records: &[Record],
        utc_offset_s: i64,
    ) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::Sqlite { path: self.path.clone(), reason: e })?;
        let mut periods: BTreeSet<(u8, i64)> = BTreeSet::new();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO record (level, outlet, factor, start, n_total, n_valid, min, avg, max, zs_avg, cou, flag, lim, exceeded, zs_min, zs_max, valid) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                )
                .map_err(|e| StoreError::Sqlite { path: self.path.clone(), reason: e })?;
            for r in records {
                let st = &r.stat;
                stmt.execute(params![
                    level_code(r.level),
                    outlet,
                    r.factor,
                    (r.start - utc_offset_s) * 1000,
                    st.n_total,
                    st.n_valid,
                    st.min,
                    st.avg,
                    st.max,
                    st.zs_avg,
                    st.cou,
                    st.flag.code(),
                    r.limit,
                    r.exceeded,
                    st.zs_min,
                    st.zs_max,
                    st.valid
                ])
                .map_err(|e| StoreError::Sqlite { path: self.path.clone(), reason: e })?;
                periods.insert((level_code(r.level), (r.start - utc_offset_s) * 1000));
            }
            // Every period whose content changed gets its audit entry in the same transaction.
            for (level, start) in periods {
                audit::chain_periods(&tx, outlet, level, [start])
                    .map_err(|e| StoreError::Sqlite { path: self.path.clone(), reason: e })?;
            }
        }
        tx.commit().map_err(|e| StoreError::Sqlite { path: self.path.clone(), reason: e })?;
        Ok(records.len())
    }

    /// Stored records of an outlet and level with start in `[from_ms, to_ms)`, by start then
    /// factor; `start` is given back in local seconds.
    pub fn records(
        &self,
        outlet: &str,
        level: Level,
        from_ms: i64,
        to_ms: i64,
        utc_offset_s: i64,
    ) -> Result<Vec<Record>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT factor, start, n_total, n_valid, min, avg, max, zs_avg, cou, flag, lim, exceeded, zs_min, zs_max, valid FROM record \
                 WHERE level = ?1 AND outlet = ?2 AND start >= ?3 AND start < ?4 ORDER BY start, factor",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![level_code(level), outlet, from_ms, to_ms], |r| {
                Ok(Record {
                    level,
                    factor: r.get(0)?,
                    start: r.get::<_, i64>(1)? / 1000 + utc_offset_s,
                    stat: Stat {
                        n_total: r.get(2)?,
                        n_valid: r.get(3)?,
                        min: r.get(4)?,
                        avg: r.get(5)?,
                        max: r.get(6)?,
                        zs_min: r.get(12)?,
                        zs_avg: r.get(7)?,
                        zs_max: r.get(13)?,
                        cou: r.get(8)?,
                        flag: Flag::from_code(r.get(9)?).unwrap_or(Flag::D),
                        valid: r.get(14)?,
                    },
                    limit: r.get(10)?,
                    exceeded: r.get(11)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// Start (Unix ms) of the newest stored record of an outlet at a level.
    pub fn newest_record(&self, outlet: &str, level: Level) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT max(start) FROM record WHERE level = ?1 AND outlet = ?2",
                params![level_code(level), outlet],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The start (Unix ms) of the newest period of `kind` that platform link `uplink` acknowledged.
    pub fn cursor(&self, uplink: &str, kind: Kind) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT start FROM uplink_cursor WHERE uplink = ?1 AND kind = ?2",
                params![uplink, kind.code()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Moves a link's cursor (durably: the record leaves the queue only now). The outbox owns
    /// the cursors of running links; this is for tools and tests that prepare a buffer.
    pub fn set_cursor(&mut self, uplink: &str, kind: Kind, start_ms: i64) -> Result<(), StoreError> {
        self.set_cursors(uplink, &[(kind, start_ms)])
    }

    /// Moves several cursors of a link in one transaction.
    pub fn set_cursors(&mut self, uplink: &str, cursors: &[(Kind, i64)]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |reason| StoreError::Sqlite { path: path.clone(), reason };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        for (kind, start) in cursors {
            tx.execute(
                "INSERT OR REPLACE INTO uplink_cursor (uplink, kind, start) VALUES (?1, ?2, ?3)",
                params![uplink, kind.code(), start],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// The ids of the sample series of these (device, factor) pairs, `None` for a pair that has
    /// no sample yet.
    pub fn series_ids(&self, points: &[(String, String)]) -> Result<Vec<Option<i64>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM series WHERE device = ?1 AND factor = ?2")
            .map_err(|e| self.err(e))?;
        points
            .iter()
            .map(|(device, factor)| {
                stmt.query_row(params![device, factor], |r| r.get(0)).optional().map_err(|e| self.err(e))
            })
            .collect()
    }

    /// Whether any of `series` has a sample in `[from_ms, to_ms)` (a walk of that range at most).
    pub fn has_samples(&self, series: &[i64], from_ms: i64, to_ms: i64) -> Result<bool, StoreError> {
        if series.is_empty() {
            return Ok(false);
        }
        let sql = format!(
            "SELECT 1 FROM sample WHERE ts >= ?1 AND ts < ?2 AND series IN ({}) LIMIT 1",
            id_list(series)
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        stmt.exists(params![from_ms, to_ms]).map_err(|e| self.err(e))
    }

    /// The samples of `series` in `[from_ms, to_ms)`: (series, time, value), oldest first.
    pub fn series_samples(
        &self,
        series: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, i64, Option<f64>)>, StoreError> {
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT series, ts, value FROM sample WHERE ts >= ?1 AND ts < ?2 AND series IN ({}) ORDER BY ts",
            id_list(series)
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![from_ms, to_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// The earliest period start (Unix ms) after `after_ms` with records of an outlet and level.
    pub fn next_record_start(
        &self,
        outlet: &str,
        level: Level,
        after_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(start) FROM record WHERE level = ?1 AND outlet = ?2 AND start > ?3",
                params![level_code(level), outlet, after_ms],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The first `limit` period starts (Unix ms) after `after_ms` with records of an outlet and
    /// level, oldest first.
    pub fn period_starts(
        &self,
        outlet: &str,
        level: Level,
        after_ms: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT start FROM record WHERE level = ?1 AND outlet = ?2 AND start > ?3 \
                 ORDER BY start LIMIT ?4",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![level_code(level), outlet, after_ms, limit], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// Number of periods of an outlet and level after `after_ms` (a link's backlog).
    pub fn count_periods(&self, outlet: &str, level: Level, after_ms: i64) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(DISTINCT start) FROM record WHERE level = ?1 AND outlet = ?2 AND start > ?3",
                params![level_code(level), outlet, after_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    pub fn setting(&self, scope: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM setting WHERE scope = ?1 AND key = ?2", params![scope, key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every setting of `scope`.
    pub fn settings(&self, scope: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM setting WHERE scope = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![scope], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// The plant's UTC offset the gateway recorded ([`UTC_OFFSET_SETTING`]), for commands that
    /// read a buffer without its configuration.
    pub fn utc_offset(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.setting("*", UTC_OFFSET_SETTING)?.and_then(|v| v.parse().ok()))
    }

    /// The outlets that have records.
    pub fn record_outlets(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT outlet FROM record ORDER BY outlet")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Copies the whole buffer to `dest` with SQLite's online backup API in one step: a
    /// consistent snapshot, taken while the daemon carries on writing (WAL lets it). The copy is
    /// written beside `dest` and renamed into place once complete and on disk, so a file at
    /// `dest` is always a whole backup; it is a single file (rollback journal, no `-wal`).
    pub fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        use rusqlite::backup::{Backup, StepResult};
        let partial = PathBuf::from(format!("{}.partial", dest.display()));
        let sql = |reason| StoreError::Sqlite { path: dest.to_path_buf(), reason };
        let io = |reason| StoreError::Io { path: dest.to_path_buf(), reason };
        let _ = std::fs::remove_file(&partial);
        {
            let mut copy = Connection::open(&partial).map_err(sql)?;
            let backup = Backup::new(&self.conn, &mut copy).map_err(sql)?;
            let mut tries = 0;
            // -1: every page in one step, inside one read transaction of the source.
            loop {
                match backup.step(-1).map_err(sql)? {
                    StepResult::Done => break,
                    StepResult::Busy | StepResult::Locked | StepResult::More if tries < 50 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    _ => {
                        return Err(sql(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some("the buffer stayed busy for 5 s".into()),
                        )));
                    }
                }
            }
            drop(backup);
            let _: String =
                copy.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0)).map_err(sql)?;
        }
        std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&partial, dest).map_err(io)?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }

    pub fn set_setting(&self, scope: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO setting (scope, key, value) VALUES (?1, ?2, ?3)",
                params![scope, key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Newest sample time, if any.
    pub fn newest_ts(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT max(ts) FROM sample", [], |r| r.get::<_, Option<i64>>(0))
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }

    /// Bytes of the file in use (pages not on the free list).
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let q = |p: &str| self.conn.pragma_query_value(None, p, |r| r.get::<_, i64>(0));
        let (pages, free, size) = (q("page_count"), q("freelist_count"), q("page_size"));
        let (pages, free, size) =
            (pages.map_err(|e| self.err(e))?, free.map_err(|e| self.err(e))?, size.map_err(|e| self.err(e))?);
        Ok(((pages - free) * size) as u64)
    }

    /// Deletes samples older than the age limit, then the oldest tenth at a time while the file
    /// is over its size limit. Returns the number of samples deleted.
    pub fn enforce_retention(&mut self, r: Retention, now_ms: i64) -> Result<u64, StoreError> {
        let cutoff = now_ms - r.max_age.as_millis() as i64;
        let mut deleted =
            self.conn.execute("DELETE FROM sample WHERE ts < ?1", [cutoff]).map_err(|e| self.err(e))? as u64;
        // Records age out with the samples they were computed from; the audit log says so, so
        // that `verify` can tell this from a deletion outside the gateway.
        {
            let path = self.path.clone();
            let sql = |source| StoreError::Sqlite { path: path.clone(), reason: source };
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            let n = tx.execute("DELETE FROM record WHERE start < ?1", [cutoff]).map_err(sql)?;
            if n > 0 {
                audit::append(
                    &tx,
                    audit::AuditKind::Retention,
                    "record",
                    &format!("start<{cutoff} rows={n}"),
                )
                .map_err(sql)?;
            }
            tx.commit().map_err(sql)?;
        }
        while self.used_bytes()? > r.max_bytes {
            let n = self.count()?;
            if n == 0 {
                break;
            }
            let tenth = (n / 10).max(1);
            let edge: i64 = self
                .conn
                .query_row(
                    "SELECT ts FROM sample ORDER BY ts LIMIT 1 OFFSET ?1",
                    [(tenth - 1) as i64],
                    |row| row.get(0),
                )
                .map_err(|e| self.err(e))?;
            let d = self.conn.execute("DELETE FROM sample WHERE ts <= ?1", [edge]).map_err(|e| self.err(e))?
                as u64;
            // Records are never pruned for size: they are small, and an unsent one is what the
            // platforms are owed. They go by age only, above.
            deleted += d;
            tracing::warn!(
                deleted = d,
                up_to_ms = edge,
                "Buffer over its size limit: oldest samples deleted."
            );
            self.conn.execute_batch("PRAGMA incremental_vacuum;").map_err(|e| self.err(e))?;
        }
        if deleted > 0 {
            self.conn.execute_batch("PRAGMA incremental_vacuum;").map_err(|e| self.err(e))?;
        }
        Ok(deleted)
    }

    fn load_analyzer_state(&self) -> rusqlite::Result<HashMap<Arc<str>, char>> {
        let mut stmt = self.conn.prepare(
            "SELECT subject, detail FROM audit WHERE seq IN \
             (SELECT max(seq) FROM audit WHERE kind = 'analyzer' GROUP BY subject)",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut state = HashMap::new();
        for row in rows {
            let (device, detail) = row?;
            if let Some(s) = audit::parse_state(&detail) {
                state.insert(Arc::from(device), s);
            }
        }
        Ok(state)
    }

    /// Folds the WAL back into the main file (at shutdown).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").map_err(|e| self.err(e))
    }

    /// Calls `f(ts_ms, device, factor, value, flag)` for every sample in `[from_ms, to_ms)`,
    /// oldest first, with its device, until `f` returns `false` (the export's reader went away).
    /// `devices` restricts the devices (`None`: all); nothing is collected.
    /// Returns the number of samples passed to `f`.
    pub fn for_each_sample_of(
        &self,
        devices: Option<&[&str]>,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(i64, &Arc<str>, &Arc<str>, Option<f64>, Flag) -> bool,
    ) -> Result<u64, StoreError> {
        // The wanted series, read fresh (the writer may have added some): a time-range walk of
        // the primary key then needs no join and no string per row.
        let mut series: HashMap<i64, (Arc<str>, Arc<str>)> = HashMap::new();
        {
            let mut stmt =
                self.conn.prepare_cached("SELECT id, device, factor FROM series").map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (id, device, factor) = row.map_err(|e| self.err(e))?;
                if devices.is_none_or(|d| d.contains(&device.as_str())) {
                    series.insert(id, (Arc::from(device), Arc::from(factor)));
                }
            }
        }
        if series.is_empty() {
            return Ok(0);
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ts, series, value, flag FROM sample WHERE ts >= ?1 AND ts < ?2 ORDER BY ts, series",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![from_ms, to_ms]).map_err(|e| self.err(e))?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let id: i64 = row.get(1).map_err(|e| self.err(e))?;
            let Some((device, factor)) = series.get(&id) else { continue };
            let ts: i64 = row.get(0).map_err(|e| self.err(e))?;
            let value: Option<f64> = row.get(2).map_err(|e| self.err(e))?;
            let flag: u8 = row.get(3).map_err(|e| self.err(e))?;
            n += 1;
            if !f(ts, device, factor, value, Flag::from_code(flag).unwrap_or(Flag::D)) {
                break;
            }
        }
        Ok(n)
    }
}

/// Each device's state per poll time in a batch, in time order per device: the worst flag of
/// the poll's samples, with `T` (a value above the instrument's range) counted as normal.
fn analyzer_states(samples: &[Sample]) -> Vec<(&str, i64, char)> {
    let mut polls: BTreeMap<(&str, i64), Flag> = BTreeMap::new();
    for s in samples {
        let flag = if s.flag == Flag::T { Flag::N } else { s.flag };
        polls
            .entry((&*s.device, s.ts_ms))
            .and_modify(|f| {
                if flag.severity() > f.severity() {
                    *f = flag;
                }
            })
            .or_insert(flag);
    }
    polls.into_iter().map(|((d, ts), f)| (d, ts, f.as_char())).collect()
}

fn level_code(level: Level) -> u8 {
    match level {
        Level::Minute => 0,
        Level::Hour => 1,
        Level::Day => 2,
        Level::Month => 3,
    }
}

/// Series ids as an SQL list (integers from the database itself).
fn id_list(series: &[i64]) -> String {
    series.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

fn aside_name(path: &Path) -> PathBuf {
    let stamp = now_ms();
    PathBuf::from(format!("{}.corrupt-{stamp}", path.display()))
}

/// Settings of the writer thread.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    pub flush_interval: Duration,
    /// A batch this large is committed without waiting for the interval.
    pub max_batch: usize,
    pub retention: Retention,
    pub retention_every: Duration,
}

/// Handle to the writer thread; dropping every sender ends it after a final flush.
#[derive(Debug)]
pub struct Writer {
    thread: std::thread::JoinHandle<Store>,
}

impl Writer {
    /// Waits for the thread to drain its channel and commit the last batch.
    pub fn join(self) -> Option<Store> {
        self.thread.join().ok()
    }
}

/// Runs the store on a dedicated thread (SQLite calls block; they must not stall the runtime).
pub fn spawn_writer(
    mut store: Store,
    mut rx: mpsc::Receiver<Vec<Sample>>,
    opts: WriterOptions,
    live: Arc<Live>,
    beat: Beat,
) -> Writer {
    let thread = std::thread::Builder::new()
        .name("store".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("store thread runtime");
            let mut batch: Vec<Sample> = Vec::new();
            let mut last_retention = std::time::Instant::now() - opts.retention_every;
            // While commits fail (disk full, I/O error) samples are kept in memory up to this many,
            // the channel keeps being drained so that polling goes on, and the oldest are dropped
            // past it, counted and logged.
            let hard_cap = opts.max_batch * 20;
            let mut failing_since: Option<std::time::Instant> = None;
            let mut last_error_log: Option<std::time::Instant> = None;
            let mut flush = |store: &mut Store, batch: &mut Vec<Sample>| -> bool {
                if batch.is_empty() {
                    return true;
                }
                match store.insert(batch) {
                    Ok(n) => {
                        live.add_stored(n as u64);
                        batch.clear();
                        if failing_since.take().is_some() {
                            tracing::info!("Samples are committed again.");
                        }
                        true
                    }
                    Err(e) => {
                        failing_since.get_or_insert_with(std::time::Instant::now);
                        if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                            last_error_log = Some(std::time::Instant::now());
                            tracing::error!(error = %e, pending = batch.len(), "Cannot commit samples; keeping them in memory and retrying.");
                        }
                        if batch.len() > hard_cap {
                            let lost = batch.len() - hard_cap;
                            batch.drain(..lost);
                            tracing::error!(lost, "Samples dropped: the buffer cannot be written and memory is full.");
                        }
                        false
                    }
                }
            };
            let mut backoff = Duration::ZERO;
            loop {
                let deadline = std::time::Instant::now() + opts.flush_interval.max(backoff);
                let mut closed = false;
                let limit = if backoff.is_zero() { opts.max_batch } else { hard_cap + opts.max_batch };
                while batch.len() < limit {
                    let wait = deadline.saturating_duration_since(std::time::Instant::now());
                    if wait.is_zero() {
                        break;
                    }
                    match recv_timeout(&rt, &mut rx, wait) {
                        Recv::Got(samples) => batch.extend(samples),
                        Recv::Timeout => break,
                        Recv::Closed => {
                            closed = true;
                            break;
                        }
                    }
                }
                backoff = if flush(&mut store, &mut batch) {
                    Duration::ZERO
                } else {
                    (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
                };
                beat.touch();
                if last_retention.elapsed() >= opts.retention_every {
                    last_retention = std::time::Instant::now();
                    if let Err(e) = store.enforce_retention(opts.retention, now_ms()) {
                        tracing::error!(error = %e, "Retention failed.");
                    }
                }
                if closed {
                    flush(&mut store, &mut batch);
                    if !batch.is_empty() {
                        tracing::error!(lost = batch.len(), "Samples could not be committed at shutdown.");
                    }
                    let _ = store.checkpoint();
                    return store;
                }
            }
        })
        .expect("spawning the store thread");
    Writer { thread }
}

enum Recv<T> {
    Got(T),
    Timeout,
    Closed,
}

/// Waits for the next message with a deadline, on the thread's own small runtime (the channel
/// is tokio's, so that tasks can await it without blocking their runtime).
fn recv_timeout<T>(rt: &tokio::runtime::Runtime, rx: &mut mpsc::Receiver<T>, wait: Duration) -> Recv<T> {
    rt.block_on(async {
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(s)) => Recv::Got(s),
            Ok(None) => Recv::Closed,
            Err(_) => Recv::Timeout,
        }
    })
}
