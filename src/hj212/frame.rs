//! HJ 212 packets: `##` + 4-digit length + data segment + 4 hex CRC + CR LF, and the data
//! segment's fields `QN;ST;CN;PW;MN;Flag;[PNUM;PNO;]CP=&&…&&` (HJ 212-2017 §6.3, tables 3 and 4).
//!
//! Pure: strings and bytes in, typed values or typed errors out, no I/O. On input it accepts what
//! real devices and platforms send (lower-case CRC, no QN or Flag in 2005-style frames, PNO
//! before PNUM, zero-padded packet numbers, frames over 1024 characters); on output it emits
//! only the standard form (upper-case CRC, every field, at most 1024 characters, [`split`] for
//! longer records).

use std::fmt;

use super::crc::crc;
use super::crypt::{CryptError, Key, LengthRule, MAX_CIPHER_TEXT, Sealed, encrypt_segment, is_encrypted};

/// Longest data segment the standard allows; longer records are split into packets.
pub const MAX_SEGMENT: usize = 1024;
/// Longest data segment accepted on input (the length field has four digits).
pub const MAX_ACCEPTED: usize = 9999;
/// Longest `CP=&&…&&` field the standard allows (table 3: 0 ≤ n ≤ 950, the name included).
pub const MAX_CP: usize = 950;
/// Longest data segment accepted on input as it is sent: an encrypted CP is longer on the wire
/// than the length field may say (its cipher list, at most [`MAX_CIPHER_TEXT`] characters and
/// its braces, stands for a quarter as many plaintext bytes).
pub const MAX_WIRE_SEGMENT: usize = MAX_ACCEPTED + MAX_CIPHER_TEXT + 2;
/// Longest frame accepted on input, in bytes: `##`, the length field, the longest wire segment,
/// the CRC and CR LF. Anything longer is skipped by the stream [`super::Decoder`] with
/// [`FrameError::Oversized`], so no buffer of it grows beyond a few of these.
pub const MAX_FRAME: usize = 2 + 4 + MAX_WIRE_SEGMENT + 4 + 2;

/// Flag bit A: the receiver must acknowledge.
pub const FLAG_ACK: u8 = 0b01;
/// Flag bit D: the packet is one of several (PNUM/PNO present).
pub const FLAG_SPLIT: u8 = 0b10;

/// The protocol version in the Flag's bits V5..V0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HJ/T 212-2005: `000000`.
    V2005,
    /// HJ 212-2017: `000001`.
    V2017,
    /// HJ 212-2025 as far as it is known: `000010` (provisional).
    V2025,
}

impl Version {
    fn bits(self) -> u8 {
        match self {
            Version::V2005 => 0,
            Version::V2017 => 1,
            Version::V2025 => 2,
        }
    }

    /// The Flag value for this version with the given A and D bits.
    pub fn flag(self, ack: bool, split: bool) -> u8 {
        self.bits() << 2 | if split { FLAG_SPLIT } else { 0 } | if ack { FLAG_ACK } else { 0 }
    }
}

/// One field of a CP item: `key=value`, e.g. `a21026-Avg=12.3`.
pub type Field = (String, String);

/// The CP data area: items separated by `;`, each item's fields separated by `,`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cp(pub Vec<Vec<Field>>);

impl Cp {
    /// A CP whose items each hold one field, e.g. `QnRtn=1`.
    pub fn single(pairs: &[(&str, &str)]) -> Cp {
        Cp(pairs.iter().map(|(k, v)| vec![(k.to_string(), v.to_string())]).collect())
    }

    /// The value of the first field named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().flatten().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn parse(text: &str) -> Result<Cp, FrameError> {
        if text.is_empty() {
            return Ok(Cp::default());
        }
        text.split(';')
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.split(',')
                    .map(|field| match field.split_once('=') {
                        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                        _ => Err(FrameError::BadCp(field.to_string())),
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()
            .map(Cp)
    }
}

impl fmt::Display for Cp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            for (j, (k, v)) in item.iter().enumerate() {
                if j > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}={v}")?;
            }
        }
        Ok(())
    }
}

