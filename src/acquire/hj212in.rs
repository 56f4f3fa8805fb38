//! A bus whose devices push HJ 212 real-time uploads: an existing CEMS data system or an
//! analyzer that speaks HJ 212 on a serial line, or connects over TCP to this gateway as if it
//! were the platform.
//!
//! One task owns the bus. Frames are found in the byte stream by the same decoder as the
//! uplink's (garbage and bad CRCs are logged and skipped; decoding resumes at the next `##`).
//! A frame that asks for an answer gets one (9014 for data, 9013 for notifications) with its
//! QN, once its device is known. Real-time uploads (2011) become samples with the sender's
//! flags; other data (2051, 2061, …) is acknowledged but not used: the gateway computes its
//! own statistics from the real-time values. A device whose frames stop is flagged `B` at its
//! expected interval, never given its last value again.
//!
//! Bounded against hostile or broken peers: at most `max_connections` senders are served at
//! once (more are closed as soon as they are accepted, logged once per burst), a connection
//! silent past its idle deadline is closed, each connection's buffer is the decoder's (capped at
//! a few frames), and a peer that sends more than a whole frame's worth of bytes without one
//! good frame is dropped. The reader tasks (one per connection, or the serial reader) live in a
//! `JoinSet` owned by the bus task: stopping or aborting the bus closes every socket.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::plan::DevicePlan;
use crate::config::{Bus, Link, ListenLimits, Protocol};
use crate::hj212::frame::{FLAG_ACK, MAX_FRAME};
use crate::hj212::{Cp, Decoded, Decoder, Packet};
use crate::lifecycle::Beat;
use crate::live::Live;
use crate::model::{Sample, now_ms};
use crate::time::{Local, Offset};

/// A sender's DataTime further than this from the gateway's clock is not trusted: the sample
/// is stamped with the time of arrival instead.
const MAX_CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;
/// Replies waiting to be written on one connection.
const REPLY_QUEUE: usize = 16;
/// Refused connections are logged at most once in this long (the others are counted).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// A frame and the way back to its sender.
struct Inbound {
    packet: Packet,
    reply: mpsc::Sender<String>,
}

struct Source {
    plan: DevicePlan,
    mn: Option<String>,
    /// When the next frame is due at the latest; past it, the device's slot is recorded as B.
    due: Instant,
}

/// Owner of one `kind = "hj212"` bus.
pub struct InputTask {
    bus: Bus,
    devices: Vec<Source>,
    out: mpsc::Sender<Vec<Sample>>,
    live: Arc<Live>,
    beat: Option<Beat>,
    utc_offset: Offset,
}

impl InputTask {
    pub fn new(
        bus: Bus,
        plans: Vec<DevicePlan>,
        out: mpsc::Sender<Vec<Sample>>,
        live: Arc<Live>,
        utc_offset: Offset,
    ) -> InputTask {
        let start = Instant::now();
        let devices = plans
            .into_iter()
            .map(|plan| {
                let mn = match &plan.device.protocol {
                    Protocol::Hj212 { mn } => mn.clone(),
                    _ => None,
                };
                let due = start + Self::grace(&bus, plan.device.poll_interval);
                Source { plan, mn, due }
            })
            .collect();
        InputTask { bus, devices, out, live, beat: None, utc_offset }
    }

    pub fn with_beat(mut self, beat: Beat) -> InputTask {
        self.beat = Some(beat);
        self
    }

    /// How late a frame may be before its slot is flagged B: the interval plus the bus timeout.
    fn grace(bus: &Bus, interval: Duration) -> Duration {
        interval + bus.timeout
    }

    /// The longest silence of this task while healthy: it wakes at least once per interval.
    pub fn max_silence(&self) -> Duration {
        let longest = self.devices.iter().map(|d| d.plan.device.poll_interval).max().unwrap_or_default();
        Self::grace(&self.bus, longest) + Duration::from_secs(5)
    }

    /// How long a connection may stay silent: as configured, or three times the slowest
    /// device's interval plus the bus timeout (a sender that missed three frames in a row is
    /// gone or wedged; its slot is freed and it may connect again).
    fn idle_timeout(&self, limits: &ListenLimits) -> Duration {
        let longest = self.devices.iter().map(|d| d.plan.device.poll_interval).max().unwrap_or_default();
        limits.idle_timeout.unwrap_or(longest * 3 + self.bus.timeout)
    }

