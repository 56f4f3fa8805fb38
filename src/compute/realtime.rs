//! The one conversion of a poll into what the platform and the officer see: each value in the
//! unit of table B.2 as measured, on the dry standard basis, and converted to the reference O2
//! (ZsRtd), with the flag the records get. The evaluator converts every sample with it before
//! averaging; the 2011 upload, the status page's current values, `/metrics` and the demo convert
//! the current values with it. Pure: the same values and settings always give the same result.
//!
//! Per poll (the samples of one time; the current values of an outlet for the live views):
//! 1. points configured in ppm are converted to mg/m³ (20);
//! 2. the context is updated: O2 `a19001`, temperature `a01012`, static pressure `a01013`
//!    (kPa), humidity `a01014`, velocity `a01011`, flow `a00000`, ambient pressure `a01006`
//!    (kPa), and the facility run status (0 = stopped);
//! 3. values measured wet or at actual state are brought to dry standard state, (19) and (18),
//!    O2 only to dry; then NOx `a21002` is derived from NO `a21003` and NO2 `a21004` (21) when
//!    not measured itself;
//! 4. while the facility is stopped, samples flagged `N` or `T` are flagged `F`;
//! 5. a limited factor (and any gas or particulate, where a reference O2 applies) is converted
//!    to the reference O2 (28), ZsRtd, with the O2 of the same or an earlier poll not older than
//!    `context_max_age`. Without a usable O2 a limited factor takes the O2's flag (or `B` when
//!    there is none); at or above the O2 guard it is flagged `D` and not converted (a gateway
//!    choice: near 21 % the divisor vanishes);
//! 6. the flow `a00000` is derived when the velocity (29)–(30) or the flow itself is measured,
//!    brought to dry standard state (31), in m³/s.
//!
//! Run-status points (`SBx-RS`) are not pollutant or flue values: they go in their own 2021
//! upload and are left out here. The HJ 212-2017 profile sends `-Rtd` as measured; HJ 212-2025
//! (table 5) asks for flue-gas values dry at standard state.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::convert::{self, O2Guard};
use super::spec::*;
use crate::acquire::flags::worst;
use crate::model::Flag;

/// Context key of the facility run status, whatever its factor code.
const RUN_STATUS: &str = "run-status";

/// The factors whose latest value other values are converted with.
const CONTEXT: [&str; 7] = [O2, TEMPERATURE, STATIC_PRESSURE, HUMIDITY, VELOCITY, FLOW, AMBIENT_PRESSURE];

#[derive(Debug, Clone, Copy)]
struct Ctx {
    t: i64,
    value: Option<f64>,
    flag: Flag,
}

/// The latest context values of an outlet (O2, flue parameters, run status), carried from one
/// poll to the next.
#[derive(Debug, Clone, Default)]
pub struct Context {
    latest: BTreeMap<&'static str, Ctx>,
}

/// The flue parameters a conversion to dry standard state needs, each with its flag: humidity
/// (%, a01014), temperature (°C, a01012) and absolute pressure (Pa). `None`: not measured.
#[derive(Debug, Clone, Copy)]
pub struct Flue {
    pub humidity: Option<(Option<f64>, Flag)>,
    pub temperature: Option<(Option<f64>, Flag)>,
    pub abs_pressure: (f64, Flag),
}

impl Context {
    /// Takes a value unless the context already has a newer one of its kind (the current values
    /// of the live views come in any order).
    fn update(&mut self, key: &'static str, c: Ctx) {
        match self.latest.entry(key) {
            Entry::Occupied(e) if e.get().t > c.t => {}
            Entry::Occupied(mut e) => {
                e.insert(c);
            }
            Entry::Vacant(e) => {
                e.insert(c);
            }
        }
    }

    fn fresh(&self, key: &str, now: i64, spec: &OutletSpec) -> Option<Ctx> {
        self.latest.get(key).copied().filter(|c| now - c.t <= spec.context_max_age)
    }

    /// Absolute flue pressure (Pa): ambient (measured a01006 or configured) plus static gauge
    /// pressure (a01013, kPa; 0 when not measured), and the static pressure's flag.
    fn abs_pressure(&self, now: i64, spec: &OutletSpec) -> (f64, Flag) {
        let ambient = self
            .fresh(AMBIENT_PRESSURE, now, spec)
            .and_then(|c| c.value)
            .map_or(spec.flow.ambient_pa, |kpa| kpa * 1000.0);
        let ps = self.fresh(STATIC_PRESSURE, now, spec);
        // As for the humidity: a static pressure point gone stale is missing data.
        let flag = match ps {
            Some(c) => c.flag,
            None if self.latest.contains_key(STATIC_PRESSURE) => Flag::B,
            None => Flag::N,
        };
        (ambient + ps.and_then(|c| c.value).unwrap_or(0.0) * 1000.0, flag)
    }