/// One packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Request number, `YYYYMMDDhhmmsszzz`; absent in 2005-style frames.
    pub qn: Option<String>,
    pub st: String,
    pub cn: String,
    pub pw: String,
    pub mn: String,
    /// Absent in 2005-style frames.
    pub flag: Option<u8>,
    /// `(PNUM, PNO)`: total packets and this packet's number, when split.
    pub packets: Option<(u32, u32)>,
    /// HJ 212-2025 `RF=1`: the packet is sent from the backlog (backfill or resend).
    pub rf: bool,
    pub cp: Cp,
}

impl Packet {
    /// Whether the sender asks for an acknowledgement (Flag bit A).
    pub fn wants_ack(&self) -> bool {
        self.flag.is_some_and(|f| f & FLAG_ACK != 0)
    }

    /// The data segment, as it is sent and as the CRC covers it.
    pub fn segment(&self) -> String {
        let mut s = String::new();
        if let Some(qn) = &self.qn {
            s.push_str(&format!("QN={qn};"));
        }
        s.push_str(&format!("ST={};CN={};PW={};MN={};", self.st, self.cn, self.pw, self.mn));
        if let Some(flag) = self.flag {
            s.push_str(&format!("Flag={flag};"));
        }
        if let Some((pnum, pno)) = self.packets {
            s.push_str(&format!("PNUM={pnum};PNO={pno};"));
        }
        if self.rf {
            s.push_str("RF=1;");
        }
        s.push_str(&format!("CP=&&{}&&", self.cp));
        s
    }

    /// The whole frame, CR LF included, in the standard form. Refuses what the standard does not
    /// allow to be sent: a segment over 1024 characters (use [`split`]), a missing QN or Flag, a
    /// QN that is not 17 digits, a password that is not 6 characters, separators in a value.
    pub fn encode(&self) -> Result<String, EncodeError> {
        let segment = self.checked_segment()?;
        // In bytes: what a receiver reading the stream must count (a log in Chinese, C.40,
        // has characters of three bytes; for ASCII both counts are the same).
        let len = segment.len();
        Ok(format!("##{len:04}{segment}{:04X}\r\n", crc(segment.as_bytes())))
    }

    /// The whole frame with the CP body encrypted (HJ 212-2025 §6.4): CRC over the plaintext
    /// segment, length field per `rule`.
    pub fn encode_encrypted(&self, key: &Key, rule: LengthRule) -> Result<String, EncodeError> {
        let segment = self.checked_segment()?;
        let wire = encrypt_segment(&segment, key).map_err(|_| EncodeError::Missing("CP"))?;
        let len = match rule {
            LengthRule::Plain => segment.chars().count(),
            LengthRule::Wire => wire.chars().count(),
        };
        if len > MAX_ACCEPTED {
            return Err(EncodeError::TooLong(len));
        }
        Ok(format!("##{len:04}{wire}{:04X}\r\n", crc(segment.as_bytes())))
    }

    fn checked_segment(&self) -> Result<String, EncodeError> {
        let qn = self.qn.as_deref().ok_or(EncodeError::Missing("QN"))?;
        if qn.len() != 17 || !qn.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EncodeError::Invalid { field: "QN", value: qn.to_string() });
        }
        self.flag.ok_or(EncodeError::Missing("Flag"))?;
        if self.pw.chars().count() != 6 {
            return Err(EncodeError::Invalid { field: "PW", value: self.pw.clone() });
        }
        for (field, value) in [("ST", &self.st), ("CN", &self.cn), ("MN", &self.mn)] {
            // The MN alone may be empty: an HJ 212-2025 logger before the platform assigned it.
            if (value.is_empty() && field != "MN") || value.contains([';', '&', '=', ',']) {
                return Err(EncodeError::Invalid { field, value: value.clone() });
            }
        }
        for (k, v) in self.cp.0.iter().flatten() {
            if k.contains([';', '&', '=', ',']) || v.contains([';', ',', '&']) {
                return Err(EncodeError::Invalid { field: "CP", value: format!("{k}={v}") });
            }
        }
        let segment = self.segment();
        let len = segment.chars().count();
        if len > MAX_SEGMENT {
            return Err(EncodeError::TooLong(len));
        }
        let cp_len = cp_field_len(&self.cp);
        if cp_len > MAX_CP {
            return Err(EncodeError::CpTooLong(cp_len));
        }
        Ok(segment)
    }
}

