//! The monthly figures of an outlet from its hour records: exceedance events, and per limited
//! factor (and for all of them jointly) the hours that were valid, exceeded, above the
//! instrument's range, stopped or not valid, the compliance rate and the capture rate. Pure.
//!
//! The rules, by the ultra-low emission opinions (see LIMITS.md):
//! - a stopped hour (`F`: the facility's run status said 0) is not production time and leaves
//!   every denominator;
//! - the compliance rate is compliant hours over valid hours ("每月至少95%以上时段小时均值",
//!   steel and coking: the hours that have an hourly mean); where the profile counts monthly
//!   *production time* ("每月生产时间至少95%以上时段", cement), it is compliant hours over
//!   production hours, so an invalid production hour counts against it;
//! - the capture rate is valid hours over production hours, per factor;
//! - a valid hour above the instrument's range (`T`) is valid: its average is a lower bound of
//!   the true one, and above the limit it is an exceedance; such hours are counted apart.
//!
//! An hour of unknown run status (no data at all) is production time: nothing says it was not.

use std::collections::BTreeMap;

use super::limits::OutletLimits;
use super::stats::Record;
use crate::acquire::flags::worst;
use crate::model::Flag;

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

/// Monthly figures of one limited factor (or all of them jointly), over its hour records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FactorCompliance {
    pub valid_hours: u32,
    pub exceeded_hours: u32,
    /// Valid hours with samples above the instrument's range (`T`), part of `valid_hours`.
    pub over_range_hours: u32,
    /// Hours excluded because the facility was stopped (F).
    pub stopped_hours: u32,
    /// Other hours that are not valid, by their flag.
    pub invalid_hours: BTreeMap<char, u32>,
    /// Whether the rate counts production hours (cement) rather than valid hours.
    pub production_time: bool,
}

impl FactorCompliance {
    pub fn compliant_hours(&self) -> u32 {
        self.valid_hours.saturating_sub(self.exceeded_hours)
    }

    /// Hours the facility was not known to be stopped: valid and invalid ones.
    pub fn production_hours(&self) -> u32 {
        self.invalid_hours.values().fold(self.valid_hours, |n, h| n.saturating_add(*h))
    }

    /// The rate's denominator: production hours or valid hours, as the profile says.
    pub fn rate_hours(&self) -> u32 {
        if self.production_time { self.production_hours() } else { self.valid_hours }
    }

    /// Compliant share of [`FactorCompliance::rate_hours`]; `None` without any.
    pub fn rate(&self) -> Option<f64> {
        let of = self.rate_hours();
        (of > 0).then(|| f64::from(self.compliant_hours()) / f64::from(of))
    }

    /// Valid share of production hours; `None` without production hours.
    pub fn capture_rate(&self) -> Option<f64> {
        let of = self.production_hours();
        (of > 0).then(|| f64::from(self.valid_hours) / f64::from(of))
    }

    pub fn meets_95(&self) -> bool {
        self.rate().is_some_and(|r| r >= 0.95)
    }

    fn tally(&mut self, valid: bool, flag: Flag, exceeded: bool) {
        match (valid, flag) {
            (true, flag) => {
                self.valid_hours = self.valid_hours.saturating_add(1);
                self.exceeded_hours = self.exceeded_hours.saturating_add(u32::from(exceeded));
                self.over_range_hours = self.over_range_hours.saturating_add(u32::from(flag == Flag::T));
            }
            (false, Flag::F) => self.stopped_hours = self.stopped_hours.saturating_add(1),
            (false, other) => {
                let n = self.invalid_hours.entry(other.as_char()).or_default();
                *n = n.saturating_add(1);
            }
        }
    }
}

/// The result of an evaluation.
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
    /// Limited factors without any hour record: the joint figures are without them (the
    /// daemon's configuration refuses such an outlet; a CSV may simply not have them).
    pub unmeasured: Vec<String>,
}

/// Exceedance events and compliance figures of hour records read back from the store (the
/// status page's month to date), by the same rules as the evaluator's.
pub fn summarize_hours(hours: Vec<Record>, limits: &OutletLimits) -> Outcome {
    let mut out = Outcome { hours, ..Outcome::default() };
    summarize(&mut out, limits);
    out
}

