//! What the session does with a packet from the platform: answers (9011–9014) are matched, never
//! answered; requests are answered per Annex C: `9011 QnRtn`, then the response (if any), then
//! `9012 ExeRtn`. Notifications (2012, 2022) get 9013. Known requests this field unit does not
//! carry out get `QnRtn=2` and an audit entry; unknown CNs get `QnRtn=8`. Part of the pure state
//! machine of `state.rs`.

use super::delivery::{Job, Step};
use super::info::{Answer, InfoRequest};
use super::state::{Action, KeyFailure, Live, Mode, Now, Renewal, Session};
use crate::hj212::message::{self, DataKind, ExeRtn, QnRtn, Request};
use crate::hj212::{Cp, Packet};
use crate::store::audit::AuditKind;
use crate::store::outbox::Kind;

impl Session {
    pub(super) fn packet(&mut self, now: Now, p: Packet) {
        // The protocol version in the Flag: another version gets QnRtn 6 (or is accepted when
        // the link is set to take both 2017 and 2025).
        if let Some(flag) = p.flag {
            let (theirs, mine) = (flag >> 2, self.me.version.flag(false, false) >> 2);
            let accepted = theirs == mine || (self.setup.accept_2017 && theirs == 1);
            if !accepted {
                tracing::warn!(uplink = %self.setup.name, cn = %p.cn, flag, "Platform frame of another protocol version refused.");
                if !message::is_response(&p.cn) {
                    let qn = self.reply_qn(now, &p);
                    self.send(message::qn_rtn(&self.me, &qn, QnRtn::FlagError));
                }
                return;
            }
        }
        if let Some(r) = message::response(&p) {
            match p.qn.as_deref() {
                Some(qn) => self.answer(now, qn, r),
                None => {
                    tracing::debug!(uplink = %self.setup.name, cn = %p.cn, "Answer without a QN ignored.")
                }
            }
            return;
        }
        let incoming = message::classify(&p, &self.me);
        let qn = self.reply_qn(now, &p);
        let request = match incoming.request {
            Ok(r) => r,
            Err(rtn) => {
                tracing::warn!(uplink = %self.setup.name, cn = %p.cn, ?rtn, "Platform request refused.");
                self.send(message::qn_rtn(&self.me, &qn, rtn));
                return;
            }
        };
        // HJ 212-2025 onboarding: nothing but the identity goes out before the platform assigns
        // the MN, so a request for data cannot be carried out yet. Refused, rather than promised
        // with QnRtn=1 and never done (found by the `uplink_session` fuzz target).
        if self.mode == Mode::Onboarding
            && matches!(request, Request::History { .. } | Request::StartRealtime | Request::StartRunStatus)
        {
            tracing::warn!(uplink = %self.setup.name, cn = %p.cn, "Platform request for data before the MN is assigned refused (QnRtn=2).");
            self.audit(
                AuditKind::Platform,
                format!("CN={} QN={qn} refused before the MN is assigned: QnRtn=2", p.cn),
            );
            return self.send(message::qn_rtn(&self.me, &qn, QnRtn::Rejected));
        }
        // A pushed key (1014 NewSK) is a secret: the audit log says a key came, not which.
        let mut cp = p.cp.clone();
        cp.0.iter_mut().flatten().filter(|(k, _)| k == "NewSK").for_each(|(_, v)| *v = "<secret>".into());
        self.audit(AuditKind::Platform, format!("CN={} QN={qn} CP={cp}", p.cn));
        self.request(now, qn, request);
    }

    /// The request's own QN when it has a valid one (the answers carry it), else a new one.
    fn reply_qn(&mut self, now: Now, p: &Packet) -> String {
        match p.qn.clone().filter(|q| q.len() == 17 && q.bytes().all(|b| b.is_ascii_digit())) {
            Some(qn) => qn,
            None => self.qn(now),
        }
    }

    fn ready(&mut self, qn: &str) {
        self.send(message::qn_rtn(&self.me, qn, QnRtn::Ready));
    }

    fn done(&mut self, qn: &str, rtn: ExeRtn) {
        self.send(message::exe_rtn(&self.me, qn, rtn));
    }

    fn save(&mut self, key: &'static str, value: impl ToString) {
        self.emit(Action::Save { key, value: value.to_string() });
    }

