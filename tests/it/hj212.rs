//! The HJ 212 codec against the published frames (tests/data/hj212-vectors.tsv, from the
//! standard and public implementations, CRCs rechecked), stream decoding with garbage,
//! splitting of long records, and encode → decode round trips.

use cems_gateway::hj212::frame::{FLAG_SPLIT, MAX_SEGMENT, Version};
use cems_gateway::hj212::{Cp, Decoded, Decoder, EncodeError, FrameError, Packet, decode, split};
use proptest::prelude::*;

fn vectors() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hj212-vectors.tsv"))
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_string(), cols[1].to_string(), cols[2].to_string())
        })
        .collect()
}

#[test]
fn every_published_frame_verifies_or_is_rejected_with_its_reason() {
    let all = vectors();
    assert!(all.len() >= 12);
    for (source, frame, expected) in all {
        let result = decode(&frame);
        match expected.as_str() {
            "valid" => {
                let p = result.unwrap_or_else(|e| panic!("{source}: {e}"));
                // Frames in the standard's form come out byte for byte as they went in (one
                // published frame has a 24-character PW: accepted on input, never emitted).
                if p.qn.is_some() && p.flag.is_some() && p.packets.is_none() && p.pw.len() == 6 {
                    assert_eq!(p.encode().unwrap(), format!("{frame}\r\n"), "{source}");
                }
            }
            e if e.starts_with("invalid: crc") => {
                assert!(matches!(result, Err(FrameError::Crc { .. })), "{source}: {result:?}")
            }
            e if e.starts_with("invalid: length") => assert!(
                matches!(result, Err(FrameError::Length { declared: 102, actual: 101 })),
                "{source}: {result:?}"
            ),
            other => panic!("unknown expectation {other}"),
        }
    }
}

#[test]
fn the_annex_a_example_gives_1c80_and_decodes_to_its_fields() {
    let p = decode("##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n").unwrap();
    assert_eq!(
        (p.qn.as_deref(), p.st.as_str(), p.cn.as_str(), p.flag),
        (Some("20160801085857223"), "32", "1062", Some(5))
    );
    assert!(p.wants_ack());
    assert_eq!(p.cp.get("RtdInterval"), Some("30"));
    // Lower-case CRC, as some platforms send it, is accepted; we never emit it.
    assert!(decode("##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1c80").is_ok());
    assert!(p.encode().unwrap().ends_with("1C80\r\n"));
}

#[test]
fn a_2005_style_split_frame_without_flag_is_understood() {
    let (_, frame, _) = vectors().into_iter().find(|(s, _, _)| s.contains("split packet")).unwrap();
    let p = decode(&frame).unwrap();
    assert_eq!((p.flag, p.packets), (None, Some((2, 2))), "PNO before PNUM, zero-padded");
    assert_eq!(p.encode(), Err(EncodeError::Missing("Flag")), "accepted on input, never emitted");
}

fn packet(cp: Cp) -> Packet {
    Packet {
        qn: Some("20261129080000123".into()),
        st: "31".into(),
        cn: "2051".into(),
        pw: "123456".into(),
        mn: "88888880000001".into(),
        flag: Some(Version::V2017.flag(true, false)),
        packets: None,
        rf: false,
        cp,
    }
}

#[test]
fn the_stream_decoder_resynchronises_on_garbage() {
    let good =
        packet(Cp::single(&[("DataTime", "20261129075900"), ("a21026-Avg", "12.3")])).encode().unwrap();
    let mut bad_crc = good.clone().into_bytes();
    let n = bad_crc.len();
    bad_crc[n - 3] = if bad_crc[n - 3] == b'0' { b'1' } else { b'0' };
    let mut stream = b"\x00\xffnoise##zz".to_vec();
    stream.extend(&bad_crc);
    stream.extend(good.as_bytes());
    stream.extend(b"##00");
    let mut d = Decoder::default();
    let mut packets = Vec::new();
    let mut skipped = Vec::new();
    // Fed in awkward pieces.
    for chunk in stream.chunks(7) {
        d.push(chunk);
        while let Some(x) = d.next_frame() {
            match x {
                Decoded::Packet(p) => packets.push(p),
                Decoded::Skipped { error, .. } => skipped.push(error),
            }
        }
    }
    assert_eq!(packets.len(), 1, "the good frame after the bad one: {skipped:?}");
    assert_eq!(packets[0].cp.get("a21026-Avg"), Some("12.3"));
    assert!(skipped.iter().any(|e| matches!(e, FrameError::Crc { .. })), "{skipped:?}");
    assert!(skipped.iter().any(|e| matches!(e, FrameError::BadLengthField(_))), "{skipped:?}");
    assert!(d.next_frame().is_none(), "the partial header waits for more bytes");
}

