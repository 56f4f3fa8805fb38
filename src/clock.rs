//! The wall clock and its discipline: where the gateway reads the time of day, whether the
//! kernel says that time is synchronised (NTP, chrony, an RTC), and the detection of steps.
//!
//! A Raspberry Pi has no battery-backed clock: after a power cut it boots with the time it
//! last saved, until chrony reaches a server. Samples carry the wall clock's time, so the
//! gateway must say when that clock cannot be trusted: [`discipline`] asks the kernel
//! (`adjtimex`, `STA_UNSYNC`), the supervision loop shows the answer (status page, `/metrics`,
//! `STATUS=`) and audits every change, and [`StepDetector`] notices the clock being stepped.
//! Heartbeats, deadlines and schedules never use this clock (see `lifecycle`): they run on the
//! monotonic one.
//!
//! Fault injection for tests: `CEMS_GATEWAY_FAULT=clock-step:SECONDS@AFTER` moves this
//! process's wall clock by `SECONDS` (signed) `AFTER` seconds after start, without touching the
//! system clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::time::Utc;

/// What the kernel says of the system clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Disciplined by a time source; the kernel's estimate of the largest error.
    Synchronised { max_error_ms: i64 },
    /// `STA_UNSYNC`: nothing disciplines the clock (no NTP reached since boot, no RTC).
    Unsynchronised,
    /// The kernel could not be asked (not Linux, or the call failed).
    Unknown,
}

impl Sync {
    pub fn is_synchronised(self) -> bool {
        matches!(self, Sync::Synchronised { .. })
    }

    /// One word for the page, `/metrics` labels and `STATUS=`.
    pub fn label(self) -> &'static str {
        match self {
            Sync::Synchronised { .. } => "synchronised",
            Sync::Unsynchronised => "unsynchronised",
            Sync::Unknown => "unknown",
        }
    }
}

/// `TIME_ERROR`: adjtimex's return value when the clock is not synchronised.
const TIME_ERROR: i32 = 5;
/// `STA_UNSYNC` in `timex.status`.
const STA_UNSYNC: i32 = 0x0040;

/// The clock's state from what `adjtimex` returned: its return value, `status` and
/// `maxerror` (µs). Pure.
pub fn classify(ret: i32, status: i32, max_error_us: i64) -> Sync {
    if ret < 0 {
        Sync::Unknown
    } else if ret == TIME_ERROR || status & STA_UNSYNC != 0 {
        Sync::Unsynchronised
    } else {
        Sync::Synchronised { max_error_ms: max_error_us.max(0) / 1000 }
    }
}

/// Asks the kernel whether the system clock is synchronised (read-only: `modes = 0`).
pub fn discipline() -> Sync {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: timex is plain old data (all-zero is valid); modes = 0 only reads the state.
        let mut t: libc::timex = unsafe { std::mem::zeroed() };
        let ret = unsafe { libc::adjtimex(&mut t) };
        classify(ret, t.status, t.maxerror as i64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Sync::Unknown
    }
}

/// Milliseconds added to the system clock by the fault hook (0 in normal operation).
static INJECTED_STEP_MS: AtomicI64 = AtomicI64::new(0);

/// The wall clock as this process sees it: the system clock (plus an injected step in tests).
pub fn now() -> Utc {
    let system = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Utc(system + INJECTED_STEP_MS.load(Ordering::Relaxed))
}

/// A step of the wall clock requested by `CEMS_GATEWAY_FAULT=clock-step:SECONDS@AFTER`.
pub fn injected_step() -> Option<(i64, Duration)> {
    let spec = std::env::var(crate::lifecycle::FAULT_ENV).ok()?;
    parse_step(spec.strip_prefix("clock-step:")?)
}

/// `+600@5` → (600,000 ms, 5 s). Pure.
fn parse_step(spec: &str) -> Option<(i64, Duration)> {
    let (step, after) = spec.split_once('@')?;
    let step: i64 = step.trim_start_matches('+').parse().ok()?;
    let after: u64 = after.parse().ok()?;
    Some((step.checked_mul(1000)?, Duration::from_secs(after)))
}

/// Milliseconds on the monotonic clock since the first call. Heartbeats, their bounds and the
/// step detector use it: a step of the wall clock can neither make a healthy part look stalled
/// nor hide a stuck one.
pub fn mono_ms() -> i64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed().as_millis() as i64
}

/// Applies an injected step now (the fault hook's timer calls this).
pub fn apply_injected_step(step_ms: i64) {
    INJECTED_STEP_MS.fetch_add(step_ms, Ordering::Relaxed);
}

/// Notices the wall clock being stepped by comparing how far it moved with how far the
/// monotonic clock moved between two observations. Pure: both readings are inputs.
#[derive(Debug, Clone, Copy)]
pub struct StepDetector {
    mono_ms: i64,
    wall_ms: i64,
}

impl StepDetector {
    /// A difference smaller than this is drift, slewing or scheduling, not a step.
    pub const STEP_MS: i64 = 2_000;

    pub fn new(mono_ms: i64, wall_ms: i64) -> StepDetector {
        StepDetector { mono_ms, wall_ms }
    }

    /// The step since the last observation (wall minus monotonic progress), if one happened.
    pub fn observe(&mut self, mono_ms: i64, wall_ms: i64) -> Option<i64> {
        let step = (wall_ms - self.wall_ms) - (mono_ms - self.mono_ms);
        (self.mono_ms, self.wall_ms) = (mono_ms, wall_ms);
        (step.abs() >= Self::STEP_MS).then_some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjtimex_answers_are_classified() {
        // TIME_OK (0) with STA_PLL: chrony disciplining the clock, 12 ms estimated error.
        assert_eq!(classify(0, 0x0001, 12_000), Sync::Synchronised { max_error_ms: 12 });
        // A freshly booted Pi without NTP: TIME_ERROR and STA_UNSYNC.
        assert_eq!(classify(5, 0x0040, 16_000_000), Sync::Unsynchronised);
        // STA_UNSYNC alone is enough; so is TIME_ERROR alone.
        assert_eq!(classify(0, 0x0041, 0), Sync::Unsynchronised);
        assert_eq!(classify(5, 0, 0), Sync::Unsynchronised);
        assert_eq!(classify(-1, 0, 0), Sync::Unknown);
        assert!(!Sync::Unsynchronised.is_synchronised());
    }

    #[test]
    fn steps_are_told_from_drift() {
        let mut d = StepDetector::new(0, 1_000_000);
        assert_eq!(d.observe(5_000, 1_005_100), None, "100 ms of drift over 5 s");
        assert_eq!(d.observe(10_000, 1_610_100), Some(600_000), "a 10 min step forward");
        assert_eq!(d.observe(15_000, 1_015_100), Some(-600_000), "and back");
        assert_eq!(d.observe(20_000, 1_020_100), None);
    }

    #[test]
    fn the_fault_hook_spec_is_parsed() {
        assert_eq!(parse_step("+600@5"), Some((600_000, Duration::from_secs(5))));
        assert_eq!(parse_step("-30@0"), Some((-30_000, Duration::ZERO)));
        assert_eq!(parse_step("600"), None);
        assert_eq!(parse_step("x@1"), None);
    }
}
