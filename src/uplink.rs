//! Links to the monitoring platforms over HJ 212-2017: one task per configured `[[uplink]]`.
//!
//! Minute, hour and day records of the link's outlet are queued per link: a durable cursor per
//! kind (in the store) says which period the platform acknowledged last; a period leaves the
//! queue only on the platform's 9014 with the same QN. Unanswered uploads are resent after
//! `OverTime`, and after `ReCount` attempts the link is dropped and reconnected later; order is
//! kept. Real-time (2011) data is sent live only. Platform requests are answered per Annex C:
//! 9011 QnRtn, then the response, then 9012 ExeRtn; backfill requests are answered from the
//! store period by period with new QNs.
//!
//! A link new to the store starts its queue one day back; older data is sent on the platform's
//! backfill request. Store calls here are index lookups of a few rows, made directly from the
//! task.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::compute::stats::{Acc, Member};
use crate::compute::{Level, Record};
use crate::config::{Config, Protocol212, Uplink};
use crate::hj212::crypt::Key;
use crate::hj212::frame::Version;
use crate::hj212::message::{self, Content2025, DataKind, ExeRtn, Identity, QnRtn, Request};
use crate::hj212::{Cp, Decoded, Decoder, EncodeError, Packet, split};
use crate::live::Live;
use crate::model::now_ms;
use crate::store::audit::AuditKind;
use crate::store::{Store, StoreError};

pub mod http;
pub mod v2025;

/// A fresh link's queue starts this far back.
pub const FIRST_CURSOR_BACK_MS: i64 = 24 * 3600 * 1000;
/// A minute block is sent only this long after it ends (the statistics worker writes minute
/// records a few seconds after each minute).
const MINUTE_SETTLE_MS: i64 = 70_000;
/// Longest time an acknowledged cursor waits before it is written to the store.
const CURSOR_FLUSH: Duration = Duration::from_secs(1);
/// Longest interval between two publications of the link's state from a busy session.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// How often the queue is looked at when nothing else happens.
const QUEUE_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("platform closed the connection")]
    Closed,
    #[error("no acknowledgement after {0} attempts")]
    NoAck(u32),
    #[error("write: {0}")]
    Write(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("SM4 key: {0}")]
    Key(String),
}

/// What the status page shows of a link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStatus {
    pub connected: bool,
    pub frames_sent: u64,
    pub frames_acked: u64,
    pub last_ack_ms: Option<i64>,
    /// Periods waiting to be sent, per kind: minute, hour, day.
    pub backlog: [u64; 3],
    pub last_error: Option<String>,
    /// Periods the platform refused (HTTP 4xx) and that are not sent again.
    pub rejected: u64,
}

fn kind_code(kind: DataKind) -> u8 {
    match kind {
        DataKind::Minute => 0,
        DataKind::Hour => 1,
        DataKind::Day => 2,
    }
}

/// Whether a link uploads records of this kind.
fn sends(cfg: &Uplink, kind: DataKind) -> bool {
    match kind {
        DataKind::Minute => cfg.minute,
        DataKind::Hour => cfg.hour,
        DataKind::Day => cfg.day,
    }
}

fn level_of(kind: DataKind) -> Level {
    match kind {
        DataKind::Minute => Level::Minute,
        DataKind::Hour => Level::Hour,
        DataKind::Day => Level::Day,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Queue {
        kind: DataKind,
        start_ms: i64,
        /// Sent as new data ahead of a backlog (2025): acknowledged out of order.
        live: bool,
    },
    Backfill,
    /// The 2081 restart notice: sent again on the next connection until acknowledged.
    Restart,
}

#[derive(Debug)]
struct Upload {
    /// QNs not yet acknowledged, and all packets of this upload (resent together, encoded
    /// again: after a key rotation a resend goes out under the new key).
    waiting: Vec<String>,
    packets: Vec<Packet>,
    source: Source,
    sent_at: Instant,
    attempts: u32,
}

/// Local-time formatting of Unix milliseconds.
fn local(ms: i64, offset_s: i64) -> time::PrimitiveDateTime {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000) + offset_s)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let t = t + time::Duration::milliseconds(ms.rem_euclid(1000));
    time::PrimitiveDateTime::new(t.date(), t.time())
}

