//! The line-oriented ASCII driver against a loopback peer that echoes, babbles and goes quiet.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cems_gateway::acquire::{DevicePlan, Link, PollError};
use cems_gateway::model::Flag;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::config;

#[derive(Clone, Copy)]
enum Mode {
    Good,
    NoiseThenGood,
    Silent,
}

#[tokio::test]
async fn ascii_request_pattern_and_faults() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (mode_tx, mode_rx) = tokio::sync::watch::channel(Mode::Good);
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(req)) = lines.next_line().await {
                assert_eq!(
                    req, "RD",
                    "request written with its configured line ending (lines() strips CR LF)"
                );
                n += 1;
                let value = format!("DUST= {:.2} mg/m3 ST=0\r\n", 3.0 + n as f64 / 100.0);
                let out = match *mode_rx.borrow() {
                    Mode::Good => value,
                    Mode::NoiseThenGood => format!("RD\r\n\x07\x00garbage ###\r\n{value}"),
                    Mode::Silent => String::new(),
                };
                w.write_all(out.as_bytes()).await.unwrap();
            }
        }
    });
    let cfg = config(&format!(
        r#"
[site]
mn = "T1"
pw = "123456"
[storage]
path = "x.db"
[[bus]]
name = "a"
kind = "ascii"
address = "{address}"
timeout_ms = 300
[[device]]
name = "dust"
bus = "a"
  [device.ascii]
  request = 'RD\r\n'
  pattern = 'DUST=\s*(?P<dust>-?[0-9.]+)'
  [[device.point]]
  factor = "a34013"
  capture = "dust"
  range_max = 50.0
"#
    ));
    let mut link = Link::new(cfg.buses[0].clone());
    let plan = DevicePlan::new(cfg.devices[0].clone());
    let out = link.poll(&plan).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!((out.samples[0].value, out.samples[0].flag), (Some(3.01), Flag::N));

    mode_tx.send(Mode::NoiseThenGood).unwrap();
    let out = link.poll(&plan).await;
    assert_eq!((out.samples[0].value, out.samples[0].flag), (Some(3.02), Flag::N), "noise lines skipped");

    mode_tx.send(Mode::Silent).unwrap();
    let out = link.poll(&plan).await;
    assert!(matches!(out.error, Some(PollError::NoMatch(d)) if d == Duration::from_millis(300)));
    assert_eq!((out.samples[0].value, out.samples[0].flag), (None, Flag::B));

    mode_tx.send(Mode::Good).unwrap();
    let out = link.poll(&plan).await;
    assert_eq!((out.samples[0].value, out.samples[0].flag), (Some(3.04), Flag::N));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "no reply in time: a fresh connection, as after a Modbus timeout"
    );
}
