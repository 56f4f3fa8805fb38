//! RS-485 at the wire's limit (`cargo bench --bench rs485`).
//!
//! A pty ignores baud rates, so the analyzers' side paces itself like a 9600 8N1 line: a request
//! the gateway writes is taken to end 8 characters (1.04 ms each) after it began, the analyzer
//! answers after a 3.5-character silence plus its turnaround, and the reply's bytes arrive one
//! character time apart. The gateway's real bus task (scheduler, link, Modbus RTU codec, the
//! 3.5-character silence it keeps after each reply) polls the devices back to back over the
//! pty, and the registers it reads per second, counted on its side from the polls it
//! delivers, are set against what the line allows for the same requests:
//! `cycle(N) = (8 + 5 + 2N) characters + 2 × t3.5 + turnaround` per request (DOMAIN.md §4.3).
//!
//! Buses: the demo's (gas analyzer, dust meter, flue probe: 5 requests a round) and ten
//! analyzers of 8 floats and a status word each. Turnarounds: 0, 20 and 50 ms
//! (`RS485_TURNAROUND_MS` for one value). For each device the plan's request count is set
//! against the fewest-line-time plan (a dynamic programme over the same registers).
//! `RS485_SECS` (20) is the window per case. The peer reports how late its last byte went out
//! on average: on a loaded machine that, not the gateway, can cost throughput.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cems_gateway::acquire::registers::{MAX_REGS_PER_READ, RegisterRef, Table};
use cems_gateway::acquire::{BusTask, DevicePlan};
use cems_gateway::config::{Config, PointSource, validate};
use cems_gateway::live::Live;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);
/// 9600 baud, 8N1: 10 bits a character.
const CHAR: Duration = Duration::from_nanos(10 * 1_000_000_000 / 9600);

fn t35() -> Duration {
    CHAR * 7 / 2
}

/// Line time of one request of `n` registers.
fn cycle(n: u16, turnaround: Duration) -> Duration {
    CHAR * (13 + 2 * u32::from(n)) + t35() * 2 + turnaround
}

#[derive(Default)]
struct PeerStats {
    requests: AtomicU64,
    /// Sum of how late each reply's last byte went out, in µs.
    late_us: AtomicU64,
    /// Requests that began less than t3.5 after the previous reply ended.
    too_early: AtomicU64,
    /// Sum of the silences before requests (from the end of the previous reply), in µs.
    silence_us: AtomicU64,
}

/// Sleeps until `deadline` (absolute, so lateness never accumulates).
fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// The analyzers on the master side of the pty: every slave answers FC03/FC04 for any
/// register with the register's address, paced like the line.
fn peer(master: OwnedFd, turnaround: Duration, stats: Arc<PeerStats>, stop: Arc<AtomicBool>) {
    let mut file = std::fs::File::from(master);
    let mut pending: Vec<u8> = Vec::new();
    let mut first_at: Option<Instant> = None;
    let mut line_free_at = Instant::now() - Duration::from_secs(1);
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(20u16)).unwrap_or(0) == 0 {
            continue;
        }
        let n = match file.read(&mut buf) {
            Ok(0) | Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Ok(n) => n,
        };
        let now = Instant::now();
        if pending.is_empty() {
            first_at = Some(now);
            if now < line_free_at + t35() {
                stats.too_early.fetch_add(1, Ordering::Relaxed);
            }
            let silence = now.saturating_duration_since(line_free_at).min(Duration::from_millis(100));
            stats.silence_us.fetch_add(silence.as_micros() as u64, Ordering::Relaxed);
        }
        pending.extend(&buf[..n]);
        while pending.len() >= 8 {
            let frame: Vec<u8> = pending.drain(..8).collect();
            if CRC.checksum(&frame[..6]).to_le_bytes() != [frame[6], frame[7]] {
                pending.clear();
                break;
            }
            let (slave, fc) = (frame[0], frame[1]);
            let start = u16::from_be_bytes([frame[2], frame[3]]);
            let count = u16::from_be_bytes([frame[4], frame[5]]);
            let mut reply = vec![slave, fc, (count * 2) as u8];
            for a in start..start.saturating_add(count) {
                reply.extend(a.to_be_bytes());
            }
            let crc = CRC.checksum(&reply);
            reply.extend(crc.to_le_bytes());
            // The request ended 8 characters after its first byte; the analyzer waits for
            // t3.5 of silence, turns around, and sends a character at a time.
            let began = first_at.take().unwrap_or(now);
            let reply_start = began + CHAR * 8 + t35() + turnaround;
            for (k, byte) in reply.iter().enumerate() {
                sleep_until(reply_start + CHAR * (k as u32 + 1));
                let _ = file.write_all(&[*byte]);
            }
            line_free_at = reply_start + CHAR * reply.len() as u32;
            let late = Instant::now().saturating_duration_since(line_free_at);
            stats.late_us.fetch_add(late.as_micros() as u64, Ordering::Relaxed);
            stats.requests.fetch_add(1, Ordering::Relaxed);
            if !pending.is_empty() {
                first_at = Some(Instant::now());
            }
        }
    }
}

