//! Field information (现场机信息, CN 3020, HJ 212-2017 Annex C.40–C.45): what the gateway tells
//! a platform about the analyzers and itself, pushed when it changes and answered on request.
//! Pure: the configuration, the live state and the audit log's entries in, CPs out.
//!
//! Per factor (`PolId`, one per frame, `;` between fields, `DataTime` first, C.42–C.45):
//! - `i12001` working state (table B.10): a configured `[[device.parameter]] code = "i12001"`
//!   (a status register mapped to B.10 codes, e.g. 6 power fault), else from the data flag:
//!   N → 0 run, M → 1 maintenance, D → 2 fault, C → 3 calibration, T → 7 measuring (the value is
//!   over range but the analyzer measures; the flag stays T on the data), F → 9 standby. With
//!   `B` (no communication) the state is not known and not sent; `i12002` says why.
//! - `i12002` analyzer–logger communication: 0 normal, 1 abnormal (the reading is `B`).
//! - `i22101` the logger channel of that factor: 0 normal, 1 abnormal (the device's last due
//!   poll failed or was skipped). Table B.10 gives no key for a channel; the factor it carries
//!   names it here. Its code 2 (no device) is never sent: every configured channel has one.
//! - the configured parameters of that factor (range i13001, slope i13008, calibration time
//!   i13006…), as last read.
//! - `i11001` the analyzer log for a `BeginTime`/`EndTime` window: the audit log's entries about
//!   its device (state changes, parameter changes) and the outlet's marks.
//!
//! Without a factor (note 2 of C.40: no `PolId` when the information is not about one):
//! `i22001` logger state (0 run, 2 fault when a part of the pipeline is stuck, as the
//! supervision sees it), `i22003` logger–platform communication (0: this link is up, since it
//! answers), `i23001` local atmospheric pressure in kPa (N3.3: the outlet's `a01006` point when
//! it has one, else its `ambient_pressure_kpa`), and `i21001` the logger log for a window (the
//! audit log's configuration, clock, platform, key, retention and mark entries).
//!
//! Log lines go one per frame between `//` (C.40/C.41), under 890 bytes of UTF-8 (kept under
//! [`MAX_LOG_BYTES`] so that a line and its frame header fit one packet), with the
//! separators HJ 212 reserves (`;` `,` `&`) written as their full-width forms.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Config, Device};
use crate::hj212::Cp;
use crate::hj212::message::ExeRtn;
use crate::live::{Current, DeviceHealth, ParamState};
use crate::model::Flag;
use crate::store::params::{Change, LogEntry};

/// Longest log text, bytes (C.40: under 890).
pub const MAX_LOG_BYTES: usize = 700;
/// Longest CP of one frame, characters: leaves room for the header within the 1024 of a segment
/// and the 950 of the CP field (table 3).
const CP_BUDGET: usize = 880;
/// Most log lines one request is answered with; the last frame says how many more there were.
pub const MAX_LOG_LINES: usize = 2000;

/// Codes about the logger itself, never with a `PolId`.
const LOGGER: [&str; 4] = ["i21001", "i22001", "i22003", "i23001"];
/// Audit kinds that make the logger log (i21001).
const LOGGER_LOG_KINDS: [&str; 6] = ["config", "clock", "platform", "key", "retention", "mark"];

/// What a platform asked for (C.41, C.43, C.45).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub pol_id: Option<String>,
    pub info_id: Option<String>,
    /// `BeginTime`/`EndTime` as Unix ms (both inclusive), for logs.
    pub window: Option<(i64, i64)>,
}

/// The live state the answers come from.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub config: &'a Config,
    pub outlet: &'a str,
    pub current: &'a BTreeMap<(String, String), Current>,
    pub params: &'a BTreeMap<(String, String, String), ParamState>,
    pub devices: &'a BTreeMap<String, DeviceHealth>,
    /// A part of the pipeline is stuck.
    pub stalled: bool,
}

/// An answer: frames with the request's QN (states, parameters: C.43, C.45), then log frames
/// each with a QN of its own (C.41), then `9012` with `rtn`.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub frames: Vec<Cp>,
    pub logs: Vec<Cp>,
    pub rtn: ExeRtn,
}

