//! The file's text → typed [`Config`], with every problem of the file at once: each at its key's
//! own line and column, named by its item (`device "gas" point a21026: word_order: …`), in
//! file order, and without cascades (a bus with a bad `baud` is still the bus its devices name).
//!
//! The file is parsed once into a spanned document ([`super::doc`]); each item is read into its
//! raw table ([`super::raw`], where a wrong type or an unknown key is reported) and then
//! checked. Cross-checks between items (a device's bus and outlet, an outlet's points) use what
//! each item names even when that item has problems of its own, and are skipped where an item
//! they depend on could not be understood.
//!
//! Pure: the text, the folder relative paths are resolved against, and a [`FileCheck`] for the
//! files the configuration names (the SM4 key), whose reading is the caller's.

mod acquisition;
mod params;
mod uplink;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::doc::{At, Fields, Report, tables};
use super::raw::*;
use super::*;
use crate::compute::spec::{Basis, FlowUnit};
use acquisition::{BusRef, DeviceItem};

/// Built-in limit profiles known to the compliance statistics.
pub const PROFILES: [&str; 5] =
    ["power-coal", "steel-sinter-head", "cement-kiln", "coke-oven-chimney", "custom"];

const TOP_LEVEL: [&str; 9] =
    ["site", "storage", "statistics", "bus", "device", "outlet", "uplink", "web", "marks"];

/// Checks a file the configuration names (the path already resolved): `Err` says what is wrong.
pub type FileCheck<'f> = &'f dyn Fn(&Path) -> Result<(), String>;

/// Parses and validates a whole file; files it names are not looked at (see [`parse_with`]).
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
    parse_with(text, base, &|_| Ok(()))
}

/// Parses and validates a whole file, checking the files it names with `files`.
pub fn parse_with(text: &str, base: &Path, files: FileCheck) -> Result<Config, Vec<ConfigError>> {
    let mut r = Report::new(text);
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in &syntax {
            r.push_at(e.span().map(|s| s.start), "", "syntax", e.message().trim());
        }
        return Err(r.finish());
    }
    let config = check(&mut r, doc.get_ref(), base, files);
    match config {
        Some(mut c) if r.count() == 0 => {
            c.warnings = r.take_warnings();
            Ok(c)
        }
        None if r.count() == 0 => {
            r.push_at(
                None,
                "",
                "",
                "the configuration is incomplete, yet no problem was found (a bug: please report it)",
            );
            Err(r.finish())
        }
        _ => Err(r.finish()),
    }
}

