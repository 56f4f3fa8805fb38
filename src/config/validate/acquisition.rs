//! Checks of the acquisition side: buses, devices, their points and status registers.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use regex::Regex;
use toml::de::DeTable;

use super::{check_address, valid_factor, valid_mn};
use crate::acquire::registers::{DataType, RegisterRef, Table, WordOrder};
use crate::config::doc::{At, Fields, Report};
use crate::config::raw::{RawAscii, RawBus, RawDevice, RawPoint, RawStatus};
use crate::config::{
    Bus, Device, Link, ListenLimits, Parity, Point, PointSource, Protocol, SerialSettings, StatusRegister,
    StatusRule,
};
use crate::model::Flag;

/// The kind of a bus, as its devices need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BusKind {
    Rtu,
    Tcp,
    RtuOverTcp,
    Ascii,
    Hj212,
}

/// What devices need to know of a bus they name, even when that bus has problems of its own.
#[derive(Debug)]
pub(super) struct BusRef {
    pub name: Option<String>,
    /// `None` when the bus's kind is missing or unknown (a problem of the bus).
    pub kind: Option<BusKind>,
}

impl BusRef {
    pub fn of(raw: &RawBus) -> BusRef {
        let kind = match raw.kind.as_deref() {
            Some("rtu") => Some(BusKind::Rtu),
            Some("tcp") => Some(BusKind::Tcp),
            Some("rtu-over-tcp") => Some(BusKind::RtuOverTcp),
            Some("ascii") => Some(BusKind::Ascii),
            Some("hj212") => Some(BusKind::Hj212),
            _ => None,
        };
        BusRef { name: raw.name.clone(), kind }
    }
}

/// A device as read and checked: the item, what it names, and the device if it has no problem.
pub(super) struct DeviceItem<'a, 't> {
    pub at: At<'a, 't>,
    pub name: Option<String>,
    pub bus: Option<String>,
    pub outlet: Option<String>,
    pub device: Option<Device>,
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

pub(super) fn check_bus(r: &mut Report, raw: RawBus, at: &At) -> Option<Bus> {
    let name = r.need(at, "name", raw.name.clone());
    let kind = r.need(at, "kind", raw.kind.clone());
    let link = match kind.as_deref() {
        Some("rtu") => {
            r.forbid(at, "address", &raw.address, "for kind = \"rtu\" (use path)");
            check_serial(r, at, &raw).map(Link::Rtu)
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
                    r.push(at, field, format!("is not allowed for kind = \"{k}\" (use address)"));
                }
            }
            check_address(r, at, "address", raw.address.clone())
                .map(|address| if k == "tcp" { Link::Tcp { address } } else { Link::RtuOverTcp { address } })
        }
        Some("ascii") => match (&raw.path, &raw.address) {
            (Some(_), None) => check_serial(r, at, &raw).map(Link::AsciiSerial),
            (None, Some(_)) => {
                check_address(r, at, "address", raw.address.clone()).map(|address| Link::AsciiTcp { address })
            }
            _ => {
                r.push(at, "path", "kind = \"ascii\" needs exactly one of path or address");
                None
            }
        },
        Some("hj212") => {
            r.forbid(at, "address", &raw.address, "for kind = \"hj212\" (use listen or path)");
            match (&raw.path, &raw.listen) {
                (Some(_), None) => check_serial(r, at, &raw).map(Link::Hj212Serial),
                (None, Some(_)) => {
                    let limits = check_listen_limits(r, at, &raw);
                    check_address(r, at, "listen", raw.listen.clone())
                        .and_then(|address| Some(Link::Hj212Listen { address, limits: limits? }))
                }
                _ => {
                    r.push(at, "listen", "kind = \"hj212\" needs exactly one of listen or path");
                    None
                }
            }
        }
        Some(other) => {
            r.push(
                at,
                "kind",
                format!("must be one of rtu, tcp, rtu-over-tcp, ascii, hj212, got \"{other}\""),
            );
            None
        }
        None => None,
    };
    if kind.as_deref() != Some("hj212") || raw.listen.is_none() {
        let why = "without listen (only kind = \"hj212\" with listen accepts connections)";
        r.forbid(at, "max_connections", &raw.max_connections, why);
        r.forbid(at, "idle_timeout_s", &raw.idle_timeout_s, why);
    }
    if kind.as_deref() != Some("hj212") {
        r.forbid(at, "listen", &raw.listen, "for this kind (only kind = \"hj212\" listens)");
    }
    let timeout = r.int_in::<u64>(at, "timeout_ms", Some(raw.timeout_ms.unwrap_or(1000)), 10, 60_000);
    let inter_frame = r.int_in::<u64>(at, "inter_frame_ms", raw.inter_frame_ms, 0, 10_000);
    let reconnect = r.int_in::<u64>(at, "reconnect_max_s", Some(raw.reconnect_max_s.unwrap_or(30)), 1, 3600);
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

