//! The writer thread: the one owner of sample writes. It drains the bus tasks' channel, commits
//! the samples in batches with the settled minutes' seals in the same transactions, and
//! enforces retention.
//!
//! Commit policy. A commit costs whole pages of flash whatever it holds (the WAL gets each page
//! it touches, and the checkpoint writes them again), and what is not committed is lost on a
//! power cut. So a batch is committed once it fills about a database page ([`PAGE_ROWS`]
//! samples) and a second has passed since the last commit, and at the latest
//! `flush_interval` after the last commit: at 10,000 points a commit a second, at a plant's
//! 45 points every 5 s one every `flush_interval` (10 s by default). Commits that fail (disk
//! full, I/O error) are retried with backoff while the samples wait in memory, within a cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::seal::{Handover, Sealer};
use super::{Retention, Store};
use crate::lifecycle::Beat;
use crate::live::Live;
use crate::model::{Sample, now_ms};

/// How long the writer sleeps between takes from its channel: one wake-up per slice rather
/// than one per poll (the channel holds far more than a slice's polls).
const DRAIN_SLICE: Duration = Duration::from_millis(100);
/// About a 4 KiB page of samples (28 bytes each): a batch this large is worth a commit.
pub const PAGE_ROWS: usize = 150;
/// Commits of a page's worth are at least this far apart.
const MIN_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of the writer thread.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// The longest samples wait in memory before their commit.
    pub flush_interval: Duration,
    /// A batch this large is committed without waiting for the interval.
    pub max_batch: usize,
    pub retention: Retention,
    pub retention_every: Duration,
    /// How long after a minute ends its samples may still arrive: the minute is sealed then.
    pub settle: Duration,
}

/// Handle to the writer thread; dropping every sender ends it after a final flush.
#[derive(Debug)]
pub struct Writer {
    thread: std::thread::JoinHandle<Store>,
}

impl Writer {
    /// Waits for the thread to drain its channel and commit the last batch.
    pub fn join(self) -> Option<Store> {
        self.thread.join().ok()
    }
}

/// Runs the store on a dedicated thread (SQLite calls block; they must not stall the runtime).
/// Settled minutes are sealed and handed to the statistics worker through `handover`.
pub fn spawn_writer(
    store: Store,
    rx: mpsc::Receiver<Vec<Sample>>,
    opts: WriterOptions,
    live: Arc<Live>,
    beat: Beat,
    handover: Arc<Handover>,
) -> Writer {
    let thread = std::thread::Builder::new()
        .name("store".into())
        .spawn(move || {
            let mut w = WriterLoop {
                store,
                opts,
                live,
                handover,
                sealer: None,
                batch: Vec::new(),
                failing_since: None,
                last_error_log: None,
                last_seal_error: None,
            };
            w.run(rx, &beat);
            w.store
        })
        .expect("spawning the store thread");
    Writer { thread }
}

struct WriterLoop {
    store: Store,
    opts: WriterOptions,
    live: Arc<Live>,
    handover: Arc<Handover>,
    /// Started on first use (it reads the chain's state; a failure is retried).
    sealer: Option<Sealer>,
    batch: Vec<Sample>,
    failing_since: Option<Instant>,
    last_error_log: Option<Instant>,
    last_seal_error: Option<Instant>,
}

impl WriterLoop {
    fn run(&mut self, mut rx: mpsc::Receiver<Vec<Sample>>, beat: &Beat) {
        let opts = self.opts;
        let mut last_retention = Instant::now() - opts.retention_every;
        // While commits fail, samples are kept in memory up to this many, the channel keeps
        // being drained so that polling goes on, and the oldest are dropped past it.
        let hard_cap = opts.max_batch * 20;
        let early = opts.flush_interval.min(MIN_COMMIT_INTERVAL);
        let mut backoff = Duration::ZERO;
        let mut last_commit = Instant::now();
        loop {
            let deadline = last_commit + opts.flush_interval.max(backoff);
            let limit = if backoff.is_zero() { opts.max_batch } else { hard_cap + opts.max_batch };
            let mut closed = false;
            loop {
                loop {
                    match rx.try_recv() {
                        Ok(samples) => self.batch.extend(samples),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                    if self.batch.len() >= limit {
                        break;
                    }
                }
                let now = Instant::now();
                let page_due =
                    backoff.is_zero() && self.batch.len() >= PAGE_ROWS && now >= last_commit + early;
                if closed || self.batch.len() >= limit || page_due || now >= deadline {
                    break;
                }
                std::thread::sleep((deadline - now).min(DRAIN_SLICE));
            }
            last_commit = Instant::now();
            backoff = if self.flush(self.sealer.is_some()) {
                Duration::ZERO
            } else {
                (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
            };
            beat.touch();
            if last_retention.elapsed() >= opts.retention_every {
                last_retention = Instant::now();
                if let Err(e) = self.store.enforce_retention(opts.retention, now_ms()) {
                    tracing::error!(error = %e, "Retention failed.");
                }
            }
            if closed {
                self.flush(false);
                if !self.batch.is_empty() {
                    tracing::error!(lost = self.batch.len(), "Samples could not be committed at shutdown.");
                }
                // Nothing more will come: every minute is sealed now, not at the next start.
                self.seal(true);
                self.handover.close();
                let _ = self.store.checkpoint();
                return;
            }
        }
    }

    /// Commits the batch, with the settled minutes' seals when `seal_with` (else they are sealed
    /// on their own). Returns whether the samples are committed.
    fn flush(&mut self, seal_with: bool) -> bool {
        if self.batch.is_empty() {
            self.seal(false);
            return true;
        }
        let sealer = self.sealer.as_mut().filter(|_| seal_with).map(|s| (s, now_ms()));
        match self.store.commit(&self.batch, sealer) {
            Ok(n) => {
                self.live.add_stored(n as u64);
                self.batch.clear();
                if self.failing_since.take().is_some() {
                    tracing::info!("Samples are committed again.");
                }
                if !seal_with {
                    self.seal(false);
                }
                true
            }
            Err(e) => {
                self.failing_since.get_or_insert_with(Instant::now);
                if self.last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    self.last_error_log = Some(Instant::now());
                    tracing::error!(error = %e, pending = self.batch.len(), "Cannot commit samples; keeping them in memory and retrying.");
                }
                let hard_cap = self.opts.max_batch * 20;
                if self.batch.len() > hard_cap {
                    let lost = self.batch.len() - hard_cap;
                    self.batch.drain(..lost);
                    tracing::error!(
                        lost,
                        "Samples dropped: the buffer cannot be written and memory is full."
                    );
                }
                false
            }
        }
    }

    /// Seals the settled minutes in a transaction of their own (or, with `finish`, every
    /// minute: at shutdown).
    fn seal(&mut self, finish: bool) {
        let result = match self.sealer.as_mut() {
            Some(s) => Ok(s),
            None => Sealer::start(&mut self.store, self.opts.settle, self.handover.clone())
                .map(|s| self.sealer.insert(s)),
        }
        .and_then(|s| if finish { s.finish(&mut self.store) } else { s.tick(&mut self.store, now_ms()) });
        if let Err(e) = result
            && self.last_seal_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.last_seal_error = Some(Instant::now());
            tracing::error!(error = %e, "Cannot seal settled minutes of samples into the audit log; will retry.");
        }
    }
}
