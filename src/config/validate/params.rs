//! Checks of `[[device.parameter]]`: the code is one of table B.10's analyzer (i12xxx state,
//! i13xxx parameters) or auxiliary (i32xxx, i33xxx) codes, the layout fits the code (a time for
//! i13006 and only there), the map gives the code's own values, and `pol` names a point of the
//! device.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use toml::de::DeTable;

use super::acquisition::BusKind;
use crate::acquire::params::{Layout, Parameter};
use crate::acquire::registers::{DataType, Table, WordOrder};
use crate::config::doc::{At, Fields, Report};
use crate::config::raw::RawParameter;

/// Default seconds between two reads of a parameter.
pub const DEFAULT_POLL_S: f64 = 60.0;

/// The values table B.10 gives a state code, where it lists them.
fn state_values(code: &str) -> Option<&'static [i64]> {
    match code {
        "i12001" => Some(&[0, 1, 2, 3, 5, 6, 7, 8, 9, 10]),
        "i12002" | "i12003" => Some(&[0, 1]),
        "i32001" => Some(&[0, 1, 2, 3]),
        _ => None,
    }
}

/// Why a code cannot be read from registers, if it cannot.
fn code_problem(code: &str) -> Option<String> {
    let known = crate::factors::info(code).is_some();
    let class = code.get(..3).unwrap_or("");
    match class {
        _ if !known => Some(format!(
            "must be a code of HJ 212 table B.10 read from an analyzer, such as i12001 (working state), i13001 (range), i13006 (calibration time), i13007 (intercept), i13008 (slope); got \"{code}\""
        )),
        "i12" | "i13" | "i32" | "i33" => None,
        "i11" | "i21" | "i31" => {
            Some(format!("{code} is a log: the gateway reports it from its audit log, it is not read"))
        }
        _ => Some(format!("{code} is the data logger's own: the gateway reports it, it is not read")),
    }
}

fn layout(s: &str) -> Option<Layout> {
    match s {
        "time-bcd" => Some(Layout::TimeBcd),
        "time-fields" => Some(Layout::TimeFields),
        other => DataType::parse(other).map(|ty| Layout::Number { ty, order: WordOrder::Abcd }),
    }
}

/// Reads and checks a device's parameters. `factors` are its points' factors (`None` when they
/// could not all be understood), `kind` its bus's kind (`None`: unknown).
pub(super) fn check_parameters<'t>(
    r: &mut Report<'t>,
    device: &At,
    tables: Vec<(&DeTable<'t>, usize)>,
    factors: Option<&[String]>,
    kind: Option<BusKind>,
) -> Option<Vec<Parameter>> {
    if !tables.is_empty() && matches!(kind, Some(BusKind::Ascii | BusKind::Hj212)) {
        r.push(device, "parameter", "parameters are read from registers: they need a Modbus bus");
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(tables.len());
    for (i, (t, header)) in tables.into_iter().enumerate() {
        let name = match t.get("code").and_then(|v| v.get_ref().as_str()) {
            Some(code) => format!("{} parameter {code}", device.item),
            None => format!("{} parameter #{}", device.item, i + 1),
        };
        let at = At::new(name, Some(header), Some(t));
        let raw = RawParameter::read(&mut Fields::new(r, &at, t));
        if let (Some(code), pol) = (&raw.code, &raw.pol)
            && !seen.insert((code.clone(), pol.clone()))
        {
            let which = pol.as_deref().map(|p| format!(" for {p}")).unwrap_or_default();
            r.push(&at, "code", format!("{code}{which} appears twice in this device"));
        }
        out.push(check_parameter(r, raw, &at, factors));
    }
    out.into_iter().collect()
}

fn check_parameter(
    r: &mut Report,
    p: RawParameter,
    at: &At,
    factors: Option<&[String]>,
) -> Option<Parameter> {
    let code = r.need(at, "code", p.code);
    let code_ok = match &code {
        Some(c) => match code_problem(c) {
            Some(problem) => {
                r.push(at, "code", problem);
                false
            }
            None => true,
        },
        None => false,
    };
    let table =
        r.one_of(at, "table", Some(p.table.as_deref().unwrap_or("holding")), Table::parse, "holding, input");
    let address = r.need(at, "address", p.address);
    let address = r.int_in::<u16>(at, "address", address, 0, 65_535);
    let ty = r.need(at, "type", p.ty);
    let mut layout =
        r.one_of(at, "type", ty.as_deref(), layout, "u16, i16, u32, i32, f32, f64, time-bcd, time-fields");
    let is_time = layout.is_some_and(Layout::is_time);
    if let (Some(Layout::Number { order, .. }), Some(text)) = (layout.as_mut(), &p.word_order) {
        match WordOrder::parse(text) {
            Some(o) => *order = o,
            None => {
                r.push(at, "word_order", format!("must be one of ABCD, CDAB, BADC, DCBA, got \"{text}\""))
            }
        }
    } else if is_time {
        r.forbid(at, "word_order", &p.word_order, "for a time (its registers are read in order)");
    }
    if code_ok && let Some(c) = &code {
        if c == "i13006" && layout.is_some_and(|l| !l.is_time()) {
            r.push(at, "type", "i13006 (calibration time) is a time: time-bcd or time-fields");
        }
        if c != "i13006" && is_time {
            r.push(at, "type", format!("only i13006 (calibration time) is a time; {c} is a number"));
        }
    }
    if let (Some(a), Some(l)) = (address, layout)
        && u32::from(a) + u32::from(l.words()) > 65_536
    {
        r.push(at, "address", "value runs past register 65535");
    }
    let scale = p.scale.unwrap_or(1.0);
    if is_time {
        r.forbid(at, "scale", &p.scale, "for a time");
    } else if !(scale.is_finite() && scale != 0.0) {
        r.push(at, "scale", format!("must be a finite non-zero number, got {scale}"));
    }
    let mut map = BTreeMap::new();
    if let Some(raw_map) = &p.map {
        let integer = matches!(layout, Some(Layout::Number { ty, .. }) if ty.is_integer());
        if layout.is_some() && !integer {
            r.push(at, "map", "maps device values of an integer type (u16, i16, u32, i32)");
        }
        let allowed = code.as_deref().and_then(state_values);
        for (k, v) in raw_map {
            let key = format!("map.{k}");
            match k.parse::<i64>() {
                Ok(n) => {
                    map.insert(n, *v);
                }
                Err(_) => r.push(at, &key, "key must be an integer (the device's value)"),
            }
            if let (Some(values), Some(c)) = (allowed, &code)
                && !values.contains(v)
            {
                let list: Vec<String> = values.iter().map(i64::to_string).collect();
                r.push(at, &key, format!("{c} takes one of {} (table B.10), got {v}", list.join(", ")));
            }
        }
    }
    let interval = p.poll_interval_s.unwrap_or(DEFAULT_POLL_S);
    let interval = if (1.0..=86_400.0).contains(&interval) {
        Some(Duration::from_secs_f64(interval))
    } else {
        r.push(at, "poll_interval_s", format!("must be between 1 and 86400, got {interval}"));
        None
    };
    if let (Some(pol), Some(factors)) = (&p.pol, factors)
        && !factors.contains(pol)
    {
        r.push(
            at,
            "pol",
            format!("must be the factor of a point of this device ({}), got \"{pol}\"", factors.join(", ")),
        );
    }
    Some(Parameter {
        code: code.filter(|_| code_ok)?,
        table: table?,
        address: address?,
        layout: layout?,
        scale,
        map,
        poll_interval: interval?,
        pol: p.pol,
        unit: p.unit.unwrap_or_default(),
    })
}
