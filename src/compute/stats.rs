//! Validated period statistics (HJ 212-2017 Annex D (23)–(25), notes to C.16–C.18).
//!
//! A period (minute, hour, day, month) aggregates its members (real-time samples, or the
//! records of the level below). A member counts as valid only when its flag is `N`.
//!
//! The period's flag:
//! - `N` when at least `normal_share` (75 %) of its members are `N` **and** it has at least the
//!   level's minimum of valid members (12 samples, 45 minutes, 20 hours, 25 days / 23 in
//!   February);
//! - otherwise the dominant abnormal flag: the most frequent non-`N` flag among the members;
//!   a tie goes to the more severe flag (`B` > `F` > `D` > `C` > `M` > `S` > `T`, see
//!   [`Flag::severity`]), so that a period is never reported as better than its worst equal
//!   share;
//! - `B` (data missing) when every member is `N` but there are too few of them.
//!
//! A period is valid exactly when its flag is `N`. Min, Avg and Max are over valid members
//! only (present, but not valid, for an invalid period that has some).

use crate::model::Flag;

/// Validity thresholds; the defaults are HJ 75 / HJ 212 Annex D's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub samples_per_minute: u32,
    pub minutes_per_hour: u32,
    pub hours_per_day: u32,
    pub days_per_month: u32,
    pub days_per_february: u32,
    /// Share of `N` members needed for an `N` period.
    pub normal_share: f64,
}

impl Thresholds {
    pub const HJ75: Thresholds = Thresholds {
        samples_per_minute: 12,
        minutes_per_hour: 45,
        hours_per_day: 20,
        days_per_month: 25,
        days_per_february: 23,
        normal_share: 0.75,
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

/// One member of a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    pub value: Option<f64>,
    /// Reference-oxygen converted value (ZsRtd / ZsAvg), where the factor has one.
    pub zs: Option<f64>,
    /// The member's own total (kg, or m³ for flow), where it has one.
    pub cou: Option<f64>,
    pub flag: Flag,
}

/// Running aggregate of one period: constant memory, whatever the number of members.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Acc {
    n_total: u32,
    n_valid: u32,
    flags: [u32; 8],
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    zs_sum: f64,
    zs_n: u32,
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
    pub zs_avg: Option<f64>,
    /// Sum of the members' totals (over valid members).
    pub cou: Option<f64>,
    pub flag: Flag,
}

impl Stat {
    pub fn valid(&self) -> bool {
        self.flag == Flag::N
    }
}

impl Acc {
    pub fn push(&mut self, m: Member) {
        // Saturating: no count of members can overflow a period, whatever is pushed.
        self.n_total = self.n_total.saturating_add(1);
        if let Some(n) = self.flags.get_mut(usize::from(m.flag.code())) {
            *n = n.saturating_add(1);
        }
        let Some(v) = m.value.filter(|v| v.is_finite()) else {
            return;
        };
        if m.flag != Flag::N {
            return;
        }
        self.n_valid = self.n_valid.saturating_add(1);
        self.sum += v;
        self.min = Some(self.min.map_or(v, |x| x.min(v)));
        self.max = Some(self.max.map_or(v, |x| x.max(v)));
        if let Some(z) = m.zs.filter(|z| z.is_finite()) {
            self.zs_sum += z;
            self.zs_n = self.zs_n.saturating_add(1);
        }
        if let Some(c) = m.cou.filter(|c| c.is_finite()) {
            self.cou_sum += c;
            self.cou_n = self.cou_n.saturating_add(1);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.n_total == 0
    }

    /// Closes the period with `min_valid` valid members required.
    pub fn finish(&self, min_valid: u32, normal_share: f64) -> Stat {
        let n_normal = self.flags.get(usize::from(Flag::N.code())).copied().unwrap_or(0);
        let share_ok = self.n_total > 0 && f64::from(n_normal) >= normal_share * f64::from(self.n_total);
        let flag = if share_ok && self.n_valid >= min_valid.max(1) {
            Flag::N
        } else {
            Flag::ALL
                .iter()
                .filter(|f| **f != Flag::N)
                .map(|f| (self.flags.get(usize::from(f.code())).copied().unwrap_or(0), f.severity(), *f))
                .filter(|(n, _, _)| *n > 0)
                .max()
                .map_or(Flag::B, |(_, _, f)| f)
        };
        // A sum of huge finite values can overflow: nothing non-finite leaves a period.
        let avg = (self.n_valid > 0).then(|| self.sum / f64::from(self.n_valid)).filter(|v| v.is_finite());
        Stat {
            n_total: self.n_total,
            n_valid: self.n_valid,
            min: self.min,
            avg,
            max: self.max,
            zs_avg: (self.zs_n > 0).then(|| self.zs_sum / f64::from(self.zs_n)).filter(|v| v.is_finite()),
            cou: (self.cou_n > 0).then_some(self.cou_sum).filter(|v| v.is_finite()),
            flag,
        }
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

    fn m(value: f64, flag: Flag) -> Member {
        Member { value: Some(value), zs: None, cou: None, flag }
    }

    fn n(k: usize, value: f64) -> Vec<Member> {
        vec![m(value, Flag::N); k]
    }

    #[test]
    fn minute_needs_12_valid_samples() {
        let t = Thresholds::HJ75;
        assert_eq!(aggregate(&n(11, 5.0), t.samples_per_minute, 0.75).flag, Flag::B, "11 samples: too few");
        let s = aggregate(&n(12, 5.0), t.samples_per_minute, 0.75);
        assert_eq!((s.flag, s.n_valid, s.avg), (Flag::N, 12, Some(5.0)));
    }

    #[test]
    fn hour_needs_45_valid_minutes_and_day_20_hours() {
        let t = Thresholds::HJ75;
        assert!(!aggregate(&n(44, 1.0), t.minutes_per_hour, 0.75).valid());
        assert!(aggregate(&n(45, 1.0), t.minutes_per_hour, 0.75).valid());
        assert!(!aggregate(&n(19, 1.0), t.hours_per_day, 0.75).valid());
        assert!(aggregate(&n(20, 1.0), t.hours_per_day, 0.75).valid());
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
    fn min_avg_max_zs_and_cou_over_valid_members() {
        let v = [
            Member { value: Some(2.0), zs: Some(3.0), cou: Some(0.5), flag: Flag::N },
            Member { value: Some(4.0), zs: Some(5.0), cou: Some(1.5), flag: Flag::N },
            Member { value: Some(100.0), zs: Some(200.0), cou: Some(9.0), flag: Flag::C },
            Member { value: None, zs: None, cou: None, flag: Flag::B },
        ];
        let s = aggregate(&v, 1, 0.5);
        assert_eq!((s.min, s.avg, s.max), (Some(2.0), Some(3.0), Some(4.0)));
        assert_eq!((s.zs_avg, s.cou, s.n_valid, s.n_total), (Some(4.0), Some(2.0), 2, 4));
        assert_eq!(s.flag, Flag::N, "2 of 4 N meets a 50 % share");
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
        assert_eq!((s.avg, s.n_valid), (Some(1.0), 1));
        let huge = aggregate(&[m(f64::MAX, Flag::N), m(f64::MAX, Flag::N)], 1, 0.75);
        assert_eq!(huge.avg, None, "an overflowing sum gives no average, not infinity");
        let empty = aggregate(&[], 1, 0.75);
        assert_eq!((empty.avg, empty.flag), (None, Flag::B));
    }
}
