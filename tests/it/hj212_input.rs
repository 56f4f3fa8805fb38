//! HJ 212 as an input: an upstream system pushes real-time frames to the gateway over TCP (the
//! gateway listens) or on a serial line (a real pty pair). Frames become samples with the
//! sender's flags, frames that ask for it are answered with their QN, garbage and cut frames
//! are skipped without losing the next good frame, and a silent sender gives B.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use cems_gateway::acquire::DevicePlan;
use cems_gateway::acquire::hj212in::InputTask;
use cems_gateway::config::Config;
use cems_gateway::hj212::{Cp, Decoded, Decoder, Packet};
use cems_gateway::live::Live;
use cems_gateway::model::{Flag, Sample};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::support::config;

fn input_config(bus: &str, db: &std::path::Path) -> Config {
    config(&format!(
        r#"
[site]
mn = "GATEWAY01"
pw = "123456"
[storage]
path = "{}"
[[bus]]
name = "upstream"
kind = "hj212"
timeout_ms = 300
{bus}
[[device]]
name = "old-das"
bus = "upstream"
mn = "SRC0001"
poll_interval_s = 1
  [[device.point]]
  factor = "a21026"
  unit = "mg/m3"
  range_max = 200.0
  [[device.point]]
  factor = "a19001"
  unit = "%"
  [[device.point]]
  factor = "a34013"
  code = "dust"
[[device]]
name = "other"
bus = "upstream"
mn = "SRC0002"
poll_interval_s = 1
  [[device.point]]
  factor = "a21002"
"#,
        db.display()
    ))
}

fn frame(mn: &str, qn: &str, cn: &str, ack: bool, cp: &[(&str, &str)]) -> String {
    Packet {
        qn: Some(qn.into()),
        st: "31".into(),
        cn: cn.into(),
        pw: "123456".into(),
        mn: mn.into(),
        flag: Some(if ack { 5 } else { 4 }),
        packets: None,
        rf: false,
        cp: Cp::single(cp),
    }
    .encode()
    .unwrap()
}

fn start(cfg: &Config) -> (mpsc::Receiver<Vec<Sample>>, Arc<Live>, watch::Sender<bool>) {
    let (tx, rx) = mpsc::channel(64);
    let live = Arc::new(Live::default());
    let plans = cfg.devices.iter().map(|d| DevicePlan::new(d.clone())).collect();
    let task = InputTask::new(cfg.buses[0].clone(), plans, tx, live.clone(), cfg.site.utc_offset);
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(task.run(stop_rx));
    (rx, live, stop)
}

/// The next batch of samples of `device` that came from a frame (not a silence B).
async fn next_from(rx: &mut mpsc::Receiver<Vec<Sample>>, device: &str) -> Vec<(String, Option<f64>, Flag)> {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let batch = tokio::time::timeout_at(until, rx.recv()).await.expect("samples in time").expect("open");
        if batch.iter().all(|s| &*s.device == device) && batch.iter().any(|s| s.flag != Flag::B) {
            return batch.iter().map(|s| (s.factor.to_string(), s.value, s.flag)).collect();
        }
    }
}

async fn free_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

async fn connect(address: &str) -> TcpStream {
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(address).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gateway never listened on {address}");
}

async fn read_answer(stream: &mut TcpStream) -> Packet {
    let mut decoder = Decoder::default();
    let mut buf = [0u8; 512];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
            .await
            .expect("answer")
            .unwrap();
        assert!(n > 0, "connection closed");
        decoder.push(&buf[..n]);
        if let Some(Decoded::Packet(p)) = decoder.next_frame() {
            return p;
        }
    }
}

