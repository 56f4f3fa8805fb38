//! Real-time values as a platform receives them in a 2011 upload, from one poll's current values
//! of an outlet. Pure: the same values and settings always give the same frame content.
//!
//! The run-status points (`SBx-RS`) are not pollutant or flue values: they go in their own 2021
//! upload and are left out here. The HJ 212-2017 profile sends what was measured; HJ 212-2025
//! (table 5) asks for flue-gas values dry at standard state, so points measured wet or at actual
//! state are converted with the flue parameters of the same poll (equations (18) and (19)).

use std::collections::BTreeMap;

use super::evaluate::{self as ev, Flue, OutletSpec};
use crate::model::Flag;

/// One current value: factor, value (none without a trustworthy reading), flag.
pub type Value = (String, Option<f64>, Flag);

/// Which rules the receiving platform's protocol sets for real-time values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// HJ 212-2017: the values as measured.
    Measured,
    /// HJ 212-2025 table 5: flue-gas values dry at standard state.
    DryStandard,
}

/// The values a 2011 frame carries for `current` (one poll's values of an outlet's points).
pub fn values(spec: &OutletSpec, current: &[Value], profile: Profile) -> Vec<Value> {
    let mut out: Vec<Value> =
        current.iter().filter(|(f, _, _)| !f.ends_with("-RS") && !spec.is_run_status(f)).cloned().collect();
    if profile == Profile::DryStandard && !spec.basis.is_empty() {
        to_dry_standard(spec, &mut out);
    }
    out
}

/// Converts the points measured wet or at actual state, with the flue parameters of `values`.
fn to_dry_standard(spec: &OutletSpec, values: &mut [Value]) {
    let now: BTreeMap<&str, (Option<f64>, Flag)> =
        values.iter().map(|(f, v, fl)| (f.as_str(), (*v, *fl))).collect();
    let ambient =
        now.get(ev::AMBIENT_PRESSURE).and_then(|c| c.0).map_or(spec.flow.ambient_pa, |k| k * 1000.0);
    let (static_pa, static_flag) =
        now.get(ev::STATIC_PRESSURE).map_or((0.0, Flag::N), |(v, f)| (v.unwrap_or(0.0) * 1000.0, *f));
    let flue = Flue {
        humidity: now.get(ev::HUMIDITY).copied(),
        temperature: now.get(ev::TEMPERATURE).copied(),
        abs_pressure: (ambient + static_pa, static_flag),
    };
    for (factor, value, flag) in values.iter_mut() {
        if let Some(basis) = spec.basis.get(factor.as_str()) {
            (*value, *flag) = ev::dry_standard(*value, *flag, *basis, factor == ev::O2, &flue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::convert;
    use crate::compute::evaluate::Basis;
    use crate::compute::limits::OutletLimits;

    fn v(f: &str, value: f64) -> Value {
        (f.to_string(), Some(value), Flag::N)
    }

    fn spec() -> OutletSpec {
        let mut spec = OutletSpec::new(OutletLimits::resolve(None, None, &Default::default()));
        spec.basis.insert("a21026".into(), Basis::parse("wet-actual").unwrap());
        spec
    }

    #[test]
    fn the_2017_profile_sends_what_was_measured_without_run_status() {
        let current = [v("a21026", 100.0), v("SB1-RS", 1.0), v("a01014", 10.0)];
        let out = values(&spec(), &current, Profile::Measured);
        assert_eq!(out, vec![v("a21026", 100.0), v("a01014", 10.0)]);
    }

    #[test]
    fn the_2025_profile_converts_wet_actual_points_to_dry_standard() {
        let current = [v("a21026", 100.0), v("a01014", 10.0), v("a01012", 150.0), v("a01013", 0.5)];
        let out = values(&spec(), &current, Profile::DryStandard);
        let dry = convert::wet_to_dry(100.0, 10.0).unwrap();
        let expected = convert::to_standard_state(dry, 150.0, 101_325.0 + 500.0).unwrap();
        let (_, sent, flag) = &out[0];
        assert!((sent.unwrap() - expected).abs() < 1e-9, "{sent:?} vs {expected}");
        assert_eq!(*flag, Flag::N);
        assert_eq!(out[1], v("a01014", 10.0), "points measured dry standard are left alone");
    }

    #[test]
    fn without_the_humidity_a_wet_value_is_dropped_and_flagged() {
        let current = [v("a21026", 100.0), v("a01012", 150.0)];
        let out = values(&spec(), &current, Profile::DryStandard);
        assert_eq!(out[0], ("a21026".to_string(), None, Flag::B));
    }
}
