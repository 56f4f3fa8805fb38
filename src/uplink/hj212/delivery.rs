//! The data side of the session state machine (`state.rs`): the send window filled from the
//! running history request and the queue, uploads split and tracked, and the platform's answers
//! matched by QN to data uploads, notices, heartbeats and real-time frames.

use std::collections::VecDeque;

use super::state::{Action, Fault, Mode, Now, QUEUE_POLL_MS, Session, kind_cn, qn_rtn_meaning};
use crate::hj212::message::{self, Response};
use crate::hj212::{Packet, split};
use crate::store::audit::AuditKind;
use crate::store::outbox::{Item, Kind, Payload};

/// Where a data upload comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    Queue {
        kind: Kind,
        start: i64,
    },
    /// An answer to the running history request.
    History {
        kind: Kind,
        start: i64,
    },
}

/// An upload or notice waiting for its answer.
#[derive(Debug, Clone)]
pub(super) struct Pending<T> {
    pub what: T,
    pub cn: String,
    /// QNs not answered yet (one per packet of a split upload).
    pub waiting: Vec<String>,
    /// All its packets, sent again together.
    pub packets: Vec<Packet>,
    pub sent: u64,
    pub attempts: u32,
}

/// A history request being answered, the oldest first.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub qn: String,
    pub kind: Kind,
    pub from_ms: i64,
    pub to_ms: i64,
    pub step: Step,
}

#[derive(Debug, Clone)]
pub(super) enum Step {
    Waiting,
    Listing,
    Sending { remaining: VecDeque<i64>, loading: bool, out: usize },
}

/// What lives only as long as a connection.
#[derive(Debug, Default)]
pub(super) struct Conn {
    pub window: VecDeque<Pending<Origin>>,
    /// When the platform last answered a data upload: a platform that answers in order, one
    /// upload after the other, is still at work on the rest of the window.
    pub data_answered: u64,
    pub notices: Vec<Pending<()>>,
    /// Real-time frames that asked for an answer: counted, never sent again.
    pub live_asks: Vec<(String, u64)>,
    pub jobs: VecDeque<Job>,
    /// A fetch in flight, and how many periods it asked for.
    pub fetching: Option<usize>,
    /// Heartbeats not answered yet (QN, sent), and whether one was answered.
    pub beats: VecDeque<(String, u64)>,
    pub beat_answered: bool,
    pub beat_warned: bool,
    pub next_beat: u64,
    pub next_realtime: u64,
    pub next_run_status: u64,
    pub next_key_check: u64,
}

impl Conn {
    /// When a data upload counts as unanswered: `overtime` after it was sent, or after the
    /// platform's last answer to a data upload if that came later. With several uploads in
    /// flight a platform that answers them one after the other in its own time is waited for;
    /// one that stops answering is not.
    pub fn data_deadline(&self, u: &Pending<Origin>, overtime: u64) -> u64 {
        u.sent.max(self.data_answered) + overtime
    }
}

impl Session {
    /// Fills the window: the running history request first, then the queue.
    pub(super) fn fill(&mut self, now: Now) {
        if !self.sends_live() {
            return;
        }
        let room = self.setup.window.saturating_sub(self.conn.window.len());
        while let Some(job) = self.conn.jobs.front_mut() {
            let kind = job.kind;
            let next = match &mut job.step {
                Step::Waiting => {
                    job.step = Step::Listing;
                    Some(Action::LoadHistory { kind, from_ms: job.from_ms, to_ms: job.to_ms })
                }
                Step::Listing | Step::Sending { loading: true, .. } => None,
                Step::Sending { remaining, loading, .. } if !remaining.is_empty() => (room > 0).then(|| {
                    *loading = true;
                    Action::LoadPeriods {
                        kind,
                        starts: remaining.drain(..room.min(remaining.len())).collect(),
                    }
                }),
                Step::Sending { out, .. } if *out > 0 => None,
                Step::Sending { .. } => {
                    // Every period of the request went out (and was answered when asked).
                    let qn = job.qn.clone();
                    self.conn.jobs.pop_front();
                    self.send(message::exe_rtn(&self.me, &qn, message::ExeRtn::Success));
                    continue;
                }
            };
            if let Some(a) = next {
                self.emit(a);
            }
            return;
        }
        if room == 0 || self.conn.fetching.is_some() {
            return;
        }
        if let Mode::Normal { look_at } = self.mode
            && now.mono < look_at
        {
            return;
        }
        self.conn.fetching = Some(room);
        self.emit(Action::Fetch(room));
    }