/// Reads and checks one `[[device]]` with its points and status registers.
pub(super) fn device<'a, 't>(
    r: &mut Report<'t>,
    at: At<'a, 't>,
    t: &'a DeTable<'t>,
    buses: &[&BusRef],
    outlets: &[Option<String>],
) -> DeviceItem<'a, 't> {
    let before = r.count();
    let mut f = Fields::new(r, &at, t);
    let raw = RawDevice::read(&mut f);
    let ascii = f.table("ascii");
    let points = f.tables("point");
    let status = f.tables("status");
    let parameters = f.tables("parameter");
    let (name, bus, outlet) = (raw.name.clone(), raw.bus.clone(), raw.outlet.clone());
    let nested = Nested { ascii, points, status, parameters };
    let device = check_device(r, raw, &at, nested, buses, outlets).filter(|_| r.count() == before);
    DeviceItem { at, name, bus, outlet, device }
}

/// A device's nested tables, each with its header's offset.
struct Nested<'a, 't> {
    ascii: Option<(&'a DeTable<'t>, usize)>,
    points: Vec<(&'a DeTable<'t>, usize)>,
    status: Vec<(&'a DeTable<'t>, usize)>,
    parameters: Vec<(&'a DeTable<'t>, usize)>,
}

fn check_device<'t>(
    r: &mut Report<'t>,
    raw: RawDevice,
    at: &At,
    nested: Nested<'_, 't>,
    buses: &[&BusRef],
    outlets: &[Option<String>],
) -> Option<Device> {
    let name = r.need(at, "name", raw.name);
    let bus_name = r.need(at, "bus", raw.bus);
    let (bus_index, kind) = match &bus_name {
        Some(b) => match buses.iter().position(|x| x.name.as_deref() == Some(b.as_str())) {
            Some(i) => (Some(i), buses[i].kind),
            None => {
                // A bus without a readable name has a problem of its own: it may be this one.
                if buses.iter().all(|x| x.name.is_some()) {
                    r.push(at, "bus", format!("no [[bus]] is named \"{b}\""));
                }
                (None, None)
            }
        },
        None => (None, None),
    };
    let is_ascii = kind == Some(BusKind::Ascii);
    let is_hj212 = kind == Some(BusKind::Hj212);
    if kind.is_some() && !is_hj212 {
        r.forbid(at, "mn", &raw.mn, "on a polled device (only on a bus of kind = \"hj212\")");
    }
    let slave = match kind {
        None => None,
        Some(BusKind::Ascii | BusKind::Hj212) => Some(raw.slave.unwrap_or(0).clamp(0, 255) as u8),
        // Behind a TCP gateway 0 and 255 address the gateway itself; 0 is broadcast on a line.
        Some(BusKind::Tcp) => {
            let s = r.need(at, "slave", raw.slave);
            r.int_in::<u8>(at, "slave", s, 0, 255)
        }
        Some(_) => {
            let s = r.need(at, "slave", raw.slave);
            r.int_in::<u8>(at, "slave", s, 1, 247)
        }
    };
    // HJ 75 asks for at most 5 s between real-time samples and a minute needs 12 valid ones:
    // polling every 2 s leaves room for a few slipped or abnormal samples in each minute.
    let interval = raw.poll_interval_s.unwrap_or(2.0);
    let interval = if (0.1..=3600.0).contains(&interval) {
        Some(Duration::from_secs_f64(interval))
    } else {
        r.push(at, "poll_interval_s", format!("must be between 0.1 and 3600, got {interval}"));
        None
    };
    if let Some(o) = &raw.outlet
        && !outlets.iter().flatten().any(|x| x == o)
        && outlets.iter().all(Option::is_some)
    {
        r.push(at, "outlet", format!("no [[outlet]] is named \"{o}\""));
    }
    let max_gap = r.int_in::<u16>(at, "max_gap", Some(raw.max_gap.unwrap_or(8)), 0, 120);

    let protocol = match kind {
        None => None,
        Some(BusKind::Hj212) => {
            if nested.ascii.is_some() {
                r.push(at, "ascii", "is not allowed on a bus of kind = \"hj212\"");
            }
            if let Some(mn) = &raw.mn
                && !valid_mn(mn)
            {
                r.push(at, "mn", format!("must be 1 to 24 letters or digits, got \"{mn}\""));
            }
            Some(Protocol::Hj212 { mn: raw.mn.clone() })
        }
        Some(BusKind::Ascii) => match nested.ascii {
            Some((t, header)) => ascii(r, at, t, header),
            None => {
                r.push(at, "ascii", "a device on an ascii bus needs [device.ascii] with request and pattern");
                None
            }
        },
        Some(_) => {
            if nested.ascii.is_some() {
                r.push(at, "ascii", "is only allowed on a bus of kind = \"ascii\"");
            }
            Some(Protocol::Modbus)
        }
    };

    if nested.points.is_empty() {
        r.push(at, "point", "at least one [[device.point]] is required");
    }
    let mut factors = HashSet::new();
    let mut points = Vec::with_capacity(nested.points.len());
    for (i, (t, header)) in nested.points.into_iter().enumerate() {
        let pat = At::new(sub_item(at, t, "point", "factor", i), Some(header), Some(t));
        let p = RawPoint::read(&mut Fields::new(r, &pat, t));
        if let Some(f) = &p.factor
            && !factors.insert(f.clone())
        {
            r.push(&pat, "factor", format!("factor \"{f}\" appears twice in this device"));
        }
        points.push(check_point(r, p, &pat, protocol.as_ref(), kind));
    }

    if (is_ascii || is_hj212) && !nested.status.is_empty() {
        r.push(at, "status", "status registers need a Modbus bus");
    }
    let mut status = Vec::with_capacity(nested.status.len());
    for (i, (t, header)) in nested.status.into_iter().enumerate() {
        let sat = At::new(sub_item(at, t, "status register", "address", i), Some(header), Some(t));
        let s = RawStatus::read(&mut Fields::new(r, &sat, t));
        status.push(check_status(r, s, &sat));
    }
    let factors: Option<Vec<String>> = points.iter().map(|p| p.as_ref().map(|p| p.factor.clone())).collect();
    let parameters = super::params::check_parameters(r, at, nested.parameters, factors.as_deref(), kind);

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
        parameters: parameters?,
    })
}

