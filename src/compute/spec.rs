//! What the emission figures need to know about one outlet ([`OutletSpec`]): limits, validity
//! rules, how each point measures (ppm, wet or dry, actual or standard state), the duct and
//! flow, and the factor codes the conversions give a meaning to. Plain data, no behaviour.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::convert;
use super::limits::OutletLimits;
use super::stats::Thresholds;
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
pub const PARTICULATE: &str = "a34013";

/// How a point's concentration (or a measured flow) is measured: wet or dry gas, actual or
/// standard state. Extractive analyzers usually give dry standard values; in-situ ones wet
/// actual values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Basis {
    pub wet: bool,
    pub actual: bool,
}

impl Basis {
    pub const DRY_STANDARD: Basis = Basis { wet: false, actual: false };
    pub const WET_ACTUAL: Basis = Basis { wet: true, actual: true };

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

    pub fn name(self) -> &'static str {
        match (self.wet, self.actual) {
            (false, false) => "dry-standard",
            (false, true) => "dry-actual",
            (true, false) => "wet-standard",
            (true, true) => "wet-actual",
        }
    }
}

/// The unit a measured flow (`a00000`) arrives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowUnit {
    /// m³/s, the unit of table B.2.
    PerSecond,
    /// m³/h, what many flow computers display.
    PerHour,
}

impl FlowUnit {
    /// `m3/s` or `m3/h`.
    pub fn parse(s: &str) -> Option<FlowUnit> {
        match s {
            "m3/s" => Some(FlowUnit::PerSecond),
            "m3/h" => Some(FlowUnit::PerHour),
            _ => None,
        }
    }

    /// Seconds in the unit's time: m³/unit × this = m³/h.
    pub fn to_per_hour(self) -> f64 {
        match self {
            FlowUnit::PerSecond => 3600.0,
            FlowUnit::PerHour => 1.0,
        }
    }
}

/// Duct and pressure data for the flow (29)–(31), and how a measured flow arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSpec {
    pub duct_area_m2: Option<f64>,
    /// Velocity-field coefficient Kv (29).
    pub kv: f64,
    /// Ambient pressure (Pa) when no `a01006` point is measured.
    pub ambient_pa: f64,
    /// Basis of a measured `a00000` (a flow computer may already give dry standard flow).
    pub measured_basis: Basis,
    pub measured_unit: FlowUnit,
}

/// Everything the conversions and the evaluator need to know about an outlet.
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

    /// A spec with the defaults: HJ 75 thresholds (N and T valid), O2 guard 20.5 %, 101325 Pa
    /// ambient, Kv 1, a measured flow in actual wet m³/s.
    pub fn new(limits: OutletLimits) -> OutletSpec {
        OutletSpec {
            limits,
            thresholds: Thresholds::HJ75,
            o2_guard: 20.5,
            run_status: None,
            flow: FlowSpec {
                duct_area_m2: None,
                kv: 1.0,
                ambient_pa: convert::P_STANDARD,
                measured_basis: Basis::WET_ACTUAL,
                measured_unit: FlowUnit::PerSecond,
            },
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