fn config(path: &str, devices: &str) -> Config {
    let text = format!(
        "[site]\nmn = \"RS485\"\npw = \"123456\"\n[storage]\npath = \"/tmp/rs485.db\"\n\
         [[bus]]\nname = \"line\"\nkind = \"rtu\"\npath = \"{path}\"\nbaud = 9600\nparity = \"none\"\nstop_bits = 1\ntimeout_ms = 1000\n{devices}"
    );
    validate::parse(&text, std::path::Path::new("/tmp")).expect("bench config")
}

/// The demo's bus: its three devices as `config/demo.toml` has them, polled back to back.
fn demo_devices() -> String {
    let demo = cems_gateway::config::DEMO_CONFIG;
    let from = demo.find("[[device]]").expect("devices in the demo");
    demo[from..]
        .replace("bus = \"sim\"", "bus = \"line\"")
        .replace("poll_interval_s = 2", "poll_interval_s = 0.1")
        .replace("outlet = \"kiln-tail\"\n", "")
}

/// Ten analyzers of 8 floats at 0–15 and a status word at 20.
fn ten_devices() -> String {
    let mut text = String::new();
    for d in 1..=10 {
        text += &format!("[[device]]\nname = \"a{d}\"\nbus = \"line\"\nslave = {d}\npoll_interval_s = 0.1\n");
        text +=
            "[[device.status]]\naddress = 20\ntype = \"u16\"\nmap = { 1 = \"M\", 2 = \"D\", 3 = \"C\" }\n";
        for p in 0..8 {
            text +=
                &format!("[[device.point]]\nfactor = \"p{d:02}{p}\"\naddress = {}\ntype = \"f32\"\n", p * 2);
        }
    }
    text
}

/// The fewest-line-time split of one device's registers into requests: (requests, line time).
fn optimum(regs: &[RegisterRef], turnaround: Duration) -> (usize, Duration) {
    let mut spans: Vec<(Table, u32, u32)> =
        regs.iter().map(|r| (r.table, u32::from(r.address), r.end())).collect();
    spans.sort();
    // best[i]: (time, requests) for the first i spans; a request covers spans j..i.
    let mut best: Vec<(Duration, usize)> = vec![(Duration::ZERO, 0)];
    for i in 1..=spans.len() {
        let mut choice = (Duration::MAX, 0);
        for j in (0..i).rev() {
            if spans[j].0 != spans[i - 1].0 {
                break;
            }
            let end = spans[j..i].iter().map(|s| s.2).max().expect("not empty");
            let n = end - spans[j].1;
            if n > u32::from(MAX_REGS_PER_READ) {
                break;
            }
            let t = best[j].0 + cycle(n as u16, turnaround);
            if t < choice.0 {
                choice = (t, best[j].1 + 1);
            }
        }
        best.push(choice);
    }
    let (t, n) = best[spans.len()];
    (n, t)
}

fn registers_of(device: &cems_gateway::config::Device) -> Vec<RegisterRef> {
    let mut regs: Vec<RegisterRef> = device
        .points
        .iter()
        .filter_map(|p| match &p.source {
            PointSource::Register(r) => Some(*r),
            _ => None,
        })
        .collect();
    regs.extend(device.status.iter().map(|s| s.register));
    regs
}

