//! A device's read plan, computed once, and the pure decoding of one poll's replies into samples.

use std::sync::Arc;

use super::flags::{point_flag, status_flag, worst};
use super::registers::{ReadBlock, RegisterRef, decode, plan_reads};
use crate::config::{Device, PointSource};
use crate::model::{Flag, Sample};

/// What the bus task needs to poll one device, built once at start-up.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub device: Arc<Device>,
    pub name: Arc<str>,
    pub factors: Vec<Arc<str>>,
    /// Requests for points and status registers together. Member indexes below
    /// `device.points.len()` are points, the rest status registers.
    pub blocks: Vec<ReadBlock>,
    registers: Vec<RegisterRef>,
    /// Per point, the value above which a reading is `T`: the configured `range_max`, or the
    /// analyzer's own range once an i13001 parameter has been read ([`DevicePlan::set_range`]).
    ranges: Vec<Option<f64>>,
}

/// Outcome of one block of a poll.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockResult {
    /// The registers as returned.
    Ok(Vec<u16>),
    /// Not read: communication failed or the poll stopped before it.
    Lost,
    /// The analyzer answered with Modbus exception 4 (server device failure).
    DeviceFailure,
}

impl DevicePlan {
    pub fn new(device: Device) -> DevicePlan {
        let mut registers: Vec<RegisterRef> = device
            .points
            .iter()
            .filter_map(|p| match &p.source {
                PointSource::Register(r) => Some(*r),
                PointSource::Capture(_) | PointSource::Code(_) => None,
            })
            .collect();
        let is_modbus = registers.len() == device.points.len();
        if !is_modbus {
            registers.clear();
        }
        registers.extend(device.status.iter().map(|s| s.register));
        let blocks = if is_modbus { plan_reads(&registers, device.max_gap) } else { Vec::new() };
        DevicePlan {
            ranges: device.points.iter().map(|p| p.range_max).collect(),
            name: Arc::from(device.name.as_str()),
            factors: device.points.iter().map(|p| Arc::from(p.factor.as_str())).collect(),
            device: Arc::new(device),
            blocks,
            registers,
        }
    }

    /// The analyzer's range (i13001) as read: it replaces the configured `range_max` of the
    /// points of `pol` (every point when `None`) for the `T` flag. Returns the points whose
    /// threshold changed, with the old one. A range that is not positive is not used.
    pub fn set_range(&mut self, pol: Option<&str>, max: f64) -> Vec<(Arc<str>, Option<f64>)> {
        let mut changed = Vec::new();
        if !(max > 0.0 && max.is_finite()) {
            return changed;
        }
        for (i, factor) in self.factors.iter().enumerate() {
            if pol.is_none_or(|p| p == &**factor) && self.ranges[i] != Some(max) {
                changed.push((factor.clone(), self.ranges[i]));
                self.ranges[i] = Some(max);
            }
        }
        changed
    }

    /// The `T` threshold of a point in force.
    pub fn range(&self, factor: &str) -> Option<f64> {
        self.factors.iter().position(|f| &**f == factor).and_then(|i| self.ranges[i])
    }

    /// Samples for a poll in which nothing could be read: every point flagged `B`, no value.
    pub fn comm_failure(&self, ts_ms: i64) -> Vec<Sample> {
        self.factors
            .iter()
            .map(|f| Sample {
                ts_ms,
                device: self.name.clone(),
                factor: f.clone(),
                value: None,
                flag: Flag::B,
            })
            .collect()
    }

