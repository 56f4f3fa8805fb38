//! Raw TOML → typed [`Config`], collecting every problem with its key path and line.
//!
//! Pure: takes the file's text and the folder relative paths are resolved against. The files a
//! configuration names (the SM4 key file of an HJ 212-2025 link) are checked by a function the
//! caller passes in ([`parse_with`]; `config::load` passes [`super::check_key_file`]), so that
//! their problems are listed with the others, with their key and line, without I/O here.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;

use super::raw::*;
use super::*;
use crate::acquire::registers::{DataType, RegisterRef, Table, WordOrder};

/// Built-in limit profiles known to the compliance statistics.
pub const PROFILES: [&str; 5] =
    ["power-coal", "steel-sinter-head", "cement-kiln", "coke-oven-chimney", "custom"];

const TOP_LEVEL: [&str; 8] = ["site", "storage", "statistics", "bus", "device", "outlet", "uplink", "web"];

/// The top level with each item and its position. Parsed first with every item typed (fast,
/// compact: a 10,000-point file is parsed on a Pi); if that fails, parsed again with every
/// item kept as an untyped value, so that one bad item cannot hide the problems of the others.
#[derive(Deserialize)]
#[serde(bound(
    deserialize = "Si: Deserialize<'de>, St: Deserialize<'de>, Sx: Deserialize<'de>, B: Deserialize<'de>, D: Deserialize<'de>, O: Deserialize<'de>, U: Deserialize<'de>"
))]
struct Doc<Si, St, Sx, B, D, O, U> {
    site: Option<Spanned<Si>>,
    storage: Option<Spanned<St>>,
    statistics: Option<Spanned<Sx>>,
    #[serde(default = "Vec::new")]
    bus: Vec<Spanned<B>>,
    #[serde(default = "Vec::new")]
    device: Vec<Spanned<D>>,
    #[serde(default = "Vec::new")]
    outlet: Vec<Spanned<O>>,
    #[serde(default = "Vec::new")]
    uplink: Vec<Spanned<U>>,
    /// Small: always kept untyped and checked by [`check_web`].
    web: Option<Spanned<toml::Value>>,
}

type Value = toml::Value;
type UntypedDoc = Doc<Value, Value, Value, Value, Value, Value, Value>;
type TypedDoc = Doc<
    Typed<RawSite>,
    Typed<RawStorage>,
    Typed<RawStatistics>,
    Typed<RawBus>,
    Typed<RawDevice<Typed<RawPoint>, Typed<RawStatus>>>,
    Typed<RawOutlet>,
    Typed<RawUplink>,
>;

/// An item already deserialized into its raw type.
#[derive(Deserialize)]
#[serde(transparent)]
struct Typed<T>(T);

/// An item as the parser left it: typed, or untyped and deserialized on demand (recording the
/// problem if that fails).
trait RawItem<T> {
    fn resolve(self, r: &mut Report, key: &str, line: usize) -> Option<T>;
}

impl<T: DeserializeOwned> RawItem<T> for toml::Value {
    fn resolve(self, r: &mut Report, key: &str, line: usize) -> Option<T> {
        r.item(key, line, self)
    }
}

impl<T> RawItem<T> for Typed<T> {
    fn resolve(self, _: &mut Report, _: &str, _: usize) -> Option<T> {
        Some(self.0)
    }
}

/// Checks a file the configuration names (the SM4 key file), by its resolved path: the
/// problem as a message, or `Ok`.
pub type FileCheck<'a> = &'a dyn Fn(&Path) -> Result<(), String>;

/// Collects problems while walking the file.
struct Report<'t> {
    text: &'t str,
    errors: Vec<ConfigError>,
    check_file: FileCheck<'t>,
}

impl Report<'_> {
    fn line_at(&self, offset: usize) -> usize {
        // Bytes, not a string slice: an offset inside a character must not panic.
        let bytes = self.text.as_bytes();
        bytes[..offset.min(bytes.len())].iter().filter(|b| **b == b'\n').count() + 1
    }

    fn push(&mut self, key: impl Into<String>, line: Option<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError { key: key.into(), line, message: message.into() });
    }

    /// Deserializes one item; on failure records the problem and returns `None`.
    fn item<T: DeserializeOwned>(&mut self, key: &str, line: usize, value: toml::Value) -> Option<T> {
        match value.try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = e.to_string().trim().replace('\n', " ");
                self.push(key, Some(line), msg);
                None
            }
        }
    }
}

/// Field context: key prefix and line of the table being checked.
#[derive(Clone)]
struct At {
    prefix: String,
    line: Option<usize>,
}

impl At {
    fn key(&self, field: &str) -> String {
        if self.prefix.is_empty() { field.to_string() } else { format!("{}.{field}", self.prefix) }
    }
}

impl Report<'_> {
    fn need<T>(&mut self, at: &At, field: &str, v: Option<T>) -> Option<T> {
        if v.is_none() {
            self.push(at.key(field), at.line, "is required");
        }
        v
    }

    fn int_in<T: TryFrom<i64>>(
        &mut self,
        at: &At,
        field: &str,
        v: Option<i64>,
        lo: i64,
        hi: i64,
    ) -> Option<T> {
        let v = v?;
        if v < lo || v > hi {
            self.push(at.key(field), at.line, format!("must be between {lo} and {hi}, got {v}"));
            return None;
        }
        T::try_from(v).ok()
    }

    fn one_of<T>(
        &mut self,
        at: &At,
        field: &str,
        v: Option<&str>,
        parse: impl Fn(&str) -> Option<T>,
        allowed: &str,
    ) -> Option<T> {
        let s = v?;
        let parsed = parse(s);
        if parsed.is_none() {
            self.push(at.key(field), at.line, format!("must be one of {allowed}, got \"{s}\""));
        }
        parsed
    }

    fn forbid<T>(&mut self, at: &At, field: &str, v: &Option<T>, why: &str) {
        if v.is_some() {
            self.push(at.key(field), at.line, format!("is not allowed {why}"));
        }
    }
}

/// Parses and validates a whole file, without looking at the files it names (see [`parse_with`]).
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
    parse_with(text, base, &|_| Ok(()))
}

