//! The history of key analyzer parameters (range, slope, intercept, calibration time, working
//! state…): every value is stored when it changes, with the time it was read and the value
//! before, in the same transaction as its `parameter` audit entry, whose seq keys the row. The
//! rows are append-only (SQL triggers) and `verify` checks each against its entry.
//!
//! [`spawn`] runs the keeper on a thread of its own with its own connection: the bus tasks send
//! it what they read ([`crate::acquire::bus::ParamSink`]); it compares with the last stored
//! value (also across restarts: a value changed while the gateway was off is a change), stores
//! the changes, then tells the platform links ([`Changes`]) so that they push them (CN 3020).
//!
//! It also reads the audit log for the platforms' log requests (i11001 analyzer log, i21001
//! logger log, [`Store::log_entries`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{broadcast, mpsc};

use super::audit::{self, AuditKind, BrokenLink};
use super::{Store, StoreError};
use crate::acquire::params::Reading;

/// Readings waiting for the keeper; a bus task whose batch does not fit offers it again later.
const CHANNEL: usize = 256;
/// Change batches the links may lag behind before they miss some (they are told how many).
const BROADCAST: usize = 256;
/// Readings kept in memory while they cannot be committed.
const PENDING_CAP: usize = 10_000;

/// A parameter read with a new value, stored and audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub device: String,
    pub code: String,
    /// The factor it belongs to; `None`: every point of the device.
    pub pol: Option<String>,
    /// When it was read, Unix ms.
    pub ts_ms: i64,
    pub value: String,
    /// The value stored before; `None` for the first reading.
    pub previous: Option<String>,
    /// Its audit entry.
    pub seq: i64,
}

/// The changes of one batch, as the links receive them.
pub type Changes = Arc<Vec<Change>>;

/// A stored parameter value with its time (the history, or the latest).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub change: Change,
}

/// The audit entry's subject of a parameter.
pub fn subject(device: &str, code: &str, pol: Option<&str>) -> String {
    format!("{device}/{code}/{}", pol.unwrap_or(""))
}

/// The audit entry's detail of a change: what `verify` recomputes from the row.
pub fn detail(ts_ms: i64, value: &str, previous: Option<&str>) -> String {
    format!("value={value} previous={} at_ms={ts_ms}", previous.unwrap_or("-"))
}

/// The keeper's handle: where readings go, and where the links hear of changes.
#[derive(Debug)]
pub struct Keeper {
    pub sink: mpsc::Sender<Vec<Reading>>,
    pub changes: broadcast::Sender<Changes>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Runs the keeper over `store` (a connection of its own). It ends once every sink is dropped
/// (the bus tasks are gone), after a last attempt at what it could not commit.
pub fn spawn(mut store: Store) -> Keeper {
    let (sink, mut rx) = mpsc::channel::<Vec<Reading>>(CHANNEL);
    let (changes, _) = broadcast::channel(BROADCAST);
    let tx = changes.clone();
    let thread = std::thread::Builder::new()
        .name("parameters".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("parameter thread runtime");
            let mut last: Option<HashMap<(String, String, String), String>> = None;
            let mut pending: Vec<Reading> = Vec::new();
            loop {
                let wait = if pending.is_empty() { Duration::from_secs(3600) } else { Duration::from_secs(5) };
                let closed = match super::recv_timeout(&rt, &mut rx, wait) {
                    super::Recv::Got(batch) => {
                        pending.extend(batch);
                        false
                    }
                    super::Recv::Timeout => false,
                    super::Recv::Closed => true,
                };
                if !pending.is_empty() {
                    match store.record_parameters(&mut last, &pending) {
                        Ok(done) => {
                            pending.clear();
                            if !done.is_empty() {
                                // Nobody listening (no HJ 212 link) is fine.
                                let _ = tx.send(Arc::new(done));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, pending = pending.len(), "Cannot store parameter values; keeping them and retrying.");
                            if pending.len() > PENDING_CAP {
                                let lost = pending.len() - PENDING_CAP;
                                pending.drain(..lost);
                                tracing::error!(lost, "Parameter values dropped: the buffer cannot be written.");
                            }
                        }
                    }
                }
                if closed {
                    return;
                }
            }
        })
        .expect("spawning the parameter thread");
    Keeper { sink, changes, thread }
}

fn row_change(r: &rusqlite::Row<'_>) -> rusqlite::Result<Change> {
    let pol: String = r.get(3)?;
    Ok(Change {
        seq: r.get(0)?,
        device: r.get(1)?,
        code: r.get(2)?,
        pol: (!pol.is_empty()).then_some(pol),
        ts_ms: r.get(4)?,
        value: r.get(5)?,
        previous: r.get(6)?,
    })
}

const COLUMNS: &str = "seq, device, code, pol, ts, value, previous";

