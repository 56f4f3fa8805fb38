//! The one conversion, case by case, with the arithmetic in the comments.

use std::collections::BTreeMap;

use super::*;
use crate::compute::limits::{OutletLimits, profile};
use crate::hj212::message::realtime_cp;

fn cement() -> OutletSpec {
    OutletSpec::new(OutletLimits::resolve(profile("cement-kiln"), None, &BTreeMap::new()))
}

fn input(t: i64, factor: &str, value: f64) -> Input {
    Input { t, factor: factor.into(), value: Some(value), flag: Flag::N }
}

fn get<'a, 'b>(out: &'a [Converted<'b>], factor: &str) -> &'a Converted<'b> {
    out.iter().find(|c| c.factor == factor).unwrap_or_else(|| panic!("no {factor} in {out:?}"))
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
}

/// A wet in-situ analyzer giving SO2 in ppm and O2 wet, with the flue parameters of the same
/// poll: 100 ppm SO2, 11.7 % O2 wet, 10 % moisture, 150 °C, +0.5 kPa static on 101.325 kPa.
fn wet_ppm_poll() -> (OutletSpec, Vec<Input>) {
    let mut spec = cement();
    spec.ppm.insert("a21026".into());
    spec.basis.insert("a21026".into(), Basis::WET_ACTUAL);
    spec.basis.insert("a19001".into(), Basis::parse("wet-standard").unwrap());
    let poll = vec![
        input(100, "a21026", 100.0),
        input(100, "a19001", 11.7),
        input(100, "a01014", 10.0),
        input(100, "a01012", 150.0),
        input(100, "a01013", 0.5),
    ];
    (spec, poll)
}

#[test]
fn a_wet_ppm_analyzer_in_both_profiles() {
    let (spec, poll) = wet_ppm_poll();
    let out = current(&spec, &poll);
    let so2 = get(&out, "a21026");
    // (20) 100 ppm × 64.06 / 22.4 = 285.982142857… mg/m³ as measured (wet, actual state).
    let measured = 100.0 * 64.06 / 22.4;
    assert!(close(so2.measured, measured), "{so2:?}");
    // (19) / (1 − 0.10) = 317.757937; (18) × 101325 / 101825 × 423 / 273 = 489.93258 mg/m³.
    let dry = measured / 0.9 * 101_325.0 / 101_825.0 * 423.0 / 273.0;
    assert!(close(so2.value, dry), "{so2:?} vs {dry}");
    // O2 11.7 % wet / 0.9 = 13 % dry; (28) to 10 %: × (21 − 10) / (21 − 13) = × 1.375.
    assert!(close(get(&out, "a19001").value, 13.0));
    let zs = dry * 11.0 / 8.0;
    assert!(close(so2.zs, zs), "{so2:?} vs {zs}");
    assert_eq!(so2.flag, Flag::N);

    // The 2011 frames: SO2 N5.2 and O2 N3.1. HJ 212-2017 sends what was measured (285.98 and
    // 11.7), HJ 212-2025 the dry standard values (489.93 and 13); ZsRtd 489.93258 × 1.375 =
    // 673.65730 → 673.66 in both.
    let cp = |p: Profile| realtime_cp("20260301080000", &values(&spec, &poll, p)).to_string();
    let v2017 = cp(Profile::Measured);
    let v2025 = cp(Profile::DryStandard);
    assert!(v2017.contains("a21026-Rtd=285.98,a21026-ZsRtd=673.66,a21026-Flag=N"), "{v2017}");
    assert!(v2017.contains("a19001-Rtd=11.7,a19001-Flag=N"), "{v2017}");
    assert!(v2025.contains("a21026-Rtd=489.93,a21026-ZsRtd=673.66,a21026-Flag=N"), "{v2025}");
    assert!(v2025.contains("a19001-Rtd=13,a19001-Flag=N"), "{v2025}");
    assert!((dry - 489.93258).abs() < 1e-5 && (zs - 673.6573).abs() < 1e-4, "{dry} {zs}");
}

#[test]
fn the_run_status_stops_values_and_the_o2_guard_marks_them() {
    let mut spec = cement();
    spec.run_status = Some("SB1-RS".into());
    // The kiln stopped: N and T samples become F; the run status itself is not a value here.
    let poll = [
        input(0, "SB1-RS", 0.0),
        input(0, "a21026", 5.0),
        Input { t: 0, factor: "a34013".into(), value: Some(60.0), flag: Flag::T },
        input(0, "a19001", 20.0),
    ];
    let out = current(&spec, &poll);
    assert!(out.iter().all(|c| c.factor != "SB1-RS"));
    assert_eq!((get(&out, "a21026").flag, get(&out, "a34013").flag), (Flag::F, Flag::F));
    // Running, with 20.8 % O2: at or above the 20.5 % guard a limited factor is not converted
    // and gets D (an unlimited gas is not converted and keeps its flag).
    let poll =
        [input(0, "SB1-RS", 1.0), input(0, "a21026", 5.0), input(0, "a21005", 3.0), input(0, "a19001", 20.8)];
    let out = current(&spec, &poll);
    let so2 = get(&out, "a21026");
    assert_eq!((so2.value, so2.zs, so2.flag, so2.unconvertible), (Some(5.0), None, Flag::D, true));
    let co = get(&out, "a21005");
    assert_eq!((co.zs, co.flag, co.unconvertible), (None, Flag::N, false));
    // An over-range sample keeps its value and its T, and is converted: 60 × 11 / (21 − 13).
    let poll =
        [Input { t: 0, factor: "a34013".into(), value: Some(60.0), flag: Flag::T }, input(0, "a19001", 13.0)];
    let pm = get(&current(&spec, &poll), "a34013").clone();
    assert_eq!((pm.value, pm.zs, pm.flag), (Some(60.0), Some(82.5), Flag::T));
    // Without any O2 a limited factor has no converted value and is B.
    let pm = get(&current(&spec, &poll[..1]), "a34013").clone();
    assert_eq!((pm.zs, pm.flag), (None, Flag::B));
}

