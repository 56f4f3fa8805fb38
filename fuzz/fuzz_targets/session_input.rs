//! What the `uplink_session` target builds from its input: the link's setup and settings within
//! what the configuration allows, well-formed platform packets of every CN the standards define
//! (right or wrong in each field), and a model outbox that hands out periods once per
//! connection and takes back what was not acknowledged, as `store::outbox` does.

use std::collections::{HashSet, VecDeque};

use cems_gateway::compute::Record;
use cems_gateway::compute::realtime::Value;
use cems_gateway::compute::stats::Stat;
use cems_gateway::hj212::frame::Version;
use cems_gateway::hj212::message::{self, ExeRtn, Identity};
use cems_gateway::hj212::{Cp, Packet};
use cems_gateway::model::Flag;
use cems_gateway::store::outbox::{Item, Kind, Payload};
use cems_gateway::time::{Offset, Utc};
use cems_gateway::uplink::hj212::info::{Answer, InfoRequest, log_text};
use cems_gateway::uplink::hj212::state::{Asks, Live, Settings, Setup};

/// The wall clock stays within 2000–2099 (a Pi without an RTC may boot in the past, never
/// before that), so that every QN has 17 digits.
pub const WALL_MIN: i64 = 946_684_800_000;
pub const WALL_MAX: i64 = 4_102_444_799_000;
/// 2026-11-29 10:00 +08:00 in Unix ms.
const T0: i64 = 1_795_917_600_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const MN: &str = "88888880000001";
const LOGGER_ID: &str = "GW-0001";

const FACTORS: [&str; 10] =
    ["a21026", "a21002", "a21003", "a21005", "a34013", "a01011", "a01012", "a01013", "a01014", "a19001"];
const VALUES: [Option<f64>; 12] = [
    Some(0.0),
    Some(12.25),
    Some(-3.5),
    Some(35.000_001),
    Some(1e20),
    Some(f64::NAN),
    Some(f64::INFINITY),
    None,
    Some(1e300),
    Some(1e-7),
    Some(9999.99),
    Some(123_456.789),
];
/// Characters of the audit entries a log line is made of: HJ 212's separators and non-ASCII
/// (written full-width or kept as they are by `log_text`) among them.
const LOG_CHARS: [char; 12] = ['a', 'Z', '7', ' ', ';', ',', '&', '/', '=', '\n', '°', '炉'];
const MIN_INTERVALS: [u32; 11] = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30];
/// CNs a platform sends (answers weighted up), the 2025 ones included, and some it should not.
const CNS: [&str; 44] = [
    "9011", "9012", "9013", "9014", "9011", "9014", "9014", "9014", "1000", "1011", "1012", "1061", "1062",
    "1063", "1064", "1072", "2011", "2012", "2021", "2022", "2031", "2041", "2051", "2061", "2061", "3011",
    "3012", "3013", "3014", "3015", "3016", "3017", "3018", "3019", "3020", "3021", "1002", "1014", "1014",
    "1001", "1013", "9015", "2081", "4242",
];
/// Characters pushed passwords and keys are made of: after the first [`CLEAN`], separators and
/// a control character.
const TEXT: &[u8] = b"0123456789abcXYZCP=&#;,\r";
const CLEAN: usize = 18;

/// How a platform packet is wrong, when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Cn,
    Qn,
    St,
    Pw,
    Mn,
    Flag,
    Cp,
    /// Encrypted under a key the link does not have.
    Key,
}

impl Fault {
    const ALL: [Fault; 8] =
        [Fault::Cn, Fault::Qn, Fault::St, Fault::Pw, Fault::Mn, Fault::Flag, Fault::Cp, Fault::Key];
}

