//! A simulated CEMS served over Modbus TCP and/or RTU, for the demo, tests and benchmarks.
//!
//! Register map (every float in the configured word order, ABCD by default):
//!
//! | slave | table   | address | value                                   | unit  |
//! |-------|---------|---------|-----------------------------------------|-------|
//! | 1     | holding | 0       | SO2 (a21026)                            | mg/m3 |
//! | 1     | holding | 2       | NOx as NO2 (a21002)                     | mg/m3 |
//! | 1     | holding | 4       | NO (a21003)                             | mg/m3 |
//! | 1     | holding | 6       | NO2 (a21004)                            | mg/m3 |
//! | 1     | holding | 8       | O2 (a19001)                             | %     |
//! | 1     | holding | 10      | CO (a21005)                             | mg/m3 |
//! | 2     | holding | 0       | particulate (a34013)                    | mg/m3 |
//! | 3     | input   | 0       | flue gas temperature (a01012)           | °C    |
//! | 3     | input   | 2       | flue gas static pressure (a01013)       | kPa   |
//! | 3     | input   | 4       | flue gas velocity (a01011)              | m/s   |
//! | 3     | input   | 6       | flue gas humidity (a01014)              | %     |
//! | 3     | input   | 8       | flue gas dynamic pressure (a01017)      | kPa   |
//! | 1–3   | holding | 20      | status u16: 0 run, 1 maintenance, 2 fault, 3 calibration | |
//! | 3     | holding | 21      | kiln / oven running u16: 1 running, 0 stopped | |
//! | 1     | holding | 100     | key parameters (HJ 212 table B.10): SO2 range 200 (i13001) at 100, NOx range 500 at 102, slope 1.0 (i13008) at 104, intercept 0.0 (i13007) at 106 as floats; last calibration time (i13006) as BCD `YYYY MMDD hhmm ss00` at 110 | |
//! | 10–247| holding | 0–124   | bench bank: 62 slowly varying floats    |       |
//!
//! Values drift slowly with noise around plausible ultra-low-emission levels. Scripted
//! [`Event`]s put an analyzer in calibration, maintenance or fault, make it fall silent
//! ("drop": no reply at all), or raise its concentrations above the ultra-low limits.

pub mod platform;
pub mod server;

use std::f64::consts::TAU;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::acquire::registers::{DataType, Table, WordOrder, encode};

pub use server::{serve_rtu, serve_tcp};

/// What a scripted event does to the analyzers it targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Calibration,
    Maintenance,
    Fault,
    /// No reply at all (power or cable lost).
    Drop,
    /// Concentrations well above the ultra-low limits.
    Exceed,
    /// The kiln / oven stops (production status 0).
    Stop,
}

impl EventKind {
    fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "calibration" => EventKind::Calibration,
            "maintenance" => EventKind::Maintenance,
            "fault" => EventKind::Fault,
            "drop" => EventKind::Drop,
            "exceed" => EventKind::Exceed,
            "stop" => EventKind::Stop,
            _ => return None,
        })
    }
}

/// One scripted event: `kind` from `start` for `duration`, on one slave or (None) all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub start: Duration,
    pub duration: Duration,
    pub slave: Option<u8>,
}

/// A script: events relative to the simulator's start, optionally repeating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub events: Vec<Event>,
    pub every: Option<Duration>,
}

