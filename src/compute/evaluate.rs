//! The streaming evaluator of one outlet: real-time samples in, minute/hour/day/month records,
//! hourly limit checks, exceedance events and the monthly compliance rate out.
//!
//! Pure and clock-free: time is the samples' own, as seconds of local plant time counted like
//! Unix time (the calendar is naive: a plant's hours are its local hours). Memory is constant in
//! the number of samples: only the open minute, hour, day and month are held, plus the closed
//! hour/day/month records (a month is 744 hours).
//!
//! The samples of one time (one analyzer poll gives one time to all its points) are converted
//! together by [`realtime::convert`], the same conversion the live views use: ppm to mg/m³, dry
//! standard state, NOx from NO and NO2, `F` while the facility is stopped, the reference-O2
//! value (ZsRtd) and the flow `a00000` in m³/s at dry standard state. The converted values are
//! then averaged (see [`super::stats`]); totals (`-Cou`) are kg for pollutants (33) and m³ for
//! the flow. A sample covered by an operator's mark takes the more severe of its flag and the
//! mark's ([`super::marks`]).

use std::collections::{BTreeMap, BTreeSet};

use super::convert;
use super::realtime::{self, Context};
use super::stats::{Acc, Member, Stat};

pub use super::compliance::{Exceedance, FactorCompliance, Outcome, summarize_hours};
pub use super::realtime::{Flue, dry_standard};
pub use super::spec::*;
pub use super::stats::{Level, Record, Thresholds};

/// Start of the period containing `t` (local seconds).
pub fn period_start(level: Level, t: i64) -> i64 {
    match level {
        Level::Minute => t - t.rem_euclid(60),
        Level::Hour => t - t.rem_euclid(3600),
        Level::Day => t - t.rem_euclid(86_400),
        Level::Month => {
            let day = t.div_euclid(86_400);
            let date = time::Date::from_julian_day((day + 2_440_588) as i32).unwrap_or(time::Date::MIN);
            let first = date.replace_day(1).unwrap_or(date);
            (i64::from(first.to_julian_day()) - 2_440_588) * 86_400
        }
    }
}

/// Whether the month starting at `start` is February.
fn is_february(start: i64) -> bool {
    time::Date::from_julian_day((start.div_euclid(86_400) + 2_440_588) as i32)
        .is_ok_and(|d| d.month() == time::Month::February)
}

/// One level's open period.
#[derive(Debug, Default)]
struct Open {
    start: Option<i64>,
    accs: BTreeMap<String, Acc>,
}

/// Where closed minute records go.
type MinuteSink<'a> = Box<dyn FnMut(&Record) + Send + 'a>;

/// Streams one outlet's samples (in time order) into records.
pub struct Evaluator<'a> {
    spec: OutletSpec,
    ctx: Context,
    group_t: Option<i64>,
    group: Vec<Input>,
    open: [Open; 4],
    /// Every factor seen, so that hours without any data still get an (invalid) record.
    known: BTreeSet<String>,
    out: Outcome,
    on_minute: Option<MinuteSink<'a>>,
    /// The outlet's operator marks: the flags of the samples they cover.
    marks: super::marks::MarkSet,
    /// Samples that arrived out of time order and were dropped.
    pub late: u64,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("group_t", &self.group_t)
            .field("late", &self.late)
            .finish_non_exhaustive()
    }
}

/// Adds a member to an open period's accumulator of `factor`, noting the factor as known.
fn add(open: &mut Open, known: &mut BTreeSet<String>, factor: &str, m: Member) {
    // Looked up before inserting: a sample must not cost an allocation.
    match open.accs.get_mut(factor) {
        Some(acc) => acc.push(m),
        None => {
            known.insert(factor.to_string());
            let mut acc = Acc::default();
            acc.push(m);
            open.accs.insert(factor.to_string(), acc);
        }
    }
}