    /// Runs until `shutdown` turns true or the store stops taking samples.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if self.devices.is_empty() {
            return;
        }
        let (tx, mut rx) = mpsc::channel::<Inbound>(64);
        // Every reader of this bus runs in this set: when the task ends, or is aborted, the set is
        // dropped and every reader with it, so no socket outlives its bus.
        let mut readers: JoinSet<()> = JoinSet::new();
        let mut listener = match self.bus.link.clone() {
            Link::Hj212Listen { address, limits } => {
                let idle = self.idle_timeout(&limits);
                Some(Listener::new(address, limits, idle, self.bus.reconnect_max))
            }
            Link::Hj212Serial(_) => {
                readers.spawn(serial(self.bus.clone(), tx.clone()));
                None
            }
            _ => {
                tracing::error!(bus = %self.bus.name, "Not an hj212 bus; no input task.");
                return;
            }
        };
        loop {
            let next_due = self.devices.iter().map(|d| d.due).min().expect("not empty");
            tokio::select! {
                inbound = rx.recv() => match inbound {
                    Some(inbound) => {
                        if !self.handle(inbound).await {
                            break;
                        }
                    }
                    None => break,
                },
                accepted = accept(&mut listener, &self.bus.name) => {
                    if let Some(l) = &mut listener {
                        l.admit(accepted, &mut readers, &self.bus, &tx);
                    }
                }
                Some(ended) = readers.join_next(), if !readers.is_empty() => {
                    if let Err(e) = ended
                        && e.is_panic()
                    {
                        tracing::error!(bus = %self.bus.name, error = %e, "HJ 212 input reader failed.");
                    }
                }
                _ = sleep_until(next_due) => {
                    if !self.flag_silent().await {
                        break;
                    }
                }
                _ = stopped(&mut shutdown) => break,
            }
            if let Some(beat) = &self.beat {
                beat.touch();
            }
        }
        readers.shutdown().await;
    }

    /// Records B for every device whose frame is overdue. False when the store is gone.
    async fn flag_silent(&mut self) -> bool {
        let now = Instant::now();
        let mut batch = Vec::new();
        for d in self.devices.iter_mut().filter(|d| d.due <= now) {
            let interval = d.plan.device.poll_interval;
            let samples = d.plan.comm_failure(now_ms());
            let why =
                format!("no HJ 212 frame from this device within {:?}", Self::grace(&self.bus, interval));
            if self.live.devices().get(d.plan.name.as_ref()).is_none_or(|h| h.consecutive_failures == 0) {
                tracing::warn!(bus = %self.bus.name, device = %d.plan.name, "{why}; samples flagged B.");
            }
            self.live.record_poll(&d.plan.name, &samples, Some(why));
            batch.extend(samples);
            // The next slot strictly in the future: a long silence is not replayed as a burst.
            while d.due <= now {
                d.due += interval;
            }
        }
        batch.is_empty() || self.out.send(batch).await.is_ok()
    }

    /// One frame: answer it if asked, turn real-time values into samples. False when the
    /// store is gone.
    async fn handle(&mut self, inbound: Inbound) -> bool {
        let p = inbound.packet;
        let Some(i) = self.device_for(&p.mn) else {
            tracing::warn!(bus = %self.bus.name, mn = %p.mn, cn = %p.cn, "HJ 212 frame from an unknown MN ignored (no [[device]] on this bus has this mn).");
            return true;
        };
        if p.wants_ack() {
            let reply = answer(&p);
            match reply.encode() {
                Ok(frame) => {
                    if inbound.reply.try_send(frame).is_err() {
                        tracing::warn!(bus = %self.bus.name, "Sender not reading its answers; one answer dropped.");
                    }
                }
                Err(e) => tracing::warn!(bus = %self.bus.name, error = %e, "Cannot encode an answer."),
            }
        }
        if p.cn != "2011" {
            tracing::debug!(bus = %self.bus.name, cn = %p.cn, "HJ 212 frame other than real-time data: acknowledged, not used.");
            return true;
        }
        let ts_ms = self.stamp(&p.cp);
        let d = &mut self.devices[i];
        let samples = d.plan.decode_hj212(&p.cp, ts_ms);
        d.due = Instant::now() + Self::grace(&self.bus, d.plan.device.poll_interval);
        self.live.record_poll(&d.plan.name, &samples, None);
        self.out.send(samples).await.is_ok()
    }

    fn device_for(&self, mn: &str) -> Option<usize> {
        self.devices
            .iter()
            .position(|d| d.mn.as_deref() == Some(mn))
            .or_else(|| self.devices.iter().position(|d| d.mn.is_none()))
    }

    /// The frame's DataTime when it is plausible, else the time of arrival.
    fn stamp(&self, cp: &Cp) -> i64 {
        let now = now_ms();
        match cp.get("DataTime").and_then(Local::parse_hj14).map(|t| self.utc_offset.utc(t).0) {
            Some(t) if (t - now).abs() <= MAX_CLOCK_SKEW_MS => t,
            Some(_) => {
                tracing::debug!(bus = %self.bus.name, "Sender's DataTime is far from this clock; stamped on arrival.");
                now
            }
            None => now,
        }
    }
}

