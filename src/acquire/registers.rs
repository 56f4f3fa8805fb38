//! Register maps without I/O: data types, word orders, decoding, and read planning.
//!
//! Planning coalesces the registers of one device into the fewest Modbus requests once at
//! start-up; decoding turns the returned words back into numbers for each point.

use std::fmt;

/// Largest number of registers one FC03/FC04 request may ask for (Modbus application spec).
pub const MAX_REGS_PER_READ: u16 = 125;

/// Which Modbus table a register lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Function code 03.
    Holding,
    /// Function code 04.
    Input,
}

impl Table {
    pub fn parse(s: &str) -> Option<Table> {
        match s {
            "holding" => Some(Table::Holding),
            "input" => Some(Table::Input),
            _ => None,
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Holding => "holding",
            Table::Input => "input",
        })
    }
}

/// How the words of one value are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    F32,
    F64,
}

impl DataType {
    pub fn parse(s: &str) -> Option<DataType> {
        match s {
            "u16" => Some(DataType::U16),
            "i16" => Some(DataType::I16),
            "u32" => Some(DataType::U32),
            "i32" => Some(DataType::I32),
            "f32" => Some(DataType::F32),
            "f64" => Some(DataType::F64),
            _ => None,
        }
    }

    /// Number of 16-bit registers the type occupies.
    pub fn words(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::F64 => 4,
        }
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, DataType::F32 | DataType::F64)
    }
}

/// Byte order of a multi-register value, named after the bytes of a 32-bit value `ABCD`
/// (A most significant).
///
/// The name encodes two independent choices, which generalise to 64-bit values:
/// whether the registers come most-significant first (`ABCD`, `BADC`) or last (`CDAB`, `DCBA`),
/// and whether the two bytes inside each register are swapped (`BADC`, `DCBA`).
/// 123.456f32 = 0x42F6E979 is sent as `42F6 E979` (ABCD), `E979 42F6` (CDAB),
/// `F642 79E9` (BADC) and `79E9 F642` (DCBA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WordOrder {
    #[default]
    Abcd,
    Cdab,
    Badc,
    Dcba,
}

impl WordOrder {
    pub fn parse(s: &str) -> Option<WordOrder> {
        match s {
            "ABCD" => Some(WordOrder::Abcd),
            "CDAB" => Some(WordOrder::Cdab),
            "BADC" => Some(WordOrder::Badc),
            "DCBA" => Some(WordOrder::Dcba),
            _ => None,
        }
    }

    fn registers_reversed(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }

    fn bytes_swapped(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }
}

/// Assembles the raw big-endian bits of a value from its registers in wire order.
fn assemble(regs: &[u16], order: WordOrder) -> u64 {
    let word = |w: u16| {
        if order.bytes_swapped() { w.swap_bytes() } else { w }
    };
    let fold = |acc: u64, w: &u16| (acc << 16) | u64::from(word(*w));
    if order.registers_reversed() { regs.iter().rev().fold(0, fold) } else { regs.iter().fold(0, fold) }
}

/// Decodes one value from exactly `ty.words()` registers. Returns `None` if the slice has the
/// wrong length. Non-finite floats are returned as they are; the caller decides what they mean.
pub fn decode(regs: &[u16], ty: DataType, order: WordOrder) -> Option<f64> {
    if regs.len() != usize::from(ty.words()) {
        return None;
    }
    let bits = assemble(regs, order);
    Some(match ty {
        DataType::U16 => f64::from(bits as u16),
        DataType::I16 => f64::from(bits as u16 as i16),
        DataType::U32 => f64::from(bits as u32),
        DataType::I32 => f64::from(bits as u32 as i32),
        DataType::F32 => f32_decimal(f32::from_bits(bits as u32)),
        DataType::F64 => f64::from_bits(bits),
    })
}

