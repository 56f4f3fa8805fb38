//! CSV export of raw samples or minute/hour/day records, written row by row from the store: a
//! month of raw data is never built in memory. Shared by `/api/v1/export` (through a bounded
//! channel) and `cems-gateway export` (to a file or stdout).
//!
//! Raw rows are `time,device,factor,value,flag`, the same columns `cems-gateway compliance`
//! reads (it ignores `device`), so an export can be checked again offline. Record rows are
//! `time,outlet,level,factor,n_total,n_valid,min,avg,max,zs_avg,cou,flag,limit,exceeded,zs_min,zs_max,valid`
//! (values in the units of HJ 212-2017 table B.2: the flow a00000 in m³/s, its `cou` in m³).
//! `level=parameters` gives the analyzers' parameter changes read in the period
//! (`time,device,code,pol,value,previous`, `previous` empty for a first reading) and
//! `level=marks` the operators' marks covering it (`id,outlet,kind,flag,start,end,reason,who`,
//! `end` empty while open). Times are local plant time `YYYY-MM-DD HH:MM:SS`.

use std::io::Write;

use thiserror::Error;

use crate::compute::Level;
use crate::config::Config;
use crate::store::{Store, StoreError};

use super::status::fmt_local;

pub const RAW_HEADER: &str = "time,device,factor,value,flag\n";
pub const RECORD_HEADER: &str = "time,outlet,level,factor,n_total,n_valid,min,avg,max,zs_avg,cou,flag,limit,exceeded,zs_min,zs_max,valid\n";
pub const PARAMETER_HEADER: &str = "time,device,code,pol,value,previous\n";
pub const MARK_HEADER: &str = "id,outlet,kind,flag,start,end,reason,who\n";

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportLevel {
    Raw,
    Records(Level),
    /// The analyzers' parameter changes.
    Parameters,
    /// The operators' marks.
    Marks,
}

impl ExportLevel {
    pub fn parse(s: &str) -> Option<ExportLevel> {
        Some(match s {
            "raw" => ExportLevel::Raw,
            "minute" => ExportLevel::Records(Level::Minute),
            "hour" => ExportLevel::Records(Level::Hour),
            "day" => ExportLevel::Records(Level::Day),
            "parameters" => ExportLevel::Parameters,
            "marks" => ExportLevel::Marks,
            _ => return None,
        })
    }
}

/// An export request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportQuery {
    /// Local plant seconds, `[from, to)`.
    pub from: i64,
    pub to: i64,
    pub level: ExportLevel,
    /// One outlet (its devices, for raw data); `None`: every outlet (and every device).
    pub outlet: Option<String>,
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The reason is part of the message and so not a `source` (which would print it twice in
    /// an error chain).
    #[error("writing the export: {0}")]
    Write(std::io::Error),
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> ExportError {
        ExportError::Write(e)
    }
}

/// Parses a local plant time: `YYYY-MM-DD` (midnight) or `YYYY-MM-DD HH:MM:SS` (a `T` between
/// date and time is accepted too). `end_of_day` turns a bare date into the next midnight, so
/// that `to=2026-03-01` includes that day.
pub fn parse_time(s: &str, end_of_day: bool) -> Option<i64> {
    let s = s.trim();
    if s.len() == 10 {
        let midnight = crate::report::parse_local(&format!("{s} 00:00:00"))?;
        return Some(if end_of_day { midnight + 86_400 } else { midnight });
    }
    crate::report::parse_local(&s.replacen('T', " ", 1))
}

/// Checks a query's values; the error names the parameter.
pub fn check_query(
    config: &Config,
    from: Option<&str>,
    to: Option<&str>,
    level: Option<&str>,
    outlet: Option<&str>,
) -> Result<ExportQuery, String> {
    let names: Vec<&str> = config.outlets.iter().map(|o| o.name.as_str()).collect();
    check_query_of(&names, from, to, level, outlet)
}

