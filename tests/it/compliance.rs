//! Emission figures end to end: hand-computed golden cases (the arithmetic is in the comments),
//! every validity threshold at its edge, a month with a calibration day, a kiln stop and an
//! exceedance, the CSV command-line contract, and property tests.

use std::collections::BTreeMap;

use cems_gateway::compute::evaluate::{Basis, Input, OutletSpec};
use cems_gateway::compute::limits::{OutletLimits, profile};
use cems_gateway::compute::{Evaluator, Level, Outcome, Record};
use cems_gateway::model::Flag;
use cems_gateway::report::{format_local, parse_local};
use proptest::prelude::*;

fn cement() -> OutletSpec {
    OutletSpec::new(OutletLimits::resolve(profile("cement-kiln"), None, &BTreeMap::new()))
}

fn t(s: &str) -> i64 {
    parse_local(s).unwrap()
}

/// Pushes `per_minute` samples in each minute of `[from, from + minutes)` for each `(factor, value, flag)`.
fn fill(ev: &mut Evaluator, from: i64, minutes: i64, per_minute: i64, points: &[(&str, Option<f64>, Flag)]) {
    for m in 0..minutes {
        for k in 0..per_minute {
            let at = from + m * 60 + k * (60 / per_minute);
            for (factor, value, flag) in points {
                ev.push(Input { t: at, factor: (*factor).into(), value: *value, flag: *flag });
            }
        }
    }
}

fn hour<'a>(out: &'a Outcome, start: &str, factor: &str) -> &'a Record {
    out.hours
        .iter()
        .find(|h| h.start == t(start) && h.factor == factor)
        .unwrap_or_else(|| panic!("no {factor} hour at {start}"))
}

#[test]
fn golden_hour_reference_oxygen_and_limit() {
    let mut ev = Evaluator::new(cement());
    // One hour at 12 samples a minute: SO2 20, NOx 40, PM 6 mg/m³ at 13 % O2.
    fill(
        &mut ev,
        t("2026-03-01 08:00:00"),
        60,
        12,
        &[
            ("a21026", Some(20.0), Flag::N),
            ("a21002", Some(40.0), Flag::N),
            ("a34013", Some(6.0), Flag::N),
            ("a19001", Some(13.0), Flag::N),
        ],
    );
    let out = ev.finish();
    // (28) to 10 % O2: × (21 − 10)/(21 − 13) = × 11/8 = × 1.375.
    let so2 = hour(&out, "2026-03-01 08:00:00", "a21026");
    assert_eq!((so2.stat.avg, so2.stat.zs_avg, so2.stat.n_valid), (Some(20.0), Some(27.5), 60));
    assert!(so2.stat.valid && !so2.exceeded, "27.5 ≤ 35");
    let nox = hour(&out, "2026-03-01 08:00:00", "a21002");
    assert_eq!(nox.stat.zs_avg, Some(55.0), "40 × 1.375");
    assert!(nox.exceeded, "55 > 50");
    let pm = hour(&out, "2026-03-01 08:00:00", "a34013");
    assert_eq!(pm.stat.zs_avg, Some(8.25), "6 × 1.375 ≤ 10");
    assert!(!pm.exceeded);
    assert_eq!(out.events.len(), 1);
    assert_eq!(
        (out.events[0].factor.as_str(), out.events[0].peak, out.events[0].start, out.events[0].end),
        ("a21002", 55.0, t("2026-03-01 08:00:00"), t("2026-03-01 09:00:00"))
    );
    // Jointly: one valid hour, not compliant (NOx exceeded).
    assert_eq!((out.joint.valid_hours, out.joint.compliant_hours()), (1, 0));
}

