//! The HJ 212-2025 profile against an in-process 2025 platform on loopback that decrypts with
//! the key it believes in force: onboarding (1001 → 1002 → data under the new MN), SM4 key
//! rotation in the middle of a backlog (no frame lost, none under the wrong key), heartbeat loss,
//! new data first with RF=1 on every backlog frame, version checks, and a 2017 and a 2025
//! platform fed from the same store.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cems_gateway::config::Config;
use cems_gateway::hj212::crypt::Key;
use cems_gateway::hj212::{Cp, Decoded, Decoder, Packet};
use cems_gateway::live::Live;
use cems_gateway::model::now_ms;
use cems_gateway::store::Store;
use cems_gateway::uplink::Link;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::support::{config, kiln_config, outbox};

const KEY0: &str = "0000000000000000";
const KEY1: &str = "Kx7pQ2vR9sT4wY6z";

#[derive(Default)]
struct Seen {
    packets: Vec<Packet>,
    /// Frames the platform could not read with the key it held at that moment.
    unreadable: Vec<String>,
    /// Raw bytes as received, to check what went over the wire.
    raw: Vec<u8>,
    connections: u32,
}

/// A 2025 platform: answers uploads (9014) and notifications (9013) with Flag 8, decrypts with
/// its key, pushes the requests the test sends. A pushed `NewSK` takes effect for the platform
/// when the logger's 9012 for it arrives.
struct Platform {
    address: String,
    seen: Arc<Mutex<Seen>>,
    requests: mpsc::UnboundedSender<Packet>,
    answer_heartbeats: watch::Sender<bool>,
    /// How long the platform waits before each answer.
    ack_delay: watch::Sender<Duration>,
}