/// How times are written (`YYYYMMDDhhmmss` from Unix ms).
pub type Stamp<'a> = &'a dyn Fn(i64) -> String;

/// The factors a link's outlet reports, with their devices (run-status points excluded).
fn pol_ids<'c>(config: &'c Config, outlet: &str) -> BTreeMap<String, Vec<&'c Device>> {
    let spec = config.outlet(outlet).map(|o| config.outlet_spec(o));
    let mut out: BTreeMap<String, Vec<&Device>> = BTreeMap::new();
    for d in config.outlet_devices(outlet) {
        for p in &d.points {
            let run_status =
                p.factor.ends_with("-RS") || spec.as_ref().is_some_and(|s| s.is_run_status(&p.factor));
            if !run_status {
                out.entry(p.factor.clone()).or_default().push(d);
            }
        }
    }
    out
}

/// Whether a device's parameter belongs to `pol`.
fn belongs(p: &crate::acquire::params::Parameter, pol: &str) -> bool {
    p.pol.as_deref().is_none_or(|x| x == pol)
}

/// The codes a factor can be asked for.
fn codes_of(devices: &[&Device], pol: &str) -> BTreeSet<String> {
    let mut codes: BTreeSet<String> = ["i11001", "i12001", "i12002", "i22101"].map(String::from).into();
    for d in devices {
        codes.extend(d.parameters.iter().filter(|p| belongs(p, pol)).map(|p| p.code.clone()));
    }
    codes
}

/// The `i12001` code of a data flag (see the module's table); `None` when not known.
pub fn state_of_flag(flag: Flag) -> Option<u8> {
    match flag {
        Flag::N => Some(0),
        Flag::M => Some(1),
        Flag::D => Some(2),
        Flag::C => Some(3),
        Flag::T => Some(7),
        Flag::F => Some(9),
        Flag::S | Flag::B => None,
    }
}

/// The state and parameter fields of one factor, in code order, that have a value.
fn fields(
    src: &Sources,
    devices: &[&Device],
    pol: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for d in devices {
        let current = src.current.get(&(d.name.clone(), pol.to_string()));
        for p in d.parameters.iter().filter(|p| belongs(p, pol) && wanted(&p.code)) {
            let key = (d.name.clone(), p.code.clone(), p.pol.clone().unwrap_or_default());
            if let Some(v) = src.params.get(&key).and_then(|s| s.value.clone()) {
                out.insert(p.code.clone(), v);
            }
        }
        if wanted("i12001")
            && !out.contains_key("i12001")
            && let Some(state) = current.and_then(|c| state_of_flag(c.flag))
        {
            out.insert("i12001".into(), state.to_string());
        }
        if wanted("i12002")
            && let Some(c) = current
        {
            out.insert("i12002".into(), u8::from(c.flag == Flag::B).to_string());
        }
        if wanted("i22101")
            && let Some(h) = src.devices.get(&d.name)
        {
            let bad = h.consecutive_failures > 0 || h.not_polled.is_some();
            out.insert("i22101".into(), u8::from(bad).to_string());
        }
    }
    out.into_iter().collect()
}

