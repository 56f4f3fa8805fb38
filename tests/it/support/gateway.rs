//! A gateway for the status page's tests: a store seeded with six closed hours (one exceeded)
//! and the gateway started on the simulator, its page on an ephemeral loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cems_gateway::app::{self, Gateway};
use cems_gateway::config::Config;
use cems_gateway::model::{Flag, Sample, now_ms};
use cems_gateway::sim::{self, Script, Sim};
use cems_gateway::store::Store;
use cems_gateway::time::Offset;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A gateway with its page on an ephemeral loopback port, and what was seeded.
pub struct Fixture {
    pub gateway: Option<Gateway>,
    pub base: String,
    pub address: SocketAddr,
    pub config: Config,
    /// Local start of the seeded hour with SO2 at 60 (limit 35).
    pub exceeded_hour: i64,
    /// Local start of the current hour.
    pub this_hour: i64,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            g.stop().await;
        }
    }
}

pub const UTC_OFFSET: Offset = Offset::CHINA;

/// Seeds six closed hours (SO2 20, the one two hours back 60; NOx 30; dust 4; O2 at the
/// reference 10 %, so converted = measured) and the current hour so far, computes their records
/// as the daemon would, then starts the gateway on the simulator with concentrations ×4.
pub async fn seeded_gateway(token: Option<&str>) -> Fixture {
    let sim = Arc::new(Sim::new(Default::default(), Script::parse("exceed@0s+24h").unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_address = listener.local_addr().unwrap().to_string();
    tokio::spawn(sim::serve_tcp(listener, sim));
    let platform_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let platform_address = platform_listener.local_addr().unwrap().to_string();
    // Kept alive by its own tasks for the rest of the test process.
    let _platform = sim::platform::serve(platform_listener, Duration::ZERO, false);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("web.db");
    let mut config = app::demo_config_with_platform(&sim_address, &db, Some(&platform_address)).unwrap();
    config.web.listen = Some("127.0.0.1:0".parse().unwrap());
    config.web.token = token.map(str::to_string);

    let now_local = UTC_OFFSET.local_secs(now_ms());
    let this_hour = now_local - now_local.rem_euclid(3600);
    let seed_from = this_hour - 6 * 3600;
    let exceeded_hour = this_hour - 2 * 3600;
    {
        let (mut store, _) = Store::open(&db).unwrap();
        let mut batch = Vec::new();
        let mut t = seed_from;
        while t < now_local - 10 {
            let so2 = if (exceeded_hour..exceeded_hour + 3600).contains(&t) { 60.0 } else { 20.0 };
            let ts_ms = UTC_OFFSET.utc_ms(t);
            for (device, factor, value) in [
                ("gas", "a21026", so2),
                ("gas", "a21002", 30.0),
                ("gas", "a19001", 10.0),
                ("dust", "a34013", 4.0),
            ] {
                batch.push(Sample {
                    ts_ms,
                    device: Arc::from(device),
                    factor: Arc::from(factor),
                    value: Some(value),
                    flag: Flag::N,
                });
            }
            t += 5;
        }
        store.insert(&batch).unwrap();
        let outlet = config.outlet("kiln-tail").unwrap();
        let mut minutes = Vec::new();
        let (outcome, _) =
            cems_gateway::figures::evaluate_range(&store, &config, outlet, seed_from, this_hour, |m| {
                minutes.push(m.clone())
            })
            .unwrap();
        let hours: Vec<_> = outcome.hours.into_iter().filter(|h| h.start < this_hour).collect();
        assert_eq!(hours.iter().filter(|h| h.exceeded).count(), 1, "one exceeded hour seeded: {hours:#?}");
        store.upsert_records("kiln-tail", &minutes, UTC_OFFSET).unwrap();
        store.upsert_records("kiln-tail", &hours, UTC_OFFSET).unwrap();
    }
    let gateway = app::start(&config).unwrap();
    let address = gateway.web_address().expect("the status page runs");
    let fixture = Fixture {
        gateway: Some(gateway),
        base: format!("http://{address}"),
        address,
        config,
        exceeded_hour,
        this_hour,
        _dir: dir,
    };
    // Until every device has been polled once.
    let auth: Vec<(&str, String)> =
        token.map(|t| vec![("Authorization", format!("Bearer {t}"))]).unwrap_or_default();
    for _ in 0..100 {
        let (code, _, body) = request(address, "GET", "/api/v1/status", &auth).await;
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let status: Value = serde_json::from_slice(&body).unwrap();
        if status["devices"].as_array().unwrap().iter().all(|d| d["polls"].as_u64() > Some(0)) {
            return fixture;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the devices were never polled");
}

/// One HTTP/1.0 request (the reply body is plain bytes up to the close); (status, headers, body).
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {address}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut reply)).await.unwrap().unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8(reply[..split].to_vec()).unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, head, reply[split + 4..].to_vec())
}

/// The daemon's own test data path, for the browser test.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf()
}

/// The body of `GET path` as text (200 expected).
pub async fn get_text(address: SocketAddr, path: &str) -> String {
    let (code, _, body) = request(address, "GET", path, &[]).await;
    assert_eq!(code, 200, "{path}");
    String::from_utf8(body).unwrap()
}
