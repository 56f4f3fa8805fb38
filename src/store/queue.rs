//! One link's queue over the store: which period goes next, what it carries, and where the
//! cursor stands. Used only by the [`super::outbox`] thread, which owns every queue; SQLite
//! reads here are index lookups of a few rows.
//!
//! The queue is a cursor per kind over periods that stay in the store. A period is handed out
//! (to be sent) in order per kind and leaves the queue when the platform acknowledged it: the
//! cursor moves over a run of acknowledged periods once every period handed out before them is
//! acknowledged too. Acknowledgements may come out of order (a send window, or HJ 212-2025's
//! live period sent ahead of a backlog); those ahead of the cursor are kept in memory, so after
//! a crash they are sent again (at least once, never lost). Cursors are written at most
//! [`super::outbox::CURSOR_FLUSH`] after the acknowledgement; a crash in between also means a
//! period sent again.

mod corrections;

use std::collections::{BTreeMap, BTreeSet};

use super::outbox::{Item, Kind, KindSummary, Payload, QueueSpec, QueueSummary};
use super::{Store, StoreError};
use crate::compute::Level;

/// A fresh link's queue starts this far back.
pub const FIRST_CURSOR_BACK_MS: i64 = 24 * 3600 * 1000;
/// A minute block (and a day of run time) is sent only this long after it ends: the statistics
/// worker writes minute records a few seconds after each minute, the writer commits samples
/// within its flush interval.
pub const SETTLE_MS: i64 = 70_000;
/// Longest walk when counting run-time days (a day each, bounded by retention anyway).
const MAX_DAYS_COUNTED: usize = 400;

/// One link's queue state.
#[derive(Debug)]
pub(super) struct LinkQueue {
    pub spec: QueueSpec,
    /// A link without a stored cursor starts [`FIRST_CURSOR_BACK_MS`] before this (fixed when
    /// the queue is opened; nothing is stored until something is acknowledged).
    opened_ms: i64,
    /// Acknowledged cursors (stored, or newer and not yet written).
    cursors: BTreeMap<Kind, i64>,
    dirty: BTreeSet<Kind>,
    /// Acknowledged periods the cursor has not reached yet.
    ahead: BTreeSet<(Kind, i64)>,
    /// Handed out in order and not acknowledged yet.
    in_flight: BTreeSet<(Kind, i64)>,
    /// The last period handed out in order, per kind (the cursor when none).
    handed: BTreeMap<Kind, i64>,
    /// HJ 212-2025: live periods handed out ahead of the backlog.
    handed_live: BTreeSet<(Kind, i64)>,
    /// Sample series of the run-status points, per point (found once its first sample is
    /// stored).
    rs_series: Vec<Option<i64>>,
    /// Complete days known to hold no run-status sample (not searched again).
    empty_days: BTreeSet<i64>,
    /// Recomputed periods to send again (see `corrections.rs`).
    corr: corrections::Corrections,
}

impl LinkQueue {
    pub fn open(store: &Store, spec: QueueSpec, now_ms: i64) -> Result<LinkQueue, StoreError> {
        let mut cursors = BTreeMap::new();
        for kind in Kind::ALL {
            if let Some(c) = store.cursor(&spec.link, kind)? {
                cursors.insert(kind, c);
            }
        }
        Ok(LinkQueue {
            spec,
            opened_ms: now_ms,
            cursors,
            dirty: BTreeSet::new(),
            ahead: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            handed: BTreeMap::new(),
            handed_live: BTreeSet::new(),
            rs_series: Vec::new(),
            empty_days: BTreeSet::new(),
            corr: Default::default(),
        })
    }

    /// Length of one period of `kind` (minute blocks of the link's interval).
    fn period_ms(&self, kind: Kind) -> i64 {
        match kind {
            Kind::Minute => i64::from(self.spec.block_minutes.max(1)) * 60_000,
            Kind::Hour => 3_600_000,
            Kind::Day | Kind::RunTime => 86_400_000,
        }
    }

    /// The start of the local-time period of `kind` that holds `ts`.
    fn align(&self, kind: Kind, ts: i64) -> i64 {
        ts - (ts + self.spec.offset_s * 1000).rem_euclid(self.period_ms(kind))
    }

    fn cursor(&self, kind: Kind) -> i64 {
        self.cursors.get(&kind).copied().unwrap_or_else(|| self.default_cursor(kind))
    }

