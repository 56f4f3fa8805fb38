//! Modbus TCP on loopback: the simulator as a healthy peer, and a raw server that injects
//! faults (disconnect mid-request, replies past the deadline).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cems_gateway::acquire::{BusTask, DevicePlan, Link, PollError};
use cems_gateway::app::demo_config;
use cems_gateway::live::Live;
use cems_gateway::model::{Flag, Sample};
use cems_gateway::sim::{self, EventKind, Script, Sim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::support::{image, one_device_config};

async fn start_sim() -> (Arc<Sim>, String) {
    let sim = Arc::new(Sim::new(Default::default(), Script::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(sim::serve_tcp(listener, sim.clone()));
    (sim, address)
}

fn value(samples: &[Sample], factor: &str) -> (Option<f64>, Flag) {
    let s = samples.iter().find(|s| &*s.factor == factor).unwrap_or_else(|| panic!("no {factor}"));
    (s.value, s.flag)
}

#[tokio::test]
async fn simulator_values_and_states_over_tcp() {
    let (sim, address) = start_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_config(&address, &dir.path().join("d.db")).unwrap();
    let mut link = Link::new(cfg.buses[0].clone());
    let gas = DevicePlan::new(cfg.device("gas").unwrap().clone());
    let dust = DevicePlan::new(cfg.device("dust").unwrap().clone());
    let flow = DevicePlan::new(cfg.device("flow").unwrap().clone());

    let out = link.poll(&gas).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let (so2, flag) = value(&out.samples, "a21026");
    assert_eq!(flag, Flag::N);
    assert!((5.0..35.0).contains(&so2.unwrap()), "SO2 {so2:?}");
    let (o2, _) = value(&out.samples, "a19001");
    assert!((9.0..13.0).contains(&o2.unwrap()), "O2 {o2:?}");
    let out = link.poll(&flow).await;
    assert_eq!(value(&out.samples, "a01012").1, Flag::N);
    assert!((120.0..150.0).contains(&value(&out.samples, "a01012").0.unwrap()));
    assert_eq!(value(&out.samples, "SB1-RS").0, Some(1.0));

    sim.force(1, EventKind::Calibration);
    let out = link.poll(&gas).await;
    assert!(out.samples.iter().all(|s| s.flag == Flag::C), "{:?}", out.samples);
    sim.clear();

    sim.force(1, EventKind::Exceed);
    let out = link.poll(&gas).await;
    let (so2, flag) = value(&out.samples, "a21026");
    assert!(so2.unwrap() > 35.0 && flag == Flag::N, "exceeding the emission limit is not T: {so2:?} {flag}");
    sim.clear();

    sim.force(2, EventKind::Drop);
    let out = link.poll(&dust).await;
    assert!(matches!(out.error, Some(PollError::Timeout(_))), "{:?}", out.error);
    assert_eq!(value(&out.samples, "a34013"), (None, Flag::B));
    let out = link.poll(&gas).await;
    assert!(out.error.is_none(), "other analyzers on the bus still answer: {:?}", out.error);
}

/// Serves raw Modbus TCP; `on_request(connection number, request number)` says what to do.
#[derive(Clone, Copy, Debug)]
enum Act {
    Answer(f64),
    Close,
    Late(Duration, f64),
}

async fn fault_server(
    plan: impl Fn(usize, usize) -> Act + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let plan = Arc::new(plan);
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let conn = counter.fetch_add(1, Ordering::SeqCst);
            let plan = plan.clone();
            tokio::spawn(serve_conn(stream, conn, plan));
        }
    });
    (address, connections)
}

async fn serve_conn(mut stream: TcpStream, conn: usize, plan: Arc<impl Fn(usize, usize) -> Act>) {
    let mut req = [0u8; 12];
    for n in 0.. {
        if stream.read_exact(&mut req).await.is_err() {
            return;
        }
        let (start, count) = (u16::from_be_bytes([req[8], req[9]]), u16::from_be_bytes([req[10], req[11]]));
        let reply = |so2: f64| {
            let regs = image(so2, 9.0, 0);
            let data: Vec<u8> = regs[usize::from(start)..usize::from(start + count)]
                .iter()
                .flat_map(|r| r.to_be_bytes())
                .collect();
            let len = (3 + data.len()) as u16;
            let mut out = vec![req[0], req[1], 0, 0];
            out.extend(len.to_be_bytes());
            out.extend([req[6], req[7], data.len() as u8]);
            out.extend(data);
            out
        };
        match plan(conn, n) {
            Act::Answer(v) => stream.write_all(&reply(v)).await.unwrap(),
            Act::Close => return,
            Act::Late(d, v) => {
                tokio::time::sleep(d).await;
                let _ = stream.write_all(&reply(v)).await;
            }
        }
    }
}

