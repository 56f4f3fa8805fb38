//! Compliance reports for people and auditors: `compliance` from a CSV of real-time samples,
//! `report` from the gateway's own store. Builds the JSON and table output of an [`Outcome`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use std::io::Write as _;

use serde::Serialize;
use thiserror::Error;

use crate::compute::stats::Level;
use crate::compute::{Evaluator, FactorCompliance, Input, Outcome, OutletSpec, Record};
use crate::model::Flag;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("{0}")]
    Usage(String),
}

const TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// Parses `YYYY-MM-DD HH:MM:SS` (local plant time) into local seconds.
pub fn parse_local(s: &str) -> Option<i64> {
    time::PrimitiveDateTime::parse(s.trim(), TIME_FORMAT).ok().map(|t| t.assume_utc().unix_timestamp())
}

/// Formats local seconds as `YYYY-MM-DD HH:MM`.
pub fn format_local(t: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute()
        ),
        Err(_) => t.to_string(),
    }
}

/// Formats local seconds as `YYYY-MM-DD`.
pub fn format_day(t: i64) -> String {
    format_local(t)[..10].to_string()
}

#[derive(Debug, serde::Deserialize)]
struct Row {
    time: String,
    factor: String,
    value: Option<String>,
    flag: String,
}

fn input_of(row: Row, line: u64, path: &str) -> Result<Input, ReportError> {
    let bad = |message: String| ReportError::Input {
        path: path.to_string(),
        message: format!("line {line}: {message}"),
    };
    let t = parse_local(&row.time)
        .ok_or_else(|| bad(format!("time {:?} is not YYYY-MM-DD HH:MM:SS", row.time)))?;
    let flag = match row.flag.trim() {
        f if f.len() == 1 => Flag::from_char(f.chars().next().unwrap_or(' ')),
        _ => None,
    }
    .ok_or_else(|| bad(format!("flag {:?} is not one of N F M S D C T B", row.flag)))?;
    let value = match row.value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            v.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("value {v:?} is not a number")))?,
        ),
    };
    if row.factor.trim().is_empty() {
        return Err(bad("factor is empty".into()));
    }
    Ok(Input { t, factor: row.factor.trim().into(), value, flag })
}

/// Reads a CSV (`time,factor,value,flag`) into an evaluator. A file in time order is streamed;
/// one that is not (e.g. grouped by factor) is read whole and sorted by time.
pub fn evaluate_csv(path: &Path, spec: OutletSpec) -> Result<Outcome, ReportError> {
    let name = path.display().to_string();
    let open = || {
        csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| ReportError::Input { path: name.clone(), message: e.to_string() })
    };
    evaluate_rows(open, &name, spec)
}

/// [`evaluate_csv`] on text in memory (the fuzz target's and the tests' entry point).
pub fn evaluate_csv_text(text: &str, spec: OutletSpec) -> Result<Outcome, ReportError> {
    let open = || Ok(csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes()));
    evaluate_rows(open, "<text>", spec)
}

/// The CSV evaluation over a source that `open` can read from the start more than once.
fn evaluate_rows<R: std::io::Read>(
    open: impl Fn() -> Result<csv::Reader<R>, ReportError>,
    name: &str,
    spec: OutletSpec,
) -> Result<Outcome, ReportError> {
    let name = name.to_string();
    let mut reader = open()?;
    let headers = reader
        .headers()
        .map_err(|e| ReportError::Input { path: name.clone(), message: e.to_string() })?
        .clone();
    // `cems-gateway export --level raw` adds the device, which is ignored here.
    let columns = headers.iter().collect::<Vec<_>>();
    if columns != ["time", "factor", "value", "flag"]
        && columns != ["time", "device", "factor", "value", "flag"]
    {
        return Err(ReportError::Input {
            path: name,
            message: format!(
                "header must be time,factor,value,flag (or time,device,factor,value,flag), got {}",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        });
    }
    let rows = |reader: csv::Reader<R>| {
        let name = name.clone();
        reader.into_deserialize::<Row>().map(move |r| {
            r.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                ReportError::Input { path: name.clone(), message: format!("line {line}: {e}") }
            })
        })
    };
    let mut evaluator = Evaluator::new(spec.clone());
    let mut last = i64::MIN;
    let mut sorted = true;
    for (i, row) in rows(reader).enumerate() {
        let input = input_of(row?, i as u64 + 2, &name)?;
        if input.t < last {
            sorted = false;
            break;
        }
        last = input.t;
        evaluator.push(input);
    }
    if sorted {
        return Ok(evaluator.finish());
    }
    let mut all = Vec::new();
    for (i, row) in rows(open()?).enumerate() {
        all.push(input_of(row?, i as u64 + 2, &name)?);
    }
    all.sort_by_key(|s| s.t);
    let mut evaluator = Evaluator::new(spec);
    all.into_iter().for_each(|s| evaluator.push(s));
    Ok(evaluator.finish())
}

