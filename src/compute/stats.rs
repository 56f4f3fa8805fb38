//! Validated period statistics (HJ 212-2017 Annex D (23)–(25), notes to C.16–C.18).
//!
//! A period (minute, hour, day, month) aggregates its members (real-time samples, or the
//! records of the level below). A member counts as valid when its flag is one of the valid
//! flags (`[statistics] valid_flags`, by default `N` and `T`: a value above the instrument's
//! range is still a measurement, a lower bound of the true one) and it has a value.
//!
//! The period is valid when at least `normal_share` (75 %) of its members carry a valid flag
//! **and** it has at least the level's minimum of valid members (12 samples, 45 minutes, 20
//! hours, 25 days / 23 in February). Its flag:
//! - for a valid period, the most severe flag of its valid members: `N`, or `T` when any of
//!   them was above the instrument's range (its average is then a lower bound);
//! - otherwise the dominant flag among the members that are not valid: the most frequent;
//!   a tie goes to the more severe flag (`B` > `F` > `D` > `C` > `M` > `S` > `T`, see
//!   [`Flag::severity`]), so that a period is never reported as better than its worst equal
//!   share;
//! - `B` (data missing) when every member is valid but there are too few of them.
//!
//! Min, Avg and Max are over valid members only (present, but not valid, for an invalid period
//! that has some); Min and Max are those of the samples themselves, not of the minute means.

use crate::model::{Flag, FlagSet};

/// Validity thresholds; the defaults are HJ 75 / HJ 212 Annex D's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub samples_per_minute: u32,
    pub minutes_per_hour: u32,
    pub hours_per_day: u32,
    pub days_per_month: u32,
    pub days_per_february: u32,
    /// Share of members with a valid flag needed for a valid period.
    pub normal_share: f64,
    /// The flags whose samples count as valid.
    pub valid_flags: FlagSet,
}

impl Thresholds {
    pub const HJ75: Thresholds = Thresholds {
        samples_per_minute: 12,
        minutes_per_hour: 45,
        hours_per_day: 20,
        days_per_month: 25,
        days_per_february: 23,
        normal_share: 0.75,
        valid_flags: FlagSet::NORMAL_AND_OVER_RANGE,
    };
}

/// The aggregation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Minute,
    Hour,
    Day,
    Month,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Minute => "minute",
            Level::Hour => "hour",
            Level::Day => "day",
            Level::Month => "month",
        }
    }
}

/// One member of a period: a real-time sample, or a closed period of the level below.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    /// The sample's value, or the period's average.
    pub value: Option<f64>,
    /// The lowest and highest values behind `value` (a sample's own value).
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Reference-oxygen converted value (ZsRtd / ZsAvg), where the factor has one, and the
    /// lowest and highest converted values behind it.
    pub zs: Option<f64>,
    pub zs_min: Option<f64>,
    pub zs_max: Option<f64>,
    /// The member's own total (kg, or m³ for flow), where it has one.
    pub cou: Option<f64>,
    pub flag: Flag,
    /// Whether the flag counts as valid: one of the valid flags for a sample, the period's
    /// validity for a closed period.
    pub valid: bool,
}

impl Member {
    /// One real-time sample (its value is its own minimum and maximum).
    pub fn sample(value: Option<f64>, zs: Option<f64>, flag: Flag, valid_flags: FlagSet) -> Member {
        Member {
            value,
            min: value,
            max: value,
            zs,
            zs_min: zs,
            zs_max: zs,
            cou: None,
            flag,
            valid: valid_flags.contains(flag),
        }
    }

    /// A closed period as a member of the period above it.
    pub fn period(stat: &Stat) -> Member {
        Member {
            value: stat.avg,
            min: stat.min,
            max: stat.max,
            zs: stat.zs_avg,
            zs_min: stat.zs_min,
            zs_max: stat.zs_max,
            cou: stat.cou,
            flag: stat.flag,
            valid: stat.valid,
        }
    }
}

/// Running aggregate of one period: constant memory, whatever the number of members.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Acc {
    n_total: u32,
    /// Members with a valid flag (with or without a value).
    n_ok: u32,
    n_valid: u32,
    /// Members that are not valid, by flag.
    flags: [u32; 8],
    /// The most severe flag of the valid members.
    worst_valid: Option<Flag>,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    zs_sum: f64,
    zs_n: u32,
    zs_min: Option<f64>,
    zs_max: Option<f64>,
    cou_sum: f64,
    cou_n: u32,
}

/// A closed period.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub n_total: u32,
    pub n_valid: u32,
    pub min: Option<f64>,
    pub avg: Option<f64>,
    pub max: Option<f64>,
    pub zs_min: Option<f64>,
    pub zs_avg: Option<f64>,
    pub zs_max: Option<f64>,
    /// Sum of the members' totals (over valid members).
    pub cou: Option<f64>,
    pub flag: Flag,
    /// Whether the period is valid (its flag is then one of the valid flags).
    pub valid: bool,
}

impl Stat {
    /// A period without members: not valid, `B`.
    pub fn empty() -> Stat {
        Acc::default().finish(1, 1.0)
    }
}

