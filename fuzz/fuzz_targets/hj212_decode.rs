//! Fuzz target: arbitrary bytes from a platform (or an HJ 212 analyzer) into the stream decoder
//! and the frame decoder. Nothing may panic or loop, and whatever decodes must encode back to a
//! frame that decodes to the same packet whenever it is in the standard form.
#![no_main]

use cems_gateway::hj212::{Decoded, Decoder, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::default();
    for chunk in data.chunks(97) {
        decoder.push(chunk);
        let mut steps = 0;
        while let Some(d) = decoder.next_frame() {
            steps += 1;
            assert!(steps <= data.len() + 1, "the decoder must make progress");
            if let Decoded::Packet(p) = d
                && let Ok(frame) = p.encode()
            {
                assert_eq!(decode(&frame).as_ref(), Ok(&p));
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode(text);
    }
});