/// Why a packet cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{field} {value:?} is not valid")]
    Invalid { field: &'static str, value: String },
    #[error("data segment of {0} characters is over the 1024 the standard allows: split it")]
    TooLong(usize),
    #[error("CP field of {0} characters is over the 950 the standard allows: split it")]
    CpTooLong(usize),
}

/// Characters of the `CP=&&…&&` field of `cp`, as table 3 counts them.
fn cp_field_len(cp: &Cp) -> usize {
    "CP=&&&&".len() + cp.to_string().chars().count()
}

/// Why received bytes are not a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("no \"##\" header")]
    NoHeader,
    #[error("length field {0:?} is not four digits")]
    BadLengthField(String),
    #[error("length field says {declared}, the data segment has {actual} characters")]
    Length { declared: usize, actual: usize },
    #[error("data segment of {0} characters is too long")]
    TooLong(usize),
    #[error("CRC {received} received, {computed:04X} computed")]
    Crc { received: String, computed: u16 },
    #[error("frame does not end in CR LF")]
    Tail,
    #[error("data segment is not text")]
    NotText,
    #[error("field {0} is missing")]
    Missing(&'static str),
    #[error("field {field} has the invalid value {value:?}")]
    BadField { field: String, value: String },
    #[error("CP field {0:?} is not key=value")]
    BadCp(String),
    #[error("the data area is encrypted and no key decrypts it")]
    Encrypted,
    #[error("CRC field {0:?} is not four hex digits")]
    BadCrcField(String),
    #[error("encrypted data area refused before decryption: {0}")]
    Cipher(CryptError),
    #[error("no complete frame within {limit} bytes")]
    Oversized { limit: usize },
}

/// Decodes one complete frame (`##…CRC`, with or without the trailing CR LF).
pub fn decode(frame: &str) -> Result<Packet, FrameError> {
    decode_with(frame, &[])
}

