//! Operator marks (MEE 公告2022年第21号, 《污染物排放自动监测设备标记规则》, and the 2020 pilot
//! rules for power, cement and paper, `reference/LIMITS.md` §6): an operator says that over a
//! period the facility was stopped, starting up or shutting down, or that the monitoring
//! equipment was faulty, under maintenance or debugging, or calibrating. Marked data are not used
//! to judge exceedances.
//!
//! A mark never edits or deletes a sample: it sets the flag of the samples it covers, and the
//! records are recomputed from them. Each kind's flag comes from HJ 212-2017 table 8:
//!
//! | kind | flag | why |
//! |---|---|---|
//! | `stopped` (停运) | `F` | table 8: F = stopped; the gateway already flags a stopped facility F |
//! | `start-up` (启动, 并网前) | `F` | table 8 has no start-up flag (the standard is silent); F is its only flag for "not in normal operation", so the hours leave the compliance denominator like stopped ones |
//! | `shutdown` (停机, 解列后) | `F` | as start-up |
//! | `fault` (故障) | `D` | table 8: D = fault |
//! | `maintenance` (维护/调试, maintenance or debugging) | `M` | table 8: M = maintenance |
//! | `calibration` (校准) | `C` | table 8: C = calibration |
//!
//! A mark never makes a flag better: a sample takes the more severe of its own flag and the
//! mark's (`B` stays `B`, a calibrating analyzer's `C` stays `C` under a maintenance mark).
//!
//! Pure: the checks of a new, edited or ended mark against the others and the time window, and
//! the flag a sample at time `t` takes ([`MarkSet`]).

use std::fmt;

use crate::acquire::flags::worst;
use crate::model::Flag;

/// Longest reason, characters.
pub const MAX_REASON: usize = 500;
/// Longest name of who marked, characters.
pub const MAX_WHO: usize = 64;
/// How far in the future a mark may start (clocks of the operator's terminal and the gateway).
pub const FUTURE_SLACK_MS: i64 = 5 * 60_000;

/// What an operator marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Stopped,
    StartUp,
    Shutdown,
    Fault,
    Maintenance,
    Calibration,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::Stopped, Kind::StartUp, Kind::Shutdown, Kind::Fault, Kind::Maintenance, Kind::Calibration];

    /// A kind by its name (`debugging` is the maintenance kind: 维护/调试 are one mark).
    pub fn parse(s: &str) -> Option<Kind> {
        if s == "debugging" {
            return Some(Kind::Maintenance);
        }
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The name in commands, the API and the store.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Stopped => "stopped",
            Kind::StartUp => "start-up",
            Kind::Shutdown => "shutdown",
            Kind::Fault => "fault",
            Kind::Maintenance => "maintenance",
            Kind::Calibration => "calibration",
        }
    }

    /// The Chinese name, as the marking rules say it.
    pub fn zh(self) -> &'static str {
        match self {
            Kind::Stopped => "停运",
            Kind::StartUp => "启动",
            Kind::Shutdown => "停机",
            Kind::Fault => "故障",
            Kind::Maintenance => "维护/调试",
            Kind::Calibration => "校准",
        }
    }

    /// The data flag of the samples it covers (see the table above).
    pub fn flag(self) -> Flag {
        match self {
            Kind::Stopped | Kind::StartUp | Kind::Shutdown => Flag::F,
            Kind::Fault => Flag::D,
            Kind::Maintenance => Flag::M,
            Kind::Calibration => Flag::C,
        }
    }

    fn names() -> String {
        Kind::ALL.map(Kind::name).join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stored mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub id: i64,
    pub outlet: String,
    pub kind: Kind,
    /// Unix ms; the mark covers `[start_ms, end_ms)`.
    pub start_ms: i64,
    /// `None` while the mark is open (until ended).
    pub end_ms: Option<i64>,
    pub reason: String,
    pub who: String,
}

impl Mark {
    fn end(&self) -> i64 {
        self.end_ms.unwrap_or(i64::MAX)
    }

    fn overlaps(&self, start: i64, end: i64) -> bool {
        self.start_ms < end && start < self.end()
    }
}

