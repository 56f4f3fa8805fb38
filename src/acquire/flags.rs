//! Data flags from what was read, without I/O (HJ 212 table 8).
//!
//! Precedence: a communication fault (`B`) hides everything; then the analyzer's own state
//! from its status registers (the most severe of `F`, `D`, `C`, `M`); then a value above the
//! instrument's range (`T`); otherwise `N`.

use crate::config::StatusRule;
use crate::model::Flag;

/// The flag one status register reports.
pub fn status_flag(rule: &StatusRule, raw: i64) -> Flag {
    match rule {
        StatusRule::Value(map) => map.get(&raw).copied().unwrap_or(Flag::N),
        StatusRule::Bits(map) => map
            .iter()
            // Checked: a bit number past 63 (not from a validated file) is simply not set.
            .filter(|(bit, _)| raw.checked_shr(u32::from(**bit)).is_some_and(|v| v & 1 == 1))
            .map(|(_, f)| *f)
            .max_by_key(|f| f.severity())
            .unwrap_or(Flag::N),
    }
}

/// The most severe of several flags (`N` for none).
pub fn worst(flags: impl IntoIterator<Item = Flag>) -> Flag {
    flags.into_iter().max_by_key(|f| f.severity()).unwrap_or(Flag::N)
}

/// Flag and stored value of one point.
///
/// `device` is the analyzer's state from its status registers. A non-finite number from the
/// analyzer is a fault (`D`) and is not stored; a value above `range_max` keeps its value and
/// gets `T` when the analyzer reports no other state.
pub fn point_flag(device: Flag, value: f64, range_max: Option<f64>) -> (Option<f64>, Flag) {
    if !value.is_finite() {
        return (None, worst([device, Flag::D]));
    }
    let over = range_max.is_some_and(|m| value > m);
    let flag = if device == Flag::N && over { Flag::T } else { device };
    (Some(value), flag)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn value_rule_maps_listed_values_and_defaults_to_normal() {
        let rule = StatusRule::Value(BTreeMap::from([(1, Flag::M), (2, Flag::D), (3, Flag::C)]));
        assert_eq!(status_flag(&rule, 0), Flag::N);
        assert_eq!(status_flag(&rule, 1), Flag::M);
        assert_eq!(status_flag(&rule, 3), Flag::C);
        assert_eq!(status_flag(&rule, 42), Flag::N);
    }

    #[test]
    fn bit_rule_takes_the_most_severe_set_bit() {
        let rule = StatusRule::Bits(BTreeMap::from([(0, Flag::M), (1, Flag::C), (4, Flag::D)]));
        assert_eq!(status_flag(&rule, 0), Flag::N);
        assert_eq!(status_flag(&rule, 0b1), Flag::M);
        assert_eq!(status_flag(&rule, 0b11), Flag::C);
        assert_eq!(status_flag(&rule, 0b10011), Flag::D);
    }

    #[test]
    fn range_gives_t_only_when_the_analyzer_is_normal() {
        assert_eq!(point_flag(Flag::N, 10.0, Some(100.0)), (Some(10.0), Flag::N));
        assert_eq!(point_flag(Flag::N, 100.0, Some(100.0)), (Some(100.0), Flag::N));
        assert_eq!(point_flag(Flag::N, 100.5, Some(100.0)), (Some(100.5), Flag::T));
        assert_eq!(point_flag(Flag::C, 500.0, Some(100.0)), (Some(500.0), Flag::C));
        assert_eq!(point_flag(Flag::N, 1e9, None), (Some(1e9), Flag::N));
    }

    #[test]
    fn non_finite_values_are_faults_without_a_value() {
        assert_eq!(point_flag(Flag::N, f64::NAN, None), (None, Flag::D));
        assert_eq!(point_flag(Flag::F, f64::INFINITY, None), (None, Flag::F));
    }

    #[test]
    fn worst_orders_by_severity() {
        assert_eq!(worst([]), Flag::N);
        assert_eq!(worst([Flag::M, Flag::C, Flag::N]), Flag::C);
        assert_eq!(worst([Flag::D, Flag::F]), Flag::F);
    }
}
