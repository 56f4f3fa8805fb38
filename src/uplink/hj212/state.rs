//! The HJ 212 session of one platform link as a pure state machine: events in ([`Event`]: the
//! connection is up, a packet arrived, the outbox answered, a deadline passed), actions out
//! ([`Action`]: send packets, ask the outbox, acknowledge a period, save a setting, write an
//! audit entry, drop the link). Its methods change the state without doing any I/O and without
//! reading a clock: time comes in with each event ([`Now`]: the monotonic clock for deadlines,
//! the wall clock for QN and `DataTime`), and [`Session::next_deadline`] says when to come back.
//!
//! What travels, and how it is answered:
//! - **Data** (2051/2061/2031/2041 from the queue or for a history request) goes through a send
//!   window of `window` uploads. An upload that asks for an answer (Flag bit A) stays in the
//!   window until its 9014; it is sent again once `OverTime` passed since it was sent and since
//!   the platform last answered a data upload (a platform that works through the window one
//!   upload after the other is waited for), and after `ReCount` attempts the link is dropped (a
//!   platform that acknowledges no data is a dead link). A period refused with
//!   `9011 QnRtn=2` or `8` is recorded as rejected and leaves the queue; `QnRtn` 3–6 (password,
//!   MN, ST, version) mean the link itself is refused: it is dropped and the data stays queued.
//! - **Notices** (2081, 3020, 1001, 1014 and any other CN queued with [`Session::notify`])
//!   travel outside the window and never block data. An answer finishes one (9013, 9014, 9012,
//!   `9011 QnRtn=1`); a refusal (`QnRtn≠1`) finishes it too, logged and audited; one never
//!   answered is given up after `ReCount` attempts, logged and audited. Neither drops the link.
//! - **Real-time** data (2011, 2021) is live only: never queued, never sent again.
//! - **Heartbeats** (9015, HJ 212-2025) find a dead link: once the platform has answered one on
//!   a connection, a heartbeat left unanswered for `OverTime × ReCount` drops the link. A
//!   platform that never answers them on a connection is told once (WARN) and the link relies on
//!   TCP keepalive, `TCP_USER_TIMEOUT` and the data acknowledgements instead, rather than
//!   reconnecting every few minutes.
//! - **Answers** from the platform (9011–9014) are matched or ignored, never answered.
//! - **Requests** are answered per Annex C (see `requests.rs`).
//!
//! This file holds the types, the connection's start and the notices; `delivery.rs` the window
//! and the answers, `timers.rs` what happens as time passes, `requests.rs` the requests.

use super::super::LinkError;
use super::delivery::{Conn, Pending};
use crate::hj212::frame::Version;
use crate::hj212::message::{self, Content2025, Identity};
use crate::hj212::{Cp, Packet, split};
use crate::store::audit::AuditKind;
use crate::store::outbox::{Item, Kind};
use crate::time::{Local, Offset, Utc};

/// How often an empty queue is looked at again.
pub const QUEUE_POLL_MS: u64 = 1000;

/// The time of an event: the monotonic clock (ms since the link started) for deadlines, and the
/// system's wall clock (Unix ms) for what is written in frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: u64,
    pub wall_ms: i64,
}

/// Which uploads ask for an answer (Flag bit A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asks {
    /// 2051, 2061, 2031.
    pub data: bool,
    /// 2041.
    pub run_time: bool,
    /// 2011, 2021.
    pub realtime: bool,
    /// 2081, 3020 pushes and the other non-data uploads.
    pub notices: bool,
}

