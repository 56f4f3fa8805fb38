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
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::audit::{self, AuditKind, BrokenLink};
use super::{Store, StoreError};
use crate::model::Flag;

pub const MINUTE_MS: i64 = 60_000;

/// Start (Unix ms) of the minute containing `ts_ms`.
pub fn minute_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// The subject of a minute's seal: its UTC start as `YYYY-MM-DDTHH:MMZ`, which sorts as time
/// does, so the newest seal is the greatest subject.
pub fn minute_subject(start_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(start_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

fn parse_minute_subject(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]Z");
    let t = time::PrimitiveDateTime::parse(s, format).ok()?;
    Some(t.assume_utc().unix_timestamp() * 1000)
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

/// One sample as handed to the statistics worker.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedRow {
    pub ts_ms: i64,
    pub device: Arc<str>,
    pub factor: Arc<str>,
    pub value: Option<f64>,
    pub flag: Flag,
}

/// A minute sealed for the first time, with the rows of the outlets' devices.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedMinute {
    pub start_ms: i64,
    pub rows: Vec<SealedRow>,
}

/// What the writer has handed over since the worker last took it.
#[derive(Debug, Default)]
pub struct Handed {
    /// Every minute before this (Unix ms) is sealed or has no rows; `None` before the first seal.
    pub through: Option<i64>,
    /// Minutes sealed for the first time, oldest first, with their rows. A minute below
    /// `through` that is not here either has no rows or did not fit: read it from the store.
    pub minutes: Vec<SealedMinute>,
    /// Minutes sealed again because rows arrived after their seal.
    pub resealed: BTreeSet<i64>,
    /// Set when more minutes were resealed than the notice holds: recompute from here.
    pub resealed_from: Option<i64>,
    /// The writer has stopped: nothing more will come.
    pub closed: bool,
}

/// Rows held for the worker at most (about 3 MB); past this, minutes are left for the worker
/// to read from the store.
const HANDOVER_ROWS: usize = 50_000;
/// Minutes older than this at their first seal (a backlog after a stop) are not handed over
/// with their rows: the worker starts from its stored records and reads what it needs.
const HANDOVER_RECENT_MS: i64 = 10 * MINUTE_MS;
/// Resealed minutes noted at most; past this, the notice becomes "everything from the oldest".
const HANDOVER_RESEALS: usize = 10_000;

