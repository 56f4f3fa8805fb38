//! The CRC of HJ 212-2017 Annex A.
//!
//! Not CRC-16/MODBUS: the register is replaced by `(reg >> 8) ^ byte` before the eight shifts
//! with 0xA001, instead of having the byte XORed into its low half. The standard's own example
//! frame gives 1C80 (its prose misprints 1C08); `"123456789"` gives 2F80 (MODBUS would give 4B37).

/// The CRC of a data segment (from `QN=` to the closing `&&`).
pub fn crc(data: &[u8]) -> u16 {
    let mut reg: u16 = 0xFFFF;
    for &byte in data {
        reg = (reg >> 8) ^ u16::from(byte);
        for _ in 0..8 {
            let lsb = reg & 1;
            reg >>= 1;
            if lsb != 0 {
                reg ^= 0xA001;
            }
        }
    }
    reg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(crc(b""), 0xFFFF);
        assert_eq!(crc(b"123456789"), 0x2F80);
        let annex_a = b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
        assert_eq!(crc(annex_a), 0x1C80);
        // CRC-16/MODBUS of "123456789" is 4B37: the algorithms differ.
        assert_ne!(crc(b"123456789"), 0x4B37);
    }

    #[test]
    fn any_single_byte_change_is_detected() {
        let base =
            b"QN=20160801085857223;ST=31;CN=2011;PW=123456;MN=88888880000001;Flag=5;CP=&&a21026-Rtd=12.3&&"
                .to_vec();
        let good = crc(&base);
        for i in 0..base.len() {
            for delta in [1u8, 7, 0x20, 0x80] {
                let mut bad = base.clone();
                bad[i] = bad[i].wrapping_add(delta);
                assert_ne!(crc(&bad), good, "byte {i} + {delta}");
            }
        }
    }
}
