//! Supervision: progress heartbeats of every long-running part, the systemd notifications
//! (`READY=1`, `STATUS=`, `WATCHDOG=1`, `STOPPING=1`) and the signals that stop or reload.
//!
//! The watchdog is fed only while every part makes progress: each bus task, the store writer and
//! the statistics worker touch their [`Beat`] as they work, and the supervision loop pings
//! systemd only when none of them has been silent longer than its bound. A wedged bus task or a
//! stuck SQLite commit therefore stops the pings and systemd restarts the service. Without
//! systemd (no `NOTIFY_SOCKET`) the notifications are no-ops and everything else is the same.
//!
//! Fault injection for tests: `CEMS_GATEWAY_FAULT=stall-bus:NAME` wedges the task of bus `NAME`
//! after its first poll (it stops working but stays alive), which must stop the watchdog pings.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// When this process started its first pipeline: on the wall clock (Unix ms) and on the
/// monotonic one. A configuration reload changes neither.
fn started() -> (i64, std::time::Instant) {
    static STARTED: std::sync::OnceLock<(i64, std::time::Instant)> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| (crate::model::now_ms(), std::time::Instant::now()))
}

/// The wall-clock start (Unix ms): HJ 212's `RestartTime` (2081).
pub fn process_started_ms() -> i64 {
    started().0
}

/// The monotonic start: the status page's uptime, which a step of the wall clock does not move.
pub fn process_started() -> std::time::Instant {
    started().1
}

/// The environment variable of the fault-injection hook.
pub const FAULT_ENV: &str = "CEMS_GATEWAY_FAULT";

/// Whether the fault hook asks to wedge the bus `name`.
pub fn stall_requested(bus: &str) -> bool {
    std::env::var(FAULT_ENV).is_ok_and(|v| v.strip_prefix("stall-bus:") == Some(bus))
}

/// A part's heartbeat: the last time it made progress (monotonic).
#[derive(Debug, Clone)]
pub struct Beat(Arc<AtomicI64>);

impl Beat {
    pub fn touch(&self) {
        self.0.store(crate::clock::mono_ms(), Ordering::Relaxed);
    }
}

struct Part {
    name: String,
    last: Arc<AtomicI64>,
    max_silence: Duration,
}

/// The registry of heartbeats.
#[derive(Default)]
pub struct Progress {
    parts: Mutex<Vec<Part>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").finish_non_exhaustive()
    }
}

impl Progress {
    /// Registers a part that must make progress at least every `max_silence`.
    pub fn register(&self, name: impl Into<String>, max_silence: Duration) -> Beat {
        let last = Arc::new(AtomicI64::new(crate::clock::mono_ms()));
        self.parts.lock().unwrap_or_else(|e| e.into_inner()).push(Part {
            name: name.into(),
            last: last.clone(),
            max_silence,
        });
        Beat(last)
    }

    /// The parts silent for longer than their bound, with how long.
    pub fn stalled(&self) -> Vec<(String, Duration)> {
        let now = crate::clock::mono_ms();
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|p| {
                let silent = Duration::from_millis((now - p.last.load(Ordering::Relaxed)).max(0) as u64);
                (silent > p.max_silence).then(|| (p.name.clone(), silent))
            })
            .collect()
    }
}

/// Sends notifications to systemd, if it is listening.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    /// Interval of watchdog pings: half of `WATCHDOG_USEC`, if the watchdog is on.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier { watchdog: sd_notify::watchdog_enabled().map(|d| d / 2) }
    }

    fn send(&self, state: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(state) {
            tracing::warn!(error = %e, "Cannot notify the service manager.");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping: flushing the buffer")]);
    }

    pub fn reloading(&self) {
        self.send(&[NotifyState::Status("reloading the configuration")]);
    }
}

/// What the process was asked to do by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM (systemd's stop) or SIGINT (Ctrl-C): stop gracefully.
    Stop,
    /// SIGHUP (`systemctl reload`): re-read the configuration.
    Reload,
}

/// Signal handlers, installed once.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals").finish_non_exhaustive()
    }
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => { tracing::info!("SIGTERM received; stopping."); Signal::Stop }
            _ = self.int.recv() => { tracing::info!("SIGINT received; stopping."); Signal::Stop }
            _ = self.hup.recv() => { tracing::info!("SIGHUP received; reloading the configuration."); Signal::Reload }
        }
    }
}