fn check<'t>(r: &mut Report<'t>, root: &DeTable<'t>, base: &Path, files: FileCheck) -> Option<Config> {
    let top = At::new(String::new(), None, Some(root));
    for (k, v) in root.iter() {
        if !TOP_LEVEL.contains(&k.get_ref().as_ref()) {
            let at = if v.get_ref().is_table() { v.span().start } else { k.span().start };
            r.push_at(
                Some(at),
                k.get_ref(),
                "",
                format!("unknown section; expected one of {}", TOP_LEVEL.join(", ")),
            );
        }
    }

    let site = match section(r, root, "site") {
        Ok(Some((at, t))) => {
            let raw = RawSite::read(&mut Fields::new(r, &at, t));
            check_site(r, raw, &at)
        }
        Ok(None) => {
            r.push_at(None, "site", "", "section [site] is required");
            None
        }
        Err(()) => None,
    };
    let storage = match section(r, root, "storage") {
        Ok(Some((at, t))) => {
            let raw = RawStorage::read(&mut Fields::new(r, &at, t));
            check_storage(r, raw, &at, base)
        }
        Ok(None) => {
            r.push_at(None, "storage", "", "section [storage] is required");
            None
        }
        Err(()) => None,
    };
    let statistics = match section(r, root, "statistics") {
        Ok(Some((at, t))) => {
            let raw = RawStatistics::read(&mut Fields::new(r, &at, t));
            check_statistics(r, raw, &at)
        }
        Ok(None) => check_statistics(r, RawStatistics::default(), &At::new("statistics".into(), None, None)),
        Err(()) => None,
    };
    let web = match section(r, root, "web") {
        Ok(Some((at, t))) => {
            let raw = RawWeb::read(&mut Fields::new(r, &at, t));
            check_web(r, raw, &at)
        }
        Ok(None) => check_web(r, RawWeb::default(), &At::new("web".into(), None, None)),
        Err(()) => None,
    };
    let marks = match section(r, root, "marks") {
        Ok(Some((at, t))) => {
            let raw = RawMarks::read(&mut Fields::new(r, &at, t));
            check_marks(r, raw, &at)
        }
        Ok(None) => check_marks(r, RawMarks::default(), &At::new("marks".into(), None, None)),
        Err(()) => None,
    };

    // Outlets and buses first: devices and uplinks name them.
    let mut outlets: Vec<(At, Option<String>, Option<Outlet>)> = Vec::new();
    for (i, (t, header)) in tables(r, &top, root, "outlet").into_iter().enumerate() {
        let at = At::new(item_name("outlet", t, "name", i), Some(header), Some(t));
        let before = r.count();
        let raw = RawOutlet::read(&mut Fields::new(r, &at, t));
        let name = raw.name.clone();
        let outlet = check_outlet(r, raw, &at).filter(|_| r.count() == before);
        outlets.push((at, name, outlet));
    }
    unique(r, "outlet", &outlets.iter().map(|(at, name, _)| (at, name.as_deref())).collect::<Vec<_>>());
    let outlet_names: Vec<Option<String>> = outlets.iter().map(|(_, n, _)| n.clone()).collect();

    let mut buses: Vec<(At, BusRef, Option<Bus>)> = Vec::new();
    for (i, (t, header)) in tables(r, &top, root, "bus").into_iter().enumerate() {
        let at = At::new(item_name("bus", t, "name", i), Some(header), Some(t));
        let before = r.count();
        let raw = RawBus::read(&mut Fields::new(r, &at, t));
        let bus_ref = BusRef::of(&raw);
        let bus = acquisition::check_bus(r, raw, &at).filter(|_| r.count() == before);
        buses.push((at, bus_ref, bus));
    }
    unique(r, "bus", &buses.iter().map(|(at, b, _)| (at, b.name.as_deref())).collect::<Vec<_>>());
    let bus_refs: Vec<&BusRef> = buses.iter().map(|(_, b, _)| b).collect();

    let device_tables = tables(r, &top, root, "device");
    if device_tables.is_empty() && root.get("device").is_none() {
        r.push_at(None, "device", "", "at least one [[device]] is required");
    }
    let mut devices: Vec<DeviceItem> = Vec::new();
    for (i, (t, header)) in device_tables.into_iter().enumerate() {
        let at = At::new(item_name("device", t, "name", i), Some(header), Some(t));
        devices.push(acquisition::device(r, at, t, &bus_refs, &outlet_names));
    }
    unique(r, "device", &devices.iter().map(|d| (&d.at, d.name.as_deref())).collect::<Vec<_>>());

    check_outlet_points(r, &outlets, &devices, statistics.as_ref());
    acquisition::check_hj212_inputs(r, &buses, &devices);

    let mut uplinks: Vec<(At, Option<String>, Option<Uplink>)> = Vec::new();
    for (i, (t, header)) in tables(r, &top, root, "uplink").into_iter().enumerate() {
        let at = At::new(item_name("uplink", t, "name", i), Some(header), Some(t));
        let before = r.count();
        let raw = RawUplink::read(&mut Fields::new(r, &at, t));
        let name = raw.name.clone();
        let uplink = uplink::check_uplink(r, raw, &at, site.as_ref(), &outlet_names, base, files)
            .filter(|_| r.count() == before);
        uplinks.push((at, name, uplink));
    }
    unique(r, "uplink", &uplinks.iter().map(|(at, name, _)| (at, name.as_deref())).collect::<Vec<_>>());

    let buses: Vec<Bus> = buses.into_iter().map(|(_, _, b)| b).collect::<Option<_>>()?;
    let devices: Vec<Device> = devices.into_iter().map(|d| d.device).collect::<Option<_>>()?;
    for (i, b) in buses.iter().enumerate() {
        if !devices.iter().any(|d| d.bus == i) {
            tracing::warn!(bus = %b.name, "Bus has no devices.");
        }
    }
    Some(Config {
        site: site?,
        storage: storage?,
        statistics: statistics?,
        buses,
        devices,
        outlets: outlets.into_iter().map(|(_, _, o)| o).collect::<Option<_>>()?,
        uplinks: uplinks.into_iter().map(|(_, _, u)| u).collect::<Option<_>>()?,
        web: web?,
        marks: marks?,
        warnings: Vec::new(),
    })
}

