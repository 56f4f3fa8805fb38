//! Fuzz target: arbitrary text as a configuration file. `config::validate::parse` must return
//! a `Config` or a list of errors, each with a line inside the file, and never panic.
#![no_main]

#[path = "checks.rs"]
#[allow(dead_code, reason = "each target uses one of the shared bodies")]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config_load(data));
