//! Platform links against an in-process HJ 212 platform on loopback with modes (acknowledge,
//! never acknowledge, wrong QN) that can also send requests: queued records leave only on their
//! acknowledgement and in order; unanswered uploads are resent, then the link is dropped and
//! rebuilt; Annex C exchanges for time, intervals, password, refusals and backfill.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cems_gateway::compute::stats::Stat;
use cems_gateway::compute::{Level, Record};
use cems_gateway::config::Config;
use cems_gateway::hj212::{Cp, Decoded, Decoder, Packet};
use cems_gateway::live::Live;
use cems_gateway::model::{Flag, now_ms};
use cems_gateway::store::Store;
use cems_gateway::uplink::Link;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::support::config;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Ack,
    NeverAck,
    WrongQn,
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
                loop {
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
                                    let ack = Packet { qn: Some(qn), st: "91".into(), cn: "9014".into(), pw: p.pw.clone(), mn: p.mn.clone(), flag: Some(4), packets: None, cp: Cp::default() };
                                    if wr.write_all(ack.encode().unwrap().as_bytes()).await.is_err() { break; }
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
    config(&format!(
        r#"
[site]
mn = "LINKTEST01"
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
[[uplink]]
name = "province"
address = "{address}"
realtime = false
minute = false
day = false
{extra}
"#,
        db.display()
    ))
}

fn hour_record(start_local: i64, factor: &str, avg: f64) -> Record {
    Record {
        level: Level::Hour,
        start: start_local,
        factor: factor.into(),
        stat: Stat {
            n_total: 60,
            n_valid: 60,
            min: Some(avg - 1.0),
            avg: Some(avg),
            max: Some(avg + 1.0),
            zs_avg: Some(avg * 1.1),
            cou: None,
            flag: Flag::N,
        },
        limit: Some(35.0),
        exceeded: false,
    }
}

/// Hour records for the last `n` closed hours (local time +8 h), values 10, 11, ….
fn store_with_hours(db: &std::path::Path, n: i64) -> (Arc<Mutex<Store>>, Vec<i64>) {
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

fn start_link(cfg: &Config, store: Arc<Mutex<Store>>) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let cfg = Arc::new(cfg.clone());
    let link = Link::new(cfg.uplinks[0].clone(), cfg.clone(), store, Arc::new(Live::default())).unwrap();
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
    let (stop, task) = start_link(&cfg, store.clone());
    platform.wait_for("5 hourly uploads", |all| all.iter().filter(|p| p.cn == "2061").count() >= 5).await;
    let hours = platform.packets("2061");
    let times: Vec<String> = hours.iter().map(data_time).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "in order");
    assert_eq!(times.len(), 5, "each once");
    assert_eq!(hours[0].cp.get("a21026-Avg"), Some("10"));
    assert_eq!(hours[0].cp.get("a21026-ZsAvg"), Some("11"));
    assert_eq!(hours[4].cp.get("a21026-Avg"), Some("14"));
    assert!(hours.iter().all(|p| p.flag == Some(5) && p.st == "31" && p.mn == "LINKTEST01"));
    // Annex C on connection: a time-calibration request and the restart notice come first.
    let all = platform.all();
    assert_eq!(all[0].cn, "1013");
    assert_eq!(all[1].cn, "2081");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cursor = store.lock().unwrap().cursor("province", 1).unwrap();
    assert_eq!(cursor, Some((starts[4] - 8 * 3600) * 1000), "the last acknowledged hour");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn unanswered_uploads_are_resent_then_the_link_is_rebuilt_and_nothing_is_lost() {
    let platform = Platform::start(Mode::NeverAck).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let cfg = link_config(&db, &platform.address, "overtime_s = 1\nrecount = 2\nreconnect_max_s = 1");
    let (store, _) = store_with_hours(&db, 3);
    let (stop, task) = start_link(&cfg, store.clone());
    // OverTime 1 s × ReCount 2: the first upload (the restart notice) twice, then a new
    // connection, on which it is sent again: nothing behind it overtakes it.
    platform.wait_for("a second connection", |_| *platform.connections.lock().unwrap() >= 2).await;
    platform
        .wait_for("the restart notice three times", |all| all.iter().filter(|p| p.cn == "2081").count() >= 3)
        .await;
    let first = platform.packets("2081");
    assert_eq!(first[0].qn, first[1].qn, "a resend repeats the frame");
    assert!(platform.packets("2061").is_empty(), "window 1: nothing overtakes the unacknowledged upload");
    assert_eq!(
        store.lock().unwrap().cursor("province", 1).unwrap(),
        None,
        "nothing acknowledged, nothing left the queue"
    );
    // A wrong QN does not acknowledge either; the right one does.
    platform.mode.send(Mode::WrongQn).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.lock().unwrap().cursor("province", 1).unwrap(), None);
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
    let (stop, task) = start_link(&cfg, store.clone());
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

    // 1012 set time: recorded as an offset.
    platform.request("20261129100000002", "1012", "123456", &[("SystemTime", "20300101000000")]);
    platform.wait_for("9012 for 1012", |_| replies("20261129100000002").len() >= 2).await;
    let offset: i64 =
        store.lock().unwrap().setting("*", "clock_offset_ms").unwrap().unwrap().parse().unwrap();
    assert!(offset > 86_400_000 * 365, "the platform's 2030 is years ahead: {offset}");

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