    /// Where a fresh queue of `kind` starts: just before the period that holds the moment one day
    /// back, so that this period is sent (the cursor stands for the last period acknowledged).
    fn default_cursor(&self, kind: Kind) -> i64 {
        self.align(kind, self.opened_ms - FIRST_CURSOR_BACK_MS) - self.period_ms(kind)
    }

    fn enabled(&self) -> impl Iterator<Item = Kind> + '_ {
        self.spec.kinds.iter().copied()
    }

    fn run_status_series(&mut self, store: &Store) -> Result<Vec<i64>, StoreError> {
        if self.rs_series.len() != self.spec.run_status.len() || self.rs_series.iter().any(Option::is_none) {
            self.rs_series = store.series_ids(&self.spec.run_status)?;
        }
        Ok(self.rs_series.iter().flatten().copied().collect())
    }

    /// The first period of `kind` with data at or after `t`.
    fn first_from(&mut self, store: &Store, kind: Kind, t: i64) -> Result<Option<i64>, StoreError> {
        let outlet = &self.spec.outlet;
        match kind {
            Kind::Minute => {
                let first = store.next_record_start(outlet, Level::Minute, t - 1)?;
                Ok(first.map(|ts| self.align(kind, ts)))
            }
            Kind::Hour => store.next_record_start(outlet, Level::Hour, t - 1),
            Kind::Day => store.next_record_start(outlet, Level::Day, t - 1),
            Kind::RunTime => self.first_run_time_day(store, t),
        }
    }

    /// The first local day with a run-status sample at or after `t`: day by day (each test a
    /// walk of one day's samples at most), up to the newest sample, remembering complete days
    /// found empty.
    fn first_run_time_day(&mut self, store: &Store, t: i64) -> Result<Option<i64>, StoreError> {
        let series = self.run_status_series(store)?;
        let Some(newest) = store.newest_ts()?.filter(|_| !series.is_empty()) else { return Ok(None) };
        let len = self.period_ms(Kind::RunTime);
        let mut day = self.align(Kind::RunTime, t);
        while day <= newest {
            if !self.empty_days.contains(&day) {
                if store.has_samples(&series, day.max(t), day + len)? {
                    return Ok(Some(day));
                }
                if day >= t && day + len + SETTLE_MS <= newest {
                    self.empty_days.insert(day);
                }
            }
            day += len;
        }
        Ok(None)
    }

    /// The first period of `kind` with data after the one starting at `after`.
    fn next_start(&mut self, store: &Store, kind: Kind, after: i64) -> Result<Option<i64>, StoreError> {
        let step = match kind {
            // Aggregated periods: their data lies anywhere inside them.
            Kind::Minute | Kind::RunTime => self.period_ms(kind),
            Kind::Hour | Kind::Day => 1,
        };
        self.first_from(store, kind, after + step)
    }

    /// Whether a period may be sent at `now_ms`: minute blocks and run-time days wait until
    /// their data settled; hour and day records exist only once closed.
    fn sendable(&self, kind: Kind, start: i64, now_ms: i64) -> bool {
        match kind {
            Kind::Minute | Kind::RunTime => start + self.period_ms(kind) + SETTLE_MS <= now_ms,
            Kind::Hour | Kind::Day => true,
        }
    }

    /// Start of the newest complete, sendable period of `kind` at `now_ms`: what HJ 212-2025
    /// sends as live data. Anything older is backlog (`RF=1`).
    pub fn live_start(&self, kind: Kind, now_ms: i64) -> i64 {
        let len = self.period_ms(kind);
        let settle = if matches!(kind, Kind::Minute | Kind::RunTime) { SETTLE_MS } else { 0 };
        self.align(kind, now_ms - settle) - len
    }

    /// Up to `n` periods to send next: corrections first (recomputed periods the platform
    /// already has), then oldest end first across kinds (only the kind of the first when
    /// `one_kind`), with their content.
    pub fn next(
        &mut self,
        store: &Store,
        n: usize,
        now_ms: i64,
        one_kind: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out: Vec<Item> = Vec::new();
        for (kind, start) in self.next_corrections(store, n, one_kind)? {
            let payload = self.payload(store, kind, start)?;
            out.push(Item { kind, start_ms: start, live: false, backlog: true, payload });
        }
        while out.len() < n {
            let only = out.first().map(|i| i.kind).filter(|_| one_kind);
            let Some((kind, start, live)) = self.pick(store, now_ms, only)? else { break };
            if live {
                self.handed_live.insert((kind, start));
            } else {
                self.handed.insert(kind, start);
                self.in_flight.insert((kind, start));
            }
            let backlog = !live && start < self.live_start(kind, now_ms);
            let payload = self.payload(store, kind, start)?;
            out.push(Item { kind, start_ms: start, live, backlog, payload });
        }
        Ok(out)
    }

    fn pick(
        &mut self,
        store: &Store,
        now_ms: i64,
        only: Option<Kind>,
    ) -> Result<Option<(Kind, i64, bool)>, StoreError> {
        let kinds: Vec<Kind> = self.enabled().filter(|k| only.is_none_or(|o| o == *k)).collect();
        if self.spec.live_first && only.is_none() {
            for &kind in kinds.iter().filter(|k| **k != Kind::RunTime) {
                let live = self.live_start(kind, now_ms);
                let handed = self.handed.get(&kind).copied().unwrap_or_else(|| self.cursor(kind));
                if live > handed
                    && !self.handed_live.contains(&(kind, live))
                    && !self.ahead.contains(&(kind, live))
                    && self.sendable(kind, live, now_ms)
                    && self.first_from(store, kind, live)? == Some(live)
                {
                    return Ok(Some((kind, live, true)));
                }
            }
        }
        let mut best: Option<(Kind, i64, i64)> = None;
        for kind in kinds {
            let mut after = self.handed.get(&kind).copied().unwrap_or_else(|| self.cursor(kind));
            let start = loop {
                match self.next_start(store, kind, after)? {
                    // Already acknowledged, or out as live data: passed over in order.
                    Some(s) if self.ahead.contains(&(kind, s)) || self.handed_live.contains(&(kind, s)) => {
                        after = s;
                        self.handed.insert(kind, s);
                    }
                    other => break other,
                }
            };
            let Some(start) = start.filter(|s| self.sendable(kind, *s, now_ms)) else { continue };
            let end = start + self.period_ms(kind);
            if best.is_none_or(|(_, _, e)| end < e) {
                best = Some((kind, start, end));
            }
        }
        self.settle();
        Ok(best.map(|(k, s, _)| (k, s, false)))
    }

    /// The content of one period.
    fn payload(&mut self, store: &Store, kind: Kind, start: i64) -> Result<Payload, StoreError> {
        let (outlet, offset) = (&self.spec.outlet, self.spec.offset_s);
        Ok(match kind {
            Kind::Minute => {
                let len = self.period_ms(kind);
                let records = store.records(outlet, Level::Minute, start, start + len, offset)?;
                if self.spec.block_minutes <= 1 {
                    Payload::Records(records)
                } else {
                    let local = start / 1000 + offset;
                    let block = crate::compute::blocks::minute_block(
                        &records,
                        local,
                        self.spec.block_minutes,
                        self.spec.normal_share,
                    );
                    Payload::Records(block)
                }
            }
            Kind::Hour => Payload::Records(store.records(outlet, Level::Hour, start, start + 1, offset)?),
            Kind::Day => Payload::Records(store.records(outlet, Level::Day, start, start + 1, offset)?),
            Kind::RunTime => Payload::RunTime(self.run_time(store, start)?),
        })
    }

    /// Hours each run-status point ran on the day starting at `start` (a point without a sample
    /// that day is left out: its run time is unknown, not zero).
    fn run_time(&mut self, store: &Store, start: i64) -> Result<Vec<(String, f64)>, StoreError> {
        let end = start + self.period_ms(Kind::RunTime);
        let hold = self.spec.max_hold_ms;
        self.run_status_series(store)?;
        let ids: Vec<i64> = self.rs_series.iter().flatten().copied().collect();
        let samples = store.series_samples(&ids, start - hold, end)?;
        let mut out = Vec::new();
        for ((_, factor), id) in self.spec.run_status.iter().zip(&self.rs_series) {
            let Some(id) = id else { continue };
            let mine: Vec<crate::compute::runtime::Sample> =
                samples.iter().filter(|(s, _, _)| s == id).map(|(_, ts, v)| (*ts, *v)).collect();
            if mine.iter().any(|(ts, _)| *ts >= start) {
                out.push((factor.clone(), crate::compute::runtime::run_hours(&mine, start, end, hold)));
            }
        }
        Ok(out)
    }

    /// The periods of `kind` with data in `[from, to]` (a platform's history request).
    pub fn history(&mut self, store: &Store, kind: Kind, from: i64, to: i64) -> Result<Vec<i64>, StoreError> {
        let mut starts = Vec::new();
        let mut next = self.first_from(store, kind, from)?;
        while let Some(s) = next.filter(|s| *s <= to) {
            starts.push(s);
            next = self.next_start(store, kind, s)?;
        }
        Ok(starts)
    }

    /// The content of given periods (answers to a history request; not queue items).
    pub fn load(
        &mut self,
        store: &Store,
        kind: Kind,
        starts: &[i64],
        now_ms: i64,
    ) -> Result<Vec<Item>, StoreError> {
        starts
            .iter()
            .map(|&start| {
                let payload = self.payload(store, kind, start)?;
                let backlog = start < self.live_start(kind, now_ms);
                Ok(Item { kind, start_ms: start, live: false, backlog, payload })
            })
            .collect()
    }

    /// The platform acknowledged the period of `kind` starting at `start`.
    pub fn ack(&mut self, kind: Kind, start: i64) {
        if self.ack_correction(kind, start) {
            return;
        }
        self.in_flight.remove(&(kind, start));
        self.handed_live.remove(&(kind, start));
        if start > self.cursor(kind) {
            self.ahead.insert((kind, start));
        }
        self.settle();
    }

    /// Moves each cursor over the acknowledged periods that every period handed out before them
    /// has joined.
    fn settle(&mut self) {
        for kind in Kind::ALL {
            let frontier = self.handed.get(&kind).copied().unwrap_or_else(|| self.cursor(kind));
            let oldest_out =
                self.in_flight.range((kind, i64::MIN)..=(kind, i64::MAX)).next().map(|(_, s)| *s);
            let acked: Vec<i64> =
                self.ahead.range((kind, i64::MIN)..=(kind, frontier)).map(|(_, s)| *s).collect();
            for s in acked {
                if oldest_out.is_some_and(|o| o < s) {
                    break;
                }
                self.ahead.remove(&(kind, s));
                if s > self.cursor(kind) {
                    self.cursors.insert(kind, s);
                    self.dirty.insert(kind);
                }
            }
        }
    }

    /// Forgets what was handed out and not acknowledged: it goes out again (a new connection).
    pub fn rewind(&mut self) {
        self.rewind_corrections();
        self.handed.clear();
        self.handed_live.clear();
        self.in_flight.clear();
    }

    /// Writes the acknowledged cursors not written yet.
    pub fn flush(&mut self, store: &mut Store) -> Result<(), StoreError> {
        self.flush_corrections(store)?;
        if self.dirty.is_empty() {
            return Ok(());
        }
        let cursors: Vec<(Kind, i64)> = self.dirty.iter().map(|k| (*k, self.cursor(*k))).collect();
        store.set_cursors(&self.spec.link, &cursors)?;
        self.dirty.clear();
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.corr.is_dirty()
    }

    /// Where each enabled kind stands.
    pub fn summary(&mut self, store: &Store, now_ms: i64) -> Result<QueueSummary, StoreError> {
        let mut kinds = Vec::new();
        for kind in self.enabled().collect::<Vec<_>>() {
            let cursor = self.cursor(kind);
            let ahead = self.ahead.range((kind, i64::MIN)..=(kind, i64::MAX)).count() as u64;
            let mut oldest = self.next_start(store, kind, cursor)?;
            while let Some(s) = oldest.filter(|s| self.ahead.contains(&(kind, *s))) {
                oldest = self.next_start(store, kind, s)?;
            }
            let waiting = match kind.level() {
                Some(level) => store.count_periods(&self.spec.outlet, level, cursor)?,
                None => {
                    let mut n = 0;
                    let mut at = self.next_start(store, kind, cursor)?;
                    while let Some(s) = at.filter(|s| self.sendable(kind, *s, now_ms)) {
                        n += 1;
                        if n as usize >= MAX_DAYS_COUNTED {
                            break;
                        }
                        at = self.next_start(store, kind, s)?;
                    }
                    n
                }
            };
            kinds.push(KindSummary {
                kind,
                acked: self.cursors.get(&kind).copied(),
                backlog: waiting.saturating_sub(ahead),
                oldest_unsent: oldest,
            });
        }
        Ok(QueueSummary { kinds })
    }
}

#[cfg(test)]
mod tests;
