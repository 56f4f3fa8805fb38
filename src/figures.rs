//! The daemon's emission statistics: every minute each outlet's recent periods are recomputed
//! from the buffered samples, the closed ones persisted as records, and the open hour's running
//! figures published for display.
//!
//! Records are always derived from the samples, never patched: a restart recomputes from the
//! newest stored hour (up to [`CATCH_UP`] back), late samples inside the recomputed window
//! replace the records they change, and `report` recomputes a whole month from raw samples.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::compute::evaluate::{Evaluator, Input, Outcome, period_start};
use crate::compute::{Level, Record};
use crate::config::{Config, Outlet};
use crate::lifecycle::Beat;
use crate::live::{Live, OpenHour};
use crate::model::now_ms;
use crate::store::{Store, StoreError};

mod marks;

/// How far back a restarted daemon recomputes hour records.
pub const CATCH_UP: i64 = 48 * 3600;
/// How many past days a restarted daemon fills with day records.
pub const DAYS_BACK: i64 = 7;
/// Samples of a minute may still be on their way to the store this long after it ends.
const SETTLE_S: i64 = 5;
/// Samples read before a window so that its first polls have O2 and flue parameters to go with.
const WARM_UP: i64 = 120;

/// Evaluates one outlet over `[from, to)` (local seconds), streaming the samples from the store.
///
/// Reading SQLite and evaluating run on two threads joined by a small bounded channel, so a
/// month takes about as long as the slower of the two, in constant memory.
pub fn evaluate_range(
    store: &Store,
    config: &Config,
    outlet: &Outlet,
    from: i64,
    to: i64,
    on_minute: impl FnMut(&Record) + Send,
) -> Result<(Outcome, OpenHour), StoreError> {
    const BATCH: usize = 4096;
    let offset = config.site.utc_offset_s;
    let devices: Vec<&str> = config.outlet_devices(&outlet.name).iter().map(|d| d.name.as_str()).collect();
    let spec = config.outlet_spec(outlet);
    let limits = spec.limits.limits.clone();
    let marks = store.marks(Some(&outlet.name), (from - offset) * 1000, (to - offset) * 1000)?;
    let marks = crate::compute::marks::MarkSet::new(&marks, offset);
    let mut evaluator = Evaluator::new(spec).on_minute(on_minute).with_marks(marks);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Input>>(8);
        let worker = scope.spawn(move || {
            for batch in rx {
                batch.into_iter().for_each(|input| evaluator.push(input));
            }
            let open =
                OpenHour { start: period_start(Level::Hour, to), stats: evaluator.open_hour(), limits };
            (evaluator.finish(), open)
        });
        let mut batch = Vec::with_capacity(BATCH);
        let read = store.for_each_sample(
            &devices,
            (from - offset) * 1000,
            (to - offset) * 1000,
            |ts, factor, value, flag| {
                batch.push(Input { t: ts.div_euclid(1000) + offset, factor: factor.clone(), value, flag });
                if batch.len() == BATCH {
                    // The receiver only goes away if the evaluator panicked; join reports that.
                    let _ = tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            },
        );
        let _ = tx.send(batch);
        drop(tx);
        let result = worker.join().expect("the evaluator does not panic on any input");
        read.map(|_| result)
    })
}

/// The worker's state between runs.
pub struct Figures {
    config: Arc<Config>,
    store: Store,
    live: Arc<Live>,
    /// Per outlet, the newest closed day already evaluated: a day without data gives no
    /// record and is not evaluated (or logged) again every minute.
    days_done: HashMap<String, i64>,
}

impl Figures {
    pub fn new(config: Arc<Config>, store: Store, live: Arc<Live>) -> Figures {
        Figures { config, store, live, days_done: HashMap::new() }
    }

    /// One round at local time `now`: recompute and persist every outlet's closed periods.
    pub fn run_once(&mut self, now: i64) -> Result<(), StoreError> {
        // Marks added, edited or ended since the last round (`figures/marks.rs`).
        self.apply_marks(now)?;
        let config = self.config.clone();
        let offset = config.site.utc_offset_s;
        for outlet in &config.outlets {
            if config.outlet_devices(&outlet.name).is_empty() {
                continue;
            }
            let this_hour = period_start(Level::Hour, now);
            let newest = self.store.newest_record(&outlet.name, Level::Hour)?.map(|ms| ms / 1000 + offset);
            let from = newest.unwrap_or(this_hour - 3600).clamp(this_hour - CATCH_UP, this_hour - 3600);
            // Every closed minute of the window is written again each round: a late sample (a poll
            // that waited behind slow devices) still lands in its minute's record. The window
            // starts WARM_UP early so that its first polls have O2 and flue parameters.
            let mut minutes = Vec::new();
            let (outcome, open) = evaluate_range(&self.store, &config, outlet, from - WARM_UP, now, |r| {
                if r.start >= from && r.start + 60 <= now - SETTLE_S {
                    minutes.push(r.clone());
                }
            })?;
            let hours: Vec<Record> = outcome
                .hours
                .into_iter()
                .filter(|h| h.start >= from && h.start + 3600 <= now - SETTLE_S)
                .collect();
            self.store.upsert_records(&outlet.name, &minutes, offset)?;
            self.store.upsert_records(&outlet.name, &hours, offset)?;
            self.live.set_open_hour(&outlet.name, open);

            // Days that have closed since the newest day record (bounded), whole-day recompute.
            let today = period_start(Level::Day, now);
            let newest_day = self.store.newest_record(&outlet.name, Level::Day)?.map(|ms| ms / 1000 + offset);
            let mut day = newest_day.map_or(today - 86_400, |d| d + 86_400).max(today - DAYS_BACK * 86_400);
            if let Some(done) = self.days_done.get(&outlet.name) {
                day = day.max(done + 86_400);
            }
            while day + 86_400 <= now - SETTLE_S {
                let (outcome, _) =
                    evaluate_range(&self.store, &config, outlet, day - WARM_UP, day + 86_400, |_| {})?;
                let hours: Vec<Record> = outcome.hours.into_iter().filter(|h| h.start >= day).collect();
                self.store.upsert_records(&outlet.name, &hours, offset)?;
                let days: Vec<Record> = outcome.days.into_iter().filter(|d| d.start == day).collect();
                self.store.upsert_records(&outlet.name, &days, offset)?;
                if days.is_empty() {
                    tracing::debug!(outlet = %outlet.name, day = %crate::report::format_day(day), "No data for a closed day: no day record.");
                } else {
                    tracing::info!(outlet = %outlet.name, day = %crate::report::format_day(day), records = days.len(), "Day records computed.");
                }
                self.days_done.insert(outlet.name.clone(), day);
                day += 86_400;
            }
        }
        Ok(())
    }

    /// Runs a round shortly after every minute until `stop` says so (or is dropped).
    pub fn run(mut self, stop: Receiver<()>, beat: Beat) {
        loop {
            beat.touch();
            let now_local = now_ms().div_euclid(1000) + self.config.site.utc_offset_s;
            if let Err(e) = self.run_once(now_local) {
                tracing::error!(error = %e, "Emission statistics could not be updated; will retry.");
            }
            let next = now_ms().div_euclid(60_000) * 60_000 + 60_000 + SETTLE_S * 1000;
            let wait = Duration::from_millis((next - now_ms()).max(100) as u64);
            match stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    }
}
