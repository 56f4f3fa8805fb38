//! The HJ 212 codec against hostile bytes (issue 12): the stream decoder's buffer stays capped
//! on an endless frame, encrypted or plain, and on callers that never drain it; an encrypted
//! envelope is refused before any SM4 work when it is malformed, and its CRC is checked right
//! after decryption, before the plaintext is parsed.

use cems_gateway::hj212::crypt::{CryptError, Key, LengthRule, MAX_CIPHER_BYTES};
use cems_gateway::hj212::frame::{MAX_FRAME, decode_with};
use cems_gateway::hj212::stream::DECODER_CAP;
use cems_gateway::hj212::{Cp, Decoded, Decoder, FrameError, Packet};

const KEY: &str = "0123456789abcdef";

fn key() -> Key {
    Key::from_text(KEY).unwrap()
}

fn packet(qn: &str) -> Packet {
    Packet {
        qn: Some(qn.into()),
        st: "31".into(),
        cn: "2011".into(),
        pw: "123456".into(),
        mn: "88888880000001".into(),
        flag: Some(9),
        packets: None,
        rf: false,
        cp: Cp::single(&[("DataTime", "20261129103000"), ("a21026-Rtd", "12.5"), ("a21026-Flag", "N")]),
    }
}

/// Pushes `bytes` in chunks of `chunk`, draining after each push; returns what came out and the
/// largest buffer seen.
fn feed(d: &mut Decoder, bytes: &[u8], chunk: usize) -> (Vec<Decoded>, usize) {
    let mut out = Vec::new();
    let mut peak = 0;
    for c in bytes.chunks(chunk) {
        d.push(c);
        peak = peak.max(d.buffered());
        while let Some(x) = d.next_frame() {
            out.push(x);
        }
        peak = peak.max(d.buffered());
    }
    (out, peak)
}

fn packets(out: &[Decoded]) -> Vec<Packet> {
    out.iter()
        .filter_map(|d| match d {
            Decoded::Packet(p) => Some(p.clone()),
            Decoded::Skipped { .. } => None,
        })
        .collect()
}

#[test]
fn an_endless_encrypted_frame_is_skipped_within_the_frame_cap_and_the_next_frame_decodes() {
    // The head of an encrypted frame, then a megabyte of cipher list that never ends: the old
    // decoder waited for CR LF with no limit and held all of it.
    let mut stream = b"##0100QN=20261129103000001;ST=31;CN=2011;PW=123456;MN=M;Flag=9;CP=&&{".to_vec();
    while stream.len() < 1 << 20 {
        stream.extend(b"0x41,");
    }
    let good = packet("20261129103000002").encode_encrypted(&key(), LengthRule::Plain).unwrap();
    stream.extend(good.as_bytes());
    let mut d = Decoder::default();
    d.set_keys(vec![key()]);
    let (out, peak) = feed(&mut d, &stream, 4096);
    assert!(peak <= MAX_FRAME + 4096, "buffer peaked at {peak} bytes, cap {MAX_FRAME} + one read");
    assert!(
        out.iter().any(|x| matches!(x, Decoded::Skipped { error: FrameError::Oversized { limit }, .. } if *limit == MAX_FRAME)),
        "the endless frame is reported as oversized"
    );
    let skipped: usize = out
        .iter()
        .map(|x| match x {
            Decoded::Skipped { bytes, .. } => *bytes,
            Decoded::Packet(_) => 0,
        })
        .sum();
    assert_eq!(skipped, stream.len() - good.len(), "everything but the good frame is skipped");
    assert_eq!(packets(&out), vec![packet("20261129103000002")], "the frame after it decodes");
    assert_eq!(d.junk(), 0, "a good frame resets the junk count");
}

