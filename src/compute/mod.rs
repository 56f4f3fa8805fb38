//! Emission figures: conversions, validated statistics, limits and compliance (HJ 75,
//! HJ 212-2017 Annex D). Everything here is pure: no I/O, no clock.
//!
//! - [`convert`]: the Annex D formulas, one function each, with the equation number.
//! - [`spec`]: what the figures need to know about an outlet.
//! - [`realtime`]: the one conversion of a poll (units, dry standard state, NOx, flow, ZsRtd,
//!   flags), used by the evaluator per sample and by every live view.
//! - [`stats`]: period aggregation with the validity thresholds and the flag rule.
//! - [`limits`]: built-in ultra-low profiles as data, per-outlet overrides.
//! - [`evaluate`]: the streaming evaluator of one outlet, samples in, records out.
//! - [`compliance`]: exceedance events, compliance and capture rates from hour records.
//! - [`marks`]: operator marks (stopped, start-up, fault, maintenance…): their rules and the
//!   flag a sample under them takes.
//! - [`blocks`]: minute records combined into the minute-data interval's blocks (2051).
//! - [`runtime`]: a facility's daily run time from its run-status samples (2041).

pub mod blocks;
pub mod compliance;
pub mod convert;
pub mod evaluate;
pub mod limits;
pub mod marks;
pub mod realtime;
pub mod runtime;
pub mod spec;
pub mod stats;

pub use compliance::{Exceedance, FactorCompliance, Outcome};
pub use evaluate::Evaluator;
pub use limits::{OutletLimits, Profile};
pub use spec::{Input, OutletSpec};
pub use stats::{Level, Record, Thresholds};