/// How problems name a point or status register: `device "gas" point a21026`, or by position.
fn sub_item(device: &At, t: &DeTable, kind: &str, key: &str, index: usize) -> String {
    let v = t.get(key).map(|v| v.get_ref());
    match (v.and_then(|v| v.as_str()), v.and_then(|v| v.as_integer())) {
        (Some(s), _) => format!("{} {kind} {s}", device.item),
        (None, Some(n)) => format!("{} {kind} {}", device.item, n.as_str()),
        _ => format!("{} {kind} #{}", device.item, index + 1),
    }
}

/// `[device.ascii]`: the request line and the reply pattern.
fn ascii<'t>(r: &mut Report<'t>, device: &At, t: &DeTable<'t>, header: usize) -> Option<Protocol> {
    let at = At::new(format!("{} ascii", device.item), Some(header), Some(t));
    let raw = RawAscii::read(&mut Fields::new(r, &at, t));
    let request = r.need(&at, "request", raw.request);
    let pattern = r.need(&at, "pattern", raw.pattern).and_then(|p| match Regex::new(&p) {
        Ok(re) => Some(re),
        Err(e) => {
            r.push(&at, "pattern", format!("is not a valid regular expression: {e}"));
            None
        }
    });
    Some(Protocol::Ascii { request: unescape(&request?), pattern: pattern? })
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
        r.push(at, "address", "value runs past register 65535");
        return None;
    }
    Some(reg)
}

/// The register keys a point has, each checked on its own (for a point whose bus is unknown).
fn check_register_values(r: &mut Report, at: &At, p: &RawPoint) {
    let table = r.one_of(at, "table", p.table.as_deref(), Table::parse, "holding, input");
    let address = r.int_in::<u16>(at, "address", p.address, 0, 65_535);
    let ty = r.one_of(at, "type", p.ty.as_deref(), DataType::parse, "u16, i16, u32, i32, f32, f64");
    let order =
        r.one_of(at, "word_order", p.word_order.as_deref(), WordOrder::parse, "ABCD, CDAB, BADC, DCBA");
    if let (Some(address), Some(ty)) = (address, ty) {
        let reg = RegisterRef {
            table: table.unwrap_or(Table::Holding),
            address,
            ty,
            order: order.unwrap_or_default(),
        };
        if reg.end() > 65_536 {
            r.push(at, "address", "value runs past register 65535");
        }
    }
}

