//! HJ 212 links (the 2017 profile, and the 2025 profile where configured): one task per
//! `[[uplink]]` that connects with capped backoff and runs a session per connection.
//!
//! - `state.rs`, with `delivery.rs`, `timers.rs` and `requests.rs`: the session as a pure state
//!   machine (what is sent, when, what an answer means); unit-tested exchange by exchange in
//!   `tests.rs`.
//! - `session.rs`: the thin part that does the I/O: socket reads and writes with deadlines,
//!   timers, and the outbox calls the state machine asks for.
//! - `info.rs`: field information (3020): pushes of changed parameters and states, answers to
//!   requests, pure.
//!
//! Periods come from the link's queue in the outbox (cursors in the store, records from the
//! `record` table, run time from the samples); a period leaves the queue only on its 9014 when
//! it asked for one, or once written when it did not (`ack = false`).

mod delivery;
pub mod info;
mod requests;
mod session;
pub mod state;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};
use tokio::time::{sleep, timeout};

use self::state::{Asks, Session, Settings, Setup};
use super::{LinkError, LinkStatus, queue_spec, stopped, v2025};
use crate::config::{Config, Protocol212, Uplink};
use crate::hj212::crypt::Key;
use crate::hj212::frame::Version;
use crate::live::Live;
use crate::model::now_ms;
use crate::store::outbox::{Outbox, Queue};
use crate::store::params::Changes;

/// TCP keepalive on platform sockets: first probe after this much silence, then every
/// [`KEEPALIVE_INTERVAL`]. With [`USER_TIMEOUT`] the connection is given up once nothing came
/// back for that long (data written and not acknowledged by the peer's TCP, or probes
/// unanswered): a half-open 4G link is found in about 40 s (measured 40–45 s by the netns test),
/// within a minute. The probes cost a few bytes every 5 s on an otherwise silent link only.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 5;
const USER_TIMEOUT: Duration = Duration::from_secs(40);

/// One link's task.
pub struct Link {
    cfg: Uplink,
    config: Arc<Config>,
    outbox: Outbox,
    live: Arc<Live>,
    /// When the process started: the `RestartTime` of 2081.
    started_ms: i64,
    /// HJ 212-2025: the SM4 keys when the link encrypts, and where the reader finds them.
    ring: Option<v2025::KeyRing>,
    keys_tx: watch::Sender<Vec<Key>>,
    status: LinkStatus,
    /// Zero of the monotonic clock the state machine is given.
    epoch: tokio::time::Instant,
    /// Parameter changes to push (3020), from the parameter keeper.
    changes: Option<broadcast::Receiver<Changes>>,
    /// The working state last seen per factor (from the data flags), to push its changes.
    states: Option<BTreeMap<String, Option<u8>>>,
}

impl Link {
    pub fn new(cfg: Uplink, config: Arc<Config>, outbox: Outbox, live: Arc<Live>) -> Result<Link, LinkError> {
        Ok(Link {
            cfg,
            config,
            outbox,
            live,
            started_ms: crate::lifecycle::process_started_ms(),
            ring: None,
            keys_tx: watch::channel(Vec::new()).0,
            status: LinkStatus::default(),
            epoch: tokio::time::Instant::now(),
            changes: None,
            states: None,
        })
    }

    /// Pushes the parameter changes it hears of (CN 3020), for its outlet's devices.
    pub fn with_changes(mut self, changes: broadcast::Receiver<Changes>) -> Link {
        self.changes = Some(changes);
        self
    }

    /// Sets the process start told to the platform (2081).
    pub fn started_at(mut self, ms: i64) -> Link {
        self.started_ms = ms;
        self
    }

    fn is_2025(&self) -> bool {
        self.cfg.protocol == Protocol212::V2025
    }

