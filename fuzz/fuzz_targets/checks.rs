//! The fuzz targets' bodies, shared with the regression test that replays the corpora and crash
//! reproducers under `cargo test` (`tests/it/fuzz_corpus.rs` includes this file by path).
//! Each function takes arbitrary bytes and panics only on a broken invariant.

use std::path::Path;
use std::sync::OnceLock;

use cems_gateway::acquire::DevicePlan;
use cems_gateway::acquire::plan::BlockResult;
use cems_gateway::compute::{OutletLimits, OutletSpec, limits};
use cems_gateway::hj212::crc::crc;
use cems_gateway::hj212::crypt::{Key, MAX_CIPHER_BYTES, encrypt_segment, is_encrypted};
use cems_gateway::hj212::frame::{decode_with, parse_segment};
use cems_gateway::hj212::stream::DECODER_CAP;
use cems_gateway::hj212::{Decoded, Decoder, Packet, decode};

#[path = "session.rs"]
mod session;
pub use session::uplink_session;

/// Bytes from a platform (or an HJ 212 analyzer) into the stream decoder and the frame
/// decoder: nothing may panic or loop, and whatever decodes must encode back to a frame that
/// decodes to the same packet whenever it is in the standard form.
pub fn hj212_decode(data: &[u8]) {
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
}

/// The SM4 key the encrypted targets use (HJ 212-2025 Appendix A.2's test key), and a second
/// one tried first, as a link tries its current key before the one it replaced.
const KEY: &str = "0000000000000000";
const OTHER_KEY: &str = "Kx7pQ2vR9sT4wY6z";

fn keys() -> Vec<Key> {
    vec![Key::from_text(OTHER_KEY).expect("16 characters"), Key::from_text(KEY).expect("16 characters")]
}

/// Characters a CP body is built from: the separators and the cipher list's own, so that the
/// parser behind the decryption sees all its cases.
const CP_ALPHABET: &[u8] = b"aA0123456789.-=;,&{}xX#CPRtdFlagN";

/// A plaintext data segment whose CP body comes from `bytes` (mapped onto [`CP_ALPHABET`]).
fn segment_from(bytes: &[u8]) -> String {
    let body: String =
        bytes.iter().map(|b| char::from(CP_ALPHABET[usize::from(*b) % CP_ALPHABET.len()])).collect();
    format!("QN=20261129103000123;ST=31;CN=2011;PW=123456;MN=88888880000001;Flag=9;CP=&&{body}&&")
}

/// A well-formed encrypted frame of `segment` under [`KEY`]: the length field gives the
/// plaintext length or the wire length, the CRC covers the plaintext. `None` when the segment
/// cannot be encrypted or is too long for a length field.
fn sealed_frame(segment: &str, wire_length: bool) -> Option<String> {
    let key = Key::from_text(KEY)?;
    let wire = encrypt_segment(segment, &key).ok()?;
    let len = if wire_length { wire.chars().count() } else { segment.chars().count() };
    (len <= 9999).then(|| format!("##{len:04}{wire}{:04X}\r\n", crc(segment.as_bytes())))
}