/// Decodes one complete frame whose CP body may be encrypted (HJ 212-2025): each key is tried
/// in turn (the current one, then the one it replaced); the length field may give the
/// plaintext or the wire length.
///
/// The CRC of an encrypted frame covers the plaintext (see [`super::crypt`]), so it cannot be
/// checked before decrypting. Everything else is, before any SM4 work: the `##` header, a
/// four-digit length, nothing after the CRC but CR LF, four hex CRC digits, a wire segment of at
/// most [`MAX_WIRE_SEGMENT`] characters and a well-formed cipher list of whole blocks, capped
/// ([`Sealed::parse`]). Then for each key: decrypt, check the length and the CRC over the
/// plaintext, and only a segment that passes both is parsed; the first key whose plaintext
/// passes all three wins.
pub fn decode_with(frame: &str, keys: &[Key]) -> Result<Packet, FrameError> {
    let stripped = frame.strip_suffix("\r\n").unwrap_or(frame);
    let encrypted = stripped.get(6..).is_some_and(is_encrypted);
    if !encrypted {
        return decode_plain(frame);
    }
    let (declared, rest) = length_and_rest(stripped)?;
    if rest.contains(['\r', '\n']) {
        return Err(FrameError::Tail);
    }
    let (wire, crc_text) = rest.split_at_checked(rest.len().saturating_sub(4)).ok_or(FrameError::NotText)?;
    if crc_text.len() != 4 || !crc_text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FrameError::BadCrcField(crc_text.to_string()));
    }
    if wire.len() > MAX_WIRE_SEGMENT {
        return Err(FrameError::TooLong(wire.len()));
    }
    let sealed = Sealed::parse(wire).map_err(FrameError::Cipher)?;
    let wire_chars = wire.chars().count();
    let mut last = FrameError::Encrypted;
    for key in keys {
        let Ok(plain) = sealed.open(key) else { continue };
        let plain_chars = plain.chars().count();
        if declared != plain_chars && declared != wire_chars {
            last = FrameError::Length { declared, actual: plain_chars };
            continue;
        }
        // A CRC-16 can match by chance on what a wrong key gave (found by fuzzing: a frame under
        // the second key whose decryption with the first was text with a matching CRC): a
        // segment that does not parse lets the next key try.
        match check_crc(&plain, crc_text).and_then(|()| parse_segment(&plain)) {
            Ok(p) => return Ok(p),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The declared length and what follows the length field of a frame without its CR LF.
fn length_and_rest(frame: &str) -> Result<(usize, &str), FrameError> {
    let body = frame.strip_prefix("##").ok_or(FrameError::NoHeader)?;
    let len_field = body.get(..4).ok_or_else(|| FrameError::BadLengthField(body.to_string()))?;
    let declared: usize = len_field
        .parse()
        .ok()
        .filter(|_| len_field.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| FrameError::BadLengthField(len_field.to_string()))?;
    Ok((declared, &body[4..]))
}

fn decode_plain(frame: &str) -> Result<Packet, FrameError> {
    let frame = frame.strip_suffix("\r\n").unwrap_or(frame);
    let (declared, rest) = length_and_rest(frame)?;
    if rest.len() < 4 {
        return Err(FrameError::Length { declared, actual: rest.len() });
    }
    // The last four bytes must be the CRC: a multi-byte character across them is not a frame
    // (found by fuzzing: a plain split_at would panic there).
    let (segment, crc_text) = rest.split_at_checked(rest.len() - 4).ok_or(FrameError::NotText)?;
    check_length(declared, segment)?;
    check_crc(segment, crc_text)?;
    parse_segment(segment)
}

fn check_length(declared: usize, segment: &str) -> Result<(), FrameError> {
    // "Characters": bytes for ASCII, and either count is accepted for UTF-8 text.
    if declared != segment.len() && declared != segment.chars().count() {
        return Err(FrameError::Length { declared, actual: segment.chars().count() });
    }
    if declared > MAX_ACCEPTED {
        return Err(FrameError::TooLong(declared));
    }
    Ok(())
}

fn check_crc(segment: &str, crc_text: &str) -> Result<(), FrameError> {
    let computed = crc(segment.as_bytes());
    match u16::from_str_radix(crc_text, 16) {
        Ok(v) if v == computed && crc_text.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        _ => Err(FrameError::Crc { received: crc_text.to_string(), computed }),
    }
}

/// Parses a data segment (already length- and CRC-checked).
pub fn parse_segment(segment: &str) -> Result<Packet, FrameError> {
    let cp_start = segment.find("CP=&&").ok_or(FrameError::Missing("CP"))?;
    let cp_text = segment[cp_start + 5..]
        .strip_suffix("&&")
        .ok_or_else(|| FrameError::BadCp(segment[cp_start..].to_string()))?;
    let mut p = Packet {
        qn: None,
        st: String::new(),
        cn: String::new(),
        pw: String::new(),
        mn: String::new(),
        flag: None,
        packets: None,
        rf: false,
        cp: Cp::parse(cp_text)?,
    };
    let (mut pnum, mut pno) = (None, None);
    for field in segment[..cp_start].split(';').filter(|f| !f.is_empty()) {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| FrameError::BadField { field: field.to_string(), value: String::new() })?;
        let bad = || FrameError::BadField { field: key.to_string(), value: value.to_string() };
        match key {
            "QN" => p.qn = Some(value.to_string()),
            "ST" => p.st = value.to_string(),
            "CN" => p.cn = value.to_string(),
            "PW" => p.pw = value.to_string(),
            "MN" => p.mn = value.to_string(),
            "Flag" => p.flag = Some(value.parse().map_err(|_| bad())?),
            "PNUM" => pnum = Some(value.parse::<u32>().map_err(|_| bad())?),
            "PNO" => pno = Some(value.parse::<u32>().map_err(|_| bad())?),
            "RF" => {
                p.rf = match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(bad()),
                }
            }
            _ => return Err(bad()),
        }
    }
    // An empty MN is accepted: HJ 212-2025 onboarding frames carry one.
    for (name, value) in [("ST", &p.st), ("CN", &p.cn), ("PW", &p.pw)] {
        if value.is_empty() {
            return Err(FrameError::Missing(name));
        }
    }
    p.packets = match (pnum, pno) {
        (Some(n), Some(i)) if i >= 1 && i <= n => Some((n, i)),
        (None, None) => None,
        _ => {
            return Err(FrameError::BadField {
                field: "PNUM/PNO".into(),
                value: format!("{pnum:?}/{pno:?}"),
            });
        }
    };
    Ok(p)
}