/// A single-table section (`[site]`): absent, of the wrong kind (reported), or its table.
fn section<'a, 't>(
    r: &mut Report<'t>,
    root: &'a DeTable<'t>,
    name: &str,
) -> Result<Option<(At<'a, 't>, &'a DeTable<'t>)>, ()> {
    let Some((k, v)) = root.get_key_value(name) else { return Ok(None) };
    match v.get_ref() {
        DeValue::Table(t) => Ok(Some((At::new(name.to_string(), Some(v.span().start), Some(t)), t))),
        _ => {
            r.push_at(Some(k.span().start), name, "", format!("must be a table: write it as [{name}]"));
            Err(())
        }
    }
}

/// How problems name an item of a list: `bus "rs485-1"`, or `bus #2` when it has no name.
fn item_name(kind: &str, t: &DeTable, key: &str, index: usize) -> String {
    match t.get(key).and_then(|v| v.get_ref().as_str()) {
        Some(name) => format!("{kind} {name:?}"),
        None => format!("{kind} #{}", index + 1),
    }
}

/// A second item with a name already taken is a problem at its `name`.
fn unique(r: &mut Report, section: &str, items: &[(&At, Option<&str>)]) {
    let mut seen: HashMap<&str, Option<usize>> = HashMap::new();
    for &(at, name) in items {
        let Some(name) = name else { continue };
        match seen.get(name) {
            None => {
                seen.insert(name, r.line_of(at.pos("name")));
            }
            Some(first) => {
                let line = first.map(|l| format!(" (line {l})")).unwrap_or_default();
                r.push(at, "name", format!("another [[{section}]] has this name{line}"));
            }
        }
    }
}

/// An HJ 212 MN: 1 to 24 letters or digits.
fn valid_mn(mn: &str) -> bool {
    !mn.is_empty() && mn.len() <= 24 && mn.chars().all(|c| c.is_ascii_alphanumeric())
}

/// An HJ 212 factor code such as `a21026` or `SB1-RS`.
fn valid_factor(code: &str) -> bool {
    let mut chars = code.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && code.len() <= 20
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `host:port`, for a bus, an uplink or an hj212 listener (`key` says which key holds it).
fn check_address(r: &mut Report, at: &At, key: &str, address: Option<String>) -> Option<String> {
    let a = r.need(at, key, address)?;
    match a.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Some(a),
        _ => {
            r.push(at, key, format!("must be host:port, got \"{a}\""));
            None
        }
    }
}

fn check_site(r: &mut Report, raw: RawSite, at: &At) -> Option<Site> {
    let mn = r.need(at, "mn", raw.mn);
    if let Some(mn) = &mn
        && !valid_mn(mn)
    {
        r.push(at, "mn", format!("must be 1 to 24 letters or digits, got \"{mn}\""));
    }
    let pw = r.need(at, "pw", raw.pw);
    if let Some(pw) = &pw
        && (pw.chars().count() != 6 || !pw.is_ascii())
    {
        r.push(at, "pw", "must be exactly 6 ASCII characters");
    }
    let st = r.int_in::<u16>(at, "st", Some(raw.st.unwrap_or(31)), 1, 99);
    let industry = r.one_of(
        at,
        "industry",
        Some(raw.industry.as_deref().unwrap_or("other")),
        |s| match s {
            "cement" => Some(Industry::Cement),
            "coking" => Some(Industry::Coking),
            "steel" => Some(Industry::Steel),
            "power" => Some(Industry::Power),
            "other" => Some(Industry::Other),
            _ => None,
        },
        "cement, coking, steel, power, other",
    );
    let offset = raw.utc_offset_hours.unwrap_or(8.0);
    if !(-12.0..=14.0).contains(&offset) || (offset * 4.0).fract() != 0.0 {
        r.push(at, "utc_offset_hours", format!("must be between -12 and 14 in quarter hours, got {offset}"));
    }
    Some(Site {
        mn: mn.filter(|m| valid_mn(m))?,
        pw: pw.filter(|p| p.chars().count() == 6 && p.is_ascii())?,
        st: st?,
        name: raw.name.unwrap_or_default(),
        industry: industry?,
        utc_offset_s: (offset * 3600.0) as i64,
    })
}

