//! Fuzz target: arbitrary text as the `compliance` CSV input, evaluated against a profile with
//! every conversion in play (reference O2, run status, flow from velocity). It must give an
//! outcome or a line-numbered error, never panic, and no non-finite figure may come out.
#![no_main]

#[path = "checks.rs"]
#[allow(dead_code, reason = "each target uses one of the shared bodies")]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::compliance_csv(data));
