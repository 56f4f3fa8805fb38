//! The I/O of one HJ 212 connection: a reader task decodes the platform's frames; one loop feeds
//! them, the deadlines and the shutdown to the state machine (`state.rs`) and carries out the
//! actions it returns: frames written with a deadline, outbox calls, current values read. What
//! an action yields (the outbox's answer, the values) goes straight back in as the next event,
//! before the actions that were already waiting.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

use super::state::{Action, Event, KeyFailure, Live, Now, Session};
use super::{Link, info};
use crate::compute::realtime::{self, Profile};
use crate::config::Protocol212;
use crate::hj212::crypt::{Key, LengthRule};
use crate::hj212::message;
use crate::hj212::{Decoded, Decoder, Packet};
use crate::live::{Current, DeviceHealth, ParamState};
use crate::model::now_ms;
use crate::store::outbox::Queue;
use crate::store::params::Changes;
use crate::uplink::{LinkError, PLATFORM_CLOCK_SETTING, run_status_points, stopped, v2025};

/// Longest interval between two publications of the link's state.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Decoded frames waiting for the session loop.
const INBOX: usize = 64;

/// Runs one connection until it fails, the state machine drops it, or `shutdown`.
pub(super) async fn converse(
    link: &mut Link,
    state: &mut Session,
    queue: &Queue,
    stream: TcpStream,
    changes: &mut Option<broadcast::Receiver<Changes>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Decoded>(INBOX);
    let mut keys = link.keys_tx.subscribe();
    let name = link.cfg.name.clone();
    let reader = tokio::spawn(async move {
        let mut decoder = Decoder::default();
        decoder.set_keys(keys.borrow_and_update().clone());
        let mut buf = vec![0u8; 4096];
        loop {
            // A rotated key applies from the next bytes read on.
            if keys.has_changed().unwrap_or(false) {
                decoder.set_keys(keys.borrow_and_update().clone());
            }
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            decoder.push(&buf[..n]);
            while let Some(d) = decoder.next_frame() {
                if tx.send(d).await.is_err() {
                    return;
                }
            }
            // A frame's worth of bytes without one frame: not an HJ 212 platform; the session
            // ends (reconnect with backoff) rather than reading garbage forever.
            if decoder.junk() > crate::hj212::frame::MAX_FRAME {
                tracing::warn!(uplink = %name, "The platform sent a frame's worth of bytes without one HJ 212 frame; dropping the connection.");
                return;
            }
        }
    });
    let result = run(link, state, queue, &mut wr, &mut rx, changes, shutdown).await;
    reader.abort();
    result
}

