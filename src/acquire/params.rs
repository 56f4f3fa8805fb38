//! Key analyzer parameters (HJ 212-2017 table B.10: working state `i12001`, range `i13001`,
//! calibration time `i13006`, intercept `i13007`, slope `i13008`, …): their register layouts,
//! the read plan of a device's parameters (planned and coalesced once, like its points, with
//! [`plan_spans`]), and the pure decoding of what was read. No I/O.
//!
//! Layouts (`type` of a `[[device.parameter]]`):
//! - a number, `u16` … `f64` in a word order as for points, times `scale`. An integer may go
//!   through `map` (device value → HJ 212 code, e.g. a status word's 4 → i12001 6 "power
//!   fault"); a value the map does not list is reported as read (so a register that already
//!   holds table B.10 codes needs no map).
//! - `time-bcd`: four registers of BCD digits `YYYY MMDD hhmm ss··`, e.g. `0x2026 0x1206
//!   0x1530 0x4500` is 2026-12-06 15:30:45. The low byte of the fourth register is not read
//!   (analyzers put hundredths or a weekday there).
//! - `time-fields`: six registers, one binary field each: year (2026, or 26 for 2026), month,
//!   day, hour, minute, second.
//!
//! A time is given as `YYYYMMDDhhmmss` (table B.10's format for i13006), a number in its
//! shortest form rounded to six decimals (`500`, `1.02`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::plan::BlockResult;
use super::registers::{DataType, ReadBlock, Span, Table, WordOrder, decode, plan_spans};

/// How a parameter's registers hold its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Number {
        ty: DataType,
        order: WordOrder,
    },
    /// Four registers of BCD digits: `YYYY MMDD hhmm ss··`.
    TimeBcd,
    /// Six registers: year, month, day, hour, minute, second.
    TimeFields,
}

impl Layout {
    /// Registers the value occupies.
    pub fn words(self) -> u16 {
        match self {
            Layout::Number { ty, .. } => ty.words(),
            Layout::TimeBcd => 4,
            Layout::TimeFields => 6,
        }
    }

    pub fn is_time(self) -> bool {
        matches!(self, Layout::TimeBcd | Layout::TimeFields)
    }
}

/// One `[[device.parameter]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// Table B.10 code, e.g. `i13001`.
    pub code: String,
    pub table: Table,
    pub address: u16,
    pub layout: Layout,
    pub scale: f64,
    /// Device value → HJ 212 code (integer layouts only).
    pub map: BTreeMap<i64, i64>,
    pub poll_interval: Duration,
    /// The factor the parameter belongs to; `None`: every point of the device.
    pub pol: Option<String>,
    pub unit: String,
}

impl Parameter {
    fn span(&self) -> Span {
        Span { table: self.table, address: self.address, words: self.layout.words() }
    }
}

/// A decoded parameter value.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// As HJ 212 carries it: `500`, `1.02`, `20261206153045`.
    pub text: String,
    /// The number, for a numeric layout (a range feeds the `T` threshold).
    pub number: Option<f64>,
}

/// A parameter value read, for the evidence store (which keeps it when it changed).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device: std::sync::Arc<str>,
    pub code: String,
    pub pol: Option<String>,
    /// When it was read, Unix ms.
    pub ts_ms: i64,
    pub value: String,
}

/// Why registers do not give a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the reply is short")]
    Short,
    #[error("register {0:04X} is not BCD")]
    NotBcd(u16),
    #[error("{0} is not a time")]
    NotATime(String),
    #[error("the value is not a finite number")]
    NotFinite,
}

/// A number as a parameter value: rounded to six decimals, shortest form.
pub fn format_number(v: f64) -> String {
    let r = (v * 1e6).round() / 1e6;
    let r = if r == 0.0 { 0.0 } else { r };
    format!("{r}")
}

