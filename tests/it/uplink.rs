//! Platform links against an in-process HJ 212 platform on loopback with modes (acknowledge,
//! never acknowledge, wrong QN) that can also send requests: queued records leave only on their
//! acknowledgement and in order; unanswered uploads are resent, then the link is dropped and
//! rebuilt; Annex C exchanges for time, intervals, password, refusals and backfill.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cems_gateway::compute::{Level, Record};
use cems_gateway::config::Config;
use cems_gateway::hj212::{Cp, Decoded, Decoder, Packet};
use cems_gateway::live::Live;
use cems_gateway::model::{Flag, now_ms};
use cems_gateway::store::Store;
use cems_gateway::store::outbox::Kind;
use cems_gateway::uplink::Link;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::support::{hour_record, kiln_config, outbox, store_with_hours};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Ack,
    NeverAck,
    WrongQn,
    /// Answer an hourly upload with the first half of its acknowledgement, then close the
    /// connection.
    CutMidFrame,
}

/// The platform: records every packet it receives, acknowledges per its mode, and sends what
/// the test pushes into `requests`.
struct Platform {
    address: String,
    received: Arc<Mutex<Vec<Packet>>>,
    connections: Arc<Mutex<u32>>,
    requests: mpsc::UnboundedSender<String>,
    mode: watch::Sender<Mode>,
}

impl Platform {
    async fn start(mode: Mode) -> Platform {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (requests, mut req_rx) = mpsc::unbounded_channel::<String>();
        let (mode_tx, mode_rx) = watch::channel(mode);
        let (rec, conns) = (received.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                *conns.lock().unwrap() += 1;
                let (mut rd, mut wr) = stream.into_split();
                let mut decoder = Decoder::default();
                let mut buf = vec![0u8; 4096];
                let mut cut = false;
                while !cut {
                    tokio::select! {
                        n = rd.read(&mut buf) => {
                            let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                            decoder.push(&buf[..n]);
                            while let Some(d) = decoder.next_frame() {
                                let Decoded::Packet(p) = d else { continue };
                                rec.lock().unwrap().push(p.clone());
                                let mode = *mode_rx.borrow();
                                if p.wants_ack() && mode != Mode::NeverAck {
                                    let mut qn = p.qn.clone().unwrap();
                                    if mode == Mode::WrongQn {
                                        qn = "20000101000000000".into();
                                    }
                                    // Heartbeats (2025) are answered with 9013, uploads with 9014.
                                    let cn = if p.cn == "9015" { "9013" } else { "9014" };
                                    let ack = Packet { qn: Some(qn), st: "91".into(), cn: cn.into(), pw: p.pw.clone(), mn: p.mn.clone(), flag: Some(p.flag.unwrap_or(4) & !3), packets: None, rf: false, cp: Cp::default() };
                                    let frame = ack.encode().unwrap();
                                    if mode == Mode::CutMidFrame && p.cn == "2061" {
                                        let _ = wr.write_all(&frame.as_bytes()[..frame.len() / 2]).await;
                                        cut = true;
                                        break;
                                    }
                                    if wr.write_all(frame.as_bytes()).await.is_err() { break; }
                                }
                            }
                        }
                        Some(req) = req_rx.recv() => {
                            if wr.write_all(req.as_bytes()).await.is_err() { break; }
                        }
                    }
                }
            }
        });
        Platform { address, received, connections, requests, mode: mode_tx }
    }

    fn packets(&self, cn: &str) -> Vec<Packet> {
        self.received.lock().unwrap().iter().filter(|p| p.cn == cn).cloned().collect()
    }

    fn all(&self) -> Vec<Packet> {
        self.received.lock().unwrap().clone()
    }

    fn request(&self, qn: &str, cn: &str, pw: &str, cp: &[(&str, &str)]) {
        let p = Packet {
            qn: Some(qn.into()),
            st: "31".into(),
            cn: cn.into(),
            pw: pw.into(),
            mn: "LINKTEST01".into(),
            flag: Some(5),
            packets: None,
            rf: false,
            cp: Cp::single(cp),
        };
        self.requests.send(p.encode().unwrap()).unwrap();
    }

    async fn wait_for(&self, what: &str, check: impl Fn(&[Packet]) -> bool) {
        for _ in 0..300 {
            if check(&self.all()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "platform never saw {what}: {:#?}",
            self.all().iter().map(|p| (p.cn.clone(), p.cp.to_string())).collect::<Vec<_>>()
        );
    }
}