#[test]
fn nox_is_derived_from_no_and_no2_in_ppm() {
    let mut spec = cement();
    spec.ppm.extend(["a21003".to_string(), "a21004".to_string()]);
    // NO 20 ppm → 20 × 30.01 / 22.4 = 26.794643 mg/m³; NO2 2 ppm → 2 × 46.01 / 22.4 = 4.108036;
    // (21) NOx = 26.794643 × 46.01 / 30.01 + 4.108036 = 41.08036 + 4.108036 = 45.188393 mg/m³,
    // which is (22): (20 + 2) × 46.01 / 22.4 = 45.188393.
    let poll = [input(0, "a21003", 20.0), input(0, "a21004", 2.0), input(0, "a19001", 10.0)];
    let out = current(&spec, &poll);
    let nox = get(&out, "a21002");
    assert!(close(nox.value, 22.0 * 46.01 / 22.4), "{nox:?}");
    assert!(close(nox.zs, 22.0 * 46.01 / 22.4), "at the reference O2 the value is unchanged");
    // A measured NOx is not replaced.
    let poll = [input(0, "a21003", 20.0), input(0, "a21004", 2.0), input(0, "a21002", 50.0)];
    let out = current(&spec, &poll);
    assert_eq!(out.iter().filter(|c| c.factor == "a21002").count(), 1);
    assert_eq!(get(&out, "a21002").value, Some(50.0));
}

#[test]
fn the_flow_is_in_cubic_metres_per_second_at_dry_standard_state() {
    let mut spec = cement();
    spec.flow.duct_area_m2 = Some(10.0);
    // Velocity 10 m/s in 10 m²: (30) 3600 × 10 × 10 = 360,000 m³/h actual wet = 100 m³/s.
    // (31) at 127 °C, 101,000 Pa absolute, 10 % moisture: × 273/400 × 101000/101325 × 0.9
    // = 220,420.7 m³/h = 61.2280 m³/s.
    let poll = [
        input(0, "a01011", 10.0),
        input(0, "a01012", 127.0),
        input(0, "a01013", -0.325),
        input(0, "a01014", 10.0),
    ];
    let flow = get(&current(&spec, &poll), "a00000").clone();
    let q = 360_000.0 * 273.0 / 400.0 * 101_000.0 / 101_325.0 * 0.9 / 3600.0;
    assert!(close(flow.measured, 100.0) && close(flow.value, q), "{flow:?} vs {q}");
    assert_eq!(flow.flag, Flag::N);
    // A flow computer that gives dry standard m³/h: 220,420.7 m³/h is 61.2280 m³/s, converted
    // once only (not again by (31)).
    spec.flow.measured_basis = Basis::DRY_STANDARD;
    spec.flow.measured_unit = FlowUnit::PerHour;
    let poll = [input(0, "a00000", q * 3600.0), input(0, "a01012", 127.0), input(0, "a01014", 10.0)];
    let flow = get(&current(&spec, &poll), "a00000").clone();
    assert!(close(flow.value, q) && close(flow.measured, q), "{flow:?} vs {q}");
    // The default: a measured flow in actual wet m³/s, brought to dry standard state.
    spec.flow.measured_basis = Basis::WET_ACTUAL;
    spec.flow.measured_unit = FlowUnit::PerSecond;
    let poll = [
        input(0, "a00000", 100.0),
        input(0, "a01012", 127.0),
        input(0, "a01013", -0.325),
        input(0, "a01014", 10.0),
    ];
    assert!(close(get(&current(&spec, &poll), "a00000").value, q));
    // Without the temperature an actual-state flow cannot be brought to standard state: B.
    let flow = get(&current(&spec, &poll[..1]), "a00000").clone();
    assert_eq!((flow.value, flow.flag), (None, Flag::B));
}

#[test]
fn stale_context_is_not_used() {
    let spec = cement();
    // O2 from 31 s before the newest value is older than the 30 s a context value may be.
    let poll = [input(0, "a19001", 13.0), input(31, "a21026", 10.0)];
    let so2 = get(&current(&spec, &poll), "a21026").clone();
    assert_eq!((so2.zs, so2.flag), (None, Flag::B));
    let poll = [input(1, "a19001", 13.0), input(31, "a21026", 10.0)];
    assert_eq!(get(&current(&spec, &poll), "a21026").zs, Some(13.75));
}

#[test]
fn what_an_outlet_can_supply() {
    let measured = |set: &'static [&'static str]| move |f: &str| set.contains(&f);
    assert!(supplied("a21002", &measured(&["a21002"]), false));
    assert!(supplied("a21002", &measured(&["a21003", "a21004"]), false));
    assert!(!supplied("a21002", &measured(&["a21003"]), false), "NO alone is not NOx");
    assert!(supplied("a00000", &measured(&["a01011"]), true));
    assert!(!supplied("a00000", &measured(&["a01011"]), false));
    assert_eq!(
        ways_to_supply("a21002"),
        "measure a21002 (NOx), or measure both a21003 (NO) and a21004 (NO₂)"
    );
}