#[tokio::test]
async fn tcp_sender_frames_become_flagged_samples_and_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let address = free_port().await;
    let cfg = input_config(&format!("listen = \"{address}\""), &dir.path().join("x.db"));
    let (mut rx, live, _stop) = start(&cfg);
    let mut sender = connect(&address).await;

    let cp = [
        ("DataTime", "20261129103000"),
        ("a21026-Rtd", "12.5"),
        ("a21026-Flag", "N"),
        ("a19001-Rtd", "9.8"),
        ("a19001-Flag", "M"),
        ("dust-Rtd", "3.2"),
    ];
    sender.write_all(frame("SRC0001", "20261129103000001", "2011", true, &cp).as_bytes()).await.unwrap();
    let answer = read_answer(&mut sender).await;
    assert_eq!((answer.cn.as_str(), answer.qn.as_deref()), ("9014", Some("20261129103000001")));
    assert_eq!(answer.mn, "SRC0001");
    assert_eq!(
        next_from(&mut rx, "old-das").await,
        vec![
            ("a21026".into(), Some(12.5), Flag::N),
            ("a19001".into(), Some(9.8), Flag::M),
            ("a34013".into(), Some(3.2), Flag::N),
        ]
    );

    // Garbage, then a frame cut short, then a bad CRC: all skipped; the next good frame is used.
    // The second frame does not ask for an answer and gets none.
    sender.write_all(b"\x00\xffnoise##0042QN=2026").await.unwrap();
    let mut bad = frame("SRC0001", "20261129103001001", "2011", false, &[("a21026-Rtd", "99")]);
    bad.replace_range(bad.len() - 6..bad.len() - 2, "0000");
    sender.write_all(bad.as_bytes()).await.unwrap();
    let good = [("a21026-Rtd", "250.0"), ("a19001-Rtd", "x"), ("dust-Flag", "D")];
    sender.write_all(frame("SRC0001", "20261129103002001", "2011", false, &good).as_bytes()).await.unwrap();
    assert_eq!(
        next_from(&mut rx, "old-das").await,
        vec![
            ("a21026".into(), Some(250.0), Flag::T),
            ("a19001".into(), None, Flag::D),
            ("a34013".into(), None, Flag::D),
        ],
        "above range → T; not a number → D; flag without value kept"
    );

    // A second device on the same bus, by MN; a frame from an unknown MN is ignored, unanswered.
    sender
        .write_all(frame("NOBODY", "20261129103003001", "2011", true, &[("a21002-Rtd", "1")]).as_bytes())
        .await
        .unwrap();
    sender
        .write_all(frame("SRC0002", "20261129103003002", "2011", true, &[("a21002-Rtd", "41.5")]).as_bytes())
        .await
        .unwrap();
    let answer = read_answer(&mut sender).await;
    assert_eq!(answer.qn.as_deref(), Some("20261129103003002"), "the unknown MN got no answer");
    assert_eq!(next_from(&mut rx, "other").await, vec![("a21002".into(), Some(41.5), Flag::N)]);

    // Silence: after the interval plus the timeout, the device is flagged B without a value.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let silent = loop {
        let batch = tokio::time::timeout_at(until, rx.recv()).await.expect("B in time").unwrap();
        if let Some(s) = batch.iter().find(|s| &*s.device == "old-das") {
            break s.clone();
        }
    };
    assert_eq!((silent.value, silent.flag), (None, Flag::B));
    let health = &live.devices()["old-das"];
    assert!(health.last_error.as_deref().unwrap().contains("no HJ 212 frame"), "{health:?}");
}

#[tokio::test]
async fn a_sender_that_reconnects_is_heard_again() {
    let dir = tempfile::tempdir().unwrap();
    let address = free_port().await;
    let cfg = input_config(&format!("listen = \"{address}\""), &dir.path().join("x.db"));
    let (mut rx, _live, _stop) = start(&cfg);
    let mut first = connect(&address).await;
    // Cut in the middle of a frame, then gone.
    let f = frame("SRC0001", "20261129103000001", "2011", false, &[("a21026-Rtd", "1")]);
    first.write_all(&f.as_bytes()[..20]).await.unwrap();
    drop(first);
    let mut second = connect(&address).await;
    second
        .write_all(frame("SRC0001", "20261129103000002", "2011", false, &[("a21026-Rtd", "7")]).as_bytes())
        .await
        .unwrap();
    let got = next_from(&mut rx, "old-das").await;
    assert_eq!(got[0], ("a21026".into(), Some(7.0), Flag::N));
}

#[tokio::test]
async fn serial_sender_on_a_pty_is_read_and_answered() {
    let pty = openpty(None, None).expect("openpty");
    for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
        let mut t = tcgetattr(fd).unwrap();
        cfmakeraw(&mut t);
        tcsetattr(fd, SetArg::TCSANOW, &t).unwrap();
    }
    let path = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = input_config(&format!("path = \"{}\"\nbaud = 9600", path.display()), &dir.path().join("x.db"));
    let (mut rx, _live, _stop) = start(&cfg);
    let mut master = std::fs::File::from(pty.master);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bytes = b"\r\n#garbage#".to_vec();
    bytes.extend(frame("SRC0001", "20261129103000009", "2011", true, &[("a21026-Rtd", "33.3")]).as_bytes());
    master.write_all(&bytes).unwrap();
    assert_eq!(next_from(&mut rx, "old-das").await[0], ("a21026".into(), Some(33.3), Flag::N));

    let mut decoder = Decoder::default();
    let mut buf = [0u8; 512];
    let answer = loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        assert!(poll(&mut fds, PollTimeout::from(3000u16)).unwrap() > 0, "no answer on the line");
        let n = master.read(&mut buf).unwrap();
        decoder.push(&buf[..n]);
        if let Some(Decoded::Packet(p)) = decoder.next_frame() {
            break p;
        }
    };
    assert_eq!((answer.cn.as_str(), answer.qn.as_deref()), ("9014", Some("20261129103000009")));
    drop(pty.slave);
}