/// What stays fixed for the link's life.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub name: String,
    pub st: String,
    pub version: Version,
    /// Data uploads in flight awaiting their acknowledgement.
    pub window: usize,
    pub asks: Asks,
    /// Also accept platform frames with the 2017 version bits (2025 profile).
    pub accept_2017: bool,
    /// HJ 212-2025: the MN is assigned by the platform (1001 → 1002).
    pub onboarding: bool,
    /// The logger's identity for 1001: i23005 (logger ID), i23006, i23007, i23008.
    pub hardware: [String; 4],
    /// HJ 212-2025 heartbeat period; `None` with the 2017 profile.
    pub heartbeat_ms: Option<u64>,
    /// HJ 212-2025: the link encrypts (and so has an SM4 key to renew).
    pub encrypts: bool,
    /// Ask for a new key once the one in force is this old.
    pub key_request_after_ms: i64,
    /// Local time minus UTC: HJ 212 stamps are plant-local.
    pub offset: Offset,
    /// HJ 212-2025 content rules: key operating parameters (`Td`) and the unconvertible value.
    pub content: Option<(Vec<String>, f64)>,
}

/// What the platform can change, and what the link remembers between runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub pw: String,
    pub mn: String,
    pub overtime_ms: u64,
    pub recount: u32,
    pub rtd_interval_ms: u64,
    pub min_interval: u32,
    /// 2011 uploads on.
    pub realtime: bool,
    /// 2021 uploads on.
    pub run_status: bool,
    /// When the SM4 key in force was created (Unix ms).
    pub key_created_ms: i64,
    /// The process start still to be told with 2081 (`None`: already told, or a reload).
    pub restart_ms: Option<i64>,
}

/// What the state machine is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new connection is up.
    Connected,
    Packet(Packet),
    /// The outbox's answer to [`Action::Fetch`].
    Queued(Vec<Item>),
    /// The periods of the running history request ([`Action::LoadHistory`]).
    HistoryPeriods(Vec<i64>),
    /// The content of those periods ([`Action::LoadPeriods`]).
    HistoryItems(Vec<Item>),
    /// Current values ([`Action::Gather`]): converted pollutant and flue values, or run states.
    Values {
        what: Live,
        values: Vec<crate::compute::realtime::Value>,
        request: Option<String>,
    },
    /// The 3020 answer ([`Action::GatherInfo`]).
    Info {
        request: String,
        answer: super::info::Answer,
    },
    /// Field information changed (parameters, working states): pushed with CN 3020, one
    /// notice per CP (C.40, C.42, C.44).
    Push(Vec<Cp>),
    /// What came of [`Action::RotateKey`].
    KeyRotated {
        request: String,
        created_ms: i64,
        result: Result<(), KeyFailure>,
    },
    /// A deadline passed (or may have).
    Tick,
}

/// Live data the session asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// Pollutant and flue values for 2011.
    Pollutants,
    /// Facility run states for 2021.
    RunStatus,
}

/// Why a pushed key was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFailure {
    NotEncrypting,
    Invalid,
    Store(String),
}

/// What the session must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write these packets (encrypted where the 2025 profile says so), in order.
    Send(Vec<Packet>),
    /// Ask the outbox for up to this many queued periods ([`Event::Queued`]).
    Fetch(usize),
    /// Ask the outbox which periods of `kind` have data in `[from_ms, to_ms]`.
    LoadHistory { kind: Kind, from_ms: i64, to_ms: i64 },
    /// Ask the outbox for the content of these periods.
    LoadPeriods { kind: Kind, starts: Vec<i64> },
    /// The period leaves the queue (acknowledged, or refused for good).
    Delivered { kind: Kind, start_ms: i64 },
    /// Read the current values ([`Event::Values`]).
    Gather { what: Live, request: Option<String> },
    /// Build the 3020 answer ([`Event::Info`]).
    GatherInfo { request: String, info: super::info::InfoRequest },
    /// Store and use a new SM4 key ([`Event::KeyRotated`]).
    RotateKey { request: String, key: String, created_ms: i64 },
    /// The minute interval changed: the queue's minute periods change with it.
    SetBlock(u32),
    /// Save a setting of this link.
    Save { key: &'static str, value: String },
    /// Save the platform's clock offset (for the whole gateway).
    /// The platform's time minus the gateway's, as a refused 1012 showed it (kept for the page).
    SavePlatformClock(i64),
    /// Append an audit entry about this link.
    Audit { kind: AuditKind, detail: String },
    /// Give up the connection.
    Drop(Fault),
}

