//! Finding HJ 212 frames in a byte stream (a TCP connection or a serial line): resynchronising
//! on garbage, bounded in memory and in work per call, decrypting HJ 212-2025 frames with the
//! keys it is given. Pure: bytes in, packets or typed reasons out.

use super::crypt::Key;
use super::frame::{FrameError, MAX_FRAME, Packet, decode, decode_with};

/// Most bytes a [`Decoder`] holds, whatever its caller does: a frame in progress is never longer
/// than [`MAX_FRAME`], and a caller that pushes without taking frames out loses the oldest
/// bytes beyond this (reported as skipped) rather than growing the buffer.
pub const DECODER_CAP: usize = 4 * MAX_FRAME;

/// Finds frames in a byte stream (a TCP connection), resynchronising on garbage.
///
/// Bounded: a frame is complete within [`MAX_FRAME`] bytes of its header or skipped with
/// [`FrameError::Oversized`], searches look no further than that, and the buffer never holds
/// more than [`DECODER_CAP`] bytes. [`Decoder::junk`] counts the bytes skipped since the last
/// good frame, so that a caller can drop a peer that sends no HJ 212 at all.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// SM4 keys for encrypted frames (HJ 212-2025), current first.
    keys: Vec<Key>,
    /// Bytes skipped since the last good frame.
    junk: usize,
    /// Bytes dropped by [`Decoder::push`] at the cap, not yet reported.
    dropped: usize,
}

/// What [`Decoder::next_frame`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Packet(Packet),
    /// Bytes that are not a valid frame were skipped; the error says why.
    Skipped {
        error: FrameError,
        bytes: usize,
    },
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Decoder {
    /// Sets the keys tried on encrypted frames (the current key first, then the one it replaced).
    pub fn set_keys(&mut self, keys: Vec<Key>) {
        self.keys = keys;
    }

    /// Appends received bytes. Call [`Decoder::next_frame`] until it gives `None` after each
    /// push; bytes beyond [`DECODER_CAP`] are dropped oldest first (and reported as skipped).
    pub fn push(&mut self, bytes: &[u8]) {
        let excess = (self.buf.len() + bytes.len()).saturating_sub(DECODER_CAP);
        let from_buf = excess.min(self.buf.len());
        self.buf.drain(..from_buf);
        let from_bytes = excess - from_buf;
        self.buf.extend_from_slice(bytes.get(from_bytes..).unwrap_or_default());
        self.dropped = self.dropped.saturating_add(excess);
    }

    /// Bytes skipped since the last good frame (or since the start).
    pub fn junk(&self) -> usize {
        self.junk
    }

    /// Bytes held, waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame or skipped garbage, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<Decoded> {
        if self.dropped > 0 {
            let bytes = std::mem::take(&mut self.dropped);
            self.junk = self.junk.saturating_add(bytes);
            return Some(Decoded::Skipped { error: FrameError::Oversized { limit: DECODER_CAP }, bytes });
        }
        match find(&self.buf, b"##") {
            Some(0) => {}
            Some(i) => return Some(self.skip(i, FrameError::NoHeader)),
            None => {
                // Keep a trailing '#': it may be the first half of the next header.
                let n = self.buf.len() - usize::from(self.buf.last() == Some(&b'#'));
                return (n > 0).then(|| self.skip(n, FrameError::NoHeader));
            }
        }
        let len_field = self.buf.get(2..6)?;
        let Some(declared) = std::str::from_utf8(len_field)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
        else {
            let text = String::from_utf8_lossy(len_field).to_string();
            // Skip one byte only: in "###0087…" the real header starts at the second '#'.
            return Some(self.skip(1, FrameError::BadLengthField(text)));
        };
        // Every frame ends in CR LF within MAX_FRAME bytes of its header: no search looks
        // further, so the work per call is bounded too.
        let window = &self.buf[..self.buf.len().min(MAX_FRAME)];
        let first_crlf = find(window, b"\r\n");
        // An encrypted frame's length field may give the plaintext length: such a frame ends at
        // its CR LF (cipher text is written as hex, so it holds none).
        if find(&window[..first_crlf.unwrap_or(window.len())], b"CP=&&{").is_some() {
            let Some(end) = first_crlf else {
                // No end within the longest frame: skip the header, resynchronise after it.
                return (self.buf.len() > MAX_FRAME)
                    .then(|| self.skip(1, FrameError::Oversized { limit: MAX_FRAME }));
            };
            let result = match std::str::from_utf8(&self.buf[..end + 2]) {
                Ok(text) => decode_with(text, &self.keys),
                Err(_) => Err(FrameError::NotText),
            };
            return Some(match result {
                Ok(p) => self.take(end + 2, p),
                Err(e) => self.skip(1, e),
            });
        }
        let total = 6 + declared + 4 + 2;
        if self.buf.len() < total {
            // A frame in progress (at most MAX_ACCEPTED + 12 bytes, well under MAX_FRAME). If it
            // was cut short, the bytes that follow make it fail its tail or CRC check once
            // enough have arrived, and decoding resumes at the next "##".
            return None;
        }
        let frame = &self.buf[..total];
        if !frame.ends_with(b"\r\n") {
            return Some(self.skip(1, FrameError::Tail));
        }
        let result = match std::str::from_utf8(frame) {
            Ok(text) => decode(text),
            Err(_) => Err(FrameError::NotText),
        };
        Some(match result {
            Ok(p) => self.take(total, p),
            // A bad frame may hide the start of a good one: skip only the first byte of its header.
            Err(e) => self.skip(1, e),
        })
    }

    fn take(&mut self, n: usize, p: Packet) -> Decoded {
        self.buf.drain(..n);
        self.junk = 0;
        Decoded::Packet(p)
    }

    fn skip(&mut self, n: usize, error: FrameError) -> Decoded {
        self.buf.drain(..n);
        self.junk = self.junk.saturating_add(n);
        Decoded::Skipped { error, bytes: n }
    }
}
