//! The daemon's emission statistics: each outlet's samples stream, minute by minute as the store
//! seals them, into one [`Evaluator`] per outlet; the closed minutes, hours and days are stored
//! as records and the open hour's running figures published for display.
//!
//! The store's writer hands over each settled minute's rows once (see `store::seal`), so a
//! minute costs the outlet's new samples, whatever else the gateway polls. Minutes that were not
//! handed over (a restart, a slow worker) are read from the store. Hours are built from their
//! stored minute records and days from their stored hours, by the evaluator's own rules
//! ([`records_from`]), so they equal what one evaluation of the samples gives.
//!
//! Records are always derived from the samples, never patched: a restart recomputes from the
//! newest stored hour (up to [`CATCH_UP`] back); a late sample makes the store seal its minute
//! again, and that minute (with the one after it, whose O2 and flue context it may change) is
//! recomputed from the samples, then the hour and day above it from the records; `report`
//! recomputes a whole month from raw samples.
//!
//! Operators' marks flag the samples they cover (`compute::marks`): each outlet's evaluator
//! holds the outlet's marks, and a mark added, edited or ended makes the worker recompute the
//! closed periods it covers and restart that outlet's stream with the new marks (`figures/marks.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::compute::evaluate::{
    Evaluator, Input, Outcome, add_member, period_records, period_start, records_from,
};
use crate::compute::stats::Acc;
use crate::compute::{Level, OutletSpec, Record};
use crate::config::{Config, Outlet};
use crate::lifecycle::Beat;
use crate::live::{Live, OpenHour};
use crate::store::seal::{Handed, Handover, SealedMinute};
use crate::store::{Store, StoreError};
use crate::time::{Local, Offset};

mod marks;

