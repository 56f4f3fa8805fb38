//! The buffer: the only module that touches SQLite.
//!
//! One file, WAL journal, `synchronous=FULL` (a committed batch survives power loss), schema by
//! [`schema`] migrations. At open the file is checked (`PRAGMA quick_check`); a file that is not
//! a database or fails the check is moved aside with a loud log line and a fresh one is started,
//! so a corrupt SD card file never turns into a crash loop.
//!
//! [`Store`] is the synchronous core; [`spawn_writer`] (`writer.rs`) runs it on its own thread
//! and commits the bus tasks' samples in batches (see its commit policy). [`seal`] chains the
//! raw samples minute by minute and hands them to the statistics worker. [`outbox`] owns the
//! platform links' queues on a thread of its own; [`params`] keeps the analyzers' parameter
//! history on another, and [`marks`] holds the operators' marks.

pub mod audit;
pub mod marks;
pub mod outbox;
pub mod params;
mod queue;
pub mod schema;
pub mod seal;
mod writer;

pub use writer::{Writer, WriterOptions, spawn_writer};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::compute::Record;
use crate::compute::stats::{Level, Stat};
use crate::model::{Flag, Sample, now_ms};
use crate::time::Offset;
use outbox::Kind;

/// Page cache of the writer's connection (negative: KiB). Appends touch the rightmost path of
/// each table; a minute read back for its seal at 10,000 points (16 MB) fits no cache of a
/// gateway's size anyway and comes from the kernel's. SQLite's default is 2 MiB per connection,
/// which each long-lived connection fills within an hour.
const WRITER_CACHE_KIB: i64 = -1024;
/// Page cache of the other connections (statistics worker, platform links, status page): they
/// read recent records.
const SECONDARY_CACHE_KIB: i64 = -256;

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
    /// Series numbers by device, then factor: looked up by `&str`, so a sample costs no
    /// allocation and no reference count.
    series: HashMap<Arc<str>, HashMap<Arc<str>, i64>>,
    /// The same, by number: what a stored row's series is.
    names: HashMap<i64, (Arc<str>, Arc<str>)>,
    /// Minutes that got rows since the sealer last looked (see [`seal::Sealer`]).
    touched: BTreeSet<i64>,
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
        conn.pragma_update(None, "cache_size", SECONDARY_CACHE_KIB).map_err(sql)?;
        keep_wal_files(&conn).map_err(sql)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            series: HashMap::new(),
            names: HashMap::new(),
            touched: BTreeSet::new(),
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
            names: HashMap::new(),
            touched: BTreeSet::new(),
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
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB).map_err(sql)?;
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
            names: HashMap::new(),
            touched: BTreeSet::new(),
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
            let (device, factor): (Arc<str>, Arc<str>) = (Arc::from(device), Arc::from(factor));
            self.series.entry(device.clone()).or_default().insert(factor.clone(), id);
            self.names.insert(id, (device, factor));
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a batch in one transaction. Returns the number of samples written.
    pub fn insert(&mut self, samples: &[Sample]) -> Result<usize, StoreError> {
        self.commit(samples, None)
    }

    /// Stores a batch and, in the same transaction, seals the minutes that have settled at the
    /// given time (one commit instead of two: each commit costs whole pages of flash).
    /// Returns the number of samples written.
    pub fn commit(
        &mut self,
        samples: &[Sample],
        mut seal: Option<(&mut seal::Sealer, i64)>,
    ) -> Result<usize, StoreError> {
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
        let mut sealed = None;
        {
            let result: rusqlite::Result<()> = (|| {
                let mut insert = tx.prepare_cached("INSERT INTO sample (ts, series, value, flag) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")?;
                let mut last_minute = None;
                for s in samples {
                    let id = match self.series.get(&*s.device).and_then(|f| f.get(&*s.factor)) {
                        Some(id) => *id,
                        None => {
                            let id = seal::new_series(&tx, &s.device, &s.factor)?;
                            self.series.entry(s.device.clone()).or_default().insert(s.factor.clone(), id);
                            self.names.insert(id, (s.device.clone(), s.factor.clone()));
                            id
                        }
                    };
                    if insert.execute(params![s.ts_ms, id, s.value, s.flag.code()])? == 1 {
                        written += 1;
                        let minute = seal::minute_of(s.ts_ms);
                        if last_minute != Some(minute) {
                            self.touched.insert(minute);
                            last_minute = Some(minute);
                        }
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
                if let Some((sealer, now_ms)) = seal.as_mut() {
                    let plan = sealer.plan(std::mem::take(&mut self.touched), *now_ms);
                    let done = seal::seal_due(&tx, &self.names, &plan, sealer.devices())?;
                    sealed = Some((plan, done));
                }
                Ok(())
            })();
            if let Err(e) = result {
                drop(tx);
                return Err(self.rolled_back(e));
            }
        }
        if let Err(e) = tx.commit() {
            return Err(self.rolled_back(e));
        }
        if let (Some((sealer, _)), Some((plan, done))) = (seal, sealed) {
            sealer.apply(&plan, done);
        }
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

    /// After a failed sample transaction: series numbers cached in it may not exist.
    fn rolled_back(&mut self, e: rusqlite::Error) -> StoreError {
        self.series.clear();
        self.names.clear();
        let _ = self.load_series();
        self.err(e)
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
    /// `offset` turns the records' local period starts into Unix time.
    pub fn upsert_records(
        &mut self,
        outlet: &str,
        records: &[Record],
        offset: Offset,
    ) -> Result<usize, StoreError> {
        self.upsert_records_of(&[(outlet, records)], offset)
    }

    /// [`Store::upsert_records`] for several outlets in one transaction (the statistics worker
    /// writes a round's records at once: each commit costs whole pages of flash).
    pub fn upsert_records_of(
        &mut self,
        outlets: &[(&str, &[Record])],
        offset: Offset,
    ) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite { path: path.clone(), reason: source };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let mut n = 0;
        for (outlet, records) in outlets {
            upsert_in(&tx, outlet, records, offset).map_err(sql)?;
            n += records.len();
        }
        tx.commit().map_err(sql)?;
        Ok(n)
    }

    /// Stored records of an outlet and level with start in `[from_ms, to_ms)`, by start then
    /// factor; `start` is given back in local seconds.
    pub fn records(
        &self,
        outlet: &str,
        level: Level,
        from_ms: i64,
        to_ms: i64,
        offset: Offset,
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
                    start: offset.local_secs(r.get(1)?),
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
    pub fn utc_offset(&self) -> Result<Option<Offset>, StoreError> {
        Ok(self.setting("*", UTC_OFFSET_SETTING)?.and_then(|v| Offset::from_seconds(v.parse().ok()?)))
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

    /// Time of the oldest sample at or after `from_ms`, if any (one index probe).
    pub fn first_ts_from(&self, from_ms: i64) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT min(ts) FROM sample WHERE ts >= ?1", [from_ms], |r| r.get::<_, Option<i64>>(0))
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
    ///
    /// Samples go by whole minutes (a sealed minute is either all there or all gone), each
    /// prune with a `retention sample` entry in the same transaction that records its range
    /// and the rule that allowed it, so that `verify` tells a prune from a deletion.
    pub fn enforce_retention(&mut self, r: Retention, now_ms: i64) -> Result<u64, StoreError> {
        let max_age_ms = r.max_age.as_millis().min(i64::MAX as u128) as i64;
        let cutoff = now_ms.saturating_sub(max_age_ms);
        let mut deleted = self
            .prune_samples(seal::minute_of(cutoff), &format!("rule=age max_age_s={}", max_age_ms / 1000))?;
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
        loop {
            let used = self.used_bytes()?;
            if used <= r.max_bytes {
                break;
            }
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
            // Records are never pruned for size: they are small, and an unsent one is what the
            // platforms are owed. They go by age only, above.
            let up_to = seal::minute_of(edge) + seal::MINUTE_MS;
            let d = self.prune_samples(up_to, &format!("rule=size used={used} max={}", r.max_bytes))?;
            deleted += d;
            tracing::warn!(
                deleted = d,
                before_ms = up_to,
                "Buffer over its size limit: oldest samples deleted."
            );
            self.conn.execute_batch("PRAGMA incremental_vacuum;").map_err(|e| self.err(e))?;
        }
        if deleted > 0 {
            self.conn.execute_batch("PRAGMA incremental_vacuum;").map_err(|e| self.err(e))?;
        }
        Ok(deleted)
    }

    /// Deletes every sample before `cutoff_ms` (a minute boundary) with its retention entry.
    fn prune_samples(&mut self, cutoff_ms: i64, rule: &str) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite { path: path.clone(), reason: source };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let n = tx.execute("DELETE FROM sample WHERE ts < ?1", [cutoff_ms]).map_err(sql)? as u64;
        if n > 0 {
            audit::append(
                &tx,
                audit::AuditKind::Retention,
                "sample",
                &format!("ts<{cutoff_ms} rows={n} {rule}"),
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.touched.retain(|m| *m >= cutoff_ms);
        Ok(n)
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
    // A poll's samples come together: one entry per run of the same device and time, then
    // the runs in (device, time) order.
    let mut polls: Vec<(&str, i64, Flag)> = Vec::new();
    for s in samples {
        let flag = if s.flag == Flag::T { Flag::N } else { s.flag };
        match polls.last_mut() {
            Some((d, ts, f)) if *ts == s.ts_ms && *d == &*s.device => {
                if flag.severity() > f.severity() {
                    *f = flag;
                }
            }
            _ => polls.push((&*s.device, s.ts_ms, flag)),
        }
    }
    polls.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    // Two runs of one poll (samples interleaved with another device's) are one poll.
    polls.dedup_by(|b, a| {
        if a.0 == b.0 && a.1 == b.1 {
            if b.2.severity() > a.2.severity() {
                a.2 = b.2;
            }
            true
        } else {
            false
        }
    });
    polls.into_iter().map(|(d, ts, f)| (d, ts, f.as_char())).collect()
}

/// Writes one outlet's records in the caller's transaction, with an audit entry for every
/// period whose content changed.
fn upsert_in(tx: &Connection, outlet: &str, records: &[Record], offset: Offset) -> rusqlite::Result<()> {
    let mut periods: BTreeSet<(u8, i64)> = BTreeSet::new();
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO record (level, outlet, factor, start, n_total, n_valid, min, avg, max, zs_avg, cou, flag, lim, exceeded, zs_min, zs_max, valid) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?;
    for r in records {
        let st = &r.stat;
        stmt.execute(params![
            level_code(r.level),
            outlet,
            r.factor,
            offset.utc_ms(r.start),
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
        ])?;
        periods.insert((level_code(r.level), offset.utc_ms(r.start)));
    }
    for (level, start) in periods {
        audit::chain_periods(tx, outlet, level, [start])?;
    }
    Ok(())
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
