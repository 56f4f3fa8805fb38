//! The streaming evaluator of one outlet: real-time samples in, minute/hour/day/month records,
//! hourly limit checks, exceedance events and the monthly compliance rate out.
//!
//! Pure and clock-free: time is the samples' own, as seconds of local plant time counted like
//! Unix time (the calendar is naive: a plant's hours are its local hours). Memory is constant in
//! the number of samples: only the open minute, hour, day and month are held, plus the closed
//! hour/day/month records (a month is 744 hours).
//!
//! Per real-time timestamp (one analyzer poll gives one timestamp to all its points):
//! 1. points configured in ppm are converted to mg/m³ (20);
//! 2. context values are updated: O2 `a19001`, temperature `a01012`, static pressure `a01013`
//!    (kPa), humidity `a01014`, velocity `a01011`, flow `a00000` (m³/s, actual), ambient pressure
//!    `a01006` (kPa), and the facility run status (0 = stopped);
//! 3. values measured wet or at actual state are brought to dry standard state, (19) and (18),
//!    O2 to dry; then NOx `a21002` is derived from NO `a21003` and NO2 `a21004` (21) when not measured itself;
//! 4. while the facility is stopped, normal samples are flagged `F`; a sample covered by an
//!    operator's mark takes the more severe of its flag and the mark's ([`super::marks`]);
//! 5. a limited factor is converted to the reference O2 per sample (28), ZsRtd, with the O2 of
//!    the same or an earlier poll not older than `context_max_age`. Without a usable O2 the
//!    sample takes the O2's flag (or `B` when there is none); at or above the O2 guard it is
//!    flagged `D` and not converted (a gateway choice: near 21 % the divisor vanishes);
//! 6. the dry standard flow (29)–(31) is derived when the velocity (or flow) is measured and
//!    aggregated as series `a00000` in m³/h, dry, standard state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::convert::{self, O2Guard};
use super::limits::OutletLimits;
use super::stats::{Acc, Level, Member, Stat, Thresholds};
use crate::acquire::flags::worst;
use crate::model::Flag;

pub const O2: &str = "a19001";
pub const TEMPERATURE: &str = "a01012";
pub const STATIC_PRESSURE: &str = "a01013";
pub const HUMIDITY: &str = "a01014";
pub const VELOCITY: &str = "a01011";
pub const FLOW: &str = "a00000";
pub const AMBIENT_PRESSURE: &str = "a01006";
pub const NO: &str = "a21003";
pub const NO2: &str = "a21004";
pub const NOX: &str = "a21002";
/// Context key of the facility run status, whatever its factor code.
const RUN_STATUS: &str = "run-status";

/// Duct and pressure data for the flow (29)–(31).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSpec {
    pub duct_area_m2: Option<f64>,
    /// Velocity-field coefficient Kv (29).
    pub kv: f64,
    /// Ambient pressure (Pa) when no `a01006` point is measured.
    pub ambient_pa: f64,
}

/// How a point's concentration is measured: wet or dry gas, actual or standard state.
/// Extractive analyzers usually give dry standard values; in-situ ones wet actual values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Basis {
    pub wet: bool,
    pub actual: bool,
}

impl Basis {
    pub const DRY_STANDARD: Basis = Basis { wet: false, actual: false };

    /// `dry-standard`, `dry-actual`, `wet-standard` or `wet-actual`.
    pub fn parse(s: &str) -> Option<Basis> {
        let (wet, state) = s.split_once('-')?;
        let wet = match wet {
            "dry" => false,
            "wet" => true,
            _ => return None,
        };
        let actual = match state {
            "standard" => false,
            "actual" => true,
            _ => return None,
        };
        Some(Basis { wet, actual })
    }
}

/// Everything the evaluator needs to know about an outlet.
#[derive(Debug, Clone, PartialEq)]
pub struct OutletSpec {
    pub limits: OutletLimits,
    pub thresholds: Thresholds,
    /// O2 (%) at or above which no reference-oxygen conversion is made.
    pub o2_guard: f64,
    /// Factor code of the facility run status point: 0 = stopped. When `None`, any factor
    /// named like HJ 212's `SBxxx-RS` (ending in `-RS`) is taken as the run status.
    pub run_status: Option<String>,
    pub flow: FlowSpec,
    /// Factors whose values arrive in ppm.
    pub ppm: BTreeSet<String>,
    /// Factors measured other than dry at standard state (the rest are dry standard).
    pub basis: BTreeMap<String, Basis>,
    /// Oldest a context value (O2, flue parameters, run status) may be, in seconds.
    pub context_max_age: i64,
}