/// A log in Chinese (C.40: UTF-8 between `//`): the length field counts the bytes a receiver
/// reads from the stream, so the frame comes through the stream decoder whole.
#[test]
fn a_frame_with_utf8_text_counts_bytes_and_survives_the_stream() {
    let mut p = packet(Cp::single(&[
        ("DataTime", "20160801085857"),
        ("PolId", "w01018"),
        ("i11001-Info", "//清洗管路//"),
    ]));
    p.cn = "3020".into();
    let frame = p.encode().unwrap();
    let segment_bytes = frame.len() - 6 - 4 - 2;
    assert_eq!(frame[2..6].parse::<usize>().unwrap(), segment_bytes, "{frame}");
    let mut d = Decoder::default();
    for chunk in format!("{frame}{frame}").as_bytes().chunks(5) {
        d.push(chunk);
    }
    let mut got = Vec::new();
    while let Some(x) = d.next_frame() {
        match x {
            Decoded::Packet(p) => got.push(p),
            Decoded::Skipped { error, .. } => panic!("skipped: {error}"),
        }
    }
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].cp.get("i11001-Info"), Some("//清洗管路//"));
}

#[test]
fn a_stray_hash_before_the_header_does_not_eat_it() {
    // "#" + "##0087…": the first "##" found has a bad length field ("#008"); the real header
    // starts one byte later and must still be found.
    let good = packet(Cp::single(&[("DataTime", "20261129075900")])).encode().unwrap();
    let mut d = Decoder::default();
    d.push(format!("x#{good}").as_bytes());
    let mut packets = 0;
    while let Some(x) = d.next_frame() {
        packets += usize::from(matches!(x, Decoded::Packet(_)));
    }
    assert_eq!(packets, 1);
}

#[test]
fn long_records_are_split_into_packets_of_at_most_1024() {
    let mut items = vec![vec![("DataTime".to_string(), "20261129075900".to_string())]];
    for i in 0..60 {
        let code = format!("a{:05}", 21000 + i);
        items.push(vec![
            (format!("{code}-Min"), "12.345".into()),
            (format!("{code}-Avg"), "13.456".into()),
            (format!("{code}-Max"), "14.567".into()),
            (format!("{code}-Flag"), "N".into()),
        ]);
    }
    let record = packet(Cp(items.clone()));
    assert!(matches!(record.encode(), Err(EncodeError::TooLong(_))));
    let mut n = 0;
    let packets = split(&record, |i| {
        n += 1;
        format!("2026112908000{:04}", 123 + i)
    })
    .unwrap();
    assert!(packets.len() >= 3);
    let mut seen = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let frame = p.encode().unwrap();
        let back = decode(&frame).unwrap();
        assert_eq!(&back, p);
        assert!(frame.len() - 12 <= MAX_SEGMENT);
        assert_eq!(p.packets, Some((packets.len() as u32, i as u32 + 1)));
        assert_eq!(p.flag.unwrap() & FLAG_SPLIT, FLAG_SPLIT);
        assert_eq!(p.cp.get("DataTime"), Some("20261129075900"), "every packet repeats DataTime");
        seen.extend(p.cp.0.iter().filter(|it| it[0].0 != "DataTime").cloned());
    }
    assert_eq!(seen, items[1..].to_vec(), "every factor once, in order");
    let qns: std::collections::BTreeSet<_> = packets.iter().map(|p| p.qn.clone()).collect();
    assert_eq!(qns.len(), packets.len(), "each packet has its own QN");
    // A record that fits stays one packet.
    let small = packet(Cp::single(&[("DataTime", "20261129075900")]));
    assert_eq!(split(&small, |_| unreachable!()).unwrap(), vec![small.clone()]);
}