impl Platform {
    async fn start(key: Option<&str>) -> Platform {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (requests, mut req_rx) = mpsc::unbounded_channel::<Packet>();
        let (hb_tx, hb_rx) = watch::channel(true);
        let (delay_tx, delay_rx) = watch::channel(Duration::ZERO);
        let key = Arc::new(Mutex::new(key.map(|k| Key::from_text(k).unwrap())));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                seen2.lock().unwrap().connections += 1;
                let (mut rd, mut wr) = stream.into_split();
                let mut decoder = Decoder::default();
                let mut buf = vec![0u8; 8192];
                // (QN of our 1014, the key it carries)
                let mut switch: Option<(String, Key)> = None;
                loop {
                    decoder.set_keys(key.lock().unwrap().iter().cloned().collect());
                    tokio::select! {
                        n = rd.read(&mut buf) => {
                            let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                            seen2.lock().unwrap().raw.extend_from_slice(&buf[..n]);
                            decoder.push(&buf[..n]);
                            let mut replies = Vec::new();
                            while let Some(d) = decoder.next_frame() {
                                let p = match d {
                                    Decoded::Packet(p) => p,
                                    Decoded::Skipped { error, .. } => {
                                        seen2.lock().unwrap().unreadable.push(error.to_string());
                                        continue;
                                    }
                                };
                                seen2.lock().unwrap().packets.push(p.clone());
                                if p.cn == "9012" && switch.as_ref().is_some_and(|(q, _)| p.qn.as_ref() == Some(q)) {
                                    let (_, new) = switch.take().unwrap();
                                    *key.lock().unwrap() = Some(new);
                                    decoder.set_keys(key.lock().unwrap().iter().cloned().collect());
                                }
                                let answer = match p.cn.as_str() {
                                    "9015" if !*hb_rx.borrow() => None,
                                    "9015" | "1001" | "1014" => Some("9013"),
                                    _ if p.wants_ack() => Some("9014"),
                                    _ => None,
                                };
                                if let Some(cn) = answer {
                                    replies.push(Packet { qn: p.qn.clone(), st: "91".into(), cn: cn.into(), pw: p.pw.clone(), mn: p.mn.clone(), flag: Some(p.flag.unwrap_or(8) & !3), packets: None, rf: false, cp: Cp::default() }.encode().unwrap());
                                }
                            }
                            let delay = *delay_rx.borrow();
                            for r in replies {
                                tokio::time::sleep(delay).await;
                                if wr.write_all(r.as_bytes()).await.is_err() { break; }
                            }
                        }
                        Some(req) = req_rx.recv() => {
                            let k = key.lock().unwrap().clone();
                            let frame = match (&k, req.cn.as_str()) {
                                (Some(k), "1014") => {
                                    switch = Some((req.qn.clone().unwrap(), Key::from_text(req.cp.get("NewSK").unwrap()).unwrap()));
                                    req.encode_encrypted(k, cems_gateway::hj212::crypt::LengthRule::Plain).unwrap()
                                }
                                _ => req.encode().unwrap(),
                            };
                            if wr.write_all(frame.as_bytes()).await.is_err() { break; }
                        }
                    }
                }
            }
        });
        Platform { address, seen, requests, answer_heartbeats: hb_tx, ack_delay: delay_tx }
    }

    fn packets(&self, cn: &str) -> Vec<Packet> {
        self.seen.lock().unwrap().packets.iter().filter(|p| p.cn == cn).cloned().collect()
    }

    fn send(&self, qn: &str, cn: &str, mn: &str, flag: u8, cp: &[(&str, &str)]) {
        let p = Packet {
            qn: Some(qn.into()),
            st: "31".into(),
            cn: cn.into(),
            pw: "123456".into(),
            mn: mn.into(),
            flag: Some(flag),
            packets: None,
            rf: false,
            cp: Cp::single(cp),
        };
        self.requests.send(p).unwrap();
    }

    async fn wait_for(&self, what: &str, check: impl Fn(&Seen) -> bool) {
        for _ in 0..500 {
            if check(&self.seen.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen = self.seen.lock().unwrap();
        panic!(
            "platform never saw {what}: {:#?}\nunreadable: {:?}",
            seen.packets.iter().map(|p| (p.cn.clone(), p.mn.clone(), p.cp.to_string())).collect::<Vec<_>>(),
            seen.unreadable
        );
    }
}

fn hours_seen(seen: &Seen) -> Vec<String> {
    seen.packets
        .iter()
        .filter(|p| p.cn == "2061")
        .map(|p| p.cp.get("DataTime").unwrap().to_string())
        .collect()
}

fn distinct(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn link_config(db: &std::path::Path, address: &str, extra: &str) -> Config {
    kiln_config(
        db,
        "MN2025TEST01",
        &format!(
            r#"[[uplink]]
name = "province"
address = "{address}"
protocol = "2025"
realtime = false
minute = false
day = false
{extra}
"#
        ),
    )
}

/// Hour records of the last `n` closed hours.
fn store_with_hours(db: &std::path::Path, n: i64) -> Arc<Mutex<Store>> {
    crate::support::store_with_hours(db, n).0
}

fn start(cfg: &Config, index: usize) -> watch::Sender<bool> {
    let cfg = Arc::new(cfg.clone());
    let outbox = outbox(&cfg.storage.path);
    let link = Link::new(cfg.uplinks[index].clone(), cfg.clone(), outbox, Arc::new(Live::default())).unwrap();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(link.run(rx));
    stop
}

fn key_file(dir: &std::path::Path, key: &str) -> std::path::PathBuf {
    let path = dir.join("initial.sm4key");
    std::fs::write(&path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[tokio::test]
async fn onboarding_gets_an_mn_from_the_platform_and_data_follows_under_it() {
    let platform = Platform::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let cfg = link_config(&db, &platform.address, "onboarding = true\nlogger_id = \"GW-TEST-0001\"");
    assert_eq!(cfg.uplinks[0].mn, "", "no MN before the platform assigns one");
    let store = store_with_hours(&db, 2);
    let stop = start(&cfg, 0);
    platform.wait_for("the 1001 identity", |s| s.packets.iter().any(|p| p.cn == "1001")).await;
    let hello = &platform.packets("1001")[0];
    assert_eq!(hello.mn, "");
    assert_eq!(hello.cp.get("i23005-Info"), Some("GW-TEST-0001"));
    for field in ["i23006-Info", "i23007-Info", "i23008-Info"] {
        assert!(hello.cp.get(field).is_some(), "{field} in {}", hello.cp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(platform.packets("2061").is_empty(), "no data before the MN is assigned");

    // A 1002 for another logger is refused; the one for this logger is taken.
    platform.send("20261129100000001", "1002", "NOTME0000000000000000001", 9, &[("i23005-Info", "GW-OTHER")]);
    platform.send(
        "20261129100000002",
        "1002",
        "NEWMN0000000000000000001",
        9,
        &[("i23005-Info", "GW-TEST-0001")],
    );
    platform.wait_for("2 hours under the new MN", |s| hours_seen(s).len() >= 2).await;
    let rtn: Vec<(Option<String>, String)> =
        platform.packets("9011").iter().map(|p| (p.qn.clone(), p.cp.to_string())).collect();
    assert!(rtn.contains(&(Some("20261129100000001".into()), "QnRtn=2".into())), "{rtn:?}");
    assert!(rtn.contains(&(Some("20261129100000002".into()), "QnRtn=1".into())), "{rtn:?}");
    assert!(platform.packets("9012").iter().any(|p| p.qn.as_deref() == Some("20261129100000002")));
    assert!(platform.packets("2061").iter().all(|p| p.mn == "NEWMN0000000000000000001"));
    stop.send(true).unwrap();

    // Persisted: a new link on the same store starts with the assigned MN and sends no 1001.
    let before = platform.packets("1001").len();
    let _stop = start(&cfg, 0);
    platform.wait_for("the second connection", |s| s.connections >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(platform.packets("1001").len(), before);
    assert_eq!(
        store.lock().unwrap().setting("province", "mn").unwrap().as_deref(),
        Some("NEWMN0000000000000000001")
    );
}

#[tokio::test]
async fn the_key_rotates_mid_backlog_with_no_frame_lost_or_under_the_wrong_key() {
    let platform = Platform::start(Some(KEY0)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let key = key_file(dir.path(), KEY0);
    // Two uploads in flight: with slow acknowledgements the backlog is still draining when the
    // key changes (with the default window of 32 the 12 hours would all be out already).
    let cfg = link_config(
        &db,
        &platform.address,
        &format!("encrypt = true\nkey_file = \"{}\"\nwindow = 2", key.display()),
    );
    let store = store_with_hours(&db, 12);
    // Slow acknowledgements keep the backlog draining while the key changes.
    platform.ack_delay.send(Duration::from_millis(60)).unwrap();
    let _stop = start(&cfg, 0);
    platform.wait_for("4 hours", |s| hours_seen(s).len() >= 4).await;
    platform.send(
        "20261129100000003",
        "1014",
        "MN2025TEST01",
        9,
        &[("SKCreateTime", "20261129100000000"), ("NewSK", KEY1)],
    );
    platform.wait_for("the key change", |s| s.packets.iter().any(|p| p.cn == "9012")).await;
    let before = distinct(hours_seen(&platform.seen.lock().unwrap())).len();
    assert!(before < 12, "the key changed in the middle of the backlog ({before} of 12 hours before it)");
    platform.wait_for("all 12 hours", |s| distinct(hours_seen(s)).len() >= 12).await;

    let seen = platform.seen.lock().unwrap();
    assert!(seen.unreadable.is_empty(), "every frame readable with the key in force: {:?}", seen.unreadable);
    assert_eq!(distinct(hours_seen(&seen)).len(), 12);
    let wire = String::from_utf8_lossy(&seen.raw);
    assert!(wire.contains("CP=&&{0x"), "data goes encrypted");
    assert!(!wire.contains("a21026-Avg"), "no plaintext data on the wire");
    assert!(wire.contains("CN=9012"), "control frames stay plain");
    drop(seen);
    assert!(
        platform
            .packets("9012")
            .iter()
            .any(|p| p.qn.as_deref() == Some("20261129100000003") && p.cp.to_string() == "ExeRtn=1")
    );
    let stored = dir.path().join("province.sm4key");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), KEY1);
    assert_eq!(std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(store.lock().unwrap().setting("province", "sk_created_ms").unwrap().is_some());
    // The change is in the audit trail; the key is not.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let entries: Vec<(String, String)> = conn
        .prepare("SELECT kind, detail FROM audit")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(entries.iter().any(|(k, d)| k == "key" && d.contains("20261129100000000")), "{entries:?}");
    assert!(entries.iter().any(|(k, d)| k == "platform" && d.contains("NewSK=<secret>")), "{entries:?}");
    assert!(!entries.iter().any(|(_, d)| d.contains(KEY1)), "the key never reaches the audit log");
    let chain = store.lock().unwrap().verify_chain(None, None).unwrap();
    assert!(chain.verified, "{chain:?}");
}

#[tokio::test]
async fn after_an_outage_new_data_goes_first_and_every_backlog_frame_carries_rf() {
    let platform = Platform::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let cfg = link_config(&db, &platform.address, "");
    let _store = store_with_hours(&db, 6);
    let _stop = start(&cfg, 0);
    platform.wait_for("6 hours", |s| distinct(hours_seen(s)).len() >= 6).await;
    let hours = platform.packets("2061");
    let times: Vec<String> = hours.iter().map(|p| p.cp.get("DataTime").unwrap().to_string()).collect();
    let newest = distinct(times.clone()).pop().unwrap();
    assert_eq!(times[0], newest, "the newest hour first: {times:?}");
    assert!(!hours[0].rf, "live data has no RF");
    assert!(hours[1..].iter().all(|p| p.rf), "RF=1 on every backlog frame");
    let backlog: Vec<&String> = times[1..].iter().collect();
    assert!(backlog.windows(2).all(|w| w[0] < w[1]), "the backlog in order: {times:?}");
    assert_eq!(times.len(), 6, "none twice");
    assert!(hours.iter().all(|p| p.flag == Some(9)));
}

/// A platform that answered heartbeats and then stops: the link is dead to it, dropped and
/// rebuilt.
#[tokio::test]
async fn a_heartbeat_left_unanswered_drops_the_link_and_it_reconnects() {
    let platform = Platform::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let mut cfg = link_config(&db, &platform.address, "overtime_s = 1\nrecount = 1\nreconnect_max_s = 1");
    cfg.uplinks[0].heartbeat = Duration::from_millis(200);
    let _store = store_with_hours(&db, 1);
    let _stop = start(&cfg, 0);
    platform
        .wait_for("two answered heartbeats", |s| s.packets.iter().filter(|p| p.cn == "9015").count() >= 2)
        .await;
    platform.answer_heartbeats.send(false).unwrap();
    platform.wait_for("a second connection", |s| s.connections >= 2).await;
    assert!(platform.packets("9015").iter().all(|p| p.flag == Some(9) && p.cp == Cp::default()));
}

/// A platform that never answers heartbeats (but takes the data): the link relies on TCP
/// keepalive and the data acknowledgements, and does not reconnect every few seconds.
#[tokio::test]
async fn a_platform_that_never_answers_heartbeats_keeps_one_connection() {
    let platform = Platform::start(None).await;
    platform.answer_heartbeats.send(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let mut cfg = link_config(&db, &platform.address, "overtime_s = 1\nrecount = 1\nreconnect_max_s = 1");
    cfg.uplinks[0].heartbeat = Duration::from_millis(200);
    let _store = store_with_hours(&db, 2);
    let _stop = start(&cfg, 0);
    // Fifteen heartbeats: 3 s, three times what an unanswered one is waited for.
    platform
        .wait_for("15 heartbeats and both hours", |s| {
            s.packets.iter().filter(|p| p.cn == "9015").count() >= 15 && distinct(hours_seen(s)).len() >= 2
        })
        .await;
    assert_eq!(platform.seen.lock().unwrap().connections, 1);
}

#[tokio::test]
async fn frames_of_the_other_version_get_qnrtn_6_unless_both_are_accepted() {
    let platform = Platform::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let cfg = link_config(&db, &platform.address, "hour = false");
    let _store = store_with_hours(&db, 1);
    let stop = start(&cfg, 0);
    platform.wait_for("the connection", |s| s.connections >= 1).await;
    platform.send("20261129100000004", "1011", "MN2025TEST01", 5, &[]);
    platform.wait_for("QnRtn 6", |s| s.packets.iter().any(|p| p.cn == "9011")).await;
    assert_eq!(platform.packets("9011")[0].cp.to_string(), "QnRtn=6");
    stop.send(true).unwrap();

    let cfg = link_config(&db, &platform.address, "hour = false\naccept_2017 = true");
    let _stop = start(&cfg, 0);
    platform.wait_for("a second connection", |s| s.connections >= 2).await;
    platform.send("20261129100000005", "1011", "MN2025TEST01", 5, &[]);
    platform.wait_for("the time", |s| s.packets.iter().any(|p| p.cn == "1011")).await;
    assert!(
        platform
            .packets("9011")
            .iter()
            .any(|p| p.qn.as_deref() == Some("20261129100000005") && p.cp.to_string() == "QnRtn=1")
    );
}

#[tokio::test]
async fn a_2017_and_a_2025_platform_are_fed_from_the_same_store() {
    let new = Platform::start(None).await;
    let old = Platform::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let text = format!(
        "\n[[uplink]]\nname = \"legacy\"\naddress = \"{}\"\nrealtime = false\nminute = false\nday = false\n",
        old.address
    );
    let mut cfg = link_config(&db, &new.address, "");
    let legacy = config(&format!(
        "[site]\nmn = \"MN2025TEST01\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n[[outlet]]\nname = \"kiln\"\n[[device]]\nname = \"gas\"\nbus = \"b\"\nslave = 1\noutlet = \"kiln\"\n  [[device.point]]\n  factor = \"a21026\"\n  address = 0\n  type = \"f32\"\n{text}",
        db.display()
    ));
    cfg.uplinks.push(legacy.uplinks[0].clone());
    let _store = store_with_hours(&db, 5);
    let _a = start(&cfg, 0);
    let _b = start(&cfg, 1);
    new.wait_for("5 hours (2025)", |s| distinct(hours_seen(s)).len() >= 5).await;
    old.wait_for("5 hours (2017)", |s| distinct(hours_seen(s)).len() >= 5).await;
    let old_hours = old.packets("2061");
    assert!(old_hours.iter().all(|p| p.flag == Some(5) && !p.rf), "2017: Flag 5, no RF");
    let t: Vec<String> = old_hours.iter().map(|p| p.cp.get("DataTime").unwrap().to_string()).collect();
    assert!(t.windows(2).all(|w| w[0] < w[1]), "2017 keeps plain order: {t:?}");
    let new_hours = new.packets("2061");
    assert!(new_hours.iter().all(|p| p.flag == Some(9)));
    assert_eq!(new_hours.iter().filter(|p| p.rf).count(), 4, "2025: the four older hours are backlog");
}

#[tokio::test]
async fn an_aging_key_is_renewed_by_asking_the_platform() {
    let platform = Platform::start(Some(KEY0)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let key = key_file(dir.path(), KEY0);
    let cfg =
        link_config(&db, &platform.address, &format!("encrypt = true\nkey_file = \"{}\"", key.display()));
    let store = store_with_hours(&db, 1);
    // The registered key is 85 days old: past the default 80 days after which a new one is asked.
    let created = now_ms() - 85 * 86_400_000;
    {
        let (w, _) = Store::open(&db).unwrap();
        w.set_setting("province", "sk_created_ms", &created.to_string()).unwrap();
    }
    let _stop = start(&cfg, 0);
    platform.wait_for("the key request", |s| s.packets.iter().any(|p| p.cn == "1014")).await;
    let ask = &platform.packets("1014")[0];
    let stamp = ask.cp.get("SKCreateTime").unwrap();
    assert_eq!(stamp.len(), 17, "{stamp}");
    assert!(ask.wants_ack());
    assert!(
        String::from_utf8_lossy(&platform.seen.lock().unwrap().raw)
            .contains("CN=1014;PW=123456;MN=MN2025TEST01;Flag=9;CP=&&{0x"),
        "1014 is encrypted"
    );
    // The platform answers with the new key; the link switches and reports it done.
    platform.send(
        "20261129100000006",
        "1014",
        "MN2025TEST01",
        9,
        &[("SKCreateTime", "20261129100000000"), ("NewSK", KEY1)],
    );
    platform.wait_for("the key change", |s| s.packets.iter().any(|p| p.cn == "9012")).await;
    let created_now: i64 =
        store.lock().unwrap().setting("province", "sk_created_ms").unwrap().unwrap().parse().unwrap();
    assert!(created_now > created, "the new key's age starts over");
}

/// ZsRtd in a 2011 frame from a wet analyzer that reports SO2 in ppm, under both profiles.
/// HJ 212-2025 table 5: real-time values go dry at standard state; a point measured wet at actual
/// state is converted with the current humidity, temperature and pressure. The 2017 profile sends
/// what was measured (in table B.2's unit: ppm becomes mg/m³). Both send the value converted to
/// the reference O2 (ZsRtd), from the dry standard value, as the records do.
#[tokio::test]
async fn realtime_values_are_sent_dry_at_standard_state() {
    use cems_gateway::compute::spec::Basis;
    use cems_gateway::model::{Flag, Sample};
    let (p2025, p2017) = (Platform::start(None).await, Platform::start(None).await);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let mut cfg = link_config(&db, &p2025.address, "");
    // The SO2 point is measured wet at flue conditions in ppm; O2 wet.
    let mut gas = cfg.devices[0].clone();
    gas.points[0].basis = Basis::WET_ACTUAL;
    gas.points[0].unit = "ppm".into();
    gas.points[1].basis = Basis::parse("wet-standard").unwrap();
    cfg.devices[0] = gas;
    cfg.uplinks[0].realtime = true;
    cfg.uplinks[0].rtd_interval = Duration::from_millis(200);
    cfg.uplinks[0].hour = false;
    let mut city = cfg.uplinks[0].clone();
    city.name = "city".into();
    city.address = p2017.address.clone();
    city.protocol = cems_gateway::config::Protocol212::V2017;
    cfg.uplinks.push(city);
    let live = Arc::new(Live::default());
    let now = now_ms();
    let sample = |f: &str, v: f64| Sample {
        ts_ms: now,
        device: "gas".into(),
        factor: f.into(),
        value: Some(v),
        flag: Flag::N,
    };
    // 100 ppm SO2, 11.7 % O2 wet, 10 % moisture, 150 °C, +0.5 kPa static on 101.325 kPa.
    live.record_poll(
        "gas",
        &[
            sample("a21026", 100.0),
            sample("a19001", 11.7),
            sample("a01014", 10.0),
            sample("a01012", 150.0),
            sample("a01013", 0.5),
        ],
        None,
    );
    let _store = store_with_hours(&db, 1);
    let cfg = Arc::new(cfg);
    let mut stops = Vec::new();
    for u in &cfg.uplinks {
        let link = Link::new(u.clone(), cfg.clone(), outbox(&db), live.clone()).unwrap();
        let (stop, rx) = watch::channel(false);
        tokio::spawn(link.run(rx));
        stops.push(stop);
    }
    for p in [&p2025, &p2017] {
        p.wait_for("a real-time upload", |s| s.packets.iter().any(|p| p.cn == "2011")).await;
    }
    // (20) 100 ppm × 64.06 / 22.4 = 285.982 mg/m³ as measured; (19) / 0.9 and (18)
    // × 101325 / 101825 × 423 / 273: 489.93258 mg/m³ dry at standard state. O2 11.7 % / 0.9 =
    // 13 % dry; (28) × (21 − 10) / (21 − 13): ZsRtd 673.6573. SO2 is N5.2, O2 N3.1.
    let v2025 = &p2025.packets("2011")[0];
    assert_eq!(v2025.cp.get("a21026-Rtd"), Some("489.93"), "{}", v2025.cp);
    assert_eq!(v2025.cp.get("a21026-ZsRtd"), Some("673.66"), "{}", v2025.cp);
    assert_eq!(v2025.cp.get("a19001-Rtd"), Some("13"), "{}", v2025.cp);
    let v2017 = &p2017.packets("2011")[0];
    assert_eq!(v2017.cp.get("a21026-Rtd"), Some("285.98"), "{}", v2017.cp);
    assert_eq!(v2017.cp.get("a21026-ZsRtd"), Some("673.66"), "{}", v2017.cp);
    assert_eq!(v2017.cp.get("a19001-Rtd"), Some("11.7"), "{}", v2017.cp);
    assert_eq!((v2017.cp.get("a21026-Flag"), v2025.cp.get("a21026-Flag")), (Some("N"), Some("N")));
    drop(stops);
}

/// HJ 212-2025 §6.4.4 as read by the one implementation that cites it: 3020 (field
/// information) is encrypted like the data. Not confirmed, so a setting: `encrypt_3020 = false`
/// sends it plain for a platform that expects that.
#[tokio::test]
async fn field_information_is_encrypted_unless_the_link_says_not() {
    for (extra, encrypted) in [("", true), ("encrypt_3020 = false", false)] {
        let platform = Platform::start(Some(KEY0)).await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("u.db");
        let key = key_file(dir.path(), KEY0);
        let cfg = link_config(
            &db,
            &platform.address,
            &format!("encrypt = true\nkey_file = \"{}\"\n{extra}", key.display()),
        );
        let _store = store_with_hours(&db, 1);
        let _stop = start(&cfg, 0);
        platform.wait_for("the connection", |s| s.packets.iter().any(|p| p.cn == "2081")).await;
        platform.send("20261129100000007", "3020", "MN2025TEST01", 9, &[("InfoId", "i22001")]);
        platform.wait_for("the answer", |s| s.packets.iter().any(|p| p.cn == "9012")).await;
        let answer = &platform.packets("3020")[0];
        assert_eq!(
            (answer.flag, answer.cp.get("i22001-Info")),
            (Some(8), Some("0")),
            "read back with the key"
        );
        let wire = String::from_utf8_lossy(&platform.seen.lock().unwrap().raw).to_string();
        assert_eq!(
            wire.contains("CN=3020;PW=123456;MN=MN2025TEST01;Flag=8;CP=&&{0x"),
            encrypted,
            "{extra}: {wire}"
        );
        assert_eq!(wire.contains("i22001-Info=0"), !encrypted, "{extra}");
    }
}
