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

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::plan::DevicePlan;
use crate::config::{Bus, Link, Protocol};
use crate::hj212::frame::FLAG_ACK;
use crate::hj212::message::parse_time14;
use crate::hj212::{Cp, Decoded, Decoder, Packet};
use crate::lifecycle::Beat;
use crate::live::Live;
use crate::model::{Sample, now_ms};

/// A sender's DataTime further than this from the gateway's clock is not trusted: the sample
/// is stamped with the time of arrival instead.
const MAX_CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;
/// Replies waiting to be written on one connection.
const REPLY_QUEUE: usize = 16;

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
    utc_offset_s: i64,
}

impl InputTask {
    pub fn new(
        bus: Bus,
        plans: Vec<DevicePlan>,
        out: mpsc::Sender<Vec<Sample>>,
        live: Arc<Live>,
        utc_offset_s: i64,
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
        InputTask { bus, devices, out, live, beat: None, utc_offset_s }
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

    /// Runs until `shutdown` turns true or the store stops taking samples.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if self.devices.is_empty() {
            return;
        }
        let (tx, mut rx) = mpsc::channel::<Inbound>(64);
        let receiver = match self.bus.link.clone() {
            Link::Hj212Listen { address } => tokio::spawn(listen(self.bus.clone(), address, tx)),
            Link::Hj212Serial(_) => tokio::spawn(serial(self.bus.clone(), tx)),
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
        receiver.abort();
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
        match cp.get("DataTime").and_then(|t| parse_time14(t, self.utc_offset_s)) {
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

/// Accepts connections on `address` (a sender may reconnect at any time; several may be
/// connected at once) and forwards their frames.
async fn listen(bus: Bus, address: String, tx: mpsc::Sender<Inbound>) {
    let mut backoff = Duration::from_secs(1);
    let listener = loop {
        match TcpListener::bind(&address).await {
            Ok(l) => break l,
            Err(e) => {
                tracing::error!(bus = %bus.name, %address, error = %e, retry_in = ?backoff, "Cannot listen for HJ 212 senders.");
                sleep(backoff).await;
                backoff = (backoff * 2).min(bus.reconnect_max);
            }
        }
    };
    tracing::info!(bus = %bus.name, %address, "Listening for HJ 212 senders.");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tracing::info!(bus = %bus.name, %peer, "HJ 212 sender connected.");
                let _ = stream.set_nodelay(true);
                tokio::spawn(pump(bus.clone(), stream, tx.clone(), Some(peer.to_string())));
            }
            Err(e) => {
                tracing::warn!(bus = %bus.name, error = %e, "Accept failed.");
                sleep(Duration::from_millis(100)).await;
            }
        }
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
                pump(bus.clone(), port, tx.clone(), None).await;
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

/// Moves frames from one byte stream to the task, and the task's answers back.
async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    bus: Bus,
    stream: S,
    tx: mpsc::Sender<Inbound>,
    peer: Option<String>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (reply_tx, mut reply_rx) = mpsc::channel::<String>(REPLY_QUEUE);
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 4096];
    let peer = peer.unwrap_or_else(|| "serial".into());
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => {
                let n = match n {
                    Ok(0) => {
                        tracing::info!(bus = %bus.name, %peer, "HJ 212 sender disconnected.");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(bus = %bus.name, %peer, error = %e, "HJ 212 input read failed.");
                        return;
                    }
                    Ok(n) => n,
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
