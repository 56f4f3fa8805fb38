//! Fuzz target: the HJ 212-2025 stream, the stream decoder with SM4 keys set fed in chunks of
//! random sizes, with well-formed encrypted frames among raw bytes. Never a panic or a loop,
//! the buffer within its cap, and well-formed frames come out in order.
#![no_main]

#[path = "checks.rs"]
#[allow(dead_code, reason = "each target uses one of the shared bodies")]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::hj212_stream_2025(data));