/// An f32 as the f64 of its shortest decimal representation: an analyzer's 20.9 (the f32
/// nearest to it, 20.899999618530273 when widened bit for bit) is 20.9, the number it meant, in
/// the store, `probe`, exports and frames. Non-finite values are widened as they are.
pub fn f32_decimal(x: f32) -> f64 {
    if !x.is_finite() {
        return f64::from(x);
    }
    // Display prints the shortest decimal that reads back as the same f32.
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// `v` to 15 significant digits (all an f64 holds exactly): the noise of binary arithmetic on a
/// decimal reading goes (209 × 0.1 = 20.900000000000002 → 20.9), its digits stay.
pub fn decimal(v: f64) -> f64 {
    if !v.is_finite() {
        return v;
    }
    format!("{v:.14e}").parse().unwrap_or(v)
}

/// Encodes a value into registers in wire order (the inverse of [`decode`]); used by the
/// simulator and by tests.
pub fn encode(value: f64, ty: DataType, order: WordOrder) -> Vec<u16> {
    let bits: u64 = match ty {
        DataType::U16 => u64::from(value as u16),
        DataType::I16 => u64::from(value as i16 as u16),
        DataType::U32 => u64::from(value as u32),
        DataType::I32 => u64::from(value as i32 as u32),
        DataType::F32 => u64::from((value as f32).to_bits()),
        DataType::F64 => value.to_bits(),
    };
    let n = usize::from(ty.words());
    let mut regs: Vec<u16> = (0..n).map(|i| (bits >> (16 * (n - 1 - i))) as u16).collect();
    if order.bytes_swapped() {
        regs.iter_mut().for_each(|w| *w = w.swap_bytes());
    }
    if order.registers_reversed() {
        regs.reverse();
    }
    regs
}

/// Where one value lives on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterRef {
    pub table: Table,
    pub address: u16,
    pub ty: DataType,
    pub order: WordOrder,
}

impl RegisterRef {
    /// One past the last register, as u32 so that it cannot overflow.
    pub fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.ty.words())
    }
}

/// One Modbus read request and the values it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// `(value index, offset of its first register within this block)`.
    pub members: Vec<(usize, u16)>,
}

impl ReadBlock {
    /// The registers of one member, or `None` when the reply was short.
    pub fn slice<'a>(&self, regs: &'a [u16], offset: u16, ty: DataType) -> Option<&'a [u16]> {
        regs.get(usize::from(offset)..usize::from(offset) + usize::from(ty.words()))
    }
}

/// Coalesces values into the fewest read requests.
///
/// Values of the same table are merged while the hole between them is at most `max_gap`
/// registers and the request stays within [`MAX_REGS_PER_READ`]. Every input index appears in
/// exactly one block. Blocks come out sorted by table and address.
pub fn plan_reads(values: &[RegisterRef], max_gap: u16) -> Vec<ReadBlock> {
    let spans: Vec<Span> =
        values.iter().map(|v| Span { table: v.table, address: v.address, words: v.ty.words() }).collect();
    plan_spans(&spans, max_gap)
}

/// A run of registers to read: a value of any width (a time of six registers, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub table: Table,
    pub address: u16,
    /// Registers, at most [`MAX_REGS_PER_READ`].
    pub words: u16,
}

impl Span {
    fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.words)
    }
}

