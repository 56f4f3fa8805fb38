//! The daemon as systemd runs it: the real binary with `NOTIFY_SOCKET` on a test datagram
//! socket; READY, STATUS and periodic WATCHDOG; the pings stop when a bus task is wedged;
//! SIGTERM flushes what is buffered; SIGHUP applies a changed configuration.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cems_gateway::sim::{self, Script, Sim};

/// A simulator on its own runtime thread, for tests that drive the binary synchronously.
fn start_sim() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().to_string()).unwrap();
            let _ = sim::serve_tcp(listener, Arc::new(Sim::new(Default::default(), Script::default()))).await;
        });
    });
    rx.recv().unwrap()
}

fn write_config(dir: &Path, address: &str, poll_s: f64, flush_ms: u32) -> PathBuf {
    let text = cems_gateway::config::DEMO_CONFIG
        .replace("127.0.0.1:1502", address)
        .replace("path = \"cems-demo.db\"", &format!("path = \"{}\"", dir.join("gw.db").display()))
        .replace("poll_interval_s = 2", &format!("poll_interval_s = {poll_s}"))
        .replace("flush_ms = 1000", &format!("flush_ms = {flush_ms}"));
    let path = dir.join("gw.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &Path, env: &[(&str, &str)]) -> Daemon {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cems-gateway"));
    cmd.args(["run", "--config"]).arg(config).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Daemon(cmd.spawn().unwrap())
}

fn signal(daemon: &Daemon, sig: i32) {
    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(daemon.0.id() as i32, sig) }, 0);
}

fn count(db: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM sample", [], |r| r.get(0)))
        .unwrap_or(0)
}

/// Collects the notifications of one daemon, with their arrival time.
fn listen(socket: UnixDatagram, for_: Duration) -> Vec<(Duration, String)> {
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < for_ {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push((start.elapsed(), String::from_utf8_lossy(&buf[..n]).to_string()));
        }
    }
    got
}

#[test]
fn ready_status_and_watchdog_and_no_pings_when_a_bus_is_wedged() {
    let run = |fault: Option<&'static str>| {
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().unwrap();
            let address = start_sim();
            let config = write_config(dir.path(), &address, 0.2, 200);
            let sock_path = dir.path().join("notify.sock");
            let socket = UnixDatagram::bind(&sock_path).unwrap();
            let mut env = vec![
                ("NOTIFY_SOCKET", sock_path.to_str().unwrap().to_string()),
                ("WATCHDOG_USEC", "2000000".to_string()),
            ];
            if let Some(f) = fault {
                env.push(("CEMS_GATEWAY_FAULT", f.to_string()));
            }
            let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let _daemon = spawn(&config, &env_ref);
            listen(socket, Duration::from_secs(16))
        })
    };
    let healthy = run(None);
    let wedged = run(Some("stall-bus:sim"));
    let healthy = healthy.join().unwrap();
    let wedged = wedged.join().unwrap();

    for msgs in [&healthy, &wedged] {
        let first = &msgs.first().expect("notifications arrive").1;
        assert!(first.contains("READY=1"), "READY first: {first}");
        assert!(first.contains("STATUS=polling 3 devices on 1 bus;"), "{first}");
    }
    let pings = |msgs: &[(Duration, String)]| -> Vec<Duration> {
        msgs.iter().filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1")).map(|(t, _)| *t).collect()
    };
    // Healthy: a ping every second (half of WATCHDOG_USEC) for the whole run.
    let h = pings(&healthy);
    assert!(h.len() >= 12, "healthy pings: {h:?}");
    assert!(*h.last().unwrap() > Duration::from_secs(14), "{h:?}");
    assert!(healthy.iter().any(|(_, m)| m.contains("samples stored") && !m.contains("; 0 samples stored")));
    // Wedged after its first poll: pings until the bus's silence bound (~11 s) runs out, then none.
    let w = pings(&wedged);
    assert!(!w.is_empty(), "pings before the stall is detected");
    assert!(*w.last().unwrap() < Duration::from_secs(14), "pings continued: {w:?}");
    assert!(wedged.iter().any(|(_, m)| m.contains("STATUS=STUCK: bus sim")), "{wedged:?}");
}