/// The newest stored value of every parameter.
fn latest_values(conn: &Connection) -> rusqlite::Result<HashMap<(String, String, String), String>> {
    let mut stmt = conn.prepare(
        "SELECT device, code, pol, value FROM parameter WHERE seq IN \
         (SELECT max(seq) FROM parameter GROUP BY device, code, pol)",
    )?;
    let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)))?;
    rows.collect()
}

impl Store {
    /// Stores the readings whose value differs from the last stored one, each with its audit
    /// entry, in one transaction; `last` caches the stored values (loaded on first use).
    /// Returns the changes.
    pub fn record_parameters(
        &mut self,
        last: &mut Option<HashMap<(String, String, String), String>>,
        readings: &[Reading],
    ) -> Result<Vec<Change>, StoreError> {
        let path = self.path.clone();
        let sql = |reason| StoreError::Sqlite { path: path.clone(), reason };
        if last.is_none() {
            *last = Some(latest_values(&self.conn).map_err(sql)?);
        }
        let known = last.as_mut().expect("loaded above");
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let mut changes = Vec::new();
        for r in readings {
            let key = (r.device.to_string(), r.code.clone(), r.pol.clone().unwrap_or_default());
            let previous = changes
                .iter()
                .rev()
                .find(|c: &&Change| {
                    (c.device.as_str(), &c.code, c.pol.as_deref().unwrap_or("")) == (&*key.0, &key.1, &*key.2)
                })
                .map(|c| Some(c.value.clone()))
                .unwrap_or_else(|| known.get(&key).cloned());
            if previous.as_deref() == Some(r.value.as_str()) {
                continue;
            }
            let subject = subject(&r.device, &r.code, r.pol.as_deref());
            let seq = audit::append(
                &tx,
                AuditKind::Parameter,
                &subject,
                &detail(r.ts_ms, &r.value, previous.as_deref()),
            )
            .map_err(sql)?;
            tx.execute(
                "INSERT INTO parameter (seq, device, code, pol, ts, value, previous) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![seq, &*r.device, r.code, key.2, r.ts_ms, r.value, previous],
            )
            .map_err(sql)?;
            changes.push(Change {
                device: r.device.to_string(),
                code: r.code.clone(),
                pol: r.pol.clone(),
                ts_ms: r.ts_ms,
                value: r.value.clone(),
                previous,
                seq,
            });
        }
        tx.commit().map_err(sql)?;
        for c in &changes {
            known.insert(
                (c.device.clone(), c.code.clone(), c.pol.clone().unwrap_or_default()),
                c.value.clone(),
            );
        }
        for c in &changes {
            match &c.previous {
                Some(p) => {
                    tracing::info!(device = %c.device, code = %c.code, pol = c.pol.as_deref().unwrap_or(""), value = %c.value, previous = %p, "Analyzer parameter changed.")
                }
                None => {
                    tracing::info!(device = %c.device, code = %c.code, pol = c.pol.as_deref().unwrap_or(""), value = %c.value, "Analyzer parameter first read.")
                }
            }
        }
        Ok(changes)
    }

    /// Stored changes read in `[from_ms, to_ms)`, oldest first.
    pub fn parameter_changes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Change>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM parameter WHERE ts >= ?1 AND ts < ?2 ORDER BY seq"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params![from_ms, to_ms], row_change).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// The newest stored value of every parameter (its last change).
    pub fn parameter_latest(&self) -> Result<Vec<Change>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM parameter WHERE seq IN \
                 (SELECT max(seq) FROM parameter GROUP BY device, code, pol) ORDER BY device, code, pol"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], row_change).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// When `device` went into calibration (`C`) in `[from_ms, to_ms)`, from its analyzer
    /// state entries, oldest first.
    pub fn calibration_starts(&self, device: &str, from_ms: i64, to_ms: i64) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT detail FROM audit WHERE kind = 'analyzer' AND subject = ?1 \
                 AND ts_ms >= ?2 AND ts_ms < ?3 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        // An entry is written within seconds of the state it records.
        let rows = stmt
            .query_map(params![device, from_ms, to_ms.saturating_add(600_000)], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for detail in rows {
            let detail = detail.map_err(|e| self.err(e))?;
            if audit::parse_state(&detail) != Some('C') {
                continue;
            }
            if let Some(at) = detail.split(" at_ms=").nth(1).and_then(|t| t.parse::<i64>().ok())
                && (from_ms..to_ms).contains(&at)
            {
                out.push(at);
            }
        }
        Ok(out)
    }

    /// Audit entries written in `[from_ms, to_ms)` other than record periods (a log line each:
    /// analyzer states, parameters, marks, configuration, clock, platform commands…), oldest
    /// first, at most `limit`; with the number left out beyond it.
    pub fn log_entries(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<(Vec<LogEntry>, u64), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, ts_ms, kind, subject, detail FROM audit \
                 WHERE ts_ms >= ?1 AND ts_ms < ?2 AND kind != 'record' ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![from_ms, to_ms]).map_err(|e| self.err(e))?;
        let (mut out, mut more) = (Vec::new(), 0u64);
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            if out.len() >= limit {
                more += 1;
                continue;
            }
            out.push(LogEntry {
                seq: r.get(0).map_err(|e| self.err(e))?,
                ts_ms: r.get(1).map_err(|e| self.err(e))?,
                kind: r.get(2).map_err(|e| self.err(e))?,
                subject: r.get(3).map_err(|e| self.err(e))?,
                detail: r.get(4).map_err(|e| self.err(e))?,
            });
        }
        Ok((out, more))
    }
}