    /// Decodes one poll. `results` has one entry per block, in block order.
    ///
    /// If any status register could not be read, the analyzer's state is unknown and every
    /// point is flagged `B` without a value: a reading whose validity cannot be attested is
    /// not passed off as normal.
    pub fn decode(&self, results: &[BlockResult], ts_ms: i64) -> Vec<Sample> {
        let n_points = self.device.points.len();
        let mut values: Vec<Option<Result<f64, Flag>>> = vec![None; self.registers.len()];
        for (block, result) in self.blocks.iter().zip(results) {
            for &(index, offset) in &block.members {
                let reg = self.registers[index];
                values[index] = Some(match result {
                    BlockResult::Ok(regs) => block
                        .slice(regs, offset, reg.ty)
                        .and_then(|words| decode(words, reg.ty, reg.order))
                        .ok_or(Flag::B),
                    BlockResult::Lost => Err(Flag::B),
                    BlockResult::DeviceFailure => Err(Flag::D),
                });
            }
        }
        let mut state = Vec::with_capacity(self.device.status.len());
        for (i, status) in self.device.status.iter().enumerate() {
            match values.get(n_points + i).copied().flatten() {
                Some(Ok(raw)) => state.push(status_flag(&status.rule, raw as i64)),
                // The analyzer itself reported a failure: its state is "fault".
                Some(Err(Flag::D)) => state.push(Flag::D),
                _ => return self.comm_failure(ts_ms),
            }
        }
        let device_flag = worst(state);
        self.device
            .points
            .iter()
            .zip(&self.factors)
            .enumerate()
            .map(|(i, (point, factor))| {
                let (value, flag) = match values.get(i).copied().flatten() {
                    Some(Ok(raw)) => point_flag(device_flag, point.scaled(raw), self.ranges[i]),
                    Some(Err(flag)) => (None, worst([flag, device_flag])),
                    None => (None, Flag::B),
                };
                Sample { ts_ms, device: self.name.clone(), factor: factor.clone(), value, flag }
            })
            .collect()
    }

    /// Samples from the captures of an ASCII reply (`None` for a point whose capture is absent
    /// → `B`; a capture that is not a number → `D`).
    /// Samples from the CP of an HJ 212 real-time upload: `<code>-Rtd` is the value,
    /// `<code>-Flag` the sender's flag (N when absent). A point missing from the frame is `B`
    /// without a value; a value that is not a number, or a flag this gateway does not know, is
    /// `D`: the reading cannot be attested. Scale, offset and the range check apply as for
    /// polled points.
    pub fn decode_hj212(&self, cp: &crate::hj212::Cp, ts_ms: i64) -> Vec<Sample> {
        self.device
            .points
            .iter()
            .zip(&self.factors)
            .map(|(point, factor)| {
                let code = match &point.source {
                    PointSource::Code(c) => c.as_str(),
                    _ => point.factor.as_str(),
                };
                let sent_flag = match cp.get(&format!("{code}-Flag")) {
                    None => Flag::N,
                    Some(f) => {
                        let mut chars = f.chars();
                        match (chars.next().and_then(Flag::from_char), chars.next()) {
                            (Some(flag), None) => flag,
                            _ => Flag::D,
                        }
                    }
                };
                let (value, flag) = match cp.get(&format!("{code}-Rtd")).map(|t| t.trim().parse::<f64>()) {
                    Some(Ok(raw)) => point_flag(sent_flag, point.scaled(raw), point.range_max),
                    Some(Err(_)) => (None, super::flags::worst([sent_flag, Flag::D])),
                    None if sent_flag != Flag::N => (None, sent_flag),
                    None => (None, Flag::B),
                };
                Sample { ts_ms, device: self.name.clone(), factor: factor.clone(), value, flag }
            })
            .collect()
    }