/// Parses and validates a whole file; `check_file` checks each file it names.
pub fn parse_with<'t>(
    text: &'t str,
    base: &Path,
    check_file: FileCheck<'t>,
) -> Result<Config, Vec<ConfigError>> {
    let mut r = Report { text, errors: Vec::new(), check_file };
    // Top-level keys only: values are skipped, not built, to keep the peak memory of a large
    // file low (a 10,000-point file is parsed on a Pi).
    let table: BTreeMap<String, serde::de::IgnoredAny> = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| r.line_at(s.start));
            r.push("(syntax)", line, e.message().trim().to_string());
            return Err(r.errors);
        }
    };
    for key in table.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            r.push(key.clone(), None, format!("unknown section; expected one of {}", TOP_LEVEL.join(", ")));
        }
    }
    drop(table);
    if let Ok(doc) = toml::from_str::<TypedDoc>(text) {
        let config = check(&mut r, doc, base);
        return match config {
            Some(c) if r.errors.is_empty() => Ok(c),
            _ => Err(r.errors),
        };
    }
    let doc: UntypedDoc = match toml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let line = e.span().map(|s| r.line_at(s.start));
            r.push("(structure)", line, e.message().trim().to_string());
            return Err(r.errors);
        }
    };
    let config = check::<_, _, _, _, _, _, _, Value, Value>(&mut r, doc, base);
    match config {
        Some(c) if r.errors.is_empty() => Ok(c),
        _ => Err(r.errors),
    }
}

fn check<Si, St, Sx, B, D, O, U, P, S>(
    r: &mut Report,
    doc: Doc<Si, St, Sx, B, D, O, U>,
    base: &Path,
) -> Option<Config>
where
    Si: RawItem<RawSite>,
    St: RawItem<RawStorage>,
    Sx: RawItem<RawStatistics>,
    B: RawItem<RawBus>,
    D: RawItem<RawDevice<P, S>>,
    O: RawItem<RawOutlet>,
    U: RawItem<RawUplink>,
    P: RawItem<RawPoint>,
    S: RawItem<RawStatus>,
{
    let site = match doc.site {
        Some(s) => {
            let line = r.line_at(s.span().start);
            s.into_inner().resolve(r, "site", line).and_then(|raw| check_site(r, raw, line))
        }
        None => {
            r.push("site", None, "section [site] is required");
            None
        }
    };
    let storage = match doc.storage {
        Some(s) => {
            let line = r.line_at(s.span().start);
            s.into_inner().resolve(r, "storage", line).and_then(|raw| check_storage(r, raw, line, base))
        }
        None => {
            r.push("storage", None, "section [storage] is required");
            None
        }
    };

    let statistics = match doc.statistics {
        Some(s) => {
            let line = r.line_at(s.span().start);
            s.into_inner().resolve(r, "statistics", line).and_then(|raw| check_statistics(r, raw, line))
        }
        None => check_statistics(r, RawStatistics::default(), 0),
    };
    let web = check_web(r, doc.web);

    let outlets: Vec<Option<Outlet>> = doc
        .outlet
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let line = r.line_at(v.span().start);
            let key = format!("outlet[{i}]");
            v.into_inner()
                .resolve(r, &key, line)
                .and_then(|raw| check_outlet(r, raw, At { prefix: key.clone(), line: Some(line) }))
        })
        .collect();
    unique(r, "outlet", outlets.iter().map(|o| o.as_ref().map(|o| o.name.as_str())));

    // Names of every bus that has one, even an invalid bus, so that devices naming it are not
    // reported as pointing nowhere.
    let mut bus_names: Vec<Option<String>> = Vec::new();
    let buses: Vec<Option<Bus>> = doc
        .bus
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let line = r.line_at(v.span().start);
            let key = format!("bus[{i}]");
            // One entry per bus, even one that did not parse, so that positions match bus[i].
            let Some(raw): Option<RawBus> = v.into_inner().resolve(r, &key, line) else {
                bus_names.push(None);
                return None;
            };
            bus_names.push(raw.name.clone());
            check_bus(r, raw, At { prefix: key.clone(), line: Some(line) })
        })
        .collect();
    unique(r, "bus", bus_names.iter().map(Option::as_deref));

    if doc.device.is_empty() {
        r.push("device", None, "at least one [[device]] is required");
    }
    let devices: Vec<Option<Device>> = doc
        .device
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let line = r.line_at(v.span().start);
            let key = format!("device[{i}]");
            v.into_inner().resolve(r, &key, line).and_then(|raw| {
                check_device(
                    r,
                    raw,
                    At { prefix: key.clone(), line: Some(line) },
                    &buses,
                    &bus_names,
                    &outlets,
                )
            })
        })
        .collect();
    unique(r, "device", devices.iter().map(|d| d.as_ref().map(|d| d.name.as_str())));

    let buses: Vec<Bus> = buses.into_iter().collect::<Option<_>>()?;
    let devices: Vec<Device> = devices.into_iter().collect::<Option<_>>()?;
    let outlets: Vec<Outlet> = outlets.into_iter().collect::<Option<_>>()?;
    check_outlet_points(r, &outlets, &devices);
    check_hj212_inputs(r, &buses, &devices);
    let site_ref = site.as_ref();
    let uplinks: Vec<Option<Uplink>> = doc
        .uplink
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let line = r.line_at(v.span().start);
            let key = format!("uplink[{i}]");
            let raw: RawUplink = v.into_inner().resolve(r, &key, line)?;
            check_uplink(r, raw, At { prefix: key, line: Some(line) }, site_ref, &outlets, base)
        })
        .collect();
    unique(r, "uplink", uplinks.iter().map(|u| u.as_ref().map(|u| u.name.as_str())));
    let uplinks: Vec<Uplink> = uplinks.into_iter().collect::<Option<_>>()?;
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
        outlets,
        uplinks,
        web: web?,
    })
}

fn unique<'a>(r: &mut Report, section: &str, names: impl Iterator<Item = Option<&'a str>>) {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if let Some(name) = name
            && !seen.insert(name)
        {
            r.push(format!("{section}[{i}].name"), None, format!("duplicate name \"{name}\""));
        }
    }
}