#[test]
fn reference_oxygen_is_applied_per_sample_then_averaged() {
    let mut ev = Evaluator::new(cement());
    let start = t("2026-03-01 00:00:00");
    // Half the samples at 13 % O2, half at 17 %: ZsRtd 20 × 11/8 = 27.5 and 20 × 11/4 = 55,
    // so ZsAvg = 41.25; converting the average O2 (15 %) instead would give 20 × 11/6 = 36.67.
    for m in 0..60 {
        for k in 0..12 {
            let at = start + m * 60 + k * 5;
            let o2 = if k % 2 == 0 { 13.0 } else { 17.0 };
            ev.push(Input { t: at, factor: "a19001".into(), value: Some(o2), flag: Flag::N });
            ev.push(Input { t: at, factor: "a21026".into(), value: Some(20.0), flag: Flag::N });
        }
    }
    let out = ev.finish();
    assert_eq!(hour(&out, "2026-03-01 00:00:00", "a21026").stat.zs_avg, Some(41.25));
}

#[test]
fn thresholds_at_their_edges() {
    // 11 samples in a minute: invalid; 12: valid.
    for (per_minute, valid) in [(11, false), (12, true)] {
        let mut ev = Evaluator::new(cement()).on_minute(move |r| {
            if r.factor == "a21026" {
                assert_eq!(r.stat.valid, valid, "{per_minute} samples");
            }
        });
        let start = t("2026-03-01 00:00:00");
        for k in 0..per_minute {
            ev.push(Input { t: start + k * 5, factor: "a21026".into(), value: Some(1.0), flag: Flag::N });
            ev.push(Input { t: start + k * 5, factor: "a19001".into(), value: Some(10.0), flag: Flag::N });
        }
        ev.finish();
    }
    // 44 valid minutes in an hour: invalid (B, too few); 45: valid.
    for (minutes, valid) in [(44, false), (45, true)] {
        let mut ev = Evaluator::new(cement());
        fill(
            &mut ev,
            t("2026-03-01 00:00:00"),
            minutes,
            12,
            &[("a21026", Some(1.0), Flag::N), ("a19001", Some(10.0), Flag::N)],
        );
        let out = ev.finish();
        let h = hour(&out, "2026-03-01 00:00:00", "a21026");
        assert_eq!((h.stat.valid, h.stat.n_valid), (valid, minutes as u32));
        if !valid {
            assert_eq!(h.stat.flag, Flag::B);
        }
    }
    // 19 valid hours in a day: invalid; 20: valid. One sample a minute with a threshold of 1.
    for (hours, valid) in [(19, false), (20, true)] {
        let mut spec = cement();
        spec.thresholds.samples_per_minute = 1;
        let mut ev = Evaluator::new(spec);
        fill(
            &mut ev,
            t("2026-03-02 00:00:00"),
            hours * 60,
            1,
            &[("a21026", Some(1.0), Flag::N), ("a19001", Some(10.0), Flag::N)],
        );
        let out = ev.finish();
        let day = out.days.iter().find(|d| d.factor == "a21026").unwrap();
        assert_eq!((day.stat.valid, day.stat.n_valid), (valid, hours as u32));
    }
}