fn tcp_config(address: &str) -> cems_gateway::config::Config {
    let dir = tempfile::tempdir().unwrap();
    one_device_config(
        &format!("kind = \"tcp\"\naddress = \"{address}\"\ntimeout_ms = 200"),
        &dir.path().join("x.db"),
    )
}

#[tokio::test]
async fn disconnect_mid_request_is_flagged_and_the_next_poll_reconnects() {
    let (address, connections) =
        fault_server(|conn, _| if conn == 0 { Act::Close } else { Act::Answer(33.0) }).await;
    let cfg = tcp_config(&address);
    let mut link = Link::new(cfg.buses[0].clone());
    let plan = DevicePlan::new(cfg.devices[0].clone());
    let out = link.poll(&plan).await;
    assert!(out.error.is_some());
    assert!(out.samples.iter().all(|s| s.flag == Flag::B && s.value.is_none()));
    let out = link.poll(&plan).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(value(&out.samples, "a21026"), (Some(33.0), Flag::N));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_late_reply_is_never_taken_for_the_next_answer() {
    // Connection 0 answers every request 400 ms late with 111; fresh connections answer 122 at once.
    let (address, connections) = fault_server(|conn, _| {
        if conn == 0 { Act::Late(Duration::from_millis(400), 111.0) } else { Act::Answer(122.0) }
    })
    .await;
    let cfg = tcp_config(&address);
    let mut link = Link::new(cfg.buses[0].clone());
    let plan = DevicePlan::new(cfg.devices[0].clone());
    let out = link.poll(&plan).await;
    assert!(matches!(out.error, Some(PollError::Timeout(_))), "{:?}", out.error);
    assert!(out.samples.iter().all(|s| s.flag == Flag::B && s.value.is_none()));
    tokio::time::sleep(Duration::from_millis(300)).await; // the late reply is now on the old socket
    let out = link.poll(&plan).await;
    assert_eq!(value(&out.samples, "a21026"), (Some(122.0), Flag::N));
    assert_eq!(connections.load(Ordering::SeqCst), 2, "a fresh connection after the timeout");
}

/// The connection is dropped after every timeout and reopened for the next request, as designed:
/// that is not news, only the first connection (and one after the bus was down) is logged.
#[tokio::test]
async fn reconnecting_after_a_timeout_is_not_logged_as_bus_connected() {
    let logs = crate::support::capture_logs();
    let (address, connections) = fault_server(|conn, _| {
        if conn < 3 { Act::Late(Duration::from_millis(400), 111.0) } else { Act::Answer(122.0) }
    })
    .await;
    let cfg = tcp_config(&address);
    let mut link = Link::new(cfg.buses[0].clone());
    let plan = DevicePlan::new(cfg.devices[0].clone());
    for _ in 0..3 {
        assert!(matches!(link.poll(&plan).await.error, Some(PollError::Timeout(_))));
    }
    assert!(link.poll(&plan).await.error.is_none());
    assert_eq!(connections.load(Ordering::SeqCst), 4);
    assert_eq!(logs.count("Bus connected."), 1, "{}", logs.text());
    assert_eq!(logs.count("Bus reopened after a failed request."), 3, "{}", logs.text());
}

#[tokio::test]
async fn a_refused_connection_is_flagged_and_backs_off() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let cfg = tcp_config(&address);
    let mut link = Link::new(cfg.buses[0].clone());
    let plan = DevicePlan::new(cfg.devices[0].clone());
    let out = link.poll(&plan).await;
    assert!(matches!(out.error, Some(PollError::Connect { .. })), "{:?}", out.error);
    assert!(out.samples.iter().all(|s| s.flag == Flag::B));
    assert!(link.in_backoff());
}

