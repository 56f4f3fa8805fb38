//! Links to the monitoring platforms: one task per configured `[[uplink]]`.
//!
//! - [`hj212`]: HJ 212 (2017 and 2025 profiles) over TCP: a pure session state machine and the
//!   thin task that does its I/O.
//! - [`http`]: JSON batches over HTTP.
//! - [`v2025`]: what the HJ 212-2025 profile adds (SM4 key ring, the logger's identity).
//!
//! Every link takes its periods from its queue in the [`crate::store::outbox`], which owns all
//! queues on a thread of its own: no link touches SQLite.

pub mod hj212;
pub mod http;
pub mod v2025;

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::watch;

pub use hj212::Link;

/// The store setting (scope `*`) that keeps the platform's time minus the gateway's, as the
/// last refused 1012 showed it: what the status page shows as the platform clock difference.
pub const PLATFORM_CLOCK_SETTING: &str = "platform_clock_diff_ms";

use crate::config::{Config, Uplink};
use crate::live::Live;
use crate::store::outbox::{Kind, Outbox, OutboxError, QueueSpec, QueueSummary};

/// Why a link is down.
#[derive(Debug, Error)]
pub enum LinkError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("platform closed the connection")]
    Closed,
    #[error("no acknowledgement after {0} attempts")]
    NoAck(u32),
    #[error("the platform refuses this link: {0}")]
    Refused(String),
    #[error("write: {0}")]
    Write(String),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("SM4 key: {0}")]
    Key(String),
}

/// What the status page shows of a link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStatus {
    pub connected: bool,
    /// Frames written (HTTP: requests made).
    pub frames_sent: u64,
    /// Frames that asked for an answer (Flag bit A; every HTTP request), and the answers.
    pub frames_asked: u64,
    pub frames_acked: u64,
    pub last_ack_ms: Option<i64>,
    /// Where the queue stands, per kind the link uploads.
    pub queue: QueueSummary,
    pub last_error: Option<String>,
    /// Periods the platform refused (HTTP 4xx, HJ 212 `QnRtn` 2 or 8) and that are not sent again.
    pub rejected: u64,
    /// Notices (2081, 1013, …) the platform refused, and those it never answered.
    pub notices_refused: u64,
    pub notices_unanswered: u64,
    /// Connections made to the platform since the link started.
    pub connections: u64,
}

/// The kinds a link uploads, in its queue.
pub fn kinds(cfg: &Uplink, has_run_status: bool) -> Vec<Kind> {
    [
        (Kind::Minute, cfg.minute),
        (Kind::Hour, cfg.hour),
        (Kind::Day, cfg.day),
        (Kind::RunTime, cfg.run_time && has_run_status),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect()
}

/// The run-status points (device, factor) of the outlet a link carries.
pub fn run_status_points(config: &Config, outlet: &str) -> Vec<(String, String)> {
    let Some(o) = config.outlet(outlet) else { return Vec::new() };
    let spec = config.outlet_spec(o);
    config
        .outlet_devices(outlet)
        .iter()
        .flat_map(|d| d.points.iter().map(move |p| (d, p)))
        .filter(|(_, p)| spec.is_run_status(&p.factor) || p.factor.ends_with("-RS"))
        .map(|(d, p)| (d.name.clone(), p.factor.clone()))
        .collect()
}

/// What a link's queue is made of. `block_minutes` is the minute interval in force.
pub fn queue_spec(cfg: &Uplink, config: &Config, live_first: bool, block_minutes: u32) -> QueueSpec {
    let run_status = run_status_points(config, &cfg.outlet);
    // A run-status sample stands for two poll intervals at most (a missed poll is not a stop).
    let poll = config
        .outlet_devices(&cfg.outlet)
        .iter()
        .filter(|d| run_status.iter().any(|(name, _)| name == &d.name))
        .map(|d| d.poll_interval)
        .max()
        .unwrap_or(std::time::Duration::from_secs(30));
    QueueSpec {
        link: cfg.name.clone(),
        outlet: cfg.outlet.clone(),
        kinds: kinds(cfg, !run_status.is_empty()),
        block_minutes,
        offset_s: config.site.utc_offset_s,
        live_first,
        normal_share: config.statistics.thresholds.normal_share,
        max_hold_ms: (2 * poll.as_millis() as i64).max(60_000),
        run_status,
        corrections: cfg.corrections,
    }
}

/// Resolves once `shutdown` turns true (the guard of `wait_for` stays inside: it is not `Send`).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Spawns one task per configured link. `started_ms` is when the process started (the
/// `RestartTime` of HJ 212's 2081: a reload is not a restart).
/// `changes`, when given, tells the HJ 212 links of parameter changes to push (CN 3020).
pub fn spawn_links(
    config: &Arc<Config>,
    outbox: &Outbox,
    live: Arc<Live>,
    shutdown: watch::Receiver<bool>,
    started_ms: i64,
    changes: Option<&tokio::sync::broadcast::Sender<crate::store::params::Changes>>,
) -> Result<tokio::task::JoinSet<()>, LinkError> {
    let mut set = tokio::task::JoinSet::new();
    for u in &config.uplinks {
        match u.transport {
            crate::config::Transport::Hj212 => {
                let mut link = Link::new(u.clone(), config.clone(), outbox.clone(), live.clone())?
                    .started_at(started_ms);
                if let Some(changes) = changes {
                    link = link.with_changes(changes.subscribe());
                }
                set.spawn(link.run(shutdown.clone()));
            }
            crate::config::Transport::Http { .. } => {
                let link = http::HttpLink::new(u.clone(), config.clone(), outbox.clone(), live.clone())?;
                set.spawn(link.run(shutdown.clone()));
            }
        }
    }
    Ok(set)
}