fn check_site(r: &mut Report, raw: RawSite, line: usize) -> Option<Site> {
    let at = At { prefix: "site".into(), line: Some(line) };
    let mn = r.need(&at, "mn", raw.mn);
    if let Some(mn) = &mn
        && (mn.is_empty() || mn.len() > 24 || !mn.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        r.push(at.key("mn"), at.line, format!("must be 1 to 24 letters or digits, got \"{mn}\""));
    }
    let pw = r.need(&at, "pw", raw.pw);
    if let Some(pw) = &pw
        && (pw.chars().count() != 6 || !pw.is_ascii())
    {
        r.push(at.key("pw"), at.line, "must be exactly 6 ASCII characters");
    }
    let st = r.int_in::<u16>(&at, "st", Some(raw.st.unwrap_or(31)), 1, 99);
    let industry = r.one_of(
        &at,
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
        r.push(
            at.key("utc_offset_hours"),
            at.line,
            format!("must be between -12 and 14 in quarter hours, got {offset}"),
        );
    }
    Some(Site {
        mn: mn?,
        pw: pw?,
        st: st?,
        name: raw.name.unwrap_or_default(),
        industry: industry?,
        utc_offset_s: (offset * 3600.0) as i64,
    })
}

fn check_storage(r: &mut Report, raw: RawStorage, line: usize, base: &Path) -> Option<Storage> {
    let at = At { prefix: "storage".into(), line: Some(line) };
    let path = r
        .need(&at, "path", raw.path)
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { base.join(p) } else { p });
    let days = r.int_in::<u64>(&at, "retention_days", Some(raw.retention_days.unwrap_or(400)), 1, 36_500);
    let mb = r.int_in::<u64>(&at, "max_size_mb", Some(raw.max_size_mb.unwrap_or(4096)), 1, 1 << 30);
    let flush = r.int_in::<u64>(&at, "flush_ms", Some(raw.flush_ms.unwrap_or(1000)), 10, 60_000);
    Some(Storage {
        path: path?,
        retention: Duration::from_secs(days? * 86_400),
        max_size_bytes: mb? * 1024 * 1024,
        flush_interval: Duration::from_millis(flush?),
    })
}

fn check_address(r: &mut Report, at: &At, address: Option<String>) -> Option<String> {
    let a = r.need(at, "address", address)?;
    match a.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Some(a),
        _ => {
            r.push(at.key("address"), at.line, format!("must be host:port, got \"{a}\""));
            None
        }
    }
}

/// The caps of an HJ 212 input listener: senders at once, and the silence after which one is
/// dropped (derived from the devices' intervals when not given).
fn check_listen_limits(r: &mut Report, at: &At, raw: &RawBus) -> Option<ListenLimits> {
    let max = ListenLimits::MAX_CONNECTIONS as i64;
    let default = ListenLimits::DEFAULT_CONNECTIONS as i64;
    let n = r.int_in::<usize>(at, "max_connections", Some(raw.max_connections.unwrap_or(default)), 1, max);
    let idle_timeout = match raw.idle_timeout_s {
        Some(s) => Some(Duration::from_secs(r.int_in::<u64>(at, "idle_timeout_s", Some(s), 1, 86_400)?)),
        None => None,
    };
    Some(ListenLimits { max_connections: n?, idle_timeout })
}

fn check_serial(r: &mut Report, at: &At, raw: &RawBus) -> Option<SerialSettings> {
    let path = r.need(at, "path", raw.path.clone());
    let baud = r.int_in::<u32>(at, "baud", Some(raw.baud.unwrap_or(9600)), 300, 4_000_000);
    let parity = r.one_of(
        at,
        "parity",
        Some(raw.parity.as_deref().unwrap_or("none")),
        |s| match s {
            "none" => Some(Parity::None),
            "even" => Some(Parity::Even),
            "odd" => Some(Parity::Odd),
            _ => None,
        },
        "none, even, odd",
    );
    let data_bits = r.int_in::<u8>(at, "data_bits", Some(raw.data_bits.unwrap_or(8)), 7, 8);
    let stop_bits = r.int_in::<u8>(at, "stop_bits", Some(raw.stop_bits.unwrap_or(1)), 1, 2);
    Some(SerialSettings {
        path: path?,
        baud: baud?,
        parity: parity?,
        data_bits: data_bits?,
        stop_bits: stop_bits?,
    })
}

fn check_bus(r: &mut Report, raw: RawBus, at: At) -> Option<Bus> {
    let name = r.need(&at, "name", raw.name.clone());
    let kind = r.need(&at, "kind", raw.kind.clone());
    let link = match kind.as_deref() {
        Some("rtu") => {
            r.forbid(&at, "address", &raw.address, "for kind = \"rtu\" (use path)");
            check_serial(r, &at, &raw).map(Link::Rtu)
        }
        Some(k @ ("tcp" | "rtu-over-tcp")) => {
            for (field, set) in [
                ("path", raw.path.is_some()),
                ("baud", raw.baud.is_some()),
                ("parity", raw.parity.is_some()),
                ("data_bits", raw.data_bits.is_some()),
                ("stop_bits", raw.stop_bits.is_some()),
            ] {
                if set {
                    r.push(
                        at.key(field),
                        at.line,
                        format!("is not allowed for kind = \"{k}\" (use address)"),
                    );
                }
            }
            check_address(r, &at, raw.address.clone())
                .map(|address| if k == "tcp" { Link::Tcp { address } } else { Link::RtuOverTcp { address } })
        }
        Some("ascii") => match (&raw.path, &raw.address) {
            (Some(_), None) => check_serial(r, &at, &raw).map(Link::AsciiSerial),
            (None, Some(_)) => {
                check_address(r, &at, raw.address.clone()).map(|address| Link::AsciiTcp { address })
            }
            _ => {
                r.push(at.key("path"), at.line, "kind = \"ascii\" needs exactly one of path or address");
                None
            }
        },
        Some("hj212") => {
            r.forbid(&at, "address", &raw.address, "for kind = \"hj212\" (use listen or path)");
            match (&raw.path, &raw.listen) {
                (Some(_), None) => check_serial(r, &at, &raw).map(Link::Hj212Serial),
                (None, Some(_)) => {
                    let limits = check_listen_limits(r, &at, &raw);
                    check_address(r, &at, raw.listen.clone())
                        .and_then(|address| Some(Link::Hj212Listen { address, limits: limits? }))
                }
                _ => {
                    r.push(at.key("listen"), at.line, "kind = \"hj212\" needs exactly one of listen or path");
                    None
                }
            }
        }
        Some(other) => {
            r.push(
                at.key("kind"),
                at.line,
                format!("must be one of rtu, tcp, rtu-over-tcp, ascii, hj212, got \"{other}\""),
            );
            None
        }
        None => None,
    };
    if kind.as_deref() != Some("hj212") || raw.listen.is_none() {
        let why = "without listen (only kind = \"hj212\" with listen accepts connections)";
        r.forbid(&at, "max_connections", &raw.max_connections, why);
        r.forbid(&at, "idle_timeout_s", &raw.idle_timeout_s, why);
    }
    if kind.as_deref() != Some("hj212") {
        r.forbid(&at, "listen", &raw.listen, "for this kind (only kind = \"hj212\" listens)");
    }
    let timeout = r.int_in::<u64>(&at, "timeout_ms", Some(raw.timeout_ms.unwrap_or(1000)), 10, 60_000);
    let inter_frame = r.int_in::<u64>(&at, "inter_frame_ms", raw.inter_frame_ms, 0, 10_000);
    let reconnect = r.int_in::<u64>(&at, "reconnect_max_s", Some(raw.reconnect_max_s.unwrap_or(30)), 1, 3600);
    let link = link?;
    // Default silence between frames: 3.5 characters on a serial line (at least 2 ms, the
    // fixed 1.75 ms of fast lines rounded up), nothing on TCP.
    let inter_frame = match (inter_frame, &link) {
        (Some(ms), _) => Duration::from_millis(ms),
        (None, Link::Rtu(s) | Link::AsciiSerial(s)) => (s.char_time() * 7 / 2).max(Duration::from_millis(2)),
        (None, _) => Duration::ZERO,
    };
    Some(Bus {
        name: name?,
        link,
        timeout: Duration::from_millis(timeout?),
        inter_frame,
        reconnect_max: Duration::from_secs(reconnect?),
    })
}

