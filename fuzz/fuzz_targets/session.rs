//! The `uplink_session` target's body: one HJ 212 session state machine
//! (`uplink::hj212::state::Session`) driven the way `uplink/hj212/session.rs` drives it (every
//! action carried out in order, what an action yields fed back at once, ahead of the actions
//! still waiting) through a sequence decoded from the input: connections, frames from a model
//! platform (raw bytes and well-formed packets, through the real stream decoder, SM4-encrypted
//! on a 2025 link), a model outbox's answers, ticks at monotonic times that never go back with
//! wall times that may jump, field information pushed (3020), disconnects and a shutdown. After
//! every step the promises of the design are checked (`session_checks.rs`); at the end the
//! platform answers everything and time passes, and every promise still open must be kept.

use std::collections::{HashSet, VecDeque};

use cems_gateway::hj212::crypt::{Key, LengthRule};
use cems_gateway::hj212::frame::{MAX_FRAME, Version};

use cems_gateway::hj212::{Decoded, Decoder};
use cems_gateway::store::outbox::Kind;
use cems_gateway::uplink::hj212::state::{Action, Event, Now, Session};
use cems_gateway::uplink::v2025::must_encrypt;

#[path = "session_input.rs"]
mod input;
#[path = "session_checks.rs"]
mod promises;

use input::{Fault, Input, Outbox, WALL_MAX, WALL_MIN, format_time14};

/// Ticks one step of time may take when the driver keeps every deadline; beyond it, the rest
/// of the step is a stall (one late tick).
const MAX_TICKS: usize = 256;
/// Rounds of the final phase (the platform answers everything, a second passes).
const SETTLE_ROUNDS: usize = 600;
/// Data uploads (the CNs a period or a history answer goes out as).
const DATA_CNS: [&str; 4] = ["2051", "2061", "2031", "2041"];
/// Uploads that need the MN: data, real-time and run status.
const MN_CNS: [&str; 6] = ["2051", "2061", "2031", "2041", "2011", "2021"];

/// Whether to print every event and action (`CEMS_FUZZ_TRACE=1`), to read a reproducer.
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("CEMS_FUZZ_TRACE").is_some())
}

/// Drives one session through the sequence `data` decodes to; panics on a broken promise.
pub fn uplink_session(data: &[u8]) {
    let mut h = Harness::new(data);
    while !h.inp.is_empty() {
        if !h.step() {
            return h.shutdown();
        }
    }
    h.settle();
    h.shutdown();
}

/// A period as the outbox and the checks name it.
type Period = (Kind, i64);

/// One data upload the session sent on this connection, as the checks follow it.
#[derive(Debug)]
struct Upload {
    /// `Some` for a queued period (acknowledged to the outbox), `None` for a history answer.
    period: Option<Period>,
    qns: Vec<String>,
    asks: bool,
    acked: HashSet<String>,
    refused: bool,
    /// Reported as impossible to encode (and so finished without being sent).
    failed: bool,
    written: bool,
    delivered: bool,
}

impl Upload {
    /// Still awaiting its acknowledgement: in the send window.
    fn in_window(&self) -> bool {
        self.asks && !self.failed && !self.refused && !self.qns.iter().all(|q| self.acked.contains(q))
    }
}

struct Harness<'a> {
    inp: Input<'a>,
    s: Session,
    window: usize,
    version: Version,
    accept_2017: bool,
    encrypts: bool,
    offset_s: i64,
    now: Now,
    online: bool,
    decoder: Decoder,
    /// The link's SM4 keys, the one in force first; the length rule of its frames.
    keys: Vec<Key>,
    rule: LengthRule,
    outbox: Outbox,
    /// This connection's data uploads.
    uploads: Vec<Upload>,
    /// QNs of data packets the session sent (to tell a new upload from a resend).
    data_qns: HashSet<String>,
    /// QNs of data uploads the platform acknowledged whole (a split upload's packets are sent
    /// again together until every one is acknowledged).
    acked: HashSet<String>,
    /// QNs of packets with Flag A the platform has not answered, newest last.
    awaiting: VecDeque<String>,
    /// QNs of everything the session sent, newest last.
    recent: VecDeque<String>,
    /// Requests of this connection answered `QnRtn=1` and still owed their 9012.
    open: Vec<String>,
    /// The CN and QN of the platform packet being handled, and the 2011/2021 requests promised
    /// (`QnRtn=1`) while handling it, with whether their data went out yet.
    request: Option<(String, Option<String>)>,
    live_promises: Vec<(String, bool)>,
    /// Keys the platform pushed (1014 NewSK): never in an audit entry or a saved setting.
    secrets: Vec<String>,
}

/// What carrying out an action led to.
enum Next {
    Done,
    Event(Event),
    Dropped,
}