/// Checks a query against the outlets `outlets` (a configuration's, or those a buffer has
/// records of).
pub fn check_query_of(
    outlets: &[&str],
    from: Option<&str>,
    to: Option<&str>,
    level: Option<&str>,
    outlet: Option<&str>,
) -> Result<ExportQuery, String> {
    const TIME: &str = "must be a local time YYYY-MM-DD or YYYY-MM-DD HH:MM:SS";
    let from = from.ok_or("from: is required")?;
    let from = parse_time(from, false).ok_or_else(|| format!("from: {TIME}, got {from:?}"))?;
    let to = to.ok_or("to: is required")?;
    let to = parse_time(to, true).ok_or_else(|| format!("to: {TIME}, got {to:?}"))?;
    if to <= from {
        return Err("to: must be after from".into());
    }
    if to - from > 400 * 86_400 {
        return Err("to: at most 400 days after from".into());
    }
    let level = level.unwrap_or("raw");
    let level = ExportLevel::parse(level).ok_or_else(|| {
        format!("level: must be one of raw, minute, hour, day, parameters, marks, got {level:?}")
    })?;
    if let Some(o) = outlet
        && !outlets.contains(&o)
    {
        return Err(format!("outlet: no outlet named {o:?} (outlets: {})", outlets.join(", ")));
    }
    Ok(ExportQuery { from, to, level, outlet: outlet.map(str::to_string) })
}

/// What an export needs besides the query: the plant's UTC offset, the outlets whose records
/// are written, and (for raw data of one outlet) that outlet's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub utc_offset_s: i64,
    pub outlets: Vec<String>,
    pub devices: Option<Vec<String>>,
}

impl Scope {
    /// From a configuration.
    pub fn of(config: &Config, q: &ExportQuery) -> Scope {
        Scope {
            utc_offset_s: config.site.utc_offset_s,
            outlets: match &q.outlet {
                Some(o) => vec![o.clone()],
                None => config.outlets.iter().map(|o| o.name.clone()).collect(),
            },
            devices: q
                .outlet
                .as_deref()
                .map(|o| config.outlet_devices(o).iter().map(|d| d.name.clone()).collect()),
        }
    }
}

/// Writes the header and every row of `q` to `out`; returns the number of rows. Stops at the
/// first write error (the reader went away).
pub fn write_csv(
    store: &Store,
    config: &Config,
    q: &ExportQuery,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    write_rows(store, &Scope::of(config, q), q, out)
}

/// [`write_csv`] with its scope given (an export from a buffer without its configuration).
pub fn write_rows(
    store: &Store,
    scope: &Scope,
    q: &ExportQuery,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let offset = scope.utc_offset_s;
    match q.level {
        ExportLevel::Raw => {
            out.write_all(RAW_HEADER.as_bytes())?;
            let devices: Option<Vec<&str>> =
                scope.devices.as_ref().map(|d| d.iter().map(String::as_str).collect());
            let mut failed: Option<std::io::Error> = None;
            let mut line = String::with_capacity(96);
            let n = store.for_each_sample_of(
                devices.as_deref(),
                (q.from - offset) * 1000,
                (q.to - offset) * 1000,
                |ts, device, factor, value, flag| {
                    line.clear();
                    raw_row(&mut line, ts.div_euclid(1000) + offset, device, factor, value, flag.as_char());
                    match out.write_all(line.as_bytes()) {
                        Ok(()) => true,
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    }
                },
            )?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            out.flush()?;
            Ok(n)
        }
        ExportLevel::Parameters | ExportLevel::Marks => write_evidence(store, scope, q, out),
        ExportLevel::Records(level) => {
            out.write_all(RECORD_HEADER.as_bytes())?;
            let outlets = &scope.outlets;
            let mut n = 0;
            let mut line = String::with_capacity(160);
            // A day at a time: a month of minute records is not held at once.
            let mut day = q.from;
            while day < q.to {
                let end = (day - day.rem_euclid(86_400) + 86_400).min(q.to);
                for outlet in outlets {
                    for r in
                        store.records(outlet, level, (day - offset) * 1000, (end - offset) * 1000, offset)?
                    {
                        line.clear();
                        record_row(&mut line, outlet, &r);
                        out.write_all(line.as_bytes())?;
                        n += 1;
                    }
                }
                day = end;
            }
            out.flush()?;
            Ok(n)
        }
    }
}

