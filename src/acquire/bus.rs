//! The task that owns one bus and schedules every device on it.
//!
//! One request at a time: the task polls devices one after another, so an RS-485 line never has
//! two requests in flight. A device that stops answering is isolated: after
//! [`ISOLATE_AFTER`] failed polls it is only probed with a growing interval (capped at
//! [`PROBE_MAX`]), while its due slots are recorded as `B` without touching the line, so the
//! other analyzers keep their schedule. Missed slots after a stall are skipped, never replayed
//! in a burst.
//!
//! Key parameters (`[[device.parameter]]`: range, slope, calibration time…) are read by the same
//! task between point polls, each group at its own interval, never two requests at once. A
//! parameter read that fails is not a sample: the last value is kept and marked stale, the
//! device's data are not flagged for it. Values that changed since last sent go to the evidence
//! store ([`ParamSink`]); a range (i13001) becomes the `T` threshold of its factor.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::hj212in::InputTask;
use super::link::Link;
use super::params::{ParamPlan, Reading};
use super::plan::{BlockResult, DevicePlan};
use crate::config::{Bus, Config};
use crate::lifecycle::{Beat, Progress};
use crate::live::Live;
use crate::model::{Sample, now_ms};

/// Failed polls in a row after which a device is only probed now and then.
pub const ISOLATE_AFTER: u32 = 3;
/// Longest time between two probes of an isolated device.
pub const PROBE_MAX: Duration = Duration::from_secs(60);

/// Where parameter readings go: the evidence store's channel (one batch per group read).
pub type ParamSink = mpsc::Sender<Vec<Reading>>;

struct Scheduled {
    plan: DevicePlan,
    next_due: Instant,
    failures: u32,
    probe_at: Instant,
    params: ParamPlan,
    /// Per parameter, the value last handed to the sink.
    sent: Vec<Option<String>>,
}

/// When a group of a device's parameters is read next.
struct ParamSlot {
    device: usize,
    group: usize,
    next_due: Instant,
}

/// Owner of one bus: its link and the schedule of its devices.
pub struct BusTask {
    link: Link,
    devices: Vec<Scheduled>,
    out: mpsc::Sender<Vec<Sample>>,
    live: Arc<Live>,
    beat: Option<Beat>,
    slots: Vec<ParamSlot>,
    sink: Option<ParamSink>,
}

impl BusTask {
    pub fn new(bus: Bus, plans: Vec<DevicePlan>, out: mpsc::Sender<Vec<Sample>>, live: Arc<Live>) -> BusTask {
        let now = Instant::now();
        let devices: Vec<Scheduled> = plans
            .into_iter()
            .map(|plan| {
                let params = ParamPlan::new(&plan.device.parameters, plan.device.max_gap);
                let sent = vec![None; params.params.len()];
                Scheduled { plan, next_due: now, failures: 0, probe_at: now, params, sent }
            })
            .collect();
        let slots = devices
            .iter()
            .enumerate()
            .flat_map(|(device, d)| {
                (0..d.params.groups.len()).map(move |group| ParamSlot { device, group, next_due: now })
            })
            .collect();
        BusTask { link: Link::new(bus), devices, out, live, beat: None, slots, sink: None }
    }

    /// Sends parameter readings to `sink` (without one, parameters are still read for the page,
    /// the 3020 answers and the `T` threshold).
    pub fn with_parameters(mut self, sink: ParamSink) -> BusTask {
        self.sink = Some(sink);
        self
    }

    /// Reports progress to the supervisor after every poll.
    pub fn with_beat(mut self, beat: Beat) -> BusTask {
        self.beat = Some(beat);
        self
    }

    /// The longest time this task may go without finishing a poll while healthy: its longest
    /// poll interval, plus the slowest device's poll with every request timing out after a
    /// connection attempt, plus a margin. The task reports progress after every device's poll.
    pub fn max_silence(&self) -> Duration {
        let bus = self.link.bus();
        let interval = self.devices.iter().map(|d| d.plan.device.poll_interval).max().unwrap_or_default();
        // A parameter read may come just before a device's poll.
        let requests = self
            .devices
            .iter()
            .map(|d| {
                let params = d.params.groups.iter().map(|g| g.blocks.len()).max().unwrap_or(0);
                (d.plan.blocks.len().max(1) + params) as u32
            })
            .max()
            .unwrap_or(1);
        let connect = bus.timeout.max(Duration::from_secs(1));
        interval + (bus.timeout + bus.inter_frame) * requests + connect + Duration::from_secs(5)
    }