/// Splits a packet whose segment would exceed [`MAX_SEGMENT`] or whose CP field would exceed
/// [`MAX_CP`] into packets within both (HJ 212-2017 C.49/C.50): Flag bit D set, `PNUM`/`PNO`, each packet repeating the
/// leading `DataTime` item and carrying a share of the other items, each with its own QN from
/// `qn_for(packet index)`. A packet that fits is returned unchanged (with `qn_for(0)` if it had
/// no QN).
pub fn split(packet: &Packet, mut qn_for: impl FnMut(usize) -> String) -> Result<Vec<Packet>, EncodeError> {
    let mut whole = packet.clone();
    if whole.qn.is_none() {
        whole.qn = Some(qn_for(0));
    }
    match whole.encode() {
        Ok(_) => return Ok(vec![whole]),
        Err(EncodeError::TooLong(_) | EncodeError::CpTooLong(_)) => {}
        Err(e) => return Err(e),
    }
    let (head, items): (Vec<Vec<Field>>, Vec<Vec<Field>>) =
        packet.cp.0.iter().cloned().partition(|item| item.iter().any(|(k, _)| k == "DataTime"));
    let flag = packet.flag.ok_or(EncodeError::Missing("Flag"))? | FLAG_SPLIT;
    // Room for PNUM/PNO of up to four digits each.
    let template = Packet {
        qn: Some("0".repeat(17)),
        flag: Some(flag),
        packets: Some((9999, 9999)),
        cp: Cp(head.clone()),
        ..packet.clone()
    };
    let base = template.segment().chars().count();
    let cp_base = cp_field_len(&Cp(head.clone()));
    let mut groups: Vec<Vec<Vec<Field>>> = vec![Vec::new()];
    let (mut used, mut cp_used) = (base, cp_base);
    for item in items {
        let size = Cp(vec![item.clone()]).to_string().chars().count() + 1;
        if base + size > MAX_SEGMENT {
            return Err(EncodeError::TooLong(base + size));
        }
        if cp_base + size > MAX_CP {
            return Err(EncodeError::CpTooLong(cp_base + size));
        }
        let full = used + size > MAX_SEGMENT || cp_used + size > MAX_CP;
        if full && !groups.last().is_some_and(Vec::is_empty) {
            groups.push(Vec::new());
            (used, cp_used) = (base, cp_base);
        }
        used += size;
        cp_used += size;
        groups.last_mut().expect("never empty").push(item);
    }
    let n = groups.len() as u32;
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            let mut cp = head.clone();
            cp.extend(group);
            let p = Packet {
                qn: Some(qn_for(i)),
                flag: Some(flag),
                packets: Some((n, i as u32 + 1)),
                cp: Cp(cp),
                ..packet.clone()
            };
            p.encode().map(|_| p)
        })
        .collect()
}