    /// Runs until `shutdown`, reconnecting with capped exponential backoff.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (mut state, queue) = match self.prepare().await {
            Ok(ready) => ready,
            Err(e) => {
                tracing::error!(uplink = %self.cfg.name, error = %e, "Platform link cannot start; its data stays queued.");
                self.status.last_error = Some(e.to_string());
                self.live.set_link(&self.cfg.name, self.status.clone());
                return;
            }
        };
        let mut backoff = Duration::from_secs(1);
        // Held apart from the link so that the session loop can wait on it beside the link.
        let mut changes = self.changes.take();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let overtime = Duration::from_millis(state.settings().overtime_ms);
            let result = match timeout(
                overtime.max(Duration::from_secs(3)),
                TcpStream::connect(&self.cfg.address),
            )
            .await
            {
                Ok(Ok(stream)) => {
                    backoff = Duration::from_secs(1);
                    tune(&stream);
                    tracing::info!(uplink = %self.cfg.name, address = %self.cfg.address, "Platform connected.");
                    self.status.connected = true;
                    self.status.connections += 1;
                    self.publish(&queue, &state).await;
                    let r =
                        session::converse(&mut self, &mut state, &queue, stream, &mut changes, &mut shutdown)
                            .await;
                    self.status.connected = false;
                    state.disconnected();
                    // What was in flight goes out again on the next connection.
                    let _ = queue.rewind().await;
                    if let Err(e) = queue.flush().await {
                        tracing::error!(uplink = %self.cfg.name, error = %e, "Cannot write the link's cursors.");
                    }
                    r
                }
                Ok(Err(e)) => Err(LinkError::Connect(e.to_string())),
                Err(_) => Err(LinkError::Connect("timed out".into())),
            };
            if let Err(e) = &result {
                tracing::warn!(uplink = %self.cfg.name, error = %e, retry_in = ?backoff, "Platform link down; data stays queued.");
                self.status.last_error = Some(e.to_string());
            }
            self.publish(&queue, &state).await;
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = sleep(backoff) => {}
                _ = stopped(&mut shutdown) => return,
            }
            backoff = (backoff * 2).min(self.cfg.reconnect_max);
        }
    }

    /// Loads what the platforms set earlier (settings survive restarts), the SM4 key, and opens
    /// the link's queue.
    async fn prepare(&mut self) -> Result<(Session, Queue), LinkError> {
        let cfg = &self.cfg;
        let mine = self.outbox.settings(&cfg.name).await?;
        let num = |k: &str| mine.get(k).and_then(|v| v.parse::<u64>().ok());
        let onboarding = self.is_2025() && cfg.v2025.onboarding;
        let mut key_created_ms = 0;
        if self.is_2025()
            && cfg.v2025.encrypt
            && let Some(file) = cfg.v2025.key_file.clone()
        {
            let state_dir =
                self.config.storage.path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
            let created = mine.get("sk_created_ms").and_then(|v| v.parse().ok());
            let ring = v2025::KeyRing::load(&file, &state_dir, &cfg.name, created)
                .map_err(|e| LinkError::Key(e.to_string()))?;
            key_created_ms = ring.created_ms;
            self.keys_tx.send_replace(ring.keys());
            self.ring = Some(ring);
        }
        let restart_told = mine.get("restart_notified_ms").is_some_and(|v| *v == self.started_ms.to_string());
        let settings = Settings {
            pw: mine.get("pw").cloned().unwrap_or_else(|| cfg.pw.clone()),
            mn: match mine.get("mn") {
                Some(mn) if onboarding => mn.clone(),
                _ => cfg.mn.clone(),
            },
            overtime_ms: num("overtime_s").map_or(cfg.overtime.as_millis() as u64, |s| s * 1000),
            recount: num("recount").map_or(cfg.recount, |n| n as u32),
            rtd_interval_ms: num("rtd_interval_s").map_or(cfg.rtd_interval.as_millis() as u64, |s| s * 1000),
            min_interval: num("min_interval").map_or(cfg.min_interval, |m| m as u32),
            realtime: mine.get("realtime").map_or(cfg.realtime, |v| v == "1"),
            run_status: mine.get("run_status").map_or(cfg.run_status, |v| v == "1"),
            key_created_ms,
            restart_ms: (!restart_told).then_some(self.started_ms),
        };
        let version = if self.is_2025() { Version::V2025 } else { Version::V2017 };
        let setup = Setup {
            name: cfg.name.clone(),
            st: format!("{:02}", cfg.st),
            version,
            window: cfg.window.max(1) as usize,
            asks: Asks {
                data: cfg.ack,
                run_time: cfg.ack_run_time,
                realtime: cfg.ack_realtime,
                notices: cfg.ack_notices,
            },
            accept_2017: cfg.v2025.accept_2017,
            onboarding,
            hardware: if onboarding {
                v2025::hardware_ids(cfg.v2025.logger_id.as_deref())
            } else {
                Default::default()
            },
            heartbeat_ms: self.is_2025().then_some(cfg.heartbeat.as_millis() as u64),
            encrypts: self.ring.is_some(),
            key_request_after_ms: cfg.v2025.key_request_after.as_millis() as i64,
            offset_s: self.config.site.utc_offset_s,
            content: self
                .is_2025()
                .then(|| (cfg.v2025.operating_parameters.clone(), cfg.v2025.unconvertible_value)),
        };
        let spec = queue_spec(cfg, &self.config, self.is_2025(), settings.min_interval);
        let queue = self.outbox.open(spec, now_ms()).await?;
        Ok((Session::new(setup, settings), queue))
    }

    /// Publishes the link's state for display.
    async fn publish(&mut self, queue: &Queue, state: &Session) {
        let c = state.counters();
        self.status.frames_asked = c.frames_asked;
        self.status.frames_acked = c.frames_acked;
        self.status.last_ack_ms = c.last_ack_wall_ms;
        self.status.rejected = c.rejected;
        self.status.notices_refused = c.notices_refused;
        self.status.notices_unanswered = c.notices_unanswered;
        if let Ok(summary) = queue.summary(now_ms()).await {
            self.status.queue = summary;
        }
        self.live.set_link(&self.cfg.name, self.status.clone());
    }
}

/// TCP keepalive and `TCP_USER_TIMEOUT` on a platform socket, and no Nagle delay: a half-open
/// link (a 4G modem that lost its carrier) is found within a minute. A setting the system
/// refuses is logged and the link goes on without it.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
        tracing::warn!(error = %e, "Cannot set TCP keepalive on the platform socket.");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = sock.set_tcp_user_timeout(Some(USER_TIMEOUT)) {
        tracing::warn!(error = %e, "Cannot set TCP_USER_TIMEOUT on the platform socket.");
    }
}
