//! Raw samples in the audit chain: every settled minute of samples is sealed once, by the
//! writer, with one entry over its rows, and handed to the statistics worker.
//!
//! A minute is *settled* once its late polls can have arrived (the writer's `settle` time after
//! it ends). The writer then reads the minute's rows back in `(ts, series)` order, the table's
//! own order, so one short range scan of new rows only, and appends
//! `samples YYYY-MM-DDTHH:MMZ` (the minute's UTC start) with `n=ROWS sha256=DIGEST` in its own
//! transaction. The same rows, those of the outlets' devices, go to the statistics worker
//! through the [`Handover`], so its cost is the outlet's new samples. A row that arrives for an
//! already sealed minute makes the writer seal that minute again (a new entry supersedes the
//! old) and tells the worker, which recomputes that minute and the periods above it.
//!
//! The digest covers every column of every row with its SQLite type (an edit that only changes
//! a type still shows). Rows refer to series by number; the series table is chained too
//! (`series ID` with the device and factor, when a series is created), so renaming a series
//! shows as well.
//!
//! [`verify_samples`] recomputes each sealed minute and compares it with its latest entry:
//! rows edited, deleted or inserted name the minute. Sealed minutes before a `retention sample`
//! entry written after their seal are *pruned*, not broken; a prune entry is checked against
//! the rule it records (age or size). Rows in a minute older than the newest seal that was
//! never sealed were inserted. Rows newer than the newest seal are *pending* (the tail before a
//! stop is sealed at the next start). Buffers from before samples were chained carry a
//! `retention sample ts<… rule=unchained` entry: older rows are outside the chain.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::audit::{self, AuditKind};
use super::{Store, StoreError};
use crate::model::Flag;

mod handover;
mod verify;

pub use handover::{Handed, Handover, SealedMinute, SealedRow};
pub use verify::SampleCheck;
pub(in crate::store) use verify::verify_samples;

pub const MINUTE_MS: i64 = 60_000;

/// Minutes older than this at their first seal (a backlog after a stop) are not handed over
/// with their rows: the worker starts from its stored records and reads what it needs.
const HANDOVER_RECENT_MS: i64 = 10 * MINUTE_MS;

/// Start (Unix ms) of the minute containing `ts_ms`.
pub fn minute_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// The subject of a minute's seal: its UTC start as `YYYY-MM-DDTHH:MMZ`, which sorts as time
/// does, so the newest seal is the greatest subject.
pub fn minute_subject(start_ms: i64) -> String {
    crate::time::Utc(start_ms).minute_z()
}

/// The minute start (Unix ms) a seal's subject names.
pub fn parse_minute_subject(s: &str) -> Option<i64> {
    crate::time::Utc::parse_minute_z(s).map(|t| t.0)
}

/// The chained form of a series: device and factor, quoted so that no two differ only in
/// where one name ends.
pub(super) fn series_detail(device: &str, factor: &str) -> String {
    format!("{device:?} {factor:?}")
}

/// Creates a series and chains it, in the caller's transaction. Returns its number (also when
/// it existed already).
pub(super) fn new_series(conn: &Connection, device: &str, factor: &str) -> rusqlite::Result<i64> {
    let created: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO series (device, factor) VALUES (?1, ?2) ON CONFLICT DO NOTHING RETURNING id",
        )?
        .query_row(params![device, factor], |r| r.get(0))
        .optional()?;
    match created {
        Some(id) => {
            audit::append(conn, AuditKind::Series, &id.to_string(), &series_detail(device, factor))?;
            Ok(id)
        }
        None => conn
            .prepare_cached("SELECT id FROM series WHERE device = ?1 AND factor = ?2")?
            .query_row(params![device, factor], |r| r.get(0)),
    }
}

/// For a buffer from before raw samples were chained: chains its series as they are, and marks
/// every minute up to its newest sample as stored before the chain (`retention sample
/// ts<CUTOFF rule=unchained`). Returns the cutoff, if there were samples.
pub(super) fn mark_unchained(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let series: Vec<(i64, String, String)> = conn
        .prepare("SELECT id, device, factor FROM series ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, device, factor) in series {
        audit::append(conn, AuditKind::Series, &id.to_string(), &series_detail(&device, &factor))?;
    }
    let newest: Option<i64> = conn.query_row("SELECT max(ts) FROM sample", [], |r| r.get(0))?;
    let cutoff = newest.map(|ts| minute_of(ts) + MINUTE_MS);
    if let Some(cutoff) = cutoff {
        audit::append(conn, AuditKind::Retention, "sample", &format!("ts<{cutoff} rule=unchained"))?;
    }
    Ok(cutoff)
}

/// The digest of a minute's rows, fed in `(ts, series)` order.
struct MinuteDigest {
    h: Sha256,
    n: u64,
}

impl MinuteDigest {
    fn new() -> MinuteDigest {
        MinuteDigest { h: Sha256::new(), n: 0 }
    }