#[test]
fn nox_from_no_and_no2_ppm_and_flow() {
    let mut spec = cement();
    spec.ppm.insert("a21026".into());
    spec.flow.duct_area_m2 = Some(10.0);
    let mut ev = Evaluator::new(spec);
    // NO 20 and NO2 3 mg/m³ → NOx 20 × 46.01/30.01 + 3 = 33.66311...; SO2 10 ppm → 10 × 64.06/22.4 = 28.598...
    // Velocity 10 m/s, 10 m², 127 °C, static −0.325 kPa, ambient 101.325 kPa → 101,000 Pa, 10 % moisture:
    // Qsh = 3600 × 10 × 10 = 360,000 m³/h; Qsnh = 360000 × 273/400 × 101000/101325 × 0.9 = 220,420.7...
    fill(
        &mut ev,
        t("2026-03-01 00:00:00"),
        60,
        12,
        &[
            ("a21003", Some(20.0), Flag::N),
            ("a21004", Some(3.0), Flag::N),
            ("a21026", Some(10.0), Flag::N),
            ("a19001", Some(10.0), Flag::N),
            ("a01011", Some(10.0), Flag::N),
            ("a01012", Some(127.0), Flag::N),
            ("a01013", Some(-0.325), Flag::N),
            ("a01014", Some(10.0), Flag::N),
        ],
    );
    let out = ev.finish();
    let nox = hour(&out, "2026-03-01 00:00:00", "a21002");
    assert!((nox.stat.avg.unwrap() - (20.0 * 46.01 / 30.01 + 3.0)).abs() < 1e-9);
    let so2 = hour(&out, "2026-03-01 00:00:00", "a21026");
    assert!((so2.stat.avg.unwrap() - 10.0 * 64.06 / 22.4).abs() < 1e-9);
    // Table B.2 gives the flow in m³/s: 220,420.7 / 3600 = 61.2280 m³/s; an hour of it is
    // 220,420.7 m³.
    let q = 360_000.0 * 273.0 / 400.0 * 101_000.0 / 101_325.0 * 0.9;
    let flow = hour(&out, "2026-03-01 00:00:00", "a00000");
    assert!((flow.stat.avg.unwrap() - q / 3600.0).abs() < 1e-9, "{:?} vs {}", flow.stat.avg, q / 3600.0);
    assert!((flow.stat.cou.unwrap() - q).abs() < 1e-6, "one hour of flow, m³");
    // (33) on the measured, not converted, concentration: 28.598 mg/m³ × Qsnh × 1e-6 kg over one hour.
    let kg = 10.0 * 64.06 / 22.4 * q * 1e-6;
    assert!((so2.stat.cou.unwrap() - kg).abs() < 1e-9, "{:?} vs {kg}", so2.stat.cou);
}

#[test]
fn wet_and_actual_state_values_are_brought_to_dry_standard() {
    let mut spec = cement();
    spec.basis.insert("a21026".into(), Basis::parse("wet-actual").unwrap());
    spec.basis.insert("a19001".into(), Basis::parse("wet-standard").unwrap());
    let mut ev = Evaluator::new(spec);
    // SO2 50 mg/m³ wet at 120 °C; static −0.325 kPa on 101.325 kPa ambient → 101,000 Pa; 10 % moisture.
    // (19) 50 / 0.9 = 55.5556; (18) × 101325/101000 × 393/273 = 80.2332...
    // O2 9 % wet → 9 / 0.9 = 10 % dry, the reference O2: ZsAvg equals the dry standard value.
    fill(
        &mut ev,
        t("2026-03-01 00:00:00"),
        60,
        12,
        &[
            ("a01014", Some(10.0), Flag::N),
            ("a01012", Some(120.0), Flag::N),
            ("a01013", Some(-0.325), Flag::N),
            ("a19001", Some(9.0), Flag::N),
            ("a21026", Some(50.0), Flag::N),
        ],
    );
    // Without the humidity the wet values cannot be used: B, no value.
    fill(
        &mut ev,
        t("2026-03-01 02:00:00"),
        60,
        12,
        &[("a19001", Some(9.0), Flag::N), ("a21026", Some(50.0), Flag::N)],
    );
    let out = ev.finish();
    let want = 50.0 / 0.9 * 101_325.0 / 101_000.0 * 393.0 / 273.0;
    let so2 = hour(&out, "2026-03-01 00:00:00", "a21026");
    assert!((so2.stat.avg.unwrap() - want).abs() < 1e-9, "{:?} vs {want}", so2.stat.avg);
    assert!((so2.stat.zs_avg.unwrap() - want).abs() < 1e-9);
    assert!((hour(&out, "2026-03-01 00:00:00", "a19001").stat.avg.unwrap() - 10.0).abs() < 1e-12);
    let blind = hour(&out, "2026-03-01 02:00:00", "a21026");
    assert_eq!((blind.stat.flag, blind.stat.avg), (Flag::B, None));
}