    fn flue(&self, now: i64, spec: &OutletSpec) -> Flue {
        let param = |f: &str| self.fresh(f, now, spec).map(|c| (c.value, c.flag));
        Flue {
            humidity: param(HUMIDITY),
            temperature: param(TEMPERATURE),
            abs_pressure: self.abs_pressure(now, spec),
        }
    }
}

/// One value of a poll as the platform and the officer see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted<'a> {
    pub factor: &'a str,
    /// As measured, in the unit of table B.2 (ppm → mg/m³; a flow in m³/s): a 2011 upload's
    /// `-Rtd` under HJ 212-2017.
    pub measured: Option<f64>,
    /// Dry, at standard state: what the records average, and `-Rtd` under HJ 212-2025.
    pub value: Option<f64>,
    /// Converted to the reference O2 (`-ZsRtd`), where a reference O2 applies.
    pub zs: Option<f64>,
    /// The flag the records get.
    pub flag: Flag,
    /// A limited factor whose conversion the O2 guard stopped (HJ 212-2025 §8.1.1 then sends
    /// the data type's maximum as the converted value).
    pub unconvertible: bool,
}

/// A sample's value as measured, in mg/m³ where it arrives in ppm (20); nothing non-finite.
fn reading(spec: &OutletSpec, s: &Input) -> Option<f64> {
    let v = s.value.filter(|v| v.is_finite());
    if spec.ppm.is_empty() {
        return v;
    }
    match (v, convert::molar_mass(&s.factor)) {
        (Some(v), Some(m)) if spec.ppm.contains(&*s.factor) => Some(convert::ppm_to_mg_m3(v, m)),
        _ => v,
    }
}

/// Converts one poll into a vector (see [`convert_each`]).
pub fn convert<'a>(spec: &OutletSpec, ctx: &mut Context, now: i64, poll: &'a [Input]) -> Vec<Converted<'a>> {
    let mut out = Vec::with_capacity(poll.len() + 2);
    convert_each(spec, ctx, now, poll, |c| out.push(c));
    out
}

/// Converts one poll: `poll` holds samples taken at `now` (the current values of the live views
/// may be older, each with its own time). `ctx` carries the context from earlier polls and is
/// updated. `emit` gets one value per sample (run-status points and a measured flow left out),
/// then the derived NOx and the flow. Nothing is allocated: the evaluator calls this per poll.
pub fn convert_each<'a>(
    spec: &OutletSpec,
    ctx: &mut Context,
    now: i64,
    poll: &'a [Input],
    mut emit: impl FnMut(Converted<'a>),
) {
    for s in poll {
        if let Some(key) = CONTEXT.iter().find(|c| **c == &*s.factor) {
            ctx.update(key, Ctx { t: s.t, value: reading(spec, s), flag: s.flag });
        }
        if spec.is_run_status(&s.factor) {
            ctx.update(RUN_STATUS, Ctx { t: s.t, value: reading(spec, s), flag: s.flag });
        }
    }
    // (19), (18): values measured wet or at actual state to dry standard state, with the flue
    // parameters of the same or an earlier poll (O2, a percentage, only to dry).
    let needs_flue = !spec.basis.is_empty() || poll.iter().any(|s| matches!(&*s.factor, VELOCITY | FLOW));
    let flue = needs_flue.then(|| ctx.flue(now, spec));
    let dry = |s: &Input, v: Option<f64>| match (spec.basis.get(&*s.factor), &flue) {
        (Some(basis), Some(flue)) => dry_standard(v, s.flag, *basis, &*s.factor == O2, flue),
        _ => (v, s.flag),
    };
    if let Some(s) = poll.iter().rev().find(|s| &*s.factor == O2)
        && spec.basis.contains_key(O2)
    {
        let (value, flag) = dry(s, reading(spec, s));
        ctx.update(O2, Ctx { t: s.t, value, flag });
    }
    let stopped = ctx.fresh(RUN_STATUS, now, spec).is_some_and(|c| c.value == Some(0.0));
    let o2 = ctx.fresh(O2, now, spec);
    // F while stopped, B without a value, and (28).
    let finish = |mut c: Converted<'a>| {
        if stopped && matches!(c.flag, Flag::N | Flag::T) {
            c.flag = Flag::F;
        }
        if c.value.is_none() && matches!(c.flag, Flag::N | Flag::T) {
            c.flag = Flag::B;
        }
        (c.zs, c.flag, c.unconvertible) = reference(spec, c.factor, c.value, c.flag, o2);
        c
    };
    // NO, NO2 and whether NOx itself was measured: (measured, dry standard value, flag).
    type Part = Option<(Option<f64>, Option<f64>, Flag)>;
    let (mut no, mut no2, mut nox_measured): (Part, Part, bool) = (None, None, false);
    for s in poll {
        if spec.is_run_status(&s.factor) || &*s.factor == FLOW {
            continue;
        }
        let measured = reading(spec, s);
        let (value, flag) = dry(s, measured);
        match &*s.factor {
            NO => no = Some((measured, value, flag)),
            NO2 => no2 = Some((measured, value, flag)),
            NOX => nox_measured = true,
            _ => {}
        }
        emit(finish(Converted { factor: &s.factor, measured, value, zs: None, flag, unconvertible: false }));
    }
    // (21): NOx from NO and NO2 of the same poll, unless NOx itself was measured.
    if let (false, Some(no), Some(no2)) = (nox_measured, no, no2) {
        let nox = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| convert::nox_from_no_no2(a, b));
        emit(finish(Converted {
            factor: NOX,
            measured: nox(no.0, no2.0),
            value: nox(no.1, no2.1),
            zs: None,
            flag: worst([no.2, no2.2]),
            unconvertible: false,
        }));
    }
    if let Some(flow) = flue.and_then(|flue| flow(spec, poll, &flue)) {
        emit(flow);
    }
}