/// Why a mark is refused. Nothing is changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkError {
    #[error("unknown kind {0:?}: one of {kinds}", kinds = Kind::names())]
    UnknownKind(String),
    #[error("the end ({end}) is not after the start ({start})")]
    EndBeforeStart { start: String, end: String },
    #[error(
        "{what} {at} is outside the window: marks may change only the last {window_hours} hours (since {since})"
    )]
    OutsideWindow { what: &'static str, at: String, window_hours: i64, since: String },
    #[error("the start {0} is in the future")]
    InFuture(String),
    #[error("overlaps mark {id} ({kind}, {period}): marks of different kinds may not overlap")]
    Overlap { id: i64, kind: Kind, period: String },
    #[error("no mark {0}")]
    NotFound(i64),
    #[error("mark {0} has already ended")]
    AlreadyEnded(i64),
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{what} is too long ({len} characters; at most {max})")]
    TooLong { what: &'static str, len: usize, max: usize },
    #[error("{0} must not contain control characters")]
    Control(&'static str),
    #[error("no outlet named {0:?}")]
    UnknownOutlet(String),
}

/// How times are written in messages (local plant time).
pub type Fmt<'a> = &'a dyn Fn(i64) -> String;

/// The rules a mark's content and timing must keep.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    pub now_ms: i64,
    /// How far back a mark may change the flags.
    pub window_ms: i64,
    pub fmt: Fmt<'a>,
}

impl Rules<'_> {
    fn since(&self) -> i64 {
        self.now_ms - self.window_ms
    }

    fn outside(&self, what: &'static str, at: i64) -> MarkError {
        MarkError::OutsideWindow {
            what,
            at: (self.fmt)(at),
            window_hours: self.window_ms / 3_600_000,
            since: (self.fmt)(self.since()),
        }
    }
}

fn text(what: &'static str, s: &str, max: usize) -> Result<(), MarkError> {
    let n = s.trim().chars().count();
    if n == 0 {
        return Err(MarkError::Missing(what));
    }
    if n > max {
        return Err(MarkError::TooLong { what, len: n, max });
    }
    if s.chars().any(char::is_control) {
        return Err(MarkError::Control(what));
    }
    Ok(())
}

/// Checks a mark as it would be (`candidate`, its `id` ignored) against the outlet's others
/// (`others`, the mark itself excluded) and, when it changes a stored one, what it was
/// (`before`): the content, the end after the start, the start not in the future, every
/// instant whose flag changes within the window, and no overlap with a mark of another kind.
pub fn check(
    candidate: &Mark,
    before: Option<&Mark>,
    others: &[Mark],
    rules: Rules<'_>,
) -> Result<(), MarkError> {
    text("reason", &candidate.reason, MAX_REASON)?;
    text("who", &candidate.who, MAX_WHO)?;
    if let Some(end) = candidate.end_ms
        && end <= candidate.start_ms
    {
        return Err(MarkError::EndBeforeStart {
            start: (rules.fmt)(candidate.start_ms),
            end: (rules.fmt)(end),
        });
    }
    if candidate.start_ms > rules.now_ms + FUTURE_SLACK_MS {
        return Err(MarkError::InFuture((rules.fmt)(candidate.start_ms)));
    }
    // The earliest instant whose flag changes must be inside the window.
    match before {
        None => {
            if candidate.start_ms < rules.since() {
                return Err(rules.outside("the start", candidate.start_ms));
            }
        }
        Some(old) => {
            if old.start_ms != candidate.start_ms && old.start_ms.min(candidate.start_ms) < rules.since() {
                return Err(rules.outside("the start", old.start_ms.min(candidate.start_ms)));
            }
            if old.end_ms != candidate.end_ms && old.end().min(candidate.end()) < rules.since() {
                return Err(rules.outside("the end", old.end().min(candidate.end())));
            }
        }
    }
    if let Some(o) = others
        .iter()
        .filter(|o| o.kind != candidate.kind && o.outlet == candidate.outlet)
        .find(|o| o.overlaps(candidate.start_ms, candidate.end()))
    {
        let period = match o.end_ms {
            Some(e) => format!("{} to {}", (rules.fmt)(o.start_ms), (rules.fmt)(e)),
            None => format!("from {}, open", (rules.fmt)(o.start_ms)),
        };
        return Err(MarkError::Overlap { id: o.id, kind: o.kind, period });
    }
    Ok(())
}

/// The marks of one outlet as the evaluator applies them: the flag a sample at local second
/// `t` takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarkSet {
    /// `(start, end, flag)` in local seconds, sorted by start; an open mark ends at `i64::MAX`.
    spans: Vec<(i64, i64, Flag)>,
}