/// Resolves once `shutdown` turns true (the guard of `wait_for` stays inside: it is not `Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The answer to a frame that asked for one: 9014 for data uploads, 9013 for notifications,
/// with its QN, and the sender's protocol version.
pub fn answer(p: &Packet) -> Packet {
    let version_bits = p.flag.unwrap_or(0) & !0b11;
    Packet {
        qn: p.qn.clone(),
        st: "91".into(),
        cn: if p.cn.starts_with('2') { "9014" } else { "9013" }.into(),
        pw: p.pw.clone(),
        mn: p.mn.clone(),
        flag: Some(version_bits & !FLAG_ACK),
        packets: None,
        rf: false,
        cp: Cp::default(),
    }
}

/// The TCP side of an `hj212` bus: its socket (bound again with backoff if binding fails), its
/// caps, and the count of refusals not yet logged.
struct Listener {
    address: String,
    limits: ListenLimits,
    idle: Duration,
    socket: Option<TcpListener>,
    /// When to try binding again, and the backoff after that.
    retry_at: Instant,
    backoff: Duration,
    backoff_max: Duration,
    /// The last refusal logged, and how many were refused since without a log line.
    refusal_logged: Option<Instant>,
    refused_quietly: u64,
}

impl Listener {
    fn new(address: String, limits: ListenLimits, idle: Duration, backoff_max: Duration) -> Listener {
        Listener {
            address,
            limits,
            idle,
            socket: None,
            retry_at: Instant::now(),
            backoff: Duration::from_secs(1),
            backoff_max,
            refusal_logged: None,
            refused_quietly: 0,
        }
    }

    /// The next connection; binds first if needed. Cancel-safe: a `select!` may drop it at any
    /// await and call it again.
    async fn next(&mut self, bus: &str) -> (TcpStream, std::net::SocketAddr) {
        loop {
            let Some(socket) = &self.socket else {
                sleep_until(self.retry_at).await;
                match TcpListener::bind(&self.address).await {
                    Ok(l) => {
                        tracing::info!(bus, address = %self.address, max_connections = self.limits.max_connections, idle_timeout = ?self.idle, "Listening for HJ 212 senders.");
                        self.socket = Some(l);
                    }
                    Err(e) => {
                        tracing::error!(bus, address = %self.address, error = %e, retry_in = ?self.backoff, "Cannot listen for HJ 212 senders.");
                        self.retry_at = Instant::now() + self.backoff;
                        self.backoff = (self.backoff * 2).min(self.backoff_max);
                    }
                }
                continue;
            };
            match socket.accept().await {
                Ok(accepted) => return accepted,
                Err(e) => {
                    // Out of file descriptors, typically: wait a little rather than spin.
                    tracing::warn!(bus, error = %e, "Accept failed.");
                    self.retry_at = Instant::now() + Duration::from_millis(100);
                    sleep_until(self.retry_at).await;
                }
            }
        }
    }

    /// Serves an accepted connection when a slot is free; closes it at once otherwise.
    fn admit(
        &mut self,
        (stream, peer): (TcpStream, std::net::SocketAddr),
        readers: &mut JoinSet<()>,
        bus: &Bus,
        tx: &mpsc::Sender<Inbound>,
    ) {
        // Readers that ended free their slot now, not when the task loop gets round to them.
        while let Some(ended) = readers.try_join_next() {
            if let Err(e) = ended
                && e.is_panic()
            {
                tracing::error!(bus = %bus.name, error = %e, "HJ 212 input reader failed.");
            }
        }
        if readers.len() >= self.limits.max_connections {
            drop(stream);
            self.refused(&bus.name, peer);
            return;
        }
        tracing::info!(bus = %bus.name, %peer, "HJ 212 sender connected.");
        let _ = stream.set_nodelay(true);
        readers.spawn(pump(bus.clone(), stream, tx.clone(), Some(peer.to_string()), self.idle));
    }