/// Whether a factor is converted to the reference O2: a limited one, and any gas or particulate
/// (their converted averages are reported), when the outlet has a reference O2.
fn has_reference(spec: &OutletSpec, factor: &str) -> bool {
    spec.limits.o2_ref.is_some()
        && (spec.limits.limit(factor).is_some()
            || convert::molar_mass(factor).is_some()
            || factor == PARTICULATE)
}

/// (28) for one value with the freshest O2: the converted value, the flag, and whether the O2
/// guard stopped the conversion of a limited factor.
fn reference(
    spec: &OutletSpec,
    factor: &str,
    value: Option<f64>,
    flag: Flag,
    o2: Option<Ctx>,
) -> (Option<f64>, Flag, bool) {
    let Some(o2_ref) = spec.limits.o2_ref.filter(|_| has_reference(spec, factor)) else {
        return (None, flag, false);
    };
    let limited = spec.limits.limit(factor).is_some();
    match o2 {
        Some(Ctx { value: Some(o2), flag: Flag::N, .. }) => {
            let Some(c) = value else { return (None, flag, false) };
            match convert::reference_o2(c, o2, o2_ref, spec.o2_guard) {
                Ok(z) => (Some(z), flag, false),
                Err(O2Guard::NearAir { .. } | O2Guard::Negative(_)) if limited => {
                    (None, worst([flag, Flag::D]), true)
                }
                Err(_) => (None, flag, false),
            }
        }
        other if limited => {
            let o2_flag = other.map_or(Flag::B, |c| if c.value.is_none() { Flag::B } else { c.flag });
            (None, worst([flag, o2_flag]), false)
        }
        _ => (None, flag, false),
    }
}

/// The flow of this poll, if it measured the velocity (29)–(30) or the flow itself: as measured
/// and at dry standard state (31), in m³/s.
fn flow<'a>(spec: &OutletSpec, poll: &[Input], flue: &Flue) -> Option<Converted<'a>> {
    let just = |f: &str| poll.iter().rev().find(|s| &*s.factor == f);
    let finite = |s: &Input| s.value.filter(|v| v.is_finite());
    let (q, flag, basis) = match (just(VELOCITY), just(FLOW), spec.flow.duct_area_m2) {
        (_, Some(flow), _) => (
            finite(flow).map(|v| v * spec.flow.measured_unit.to_per_hour()),
            flow.flag,
            spec.flow.measured_basis,
        ),
        (Some(v), None, Some(area)) => {
            (finite(v).map(|v| convert::actual_flow_m3h(v, area, spec.flow.kv)), v.flag, Basis::WET_ACTUAL)
        }
        _ => return None,
    };
    let (value, flag) = dry_standard_flow(q, flag, basis, flue);
    let flag = if value.is_none() { worst([flag, Flag::B]) } else { flag };
    Some(Converted {
        factor: FLOW,
        measured: q.map(convert::per_second),
        value: value.map(convert::per_second),
        zs: None,
        flag,
        unconvertible: false,
    })
}

