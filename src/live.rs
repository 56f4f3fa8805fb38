//! Latest values and device health, shared between the bus tasks and whatever displays them.
//!
//! This is a view, not a record: the store is the record. A value here is replaced by the next
//! poll's outcome, including a `B` without a value; it never keeps showing a stale good value
//! as current.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::compute::stats::Stat;
use crate::model::{Flag, Sample};

/// Latest sample of one (device, factor).
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub ts_ms: i64,
    pub value: Option<f64>,
    pub flag: Flag,
    /// The last value that was read with flag N, and when: for the officer's "last good reading".
    pub last_good: Option<(i64, f64)>,
}

/// Health of one device as seen by its bus task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceHealth {
    /// Requests made to it, and those that failed.
    pub polls: u64,
    pub errors: u64,
    /// Due slots without a good reading in a row: failed polls and slots skipped while it is
    /// isolated or its bus is down.
    pub consecutive_failures: u32,
    pub last_ok_ms: Option<i64>,
    /// The last failure of a real request and when (kept after the device answers again).
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Why its slots are recorded as B without a request, while they are (isolated, bus down).
    pub not_polled: Option<String>,
}

/// The open hour of one outlet: running statistics per factor, converted where they apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenHour {
    /// Local start of the hour, seconds.
    pub start: i64,
    pub stats: BTreeMap<String, Stat>,
    /// Hourly limits by factor, for display beside the running averages.
    pub limits: BTreeMap<String, f64>,
}

/// A key analyzer parameter as last read (`[[device.parameter]]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamState {
    /// As HJ 212 carries it (`500`, `20261206153045`); `None` until first read.
    pub value: Option<String>,
    pub number: Option<f64>,
    /// When it was last read.
    pub read_ms: Option<i64>,
    /// Since when reads fail, and why: the value kept is the last one read.
    pub stale: Option<(i64, String)>,
}

/// The current values of `devices` as inputs of [`crate::compute::realtime`] (times in Unix
/// seconds: the conversion only compares them).
pub fn inputs(
    current: &BTreeMap<(String, String), Current>,
    devices: &[&crate::config::Device],
) -> Vec<crate::compute::Input> {
    current
        .iter()
        .filter(|((d, _), _)| devices.iter().any(|dev| dev.name == *d))
        .map(|((_, factor), c)| crate::compute::Input {
            t: c.ts_ms.div_euclid(1000),
            factor: factor.as_str().into(),
            value: c.value,
            flag: c.flag,
        })
        .collect()
}

#[derive(Debug, Default)]
struct Inner {
    current: BTreeMap<(String, String), Current>,
    devices: BTreeMap<String, DeviceHealth>,
    samples_stored: u64,
    open_hours: BTreeMap<String, OpenHour>,
    links: BTreeMap<String, crate::uplink::LinkStatus>,
    clock_sync: Option<crate::clock::Sync>,
    /// Key parameters by (device, code, pol or "").
    params: BTreeMap<(String, String, String), ParamState>,
    /// A part of the pipeline is silent past its bound (the supervision's view).
    stalled: bool,
}

/// Shared live state. Cheap to update: one short lock per poll.
#[derive(Debug, Default)]
pub struct Live {
    inner: Mutex<Inner>,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding this lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one poll's samples and outcome.
    pub fn record_poll(&self, device: &str, samples: &[Sample], error: Option<String>) {
        let mut inner = self.lock();
        for s in samples {
            let entry = inner
                .current
                .entry((s.device.to_string(), s.factor.to_string()))
                .or_insert(Current { ts_ms: s.ts_ms, value: None, flag: s.flag, last_good: None });
            entry.ts_ms = s.ts_ms;
            entry.value = s.value;
            entry.flag = s.flag;
            if let (Flag::N, Some(v)) = (s.flag, s.value) {
                entry.last_good = Some((s.ts_ms, v));
            }
        }
        let health = inner.devices.entry(device.to_string()).or_default();
        health.polls += 1;
        health.not_polled = None;
        match error {
            Some(e) => {
                health.errors += 1;
                health.consecutive_failures += 1;
                health.last_error = Some(e);
                health.last_error_ms = samples.first().map(|s| s.ts_ms);
            }
            None => {
                health.consecutive_failures = 0;
                health.last_ok_ms = samples.first().map(|s| s.ts_ms);
            }
        }
    }