/// How far back a restarted daemon recomputes hour records.
pub const CATCH_UP: i64 = 48 * 3600;
/// How many past days a restarted daemon fills with day records.
pub const DAYS_BACK: i64 = 7;
/// Samples read before a window so that its first polls have O2 and flue parameters to go with.
const WARM_UP: i64 = 120;
/// [`Figures::run_once`]: seconds after a minute's end before it counts as complete.
const SETTLE_S: i64 = 5;

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
    let offset = config.site.utc_offset;
    let devices: Vec<&str> = config.outlet_devices(&outlet.name).iter().map(|d| d.name.as_str()).collect();
    let spec = config.outlet_spec(outlet);
    let limits = spec.limits.limits.clone();
    let marks = store.marks(Some(&outlet.name), offset.utc_ms(from), offset.utc_ms(to))?;
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
            offset.utc_ms(from),
            offset.utc_ms(to),
            |ts, factor, value, flag| {
                batch.push(Input { t: offset.local_secs(ts), factor: factor.clone(), value, flag });
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

/// One outlet's streaming state.
struct Stream {
    spec: OutletSpec,
    devices: Vec<String>,
    evaluator: Evaluator<'static>,
    /// Where the evaluator puts the minutes it closes.
    closed: Arc<Mutex<Vec<Record>>>,
    /// Local seconds: every minute before this was fed to the evaluator.
    fed: i64,
    /// Local seconds: minutes before this were fed only to warm the evaluator up.
    keep_from: i64,
    /// The open hour: every hour before it is stored.
    hour: i64,
    /// The first day without a stored record.
    day: i64,
    /// Every factor the outlet has had a minute record of (an hour has a record for each).
    known: BTreeSet<String>,
    /// The stored minutes of the hours not closed yet, accumulated per factor: the open hour's
    /// running figures at a cost that does not grow through the hour.
    open: BTreeMap<i64, BTreeMap<String, Acc>>,
}

/// The worker's state between rounds.
pub struct Figures {
    config: Arc<Config>,
    store: Store,
    live: Arc<Live>,
    handover: Arc<Handover>,
    /// Per outlet of the configuration, once started.
    streams: Vec<Option<Stream>>,
    /// Records computed this round, written in one transaction (before anything is read back).
    writes: Vec<(String, Vec<Record>)>,
}

impl Figures {
    pub fn new(config: Arc<Config>, store: Store, live: Arc<Live>, handover: Arc<Handover>) -> Figures {
        let streams = config.outlets.iter().map(|_| None).collect();
        Figures { config, store, live, handover, streams, writes: Vec::new() }
    }

    /// Runs until the writer closes the handover (the pipeline stops).
    pub fn run(mut self, beat: Beat) {
        loop {
            beat.touch();
            match self.round(Duration::from_secs(30)) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "Emission statistics could not be updated; will retry.")
                }
            }
        }
    }

    /// Takes what the writer handed over (waiting up to `wait` for it) and brings every
    /// outlet's records up to date. Returns whether the writer has stopped.
    pub fn round(&mut self, wait: Duration) -> Result<bool, StoreError> {
        let handed = self.handover.take(wait);
        let closed = handed.closed;
        self.apply(&handed)?;
        Ok(closed)
    }

    /// One round at local time `now` from the store alone, as if every minute that ended
    /// [`SETTLE_S`] before it had been sealed and none handed over (the demo's simulated past,
    /// tests): the same records as the daemon's rounds.
    pub fn run_once(&mut self, now: i64) -> Result<(), StoreError> {
        let through = self.config.site.utc_offset.utc_ms(now - SETTLE_S);
        self.apply(&Handed { through: Some(through), ..Handed::default() })
    }

    fn apply(&mut self, handed: &Handed) -> Result<(), StoreError> {
        // Marks added, edited or ended since the last round: the closed periods they cover are
        // recomputed, and the outlets' streams start again with the marks as they are now.
        if let Some(through_ms) = handed.through {
            let through = self.config.site.utc_offset.local_secs(through_ms);
            for outlet in self.apply_marks(through)? {
                if let Some(i) = self.config.outlets.iter().position(|o| o.name == outlet) {
                    self.streams[i] = None;
                }
            }
        }
        let result = self.apply_outlets(handed);
        let written = self.flush_writes();
        result.and(written)
    }

    /// Queues records of an outlet for the round's transaction.
    fn write(&mut self, outlet: &str, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        match self.writes.last_mut() {
            Some((o, queued)) if o == outlet => queued.extend(records),
            _ => self.writes.push((outlet.to_string(), records)),
        }
    }

    /// Writes the queued records, in one transaction.
    fn flush_writes(&mut self) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let writes = std::mem::take(&mut self.writes);
        let outlets: Vec<(&str, &[Record])> =
            writes.iter().map(|(o, r)| (o.as_str(), r.as_slice())).collect();
        self.store.upsert_records_of(&outlets, self.config.site.utc_offset).map(|_| ())
    }

    fn apply_outlets(&mut self, handed: &Handed) -> Result<(), StoreError> {
        let Some(through_ms) = handed.through else { return Ok(()) };
        let config = self.config.clone();
        let offset = config.site.utc_offset;
        let through = offset.local_secs(through_ms);
        let mut result = Ok(());
        for (i, outlet) in config.outlets.iter().enumerate() {
            if config.outlet_devices(&outlet.name).is_empty() {
                continue;
            }
            let mut stream = match self.streams[i].take() {
                Some(s) => s,
                None => match self.start(outlet, through) {
                    Ok(s) => s,
                    Err(e) => {
                        result = Err(e);
                        continue;
                    }
                },
            };
            // An error leaves the outlet to start again (from its stored records) next round.
            match self.update(outlet, &mut stream, handed, through) {
                Ok(()) => self.streams[i] = Some(stream),
                Err(e) => result = Err(e),
            }
        }
        result
    }

    /// A stream that resumes from the newest stored hour, as after a restart.
    fn start(&mut self, outlet: &Outlet, through: i64) -> Result<Stream, StoreError> {
        self.flush_writes()?;
        let config = self.config.clone();
        let offset = config.site.utc_offset;
        let this_hour = period_start(Level::Hour, through);
        let newest = self.store.newest_record(&outlet.name, Level::Hour)?.map(|ms| offset.local_secs(ms));
        let mut from = newest.unwrap_or(this_hour - 3600).clamp(this_hour - CATCH_UP, this_hour - 3600);
        let today = period_start(Level::Day, through);
        let newest_day = self.store.newest_record(&outlet.name, Level::Day)?.map(|ms| offset.local_secs(ms));
        let day = newest_day.map_or(today - 86_400, |d| d + 86_400).max(today - DAYS_BACK * 86_400);
        // Days are built from stored hours: samples of a day due whose hours were never computed
        // (a first start on a buffer that has samples) are evaluated first.
        let ms = |t: i64| offset.utc_ms(t);
        if let Some(first) = self.store.first_ts_from(ms(day))?.map(|t| offset.local_secs(t))
            && first < from
        {
            let hour = period_start(Level::Hour, first).max(this_hour - CATCH_UP);
            if self.store.records(&outlet.name, Level::Hour, ms(hour), ms(hour + 3600), offset)?.is_empty() {
                from = hour;
            }
        }
        let known = newest
            .map(|h| {
                self.store.records(
                    &outlet.name,
                    Level::Hour,
                    offset.utc_ms(h),
                    offset.utc_ms(h + 3600),
                    offset,
                )
            })
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.factor)
            .collect();
        let spec = config.outlet_spec(outlet);
        // Every mark from the warm-up on, open ones included; a change restarts the stream.
        let marks = self.store.marks(Some(&outlet.name), ms(from - WARM_UP), i64::MAX)?;
        let closed = Arc::new(Mutex::new(Vec::new()));
        let sink = closed.clone();
        let evaluator = Evaluator::new(spec.clone())
            .with_marks(crate::compute::marks::MarkSet::new(&marks, offset))
            .on_minute(move |r| sink.lock().unwrap_or_else(|e| e.into_inner()).push(r.clone()));
        Ok(Stream {
            spec,
            devices: config.outlet_devices(&outlet.name).iter().map(|d| d.name.clone()).collect(),
            evaluator,
            closed,
            fed: from - WARM_UP,
            keep_from: from,
            hour: from,
            day,
            known,
            open: BTreeMap::new(),
        })
    }

    fn update(
        &mut self,
        outlet: &Outlet,
        s: &mut Stream,
        handed: &Handed,
        through: i64,
    ) -> Result<(), StoreError> {
        let offset = self.config.site.utc_offset;
        // A clock stepped far ahead (or a worker held up for days): start again from the stored
        // records, as after a restart, rather than walk the gap minute by minute.
        if s.fed < period_start(Level::Hour, through) - CATCH_UP - WARM_UP {
            *s = self.start(outlet, through)?;
        }
        for minute in &handed.minutes {
            let start = offset.local_secs(minute.start_ms);
            if start < s.fed || start + 60 > through {
                continue;
            }
            self.feed_store(outlet, s, start)?;
            feed_rows(s, minute, offset);
            s.evaluator.close_minute_before(start + 60);
            s.fed = start + 60;
            self.store_minutes(outlet, s)?;
            self.close_periods(outlet, s)?;
        }
        self.feed_store(outlet, s, through)?;
        // Minutes sealed again since they were fed: late rows.
        let late_from = handed.resealed_from.map(|ms| offset.local_secs(ms));
        if let Some(from) = late_from.filter(|f| *f < s.fed) {
            self.recompute(outlet, s, from, s.fed)?;
        }
        for ms in &handed.resealed {
            let m = offset.local_secs(*ms);
            if m < s.fed && late_from.is_none_or(|f| m < f) {
                // The minute after may have used the late rows as O2 or flue context.
                let context = (s.spec.context_max_age + 59) / 60 * 60;
                self.recompute(outlet, s, m, (m + 60 + context).min(s.fed))?;
            }
        }
        self.close_periods(outlet, s)?;
        self.publish(outlet, s)
    }

    /// Feeds the stored samples of `[s.fed, to)` (minutes not handed over), an hour at a time.
    fn feed_store(&mut self, outlet: &Outlet, s: &mut Stream, to: i64) -> Result<(), StoreError> {
        let offset = self.config.site.utc_offset;
        while s.fed < to {
            let end = (period_start(Level::Hour, s.fed) + 3600).min(to);
            let devices: Vec<&str> = s.devices.iter().map(String::as_str).collect();
            let evaluator = &mut s.evaluator;
            self.store.for_each_sample(
                &devices,
                offset.utc_ms(s.fed),
                offset.utc_ms(end),
                |ts, factor, value, flag| {
                    evaluator.push(Input { t: offset.local_secs(ts), factor: factor.clone(), value, flag })
                },
            )?;
            s.evaluator.close_minute_before(end);
            s.fed = end;
            self.store_minutes(outlet, s)?;
            self.close_periods(outlet, s)?;
        }
        Ok(())
    }

    /// Stores the minutes the evaluator closed (not those of the warm-up).
    fn store_minutes(&mut self, outlet: &Outlet, s: &mut Stream) -> Result<(), StoreError> {
        let minutes: Vec<Record> = std::mem::take(&mut *s.closed.lock().unwrap_or_else(|e| e.into_inner()));
        // The evaluator's own hours are not used: hours are built from the stored minutes.
        drop(s.evaluator.take_closed());
        let minutes: Vec<Record> = minutes.into_iter().filter(|r| r.start >= s.keep_from).collect();
        for r in &minutes {
            if !s.known.contains(&r.factor) {
                s.known.insert(r.factor.clone());
            }
            add_member(s.open.entry(period_start(Level::Hour, r.start)).or_default(), r);
        }
        if !minutes.is_empty() {
            self.write(&outlet.name, minutes);
        }
        Ok(())
    }

    /// Stores every hour and day that has ended before the fed minutes.
    fn close_periods(&mut self, outlet: &Outlet, s: &mut Stream) -> Result<(), StoreError> {
        while s.hour + 3600 <= s.fed {
            self.store_hour(outlet, s, s.hour)?;
            s.open.remove(&s.hour);
            s.hour += 3600;
        }
        while s.day + 86_400 <= s.hour {
            let n = self.store_day(outlet, s, s.day)?;
            if n == 0 {
                tracing::debug!(outlet = %outlet.name, day = %Local::from_secs(s.day).date(), "No data for a closed day: no day record.");
            } else {
                tracing::info!(outlet = %outlet.name, day = %Local::from_secs(s.day).date(), records = n, "Day records computed.");
            }
            s.day += 86_400;
        }
        Ok(())
    }

    fn store_hour(&mut self, outlet: &Outlet, s: &Stream, hour: i64) -> Result<(), StoreError> {
        self.flush_writes()?;
        let offset = self.config.site.utc_offset;
        let ms = |t: i64| offset.utc_ms(t);
        let minutes = self.store.records(&outlet.name, Level::Minute, ms(hour), ms(hour + 3600), offset)?;
        let hours = records_from(&s.spec, Level::Hour, hour, &minutes, &s.known);
        self.write(&outlet.name, hours);
        Ok(())
    }

    /// Queues the day's records from its stored hours; returns how many.
    fn store_day(&mut self, outlet: &Outlet, s: &Stream, day: i64) -> Result<usize, StoreError> {
        self.flush_writes()?;
        let offset = self.config.site.utc_offset;
        let ms = |t: i64| offset.utc_ms(t);
        let hours = self.store.records(&outlet.name, Level::Hour, ms(day), ms(day + 86_400), offset)?;
        // A day without any sample has no record, as in one evaluation of the samples.
        if hours.iter().all(|h| h.stat.n_total == 0) {
            return Ok(0);
        }
        let days = records_from(&s.spec, Level::Day, day, &hours, &s.known);
        let n = days.len();
        self.write(&outlet.name, days);
        Ok(n)
    }

    /// Recomputes the minutes of `[from, to)` from the samples (with a warm-up), then the closed
    /// hours and days above them from the records.
    fn recompute(&mut self, outlet: &Outlet, s: &mut Stream, from: i64, to: i64) -> Result<(), StoreError> {
        let offset = self.config.site.utc_offset;
        let from = period_start(Level::Minute, from);
        let mut minutes = Vec::new();
        let (_, _) = evaluate_range(&self.store, &self.config, outlet, from - WARM_UP, to, |r| {
            if r.start >= from && r.start + 60 <= to {
                minutes.push(r.clone());
            }
        })?;
        for r in &minutes {
            if !s.known.contains(&r.factor) {
                s.known.insert(r.factor.clone());
            }
        }
        self.write(&outlet.name, minutes);
        self.flush_writes()?;
        let ms = |t: i64| offset.utc_ms(t);
        let mut hour = period_start(Level::Hour, from);
        while hour < to {
            if hour < s.hour {
                self.store_hour(outlet, s, hour)?;
            } else {
                // An hour still open: its running figures again from its stored minutes.
                let minutes =
                    self.store.records(&outlet.name, Level::Minute, ms(hour), ms(hour + 3600), offset)?;
                let accs = s.open.entry(hour).or_default();
                accs.clear();
                minutes.iter().for_each(|r| add_member(accs, r));
            }
            hour += 3600;
        }
        let mut day = period_start(Level::Day, from);
        while day < to && day < s.day {
            self.store_day(outlet, s, day)?;
            day += 86_400;
        }
        Ok(())
    }

    /// Publishes the open hour's running figures (of its stored minutes).
    fn publish(&mut self, outlet: &Outlet, s: &Stream) -> Result<(), StoreError> {
        let stats = match s.open.get(&s.hour) {
            Some(accs) => period_records(&s.spec, Level::Hour, s.hour, accs, accs.keys())
                .into_iter()
                .map(|r| (r.factor, r.stat))
                .collect(),
            None => BTreeMap::new(),
        };
        self.live.set_open_hour(
            &outlet.name,
            OpenHour { start: s.hour, stats, limits: s.spec.limits.limits.clone() },
        );
        Ok(())
    }
}

/// Feeds a handed-over minute's rows of the outlet's devices.
fn feed_rows(s: &mut Stream, minute: &SealedMinute, offset: Offset) {
    for row in &minute.rows {
        if s.devices.iter().any(|d| **d == *row.device) {
            s.evaluator.push(Input {
                t: offset.local_secs(row.ts_ms),
                factor: row.factor.clone(),
                value: row.value,
                flag: row.flag,
            });
        }
    }
}