/// The writer → statistics worker handover: state, not a queue, so nothing is lost when the
/// worker is slow and nothing grows without bound (rows past [`HANDOVER_ROWS`] are left for
/// the worker to read from the store).
#[derive(Debug)]
pub struct Handover {
    devices: HashSet<Arc<str>>,
    state: Mutex<HandoverState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct HandoverState {
    handed: Handed,
    /// Rows held in `handed.minutes`.
    rows: usize,
    /// `through` as the worker last took it.
    taken_through: Option<i64>,
}

impl HandoverState {
    fn news(&self) -> bool {
        let h = &self.handed;
        h.closed
            || !h.minutes.is_empty()
            || !h.resealed.is_empty()
            || h.resealed_from.is_some()
            || h.through != self.taken_through
    }
}

impl Handover {
    /// A handover of the rows of `devices` (the devices of outlets).
    pub fn new(devices: impl IntoIterator<Item = Arc<str>>) -> Handover {
        Handover {
            devices: devices.into_iter().collect(),
            state: Mutex::new(HandoverState::default()),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HandoverState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, minute: SealedMinute) {
        let mut state = self.lock();
        if state.rows + minute.rows.len() <= HANDOVER_ROWS {
            state.rows += minute.rows.len();
            state.handed.minutes.push(minute);
        }
    }

    fn resealed(&self, minute: i64) {
        let mut state = self.lock();
        let handed = &mut state.handed;
        if handed.resealed_from.is_some_and(|from| from <= minute) {
            return;
        }
        handed.resealed.insert(minute);
        if handed.resealed.len() > HANDOVER_RESEALS {
            handed.resealed_from = handed.resealed.first().copied();
            handed.resealed.clear();
        }
    }

    fn advance(&self, through: i64) {
        let mut state = self.lock();
        let before = state.handed.through;
        state.handed.through = Some(before.map_or(through, |t| t.max(through)));
        let news = state.news();
        drop(state);
        if news {
            self.ready.notify_all();
        }
    }

    /// Marks the end: the writer has sealed everything it will.
    pub fn close(&self) {
        self.lock().handed.closed = true;
        self.ready.notify_all();
    }

    /// Takes what was handed over, waiting up to `wait` for something new.
    pub fn take(&self, wait: Duration) -> Handed {
        let state = self.lock();
        let (mut state, _) =
            self.ready.wait_timeout_while(state, wait, |s| !s.news()).unwrap_or_else(|e| e.into_inner());
        let (through, closed) = (state.handed.through, state.handed.closed);
        state.rows = 0;
        state.taken_through = through;
        let handed = std::mem::take(&mut state.handed);
        state.handed.through = through;
        state.handed.closed = closed;
        handed
    }
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

impl Sealer {
    /// Picks up where the chain stands: minutes with rows after the newest seal (the tail
    /// before a stop or a crash) are sealed as they come due.
    pub fn start(store: &mut Store, settle: Duration, handover: Arc<Handover>) -> Result<Sealer, StoreError> {
        let through = store.seal_horizon()?.unwrap_or(i64::MIN);
        let pending = store.sample_minutes_from(through)?;
        Ok(Sealer { settle_ms: settle.as_millis() as i64, pending, through, handover })
    }

    /// Seals every minute that has settled at `now_ms`.
    pub fn tick(&mut self, store: &mut Store, now_ms: i64) -> Result<(), StoreError> {
        self.pending.extend(store.take_touched());
        self.seal_before(store, minute_of(now_ms.saturating_sub(self.settle_ms)))
    }

    /// Seals everything (at shutdown: no more samples will come), then closes the handover.
    pub fn finish(&mut self, store: &mut Store) -> Result<(), StoreError> {
        self.pending.extend(store.take_touched());
        while let Some(&last) = self.pending.last() {
            self.seal_before(store, last + MINUTE_MS)?;
        }
        self.handover.close();
        Ok(())
    }

    fn seal_before(&mut self, store: &mut Store, horizon: i64) -> Result<(), StoreError> {
        let due: Vec<(i64, bool)> = self
            .pending
            .range(..horizon)
            .map(|&minute| {
                let first = minute >= self.through;
                (minute, first && minute + HANDOVER_RECENT_MS >= horizon)
            })
            .collect();
        if !due.is_empty() {
            let sealed = store.seal_minutes(&due, &self.handover.devices, ROWS_PER_TICK)?;
            let done = sealed.len() == due.len();
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
            if !done {
                // The rest at the next tick: commits of new samples go first.
                self.handover.advance(self.through);
                return Ok(());
            }
        }
        self.through = self.through.max(horizon);
        self.handover.advance(self.through);
        Ok(())
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
    /// Seals minutes in one transaction, in the order given, until `max_rows` rows were read:
    /// each gets one `samples` entry over its rows, unless they are what its last entry
    /// already says (or there are none). With a minute marked as wanted, its rows of `devices`
    /// are returned too, read in the same pass. Returns the minutes sealed, in order.
    pub fn seal_minutes(
        &mut self,
        minutes: &[(i64, bool)],
        devices: &HashSet<Arc<str>>,
        max_rows: u64,
    ) -> Result<Vec<(i64, Sealed)>, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite { path: path.clone(), source };
        let names = &self.names;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let mut out = Vec::new();
        let mut rows_read = 0;
        for &(minute, wanted) in minutes {
            let sealed = seal_in(&tx, names, minute, wanted.then_some(devices)).map_err(sql)?;
            rows_read += sealed.n;
            out.push((minute, sealed));
            if rows_read >= max_rows {
                break;
            }
        }
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
    fn take_touched(&mut self) -> BTreeSet<i64> {
        std::mem::take(&mut self.touched)
    }
}

/// Seals one minute inside the caller's transaction (see [`Store::seal_minutes`]).
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

/// The outcome of checking the samples against their seals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleCheck {
    /// Sealed minutes whose rows match their latest seal.
    pub minutes: u64,
    /// Sealed minutes whose rows were pruned by retention.
    pub pruned: u64,
    /// Minutes with rows newer than the newest seal (sealed when they settle).
    pub pending: u64,
    /// Minutes with rows stored before samples were chained.
    pub unchained: u64,
    pub faults: Vec<BrokenLink>,
}

/// One prune of samples, as its entry records it.
struct Prune {
    seq: i64,
    cutoff: i64,
}

/// A minute's latest seal: (minute, seq, detail).
type Seal = (i64, i64, String);

/// The seals of a range in minute order, each minute's latest only.
struct Seals<'s> {
    rows: rusqlite::Rows<'s>,
    ahead: Option<Seal>,
}

impl Seals<'_> {
    fn next_row(&mut self) -> rusqlite::Result<Option<Seal>> {
        while let Some(row) = self.rows.next()? {
            let subject: String = row.get(0)?;
            let Some(minute) = parse_minute_subject(&subject) else { continue };
            return Ok(Some((minute, row.get(1)?, row.get(2)?)));
        }
        Ok(None)
    }