#[test]
fn o2_near_air_is_guarded_and_missing_o2_invalidates() {
    let mut ev = Evaluator::new(cement());
    fill(
        &mut ev,
        t("2026-03-01 00:00:00"),
        60,
        12,
        &[("a21026", Some(5.0), Flag::N), ("a19001", Some(20.8), Flag::N)],
    );
    fill(&mut ev, t("2026-03-01 01:00:00"), 60, 12, &[("a21026", Some(5.0), Flag::N)]);
    let out = ev.finish();
    let guarded = hour(&out, "2026-03-01 00:00:00", "a21026");
    assert_eq!((guarded.stat.flag, guarded.stat.zs_avg), (Flag::D, None), "no division by 21 − 20.8");
    let no_o2 = hour(&out, "2026-03-01 01:00:00", "a21026");
    assert_eq!(no_o2.stat.flag, Flag::B);
    assert!(out.hours.iter().all(|h| h.stat.zs_avg.is_none_or(f64::is_finite)));
}

/// March: a kiln stop (day 10, 00:00–06:00), a calibration day (day 15), and SO2 above its
/// limit on day 20 from 08:00 to 11:00. One sample a minute, with the minute threshold set to 1.
#[test]
fn a_month_with_a_calibration_day_a_kiln_stop_and_an_exceedance() {
    let mut spec = cement();
    spec.thresholds.samples_per_minute = 1;
    let mut ev = Evaluator::new(spec);
    let start = t("2026-03-01 00:00:00");
    for m in 0..31 * 1440 {
        let at = start + m * 60;
        let (day, hour) = (m / 1440 + 1, m % 1440 / 60);
        let running = !(day == 10 && hour < 6);
        let flag = if day == 15 { Flag::C } else { Flag::N };
        let so2 = if day == 20 && (8..11).contains(&hour) { 40.0 } else { 20.0 };
        ev.push(Input {
            t: at,
            factor: "SB1-RS".into(),
            value: Some(f64::from(u8::from(running))),
            flag: Flag::N,
        });
        ev.push(Input { t: at, factor: "a19001".into(), value: Some(10.0), flag });
        ev.push(Input { t: at, factor: "a21026".into(), value: Some(so2), flag });
    }
    let out = ev.finish();
    let so2 = &out.factors["a21026"];
    // 744 hours: 6 stopped (F), 24 in calibration (C), 714 valid, of which 3 exceeded.
    assert_eq!(
        (so2.valid_hours, so2.stopped_hours, so2.invalid_hours.get(&'C').copied()),
        (714, 6, Some(24))
    );
    assert_eq!(so2.exceeded_hours, 3);
    // Cement counts production time: the stop leaves the denominator, the calibration day
    // counts against it. 711 compliant of 714 + 24 = 738 production hours = 0.963415 (the
    // 711 / 714 = 0.995798 of the valid hours would hide the calibration day).
    assert_eq!((so2.production_hours(), so2.rate_hours()), (738, 738));
    assert!((so2.rate().unwrap() - 711.0 / 738.0).abs() < 1e-12);
    assert!(so2.meets_95());
    // Capture: 714 valid of 738 production hours = 96.75 %.
    assert!((so2.capture_rate().unwrap() - 714.0 / 738.0).abs() < 1e-12);
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    assert_eq!(
        (format_local(e.start), format_local(e.end), e.peak, e.mean),
        ("2026-03-20 08:00".into(), "2026-03-20 11:00".into(), 40.0, 40.0)
    );
    // Days: the calibration day is C; day 10 has 18 valid hours (< 20): invalid, flagged F.
    let days: Vec<&Record> = out.days.iter().filter(|d| d.factor == "a21026").collect();
    assert_eq!(days.len(), 31);
    assert_eq!(days[14].stat.flag, Flag::C);
    assert_eq!((days[9].stat.flag, days[9].stat.n_valid), (Flag::F, 18));
    // Day 20: (21 × 20 + 3 × 40) / 24 = 22.5.
    assert_eq!(days[19].stat.avg, Some(22.5));
    // The month: 29 valid days ≥ 25.
    let month = out.months.iter().find(|m| m.factor == "a21026").unwrap();
    assert_eq!((month.level, month.stat.n_valid, month.stat.flag), (Level::Month, 29, Flag::N));
    assert_eq!(out.joint.valid_hours, 714);
}