/// Decodes one parameter from exactly its registers.
pub fn decode_value(p: &Parameter, words: &[u16]) -> Result<Value, DecodeError> {
    if words.len() != usize::from(p.layout.words()) {
        return Err(DecodeError::Short);
    }
    match p.layout {
        Layout::Number { ty, order } => {
            let raw = decode(words, ty, order).ok_or(DecodeError::Short)?;
            if !raw.is_finite() {
                return Err(DecodeError::NotFinite);
            }
            if ty.is_integer()
                && let Some(code) = p.map.get(&(raw as i64))
            {
                return Ok(Value { text: code.to_string(), number: Some(*code as f64) });
            }
            let v = raw * p.scale;
            Ok(Value { text: format_number(v), number: Some(v) })
        }
        Layout::TimeBcd => {
            let bcd = |w: u16| -> Result<u32, DecodeError> {
                let digits = [w >> 12, (w >> 8) & 0xF, (w >> 4) & 0xF, w & 0xF];
                if digits.iter().any(|d| *d > 9) {
                    return Err(DecodeError::NotBcd(w));
                }
                Ok(digits.iter().fold(0, |acc, d| acc * 10 + u32::from(*d)))
            };
            let year = bcd(words[0])?;
            let md = bcd(words[1])?;
            let hm = bcd(words[2])?;
            let sec = bcd(words[3] & 0xFF00)? / 100;
            time_text(year, md / 100, md % 100, hm / 100, hm % 100, sec)
        }
        Layout::TimeFields => {
            let f: Vec<u32> = words.iter().map(|w| u32::from(*w)).collect();
            let year = if f[0] < 100 { 2000 + f[0] } else { f[0] };
            time_text(year, f[1], f[2], f[3], f[4], f[5])
        }
    }
}

/// `YYYYMMDDhhmmss`, when the fields make a real date and time.
fn time_text(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Result<Value, DecodeError> {
    let text = format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}");
    let date = u8::try_from(month)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .and_then(|m| time::Date::from_calendar_date(year as i32, m, day.min(255) as u8).ok());
    let ok = (1970..=2099).contains(&year) && date.is_some() && hour < 24 && minute < 60 && second < 60;
    if ok { Ok(Value { text, number: None }) } else { Err(DecodeError::NotATime(text)) }
}

/// Parameters of one device read together: those with the same poll interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub interval: Duration,
    /// Indexes into [`ParamPlan::params`].
    pub members: Vec<usize>,
    /// The requests; a block member index is a position in `members`.
    pub blocks: Vec<ReadBlock>,
}

/// A device's parameter reads, planned once at start-up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamPlan {
    pub params: Vec<Parameter>,
    pub groups: Vec<Group>,
}

impl ParamPlan {
    /// Groups by poll interval, each coalesced with `max_gap` like the device's points.
    pub fn new(params: &[Parameter], max_gap: u16) -> ParamPlan {
        let mut by_interval: BTreeMap<Duration, Vec<usize>> = BTreeMap::new();
        for (i, p) in params.iter().enumerate() {
            by_interval.entry(p.poll_interval).or_default().push(i);
        }
        let groups = by_interval
            .into_iter()
            .map(|(interval, members)| {
                let spans: Vec<Span> = members.iter().map(|&i| params[i].span()).collect();
                Group { interval, blocks: plan_spans(&spans, max_gap), members }
            })
            .collect();
        ParamPlan { params: params.to_vec(), groups }
    }