/// Exceedance events and compliance figures from the hour records.
pub(super) fn summarize(out: &mut Outcome, limits: &OutletLimits) {
    let (limited, unmeasured): (Vec<&String>, Vec<&String>) =
        limits.limits.keys().partition(|f| out.hours.iter().any(|h| &h.factor == *f));
    out.unmeasured = unmeasured.into_iter().cloned().collect();
    let fresh = FactorCompliance { production_time: limits.production_hours_only, ..Default::default() };
    out.joint = fresh.clone();
    let mut by_hour: BTreeMap<i64, Vec<&Record>> = BTreeMap::new();
    for h in out.hours.iter().filter(|h| limited.contains(&&h.factor)) {
        by_hour.entry(h.start).or_default().push(h);
        out.factors.entry(h.factor.clone()).or_insert_with(|| fresh.clone()).tally(
            h.stat.valid,
            h.stat.flag,
            h.exceeded,
        );
    }
    for records in by_hour.values() {
        let valid = records.len() == limited.len() && records.iter().all(|r| r.stat.valid);
        let flag = if valid {
            worst(records.iter().map(|r| r.stat.flag))
        } else if records.len() < limited.len() {
            Flag::B
        } else if records.iter().any(|r| r.stat.flag == Flag::F) {
            // The run status stops every factor at once: a stop is a stop.
            Flag::F
        } else {
            worst(records.iter().filter(|r| !r.stat.valid).map(|r| r.stat.flag))
        };
        out.joint.tally(valid, flag, valid && records.iter().any(|r| r.exceeded));
    }
    for factor in limited {
        events_of(out, factor);
    }
    out.events.sort_by_key(|e| e.start);
}

/// The runs of consecutive exceeded hours of one factor.
fn events_of(out: &mut Outcome, factor: &str) {
    let mut current: Option<(Exceedance, u32, f64)> = None;
    let close = |c: Option<(Exceedance, u32, f64)>, events: &mut Vec<Exceedance>| {
        if let Some((mut e, n, sum)) = c {
            e.mean = sum / f64::from(n);
            events.push(e);
        }
    };
    let mut events = Vec::new();
    for h in out.hours.iter().filter(|h| h.factor == factor) {
        let v = h.judged().unwrap_or(0.0);
        match (&mut current, h.exceeded) {
            (Some((e, n, sum)), true) if e.end == h.start => {
                e.end = h.start + 3600;
                e.peak = e.peak.max(v);
                *n += 1;
                *sum += v;
            }
            (_, true) => {
                close(current.take(), &mut events);
                let e = Exceedance {
                    factor: factor.to_string(),
                    start: h.start,
                    end: h.start + 3600,
                    peak: v,
                    mean: v,
                    limit: h.limit.unwrap_or(f64::NAN),
                };
                current = Some((e, 1, v));
            }
            (_, false) => close(current.take(), &mut events),
        }
    }
    close(current.take(), &mut events);
    out.events.extend(events);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tallied(hours: &[(bool, Flag, bool)], production_time: bool) -> FactorCompliance {
        let mut fc = FactorCompliance { production_time, ..Default::default() };
        hours.iter().for_each(|(v, f, e)| fc.tally(*v, *f, *e));
        fc
    }

    #[test]
    fn production_time_counts_invalid_hours_against_the_rate() {
        // 100 hours: 10 stopped, 80 valid (2 exceeded, 3 over range), 10 in calibration.
        let mut hours = vec![(false, Flag::F, false); 10];
        hours.extend(vec![(true, Flag::N, false); 75]);
        hours.extend(vec![(true, Flag::N, true); 2]);
        hours.extend(vec![(true, Flag::T, false); 3]);
        hours.extend(vec![(false, Flag::C, false); 10]);
        let steel = tallied(&hours, false);
        // Steel, coking: 78 compliant of 80 valid hours = 97.5 %.
        assert_eq!((steel.valid_hours, steel.compliant_hours(), steel.over_range_hours), (80, 78, 3));
        assert_eq!((steel.rate_hours(), steel.rate()), (80, Some(0.975)));
        assert!(steel.meets_95());
        // Cement: 78 compliant of 90 production hours (stopped ones out) = 86.67 %.
        let cement = tallied(&hours, true);
        assert_eq!((cement.production_hours(), cement.rate_hours()), (90, 90));
        assert!((cement.rate().unwrap() - 78.0 / 90.0).abs() < 1e-12);
        assert!(!cement.meets_95());
        // Capture: 80 valid of 90 production hours = 88.89 %, whatever the profile.
        assert_eq!(steel.capture_rate(), cement.capture_rate());
        assert!((steel.capture_rate().unwrap() - 80.0 / 90.0).abs() < 1e-12);
        assert_eq!(tallied(&[(false, Flag::F, false)], true).capture_rate(), None);
    }
}