/// An hour above the analyzer's range (HJ 212 table 8 `T`: 超测量上限, nothing makes it
/// invalid): its samples stay in the average, a lower bound of the true one; above the limit the
/// hour is an exceedance, counted among the valid hours and apart as over range. With only `N`
/// valid (`[statistics] valid_flags = ["N"]`) the worst half hour would leave and take the
/// exceedance with it.
#[test]
fn an_hour_above_the_instrument_range_is_valid_and_exceeded() {
    let run = |spec: OutletSpec| {
        let mut ev = Evaluator::new(spec);
        // 08:00–08:30 SO2 at the analyzer's range end, 200 mg/m³, flagged T; 08:30–09:00 at 30 N.
        // O2 at the reference 10 %: converted = measured. 09:00–10:00 at 20 N.
        let at = |m: i64| t("2026-03-01 08:00:00") + m * 60;
        fill(&mut ev, at(0), 30, 12, &[("a21026", Some(200.0), Flag::T), ("a19001", Some(10.0), Flag::N)]);
        fill(&mut ev, at(30), 30, 12, &[("a21026", Some(30.0), Flag::N), ("a19001", Some(10.0), Flag::N)]);
        fill(&mut ev, at(60), 60, 12, &[("a21026", Some(20.0), Flag::N), ("a19001", Some(10.0), Flag::N)]);
        ev.finish()
    };
    let out = run(cement());
    let h = hour(&out, "2026-03-01 08:00:00", "a21026");
    // (30 × 200 + 30 × 30) / 60 = 115 > 35: valid, flagged T, exceeded; Max the range end.
    assert_eq!(
        (h.stat.valid, h.stat.flag, h.stat.avg, h.stat.max),
        (true, Flag::T, Some(115.0), Some(200.0))
    );
    assert!(h.exceeded);
    let so2 = &out.factors["a21026"];
    assert_eq!((so2.valid_hours, so2.exceeded_hours, so2.over_range_hours), (2, 1, 1));
    assert_eq!(out.events.len(), 1);
    assert_eq!((out.events[0].peak, out.events[0].factor.as_str()), (115.0, "a21026"));
    // NOx and PM have no data in this CSV-like run: said, and left out of the joint figures.
    assert_eq!(out.unmeasured, ["a21002", "a34013"]);
    assert_eq!((out.joint.valid_hours, out.joint.over_range_hours, out.joint.exceeded_hours), (2, 1, 1));

    let mut only_n = cement();
    only_n.thresholds.valid_flags = cems_gateway::model::FlagSet::of(&[Flag::N]);
    let out = run(only_n);
    let h = hour(&out, "2026-03-01 08:00:00", "a21026");
    // 30 valid minutes < 45: not valid, flagged T (half the minutes), not exceeded.
    assert_eq!((h.stat.valid, h.stat.flag, h.stat.n_valid, h.exceeded), (false, Flag::T, 30, false));
    assert_eq!(out.factors["a21026"].exceeded_hours, 0);
}