impl OutletSpec {
    /// Whether `factor` is the facility run status.
    pub fn is_run_status(&self, factor: &str) -> bool {
        match &self.run_status {
            Some(f) => f == factor,
            None => factor.ends_with("-RS"),
        }
    }

    /// A spec with the defaults: HJ 75 thresholds, O2 guard 20.5 %, 101325 Pa ambient, Kv 1.
    pub fn new(limits: OutletLimits) -> OutletSpec {
        OutletSpec {
            limits,
            thresholds: Thresholds::HJ75,
            o2_guard: 20.5,
            run_status: None,
            flow: FlowSpec { duct_area_m2: None, kv: 1.0, ambient_pa: convert::P_STANDARD },
            ppm: BTreeSet::new(),
            basis: BTreeMap::new(),
            context_max_age: 30,
        }
    }
}

/// One real-time sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Local plant time, seconds.
    pub t: i64,
    pub factor: Arc<str>,
    pub value: Option<f64>,
    pub flag: Flag,
}

/// A closed period of one factor.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub level: Level,
    /// Period start, local seconds.
    pub start: i64,
    pub factor: String,
    pub stat: Stat,
    /// The hourly limit (hour records of limited factors).
    pub limit: Option<f64>,
    /// A valid hour whose converted average is above the limit.
    pub exceeded: bool,
}

impl Record {
    /// The value judged against the limit: converted where a reference O2 applies.
    pub fn judged(&self) -> Option<f64> {
        self.stat.zs_avg.or(self.stat.avg)
    }
}

/// Consecutive exceeded hours of one factor.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceedance {
    pub factor: String,
    pub start: i64,
    /// End of the last exceeded hour.
    pub end: i64,
    pub peak: f64,
    pub mean: f64,
    pub limit: f64,
}

/// Monthly figures of one limited factor, over its hour records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FactorCompliance {
    pub valid_hours: u32,
    pub exceeded_hours: u32,
    /// Hours excluded because the facility was stopped (F).
    pub stopped_hours: u32,
    /// Other hours excluded as not valid, by their flag.
    pub invalid_hours: BTreeMap<char, u32>,
}

impl FactorCompliance {
    pub fn compliant_hours(&self) -> u32 {
        self.valid_hours.saturating_sub(self.exceeded_hours)
    }

    /// Compliant share of valid hours; `None` without valid hours.
    pub fn rate(&self) -> Option<f64> {
        (self.valid_hours > 0).then(|| f64::from(self.compliant_hours()) / f64::from(self.valid_hours))
    }

    pub fn meets_95(&self) -> bool {
        self.rate().is_some_and(|r| r >= 0.95)
    }
}

/// The result of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub hours: Vec<Record>,
    pub days: Vec<Record>,
    pub months: Vec<Record>,
    pub events: Vec<Exceedance>,
    pub factors: BTreeMap<String, FactorCompliance>,
    /// All limited factors jointly: an hour is valid when every limited factor is valid, and
    /// compliant when none of them exceeded.
    pub joint: FactorCompliance,
}

#[derive(Debug, Clone, Copy)]
struct Ctx {
    t: i64,
    value: Option<f64>,
    flag: Flag,
}

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
    ctx: BTreeMap<&'static str, Ctx>,
    group_t: Option<i64>,
    group: Vec<Input>,
    open: [Open; 4],
    /// Every factor seen, so that hours without any data still get an (invalid) record.
    known: BTreeSet<String>,
    out: Outcome,
    on_minute: Option<MinuteSink<'a>>,
    /// The outlet's operator marks: the flags of the samples they cover.
    marks: super::marks::MarkSet,
    /// Samples that arrived out of time order (or outside [`TIME_RANGE`]) and were dropped.
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

/// Sample times the evaluator takes (local seconds): years 1 to 9999, the calendar's range.
pub const TIME_RANGE: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// Longest run of silent hours filled with empty records (a clock jump is not filled).
const MAX_GAP_FILL: i64 = 31 * 86_400;

const LEVELS: [Level; 4] = [Level::Minute, Level::Hour, Level::Day, Level::Month];

impl<'a> Evaluator<'a> {
    pub fn new(spec: OutletSpec) -> Evaluator<'a> {
        Evaluator {
            spec,
            ctx: BTreeMap::new(),
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
        summarize(&mut out, &self.spec.limits);
        out
    }

    fn fresh(&self, factor: &str, t: i64) -> Option<Ctx> {
        self.ctx.get(factor).copied().filter(|c| t - c.t <= self.spec.context_max_age)
    }

