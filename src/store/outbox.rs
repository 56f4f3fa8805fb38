//! The outbox: the one owner of every platform link's queue. It runs on its own thread with its
//! own SQLite connection and answers requests by oneshot through a cloneable [`Outbox`] handle,
//! so that no SQLite call is ever made on the async runtime.
//!
//! Per link (a [`Queue`] handle) it keeps the cursor of each [`Kind`], the periods acknowledged
//! ahead of it, what is handed out and not yet acknowledged, and answers: the next periods to
//! send with their content, the periods of a history request, the backlog and the oldest unsent
//! period of each kind (for the status page). It also holds the links' settings (what a
//! platform set) and their audit entries, and reads the audit log for the platforms' log
//! requests. The queue logic itself is in `queue.rs`.
//!
//! Acknowledgements are fire and forget (they are applied in the order sent); cursors are
//! written at most [`CURSOR_FLUSH`] after the acknowledgement, at once when the outbox has
//! nothing else to do, and on [`Queue::flush`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::audit::AuditKind;
use super::params::LogEntry;
use super::queue::LinkQueue;
use super::{Store, StoreError};
use crate::compute::{Level, Record};

pub use super::queue::{FIRST_CURSOR_BACK_MS, SETTLE_MS};

/// Longest time an acknowledged cursor waits before it is written.
pub const CURSOR_FLUSH: Duration = Duration::from_secs(1);
/// Written at once when no request came for this long.
const IDLE_FLUSH: Duration = Duration::from_millis(50);
/// Requests waiting for the outbox thread; senders wait when it is full.
const CHANNEL: usize = 256;

/// What a queue holds: periods of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Minute records, in blocks of the link's minute interval (HJ 212 2051).
    Minute,
    /// Hour records (2061).
    Hour,
    /// Day records (2031).
    Day,
    /// A day of facility run time, from the run-status samples (2041).
    RunTime,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Minute, Kind::Hour, Kind::Day, Kind::RunTime];

    /// The record level the kind is made of (run time is made of samples).
    pub fn level(self) -> Option<Level> {
        match self {
            Kind::Minute => Some(Level::Minute),
            Kind::Hour => Some(Level::Hour),
            Kind::Day => Some(Level::Day),
            Kind::RunTime => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Minute => "minute",
            Kind::Hour => "hour",
            Kind::Day => "day",
            Kind::RunTime => "run time",
        }
    }

    /// The `kind` column of the cursor table.
    pub(super) fn code(self) -> u8 {
        match self {
            Kind::Minute => 0,
            Kind::Hour => 1,
            Kind::Day => 2,
            Kind::RunTime => 3,
        }
    }
}

/// What a link's queue is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// The link's name: its cursors and settings are kept under it.
    pub link: String,
    pub outlet: String,
    /// The kinds the link uploads.
    pub kinds: Vec<Kind>,
    /// Minutes per minute period (HJ 212 `MinInterval`).
    pub block_minutes: u32,
    /// Local time minus UTC, seconds: periods are aligned to local time.
    pub offset_s: i64,
    /// HJ 212-2025: the newest complete period goes first, ahead of a backlog.
    pub live_first: bool,
    /// Share of normal minutes a minute block needs to be normal.
    pub normal_share: f64,
    /// The outlet's run-status points (device, factor) for run time.
    pub run_status: Vec<(String, String)>,
    /// Longest time one run-status sample stands for.
    pub max_hold_ms: i64,
    /// Recomputed periods the platform already has are sent again (see `queue/corrections.rs`).
    pub corrections: bool,
}

/// One period to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: Kind,
    /// Period start, Unix ms.
    pub start_ms: i64,
    /// HJ 212-2025: the newest complete period, sent ahead of a backlog.
    pub live: bool,
    /// Older than the newest complete period (HJ 212-2025 `RF=1`).
    pub backlog: bool,
    pub payload: Payload,
}

/// What a period carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The records of the period, one per factor.
    Records(Vec<Record>),
    /// Hours run per run-status point (its factor, e.g. `SB1-RS`).
    RunTime(Vec<(String, f64)>),
}

/// Where one kind of a link's queue stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSummary {
    pub kind: Kind,
    /// Start of the newest period the platform acknowledged in order (none yet: `None`).
    pub acked: Option<i64>,
    /// Periods waiting.
    pub backlog: u64,
    /// Start of the oldest period waiting.
    pub oldest_unsent: Option<i64>,
}

/// Where a link's queue stands, per kind it uploads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSummary {
    pub kinds: Vec<KindSummary>,
}

impl QueueSummary {
    pub fn get(&self, kind: Kind) -> Option<&KindSummary> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// Periods of `kind` waiting (0 for a kind the link does not upload).
    pub fn backlog(&self, kind: Kind) -> u64 {
        self.get(kind).map_or(0, |k| k.backlog)
    }

    /// The oldest period waiting, whatever its kind.
    pub fn oldest_unsent(&self) -> Option<i64> {
        self.kinds.iter().filter_map(|k| k.oldest_unsent).min()
    }
}

#[derive(Debug, Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the outbox has stopped")]
    Stopped,
    #[error("no queue is open for link {0}")]
    NoQueue(String),
}