fn check_storage(r: &mut Report, raw: RawStorage, at: &At, base: &Path) -> Option<Storage> {
    let path = r
        .need(at, "path", raw.path)
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { base.join(p) } else { p });
    let days = r.int_in::<u64>(at, "retention_days", Some(raw.retention_days.unwrap_or(400)), 1, 36_500);
    let mb = r.int_in::<u64>(at, "max_size_mb", Some(raw.max_size_mb.unwrap_or(4096)), 1, 1 << 30);
    let flush = r.int_in::<u64>(at, "flush_ms", Some(raw.flush_ms.unwrap_or(1000)), 10, 60_000);
    Some(Storage {
        path: path?,
        retention: Duration::from_secs(days? * 86_400),
        max_size_bytes: mb? * 1024 * 1024,
        flush_interval: Duration::from_millis(flush?),
    })
}

fn check_statistics(r: &mut Report, raw: RawStatistics, at: &At) -> Option<Statistics> {
    let d = crate::compute::Thresholds::HJ75;
    let mut n = |field: &str, v: Option<i64>, default: u32, hi: i64| {
        r.int_in::<u32>(at, field, Some(v.unwrap_or(i64::from(default))), 1, hi)
    };
    let samples = n("samples_per_minute", raw.samples_per_minute, d.samples_per_minute, 60);
    let minutes = n("minutes_per_hour", raw.minutes_per_hour, d.minutes_per_hour, 60);
    let hours = n("hours_per_day", raw.hours_per_day, d.hours_per_day, 24);
    let days = n("days_per_month", raw.days_per_month, d.days_per_month, 31);
    let february = n("days_per_february", raw.days_per_february, d.days_per_february, 29);
    let share = raw.normal_share.unwrap_or(d.normal_share);
    let share_ok = share > 0.0 && share <= 1.0;
    if !share_ok {
        r.push(at, "normal_share", format!("must be above 0 and at most 1, got {share}"));
    }
    let guard = raw.o2_guard_pct.unwrap_or(20.5);
    let guard_ok = guard > 0.0 && guard <= 21.0;
    if !guard_ok {
        r.push(at, "o2_guard_pct", format!("must be above 0 and at most 21, got {guard}"));
    }
    let valid_flags = match raw.valid_flags {
        None => Some(d.valid_flags),
        Some(list) => check_valid_flags(r, at, &list),
    };
    Some(Statistics {
        thresholds: crate::compute::Thresholds {
            samples_per_minute: samples?,
            minutes_per_hour: minutes?,
            hours_per_day: hours?,
            days_per_month: days?,
            days_per_february: february?,
            normal_share: share_ok.then_some(share)?,
            valid_flags: valid_flags?,
        },
        o2_guard_pct: guard_ok.then_some(guard)?,
    })
}

/// `valid_flags`: letters of HJ 212 table 8 whose samples count as valid. `N` must be one; `F`
/// (the facility stopped) and `B` (nothing read) never are, nor the analyzer's own statements
/// that a value is not a measurement (`C` calibration, `M` maintenance, `D` fault).
fn check_valid_flags(r: &mut Report, at: &At, list: &[String]) -> Option<crate::model::FlagSet> {
    let before = r.count();
    let mut flags = Vec::new();
    for (i, letter) in list.iter().enumerate() {
        let key = format!("valid_flags[{i}]");
        match letter.chars().next().and_then(Flag::from_char).filter(|_| letter.chars().count() == 1) {
            Some(f @ (Flag::N | Flag::T | Flag::S)) => flags.push(f),
            Some(f) => r.push(
                at,
                &key,
                format!("{f} cannot count as valid: only N, T (above the instrument's range) and S (a manual value) can"),
            ),
            None => r.push(at, &key, format!("must be one of the flags N, T, S, got \"{letter}\"")),
        }
    }
    if !flags.contains(&Flag::N) && r.count() == before {
        r.push(at, "valid_flags", "must include N (normal samples are always valid)");
    }
    (r.count() == before).then(|| crate::model::FlagSet::of(&flags))
}