    /// The next minute's latest seal (entries come by subject, then seq).
    fn next(&mut self) -> rusqlite::Result<Option<Seal>> {
        let Some(mut current) = self.ahead.take().map_or_else(|| self.next_row(), |s| Ok(Some(s)))? else {
            return Ok(None);
        };
        loop {
            match self.next_row()? {
                Some(s) if s.0 == current.0 => current = s,
                other => {
                    self.ahead = other;
                    return Ok(Some(current));
                }
            }
        }
    }
}

/// Judges minutes: their rows (if any) against their latest seal (if any).
struct Judge {
    prunes: Vec<Prune>,
    unchained_before: i64,
    sealed_through: i64,
    check: SampleCheck,
}

impl Judge {
    fn judge(&mut self, minute: i64, found: Option<MinuteDigest>, sealed: Option<Seal>) {
        let subject = format!("samples {}", minute_subject(minute));
        let check = &mut self.check;
        match (found, sealed) {
            (Some(found), Some((_, seq, chained))) => {
                let n_found = found.n;
                if found.detail() == chained {
                    check.minutes += 1;
                    return;
                }
                let n_chained = detail_rows(&chained).unwrap_or(0);
                let what = match n_found.cmp(&n_chained) {
                    std::cmp::Ordering::Less => "deleted",
                    std::cmp::Ordering::Greater => "inserted",
                    std::cmp::Ordering::Equal => "edited",
                };
                check.faults.push(BrokenLink {
                    seq: Some(seq),
                    subject,
                    reason: format!(
                        "the sample rows differ from their seal ({n_chained} rows sealed, {n_found} found): \
                         rows {what} outside the gateway"
                    ),
                });
            }
            (None, Some((_, seq, chained))) => {
                if self.prunes.iter().any(|p| p.seq > seq && minute < p.cutoff) {
                    check.pruned += 1;
                } else {
                    check.faults.push(BrokenLink {
                        seq: Some(seq),
                        subject,
                        reason: format!(
                            "the {} sealed sample rows are gone and no retention explains it: deleted outside the gateway",
                            detail_rows(&chained).unwrap_or(0)
                        ),
                    });
                }
            }
            (Some(_), None) if minute < self.unchained_before => check.unchained += 1,
            (Some(_), None) if minute < self.sealed_through => check.faults.push(BrokenLink {
                seq: None,
                subject,
                reason: "sample rows in a minute that was never sealed: inserted outside the gateway".into(),
            }),
            (Some(_), None) => check.pending += 1,
            (None, None) => {}
        }
    }

