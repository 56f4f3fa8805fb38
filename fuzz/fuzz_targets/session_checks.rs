//! The promises the `uplink_session` target checks, step by step: what a platform packet, a
//! tick or an outbox answer makes the session do (`Harness::handle`), and each action before
//! the driver carries it out (`Harness::execute`): the send window, answers never answered,
//! 9012 only after `QnRtn=1`, periods acknowledged to the outbox only after the platform
//! acknowledged them, every packet sendable and sent under the identity in force, deadlines
//! that keep time, pushed keys kept out of the audit log.

use std::collections::{HashSet, VecDeque};

use cems_gateway::hj212::Packet;
use cems_gateway::hj212::crypt::Key;
use cems_gateway::hj212::decode;
use cems_gateway::hj212::frame::{MAX_CP, MAX_SEGMENT, Version, decode_with};
use cems_gateway::hj212::message::{self, Response};
use cems_gateway::store::outbox::Item;
use cems_gateway::uplink::hj212::state::{Action, Event, Fault as Drop, KeyFailure, kind_cn};
use cems_gateway::uplink::v2025::must_encrypt;

use super::input::format_time14;
use super::{DATA_CNS, Harness, MN_CNS, Next, Period, Upload, tracing};

impl Harness<'_> {
    /// Hands one event to the session and checks what it says against what the event was.
    pub(super) fn handle(&mut self, event: Event) -> Vec<Action> {
        let before = self.s.next_deadline();
        let (mut due, mut must_drop) = (Vec::new(), false);
        let packet = match &event {
            Event::Packet(p) => {
                (due, must_drop) = self.expect_answer(p);
                Some(p.clone())
            }
            _ => None,
        };
        let mut items: VecDeque<(bool, Item)> = match &event {
            Event::Queued(items) => items.iter().map(|i| (true, i.clone())).collect(),
            Event::HistoryItems(items) => items.iter().map(|i| (false, i.clone())).collect(),
            _ => VecDeque::new(),
        };
        let tick = event == Event::Tick;
        if tracing() {
            eprintln!("{:?} <- {event:?}", self.now);
        }
        let actions = self.s.handle(self.now, event);
        if tracing() {
            actions.iter().for_each(|a| eprintln!("    -> {a:?}"));
        }
        let dropped = actions.iter().any(|a| matches!(a, Action::Drop(_)));
        if tick && before.is_some_and(|d| self.now.mono < d) {
            assert!(actions.is_empty(), "a tick before the deadline {before:?} changes nothing: {actions:?}");
        }
        for period in due {
            assert!(
                actions.contains(&Action::Delivered { kind: period.0, start_ms: period.1 }),
                "the answer that completes the upload of {period:?} acknowledges it to the outbox: {actions:?}"
            );
        }
        let refused = actions.iter().any(|a| matches!(a, Action::Drop(Drop::Refused(_))));
        assert_eq!(
            refused, must_drop,
            "QnRtn 3-6 on a data upload, and only that, drops the link: {actions:?}"
        );
        if actions.iter().any(|a| matches!(a, Action::Drop(Drop::NoAck(_)))) {
            let data = self.uploads.iter().any(Upload::in_window);
            assert!(
                tick && (data || self.version == Version::V2025),
                "only data uploads (and 2025 heartbeats) left unanswered drop the link, on a tick"
            );
        }
        let is_1000 = packet.as_ref().is_some_and(|p| p.cn == "1000");
        if !tick
            && !dropped
            && !is_1000
            && let Some(after) = self.s.next_deadline()
        {
            let floor = before.map_or(self.now.mono, |b| b.min(self.now.mono));
            assert!(after >= floor, "an event sets no deadline in the past: {after} < {floor}");
        }
        for a in &actions {
            match a {
                Action::Send(packets) => {
                    self.check_reply(packet.as_ref(), packets);
                    self.note_upload(packets, &mut items);
                }
                Action::Audit { detail, .. } if detail.contains("not sent") && !items.is_empty() => {
                    let (queued, item) = items.pop_front().expect("checked");
                    let stamp = format_time14(item.start_ms, self.offset_s);
                    assert!(
                        detail.contains(&format!("CN={} DataTime={stamp}", kind_cn(item.kind))),
                        "{detail}"
                    );
                    self.uploads.push(Upload {
                        period: queued.then_some((item.kind, item.start_ms)),
                        qns: Vec::new(),
                        asks: false,
                        acked: HashSet::new(),
                        refused: false,
                        failed: true,
                        written: false,
                        delivered: false,
                    });
                }
                _ => {}
            }
        }
        assert!(dropped || items.is_empty(), "every period handed over is sent or reported: {items:?} left");
        actions
    }

    /// What the session must do with a platform packet that answers one of its data uploads:
    /// the periods to acknowledge to the outbox, and whether the link must drop.
    fn expect_answer(&mut self, p: &Packet) -> (Vec<Period>, bool) {
        let mine = self.version.flag(false, false) >> 2;
        let accepted = p.flag.is_none_or(|f| f >> 2 == mine || (self.accept_2017 && f >> 2 == 1));
        let (Some(r), Some(qn), true) = (message::response(p), p.qn.as_deref(), accepted) else {
            return (Vec::new(), false);
        };
        let Some(u) = self.uploads.iter_mut().find(|u| u.in_window() && u.qns.iter().any(|q| q == qn)) else {
            return (Vec::new(), false);
        };
        if u.acked.contains(qn) {
            return (Vec::new(), false);
        }
        match r {
            Response::Ack | Response::NotificationAck => {
                u.acked.insert(qn.to_string());
                self.awaiting.retain(|q| q != qn);
                if !u.in_window() {
                    self.acked.extend(u.qns.iter().cloned());
                }
            }
            Response::QnRtn(Some(2 | 8)) => u.refused = true,
            Response::QnRtn(Some(3..=6)) => return (Vec::new(), true),
            _ => return (Vec::new(), false),
        }
        let done = !u.in_window();
        (u.period.filter(|_| done).into_iter().collect(), false)
    }

    /// Answers are never answered; a request's replies carry its QN.
    fn check_reply(&self, to: Option<&Packet>, packets: &[Packet]) {
        for p in packets {
            let reply = matches!(p.cn.as_str(), "9011" | "9013");
            match to {
                Some(q) if message::is_response(&q.cn) => assert!(
                    !reply && p.cn != "9014",
                    "a platform's {} is never answered, yet {} went out",
                    q.cn,
                    p.cn
                ),
                Some(q) => {
                    let valid =
                        q.qn.as_deref()
                            .is_some_and(|n| n.len() == 17 && n.bytes().all(|b| b.is_ascii_digit()));
                    if reply && valid {
                        assert_eq!(p.qn, q.qn, "a reply carries the request's QN");
                    }
                }
                None => assert!(!reply && p.cn != "9014", "{} goes out only in reply to a request", p.cn),
            }
        }
    }

    /// A data upload not seen before: the next period handed over, sent as its CN and DataTime.
    fn note_upload(&mut self, packets: &[Packet], items: &mut VecDeque<(bool, Item)>) {
        let Some(first) = packets.first() else { return };
        let qn = first.qn.clone().unwrap_or_default();
        if !DATA_CNS.contains(&first.cn.as_str()) || self.data_qns.contains(&qn) {
            return;
        }
        let (queued, item) = items.pop_front().expect("a new data upload only for a period handed over");
        assert_eq!(first.cn, kind_cn(item.kind), "a period goes out as its kind's CN");
        let stamp = format_time14(item.start_ms, self.offset_s);
        assert_eq!(first.cp.get("DataTime"), Some(stamp.as_str()), "a period goes out with its DataTime");
        let qns: Vec<String> = packets.iter().filter_map(|p| p.qn.clone()).collect();
        self.data_qns.extend(qns.iter().cloned());
        self.uploads.push(Upload {
            period: queued.then_some((item.kind, item.start_ms)),
            asks: first.wants_ack(),
            qns,
            acked: HashSet::new(),
            refused: false,
            failed: false,
            written: false,
            delivered: false,
        });
    }

    /// Carries out one action as the driver does, checking it first.
    pub(super) fn execute(&mut self, action: Action) -> Next {
        match action {
            Action::Send(packets) => {
                for p in &packets {
                    self.check_sent(p);
                }
                let qns: Vec<&String> = packets.iter().filter_map(|p| p.qn.as_ref()).collect();
                if let Some(u) = self.uploads.iter_mut().find(|u| u.qns.iter().any(|q| qns.contains(&q))) {
                    u.written = true;
                }
                Next::Done
            }
            Action::Fetch(n) => {
                assert!(
                    n >= 1 && n + self.s.in_flight() <= self.window,
                    "Fetch({n}) beyond the window's room"
                );
                Next::Event(Event::Queued(self.outbox.fetch(n, &mut self.inp)))
            }
            Action::LoadHistory { kind, from_ms, to_ms } => {
                assert!(from_ms <= to_ms, "a history range runs forward: {from_ms}..{to_ms}");
                Next::Event(Event::HistoryPeriods(self.outbox.history(kind, from_ms, to_ms, &mut self.inp)))
            }
            Action::LoadPeriods { kind, starts } => {
                let room = self.window - self.s.in_flight();
                assert!(
                    !starts.is_empty() && starts.len() <= room,
                    "LoadPeriods of {} for a room of {room}",
                    starts.len()
                );
                Next::Event(Event::HistoryItems(self.outbox.load(kind, &starts, &mut self.inp)))
            }
            Action::Delivered { kind, start_ms } => {
                self.check_delivered((kind, start_ms));
                Next::Done
            }
            Action::Gather { what, request } => {
                Next::Event(Event::Values { what, values: self.inp.values(what), request })
            }
            Action::GatherInfo { request, info } => {
                let data_time = format_time14(self.now.wall_ms, self.offset_s);
                Next::Event(Event::Info { request, answer: self.inp.info(&info, &data_time) })
            }
            Action::RotateKey { request, key, created_ms } => {
                assert!(self.encrypts, "only a link that encrypts rotates its key");
                let result = match Key::from_text(&key) {
                    None => Err(KeyFailure::Invalid),
                    Some(_) if self.inp.below(4) == 0 => Err(KeyFailure::Store("disk full".into())),
                    Some(new) => {
                        self.keys = vec![new, self.keys[0].clone()];
                        self.decoder.set_keys(self.link_keys());
                        Ok(())
                    }
                };
                Next::Event(Event::KeyRotated { request, created_ms, result })
            }
            Action::SetBlock(minutes) => {
                assert!(
                    [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30].contains(&minutes),
                    "minute interval {minutes}"
                );
                self.outbox.set_block(minutes);
                Next::Done
            }
            Action::Save { key, value } => {
                if matches!(key, "overtime_s" | "recount" | "rtd_interval_s" | "min_interval") {
                    assert!(value.parse::<u64>().is_ok(), "{key}={value:?} is read back as a number");
                }
                self.check_no_secret(&value);
                Next::Done
            }
            Action::Audit { detail, .. } => {
                self.check_no_secret(&detail);
                Next::Done
            }
            Action::SavePlatformClock(_) => Next::Done,
            Action::Drop(_) => Next::Dropped,
        }
    }

    /// A packet the session asks to write: it encodes (encrypted where the link encrypts it),
    /// within the standard's sizes, and the platform decodes it as the same packet.
    fn check_sent(&mut self, p: &Packet) {
        let frame = match p.encode() {
            Ok(frame) => frame,
            Err(e) => panic!("every packet the session sends encodes: {e} in {p:?}"),
        };
        let cp = format!("CP=&&{}&&", p.cp).chars().count();
        assert!(cp <= MAX_CP, "a CP field of {cp} characters, over {MAX_CP}");
        let segment = p.segment().chars().count();
        assert!(segment <= MAX_SEGMENT, "a data segment of {segment} characters, over {MAX_SEGMENT}");
        let got = if self.encrypts && must_encrypt(&p.cn) {
            let frame = p.encode_encrypted(&self.keys[0], self.rule).expect("an encodable packet encrypts");
            decode_with(&frame, &self.keys[..1])
        } else {
            decode(&frame)
        };
        assert_eq!(got.as_ref(), Ok(p), "the platform reads what the session sent: {frame}");
        let qn = p.qn.clone().expect("encoded, so it has a QN");
        let me = self.s.identity();
        assert!(!(p.mn.is_empty() && MN_CNS.contains(&p.cn.as_str())), "no {} without an MN", p.cn);
        assert_eq!(p.mn, me.mn, "everything goes out under the MN in force, resends too: {} {qn}", p.cn);
        let answers_1072 =
            self.request.as_ref().is_some_and(|(cn, q)| cn == "1072" && q.as_ref() == Some(&qn));
        assert!(
            p.pw == me.pw || answers_1072,
            "everything but the answers to a 1072 goes out under the password in force: {} {qn}",
            p.cn
        );
        if DATA_CNS.contains(&p.cn.as_str()) {
            assert!(
                !self.acked.contains(&qn),
                "an upload acknowledged whole is never sent again: {} {qn}",
                p.cn
            );
        }
        match p.cn.as_str() {
            "9011" if p.cp.get("QnRtn") == Some("1") => {
                if self.request.as_ref().is_some_and(|(cn, _)| cn == "2011" || cn == "2021") {
                    self.live_promises.push((qn.clone(), false));
                }
                self.open.push(qn.clone());
            }
            "2011" | "2021" => self.live_promises.iter_mut().for_each(|(_, sent)| *sent = true),
            "9012" => {
                if let Some(at) = self.live_promises.iter().position(|(q, _)| *q == qn) {
                    let (_, sent) = self.live_promises.remove(at);
                    assert!(
                        sent || p.cp.get("ExeRtn") != Some("1"),
                        "a 2011/2021 request is answered ExeRtn=1 only once its data went out ({qn})"
                    );
                }
                let at = self.open.iter().position(|q| *q == qn);
                let at = at.unwrap_or_else(|| {
                    panic!("a 9012 ({qn}) answers a request that got QnRtn=1 and no 9012 yet")
                });
                self.open.remove(at);
            }
            _ => {}
        }
        if p.wants_ack() && !self.awaiting.contains(&qn) {
            self.awaiting.push_back(qn.clone());
            if self.awaiting.len() > 64 {
                self.awaiting.pop_front();
            }
        }
        self.recent.push_back(qn);
        if self.recent.len() > 32 {
            self.recent.pop_front();
        }
    }

    /// A period leaves the queue only after the platform acknowledged every packet of its
    /// upload (9014), or refused it for good (QnRtn 2 or 8), or once written without Flag A, or
    /// when it cannot be encoded at all (reported); only once, and only one handed out.
    fn check_delivered(&mut self, period: Period) {
        let u = self.uploads.iter_mut().find(|u| u.period == Some(period) && !u.delivered);
        let u =
            u.unwrap_or_else(|| panic!("Delivered for {period:?}, which was not sent on this connection"));
        let acked = u.asks && !u.qns.is_empty() && u.qns.iter().all(|q| u.acked.contains(q));
        assert!(
            u.failed || acked || (u.asks && u.refused) || (!u.asks && u.written),
            "{period:?} acknowledged to the outbox before the platform acknowledged it: {u:?}"
        );
        u.delivered = true;
        assert!(
            self.outbox.delivered(period),
            "{period:?} delivered but not handed out (or delivered twice)"
        );
    }

    fn check_no_secret(&self, text: &str) {
        for k in &self.secrets {
            assert!(!text.contains(k.as_str()), "a pushed key reaches the audit log or a setting: {text}");
        }
    }
}