#[test]
fn garbage_and_plain_headers_without_an_end_keep_the_buffer_small_and_count_as_junk() {
    let mut stream = Vec::new();
    for i in 0..40_000u32 {
        // Valid-looking plain headers whose frames never end, between runs of noise.
        stream.extend(format!("##0999QN={i:017};ST=31;").as_bytes());
        stream.extend([0x00, 0xff, b'#', b'\r']);
    }
    let mut d = Decoder::default();
    let (out, peak) = feed(&mut d, &stream, 1500);
    assert!(peak <= MAX_FRAME + 1500, "buffer peaked at {peak}");
    assert!(packets(&out).is_empty());
    assert!(d.junk() + d.buffered() == stream.len(), "junk {} + held {}", d.junk(), d.buffered());
    assert!(d.junk() > MAX_FRAME, "a caller can tell a peer that sends no HJ 212 at all");
}

#[test]
fn a_caller_that_never_drains_cannot_grow_the_buffer_past_its_cap() {
    let mut d = Decoder::default();
    let big = vec![b'A'; 3 * DECODER_CAP];
    d.push(&big);
    d.push(&big);
    assert_eq!(d.buffered(), DECODER_CAP);
    let first = d.next_frame().unwrap();
    assert_eq!(
        first,
        Decoded::Skipped {
            error: FrameError::Oversized { limit: DECODER_CAP },
            bytes: 6 * DECODER_CAP - DECODER_CAP
        }
    );
    // Then the rest goes as ordinary garbage, and a good frame after it decodes.
    d.push(packet("20261129103000003").encode().unwrap().as_bytes());
    let mut got = Vec::new();
    while let Some(x) = d.next_frame() {
        got.push(x);
    }
    assert_eq!(packets(&got), vec![packet("20261129103000003")]);
}

/// The envelope of an encrypted frame as built by the test: the segment with its CP body
/// encrypted, a length field and a CRC.
fn sealed_frame(p: &Packet) -> String {
    p.encode_encrypted(&key(), LengthRule::Wire).unwrap()
}

#[test]
fn a_malformed_encrypted_envelope_is_refused_before_decryption_with_its_reason() {
    let keys = [key()];
    let good = sealed_frame(&packet("20261129103000004"));
    assert_eq!(decode_with(&good, &keys).unwrap(), packet("20261129103000004"));

    // Four hex CRC digits are required before any SM4 work.
    let mut bad_crc_field = good.clone();
    bad_crc_field.replace_range(good.len() - 6..good.len() - 2, "12G4");
    assert_eq!(decode_with(&bad_crc_field, &keys), Err(FrameError::BadCrcField("12G4".into())));
    // Nothing after the CRC but CR LF.
    let trailing = format!("{}X\r\n", good.trim_end());
    assert!(matches!(decode_with(&trailing, &keys), Err(FrameError::Tail | FrameError::BadCrcField(_))));
    let inner_newline = good.replacen(";ST=", "\n;ST=", 1);
    assert_eq!(decode_with(&inner_newline, &keys), Err(FrameError::Tail));
    // A list that is not whole blocks, or not hex, or too long: refused as cipher text.
    let cut_block = good.replacen("{0x", "{0x00,0x", 1);
    assert_eq!(decode_with(&cut_block, &keys), Err(FrameError::Cipher(CryptError::BadCipherText)));
    let not_hex = good.replacen("{0x", "{0xZZ,0x", 1);
    assert_eq!(decode_with(&not_hex, &keys), Err(FrameError::Cipher(CryptError::BadCipherText)));
    let list = vec!["0x41"; MAX_CIPHER_BYTES + 16].join(",");
    let huge = format!("##0100QN=1;CP=&&{{{list}}}&&1234\r\n");
    assert!(matches!(decode_with(&huge, &keys), Err(FrameError::Cipher(_) | FrameError::TooLong(_))));
}