    fn flush_group(&mut self) {
        let Some(t) = self.group_t.take() else { return };
        let mut group = std::mem::take(&mut self.group);
        self.advance(t);
        if !self.marks.is_empty() {
            for s in &mut group {
                s.flag = self.marks.apply(t, s.flag);
            }
        }

        for s in &mut group {
            if self.spec.ppm.contains(&*s.factor)
                && let (Some(v), Some(m)) = (s.value, convert::molar_mass(&s.factor))
            {
                s.value = Some(convert::ppm_to_mg_m3(v, m));
            }
            s.value = s.value.filter(|v| v.is_finite());
        }
        const CONTEXT: [&str; 7] =
            [O2, TEMPERATURE, STATIC_PRESSURE, HUMIDITY, VELOCITY, FLOW, AMBIENT_PRESSURE];
        for s in &group {
            if let Some(key) = CONTEXT.iter().find(|c| **c == &*s.factor) {
                self.ctx.insert(key, Ctx { t, value: s.value, flag: s.flag });
            }
            if self.spec.is_run_status(&s.factor) {
                self.ctx.insert(RUN_STATUS, Ctx { t, value: s.value, flag: s.flag });
            }
        }
        // (19), (18): values measured wet or at actual state are brought to dry standard state
        // with the flue parameters of the same or an earlier poll (O2, a percentage, only to dry).
        for s in &mut group {
            let Some(basis) = self.spec.basis.get(&*s.factor).copied() else { continue };
            let is_o2 = &*s.factor == O2;
            (s.value, s.flag) = self.to_dry_standard(s.value, s.flag, basis, t, is_o2);
            if is_o2 {
                self.ctx.insert(O2, Ctx { t, value: s.value, flag: s.flag });
            }
        }
        // (21): NOx from NO and NO2 of the same poll, unless NOx itself was measured.
        let part = |f: &str| group.iter().find(|s| &*s.factor == f).map(|s| (s.value, s.flag));
        if part(NOX).is_none()
            && let (Some((no, f1)), Some((no2, f2))) = (part(NO), part(NO2))
        {
            let value = no.zip(no2).map(|(a, b)| convert::nox_from_no_no2(a, b));
            group.push(Input { t, factor: Arc::from(NOX), value, flag: worst([f1, f2]) });
        }

        let stopped = self.fresh(RUN_STATUS, t).is_some_and(|c| c.value == Some(0.0));

        for s in group {
            if self.spec.is_run_status(&s.factor) || &*s.factor == FLOW {
                continue;
            }
            let mut flag = if stopped && s.flag == Flag::N { Flag::F } else { s.flag };
            let value = s.value;
            if value.is_none() && flag == Flag::N {
                flag = Flag::B;
            }
            let mut zs = None;
            let limited = self.spec.limits.limit(&s.factor).is_some();
            if let Some(o2_ref) = self.spec.limits.o2_ref
                && (limited || convert::molar_mass(&s.factor).is_some() || &*s.factor == "a34013")
            {
                match self.fresh(O2, t) {
                    Some(Ctx { value: Some(o2), flag: Flag::N, .. }) => {
                        if let Some(c) = value {
                            match convert::reference_o2(c, o2, o2_ref, self.spec.o2_guard) {
                                Ok(z) => zs = Some(z),
                                Err(O2Guard::NearAir { .. } | O2Guard::Negative(_)) if limited => {
                                    flag = worst([flag, Flag::D])
                                }
                                Err(_) => {}
                            }
                        }
                    }
                    other if limited => {
                        let o2_flag =
                            other.map_or(Flag::B, |c| if c.value.is_none() { Flag::B } else { c.flag });
                        flag = worst([flag, o2_flag]);
                    }
                    _ => {}
                }
            }
            self.add(Level::Minute, &s.factor, Member { value, zs, cou: None, flag });
        }

        // (29)–(31): dry standard flow of this poll.
        if let Some(q) = self.flow_at(t) {
            self.add(Level::Minute, FLOW, q);
        }
    }

    /// Absolute flue pressure (Pa): ambient (measured a01006 or configured) plus static gauge
    /// pressure (a01013, kPa; 0 when not measured), and the static pressure's flag.
    fn abs_pressure(&self, t: i64) -> (f64, Flag) {
        let ambient = self
            .fresh(AMBIENT_PRESSURE, t)
            .and_then(|c| c.value)
            .map_or(self.spec.flow.ambient_pa, |kpa| kpa * 1000.0);
        let ps = self.fresh(STATIC_PRESSURE, t);
        // As for the humidity: a static pressure point gone stale is missing data.
        let flag = match ps {
            Some(c) => c.flag,
            None if self.ctx.contains_key(STATIC_PRESSURE) => Flag::B,
            None => Flag::N,
        };
        (ambient + ps.and_then(|c| c.value).unwrap_or(0.0) * 1000.0, flag)
    }