/// A flow (m³/h) on `basis` to dry standard state (31). The temperature is needed at actual
/// state; without a humidity measurement a wet flow is taken as dry (0 % moisture).
fn dry_standard_flow(q: Option<f64>, flag: Flag, basis: Basis, flue: &Flue) -> (Option<f64>, Flag) {
    let mut flag = flag;
    let mut q = q;
    if basis.actual {
        let (abs, pressure_flag) = flue.abs_pressure;
        let temperature = flue.temperature.and_then(|(v, f)| v.map(|v| (v, f)));
        flag = worst([flag, flue.temperature.map_or(Flag::B, |(_, f)| f), pressure_flag]);
        q = q.zip(temperature).and_then(|(q, (t, _))| convert::flow_to_standard_state(q, t, abs));
    }
    if basis.wet {
        flag = worst([flag, flue.humidity.map_or(Flag::N, |(_, f)| f)]);
        let moisture = flue.humidity.and_then(|(v, _)| v).unwrap_or(0.0);
        q = q.map(|q| convert::flow_to_dry(q, moisture));
    }
    (q.filter(|q| q.is_finite() && *q >= 0.0), flag)
}

/// One value to dry (19) and standard state (18); a percentage (O2) is only dried. Without the
/// humidity or temperature it needs, the value is dropped and flagged with the missing
/// parameter's flag (or `B`).
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

/// The current values of an outlet's points, each with its own time, converted as one poll at
/// the newest of them (what the live views show).
pub fn current<'a>(spec: &OutletSpec, values: &'a [Input]) -> Vec<Converted<'a>> {
    let Some(now) = values.iter().map(|v| v.t).max() else { return Vec::new() };
    convert(spec, &mut Context::default(), now, values)
}

/// Which rules the receiving platform's protocol sets for real-time values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// HJ 212-2017: the values as measured (in table B.2's units).
    Measured,
    /// HJ 212-2025 table 5: flue-gas values dry at standard state.
    DryStandard,
}

/// One value of a 2011 (or, without `zs`, 2021) upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub factor: String,
    /// `-Rtd` (none without a trustworthy value).
    pub value: Option<f64>,
    /// `-ZsRtd`.
    pub zs: Option<f64>,
    pub flag: Flag,
    /// See [`Converted::unconvertible`].
    pub unconvertible: bool,
}

/// The values a 2011 frame carries for `current` (the current values of an outlet's points).
pub fn values(spec: &OutletSpec, current_values: &[Input], profile: Profile) -> Vec<Value> {
    current(spec, current_values)
        .into_iter()
        .map(|c| Value {
            factor: c.factor.to_string(),
            value: match profile {
                Profile::Measured => c.measured,
                Profile::DryStandard => c.value,
            },
            zs: c.zs,
            flag: c.flag,
            unconvertible: c.unconvertible,
        })
        .collect()
}

/// Whether an outlet whose points measure the factors `measured` has values of `factor`:
/// measured, or derived (NOx from NO and NO2; the flow from the velocity and the duct area).
pub fn supplied(factor: &str, measured: &dyn Fn(&str) -> bool, duct_area: bool) -> bool {
    measured(factor)
        || (factor == NOX && measured(NO) && measured(NO2))
        || (factor == FLOW && measured(VELOCITY) && duct_area)
}

/// How `factor` can be supplied, for a person: `measure a21002 (NOx), or measure both …`.
pub fn ways_to_supply(factor: &str) -> String {
    let named = |f: &str| format!("{f} ({})", crate::factors::short(f));
    let mut ways = vec![format!("measure {}", named(factor))];
    if factor == NOX {
        ways.push(format!("measure both {} and {}", named(NO), named(NO2)));
    }
    if factor == FLOW {
        ways.push(format!("measure the velocity {} and set duct_area_m2", named(VELOCITY)));
    }
    ways.join(", or ")
}

#[cfg(test)]
mod tests;