#[test]
fn the_crc_of_an_encrypted_frame_is_checked_over_the_plaintext_before_it_is_parsed() {
    let keys = [key()];
    let good = sealed_frame(&packet("20261129103000005"));
    // A CRC that does not match the plaintext: decrypted, then refused on its CRC.
    let crc = &good[good.len() - 6..good.len() - 2];
    let other = if crc == "0000" { "0001" } else { "0000" };
    let mut wrong = good.clone();
    wrong.replace_range(good.len() - 6..good.len() - 2, other);
    assert!(
        matches!(decode_with(&wrong, &keys), Err(FrameError::Crc { .. })),
        "{:?}",
        decode_with(&wrong, &keys)
    );
    // The wrong key: no packet, whatever the bytes decrypt to.
    let wrong_key = [Key::from_text("fedcba9876543210").unwrap()];
    assert!(decode_with(&good, &wrong_key).is_err());
    // No key at all: refused as encrypted.
    assert_eq!(decode_with(&good, &[]), Err(FrameError::Encrypted));
}

/// Found by fuzzing (`fuzz/artifacts/hj212_encrypted/crash-a77c…` and `crash-2c8b…`): a frame
/// under the second key whose decryption with the first key (tried first, as the current key
/// is) is UTF-8 text with a CRC-16 that matches by chance. With the first reproducer that text
/// did not parse and the frame was refused instead of trying the second key; with the second
/// it parsed, and a wrong packet came out. Both decode right now: a segment that does not parse
/// lets the next key try, and a wrong key's text, full of control characters, is not text.
#[test]
fn a_chance_crc_match_under_the_wrong_key_does_not_hide_the_right_one() {
    let right = Key::from_text("0000000000000000").unwrap();
    let wrong = Key::from_text("Kx7pQ2vR9sT4wY6z").unwrap();
    let head = "QN=20261129103000123;ST=31;CN=2011;PW=123456;MN=88888880000001;Flag=9;";
    for cp in ["aaa5R29{aaa=aa=Xaaa5R29{aaa=aa=X", "aaa5R29{aaa=aa=Xaaa5R29{aaa=aa=X=aaaaaaa"] {
        let segment = format!("{head}CP=&&{cp}&&");
        let wire = cems_gateway::hj212::crypt::encrypt_segment(&segment, &right).unwrap();
        let crc = cems_gateway::hj212::crc::crc(segment.as_bytes());
        let frame = format!("##{:04}{wire}{crc:04X}\r\n", wire.len());
        // The case this test is about: the wrong key gives UTF-8 text with the same CRC.
        let by_wrong = sm4_decrypt(&wire, b"Kx7pQ2vR9sT4wY6z");
        let text = String::from_utf8(by_wrong).expect("UTF-8 under the wrong key");
        assert_eq!(cems_gateway::hj212::crc::crc(text.as_bytes()), crc, "{cp}: same CRC");
        let expected = cems_gateway::hj212::frame::parse_segment(&segment).unwrap();
        assert_eq!(decode_with(&frame, &[wrong.clone(), right.clone()]), Ok(expected), "{cp}");
        assert!(
            decode_with(&frame, std::slice::from_ref(&wrong)).is_err(),
            "{cp}: not under the wrong key alone"
        );
    }
}

/// The segment `wire` with its cipher list decrypted by hand (SM4 ECB) under `key`, whatever
/// the bytes: what the codec would see before its own checks.
fn sm4_decrypt(wire: &str, key: &[u8; 16]) -> Vec<u8> {
    use sm4::cipher::generic_array::GenericArray;
    use sm4::cipher::{BlockDecrypt, KeyInit};
    let (head, rest) = wire.split_once("CP=&&{").unwrap();
    let (list, tail) = rest.split_once('}').unwrap();
    let cipher = sm4::Sm4::new(GenericArray::from_slice(key));
    let mut bytes: Vec<u8> = list.split(',').map(|t| u8::from_str_radix(&t[2..], 16).unwrap()).collect();
    for block in bytes.chunks_mut(16) {
        cipher.decrypt_block(GenericArray::from_mut_slice(block));
    }
    [format!("{head}CP=&&").as_bytes(), &bytes, tail.as_bytes()].concat()
}