fn lower(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn higher(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Acc {
    pub fn push(&mut self, m: Member) {
        // Saturating: no count of members can overflow a period, whatever is pushed.
        self.n_total = self.n_total.saturating_add(1);
        let value = m.value.filter(|v| v.is_finite());
        if !m.valid {
            if let Some(n) = self.flags.get_mut(usize::from(m.flag.code())) {
                *n = n.saturating_add(1);
            }
            return;
        }
        self.n_ok = self.n_ok.saturating_add(1);
        let Some(v) = value else { return };
        self.n_valid = self.n_valid.saturating_add(1);
        self.worst_valid =
            Some(self.worst_valid.map_or(m.flag, |w| crate::acquire::flags::worst([w, m.flag])));
        self.sum += v;
        let finite = |x: Option<f64>| x.filter(|x| x.is_finite());
        self.min = lower(self.min, finite(m.min).or(Some(v)));
        self.max = higher(self.max, finite(m.max).or(Some(v)));
        if let Some(z) = finite(m.zs) {
            self.zs_sum += z;
            self.zs_n = self.zs_n.saturating_add(1);
            self.zs_min = lower(self.zs_min, finite(m.zs_min).or(Some(z)));
            self.zs_max = higher(self.zs_max, finite(m.zs_max).or(Some(z)));
        }
        if let Some(c) = finite(m.cou) {
            self.cou_sum += c;
            self.cou_n = self.cou_n.saturating_add(1);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.n_total == 0
    }

    /// Closes the period with `min_valid` valid members required.
    pub fn finish(&self, min_valid: u32, normal_share: f64) -> Stat {
        let share_ok = self.n_total > 0 && f64::from(self.n_ok) >= normal_share * f64::from(self.n_total);
        let valid = share_ok && self.n_valid >= min_valid.max(1);
        let flag = if valid {
            self.worst_valid.unwrap_or(Flag::N)
        } else {
            Flag::ALL
                .iter()
                .map(|f| (self.flags.get(usize::from(f.code())).copied().unwrap_or(0), f.severity(), *f))
                .filter(|(n, _, _)| *n > 0)
                .max()
                .map_or(Flag::B, |(_, _, f)| f)
        };
        // A sum of huge finite values can overflow: nothing non-finite leaves a period.
        let mean = |sum: f64, n: u32| (n > 0).then(|| sum / f64::from(n)).filter(|v| v.is_finite());
        Stat {
            n_total: self.n_total,
            n_valid: self.n_valid,
            min: self.min,
            avg: mean(self.sum, self.n_valid),
            max: self.max,
            zs_min: self.zs_min,
            zs_avg: mean(self.zs_sum, self.zs_n),
            zs_max: self.zs_max,
            cou: (self.cou_n > 0).then_some(self.cou_sum).filter(|v| v.is_finite()),
            flag,
            valid,
        }
    }
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

/// Aggregates a slice at once (tests, small periods).
pub fn aggregate(members: &[Member], min_valid: u32, normal_share: f64) -> Stat {
    let mut acc = Acc::default();
    members.iter().for_each(|m| acc.push(*m));
    acc.finish(min_valid, normal_share)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NT: FlagSet = FlagSet::NORMAL_AND_OVER_RANGE;

    fn m(value: f64, flag: Flag) -> Member {
        Member::sample(Some(value), None, flag, NT)
    }

    fn n(k: usize, value: f64) -> Vec<Member> {
        vec![m(value, Flag::N); k]
    }

    #[test]
    fn minute_needs_12_valid_samples() {
        let t = Thresholds::HJ75;
        assert_eq!(aggregate(&n(11, 5.0), t.samples_per_minute, 0.75).flag, Flag::B, "11 samples: too few");
        let s = aggregate(&n(12, 5.0), t.samples_per_minute, 0.75);
        assert_eq!((s.flag, s.n_valid, s.avg, s.valid), (Flag::N, 12, Some(5.0), true));
    }

    #[test]
    fn hour_needs_45_valid_minutes_and_day_20_hours() {
        let t = Thresholds::HJ75;
        assert!(!aggregate(&n(44, 1.0), t.minutes_per_hour, 0.75).valid);
        assert!(aggregate(&n(45, 1.0), t.minutes_per_hour, 0.75).valid);
        assert!(!aggregate(&n(19, 1.0), t.hours_per_day, 0.75).valid);
        assert!(aggregate(&n(20, 1.0), t.hours_per_day, 0.75).valid);
    }

    #[test]
    fn seventy_five_percent_rule_and_dominant_flag() {
        // 45 N + 15 C = 75 % N exactly → N; avg over the N members only.
        let mut v = n(45, 10.0);
        v.extend(vec![m(80.0, Flag::C); 15]);
        let s = aggregate(&v, 45, 0.75);
        assert_eq!((s.flag, s.avg, s.n_total), (Flag::N, Some(10.0), 60));
        // 44 N + 16 C → 73 % → the dominant abnormal flag, C.
        let mut v = n(44, 10.0);
        v.extend(vec![m(80.0, Flag::C); 16]);
        assert_eq!(aggregate(&v, 12, 0.75).flag, Flag::C);
        // Equal shares of M and D: the more severe, D.
        let mut v = n(2, 1.0);
        v.extend(vec![m(1.0, Flag::M); 3]);
        v.extend(vec![m(1.0, Flag::D); 3]);
        assert_eq!(aggregate(&v, 1, 0.75).flag, Flag::D);
        // More M than D: M dominates.
        let mut v = vec![m(1.0, Flag::M); 4];
        v.extend(vec![m(1.0, Flag::D); 3]);
        assert_eq!(aggregate(&v, 1, 0.75).flag, Flag::M);
    }

    #[test]
    fn over_range_samples_stay_in_the_average_and_mark_the_period() {
        // 10 N at 20 and 2 T at 200 (the analyzer's range end): valid, Avg (10 × 20 + 2 × 200) / 12
        // = 600 / 12 = 50, a lower bound of the true mean; flagged T.
        let mut v = n(10, 20.0);
        v.extend(vec![m(200.0, Flag::T); 2]);
        let s = aggregate(&v, 12, 0.75);
        assert_eq!((s.valid, s.flag, s.avg, s.max, s.n_valid), (true, Flag::T, Some(50.0), Some(200.0), 12));
        // With N alone valid, the two T samples leave: 10 valid samples are too few for a minute,
        // and the period takes the flag of the members that are not valid.
        let only_n = FlagSet::of(&[Flag::N]);
        let mut v: Vec<Member> = vec![Member::sample(Some(20.0), None, Flag::N, only_n); 10];
        v.extend(vec![Member::sample(Some(200.0), None, Flag::T, only_n); 2]);
        let s = aggregate(&v, 12, 0.75);
        assert_eq!((s.valid, s.flag, s.avg, s.n_valid), (false, Flag::T, Some(20.0), 10));
    }

    #[test]
    fn min_avg_max_zs_and_cou_over_valid_members() {
        let member = |value: f64, zs: f64, cou: f64, flag: Flag| Member {
            cou: Some(cou),
            ..Member::sample(Some(value), Some(zs), flag, NT)
        };
        let v = [
            member(2.0, 3.0, 0.5, Flag::N),
            member(4.0, 5.0, 1.5, Flag::N),
            member(100.0, 200.0, 9.0, Flag::C),
            Member::sample(None, None, Flag::B, NT),
        ];
        let s = aggregate(&v, 1, 0.5);
        assert_eq!((s.min, s.avg, s.max), (Some(2.0), Some(3.0), Some(4.0)));
        assert_eq!((s.zs_min, s.zs_avg, s.zs_max), (Some(3.0), Some(4.0), Some(5.0)));
        assert_eq!((s.cou, s.n_valid, s.n_total), (Some(2.0), 2, 4));
        assert_eq!(s.flag, Flag::N, "2 of 4 N meets a 50 % share");
    }

    #[test]
    fn min_and_max_of_a_period_are_those_of_its_samples() {
        // Two minutes: samples 1..=12 (mean 6.5) and 13..=24 (mean 18.5). The hour's Min and Max
        // are the lowest and highest samples, 1 and 24, not the minute means 6.5 and 18.5.
        let minute = |from: u32| {
            let v: Vec<Member> = (from..from + 12).map(|x| m(f64::from(x), Flag::N)).collect();
            aggregate(&v, 12, 0.75)
        };
        let (a, b) = (minute(1), minute(13));
        assert_eq!((a.avg, b.avg), (Some(6.5), Some(18.5)));
        let hour = aggregate(&[Member::period(&a), Member::period(&b)], 2, 0.75);
        assert_eq!((hour.min, hour.avg, hour.max), (Some(1.0), Some(12.5), Some(24.0)));
    }

    #[test]
    fn constant_normal_input_aggregates_to_itself() {
        for value in [0.0, 0.001, 7.5, 35.0, 1234.5678] {
            for k in [12, 45, 60, 720] {
                let s = aggregate(&n(k, value), 12, 0.75);
                assert_eq!((s.min, s.max, s.flag), (Some(value), Some(value), Flag::N));
                assert!((s.avg.unwrap() - value).abs() <= 1e-12 * value.max(1.0));
            }
        }
    }

    #[test]
    fn nothing_non_finite_comes_out() {
        let v = [m(f64::NAN, Flag::N), m(f64::INFINITY, Flag::N), m(1.0, Flag::N)];
        let s = aggregate(&v, 1, 0.0);
        assert_eq!((s.avg, s.n_valid, s.min, s.max), (Some(1.0), 1, Some(1.0), Some(1.0)));
        let huge = aggregate(&[m(f64::MAX, Flag::N), m(f64::MAX, Flag::N)], 1, 0.75);
        assert_eq!(huge.avg, None, "an overflowing sum gives no average, not infinity");
        let empty = aggregate(&[], 1, 0.75);
        assert_eq!((empty.avg, empty.flag, empty.valid), (None, Flag::B, false));
        assert_eq!(Stat::empty(), empty);
    }
}