/// One factor's frames: `DataTime;PolId;…`, the fields spread over as many frames as they need.
fn frames(head: &[(&str, String)], items: Vec<(String, String)>) -> Vec<Cp> {
    let head_cp = Cp::single(&head.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    let base = head_cp.to_string().chars().count();
    let mut out: Vec<Cp> = Vec::new();
    let mut cp = head_cp.clone();
    let mut used = base;
    for (code, value) in items {
        let field = format!("{code}-Info");
        let size = field.chars().count() + value.chars().count() + 2;
        if used + size > CP_BUDGET && cp.0.len() > head.len() {
            out.push(std::mem::replace(&mut cp, head_cp.clone()));
            used = base;
        }
        cp.0.push(vec![(field, value)]);
        used += size;
    }
    if cp.0.len() > head.len() {
        out.push(cp);
    }
    out
}

/// The logger's own fields.
fn logger_fields(src: &Sources, wanted: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if wanted("i22001") {
        out.push(("i22001".into(), if src.stalled { "2" } else { "0" }.into()));
    }
    if wanted("i22003") {
        // Answered over this link: it is up.
        out.push(("i22003".into(), "0".into()));
    }
    if wanted("i23001") {
        let measured = src
            .config
            .outlet_devices(src.outlet)
            .iter()
            .find_map(|d| src.current.get(&(d.name.clone(), "a01006".into())))
            .filter(|c| c.flag == Flag::N)
            .and_then(|c| c.value);
        let kpa = measured.or_else(|| src.config.outlet(src.outlet).map(|o| o.ambient_pressure_kpa));
        if let Some(kpa) = kpa {
            out.push(("i23001".into(), format!("{kpa:.3}")));
        }
    }
    out
}

/// A log text as C.40 wants it: between `//`, without HJ 212's separators, under
/// [`MAX_LOG_BYTES`].
pub fn log_text(text: &str) -> String {
    let mut clean: String = text
        .replace("//", "/")
        .chars()
        .map(|c| match c {
            ';' => '；',
            ',' => '，',
            '&' => '＆',
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    if clean.len() > MAX_LOG_BYTES {
        let mut cut = MAX_LOG_BYTES - 3;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
        clean.push('…');
    }
    format!("//{clean}//")
}

/// What an audit entry says, for people.
fn describe(e: &LogEntry) -> String {
    let label = match e.kind.as_str() {
        "analyzer" => "分析仪状态 analyzer state",
        "parameter" => "参数变更 parameter",
        "mark" => "标记 mark",
        "config" => "配置 configuration",
        "clock" => "时钟 clock",
        "platform" => "平台命令 platform command",
        "key" => "密钥 key",
        "retention" => "数据保留 retention",
        other => other,
    };
    let detail = match e.kind.as_str() {
        // "N->C at_ms=…": the time is the frame's DataTime.
        "analyzer" | "parameter" => e.detail.split(" at_ms=").next().unwrap_or(&e.detail).to_string(),
        _ => e.detail.clone(),
    };
    format!("{label} {}: {detail}", e.subject)
}

/// The analyzer log of the devices of `pol`: their state and parameter entries and the
/// outlet's marks.
fn analyzer_log(e: &LogEntry, devices: &[&Device], outlet: &str) -> bool {
    match e.kind.as_str() {
        "analyzer" => devices.iter().any(|d| d.name == e.subject),
        "parameter" => devices.iter().any(|d| e.subject.starts_with(&format!("{}/", d.name))),
        "mark" => e.subject.starts_with(&format!("{outlet}/")),
        _ => false,
    }
}

fn logger_log(e: &LogEntry, outlet: &str) -> bool {
    LOGGER_LOG_KINDS.contains(&e.kind.as_str())
        && (e.kind != "mark" || e.subject.starts_with(&format!("{outlet}/")))
}

/// The log window a request needs read from the audit log, if any.
pub fn log_window(config: &Config, outlet: &str, req: &InfoRequest) -> Option<(i64, i64)> {
    let logs = match req.info_id.as_deref() {
        Some(id) => id == "i11001" || id == "i21001",
        None => true,
    };
    let known_pol = req.pol_id.as_ref().is_none_or(|p| pol_ids(config, outlet).contains_key(p));
    req.window.filter(|_| logs && known_pol)
}

/// The answer to a 3020 request. `logs` are the audit entries of [`log_window`] (`more`: how
/// many were left out). Refusals (ExeRtn 3, no frames): a `PolId` the outlet does not have, an
/// `InfoId` not configured for it (or unknown), a log without its window. Known and configured
/// but without any value yet (or no log line in the window): ExeRtn 100.
pub fn answer(
    src: &Sources,
    req: &InfoRequest,
    logs: &[LogEntry],
    more: u64,
    stamp: Stamp,
    now_ms: i64,
) -> Answer {
    let refuse = |why: &str| {
        tracing::info!(outlet = src.outlet, pol = ?req.pol_id, info = ?req.info_id, why, "3020 request refused (ExeRtn=3).");
        Answer { frames: Vec::new(), logs: Vec::new(), rtn: ExeRtn::ConditionError }
    };
    let pols = pol_ids(src.config, src.outlet);
    let info = req.info_id.as_deref();
    let about_logger = info.is_some_and(|i| LOGGER.contains(&i));
    if let Some(p) = &req.pol_id
        && !pols.contains_key(p)
        && !about_logger
    {
        return refuse("no such PolId at this outlet");
    }
    let selected: Vec<(&String, &Vec<&Device>)> =
        pols.iter().filter(|(p, _)| req.pol_id.as_ref().is_none_or(|x| x == *p)).collect();
    if let Some(i) = info
        && !about_logger
        && !selected.iter().any(|(p, d)| codes_of(d, p).contains(i))
    {
        return refuse("InfoId not configured for this PolId");
    }
    if matches!(info, Some("i11001" | "i21001")) && req.window.is_none() {
        return refuse("a log needs BeginTime and EndTime");
    }
    let wanted = |code: &str| info.is_none_or(|i| i == code);
    let data_time = stamp(now_ms);
    let mut out = Answer { frames: Vec::new(), logs: Vec::new(), rtn: ExeRtn::Success };
    if !about_logger {
        for (pol, devices) in &selected {
            let items = fields(src, devices, pol, &|c| wanted(c) && c != "i11001");
            out.frames.extend(frames(&[("DataTime", data_time.clone()), ("PolId", (*pol).clone())], items));
            if wanted("i11001") && req.window.is_some() {
                for e in logs.iter().filter(|e| analyzer_log(e, devices, src.outlet)) {
                    let cp = Cp::single(&[
                        ("DataTime", &stamp(e.ts_ms)),
                        ("PolId", pol),
                        ("i11001-Info", &log_text(&describe(e))),
                    ]);
                    out.logs.push(cp);
                }
            }
        }
    }
    if req.pol_id.is_none() || about_logger {
        let items = logger_fields(src, &|c| wanted(c) && c != "i21001");
        out.frames.extend(frames(&[("DataTime", data_time.clone())], items));
        if wanted("i21001") && req.window.is_some() {
            for e in logs.iter().filter(|e| logger_log(e, src.outlet)) {
                out.logs.push(Cp::single(&[
                    ("DataTime", &stamp(e.ts_ms)),
                    ("i21001-Info", &log_text(&describe(e))),
                ]));
            }
        }
    }
    let mut more = more;
    if out.logs.len() > MAX_LOG_LINES {
        more += (out.logs.len() - MAX_LOG_LINES) as u64;
        out.logs.truncate(MAX_LOG_LINES);
    }
    if more > 0 && !out.logs.is_empty() {
        let code = if about_logger || req.pol_id.is_none() { "i21001" } else { "i11001" };
        let mut head = vec![("DataTime", data_time.clone())];
        if code == "i11001"
            && let Some(p) = &req.pol_id
        {
            head.push(("PolId", p.clone()));
        }
        head.push((
            if code == "i11001" { "i11001-Info" } else { "i21001-Info" },
            log_text(&format!(
                "{more} more log entries in this window were not sent: ask for a shorter window"
            )),
        ));
        out.logs.push(Cp::single(&head.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()));
    }
    if out.frames.is_empty() && out.logs.is_empty() {
        out.rtn = ExeRtn::NoData;
    }
    out
}

/// The pushes for stored parameter changes (C.42, C.44): per factor of `outlet`, one frame with
/// the changed fields, `DataTime` the newest reading's time.
pub fn pushes(config: &Config, outlet: &str, changes: &[Change], stamp: Stamp) -> Vec<Cp> {
    let pols = pol_ids(config, outlet);
    let mut by_pol: BTreeMap<&String, (i64, BTreeMap<String, String>)> = BTreeMap::new();
    for c in changes {
        for (pol, devices) in &pols {
            let ours =
                devices.iter().any(|d| d.name == c.device) && c.pol.as_deref().is_none_or(|p| p == *pol);
            if ours {
                let entry = by_pol.entry(pol).or_insert((c.ts_ms, BTreeMap::new()));
                entry.0 = entry.0.max(c.ts_ms);
                entry.1.insert(c.code.clone(), c.value.clone());
            }
        }
    }
    by_pol
        .into_iter()
        .flat_map(|(pol, (ts, items))| {
            frames(&[("DataTime", stamp(ts)), ("PolId", pol.clone())], items.into_iter().collect())
        })
        .collect()
}

/// The working state (`i12001`, from the data flag) of each factor whose state is not a
/// configured parameter: what the link watches to push a state change (C.42).
pub fn flag_states(src: &Sources) -> BTreeMap<String, Option<u8>> {
    pol_ids(src.config, src.outlet)
        .into_iter()
        .filter(|(pol, devices)| {
            !devices.iter().any(|d| d.parameters.iter().any(|p| p.code == "i12001" && belongs(p, pol)))
        })
        .map(|(pol, devices)| {
            let state = devices
                .iter()
                .filter_map(|d| src.current.get(&(d.name.clone(), pol.clone())))
                .find_map(|c| if c.flag == Flag::B { None } else { state_of_flag(c.flag) });
            (pol, state)
        })
        .collect()
}

/// The push of changed working states: `DataTime;PolId;i12001-Info` per factor.
pub fn state_pushes(changed: &BTreeMap<String, u8>, data_time: &str) -> Vec<Cp> {
    changed
        .iter()
        .map(|(pol, state)| {
            Cp::single(&[("DataTime", data_time), ("PolId", pol), ("i12001-Info", &state.to_string())])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const CONFIG: &str = r#"
[site]
mn = "MN1"
pw = "123456"
[storage]
path = "/tmp/x.db"
[[bus]]
name = "b"
kind = "tcp"
address = "127.0.0.1:1"
[[outlet]]
name = "kiln"
ambient_pressure_kpa = 98.5
[[device]]
name = "gas"
bus = "b"
slave = 1
outlet = "kiln"
  [[device.point]]
  factor = "a21026"
  address = 0
  type = "f32"
  [[device.point]]
  factor = "a21002"
  address = 2
  type = "f32"
  [[device.point]]
  factor = "SB1-RS"
  address = 4
  type = "u16"
  [[device.parameter]]
  code = "i13001"
  pol = "a21026"
  address = 100
  type = "f32"
  [[device.parameter]]
  code = "i13008"
  address = 102
  type = "f32"
  [[device.parameter]]
  code = "i13006"
  pol = "a21026"
  address = 110
  type = "time-bcd"
"#;

    fn config() -> Config {
        crate::config::validate::parse(CONFIG, Path::new("/")).unwrap()
    }

    fn stamp(ms: i64) -> String {
        format!("T{ms}")
    }

    struct World {
        current: BTreeMap<(String, String), Current>,
        params: BTreeMap<(String, String, String), ParamState>,
        devices: BTreeMap<String, DeviceHealth>,
    }

    fn world() -> World {
        let c = |flag| Current { ts_ms: 0, value: Some(1.0), flag, last_good: None };
        let p = |v: &str| ParamState {
            value: Some(v.into()),
            number: v.parse().ok(),
            read_ms: Some(0),
            stale: None,
        };
        World {
            current: BTreeMap::from([
                (("gas".into(), "a21026".into()), c(Flag::T)),
                (("gas".into(), "a21002".into()), c(Flag::C)),
            ]),
            params: BTreeMap::from([
                (("gas".into(), "i13001".into(), "a21026".into()), p("500")),
                (("gas".into(), "i13008".into(), String::new()), p("1.02")),
            ]),
            devices: BTreeMap::from([("gas".into(), DeviceHealth::default())]),
        }
    }

    fn ask(
        config: &Config,
        w: &World,
        pol: Option<&str>,
        info: Option<&str>,
        window: Option<(i64, i64)>,
        logs: &[LogEntry],
    ) -> (Vec<String>, Vec<String>, ExeRtn) {
        let src = Sources {
            config,
            outlet: "kiln",
            current: &w.current,
            params: &w.params,
            devices: &w.devices,
            stalled: false,
        };
        let req = InfoRequest { pol_id: pol.map(str::to_string), info_id: info.map(str::to_string), window };
        let a = answer(&src, &req, logs, 0, &stamp, 7);
        (a.frames.iter().map(Cp::to_string).collect(), a.logs.iter().map(Cp::to_string).collect(), a.rtn)
    }

    #[test]
    fn a_request_by_pol_id_gets_that_factors_states_and_parameters_in_one_frame() {
        let (config, w) = (config(), world());
        let (frames, logs, rtn) = ask(&config, &w, Some("a21026"), None, None, &[]);
        // T: the analyzer measures (7), the flag stays on the data. Not yet read: i13006 absent.
        assert_eq!(
            frames,
            [
                "DataTime=T7;PolId=a21026;i12001-Info=7;i12002-Info=0;i13001-Info=500;i13008-Info=1.02;i22101-Info=0"
            ]
        );
        assert!(logs.is_empty());
        assert_eq!(rtn, ExeRtn::Success);
        let (frames, _, _) = ask(&config, &w, Some("a21002"), None, None, &[]);
        assert_eq!(
            frames,
            ["DataTime=T7;PolId=a21002;i12001-Info=3;i12002-Info=0;i13008-Info=1.02;i22101-Info=0"],
            "no range of its own"
        );
    }

    #[test]
    fn a_request_by_info_id_gets_one_frame_per_factor_that_has_it() {
        let (config, w) = (config(), world());
        let (frames, _, rtn) = ask(&config, &w, None, Some("i13008"), None, &[]);
        assert_eq!(
            frames,
            ["DataTime=T7;PolId=a21002;i13008-Info=1.02", "DataTime=T7;PolId=a21026;i13008-Info=1.02"]
        );
        assert_eq!(rtn, ExeRtn::Success);
        let (frames, _, _) = ask(&config, &w, None, Some("i23001"), None, &[]);
        assert_eq!(frames, ["DataTime=T7;i23001-Info=98.500"], "no PolId for the logger's own");
        let (frames, _, _) = ask(&config, &w, Some("a21026"), Some("i22001"), None, &[]);
        assert_eq!(frames, ["DataTime=T7;i22001-Info=0"]);
    }

    #[test]
    fn what_is_not_configured_is_refused_and_what_has_no_value_yet_is_no_data() {
        let (config, w) = (config(), world());
        assert_eq!(
            ask(&config, &w, Some("a21002"), Some("i13001"), None, &[]),
            (vec![], vec![], ExeRtn::ConditionError)
        );
        assert_eq!(ask(&config, &w, Some("a99999"), None, None, &[]).2, ExeRtn::ConditionError);
        assert_eq!(ask(&config, &w, None, Some("i13004"), None, &[]).2, ExeRtn::ConditionError);
        assert_eq!(
            ask(&config, &w, Some("SB1-RS"), None, None, &[]).2,
            ExeRtn::ConditionError,
            "a run status is no analyzer"
        );
        assert_eq!(
            ask(&config, &w, None, Some("i21001"), None, &[]).2,
            ExeRtn::ConditionError,
            "a log needs its window"
        );
        assert_eq!(
            ask(&config, &w, Some("a21026"), Some("i13006"), None, &[]),
            (vec![], vec![], ExeRtn::NoData)
        );
        assert_eq!(
            ask(&config, &w, None, Some("i21001"), Some((0, 10)), &[]).2,
            ExeRtn::NoData,
            "an empty window"
        );
    }

    #[test]
    fn logs_for_a_window_one_line_per_frame_between_slashes() {
        let (config, w) = (config(), world());
        let e = |seq, kind: &str, subject: &str, detail: &str| LogEntry {
            seq,
            ts_ms: seq * 1000,
            kind: kind.into(),
            subject: subject.into(),
            detail: detail.into(),
        };
        let entries = [
            e(1, "config", "start", "sha256=ab"),
            e(2, "analyzer", "gas", "N->C at_ms=2000"),
            e(3, "parameter", "gas/i13001/a21026", "value=500 previous=1000 at_ms=3000"),
            e(4, "platform", "province", "CN=1012 QN=1;SystemTime=2026, and & more"),
            e(5, "analyzer", "dust", "N->B at_ms=5000"),
            e(6, "mark", "other/3", "add by Li\nkind=fault"),
        ];
        let (frames, logs, rtn) = ask(&config, &w, Some("a21026"), Some("i11001"), Some((0, 9000)), &entries);
        assert!(frames.is_empty());
        assert_eq!(
            logs,
            [
                "DataTime=T2000;PolId=a21026;i11001-Info=//分析仪状态 analyzer state gas: N->C//",
                "DataTime=T3000;PolId=a21026;i11001-Info=//参数变更 parameter gas/i13001/a21026: value=500 previous=1000//",
            ]
        );
        assert_eq!(rtn, ExeRtn::Success);
        let (_, logs, _) = ask(&config, &w, None, Some("i21001"), Some((0, 9000)), &entries);
        assert_eq!(
            logs,
            [
                "DataTime=T1000;i21001-Info=//配置 configuration start: sha256=ab//",
                "DataTime=T4000;i21001-Info=//平台命令 platform command province: CN=1012 QN=1；SystemTime=2026， and ＆ more//",
            ],
            "the other outlet's mark is not this link's"
        );
        let long = log_text(&"超".repeat(400));
        assert!(long.len() < 890 && long.ends_with("…//"), "{}", long.len());
    }

    #[test]
    fn a_long_answer_is_spread_over_frames_never_dropped() {
        let items: Vec<(String, String)> =
            (0..120).map(|i| (format!("i13{i:03}"), "12345.678901".to_string())).collect();
        let cps = frames(&[("DataTime", "20261206153045".into()), ("PolId", "a21026".into())], items);
        assert!(cps.len() > 1);
        let fields: usize = cps.iter().map(|cp| cp.0.len() - 2).sum();
        assert_eq!(fields, 120);
        for cp in &cps {
            assert_eq!(cp.get("PolId"), Some("a21026"), "every frame names its factor");
            let p = crate::hj212::message::upload(
                &crate::hj212::message::Identity {
                    st: "31".into(),
                    pw: "123456".into(),
                    mn: "010000A8900016F000169DC0".into(),
                    version: crate::hj212::frame::Version::V2017,
                },
                "20261206153045123",
                "3020",
                true,
                cp.clone(),
            );
            p.encode().expect("each frame fits one packet");
        }
    }

    #[test]
    fn changes_are_pushed_per_factor_in_the_c42_c44_format() {
        let config = config();
        let change = |code: &str, pol: Option<&str>, ts, value: &str| Change {
            device: "gas".into(),
            code: code.into(),
            pol: pol.map(str::to_string),
            ts_ms: ts,
            value: value.into(),
            previous: None,
            seq: 1,
        };
        let cps = pushes(
            &config,
            "kiln",
            &[change("i13001", Some("a21026"), 5, "500"), change("i13008", None, 6, "0.98")],
            &stamp,
        );
        let text: Vec<String> = cps.iter().map(Cp::to_string).collect();
        assert_eq!(
            text,
            [
                "DataTime=T6;PolId=a21002;i13008-Info=0.98",
                "DataTime=T6;PolId=a21026;i13001-Info=500;i13008-Info=0.98"
            ]
        );
        let mut other = change("i13001", None, 5, "1");
        other.device = "elsewhere".into();
        assert!(pushes(&config, "kiln", &[other], &stamp).is_empty());
    }

    #[test]
    fn flag_states_follow_table_b10() {
        let (config, mut w) = (config(), world());
        w.current.insert(
            ("gas".into(), "a21002".into()),
            Current { ts_ms: 0, value: None, flag: Flag::B, last_good: None },
        );
        let src = Sources {
            config: &config,
            outlet: "kiln",
            current: &w.current,
            params: &w.params,
            devices: &w.devices,
            stalled: true,
        };
        let states = flag_states(&src);
        assert_eq!(states, BTreeMap::from([("a21002".into(), None), ("a21026".into(), Some(7))]));
        let table: Vec<Option<u8>> = [Flag::N, Flag::M, Flag::D, Flag::C, Flag::T, Flag::F, Flag::S, Flag::B]
            .map(state_of_flag)
            .to_vec();
        assert_eq!(table, [Some(0), Some(1), Some(2), Some(3), Some(7), Some(9), None, None]);
        let req = InfoRequest { pol_id: None, info_id: Some("i22001".into()), window: None };
        assert_eq!(
            answer(&src, &req, &[], 0, &stamp, 1).frames[0].to_string(),
            "DataTime=T1;i22001-Info=2",
            "stuck: fault"
        );
    }
}