impl MarkSet {
    /// From stored marks (Unix ms) and the plant's UTC offset.
    pub fn new<'m>(marks: impl IntoIterator<Item = &'m Mark>, utc_offset_s: i64) -> MarkSet {
        let local = |ms: i64| ms.div_euclid(1000).saturating_add(utc_offset_s);
        let mut spans: Vec<(i64, i64, Flag)> = marks
            .into_iter()
            .map(|m| (local(m.start_ms), m.end_ms.map_or(i64::MAX, local), m.kind.flag()))
            .collect();
        spans.sort_unstable_by_key(|s| s.0);
        MarkSet { spans }
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The flag of the marks covering `t` (the most severe), if any.
    pub fn flag_at(&self, t: i64) -> Option<Flag> {
        let upto = self.spans.partition_point(|s| s.0 <= t);
        let flags: Vec<Flag> = self.spans[..upto].iter().filter(|s| t < s.1).map(|s| s.2).collect();
        (!flags.is_empty()).then(|| worst(flags))
    }

    /// A sample's flag under the marks: the more severe of its own and theirs.
    pub fn apply(&self, t: i64, flag: Flag) -> Flag {
        match self.flag_at(t) {
            Some(m) => worst([flag, m]),
            None => flag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const NOW: i64 = 1_800_000_000_000;

    fn fmt(ms: i64) -> String {
        format!("t{}", (ms - NOW) / 60_000)
    }

    fn rules() -> Rules<'static> {
        Rules { now_ms: NOW, window_ms: 48 * H, fmt: &fmt }
    }

    fn mark(id: i64, kind: Kind, start: i64, end: Option<i64>) -> Mark {
        Mark {
            id,
            outlet: "kiln".into(),
            kind,
            start_ms: start,
            end_ms: end,
            reason: "kiln relined".into(),
            who: "Wang".into(),
        }
    }

    #[test]
    fn each_kind_has_its_table_8_flag() {
        let flags: Vec<(&str, char)> = Kind::ALL.iter().map(|k| (k.name(), k.flag().as_char())).collect();
        assert_eq!(
            flags,
            [
                ("stopped", 'F'),
                ("start-up", 'F'),
                ("shutdown", 'F'),
                ("fault", 'D'),
                ("maintenance", 'M'),
                ("calibration", 'C'),
            ]
        );
        assert_eq!(Kind::parse("start-up"), Some(Kind::StartUp));
        assert_eq!(Kind::parse("holiday"), None);
        assert_eq!(Kind::parse("debugging"), Some(Kind::Maintenance));
        assert_eq!(
            MarkError::UnknownKind("holiday".into()).to_string(),
            "unknown kind \"holiday\": one of stopped, start-up, shutdown, fault, maintenance, calibration"
        );
    }

    #[test]
    fn bad_marks_are_refused_with_their_reason() {
        let others = [
            mark(7, Kind::Maintenance, NOW - 10 * H, Some(NOW - 8 * H)),
            mark(8, Kind::Fault, NOW - 2 * H, None),
        ];
        let check_new = |m: &Mark| check(m, None, &others, rules());
        assert_eq!(check_new(&mark(0, Kind::Stopped, NOW - 20 * H, Some(NOW - 19 * H))), Ok(()));
        assert_eq!(
            check_new(&mark(0, Kind::Stopped, NOW - 19 * H, Some(NOW - 20 * H))),
            Err(MarkError::EndBeforeStart { start: "t-1140".into(), end: "t-1200".into() })
        );
        let err = check_new(&mark(0, Kind::Stopped, NOW - 49 * H, Some(NOW - 47 * H))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the start t-2940 is outside the window: marks may change only the last 48 hours (since t-2880)"
        );
        assert_eq!(check_new(&mark(0, Kind::Stopped, NOW + H, None)), Err(MarkError::InFuture("t60".into())));
        let err = check_new(&mark(0, Kind::Stopped, NOW - 9 * H, Some(NOW - 7 * H))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "overlaps mark 7 (maintenance, t-600 to t-480): marks of different kinds may not overlap"
        );
        let err = check_new(&mark(0, Kind::Calibration, NOW - H, Some(NOW - H / 2))).unwrap_err();
        assert_eq!(err, MarkError::Overlap { id: 8, kind: Kind::Fault, period: "from t-120, open".into() });
        // The same kind may overlap; touching ends are not an overlap.
        assert_eq!(check_new(&mark(0, Kind::Maintenance, NOW - 9 * H, Some(NOW - 7 * H))), Ok(()));
        assert_eq!(check_new(&mark(0, Kind::Stopped, NOW - 8 * H, Some(NOW - 2 * H))), Ok(()));
        let mut empty = mark(0, Kind::Stopped, NOW - H, None);
        empty.reason = "  ".into();
        assert_eq!(check_new(&empty), Err(MarkError::Missing("reason")));
        empty.reason = "a\u{7}b".into();
        assert_eq!(check_new(&empty), Err(MarkError::Control("reason")));
        empty.reason = "x".repeat(501);
        assert_eq!(check_new(&empty), Err(MarkError::TooLong { what: "reason", len: 501, max: 500 }));
    }

    #[test]
    fn edits_and_ends_may_change_flags_only_inside_the_window() {
        let old = mark(3, Kind::Stopped, NOW - 60 * H, None);
        let mut ended = old.clone();
        ended.end_ms = Some(NOW - H);
        assert_eq!(check(&ended, Some(&old), &[], rules()), Ok(()), "ending now changes only recent flags");
        ended.end_ms = Some(NOW - 50 * H);
        let err = check(&ended, Some(&old), &[], rules()).unwrap_err();
        assert!(err.to_string().starts_with("the end t-3000 is outside the window"), "{err}");
        let mut moved = ended.clone();
        moved.end_ms = None;
        moved.start_ms = NOW - 30 * H;
        assert!(matches!(
            check(&moved, Some(&old), &[], rules()),
            Err(MarkError::OutsideWindow { what: "the start", .. })
        ));
        let mut reworded = old.clone();
        reworded.reason = "relining, see log 42".into();
        assert_eq!(check(&reworded, Some(&old), &[], rules()), Ok(()), "a new reason changes no flag");
    }

    #[test]
    fn a_sample_takes_the_more_severe_of_its_flag_and_the_marks() {
        let offset = 8 * 3600;
        let marks = [mark(1, Kind::Maintenance, 0, Some(3_600_000)), mark(2, Kind::Stopped, 7_200_000, None)];
        let set = MarkSet::new(&marks, offset);
        assert_eq!(set.flag_at(offset - 1), None);
        assert_eq!(set.flag_at(offset), Some(Flag::M));
        assert_eq!(set.flag_at(offset + 3599), Some(Flag::M));
        assert_eq!(set.flag_at(offset + 3600), None, "the end is not covered");
        assert_eq!(set.flag_at(offset + 7200 + 86_400 * 365), Some(Flag::F), "open");
        assert_eq!(set.apply(offset + 10, Flag::N), Flag::M);
        assert_eq!(set.apply(offset + 10, Flag::T), Flag::M);
        assert_eq!(set.apply(offset + 10, Flag::C), Flag::C, "never better");
        assert_eq!(set.apply(offset + 10, Flag::B), Flag::B);
        assert_eq!(set.apply(offset + 5000, Flag::N), Flag::N);
        let overlapping =
            MarkSet::new(&[mark(1, Kind::Maintenance, 0, None), mark(2, Kind::Fault, 0, None)], 0);
        assert_eq!(overlapping.flag_at(5), Some(Flag::D));
    }

    /// Through the evaluator: two hours of SO2 at 50 against a limit of 35, the first marked as
    /// maintenance from its 10th minute: that hour is M (fewer than 75 % normal minutes), not
    /// valid and not an exceedance; the second stays N and exceeded.
    #[test]
    fn marked_hours_are_flagged_and_leave_the_exceedance_count() {
        use std::collections::BTreeMap;
        use std::sync::Arc;

        use crate::compute::evaluate::{Evaluator, Input, OutletSpec};
        use crate::compute::limits::OutletLimits;

        let limits = OutletLimits::resolve(None, None, &BTreeMap::from([("a21026".to_string(), 35.0)]));
        let marks = [mark(1, Kind::Maintenance, 600_000, Some(3_600_000))];
        let mut ev = Evaluator::new(OutletSpec::new(limits)).with_marks(MarkSet::new(&marks, 0));
        for t in (0..7200).step_by(5) {
            ev.push(Input { t, factor: Arc::from("a21026"), value: Some(50.0), flag: Flag::N });
        }
        let out = ev.finish();
        let hours: Vec<(i64, char, bool)> =
            out.hours.iter().map(|h| (h.start, h.stat.flag.as_char(), h.exceeded)).collect();
        assert_eq!(hours, [(0, 'M', false), (3600, 'N', true)]);
        let so2 = &out.factors["a21026"];
        assert_eq!((so2.valid_hours, so2.exceeded_hours), (1, 1));
        assert_eq!(so2.invalid_hours.get(&'M'), Some(&1));
    }
}
