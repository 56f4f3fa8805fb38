//! What an officer checks beside the figures: per analyzer its key parameters (current value,
//! last change; changes this month highlighted, a change during an exceedance or shortly
//! before a calibration called out, a range change shown with the `T` threshold it sets) and
//! the operators' marks. Built from [`Live`] and the store ([`build`]), drawn as HTML
//! ([`render`], pure), and part of `/api/v1/status`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::page::esc;
use super::status::{Event, fmt_local};
use crate::compute::Level;
use crate::compute::evaluate::period_start;
use crate::config::Config;
use crate::live::Live;
use crate::store::{Store, StoreError};

/// A change this long before a calibration is called out: the calibration that follows would
/// hide a drift the change caused (a gateway choice; the standard sets no figure).
pub const BEFORE_CALIBRATION_MS: i64 = 2 * 3_600_000;

/// Parameters and marks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub parameters: Vec<ParamRow>,
    pub marks: Vec<MarkRow>,
}

/// One key parameter of an analyzer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamRow {
    pub device: String,
    pub code: String,
    /// `中文 English` (table B.10).
    pub label: String,
    /// The factor it belongs to (`None`: every point of the device).
    pub pol: Option<String>,
    pub value: Option<String>,
    pub unit: String,
    /// When last read.
    pub read_at: Option<String>,
    /// Reads fail since then (the value is the last one read), and why.
    pub stale_since: Option<String>,
    pub stale_why: Option<String>,
    /// The last change and the value before it (`None` before: the first reading).
    pub changed_at: Option<String>,
    pub previous: Option<String>,
    /// Changes this month (first readings not counted).
    pub changes_this_month: u32,
    /// Changed this month: the row is highlighted.
    pub highlighted: bool,
    /// What an officer should look at: a change during an exceedance, shortly before a
    /// calibration, a range change and the `T` threshold it sets.
    pub callouts: Vec<String>,
}

/// One operator mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkRow {
    pub id: i64,
    pub outlet: String,
    pub kind: String,
    pub kind_zh: String,
    /// The flag of the data it covers.
    pub flag: char,
    pub start: String,
    /// `None` while open.
    pub end: Option<String>,
    pub reason: String,
    pub who: String,
}

