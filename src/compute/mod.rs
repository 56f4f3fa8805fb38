//! Emission figures: conversions, validated statistics, limits and compliance (HJ 75,
//! HJ 212-2017 Annex D). Everything here is pure: no I/O, no clock.
//!
//! - [`convert`]: the Annex D formulas, one function each, with the equation number.
//! - [`stats`]: period aggregation with the validity thresholds and the flag rule.
//! - [`limits`]: built-in ultra-low profiles as data, per-outlet overrides.
//! - [`evaluate`]: the streaming evaluator of one outlet, samples in, records and compliance out.
//! - [`marks`]: operator marks (stopped, start-up, fault, maintenance…): their rules and the
//!   flag a sample under them takes.
//! - [`blocks`]: minute records combined into the minute-data interval's blocks (2051).
//! - [`realtime`]: one poll's current values as a 2011 real-time upload carries them.
//! - [`runtime`]: a facility's daily run time from its run-status samples (2041).

pub mod blocks;
pub mod convert;
pub mod evaluate;
pub mod limits;
pub mod marks;
pub mod realtime;
pub mod runtime;
pub mod stats;

pub use evaluate::{Evaluator, Exceedance, FactorCompliance, Input, Outcome, OutletSpec, Record};
pub use limits::{OutletLimits, Profile};
pub use stats::{Level, Thresholds};
