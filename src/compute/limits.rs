//! Ultra-low emission limit profiles as data, each with its source, and per-outlet overrides.
//!
//! Hourly limits in mg/m³, dry standard state, at the profile's reference O2. Local standards
//! differ (provinces and cities set their own values), so every limit and the reference O2 can
//! be overridden per outlet.

use std::collections::BTreeMap;

/// A built-in profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub title: &'static str,
    /// The document the values come from.
    pub source: &'static str,
    pub o2_ref: Option<f64>,
    /// `(factor, hourly limit mg/m³)`: particulate a34013, SO2 a21026, NOx a21002.
    pub limits: &'static [(&'static str, f64)],
    /// Values seen only in secondary copies of the document: confirm against the local rule.
    pub to_verify: bool,
    /// Whether the monthly ≥ 95 % rule counts production time (cement: "每月生产时间至少95%以上
    /// 时段"), so that invalid production hours count against the rate; otherwise it counts the
    /// hours that have a valid hourly mean (steel, coking: "每月至少95%以上时段"). Stopped hours
    /// leave the denominator either way.
    pub production_hours_only: bool,
}

/// The built-in profiles.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "power-coal",
        title: "Coal-fired power unit, ultra-low emission",
        source: "煤电节能减排升级与改造行动计划（2014—2020年）; 全面实施燃煤电厂超低排放和节能改造工作方案 (2015)",
        o2_ref: Some(6.0),
        limits: &[("a34013", 10.0), ("a21026", 35.0), ("a21002", 50.0)],
        to_verify: false,
        production_hours_only: false,
    },
    Profile {
        name: "steel-sinter-head",
        title: "Steel sinter machine head / pellet induration",
        source: "关于推进实施钢铁行业超低排放的意见 环大气〔2019〕35号",
        o2_ref: Some(16.0),
        limits: &[("a34013", 10.0), ("a21026", 35.0), ("a21002", 50.0)],
        to_verify: false,
        production_hours_only: false,
    },
    Profile {
        name: "cement-kiln",
        title: "Cement kiln and kiln-tail waste-heat system",
        source: "关于推进实施水泥行业超低排放的意见 环大气〔2024〕5号",
        o2_ref: Some(10.0),
        limits: &[("a34013", 10.0), ("a21026", 35.0), ("a21002", 50.0)],
        to_verify: false,
        production_hours_only: true,
    },
    Profile {
        name: "coke-oven-chimney",
        title: "Coke-oven chimney (to be verified against the local rule)",
        source: "关于推进实施焦化行业超低排放的意见 环大气〔2024〕5号 (values from a regional copy)",
        o2_ref: Some(8.0),
        limits: &[("a34013", 10.0), ("a21026", 30.0), ("a21002", 150.0)],
        to_verify: true,
        production_hours_only: false,
    },
    Profile {
        name: "custom",
        title: "No built-in limits: set o2_ref and limits per outlet",
        source: "outlet configuration",
        o2_ref: None,
        limits: &[],
        to_verify: false,
        production_hours_only: false,
    },
];

pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// The limits that apply to one outlet after overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct OutletLimits {
    pub o2_ref: Option<f64>,
    pub limits: BTreeMap<String, f64>,
    /// See [`Profile::production_hours_only`].
    pub production_hours_only: bool,
}

impl OutletLimits {
    /// The profile's values with `o2_ref` and `limits` overriding them.
    pub fn resolve(
        profile: Option<&Profile>,
        o2_ref: Option<f64>,
        overrides: &BTreeMap<String, f64>,
    ) -> OutletLimits {
        let mut limits: BTreeMap<String, f64> =
            profile.map(|p| p.limits.iter().map(|(f, v)| (f.to_string(), *v)).collect()).unwrap_or_default();
        limits.extend(overrides.iter().map(|(f, v)| (f.clone(), *v)));
        OutletLimits {
            o2_ref: o2_ref.or(profile.and_then(|p| p.o2_ref)),
            limits,
            production_hours_only: profile.is_some_and(|p| p.production_hours_only),
        }
    }

    /// Drops the limits of `factors` (an outlet where the profile's limit does not apply).
    pub fn remove(&mut self, factors: &[String]) {
        self.limits.retain(|f, _| !factors.contains(f));
    }

    pub fn limit(&self, factor: &str) -> Option<f64> {
        self.limits.get(factor).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_carry_the_issue_values() {
        let get = |n: &str| profile(n).unwrap();
        assert_eq!(
            (get("power-coal").o2_ref, get("power-coal").limits),
            (Some(6.0), &[("a34013", 10.0), ("a21026", 35.0), ("a21002", 50.0)][..])
        );
        assert_eq!(get("steel-sinter-head").o2_ref, Some(16.0));
        assert_eq!(get("cement-kiln").o2_ref, Some(10.0));
        assert!(get("cement-kiln").production_hours_only);
        let coke = get("coke-oven-chimney");
        assert_eq!((coke.o2_ref, coke.to_verify), (Some(8.0), true));
        assert_eq!(coke.limits, &[("a34013", 10.0), ("a21026", 30.0), ("a21002", 150.0)]);
        assert!(PROFILES.iter().all(|p| !p.source.is_empty()));
    }

    #[test]
    fn overrides_win() {
        let over = BTreeMap::from([("a21002".to_string(), 100.0), ("a21001".to_string(), 8.0)]);
        let l = OutletLimits::resolve(profile("cement-kiln"), Some(11.0), &over);
        assert_eq!(l.o2_ref, Some(11.0));
        assert_eq!(
            (l.limit("a21002"), l.limit("a21026"), l.limit("a21001")),
            (Some(100.0), Some(35.0), Some(8.0))
        );
        assert_eq!(OutletLimits::resolve(None, None, &BTreeMap::new()).o2_ref, None);
    }
}
