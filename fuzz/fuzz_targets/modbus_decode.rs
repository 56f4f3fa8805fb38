//! Fuzz target: arbitrary analyzer replies decoded by a device's read plan. The bytes choose a
//! device (every data type, word order and status rule), then per request block an outcome:
//! registers (any count, so also too short or too long), lost, or exception 4. Decoding must
//! give exactly one sample per point, never panic, and never a non-finite value.
#![no_main]

#[path = "checks.rs"]
#[allow(dead_code, reason = "each target uses one of the shared bodies")]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::modbus_decode(data));
