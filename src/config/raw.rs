//! The keys of every table of the file, one place per table: each `raw_table!` below is the
//! whole list of keys a table may have, with their TOML types. Adding a key is one line here and
//! its check in [`super::validate`].
//!
//! Every value is optional and every enum is kept as a string, so that [`super::validate`] can
//! report all bad values at once; a value of the wrong type or an unknown key is reported while
//! reading (see [`Fields`]), and reading goes on.

use std::collections::BTreeMap;

use super::doc::Fields;

/// Defines a raw table: a struct of optional values, its list of keys (including the nested
/// tables read separately) and `read`, which takes each key and reports the unknown ones.
macro_rules! raw_table {
    (
        $(#[$doc:meta])*
        $name:ident { $($field:ident $(as $key:literal)?: $ty:ty),* $(,)? }
        $(nested: [$($nested:literal),* $(,)?])?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $name {
            $(pub $field: Option<$ty>,)*
        }

        impl $name {
            /// Every key this table may have.
            pub const KEYS: &'static [&'static str] =
                &[$(raw_table!(@key $field $($key)?),)* $($($nested,)*)?];

            /// Reads every key of the table; a wrong type or an unknown key is a problem.
            pub fn read(f: &mut Fields<'_, '_, '_>) -> Self {
                let raw = $name { $($field: f.get(raw_table!(@key $field $($key)?)),)* };
                f.unknown_keys(Self::KEYS);
                raw
            }
        }
    };
    (@key $field:ident $key:literal) => { $key };
    (@key $field:ident) => { stringify!($field) };
}

raw_table! {
    /// `[site]`
    RawSite {
        mn: String,
        pw: String,
        st: i64,
        name: String,
        industry: String,
        utc_offset_hours: f64,
    }
}

raw_table! {
    /// `[statistics]`
    RawStatistics {
        samples_per_minute: i64,
        minutes_per_hour: i64,
        hours_per_day: i64,
        days_per_month: i64,
        days_per_february: i64,
        normal_share: f64,
        o2_guard_pct: f64,
        valid_flags: Vec<String>,
    }
}

raw_table! {
    /// `[storage]`
    RawStorage {
        path: String,
        retention_days: i64,
        max_size_mb: i64,
        flush_ms: i64,
    }
}

raw_table! {
    /// `[[bus]]`
    RawBus {
        name: String,
        kind: String,
        path: String,
        baud: i64,
        parity: String,
        data_bits: i64,
        stop_bits: i64,
        address: String,
        timeout_ms: i64,
        inter_frame_ms: i64,
        reconnect_max_s: i64,
        heartbeat_s: i64,
        listen: String,
        max_connections: i64,
        idle_timeout_s: i64,
    }
}

raw_table! {
    /// `[[device]]`; its `[device.ascii]`, `[[device.status]]`, `[[device.point]]` and
    /// `[[device.parameter]]` are read as tables of their own.
    RawDevice {
        name: String,
        bus: String,
        slave: i64,
        poll_interval_s: f64,
        outlet: String,
        max_gap: i64,
        mn: String,
    }
    nested: ["ascii", "status", "point", "parameter"]
}

raw_table! {
    /// `[device.ascii]`
    RawAscii {
        request: String,
        pattern: String,
    }
}

raw_table! {
    /// `[[device.point]]`
    RawPoint {
        factor: String,
        table: String,
        address: i64,
        ty as "type": String,
        word_order: String,
        scale: f64,
        offset: f64,
        unit: String,
        range_max: f64,
        basis: String,
        capture: String,
        code: String,
    }
}

raw_table! {
    /// `[[device.status]]`
    RawStatus {
        table: String,
        address: i64,
        ty as "type": String,
        match_ as "match": String,
        map: BTreeMap<String, String>,
    }
}

raw_table! {
    /// `[[device.parameter]]`: a key analyzer parameter (HJ 212 table B.10).
    RawParameter {
        code: String,
        table: String,
        address: i64,
        ty as "type": String,
        word_order: String,
        scale: f64,
        map: BTreeMap<String, i64>,
        poll_interval_s: f64,
        pol: String,
        unit: String,
    }
}

raw_table! {
    /// `[[outlet]]`
    RawOutlet {
        name: String,
        code: String,
        profile: String,
        o2_ref: f64,
        limits: BTreeMap<String, f64>,
        run_status: String,
        duct_area_m2: f64,
        velocity_coefficient: f64,
        ambient_pressure_kpa: f64,
        flow_basis: String,
        flow_unit: String,
        unlimited: Vec<String>,
    }
}

raw_table! {
    /// `[[uplink]]`
    RawUplink {
        name: String,
        kind: String,
        outlet: String,
        address: String,
        protocol: String,
        mn: String,
        pw: String,
        st: i64,
        realtime: bool,
        rtd_interval_s: i64,
        minute: bool,
        min_interval: i64,
        hour: bool,
        day: bool,
        ack: bool,
        ack_realtime: bool,
        ack_run_time: bool,
        ack_notices: bool,
        corrections: bool,
        run_status: bool,
        run_time: bool,
        overtime_s: i64,
        recount: i64,
        window: i64,
        reconnect_max_s: i64,
        heartbeat_s: i64,
        url: String,
        token: String,
        batch: i64,
        network: String,
        encrypt: bool,
        encrypt_3020: bool,
        key_file: String,
        length_field: String,
        accept_2017: bool,
        onboarding: bool,
        logger_id: String,
        key_request_after_days: i64,
        operating_parameters: Vec<String>,
        unconvertible_value: f64,
    }
}

raw_table! {
    /// `[web]`: the local status page and API.
    RawWeb {
        enabled: bool,
        listen: String,
        token: String,
        operator_token: String,
    }
}

raw_table! {
    /// `[marks]`: the operators' marks.
    RawMarks {
        window_hours: i64,
    }
}