/// `[web]`: `listen` is `host:port` with a numeric address or `"off"`; `enabled = false` also
/// switches the server off; a `token` is 8 to 128 visible ASCII characters (it travels in a
/// header or a query string, so no spaces).
fn check_web(r: &mut Report, raw: RawWeb, at: &At) -> Option<Web> {
    let before = r.count();
    let listen = match raw.listen.as_deref().unwrap_or(DEFAULT_WEB_LISTEN) {
        "off" => None,
        text => {
            match text.parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    r.push(
                    at,
                    "listen",
                    format!("must be an IP address and port such as \"0.0.0.0:8080\", or \"off\"; got \"{text}\""),
                );
                    None
                }
            }
        }
    };
    for (key, token) in [("token", &raw.token), ("operator_token", &raw.operator_token)] {
        if let Some(token) = token {
            if !(8..=128).contains(&token.len()) {
                r.push(at, key, "must be 8 to 128 characters long");
            } else if !token.chars().all(|c| c.is_ascii_graphic()) {
                r.push(at, key, "must be visible ASCII characters without spaces");
            }
        }
    }
    if raw.operator_token.is_some() && raw.operator_token == raw.token {
        r.push(at, "operator_token", "must differ from token (the officers' token only reads)");
    }
    (r.count() == before).then(|| Web {
        listen: listen.filter(|_| raw.enabled.unwrap_or(true)),
        token: raw.token,
        operator_token: raw.operator_token,
    })
}

/// `[marks]`: `window_hours` between 1 and 31 days.
fn check_marks(r: &mut Report, raw: RawMarks, at: &At) -> Option<Marks> {
    let hours = r.int_in::<u64>(
        at,
        "window_hours",
        Some(raw.window_hours.unwrap_or(DEFAULT_MARK_WINDOW_HOURS)),
        1,
        744,
    )?;
    Some(Marks { window: Duration::from_secs(hours * 3600) })
}

fn check_outlet(r: &mut Report, raw: RawOutlet, at: &At) -> Option<Outlet> {
    let name = r.need(at, "name", raw.name);
    if let Some(p) = &raw.profile
        && !PROFILES.contains(&p.as_str())
    {
        r.push(at, "profile", format!("must be one of {}, got \"{p}\"", PROFILES.join(", ")));
    }
    if let Some(o2) = raw.o2_ref
        && !(0.0..21.0).contains(&o2)
    {
        r.push(at, "o2_ref", format!("must be at least 0 and below 21 (%), got {o2}"));
    }
    if let Some(a) = raw.duct_area_m2
        && !(a > 0.0 && a.is_finite())
    {
        r.push(at, "duct_area_m2", format!("must be positive, got {a}"));
    }
    let limits = raw.limits.unwrap_or_default();
    for (factor, v) in &limits {
        let key = format!("limits.{factor}");
        if !valid_factor(factor) {
            r.push(at, &key, "is not an HJ 212 factor code");
        }
        if !(*v > 0.0 && v.is_finite()) {
            r.push(at, &key, format!("must be positive, got {v}"));
        }
    }
    if raw.profile.as_deref() == Some("custom") && limits.is_empty() {
        r.push(at, "limits", "a custom profile needs its limits, e.g. limits = { a21026 = 35.0 }");
    }
    if let Some(f) = &raw.run_status
        && !valid_factor(f)
    {
        r.push(at, "run_status", format!("must be a factor code such as SB1-RS, got \"{f}\""));
    }
    let kv = raw.velocity_coefficient.unwrap_or(1.0);
    if !(kv > 0.0 && kv <= 5.0) {
        r.push(at, "velocity_coefficient", format!("must be above 0 and at most 5, got {kv}"));
    }
    let ambient = raw.ambient_pressure_kpa.unwrap_or(101.325);
    if !(50.0..=120.0).contains(&ambient) {
        r.push(at, "ambient_pressure_kpa", format!("must be between 50 and 120 kPa, got {ambient}"));
    }
    let flow_basis = r.one_of(
        at,
        "flow_basis",
        Some(raw.flow_basis.as_deref().unwrap_or("wet-actual")),
        Basis::parse,
        "wet-actual, wet-standard, dry-actual, dry-standard",
    );
    let flow_unit = r.one_of(
        at,
        "flow_unit",
        Some(raw.flow_unit.as_deref().unwrap_or("m3/s")),
        FlowUnit::parse,
        "m3/s, m3/h",
    );
    let unlimited = raw.unlimited.unwrap_or_default();
    for (i, factor) in unlimited.iter().enumerate() {
        if !valid_factor(factor) {
            r.push(
                at,
                &format!("unlimited[{i}]"),
                format!("must be a factor code such as a21002, got \"{factor}\""),
            );
        }
    }
    Some(Outlet {
        name: name?,
        code: raw.code,
        profile: raw.profile,
        o2_ref: raw.o2_ref,
        limits,
        run_status: raw.run_status,
        duct_area_m2: raw.duct_area_m2,
        velocity_coefficient: kv,
        ambient_pressure_kpa: ambient,
        flow_basis: flow_basis?,
        flow_unit: flow_unit?,
        unlimited,
    })
}

