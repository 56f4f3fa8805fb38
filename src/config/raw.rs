//! Serde mirror of the TOML file: no logic, every enum kept as a string so that
//! [`super::validate`] can report all bad values at once instead of stopping at the first.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub mn: Option<String>,
    pub pw: Option<String>,
    pub st: Option<i64>,
    pub name: Option<String>,
    pub industry: Option<String>,
    pub utc_offset_hours: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatistics {
    pub samples_per_minute: Option<i64>,
    pub minutes_per_hour: Option<i64>,
    pub hours_per_day: Option<i64>,
    pub days_per_month: Option<i64>,
    pub days_per_february: Option<i64>,
    pub normal_share: Option<f64>,
    pub o2_guard_pct: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub path: Option<String>,
    pub retention_days: Option<i64>,
    pub max_size_mb: Option<i64>,
    pub flush_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBus {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub path: Option<String>,
    pub baud: Option<i64>,
    pub parity: Option<String>,
    pub data_bits: Option<i64>,
    pub stop_bits: Option<i64>,
    pub address: Option<String>,
    pub timeout_ms: Option<i64>,
    pub inter_frame_ms: Option<i64>,
    pub reconnect_max_s: Option<i64>,
    pub heartbeat_s: Option<i64>,
    pub listen: Option<String>,
    pub max_connections: Option<i64>,
    pub idle_timeout_s: Option<i64>,
}

/// A `[[device]]`. Its points and status registers are either kept untyped (`toml::Value`,
/// so that each bad one is reported on its own) or typed directly (the fast path).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice<P = toml::Value, S = toml::Value> {
    pub name: Option<String>,
    pub bus: Option<String>,
    pub slave: Option<i64>,
    pub poll_interval_s: Option<f64>,
    pub outlet: Option<String>,
    pub max_gap: Option<i64>,
    pub ascii: Option<RawAscii>,
    pub mn: Option<String>,
    #[serde(default = "Vec::new")]
    pub status: Vec<S>,
    #[serde(default = "Vec::new")]
    pub point: Vec<P>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAscii {
    pub request: Option<String>,
    pub pattern: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoint {
    pub factor: Option<String>,
    pub table: Option<String>,
    pub address: Option<i64>,
    #[serde(rename = "type")]
    pub ty: Option<String>,
    pub word_order: Option<String>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub unit: Option<String>,
    pub range_max: Option<f64>,
    pub basis: Option<String>,
    pub capture: Option<String>,
    pub code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    pub table: Option<String>,
    pub address: Option<i64>,
    #[serde(rename = "type")]
    pub ty: Option<String>,
    #[serde(rename = "match")]
    pub match_: Option<String>,
    pub map: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlet {
    pub name: Option<String>,
    pub code: Option<String>,
    pub profile: Option<String>,
    pub o2_ref: Option<f64>,
    pub limits: Option<BTreeMap<String, f64>>,
    pub run_status: Option<String>,
    pub duct_area_m2: Option<f64>,
    pub velocity_coefficient: Option<f64>,
    pub ambient_pressure_kpa: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUplink {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub outlet: Option<String>,
    pub address: Option<String>,
    pub protocol: Option<String>,
    pub mn: Option<String>,
    pub pw: Option<String>,
    pub st: Option<i64>,
    pub realtime: Option<bool>,
    pub rtd_interval_s: Option<i64>,
    pub minute: Option<bool>,
    pub min_interval: Option<i64>,
    pub hour: Option<bool>,
    pub day: Option<bool>,
    pub ack: Option<bool>,
    pub overtime_s: Option<i64>,
    pub recount: Option<i64>,
    pub window: Option<i64>,
    pub reconnect_max_s: Option<i64>,
    pub heartbeat_s: Option<i64>,
    pub url: Option<String>,
    pub token: Option<String>,
    pub batch: Option<i64>,
    pub network: Option<String>,
    pub encrypt: Option<bool>,
    pub key_file: Option<String>,
    pub length_field: Option<String>,
    pub accept_2017: Option<bool>,
    pub onboarding: Option<bool>,
    pub logger_id: Option<String>,
    pub key_request_after_days: Option<i64>,
    pub operating_parameters: Option<Vec<String>>,
    pub unconvertible_value: Option<f64>,
}

/// `[web]`: the local status page and API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
    pub token: Option<String>,
}