fn check_outlet(r: &mut Report, raw: RawOutlet, at: At) -> Option<Outlet> {
    let name = r.need(&at, "name", raw.name);
    if let Some(p) = &raw.profile
        && !PROFILES.contains(&p.as_str())
    {
        r.push(at.key("profile"), at.line, format!("must be one of {}, got \"{p}\"", PROFILES.join(", ")));
    }
    if let Some(o2) = raw.o2_ref
        && !(0.0..21.0).contains(&o2)
    {
        r.push(at.key("o2_ref"), at.line, format!("must be at least 0 and below 21 (%), got {o2}"));
    }
    if let Some(a) = raw.duct_area_m2
        && !(a > 0.0 && a.is_finite())
    {
        r.push(at.key("duct_area_m2"), at.line, format!("must be positive, got {a}"));
    }
    let limits = raw.limits.unwrap_or_default();
    for (factor, v) in &limits {
        if !valid_factor(factor) {
            r.push(at.key(&format!("limits.{factor}")), at.line, "is not an HJ 212 factor code");
        }
        if !(*v > 0.0 && v.is_finite()) {
            r.push(at.key(&format!("limits.{factor}")), at.line, format!("must be positive, got {v}"));
        }
    }
    if raw.profile.as_deref() == Some("custom") && limits.is_empty() {
        r.push(
            at.key("limits"),
            at.line,
            "a custom profile needs its limits, e.g. limits = { a21026 = 35.0 }",
        );
    }
    if let Some(f) = &raw.run_status
        && !valid_factor(f)
    {
        r.push(at.key("run_status"), at.line, format!("must be a factor code such as SB1-RS, got \"{f}\""));
    }
    let kv = raw.velocity_coefficient.unwrap_or(1.0);
    if !(kv > 0.0 && kv <= 5.0) {
        r.push(at.key("velocity_coefficient"), at.line, format!("must be above 0 and at most 5, got {kv}"));
    }
    let ambient = raw.ambient_pressure_kpa.unwrap_or(101.325);
    if !(50.0..=120.0).contains(&ambient) {
        r.push(
            at.key("ambient_pressure_kpa"),
            at.line,
            format!("must be between 50 and 120 kPa, got {ambient}"),
        );
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
    })
}

