//! HJ 212 (the national emission-data transmission standard): the packet codec, pure and
//! without I/O. Sessions towards the provincial platforms build on it.
//!
//! - [`crc`]: the Annex A checksum (not CRC-16/MODBUS).
//! - [`frame`]: packets, the CP data area, encoding, decoding, splitting, stream decoding.

pub mod crc;
pub mod frame;
pub mod message;

pub use frame::{Cp, Decoded, Decoder, EncodeError, FrameError, Packet, Version, decode, split};