/// Why the session gives up its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A data upload stayed unanswered through every attempt (or, once the platform has shown it
    /// answers them, a heartbeat).
    NoAck(u32),
    /// The platform refuses the link's identity (`QnRtn` 3–6).
    Refused(String),
}

impl From<Fault> for LinkError {
    fn from(f: Fault) -> LinkError {
        match f {
            Fault::NoAck(n) => LinkError::NoAck(n),
            Fault::Refused(why) => LinkError::Refused(why),
        }
    }
}

/// The session's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No connection.
    Offline,
    /// HJ 212-2025 without an MN yet: only the identity (1001) goes out, no data.
    Onboarding,
    /// The queue was found empty (or nearly): look again at `look_at`.
    Normal { look_at: u64 },
    /// A backlog: the window is kept full.
    Draining,
}

/// HJ 212-2025 key renewal, beside the data modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Idle,
    /// A new key was asked for (1014) at this time.
    Asked {
        at: u64,
    },
}

/// Counts for the status page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_asked: u64,
    pub frames_acked: u64,
    pub last_ack_wall_ms: Option<i64>,
    pub rejected: u64,
    pub notices_refused: u64,
    pub notices_unanswered: u64,
}

/// The state of one link.
#[derive(Debug)]
pub struct Session {
    pub(super) setup: Setup,
    pub(super) set: Settings,
    pub(super) me: Identity,
    pub(super) mode: Mode,
    pub(super) renewal: Renewal,
    pub(super) conn: Conn,
    last_qn_ms: i64,
    pub(super) counters: Counters,
    pub(super) out: Vec<Action>,
}

