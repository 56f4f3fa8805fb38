//! Corrections: periods whose records were recomputed after they went out (an operator's mark
//! changed their flags) are recorded once in the `correction` table, and each link's queue
//! sends them again to its platform, before other periods, as backlog (`RF=1` under HJ
//! 212-2025). A link keeps how far it got (its `correction_seq` setting, written with its
//! cursors); a new link (nothing acknowledged yet) starts after the corrections already
//! recorded. A period the link has not
//! sent yet is no correction for it: the queue sends its new content in order anyway. A link
//! with `corrections = false` passes them over.

use std::collections::{BTreeMap, VecDeque};

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::LinkQueue;
use crate::compute::Level;
use crate::store::outbox::Kind;
use crate::store::{Store, StoreError};

/// The link setting that holds the last correction it is done with.
const SETTING: &str = "correction_seq";
/// Corrections read from the store at a time.
const BATCH: u32 = 1000;

/// One link's progress through the corrections.
#[derive(Debug, Default)]
pub(super) struct Corrections {
    /// Every correction up to this seq was read from the store (`None`: not loaded yet).
    read_to: Option<i64>,
    /// Read and not handed out: (seq, kind, start).
    pending: VecDeque<(i64, Kind, i64)>,
    /// Handed out and not acknowledged, by period.
    out: BTreeMap<(Kind, i64), i64>,
    /// The cursor as last written.
    written: Option<i64>,
}

impl Corrections {
    /// The last seq this link is done with: everything before the oldest still to send.
    fn cursor(&self) -> Option<i64> {
        let oldest = self.pending.iter().map(|c| c.0).chain(self.out.values().copied()).min();
        match oldest {
            Some(seq) => Some(seq - 1),
            None => self.read_to,
        }
    }

    pub(super) fn is_dirty(&self) -> bool {
        self.read_to.is_some() && self.cursor() != self.written
    }
}

fn level_code(level: Level) -> u8 {
    match level {
        Level::Minute => 0,
        Level::Hour => 1,
        Level::Day => 2,
        Level::Month => 3,
    }
}

impl Store {
    /// Records that these periods of `outlet` were recomputed and must go out again (with, in
    /// the same transaction, a setting of the caller: how far it got).
    pub fn add_corrections(
        &mut self,
        outlet: &str,
        periods: &[(Level, i64)],
        done: Option<(&str, &str, &str)>,
    ) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let sql = |reason| StoreError::Sqlite { path: path.clone(), reason };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        for (level, start) in periods {
            tx.execute(
                "INSERT INTO correction (outlet, level, start) VALUES (?1, ?2, ?3)",
                params![outlet, level_code(*level), start],
            )
            .map_err(sql)?;
        }
        if let Some((scope, key, value)) = done {
            tx.execute(
                "INSERT OR REPLACE INTO setting (scope, key, value) VALUES (?1, ?2, ?3)",
                params![scope, key, value],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(periods.len())
    }

    fn corrections_after(&self, outlet: &str, seq: i64) -> Result<Vec<(i64, u8, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, level, start FROM correction WHERE seq > ?1 AND outlet = ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![seq, outlet, BATCH], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    fn last_correction(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT max(seq) FROM correction", [], |r| r.get::<_, Option<i64>>(0))
            .optional()
            .map(|v| v.flatten().unwrap_or(0))
            .map_err(|e| self.err(e))
    }
}

impl LinkQueue {
    /// Reads the corrections recorded since last time (the first time: where the link got to).
    fn read_corrections(&mut self, store: &Store) -> Result<(), StoreError> {
        let read_to = match self.corr.read_to {
            Some(r) => r,
            None => {
                let stored = store.setting(&self.spec.link, SETTING)?.and_then(|v| v.parse().ok());
                let start = match stored {
                    Some(s) => s,
                    // A link that has acknowledged periods: every correction may concern them.
                    None if !self.cursors.is_empty() => 0,
                    // A new link: the corrections recorded so far were for the data it never had.
                    None => store.last_correction()?,
                };
                self.corr.written = stored;
                start
            }
        };
        self.corr.read_to = Some(read_to);
        let mut to = read_to;
        loop {
            let batch = store.corrections_after(&self.spec.outlet, to)?;
            let Some(last) = batch.last().map(|c| c.0) else { break };
            for (seq, level, start) in batch {
                let kind = match level {
                    0 => Kind::Minute,
                    1 => Kind::Hour,
                    2 => Kind::Day,
                    _ => continue,
                };
                if !self.spec.kinds.contains(&kind) || !self.spec.corrections {
                    continue;
                }
                let start = self.align(kind, start);
                let queued = self.corr.pending.iter().any(|c| (c.1, c.2) == (kind, start))
                    || self.corr.out.contains_key(&(kind, start));
                if !queued {
                    self.corr.pending.push_back((seq, kind, start));
                }
            }
            to = last;
            self.corr.read_to = Some(last);
        }
        Ok(())
    }

    /// Up to `n` corrections to send now, as (kind, start): those of periods the platform
    /// already has (acknowledged: at or before the cursor, or ahead of it).
    /// Only one kind when `one_kind` (the first one's).
    pub(super) fn next_corrections(
        &mut self,
        store: &Store,
        n: usize,
        one_kind: bool,
    ) -> Result<Vec<(Kind, i64)>, StoreError> {
        self.read_corrections(store)?;
        let mut out: Vec<(Kind, i64)> = Vec::new();
        let mut kept = VecDeque::new();
        while out.len() < n {
            let Some((seq, kind, start)) = self.corr.pending.pop_front() else { break };
            if one_kind && out.first().is_some_and(|(k, _)| *k != kind) {
                kept.push_back((seq, kind, start));
                continue;
            }
            // Sent already: acknowledged (at or before the cursor, or ahead of it), or on its way
            // with what it held before (a new connection sends it again anyway, but not so an
            // acknowledgement that comes).
            let sent = start <= self.cursor(kind)
                || self.ahead.contains(&(kind, start))
                || self.in_flight.contains(&(kind, start))
                || self.handed_live.contains(&(kind, start));
            if sent {
                self.corr.out.insert((kind, start), seq);
                out.push((kind, start));
            }
        }
        while let Some(c) = kept.pop_back() {
            self.corr.pending.push_front(c);
        }
        Ok(out)
    }

    /// Whether an acknowledged period was a correction (it is done with).
    pub(super) fn ack_correction(&mut self, kind: Kind, start: i64) -> bool {
        self.corr.out.remove(&(kind, start)).is_some()
    }

    /// Corrections handed out and not acknowledged go out again.
    pub(super) fn rewind_corrections(&mut self) {
        let mut back: Vec<(i64, Kind, i64)> =
            std::mem::take(&mut self.corr.out).into_iter().map(|((k, s), seq)| (seq, k, s)).collect();
        back.extend(self.corr.pending.drain(..));
        back.sort_unstable();
        self.corr.pending = back.into();
    }

    /// Writes how far the link got through the corrections, if that changed.
    pub(super) fn flush_corrections(&mut self, store: &Store) -> Result<(), StoreError> {
        if !self.corr.is_dirty() {
            return Ok(());
        }
        if let Some(c) = self.corr.cursor() {
            store.set_setting(&self.spec.link, SETTING, &c.to_string())?;
            self.corr.written = Some(c);
        }
        Ok(())
    }
}