/// Encrypted frames (HJ 212-2025) into `decode_with` with keys set. The first byte chooses:
/// raw bytes as a frame, or a well-formed encrypted frame built from the rest (so that the
/// fuzzer reaches the decryption, the CRC and the parser), sent as it is or with one byte
/// changed, removed or inserted where the input says. Never a panic; an untouched frame decodes
/// to what its plaintext parses to.
pub fn hj212_encrypted(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let keys = keys();
    if mode % 4 == 0 {
        let _ = decode_with(&String::from_utf8_lossy(rest), &keys);
        return;
    }
    let (edit, body) = rest.split_at(rest.len().min(3));
    let segment = segment_from(body);
    let Some(frame) = sealed_frame(&segment, mode & 0x10 != 0) else { return };
    let mut bytes = frame.into_bytes();
    let untouched = match *edit {
        [kind, hi, lo] if kind % 4 != 0 => {
            let at = usize::from(u16::from_be_bytes([hi, lo])) % bytes.len();
            match kind % 4 {
                1 => bytes[at] ^= 1 << (kind >> 5),
                2 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, kind),
            }
            false
        }
        _ => true,
    };
    let text = String::from_utf8_lossy(&bytes);
    let got = decode_with(&text, &keys);
    // A plaintext whose CP starts like a cipher list cannot be told from one, and a CP with
    // more whole blocks than the cipher cap is refused by design (found by this target's first
    // run): no claim then. The claim is made with the right key alone: with two keys, the wrong
    // one's decryption may (very rarely) pass as text with a matching CRC-16, which is why a
    // wrong key's text must parse and be free of control characters (two findings of this
    // target, kept as reproducers).
    if untouched && !is_encrypted(&segment) && within_cap(body) {
        let right = Key::from_text(KEY).expect("16 characters");
        assert_eq!(
            decode_with(&text, &[right]),
            parse_segment(&segment),
            "an untouched frame decodes as its plaintext"
        );
    }
    if let Ok(p) = got {
        round_trip_encrypted(&p);
    }
}

/// Whether a CP body of these bytes encrypts to at most [`MAX_CIPHER_BYTES`] cipher bytes.
fn within_cap(body: &[u8]) -> bool {
    body.len() / 16 * 16 <= MAX_CIPHER_BYTES
}

/// Whatever decoded, encrypted again, decodes to the same packet whenever it can be sent.
fn round_trip_encrypted(p: &Packet) {
    let key = Key::from_text(KEY).expect("16 characters");
    for rule in [cems_gateway::hj212::crypt::LengthRule::Plain, cems_gateway::hj212::crypt::LengthRule::Wire]
    {
        if let Ok(frame) = p.encode_encrypted(&key, rule) {
            assert_eq!(decode_with(&frame, &keys()).as_ref(), Ok(p), "{frame}");
        }
    }
}

/// The 2025 stream: the stream decoder with keys set, fed in chunks of random sizes. The bytes
/// are cut at 0xFE into pieces; a piece starting with 0xFD becomes a well-formed encrypted frame
/// (built like [`hj212_encrypted`]'s), any other is sent raw. Never a panic or a loop, the
/// buffer within its cap, and when every piece is a well-formed frame each one comes out, in
/// order.
pub fn hj212_stream_2025(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else { return };
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    let mut all_frames = true;
    for piece in rest.split(|b| *b == 0xFE) {
        match piece.split_first() {
            Some((0xFD, body)) => {
                let segment = segment_from(body);
                match (sealed_frame(&segment, body.len() % 2 == 0), parse_segment(&segment)) {
                    (Some(frame), Ok(p)) if !is_encrypted(&segment) && within_cap(body) => {
                        stream.extend(frame.as_bytes());
                        expected.push(p);
                    }
                    (frame, _) => {
                        stream.extend(frame.unwrap_or_default().as_bytes());
                        all_frames = false;
                    }
                }
            }
            _ => {
                all_frames &= piece.is_empty();
                stream.extend(piece);
            }
        }
    }
    let mut decoder = Decoder::default();
    decoder.set_keys(keys());
    let mut got = Vec::new();
    let mut rng = u32::from(seed) | 1;
    let mut at = 0;
    let mut steps = 0;
    while at < stream.len() {
        // xorshift: chunk sizes from 1 to 2 KiB, different for every seed.
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let n = (rng as usize % 2048 + 1).min(stream.len() - at);
        decoder.push(&stream[at..at + n]);
        at += n;
        while let Some(d) = decoder.next_frame() {
            steps += 1;
            assert!(steps <= stream.len() + 1, "the decoder must make progress");
            if let Decoded::Packet(p) = d {
                round_trip_encrypted(&p);
                got.push(p);
            }
        }
        assert!(decoder.buffered() <= DECODER_CAP, "buffer {} over its cap", decoder.buffered());
    }
    if all_frames {
        assert_eq!(got, expected, "every well-formed frame comes out, in order");
    }
}