impl Script {
    /// Parses `kind@start+duration[/slave],...[,every=period]`, e.g.
    /// `calibration@30s+20s/1,drop@60s+15s/2,exceed@90s+20s,every=2m`.
    pub fn parse(text: &str) -> Result<Script, String> {
        let mut script = Script::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(period) = item.strip_prefix("every=") {
                script.every = Some(humantime::parse_duration(period).map_err(|e| format!("{item}: {e}"))?);
                continue;
            }
            let (kind, rest) =
                item.split_once('@').ok_or_else(|| format!("{item}: expected kind@start+duration"))?;
            let kind = EventKind::parse(kind).ok_or_else(|| format!("{item}: unknown event kind {kind:?} (calibration, maintenance, fault, drop, exceed, stop)"))?;
            let (timing, slave) = match rest.split_once('/') {
                Some((t, s)) => (t, Some(s.parse::<u8>().map_err(|e| format!("{item}: slave: {e}"))?)),
                None => (rest, None),
            };
            let (start, duration) =
                timing.split_once('+').ok_or_else(|| format!("{item}: expected start+duration"))?;
            let start = humantime::parse_duration(start).map_err(|e| format!("{item}: start: {e}"))?;
            let duration =
                humantime::parse_duration(duration).map_err(|e| format!("{item}: duration: {e}"))?;
            script.events.push(Event { kind, start, duration, slave });
        }
        Ok(script)
    }

    /// The demo's script: every two minutes the gas analyzer calibrates, the dust meter drops
    /// off the line, and concentrations exceed the limits for a while.
    pub fn demo() -> Script {
        Script::parse("calibration@20s+15s/1,drop@45s+15s/2,exceed@75s+25s,every=2m")
            .expect("valid demo script")
    }

    fn active(&self, elapsed: Duration, slave: u8, kind: EventKind) -> bool {
        let t = match self.every {
            Some(p) if !p.is_zero() => Duration::from_nanos((elapsed.as_nanos() % p.as_nanos()) as u64),
            _ => elapsed,
        };
        self.events.iter().any(|e| {
            e.kind == kind && e.slave.is_none_or(|s| s == slave) && t >= e.start && t < e.start + e.duration
        })
    }
}

/// The simulated installation.
#[derive(Debug)]
pub struct Sim {
    started: Instant,
    order: WordOrder,
    script: Script,
    forced: Mutex<Vec<(u8, EventKind)>>,
}

/// Number of registers the bench bank of slaves 10–247 serves.
pub const BENCH_REGS: u16 = 125;

impl Sim {
    pub fn new(order: WordOrder, script: Script) -> Sim {
        Sim { started: Instant::now(), order, script, forced: Mutex::new(Vec::new()) }
    }

    /// Forces an event on a slave until [`Sim::clear`] (for tests and fault drills).
    pub fn force(&self, slave: u8, kind: EventKind) {
        self.forced.lock().unwrap_or_else(|e| e.into_inner()).push((slave, kind));
    }

    pub fn clear(&self) {
        self.forced.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// How long the simulator has been running: the time its script and drift follow.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn active(&self, slave: u8, kind: EventKind, at: Duration) -> bool {
        self.forced.lock().unwrap_or_else(|e| e.into_inner()).contains(&(slave, kind))
            || self.script.active(at, slave, kind)
    }

    /// Whether the slave answers at all right now.
    pub fn answers(&self, slave: u8) -> bool {
        self.answers_at(slave, self.elapsed())
    }

    /// Whether the slave answers at `at` after the start (a simulated past is read this way).
    pub fn answers_at(&self, slave: u8, at: Duration) -> bool {
        (1..=3).contains(&slave) && !self.active(slave, EventKind::Drop, at) || (10..=247).contains(&slave)
    }

    /// The slave's register image for one table, or `None` if it has no such table.
    pub fn registers(&self, slave: u8, table: Table) -> Option<Vec<u16>> {
        self.registers_at(slave, table, self.elapsed())
    }