fn check_uplink(
    r: &mut Report,
    raw: RawUplink,
    at: At,
    site: Option<&Site>,
    outlets: &[Outlet],
    base: &Path,
) -> Option<Uplink> {
    let v2025 = check_2025(r, &at, &raw, raw.protocol.as_deref() == Some("2025"), base);
    let name = r.need(&at, "name", raw.name);
    let kind = raw.kind.unwrap_or_else(|| "hj212".into());
    let http = kind == "http";
    if kind != "hj212" && !http {
        r.push(at.key("kind"), at.line, format!("must be one of hj212, http, got \"{kind}\""));
    }
    let transport = if http {
        check_http(r, &at, raw.url, raw.token, raw.batch)
    } else {
        for (key, set) in
            [("url", raw.url.is_some()), ("token", raw.token.is_some()), ("batch", raw.batch.is_some())]
        {
            if set {
                r.push(at.key(key), at.line, "applies only to kind = \"http\"");
            }
        }
        Some(Transport::Hj212)
    };
    if http && raw.realtime == Some(true) {
        r.push(at.key("realtime"), at.line, "real-time (2011) data is sent over HJ 212 only");
    }
    let outlet = match raw.outlet {
        Some(o) => Some(o),
        None if outlets.len() == 1 => Some(outlets[0].name.clone()),
        None => {
            r.push(at.key("outlet"), at.line, "is required when there is not exactly one [[outlet]]");
            None
        }
    };
    if let Some(o) = &outlet
        && !outlets.iter().any(|x| &x.name == o)
    {
        r.push(at.key("outlet"), at.line, format!("no [[outlet]] is named \"{o}\""));
    }
    let address = match &transport {
        Some(Transport::Http { url, .. }) => Some(url.clone()),
        _ if http => None,
        _ => check_address(r, &at, raw.address),
    };
    let protocol = r.one_of(
        &at,
        "protocol",
        Some(raw.protocol.as_deref().unwrap_or("2017")),
        |s| match s {
            "2017" => Some(Protocol212::V2017),
            "2025" => Some(Protocol212::V2025),
            _ => None,
        },
        "2017, 2025",
    );
    let onboarding = v2025.as_ref().is_some_and(|p| p.onboarding);
    let mn = if onboarding {
        // Assigned by the platform (1002); until then the logger sends an empty MN.
        Some(raw.mn.unwrap_or_default())
    } else {
        raw.mn.or_else(|| site.map(|s| s.mn.clone()))
    };
    if let Some(mn) = &mn
        && !(onboarding && mn.is_empty())
        && (mn.is_empty() || mn.len() > 24 || !mn.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        r.push(at.key("mn"), at.line, format!("must be 1 to 24 letters or digits, got \"{mn}\""));
    }
    let pw = raw.pw.or_else(|| site.map(|s| s.pw.clone()));
    if let Some(pw) = &pw
        && (pw.chars().count() != 6 || !pw.is_ascii())
    {
        r.push(at.key("pw"), at.line, "must be exactly 6 ASCII characters");
    }
    let st = r.int_in::<u16>(&at, "st", raw.st.or(site.map(|s| i64::from(s.st))), 1, 99);
    let rtd = r.int_in::<u64>(&at, "rtd_interval_s", Some(raw.rtd_interval_s.unwrap_or(30)), 30, 3600);
    let min_interval = r.int_in::<u32>(&at, "min_interval", Some(raw.min_interval.unwrap_or(10)), 1, 30);
    if let Some(m) = min_interval
        && ![1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30].contains(&m)
    {
        r.push(
            at.key("min_interval"),
            at.line,
            format!("must be one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, got {m}"),
        );
    }
    // Table 1 of the standard: GPRS/CDMA 10 s × 3, ADSL 5 s × 3, NB-IoT 30 s × 5 (2025).
    let (overtime_default, recount_default) = match raw.network.as_deref() {
        None | Some("gprs" | "cdma" | "4g") => (10, 3),
        Some("adsl" | "ethernet") => (5, 3),
        Some("nb-iot") => (30, 5),
        Some(other) => {
            r.push(
                at.key("network"),
                at.line,
                format!("must be one of gprs, cdma, 4g, adsl, ethernet, nb-iot, got \"{other}\""),
            );
            (10, 3)
        }
    };
    let overtime =
        r.int_in::<u64>(&at, "overtime_s", Some(raw.overtime_s.unwrap_or(overtime_default)), 1, 99);
    let recount = r.int_in::<u32>(&at, "recount", Some(raw.recount.unwrap_or(recount_default)), 1, 99);
    let window = r.int_in::<u32>(&at, "window", Some(raw.window.unwrap_or(1)), 1, 64);
    let reconnect = r.int_in::<u64>(&at, "reconnect_max_s", Some(raw.reconnect_max_s.unwrap_or(60)), 1, 3600);
    let heartbeat = r.int_in::<u64>(&at, "heartbeat_s", Some(raw.heartbeat_s.unwrap_or(60)), 5, 3600);
    Some(Uplink {
        name: name?,
        transport: transport?,
        outlet: outlet?,
        address: address?,
        protocol: protocol?,
        mn: mn?,
        pw: pw?,
        st: st?,
        realtime: raw.realtime.unwrap_or(!http),
        rtd_interval: Duration::from_secs(rtd?),
        minute: raw.minute.unwrap_or(true),
        min_interval: min_interval?,
        hour: raw.hour.unwrap_or(true),
        day: raw.day.unwrap_or(true),
        ack: raw.ack.unwrap_or(true),
        overtime: Duration::from_secs(overtime?),
        recount: recount?,
        window: window?,
        reconnect_max: Duration::from_secs(reconnect?),
        heartbeat: Duration::from_secs(heartbeat?),
        v2025: v2025?,
    })
}

