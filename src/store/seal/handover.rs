//! The writer → statistics worker handover of sealed minutes (see the parent module).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::model::Flag;

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
/// Resealed minutes noted at most; past this, the notice becomes "everything from the oldest".
const HANDOVER_RESEALS: usize = 10_000;

/// The writer → statistics worker handover: state, not a queue, so nothing is lost when the
/// worker is slow and nothing grows without bound (rows past [`HANDOVER_ROWS`] are left for
/// the worker to read from the store).
#[derive(Debug)]
pub struct Handover {
    pub(super) devices: HashSet<Arc<str>>,
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

    pub(super) fn push(&self, minute: SealedMinute) {
        let mut state = self.lock();
        if state.rows + minute.rows.len() <= HANDOVER_ROWS {
            state.rows += minute.rows.len();
            state.handed.minutes.push(minute);
        }
    }

    pub(super) fn resealed(&self, minute: i64) {
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

    pub(super) fn advance(&self, through: i64) {
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