    /// Logs a refusal once per burst: the first, then at most one line a minute with the count
    /// of the others.
    fn refused(&mut self, bus: &str, peer: std::net::SocketAddr) {
        let now = Instant::now();
        if self.refusal_logged.is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY) {
            self.refused_quietly += 1;
            return;
        }
        tracing::warn!(
            bus,
            %peer,
            max_connections = self.limits.max_connections,
            refused_since_last_log = self.refused_quietly,
            "HJ 212 input at its connection cap; connection refused (further refusals within a minute are counted, not logged)."
        );
        self.refusal_logged = Some(now);
        self.refused_quietly = 0;
    }
}

/// The next connection of a listening bus; never resolves for a serial one.
async fn accept(listener: &mut Option<Listener>, bus: &str) -> (TcpStream, std::net::SocketAddr) {
    match listener {
        Some(l) => l.next(bus).await,
        None => std::future::pending().await,
    }
}

/// Reads the serial port, reopening it with backoff when it fails or disappears.
async fn serial(bus: Bus, tx: mpsc::Sender<Inbound>) {
    let Link::Hj212Serial(settings) = &bus.link else { return };
    let mut backoff = Duration::from_secs(1);
    loop {
        match super::link::open_serial(settings, None).await {
            Ok(port) => {
                tracing::info!(bus = %bus.name, path = %settings.path, "HJ 212 serial input open.");
                backoff = Duration::from_secs(1);
                // A serial line has no peer to drop and may be silent for long: no idle deadline.
                pump(bus.clone(), port, tx.clone(), None, Duration::MAX).await;
                if tx.is_closed() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(bus = %bus.name, error = %e, retry_in = ?backoff, "Cannot open the HJ 212 serial input.");
            }
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(bus.reconnect_max);
    }
}

/// Moves frames from one byte stream to the task, and the task's answers back. A TCP peer
/// (`peer` given) is dropped when it stays silent for `idle`, or sends more than a frame's
/// worth of bytes ([`MAX_FRAME`]) without one good frame: it does not speak HJ 212.
async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    bus: Bus,
    stream: S,
    tx: mpsc::Sender<Inbound>,
    peer: Option<String>,
    idle: Duration,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (reply_tx, mut reply_rx) = mpsc::channel::<String>(REPLY_QUEUE);
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 4096];
    let is_tcp = peer.is_some();
    let peer = peer.unwrap_or_else(|| "serial".into());
    loop {
        tokio::select! {
            n = timeout(idle, rd.read(&mut buf)) => {
                let n = match n {
                    Err(_) => {
                        tracing::warn!(bus = %bus.name, %peer, silent_for = ?idle, "HJ 212 sender silent past its idle deadline; connection closed.");
                        return;
                    }
                    Ok(Ok(0)) => {
                        tracing::info!(bus = %bus.name, %peer, "HJ 212 sender disconnected.");
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(bus = %bus.name, %peer, error = %e, "HJ 212 input read failed.");
                        return;
                    }
                    Ok(Ok(n)) => n,
                };
                decoder.push(&buf[..n]);
                while let Some(d) = decoder.next_frame() {
                    match d {
                        Decoded::Packet(packet) => {
                            if tx.send(Inbound { packet, reply: reply_tx.clone() }).await.is_err() {
                                return;
                            }
                        }
                        Decoded::Skipped { error, bytes } => {
                            tracing::warn!(bus = %bus.name, %peer, %error, bytes, "Garbage on the HJ 212 input skipped.");
                        }
                    }
                }
                if is_tcp && decoder.junk() > MAX_FRAME {
                    tracing::warn!(bus = %bus.name, %peer, bytes = decoder.junk(), "HJ 212 sender sends no valid frame; connection closed.");
                    return;
                }
            }
            Some(frame) = reply_rx.recv() => {
                match timeout(bus.timeout, wr.write_all(frame.as_bytes())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(bus = %bus.name, %peer, error = %e, "Cannot answer the HJ 212 sender.");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(bus = %bus.name, %peer, "Answer to the HJ 212 sender timed out.");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_the_qn_and_version_and_ask_for_nothing() {
        let p = Packet {
            qn: Some("20261129103000123".into()),
            st: "31".into(),
            cn: "2011".into(),
            pw: "123456".into(),
            mn: "SRC01".into(),
            flag: Some(0b0000_0101),
            packets: None,
            rf: false,
            cp: Cp::default(),
        };
        let a = answer(&p);
        assert_eq!((a.cn.as_str(), a.qn.as_deref(), a.flag), ("9014", Some("20261129103000123"), Some(4)));
        let v2025 = answer(&Packet { flag: Some(0b0000_1001), cn: "9015".into(), ..p });
        assert_eq!((v2025.cn.as_str(), v2025.flag), ("9013", Some(8)));
        assert!(!v2025.wants_ack());
    }
}