    /// Records a due slot that was not polled (`why`: the device is isolated, its bus is down):
    /// its samples (B, no value) without counting a request or replacing the last real error.
    pub fn record_skipped(&self, device: &str, samples: &[Sample], why: &str) {
        let mut inner = self.lock();
        for s in samples {
            if let Some(entry) = inner.current.get_mut(&(s.device.to_string(), s.factor.to_string())) {
                entry.ts_ms = s.ts_ms;
                entry.value = s.value;
                entry.flag = s.flag;
            } else {
                inner.current.insert(
                    (s.device.to_string(), s.factor.to_string()),
                    Current { ts_ms: s.ts_ms, value: s.value, flag: s.flag, last_good: None },
                );
            }
        }
        let health = inner.devices.entry(device.to_string()).or_default();
        health.consecutive_failures += 1;
        health.not_polled = Some(why.to_string());
    }

    pub fn add_stored(&self, n: u64) {
        self.lock().samples_stored += n;
    }

    pub fn samples_stored(&self) -> u64 {
        self.lock().samples_stored
    }

    /// Snapshot of all current values, keyed by (device, factor).
    pub fn current(&self) -> BTreeMap<(String, String), Current> {
        self.lock().current.clone()
    }

    pub fn devices(&self) -> BTreeMap<String, DeviceHealth> {
        self.lock().devices.clone()
    }

    pub fn set_open_hour(&self, outlet: &str, hour: OpenHour) {
        self.lock().open_hours.insert(outlet.to_string(), hour);
    }

    pub fn set_link(&self, name: &str, status: crate::uplink::LinkStatus) {
        self.lock().links.insert(name.to_string(), status);
    }

    /// The state of every platform link.
    pub fn links(&self) -> BTreeMap<String, crate::uplink::LinkStatus> {
        self.lock().links.clone()
    }

    /// What the kernel last said of the system clock (the supervision loop asks once a minute).
    pub fn set_clock_sync(&self, sync: crate::clock::Sync) {
        self.lock().clock_sync = Some(sync);
    }

    pub fn clock_sync(&self) -> Option<crate::clock::Sync> {
        self.lock().clock_sync
    }

    /// The open hour's running figures of every outlet.
    pub fn open_hours(&self) -> BTreeMap<String, OpenHour> {
        self.lock().open_hours.clone()
    }

    /// A parameter read: its value is current, not stale.
    pub fn set_parameter(
        &self,
        device: &str,
        code: &str,
        pol: Option<&str>,
        value: &str,
        number: Option<f64>,
        ts_ms: i64,
    ) {
        let mut inner = self.lock();
        let entry =
            inner.params.entry((device.into(), code.into(), pol.unwrap_or_default().into())).or_default();
        entry.value = Some(value.to_string());
        entry.number = number;
        entry.read_ms = Some(ts_ms);
        entry.stale = None;
    }

    /// A parameter read failed: the last value stays, marked stale since the first failure.
    pub fn parameter_failed(&self, device: &str, code: &str, pol: Option<&str>, why: &str, ts_ms: i64) {
        let mut inner = self.lock();
        let entry =
            inner.params.entry((device.into(), code.into(), pol.unwrap_or_default().into())).or_default();
        match &mut entry.stale {
            Some((_, reason)) => *reason = why.to_string(),
            None => entry.stale = Some((ts_ms, why.to_string())),
        }
    }

    /// Every parameter, keyed by (device, code, pol or "").
    pub fn parameters(&self) -> BTreeMap<(String, String, String), ParamState> {
        self.lock().params.clone()
    }

    /// What the supervision saw at its last tick: whether a part of the pipeline is stuck.
    pub fn set_stalled(&self, stalled: bool) {
        self.lock().stalled = stalled;
    }

    pub fn stalled(&self) -> bool {
        self.lock().stalled
    }
}