    fn request(&mut self, now: Now, qn: String, request: Request) {
        match request {
            Request::SetTimeout { overtime_s, recount } => {
                self.ready(&qn);
                self.set.overtime_ms = u64::from(overtime_s) * 1000;
                self.set.recount = recount;
                self.save("overtime_s", overtime_s);
                self.save("recount", recount);
                self.done(&qn, ExeRtn::Success);
            }
            Request::GetTime => {
                self.ready(&qn);
                let cp = Cp::single(&[("SystemTime", &self.stamp(self.platform_ms(now)))]);
                self.send(message::upload(&self.me, &qn, "1011", false, cp));
                self.done(&qn, ExeRtn::Success);
            }
            Request::SetTime(t) => {
                // Refused (QnRtn 2) and audited: the gateway keeps one clock, the system's, set by
                // NTP (chrony) and an RTC. Retiming only the frames would make 1011 report one
                // time and the stored samples another; setting the system clock would need
                // CAP_SYS_TIME and fight NTP. The difference the platform showed is kept, so an
                // officer sees it on the page and in the audit log.
                self.send(message::qn_rtn(&self.me, &qn, QnRtn::Rejected));
                match self.parse_stamp(&t) {
                    Some(platform_ms) => {
                        let diff = platform_ms - now.wall_ms;
                        self.emit(Action::SavePlatformClock(diff));
                        self.audit(
                            AuditKind::Clock,
                            format!("1012 refused: platform time {t}, platform minus gateway {diff} ms"),
                        );
                        if diff.abs() > 60_000 {
                            tracing::warn!(uplink = %self.setup.name, platform_minus_gateway_ms = diff, "The platform's clock differs from the gateway's by over a minute; its 1012 was refused (the gateway's clock follows NTP).");
                        } else {
                            tracing::info!(uplink = %self.setup.name, platform_minus_gateway_ms = diff, "Platform asked to set the time; refused (the gateway's clock follows NTP).");
                        }
                    }
                    None => {
                        self.audit(AuditKind::Clock, format!("1012 refused: unreadable platform time {t:?}"))
                    }
                }
            }
            Request::GetRtdInterval => {
                self.ready(&qn);
                let cp = Cp::single(&[("RtdInterval", &(self.set.rtd_interval_ms / 1000).to_string())]);
                self.send(message::upload(&self.me, &qn, "1061", false, cp));
                self.done(&qn, ExeRtn::Success);
            }
            Request::GetMinInterval => {
                self.ready(&qn);
                let cp = Cp::single(&[("MinInterval", &self.set.min_interval.to_string())]);
                self.send(message::upload(&self.me, &qn, "1063", false, cp));
                self.done(&qn, ExeRtn::Success);
            }
            Request::SetRtdInterval(s) => {
                self.ready(&qn);
                self.set.rtd_interval_ms = u64::from(s) * 1000;
                self.conn.next_realtime = now.mono + self.set.rtd_interval_ms;
                self.conn.next_run_status = now.mono + self.set.rtd_interval_ms;
                self.save("rtd_interval_s", s);
                self.done(&qn, ExeRtn::Success);
            }
            Request::SetMinInterval(m) => {
                self.ready(&qn);
                self.set.min_interval = m;
                self.save("min_interval", m);
                self.emit(Action::SetBlock(m));
                self.done(&qn, ExeRtn::Success);
            }
            Request::SetPassword(pw) => {
                self.ready(&qn);
                self.save("pw", &pw);
                // The result still goes out under the old password; everything after under the new.
                self.done(&qn, ExeRtn::Success);
                self.set.pw = pw.clone();
                self.me.pw = pw;
                self.readdress();
            }
            // C.10 / C.12: 9011, the data, 9012; and the uploads go on every RtdInterval.
            Request::StartRealtime => {
                self.ready(&qn);
                self.set.realtime = true;
                self.conn.next_realtime = now.mono + self.set.rtd_interval_ms;
                self.save("realtime", "1");
                self.emit(Action::Gather { what: Live::Pollutants, request: Some(qn) });
            }
            Request::StartRunStatus => {
                self.ready(&qn);
                self.set.run_status = true;
                self.conn.next_run_status = now.mono + self.set.rtd_interval_ms;
                self.save("run_status", "1");
                self.emit(Action::Gather { what: Live::RunStatus, request: Some(qn) });
            }
            // C.11 / C.13: notifications, answered with 9013.
            Request::StopRealtime => {
                self.set.realtime = false;
                self.save("realtime", "0");
                self.send(message::notification_ack(&self.me, &qn));
            }
            Request::StopRunStatus => {
                self.set.run_status = false;
                self.save("run_status", "0");
                self.send(message::notification_ack(&self.me, &qn));
            }
            Request::History { kind, begin, end } => {
                self.ready(&qn);
                let parse = |t: &str| self.parse_stamp(t);
                let (Some(from_ms), Some(to_ms)) = (parse(&begin), parse(&end)) else {
                    return self.done(&qn, ExeRtn::ConditionError);
                };
                // Queued behind any request still being answered: each gets its own 9012.
                let kind = queue_kind(kind);
                self.conn.jobs.push_back(Job { qn, kind, from_ms, to_ms, step: Step::Waiting });
            }
            Request::Info { pol_id, info_id, window } => {
                self.ready(&qn);
                let window = match window {
                    None => None,
                    Some((b, e)) => {
                        let parse = |t: &str| self.parse_stamp(t);
                        match (parse(&b), parse(&e)) {
                            (Some(from), Some(to)) => Some((from, to)),
                            _ => return self.done(&qn, ExeRtn::ConditionError),
                        }
                    }
                };
                self.emit(Action::GatherInfo { request: qn, info: InfoRequest { pol_id, info_id, window } });
            }
            Request::NotCarriedOut(cn) => {
                tracing::warn!(uplink = %self.setup.name, %cn, "Platform request this gateway does not carry out refused (QnRtn=2).");
                self.audit(
                    AuditKind::Platform,
                    format!("CN={cn} QN={qn} not carried out: refused with QnRtn=2"),
                );
                self.send(message::qn_rtn(&self.me, &qn, QnRtn::Rejected));
            }
            Request::SetMn { mn, logger_id } => {
                if !self.setup.onboarding || logger_id != self.setup.hardware[0] {
                    tracing::warn!(uplink = %self.setup.name, %logger_id, "MN assignment for another logger (or onboarding is off) refused.");
                    return self.send(message::qn_rtn(&self.me, &qn, QnRtn::Rejected));
                }
                self.save("mn", &mn);
                self.audit(
                    AuditKind::Platform,
                    format!("MN assigned: {} -> {mn} (logger {logger_id})", self.me.mn),
                );
                self.set.mn = mn.clone();
                self.me.mn = mn.clone();
                // The assignment answers the identity notice (1001).
                self.conn.notices.retain(|n| n.cn != "1001");
                self.readdress();
                if self.mode == Mode::Onboarding {
                    // Data may go out from now on: the live schedules start now, not when the
                    // connection came up (they were on hold, not due).
                    self.mode = Mode::Normal { look_at: now.mono };
                    self.conn.next_realtime = now.mono;
                    self.conn.next_run_status = now.mono;
                }
                tracing::info!(uplink = %self.setup.name, %mn, "Platform assigned the MN; data goes under it from now on.");
                self.ready(&qn);
                self.done(&qn, ExeRtn::Success);
            }
            Request::NewKey { created, key } => {
                self.ready(&qn);
                let created_ms = self
                    .parse_stamp17(&created)
                    .or_else(|| self.parse_stamp(&created))
                    .unwrap_or(now.wall_ms);
                if !self.setup.encrypts {
                    return self.key_rotated(now, &qn, created_ms, Err(KeyFailure::NotEncrypting));
                }
                self.emit(Action::RotateKey { request: qn, key, created_ms });
            }
        }
    }