/// The HJ 212-2025 settings of a link; with the 2017 profile they must not be set.
fn check_2025(r: &mut Report, at: &At, raw: &RawUplink, is_2025: bool, base: &Path) -> Option<Profile2025> {
    if !is_2025 {
        for (key, set) in [
            ("encrypt", raw.encrypt.is_some()),
            ("key_file", raw.key_file.is_some()),
            ("length_field", raw.length_field.is_some()),
            ("accept_2017", raw.accept_2017.is_some()),
            ("onboarding", raw.onboarding.is_some()),
            ("logger_id", raw.logger_id.is_some()),
            ("key_request_after_days", raw.key_request_after_days.is_some()),
            ("operating_parameters", raw.operating_parameters.is_some()),
            ("unconvertible_value", raw.unconvertible_value.is_some()),
        ] {
            if set {
                r.push(at.key(key), at.line, "applies only to protocol = \"2025\"");
            }
        }
        return Some(Profile2025::default());
    }
    let encrypt = raw.encrypt.unwrap_or(false);
    let key_file = raw.key_file.as_ref().map(|k| base.join(k));
    let mut ok = true;
    match (&key_file, encrypt) {
        (None, true) => {
            r.push(at.key("key_file"), at.line, "is required with encrypt = true (the registered SM4 key)");
            ok = false;
        }
        (Some(path), _) => {
            let check = r.check_file;
            if let Err(problem) = check(path) {
                r.push(at.key("key_file"), at.line, problem);
                ok = false;
            }
        }
        (None, false) => {}
    }
    let length_rule = r.one_of(
        at,
        "length_field",
        Some(raw.length_field.as_deref().unwrap_or("plain")),
        |s| match s {
            "plain" => Some(crate::hj212::crypt::LengthRule::Plain),
            "wire" => Some(crate::hj212::crypt::LengthRule::Wire),
            _ => None,
        },
        "plain, wire",
    );
    if let Some(id) = &raw.logger_id
        && (id.is_empty() || id.contains([';', ',', '=', '&']))
    {
        r.push(at.key("logger_id"), at.line, "must be non-empty without ; , = &");
        ok = false;
    }
    let days =
        r.int_in::<u64>(at, "key_request_after_days", Some(raw.key_request_after_days.unwrap_or(80)), 1, 89);
    let operating_parameters = raw.operating_parameters.clone().unwrap_or_default();
    for (i, f) in operating_parameters.iter().enumerate() {
        if !valid_factor(f) {
            r.push(
                at.key(&format!("operating_parameters[{i}]")),
                at.line,
                format!("is not an HJ 212 factor code: \"{f}\""),
            );
            ok = false;
        }
    }
    let unconvertible = raw.unconvertible_value.unwrap_or(9999.99);
    if !(unconvertible.is_finite() && unconvertible > 0.0) {
        r.push(
            at.key("unconvertible_value"),
            at.line,
            format!("must be a positive number, got {unconvertible}"),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(Profile2025 {
        encrypt,
        key_file,
        length_rule: Some(length_rule?),
        accept_2017: raw.accept_2017.unwrap_or(false),
        onboarding: raw.onboarding.unwrap_or(false),
        logger_id: raw.logger_id.clone(),
        key_request_after: Duration::from_secs(days? * 86_400),
        operating_parameters,
        unconvertible_value: unconvertible,
    })
}

/// The target of an HTTP link: an http(s) URL, an optional bearer token, a batch size.
fn check_http(
    r: &mut Report,
    at: &At,
    url: Option<String>,
    token: Option<String>,
    batch: Option<i64>,
) -> Option<Transport> {
    let url = r.need(at, "url", url).and_then(|u| match reqwest::Url::parse(&u) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => Some(u),
        Ok(_) => {
            r.push(at.key("url"), at.line, format!("must be an http:// or https:// URL, got \"{u}\""));
            None
        }
        Err(e) => {
            r.push(at.key("url"), at.line, format!("is not a URL ({e}): \"{u}\""));
            None
        }
    });
    if let Some(t) = &token
        && (t.is_empty() || !t.chars().all(|c| c.is_ascii_graphic()))
    {
        // The token itself is not echoed: it is a secret.
        r.push(at.key("token"), at.line, "must be non-empty printable ASCII without spaces");
    }
    let batch = r.int_in::<u32>(at, "batch", Some(batch.unwrap_or(60)), 1, 1000);
    Some(Transport::Http { url: url?, token, batch: batch? })
}

/// Devices sharing an hj212 bus are told apart by their MN: each needs its own.
fn check_hj212_inputs(r: &mut Report, buses: &[Bus], devices: &[Device]) {
    for (b, bus) in buses.iter().enumerate().filter(|(_, b)| b.link.is_hj212()) {
        let on_bus: Vec<(usize, &Device)> = devices.iter().enumerate().filter(|(_, d)| d.bus == b).collect();
        if on_bus.len() < 2 {
            continue;
        }
        let mut seen = HashSet::new();
        for (i, d) in on_bus {
            match &d.protocol {
                Protocol::Hj212 { mn: Some(mn) } => {
                    if !seen.insert(mn.clone()) {
                        r.push(
                            format!("device[{i}].mn"),
                            None,
                            format!("\"{mn}\" is used by two devices of bus \"{}\"", bus.name),
                        );
                    }
                }
                _ => r.push(
                    format!("device[{i}].mn"),
                    None,
                    format!("is required: several devices share the hj212 bus \"{}\"", bus.name),
                ),
            }
        }
    }
}

/// Cross-checks between an outlet and the points of its devices.
fn check_outlet_points(r: &mut Report, outlets: &[Outlet], devices: &[Device]) {
    for (i, outlet) in outlets.iter().enumerate() {
        let key = |f: &str| format!("outlet[{i}].{f}");
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for d in devices.iter().filter(|d| d.outlet.as_deref() == Some(&outlet.name)) {
            for p in &d.points {
                if let Some(other) = seen.insert(&p.factor, &d.name) {
                    r.push(
                        key("name"),
                        None,
                        format!("factor {} comes from two devices of this outlet ({other} and {}): samples would mix", p.factor, d.name),
                    );
                }
            }
        }
        if seen.is_empty() {
            continue;
        }
        if let Some(f) = &outlet.run_status
            && !seen.contains_key(f.as_str())
        {
            r.push(key("run_status"), None, format!("no device of this outlet has a point with factor {f}"));
        }
        let profile_o2 =
            outlet.profile.as_deref().and_then(crate::compute::limits::profile).and_then(|p| p.o2_ref);
        if outlet.o2_ref.or(profile_o2).is_some() && !seen.contains_key("a19001") {
            r.push(
                key("o2_ref"),
                None,
                "values are converted to a reference O2 but no device of this outlet measures O2 (a19001)",
            );
        }
    }
}

fn check_statistics(r: &mut Report, raw: RawStatistics, line: usize) -> Option<Statistics> {
    let at = At { prefix: "statistics".into(), line: (line > 0).then_some(line) };
    let d = crate::compute::Thresholds::HJ75;
    let n = |r: &mut Report, field: &str, v: Option<i64>, default: u32, hi: i64| {
        r.int_in::<u32>(&at, field, Some(v.unwrap_or(i64::from(default))), 1, hi)
    };
    let samples = n(r, "samples_per_minute", raw.samples_per_minute, d.samples_per_minute, 60);
    let minutes = n(r, "minutes_per_hour", raw.minutes_per_hour, d.minutes_per_hour, 60);
    let hours = n(r, "hours_per_day", raw.hours_per_day, d.hours_per_day, 24);
    let days = n(r, "days_per_month", raw.days_per_month, d.days_per_month, 31);
    let february = n(r, "days_per_february", raw.days_per_february, d.days_per_february, 29);
    let share = raw.normal_share.unwrap_or(d.normal_share);
    if !(share > 0.0 && share <= 1.0) {
        r.push(at.key("normal_share"), at.line, format!("must be above 0 and at most 1, got {share}"));
    }
    let guard = raw.o2_guard_pct.unwrap_or(20.5);
    if !(guard > 0.0 && guard <= 21.0) {
        r.push(at.key("o2_guard_pct"), at.line, format!("must be above 0 and at most 21, got {guard}"));
    }
    Some(Statistics {
        thresholds: crate::compute::Thresholds {
            samples_per_minute: samples?,
            minutes_per_hour: minutes?,
            hours_per_day: hours?,
            days_per_month: days?,
            days_per_february: february?,
            normal_share: share,
        },
        o2_guard_pct: guard,
    })
}

fn valid_factor(code: &str) -> bool {
    let mut chars = code.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && code.len() <= 20
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn check_register(
    r: &mut Report,
    at: &At,
    table: Option<&str>,
    address: Option<i64>,
    ty: Option<&str>,
    order: Option<&str>,
) -> Option<RegisterRef> {
    let table = r.one_of(at, "table", Some(table.unwrap_or("holding")), Table::parse, "holding, input");
    let address = r.need(at, "address", address);
    let address = r.int_in::<u16>(at, "address", address, 0, 65_535);
    let ty = r.need(at, "type", ty);
    let ty = r.one_of(at, "type", ty, DataType::parse, "u16, i16, u32, i32, f32, f64");
    let order =
        r.one_of(at, "word_order", Some(order.unwrap_or("ABCD")), WordOrder::parse, "ABCD, CDAB, BADC, DCBA");
    let reg = RegisterRef { table: table?, address: address?, ty: ty?, order: order? };
    if reg.end() > 65_536 {
        r.push(at.key("address"), at.line, "value runs past register 65535");
        return None;
    }
    Some(reg)
}

fn check_device<P: RawItem<RawPoint>, S: RawItem<RawStatus>>(
    r: &mut Report,
    raw: RawDevice<P, S>,
    at: At,
    buses: &[Option<Bus>],
    bus_names: &[Option<String>],
    outlets: &[Option<Outlet>],
) -> Option<Device> {
    let name = r.need(&at, "name", raw.name);
    let bus_name = r.need(&at, "bus", raw.bus);
    let bus_index = bus_name.as_ref().and_then(|b| {
        let i = buses.iter().position(|x| x.as_ref().is_some_and(|x| &x.name == b));
        if !bus_names.iter().flatten().any(|n| n == b) {
            r.push(at.key("bus"), at.line, format!("no [[bus]] is named \"{b}\""));
        }
        i
    });
    let bus = bus_index.and_then(|i| buses[i].as_ref());
    let is_ascii = bus.is_some_and(|b| b.link.is_ascii());
    let is_hj212 = bus.is_some_and(|b| b.link.is_hj212());
    let is_tcp = bus.is_some_and(|b| matches!(b.link, Link::Tcp { .. }));
    if !is_hj212 {
        r.forbid(&at, "mn", &raw.mn, "on a polled device (only on a bus of kind = \"hj212\")");
    }
    let slave = if is_ascii || is_hj212 {
        Some(raw.slave.unwrap_or(0) as u8)
    } else {
        let s = r.need(&at, "slave", raw.slave);
        // 0 is broadcast on serial lines; behind a TCP gateway 0 and 255 address the gateway itself.
        if is_tcp { r.int_in::<u8>(&at, "slave", s, 0, 255) } else { r.int_in::<u8>(&at, "slave", s, 1, 247) }
    };
    // HJ 75 asks for at most 5 s between real-time samples and a minute needs 12 valid ones:
    // polling every 2 s leaves room for a few slipped or abnormal samples in each minute.
    let interval = raw.poll_interval_s.unwrap_or(2.0);
    let interval = if (0.1..=3600.0).contains(&interval) {
        Some(Duration::from_secs_f64(interval))
    } else {
        r.push(at.key("poll_interval_s"), at.line, format!("must be between 0.1 and 3600, got {interval}"));
        None
    };
    if let Some(o) = &raw.outlet
        && !outlets.iter().any(|x| x.as_ref().is_some_and(|x| &x.name == o))
        && !outlets.iter().any(Option::is_none)
    {
        r.push(at.key("outlet"), at.line, format!("no [[outlet]] is named \"{o}\""));
    }
    let max_gap = r.int_in::<u16>(&at, "max_gap", Some(raw.max_gap.unwrap_or(8)), 0, 120);

    let protocol = match (&raw.ascii, is_ascii || is_hj212, bus.is_some()) {
        (ascii, true, _) if is_hj212 => {
            r.forbid(&at, "ascii", ascii, "on a bus of kind = \"hj212\"");
            if let Some(mn) = &raw.mn
                && (mn.is_empty() || mn.len() > 24 || !mn.chars().all(|c| c.is_ascii_alphanumeric()))
            {
                r.push(at.key("mn"), at.line, format!("must be 1 to 24 letters or digits, got \"{mn}\""));
            }
            Some(Protocol::Hj212 { mn: raw.mn.clone() })
        }
        (Some(a), true, _) => {
            let sub = At { prefix: at.key("ascii"), line: at.line };
            let request = r.need(&sub, "request", a.request.clone());
            let pattern = r.need(&sub, "pattern", a.pattern.clone()).and_then(|p| match Regex::new(&p) {
                Ok(re) => Some(re),
                Err(e) => {
                    r.push(sub.key("pattern"), sub.line, format!("is not a valid regular expression: {e}"));
                    None
                }
            });
            request
                .zip(pattern)
                .map(|(request, pattern)| Protocol::Ascii { request: unescape(&request), pattern })
        }
        (None, true, _) => {
            r.push(
                at.key("ascii"),
                at.line,
                "a device on an ascii bus needs [device.ascii] with request and pattern",
            );
            None
        }
        (Some(_), false, true) => {
            r.push(at.key("ascii"), at.line, "is only allowed on a bus of kind = \"ascii\"");
            None
        }
        (_, false, _) => Some(Protocol::Modbus),
    };

    if raw.point.is_empty() {
        r.push(at.key("point"), at.line, "at least one [[device.point]] is required");
    }
    let mut factors = HashSet::new();
    let points: Vec<Option<Point>> = raw
        .point
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let pat = At { prefix: at.key(&format!("point[{i}]")), line: at.line };
            let line = at.line.unwrap_or(0);
            let p: RawPoint = v.resolve(r, &pat.prefix, line)?;
            let point = check_point(r, p, &pat, &protocol, is_ascii, is_hj212)?;
            if !factors.insert(point.factor.clone()) {
                r.push(
                    pat.key("factor"),
                    pat.line,
                    format!("factor \"{}\" appears twice in this device", point.factor),
                );
            }
            Some(point)
        })
        .collect();

    if (is_ascii || is_hj212) && !raw.status.is_empty() {
        r.push(at.key("status"), at.line, "status registers need a Modbus bus");
    }
    let status: Vec<Option<StatusRegister>> = raw
        .status
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let sat = At { prefix: at.key(&format!("status[{i}]")), line: at.line };
            let s: RawStatus = v.resolve(r, &sat.prefix, at.line.unwrap_or(0))?;
            check_status(r, s, &sat)
        })
        .collect();

    Some(Device {
        name: name?,
        bus: bus_index?,
        slave: slave?,
        poll_interval: interval?,
        outlet: raw.outlet,
        max_gap: max_gap?,
        protocol: protocol?,
        points: points.into_iter().collect::<Option<_>>()?,
        status: status.into_iter().collect::<Option<_>>()?,
    })
}