    pub(super) fn queued(&mut self, now: Now, items: Vec<Item>) {
        let asked = self.conn.fetching.take().unwrap_or(0);
        self.mode = if items.len() >= asked && asked > 0 {
            Mode::Draining
        } else {
            Mode::Normal { look_at: now.mono + QUEUE_POLL_MS }
        };
        for item in items {
            let origin = Origin::Queue { kind: item.kind, start: item.start_ms };
            self.upload(now, item, origin);
        }
    }

    pub(super) fn history_periods(&mut self, starts: Vec<i64>) {
        let Some(job) = self.conn.jobs.front_mut() else { return };
        if starts.is_empty() {
            let qn = job.qn.clone();
            self.conn.jobs.pop_front();
            self.send(message::exe_rtn(&self.me, &qn, message::ExeRtn::NoData));
            return;
        }
        tracing::info!(uplink = %self.setup.name, periods = starts.len(), kind = job.kind.name(), "History requested.");
        job.step = Step::Sending { remaining: starts.into(), loading: false, out: 0 };
    }

    pub(super) fn history_items(&mut self, now: Now, items: Vec<Item>) {
        if let Some(Job { step: Step::Sending { loading, .. }, .. }) = self.conn.jobs.front_mut() {
            *loading = false;
        }
        for item in items {
            let origin = Origin::History { kind: item.kind, start: item.start_ms };
            self.upload(now, item, origin);
        }
    }

    /// Sends one period (split into packets if needed), tracked in the window when it asks for
    /// an acknowledgement.
    fn upload(&mut self, now: Now, item: Item, origin: Origin) {
        let cn = kind_cn(item.kind);
        let data_time = self.stamp(item.start_ms);
        let cp = match &item.payload {
            Payload::Records(records) => message::period_cp_with(&data_time, records, self.content()),
            Payload::RunTime(hours) => message::run_time_cp(&data_time, hours),
        };
        let asks = if item.kind == Kind::RunTime { self.setup.asks.run_time } else { self.setup.asks.data };
        let qn = self.qn(now);
        let mut packet = message::upload(&self.me, &qn, cn, asks, cp);
        // HJ 212-2025: RF=1 on everything sent from the backlog, never on live data. Split as if
        // it were there, since a resend carries it and must still fit (a live packet of 1020-1024
        // characters did not; found by the `uplink_session` fuzz target).
        let rf = self.is_2025() && (item.backlog || matches!(origin, Origin::History { .. }));
        packet.rf = self.is_2025();
        let packets = match split(&packet, |_| self.qn(now)) {
            Ok(mut p) => {
                p.iter_mut().for_each(|p| p.rf = rf);
                p
            }
            Err(e) => {
                // Only absurd values do this (an item of several values over ~1e170, each
                // written in full, fits no packet; found by the `uplink_session` fuzz target);
                // the period must not block the queue forever.
                tracing::error!(uplink = %self.setup.name, error = %e, %cn, data_time, "Cannot encode a period; it is skipped.");
                self.audit(AuditKind::Platform, format!("CN={cn} DataTime={data_time} not sent: {e}"));
                self.finished(origin);
                return;
            }
        };
        self.emit(Action::Send(packets.clone()));
        if asks {
            self.counters.frames_asked += packets.len() as u64;
            if let (Origin::History { .. }, Some(Job { step: Step::Sending { out, .. }, .. })) =
                (origin, self.conn.jobs.front_mut())
            {
                *out += 1;
            }
            let waiting = packets.iter().filter_map(|p| p.qn.clone()).collect();
            self.conn.window.push_back(Pending {
                what: origin,
                cn: cn.into(),
                waiting,
                packets,
                sent: now.mono,
                attempts: 1,
            });
        } else {
            // Not asked: delivered once written (the session writes before it goes on).
            self.finished(origin);
        }
    }