/// The evidence at `now_ms`: parameters as the bus tasks last read them, with this month's
/// changes; marks covering this month or still open. `events` are the month's exceedances per
/// outlet (from the status snapshot).
pub fn build(
    config: &Config,
    live: &Live,
    store: Option<&Store>,
    events: &[(String, Vec<Event>)],
    now_ms: i64,
) -> Result<Evidence, StoreError> {
    let offset = config.site.utc_offset_s;
    let local = |ms: i64| fmt_local(ms.div_euclid(1000) + offset);
    let month_start = (period_start(Level::Month, now_ms.div_euclid(1000) + offset) - offset) * 1000;
    let (latest, month, marks) = match store {
        Some(s) => (
            s.parameter_latest()?,
            s.parameter_changes(month_start, i64::MAX)?,
            s.marks(None, month_start, i64::MAX)?,
        ),
        None => Default::default(),
    };
    let live_params = live.parameters();
    let mut parameters = Vec::new();
    for d in &config.devices {
        let calibrations = match store {
            Some(s) if !d.parameters.is_empty() => s.calibration_starts(&d.name, month_start, now_ms + 1)?,
            _ => Vec::new(),
        };
        let outlet_events: &[Event] = d
            .outlet
            .as_ref()
            .and_then(|o| events.iter().find(|(name, _)| name == o))
            .map_or(&[], |(_, e)| e.as_slice());
        for p in &d.parameters {
            let pol = p.pol.clone().unwrap_or_default();
            let key = (d.name.clone(), p.code.clone(), pol.clone());
            let state = live_params.get(&key).cloned().unwrap_or_default();
            let ours = |c: &&crate::store::params::Change| {
                c.device == d.name && c.code == p.code && c.pol.clone().unwrap_or_default() == pol
            };
            let last = latest.iter().find(ours);
            let changes: Vec<_> = month.iter().filter(ours).filter(|c| c.previous.is_some()).collect();
            let factors: Vec<&str> = match &p.pol {
                Some(pol) => vec![pol.as_str()],
                None => d.points.iter().map(|pt| pt.factor.as_str()).collect(),
            };
            let mut callouts = Vec::new();
            for c in &changes {
                let at = c.ts_ms.div_euclid(1000) + offset;
                for e in outlet_events.iter().filter(|e| factors.contains(&e.factor.as_str())) {
                    let (Some(start), Some(end)) =
                        (crate::report::parse_local(&e.start), crate::report::parse_local(&e.end))
                    else {
                        continue;
                    };
                    if (start..end).contains(&at) {
                        callouts.push(format!(
                            "超标期间变更 changed during an exceedance: {} {} to {} ({} → {} at {})",
                            e.label,
                            e.start,
                            e.end,
                            c.previous.as_deref().unwrap_or("-"),
                            c.value,
                            local(c.ts_ms)
                        ));
                    }
                }
                if let Some(cal) =
                    calibrations.iter().find(|&&cal| cal > c.ts_ms && cal - c.ts_ms <= BEFORE_CALIBRATION_MS)
                {
                    callouts.push(format!(
                        "校准前变更 changed {} min before a calibration at {} ({} → {})",
                        (cal - c.ts_ms) / 60_000,
                        local(*cal),
                        c.previous.as_deref().unwrap_or("-"),
                        c.value
                    ));
                }
            }
            if p.code == "i13001" {
                if let Some(c) = changes.last() {
                    callouts.push(format!(
                        "量程变更 range changed {} → {} at {}: T (超量程) now above {}",
                        c.previous.as_deref().unwrap_or("-"),
                        c.value,
                        local(c.ts_ms),
                        c.value
                    ));
                } else if let Some(v) = &state.value {
                    callouts.push(format!("T (超量程) above {v}"));
                }
            }
            parameters.push(ParamRow {
                device: d.name.clone(),
                code: p.code.clone(),
                label: crate::factors::info(&p.code)
                    .map_or_else(|| p.code.clone(), |f| format!("{} {}", f.zh, f.en)),
                pol: p.pol.clone(),
                value: state.value.clone().or_else(|| last.map(|c| c.value.clone())),
                unit: p.unit.clone(),
                read_at: state.read_ms.map(local),
                stale_since: state.stale.as_ref().map(|(t, _)| local(*t)),
                stale_why: state.stale.as_ref().map(|(_, why)| why.clone()),
                changed_at: last.filter(|c| c.previous.is_some()).map(|c| local(c.ts_ms)),
                previous: last.and_then(|c| c.previous.clone()),
                changes_this_month: changes.len() as u32,
                highlighted: !changes.is_empty(),
                callouts,
            });
        }
    }
    let marks = marks
        .into_iter()
        .map(|m| MarkRow {
            id: m.id,
            outlet: m.outlet,
            kind: m.kind.name().into(),
            kind_zh: m.kind.zh().into(),
            flag: m.kind.flag().as_char(),
            start: local(m.start_ms),
            end: m.end_ms.map(local),
            reason: m.reason,
            who: m.who,
        })
        .collect();
    Ok(Evidence { parameters, marks })
}

