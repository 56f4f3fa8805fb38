//! The fuzz targets' bodies, shared with the regression test that replays the corpora and crash
//! reproducers under `cargo test` (`tests/it/fuzz_corpus.rs` includes this file by path).
//! Each function takes arbitrary bytes and panics only on a broken invariant.

use std::path::Path;
use std::sync::OnceLock;

use cems_gateway::acquire::DevicePlan;
use cems_gateway::acquire::plan::BlockResult;
use cems_gateway::compute::{OutletLimits, OutletSpec, limits};
use cems_gateway::hj212::{Decoded, Decoder, decode};

/// Bytes from a platform (or an HJ 212 analyzer) into the stream decoder and the frame
/// decoder: nothing may panic or loop, and whatever decodes must encode back to a frame that
/// decodes to the same packet whenever it is in the standard form.
pub fn hj212_decode(data: &[u8]) {
    let mut decoder = Decoder::default();
    for chunk in data.chunks(97) {
        decoder.push(chunk);
        let mut steps = 0;
        while let Some(d) = decoder.next_frame() {
            steps += 1;
            assert!(steps <= data.len() + 1, "the decoder must make progress");
            if let Decoded::Packet(p) = d
                && let Ok(frame) = p.encode()
            {
                assert_eq!(decode(&frame).as_ref(), Ok(&p));
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode(text);
    }
}

/// Text as a configuration file: a `Config` or a non-empty list of errors, never a panic.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = cems_gateway::config::validate::parse(text, Path::new("/etc/cems-gateway")) {
        assert!(!errors.is_empty(), "an invalid file has at least one problem");
        for e in &errors {
            let _ = e.to_string();
        }
    }
}

/// Text as the `compliance` CSV, evaluated with every conversion in play (reference O2, run
/// status, flow from velocity): an outcome or a line-numbered error, and no non-finite figure.
pub fn compliance_csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let profile = limits::profile("cement-kiln").expect("built-in profile");
    let mut spec = OutletSpec::new(OutletLimits::resolve(Some(profile), None, &Default::default()));
    spec.run_status = Some("SB1-RS".into());
    spec.flow.duct_area_m2 = Some(12.57);
    let Ok(outcome) = cems_gateway::report::evaluate_csv_text(text, spec) else { return };
    for r in outcome.hours.iter().chain(&outcome.days) {
        for v in [r.stat.min, r.stat.avg, r.stat.max, r.stat.zs_avg, r.stat.cou].into_iter().flatten() {
            assert!(v.is_finite(), "non-finite figure in {r:?}");
        }
    }
}

/// A device with every data type, word order and a status rule of each table, beside the
/// demo's analyzers.
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
        let config = cems_gateway::config::validate::parse(&text, Path::new("."))
            .unwrap_or_else(|e| panic!("fuzz configuration: {e:?}"));
        config.devices.into_iter().map(DevicePlan::new).collect()
    })
}

/// Analyzer replies decoded by a device's read plan. The first byte chooses the device, then
/// per request block a tag byte: registers (`tag / 4` of them, so also too few or too many),
/// lost, or exception 4. One sample per point, never a panic, never a non-finite value.
pub fn modbus_decode(data: &[u8]) {
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
}
