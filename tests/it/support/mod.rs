//! Shared test peers: an RTU analyzer on a real pty with injectable faults, a raw Modbus TCP
//! server with injectable faults, config helpers, an audit test's buffer, and (in `gateway`) a
//! gateway with a seeded store for the status page.

#![allow(dead_code)]

pub mod gateway;
pub mod platform;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cems_gateway::acquire::registers::{DataType, WordOrder, encode};
use cems_gateway::compute::stats::Stat;
use cems_gateway::compute::{Level, Record};
use cems_gateway::config::{Config, validate};
use cems_gateway::model::{Flag, now_ms};
use cems_gateway::store::Store;
use cems_gateway::store::outbox::Outbox;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};

pub const MODBUS_CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

/// Parses a config text, panicking with every problem if it is invalid.
pub fn config(text: &str) -> Config {
    validate::parse(text, Path::new("/tmp")).unwrap_or_else(|errs| {
        panic!("test config invalid:\n{}", errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
    })
}

/// A config with one bus (`bus_toml` is the body of its `[[bus]]` table) and one gas device on
/// slave 1: SO2 f32 CDAB at 0 (range 200), O2 f32 CDAB at 2, status u16 at 4 (3 = C, 2 = D).
pub fn one_device_config(bus_toml: &str, db: &Path) -> Config {
    config(&format!(
        r#"
[site]
mn = "TEST0001"
pw = "123456"
[storage]
path = "{}"
[[bus]]
name = "b"
{bus_toml}
[[device]]
name = "gas"
bus = "b"
slave = 1
poll_interval_s = 0.2
  [[device.status]]
  address = 4
  type = "u16"
  map = {{ 2 = "D", 3 = "C" }}
  [[device.point]]
  factor = "a21026"
  address = 0
  type = "f32"
  word_order = "CDAB"
  range_max = 200.0
  [[device.point]]
  factor = "a19001"
  address = 2
  type = "f32"
  word_order = "CDAB"
"#,
        db.display()
    ))
}

/// The register image the fault peers serve: SO2, O2 and a status word.
pub fn image(so2: f64, o2: f64, status: u16) -> Vec<u16> {
    let mut r = encode(so2, DataType::F32, WordOrder::Cdab);
    r.extend(encode(o2, DataType::F32, WordOrder::Cdab));
    r.push(status);
    r.resize(16, 0);
    r
}

/// How the pty analyzer answers the next requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    Normal,
    Silent,
    /// Random bytes, then a correct reply.
    GarbageThenGood,
    /// Only garbage.
    Garbage,
    BadCrc,
    Exception(u8),
    WrongSlave,
    /// The first half of the reply, then nothing.
    Partial,
}

pub struct PeerState {
    pub behaviour: Behaviour,
    pub regs: Vec<u16>,
    pub requests: u32,
}

/// A Modbus RTU analyzer (slave 1) on the master side of a real pty; the gateway opens the
/// slave side by path.
pub struct RtuPeer {
    pub path: PathBuf,
    pub state: Arc<Mutex<PeerState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn crc_frame(mut body: Vec<u8>) -> Vec<u8> {
    let crc = MODBUS_CRC.checksum(&body);
    body.extend(crc.to_le_bytes());
    body
}

/// The reply to an FC03/FC04 request from `regs`.
pub fn rtu_reply(slave: u8, fc: u8, regs: &[u16], start: u16, count: u16) -> Vec<u8> {
    let mut body = vec![slave, fc, (count * 2) as u8];
    for r in &regs[usize::from(start)..usize::from(start + count)] {
        body.extend(r.to_be_bytes());
    }
    crc_frame(body)
}

impl RtuPeer {
    pub fn start(regs: Vec<u16>) -> RtuPeer {
        let state = Arc::new(Mutex::new(PeerState { behaviour: Behaviour::Normal, regs, requests: 0 }));
        Self::start_with(state)
    }