/// Rounded to a millionth, for output: finite or absent.
fn num(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite()).map(|v| (v * 1e6).round() / 1e6)
}

#[derive(Serialize)]
struct RecordOut<'a> {
    start: String,
    factor: &'a str,
    /// Unit of the values (table B.2), and of the amount.
    unit: &'static str,
    min: Option<f64>,
    avg: Option<f64>,
    max: Option<f64>,
    zs_min: Option<f64>,
    zs_avg: Option<f64>,
    zs_max: Option<f64>,
    cou: Option<f64>,
    cou_unit: Option<&'static str>,
    n_valid: u32,
    n_total: u32,
    flag: char,
    valid: bool,
    limit: Option<f64>,
    exceeded: bool,
}

impl<'a> RecordOut<'a> {
    fn of(r: &'a Record) -> Self {
        let start = match r.level {
            Level::Hour | Level::Minute => format_local(r.start),
            Level::Day => format_day(r.start),
            Level::Month => format_day(r.start)[..7].to_string(),
        };
        let st = &r.stat;
        RecordOut {
            start,
            factor: &r.factor,
            unit: crate::factors::unit(&r.factor),
            min: num(st.min),
            avg: num(st.avg),
            max: num(st.max),
            zs_min: num(st.zs_min),
            zs_avg: num(st.zs_avg),
            zs_max: num(st.zs_max),
            cou: num(st.cou),
            cou_unit: crate::factors::cou_unit(&r.factor),
            n_valid: st.n_valid,
            n_total: st.n_total,
            flag: st.flag.as_char(),
            valid: st.valid,
            limit: num(r.limit),
            exceeded: r.exceeded,
        }
    }
}

#[derive(Serialize)]
struct ComplianceOut {
    valid_hours: u32,
    exceeded_hours: u32,
    compliant_hours: u32,
    /// Valid hours above the instrument's range (T), part of `valid_hours`.
    over_range_hours: u32,
    stopped_hours: u32,
    invalid_hours: BTreeMap<char, u32>,
    /// Hours not stopped (valid and invalid).
    production_hours: u32,
    /// Compliant hours over `rate_of` hours.
    compliance_rate: Option<f64>,
    /// `valid hours`, or `production hours` where the profile counts production time (cement).
    rate_of: &'static str,
    meets_95: bool,
    /// Valid hours over production hours.
    capture_rate: Option<f64>,
}

impl ComplianceOut {
    fn of(fc: &FactorCompliance) -> Self {
        ComplianceOut {
            valid_hours: fc.valid_hours,
            exceeded_hours: fc.exceeded_hours,
            compliant_hours: fc.compliant_hours(),
            over_range_hours: fc.over_range_hours,
            stopped_hours: fc.stopped_hours,
            invalid_hours: fc.invalid_hours.clone(),
            production_hours: fc.production_hours(),
            compliance_rate: num(fc.rate()),
            rate_of: rate_of(fc),
            meets_95: fc.meets_95(),
            capture_rate: num(fc.capture_rate()),
        }
    }
}

fn rate_of(fc: &FactorCompliance) -> &'static str {
    if fc.production_time { "production hours" } else { "valid hours" }
}

#[derive(Serialize)]
struct EventOut<'a> {
    factor: &'a str,
    start: String,
    end: String,
    hours: i64,
    peak: Option<f64>,
    mean: Option<f64>,
    limit: Option<f64>,
}

/// The JSON document of the command-line contract. Keys of the top level: `outlet` and `month`
/// (from `report`), `profile`, `reference_o2`, `limits`, `valid_flags`, `unmeasured` (limited
/// factors without data, left out of the joint figures), `hours`, `days`, `months`, `events`,
/// `factors`, and the joint figures of all limited factors.
#[derive(Serialize)]
struct DocOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    outlet: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    month: Option<&'a str>,
    profile: Option<&'a str>,
    reference_o2: Option<f64>,
    limits: &'a BTreeMap<String, f64>,
    valid_flags: String,
    unmeasured: &'a [String],
    hours: Vec<RecordOut<'a>>,
    days: Vec<RecordOut<'a>>,
    months: Vec<RecordOut<'a>>,
    events: Vec<EventOut<'a>>,
    factors: BTreeMap<&'a str, ComplianceOut>,
    #[serde(flatten)]
    joint: ComplianceOut,
}

/// What the JSON document says about where it comes from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heading<'a> {
    pub profile: Option<&'a str>,
    pub outlet: Option<&'a str>,
    pub month: Option<&'a str>,
}

