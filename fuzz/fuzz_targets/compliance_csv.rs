//! Fuzz target: arbitrary text as the `compliance` CSV input, evaluated against a profile with
//! every conversion in play (reference O2, run status, flow from velocity). It must give an
//! outcome or a line-numbered error, never panic, and no non-finite figure may come out.
#![no_main]

use cems_gateway::compute::{OutletLimits, OutletSpec, limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