/// One audit entry as a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: i64,
    pub ts_ms: i64,
    pub kind: String,
    pub subject: String,
    pub detail: String,
}

/// Every parameter row against its audit entry, and every `parameter` entry against its row:
/// a row edited, inserted or deleted outside the gateway (the triggers dropped) shows.
pub(super) fn verify(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<Vec<BrokenLink>> {
    let mut faults = Vec::new();
    let mut entry = conn.prepare_cached("SELECT kind, subject, detail FROM audit WHERE seq = ?1")?;
    let mut stmt =
        conn.prepare(&format!("SELECT {COLUMNS} FROM parameter WHERE ts >= ?1 AND ts < ?2 ORDER BY seq"))?;
    let rows = stmt.query_map(params![from, to], row_change)?;
    for row in rows {
        let c = row?;
        let subject = subject(&c.device, &c.code, c.pol.as_deref());
        let want = detail(c.ts_ms, &c.value, c.previous.as_deref());
        let found: Option<(String, String, String)> =
            entry.query_row([c.seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
        let ok = found.as_ref().is_some_and(|(k, s, d)| k == "parameter" && *s == subject && *d == want);
        if !ok {
            faults.push(BrokenLink {
                seq: Some(c.seq),
                subject: format!("parameter {subject}"),
                reason:
                    "the parameter row differs from its audit entry: edited or inserted outside the gateway"
                        .into(),
            });
        }
    }
    let mut stmt = conn.prepare(
        "SELECT a.seq, a.subject FROM audit a LEFT JOIN parameter p ON p.seq = a.seq \
         WHERE a.kind = 'parameter' AND p.seq IS NULL AND a.ts_ms >= ?1 AND a.ts_ms < ?2",
    )?;
    let rows = stmt.query_map(params![from, to], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (seq, subject) = row?;
        faults.push(BrokenLink {
            seq: Some(seq),
            subject: format!("parameter {subject}"),
            reason: "the parameter row of this entry is gone: deleted outside the gateway".into(),
        });
    }
    Ok(faults)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(device: &str, code: &str, pol: Option<&str>, ts_ms: i64, value: &str) -> Reading {
        Reading {
            device: Arc::from(device),
            code: code.into(),
            pol: pol.map(str::to_string),
            ts_ms,
            value: value.into(),
        }
    }

    #[test]
    fn only_changes_are_stored_each_with_its_audit_entry_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let (mut store, _) = Store::open(&path).unwrap();
        let mut last = None;
        let first = store
            .record_parameters(
                &mut last,
                &[
                    reading("gas", "i13001", Some("a21026"), 1000, "1000"),
                    reading("gas", "i13008", None, 1000, "1.02"),
                ],
            )
            .unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].previous, None);
        let same = store
            .record_parameters(&mut last, &[reading("gas", "i13001", Some("a21026"), 2000, "1000")])
            .unwrap();
        assert!(same.is_empty(), "an unchanged value is not stored again");
        let changed = store
            .record_parameters(&mut last, &[reading("gas", "i13001", Some("a21026"), 3000, "500")])
            .unwrap();
        assert_eq!(changed[0].previous.as_deref(), Some("1000"));
        drop(store);
        // A new process: the last stored value is the reference, not nothing.
        let (mut store, _) = Store::open(&path).unwrap();
        let mut last = None;
        assert!(
            store
                .record_parameters(&mut last, &[reading("gas", "i13001", Some("a21026"), 4000, "500")])
                .unwrap()
                .is_empty()
        );
        let off =
            store.record_parameters(&mut last, &[reading("gas", "i13008", None, 5000, "0.98")]).unwrap();
        assert_eq!(off[0].previous.as_deref(), Some("1.02"), "changed while the gateway was off");
        let history = store.parameter_changes(0, 10_000).unwrap();
        assert_eq!(
            history.iter().map(|c| c.value.as_str()).collect::<Vec<_>>(),
            ["1000", "1.02", "500", "0.98"]
        );
        let latest = store.parameter_latest().unwrap();
        assert_eq!(latest.iter().map(|c| c.value.as_str()).collect::<Vec<_>>(), ["500", "0.98"]);
        let status = store.verify_chain(None, None).unwrap();
        assert!(status.verified, "{:?}", status.first_broken);
        let (log, more) = store.log_entries(0, i64::MAX, 10).unwrap();
        assert_eq!(more, 0);
        assert!(
            log.iter().any(|e| e.kind == "parameter" && e.detail.starts_with("value=500 previous=1000")),
            "{log:?}"
        );
    }
}