    /// Decodes one read of a group: per parameter (its index), the value or why there is none.
    /// `results` has one entry per block, in block order.
    pub fn decode(&self, group: usize, results: &[BlockResult]) -> Vec<(usize, Result<Value, String>)> {
        let Some(g) = self.groups.get(group) else { return Vec::new() };
        let mut out = Vec::with_capacity(g.members.len());
        for (block, result) in g.blocks.iter().zip(results.iter().map(Some).chain(std::iter::repeat(None))) {
            for &(position, offset) in &block.members {
                let index = g.members[position];
                let p = &self.params[index];
                let value = match result {
                    Some(BlockResult::Ok(regs)) => regs
                        .get(usize::from(offset)..usize::from(offset) + usize::from(p.layout.words()))
                        .ok_or(DecodeError::Short)
                        .and_then(|words| decode_value(p, words))
                        .map_err(|e| e.to_string()),
                    Some(BlockResult::DeviceFailure) => Err("the analyzer reported a device failure".into()),
                    Some(BlockResult::Lost) | None => Err("not read".into()),
                };
                out.push((index, value));
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(code: &str, address: u16, layout: Layout) -> Parameter {
        Parameter {
            code: code.into(),
            table: Table::Holding,
            address,
            layout,
            scale: 1.0,
            map: BTreeMap::new(),
            poll_interval: Duration::from_secs(60),
            pol: None,
            unit: String::new(),
        }
    }

    fn f32_abcd() -> Layout {
        Layout::Number { ty: DataType::F32, order: WordOrder::Abcd }
    }

    #[test]
    fn bcd_time_reads_the_documented_layout() {
        let p = param("i13006", 0, Layout::TimeBcd);
        let v = decode_value(&p, &[0x2026, 0x1206, 0x1530, 0x4500]).unwrap();
        assert_eq!(v.text, "20261206153045");
        assert_eq!(v.number, None);
        // The low byte of the fourth register (hundredths, weekday) is not read.
        assert_eq!(decode_value(&p, &[0x2026, 0x1206, 0x1530, 0x4507]).unwrap().text, "20261206153045");
        assert_eq!(decode_value(&p, &[0x2026, 0x12A6, 0x1530, 0x4500]), Err(DecodeError::NotBcd(0x12A6)));
        assert_eq!(
            decode_value(&p, &[0x2026, 0x0231, 0x1530, 0x4500]),
            Err(DecodeError::NotATime("20260231153045".into())),
            "31 February"
        );
        assert_eq!(decode_value(&p, &[0x2026, 0x1206, 0x2460, 0]).map(|v| v.text).ok(), None, "24:60");
        assert_eq!(decode_value(&p, &[0x2026, 0x1206]), Err(DecodeError::Short));
    }

    #[test]
    fn time_fields_read_one_register_per_field() {
        let p = param("i13006", 0, Layout::TimeFields);
        assert_eq!(decode_value(&p, &[2026, 12, 6, 15, 30, 45]).unwrap().text, "20261206153045");
        assert_eq!(decode_value(&p, &[26, 1, 9, 8, 5, 0]).unwrap().text, "20260109080500", "two-digit year");
        assert!(decode_value(&p, &[2026, 13, 6, 15, 30, 45]).is_err(), "month 13");
        assert!(decode_value(&p, &[0, 0, 0, 0, 0, 0]).is_err(), "an analyzer never calibrated");
    }

    #[test]
    fn numbers_are_scaled_and_integers_mapped() {
        let mut range = param("i13001", 0, f32_abcd());
        assert_eq!(
            decode_value(&range, &[0x43FA, 0x0000]).unwrap(),
            Value { text: "500".into(), number: Some(500.0) }
        );
        range.scale = 0.1;
        assert_eq!(decode_value(&range, &[0x43FA, 0x0000]).unwrap().text, "50");
        let mut state = param("i12001", 0, Layout::Number { ty: DataType::U16, order: WordOrder::Abcd });
        state.map = BTreeMap::from([(4, 6), (0, 0)]);
        assert_eq!(decode_value(&state, &[4]).unwrap().text, "6", "device 4 → power fault");
        assert_eq!(decode_value(&state, &[3]).unwrap().text, "3", "not in the map: as read");
        let nan = param("i13008", 0, f32_abcd());
        assert_eq!(decode_value(&nan, &[0x7FC0, 0]), Err(DecodeError::NotFinite));
        assert_eq!(format_number(0.1 * 3.0), "0.3");
        assert_eq!(format_number(1.02), "1.02");
        assert_eq!(format_number(-0.0), "0");
    }

    #[test]
    fn a_plan_groups_by_interval_and_coalesces_like_points() {
        let mut params = vec![
            param("i13001", 100, f32_abcd()),
            param("i13008", 102, f32_abcd()),
            param("i13006", 110, Layout::TimeFields),
            param("i12001", 20, Layout::Number { ty: DataType::U16, order: WordOrder::Abcd }),
        ];
        params[3].poll_interval = Duration::from_secs(5);
        let plan = ParamPlan::new(&params, 8);
        assert_eq!(plan.groups.len(), 2);
        assert_eq!(plan.groups[0].interval, Duration::from_secs(5));
        assert_eq!(plan.groups[0].members, vec![3]);
        let slow = &plan.groups[1];
        assert_eq!(slow.blocks.len(), 1, "100..104 and 110..116 are 6 apart");
        assert_eq!((slow.blocks[0].start, slow.blocks[0].count), (100, 16));
        let mut regs = vec![0u16; 16];
        regs[0..2].copy_from_slice(&[0x43FA, 0]);
        regs[2..4].copy_from_slice(&[0x3F82, 0x8F5C]);
        regs[10..16].copy_from_slice(&[2026, 12, 6, 15, 30, 45]);
        let got = plan.decode(1, &[BlockResult::Ok(regs)]);
        let text: Vec<(usize, String)> =
            got.iter().map(|(i, v)| (*i, v.as_ref().map(|v| v.text.clone()).unwrap_or_default())).collect();
        assert_eq!(text, vec![(0, "500".into()), (1, "1.02".into()), (2, "20261206153045".into())]);
        let lost = plan.decode(1, &[BlockResult::Lost]);
        assert!(lost.iter().all(|(_, v)| v.is_err()));
        assert!(plan.decode(1, &[]).iter().all(|(_, v)| v.is_err()), "no result: not read");
    }
}