/// The input, read a byte at a time; zeros once it is used up.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    pub fn flip(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A number below `n` (`n` ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 256 { usize::from(self.byte()) % n } else { usize::from(self.u16()) % n }
    }

    pub fn pick<'t, T>(&mut self, from: &'t [T]) -> &'t T {
        &from[self.below(from.len())]
    }

    fn word(&mut self, from: &[&str]) -> String {
        self.pick(from).to_string()
    }

    fn text(&mut self, n: usize) -> String {
        self.text_in(n, true)
    }

    /// Up to 95 raw bytes.
    pub fn raw_bytes(&mut self) -> Vec<u8> {
        let n = self.below(96);
        (0..n).map(|_| self.byte()).collect()
    }

    /// A link as the configuration allows it, and what it remembered; the wall clock at start.
    pub fn setup(&mut self) -> (Setup, Settings, i64) {
        let (a, b) = (self.byte(), self.byte());
        let v2025 = a & 1 != 0;
        let onboarding = v2025 && b & 1 != 0;
        let wall = (T0 + (i64::from(self.u16()) - 32_768) * HOUR).clamp(WALL_MIN, WALL_MAX);
        let setup = Setup {
            name: "province".into(),
            st: self.pick(&["31", "22", "05"]).to_string(),
            version: if v2025 { Version::V2025 } else { Version::V2017 },
            window: *self.pick(&[1, 2, 3, 4, 8, 32, 64]),
            asks: Asks { data: a & 2 == 0, run_time: a & 4 != 0, realtime: a & 8 != 0, notices: a & 16 == 0 },
            accept_2017: v2025 && b & 4 != 0,
            onboarding,
            hardware: [LOGGER_ID, "CPU1", "B827EB000001", ""].map(String::from),
            heartbeat_ms: v2025.then(|| *self.pick(&[5_000, 60_000, 3_600_000])),
            encrypts: v2025 && b & 2 != 0,
            key_request_after_ms: (1 + self.below(89) as i64) * DAY,
            offset: Offset::from_seconds(self.below(105) as i64 * 900 - 12 * 3600).expect("within ±12 h"),
            content: v2025.then(|| (vec!["a01012".to_string()], 9999.99)),
        };
        let settings = Settings {
            pw: "123456".into(),
            mn: if onboarding && b & 64 == 0 { String::new() } else { MN.into() },
            overtime_ms: (1 + self.below(99) as u64) * 1000,
            recount: 1 + self.below(6) as u32,
            rtd_interval_ms: *self.pick(&[30_000, 60_000, 3_600_000]),
            min_interval: *self.pick(&MIN_INTERVALS),
            realtime: b & 8 != 0,
            run_status: b & 16 != 0,
            key_created_ms: wall - self.below(120) as i64 * DAY,
            restart_ms: (b & 32 == 0).then_some(wall - 60_000),
        };
        (setup, settings, wall)
    }

    /// How far time goes (ms), how the wall clock steps besides, and whether the driver keeps
    /// every deadline on the way.
    pub fn time_step(&mut self) -> (u64, i64, bool) {
        let b = self.byte();
        let step = match b % 4 {
            0 => u64::from(self.byte()) * 10,
            1 => u64::from(self.u16()),
            2 => u64::from(self.byte()) * 60_000,
            _ => u64::from(self.byte()) * HOUR as u64,
        };
        let wall_step = if b & 4 != 0 { (i64::from(self.u16()) - 32_768) * 60_000 } else { 0 };
        (step, wall_step, b & 8 == 0)
    }

    /// A packet from the platform: any CN, its QN one the session sent (an answer) or a new
    /// one (a request), the link's identity and version, a CP of that CN's fields in range. One
    /// of these in four is wrong in one respect ([`Fault`]), as the input says.
    pub fn platform_packet(
        &mut self,
        me: &Identity,
        wall: i64,
        offset_s: i64,
        awaiting: &VecDeque<String>,
        recent: &VecDeque<String>,
    ) -> (Packet, Option<Fault>) {
        let fault = match self.byte() {
            f @ 192.. => Some(Fault::ALL[usize::from(f) % Fault::ALL.len()]),
            _ => None,
        };
        let cn = match fault {
            Some(Fault::Cn) => match self.below(3) {
                0 => (1000 + self.below(73)).to_string(),
                1 => self.word(&["1001", "1013", "9015", "2081", "4242", "0000"]),
                _ => self.text(4),
            },
            _ => self.word(&CNS),
        };
        let answer = message::is_response(&cn);
        let qn = match fault {
            Some(Fault::Qn) => match self.below(3) {
                0 => None,
                1 => Some((0..self.below(20)).map(|_| char::from(b'0' + self.below(10) as u8)).collect()),
                _ => Some(self.text(17)),
            },
            _ if answer && !awaiting.is_empty() && self.below(4) != 0 => {
                Some(awaiting[self.below(awaiting.len())].clone())
            }
            _ if !recent.is_empty() && self.below(4) == 0 => Some(recent[self.below(recent.len())].clone()),
            _ => Some(format_qn(wall - self.below(1000) as i64, offset_s)),
        };
        let st = match fault {
            Some(Fault::St) => self.word(&["22", "32", "91", ""]),
            _ if answer => message::ST_INTERACTION.to_string(),
            _ => me.st.clone(),
        };
        let pw = if fault == Some(Fault::Pw) { self.word(&["654321", "12345", ""]) } else { me.pw.clone() };
        let mn = match fault {
            Some(Fault::Mn) => self.word(&["99999990000009", "", "88888880000001"]),
            _ if cn == "1002" => self.word(&["ABCDEF0123456789ABCDEF01", "88888880000002"]),
            _ => me.mn.clone(),
        };
        let flag = match fault {
            Some(Fault::Flag) => match self.below(3) {
                0 => None,
                1 => Some(self.byte()),
                _ => Some(Version::V2017.flag(self.flip(), false)),
            },
            _ => Some(me.version.flag(!answer && self.flip(), false)),
        };
        let cp = self.request_cp(&cn, wall, offset_s, fault == Some(Fault::Cp));
        (Packet { qn, st, cn, pw, mn, flag, packets: None, rf: self.below(8) == 0, cp }, fault)
    }

    /// The CP of a platform packet of `cn`: its fields in range, or (`wrong`) some missing, out
    /// of range or malformed, and a stray one.
    fn request_cp(&mut self, cn: &str, wall: i64, offset_s: i64, wrong: bool) -> Cp {
        let mut fields: Vec<(&str, String)> = Vec::new();
        let time = |this: &mut Self| match (wrong, this.below(8)) {
            (true, 0) => "20261329000000".to_string(),
            (true, 1) => this.text(14),
            _ => format_time14(wall - (this.below(2000) as i64 - 100) * HOUR, offset_s),
        };
        let one_of = |this: &mut Self, good: &[&str], bad: &[&str]| {
            if wrong && this.flip() { this.word(bad) } else { this.word(good) }
        };
        match cn {
            "9011" => fields.push((
                "QnRtn",
                one_of(self, &["1", "2", "3", "4", "5", "6", "7", "8", "9", "100"], &[" 1", "x", ""]),
            )),
            "9012" => fields.push(("ExeRtn", one_of(self, &["1", "2", "3", "100"], &["x", ""]))),
            "1000" => {
                fields.push(("OverTime", one_of(self, &["1", "5", "10", "99"], &["0", "100", "x"])));
                fields.push(("ReCount", one_of(self, &["1", "3", "99"], &["0", "100"])));
            }
            "1012" => fields.push(("SystemTime", time(self))),
            "1062" => fields.push(("RtdInterval", one_of(self, &["30", "60", "3600"], &["29", "3601"]))),
            "1064" => fields.push(("MinInterval", one_of(self, &["1", "10", "30"], &["7", "31"]))),
            "1072" => {
                let n = if wrong { *self.pick(&[5, 7, 6]) } else { 6 };
                fields.push(("NewPW", self.text_in(n, wrong)));
            }
            "2031" | "2041" | "2051" | "2061" => {
                let begin = time(self);
                let end = match self.below(4) {
                    0 if wrong => time(self),
                    1 => begin.clone(),
                    _ => format_time14(wall, offset_s),
                };
                fields.push(("BeginTime", begin));
                fields.push(("EndTime", end));
            }
            "3020" => {
                fields.push(("PolId", self.pick(&FACTORS).to_string()));
                fields.push(("InfoId", self.word(&["i12001", "i12002", "i13004"])));
            }
            "1002" => fields.push(("i23005-Info", one_of(self, &[LOGGER_ID], &["GW-9999"]))),
            "1014" => {
                let created =
                    if self.flip() { format_qn(wall, offset_s) } else { format_time14(wall, offset_s) };
                fields.push(("SKCreateTime", created));
                let n = if wrong { *self.pick(&[15, 17, 16]) } else { 16 };
                fields.push(("NewSK", self.text_in(n, wrong)));
            }
            cn if cn.starts_with("30") => fields.push(("PolId", self.pick(&FACTORS).to_string())),
            _ => {}
        }
        let mut items: Vec<Vec<(String, String)>> = Vec::new();
        for (k, v) in fields {
            if !(wrong && self.below(4) == 0) {
                items.push(vec![(k.to_string(), v)]);
            }
        }
        if wrong && self.flip() {
            items.push(vec![("a21026-Rtd".to_string(), "1.5".to_string())]);
        }
        Cp(items)
    }

    /// `n` characters for a pushed password or key: the separators among them when `wrong`.
    fn text_in(&mut self, n: usize, wrong: bool) -> String {
        let from = if wrong { TEXT } else { &TEXT[..CLEAN] };
        (0..n).map(|_| char::from(*self.pick(from))).collect()
    }

    /// Current values for a `Gather`.
    pub fn values(&mut self, what: Live) -> Vec<Value> {
        let n = self.below(5);
        (0..n)
            .map(|_| {
                let factor = match what {
                    Live::Pollutants => self.pick(&FACTORS).to_string(),
                    Live::RunStatus => self.pick(&["SB1-RS", "SB2-RS"]).to_string(),
                };
                let (value, zs) = (*self.pick(&VALUES), *self.pick(&VALUES));
                Value { factor, value, zs, flag: *self.pick(&Flag::ALL), unconvertible: self.flip() }
            })
            .collect()
    }

    /// The answer to a `GatherInfo`, as `uplink::hj212::info::answer` builds it: refused
    /// (ExeRtn 3, nothing), or frames of the request's factor and log lines (up to the longest
    /// a log text may be, separators and non-ASCII characters in it), or nothing (ExeRtn 100).
    pub fn info(&mut self, req: &InfoRequest, data_time: &str) -> Answer {
        if self.below(4) == 0 {
            return Answer { frames: Vec::new(), logs: Vec::new(), rtn: ExeRtn::ConditionError };
        }
        let pol = req.pol_id.clone().unwrap_or_else(|| self.pick(&FACTORS).to_string());
        let frames: Vec<Cp> = (0..self.below(3))
            .map(|_| {
                let state = self.below(10).to_string();
                Cp::single(&[("DataTime", data_time), ("PolId", &pol), ("i12001-Info", &state)])
            })
            .collect();
        let logs: Vec<Cp> = (0..self.below(3))
            .map(|_| {
                let n = match self.below(3) {
                    0 => self.below(40),
                    1 => 690 + self.below(20),
                    _ => self.below(800),
                };
                let text: String = (0..n).map(|_| *self.pick(&LOG_CHARS)).collect();
                Cp::single(&[("DataTime", data_time), ("PolId", &pol), ("i11001-Info", &log_text(&text))])
            })
            .collect();
        let rtn = if frames.is_empty() && logs.is_empty() { ExeRtn::NoData } else { ExeRtn::Success };
        Answer { frames, logs, rtn }
    }

    /// Field information that changed, as the live state pushes it (`Event::Push`): frames and
    /// log lines like an answer's, or none.
    pub fn pushed(&mut self, data_time: &str) -> Vec<Cp> {
        let any = InfoRequest { pol_id: None, info_id: None, window: None };
        let Answer { frames, logs, .. } = self.info(&any, data_time);
        frames.into_iter().chain(logs).collect()
    }

    fn payload(&mut self, kind: Kind, start_ms: i64, offset_s: i64) -> Payload {
        let Some(level) = kind.level() else {
            let n = self.below(3);
            let hours = (0..n)
                .map(|i| (format!("SB{}-RS", i + 1), *self.pick(&[0.0, 1.1, 23.5, 24.0, 0.004])))
                .collect();
            return Payload::RunTime(hours);
        };
        let n = self.below(5);
        let records = (0..n)
            .map(|_| {
                let (min, avg, max, zs, cou) = (
                    *self.pick(&VALUES),
                    *self.pick(&VALUES),
                    *self.pick(&VALUES),
                    *self.pick(&VALUES),
                    *self.pick(&VALUES),
                );
                Record {
                    level,
                    start: Offset::from_seconds(offset_s).expect("checked").local(Utc(start_ms)).secs(),
                    factor: self.pick(&FACTORS).to_string(),
                    stat: Stat {
                        n_total: 60,
                        n_valid: 60,
                        min,
                        avg,
                        max,
                        zs_min: zs.map(|v| v * 0.9),
                        zs_avg: zs,
                        zs_max: zs.map(|v| v * 1.1),
                        cou,
                        flag: *self.pick(&Flag::ALL),
                        valid: self.flip(),
                    },
                    limit: *self.pick(&[None, Some(35.0)]),
                    exceeded: false,
                }
            })
            .collect();
        Payload::Records(records)
    }
}