    /// Judges `minute`'s rows, after every sealed minute before it (those have no rows left).
    fn minute(
        &mut self,
        seals: &mut Seals<'_>,
        next: &mut Option<Seal>,
        minute: i64,
        found: Option<MinuteDigest>,
    ) -> rusqlite::Result<()> {
        while next.as_ref().is_some_and(|s| s.0 < minute) {
            let sealed = next.take();
            *next = seals.next()?;
            self.judge(sealed.as_ref().map_or(minute, |s| s.0), None, sealed);
        }
        let sealed = if next.as_ref().is_some_and(|s| s.0 == minute) {
            let sealed = next.take();
            *next = seals.next()?;
            sealed
        } else {
            None
        };
        if found.is_some() || sealed.is_some() {
            self.judge(minute, found, sealed);
        }
        Ok(())
    }
}

/// Checks every minute of samples starting in `[from, to)` against its latest seal, the
/// series against their entries, and the prunes against their rules.
pub(super) fn verify_samples(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<SampleCheck> {
    let mut judge = Judge {
        prunes: Vec::new(),
        unchained_before: i64::MIN,
        sealed_through: i64::MIN,
        check: SampleCheck::default(),
    };
    {
        let mut stmt = conn.prepare(
            "SELECT seq, ts_ms, detail FROM audit WHERE kind = 'retention' AND subject = 'sample' ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (seq, at_ms, detail): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let Some(cutoff) = prune_cutoff(&detail) else { continue };
            let within = match detail_field(&detail, "rule") {
                Some("age") => detail_field(&detail, "max_age_s")
                    .and_then(|s| s.parse::<i64>().ok())
                    .is_some_and(|age| cutoff <= at_ms - age * 1000),
                Some("size") => {
                    let n = |k| detail_field(&detail, k).and_then(|s| s.parse::<u64>().ok());
                    n("used").zip(n("max")).is_some_and(|(used, max)| used > max)
                }
                Some("unchained") => {
                    judge.unchained_before = judge.unchained_before.max(cutoff);
                    true
                }
                _ => false,
            };
            if !within && (from..to).contains(&at_ms) {
                judge.check.faults.push(BrokenLink {
                    seq: Some(seq),
                    subject: "retention sample".into(),
                    reason: format!("a prune outside the retention rules ({detail})"),
                });
            }
            judge.prunes.push(Prune { seq, cutoff });
        }
    }
    let newest: Option<String> =
        conn.query_row("SELECT max(subject) FROM audit WHERE kind = 'samples'", [], |r| r.get(0))?;
    judge.sealed_through =
        newest.as_deref().and_then(parse_minute_subject).map_or(i64::MIN, |m| m + MINUTE_MS);

    let mut seals_stmt = conn.prepare(
        "SELECT subject, seq, detail FROM audit WHERE kind = 'samples' AND subject >= ?1 AND subject < ?2 \
         ORDER BY subject, seq",
    )?;
    let mut seals =
        Seals { rows: seals_stmt.query(params![subject_bound(from), subject_bound(to)])?, ahead: None };
    let mut next = seals.next()?;
    // Rows in table order. A whole-table walk also meets rows whose time is not an integer
    // (SQLite sorts text after numbers), which no range would.
    let whole = from == i64::MIN && to == i64::MAX;
    let mut stmt = if whole {
        conn.prepare("SELECT ts, series, value, flag FROM sample ORDER BY ts, series")?
    } else {
        conn.prepare(
            "SELECT ts, series, value, flag FROM sample WHERE ts >= ?1 AND ts < ?2 ORDER BY ts, series",
        )?
    };
    let mut rows = if whole { stmt.query([])? } else { stmt.query(params![from, to])? };
    let mut current: Option<(i64, MinuteDigest)> = None;
    while let Some(row) = rows.next()? {
        let rusqlite::types::ValueRef::Integer(ts) = row.get_ref(0)? else {
            judge.check.faults.push(BrokenLink {
                seq: None,
                subject: "samples".into(),
                reason: "a sample row whose time is not an integer: inserted or edited outside the gateway"
                    .into(),
            });
            continue;
        };
        let minute = minute_of(ts);
        if current.as_ref().is_none_or(|(m, _)| *m != minute) {
            if let Some((m, found)) = current.take() {
                judge.minute(&mut seals, &mut next, m, Some(found))?;
            }
            current = Some((minute, MinuteDigest::new()));
        }
        current.as_mut().expect("set above").1.push(row)?;
    }
    if let Some((m, found)) = current.take() {
        judge.minute(&mut seals, &mut next, m, Some(found))?;
    }
    judge.minute(&mut seals, &mut next, i64::MAX, None)?;
    verify_series(conn, &mut judge.check)?;
    Ok(judge.check)
}

/// The smallest subject at or after `ms` (a range bound over seal subjects).
fn subject_bound(ms: i64) -> String {
    match ms {
        i64::MIN => String::new(),
        i64::MAX => "~".into(),
        ms => minute_subject(minute_of(ms + MINUTE_MS - 1)),
    }
}

/// Every series against its latest `series` entry: rows refer to series by number, so a renamed
/// series would change what every one of its samples means.
fn verify_series(conn: &Connection, check: &mut SampleCheck) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT id, device, factor FROM series ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, device, factor): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let subject = id.to_string();
        match audit::latest(conn, AuditKind::Series, &subject)? {
            Some((_, d)) if d == series_detail(&device, &factor) => {}
            Some((seq, _)) => check.faults.push(BrokenLink {
                seq: Some(seq),
                subject: format!("series {id}"),
                reason: "the series differs from its chained device and factor: edited outside the gateway"
                    .into(),
            }),
            None => check.faults.push(BrokenLink {
                seq: None,
                subject: format!("series {id}"),
                reason: "a series that was never chained: inserted outside the gateway".into(),
            }),
        }
    }
    Ok(())
}