    /// Runs until `shutdown` turns true or the store stops taking samples.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if self.devices.is_empty() {
            return;
        }
        loop {
            let (i, due) = self
                .devices
                .iter()
                .enumerate()
                .map(|(i, d)| (i, d.next_due))
                .min_by_key(|&(i, due)| (due, i))
                .expect("not empty");
            // Parameters strictly due first; on a tie the points go first.
            let param =
                self.slots.iter().enumerate().map(|(k, s)| (s.next_due, k)).min().filter(|(d, _)| *d < due);
            let wake = param.map_or(due, |(d, _)| d);
            tokio::select! {
                _ = sleep_until(wake) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            if let Some((_, k)) = param {
                self.read_params(k).await;
                if let Some(beat) = &self.beat {
                    beat.touch();
                }
                continue;
            }
            let samples = self.poll_one(i).await;
            if self.out.send(samples).await.is_err() {
                return;
            }
            if let Some(beat) = &self.beat {
                beat.touch();
            }
            if crate::lifecycle::stall_requested(&self.link.bus().name) {
                tracing::warn!(bus = %self.link.bus().name, "Fault injection: this bus task is now wedged.");
                std::future::pending::<()>().await;
            }
        }
    }

    async fn poll_one(&mut self, i: usize) -> Vec<Sample> {
        let now = Instant::now();
        let dev = &mut self.devices[i];
        let interval = dev.plan.device.poll_interval;
        // The next slot strictly in the future: slots missed during a stall are skipped.
        dev.next_due += interval;
        if dev.next_due <= now {
            let behind = now - dev.next_due;
            let skip = behind.as_nanos() / interval.as_nanos().max(1) + 1;
            dev.next_due += interval * skip as u32;
        }
        let name = dev.plan.name.clone();

        // An isolated device, or a bus whose reconnect backoff is running, gets B without I/O.
        if now < dev.probe_at || self.link.in_backoff() {
            let samples = dev.plan.comm_failure(now_ms());
            let why = if self.link.in_backoff() {
                "bus reconnect backoff"
            } else {
                "device isolated after repeated failures"
            };
            self.live.record_skipped(&name, &samples, why);
            return samples;
        }

        let outcome = self.link.poll(&dev.plan).await;
        match &outcome.error {
            None => {
                if dev.failures >= ISOLATE_AFTER {
                    tracing::info!(device = %name, "Device answers again.");
                }
                dev.failures = 0;
            }
            // The bus is down (port gone, converter unreachable): the link's own backoff handles
            // it, and the devices must not be isolated for it once the bus is back.
            Some(e) if e.is_bus_failure() => {
                tracing::warn!(device = %name, error = %e, "Bus unavailable; samples flagged B.");
            }
            Some(e) => {
                dev.failures += 1;
                if dev.failures >= ISOLATE_AFTER {
                    let k = (dev.failures - ISOLATE_AFTER).min(16);
                    let wait = (interval * 2u32.pow(k)).min(PROBE_MAX);
                    dev.probe_at = Instant::now() + wait;
                    if dev.failures == ISOLATE_AFTER {
                        let check = e.hint(&self.link.bus().link);
                        tracing::warn!(device = %name, error = %e, probe_in = ?wait, %check, "Device isolated: no data (flag B) until it answers again.");
                    }
                } else {
                    tracing::warn!(device = %name, error = %e, "Poll failed; samples flagged B.");
                }
            }
        }
        self.live.record_poll(&name, &outcome.samples, outcome.error.as_ref().map(ToString::to_string));
        outcome.samples
    }
}