fn check_point(
    r: &mut Report,
    p: RawPoint,
    at: &At,
    protocol: &Option<Protocol>,
    is_ascii: bool,
    is_hj212: bool,
) -> Option<Point> {
    let factor = r.need(at, "factor", p.factor);
    if let Some(f) = &factor
        && !valid_factor(f)
    {
        r.push(at.key("factor"), at.line, format!("must be an HJ 212 code such as a21026, got \"{f}\""));
    }
    if !is_hj212 {
        r.forbid(at, "code", &p.code, "here (only on a bus of kind = \"hj212\")");
    }
    let source = if is_hj212 {
        for (field, set) in [
            ("table", p.table.is_some()),
            ("address", p.address.is_some()),
            ("type", p.ty.is_some()),
            ("word_order", p.word_order.is_some()),
            ("capture", p.capture.is_some()),
        ] {
            if set {
                r.push(at.key(field), at.line, "is not allowed on an hj212 device (use code)");
            }
        }
        match p.code.or_else(|| factor.clone()) {
            Some(c) if !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') => {
                Some(PointSource::Code(c))
            }
            Some(c) => {
                r.push(at.key("code"), at.line, format!("must be letters, digits or '-', got \"{c}\""));
                None
            }
            None => None,
        }
    } else if is_ascii {
        for (field, set) in [
            ("table", p.table.is_some()),
            ("address", p.address.is_some()),
            ("type", p.ty.is_some()),
            ("word_order", p.word_order.is_some()),
        ] {
            if set {
                r.push(at.key(field), at.line, "is not allowed on an ascii device (use capture)");
            }
        }
        let cap = r.need(at, "capture", p.capture);
        if let (Some(c), Some(Protocol::Ascii { pattern, .. })) = (&cap, protocol)
            && !pattern.capture_names().flatten().any(|n| n == c)
        {
            r.push(at.key("capture"), at.line, format!("the pattern has no group named \"{c}\""));
        }
        cap.map(PointSource::Capture)
    } else {
        r.forbid(at, "capture", &p.capture, "on a Modbus device");
        check_register(r, at, p.table.as_deref(), p.address, p.ty.as_deref(), p.word_order.as_deref())
            .map(PointSource::Register)
    };
    let scale = p.scale.unwrap_or(1.0);
    if !(scale.is_finite() && scale != 0.0) {
        r.push(at.key("scale"), at.line, format!("must be a finite non-zero number, got {scale}"));
    }
    let offset = p.offset.unwrap_or(0.0);
    if !offset.is_finite() {
        r.push(at.key("offset"), at.line, "must be finite");
    }
    if let Some(m) = p.range_max
        && !(m > 0.0 && m.is_finite())
    {
        r.push(at.key("range_max"), at.line, format!("must be positive, got {m}"));
    }
    let basis = r.one_of(
        at,
        "basis",
        Some(p.basis.as_deref().unwrap_or("dry-standard")),
        crate::compute::evaluate::Basis::parse,
        "dry-standard, dry-actual, wet-standard, wet-actual",
    );
    Some(Point {
        factor: factor?,
        source: source?,
        scale,
        offset,
        unit: p.unit.unwrap_or_default(),
        range_max: p.range_max,
        basis: basis?,
    })
}