/// One silent analyzer must not take the bus from the others.
#[tokio::test]
async fn a_silent_device_is_isolated_and_the_others_keep_their_schedule() {
    let (sim, address) = start_sim().await;
    sim.force(2, EventKind::Drop);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = demo_config(&address, &dir.path().join("d.db")).unwrap();
    cfg.buses[0].timeout = Duration::from_millis(150);
    for d in &mut cfg.devices {
        d.poll_interval = Duration::from_millis(200);
    }
    let plans: Vec<DevicePlan> = cfg.devices[..2].iter().cloned().map(DevicePlan::new).collect();
    let (tx, mut rx) = mpsc::channel(1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    let live = Arc::new(Live::default());
    let task = tokio::spawn(BusTask::new(cfg.buses[0].clone(), plans, tx, live.clone()).run(stop_rx));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let mut gas = 0;
    let mut dust = 0;
    while let Ok(batch) = rx.try_recv() {
        for s in batch {
            match &*s.device {
                "gas" if s.factor.as_ref() == "a21026" => {
                    assert_eq!(s.flag, Flag::N);
                    gas += 1;
                }
                "dust" => {
                    assert_eq!((s.value, s.flag), (None, Flag::B));
                    dust += 1;
                }
                _ => {}
            }
        }
    }
    // 3 s at 200 ms is 15 slots; allow for start-up and the few probes of the silent device.
    assert!(gas >= 11, "gas polled only {gas} times");
    assert!(dust >= 11, "dust slots recorded as B: {dust}");
    let health = live.devices();
    assert!(health["dust"].consecutive_failures >= 3);
    assert_eq!(health["gas"].consecutive_failures, 0);
}

/// After a stall (here: the consumer stops reading), missed slots are skipped, not replayed.
#[tokio::test]
async fn no_catch_up_burst_after_a_stall() {
    let (_sim, address) = start_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = demo_config(&address, &dir.path().join("d.db")).unwrap();
    cfg.devices[0].poll_interval = Duration::from_millis(100);
    let plans = vec![DevicePlan::new(cfg.devices[0].clone())];
    let (tx, mut rx) = mpsc::channel(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task =
        tokio::spawn(BusTask::new(cfg.buses[0].clone(), plans, tx, Arc::new(Live::default())).run(stop_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await; // ~15 slots pass while the task is blocked
    let mut burst = 0;
    let window = tokio::time::Instant::now() + Duration::from_millis(250);
    while let Ok(Some(_)) = tokio::time::timeout_at(window, rx.recv()).await {
        burst += 1;
    }
    stop_tx.send(true).unwrap();
    drop(rx);
    task.await.unwrap();
    assert!(burst <= 5, "{burst} batches in 250 ms after the stall: missed slots were replayed");
}

/// Key parameters are read by the bus task between polls: one the analyzer does not have (an
/// exception) goes stale with the last value kept and never flags the data; the others arrive,
/// their changes go to the sink once, and the range becomes the T threshold.
#[tokio::test]
async fn a_parameter_read_failure_is_not_a_sample() {
    use cems_gateway::acquire::params::{Layout, Parameter};
    use cems_gateway::acquire::registers::{DataType, Table, WordOrder};
    let (_sim, address) = start_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = demo_config(&address, &dir.path().join("d.db")).unwrap();
    let gas = &mut cfg.devices[0];
    gas.poll_interval = Duration::from_millis(100);
    for p in &mut gas.parameters {
        p.poll_interval = Duration::from_millis(300);
    }
    // The simulator has no register 300.
    gas.parameters.push(Parameter {
        code: "i13009".into(),
        table: Table::Holding,
        address: 300,
        layout: Layout::Number { ty: DataType::F32, order: WordOrder::Abcd },
        scale: 1.0,
        map: Default::default(),
        poll_interval: Duration::from_millis(200),
        pol: None,
        unit: String::new(),
    });
    let plans = vec![DevicePlan::new(cfg.devices[0].clone())];
    let (tx, mut rx) = mpsc::channel(1024);
    let (sink, mut readings) = mpsc::channel(64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let live = Arc::new(Live::default());
    let task = tokio::spawn(
        BusTask::new(cfg.buses[0].clone(), plans, tx, live.clone()).with_parameters(sink).run(stop_rx),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let mut flags = Vec::new();
    while let Ok(batch) = rx.try_recv() {
        flags.extend(batch.into_iter().filter(|s| &*s.device == "gas").map(|s| s.flag));
    }
    assert!(flags.len() >= 60 && flags.iter().all(|f| *f == Flag::N), "{flags:?}");
    assert_eq!(live.devices()["gas"].consecutive_failures, 0, "a failed parameter read is not a failed poll");
    let params = live.parameters();
    let missing = &params[&("gas".to_string(), "i13009".to_string(), String::new())];
    assert_eq!(missing.value, None);
    assert!(missing.stale.as_ref().is_some_and(|(_, why)| why.contains("exception")), "{missing:?}");
    let range = &params[&("gas".to_string(), "i13001".to_string(), "a21026".to_string())];
    assert_eq!((range.value.as_deref(), range.stale.as_ref()), (Some("200"), None));
    // Every value handed to the sink once: it does not change.
    let mut sent = Vec::new();
    while let Ok(batch) = readings.try_recv() {
        sent.extend(batch.into_iter().map(|r| (r.code, r.pol, r.value)));
    }
    sent.sort();
    let expected = [
        ("i13001", Some("a21002"), "500"),
        ("i13001", Some("a21026"), "200"),
        ("i13006", None, "20261201080000"),
        ("i13007", None, "0"),
        ("i13008", None, "1"),
    ];
    let expected: Vec<(String, Option<String>, String)> =
        expected.iter().map(|(c, p, v)| (c.to_string(), p.map(str::to_string), v.to_string())).collect();
    assert_eq!(sent, expected);
}