/// The next parameter changes, or never when the link has no keeper to hear from.
async fn next_changes(
    changes: &mut Option<broadcast::Receiver<Changes>>,
) -> Result<Changes, broadcast::error::RecvError> {
    match changes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn run(
    link: &mut Link,
    state: &mut Session,
    queue: &Queue,
    wr: &mut OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Decoded>,
    changes: &mut Option<broadcast::Receiver<Changes>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let mut work: VecDeque<Action> = state.handle(link.now(), Event::Connected).into();
    let mut published = Instant::now();
    let mut watched = Instant::now();
    loop {
        if watched.elapsed() >= PUBLISH_EVERY {
            watched = Instant::now();
            if let Some(cps) = link.state_changes() {
                work.extend(state.handle(link.now(), Event::Push(cps)));
            }
        }
        while let Some(action) = work.pop_front() {
            if let Some(event) = link.execute(action, state, queue, wr).await? {
                let more = state.handle(link.now(), event);
                for a in more.into_iter().rev() {
                    work.push_front(a);
                }
            }
        }
        if published.elapsed() >= PUBLISH_EVERY {
            published = Instant::now();
            link.publish(queue, state).await;
        }
        let deadline = state.next_deadline().map(|ms| link.epoch + Duration::from_millis(ms));
        let publish_at = published + PUBLISH_EVERY;
        let event = tokio::select! {
            msg = rx.recv() => match msg {
                None => return Err(LinkError::Closed),
                Some(Decoded::Skipped { error, bytes }) => {
                    tracing::warn!(uplink = %link.cfg.name, %error, bytes, "Garbage from the platform skipped.");
                    continue;
                }
                Some(Decoded::Packet(p)) => Event::Packet(p),
            },
            batch = next_changes(changes) => match batch {
                Ok(batch) => {
                    let offset = link.config.site.utc_offset_s;
                    let stamp = |ms: i64| message::format_time14(ms, offset);
                    let cps = info::pushes(&link.config, &link.cfg.outlet, &batch, &stamp);
                    if cps.is_empty() {
                        continue;
                    }
                    Event::Push(cps)
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(uplink = %link.cfg.name, batches = n, "Parameter changes not pushed (too many at once); the platform can ask for them (3020).");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    *changes = None;
                    continue;
                }
            },
            _ = sleep_until(deadline.unwrap_or(publish_at).min(publish_at)) => Event::Tick,
            _ = stopped(shutdown) => return Ok(()),
        };
        work.extend(state.handle(link.now(), event));
    }
}

impl Link {
    /// The time given to the state machine.
    fn now(&self) -> Now {
        Now { mono: self.epoch.elapsed().as_millis() as u64, wall_ms: now_ms() }
    }

    /// Carries out one action; what it yields is the state machine's next event.
    async fn execute(
        &mut self,
        action: Action,
        state: &Session,
        queue: &Queue,
        wr: &mut OwnedWriteHalf,
    ) -> Result<Option<Event>, LinkError> {
        let platform_now = now_ms();
        let name = self.cfg.name.clone();
        Ok(match action {
            Action::Send(packets) => {
                let overtime = Duration::from_millis(state.settings().overtime_ms);
                self.write(wr, &packets, overtime).await?;
                None
            }
            Action::Fetch(n) => Some(Event::Queued(queue.next(n, platform_now, false).await?)),
            Action::LoadHistory { kind, from_ms, to_ms } => {
                Some(Event::HistoryPeriods(queue.history(kind, from_ms, to_ms).await?))
            }
            Action::LoadPeriods { kind, starts } => {
                Some(Event::HistoryItems(queue.load(kind, starts, platform_now).await?))
            }
            Action::Delivered { kind, start_ms } => {
                queue.ack(kind, start_ms).await?;
                None
            }
            Action::Gather { what, request } => {
                Some(Event::Values { what, values: self.values(what), request })
            }
            Action::GatherInfo { request, info } => {
                // EndTime is inclusive to its second.
                let (logs, more) = match info::log_window(&self.config, &self.cfg.outlet, &info) {
                    Some((from, to)) => self.outbox.log_entries(from, to + 1000, info::MAX_LOG_LINES).await?,
                    None => (Vec::new(), 0),
                };
                let (current, params, devices) =
                    (self.live.current(), self.live.parameters(), self.live.devices());
                let src = self.sources(&current, &params, &devices);
                let offset = self.config.site.utc_offset_s;
                let stamp = |ms: i64| message::format_time14(ms, offset);
                let answer = info::answer(&src, &info, &logs, more, &stamp, platform_now);
                Some(Event::Info { request, answer })
            }
            Action::RotateKey { request, key, created_ms } => {
                let result = self.rotate(&key, created_ms).await;
                Some(Event::KeyRotated { request, created_ms, result })
            }
            Action::SetBlock(minutes) => {
                queue.set_block(minutes).await?;
                None
            }
            Action::Save { key, value } => {
                self.outbox.save(&name, key, &value).await?;
                None
            }
            Action::SavePlatformClock(diff_ms) => {
                self.outbox.save("*", PLATFORM_CLOCK_SETTING, &diff_ms.to_string()).await?;
                None
            }
            Action::Audit { kind, detail } => {
                self.outbox.audit(kind, &name, &detail).await?;
                None
            }
            Action::Drop(fault) => return Err(fault.into()),
        })
    }

    /// Writes packets as one burst, within `limit`: encoded (and encrypted where the 2025
    /// profile says so) with the key in force now, so that a resend after a rotation goes out
    /// under the new key.
    async fn write(
        &mut self,
        wr: &mut OwnedWriteHalf,
        packets: &[Packet],
        limit: Duration,
    ) -> Result<(), LinkError> {
        let mut bytes = String::new();
        let mut n = 0;
        for p in packets {
            match self.encode(p) {
                Ok(frame) => {
                    bytes.push_str(&frame);
                    n += 1;
                }
                Err(e) => {
                    tracing::error!(uplink = %self.cfg.name, error = %e, cn = %p.cn, "Cannot encode a frame; not sent.")
                }
            }
        }
        match timeout(limit, wr.write_all(bytes.as_bytes())).await {
            Ok(Ok(())) => {
                self.status.frames_sent += n;
                Ok(())
            }
            Ok(Err(e)) => Err(LinkError::Write(e.to_string())),
            Err(_) => Err(LinkError::Write("timed out".into())),
        }
    }

    fn encode(&self, p: &Packet) -> Result<String, crate::hj212::EncodeError> {
        match &self.ring {
            Some(ring) if v2025::must_encrypt(&p.cn) && (p.cn != "3020" || self.cfg.v2025.encrypt_3020) => {
                p.encode_encrypted(&ring.current, self.cfg.v2025.length_rule.unwrap_or(LengthRule::Plain))
            }
            _ => p.encode(),
        }
    }

    fn sources<'a>(
        &'a self,
        current: &'a BTreeMap<(String, String), Current>,
        params: &'a BTreeMap<(String, String, String), ParamState>,
        devices: &'a BTreeMap<String, DeviceHealth>,
    ) -> info::Sources<'a> {
        info::Sources {
            config: &self.config,
            outlet: &self.cfg.outlet,
            current,
            params,
            devices,
            stalled: self.live.stalled(),
        }
    }

    /// The factors whose working state (from their data flags) changed since last looked at,
    /// as pushes (C.42). The first look only notes the states.
    fn state_changes(&mut self) -> Option<Vec<crate::hj212::Cp>> {
        let (current, params, devices) = (self.live.current(), self.live.parameters(), self.live.devices());
        let now = info::flag_states(&self.sources(&current, &params, &devices));
        let before = self.states.replace(now.clone())?;
        let changed: BTreeMap<String, u8> = now
            .iter()
            .filter(|(pol, s)| before.get(*pol) != Some(*s))
            .filter_map(|(pol, s)| s.map(|s| (pol.clone(), s)))
            .collect();
        if changed.is_empty() {
            return None;
        }
        let data_time = message::format_time14(now_ms(), self.config.site.utc_offset_s);
        Some(info::state_pushes(&changed, &data_time))
    }

    /// Current values of the link's outlet: pollutant and flue values as 2011 carries them
    /// ([`realtime::values`]), or the facility run states.
    fn values(&self, what: Live) -> Vec<realtime::Value> {
        let current = self.live.current();
        match what {
            Live::RunStatus => run_status_points(&self.config, &self.cfg.outlet)
                .iter()
                .filter_map(|(d, f)| {
                    let c = current.get(&(d.clone(), f.clone()))?;
                    Some(realtime::Value {
                        factor: f.clone(),
                        value: c.value,
                        zs: None,
                        flag: c.flag,
                        unconvertible: false,
                    })
                })
                .collect(),
            Live::Pollutants => {
                let Some(outlet) = self.config.outlet(&self.cfg.outlet) else { return Vec::new() };
                let inputs = crate::live::inputs(&current, &self.config.outlet_devices(&self.cfg.outlet));
                let profile = if self.cfg.protocol == Protocol212::V2025 {
                    Profile::DryStandard
                } else {
                    Profile::Measured
                };
                realtime::values(&self.config.outlet_spec(outlet), &inputs, profile)
            }
        }
    }

    /// Stores a pushed key (on a blocking thread: a file written and synced) and makes it the
    /// one in force, for frames written and read from now on.
    async fn rotate(&mut self, text: &str, created_ms: i64) -> Result<(), KeyFailure> {
        let Some(mut ring) = self.ring.clone() else { return Err(KeyFailure::NotEncrypting) };
        let key = Key::from_text(text).ok_or(KeyFailure::Invalid)?;
        let (ring, result) = tokio::task::spawn_blocking(move || {
            let r = ring.rotate(key, created_ms);
            (ring, r)
        })
        .await
        .map_err(|e| KeyFailure::Store(e.to_string()))?;
        result.map_err(|e| KeyFailure::Store(e.to_string()))?;
        // The reader still accepts the old key for frames already under way.
        self.keys_tx.send_replace(ring.keys());
        self.ring = Some(ring);
        Ok(())
    }
}
