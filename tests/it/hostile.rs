//! Hostile peers against the real daemon (issue 12). The test build of the binary runs with an
//! HJ 212 input bus and an encrypted HJ 212-2025 link to a loopback platform, and:
//! - the platform sends crafted encrypted frames (the one that used to panic the decryption,
//!   and other malformed envelopes): the daemon stays up, never panics, and the link goes on
//!   delivering;
//! - a peer sends 10 MB without CR LF, once to the input bus and once into the link's decoder as
//!   a platform would: the daemon's peak RSS (`VmHWM`) stays within a few MB of what it was, and
//!   the connection is dropped (the link reconnects and delivers);
//! - 500 connections are opened to the input bus: at most its cap are served, the others are
//!   closed at once and logged once, and the bus keeps its schedule (a real sender is answered,
//!   a silent device is flagged B at its interval).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cems_gateway::hj212::crc::crc;
use cems_gateway::hj212::crypt::{Key, LengthRule};
use cems_gateway::hj212::{Cp, Decoded, Decoder, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEY: &str = "Kx7pQ2vR9sT4wY6z";
const MN: &str = "MN2025HOSTILE1";
const HOURS: i64 = 8;

/// The daemon, killed when dropped; its stderr goes to a file.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, config: &str) -> Daemon {
        let cfg = dir.join("gw.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("gw.log");
        let child = Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
            .args(["run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (VmRSS, VmHWM) in kB, from /proc.
    fn memory_kb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in {status}"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

/// An outlet `kiln` with stored hour records and no live device (so the statistics worker
/// leaves them as they are), an HJ 212 input bus with a sender `real` and a device `quiet`
/// that never sends, and an encrypted 2025 link uploading the outlet's hours to `platform`.
fn config(dir: &Path, input: &str, platform: &str, bus_extra: &str) -> String {
    let key = dir.join("province.sm4key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let db = dir.join("gw.db");
    drop(crate::support::store_with_hours(&db, HOURS));
    format!(
        r#"
[site]
mn = "{MN}"
pw = "123456"
[storage]
path = "{db}"
flush_ms = 100
[web]
listen = "off"
[[bus]]
name = "upstream"
kind = "hj212"
listen = "{input}"
timeout_ms = 300
{bus_extra}
[[outlet]]
name = "kiln"
profile = "cement-kiln"
[[device]]
name = "real"
bus = "upstream"
mn = "SRC0001"
poll_interval_s = 1
  [[device.point]]
  factor = "a21026"
[[device]]
name = "quiet"
bus = "upstream"
mn = "SRC0002"
poll_interval_s = 1
  [[device.point]]
  factor = "a21002"
[[uplink]]
name = "province"
address = "{platform}"
outlet = "kiln"
protocol = "2025"
encrypt = true
key_file = "{key}"
realtime = false
minute = false
day = false
overtime_s = 3
reconnect_max_s = 1
"#,
        db = db.display(),
        key = key.display(),
    )
}

#[derive(Default)]
struct Seen {
    packets: Vec<Packet>,
    connections: u32,
    /// What became of the hostile bytes: `Ok(n)` all `n` written, `Err(n)` the connection
    /// failed after about `n` bytes.
    hostile: Option<Result<usize, usize>>,
}

/// A 2025 platform on loopback that decrypts with [`KEY`], answers notifications and heartbeats
/// (9013) and uploads (9014), and after the first hour upload of a connection writes the
/// hostile bytes it was given, once.
struct Platform {
    address: String,
    seen: Arc<Mutex<Seen>>,
}

impl Platform {
    async fn start(hostile: Vec<u8>) -> Platform {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let hostile = Arc::new(Mutex::new(Some(hostile)));
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                s.lock().unwrap().connections += 1;
                let (seen, hostile) = (s.clone(), hostile.clone());
                tokio::spawn(async move {
                    let mut decoder = Decoder::default();
                    decoder.set_keys(vec![Key::from_text(KEY).unwrap()]);
                    let mut buf = vec![0u8; 8192];
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        decoder.push(&buf[..n]);
                        let mut hour = false;
                        while let Some(d) = decoder.next_frame() {
                            let Decoded::Packet(p) = d else { continue };
                            hour |= p.cn == "2061";
                            let cn = match p.cn.as_str() {
                                "9015" | "1001" | "1014" => Some("9013"),
                                _ if p.wants_ack() => Some("9014"),
                                _ => None,
                            };
                            if let Some(cn) = cn {
                                let answer = Packet {
                                    qn: p.qn.clone(),
                                    st: "91".into(),
                                    cn: cn.into(),
                                    pw: p.pw.clone(),
                                    mn: p.mn.clone(),
                                    flag: Some(8),
                                    packets: None,
                                    rf: false,
                                    cp: Cp::default(),
                                };
                                if stream.write_all(answer.encode().unwrap().as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            seen.lock().unwrap().packets.push(p);
                        }
                        let bytes = if hour { hostile.lock().unwrap().take() } else { None };
                        if let Some(bytes) = bytes {
                            let mut sent = 0;
                            for chunk in bytes.chunks(64 * 1024) {
                                let w =
                                    tokio::time::timeout(Duration::from_secs(30), stream.write_all(chunk))
                                        .await;
                                if !matches!(w, Ok(Ok(()))) {
                                    seen.lock().unwrap().hostile = Some(Err(sent));
                                    return;
                                }
                                sent += chunk.len();
                            }
                            seen.lock().unwrap().hostile = Some(Ok(sent));
                        }
                    }
                });
            }
        });
        Platform { address, seen }
    }

    fn hours(&self) -> usize {
        let seen = self.seen.lock().unwrap();
        let mut times: Vec<&str> =
            seen.packets.iter().filter(|p| p.cn == "2061").filter_map(|p| p.cp.get("DataTime")).collect();
        times.sort_unstable();
        times.dedup();
        times.len()
    }

    async fn wait_for(&self, what: &str, within: Duration, check: impl Fn(&Platform) -> bool) {
        let until = Instant::now() + within;
        while !check(self) {
            assert!(Instant::now() < until, "the platform never saw {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A frame around `segment` with its length and the CRC of `crc_of` (the plaintext).
fn framed(segment: &str, crc_of: &str) -> String {
    format!("##{:04}{segment}{:04X}\r\n", segment.len(), crc(crc_of.as_bytes()))
}

fn ack_packet(qn: &str) -> Packet {
    Packet {
        qn: Some(qn.into()),
        st: "91".into(),
        cn: "9014".into(),
        pw: "123456".into(),
        mn: MN.into(),
        flag: Some(8),
        packets: None,
        rf: false,
        cp: Cp::single(&[("DataTime", "20261129100000"), ("a21026-Rtd", "12.5"), ("a21026-Flag", "N")]),
    }
}

/// Encrypted frames a hostile or broken platform could send: the one of the issue (`CP=&&}`
/// before a later `CP=&&{0x`, which made the cipher list's end come before its start), a list
/// over the cap, a list that is not hex, one that is not whole blocks, a frame under a wrong
/// key, and a frame whose CRC does not match its plaintext.
fn crafted_frames() -> Vec<u8> {
    let head = format!("QN=20261129100000001;ST=91;CN=9014;PW=123456;MN={MN};Flag=8;");
    let mut out = String::new();
    let issue = format!("{head}CP=&&}}&&CP=&&{{0x01,0x02}}&&");
    out += &framed(&issue, &issue);
    let short = "CP=&&}CP=&&{0x";
    out += &framed(short, short);
    let huge = format!("{head}CP=&&{{{}}}&&", vec!["0x41"; 1040].join(","));
    out += &framed(&huge, &huge);
    let not_hex = format!("{head}CP=&&{{0xZZ,{}}}&&", vec!["0x41"; 15].join(","));
    out += &framed(&not_hex, &not_hex);
    let cut = format!("{head}CP=&&{{{}}}&&", vec!["0x41"; 17].join(","));
    out += &framed(&cut, &cut);
    let wrong_key = Key::from_text("0000000000000000").unwrap();
    out += &ack_packet("20261129100000002").encode_encrypted(&wrong_key, LengthRule::Plain).unwrap();
    let right =
        ack_packet("20261129100000003").encode_encrypted(&Key::from_text(KEY).unwrap(), LengthRule::Wire);
    let mut bad_crc = right.unwrap();
    let at = bad_crc.len() - 6;
    let other = if &bad_crc[at..at + 4] == "0000" { "0001" } else { "0000" };
    bad_crc.replace_range(at..at + 4, other);
    out += &bad_crc;
    out.into_bytes()
}

/// The head of an encrypted frame followed by `total` bytes of cipher list that never end.
fn endless_frame(total: usize) -> Vec<u8> {
    let mut bytes =
        format!("##0100QN=20261129100000009;ST=91;CN=9014;PW=123456;MN={MN};Flag=8;CP=&&{{").into_bytes();
    while bytes.len() < total {
        bytes.extend(b"0x41,");
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_encrypted_frames_from_a_platform_neither_crash_nor_stop_the_link() {
    let platform = Platform::start(crafted_frames()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &config(dir.path(), &free_address(), &platform.address, ""));
    platform
        .wait_for("every stored hour, delivered after the crafted frames", Duration::from_secs(60), |p| {
            p.hours() >= HOURS as usize && p.seen.lock().unwrap().hostile.is_some()
        })
        .await;
    {
        let seen = platform.seen.lock().unwrap();
        assert_eq!(seen.hostile, Some(Ok(crafted_frames().len())), "the crafted frames were all sent");
        let after =
            seen.packets.iter().skip_while(|p| p.cn != "2061").skip(1).filter(|p| p.cn == "2061").count();
        assert!(after >= 1, "uploads went on after the crafted frames");
    }
    // The frames go out once the first hour arrives, so every hour may be delivered before
    // the session has read them: wait for the decoder's word rather than race it.
    let until = Instant::now() + Duration::from_secs(30);
    while !daemon.log().contains("Garbage from the platform skipped") && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(daemon.alive(), "the daemon is up");
    let log = daemon.log();
    assert!(!log.contains("panicked"), "no panic, not even in a task:\n{log}");
    assert!(log.contains("Garbage from the platform skipped"), "the frames reached the decoder:\n{log}");
    assert_eq!(platform.seen.lock().unwrap().connections, 1, "the link was not dropped for them");
}

/// Writes `bytes` to `address` until the peer drops the connection; returns how many were
/// written and whether the connection was dropped (a write failed, or EOF on reading).
fn flood(address: &str, bytes: &[u8]) -> (usize, bool) {
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut sent = 0;
    for chunk in bytes.chunks(64 * 1024) {
        if s.write_all(chunk).is_err() {
            return (sent, true);
        }
        sent += chunk.len();
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1024];
    let dropped = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) => {
                break e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut;
            }
        }
    };
    (sent, dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_without_cr_lf_are_dropped_in_bounded_memory() {
    const TEN_MB: usize = 10 << 20;
    let platform = Platform::start(endless_frame(TEN_MB)).await;
    let dir = tempfile::tempdir().unwrap();
    let input = free_address();
    let daemon = Daemon::start(dir.path(), &config(dir.path(), &input, &platform.address, ""));
    // Warm: the link delivers (and, after its first hour, the platform starts its flood).
    platform.wait_for("a first hour", Duration::from_secs(60), |p| p.hours() >= 1).await;
    let (rss0, hwm0) = daemon.memory_kb();

    // 10 MB into the input bus: the head of an encrypted frame, then cipher text without end;
    // meanwhile 10 MB into the link's decoder, from the platform.
    let address = input.clone();
    let (sent, dropped) =
        tokio::task::spawn_blocking(move || flood(&address, &endless_frame(TEN_MB))).await.unwrap();
    platform
        .wait_for("the end of its flood", Duration::from_secs(120), |p| {
            p.seen.lock().unwrap().hostile.is_some()
        })
        .await;
    let flooded = platform.seen.lock().unwrap().hostile;
    let (rss1, hwm1) = daemon.memory_kb();
    println!(
        "daemon memory: VmRSS {rss0} kB → {rss1} kB, VmHWM {hwm0} kB → {hwm1} kB; input flood: {sent} bytes \
         written, dropped: {dropped}; platform flood: {flooded:?} (Err: dropped after that many bytes)"
    );
    // The old decoder held all 10 MB of each flood (and copied it); 4 MB is far below that and
    // far above what a capped decoder needs (a few frames of 15 kB).
    assert!(hwm1 < hwm0 + 4 * 1024, "peak RSS grew from {hwm0} kB to {hwm1} kB");
    assert!(dropped, "the input bus dropped the connection ({sent} bytes written)");
    assert!(matches!(flooded, Some(Err(_))), "the link dropped the flooding platform: {flooded:?}");

    // The link connects again and delivers the rest.
    platform.wait_for("every hour", Duration::from_secs(60), |p| p.hours() >= HOURS as usize).await;
    let connections = platform.seen.lock().unwrap().connections;
    assert!(connections >= 2, "a new connection after the drop ({connections} connections)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_connections_get_the_cap_and_the_bus_keeps_its_schedule() {
    const CAP: usize = 4;
    let platform = Platform::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let input = free_address();
    let daemon = Daemon::start(
        dir.path(),
        &config(
            dir.path(),
            &input,
            &platform.address,
            &format!("max_connections = {CAP}\nidle_timeout_s = 120"),
        ),
    );
    // The real sender: one frame a second, each answered within its deadline.
    let mut sender = loop {
        match tokio::net::TcpStream::connect(&input).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let start_ms = cems_gateway::model::now_ms();
    let answered = Arc::new(Mutex::new(Vec::new()));
    let flood_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let real = {
        let (answered, done) = (answered.clone(), flood_done.clone());
        tokio::spawn(async move {
            let mut decoder = Decoder::default();
            let mut buf = [0u8; 1024];
            for i in 0.. {
                if done.load(std::sync::atomic::Ordering::SeqCst) && i >= 6 {
                    break;
                }
                let qn = format!("2026112910{i:07}");
                let p = Packet {
                    qn: Some(qn.clone()),
                    st: "31".into(),
                    cn: "2011".into(),
                    pw: "123456".into(),
                    mn: "SRC0001".into(),
                    flag: Some(5),
                    packets: None,
                    rf: false,
                    cp: Cp::single(&[("a21026-Rtd", "12.5")]),
                };
                let sent = Instant::now();
                sender.write_all(p.encode().unwrap().as_bytes()).await.unwrap();
                let got = loop {
                    let n = tokio::time::timeout(Duration::from_secs(3), sender.read(&mut buf))
                        .await
                        .expect("the real sender is answered in time")
                        .unwrap();
                    assert!(n > 0, "the real sender's connection stays open");
                    decoder.push(&buf[..n]);
                    if let Some(Decoded::Packet(a)) = decoder.next_frame() {
                        break a;
                    }
                };
                assert_eq!(got.qn.as_deref(), Some(qn.as_str()));
                answered.lock().unwrap().push(sent.elapsed());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 500 connections at once; each then either stays open (served) or is closed (refused).
    let mut conns = Vec::new();
    for _ in 0..500 {
        conns.push(tokio::net::TcpStream::connect(&input).await.unwrap());
    }
    let mut served = 0;
    let mut refused = 0;
    for c in &mut conns {
        let mut b = [0u8; 16];
        // A refused connection is closed at once; a served one stays open (its idle deadline is
        // 120 s). Two seconds leave room for a loaded machine to work through the backlog.
        match tokio::time::timeout(Duration::from_secs(2), c.read(&mut b)).await {
            Err(_) => served += 1,
            Ok(Ok(0) | Err(_)) => refused += 1,
            Ok(Ok(n)) => panic!("a silent client got {n} bytes"),
        }
    }
    flood_done.store(true, std::sync::atomic::Ordering::SeqCst);
    real.await.unwrap();
    let end_ms = cems_gateway::model::now_ms();
    println!(
        "500 connections: {served} served, {refused} refused; answers to the real sender: {:?}",
        answered.lock().unwrap()
    );
    assert_eq!(served, CAP - 1, "the cap, less the real sender's slot");
    assert_eq!(refused, 500 - (CAP - 1));
    drop(conns);

    // The quiet device was flagged B at its interval all along (1 s + the 300 ms timeout).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let db = rusqlite::Connection::open_with_flags(
        dir.path().join("gw.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let times = |device: &str, flag: u8| -> Vec<i64> {
        db.prepare(
            "SELECT s.ts FROM sample s JOIN series r ON r.id = s.series \
             WHERE r.device = ?1 AND s.flag = ?2 AND s.ts BETWEEN ?3 AND ?4 ORDER BY s.ts",
        )
        .unwrap()
        .query_map(rusqlite::params![device, flag, start_ms, end_ms], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let quiet = times("quiet", cems_gateway::model::Flag::B.code());
    let gaps: Vec<i64> = quiet.windows(2).map(|w| w[1] - w[0]).collect();
    println!("quiet device: {} B samples, gaps {gaps:?} ms", quiet.len());
    assert!(quiet.len() as i64 >= (end_ms - start_ms) / 1000 - 3, "B about every second: {quiet:?}");
    assert!(gaps.iter().all(|g| *g <= 2_500), "no slot skipped during the flood: {gaps:?}");
    let real = times("real", cems_gateway::model::Flag::N.code());
    assert_eq!(real.len(), answered.lock().unwrap().len(), "every answered frame became a sample");

    let log = std::fs::read_to_string(&daemon.log).unwrap();
    let refusals = log.lines().filter(|l| l.contains("connection refused")).count();
    assert_eq!(refusals, 1, "refusals logged once per burst, not per connection:\n{log}");
}