/// Writes the JSON document (pretty-printed) to `out`.
pub fn write_json(
    out: impl std::io::Write,
    outcome: &Outcome,
    spec: &OutletSpec,
    heading: Heading,
) -> std::io::Result<()> {
    let doc = DocOut {
        outlet: heading.outlet,
        month: heading.month,
        profile: heading.profile,
        reference_o2: num(spec.limits.o2_ref),
        limits: &spec.limits.limits,
        valid_flags: spec.thresholds.valid_flags.to_string(),
        unmeasured: &outcome.unmeasured,
        hours: outcome.hours.iter().map(RecordOut::of).collect(),
        days: outcome.days.iter().map(RecordOut::of).collect(),
        months: outcome.months.iter().map(RecordOut::of).collect(),
        events: outcome
            .events
            .iter()
            .map(|e| EventOut {
                factor: &e.factor,
                start: format_local(e.start),
                end: format_local(e.end),
                hours: (e.end - e.start) / 3600,
                peak: num(Some(e.peak)),
                mean: num(Some(e.mean)),
                limit: num(Some(e.limit)),
            })
            .collect(),
        factors: outcome.factors.iter().map(|(f, c)| (f.as_str(), ComplianceOut::of(c))).collect(),
        joint: ComplianceOut::of(&outcome.joint),
    };
    let mut out = std::io::BufWriter::new(out);
    serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The same figures for a person.
pub fn to_table(outcome: &Outcome, spec: &OutletSpec) -> String {
    let mut out = String::new();
    let limited: Vec<&String> = spec.limits.limits.keys().collect();
    let _ = writeln!(
        out,
        "Hourly averages (converted to {} % O2 where a reference applies); * = exceeded, ! = not valid",
        spec.limits.o2_ref.map_or("—".into(), |o| o.to_string())
    );
    let mut rows: BTreeMap<i64, BTreeMap<&str, &Record>> = BTreeMap::new();
    for h in outcome.hours.iter().filter(|h| limited.contains(&&h.factor)) {
        rows.entry(h.start).or_default().insert(&h.factor, h);
    }
    let _ = write!(out, "{:<17}", "hour");
    for f in &limited {
        let _ = write!(out, " {:>16}", format!("{} ≤ {}", crate::factors::short(f), spec.limits.limits[*f]));
    }
    out.push('\n');
    for (start, cols) in &rows {
        let _ = write!(out, "{:<17}", format_local(*start));
        for f in &limited {
            let cell = match cols.get(f.as_str()) {
                Some(r) => {
                    let mark = if r.exceeded {
                        "*"
                    } else if !r.stat.valid {
                        "!"
                    } else {
                        " "
                    };
                    format!("{}{mark}{}", r.judged().map_or("—".into(), |v| format!("{v:.2}")), r.stat.flag)
                }
                None => "".into(),
            };
            let _ = write!(out, " {cell:>16}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\nExceedances:");
    if outcome.events.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for e in &outcome.events {
        let _ = writeln!(
            out,
            "  {} ({}) {} – {}: peak {:.2}, mean {:.2} (limit {})",
            crate::factors::short(&e.factor),
            e.factor,
            format_local(e.start),
            format_local(e.end),
            e.peak,
            e.mean,
            e.limit
        );
    }
    let _ = writeln!(
        out,
        "\nCompliance (hours within the limit / {}; T = valid hours above the instrument's range, \
         their averages lower bounds; capture = valid / production hours):",
        rate_of(&outcome.joint)
    );
    let line = |name: &str, fc: &FactorCompliance| {
        let invalid: Vec<String> = fc.invalid_hours.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!(
            "  {name:<8} {:>4}/{:<4} = {:>7}  {}  (T {}, stopped {}, not valid {}; capture {})\n",
            fc.compliant_hours(),
            fc.rate_hours(),
            fc.rate().map_or("—".into(), |r| format!("{:.2} %", r * 100.0)),
            match (fc.rate(), fc.meets_95()) {
                (None, _) => "no valid hour",
                (Some(_), true) => "meets ≥ 95 %",
                (Some(_), false) => "BELOW 95 %   ",
            },
            fc.over_range_hours,
            fc.stopped_hours,
            if invalid.is_empty() { "0".into() } else { invalid.join(", ") },
            fc.capture_rate().map_or("—".into(), |r| format!("{:.1} %", r * 100.0)),
        )
    };
    for (f, fc) in &outcome.factors {
        out.push_str(&line(&crate::factors::short(f), fc));
    }
    out.push_str(&line("all", &outcome.joint));
    for f in &outcome.unmeasured {
        let _ = writeln!(out, "  {:<8} no data: left out of \"all\"", crate::factors::short(f));
    }
    out
}