impl<'a> Harness<'a> {
    fn new(data: &'a [u8]) -> Harness<'a> {
        let mut inp = Input(data);
        let (setup, settings, wall) = inp.setup();
        let keys = vec![Key::from_text(super::KEY).expect("16 characters")];
        Harness {
            window: setup.window,
            version: setup.version,
            accept_2017: setup.accept_2017,
            encrypts: setup.encrypts,
            offset_s: setup.offset.seconds(),
            outbox: Outbox::new(wall, settings.min_interval, setup.offset.seconds()),
            s: Session::new(setup, settings),
            rule: if inp.flip() { LengthRule::Wire } else { LengthRule::Plain },
            inp,
            now: Now { mono: 0, wall_ms: wall },
            online: false,
            decoder: Decoder::default(),
            keys,
            uploads: Vec::new(),
            data_qns: HashSet::new(),
            acked: HashSet::new(),
            awaiting: VecDeque::new(),
            recent: VecDeque::new(),
            open: Vec::new(),
            request: None,
            live_promises: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// One step of the sequence; `false` on shutdown.
    fn step(&mut self) -> bool {
        let op = self.inp.byte();
        if !self.online {
            match op % 16 {
                8..=10 => self.advance(),
                15 => return false,
                _ => self.connect(),
            }
            return true;
        }
        match op % 16 {
            0..=5 => self.platform_packet(),
            6 | 7 => {
                let bytes = self.inp.raw_bytes();
                self.receive(&bytes);
            }
            8..=10 => self.advance(),
            11 | 12 => self.answer_awaiting(false),
            13 => self.disconnect(),
            14 if self.inp.flip() => self.tick_at(self.now.mono, 0),
            14 => {
                let data_time = format_time14(self.now.wall_ms, self.offset_s);
                let cps = self.inp.pushed(&data_time);
                self.event(Event::Push(cps));
            }
            _ => return false,
        }
        true
    }

    fn connect(&mut self) {
        self.online = true;
        self.decoder = Decoder::default();
        self.decoder.set_keys(self.link_keys());
        self.event(Event::Connected);
    }

    /// The connection is gone: what was in flight goes back to the queue.
    fn disconnect(&mut self) {
        if tracing() {
            eprintln!("disconnected");
        }
        self.s.disconnected();
        self.online = false;
        self.outbox.rewind();
        self.uploads.clear();
        self.awaiting.clear();
        self.open.clear();
    }

    fn shutdown(&mut self) {
        if self.online {
            self.disconnect();
        }
        assert_eq!(self.s.next_deadline(), None, "an offline session has no deadline");
    }

    /// The keys the reader tries: only a link that encrypts has any.
    fn link_keys(&self) -> Vec<Key> {
        if self.encrypts { self.keys.clone() } else { Vec::new() }
    }

    /// Time passes: by the deadlines the session gives (the driver wakes for each), or in one
    /// late tick (a stalled process), with the wall clock stepped or not.
    fn advance(&mut self) {
        let (step, wall_step, keeps_deadlines) = self.inp.time_step();
        let target = self.now.mono + step;
        if keeps_deadlines {
            self.keep_deadlines_until(target, false);
        }
        self.tick_at(target, wall_step);
    }

    fn keep_deadlines_until(&mut self, target: u64, answering: bool) {
        for _ in 0..MAX_TICKS {
            if answering {
                self.answer_awaiting(true);
            }
            match self.s.next_deadline() {
                Some(at) if self.online && at <= target => self.tick_at(at.max(self.now.mono), 0),
                _ => return,
            }
        }
    }

    fn tick_at(&mut self, mono: u64, wall_step: i64) {
        assert!(mono >= self.now.mono, "the harness never turns the monotonic clock back");
        let passed = (mono - self.now.mono) as i64;
        let wall_ms = (self.now.wall_ms + passed + wall_step).clamp(WALL_MIN, WALL_MAX);
        self.now = Now { mono, wall_ms };
        if self.online {
            self.event(Event::Tick);
        }
    }

    /// Bytes from the platform into the connection's stream decoder; each packet into the
    /// session. A frame's worth of bytes without a frame ends the connection, as the reader does.
    fn receive(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
        while let Some(d) = self.decoder.next_frame() {
            if let Decoded::Packet(p) = d {
                self.event(Event::Packet(p));
                if !self.online {
                    return;
                }
            }
        }
        if self.decoder.junk() > MAX_FRAME {
            self.disconnect();
        }
    }

    /// A well-formed packet from the platform built from the input, sent as a frame (encrypted
    /// on a 2025 link that encrypts, under the key in force, the one it replaced or a wrong one).
    fn platform_packet(&mut self) {
        let me = self.s.identity().clone();
        let (p, fault) =
            self.inp.platform_packet(&me, self.now.wall_ms, self.offset_s, &self.awaiting, &self.recent);
        // Only a key with letters in it is told from a coincidence (a first run of this target
        // flagged a key of zeros "found" in a QN of zeros).
        if let Some(k) = p.cp.get("NewSK").filter(|k| k.bytes().filter(u8::is_ascii_alphabetic).count() >= 6)
        {
            self.secrets.push(k.to_string());
        }
        let sealed = self.encrypts && (must_encrypt(&p.cn) || self.inp.flip());
        let frame = if sealed {
            let wrong = Key::from_text(super::OTHER_KEY).expect("16 characters");
            let key = match fault {
                Some(Fault::Key) => &wrong,
                _ if self.inp.below(4) == 0 => self.keys.last().expect("one key at least"),
                _ => &self.keys[0],
            };
            let rule = if self.inp.flip() { LengthRule::Wire } else { LengthRule::Plain };
            p.encode_encrypted(key, rule)
        } else {
            p.encode()
        };
        if let Ok(frame) = frame {
            self.receive(frame.as_bytes());
        }
    }

    /// The platform answers what awaits an answer: all of it (`all`), or some of it with 9014,
    /// 9013 or a 9011 as the input says.
    fn answer_awaiting(&mut self, all: bool) {
        let qns: Vec<String> = self.awaiting.drain(..).collect();
        let me = self.s.identity().clone();
        for qn in qns {
            let cn = if all { "9014" } else { *self.inp.pick(&["9014", "9014", "9013", "9011", "skip"]) };
            if cn == "skip" {
                self.awaiting.push_back(qn);
                continue;
            }
            let rtn = self.inp.pick(&["1", "2", "8", "3"]).to_string();
            let cp = if cn == "9011" { vec![("QnRtn", rtn.as_str())] } else { Vec::new() };
            let p = input::answer(&me, &qn, cn, &cp);
            if let Ok(frame) = p.encode() {
                self.receive(frame.as_bytes());
            }
            if !self.online {
                return;
            }
        }
    }

    /// The end: the platform answers everything at once and time passes, the outbox hands out
    /// only what went back to it. Every request answered `QnRtn=1` gets its 9012, every period
    /// handed out is delivered, nothing stays in flight, unless the connection drops.
    fn settle(&mut self) {
        if !self.online {
            return;
        }
        self.outbox.settling = true;
        for _ in 0..SETTLE_ROUNDS {
            let target = self.now.mono + 1000;
            self.keep_deadlines_until(target, true);
            if !self.online {
                return;
            }
            self.answer_awaiting(true);
            if !self.online {
                return;
            }
            self.tick_at(target, 0);
            if !self.online {
                return;
            }
            if self.open.is_empty() && self.outbox.is_empty() && self.s.in_flight() == 0 {
                break;
            }
        }
        assert!(
            self.open.is_empty(),
            "every request answered QnRtn=1 gets its 9012 (the platform answered everything, time passed): {:?} still open",
            self.open
        );
        assert!(
            self.outbox.is_empty(),
            "a platform that acknowledges everything gets every period handed out: {:?}",
            self.outbox
        );
        assert_eq!(self.s.in_flight(), 0, "nothing stays in flight once everything is acknowledged");
    }

    /// One event from outside, then every action it leads to, in order, as the driver does.
    fn event(&mut self, event: Event) {
        let tick = event == Event::Tick;
        self.request = match &event {
            Event::Packet(p) => Some((p.cn.clone(), p.qn.clone())),
            _ => None,
        };
        self.live_promises.clear();
        let mut work: VecDeque<Action> = self.handle(event).into();
        let mut steps = 0;
        while let Some(action) = work.pop_front() {
            steps += 1;
            assert!(steps < 100_000, "the actions of one event come to an end");
            match self.execute(action) {
                Next::Done => {}
                Next::Event(e) => {
                    for a in self.handle(e).into_iter().rev() {
                        work.push_front(a);
                    }
                }
                Next::Dropped => return self.disconnect(),
            }
        }
        let deadline = self.s.next_deadline();
        assert!(deadline.is_some(), "a connected session always has a deadline (it would sleep forever)");
        if tick {
            assert!(
                deadline.is_some_and(|d| d > self.now.mono),
                "after a tick at {} nothing is due any more: next deadline {deadline:?}",
                self.now.mono
            );
        }
        let in_window = self.uploads.iter().filter(|u| u.in_window()).count();
        assert_eq!(
            self.s.in_flight(),
            in_window,
            "the session's window is what the platform has not answered"
        );
        assert!(in_window <= self.window, "{in_window} uploads in flight, the window is {}", self.window);
    }
}