impl Session {
    pub fn new(setup: Setup, set: Settings) -> Session {
        let me =
            Identity { st: setup.st.clone(), pw: set.pw.clone(), mn: set.mn.clone(), version: setup.version };
        Session {
            setup,
            set,
            me,
            mode: Mode::Offline,
            renewal: Renewal::Idle,
            conn: Conn::default(),
            last_qn_ms: 0,
            counters: Counters::default(),
            out: Vec::new(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn renewal(&self) -> Renewal {
        self.renewal
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn settings(&self) -> &Settings {
        &self.set
    }

    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// Data uploads in flight.
    pub fn in_flight(&self) -> usize {
        self.conn.window.len()
    }

    /// Handles one event and says what to do.
    pub fn handle(&mut self, now: Now, event: Event) -> Vec<Action> {
        match event {
            Event::Connected => self.connected(now),
            Event::Packet(p) => self.packet(now, p),
            Event::Queued(items) => self.queued(now, items),
            Event::HistoryPeriods(starts) => self.history_periods(starts),
            Event::HistoryItems(items) => self.history_items(now, items),
            Event::Values { what, values, request } => self.values(now, what, &values, request),
            Event::Info { request, answer } => self.info(now, &request, answer),
            Event::Push(cps) => self.push_info(now, cps),
            Event::KeyRotated { request, created_ms, result } => {
                self.key_rotated(now, &request, created_ms, result)
            }
            Event::Tick => self.tick(now),
        }
        if self.mode != Mode::Offline && !self.out.iter().any(|a| matches!(a, Action::Drop(_))) {
            self.fill(now);
        }
        std::mem::take(&mut self.out)
    }

    /// The connection is gone: what was in flight is forgotten (the queue sends it again).
    pub fn disconnected(&mut self) {
        self.mode = Mode::Offline;
        self.conn = Conn::default();
    }

    /// When to come back with [`Event::Tick`] at the latest (monotonic ms).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.mode == Mode::Offline {
            return None;
        }
        let c = &self.conn;
        let overtime = self.set.overtime_ms;
        let mut at: Vec<u64> = Vec::new();
        at.extend(c.window.iter().map(|u| c.data_deadline(u, overtime)));
        at.extend(c.notices.iter().map(|n| n.sent + overtime));
        at.extend(c.live_asks.iter().map(|(_, t)| *t));
        if self.setup.heartbeat_ms.is_some() {
            at.push(c.next_beat);
            at.extend(c.beats.front().map(|(_, sent)| sent + self.beat_limit()));
        }
        if self.sends_live() && self.set.realtime {
            at.push(c.next_realtime);
        }
        if self.sends_live() && self.set.run_status {
            at.push(c.next_run_status);
        }
        if self.setup.encrypts {
            at.push(c.next_key_check);
        }
        if let Mode::Normal { look_at } = self.mode
            && c.fetching.is_none()
            && c.jobs.is_empty()
            && c.window.len() < self.setup.window
        {
            at.push(look_at);
        }
        at.into_iter().min()
    }

    /// The time written in frames: the gateway's one clock, the system's (a platform's 1012
    /// is refused; see `requests.rs`).
    pub(super) fn platform_ms(&self, now: Now) -> i64 {
        now.wall_ms
    }

    /// A new QN: platform-time milliseconds, strictly increasing.
    pub(super) fn qn(&mut self, now: Now) -> String {
        let ms = self.platform_ms(now).max(self.last_qn_ms + 1);
        self.last_qn_ms = ms;
        self.stamp17(ms)
    }

    /// `YYYYMMDDhhmmss` (DataTime, SystemTime…) of an instant in Unix milliseconds.
    pub(super) fn stamp(&self, ms: i64) -> String {
        self.setup.offset.local(Utc(ms)).hj14()
    }

    /// `YYYYMMDDhhmmsszzz` (QN, SKCreateTime) of an instant in Unix milliseconds.
    pub(super) fn stamp17(&self, ms: i64) -> String {
        self.setup.offset.local(Utc(ms)).hj17()
    }

    /// Unix milliseconds of a platform's `YYYYMMDDhhmmss`.
    pub(super) fn parse_stamp(&self, t: &str) -> Option<i64> {
        Local::parse_hj14(t).map(|l| self.setup.offset.utc(l).0)
    }

    /// Unix milliseconds of a platform's `YYYYMMDDhhmmsszzz`.
    pub(super) fn parse_stamp17(&self, t: &str) -> Option<i64> {
        Local::parse_hj17(t).map(|l| self.setup.offset.utc(l).0)
    }

    pub(super) fn is_2025(&self) -> bool {
        self.setup.version == Version::V2025
    }

    /// Whether data may go out (2025 onboarding: not before the platform assigned the MN).
    pub(super) fn sends_live(&self) -> bool {
        !matches!(self.mode, Mode::Offline | Mode::Onboarding)
    }

    pub(super) fn content(&self) -> Option<Content2025<'_>> {
        self.setup.content.as_ref().map(|(ops, unconvertible)| Content2025 {
            operating_parameters: ops,
            unconvertible: *unconvertible,
        })
    }

    pub(super) fn emit(&mut self, a: Action) {
        self.out.push(a);
    }

    pub(super) fn send(&mut self, p: Packet) {
        self.emit(Action::Send(vec![p]));
    }

    pub(super) fn audit(&mut self, kind: AuditKind, detail: String) {
        self.emit(Action::Audit { kind, detail });
    }

    /// How long an unanswered heartbeat is waited for.
    pub(super) fn beat_limit(&self) -> u64 {
        self.set.overtime_ms * u64::from(self.set.recount)
    }

    pub(super) fn connected(&mut self, now: Now) {
        self.conn = Conn {
            next_beat: now.mono + self.setup.heartbeat_ms.unwrap_or(0),
            next_realtime: now.mono,
            next_run_status: now.mono,
            next_key_check: now.mono,
            ..Conn::default()
        };
        let onboarding = self.is_2025() && self.setup.onboarding && self.me.mn.is_empty();
        self.mode = if onboarding { Mode::Onboarding } else { Mode::Normal { look_at: now.mono } };
        // 2081 tells the platform when the data logger started. No 1013 (time calibration
        // request): the gateway's clock is the system's, set by NTP and an RTC, and a
        // platform's 1012 is refused (requests.rs), so asking to be set would be a false promise.
        let asks = self.setup.asks.notices;
        if onboarding {
            // HJ 212-2025 onboarding: the logger's identity, with an empty MN, until 1002.
            let [id, cpu, mac1, mac2] = self.setup.hardware.clone();
            let cp = Cp::single(&[
                ("i23005-Info", &id),
                ("i23006-Info", &cpu),
                ("i23007-Info", &mac1),
                ("i23008-Info", &mac2),
            ]);
            tracing::info!(uplink = %self.setup.name, logger_id = %id, "No MN yet: asking the platform for one (1001).");
            self.notify(now, "1001", cp, true);
        }
        if let Some(restart) = self.set.restart_ms {
            let cp = Cp::single(&[
                ("DataTime", &self.stamp(self.platform_ms(now))),
                ("RestartTime", &self.stamp(restart)),
            ]);
            self.notify(now, "2081", cp, asks);
        }
    }

    /// Sends a notice (any CN with its CP) outside the data window. When it `asks`, it is
    /// tracked until answered, refused, or given up after `ReCount` attempts; none of these
    /// drops the link.
    pub fn notify(&mut self, now: Now, cn: &str, cp: Cp, asks: bool) {
        let qn = self.qn(now);
        let packet = message::upload(&self.me, &qn, cn, asks, cp);
        let packets = match split(&packet, |_| self.qn(now)) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(uplink = %self.setup.name, error = %e, %cn, "Cannot encode a notice; not sent.");
                return;
            }
        };
        self.emit(Action::Send(packets.clone()));
        if asks {
            self.counters.frames_asked += packets.len() as u64;
            let waiting = packets.iter().filter_map(|p| p.qn.clone()).collect();
            self.conn.notices.push(Pending {
                what: (),
                cn: cn.into(),
                waiting,
                packets,
                sent: now.mono,
                attempts: 1,
            });
        } else {
            self.notice_done(cn);
        }
    }

    /// The platform set the MN (1002) or the password (1072): whatever still waits for an
    /// answer goes out again (same QN) under the new identity.
    pub(super) fn readdress(&mut self) {
        let Identity { mn, pw, .. } = &self.me;
        let pending = self.conn.notices.iter_mut().flat_map(|n| &mut n.packets);
        for p in pending.chain(self.conn.window.iter_mut().flat_map(|u| &mut u.packets)) {
            p.mn.clone_from(mn);
            p.pw.clone_from(pw);
        }
    }

    /// A notice is finished (answered, refused, given up, or sent without asking).
    pub(super) fn notice_done(&mut self, cn: &str) {
        if cn == "2081"
            && let Some(restart) = self.set.restart_ms.take()
        {
            self.emit(Action::Save { key: "restart_notified_ms", value: restart.to_string() });
        }
    }
}

/// The CN of uploads of `kind`.
pub fn kind_cn(kind: Kind) -> &'static str {
    match kind {
        Kind::Minute => "2051",
        Kind::Hour => "2061",
        Kind::Day => "2031",
        Kind::RunTime => "2041",
    }
}

/// Table 7's meaning of a QnRtn code.
pub fn qn_rtn_meaning(code: u16) -> &'static str {
    match code {
        1 => "ready",
        2 => "refused",
        3 => "wrong password",
        4 => "wrong MN",
        5 => "wrong ST",
        6 => "wrong Flag",
        7 => "wrong QN",
        8 => "wrong CN",
        9 => "wrong CRC",
        _ => "unknown error",
    }
}