/// Text as a configuration file: a `Config` or a non-empty list of errors, never a panic.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = cems_gateway::config::validate::parse(text, Path::new("/etc/cems-gateway")) {
        assert!(!errors.is_empty(), "an invalid file has at least one problem");
        for e in &errors {
            let _ = e.to_string();
        }
    }
}

/// Text as the `compliance` CSV, evaluated with every conversion in play (reference O2, run
/// status, flow from velocity): an outcome or a line-numbered error, and no non-finite figure.
pub fn compliance_csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let profile = limits::profile("cement-kiln").expect("built-in profile");
    let mut spec = OutletSpec::new(OutletLimits::resolve(Some(profile), None, &Default::default()));
    spec.run_status = Some("SB1-RS".into());
    spec.flow.duct_area_m2 = Some(12.57);
    let Ok(outcome) = cems_gateway::report::evaluate_csv_text(text, spec) else { return };
    for r in outcome.hours.iter().chain(&outcome.days) {
        for v in [r.stat.min, r.stat.avg, r.stat.max, r.stat.zs_avg, r.stat.cou].into_iter().flatten() {
            assert!(v.is_finite(), "non-finite figure in {r:?}");
        }
    }
}

/// A device with every data type, word order and a status rule of each table, beside the
/// demo's analyzers.
const DEVICES: &str = r#"
[[device]]
name = "mixed"
bus = "sim"
slave = 9
poll_interval_s = 1
outlet = "kiln-tail"
  [[device.status]]
  address = 40
  type = "u16"
  match = "value"
  map = { 1 = "M", 2 = "D", 3 = "C" }
  [[device.status]]
  table = "input"
  address = 41
  type = "i16"
  match = "value"
  map = { 0 = "F" }
  [[device.point]]
  factor = "a01"
  address = 0
  type = "u16"
  scale = 0.1
  [[device.point]]
  factor = "a02"
  address = 1
  type = "i16"
  offset = -40.0
  [[device.point]]
  factor = "a03"
  address = 2
  type = "u32"
  word_order = "CDAB"
  [[device.point]]
  factor = "a04"
  address = 4
  type = "i32"
  word_order = "BADC"
  [[device.point]]
  factor = "a05"
  address = 6
  type = "f32"
  word_order = "DCBA"
  range_max = 100.0
  [[device.point]]
  factor = "a06"
  address = 8
  type = "f64"
  scale = 1e300
  [[device.point]]
  factor = "a07"
  address = 200
  type = "f32"
"#;

fn plans() -> &'static Vec<DevicePlan> {
    static PLANS: OnceLock<Vec<DevicePlan>> = OnceLock::new();
    PLANS.get_or_init(|| {
        let text = format!("{}{DEVICES}", cems_gateway::config::DEMO_CONFIG);
        let config = cems_gateway::config::validate::parse(&text, Path::new("."))
            .unwrap_or_else(|e| panic!("fuzz configuration: {e:?}"));
        config.devices.into_iter().map(DevicePlan::new).collect()
    })
}

/// Analyzer replies decoded by a device's read plan. The first byte chooses the device, then
/// per request block a tag byte: registers (`tag / 4` of them, so also too few or too many),
/// lost, or exception 4. One sample per point, never a panic, never a non-finite value.
pub fn modbus_decode(data: &[u8]) {
    let Some((&pick, mut rest)) = data.split_first() else { return };
    let plans = plans();
    let plan = &plans[usize::from(pick) % plans.len()];
    let mut results = Vec::new();
    for _ in &plan.blocks {
        let Some((&tag, tail)) = rest.split_first() else { break };
        rest = tail;
        results.push(match tag % 4 {
            0 | 1 => {
                let n = usize::from(tag / 4).min(rest.len() / 2);
                let (words, tail) = rest.split_at(n * 2);
                rest = tail;
                BlockResult::Ok(words.chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]])).collect())
            }
            2 => BlockResult::Lost,
            _ => BlockResult::DeviceFailure,
        });
    }
    let samples = plan.decode(&results, 1_000);
    assert_eq!(samples.len(), plan.device.points.len());
    for s in &samples {
        assert!(s.value.is_none_or(f64::is_finite), "non-finite value reached a sample: {s:?}");
    }
}