/// A platform's answer (ST=91, no Flag A) to a QN.
pub fn answer(me: &Identity, qn: &str, cn: &str, cp: &[(&str, &str)]) -> Packet {
    Packet {
        qn: Some(qn.to_string()),
        st: message::ST_INTERACTION.into(),
        cn: cn.into(),
        pw: me.pw.clone(),
        mn: me.mn.clone(),
        flag: Some(me.version.flag(false, false)),
        packets: None,
        rf: false,
        cp: Cp::single(cp),
    }
}

/// The link's queue as `store::outbox` keeps it: periods handed out once per connection, taken
/// back when the connection ends unacknowledged, and handed out again first.
#[derive(Debug)]
pub struct Outbox {
    next: [i64; 4],
    block_minutes: u32,
    offset_s: i64,
    handed: Vec<Item>,
    again: VecDeque<Item>,
    delivered: HashSet<(Kind, i64)>,
    /// The final phase: nothing new is queued.
    pub settling: bool,
}

fn index(kind: Kind) -> usize {
    match kind {
        Kind::Minute => 0,
        Kind::Hour => 1,
        Kind::Day => 2,
        Kind::RunTime => 3,
    }
}

impl Outbox {
    pub fn new(wall: i64, block_minutes: u32, offset_s: i64) -> Outbox {
        let day = wall.div_euclid(DAY) * DAY - 30 * DAY;
        Outbox {
            next: [day; 4],
            block_minutes,
            offset_s,
            handed: Vec::new(),
            again: VecDeque::new(),
            delivered: HashSet::new(),
            settling: false,
        }
    }