fn stamp14(ms: i64, offset_s: i64) -> String {
    let t = local(ms, offset_s);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse14(s: &str, offset_s: i64) -> Option<i64> {
    message::parse_time14(s, offset_s)
}

/// One link's task.
pub struct Link {
    cfg: Uplink,
    config: Arc<Config>,
    store: Arc<Mutex<Store>>,
    live: Arc<Live>,
    me: Identity,
    offset_s: i64,
    clock_offset_ms: i64,
    last_qn_ms: i64,
    overtime: Duration,
    recount: u32,
    rtd_interval: Duration,
    min_interval: u32,
    realtime_on: bool,
    restart_ms: i64,
    restart_sent: bool,
    backfill: VecDeque<(DataKind, i64)>,
    backfill_request: Option<String>,
    status: LinkStatus,
    /// Acknowledged cursors not yet written to the store, per kind, and when they last were.
    acked: [Option<i64>; 3],
    acked_dirty: bool,
    acked_flushed: Instant,
    /// 2025 heartbeat (9015) awaiting its 9013: QN and time sent.
    heartbeat: Option<(String, Instant)>,
    published: Instant,
    /// HJ 212-2025: the SM4 keys when the link encrypts, and where the reader finds them.
    ring: Option<v2025::KeyRing>,
    keys_tx: watch::Sender<Vec<Key>>,
    /// HJ 212-2025: periods acknowledged as live ahead of the backlog, skipped when the queue
    /// reaches them (kind code, start).
    ahead: BTreeSet<(u8, i64)>,
    /// HJ 212-2025: when a new key was last asked for (CN 1014).
    key_asked: Option<Instant>,
}

impl Link {
    pub fn new(
        cfg: Uplink,
        config: Arc<Config>,
        store: Arc<Mutex<Store>>,
        live: Arc<Live>,
    ) -> Result<Link, LinkError> {
        let version = match cfg.protocol {
            Protocol212::V2017 => Version::V2017,
            Protocol212::V2025 => Version::V2025,
        };
        let me = Identity { st: format!("{:02}", cfg.st), pw: cfg.pw.clone(), mn: cfg.mn.clone(), version };
        let mut link = Link {
            offset_s: config.site.utc_offset_s,
            overtime: cfg.overtime,
            recount: cfg.recount,
            rtd_interval: cfg.rtd_interval,
            min_interval: cfg.min_interval,
            realtime_on: cfg.realtime,
            cfg,
            config,
            store,
            live,
            me,
            clock_offset_ms: 0,
            last_qn_ms: 0,
            restart_ms: now_ms(),
            restart_sent: false,
            backfill: VecDeque::new(),
            backfill_request: None,
            status: LinkStatus::default(),
            acked: [None; 3],
            acked_dirty: false,
            acked_flushed: Instant::now(),
            heartbeat: None,
            published: Instant::now(),
            ring: None,
            keys_tx: watch::channel(Vec::new()).0,
            ahead: BTreeSet::new(),
            key_asked: None,
        };
        link.load_settings()?;
        link.load_keys()?;
        Ok(link)
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Settings a platform changed earlier survive restarts.
    fn load_settings(&mut self) -> Result<(), StoreError> {
        let name = self.cfg.name.clone();
        let store = self.store.clone();
        let get = |key: &str| store.lock().unwrap_or_else(|e| e.into_inner()).setting(&name, key);
        if let Some(pw) = get("pw")? {
            self.me.pw = pw;
        }
        if let Some(v) = get("rtd_interval_s")?.and_then(|v| v.parse().ok()) {
            self.rtd_interval = Duration::from_secs(v);
        }
        if let Some(v) = get("min_interval")?.and_then(|v| v.parse().ok()) {
            self.min_interval = v;
        }
        if let Some(v) = get("overtime_s")?.and_then(|v| v.parse().ok()) {
            self.overtime = Duration::from_secs(v);
        }
        if let Some(v) = get("recount")?.and_then(|v| v.parse().ok()) {
            self.recount = v;
        }
        if let Some(v) = get("realtime")? {
            self.realtime_on = v == "1";
        }
        if self.cfg.v2025.onboarding
            && let Some(mn) = get("mn")?
        {
            self.me.mn = mn;
        }
        let offset = self.db().setting("*", "clock_offset_ms")?;
        self.clock_offset_ms = offset.and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(())
    }

    /// The SM4 key in force (the registered one, or the last the platform pushed).
    fn load_keys(&mut self) -> Result<(), LinkError> {
        let p = &self.cfg.v2025;
        let (true, Some(file)) = (self.is_2025() && p.encrypt, p.key_file.clone()) else {
            return Ok(());
        };
        let state_dir =
            self.config.storage.path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        let created = self.db().setting(&self.cfg.name, "sk_created_ms")?.and_then(|v| v.parse().ok());
        let ring = v2025::KeyRing::load(&file, &state_dir, &self.cfg.name, created)
            .map_err(|e| LinkError::Key(e.to_string()))?;
        self.keys_tx.send_replace(ring.keys());
        self.ring = Some(ring);
        Ok(())
    }

    fn is_2025(&self) -> bool {
        self.me.version == Version::V2025
    }

    /// The 2025 content rules, when this link speaks 2025.
    fn content(&self) -> Option<Content2025<'_>> {
        self.is_2025().then(|| Content2025 {
            operating_parameters: &self.cfg.v2025.operating_parameters,
            unconvertible: self.cfg.v2025.unconvertible_value,
        })
    }

    /// A packet as sent: with its CP encrypted where the 2025 profile says so.
    fn encode(&self, p: &Packet) -> Result<String, EncodeError> {
        match &self.ring {
            Some(ring) if v2025::must_encrypt(&p.cn) => p.encode_encrypted(
                &ring.current,
                self.cfg.v2025.length_rule.unwrap_or(crate::hj212::crypt::LengthRule::Plain),
            ),
            _ => p.encode(),
        }
    }

    fn save(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.db().set_setting(&self.cfg.name, key, value)
    }

    /// Platform time: the system clock plus the offset the platform set (1012).
    fn now(&self) -> i64 {
        now_ms() + self.clock_offset_ms
    }

    /// A new QN: platform-time milliseconds, strictly increasing.
    fn qn(&mut self) -> String {
        let ms = self.now().max(self.last_qn_ms + 1);
        self.last_qn_ms = ms;
        let t = local(ms, self.offset_s);
        format!("{}{:03}", stamp14(ms, self.offset_s), t.millisecond())
    }

    /// Runs until `shutdown`, reconnecting with capped exponential backoff.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let result = match timeout(
                self.overtime.max(Duration::from_secs(3)),
                TcpStream::connect(&self.cfg.address),
            )
            .await
            {
                Ok(Ok(stream)) => {
                    backoff = Duration::from_secs(1);
                    tracing::info!(uplink = %self.cfg.name, address = %self.cfg.address, "Platform connected.");
                    self.status.connected = true;
                    self.publish();
                    let r = self.session(stream, &mut shutdown).await;
                    self.status.connected = false;
                    r
                }
                Ok(Err(e)) => Err(LinkError::Connect(e.to_string())),
                Err(_) => Err(LinkError::Connect("timed out".into())),
            };
            if let Err(e) = &result {
                tracing::warn!(uplink = %self.cfg.name, error = %e, retry_in = ?backoff, "Platform link down; data stays queued.");

                self.status.last_error = Some(e.to_string());
            }
            self.publish();
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

    /// Publishes the link's state for display: at most every [`PUBLISH_EVERY`] from the busy
    /// loop (counting the backlog walks the records), always on connection changes.
    fn publish_throttled(&mut self) {
        if self.published.elapsed() >= PUBLISH_EVERY {
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.published = Instant::now();
        let name = self.cfg.name.clone();
        for kind in [DataKind::Minute, DataKind::Hour, DataKind::Day] {
            let n = if self.enabled(kind) {
                let c = self.cursor(kind).unwrap_or(0);
                self.db().count_periods(&self.cfg.outlet, level_of(kind), c).unwrap_or(0)
            } else {
                0
            };
            self.status.backlog[usize::from(kind_code(kind))] = n;
        }
        self.live.set_link(&name, self.status.clone());
    }

    fn enabled(&self, kind: DataKind) -> bool {
        sends(&self.cfg, kind)
    }

    fn cursor(&self, kind: DataKind) -> Result<i64, StoreError> {
        if let Some(acked) = self.acked[usize::from(kind_code(kind))] {
            return Ok(acked);
        }
        Ok(self
            .db()
            .cursor(&self.cfg.name, kind_code(kind))?
            .unwrap_or_else(|| self.now() - FIRST_CURSOR_BACK_MS))
    }

    async fn session(
        &mut self,
        stream: TcpStream,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), LinkError> {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Decoded>(64);
        let mut keys = self.keys_tx.subscribe();
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
                    return;
                }
            }
        });
        let result = self.converse(&mut wr, &mut rx, shutdown).await;
        reader.abort();
        self.flush_cursors()?;
        result
    }

    async fn write(&mut self, wr: &mut OwnedWriteHalf, frames: &[String]) -> Result<(), LinkError> {
        for f in frames {
            match timeout(self.overtime, wr.write_all(f.as_bytes())).await {
                Ok(Ok(())) => self.status.frames_sent += 1,
                Ok(Err(e)) => return Err(LinkError::Write(e.to_string())),
                Err(_) => return Err(LinkError::Write("timed out".into())),
            }
        }
        Ok(())
    }

    async fn send_packet(&mut self, wr: &mut OwnedWriteHalf, p: &Packet) -> Result<(), LinkError> {
        match self.encode(p) {
            Ok(frame) => self.write(wr, &[frame]).await,
            Err(e) => {
                tracing::error!(uplink = %self.cfg.name, error = %e, cn = %p.cn, "Cannot encode a reply; not sent.");
                Ok(())
            }
        }
    }

    /// Sends an upload (split into packets if needed) and tracks its acknowledgement.
    async fn send_upload(
        &mut self,
        wr: &mut OwnedWriteHalf,
        pending: &mut VecDeque<Upload>,
        cn: &str,
        cp: Cp,
        source: Source,
    ) -> Result<(), LinkError> {
        let ack = self.cfg.ack;
        let qn = self.qn();
        let mut packet = message::upload(&self.me, &qn, cn, ack, cp);
        // HJ 212-2025: RF=1 on everything sent from the backlog, never on live data.
        packet.rf = self.is_2025() && self.is_backlog(&source);
        let packets = split(&packet, |_| self.qn());
        let packets = match packets {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(uplink = %self.cfg.name, error = %e, "Cannot encode an upload; skipped.");
                return Ok(());
            }
        };
        let frames: Vec<String> = packets.iter().filter_map(|p| self.encode(p).ok()).collect();
        let waiting: Vec<String> = packets.iter().filter_map(|p| p.qn.clone()).collect();
        self.write(wr, &frames).await?;
        if ack {
            pending.push_back(Upload { waiting, packets, source, sent_at: Instant::now(), attempts: 1 });
        } else {
            self.delivered(&source)?;
        }
        Ok(())
    }

    /// Whether an upload comes from the backlog: a backfill, or a queued period older than the
    /// newest complete one.
    fn is_backlog(&self, source: &Source) -> bool {
        match source {
            Source::Backfill => true,
            Source::Restart => false,
            Source::Queue { live: true, .. } => false,
            Source::Queue { kind, start_ms, live: false } => *start_ms < self.live_start(*kind),
        }
    }

    fn live_start(&self, kind: DataKind) -> i64 {
        v2025::live_start(
            kind,
            self.now(),
            self.offset_s,
            i64::from(self.min_interval) * 60_000,
            MINUTE_SETTLE_MS,
        )
    }

    fn delivered(&mut self, source: &Source) -> Result<(), LinkError> {
        match source {
            Source::Queue { kind, start_ms, live } => {
                let code = kind_code(*kind);
                let cursor = self.cursor(*kind)?;
                // New data acknowledged ahead of its backlog: the cursor waits for the backlog.
                if *live && self.next_start(*kind, cursor)? != Some(*start_ms) {
                    self.ahead.insert((code, *start_ms));
                    return Ok(());
                }
                let mut at = (*start_ms).max(cursor);
                while let Some(next) = self.next_start(*kind, at)?
                    && self.ahead.remove(&(code, next))
                {
                    at = next;
                }
                self.acked[usize::from(code)] = Some(at);
                self.acked_dirty = true;
                if self.acked_flushed.elapsed() >= CURSOR_FLUSH {
                    self.flush_cursors()?;
                }
            }
            Source::Restart => self.restart_sent = true,
            Source::Backfill => {}
        }
        Ok(())
    }

    /// Writes the acknowledged cursors. Between two writes (at most [`CURSOR_FLUSH`]) a crash
    /// makes the link send those periods again: delivery is at least once, never lost.
    fn flush_cursors(&mut self) -> Result<(), StoreError> {
        if !self.acked_dirty {
            return Ok(());
        }
        self.acked_dirty = false;
        for kind in [DataKind::Minute, DataKind::Hour, DataKind::Day] {
            if let Some(start) = self.acked[usize::from(kind_code(kind))] {
                self.db().set_cursor(&self.cfg.name, kind_code(kind), start)?;
            }
        }
        self.acked_flushed = Instant::now();
        Ok(())
    }

    /// The records of one period of `kind` starting at `start_ms` (a minute block of
    /// `min_interval` minutes is aggregated from its minute records).
    fn period_records(&self, kind: DataKind, start_ms: i64) -> Result<Vec<Record>, StoreError> {
        let level = level_of(kind);
        let len_ms = match kind {
            DataKind::Minute => i64::from(self.min_interval) * 60_000,
            _ => 1,
        };
        let records =
            self.db().records(&self.cfg.outlet, level, start_ms, start_ms + len_ms, self.offset_s)?;
        if kind != DataKind::Minute || self.min_interval == 1 {
            return Ok(records);
        }
        let mut by_factor: std::collections::BTreeMap<String, Acc> = Default::default();
        for r in &records {
            by_factor.entry(r.factor.clone()).or_default().push(Member {
                value: r.stat.avg,
                zs: r.stat.zs_avg,
                cou: r.stat.cou,
                flag: r.stat.flag,
            });
        }
        let need = (self.min_interval * 3).div_ceil(4);
        let share = self.config.statistics.thresholds.normal_share;
        Ok(by_factor
            .into_iter()
            .map(|(factor, acc)| Record {
                level,
                start: start_ms / 1000 + self.offset_s,
                factor,
                stat: acc.finish(need, share),
                limit: None,
                exceeded: false,
            })
            .collect())
    }

    /// Length of one period of `kind` on this link (minute blocks of `min_interval`).
    fn period_ms(&self, kind: DataKind) -> i64 {
        match kind {
            DataKind::Minute => i64::from(self.min_interval) * 60_000,
            DataKind::Hour => 3_600_000,
            DataKind::Day => 86_400_000,
        }
    }

    /// The first period of `kind` with records that starts after `after` (minute blocks are
    /// aligned to local time), whether or not it may be sent yet.
    fn next_start(&self, kind: DataKind, after: i64) -> Result<Option<i64>, StoreError> {
        if kind != DataKind::Minute {
            return self.db().next_record_start(&self.cfg.outlet, level_of(kind), after);
        }
        let block = self.period_ms(kind);
        let first = self.db().next_record_start(&self.cfg.outlet, Level::Minute, after + block - 1)?;
        Ok(first.map(|first| first - (first + self.offset_s * 1000).rem_euclid(block)))
    }

    /// Whether a period may be sent: minute blocks wait until their minute records settled.
    fn sendable(&self, kind: DataKind, start: i64) -> bool {
        kind != DataKind::Minute || start + self.period_ms(kind) + MINUTE_SETTLE_MS <= self.now()
    }

    /// The next queued period and whether it goes as live data. Oldest end first across kinds,
    /// after the cursors and after what is in flight. With the 2025 profile the newest complete
    /// period goes first when a backlog lies before it (§8.1.2: new data has priority), and
    /// periods already acknowledged that way are skipped.
    fn next_queued(&self, pending: &VecDeque<Upload>) -> Result<Option<(DataKind, i64, bool)>, StoreError> {
        let kinds =
            [DataKind::Minute, DataKind::Hour, DataKind::Day].into_iter().filter(|k| self.enabled(*k));
        if self.is_2025() {
            for kind in kinds.clone() {
                let live = self.live_start(kind);
                let queued = pending.iter().any(|u| {
                    matches!(u.source, Source::Queue { kind: k, start_ms, .. } if k == kind && start_ms == live)
                });
                if live > self.cursor(kind)?
                    && !queued
                    && !self.ahead.contains(&(kind_code(kind), live))
                    && self.next_start(kind, live - 1)? == Some(live)
                    && self.sendable(kind, live)
                {
                    return Ok(Some((kind, live, true)));
                }
            }
        }
        let mut best: Option<(DataKind, i64, i64)> = None;
        for kind in kinds {
            let in_flight = pending.iter().rev().find_map(|u| match u.source {
                Source::Queue { kind: k, start_ms, live: false } if k == kind => Some(start_ms),
                _ => None,
            });
            let mut after = in_flight.map_or_else(|| self.cursor(kind), Ok)?;
            let start = loop {
                match self.next_start(kind, after)? {
                    Some(s) if self.ahead.contains(&(kind_code(kind), s)) => after = s,
                    other => break other,
                }
            };
            let Some(start) = start.filter(|s| self.sendable(kind, *s)) else { continue };
            let end = start + self.period_ms(kind);
            if best.is_none_or(|(_, _, e)| end < e) {
                best = Some((kind, start, end));
            }
        }
        Ok(best.map(|(k, s, _)| (k, s, false)))
    }

    async fn converse(
        &mut self,
        wr: &mut OwnedWriteHalf,
        rx: &mut mpsc::Receiver<Decoded>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), LinkError> {
        let mut pending: VecDeque<Upload> = VecDeque::new();
        // Annex C: the field unit asks for time calibration (1013) when it connects; 2081 tells
        // the platform when the data logger started.
        let qn = self.qn();
        let calib = message::upload(&self.me, &qn, "1013", false, Cp::default());
        self.send_packet(wr, &calib).await?;
        if self.is_2025() && self.cfg.v2025.onboarding && self.me.mn.is_empty() {
            // HJ 212-2025 onboarding: the logger's identity, with an empty MN, until 1002.
            let [id, cpu, mac1, mac2] = v2025::hardware_ids(self.cfg.v2025.logger_id.as_deref());
            let cp = Cp::single(&[
                ("i23005-Info", &id),
                ("i23006-Info", &cpu),
                ("i23007-Info", &mac1),
                ("i23008-Info", &mac2),
            ]);
            let qn = self.qn();
            tracing::info!(uplink = %self.cfg.name, logger_id = %id, "No MN yet: asking the platform for one (1001).");
            self.send_packet(wr, &message::upload(&self.me, &qn, "1001", true, cp)).await?;
        }
        if !self.restart_sent {
            let cp = Cp::single(&[
                ("DataTime", &stamp14(self.now(), self.offset_s)),
                ("RestartTime", &stamp14(self.restart_ms, self.offset_s)),
            ]);
            self.send_upload(wr, &mut pending, "2081", cp, Source::Restart).await?;
        }
        let mut realtime = tokio::time::interval(self.rtd_interval);
        realtime.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rtd_interval = self.rtd_interval;
        // HJ 212-2025 (provisional): a 9015 heartbeat the platform answers with 9013.
        let mut heartbeat = tokio::time::interval(self.cfg.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let heartbeats = self.cfg.protocol == Protocol212::V2025;
        self.heartbeat = None;
        let mut key_check = tokio::time::interval(Duration::from_secs(60));
        key_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Fill the window: backfill first, then the queue.
            while pending.len() < self.cfg.window as usize {
                if let Some((kind, start)) = self.backfill.pop_front() {
                    let records = self.period_records(kind, start)?;
                    let cp =
                        message::period_cp_with(&stamp14(start, self.offset_s), &records, self.content());
                    self.send_upload(wr, &mut pending, kind.cn(), cp, Source::Backfill).await?;
                    continue;
                }
                if let Some(req) = self.backfill_request.take() {
                    if pending.iter().any(|u| u.source == Source::Backfill) {
                        self.backfill_request = Some(req);
                    } else {
                        let done = message::exe_rtn(&self.me, &req, ExeRtn::Success);
                        self.send_packet(wr, &done).await?;
                    }
                }
                if self.me.mn.is_empty() {
                    // HJ 212-2025 onboarding: no data before the platform assigned the MN (1002).
                    break;
                }
                match self.next_queued(&pending)? {
                    Some((kind, start, live)) => {
                        let records = self.period_records(kind, start)?;
                        let cp =
                            message::period_cp_with(&stamp14(start, self.offset_s), &records, self.content());
                        self.send_upload(
                            wr,
                            &mut pending,
                            kind.cn(),
                            cp,
                            Source::Queue { kind, start_ms: start, live },
                        )
                        .await?;
                    }
                    None => {
                        // The queue is empty: a good moment to make the cursors durable.
                        if pending.is_empty() {
                            self.flush_cursors()?;
                        }
                        break;
                    }
                }
            }
            self.publish_throttled();
            if rtd_interval != self.rtd_interval {
                rtd_interval = self.rtd_interval;
                realtime = tokio::time::interval(rtd_interval);
            }
            let deadline = pending.front().map(|u| u.sent_at + self.overtime);
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => return Err(LinkError::Closed),
                    Some(Decoded::Skipped { error, bytes }) => {
                        tracing::warn!(uplink = %self.cfg.name, %error, bytes, "Garbage from the platform skipped.");
                    }
                    Some(Decoded::Packet(p)) => self.handle(wr, &mut pending, p).await?,
                },
                _ = realtime.tick(), if self.realtime_on => self.send_realtime(wr).await?,
                _ = heartbeat.tick(), if heartbeats => {
                    if let Some((_, sent)) = &self.heartbeat
                        && sent.elapsed() > self.overtime * self.recount
                    {
                        return Err(LinkError::NoAck(self.recount));
                    }
                    let qn = self.qn();
                    let beat = Packet { flag: Some(self.me.version.flag(true, false)), ..message::upload(&self.me, &qn, "9015", true, Cp::default()) };
                    self.send_packet(wr, &beat).await?;
                    self.heartbeat.get_or_insert((qn, Instant::now()));
                }
                _ = sleep_until(deadline.unwrap_or_else(|| Instant::now() + QUEUE_POLL)), if deadline.is_some() => {
                    let recount = self.recount;
                    let front = pending.front_mut().expect("a deadline means an upload");
                    if front.attempts >= recount {
                        return Err(LinkError::NoAck(front.attempts));
                    }
                    front.attempts += 1;
                    front.sent_at = Instant::now();
                    // A resend is backlog (RF=1 in 2025), encoded with the key now in force.
                    if self.me.version == Version::V2025 {
                        front.packets.iter_mut().for_each(|p| p.rf = true);
                    }
                    let packets = front.packets.clone();
                    tracing::debug!(uplink = %self.cfg.name, attempt = front.attempts, "No acknowledgement; resending.");
                    let frames: Vec<String> = packets.iter().filter_map(|p| self.encode(p).ok()).collect();
                    self.write(wr, &frames).await?;
                }
                _ = key_check.tick(), if self.ring.is_some() => self.ask_for_key(wr).await?,
                _ = sleep(QUEUE_POLL), if deadline.is_none() => {}
                _ = stopped(shutdown) => return Ok(()),
            }
        }
    }

    /// HJ 212-2025 §6.4.3: ask for a new key (1014 with the current key's creation time) once
    /// it is `key_request_after` old, then again every hour until one arrives.
    async fn ask_for_key(&mut self, wr: &mut OwnedWriteHalf) -> Result<(), LinkError> {
        let Some(ring) = &self.ring else { return Ok(()) };
        let age = now_ms() - ring.created_ms;
        let due = age >= self.cfg.v2025.key_request_after.as_millis() as i64;
        if !due || self.key_asked.is_some_and(|t| t.elapsed() < Duration::from_secs(3600)) {
            return Ok(());
        }
        let created = ring.created_ms;
        let stamp = format!("{}{:03}", stamp14(created, self.offset_s), created.rem_euclid(1000));
        let qn = self.qn();
        tracing::info!(uplink = %self.cfg.name, age_days = age / 86_400_000, "Asking the platform for a new SM4 key (1014).");
        let p = message::upload(&self.me, &qn, "1014", true, Cp::single(&[("SKCreateTime", &stamp)]));
        self.send_packet(wr, &p).await?;
        self.key_asked = Some(Instant::now());
        Ok(())
    }

    /// HJ 212-2025 Table 5: real-time values of flue gas go as dry standard-state values. Points
    /// measured wet or at actual state are converted with the current flue parameters.
    fn to_dry_standard(&self, values: &mut [(String, Option<f64>, crate::model::Flag)]) {
        use crate::compute::evaluate::{self as ev, Flue};
        let Some(outlet) = self.config.outlet(&self.cfg.outlet) else { return };
        let spec = self.config.outlet_spec(outlet);
        if spec.basis.is_empty() {
            return;
        }
        let now: std::collections::BTreeMap<String, (Option<f64>, crate::model::Flag)> =
            values.iter().map(|(f, v, fl)| (f.clone(), (*v, *fl))).collect();
        let ambient =
            now.get(ev::AMBIENT_PRESSURE).and_then(|c| c.0).map_or(spec.flow.ambient_pa, |k| k * 1000.0);
        let (static_pa, static_flag) = now
            .get(ev::STATIC_PRESSURE)
            .map_or((0.0, crate::model::Flag::N), |(v, f)| (v.unwrap_or(0.0) * 1000.0, *f));
        let flue = Flue {
            humidity: now.get(ev::HUMIDITY).copied(),
            temperature: now.get(ev::TEMPERATURE).copied(),
            abs_pressure: (ambient + static_pa, static_flag),
        };
        for (factor, value, flag) in values.iter_mut() {
            if let Some(basis) = spec.basis.get(factor.as_str()) {
                (*value, *flag) = ev::dry_standard(*value, *flag, *basis, factor == ev::O2, &flue);
            }
        }
    }

    async fn send_realtime(&mut self, wr: &mut OwnedWriteHalf) -> Result<(), LinkError> {
        if self.me.mn.is_empty() {
            return Ok(());
        }
        let devices: Vec<String> =
            self.config.outlet_devices(&self.cfg.outlet).iter().map(|d| d.name.clone()).collect();
        let mut values: Vec<(String, Option<f64>, crate::model::Flag)> = self
            .live
            .current()
            .into_iter()
            .filter(|((d, f), _)| devices.contains(d) && !f.ends_with("-RS"))
            .map(|((_, f), c)| (f, c.value, c.flag))
            .collect();
        if values.is_empty() {
            return Ok(());
        }
        if self.is_2025() {
            self.to_dry_standard(&mut values);
        }
        let cp = message::realtime_cp_with(&stamp14(self.now(), self.offset_s), &values, self.content());
        let qn = self.qn();
        let p = message::upload(&self.me, &qn, "2011", false, cp);
        // An outlet with many factors does not fit one packet: split like the period uploads
        // (the soak, 50 factors, found real-time data never sent).
        match split(&p, |_| self.qn()) {
            Ok(packets) => {
                let frames: Vec<String> = packets.iter().filter_map(|p| self.encode(p).ok()).collect();
                self.write(wr, &frames).await
            }
            Err(e) => {
                tracing::error!(uplink = %self.cfg.name, error = %e, "Cannot encode real-time data; not sent.");
                Ok(())
            }
        }
    }

    async fn handle(
        &mut self,
        wr: &mut OwnedWriteHalf,
        pending: &mut VecDeque<Upload>,
        p: Packet,
    ) -> Result<(), LinkError> {
        // The protocol version in the Flag: another version gets QnRtn 6 (or is accepted when the
        // link is set to take both 2017 and 2025).
        if let Some(flag) = p.flag {
            let (theirs, mine) = (flag >> 2, self.me.version.flag(false, false) >> 2);
            let accepted = theirs == mine || (self.cfg.v2025.accept_2017 && theirs == 1);
            if !accepted {
                tracing::warn!(uplink = %self.cfg.name, cn = %p.cn, flag, "Platform frame of another protocol version refused.");
                if p.cn == "9013" || p.cn == "9014" {
                    return Ok(());
                }
                let qn = p.qn.clone().filter(|q| q.len() == 17).unwrap_or_else(|| self.qn());
                return self.send_packet(wr, &message::qn_rtn(&self.me, &qn, QnRtn::FlagError)).await;
            }
        }
        let incoming = message::classify(&p, &self.me);
        let qn = incoming.qn.clone().filter(|q| q.len() == 17).unwrap_or_else(|| self.qn());
        let request = match incoming.request {
            Ok(r) => r,
            Err(rtn) => {
                tracing::warn!(uplink = %self.cfg.name, cn = %p.cn, ?rtn, "Platform request refused.");
                let reply = message::qn_rtn(&self.me, &qn, rtn);
                return self.send_packet(wr, &reply).await;
            }
        };
        let ready = message::qn_rtn(&self.me, &qn, QnRtn::Ready);
        let success = message::exe_rtn(&self.me, &qn, ExeRtn::Success);
        if !matches!(request, Request::Ack | Request::NotificationAck) {
            // A pushed key (1014 NewSK) is a secret: the audit log says a key came, not which.
            let mut cp = p.cp.clone();
            cp.0.iter_mut().flatten().filter(|(k, _)| k == "NewSK").for_each(|(_, v)| *v = "<secret>".into());
            let detail = format!("CN={} QN={qn} CP={cp}", p.cn);
            self.db().audit(AuditKind::Platform, &self.cfg.name, &detail)?;
        }
        match request {
            Request::Ack => {
                let Some(i) = pending.iter().position(|u| u.waiting.contains(&qn)) else {
                    tracing::debug!(uplink = %self.cfg.name, %qn, "Acknowledgement for nothing in flight ignored.");
                    return Ok(());
                };
                pending[i].waiting.retain(|q| q != &qn);
                self.status.frames_acked += 1;
                self.status.last_ack_ms = Some(now_ms());
                // In order: a period leaves the queue once it and all before it are acknowledged.
                while pending.front().is_some_and(|u| u.waiting.is_empty()) {
                    let done = pending.pop_front().expect("checked");
                    self.delivered(&done.source)?;
                }
            }
            Request::NotificationAck => {
                if self.heartbeat.as_ref().is_some_and(|(q, _)| q == &qn) {
                    self.heartbeat = None;
                }
            }
            Request::SetTimeout { overtime_s, recount } => {
                self.send_packet(wr, &ready).await?;
                self.overtime = Duration::from_secs(u64::from(overtime_s));
                self.recount = recount;
                self.save("overtime_s", &overtime_s.to_string())?;
                self.save("recount", &recount.to_string())?;
                self.send_packet(wr, &success).await?;
            }
            Request::GetTime => {
                self.send_packet(wr, &ready).await?;
                let cp = Cp::single(&[("SystemTime", &stamp14(self.now(), self.offset_s))]);
                let resp = message::upload(&self.me, &qn, "1011", false, cp);
                self.send_packet(wr, &resp).await?;
                self.send_packet(wr, &success).await?;
            }
            Request::SetTime(t) => {
                self.send_packet(wr, &ready).await?;
                match parse14(&t, self.offset_s) {
                    Some(platform_ms) => {
                        // Applied as an offset: the system clock is left alone.
                        self.clock_offset_ms = platform_ms - now_ms();
                        self.db().set_setting("*", "clock_offset_ms", &self.clock_offset_ms.to_string())?;
                        let detail = format!("offset_ms={} platform_time={t}", self.clock_offset_ms);
                        self.db().audit(AuditKind::Clock, &self.cfg.name, &detail)?;
                        tracing::info!(uplink = %self.cfg.name, offset_ms = self.clock_offset_ms, "Platform set the time.");
                        self.send_packet(wr, &success).await?;
                    }
                    None => {
                        self.send_packet(wr, &message::exe_rtn(&self.me, &qn, ExeRtn::ConditionError)).await?
                    }
                }
            }
            Request::GetRtdInterval | Request::GetMinInterval => {
                self.send_packet(wr, &ready).await?;
                let (cn, cp) = if request == Request::GetRtdInterval {
                    ("1061", Cp::single(&[("RtdInterval", &self.rtd_interval.as_secs().to_string())]))
                } else {
                    ("1063", Cp::single(&[("MinInterval", &self.min_interval.to_string())]))
                };
                let resp = message::upload(&self.me, &qn, cn, false, cp);
                self.send_packet(wr, &resp).await?;
                self.send_packet(wr, &success).await?;
            }
            Request::SetRtdInterval(s) => {
                self.send_packet(wr, &ready).await?;
                self.rtd_interval = Duration::from_secs(u64::from(s));
                self.save("rtd_interval_s", &s.to_string())?;
                self.send_packet(wr, &success).await?;
            }
            Request::SetMinInterval(m) => {
                self.send_packet(wr, &ready).await?;
                self.min_interval = m;
                self.save("min_interval", &m.to_string())?;
                self.send_packet(wr, &success).await?;
            }
            Request::SetPassword(pw) => {
                self.send_packet(wr, &ready).await?;
                self.save("pw", &pw)?;
                // The result still goes out under the old password; everything after under the new.
                self.send_packet(wr, &success).await?;
                self.me.pw = pw;
            }
            Request::StartRealtime => {
                self.send_packet(wr, &ready).await?;
                self.realtime_on = true;
                self.save("realtime", "1")?;
            }
            Request::StopRealtime => {
                self.realtime_on = false;
                self.save("realtime", "0")?;
                self.send_packet(wr, &message::notification_ack(&self.me, &qn)).await?;
            }
            Request::History { kind, begin, end } => {
                self.send_packet(wr, &ready).await?;
                let (Some(from), Some(to)) = (parse14(&begin, self.offset_s), parse14(&end, self.offset_s))
                else {
                    return self
                        .send_packet(wr, &message::exe_rtn(&self.me, &qn, ExeRtn::ConditionError))
                        .await;
                };
                let mut starts = Vec::new();
                let mut after = from - 1;
                let step = if kind == DataKind::Minute { i64::from(self.min_interval) * 60_000 } else { 1 };
                while let Some(s) = self.db().next_record_start(&self.cfg.outlet, level_of(kind), after)? {
                    if s > to {
                        break;
                    }
                    let local = s + self.offset_s * 1000;
                    let block = if kind == DataKind::Minute { s - local.rem_euclid(step) } else { s };
                    if starts.last() != Some(&block) {
                        starts.push(block);
                    }
                    after = block + step - 1;
                }
                if starts.is_empty() {
                    self.send_packet(wr, &message::exe_rtn(&self.me, &qn, ExeRtn::NoData)).await?;
                } else {
                    tracing::info!(uplink = %self.cfg.name, periods = starts.len(), cn = kind.cn(), "Backfill requested.");
                    self.backfill.extend(starts.into_iter().map(|s| (kind, s)));
                    if self.cfg.ack {
                        self.backfill_request = Some(qn);
                    } else {
                        // Without acknowledgements the result follows the uploads directly.
                        while let Some((kind, start)) = self.backfill.pop_front() {
                            let records = self.period_records(kind, start)?;
                            let cp = message::period_cp_with(
                                &stamp14(start, self.offset_s),
                                &records,
                                self.content(),
                            );
                            self.send_upload(wr, pending, kind.cn(), cp, Source::Backfill).await?;
                        }
                        self.send_packet(wr, &success).await?;
                    }
                }
            }
            Request::SetMn { mn, logger_id } => {
                let mine = v2025::hardware_ids(self.cfg.v2025.logger_id.as_deref())[0].clone();
                if !self.cfg.v2025.onboarding || logger_id != mine {
                    tracing::warn!(uplink = %self.cfg.name, %logger_id, "MN assignment for another logger (or onboarding is off) refused.");
                    return self.send_packet(wr, &message::qn_rtn(&self.me, &qn, QnRtn::Rejected)).await;
                }
                self.save("mn", &mn)?;
                let detail = format!("MN assigned: {} -> {mn} (logger {logger_id})", self.me.mn);
                self.db().audit(AuditKind::Platform, &self.cfg.name, &detail)?;
                self.me.mn = mn.clone();
                tracing::info!(uplink = %self.cfg.name, %mn, "Platform assigned the MN; data goes under it from now on.");
                self.send_packet(wr, &message::qn_rtn(&self.me, &qn, QnRtn::Ready)).await?;
                self.send_packet(wr, &message::exe_rtn(&self.me, &qn, ExeRtn::Success)).await?;
            }
            Request::NewKey { created, key } => {
                self.send_packet(wr, &ready).await?;
                let (Some(ring), Some(key)) = (self.ring.as_mut(), Key::from_text(&key)) else {
                    tracing::warn!(uplink = %self.cfg.name, "New SM4 key refused: this link does not encrypt.");
                    return self
                        .send_packet(wr, &message::exe_rtn(&self.me, &qn, ExeRtn::ConditionError))
                        .await;
                };
                let created_ms = parse14(&created[..14], self.offset_s)
                    .map(|t| t + created[14..].parse::<i64>().unwrap_or(0))
                    .unwrap_or_else(now_ms);
                match ring.rotate(key, created_ms) {
                    Ok(()) => {
                        // From here on every frame, resends included, goes out under the new key;
                        // the reader still accepts the old one for frames already under way.
                        self.keys_tx.send_replace(ring.keys());
                        self.key_asked = None;
                        self.save("sk_created_ms", &created_ms.to_string())?;
                        self.save("sk_rotated_at_ms", &now_ms().to_string())?;
                        let detail = format!("SM4 key rotated; new key created {created}");
                        self.db().audit(AuditKind::Key, &self.cfg.name, &detail)?;
                        tracing::info!(uplink = %self.cfg.name, created = %created, "SM4 key rotated by the platform.");
                        self.send_packet(wr, &success).await?;
                    }
                    Err(e) => {
                        tracing::error!(uplink = %self.cfg.name, error = %e, "Cannot store the new SM4 key; the old one stays.");
                        self.send_packet(wr, &message::exe_rtn(&self.me, &qn, ExeRtn::Failed)).await?;
                    }
                }
            }
            Request::Info { info_id } => {
                self.send_packet(wr, &ready).await?;
                let cp = self.device_info(info_id.as_deref());
                let resp = message::upload(&self.me, &qn, "3020", false, cp);
                self.send_packet(wr, &resp).await?;
                self.send_packet(wr, &success).await?;
            }
        }
        Ok(())
    }

    /// 3020: the work state (i12001: 0 run, 1 maintenance, 2 fault, 3 calibration) and the
    /// analyzer–logger communication state (i12002: 0 ok, 1 abnormal) of each factor.
    fn device_info(&self, info_id: Option<&str>) -> Cp {
        use crate::model::Flag;
        let mut items = vec![vec![("DataTime".to_string(), stamp14(self.now(), self.offset_s))]];
        let current = self.live.current();
        for d in self.config.outlet_devices(&self.cfg.outlet) {
            for p in &d.points {
                let Some(c) = current.get(&(d.name.clone(), p.factor.clone())) else { continue };
                let state = match c.flag {
                    Flag::M => 1,
                    Flag::D => 2,
                    Flag::C => 3,
                    _ => 0,
                };
                let comm = u8::from(c.flag == Flag::B);
                let mut item = vec![("PolId".to_string(), p.factor.clone())];
                if info_id.is_none_or(|i| i == "i12001") {
                    item.push(("i12001-Info".into(), state.to_string()));
                }
                if info_id.is_none_or(|i| i == "i12002") {
                    item.push(("i12002-Info".into(), comm.to_string()));
                }
                items.push(item);
            }
        }
        Cp(items)
    }
}

/// Resolves once `shutdown` turns true (the guard of `wait_for` stays inside: it is not `Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Spawns one task per configured link.
pub fn spawn_links(
    config: &Arc<Config>,
    store: Arc<Mutex<Store>>,
    live: Arc<Live>,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinSet<()>, LinkError> {
    let mut set = tokio::task::JoinSet::new();
    for u in &config.uplinks {
        match u.transport {
            crate::config::Transport::Hj212 => {
                let link = Link::new(u.clone(), config.clone(), store.clone(), live.clone())?;
                set.spawn(link.run(shutdown.clone()));
            }
            crate::config::Transport::Http { .. } => {
                let link = http::HttpLink::new(u.clone(), config, store.clone(), live.clone())?;
                set.spawn(link.run(shutdown.clone()));
            }
        }
    }
    Ok(set)
}
