//! Interop with an independent Modbus implementation: pymodbus as the analyzer, over TCP, RTU
//! over TCP, and RTU on a real pty pair made by socat; and our own simulator's RTU server on a
//! socat pty pair.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cems_gateway::acquire::{DevicePlan, Link};
use cems_gateway::config::{Config, validate};
use cems_gateway::model::{Flag, Sample};
use libtest_mimic::Failed;

use crate::need::{Need, Plan, python};

/// The tests of this module.
pub fn add(plan: &mut Plan) {
    use Need::{Pymodbus, Socat};
    plan.add("modbus::pymodbus_tcp_all_types_and_word_orders", &[Pymodbus], tcp_all_types_and_word_orders);
    plan.add("modbus::pymodbus_rtu_over_tcp", &[Pymodbus], rtu_over_tcp);
    plan.add("modbus::pymodbus_rtu_on_a_socat_pty_pair", &[Pymodbus, Socat], rtu_on_a_pty_pair);
    plan.add("modbus::simulator_rtu_on_a_socat_pty_pair", &[Socat], simulator_rtu_on_a_pty_pair);
}

/// Kills the child when dropped, so a failing test leaves no peer behind.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn analyzer(args: &[&str]) -> Peer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/analyzer.py");
    Peer(
        Command::new(python())
            .arg(script)
            .args(args)
            .stderr(Stdio::null())
            .spawn()
            .expect("starting pymodbus"),
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(bus: &str) -> Config {
    let text = format!(
        r#"
[site]
mn = "INTEROP1"
pw = "123456"
[storage]
path = "interop.db"
[[bus]]
name = "b"
{bus}
timeout_ms = 500
[[device]]
name = "py"
bus = "b"
slave = 1
  [[device.status]]
  address = 20
  type = "u16"
  map = {{ 3 = "C" }}
  [[device.point]]
  factor = "abcd"
  address = 0
  type = "f32"
  word_order = "ABCD"
  [[device.point]]
  factor = "cdab"
  address = 2
  type = "f32"
  word_order = "CDAB"
  [[device.point]]
  factor = "badc"
  address = 4
  type = "f32"
  word_order = "BADC"
  [[device.point]]
  factor = "dcba"
  address = 6
  type = "f32"
  word_order = "DCBA"
  [[device.point]]
  factor = "i16"
  address = 8
  type = "i16"
  [[device.point]]
  factor = "u32"
  address = 9
  type = "u32"
  [[device.point]]
  factor = "f64"
  address = 11
  type = "f64"
  [[device.point]]
  factor = "a19001"
  table = "input"
  address = 0
  type = "f32"
  range_max = 20.0
"#
    );
    validate::parse(&text, Path::new("/tmp")).unwrap_or_else(|e| panic!("{e:?}"))
}

fn check_values(samples: &[Sample]) -> Result<(), Failed> {
    let get = |f: &str| samples.iter().find(|s| &*s.factor == f).map(|s| (s.value, s.flag));
    for order in ["abcd", "cdab", "badc", "dcba"] {
        let (v, flag) = get(order).ok_or("missing point")?;
        if v.map(|v| v as f32) != Some(123.456f32) || flag != Flag::N {
            return Err(format!("{order}: {v:?} {flag}").into());
        }
    }
    let expect = [("i16", -1234.0), ("u32", 4_000_000_000.0), ("f64", -123456.789)];
    for (f, want) in expect {
        if get(f) != Some((Some(want), Flag::N)) {
            return Err(format!("{f}: {:?}, want {want}", get(f)).into());
        }
    }
    // 20.9 % O2 from the input table, above its configured range of 20 → T.
    match get("a19001") {
        Some((Some(v), Flag::T)) if (v - 20.9).abs() < 1e-5 => Ok(()),
        other => Err(format!("a19001: {other:?}").into()),
    }
}

/// Polls until the peer answers (it may still be starting), then checks every value.
async fn poll_until_ok(link: &mut Link, plan: &DevicePlan) -> Result<Vec<Sample>, Failed> {
    let mut last = None;
    for _ in 0..60 {
        let out = link.poll(plan).await;
        if out.error.is_none() {
            return Ok(out.samples);
        }
        last = out.error;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("pymodbus never answered: {last:?}").into())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn tcp_all_types_and_word_orders() -> Result<(), Failed> {
    runtime().block_on(async {
        let port = free_port();
        let peer = analyzer(&["tcp", "127.0.0.1", &port.to_string()]);
        let cfg = config(&format!("kind = \"tcp\"\naddress = \"127.0.0.1:{port}\""));
        let mut link = Link::new(cfg.buses[0].clone());
        let plan = DevicePlan::new(cfg.devices[0].clone());
        check_values(&poll_until_ok(&mut link, &plan).await?)?;

        // The analyzer dies: B without values. It comes back: normal values again.
        drop(peer);
        let out = link.poll(&plan).await;
        if out.samples.iter().any(|s| s.flag != Flag::B || s.value.is_some()) {
            return Err(format!("after the peer died: {:?}", out.samples).into());
        }
        let _peer = analyzer(&["tcp", "127.0.0.1", &port.to_string()]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        check_values(&poll_until_ok(&mut link, &plan).await?)
    })
}

fn rtu_over_tcp() -> Result<(), Failed> {
    runtime().block_on(async {
        let port = free_port();
        let _peer = analyzer(&["rtutcp", "127.0.0.1", &port.to_string()]);
        let cfg = config(&format!("kind = \"rtu-over-tcp\"\naddress = \"127.0.0.1:{port}\""));
        let mut link = Link::new(cfg.buses[0].clone());
        let plan = DevicePlan::new(cfg.devices[0].clone());
        check_values(&poll_until_ok(&mut link, &plan).await?)
    })
}

/// A socat pty pair: two serial devices wired to each other, as a null-modem cable would.
fn pty_pair(dir: &Path) -> (Peer, PathBuf, PathBuf) {
    let (a, b): (PathBuf, PathBuf) = (dir.join("ttyA"), dir.join("ttyB"));
    let socat = Peer(
        Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("starting socat"),
    );
    for _ in 0..100 {
        if a.exists() && b.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (socat, a, b)
}

fn rtu_on_a_pty_pair() -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    let (_socat, a, b) = pty_pair(dir.path());
    let _peer = analyzer(&["rtu", b.to_str().unwrap(), "9600"]);
    runtime().block_on(async {
        let cfg = config(&format!("kind = \"rtu\"\npath = \"{}\"\nbaud = 9600", a.display()));
        let mut link = Link::new(cfg.buses[0].clone());
        let plan = DevicePlan::new(cfg.devices[0].clone());
        check_values(&poll_until_ok(&mut link, &plan).await?)?;
        // Sustained: 50 polls in a row over the serial line, all correct.
        for i in 0..50 {
            let out = link.poll(&plan).await;
            if let Some(e) = out.error {
                return Err(format!("poll {i}: {e}").into());
            }
            check_values(&out.samples)?;
        }
        Ok(())
    })
}

/// Our own simulator's RTU server on one end of a pty pair, the gateway on the other, with the
/// demo's register map: the `simulate --rtu` an installer uses for commissioning.
fn simulator_rtu_on_a_pty_pair() -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    let (_socat, a, b) = pty_pair(dir.path());
    let _sim = Peer(
        Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
            .args(["simulate", "--baud", "19200", "--rtu"])
            .arg(&b)
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the simulator"),
    );
    let text = cems_gateway::config::DEMO_CONFIG.replace(
        "kind = \"tcp\"\naddress = \"127.0.0.1:1502\"",
        &format!("kind = \"rtu\"\npath = \"{}\"\nbaud = 19200", a.display()),
    );
    let cfg = validate::parse(&text, Path::new("/tmp")).map_err(|e| format!("{e:?}"))?;
    runtime().block_on(async {
        let mut link = Link::new(cfg.buses[0].clone());
        for device in &cfg.devices {
            let plan = DevicePlan::new(device.clone());
            let samples = poll_until_ok(&mut link, &plan).await?;
            for s in &samples {
                if s.flag != Flag::N || s.value.is_none() {
                    return Err(format!("{}: {s:?}", device.name).into());
                }
            }
        }
        Ok(())
    })
}