    fn period_ms(&self, kind: Kind) -> i64 {
        match kind {
            Kind::Minute => i64::from(self.block_minutes) * 60_000,
            Kind::Hour => HOUR,
            Kind::Day | Kind::RunTime => DAY,
        }
    }

    pub fn set_block(&mut self, minutes: u32) {
        self.block_minutes = minutes;
    }

    /// Nothing handed out and unacknowledged, nothing waiting to go again.
    pub fn is_empty(&self) -> bool {
        self.handed.is_empty() && self.again.is_empty()
    }

    /// Up to `n` periods: those taken back first, then (unless settling) new ones.
    pub fn fetch(&mut self, n: usize, inp: &mut Input) -> Vec<Item> {
        let want = if self.settling { n } else { inp.below(n + 1) };
        let mut items: Vec<Item> = Vec::new();
        while items.len() < want
            && let Some(item) = self.again.pop_front()
        {
            items.push(item);
        }
        while !self.settling && items.len() < want {
            let kind = *inp.pick(&Kind::ALL);
            let start_ms = self.next[index(kind)];
            self.next[index(kind)] += self.period_ms(kind);
            let flags = inp.byte();
            let payload = inp.payload(kind, start_ms, self.offset_s);
            items.push(Item { kind, start_ms, live: flags & 1 != 0, backlog: flags & 2 != 0, payload });
        }
        self.handed.extend(items.iter().cloned());
        items
    }