    pub fn decode_ascii(&self, captures: &[Option<String>], ts_ms: i64) -> Vec<Sample> {
        self.device
            .points
            .iter()
            .zip(&self.factors)
            .zip(captures)
            .map(|((point, factor), text)| {
                let (value, flag) = match text.as_deref().map(|t| t.trim().parse::<f64>()) {
                    Some(Ok(raw)) => point_flag(Flag::N, point.scaled(raw), point.range_max),
                    Some(Err(_)) => (None, Flag::D),
                    None => (None, Flag::B),
                };
                Sample { ts_ms, device: self.name.clone(), factor: factor.clone(), value, flag }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::acquire::registers::{DataType, Table, WordOrder, encode};
    use crate::config::{Point, Protocol, StatusRegister, StatusRule};

    fn point(factor: &str, address: u16, range_max: Option<f64>) -> Point {
        Point {
            factor: factor.into(),
            source: PointSource::Register(RegisterRef {
                table: Table::Holding,
                address,
                ty: DataType::F32,
                order: WordOrder::Cdab,
            }),
            scale: 1.0,
            offset: 0.0,
            unit: "mg/m3".into(),
            range_max,
            basis: Default::default(),
        }
    }

    fn device() -> Device {
        Device {
            name: "gas".into(),
            bus: 0,
            slave: 1,
            poll_interval: Duration::from_secs(5),
            outlet: None,
            max_gap: 8,
            protocol: Protocol::Modbus,
            points: vec![point("a21026", 0, Some(100.0)), point("a21002", 2, None)],
            status: vec![StatusRegister {
                register: RegisterRef {
                    table: Table::Holding,
                    address: 20,
                    ty: DataType::U16,
                    order: WordOrder::Abcd,
                },
                rule: StatusRule::Value(BTreeMap::from([(3, Flag::C)])),
            }],
            parameters: Vec::new(),
        }
    }

    fn regs(so2: f64, nox: f64, status: u16) -> Vec<u16> {
        let mut r = encode(so2, DataType::F32, WordOrder::Cdab);
        r.extend(encode(nox, DataType::F32, WordOrder::Cdab));
        r.resize(20, 0);
        r.push(status);
        r
    }

    #[test]
    fn a_gap_wider_than_max_gap_splits_the_requests() {
        let plan = DevicePlan::new(device());
        assert_eq!(plan.blocks.len(), 2, "registers 0..4 and 20 are 16 apart, max_gap is 8");
    }

    #[test]
    fn decode_flags_by_status_and_range() {
        let mut dev = device();
        dev.max_gap = 20;
        let plan = DevicePlan::new(dev);
        assert_eq!(plan.blocks.len(), 1);
        let s = plan.decode(&[BlockResult::Ok(regs(150.0, 40.0, 0))], 7);
        assert_eq!((s[0].value, s[0].flag), (Some(150.0), Flag::T));
        assert_eq!((s[1].value, s[1].flag), (Some(40.0), Flag::N));
        let s = plan.decode(&[BlockResult::Ok(regs(150.0, 40.0, 3))], 7);
        assert_eq!(s[0].flag, Flag::C);
        assert_eq!(s[1].flag, Flag::C);
        let s = plan.decode(&[BlockResult::Lost], 7);
        assert!(s.iter().all(|x| x.flag == Flag::B && x.value.is_none()));
        let s = plan.decode(&[BlockResult::Ok(vec![1, 2])], 7);
        assert!(s.iter().all(|x| x.flag == Flag::B && x.value.is_none()), "short reply");
    }

    #[test]
    fn the_analyzers_range_replaces_range_max_for_t() {
        let mut dev = device();
        dev.max_gap = 20;
        let mut plan = DevicePlan::new(dev);
        assert_eq!(plan.decode(&[BlockResult::Ok(regs(150.0, 40.0, 0))], 7)[0].flag, Flag::T);
        let changed = plan.set_range(Some("a21026"), 500.0);
        assert_eq!(changed, vec![(Arc::from("a21026"), Some(100.0))]);
        assert_eq!(plan.range("a21026"), Some(500.0));
        assert_eq!(plan.range("a21002"), None, "another factor keeps its own");
        let s = plan.decode(&[BlockResult::Ok(regs(150.0, 40.0, 0))], 7);
        assert_eq!((s[0].value, s[0].flag), (Some(150.0), Flag::N));
        assert_eq!(plan.decode(&[BlockResult::Ok(regs(501.0, 40.0, 0))], 7)[0].flag, Flag::T);
        assert!(plan.set_range(Some("a21026"), 500.0).is_empty(), "unchanged");
        assert!(plan.set_range(None, 0.0).is_empty(), "a zero range is not used");
        assert_eq!(plan.set_range(None, 50.0).len(), 2, "no pol: every point");
    }
}