    /// The register image at `at` after the start.
    pub fn registers_at(&self, slave: u8, table: Table, at: Duration) -> Option<Vec<u16>> {
        let t = at.as_secs_f64();
        let f = |v: f64| encode(v, DataType::F32, self.order);
        let mut regs: Vec<u16> = Vec::with_capacity(32);
        let drift = |period: f64, phase: f64| (TAU * t / period + phase).sin();
        let noise = |sd: f64| sd * ((0..4).map(|_| fastrand::f64()).sum::<f64>() - 2.0) * 1.732;
        let exceed = self.active(slave, EventKind::Exceed, at);
        let k = if exceed { 4.0 } else { 1.0 };
        match (slave, table) {
            (1, Table::Holding) => {
                let calibrating = self.active(1, EventKind::Calibration, at);
                let (so2, no, no2) = if calibrating {
                    (80.0 + noise(0.3), 60.0 + noise(0.3), 0.0)
                } else {
                    (
                        k * (18.0 + 4.0 * drift(600.0, 0.0)) + noise(0.8),
                        k / 2.0 * (22.0 + 3.0 * drift(900.0, 1.0)) + noise(0.6),
                        3.0 + noise(0.2),
                    )
                };
                let o2 = 10.8 + 0.3 * drift(300.0, 2.0) + noise(0.05);
                for v in [so2, no * 1.533 + no2, no, no2, o2, 60.0 + 8.0 * drift(450.0, 0.5) + noise(2.0)] {
                    regs.extend(f(v));
                }
            }
            (2, Table::Holding) => regs.extend(f(k * (4.0 + 0.8 * drift(700.0, 0.3)) + noise(0.3))),
            (3, Table::Input) => {
                for v in [
                    135.0 + 3.0 * drift(1200.0, 0.0) + noise(0.3),
                    -0.45 + noise(0.01),
                    14.2 + 0.5 * drift(800.0, 1.2) + noise(0.1),
                    9.5 + 0.5 * drift(1000.0, 0.7) + noise(0.05),
                    0.12 + noise(0.003),
                ] {
                    regs.extend(f(v));
                }
            }
            (3, Table::Holding) => {}
            (10..=247, Table::Holding) => {
                for i in 0..(BENCH_REGS / 2) {
                    regs.extend(f(f64::from(slave) + f64::from(i) / 100.0 + drift(60.0, f64::from(i))));
                }
                regs.push(0);
                return Some(regs);
            }
            _ => return None,
        }
        if table == Table::Holding {
            regs.resize(20, 0);
            let status = if self.active(slave, EventKind::Fault, at) {
                2
            } else if self.active(slave, EventKind::Calibration, at) {
                3
            } else if self.active(slave, EventKind::Maintenance, at) {
                1
            } else {
                0
            };
            regs.push(status);
            regs.push(u16::from(!self.active(slave, EventKind::Stop, at)));
            if slave == 1 {
                regs.resize(100, 0);
                for v in [200.0, 500.0, 1.0, 0.0] {
                    regs.extend(f(v));
                }
                regs.resize(110, 0);
                // 2026-12-01 08:00:00, as BCD.
                regs.extend([0x2026, 0x1201, 0x0800, 0x0000]);
            }
        }
        Some(regs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquire::registers::decode;

    #[test]
    fn script_parses_and_repeats() {
        let s = Script::parse("calibration@20s+15s/1, exceed@1m+10s, every=2m").unwrap();
        assert_eq!(s.events.len(), 2);
        assert_eq!(
            s.events[0],
            Event {
                kind: EventKind::Calibration,
                start: Duration::from_secs(20),
                duration: Duration::from_secs(15),
                slave: Some(1)
            }
        );
        assert!(s.active(Duration::from_secs(25), 1, EventKind::Calibration));
        assert!(!s.active(Duration::from_secs(25), 2, EventKind::Calibration));
        assert!(s.active(Duration::from_secs(145), 1, EventKind::Calibration), "repeats every 2 minutes");
        assert!(s.active(Duration::from_secs(65), 3, EventKind::Exceed));
        assert!(Script::parse("melt@1s+1s").unwrap_err().contains("unknown event kind"));
    }

    #[tokio::test]
    async fn exceed_and_calibration_show_in_the_registers() {
        let sim = Sim::new(WordOrder::Cdab, Script::default());
        let so2 = |sim: &Sim| {
            decode(&sim.registers(1, Table::Holding).unwrap()[0..2], DataType::F32, WordOrder::Cdab).unwrap()
        };
        let normal = so2(&sim);
        assert!((5.0..35.0).contains(&normal), "{normal}");
        sim.force(1, EventKind::Exceed);
        assert!(so2(&sim) > 35.0);
        sim.clear();
        sim.force(1, EventKind::Calibration);
        assert_eq!(sim.registers(1, Table::Holding).unwrap()[20], 3);
        sim.force(1, EventKind::Drop);
        assert!(!sim.answers(1));
        assert!(sim.answers(2));
    }
}