/// Reads until the peer closes the connection (Ok) or `within` passes (Err); data is discarded.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<(), ()> {
    let until = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => return Err(()),
            Ok(Ok(0) | Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
        }
    }
}

fn capped_config(address: &str, db: &std::path::Path, extra: &str) -> Config {
    input_config(&format!("listen = \"{address}\"\n{extra}"), db)
}

/// Stopping the bus, or aborting its task, closes every connection it serves: the readers are
/// owned by the bus task, not detached.
#[tokio::test]
async fn stopping_or_aborting_the_bus_closes_its_connections() {
    for abort in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let address = free_port().await;
        let cfg = capped_config(&address, &dir.path().join("x.db"), "idle_timeout_s = 600");
        let (tx, mut rx) = mpsc::channel(64);
        let plans = cfg.devices.iter().map(|d| DevicePlan::new(d.clone())).collect();
        let task = InputTask::new(
            cfg.buses[0].clone(),
            plans,
            tx,
            Arc::new(Live::default()),
            cems_gateway::time::Offset::CHINA,
        );
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(task.run(stop_rx));
        let mut senders = Vec::new();
        for i in 0..2 {
            let mut s = connect(&address).await;
            let qn = format!("2026112910300000{i}");
            s.write_all(frame("SRC0001", &qn, "2011", true, &[("a21026-Rtd", "1")]).as_bytes())
                .await
                .unwrap();
            assert_eq!(read_answer(&mut s).await.qn.as_deref(), Some(qn.as_str()), "served before the stop");
            senders.push(s);
        }
        if abort {
            handle.abort();
        } else {
            stop.send(true).unwrap();
        }
        for s in &mut senders {
            assert_eq!(
                closed_within(s, Duration::from_secs(5)).await,
                Ok(()),
                "the connection is closed when the bus is {}",
                if abort { "aborted" } else { "stopped" }
            );
        }
        drop(rx.try_recv());
    }
}

/// Beyond `max_connections` a connection is closed at once; a silent one is closed at its idle
/// deadline, which frees its slot; a peer sending no HJ 212 at all is dropped.
#[tokio::test]
async fn connections_are_capped_idle_ones_closed_and_a_babbling_peer_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let address = free_port().await;
    let cfg = capped_config(&address, &dir.path().join("x.db"), "max_connections = 2\nidle_timeout_s = 2");
    let (_rx, _live, _stop) = start(&cfg);
    let mut first = connect(&address).await;
    let mut second = connect(&address).await;
    // Both served (they answer), then a third is refused: closed without an answer.
    for (s, qn) in [(&mut first, "20261129103000001"), (&mut second, "20261129103000002")] {
        s.write_all(frame("SRC0001", qn, "2011", true, &[("a21026-Rtd", "1")]).as_bytes()).await.unwrap();
        assert_eq!(read_answer(s).await.qn.as_deref(), Some(qn));
    }
    let mut third = connect(&address).await;
    assert_eq!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        Ok(()),
        "over the cap: closed at once"
    );
    // Silence past the idle deadline closes the first two; a new sender is served again.
    let started = tokio::time::Instant::now();
    assert_eq!(closed_within(&mut first, Duration::from_secs(6)).await, Ok(()), "idle connection closed");
    assert!(started.elapsed() >= Duration::from_secs(1), "not before its deadline");
    assert_eq!(closed_within(&mut second, Duration::from_secs(6)).await, Ok(()));
    let mut fourth = connect(&address).await;
    fourth
        .write_all(frame("SRC0001", "20261129103000004", "2011", true, &[("a21026-Rtd", "4")]).as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_answer(&mut fourth).await.qn.as_deref(),
        Some("20261129103000004"),
        "a slot is free again"
    );
    // Bytes that never make a frame: dropped after a frame's worth, however fast they come.
    let noise = vec![b'x'; 64 * 1024];
    let _ = fourth.write_all(&noise).await;
    assert_eq!(closed_within(&mut fourth, Duration::from_secs(5)).await, Ok(()), "babbling peer dropped");
}