/// Steel counts the hours that have a valid hourly mean; cement counts production time (see
/// the month above). Both leave the stopped hours out, and give the same capture rate.
#[test]
fn steel_counts_valid_hours_and_capture_is_valid_over_production_hours() {
    let mut spec =
        OutletSpec::new(OutletLimits::resolve(profile("steel-sinter-head"), None, &BTreeMap::new()));
    spec.thresholds.samples_per_minute = 1;
    let mut ev = Evaluator::new(spec);
    // A day: 2 hours stopped, 2 in calibration, 20 valid of which 1 above 35 (SO2 at 16 % O2,
    // the reference: converted = measured).
    for m in 0..24 * 60 {
        let hour = m / 60;
        let run = if hour < 2 { 0.0 } else { 1.0 };
        let flag = if (2..4).contains(&hour) { Flag::C } else { Flag::N };
        let so2 = if hour == 10 { 40.0 } else { 20.0 };
        let at = t("2026-03-01 00:00:00") + m * 60;
        ev.push(Input { t: at, factor: "SB1-RS".into(), value: Some(run), flag: Flag::N });
        ev.push(Input { t: at, factor: "a19001".into(), value: Some(16.0), flag });
        ev.push(Input { t: at, factor: "a21026".into(), value: Some(so2), flag });
    }
    let out = ev.finish();
    let so2 = &out.factors["a21026"];
    assert_eq!(
        (so2.valid_hours, so2.stopped_hours, so2.production_hours(), so2.exceeded_hours),
        (20, 2, 22, 1)
    );
    // 19 compliant of 20 valid hours = 95 %; capture 20 of 22 production hours = 90.9 %.
    assert_eq!(so2.rate(), Some(0.95));
    assert!(so2.meets_95());
    assert!((so2.capture_rate().unwrap() - 20.0 / 22.0).abs() < 1e-12);
}

#[test]
fn february_needs_23_valid_days() {
    for (days, valid) in [(22, false), (23, true)] {
        let mut spec = cement();
        spec.thresholds.samples_per_minute = 1;
        spec.thresholds.minutes_per_hour = 1;
        spec.thresholds.hours_per_day = 1;
        let mut ev = Evaluator::new(spec);
        for d in 0..days {
            let at = t("2026-02-01 00:00:00") + d * 86_400;
            ev.push(Input { t: at, factor: "a19001".into(), value: Some(10.0), flag: Flag::N });
        }
        let out = ev.finish();
        assert_eq!(out.months[0].stat.valid, valid, "{days} days in February");
    }
}

#[test]
fn silent_hours_are_reported_as_not_valid() {
    let mut ev = Evaluator::new(cement());
    let pts = [("a21026", Some(5.0), Flag::N), ("a19001", Some(10.0), Flag::N)];
    fill(&mut ev, t("2026-03-01 00:00:00"), 60, 12, &pts);
    fill(&mut ev, t("2026-03-01 03:00:00"), 60, 12, &pts);
    let out = ev.finish();
    let h1 = hour(&out, "2026-03-01 01:00:00", "a21026");
    assert_eq!((h1.stat.flag, h1.stat.n_total), (Flag::B, 0));
    assert_eq!(out.factors["a21026"].invalid_hours[&'B'], 2);
}

