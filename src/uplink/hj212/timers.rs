//! What happens in the session state machine (`state.rs`) as time passes: data and notices sent
//! again after `OverTime` (data dropping the link after `ReCount` attempts, notices given up),
//! heartbeats, the real-time (2011) and run-status (2021) uploads every `RtdInterval`, and the
//! HJ 212-2025 key renewal.

use super::state::{Action, Fault, Live, Now, Renewal, Session};
use crate::hj212::message;
use crate::hj212::{Cp, split};
use crate::store::audit::AuditKind;

/// How often the age of the SM4 key is checked.
const KEY_CHECK_MS: u64 = 60_000;
/// After a key request, how long before asking again.
const KEY_ASK_AGAIN_MS: u64 = 3_600_000;
/// Heartbeats remembered while unanswered.
const MAX_BEATS: usize = 16;

impl Session {
    pub(super) fn tick(&mut self, now: Now) {
        let overtime = self.set.overtime_ms;
        let recount = self.set.recount;
        let v2025 = self.is_2025();
        // Data: sent again after OverTime; after ReCount attempts the link is dropped.
        if let Some(u) = self
            .conn
            .window
            .iter()
            .find(|u| now.mono >= self.conn.data_deadline(u, overtime) && u.attempts >= recount)
        {
            let attempts = u.attempts;
            self.emit(Action::Drop(Fault::NoAck(attempts)));
            return;
        }
        let mut resend = Vec::new();
        let answered = self.conn.data_answered;
        for u in self.conn.window.iter_mut().filter(|u| now.mono >= u.sent.max(answered) + overtime) {
            u.attempts += 1;
            u.sent = now.mono;
            // A resend is backlog (RF=1 in 2025).
            if v2025 {
                u.packets.iter_mut().for_each(|p| p.rf = true);
            }
            tracing::debug!(uplink = %self.setup.name, cn = %u.cn, attempt = u.attempts, "No acknowledgement; resending.");
            resend.push(u.packets.clone());
        }
        // Notices: sent again likewise; after ReCount attempts given up, the link stays.
        let mut given_up = Vec::new();
        for n in self.conn.notices.iter_mut().filter(|n| now.mono >= n.sent + overtime) {
            if n.attempts >= recount {
                given_up.push(n.cn.clone());
                continue;
            }
            n.attempts += 1;
            n.sent = now.mono;
            resend.push(n.packets.clone());
        }
        self.conn.notices.retain(|n| !(now.mono >= n.sent + overtime && n.attempts >= recount));
        for packets in resend {
            self.emit(Action::Send(packets));
        }
        for cn in given_up {
            tracing::warn!(uplink = %self.setup.name, %cn, attempts = recount, "The platform never answered a notice; given up, the link stays.");
            self.audit(AuditKind::Platform, format!("notice CN={cn} unanswered after {recount} attempts"));
            self.counters.notices_unanswered += 1;
            self.notice_done(&cn);
        }
        let limit = self.beat_limit();
        self.conn.live_asks.retain(|(_, expires)| now.mono < *expires);
        self.heartbeat(now, limit);
        if self.out.iter().any(|a| matches!(a, Action::Drop(_))) {
            return;
        }
        if self.sends_live() {
            let every = self.set.rtd_interval_ms.max(1);
            if self.set.realtime && now.mono >= self.conn.next_realtime {
                self.conn.next_realtime = now.mono + every;
                self.emit(Action::Gather { what: Live::Pollutants, request: None });
            }
            if self.set.run_status && now.mono >= self.conn.next_run_status {
                self.conn.next_run_status = now.mono + every;
                self.emit(Action::Gather { what: Live::RunStatus, request: None });
            }
        }
        if self.setup.encrypts && now.mono >= self.conn.next_key_check {
            self.conn.next_key_check = now.mono + KEY_CHECK_MS;
            self.check_key(now);
        }
    }

    /// HJ 212-2025 heartbeats: one every period; see the module documentation for when an
    /// unanswered one drops the link.
    fn heartbeat(&mut self, now: Now, limit: u64) {
        let Some(every) = self.setup.heartbeat_ms else { return };
        if let Some((_, sent)) = self.conn.beats.front()
            && now.mono >= sent + limit
        {
            if self.conn.beat_answered {
                self.emit(Action::Drop(Fault::NoAck(self.set.recount)));
                return;
            }
            if !self.conn.beat_warned {
                self.conn.beat_warned = true;
                tracing::warn!(uplink = %self.setup.name, "The platform does not answer heartbeats (9015); dead links are found by TCP keepalive and the data acknowledgements instead.");
            }
            self.conn.beats.clear();
        }
        if now.mono >= self.conn.next_beat {
            self.conn.next_beat = now.mono + every;
            let qn = self.qn(now);
            let beat = message::upload(&self.me, &qn, "9015", true, Cp::default());
            self.counters.frames_asked += 1;
            self.send(beat);
            if self.conn.beats.len() >= MAX_BEATS {
                self.conn.beats.pop_front();
            }
            self.conn.beats.push_back((qn, now.mono));
        }
    }

    /// HJ 212-2025 §6.4.3: ask for a new key (1014 with the current key's creation time) once
    /// it is `key_request_after` old, then again every hour until one arrives.
    fn check_key(&mut self, now: Now) {
        let age = now.wall_ms - self.set.key_created_ms;
        if age < self.setup.key_request_after_ms {
            return;
        }
        if let Renewal::Asked { at } = self.renewal
            && now.mono < at + KEY_ASK_AGAIN_MS
        {
            return;
        }
        let created = self.set.key_created_ms;
        let stamp = message::format_qn(created, self.setup.offset_s);
        tracing::info!(uplink = %self.setup.name, age_days = age / 86_400_000, "Asking the platform for a new SM4 key (1014).");
        self.renewal = Renewal::Asked { at: now.mono };
        self.notify(now, "1014", Cp::single(&[("SKCreateTime", &stamp)]), true);
    }

    pub(super) fn values(
        &mut self,
        now: Now,
        what: Live,
        values: &[crate::compute::realtime::Value],
        request: Option<String>,
    ) {
        let data_time = self.stamp(self.platform_ms(now));
        let (cn, cp) = match what {
            Live::Pollutants => ("2011", message::realtime_cp_with(&data_time, values, self.content())),
            Live::RunStatus => ("2021", message::run_status_cp(&data_time, values)),
        };
        let has_data = cp.0.len() > 1;
        if has_data && !self.me.mn.is_empty() {
            let asks = self.setup.asks.realtime;
            let qn = self.qn(now);
            let p = message::upload(&self.me, &qn, cn, asks, cp);
            // An outlet with many factors does not fit one packet: split like the period uploads.
            match split(&p, |_| self.qn(now)) {
                Ok(packets) => {
                    if asks {
                        self.counters.frames_asked += packets.len() as u64;
                        let expires = now.mono + self.beat_limit();
                        self.conn
                            .live_asks
                            .extend(packets.iter().filter_map(|p| p.qn.clone()).map(|q| (q, expires)));
                    }
                    self.emit(Action::Send(packets));
                }
                Err(e) => {
                    tracing::error!(uplink = %self.setup.name, error = %e, %cn, "Cannot encode real-time data; not sent.")
                }
            }
        }
        if let Some(qn) = request {
            let rtn = if has_data { message::ExeRtn::Success } else { message::ExeRtn::NoData };
            self.send(message::exe_rtn(&self.me, &qn, rtn));
        }
    }
}