    /// The periods of `kind` with data in `[from, to]`: some of them.
    pub fn history(&mut self, kind: Kind, from: i64, to: i64, inp: &mut Input) -> Vec<i64> {
        let len = self.period_ms(kind);
        let first = from.div_euclid(len) * len + if from.rem_euclid(len) == 0 { 0 } else { len };
        let n = inp.below(9) as i64;
        (0..n).map(|i| first.saturating_add(i * len)).filter(|s| *s <= to).collect()
    }

    /// The content of those of `starts` that still have data.
    pub fn load(&mut self, kind: Kind, starts: &[i64], inp: &mut Input) -> Vec<Item> {
        let mut items = Vec::new();
        for &start_ms in starts {
            if inp.below(8) != 0 {
                let payload = inp.payload(kind, start_ms, self.offset_s);
                items.push(Item { kind, start_ms, live: false, backlog: true, payload });
            }
        }
        items
    }

    /// The connection ended: what was handed out and not acknowledged goes again first.
    pub fn rewind(&mut self) {
        let mut back: Vec<Item> = std::mem::take(&mut self.handed);
        back.extend(self.again.drain(..));
        back.sort_by_key(|i| (index(i.kind), i.start_ms));
        self.again = back.into();
    }

    /// A period acknowledged: `false` when it was not handed out, or was already.
    pub fn delivered(&mut self, (kind, start): (Kind, i64)) -> bool {
        let Some(at) = self.handed.iter().position(|i| i.kind == kind && i.start_ms == start) else {
            return false;
        };
        self.handed.remove(at);
        self.delivered.insert((kind, start))
    }
}

/// `YYYYMMDDhhmmss` of `ms` at `offset_s`, through the gateway's one formatter.
pub fn format_time14(ms: i64, offset_s: i64) -> String {
    Offset::from_seconds(offset_s).expect("within ±18 h").local(Utc(ms)).hj14()
}

/// `YYYYMMDDhhmmsszzz` of `ms` at `offset_s` (a QN), through the gateway's one formatter.
pub fn format_qn(ms: i64, offset_s: i64) -> String {
    Offset::from_seconds(offset_s).expect("within ±18 h").local(Utc(ms)).hj17()
}
