//! The answer to a platform's 3020 request for field information (C.42/C.43): for now only the
//! work state of each analyzer (`i12001`: 0 running, 1 maintenance, 2 fault, 3 calibration) and
//! its communication state (`i12002`: 0 normal, 1 abnormal), read from its current flags. One
//! frame per factor (PolId), fields separated by `;` as in C.43. Pure; a later issue replaces
//! it with the analyzers' own parameters.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::hj212::Cp;
use crate::live::Current;
use crate::model::Flag;

/// The CPs answering a 3020 request (`pol_id`, `info_id` as the request gave them), one per
/// factor of the outlet that has a current value; none when nothing matches.
pub fn device_states(
    config: &Config,
    outlet: &str,
    current: &BTreeMap<(String, String), Current>,
    pol_id: Option<&str>,
    info_id: Option<&str>,
    data_time: &str,
) -> Vec<Cp> {
    let wanted = |id: &str| info_id.is_none_or(|i| i == id);
    let mut out = Vec::new();
    for d in config.outlet_devices(outlet) {
        for p in
            d.points.iter().filter(|p| pol_id.is_none_or(|id| id == p.factor) && !p.factor.ends_with("-RS"))
        {
            let Some(c) = current.get(&(d.name.clone(), p.factor.clone())) else { continue };
            let state = match c.flag {
                Flag::M => 1,
                Flag::D => 2,
                Flag::C => 3,
                _ => 0,
            };
            let comm = u8::from(c.flag == Flag::B);
            let mut fields = Vec::new();
            if wanted("i12001") {
                fields.push(("i12001-Info", state.to_string()));
            }
            if wanted("i12002") {
                fields.push(("i12002-Info", comm.to_string()));
            }
            if fields.is_empty() {
                continue;
            }
            let mut items = vec![("DataTime", data_time.to_string()), ("PolId", p.factor.clone())];
            items.extend(fields);
            out.push(Cp(items.into_iter().map(|(k, v)| vec![(k.to_string(), v)]).collect()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn one_frame_per_factor_with_its_fields_separated_by_semicolons() {
        let text = "[site]\nmn = \"MN1\"\npw = \"123456\"\n[storage]\npath = \"/tmp/x.db\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n[[outlet]]\nname = \"kiln\"\n[[device]]\nname = \"gas\"\nbus = \"b\"\nslave = 1\noutlet = \"kiln\"\n[[device.point]]\nfactor = \"a21026\"\naddress = 0\ntype = \"f32\"\n[[device.point]]\nfactor = \"a19001\"\naddress = 2\ntype = \"f32\"\n";
        let config = crate::config::validate::parse(text, Path::new("/")).unwrap();
        let mut current = BTreeMap::new();
        let c = |flag| Current { ts_ms: 0, value: Some(1.0), flag, last_good: None };
        current.insert(("gas".to_string(), "a21026".to_string()), c(Flag::C));
        current.insert(("gas".to_string(), "a19001".to_string()), c(Flag::B));
        let all = device_states(&config, "kiln", &current, None, None, "20160801085857");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].to_string(), "DataTime=20160801085857;PolId=a21026;i12001-Info=3;i12002-Info=0");
        assert_eq!(all[1].to_string(), "DataTime=20160801085857;PolId=a19001;i12001-Info=0;i12002-Info=1");
        let one = device_states(&config, "kiln", &current, Some("a21026"), Some("i12001"), "20160801085857");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].to_string(), "DataTime=20160801085857;PolId=a21026;i12001-Info=3");
        assert!(device_states(&config, "kiln", &current, None, Some("i13004"), "x").is_empty());
    }
}