type Reply<T> = oneshot::Sender<Result<T, OutboxError>>;

enum Job {
    Open(QueueSpec, i64, Reply<()>),
    Next { link: String, n: usize, now_ms: i64, one_kind: bool, reply: Reply<Vec<Item>> },
    Ack { link: String, kind: Kind, start: i64 },
    Rewind(String),
    History { link: String, kind: Kind, from: i64, to: i64, reply: Reply<Vec<i64>> },
    Load { link: String, kind: Kind, starts: Vec<i64>, now_ms: i64, reply: Reply<Vec<Item>> },
    Summary { link: String, now_ms: i64, reply: Reply<QueueSummary> },
    SetBlock { link: String, minutes: u32 },
    Flush(Reply<()>),
    Settings { scope: String, reply: Reply<BTreeMap<String, String>> },
    Save { scope: String, key: String, value: String, reply: Reply<()> },
    Audit { kind: AuditKind, subject: String, detail: String, reply: Reply<()> },
    Log { from: i64, to: i64, limit: usize, reply: Reply<(Vec<LogEntry>, u64)> },
}

/// Handle to the outbox thread. Clones share it; the thread ends (after a last flush) when
/// every clone is gone.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Job>,
}

/// The outbox thread, joined at shutdown.
#[derive(Debug)]
pub struct OutboxThread(std::thread::JoinHandle<()>);

impl OutboxThread {
    /// Waits until the thread wrote its last cursors and ended.
    pub fn join(self) {
        let _ = self.0.join();
    }
}

/// One link's queue, through the outbox.
#[derive(Debug, Clone)]
pub struct Queue {
    outbox: Outbox,
    link: String,
}

impl Outbox {
    /// Runs the outbox on its own thread over `store` (a connection of its own).
    pub fn spawn(store: Store) -> (Outbox, OutboxThread) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let thread = std::thread::Builder::new()
            .name("outbox".into())
            .spawn(move || serve(store, rx))
            .expect("spawning the outbox thread");
        (Outbox { tx }, OutboxThread(thread))
    }

    async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, OutboxError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(job(reply)).await.map_err(|_| OutboxError::Stopped)?;
        answer.await.map_err(|_| OutboxError::Stopped)?
    }

    /// Opens (or reopens, with a new spec) the queue of `spec.link`.
    pub async fn open(&self, spec: QueueSpec, now_ms: i64) -> Result<Queue, OutboxError> {
        let link = spec.link.clone();
        self.ask(|r| Job::Open(spec, now_ms, r)).await?;
        Ok(Queue { outbox: self.clone(), link })
    }

    /// Every setting of `scope` (a link's name, or `*` for the gateway's).
    pub async fn settings(&self, scope: &str) -> Result<BTreeMap<String, String>, OutboxError> {
        self.ask(|reply| Job::Settings { scope: scope.into(), reply }).await
    }

    pub async fn save(&self, scope: &str, key: &str, value: &str) -> Result<(), OutboxError> {
        self.ask(|reply| Job::Save { scope: scope.into(), key: key.into(), value: value.into(), reply }).await
    }

    /// The audit log's entries written in `[from, to)` (Unix ms) but record periods, at most
    /// `limit`, and how many more there were: the platforms' log requests (3020).
    pub async fn log_entries(
        &self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<(Vec<LogEntry>, u64), OutboxError> {
        self.ask(|reply| Job::Log { from, to, limit, reply }).await
    }

    /// Appends an audit entry.
    pub async fn audit(&self, kind: AuditKind, subject: &str, detail: &str) -> Result<(), OutboxError> {
        self.ask(|reply| Job::Audit { kind, subject: subject.into(), detail: detail.into(), reply }).await
    }
}

impl Queue {
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Up to `n` periods to send next (only of one kind when `one_kind`), at platform time
    /// `now_ms`. They count as handed out until acknowledged or [`Queue::rewind`].
    pub async fn next(&self, n: usize, now_ms: i64, one_kind: bool) -> Result<Vec<Item>, OutboxError> {
        let link = self.link.clone();
        self.outbox.ask(|reply| Job::Next { link, n, now_ms, one_kind, reply }).await
    }

    /// The platform acknowledged this period.
    pub async fn ack(&self, kind: Kind, start: i64) -> Result<(), OutboxError> {
        let job = Job::Ack { link: self.link.clone(), kind, start };
        self.outbox.tx.send(job).await.map_err(|_| OutboxError::Stopped)
    }

    /// What was handed out and not acknowledged goes out again.
    pub async fn rewind(&self) -> Result<(), OutboxError> {
        self.outbox.tx.send(Job::Rewind(self.link.clone())).await.map_err(|_| OutboxError::Stopped)
    }

    /// The periods of `kind` with data in `[from, to]` (Unix ms), oldest first.
    pub async fn history(&self, kind: Kind, from: i64, to: i64) -> Result<Vec<i64>, OutboxError> {
        let link = self.link.clone();
        self.outbox.ask(|reply| Job::History { link, kind, from, to, reply }).await
    }