    /// One value to dry (19) and standard state (18) with the freshest flue parameters.
    fn to_dry_standard(
        &self,
        value: Option<f64>,
        flag: Flag,
        basis: Basis,
        t: i64,
        percent: bool,
    ) -> (Option<f64>, Flag) {
        let param = |f: &str| self.fresh(f, t).map(|c| (c.value, c.flag));
        let flue = Flue {
            humidity: param(HUMIDITY),
            temperature: param(TEMPERATURE),
            abs_pressure: self.abs_pressure(t),
        };
        dry_standard(value, flag, basis, percent, &flue)
    }

    /// Dry standard flow (m³/h) from the freshest flue parameters, if this poll measured the
    /// velocity or the flow.
    fn flow_at(&self, t: i64) -> Option<Member> {
        let just = |f: &str| self.ctx.get(f).filter(|c| c.t == t).copied();
        let q_actual = match (just(VELOCITY), just(FLOW), self.spec.flow.duct_area_m2) {
            (_, Some(flow), _) => (flow.value.map(|v| v * 3600.0), flow.flag),
            (Some(v), None, Some(area)) => {
                (v.value.map(|v| convert::actual_flow_m3h(v, area, self.spec.flow.kv)), v.flag)
            }
            _ => return None,
        };
        let temp = self.fresh(TEMPERATURE, t);
        let (abs, ps_flag) = self.abs_pressure(t);
        let hum = self.fresh(HUMIDITY, t);
        let flag =
            worst([q_actual.1, temp.map_or(Flag::B, |c| c.flag), ps_flag, hum.map_or(Flag::N, |c| c.flag)]);
        let value = match (q_actual.0, temp.and_then(|c| c.value)) {
            (Some(q), Some(temp)) => {
                let moisture = hum.and_then(|c| c.value).unwrap_or(0.0);
                Some(convert::standard_dry_flow_m3h(q, temp, abs, moisture))
                    .filter(|q| q.is_finite() && *q >= 0.0)
            }
            _ => None,
        };
        let flag = if value.is_none() { worst([flag, Flag::B]) } else { flag };
        Some(Member { value, zs: None, cou: None, flag })
    }