proptest! {
    /// For a constant N input, what the platform and the officer see live (ZsRtd, and the 2025
    /// profile's dry standard Rtd) is what the hour record says (ZsAvg, Avg): one conversion.
    #[test]
    fn the_live_value_is_the_record_value_for_constant_input(
        so2 in 0.0f64..2000.0,
        // Dry O2 stays below the 20.5 % guard even when wet: 17 / (1 − 0.15) = 20.
        o2 in 0.0f64..17.0,
        moisture in 0.0f64..15.0,
        temp in 20.0f64..250.0,
        velocity in 0.5f64..30.0,
        ppm in any::<bool>(),
        wet in any::<bool>(),
    ) {
        use cems_gateway::compute::realtime::{self, Profile};
        let mut spec = cement();
        spec.flow.duct_area_m2 = Some(7.5);
        if ppm {
            spec.ppm.insert("a21026".into());
        }
        if wet {
            spec.basis.insert("a21026".into(), Basis::WET_ACTUAL);
            spec.basis.insert("a19001".into(), Basis::parse("wet-standard").unwrap());
        }
        let poll: Vec<(&str, Option<f64>, Flag)> = vec![
            ("a21026", Some(so2), Flag::N),
            ("a19001", Some(o2), Flag::N),
            ("a01014", Some(moisture), Flag::N),
            ("a01012", Some(temp), Flag::N),
            ("a01013", Some(0.2), Flag::N),
            ("a01011", Some(velocity), Flag::N),
        ];
        let inputs: Vec<Input> =
            poll.iter().map(|(f, v, flag)| Input { t: 0, factor: (*f).into(), value: *v, flag: *flag }).collect();
        let live = realtime::values(&spec, &inputs, Profile::DryStandard);
        let mut ev = Evaluator::new(spec);
        fill(&mut ev, t("2026-03-01 00:00:00"), 60, 12, &poll);
        let out = ev.finish();
        let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
            (a, b) => a == b,
        };
        for factor in ["a21026", "a19001", "a00000"] {
            let v = live.iter().find(|v| v.factor == factor).unwrap();
            let h = hour(&out, "2026-03-01 00:00:00", factor);
            prop_assert!(h.stat.valid && v.flag == Flag::N, "{factor}: {v:?} {h:?}");
            prop_assert!(same(v.value, h.stat.avg), "{factor}: live {:?}, hour {:?}", v.value, h.stat.avg);
            prop_assert!(same(v.zs, h.stat.zs_avg), "{factor}: live {:?}, hour {:?}", v.zs, h.stat.zs_avg);
        }
    }

    #[test]
    fn constant_normal_input_gives_back_the_input(value in 0.0f64..5000.0, o2 in 0.0f64..20.0) {
        let mut ev = Evaluator::new(cement());
        fill(&mut ev, t("2026-03-01 00:00:00"), 60, 12, &[("a21026", Some(value), Flag::N), ("a19001", Some(o2), Flag::N)]);
        let out = ev.finish();
        let h = hour(&out, "2026-03-01 00:00:00", "a21026");
        prop_assert!(h.stat.valid);
        prop_assert!((h.stat.avg.unwrap() - value).abs() <= 1e-9 * value.max(1.0));
        // Min and max are over minute averages: equal to the input up to rounding.
        prop_assert!((h.stat.min.unwrap() - value).abs() <= 1e-9 * value.max(1.0));
        prop_assert!((h.stat.max.unwrap() - value).abs() <= 1e-9 * value.max(1.0));
        let zs = value * 11.0 / (21.0 - o2);
        prop_assert!((h.stat.zs_avg.unwrap() - zs).abs() <= 1e-9 * zs.max(1.0));
    }

    #[test]
    fn nothing_non_finite_ever_comes_out(
        samples in proptest::collection::vec((0i64..7200, 0usize..5, proptest::option::of(prop_oneof![
            any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(21.0), Just(0.0), -1e300f64..1e300
        ]), 0usize..8), 0..400)
    ) {
        let factors = ["a21026", "a19001", "a01011", "a01012", "a21003"];
        let mut samples = samples;
        samples.sort_by_key(|s| s.0);
        let mut spec = cement();
        spec.flow.duct_area_m2 = Some(3.0);
        let mut minute_ok = true;
        let mut ev = Evaluator::new(spec).on_minute(|r| {
            minute_ok &= [r.stat.min, r.stat.avg, r.stat.max, r.stat.zs_avg, r.stat.cou].iter().all(|v| v.is_none_or(f64::is_finite));
        });
        let base = t("2026-03-01 00:00:00");
        for (dt, f, v, flag) in samples {
            ev.push(Input { t: base + dt, factor: factors[f].into(), value: v, flag: Flag::ALL[flag] });
        }
        let out = ev.finish();
        for r in out.hours.iter().chain(&out.days).chain(&out.months) {
            for v in [r.stat.min, r.stat.avg, r.stat.max, r.stat.zs_avg, r.stat.cou] {
                prop_assert!(v.is_none_or(f64::is_finite), "{r:?}");
            }
        }
        for e in &out.events {
            prop_assert!(e.peak.is_finite() && e.mean.is_finite());
        }
        prop_assert!(minute_ok);
    }
}