    /// A data upload is done with: its period leaves the queue (history answers just count).
    fn finished(&mut self, origin: Origin) {
        match origin {
            Origin::Queue { kind, start } => self.emit(Action::Delivered { kind, start_ms: start }),
            Origin::History { .. } => {
                if let Some(Job { step: Step::Sending { out, .. }, .. }) = self.conn.jobs.front_mut() {
                    *out = out.saturating_sub(1);
                }
            }
        }
    }

    /// An answer from the platform: matched by QN with what waits for one, else ignored.
    pub(super) fn answer(&mut self, now: Now, qn: &str, r: Response) {
        if let Some(i) = self.conn.window.iter().position(|u| u.waiting.iter().any(|q| q == qn)) {
            match r {
                Response::Ack | Response::NotificationAck => {
                    self.acked(now);
                    self.conn.data_answered = now.mono;
                    let u = &mut self.conn.window[i];
                    u.waiting.retain(|q| q != qn);
                    if u.waiting.is_empty() {
                        let done = self.conn.window.remove(i).expect("found above");
                        self.finished(done.what);
                    }
                }
                Response::QnRtn(Some(code @ (2 | 8))) => {
                    let done = self.conn.window.remove(i).expect("found above");
                    let period = match done.what {
                        Origin::Queue { start, .. } | Origin::History { start, .. } => self.stamp(start),
                    };
                    tracing::error!(uplink = %self.setup.name, cn = %done.cn, period, qn_rtn = code, "The platform refused a period; it is recorded as rejected and not sent again.");
                    self.audit(
                        AuditKind::Platform,
                        format!("CN={} DataTime={period} refused: QnRtn={code}", done.cn),
                    );
                    self.counters.rejected += 1;
                    self.finished(done.what);
                }
                Response::QnRtn(Some(code @ 3..=6)) => {
                    let why = format!("QnRtn={code} ({})", qn_rtn_meaning(code));
                    tracing::error!(uplink = %self.setup.name, cn = %self.conn.window[i].cn, %why, "The platform refuses this link's uploads; check pw, mn, st and protocol. Data stays queued.");
                    self.emit(Action::Drop(Fault::Refused(why)));
                }
                // Ready (1), a CRC or QN complaint, or an execution result: keep waiting for the
                // 9014 (or the timeout, which sends it again).
                Response::QnRtn(_) | Response::ExeRtn(_) => {}
            }
            return;
        }
        if let Some(i) = self.conn.notices.iter().position(|n| n.waiting.iter().any(|q| q == qn)) {
            match r {
                Response::QnRtn(Some(code)) if code != 1 => {
                    let n = self.conn.notices.remove(i);
                    tracing::warn!(uplink = %self.setup.name, cn = %n.cn, qn_rtn = code, "The platform refused a notice; nothing else changes.");
                    self.audit(AuditKind::Platform, format!("notice CN={} refused: QnRtn={code}", n.cn));
                    self.counters.notices_refused += 1;
                    self.notice_done(&n.cn);
                }
                Response::QnRtn(None) => {}
                _ => {
                    self.acked(now);
                    let n = &mut self.conn.notices[i];
                    n.waiting.retain(|q| q != qn);
                    if n.waiting.is_empty() {
                        let n = self.conn.notices.remove(i);
                        self.notice_done(&n.cn);
                    }
                }
            }
            return;
        }
        if let Some(i) = self.conn.beats.iter().position(|(q, _)| q == qn) {
            if matches!(r, Response::Ack | Response::NotificationAck) {
                self.acked(now);
                self.conn.beats.drain(..=i);
                self.conn.beat_answered = true;
            }
            return;
        }
        if let Some(i) = self.conn.live_asks.iter().position(|(q, _)| q == qn) {
            if matches!(r, Response::Ack | Response::NotificationAck) {
                self.acked(now);
            }
            self.conn.live_asks.remove(i);
            return;
        }
        tracing::debug!(uplink = %self.setup.name, %qn, ?r, "Answer for nothing in flight ignored.");
    }

    pub(super) fn acked(&mut self, now: Now) {
        self.counters.frames_acked += 1;
        self.counters.last_ack_wall_ms = Some(now.wall_ms);
    }
}
