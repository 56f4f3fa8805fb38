//! Fuzz target: HJ 212-2025 encrypted frames into `decode_with` with SM4 keys set: raw bytes,
//! and well-formed encrypted frames built from the input (so that decryption, the CRC over the
//! plaintext and the parser are reached), untouched or with one byte changed, removed or
//! inserted. Never a panic; an untouched frame decodes as its plaintext.
#![no_main]

#[path = "checks.rs"]
#[allow(dead_code, reason = "each target uses one of the shared bodies")]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::hj212_encrypted(data));
