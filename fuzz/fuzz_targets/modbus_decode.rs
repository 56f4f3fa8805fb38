//! Fuzz target: arbitrary analyzer replies decoded by a device's read plan. The bytes choose a
//! device (every data type, word order and status rule), then per request block an outcome:
//! registers (any count, so also too short or too long), lost, or exception 4. Decoding must
//! give exactly one sample per point, never panic, and never a non-finite value.
#![no_main]

use std::sync::OnceLock;

use cems_gateway::acquire::DevicePlan;
use cems_gateway::acquire::plan::BlockResult;
use libfuzzer_sys::fuzz_target;

const DEVICES: &str = r#"
[[device]]
name = "mixed"
bus = "sim"
slave = 9
poll_interval_s = 1
outlet = "kiln-tail"
  [[device.status]]
  address = 40
  type = "u16"
  match = "value"
  map = { 1 = "M", 2 = "D", 3 = "C" }
  [[device.status]]
  table = "input"
  address = 41
  type = "i16"
  match = "value"
  map = { 0 = "F" }
  [[device.point]]
  factor = "a01"
  address = 0
  type = "u16"
  scale = 0.1
  [[device.point]]
  factor = "a02"
  address = 1
  type = "i16"
  offset = -40.0
  [[device.point]]
  factor = "a03"
  address = 2
  type = "u32"
  word_order = "CDAB"
  [[device.point]]
  factor = "a04"
  address = 4
  type = "i32"
  word_order = "BADC"
  [[device.point]]
  factor = "a05"
  address = 6
  type = "f32"
  word_order = "DCBA"
  range_max = 100.0
  [[device.point]]
  factor = "a06"
  address = 8
  type = "f64"
  scale = 1e300
  [[device.point]]
  factor = "a07"
  address = 200
  type = "f32"
"#;

fn plans() -> &'static Vec<DevicePlan> {
    static PLANS: OnceLock<Vec<DevicePlan>> = OnceLock::new();
    PLANS.get_or_init(|| {
        let text = format!("{}{DEVICES}", cems_gateway::config::DEMO_CONFIG);
        let config = cems_gateway::config::validate::parse(&text, std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("fuzz configuration: {e:?}"));
        config.devices.into_iter().map(DevicePlan::new).collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else { return };
    let plans = plans();
    let plan = &plans[usize::from(pick) % plans.len()];
    let mut results = Vec::new();
    for _ in &plan.blocks {
        let Some((&tag, tail)) = rest.split_first() else { break };
        rest = tail;
        results.push(match tag % 4 {
            0 | 1 => {
                let n = usize::from(tag / 4).min(rest.len() / 2);
                let (words, tail) = rest.split_at(n * 2);
                rest = tail;
                BlockResult::Ok(words.chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]])).collect())
            }
            2 => BlockResult::Lost,
            _ => BlockResult::DeviceFailure,
        });
    }
    let samples = plan.decode(&results, 1_000);
    assert_eq!(samples.len(), plan.device.points.len());
    for s in &samples {
        assert!(s.value.is_none_or(f64::is_finite), "non-finite value reached a sample: {s:?}");
    }
});