    fn add(&mut self, level: Level, factor: &str, m: Member) {
        let i = LEVELS.iter().position(|l| *l == level).expect("known level");
        // Looked up before inserting: a sample must not cost an allocation.
        match self.open[i].accs.get_mut(factor) {
            Some(acc) => acc.push(m),
            None => {
                self.known.insert(factor.to_string());
                let mut acc = Acc::default();
                acc.push(m);
                self.open[i].accs.insert(factor.to_string(), acc);
            }
        }
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
            let exceeded = stat.valid() && limit.zip(judged).is_some_and(|(l, v)| v > l);
            let record = Record { level, start, factor: factor.clone(), stat, limit, exceeded };
            if i + 1 < LEVELS.len() {
                let up = Member {
                    value: record.stat.avg,
                    zs: record.stat.zs_avg,
                    cou: record.stat.cou,
                    flag: record.stat.flag,
                };
                // Periods with no member at all are not members of the level above: the count
                // of valid members there is what decides.
                if record.stat.n_total > 0 {
                    self.open[i + 1].accs.entry(factor.clone()).or_default().push(up);
                }
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
    /// period's average concentration and flow, days and months as sums of their members.
    fn with_cou(&self, level: Level, factor: &str, mut stat: Stat, flow: Option<&Stat>) -> Stat {
        let hours = match level {
            Level::Minute => 1.0 / 60.0,
            Level::Hour => 1.0,
            Level::Day | Level::Month => return stat,
        };
        stat.cou = if factor == FLOW {
            stat.avg.filter(|_| stat.valid()).map(|q| q * hours)
        } else {
            let q = flow.filter(|f| f.valid()).and_then(|f| f.avg);
            let pollutant = convert::molar_mass(factor).is_some() || factor == "a34013";
            match (stat.avg.filter(|_| stat.valid() && pollutant), q) {
                (Some(c), Some(q)) => Some(convert::emission_rate_kg_h(c, q) * hours),
                _ => None,
            }
        };
        stat
    }
}

/// Exceedance events and compliance figures of hour records read back from the store (the
/// The flue parameters a conversion to dry standard state needs, each with its flag: humidity
/// (%, a01014), temperature (°C, a01012) and absolute pressure (Pa). `None`: not measured.
#[derive(Debug, Clone, Copy)]
pub struct Flue {
    pub humidity: Option<(Option<f64>, Flag)>,
    pub temperature: Option<(Option<f64>, Flag)>,
    pub abs_pressure: (f64, Flag),
}

/// One value to dry (19) and standard state (18); a percentage (O2) is only dried. Without the
/// humidity or temperature it needs, the value is dropped and flagged with the missing
/// parameter's flag (or `B`). Pure.
pub fn dry_standard(
    value: Option<f64>,
    flag: Flag,
    basis: Basis,
    percent: bool,
    flue: &Flue,
) -> (Option<f64>, Flag) {
    let Some(mut v) = value else { return (None, flag) };
    let mut flag = flag;
    let missing =
        |c: Option<(Option<f64>, Flag)>| c.map_or(Flag::B, |(v, f)| if v.is_none() { Flag::B } else { f });
    if basis.wet {
        match flue.humidity {
            Some((Some(h), hf)) => match convert::wet_to_dry(v, h) {
                Some(dry) => {
                    v = dry;
                    flag = worst([flag, hf]);
                }
                None => return (None, worst([flag, Flag::D])),
            },
            other => return (None, worst([flag, missing(other)])),
        }
    }
    if basis.actual && !percent {
        match flue.temperature {
            Some((Some(temp), tf)) => {
                let (abs, pf) = flue.abs_pressure;
                match convert::to_standard_state(v, temp, abs) {
                    Some(std) => {
                        v = std;
                        flag = worst([flag, tf, pf]);
                    }
                    None => return (None, worst([flag, Flag::D])),
                }
            }
            other => return (None, worst([flag, missing(other)])),
        }
    }
    (Some(v), flag)
}

/// status page's month to date), by the same rules as [`Evaluator::finish`].
pub fn summarize_hours(hours: Vec<Record>, limits: &OutletLimits) -> Outcome {
    let mut out = Outcome { hours, ..Outcome::default() };
    summarize(&mut out, limits);
    out
}

/// Exceedance events and compliance figures from the hour records.
fn summarize(out: &mut Outcome, limits: &OutletLimits) {
    let limited: Vec<&String> =
        limits.limits.keys().filter(|f| out.hours.iter().any(|h| &h.factor == *f)).collect();
    let mut by_hour: BTreeMap<i64, Vec<&Record>> = BTreeMap::new();
    for h in out.hours.iter().filter(|h| limited.contains(&&h.factor)) {
        by_hour.entry(h.start).or_default().push(h);
        let fc = out.factors.entry(h.factor.clone()).or_default();
        tally(fc, h.stat.flag, h.exceeded);
    }
    for records in by_hour.values() {
        let flag =
            if records.len() < limited.len() { Flag::B } else { worst(records.iter().map(|r| r.stat.flag)) };
        tally(&mut out.joint, flag, flag == Flag::N && records.iter().any(|r| r.exceeded));
    }
    for factor in limited {
        let mut current: Option<(Exceedance, u32, f64)> = None;
        for h in out.hours.iter().filter(|h| &h.factor == factor) {
            let v = h.judged().unwrap_or(0.0);
            match (&mut current, h.exceeded) {
                (Some((e, n, sum)), true) if e.end == h.start => {
                    e.end = h.start + 3600;
                    e.peak = e.peak.max(v);
                    *n += 1;
                    *sum += v;
                }
                (_, true) => {
                    if let Some((mut e, n, sum)) = current.take() {
                        e.mean = sum / f64::from(n);
                        out.events.push(e);
                    }
                    let e = Exceedance {
                        factor: factor.clone(),
                        start: h.start,
                        end: h.start + 3600,
                        peak: v,
                        mean: v,
                        limit: h.limit.unwrap_or(f64::NAN),
                    };
                    current = Some((e, 1, v));
                }
                (_, false) => {
                    if let Some((mut e, n, sum)) = current.take() {
                        e.mean = sum / f64::from(n);
                        out.events.push(e);
                    }
                }
            }
        }
        if let Some((mut e, n, sum)) = current.take() {
            e.mean = sum / f64::from(n);
            out.events.push(e);
        }
    }
    out.events.sort_by_key(|e| e.start);
}

fn tally(fc: &mut FactorCompliance, flag: Flag, exceeded: bool) {
    match flag {
        Flag::N => {
            fc.valid_hours += 1;
            fc.exceeded_hours += u32::from(exceeded);
        }
        Flag::F => fc.stopped_hours += 1,
        other => *fc.invalid_hours.entry(other.as_char()).or_default() += 1,
    }
}