#[test]
fn sigterm_flushes_buffered_samples() {
    let dir = tempfile::tempdir().unwrap();
    let address = start_sim();
    // Batches commit after 60 s, or once a page's worth (150 samples) has gathered, which 13
    // points a second take over 11 s: whatever is stored at exit was flushed by the stop.
    let config = write_config(dir.path(), &address, 1.0, 60_000);
    let mut daemon = spawn(&config, &[]);
    std::thread::sleep(Duration::from_secs(3));
    let db = dir.path().join("gw.db");
    assert_eq!(count(&db), 0, "nothing committed yet");
    signal(&daemon, libc::SIGTERM);
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let stored = count(&db);
    // 3 s at 1 s: at least two polls (three or four unless start-up was slow) of 3 devices
    // with 6 + 1 + 6 points.
    assert!(stored >= 26, "only {stored} samples after SIGTERM");
}

#[test]
fn sighup_applies_a_changed_poll_interval_and_keeps_running_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let address = start_sim();
    let config = write_config(dir.path(), &address, 1.0, 100);
    let db = dir.path().join("gw.db");
    let daemon = spawn(&config, &[]);
    let rate = |secs: u64| {
        let before = count(&db);
        std::thread::sleep(Duration::from_secs(secs));
        (count(&db) - before) as f64 / secs as f64
    };
    std::thread::sleep(Duration::from_secs(2));
    let slow = rate(3);
    write_config(dir.path(), &address, 0.1, 100);
    signal(&daemon, libc::SIGHUP);
    std::thread::sleep(Duration::from_secs(2));
    let fast = rate(3);
    assert!(fast > 4.0 * slow, "poll interval 1 s → 0.1 s: {slow:.1}/s → {fast:.1}/s");

    std::fs::write(&config, "[site]\nmn = \"broken\"\n").unwrap();
    signal(&daemon, libc::SIGHUP);
    std::thread::sleep(Duration::from_secs(1));
    let still = rate(2);
    assert!(still > 4.0 * slow, "an invalid configuration keeps the running one: {still:.1}/s");
}

#[test]
fn a_wall_clock_step_starves_no_watchdog_and_is_audited() {
    // The daemon's wall clock jumps 10 minutes forward 4 s after start (fault hook; the system
    // clock is not touched). Heartbeats run on the monotonic clock, so every part still looks
    // alive: the pings go on, no STUCK status, and the step is in the audit log.
    let dir = tempfile::tempdir().unwrap();
    let address = start_sim();
    let config = write_config(dir.path(), &address, 0.2, 200);
    let sock_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&sock_path).unwrap();
    let daemon = spawn(
        &config,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
            ("CEMS_GATEWAY_FAULT", "clock-step:+600@4"),
        ],
    );
    let msgs = listen(socket, Duration::from_secs(14));
    drop(daemon);
    let pings: Vec<Duration> =
        msgs.iter().filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1")).map(|(t, _)| *t).collect();
    assert!(
        pings.iter().filter(|t| **t > Duration::from_secs(6)).count() >= 5,
        "pings after the step: {pings:?}"
    );
    assert!(*pings.last().unwrap() > Duration::from_secs(12), "{pings:?}");
    assert!(!msgs.iter().any(|(_, m)| m.contains("STATUS=STUCK")), "{msgs:?}");
    let steps: Vec<String> = rusqlite::Connection::open_with_flags(
        dir.path().join("gw.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
    .prepare("SELECT detail FROM audit WHERE kind = 'clock' AND detail LIKE 'system clock stepped%'")
    .unwrap()
    .query_map([], |r| r.get(0))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");
    let step: i64 = steps[0].split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!((599_000..=601_000).contains(&step), "{steps:?}");
}