fn run_case(name: &str, devices: &str, turnaround: Duration, secs: u64) {
    let pty = openpty(None, None).expect("openpty");
    for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
        let mut t = tcgetattr(fd).expect("tcgetattr");
        cfmakeraw(&mut t);
        tcsetattr(fd, SetArg::TCSANOW, &t).expect("tcsetattr");
    }
    let path = nix::unistd::ttyname(pty.slave.as_fd()).expect("ttyname");
    let cfg = config(&path.display().to_string(), devices);
    let stats = Arc::new(PeerStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let peer_thread = {
        let (stats, stop) = (stats.clone(), stop.clone());
        std::thread::spawn(move || peer(pty.master, turnaround, stats, stop))
    };
    let plans: Vec<DevicePlan> = cfg.devices.iter().map(|d| DevicePlan::new(d.clone())).collect();
    // One round of the plan on the line, and the same for the fewest-line-time plan.
    let (mut round, mut regs_round, mut requests) = (Duration::ZERO, 0u64, 0usize);
    let (mut best_round, mut best_requests) = (Duration::ZERO, 0usize);
    for (p, d) in plans.iter().zip(&cfg.devices) {
        for b in &p.blocks {
            round += cycle(b.count, turnaround);
            regs_round += u64::from(b.count);
        }
        requests += p.blocks.len();
        let (n, t) = optimum(&registers_of(d), turnaround);
        best_requests += n;
        best_round += t;
    }
    let regs_of: Vec<u64> = plans.iter().map(|p| p.blocks.iter().map(|b| u64::from(b.count)).sum()).collect();
    let line_of: Vec<Duration> =
        plans.iter().map(|p| p.blocks.iter().map(|b| cycle(b.count, turnaround)).sum()).collect();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (polls, registers, line, elapsed) = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let task = BusTask::new(cfg.buses[0].clone(), plans, tx, Arc::new(Live::default()));
        let handle = tokio::spawn(task.run(shutdown_rx));
        // Warm-up: the port opened and a few rounds done.
        let warm = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::timeout_at(warm, rx.recv()).await.is_ok() {}
        // Counted from the first poll delivered in the window to the last: the registers of
        // the polls after the first, over the time between them.
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        let (mut polls, mut registers, mut line) = (0u64, 0u64, Duration::ZERO);
        let (mut first, mut last) = (None, None);
        while let Ok(Some(samples)) = tokio::time::timeout_at(until, rx.recv()).await {
            let device = samples.first().map(|s| s.device.clone());
            if samples.iter().any(|s| s.flag == cems_gateway::model::Flag::B) {
                continue;
            }
            let Some(i) = device.and_then(|d| cfg.devices.iter().position(|c| *c.name == *d)) else {
                continue;
            };
            let now = tokio::time::Instant::now();
            if first.is_none() {
                first = Some(now);
                continue;
            }
            last = Some(now);
            polls += 1;
            registers += regs_of[i];
            line += line_of[i];
        }
        let elapsed = last.zip(first).map_or(Duration::ZERO, |(l, f)| l - f);
        let _ = shutdown.send(true);
        let _ = handle.await;
        (polls, registers, line, elapsed)
    });
    stop.store(true, Ordering::Relaxed);
    let _ = peer_thread.join();
    drop(pty.slave);
    // What the line allows for the same polls: their registers over their line time.
    let achieved = registers as f64 / elapsed.as_secs_f64();
    let limit = registers as f64 / line.as_secs_f64();
    let served = stats.requests.load(Ordering::Relaxed).max(1);
    println!(
        "  {name:<12} turnaround {:>2} ms: {achieved:>6.1} registers/s of {limit:>6.1} the line allows = {:.3}; \
         {polls} polls ({regs_round} registers a round); plan {requests} requests a round ({:.1} ms of line), \
         fewest-time plan {best_requests} ({:.1} ms); silence before a request {:.2} ms on average (t3.5 = {:.2} ms); \
         peer: last byte {:.0} µs late on average, {} requests too early",
        turnaround.as_millis(),
        achieved / limit,
        round.as_secs_f64() * 1000.0,
        best_round.as_secs_f64() * 1000.0,
        stats.silence_us.load(Ordering::Relaxed) as f64 / served as f64 / 1000.0,
        t35().as_secs_f64() * 1000.0,
        stats.late_us.load(Ordering::Relaxed) as f64 / served as f64,
        stats.too_early.load(Ordering::Relaxed)
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = std::env::var("RS485_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let turnarounds: Vec<u64> = match std::env::var("RS485_TURNAROUND_MS").ok().and_then(|v| v.parse().ok()) {
        Some(ms) => vec![ms],
        None => vec![0, 20, 50],
    };
    println!("RS-485 at 9600 8N1 over a paced pty, {secs} s per case:");
    for ms in turnarounds {
        let turnaround = Duration::from_millis(ms);
        run_case("demo bus", &demo_devices(), turnaround, secs);
        run_case("10 analyzers", &ten_devices(), turnaround, secs);
    }
}