/// Parameter changes of the scope's devices, then marks of its outlets.
fn write_evidence(
    store: &Store,
    scope: &Scope,
    q: &ExportQuery,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    use std::fmt::Write as _;
    let offset = scope.utc_offset_s;
    let (from, to) = ((q.from - offset) * 1000, (q.to - offset) * 1000);
    let local = |ms: i64| fmt_local(ms.div_euclid(1000) + offset);
    let mut n = 0;
    let mut line = String::with_capacity(160);
    if q.level == ExportLevel::Parameters {
        out.write_all(PARAMETER_HEADER.as_bytes())?;
        for c in store.parameter_changes(from, to)? {
            if scope.devices.as_ref().is_some_and(|d| !d.contains(&c.device)) {
                continue;
            }
            line.clear();
            let _ = write!(line, "{},", local(c.ts_ms));
            for (i, v) in [
                c.device.as_str(),
                &c.code,
                c.pol.as_deref().unwrap_or(""),
                &c.value,
                c.previous.as_deref().unwrap_or(""),
            ]
            .into_iter()
            .enumerate()
            {
                if i > 0 {
                    line.push(',');
                }
                field(&mut line, v);
            }
            line.push('\n');
            out.write_all(line.as_bytes())?;
            n += 1;
        }
    } else {
        out.write_all(MARK_HEADER.as_bytes())?;
        for m in store.marks(None, from, to)? {
            if !scope.outlets.contains(&m.outlet) {
                continue;
            }
            line.clear();
            let _ = write!(line, "{},", m.id);
            field(&mut line, &m.outlet);
            let _ = write!(
                line,
                ",{},{},{},{},",
                m.kind,
                m.kind.flag().as_char(),
                local(m.start_ms),
                m.end_ms.map(local).unwrap_or_default()
            );
            field(&mut line, &m.reason);
            line.push(',');
            field(&mut line, &m.who);
            line.push('\n');
            out.write_all(line.as_bytes())?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

fn raw_row(line: &mut String, t: i64, device: &str, factor: &str, value: Option<f64>, flag: char) {
    use std::fmt::Write as _;
    let _ = write!(line, "{},", fmt_local(t));
    field(line, device);
    line.push(',');
    field(line, factor);
    line.push(',');
    if let Some(v) = value {
        let _ = write!(line, "{v}");
    }
    let _ = writeln!(line, ",{flag}");
}

fn record_row(line: &mut String, outlet: &str, r: &crate::compute::Record) {
    use std::fmt::Write as _;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let _ = write!(line, "{},", fmt_local(r.start));
    field(line, outlet);
    let _ = write!(line, ",{},", r.level.name());
    field(line, &r.factor);
    let s = &r.stat;
    let _ = writeln!(
        line,
        ",{},{},{},{},{},{},{},{},{},{},{},{},{}",
        s.n_total,
        s.n_valid,
        opt(s.min),
        opt(s.avg),
        opt(s.max),
        opt(s.zs_avg),
        opt(s.cou),
        s.flag.as_char(),
        opt(r.limit),
        u8::from(r.exceeded),
        opt(s.zs_min),
        opt(s.zs_max),
        u8::from(s.valid)
    );
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn field(line: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        line.push('"');
        line.push_str(&s.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let midnight = crate::report::parse_local("2026-03-01 00:00:00").unwrap();
        assert_eq!(parse_time("2026-03-01", false), Some(midnight));
        assert_eq!(parse_time("2026-03-01", true), Some(midnight + 86_400));
        assert_eq!(parse_time("2026-03-01 08:30:00", true), Some(midnight + 8 * 3600 + 1800));
        assert_eq!(parse_time("2026-03-01T08:30:00", false), Some(midnight + 8 * 3600 + 1800));
        assert_eq!(parse_time("2026-02-30", false), None);
        assert_eq!(parse_time("yesterday", false), None);
    }

    #[test]
    fn rows_quote_what_needs_it() {
        let mut line = String::new();
        raw_row(&mut line, 0, "gas, east", "a21026", Some(12.5), 'N');
        assert_eq!(line, "1970-01-01 00:00:00,\"gas, east\",a21026,12.5,N\n");
        line.clear();
        raw_row(&mut line, 60, "dust", "a34013", None, 'B');
        assert_eq!(line, "1970-01-01 00:01:00,dust,a34013,,B\n");
    }
}
