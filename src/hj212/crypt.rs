//! HJ 212-2025 §6.4 encryption of the CP data area: SM4, ECB, no padding (`sm4` crate).
//!
//! Only the characters between `CP=&&` and the closing `&&` are encrypted, in whole 16-byte
//! blocks; a tail shorter than a block stays plain. The cipher bytes are written as
//! `{0xE4,0x3E,…}` followed by the plain tail. Pure: strings in, strings out.
//!
//! **Why the CRC cannot be checked before decrypting, and what is checked instead.** The CRC of
//! an encrypted frame covers the *plaintext* segment (HJ 212-2025 §6.4, Appendix A.2: CRC
//! first, then encryption; the standard's two examples were recomputed byte for byte), so it
//! can only be verified once the cipher text is decrypted. What a receiver can do, and what
//! `frame::decode_with` does, is to check the whole envelope strictly before any SM4 work
//! (header, four-digit length, CR LF tail, four hex CRC digits, and through [`Sealed::parse`] a
//! well-formed, capped cipher list of whole blocks), so that SM4 only ever runs on at most
//! [`MAX_CIPHER_BYTES`] bytes per key tried, and then to verify the length and the CRC
//! immediately after decrypting, before the plaintext is parsed.
//!
//! The length field of an encrypted frame is ambiguous in the standard (its examples print the
//! plaintext length, the bytes on the wire are about five times as many): [`LengthRule`] makes
//! it a per-platform choice, and decoding accepts either.

use std::fmt;

use sm4::Sm4;
use sm4::cipher::generic_array::GenericArray;
use sm4::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};

const BLOCK: usize = 16;
/// Most cipher bytes in one data area: a CP holds at most 950 characters (table 3).
pub const MAX_CIPHER_BYTES: usize = 1024;
/// Longest cipher list accepted between the braces: `0xNN,` per byte.
pub const MAX_CIPHER_TEXT: usize = MAX_CIPHER_BYTES * 5;

/// A 16-byte SM4 key. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; BLOCK]);

impl Key {
    /// A key from its 16 characters (the form platforms register and push in `NewSK`).
    pub fn from_text(text: &str) -> Option<Key> {
        let bytes: [u8; BLOCK] = text.as_bytes().try_into().ok()?;
        Some(Key(bytes))
    }

    /// The 16 characters, to persist the key. Handle with care: it is a secret.
    pub fn expose(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    fn cipher(&self) -> Sm4 {
        Sm4::new(GenericArray::from_slice(&self.0))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<secret>)")
    }
}

/// Which length an encrypted frame's length field gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthRule {
    /// The plaintext data segment's length, as the standard's Appendix A.2 examples print it.
    Plain,
    /// The length of the data segment as sent (with the `{0x..}` cipher text).
    Wire,
}

/// Why an encrypted data area cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptError {
    #[error("no CP=&&…&& data area")]
    NoCp,
    #[error("cipher text is not a {{0xNN,…}} list of whole 16-byte blocks")]
    BadCipherText,
    #[error("decrypted data area is not text (wrong key?)")]
    NotText,
}

/// The bounds of the CP body in a segment: after `CP=&&`, before the final `&&`.
fn cp_body(segment: &str) -> Option<(usize, usize)> {
    let start = segment.find("CP=&&")? + 5;
    let end = segment.len().checked_sub(2).filter(|e| *e >= start && segment.ends_with("&&"))?;
    Some((start, end))
}

/// Encrypts the CP body of a plaintext data segment.
pub fn encrypt_segment(segment: &str, key: &Key) -> Result<String, CryptError> {
    let (start, end) = cp_body(segment).ok_or(CryptError::NoCp)?;
    let body = &segment.as_bytes()[start..end];
    // The cipher and the plain tail must each be text on its own, as the reader decodes them:
    // a multi-byte character (a log line's Chinese or full-width text, C.40) is never split
    // between them, so the cipher stops at the last block boundary that is a character
    // boundary (for ASCII, the last one; found by the `uplink_session` fuzz target).
    let mut whole = body.len() / BLOCK * BLOCK;
    while whole > 0 && !segment.is_char_boundary(start + whole) {
        whole -= BLOCK;
    }
    let cipher = key.cipher();
    let mut out = String::with_capacity(segment.len() + whole * 4 + 2);
    out.push_str(&segment[..start]);
    if whole > 0 {
        out.push('{');
        for (i, chunk) in body[..whole].chunks(BLOCK).enumerate() {
            let mut block = GenericArray::clone_from_slice(chunk);
            cipher.encrypt_block(&mut block);
            for (j, b) in block.iter().enumerate() {
                if i > 0 || j > 0 {
                    out.push(',');
                }
                out.push_str(&format!("0x{b:02X}"));
            }
        }
        out.push('}');
    }
    out.push_str(&segment[start + whole..]);
    Ok(out)
}