    /// The content of the given periods of `kind` (not handed out: history answers).
    pub async fn load(&self, kind: Kind, starts: Vec<i64>, now_ms: i64) -> Result<Vec<Item>, OutboxError> {
        let link = self.link.clone();
        self.outbox.ask(|reply| Job::Load { link, kind, starts, now_ms, reply }).await
    }

    pub async fn summary(&self, now_ms: i64) -> Result<QueueSummary, OutboxError> {
        let link = self.link.clone();
        self.outbox.ask(|reply| Job::Summary { link, now_ms, reply }).await
    }

    /// The platform changed the minute interval.
    pub async fn set_block(&self, minutes: u32) -> Result<(), OutboxError> {
        let job = Job::SetBlock { link: self.link.clone(), minutes };
        self.outbox.tx.send(job).await.map_err(|_| OutboxError::Stopped)
    }

    /// Writes every acknowledged cursor now.
    pub async fn flush(&self) -> Result<(), OutboxError> {
        self.outbox.ask(Job::Flush).await
    }
}

/// The thread: requests in order, cursors written when due.
fn serve(mut store: Store, mut rx: mpsc::Receiver<Job>) {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("outbox thread runtime");
    let mut queues: HashMap<String, LinkQueue> = HashMap::new();
    let mut flushed = Instant::now();
    loop {
        let dirty = queues.values().any(LinkQueue::is_dirty);
        let wait = if dirty { IDLE_FLUSH } else { Duration::from_secs(3600) };
        match super::recv_timeout(&rt, &mut rx, wait) {
            super::Recv::Got(job) => handle(&mut store, &mut queues, job),
            super::Recv::Timeout => {
                flush_all(&mut store, &mut queues);
                flushed = Instant::now();
            }
            super::Recv::Closed => {
                flush_all(&mut store, &mut queues);
                return;
            }
        }
        if flushed.elapsed() >= CURSOR_FLUSH {
            flush_all(&mut store, &mut queues);
            flushed = Instant::now();
        }
    }
}

fn flush_all(store: &mut Store, queues: &mut HashMap<String, LinkQueue>) {
    for q in queues.values_mut() {
        if let Err(e) = q.flush(store) {
            tracing::error!(uplink = %q.spec.link, error = %e, "Cannot write the link's cursors; acknowledged periods may be sent again.");
        }
    }
}

fn handle(store: &mut Store, queues: &mut HashMap<String, LinkQueue>, job: Job) {
    fn with<T>(
        queues: &mut HashMap<String, LinkQueue>,
        link: &str,
        f: impl FnOnce(&mut LinkQueue) -> Result<T, StoreError>,
    ) -> Result<T, OutboxError> {
        let q = queues.get_mut(link).ok_or_else(|| OutboxError::NoQueue(link.to_string()))?;
        Ok(f(q)?)
    }
    match job {
        Job::Open(spec, now_ms, reply) => {
            let link = spec.link.clone();
            let result = match queues.get_mut(&link) {
                Some(q) => {
                    q.spec = spec;
                    q.rewind();
                    Ok(())
                }
                None => LinkQueue::open(store, spec, now_ms).map(|q| {
                    queues.insert(link, q);
                }),
            };
            let _ = reply.send(result.map_err(OutboxError::from));
        }
        Job::Next { link, n, now_ms, one_kind, reply } => {
            let _ = reply.send(with(queues, &link, |q| q.next(store, n, now_ms, one_kind)));
        }
        Job::Ack { link, kind, start } => {
            if let Some(q) = queues.get_mut(&link) {
                q.ack(kind, start);
            }
        }
        Job::Rewind(link) => {
            if let Some(q) = queues.get_mut(&link) {
                q.rewind();
            }
        }
        Job::History { link, kind, from, to, reply } => {
            let _ = reply.send(with(queues, &link, |q| q.history(store, kind, from, to)));
        }
        Job::Load { link, kind, starts, now_ms, reply } => {
            let _ = reply.send(with(queues, &link, |q| q.load(store, kind, &starts, now_ms)));
        }
        Job::Summary { link, now_ms, reply } => {
            let _ = reply.send(with(queues, &link, |q| q.summary(store, now_ms)));
        }
        Job::SetBlock { link, minutes } => {
            if let Some(q) = queues.get_mut(&link) {
                q.spec.block_minutes = minutes;
            }
        }
        Job::Flush(reply) => {
            let mut result = Ok(());
            for q in queues.values_mut() {
                if let Err(e) = q.flush(store) {
                    result = Err(e.into());
                }
            }
            let _ = reply.send(result);
        }
        Job::Settings { scope, reply } => {
            let _ = reply.send(store.settings(&scope).map_err(OutboxError::from));
        }
        Job::Save { scope, key, value, reply } => {
            let _ = reply.send(store.set_setting(&scope, &key, &value).map_err(OutboxError::from));
        }
        Job::Audit { kind, subject, detail, reply } => {
            let _ = reply.send(store.audit(kind, &subject, &detail).map(|_| ()).map_err(OutboxError::from));
        }
        Job::Log { from, to, limit, reply } => {
            let _ = reply.send(store.log_entries(from, to, limit).map_err(OutboxError::from));
        }
    }
}