/// Cross-checks between an outlet and the points of its devices, for outlets whose devices are
/// all understood (otherwise a missing point may only be a point with a problem of its own).
fn check_outlet_points(
    r: &mut Report,
    outlets: &[(At, Option<String>, Option<Outlet>)],
    devices: &[DeviceItem],
    statistics: Option<&Statistics>,
) {
    for (at, _, outlet) in outlets {
        let Some(outlet) = outlet else { continue };
        let of_outlet: Vec<&DeviceItem> =
            devices.iter().filter(|d| d.outlet.as_deref() == Some(outlet.name.as_str())).collect();
        if of_outlet.is_empty() || of_outlet.iter().any(|d| d.device.is_none()) {
            continue;
        }
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for item in &of_outlet {
            let Some(d) = &item.device else { continue };
            for p in &d.points {
                if let Some(other) = seen.insert(&p.factor, &d.name)
                    && other != d.name
                {
                    r.push(
                        &item.at,
                        "outlet",
                        format!(
                            "factor {} also comes from device \"{other}\" of outlet \"{}\": samples would mix",
                            p.factor, outlet.name
                        ),
                    );
                }
            }
        }
        if let Some(f) = &outlet.run_status
            && !seen.contains_key(f.as_str())
        {
            r.push(at, "run_status", format!("no device of this outlet has a point with factor {f}"));
        }
        let profile = outlet.profile.as_deref().and_then(crate::compute::limits::profile);
        let profile_o2 = profile.and_then(|p| p.o2_ref);
        if outlet.o2_ref.or(profile_o2).is_some() && !seen.contains_key("a19001") {
            let key = if outlet.o2_ref.is_some() { "o2_ref" } else { "profile" };
            r.push(
                at,
                key,
                "values are converted to a reference O2 but no device of this outlet measures O2 (a19001)",
            );
        }
        let mut limits = crate::compute::OutletLimits::resolve(profile, outlet.o2_ref, &outlet.limits);
        for (i, factor) in outlet.unlimited.iter().enumerate() {
            if limits.limit(factor).is_none() {
                r.push(at, &format!("unlimited[{i}]"), format!("{factor} is not limited at this outlet"));
            }
        }
        limits.remove(&outlet.unlimited);
        let measured = |f: &str| seen.contains_key(f);
        for factor in limits.limits.keys() {
            if crate::compute::realtime::supplied(factor, &measured, outlet.duct_area_m2.is_some()) {
                continue;
            }
            let (key, whose) = if outlet.limits.contains_key(factor) {
                (format!("limits.{factor}"), "this outlet".to_string())
            } else {
                ("profile".to_string(), format!("profile {}", outlet.profile.as_deref().unwrap_or("")))
            };
            r.push(
                at,
                &key,
                format!(
                    "{whose} limits {factor} ({}), which no device of this outlet measures; {}, or override the \
                     limit with unlimited = [\"{factor}\"]",
                    crate::factors::short(factor),
                    crate::compute::realtime::ways_to_supply(factor),
                ),
            );
        }
        // Every minute of a limited outlet needs `samples_per_minute` valid samples.
        if let Some(stats) = statistics.filter(|_| !limits.limits.is_empty()) {
            let need = stats.thresholds.samples_per_minute;
            let most = 60.0 / f64::from(need);
            for item in &of_outlet {
                let Some(d) = &item.device else { continue };
                let every = d.poll_interval.as_secs_f64();
                if every > most {
                    r.warn(
                        &item.at,
                        "poll_interval_s",
                        format!(
                            "polled every {every} s: a minute has fewer than the {need} samples it needs \
                             ([statistics] samples_per_minute), so every minute of this device's factors would be \
                             invalid; poll every {most} s or faster"
                        ),
                    );
                }
            }
        }
    }
}