/// Whether a data segment carries an encrypted CP body.
pub fn is_encrypted(segment: &str) -> bool {
    segment.contains("CP=&&{0x") || segment.contains("CP=&&{0X")
}

/// The cipher text of an encrypted data segment, checked and parsed, not yet decrypted: what
/// precedes the `{0xNN,…}` list, the list's bytes, and what follows it.
///
/// [`Sealed::parse`] does every check that needs no key: the list follows the first `CP=&&`
/// directly and is closed, every item is `0x` and two hex digits, the bytes come in whole
/// 16-byte blocks, at most [`MAX_CIPHER_BYTES`] of them. Only then does [`Sealed::open`] spend
/// SM4 work, once per key tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed<'a> {
    head: &'a str,
    bytes: Vec<u8>,
    tail: &'a str,
}

impl<'a> Sealed<'a> {
    /// The cipher list of a segment as received. Checked slicing only: any text gives a value
    /// or an error, never a panic.
    pub fn parse(segment: &'a str) -> Result<Sealed<'a>, CryptError> {
        let open = segment.find("CP=&&").ok_or(CryptError::NoCp)? + 5;
        if segment.as_bytes().get(open) != Some(&b'{') {
            return Err(CryptError::BadCipherText);
        }
        let rest = segment.get(open + 1..).ok_or(CryptError::BadCipherText)?;
        let close = rest.find('}').ok_or(CryptError::BadCipherText)?;
        let list = rest.get(..close).ok_or(CryptError::BadCipherText)?;
        if list.len() > MAX_CIPHER_TEXT {
            return Err(CryptError::BadCipherText);
        }
        let bytes: Vec<u8> = list
            .split(',')
            .map(|t| {
                let t = t.trim();
                let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"))?;
                (hex.len() == 2 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| u8::from_str_radix(hex, 16).ok())
                    .flatten()
            })
            .collect::<Option<_>>()
            .ok_or(CryptError::BadCipherText)?;
        if bytes.is_empty() || !bytes.len().is_multiple_of(BLOCK) || bytes.len() > MAX_CIPHER_BYTES {
            return Err(CryptError::BadCipherText);
        }
        let head = segment.get(..open).ok_or(CryptError::BadCipherText)?;
        let tail = rest.get(close + 1..).ok_or(CryptError::BadCipherText)?;
        Ok(Sealed { head, bytes, tail })
    }

    /// The plaintext segment's length in bytes, known before decrypting (SM4 ECB without
    /// padding keeps the length).
    pub fn plain_len(&self) -> usize {
        self.head.len() + self.bytes.len() + self.tail.len()
    }

    /// Decrypts with `key`: the plaintext data segment, or `NotText` when the key does not
    /// give text without control characters (a wrong key, or bytes that were never cipher text).
    pub fn open(&self, key: &Key) -> Result<String, CryptError> {
        let cipher = key.cipher();
        let mut plain = Vec::with_capacity(self.bytes.len());
        for chunk in self.bytes.chunks(BLOCK) {
            let mut block = GenericArray::clone_from_slice(chunk);
            cipher.decrypt_block(&mut block);
            plain.extend_from_slice(&block);
        }
        // A data area is text without control characters. What a wrong key gives is rarely even
        // UTF-8, but when it is, its CRC-16 can still match by chance (found by fuzzing with two
        // keys): refusing control characters makes a wrong key's text vanishingly rare.
        let plain = String::from_utf8(plain).map_err(|_| CryptError::NotText)?;
        if plain.chars().any(char::is_control) {
            return Err(CryptError::NotText);
        }
        Ok(format!("{}{plain}{}", self.head, self.tail))
    }
}

/// Decrypts the CP body of a data segment as received; a plain segment is returned unchanged.
///
/// The list is checked before any block is decrypted (see [`Sealed::parse`]). Whatever the
/// text, this returns an error, never panics.
pub fn decrypt_segment(segment: &str, key: &Key) -> Result<String, CryptError> {
    if !is_encrypted(segment) {
        return Ok(segment.to_string());
    }
    Sealed::parse(segment)?.open(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_a_short_tail_plain() {
        let key = Key::from_text("0123456789abcdef").unwrap();
        for body in ["", "a=1", "DataTime=20261129103000", &"x=12345678,".repeat(7)] {
            let seg = format!("QN=1;ST=31;CN=2051;PW=123456;MN=M;Flag=9;CP=&&{body}&&");
            let enc = encrypt_segment(&seg, &key).unwrap();
            let tail = &body[body.len() / 16 * 16..];
            assert!(enc.ends_with(&format!("{tail}&&")), "{enc}");
            assert_eq!(is_encrypted(&enc), body.len() >= 16);
            assert_eq!(decrypt_segment(&enc, &key).unwrap(), seg);
        }
    }

    #[test]
    fn a_multi_byte_character_at_a_block_boundary_stays_whole() {
        // A log line (C.40) in Chinese or with full-width separators: wherever the characters
        // fall, the frame decrypts back to itself (it could not before: the tail was repaired).
        let key = Key::from_text("0123456789abcdef").unwrap();
        for pad in 0..16 {
            for text in ["＆；，", "炉窑停炉检修", "°C"] {
                let body =
                    format!("DataTime=20261129103000;{}i21001-Info=//{}//", "x".repeat(pad), text.repeat(9));
                let seg = format!("QN=1;ST=31;CN=3020;PW=123456;MN=M;Flag=8;CP=&&{body}&&");
                let enc = encrypt_segment(&seg, &key).unwrap();
                assert!(is_encrypted(&enc), "{enc}");
                assert_eq!(decrypt_segment(&enc, &key).unwrap(), seg);
            }
        }
    }

    #[test]
    fn a_wrong_key_or_a_broken_list_is_an_error_not_a_panic() {
        let key = Key::from_text("0123456789abcdef").unwrap();
        let other = Key::from_text("fedcba9876543210").unwrap();
        let seg = "ST=31;CP=&&DataTime=20261129103000;a21026-Rtd=1.0&&";
        let enc = encrypt_segment(seg, &key).unwrap();
        assert!(
            decrypt_segment(&enc, &other).is_err_and(|e| e == CryptError::NotText) || {
                // A wrong key can by chance give valid UTF-8; it then differs from the plaintext.
                decrypt_segment(&enc, &other).unwrap() != seg
            }
        );
        assert_eq!(decrypt_segment("CP=&&{0xZZ}&&", &key), Err(CryptError::BadCipherText));
        assert_eq!(decrypt_segment("CP=&&{0x01}&&", &key), Err(CryptError::BadCipherText));
        assert_eq!(decrypt_segment("CP=&&{0x01", &key), Err(CryptError::BadCipherText));
        assert_eq!(format!("{key:?}"), "Key(<secret>)");
    }

    #[test]
    fn a_closing_brace_before_the_cipher_list_is_an_error_not_a_panic() {
        // Found in review: the first CP=&& followed by `}` and a later CP=&&{0x made the cipher
        // list's end come before its start, and the slice panicked before any CRC check.
        let key = Key::from_text("0123456789abcdef").unwrap();
        for seg in [
            "QN=1;CP=&&}&&CP=&&{0x01}&&",
            "CP=&&}CP=&&{0x",
            "CP=&&{0x",
            "CP=&&x{0x01}&&CP=&&{0x02}&&",
            "CP=&&{0x\u{e9}}&&",
            "CP=&&{0x01,é}&&",
        ] {
            assert!(decrypt_segment(seg, &key).is_err(), "{seg}");
        }
        let huge = format!("CP=&&{{{}}}&&", vec!["0x01"; MAX_CIPHER_BYTES + 16].join(","));
        assert_eq!(decrypt_segment(&huge, &key), Err(CryptError::BadCipherText));
    }
}