    /// Adds one `(ts, series, value, flag)` row.
    fn push(&mut self, row: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        for i in 0..4 {
            audit::hash_value(&mut self.h, row.get_ref(i)?);
        }
        self.n += 1;
        Ok(())
    }

    /// The entry's detail: `n=ROWS sha256=HEX`.
    fn detail(self) -> String {
        format!("n={} sha256={}", self.n, audit::hex(&self.h.finalize()))
    }
}

fn detail_rows(detail: &str) -> Option<u64> {
    detail.strip_prefix("n=")?.split(' ').next()?.parse().ok()
}

/// The writer's side: which minutes have rows not yet sealed, and when they are due.
#[derive(Debug)]
pub struct Sealer {
    settle_ms: i64,
    /// Minutes with rows written since their last seal.
    pending: BTreeSet<i64>,
    /// Every minute before this is sealed or has no rows (Unix ms, minute-aligned).
    through: i64,
    handover: Arc<Handover>,
}

/// Rows sealed at most per tick, so that a start after a long stop does not hold up commits.
const ROWS_PER_TICK: u64 = 200_000;

/// The minutes due at one tick, and the horizon they were chosen against.
#[derive(Debug)]
pub(super) struct Plan {
    /// (minute, whether its rows go to the statistics worker), oldest first.
    due: Vec<(i64, bool)>,
    horizon: i64,
}

impl Sealer {
    /// Picks up where the chain stands: minutes with rows after the newest seal (the tail
    /// before a stop or a crash) are sealed as they come due.
    pub fn start(store: &mut Store, settle: Duration, handover: Arc<Handover>) -> Result<Sealer, StoreError> {
        let through = store.seal_horizon()?.unwrap_or(i64::MIN);
        let pending = store.sample_minutes_from(through)?;
        Ok(Sealer { settle_ms: settle.as_millis() as i64, pending, through, handover })
    }

    /// Seals every minute that has settled at `now_ms`, in a transaction of its own (the
    /// writer seals inside its sample commits instead: `Store::commit`).
    pub fn tick(&mut self, store: &mut Store, now_ms: i64) -> Result<(), StoreError> {
        let plan = self.plan(store.take_touched(), now_ms);
        self.seal_planned(store, plan)
    }

    /// Seals everything (at shutdown: no more samples will come), then closes the handover.
    pub fn finish(&mut self, store: &mut Store) -> Result<(), StoreError> {
        self.pending.extend(store.take_touched());
        while let Some(&last) = self.pending.last() {
            let plan = self.plan_before(last + MINUTE_MS);
            self.seal_planned(store, plan)?;
        }
        self.handover.close();
        Ok(())
    }

    fn seal_planned(&mut self, store: &mut Store, plan: Plan) -> Result<(), StoreError> {
        let sealed = if plan.due.is_empty() {
            Vec::new()
        } else {
            store.seal_minutes(&plan, &self.handover.devices)?
        };
        self.apply(&plan, sealed);
        Ok(())
    }

    /// The minutes due at `now_ms`, with the minutes that got rows since the last plan.
    pub(super) fn plan(&mut self, touched: BTreeSet<i64>, now_ms: i64) -> Plan {
        self.pending.extend(touched);
        self.plan_before(minute_of(now_ms.saturating_sub(self.settle_ms)))
    }

    fn plan_before(&self, horizon: i64) -> Plan {
        let due = self
            .pending
            .range(..horizon)
            .map(|&minute| {
                let first = minute >= self.through;
                (minute, first && minute + HANDOVER_RECENT_MS >= horizon)
            })
            .collect();
        Plan { due, horizon }
    }

    pub(super) fn devices(&self) -> &HashSet<Arc<str>> {
        &self.handover.devices
    }

    /// Takes note of what a committed transaction sealed, and hands it over.
    pub(super) fn apply(&mut self, plan: &Plan, sealed: Vec<(i64, Sealed)>) {
        let done = sealed.len() == plan.due.len();
        for (minute, sealed) in sealed {
            self.pending.remove(&minute);
            if minute >= self.through {
                self.through = minute + MINUTE_MS;
                if !sealed.rows.is_empty() {
                    self.handover.push(SealedMinute { start_ms: minute, rows: sealed.rows });
                }
            } else if sealed.changed {
                self.handover.resealed(minute);
            }
        }
        // Not done: the rest at the next tick, so that commits of new samples go first.
        if done {
            self.through = self.through.max(plan.horizon);
        }
        self.handover.advance(self.through);
    }
}

/// The outcome of sealing one minute.
#[derive(Debug)]
pub struct Sealed {
    /// Rows in the minute.
    pub n: u64,
    /// Whether a new entry was chained (the content differs from the minute's last seal).
    pub changed: bool,
    /// The rows of the wanted devices, in `(ts, series)` order.
    pub rows: Vec<SealedRow>,
}

