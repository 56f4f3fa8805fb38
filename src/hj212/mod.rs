//! HJ 212 (the national emission-data transmission standard): the packet codec, pure and
//! without I/O. Sessions towards the provincial platforms build on it.
//!
//! - [`crc`]: the Annex A checksum (not CRC-16/MODBUS).
//! - [`frame`]: packets, the CP data area, encoding, decoding, splitting.
//! - [`stream`]: the stream decoder, frames out of a byte stream with every buffer capped.
//! - [`crypt`]: the HJ 212-2025 SM4 encryption of the CP data area.

pub mod crc;
pub mod crypt;
pub mod frame;
pub mod message;
pub mod stream;

pub use frame::{Cp, EncodeError, FrameError, Packet, Version, decode, split};
pub use stream::{Decoded, Decoder};