impl BusTask {
    /// Reads one group of a device's parameters (slot `k`) and hands on what changed.
    async fn read_params(&mut self, k: usize) {
        let now = Instant::now();
        let (i, g) = (self.slots[k].device, self.slots[k].group);
        let dev = &mut self.devices[i];
        let group = &dev.params.groups[g];
        let slot = &mut self.slots[k];
        slot.next_due += group.interval;
        if slot.next_due <= now {
            let behind = now - slot.next_due;
            let skip = behind.as_nanos() / group.interval.as_nanos().max(1) + 1;
            slot.next_due += group.interval * skip as u32;
        }
        let ts = now_ms();
        let name = dev.plan.name.clone();
        // An isolated device or a bus in backoff is not asked: its parameters go stale.
        if now < dev.probe_at || self.link.in_backoff() {
            for &index in &group.members {
                let p = &dev.params.params[index];
                self.live.parameter_failed(&name, &p.code, p.pol.as_deref(), "device not polled", ts);
            }
            return;
        }
        let mut results = Vec::with_capacity(group.blocks.len());
        let mut error = None;
        for block in &group.blocks {
            if error.is_some() {
                results.push(BlockResult::Lost);
                continue;
            }
            match self.link.read(dev.plan.device.slave, block.table, block.start, block.count).await {
                Ok(regs) => results.push(BlockResult::Ok(regs)),
                Err(e) => {
                    results.push(BlockResult::Lost);
                    error = Some(e);
                }
            }
        }
        if let Some(e) = &error {
            tracing::warn!(device = %name, error = %e, "Parameter read failed; the last values are kept (stale).");
        }
        let mut batch = Vec::new();
        for (index, value) in dev.params.decode(g, &results) {
            let p = &dev.params.params[index];
            let v = match value {
                Ok(v) => v,
                Err(why) => {
                    let why = error.as_ref().map_or(why, ToString::to_string);
                    self.live.parameter_failed(&name, &p.code, p.pol.as_deref(), &why, ts);
                    continue;
                }
            };
            self.live.set_parameter(&name, &p.code, p.pol.as_deref(), &v.text, v.number, ts);
            if p.code == "i13001"
                && let Some(max) = v.number
            {
                for (factor, old) in dev.plan.set_range(p.pol.as_deref(), max) {
                    tracing::info!(device = %name, %factor, range = max, previous = ?old, "Analyzer range read: values above it are flagged T.");
                }
            }
            if dev.sent[index].as_deref() != Some(v.text.as_str()) {
                batch.push((
                    index,
                    Reading {
                        device: name.clone(),
                        code: p.code.clone(),
                        pol: p.pol.clone(),
                        ts_ms: ts,
                        value: v.text,
                    },
                ));
            }
        }
        let Some(sink) = &self.sink else { return };
        if batch.is_empty() {
            return;
        }
        let indexes: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
        let readings: Vec<Reading> = batch.into_iter().map(|(_, r)| r).collect();
        let values: Vec<String> = readings.iter().map(|r| r.value.clone()).collect();
        match sink.try_send(readings) {
            Ok(()) => {
                for (index, value) in indexes.into_iter().zip(values) {
                    dev.sent[index] = Some(value);
                }
            }
            // Not lost: unsent values are offered again at the next read.
            Err(e) => {
                tracing::warn!(device = %name, error = %e, "Parameter values wait: the evidence store is busy.")
            }
        }
    }
}

/// Spawns one task per bus of `config`, feeding `out`. Devices are planned here, once.
pub fn spawn_buses(
    config: &Config,
    out: mpsc::Sender<Vec<Sample>>,
    params: Option<ParamSink>,
    live: Arc<Live>,
    progress: &Progress,
    shutdown: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for (index, bus) in config.buses.iter().enumerate() {
        let plans: Vec<DevicePlan> =
            config.devices.iter().filter(|d| d.bus == index).map(|d| DevicePlan::new(d.clone())).collect();
        let n_requests: usize = plans.iter().map(|p| p.blocks.len().max(1)).sum();
        tracing::info!(bus = %bus.name, kind = bus.link.kind(), endpoint = bus.link.endpoint(), devices = plans.len(), requests_per_round = n_requests, "Bus planned.");
        if bus.link.is_hj212() {
            let task =
                InputTask::new(bus.clone(), plans, out.clone(), live.clone(), config.site.utc_offset_s);
            let beat = progress.register(format!("bus {}", bus.name), task.max_silence());
            set.spawn(task.with_beat(beat).run(shutdown.clone()));
            continue;
        }
        let mut task = BusTask::new(bus.clone(), plans, out.clone(), live.clone());
        if let Some(sink) = &params {
            task = task.with_parameters(sink.clone());
        }
        let beat = progress.register(format!("bus {}", bus.name), task.max_silence());
        set.spawn(task.with_beat(beat).run(shutdown.clone()));
    }
    set
}