impl Store {
    /// Seals the planned minutes in one transaction of their own (see [`seal_due`]).
    fn seal_minutes(
        &mut self,
        plan: &Plan,
        devices: &HashSet<Arc<str>>,
    ) -> Result<Vec<(i64, Sealed)>, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite { path: path.clone(), reason: source };
        let names = &self.names;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let out = seal_due(&tx, names, plan, devices).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(out)
    }

    /// Where the sample chain stands: the end of the newest sealed minute, or of the newest
    /// prune (rows before it are gone or outside the chain). `None` on a fresh buffer.
    pub fn seal_horizon(&self) -> Result<Option<i64>, StoreError> {
        let newest: Option<String> = self
            .conn
            .query_row("SELECT max(subject) FROM audit WHERE kind = 'samples'", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let sealed = newest.as_deref().and_then(parse_minute_subject).map(|m| m + MINUTE_MS);
        let pruned: Option<String> = self
            .conn
            .query_row(
                "SELECT detail FROM audit WHERE kind = 'retention' AND subject = 'sample' ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let pruned = pruned.as_deref().and_then(prune_cutoff);
        Ok(sealed.max(pruned))
    }

    /// The minutes with rows at or after `from_ms`, one index probe each.
    fn sample_minutes_from(&self, from_ms: i64) -> Result<BTreeSet<i64>, StoreError> {
        let mut minutes = BTreeSet::new();
        let mut stmt =
            self.conn.prepare_cached("SELECT min(ts) FROM sample WHERE ts >= ?1").map_err(|e| self.err(e))?;
        let mut from = from_ms;
        while let Some(ts) =
            stmt.query_row([from], |r| r.get::<_, Option<i64>>(0)).map_err(|e| self.err(e))?
        {
            let minute = minute_of(ts);
            minutes.insert(minute);
            from = minute + MINUTE_MS;
        }
        Ok(minutes)
    }

    /// Minutes that got rows since the last call (the sealer's input).
    pub(super) fn take_touched(&mut self) -> BTreeSet<i64> {
        std::mem::take(&mut self.touched)
    }
}

/// Seals the planned minutes in the caller's transaction, oldest first, until
/// [`ROWS_PER_TICK`] rows were read: each gets one `samples` entry over its rows, unless they
/// are what its last entry already says (or there are none). The rows of `devices` in a
/// minute marked as wanted are returned too, read in the same pass.
pub(super) fn seal_due(
    tx: &Connection,
    names: &HashMap<i64, (Arc<str>, Arc<str>)>,
    plan: &Plan,
    devices: &HashSet<Arc<str>>,
) -> rusqlite::Result<Vec<(i64, Sealed)>> {
    let mut out = Vec::new();
    let mut rows_read = 0;
    for &(minute, wanted) in &plan.due {
        let sealed = seal_in(tx, names, minute, wanted.then_some(devices))?;
        rows_read += sealed.n;
        out.push((minute, sealed));
        if rows_read >= ROWS_PER_TICK {
            break;
        }
    }
    Ok(out)
}

/// Seals one minute inside the caller's transaction.
fn seal_in(
    tx: &Connection,
    names: &HashMap<i64, (Arc<str>, Arc<str>)>,
    start_ms: i64,
    wanted: Option<&HashSet<Arc<str>>>,
) -> rusqlite::Result<Sealed> {
    let mut digest = MinuteDigest::new();
    let mut rows = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT ts, series, value, flag FROM sample WHERE ts >= ?1 AND ts < ?2 ORDER BY ts, series",
        )?;
        let mut cursor = stmt.query(params![start_ms, start_ms + MINUTE_MS])?;
        while let Some(row) = cursor.next()? {
            digest.push(row)?;
            let Some(wanted) = wanted else { continue };
            let id: i64 = row.get(1)?;
            let Some((device, factor)) = names.get(&id) else { continue };
            if !wanted.contains(device) {
                continue;
            }
            let flag: u8 = row.get(3)?;
            rows.push(SealedRow {
                ts_ms: row.get(0)?,
                device: device.clone(),
                factor: factor.clone(),
                value: row.get(2)?,
                flag: Flag::from_code(flag).unwrap_or(Flag::D),
            });
        }
    }
    let n = digest.n;
    let detail = digest.detail();
    let subject = minute_subject(start_ms);
    let last = audit::latest(tx, AuditKind::Samples, &subject)?;
    let changed = n > 0 && last.is_none_or(|(_, d)| d != detail);
    if changed {
        audit::append(tx, AuditKind::Samples, &subject, &detail)?;
    }
    Ok(Sealed { n, changed, rows })
}

/// The cutoff of a `retention sample` entry (`ts<CUTOFF …`).
fn prune_cutoff(detail: &str) -> Option<i64> {
    detail.strip_prefix("ts<")?.split(' ').next()?.parse().ok()
}

fn detail_field<'a>(detail: &'a str, key: &str) -> Option<&'a str> {
    detail.split(' ').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}