fn check_status(r: &mut Report, s: RawStatus, at: &At) -> Option<StatusRegister> {
    let register = check_register(r, at, s.table.as_deref(), s.address, s.ty.as_deref(), None);
    if let Some(reg) = &register
        && !reg.ty.is_integer()
    {
        r.push(at.key("type"), at.line, "a status register must be an integer type");
    }
    let kind = s.match_.as_deref().unwrap_or("value");
    let map = r.need(at, "map", s.map).unwrap_or_default();
    if map.is_empty() {
        r.push(at.key("map"), at.line, "must map at least one value to a flag");
    }
    let mut flags = BTreeMap::new();
    for (k, v) in &map {
        let flag = match v.chars().next().and_then(Flag::from_char) {
            Some(f) if v.len() == 1 && matches!(f, Flag::N | Flag::F | Flag::M | Flag::D | Flag::C) => {
                Some(f)
            }
            _ => {
                r.push(
                    at.key(&format!("map.{k}")),
                    at.line,
                    format!("must be one of N, F, M, D, C, got \"{v}\" (T and B are set by the gateway)"),
                );
                None
            }
        };
        match k.parse::<i64>() {
            Ok(n) => {
                if let Some(f) = flag {
                    flags.insert(n, f);
                }
            }
            Err(_) => r.push(at.key(&format!("map.{k}")), at.line, "key must be an integer"),
        }
    }
    let rule = match kind {
        "value" => Some(StatusRule::Value(flags)),
        "bits" => {
            let mut bits = BTreeMap::new();
            for (k, f) in flags {
                if (0..32).contains(&k) {
                    bits.insert(k as u8, f);
                } else {
                    r.push(at.key(&format!("map.{k}")), at.line, "bit number must be between 0 and 31");
                }
            }
            Some(StatusRule::Bits(bits))
        }
        other => {
            r.push(at.key("match"), at.line, format!("must be one of value, bits, got \"{other}\""));
            None
        }
    };
    Some(StatusRegister { register: register?, rule: rule? })
}

/// Turns the escapes `\r`, `\n`, `\t` and `\\` written in a TOML literal string into bytes, so
/// that installers can write requests either way.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('r') => out.push('\r'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `[web]`: `listen` is `host:port` with a numeric address or `"off"`; `enabled = false` also
/// switches the server off; a `token` is 8 to 128 visible ASCII characters (it travels in a
/// header or a query string, so no spaces).
fn check_web(r: &mut Report, web: Option<Spanned<toml::Value>>) -> Option<Web> {
    let (raw, line) = match web {
        Some(w) => {
            let line = r.line_at(w.span().start);
            (r.item::<RawWeb>("web", line, w.into_inner())?, Some(line))
        }
        None => (RawWeb::default(), None),
    };
    let at = At { prefix: "web".into(), line };
    let before = r.errors.len();
    let listen = match raw.listen.as_deref().unwrap_or(DEFAULT_WEB_LISTEN) {
        "off" => None,
        text => {
            match text.parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    r.push(
                    at.key("listen"),
                    at.line,
                    format!("must be an IP address and port such as \"0.0.0.0:8080\", or \"off\"; got \"{text}\""),
                );
                    None
                }
            }
        }
    };
    if let Some(token) = &raw.token {
        if !(8..=128).contains(&token.len()) {
            r.push(at.key("token"), at.line, "must be 8 to 128 characters long");
        } else if !token.chars().all(|c| c.is_ascii_graphic()) {
            r.push(at.key("token"), at.line, "must be visible ASCII characters without spaces");
        }
    }
    (r.errors.len() == before)
        .then(|| Web { listen: listen.filter(|_| raw.enabled.unwrap_or(true)), token: raw.token })
}