/// Sample times the evaluator takes (local seconds): years 1 to 9999, the calendar's range.
pub const TIME_RANGE: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// Longest run of silent hours filled with empty records (a clock jump is not filled).
const MAX_GAP_FILL: i64 = 31 * 86_400;

const LEVELS: [Level; 4] = [Level::Minute, Level::Hour, Level::Day, Level::Month];

impl<'a> Evaluator<'a> {
    pub fn new(spec: OutletSpec) -> Evaluator<'a> {
        Evaluator {
            spec,
            ctx: Context::default(),
            group_t: None,
            group: Vec::new(),
            open: Default::default(),
            known: BTreeSet::new(),
            out: Outcome::default(),
            on_minute: None,
            marks: Default::default(),
            late: 0,
        }
    }

    /// Applies the outlet's operator marks to the samples from now on.
    pub fn with_marks(mut self, marks: super::marks::MarkSet) -> Self {
        self.marks = marks;
        self
    }

    /// The marks changed (an operator added, edited or ended one).
    pub fn set_marks(&mut self, marks: super::marks::MarkSet) {
        self.marks = marks;
    }

    /// Receives every minute record as it closes (they are not kept).
    pub fn on_minute(mut self, f: impl FnMut(&Record) + Send + 'a) -> Self {
        self.on_minute = Some(Box::new(f));
        self
    }

    /// Takes one sample. Samples must come in non-decreasing time; an older one is counted in
    /// [`Evaluator::late`] and dropped, and so is one outside the calendar ([`TIME_RANGE`]: the
    /// period arithmetic stays far from overflow whatever the input).
    pub fn push(&mut self, input: Input) {
        if !TIME_RANGE.contains(&input.t) {
            self.late += 1;
            return;
        }
        match self.group_t {
            Some(t) if input.t < t => {
                self.late += 1;
                return;
            }
            Some(t) if input.t > t => self.flush_group(),
            _ => {}
        }
        self.group_t = Some(input.t);
        self.group.push(input);
    }

    /// The open hour's running statistics per factor (for the status page).
    pub fn open_hour(&self) -> BTreeMap<String, Stat> {
        let min = self.spec.thresholds.minutes_per_hour;
        self.open[1]
            .accs
            .iter()
            .map(|(f, a)| (f.clone(), a.finish(min, self.spec.thresholds.normal_share)))
            .collect()
    }

    /// Closes every open period and returns the records and the compliance figures.
    pub fn finish(mut self) -> Outcome {
        self.flush_group();
        for i in 0..LEVELS.len() {
            self.close(i);
        }
        let mut out = std::mem::take(&mut self.out);
        super::compliance::summarize(&mut out, &self.spec.limits);
        out
    }

    fn flush_group(&mut self) {
        let Some(t) = self.group_t.take() else { return };
        self.advance(t);
        let valid = self.spec.thresholds.valid_flags;
        let (open, known, marks) = (&mut self.open[0], &mut self.known, &self.marks);
        realtime::convert_each(&self.spec, &mut self.ctx, t, &self.group, |c| {
            let flag = marks.apply(t, c.flag);
            add(open, known, c.factor, Member::sample(c.value, c.zs, flag, valid));
        });
        // The buffer is kept for the next poll: a sample costs no allocation.
        self.group.clear();
    }

    /// Closes every period that ends at or before `t`, and opens the ones containing `t`.
    fn advance(&mut self, t: i64) {
        for (i, level) in LEVELS.iter().enumerate() {
            let start = period_start(*level, t);
            match self.open[i].start {
                Some(s) if s == start => break,
                Some(old) => {
                    // Close this level; a longer gap also closes the levels above.
                    self.close(i);
                    if *level == Level::Hour && start - old <= MAX_GAP_FILL {
                        let mut h = old + 3600;
                        while h < start {
                            self.empty_hour(h);
                            h += 3600;
                        }
                    }
                }
                None => {}
            }
            self.open[i].start = Some(start);
        }
    }

    /// Records for an hour in which nothing at all arrived: every known factor, invalid (`B`).
    fn empty_hour(&mut self, start: i64) {
        let stat =
            Acc::default().finish(self.spec.thresholds.minutes_per_hour, self.spec.thresholds.normal_share);
        for factor in &self.known {
            let limit = self.spec.limits.limit(factor);
            self.out.hours.push(Record {
                level: Level::Hour,
                start,
                factor: factor.clone(),
                stat: stat.clone(),
                limit,
                exceeded: false,
            });
        }
    }

    fn min_valid(&self, level: Level, start: i64) -> u32 {
        let t = &self.spec.thresholds;
        match level {
            Level::Minute => t.samples_per_minute,
            Level::Hour => t.minutes_per_hour,
            Level::Day => t.hours_per_day,
            Level::Month if is_february(start) => t.days_per_february,
            Level::Month => t.days_per_month,
        }
    }

    /// Closes level `i`'s open period and pushes its records one level up. Hours without any
    /// data between two samples get empty (invalid, `B`) records for every known factor.
    fn close(&mut self, i: usize) {
        let Some(start) = self.open[i].start.take() else { return };
        let level = LEVELS[i];
        let accs = std::mem::take(&mut self.open[i].accs);
        let share = self.spec.thresholds.normal_share;
        let min = self.min_valid(level, start);
        let flow = accs.get(FLOW).map(|a| a.finish(min, share));
        let known: Vec<String> = if level == Level::Minute {
            accs.keys().cloned().collect()
        } else {
            self.known.iter().cloned().collect()
        };
        for factor in known {
            let stat =
                accs.get(&factor).map_or_else(|| Acc::default().finish(min, share), |a| a.finish(min, share));
            let stat = self.with_cou(level, &factor, stat, flow.as_ref());
            let limit = if level == Level::Hour { self.spec.limits.limit(&factor) } else { None };
            let judged = stat.zs_avg.filter(|_| self.spec.limits.o2_ref.is_some()).or(stat.avg);
            // A valid hour above the instrument's range (T) is judged like any other: its average
            // is a lower bound, so above the limit it is an exceedance.
            let exceeded = stat.valid && limit.zip(judged).is_some_and(|(l, v)| v > l);
            let record = Record { level, start, factor: factor.clone(), stat, limit, exceeded };
            // Periods with no member at all are not members of the level above: the count of
            // valid members there is what decides.
            if i + 1 < LEVELS.len() && record.stat.n_total > 0 {
                self.open[i + 1].accs.entry(factor.clone()).or_default().push(Member::period(&record.stat));
            }
            match level {
                Level::Minute => {
                    if let Some(f) = self.on_minute.as_mut() {
                        f(&record);
                    }
                }
                Level::Hour => self.out.hours.push(record),
                Level::Day => self.out.days.push(record),
                Level::Month => self.out.months.push(record),
            }
        }
    }

    /// The period total: kg for pollutants (33), m³ for the flow; minutes and hours from the
    /// period's average concentration and flow, days and months as sums of their valid members
    /// ((32), (34): the hours that are not valid add nothing, so a day's total is a lower bound).
    fn with_cou(&self, level: Level, factor: &str, mut stat: Stat, flow: Option<&Stat>) -> Stat {
        let seconds = match level {
            Level::Minute => 60.0,
            Level::Hour => 3600.0,
            Level::Day | Level::Month => return stat,
        };
        // The flow series is in m³/s (table B.2); (33) takes m³/h.
        stat.cou = if factor == FLOW {
            stat.avg.filter(|_| stat.valid).map(|q| q * seconds)
        } else {
            let q = flow.filter(|f| f.valid).and_then(|f| f.avg);
            let pollutant = convert::molar_mass(factor).is_some() || factor == PARTICULATE;
            match (stat.avg.filter(|_| stat.valid && pollutant), q) {
                (Some(c), Some(q)) => Some(convert::emission_rate_kg_h(c, q * 3600.0) * seconds / 3600.0),
                _ => None,
            }
        };
        stat
    }
}