/// [`plan_reads`] for spans of any width.
pub fn plan_spans(values: &[Span], max_gap: u16) -> Vec<ReadBlock> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by_key(|&i| (values[i].table, values[i].address, values[i].words));
    let mut blocks: Vec<ReadBlock> = Vec::new();
    for i in order {
        let v = values[i];
        let fits = blocks.last().is_some_and(|b| {
            let block_end = u32::from(b.start) + u32::from(b.count);
            b.table == v.table
                && u32::from(v.address) <= block_end + u32::from(max_gap)
                && v.end().max(block_end) - u32::from(b.start) <= u32::from(MAX_REGS_PER_READ)
        });
        if fits {
            let b = blocks.last_mut().expect("checked above");
            let end = v.end().max(u32::from(b.start) + u32::from(b.count));
            b.count = (end - u32::from(b.start)) as u16;
            b.members.push((i, v.address - b.start));
        } else {
            blocks.push(ReadBlock {
                table: v.table,
                start: v.address,
                count: v.words,
                members: vec![(i, 0)],
            });
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: [(WordOrder, [u16; 2]); 4] = [
        (WordOrder::Abcd, [0x42F6, 0xE979]),
        (WordOrder::Cdab, [0xE979, 0x42F6]),
        (WordOrder::Badc, [0xF642, 0x79E9]),
        (WordOrder::Dcba, [0x79E9, 0xF642]),
    ];

    #[test]
    fn f32_123_456_in_all_four_word_orders() {
        for (order, regs) in ORDERS {
            let v = decode(&regs, DataType::F32, order).unwrap();
            assert_eq!(v, 123.456, "{order:?}");
            assert_eq!(encode(123.456, DataType::F32, order), regs.to_vec(), "{order:?}");
        }
    }

    #[test]
    fn integers_and_f64_round_trip_in_all_orders() {
        let cases = [
            (DataType::U16, 65535.0),
            (DataType::I16, -1234.0),
            (DataType::U32, 4_000_000_000.0),
            (DataType::I32, -2_000_000_000.0),
            (DataType::F32, 20.9),
            (DataType::F32, 123.456),
            (DataType::F64, -123456.789012345),
        ];
        for (ty, value) in cases {
            for (order, _) in ORDERS {
                let regs = encode(value, ty, order);
                assert_eq!(regs.len(), usize::from(ty.words()));
                assert_eq!(decode(&regs, ty, order), Some(value), "{ty:?} {order:?}");
            }
        }
    }

    #[test]
    fn f32_readings_keep_their_decimal_digits() {
        for x in [20.9f32, 123.456, 0.1, 1e-7, 3.4e38, -17.25, 0.0] {
            let v = f32_decimal(x);
            assert_eq!(v.to_string(), x.to_string(), "{x}");
            assert_eq!(v as f32, x, "the same f32 back");
        }
        assert!(f32_decimal(f32::NAN).is_nan());
        assert_eq!(f32_decimal(f32::INFINITY), f64::INFINITY);
        assert_eq!(decimal(209.0 * 0.1), 20.9);
        assert_eq!(decimal(4_000_000_001.0 * 0.001), 4_000_000.001);
        assert_eq!(decimal(1.0 / 3.0), 0.333333333333333);
    }

    #[test]
    fn known_register_values() {
        // 0x41A73333 is the f32 nearest 20.9: it decodes to 20.9, not 20.899999618530273.
        assert_eq!(decode(&[0x41A7, 0x3333], DataType::F32, WordOrder::Abcd), Some(20.9));
        assert_eq!(decode(&[0x42F6, 0xE979], DataType::F32, WordOrder::Abcd), Some(123.456));
        assert_eq!(decode(&[0x420C, 0x0000], DataType::F32, WordOrder::Abcd), Some(35.0));
        assert_eq!(decode(&[0xFFFF], DataType::I16, WordOrder::Abcd), Some(-1.0));
        // f64 1.0 = 0x3FF0_0000_0000_0000; CDAB reverses all four registers.
        assert_eq!(decode(&[0, 0, 0, 0x3FF0], DataType::F64, WordOrder::Cdab), Some(1.0));
        assert_eq!(decode(&[0, 0], DataType::U16, WordOrder::Abcd), None, "length checked");
    }

    fn f32_at(table: Table, address: u16) -> RegisterRef {
        RegisterRef { table, address, ty: DataType::F32, order: WordOrder::Abcd }
    }

    #[test]
    fn plan_merges_within_gap_and_splits_tables() {
        let values = [
            f32_at(Table::Holding, 4),
            f32_at(Table::Holding, 0),
            f32_at(Table::Input, 0),
            f32_at(Table::Holding, 10), // gap 4 after 0..6 → merged with max_gap 4
            f32_at(Table::Holding, 30), // gap 18 → new block
        ];
        let blocks = plan_reads(&values, 4);
        assert_eq!(blocks.len(), 3);
        assert_eq!((blocks[0].table, blocks[0].start, blocks[0].count), (Table::Holding, 0, 12));
        assert_eq!(blocks[0].members, vec![(1, 0), (0, 4), (3, 10)]);
        assert_eq!((blocks[1].start, blocks[1].count), (30, 2));
        assert_eq!((blocks[2].table, blocks[2].start, blocks[2].count), (Table::Input, 0, 2));
    }

    #[test]
    fn plan_respects_the_125_register_ceiling() {
        let values: Vec<RegisterRef> = (0..100).map(|i| f32_at(Table::Holding, i * 2)).collect();
        let blocks = plan_reads(&values, 0);
        assert_eq!(blocks.len(), 2);
        assert!(blocks.iter().all(|b| b.count <= MAX_REGS_PER_READ));
        assert_eq!(blocks[0].count, 124, "62 floats fit, the 63rd would need 126");
        let members: usize = blocks.iter().map(|b| b.members.len()).sum();
        assert_eq!(members, 100);
    }

    #[test]
    fn plan_handles_overlap_and_top_of_address_space() {
        let values = [
            RegisterRef { table: Table::Holding, address: 65534, ty: DataType::F32, order: WordOrder::Abcd },
            RegisterRef { table: Table::Holding, address: 65535, ty: DataType::U16, order: WordOrder::Abcd },
        ];
        let blocks = plan_reads(&values, 0);
        assert_eq!(blocks.len(), 1);
        assert_eq!((blocks[0].start, blocks[0].count), (65534, 2));
    }
}