    pub fn start_with(state: Arc<Mutex<PeerState>>) -> RtuPeer {
        let pty = openpty(None, None).expect("openpty");
        for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
            let mut t = tcgetattr(fd).expect("tcgetattr");
            cfmakeraw(&mut t);
            tcsetattr(fd, SetArg::TCSANOW, &t).expect("tcsetattr");
        }
        let path = nix::unistd::ttyname(pty.slave.as_fd()).expect("ttyname");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || serve(pty.master, pty.slave, state, stop))
        };
        RtuPeer { path, state, stop, thread: Some(thread) }
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour = behaviour;
    }

    pub fn set_regs(&self, regs: Vec<u16>) {
        self.state.lock().unwrap().regs = regs;
    }

    pub fn requests(&self) -> u32 {
        self.state.lock().unwrap().requests
    }

    /// Closes both ends of the pty: the cable is pulled.
    pub fn unplug(mut self) -> Arc<Mutex<PeerState>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.state.clone()
    }
}

impl Drop for RtuPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(master: OwnedFd, slave: OwnedFd, state: Arc<Mutex<PeerState>>, stop: Arc<AtomicBool>) {
    let mut file = std::fs::File::from(master);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(20u16)).unwrap_or(0) == 0 {
            continue;
        }
        let n = match file.read(&mut buf) {
            Ok(0) | Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Ok(n) => n,
        };
        pending.extend(&buf[..n]);
        // Requests are 8 bytes: slave, fc, start, count, crc.
        while pending.len() >= 8 {
            let frame: Vec<u8> = pending.drain(..8).collect();
            if MODBUS_CRC.checksum(&frame[..6]).to_le_bytes() != [frame[6], frame[7]] {
                pending.clear();
                break;
            }
            let (slave, fc) = (frame[0], frame[1]);
            let start = u16::from_be_bytes([frame[2], frame[3]]);
            let count = u16::from_be_bytes([frame[4], frame[5]]);
            let (behaviour, reply) = {
                let mut s = state.lock().unwrap();
                s.requests += 1;
                let end = usize::from(start) + usize::from(count);
                let reply = if end <= s.regs.len() {
                    rtu_reply(slave, fc, &s.regs, start, count)
                } else {
                    crc_frame(vec![slave, fc | 0x80, 2])
                };
                (s.behaviour.clone(), reply)
            };
            let garbage: Vec<u8> = (0..23).map(|i| (i * 37 + 11) as u8).collect();
            let out: Vec<u8> = match behaviour {
                Behaviour::Normal => reply,
                Behaviour::Silent => continue,
                Behaviour::GarbageThenGood => [garbage, reply].concat(),
                Behaviour::Garbage => garbage,
                Behaviour::BadCrc => {
                    let mut r = reply;
                    let last = r.len() - 1;
                    r[last] ^= 0xFF;
                    r
                }
                Behaviour::Exception(code) => crc_frame(vec![slave, fc | 0x80, code]),
                Behaviour::WrongSlave => {
                    let mut body = reply[..reply.len() - 2].to_vec();
                    body[0] = slave.wrapping_add(1);
                    crc_frame(body)
                }
                Behaviour::Partial => reply[..reply.len() / 2].to_vec(),
            };
            let _ = file.write_all(&out);
        }
    }
    drop(slave);
}