/// Table 3: the CP field (`CP=&&…&&`, its name included) holds at most 950 characters, which a
/// frame with a short MN reaches before its segment reaches 1024: the splitter keeps both.
#[test]
fn every_cp_field_stays_within_950_characters() {
    let mut items = vec![vec![("DataTime".to_string(), "20261129075900".to_string())]];
    for i in 0..16 {
        let code = format!("a{:05}", 21000 + i);
        items.push(vec![
            (format!("{code}-Avg"), "13.456789".into()),
            (format!("{code}-Max"), "14.567891".into()),
            (format!("{code}-Flag"), "N".into()),
        ]);
    }
    items.push(vec![("a99999-Avg".into(), "1.5".into()), ("a99999-Flag".into(), "N".into())]);
    let mut record = packet(Cp(items.clone()));
    record.mn = "MN1".into();
    let segment = record.segment().len();
    let cp = format!("CP=&&{}&&", record.cp).len();
    assert!(segment <= MAX_SEGMENT && cp > 950, "segment {segment} fits, CP {cp} does not");
    assert!(matches!(record.encode(), Err(EncodeError::CpTooLong(n)) if n == cp));
    let packets = split(&record, |i| format!("2026112908000{:04}", 123 + i)).unwrap();
    assert_eq!(packets.len(), 2);
    for p in &packets {
        let frame = p.encode().unwrap();
        let cp_field = &frame[frame.find("CP=&&").unwrap()..frame.len() - 6];
        assert!(cp_field.len() <= 950, "{}", cp_field.len());
        assert_eq!(decode(&frame).unwrap(), *p);
    }
    let seen: Vec<_> =
        packets.iter().flat_map(|p| p.cp.0.iter().filter(|it| it[0].0 != "DataTime").cloned()).collect();
    assert_eq!(seen, items[1..].to_vec(), "every factor once, in order");
}

#[test]
fn only_standard_packets_are_emitted() {
    let mut p = packet(Cp::default());
    p.qn = None;
    assert_eq!(p.encode(), Err(EncodeError::Missing("QN")));
    let mut p = packet(Cp::default());
    p.pw = "12345".into();
    assert!(matches!(p.encode(), Err(EncodeError::Invalid { field: "PW", .. })));
    let p = packet(Cp::single(&[("a21026-Rtd", "1;2")]));
    assert!(matches!(p.encode(), Err(EncodeError::Invalid { field: "CP", .. })));
    assert_eq!(Version::V2017.flag(true, false), 5);
    assert_eq!(Version::V2017.flag(false, true), 6);
    assert_eq!(Version::V2025.flag(true, false), 9);
}

fn value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.+-]{0,12}"
}

/// Regression: cargo fuzz found that a multi-byte character straddling the CRC position made
/// `decode` panic on a string split.
#[test]
fn a_multibyte_character_where_the_crc_should_be_is_an_error_not_a_panic() {
    let crash: &[u8] = b"##00g##0003e*\xc8\xb0000\r\n\x001\xff\xff\xff";
    let mut d = Decoder::default();
    d.push(crash);
    while d.next_frame().is_some() {}
    assert_eq!(decode("##0003e*\u{230}000"), Err(FrameError::NotText));
}

