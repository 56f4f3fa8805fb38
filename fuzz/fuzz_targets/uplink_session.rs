//! Fuzz target: platform packets into the HJ 212 uplink's session state machine. One session
//! driven through connections, frames from a platform (raw, and well-formed packets of every
//! CN, on the 2017 and the 2025 profile with an SM4 key set), the outbox's answers, ticks with
//! wall-clock steps, disconnects and a shutdown; the design's promises checked after each step.
#![no_main]

#[path = "checks.rs"]
#[allow(dead_code, reason = "each target uses one of the shared bodies")]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::uplink_session(data));
