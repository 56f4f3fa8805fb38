//! Fuzz target: arbitrary bytes from a platform (or an HJ 212 analyzer) into the stream decoder
//! and the frame decoder. Nothing may panic or loop, and whatever decodes must encode back to a
//! frame that decodes to the same packet whenever it is in the standard form.
#![no_main]

#[path = "checks.rs"]
#[allow(dead_code, reason = "each target uses one of the shared bodies")]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::hj212_decode(data));