fn link_config(db: &std::path::Path, address: &str, extra: &str) -> Config {
    kiln_config(
        db,
        "LINKTEST01",
        &format!(
            r#"[[uplink]]
name = "province"
address = "{address}"
realtime = false
minute = false
day = false
{extra}
"#
        ),
    )
}

fn start_link(cfg: &Config) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let cfg = Arc::new(cfg.clone());
    let outbox = outbox(&cfg.storage.path);
    let link = Link::new(cfg.uplinks[0].clone(), cfg.clone(), outbox, Arc::new(Live::default())).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    (stop, tokio::spawn(link.run(stop_rx)))
}

fn data_time(p: &Packet) -> String {
    p.cp.get("DataTime").unwrap().to_string()
}

#[tokio::test]
async fn queued_hours_reach_the_platform_in_order_and_leave_the_queue_on_ack() {
    let platform = Platform::start(Mode::Ack).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let cfg = link_config(&db, &platform.address, "");
    let (store, starts) = store_with_hours(&db, 5);
    let (stop, task) = start_link(&cfg);
    platform.wait_for("5 hourly uploads", |all| all.iter().filter(|p| p.cn == "2061").count() >= 5).await;
    let hours = platform.packets("2061");
    let times: Vec<String> = hours.iter().map(data_time).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "in order");
    assert_eq!(times.len(), 5, "each once: {times:?}");
    assert_eq!(hours[0].cp.get("a21026-Avg"), Some("10"));
    assert_eq!(hours[0].cp.get("a21026-ZsAvg"), Some("11"));
    assert_eq!(hours[4].cp.get("a21026-Avg"), Some("14"));
    assert!(hours.iter().all(|p| p.flag == Some(5) && p.st == "31" && p.mn == "LINKTEST01"));
    // On connection the restart notice comes first (no 1013: a platform's 1012 is refused).
    let all = platform.all();
    assert_eq!(all[0].cn, "2081");
    assert!(!all.iter().any(|p| p.cn == "1013"));
    // The cursor is written within a second of the acknowledgement.
    let last = Some((starts[4] - 8 * 3600) * 1000);
    let cursor = || store.lock().unwrap().cursor("province", Kind::Hour).unwrap();
    platform.wait_for("the cursor on the last hour", |_| cursor() == last).await;
    assert_eq!(cursor(), last, "the last acknowledged hour");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn unanswered_uploads_are_resent_then_the_link_is_rebuilt_and_nothing_is_lost() {
    let platform = Platform::start(Mode::NeverAck).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let cfg =
        link_config(&db, &platform.address, "overtime_s = 1\nrecount = 2\nreconnect_max_s = 1\nwindow = 1");
    let (store, _) = store_with_hours(&db, 3);
    let (stop, task) = start_link(&cfg);
    // OverTime 1 s × ReCount 2: the first hour twice, then a new connection, on which it is sent
    // again. The restart notice (2081) travels beside it and hold nothing up: the first hour goes
    // out at once although nothing answers them.
    platform.wait_for("a second connection", |_| *platform.connections.lock().unwrap() >= 2).await;
    platform
        .wait_for("the first hour three times", |all| all.iter().filter(|p| p.cn == "2061").count() >= 3)
        .await;
    let first = platform.packets("2061");
    assert_eq!(first[0].qn, first[1].qn, "a resend repeats the frame");
    assert!(
        first.iter().all(|p| data_time(p) == data_time(&first[0])),
        "window 1: the first hour until it is acknowledged"
    );
    let all = platform.all();
    let first_hour = all.iter().position(|p| p.cn == "2061").unwrap();
    assert!(all[..first_hour].iter().all(|p| p.cn != "2061"));
    assert!(
        first_hour <= 2,
        "data does not wait for unanswered notices: {:?}",
        all.iter().map(|p| &p.cn).collect::<Vec<_>>()
    );
    assert_eq!(
        store.lock().unwrap().cursor("province", Kind::Hour).unwrap(),
        None,
        "nothing acknowledged, nothing left the queue"
    );
    // A wrong QN does not acknowledge either; the right one does.
    platform.mode.send(Mode::WrongQn).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.lock().unwrap().cursor("province", Kind::Hour).unwrap(), None);
    platform.mode.send(Mode::Ack).unwrap();
    platform
        .wait_for("all three hours acknowledged", |all| {
            let mut t: Vec<String> = all.iter().filter(|p| p.cn == "2061").map(data_time).collect();
            t.dedup();
            t.len() >= 3
        })
        .await;
    let mut times: Vec<String> = platform.packets("2061").iter().map(data_time).collect();
    times.dedup();
    let mut sorted = times.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(times, sorted, "order kept across resends and reconnections");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn platform_requests_are_answered_per_annex_c() {
    let platform = Platform::start(Mode::Ack).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let cfg = link_config(&db, &platform.address, "hour = false");
    let (store, starts) = store_with_hours(&db, 3);
    let (stop, task) = start_link(&cfg);
    platform.wait_for("the restart notice", |all| all.iter().any(|p| p.cn == "2081")).await;
    let replies = |qn: &str| -> Vec<(String, String)> {
        platform
            .all()
            .iter()
            .filter(|p| p.qn.as_deref() == Some(qn))
            .map(|p| (p.cn.clone(), p.cp.to_string()))
            .collect()
    };

    // 1011 get time: 9011 QnRtn=1, 1011 with SystemTime, 9012 ExeRtn=1, all with the request's QN.
    platform.request("20261129100000001", "1011", "123456", &[]);
    platform.wait_for("9012 for 1011", |_| replies("20261129100000001").len() >= 3).await;
    let r = replies("20261129100000001");
    assert_eq!((r[0].0.as_str(), r[0].1.as_str()), ("9011", "QnRtn=1"));
    assert_eq!(r[1].0, "1011");
    assert!(r[1].1.starts_with("SystemTime=20"), "{r:?}");
    assert_eq!((r[2].0.as_str(), r[2].1.as_str()), ("9012", "ExeRtn=1"));

    // 1012 set time: refused (the gateway's clock follows NTP), audited, the difference kept;
    // the time written in frames does not move.
    platform.request("20261129100000002", "1012", "123456", &[("SystemTime", "20300101000000")]);
    platform.wait_for("9011 for 1012", |_| !replies("20261129100000002").is_empty()).await;
    assert_eq!(replies("20261129100000002"), [("9011".to_string(), "QnRtn=2".to_string())]);
    let setting =
        || store.lock().unwrap().setting("*", cems_gateway::uplink::PLATFORM_CLOCK_SETTING).unwrap();
    for _ in 0..50 {
        if setting().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let diff: i64 = setting().expect("the difference is kept").parse().unwrap();
    assert!(diff > 86_400_000 * 365, "the platform's 2030 is years ahead: {diff}");
    let audited: Vec<String> = rusqlite::Connection::open(&db)
        .unwrap()
        .prepare("SELECT detail FROM audit WHERE kind = 'clock'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        audited.iter().any(|d| d.starts_with("1012 refused: platform time 20300101000000")),
        "{audited:?}"
    );
    platform.request("20261129100000012", "1011", "123456", &[]);
    platform.wait_for("1011 after the refused 1012", |_| replies("20261129100000012").len() >= 3).await;
    let now_year =
        cems_gateway::time::Offset::CHINA.local(cems_gateway::clock::now()).hj14()[..4].to_string();
    assert!(
        replies("20261129100000012")[1].1.starts_with(&format!("SystemTime={now_year}")),
        "the clock did not move"
    );

    // 1062 set the real-time interval: persisted; out of range refused with QnRtn=2.
    platform.request("20261129100000003", "1062", "123456", &[("RtdInterval", "60")]);
    platform.wait_for("9012 for 1062", |_| replies("20261129100000003").len() >= 2).await;
    assert_eq!(store.lock().unwrap().setting("province", "rtd_interval_s").unwrap().as_deref(), Some("60"));
    platform.request("20261129100000004", "1062", "123456", &[("RtdInterval", "5")]);
    platform.wait_for("refusal", |_| !replies("20261129100000004").is_empty()).await;
    assert_eq!(replies("20261129100000004")[0].1, "QnRtn=2");

    // Wrong password, unknown command.
    platform.request("20261129100000005", "1011", "000000", &[]);
    platform.request("20261129100000006", "4242", "123456", &[]);
    platform
        .wait_for("both refusals", |_| {
            !replies("20261129100000005").is_empty() && !replies("20261129100000006").is_empty()
        })
        .await;
    assert_eq!(replies("20261129100000005")[0].1, "QnRtn=3");
    assert_eq!(replies("20261129100000006")[0].1, "QnRtn=8");

    // Backfill of the stored hours: 9011, each hour with a new QN (acknowledged), 9012 ExeRtn=1.
    let fmt = |local: i64| cems_gateway::report::format_local(local).replace(['-', ' ', ':'], "") + "00";
    platform.request(
        "20261129100000007",
        "2061",
        "123456",
        &[("BeginTime", &fmt(starts[0])), ("EndTime", &fmt(starts[2]))],
    );
    platform
        .wait_for("9012 for the backfill", |_| {
            replies("20261129100000007").iter().any(|(cn, _)| cn == "9012")
        })
        .await;
    let backfilled = platform.packets("2061");
    assert_eq!(backfilled.len(), 3, "{backfilled:?}");
    assert!(backfilled.iter().all(|p| p.qn.as_deref() != Some("20261129100000007")), "new QNs");
    assert_eq!(replies("20261129100000007").last().unwrap().1, "ExeRtn=1");
    // Nothing in the window: ExeRtn=100.
    platform.request(
        "20261129100000008",
        "2061",
        "123456",
        &[("BeginTime", "20200101000000"), ("EndTime", "20200102000000")],
    );
    platform.wait_for("9012 no data", |_| replies("20261129100000008").len() >= 2).await;
    assert_eq!(replies("20261129100000008")[1].1, "ExeRtn=100");

    // 1072 new password: the result under the old one, everything after under the new.
    platform.request("20261129100000009", "1072", "123456", &[("NewPW", "654321")]);
    platform.wait_for("9012 for 1072", |_| replies("20261129100000009").len() >= 2).await;
    platform.request("20261129100000010", "1011", "654321", &[]);
    platform.wait_for("answer under the new password", |_| replies("20261129100000010").len() >= 3).await;
    assert!(
        platform
            .all()
            .iter()
            .filter(|p| p.qn.as_deref() == Some("20261129100000010"))
            .all(|p| p.pw == "654321")
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

fn minute_record(start_local: i64, factor: &str, avg: f64) -> Record {
    let mut r = hour_record(start_local, factor, avg);
    r.level = Level::Minute;
    r.limit = None;
    r.stat.n_total = 30;
    r.stat.n_valid = 30;
    r
}

#[tokio::test]
async fn realtime_is_sent_live_and_minute_blocks_are_aggregated() {
    let platform = Platform::start(Mode::Ack).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let mut cfg = link_config(&db, &platform.address, "hour = false\nmin_interval = 5");
    cfg.uplinks[0].minute = true;
    let (mut store, _) = Store::open(&db).unwrap();
    // Ten minutes, two hours ago, SO2 1..10: two 5-minute blocks, averages 3 and 8.
    let now_local = now_ms() / 1000 + 8 * 3600;
    let base = now_local - now_local.rem_euclid(3600) - 2 * 3600;
    let minutes: Vec<Record> =
        (0..10).map(|i| minute_record(base + i * 60, "a21026", 1.0 + i as f64)).collect();
    store.upsert_records("kiln", &minutes, 8 * 3600).unwrap();
    drop(store);
    // Real-time every 200 ms (the configuration allows 30 s and more; the test shortens it).
    cfg.uplinks[0].realtime = true;
    cfg.uplinks[0].rtd_interval = Duration::from_millis(200);
    let live = Arc::new(Live::default());
    let reading = |factor: &str, v: Option<f64>, flag: Flag| cems_gateway::model::Sample {
        ts_ms: now_ms(),
        device: Arc::from("gas"),
        factor: Arc::from(factor),
        value: v,
        flag,
    };
    let sample = |v: Option<f64>, flag: Flag| reading("a21026", v, flag);
    // SO2 with 13 % O2: ZsRtd (28) 18.5 × (21 − 10) / (21 − 13) = 25.4375 → 25.44 (N5.2).
    live.record_poll("gas", &[sample(Some(18.5), Flag::N), reading("a19001", Some(13.0), Flag::N)], None);
    let cfg = Arc::new(cfg);
    let link = Link::new(cfg.uplinks[0].clone(), cfg.clone(), outbox(&db), live.clone()).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(link.run(stop_rx));
    platform.wait_for("two minute blocks", |all| all.iter().filter(|p| p.cn == "2051").count() >= 2).await;
    let blocks = platform.packets("2051");
    assert_eq!(blocks[0].cp.get("a21026-Avg"), Some("3"));
    assert_eq!(blocks[1].cp.get("a21026-Avg"), Some("8"));
    assert_eq!(blocks[0].cp.get("a21026-Flag"), Some("N"));
    platform.wait_for("real-time data", |all| all.iter().any(|p| p.cn == "2011")).await;
    let rt = &platform.packets("2011")[0];
    assert_eq!(
        (rt.cp.get("a21026-Rtd"), rt.cp.get("a21026-ZsRtd"), rt.cp.get("a21026-Flag")),
        (Some("18.5"), Some("25.44"), Some("N"))
    );
    assert_eq!(rt.flag, Some(4), "real-time is not acknowledged, nor queued");
    // A communication failure: flag B and no value, never the last good one.
    live.record_poll(
        "gas",
        &[sample(None, Flag::B), reading("a19001", Some(13.0), Flag::N)],
        Some("timeout".into()),
    );
    platform
        .wait_for("a B real-time value", |all| {
            all.iter().any(|p| p.cn == "2011" && p.cp.get("a21026-Flag") == Some("B"))
        })
        .await;
    let b = platform.packets("2011").into_iter().find(|p| p.cp.get("a21026-Flag") == Some("B")).unwrap();
    assert_eq!(b.cp.get("a21026-Rtd"), None);
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Two platforms: one is down for a day's backlog; the other gets everything meanwhile, and
/// the first gets it all, in order, once it is back.
#[tokio::test]
async fn a_platform_that_is_down_does_not_hold_up_the_other() {
    let up = Platform::start(Mode::Ack).await;
    let down_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let mut cfg = link_config(&db, &up.address, "");
    let mut second = cfg.uplinks[0].clone();
    second.name = "city".into();
    second.address = format!("127.0.0.1:{down_port}");
    second.reconnect_max = Duration::from_millis(500);
    cfg.uplinks.push(second);
    // A whole day of hourly records: the second platform is down for all of it. Both queues
    // start just before the first hour (a new link would start only 24 h back).
    let (store, starts) = store_with_hours(&db, 24);
    for link in ["province", "city"] {
        store.lock().unwrap().set_cursor(link, Kind::Hour, (starts[0] - 8 * 3600 - 3600) * 1000).unwrap();
    }
    let cfg = Arc::new(cfg);
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let outbox = outbox(&db);
    for u in &cfg.uplinks {
        let link = Link::new(u.clone(), cfg.clone(), outbox.clone(), Arc::new(Live::default())).unwrap();
        tasks.push(tokio::spawn(link.run(stop_rx.clone())));
    }
    up.wait_for("24 hours at the working platform", |all| {
        all.iter().filter(|p| p.cn == "2061").count() >= 24
    })
    .await;
    assert_eq!(
        store.lock().unwrap().cursor("city", Kind::Hour).unwrap(),
        Some((starts[0] - 8 * 3600 - 3600) * 1000),
        "nothing left the down platform's queue"
    );
    // The second platform comes up on its address.
    let listener = TcpListener::bind(format!("127.0.0.1:{down_port}")).await.unwrap();
    let late = cems_gateway::sim::platform::serve(listener, Duration::ZERO, true);
    for _ in 0..300 {
        if late.all.lock().unwrap().iter().filter(|p| p.cn == "2061").count() >= 24 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let times: Vec<String> =
        late.all.lock().unwrap().iter().filter(|p| p.cn == "2061").map(data_time).collect();
    let mut sorted = times.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(times.len(), 24);
    assert_eq!(times, sorted, "in order, each once");
    stop.send(true).unwrap();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The real daemon killed with SIGKILL in the middle of a backlog, then started again: every
/// queued minute reaches the platform at least once, in order, none missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_backlog_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let platform = cems_gateway::sim::platform::serve(listener, Duration::from_millis(2), true);
    // 600 minutes, ending two hours ago (outside what the daemon's statistics recompute).
    let (mut store, _) = Store::open(&db).unwrap();
    let now_local = now_ms() / 1000 + 8 * 3600;
    let end = now_local - now_local.rem_euclid(3600) - 2 * 3600;
    let expected: Vec<i64> = (0..600).map(|i| end - (600 - i) * 60).collect();
    let minutes: Vec<Record> = expected.iter().map(|s| minute_record(*s, "a21026", 5.0)).collect();
    store.upsert_records("kiln-tail", &minutes, 8 * 3600).unwrap();
    drop(store);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
        .unwrap()
        .replace("127.0.0.1:1502", "127.0.0.1:1")
        .replace("path = \"cems-demo.db\"", &format!("path = \"{}\"", db.display()))
        + &format!(
            "\n[[uplink]]\nname = \"p\"\naddress = \"{address}\"\nrealtime = false\nhour = false\nday = false\nmin_interval = 1\n"
        );
    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let count = || platform.all.lock().unwrap().iter().filter(|p| p.cn == "2051").count();
    let mut first = spawn();
    for _ in 0..500 {
        if count() >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = count();
    assert!((150..600).contains(&at_kill), "killed mid-backlog: {at_kill}");
    let fmt = |local: i64| cems_gateway::report::format_local(local).replace(['-', ' ', ':'], "") + "00";
    let wanted: Vec<String> = expected.iter().map(|s| fmt(*s)).collect();
    let last = wanted.last().unwrap().clone();
    let mut second = spawn();
    for _ in 0..1500 {
        if platform
            .all
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.cn == "2051" && p.cp.get("DataTime") == Some(last.as_str()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let got: Vec<String> = platform
        .all
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.cn == "2051")
        .map(data_time)
        .filter(|t| wanted.contains(t))
        .collect();
    // In order within each run; the second run may repeat what the first had sent but not yet
    // durably marked (at least once); together nothing is missing.
    let restarts: Vec<usize> = (1..got.len()).filter(|&i| got[i] < got[i - 1]).collect();
    assert!(restarts.len() <= 1, "order broken more than once at the restart: {restarts:?}");
    let (before, after) = got.split_at(restarts.first().copied().unwrap_or(got.len()));
    for run in [before, after] {
        assert!(run.windows(2).all(|w| w[0] <= w[1]), "in order within a run");
    }
    let mut distinct = got.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), wanted.len(), "none missing");
    assert!(distinct == wanted);
}

/// The provisional HJ 212-2025 profile: version bits 000010 (Flag 9 with A) and the 9015
/// heartbeat the platform answers with 9013.
#[tokio::test]
async fn the_2025_profile_sends_heartbeats_and_version_2_flags() {
    let platform = Platform::start(Mode::Ack).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let mut cfg = link_config(&db, &platform.address, "protocol = \"2025\"");
    cfg.uplinks[0].heartbeat = Duration::from_millis(200);
    let (_store, _) = store_with_hours(&db, 2);
    let (stop, task) = start_link(&cfg);
    platform
        .wait_for("heartbeats and both hours", |all| {
            all.iter().filter(|p| p.cn == "9015").count() >= 3
                && all.iter().filter(|p| p.cn == "2061").count() >= 2
        })
        .await;
    assert!(platform.packets("9015").iter().all(|p| p.flag == Some(9) && p.cp == Cp::default()));
    assert!(platform.packets("2061").iter().all(|p| p.flag == Some(9)));
    assert_eq!(*platform.connections.lock().unwrap(), 1, "answered heartbeats keep the link");
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// A platform that sends garbage and a truncated frame (whose declared length then swallows
/// the next acknowledgement): the link resynchronises, resends what was not acknowledged, and
/// every period still arrives, once each after deduplication, in order.
#[tokio::test]
async fn garbage_and_a_truncated_frame_from_the_platform_are_survived() {
    let platform = Platform::start(Mode::Ack).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let cfg = link_config(&db, &platform.address, "overtime_s = 2\nreconnect_max_s = 1");
    let (_store, _) = store_with_hours(&db, 6);
    // Garbage and half a frame are queued for the link before anything else.
    platform.requests.send("\u{0}\u{7f}garbage ## not a frame\r\n".into()).unwrap();
    platform.requests.send("##0101QN=2016080108585722".into()).unwrap();
    let (stop, task) = start_link(&cfg);
    platform
        .wait_for("all six hours", |all| {
            let mut t: Vec<String> = all.iter().filter(|p| p.cn == "2061").map(data_time).collect();
            t.dedup();
            t.len() >= 6
        })
        .await;
    let mut times: Vec<String> = platform.packets("2061").iter().map(data_time).collect();
    times.dedup();
    assert_eq!(times.len(), 6);
    assert!(times.windows(2).all(|w| w[0] < w[1]), "in order: {times:?}");
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Slow acknowledgements (below OverTime) are waited for, not resent.
#[tokio::test]
async fn slow_acknowledgements_are_waited_for() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let platform = cems_gateway::sim::platform::serve(listener, Duration::from_millis(400), true);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let cfg = link_config(&db, &address, "overtime_s = 2");
    let (_store, _) = store_with_hours(&db, 3);
    let (stop, task) = start_link(&cfg);
    for _ in 0..300 {
        if platform.all.lock().unwrap().iter().filter(|p| p.cn == "2061").count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hours: Vec<Packet> =
        platform.all.lock().unwrap().iter().filter(|p| p.cn == "2061").cloned().collect();
    assert_eq!(hours.len(), 3, "each hour once: a 400 ms acknowledgement is not a timeout");
    assert_eq!(platform.snapshot().connections, 1);
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// A platform that cuts the connection in the middle of its acknowledgement frame: the period
/// stays queued, the link reconnects and sends it again; once the platform acknowledges
/// normally, every period has arrived, in order, none missing.
#[tokio::test]
async fn a_connection_cut_mid_frame_loses_nothing() {
    let platform = Platform::start(Mode::CutMidFrame).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let cfg = link_config(&db, &platform.address, "reconnect_max_s = 1");
    let (store, starts) = store_with_hours(&db, 4);
    let (stop, task) = start_link(&cfg);
    platform
        .wait_for("the first hour sent on two connections", |all| {
            *platform.connections.lock().unwrap() >= 2 && all.iter().filter(|p| p.cn == "2061").count() >= 2
        })
        .await;
    assert_eq!(
        store.lock().unwrap().cursor("province", Kind::Hour).unwrap(),
        None,
        "a half acknowledgement is none"
    );
    let first: Vec<String> = platform.packets("2061").iter().map(data_time).collect();
    assert!(
        first.len() >= 2 && first.iter().all(|t| t == &first[0]),
        "the first hour again and again: {first:?}"
    );

    platform.mode.send(Mode::Ack).unwrap();
    platform
        .wait_for("all four hours", |all| {
            let mut t: Vec<String> = all.iter().filter(|p| p.cn == "2061").map(data_time).collect();
            t.dedup();
            t.len() >= 4
        })
        .await;
    let mut times: Vec<String> = platform.packets("2061").iter().map(data_time).collect();
    times.dedup();
    assert_eq!(times.len(), 4);
    assert!(times.windows(2).all(|w| w[0] < w[1]), "in order: {times:?}");
    // The platform sees the last hour before its acknowledgement reaches the link.
    let last = Some((starts[3] - 8 * 3600) * 1000);
    let cursor = || store.lock().unwrap().cursor("province", Kind::Hour).unwrap();
    platform.wait_for("the cursor on the last hour", |_| cursor() == last).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(cursor(), last);
}

/// A SIGHUP reload rebuilds the pipeline and its links but is not a restart: the new connection
/// sends no second 2081; the one 2081 carries the process start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_not_a_restart_no_second_2081() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let platform = cems_gateway::sim::platform::serve(listener, Duration::ZERO, true);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
        .unwrap()
        .replace("127.0.0.1:1502", "127.0.0.1:1")
        .replace("path = \"cems-demo.db\"", &format!("path = \"{}\"", db.display()))
        + &format!("\n[[uplink]]\nname = \"p\"\naddress = \"{address}\"\nrealtime = false\n");
    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let started = now_ms();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let count = |cn: &str| platform.all.lock().unwrap().iter().filter(|p| p.cn == cn).count();
    let reached = crate::support::eventually(Duration::from_secs(20), || count("2081") >= 1).await;
    assert!(reached, "the first 2081");
    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGHUP) }, 0);
    let reconnected =
        crate::support::eventually(Duration::from_secs(20), || platform.snapshot().connections >= 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(reconnected, "the reloaded pipeline connected again");
    assert_eq!(count("2081"), 1, "no 2081 on reload");
    let notice = platform.all.lock().unwrap().iter().find(|p| p.cn == "2081").cloned().unwrap();
    let restart =
        cems_gateway::hj212::message::parse_time14(notice.cp.get("RestartTime").unwrap(), 8 * 3600).unwrap();
    assert!((restart - started).abs() < 5_000, "RestartTime is the process start");
}

/// 2041 and 2021 end to end: yesterday's run time computed from the stored run-status samples
/// (running 00:00–06:00: 6 hours), and the current run state every RtdInterval.
#[tokio::test]
async fn run_time_and_run_status_reach_the_platform() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let platform = cems_gateway::sim::platform::serve(listener, Duration::ZERO, true);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let mut cfg = kiln_config(
        &db,
        "LINKTEST01",
        &format!(
            "  [[device.point]]\n  factor = \"SB1-RS\"\n  address = 4\n  type = \"u16\"\n[[uplink]]\nname = \"province\"\naddress = \"{address}\"\nrealtime = false\nminute = false\nhour = false\nday = false\nrun_status = true\n"
        ),
    );
    cfg.uplinks[0].rtd_interval = Duration::from_millis(200);
    let now_local = now_ms() / 1000 + 8 * 3600;
    let yesterday = now_local - now_local.rem_euclid(86_400) - 86_400;
    let day_ms = (yesterday - 8 * 3600) * 1000;
    let sample = |ts_ms: i64, v: f64| cems_gateway::model::Sample {
        ts_ms,
        device: Arc::from("gas"),
        factor: Arc::from("SB1-RS"),
        value: Some(v),
        flag: Flag::N,
    };
    let samples: Vec<_> =
        (0..24 * 60).map(|m| sample(day_ms + m * 60_000, if m < 6 * 60 { 1.0 } else { 0.0 })).collect();
    let (mut store, _) = Store::open(&db).unwrap();
    store.insert(&samples).unwrap();
    drop(store);
    let live = Arc::new(Live::default());
    live.record_poll("gas", &[sample(now_ms(), 1.0)], None);
    let cfg = Arc::new(cfg);
    let link = Link::new(cfg.uplinks[0].clone(), cfg.clone(), outbox(&db), live).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(link.run(stop_rx));
    let seen =
        |cn: &str| platform.all.lock().unwrap().iter().filter(|p| p.cn == cn).cloned().collect::<Vec<_>>();
    let arrived = crate::support::eventually(Duration::from_secs(10), || {
        !seen("2041").is_empty() && !seen("2021").is_empty()
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(arrived, "2041 and 2021 arrive");
    let fmt = |local: i64| cems_gateway::report::format_local(local).replace(['-', ' ', ':'], "") + "00";
    let rt = &seen("2041")[0];
    assert_eq!(rt.cp.to_string(), format!("DataTime={};SB1-RT=6", fmt(yesterday)));
    assert_eq!(rt.flag, Some(4), "2041 asks for no answer by default");
    let rs = &seen("2021")[0];
    assert_eq!(rs.cp.get("SB1-RS"), Some("1"));
    assert_eq!(seen("2011").len(), 0);
}