proptest! {
    #[test]
    fn encode_then_decode_gives_the_packet_back(
        qn in "[0-9]{17}",
        st in "[0-9A-Z]{2}",
        cn in "[0-9]{4}",
        pw in "[A-Za-z0-9]{6}",
        mn in "[A-Za-z0-9]{1,24}",
        flag in 0u8..=255,
        items in proptest::collection::vec(proptest::collection::vec(("[a-zA-Z][a-zA-Z0-9-]{0,14}", value()), 1..4), 0..12),
    ) {
        let p = Packet { qn: Some(qn), st, cn, pw, mn, flag: Some(flag), packets: None, rf: false, cp: Cp(items) };
        match p.encode() {
            Ok(frame) => prop_assert_eq!(decode(&frame).unwrap(), p),
            Err(EncodeError::TooLong(_)) => {}
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn the_decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut d = Decoder::default();
        d.push(&bytes);
        let mut steps = 0;
        while d.next_frame().is_some() {
            steps += 1;
            prop_assert!(steps <= bytes.len() + 1);
        }
        let _ = decode(&String::from_utf8_lossy(&bytes));
    }
}

/// HJ 212-2025 Appendix A.2: the standard's SM4 examples, byte for byte. CRC over the
/// plaintext, cipher text in whole blocks, a short tail left plain, the plaintext length in the
/// length field; decoding with the key gives the plaintext packet back.
#[test]
fn the_2025_appendix_a2_sm4_examples_match_byte_for_byte() {
    use cems_gateway::hj212::crypt::{Key, LengthRule, encrypt_segment};
    use cems_gateway::hj212::frame::decode_with;
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hj212-2025-sm4.tsv"))
        .unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let [name, key, plain, cipher_hex, encrypted] = row[..] else { panic!("bad row {row:?}") };
        let key = Key::from_text(key).unwrap();
        let packet = decode(plain).unwrap_or_else(|e| panic!("{name}: plaintext frame: {e}"));
        assert_eq!(packet.flag, Some(9), "{name}");
        let segment = &plain[6..plain.len() - 4];
        let wire = encrypt_segment(segment, &key).unwrap();
        let listed: String = wire
            .split_once('{')
            .and_then(|(_, r)| r.split_once('}'))
            .map(|(l, _)| l.split(',').map(|b| b.trim_start_matches("0x")).collect())
            .unwrap();
        assert_eq!(listed, cipher_hex, "{name}: cipher text");
        let frame = packet.encode_encrypted(&key, LengthRule::Plain).unwrap();
        assert_eq!(frame, format!("{encrypted}\r\n"), "{name}: whole frame");
        assert_eq!(decode_with(encrypted, std::slice::from_ref(&key)).unwrap(), packet, "{name}: decrypts");
        let wire_len = packet.encode_encrypted(&key, LengthRule::Wire).unwrap();
        assert_eq!(&wire_len[2..6], format!("{:04}", wire.len()), "{name}: wire length rule");
        assert_eq!(
            decode_with(&wire_len, std::slice::from_ref(&key)).unwrap(),
            packet,
            "{name}: wire length decodes"
        );
        assert!(decode_with(encrypted, &[]).is_err(), "{name}: no key, no packet");

        // In a stream, between garbage and a plain frame, with the plaintext length rule.
        let mut d = Decoder::default();
        d.set_keys(vec![Key::from_text("1111111111111111").unwrap(), key.clone()]);
        let mut stream = b"junk".to_vec();
        stream.extend(frame.as_bytes());
        stream.extend(plain.as_bytes());
        stream.extend(b"\r\n");
        let mut got = Vec::new();
        for chunk in stream.chunks(13) {
            d.push(chunk);
            while let Some(x) = d.next_frame() {
                if let Decoded::Packet(p) = x {
                    got.push(p);
                }
            }
        }
        assert_eq!(got, vec![packet.clone(), packet], "{name}: stream");
    }
}

/// `RF=1` (HJ 212-2025) sits after PNUM/PNO and before CP, and round-trips; it is never written
/// as `RF=0`.
#[test]
fn the_rf_backfill_field_round_trips() {
    let mut p = packet(Cp::single(&[("DataTime", "20261129075900")]));
    p.flag = Some(Version::V2025.flag(true, false));
    assert!(!p.encode().unwrap().contains("RF="));
    p.rf = true;
    let frame = p.encode().unwrap();
    assert!(frame.contains(";Flag=9;RF=1;CP=&&"), "{frame}");
    assert_eq!(decode(&frame).unwrap(), p);
}
