//! Acquisition: from analyzers to flagged samples.
//!
//! - [`registers`] and [`flags`] are pure: decoding, read planning, data flags.
//! - [`params`]: key analyzer parameters (range, slope, calibration time…): layouts, read plan
//!   and decoding, pure.
//! - [`plan`] turns a configured device into its read plan once at start-up and decodes replies.
//! - [`link`] owns one physical connection (serial port or TCP socket) and performs requests
//!   with deadlines; [`ascii`] is its line-oriented sibling.
//! - [`hj212in`] is the task of a bus whose devices push HJ 212 frames instead of being polled.
//! - [`bus`] is the one task that owns a bus: it schedules every device on it, so an RS-485
//!   line never has more than one request in flight.

pub mod ascii;
pub mod bus;
pub mod flags;
pub mod hj212in;
pub mod link;
pub mod params;
pub mod plan;
pub mod registers;

pub use bus::{BusTask, spawn_buses};
pub use link::{Link, PollError};
pub use plan::DevicePlan;