fn td(out: &mut String, class: &str, label: &str, content: &str) {
    let _ = write!(out, r#"<td class="{class}" data-label="{}">{content}</td>"#, esc(label));
}

fn head(out: &mut String, class: &str, headers: &[&str]) {
    let _ = write!(out, r#"<table class="cards {class}"><thead><tr>"#);
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
}

/// The parameters and marks tables (inside the data-chain section).
pub fn render(out: &mut String, e: &Evidence) {
    if !e.parameters.is_empty() {
        out.push_str(r#"<h3>关键参数 Analyzer parameters <small>(本月变更高亮 changes this month highlighted)</small></h3>"#);
        head(
            out,
            "params",
            &[
                "设备 参数 Device parameter",
                "当前值 Value",
                "读取 Read",
                "最近变更 Last change",
                "本月变更 Changes this month",
                "注意 Note",
            ],
        );
        for p in &e.parameters {
            let class = if p.highlighted { " class=\"changed\"" } else { "" };
            let _ = write!(out, r#"<tr{class} data-param="{}/{}">"#, esc(&p.device), esc(&p.code));
            let pol = p
                .pol
                .as_deref()
                .map(|f| format!(" · {}", esc(&crate::factors::short(f))))
                .unwrap_or_default();
            td(
                out,
                "head",
                "",
                &format!("{} <small>{} {}{pol}</small>", esc(&p.device), esc(&p.code), esc(&p.label)),
            );
            let value = match &p.value {
                Some(v) => format!(r#"<span class="value">{}</span> {}"#, esc(v), esc(&p.unit)),
                None => "—".into(),
            };
            td(out, "num", "当前值 Value", &value);
            let read = match (&p.stale_since, &p.read_at) {
                (Some(since), _) => format!(
                    r#"<span class="badge warn">过时 stale</span> <small>since {} ({})</small>"#,
                    esc(since),
                    esc(p.stale_why.as_deref().unwrap_or(""))
                ),
                (None, Some(at)) => esc(at),
                (None, None) => "—".into(),
            };
            td(out, "", "读取 Read", &read);
            let change = match &p.changed_at {
                Some(at) => {
                    format!("{} <small>(was {})</small>", esc(at), esc(p.previous.as_deref().unwrap_or("-")))
                }
                None => "—".into(),
            };
            td(out, "", "最近变更 Last change", &change);
            td(out, "num", "本月变更 Changes this month", &p.changes_this_month.to_string());
            let notes: Vec<String> =
                p.callouts.iter().map(|c| format!(r#"<span class="callout">{}</span>"#, esc(c))).collect();
            td(out, "notes", "注意 Note", &notes.join("<br>"));
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
    }
    out.push_str(r#"<h3>标记 Operator marks <small>(标记时段的数据不参与超标判定 marked data are not used to judge exceedances)</small></h3>"#);
    if e.marks.is_empty() {
        out.push_str(r#"<p class="meta">本月无标记 no marks this month</p>"#);
        return;
    }
    head(out, "marks", &["标记 Mark", "开始 Start", "结束 End", "原因 Reason", "标记人 By"]);
    for m in &e.marks {
        let _ = write!(out, r#"<tr data-mark="{}">"#, m.id);
        td(
            out,
            "head",
            "",
            &format!(
                r#"{} {} <span class="flag flag-{f}">{f}</span> <small>{} #{}</small>"#,
                esc(&m.kind_zh),
                esc(&m.kind),
                esc(&m.outlet),
                m.id,
                f = m.flag
            ),
        );
        td(out, "nowrap", "开始 Start", &esc(&m.start));
        let end = match &m.end {
            Some(e) => esc(e),
            None => r#"<span class="badge warn">进行中 open</span>"#.into(),
        };
        td(out, "nowrap", "结束 End", &end);
        td(out, "", "原因 Reason", &esc(&m.reason));
        td(out, "", "标记人 By", &esc(&m.who));
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// One parameter change, for `report` and the export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRow {
    pub time: String,
    pub device: String,
    pub code: String,
    pub pol: Option<String>,
    pub value: String,
    /// `None`: the first reading.
    pub previous: Option<String>,
}

/// An outlet's parameter changes and marks over `[from, to)` (local seconds): what `report`
/// adds to a month's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub parameters: Vec<ChangeRow>,
    pub marks: Vec<MarkRow>,
}

pub fn period(
    store: &Store,
    config: &Config,
    outlet: &str,
    from: i64,
    to: i64,
) -> Result<Period, StoreError> {
    let offset = config.site.utc_offset_s;
    let local = |ms: i64| fmt_local(ms.div_euclid(1000) + offset);
    let devices: Vec<String> = config.outlet_devices(outlet).iter().map(|d| d.name.clone()).collect();
    let (from_ms, to_ms) = ((from - offset) * 1000, (to - offset) * 1000);
    let parameters = store
        .parameter_changes(from_ms, to_ms)?
        .into_iter()
        .filter(|c| devices.contains(&c.device))
        .map(|c| ChangeRow {
            time: local(c.ts_ms),
            device: c.device,
            code: c.code,
            pol: c.pol,
            value: c.value,
            previous: c.previous,
        })
        .collect();
    let marks = store
        .marks(Some(outlet), from_ms, to_ms)?
        .into_iter()
        .map(|m| MarkRow {
            id: m.id,
            outlet: m.outlet,
            kind: m.kind.name().into(),
            kind_zh: m.kind.zh().into(),
            flag: m.kind.flag().as_char(),
            start: local(m.start_ms),
            end: m.end_ms.map(local),
            reason: m.reason,
            who: m.who,
        })
        .collect();
    Ok(Period { parameters, marks })
}

/// The same for a person (the `report` table).
pub fn period_table(p: &Period) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nAnalyzer parameter changes (first readings marked *)");
    if p.parameters.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for c in &p.parameters {
        let pol = c.pol.as_deref().map(|f| format!(" {f}")).unwrap_or_default();
        let change = match &c.previous {
            Some(prev) => format!("{prev} -> {}", c.value),
            None => format!("{} *", c.value),
        };
        let _ = writeln!(out, "  {}  {} {}{pol}: {change}", c.time, c.device, c.code);
    }
    let _ = writeln!(out, "\nOperator marks (marked data are not used to judge exceedances)");
    if p.marks.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for m in &p.marks {
        let end = m.end.as_deref().unwrap_or("open");
        let _ = writeln!(
            out,
            "  #{} {} ({}) {} to {}  by {}: {}",
            m.id, m.kind, m.flag, m.start, end, m.who, m.reason
        );
    }
    out
}