/// A symlink that can be re-pointed, standing for a stable device name such as
/// `/dev/serial/by-id/...` across unplug and replug.
pub fn repoint(link: &Path, target: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// Polls `check` until it returns true or `within` passes.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// An hour record with min/max around `avg`, converted 10 % higher, flag N, limit 35.
pub fn hour_record(start_local: i64, factor: &str, avg: f64) -> Record {
    record(Level::Hour, start_local, factor, avg)
}

/// A record of `level` with min/max around `avg`, converted 10 % higher, flag N, limit 35.
pub fn record(level: Level, start_local: i64, factor: &str, avg: f64) -> Record {
    Record {
        level,
        start: start_local,
        factor: factor.into(),
        stat: Stat {
            n_total: 60,
            n_valid: 60,
            min: Some(avg - 1.0),
            avg: Some(avg),
            max: Some(avg + 1.0),
            zs_min: Some((avg - 1.0) * 1.1),
            zs_avg: Some(avg * 1.1),
            zs_max: Some((avg + 1.0) * 1.1),
            cou: None,
            flag: Flag::N,
            valid: true,
        },
        limit: Some(35.0),
        exceeded: false,
    }
}

/// Hour records for the last `n` closed hours (local time +8 h), values 10, 11, ….
pub fn store_with_hours(db: &std::path::Path, n: i64) -> (Arc<Mutex<Store>>, Vec<i64>) {
    let (mut store, _) = Store::open(db).unwrap();
    let now_local = now_ms() / 1000 + 8 * 3600;
    let this_hour = now_local - now_local.rem_euclid(3600);
    let starts: Vec<i64> = (1..=n).rev().map(|k| this_hour - k * 3600).collect();
    let records: Vec<Record> = starts
        .iter()
        .enumerate()
        .flat_map(|(i, s)| [hour_record(*s, "a21026", 10.0 + i as f64), hour_record(*s, "a19001", 9.0)])
        .collect();
    store.upsert_records("kiln", &records, 8 * 3600).unwrap();
    (Arc::new(Mutex::new(Store::open_secondary(db).unwrap())), starts)
}

/// One outlet `kiln` (cement-kiln profile, its NOx and PM limits not applied: nothing measures
/// them) with one gas analyzer (SO2 and O2) on an unreachable TCP bus, the store at `db`, site
/// MN `mn`, and `rest` appended (the `[[uplink]]` sections).
pub fn kiln_config(db: &Path, mn: &str, rest: &str) -> Config {
    config(&format!(
        r#"
[site]
mn = "{mn}"
pw = "123456"
[storage]
path = "{}"
[[bus]]
name = "b"
kind = "tcp"
address = "127.0.0.1:1"
[[outlet]]
name = "kiln"
profile = "cement-kiln"
unlimited = ["a21002", "a34013"]
[[device]]
name = "gas"
bus = "b"
slave = 1
outlet = "kiln"
  [[device.point]]
  factor = "a21026"
  address = 0
  type = "f32"
  [[device.point]]
  factor = "a19001"
  address = 2
  type = "f32"
{rest}"#,
        db.display()
    ))
}

/// An outbox over the buffer at `db` (its own connection and thread, as the daemon has): what
/// the links take their periods from. The thread ends once every handle is dropped.
pub fn outbox(db: &Path) -> Outbox {
    Outbox::spawn(Store::open_secondary(db).unwrap()).0
}

/// An audit test's buffer: ten minutes and an hour of two factors of outlet `kiln`, from
/// 2026-01-01 08:00 plant time (00:00 UTC), and a configuration naming it.
pub fn audit_buffer(dir: &Path) -> (PathBuf, PathBuf) {
    let db = dir.join("a.db");
    let (mut store, _) = Store::open(&db).unwrap();
    let base = 1_767_225_600 + 8 * 3600;
    let mut records = Vec::new();
    for i in 0..10 {
        for (factor, v) in [("a21026", 10.0), ("a21002", 30.0)] {
            records.push(record(Level::Minute, base + i * 60, factor, v + i as f64));
        }
    }
    store.upsert_records("kiln", &records, 8 * 3600).unwrap();
    store.upsert_records("kiln", &[record(Level::Hour, base, "a21026", 14.5)], 8 * 3600).unwrap();
    let cfg = dir.join("gw.toml");
    let text = cems_gateway::config::DEMO_CONFIG
        .replace("path = \"cems-demo.db\"", &format!("path = \"{}\"", db.display()));
    std::fs::write(&cfg, text).unwrap();
    (db, cfg)
}

/// `cems-gateway verify --config CFG`: (exit code, stdout).
pub fn verify(cfg: &Path) -> (i32, String) {
    verify_with(&["--config".as_ref(), cfg.as_os_str()])
}

/// `cems-gateway verify ARGS`: (exit code, stdout).
pub fn verify_with(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The log lines written on this thread while it lives (a test's own subscriber).
pub struct Logs {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }

    /// How many lines carry `message`.
    pub fn count(&self, message: &str) -> usize {
        self.text().lines().filter(|l| l.contains(message)).count()
    }
}

/// Captures the log lines (DEBUG and up, without colours) written on this thread from now on.
pub fn capture_logs() -> Logs {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    Logs { buffer, _guard: tracing::subscriber::set_default(subscriber) }
}