fn check_point(
    r: &mut Report,
    p: RawPoint,
    at: &At,
    protocol: Option<&Protocol>,
    kind: Option<BusKind>,
) -> Option<Point> {
    let factor = r.need(at, "factor", p.factor.clone());
    if let Some(f) = &factor
        && !valid_factor(f)
    {
        r.push(at, "factor", format!("must be an HJ 212 code such as a21026, got \"{f}\""));
    }
    let source = match kind {
        // The bus is unknown or has a problem of its own: which keys a point needs is not
        // known, but the values it has are checked.
        None => {
            check_register_values(r, at, &p);
            None
        }
        Some(BusKind::Hj212) => {
            for (field, set) in [
                ("table", p.table.is_some()),
                ("address", p.address.is_some()),
                ("type", p.ty.is_some()),
                ("word_order", p.word_order.is_some()),
                ("capture", p.capture.is_some()),
            ] {
                if set {
                    r.push(at, field, "is not allowed on an hj212 device (use code)");
                }
            }
            match p.code.or_else(|| factor.clone()) {
                Some(c) if !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') => {
                    Some(PointSource::Code(c))
                }
                Some(c) => {
                    r.push(at, "code", format!("must be letters, digits or '-', got \"{c}\""));
                    None
                }
                None => None,
            }
        }
        Some(BusKind::Ascii) => {
            r.forbid(at, "code", &p.code, "here (only on a bus of kind = \"hj212\")");
            for (field, set) in [
                ("table", p.table.is_some()),
                ("address", p.address.is_some()),
                ("type", p.ty.is_some()),
                ("word_order", p.word_order.is_some()),
            ] {
                if set {
                    r.push(at, field, "is not allowed on an ascii device (use capture)");
                }
            }
            let cap = r.need(at, "capture", p.capture);
            if let (Some(c), Some(Protocol::Ascii { pattern, .. })) = (&cap, protocol)
                && !pattern.capture_names().flatten().any(|n| n == c)
            {
                r.push(at, "capture", format!("the pattern has no group named \"{c}\""));
            }
            cap.map(PointSource::Capture)
        }
        Some(_) => {
            r.forbid(at, "code", &p.code, "here (only on a bus of kind = \"hj212\")");
            r.forbid(at, "capture", &p.capture, "on a Modbus device");
            check_register(r, at, p.table.as_deref(), p.address, p.ty.as_deref(), p.word_order.as_deref())
                .map(PointSource::Register)
        }
    };
    let scale = p.scale.unwrap_or(1.0);
    if !(scale.is_finite() && scale != 0.0) {
        r.push(at, "scale", format!("must be a finite non-zero number, got {scale}"));
    }
    let offset = p.offset.unwrap_or(0.0);
    if !offset.is_finite() {
        r.push(at, "offset", "must be finite");
    }
    if let Some(m) = p.range_max
        && !(m > 0.0 && m.is_finite())
    {
        r.push(at, "range_max", format!("must be positive, got {m}"));
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
        r.push(at, "type", "a status register must be an integer type");
    }
    let kind = s.match_.as_deref().unwrap_or("value");
    let map = r.need(at, "map", s.map).unwrap_or_default();
    if map.is_empty() {
        r.push(at, "map", "must map at least one value to a flag");
    }
    let mut flags = BTreeMap::new();
    for (k, v) in &map {
        let key = format!("map.{k}");
        let flag = match v.chars().next().and_then(Flag::from_char) {
            Some(f) if v.len() == 1 && matches!(f, Flag::N | Flag::F | Flag::M | Flag::D | Flag::C) => {
                Some(f)
            }
            _ => {
                r.push(
                    at,
                    &key,
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
            Err(_) => r.push(at, &key, "key must be an integer"),
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
                    r.push(at, &format!("map.{k}"), "bit number must be between 0 and 31");
                }
            }
            Some(StatusRule::Bits(bits))
        }
        other => {
            r.push(at, "match", format!("must be one of value, bits, got \"{other}\""));
            None
        }
    };
    Some(StatusRegister { register: register?, rule: rule? })
}

/// Devices sharing an hj212 bus are told apart by their MN: each needs its own. Checked for
/// buses whose devices are all understood.
pub(super) fn check_hj212_inputs(
    r: &mut Report,
    buses: &[(At, BusRef, Option<Bus>)],
    devices: &[DeviceItem],
) {
    for (_, _, bus) in buses {
        let Some(bus) = bus.as_ref().filter(|b| b.link.is_hj212()) else { continue };
        let on_bus: Vec<&DeviceItem> =
            devices.iter().filter(|d| d.bus.as_deref() == Some(&bus.name)).collect();
        if on_bus.len() < 2 || on_bus.iter().any(|d| d.device.is_none()) {
            continue;
        }
        let mut seen = HashSet::new();
        for item in on_bus {
            match item.device.as_ref().map(|d| &d.protocol) {
                Some(Protocol::Hj212 { mn: Some(mn) }) => {
                    if !seen.insert(mn.clone()) {
                        r.push(
                            &item.at,
                            "mn",
                            format!("\"{mn}\" is used by two devices of bus \"{}\"", bus.name),
                        );
                    }
                }
                _ => r.push(
                    &item.at,
                    "mn",
                    format!("is required: several devices share the hj212 bus \"{}\"", bus.name),
                ),
            }
        }
    }
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