    /// The 3020 answer: states and parameters one frame per factor with the request's QN
    /// (C.43, C.45), log lines one frame each with a QN of their own (C.41), then 9012. A
    /// refusal (an InfoId not configured) is a 9012 alone.
    pub(super) fn info(&mut self, now: Now, request: &str, answer: Answer) {
        for cp in answer.frames {
            self.send(message::upload(&self.me, request, "3020", false, cp));
        }
        for cp in answer.logs {
            let qn = self.qn(now);
            self.send(message::upload(&self.me, &qn, "3020", false, cp));
        }
        self.done(request, answer.rtn);
    }

    /// Pushes changed field information (C.40, C.42, C.44), each frame a notice outside the data
    /// window (the A bit per the link's notice setting). Not while onboarding (no MN yet).
    pub(super) fn push_info(&mut self, now: Now, cps: Vec<Cp>) {
        if !self.sends_live() {
            tracing::warn!(uplink = %self.setup.name, frames = cps.len(), "Field information not pushed: the link has no MN yet.");
            return;
        }
        let asks = self.setup.asks.notices;
        for cp in cps {
            self.notify(now, "3020", cp, asks);
        }
    }

    pub(super) fn key_rotated(
        &mut self,
        now: Now,
        request: &str,
        created_ms: i64,
        result: Result<(), KeyFailure>,
    ) {
        match result {
            Ok(()) => {
                // From here on every frame, resends included, goes out under the new key.
                self.renewal = Renewal::Idle;
                self.set.key_created_ms = created_ms;
                self.save("sk_created_ms", created_ms);
                self.save("sk_rotated_at_ms", now.wall_ms);
                self.audit(
                    AuditKind::Key,
                    format!("SM4 key rotated; new key created {}", self.stamp17(created_ms)),
                );
                tracing::info!(uplink = %self.setup.name, "SM4 key rotated by the platform.");
                self.done(request, ExeRtn::Success);
            }
            Err(KeyFailure::NotEncrypting) => {
                tracing::warn!(uplink = %self.setup.name, "New SM4 key refused: this link does not encrypt.");
                self.done(request, ExeRtn::ConditionError);
            }
            Err(KeyFailure::Invalid) => {
                tracing::warn!(uplink = %self.setup.name, "New SM4 key refused: it is not a 16-character key.");
                self.done(request, ExeRtn::ConditionError);
            }
            Err(KeyFailure::Store(e)) => {
                tracing::error!(uplink = %self.setup.name, error = %e, "Cannot store the new SM4 key; the old one stays.");
                self.done(request, ExeRtn::Failed);
            }
        }
    }
}

/// The queue kind a history request asks for.
fn queue_kind(kind: DataKind) -> Kind {
    match kind {
        DataKind::Minute => Kind::Minute,
        DataKind::Hour => Kind::Hour,
        DataKind::Day => Kind::Day,
        DataKind::RunTime => Kind::RunTime,
    }
}
