//! The status server over real loopback TCP, against a gateway fed by the in-process
//! simulator (concentrations above the limits) and a store seeded with six closed hours, one of
//! them exceeded: the status JSON, records and events, 400s for bad parameters, the token,
//! `/metrics`, the CSV export (also from the CLI), the `status` command, and an export of
//! millions of samples from the real daemon in bounded memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cems_gateway::app;
use cems_gateway::compute::Level;
use cems_gateway::model::{Flag, Sample, now_ms};
use cems_gateway::sim::{self, Script, Sim};
use cems_gateway::store::Store;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::gateway::{Fixture, UTC_OFFSET, request, seeded_gateway};

async fn get(f: &Fixture, path: &str) -> (u16, String, String) {
    let auth: Vec<(&str, String)> = f
        .config
        .web
        .token
        .as_ref()
        .map(|t| vec![("Authorization", format!("Bearer {t}"))])
        .unwrap_or_default();
    let (code, head, body) = request(f.address, "GET", path, &auth).await;
    (code, head, String::from_utf8(body).unwrap())
}

async fn get_json(f: &Fixture, path: &str) -> Value {
    let (code, _, body) = get(f, path).await;
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn local(t: i64) -> String {
    cems_gateway::web::status::fmt_local(t)
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_records_events_and_metrics() {
    let f = seeded_gateway(None).await;
    let (code, _, body) = get(&f, "/live").await;
    assert_eq!((code, body.as_str()), (200, "alive\n"));
    let (code, _, body) = get(&f, "/ready").await;
    assert_eq!((code, body.as_str()), (200, "ready\n"));

    let status = get_json(&f, "/api/v1/status").await;
    assert_eq!(status["site"], "Demo cement plant");
    assert_eq!(status["utc_offset_hours"], 8.0);
    let outlet = &status["outlets"][0];
    assert_eq!(outlet["name"], "kiln-tail");
    assert_eq!(outlet["limits"]["a21026"], 35.0);
    assert_eq!(outlet["o2_ref"], 10.0);
    // Current values with unit and flag: SO2 from the simulator, ×4 above its usual ~18.
    let so2 = outlet["current"].as_array().unwrap().iter().find(|c| c["factor"] == "a21026").unwrap();
    assert_eq!(
        (so2["device"].as_str(), so2["unit"].as_str(), so2["flag"].as_str()),
        (Some("gas"), Some("mg/m3"), Some("N"))
    );
    assert!(so2["value"].as_f64().unwrap() > 40.0, "{so2}");
    assert_eq!(so2["label"], "二氧化硫 SO₂");
    assert!(so2["last_good"]["value"].as_f64().is_some());
    // Today's hours: the exceeded one is marked (unless it was yesterday: the first two hours of a day).
    let today = period_start_day(f.this_hour);
    let rows = outlet["today"].as_array().unwrap();
    assert_eq!(rows.len() as i64, (f.this_hour - today.max(f.this_hour - 6 * 3600)) / 3600, "{rows:#?}");
    if f.exceeded_hour >= today {
        let row = rows.iter().find(|r| r["start"] == local(f.exceeded_hour)).unwrap();
        assert_eq!(row["cells"]["a21026"]["exceeded"], true, "{row}");
        assert_eq!(row["cells"]["a21026"]["value"], 60.0);
        assert_eq!(row["cells"]["a21002"]["exceeded"], false);
    }
    // 24-hour trends per limited factor, the exceeded hour among the hourly points.
    let trends = outlet["trends"].as_array().unwrap();
    assert_eq!(
        trends.iter().map(|t| t["factor"].as_str().unwrap()).collect::<Vec<_>>(),
        ["a21002", "a21026", "a34013"]
    );
    let so2_trend = &trends[1];
    assert_eq!(so2_trend["limit"], 35.0);
    let hours = so2_trend["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 6);
    assert!(
        hours.iter().any(|h| h["start"] == f.exceeded_hour && h["exceeded"] == true && h["value"] == 60.0)
    );
    assert!(so2_trend["minutes"].as_array().unwrap().len() >= 60, "five-minute points over six hours");
    // Month to date (unless the exceeded hour was last month).
    let month = &outlet["month"];
    if local(f.exceeded_hour)[..7] == local(f.this_hour)[..7] {
        let events = month["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{month}");
        assert_eq!(events[0]["factor"], "a21026");
        assert_eq!(events[0]["start"], local(f.exceeded_hour));
        assert_eq!((events[0]["peak"].as_f64(), events[0]["limit"].as_f64()), (Some(60.0), Some(35.0)));
        let so2_month =
            month["factors"].as_array().unwrap().iter().find(|m| m["factor"] == "a21026").unwrap();
        let valid = so2_month["valid_hours"].as_u64().unwrap();
        assert_eq!(so2_month["exceeded_hours"], 1);
        let rate = so2_month["rate_pct"].as_f64().unwrap();
        assert!((rate - 100.0 * (valid - 1) as f64 / valid as f64).abs() < 1e-9, "{rate}");
        assert_eq!(so2_month["meets_95"], false, "5 of 6 hours is below 95 %");
    }
    // Data chain.
    let gas = status["devices"].as_array().unwrap().iter().find(|d| d["name"] == "gas").unwrap();
    assert_eq!(
        (gas["state"].as_str(), gas["flag"].as_str(), gas["bus"].as_str()),
        (Some("normal"), Some("N"), Some("sim"))
    );
    assert!(gas["last_good"].as_str().is_some());
    let uplink = &status["uplinks"][0];
    assert_eq!(uplink["name"], "demo-platform");
    assert_eq!(uplink["outlet"], "kiln-tail");
    assert!(uplink["backlog"]["minute"].is_u64());
    // What asked for an answer and what was answered (real-time frames ask for none).
    assert!(uplink["frames_asked"].as_u64().unwrap() >= uplink["frames_acked"].as_u64().unwrap());
    assert!(uplink["notices_refused"].is_u64() && uplink["notices_unanswered"].is_u64());
    let g = &status["gateway"];
    assert_eq!(g["version"], env!("CARGO_PKG_VERSION"));
    assert!(g["disk_free_bytes"].as_u64().unwrap() > 0);
    assert!(g["buffer_bytes"].as_u64().unwrap() > 100_000, "the seeded store");
    assert!(g["platform_clock_diff_ms"].is_null(), "no platform asked to set the time");
    assert!(g["clock_sync"].is_string());
    assert!(g["store_error"].is_null());
    // The audit chain: the seeded records and the config hash are chained, and it verifies.
    assert_eq!(g["audit"]["verified"], true, "{}", g["audit"]);
    assert!(g["audit"]["head_seq"].as_i64().unwrap() > 0);
    assert_eq!(g["audit"]["head_hash"].as_str().unwrap().len(), 64);

    // Records of the exceeded hour's date.
    let date = &local(f.exceeded_hour)[..10];
    let records = get_json(&f, &format!("/api/v1/outlets/kiln-tail/records?date={date}&level=hour")).await;
    let hit = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["start"] == local(f.exceeded_hour) && r["factor"] == "a21026")
        .unwrap();
    assert_eq!(
        (hit["exceeded"].as_bool(), hit["zs_avg"].as_f64(), hit["limit"].as_f64()),
        (Some(true), Some(60.0), Some(35.0))
    );
    assert_eq!((hit["n_valid"].as_u64(), hit["flag"].as_str()), (Some(60), Some("N")));
    let minutes = get_json(&f, &format!("/api/v1/outlets/kiln-tail/records?date={date}&level=minute")).await;
    let so2_minutes =
        minutes["records"].as_array().unwrap().iter().filter(|r| r["factor"] == "a21026").count();
    assert!(so2_minutes >= 60, "{so2_minutes}");
    let events = get_json(&f, &format!("/api/v1/outlets/kiln-tail/events?month={}", &date[..7])).await;
    assert!(events["events"].as_array().unwrap().iter().any(|e| e["start"] == local(f.exceeded_hour)));

    // Bad parameters: 400 with a message naming the parameter; unknown outlet 404; read-only.
    for (path, code, message) in [
        ("/api/v1/outlets/kiln-tail/records?date=2026-02-30", 400, "date: must be YYYY-MM-DD or YYYY-MM"),
        (
            "/api/v1/outlets/kiln-tail/records?date=2026-03-01&level=second",
            400,
            "level: must be one of minute, hour, day",
        ),
        ("/api/v1/outlets/kiln-tail/records", 400, "date: is required"),
        (
            "/api/v1/outlets/kiln-tail/records?date=2026-03&level=minute",
            400,
            "date: minute records are given a day at a time",
        ),
        ("/api/v1/outlets/kiln-tail/records?date=2026-03-01&colour=red", 400, "colour: unknown parameter"),
        ("/api/v1/outlets/stack-9/records?date=2026-03-01", 404, "no outlet named \"stack-9\""),
        ("/api/v1/outlets/kiln-tail/events?month=2026-3", 400, "month: must be YYYY-MM"),
        (
            "/api/v1/export?from=2026-03-01&to=2026-03-02&level=second",
            400,
            "level: must be one of raw, minute, hour, day",
        ),
        ("/api/v1/export?from=yesterday&to=2026-03-02", 400, "from: must be a local time"),
        ("/api/v1/export?from=2026-03-01", 400, "to: is required"),
        ("/api/v1/export?from=2026-03-02&to=2026-03-01%2012:00:00", 400, "to: must be after from"),
        ("/api/v1/export?from=2026-03-01&to=2026-03-02&format=xlsx", 400, "format: must be csv"),
        ("/api/v1/export?from=2026-03-01&to=2026-03-02&outlet=nope", 400, "outlet: no outlet named \"nope\""),
        ("/api/v1/export?from=2026-03-01&from=2026-03-02&to=2026-03-03", 400, "from: given more than once"),
        ("/api/v1/status?verbose=1", 400, "verbose: unknown parameter"),
        ("/nothing-here", 404, "no such page"),
    ] {
        let (got, _, body) = get(&f, path).await;
        assert_eq!(got, code, "{path}: {body}");
        assert!(body.contains(message), "{path}: {body}");
    }
    for method in ["POST", "PUT", "DELETE"] {
        let (code, _, _) = request(f.address, method, "/api/v1/status", &[]).await;
        assert_eq!(code, 405, "{method} is refused: nothing in the API changes data");
    }

    // Prometheus text.
    let (code, head, metrics) = get(&f, "/metrics").await;
    assert_eq!(code, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    for family in [
        "# TYPE cems_polls_total counter",
        "# TYPE cems_poll_errors_total counter",
        "# TYPE cems_samples_stored_total counter",
        "# TYPE cems_uplink_frames_sent_total counter",
        "# TYPE cems_uplink_frames_asked_total counter",
        "# TYPE cems_uplink_frames_acked_total counter",
        "# TYPE cems_uplink_notices_unanswered_total counter",
        "# TYPE cems_uplink_backlog gauge",
        "# HELP cems_polls_total ",
        "cems_poll_errors_total{device=\"dust\"} 0",
        "cems_uplink_backlog{uplink=\"demo-platform\",kind=\"hour\"} ",
        "cems_limit{outlet=\"kiln-tail\",factor=\"a21026\"} 35",
        // The current values as 2011 carries them: units of table B.2, the flow in m³/s.
        "# TYPE cems_value gauge",
        "cems_value{outlet=\"kiln-tail\",factor=\"a21026\",unit=\"mg/m3\"} ",
        "cems_value{outlet=\"kiln-tail\",factor=\"a00000\",unit=\"m3/s\"} ",
        "cems_value_converted{outlet=\"kiln-tail\",factor=\"a21026\"} ",
    ] {
        assert!(metrics.contains(family), "{family} missing from\n{metrics}");
    }
    let polls: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cems_polls_total{device=\"gas\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(polls > 0);
    // Every sample line belongs to a family announced before it.
    let mut typed = std::collections::HashSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(typed.contains(name), "{line}");
        }
    }
    f.stop().await;
}

fn period_start_day(t: i64) -> i64 {
    cems_gateway::compute::evaluate::period_start(Level::Day, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_csv_over_http_and_from_the_cli_and_the_status_command() {
    let f = seeded_gateway(None).await;
    let from = local(f.exceeded_hour);
    let to = local(f.exceeded_hour + 3600);
    let q = format!("from={}&to={}", from.replace(' ', "%20"), to.replace(' ', "%20"));
    let (code, head, raw) = get(&f, &format!("/api/v1/export?{q}&level=raw&outlet=kiln-tail")).await;
    assert_eq!(code, 200, "{raw}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/csv"), "{head}");
    assert!(head.contains("attachment; filename=\"cems-kiln-tail-raw-"), "{head}");
    let lines: Vec<&str> = raw.lines().collect();
    assert_eq!(lines[0], "time,device,factor,value,flag");
    assert_eq!(lines.len(), 1 + 720 * 4, "one hour of 5-second polls of four points");
    assert_eq!(lines[1], format!("{from},gas,a21026,60,N"), "by time, then series");
    assert!(lines.contains(&format!("{from},dust,a34013,4,N").as_str()));
    assert!(lines.last().unwrap().starts_with(&local(f.exceeded_hour + 3595)));

    // The raw export is what `compliance` reads: the same hour comes out exceeded.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("hour.csv");
    std::fs::write(&csv, &raw).unwrap();
    let profile = cems_gateway::compute::limits::profile("cement-kiln");
    let spec = cems_gateway::compute::OutletSpec::new(cems_gateway::compute::OutletLimits::resolve(
        profile,
        Some(10.0),
        &Default::default(),
    ));
    let outcome = cems_gateway::report::evaluate_csv(&csv, spec).unwrap();
    let so2 = outcome.hours.iter().find(|h| h.factor == "a21026").unwrap();
    assert!(so2.exceeded && so2.stat.zs_avg == Some(60.0), "{so2:?}");

    // Hour records, and the CLI writes byte for byte the same CSV.
    let (code, _, hours) = get(&f, &format!("/api/v1/export?{q}&level=hour")).await;
    assert_eq!(code, 200);
    let lines: Vec<&str> = hours.lines().collect();
    assert_eq!(
        lines[0],
        "time,outlet,level,factor,n_total,n_valid,min,avg,max,zs_avg,cou,flag,limit,exceeded,zs_min,zs_max,valid"
    );
    let so2_line = lines.iter().find(|l| l.contains(",a21026,")).unwrap();
    assert!(so2_line.starts_with(&format!("{from},kiln-tail,hour,a21026,60,60,60,60,60,60,")), "{so2_line}");
    // Flag N, limit 35, exceeded; converted minimum and maximum 60; valid.
    assert!(so2_line.ends_with(",N,35,1,60,60,1"), "{so2_line}");
    let config_path = dir.path().join("gw.toml");
    let text = cems_gateway::config::DEMO_CONFIG
        .replace("path = \"cems-demo.db\"", &format!("path = \"{}\"", f.config.storage.path.display()));
    std::fs::write(&config_path, text).unwrap();
    for (level, http_body) in [("hour", &hours), ("raw", &raw)] {
        let out = bin()
            .args(["export", "--config"])
            .arg(&config_path)
            .args(["--from", &from, "--to", &to, "--level", level])
            .args(if level == "raw" { vec!["--outlet", "kiln-tail"] } else { vec![] })
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(&String::from_utf8(out.stdout).unwrap(), http_body, "{level}: CLI and HTTP agree");
    }
    let out = bin()
        .args(["export", "--config"])
        .arg(&config_path)
        .args(["--from", "2026-03-01", "--to", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--to: must be a local time"), "{out:?}");

    // `status` against the running page.
    let url = f.base.clone();
    let out = tokio::task::spawn_blocking(move || bin().args(["status", "--url", &url]).output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains('\x1b'), "no colours when stdout is not a terminal");
    assert!(text.contains("Outlet kiln-tail (cement-kiln, reference O2 10 %)"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("gas") && l.contains("a21026") && l.contains("mg/m3")),
        "{text}"
    );
    assert!(text.contains("Analyzers:") && text.contains("normal"), "{text}");
    assert!(text.contains("Platforms:") && text.contains("demo-platform"), "{text}");
    if f.exceeded_hour >= period_start_day(f.this_hour) {
        assert!(text.contains(&format!("exceeded: {} SO₂ 60.00", &from[11..16])), "{text}");
    }
    let out = bin().args(["status", "--url", "http://127.0.0.1:1", "--timeout", "2s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach http://127.0.0.1:1/api/v1/status"));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_route() {
    let f = seeded_gateway(Some("plant-lan-secret")).await;
    for path in
        ["/", "/live", "/ready", "/metrics", "/api/v1/status", "/api/v1/export?from=2026-03-01&to=2026-03-02"]
    {
        let (code, head, _) = request(f.address, "GET", path, &[]).await;
        assert_eq!(code, 401, "{path} without the token");
        assert!(head.contains("www-authenticate: Bearer"), "{head}");
        let (code, _, _) =
            request(f.address, "GET", path, &[("Authorization", "Bearer wrong-secret-x".into())]).await;
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let (code, _, _) =
        request(f.address, "GET", "/live", &[("Authorization", "Bearer plant-lan-secret".into())]).await;
    assert_eq!(code, 200);
    let (code, _, page) = request(f.address, "GET", "/?token=plant-lan-secret", &[]).await;
    assert_eq!(code, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains("href=\"api/v1/status?token=plant-lan-secret\""),
        "the page's links carry the token"
    );
    let (code, _, _) = request(f.address, "GET", "/api/v1/status?token=plant-lan-secret", &[]).await;
    assert_eq!(code, 200);

    let url = f.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        let with = bin().args(["status", "--url", &url, "--token", "plant-lan-secret"]).output().unwrap();
        let from_env =
            bin().args(["status", "--url", &url]).env("CEMS_TOKEN", "plant-lan-secret").output().unwrap();
        let without = bin().args(["status", "--url", &url]).env_remove("CEMS_TOKEN").output().unwrap();
        (with, from_env, without)
    })
    .await
    .unwrap();
    assert_eq!(out.0.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.0.stderr));
    assert_eq!(out.1.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.1.stderr));
    assert_eq!(out.2.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.2.stderr).contains("answered 401"), "{:?}", out.2);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_cannot_bind_does_not_stop_acquisition() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sim = Arc::new(Sim::new(Default::default(), Script::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_address = listener.local_addr().unwrap().to_string();
    tokio::spawn(sim::serve_tcp(listener, sim));
    let dir = tempfile::tempdir().unwrap();
    let mut config = app::demo_config(&sim_address, &dir.path().join("b.db")).unwrap();
    config.web.listen = Some(taken.local_addr().unwrap());
    let gateway = app::start(&config).unwrap();
    assert_eq!(gateway.web_address(), None);
    for _ in 0..100 {
        if gateway.live.samples_stored() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gateway.live.samples_stored() > 0, "polling goes on without the page");
    gateway.stop().await;
}

/// The real daemon with a store of two million samples: the raw export of all of them streams
/// through `/api/v1/export` while the daemon's peak RSS grows by a small fraction of the CSV.
#[test]
fn export_of_millions_of_samples_streams_in_bounded_memory() {
    const SERIES: i64 = 4;
    const POLLS: i64 = 500_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    // A month back, away from what the statistics worker recomputes at start.
    let start_ms = (now_ms() / 1000 - 40 * 86_400) * 1000;
    {
        let (mut store, _) = Store::open(&db).unwrap();
        let factors: Vec<(Arc<str>, Arc<str>)> = ["a21026", "a21002", "a19001", "a34013"]
            .iter()
            .map(|f| (Arc::from("gas"), Arc::from(*f)))
            .collect();
        let mut batch = Vec::with_capacity(400_000);
        for i in 0..POLLS {
            for (k, (device, factor)) in factors.iter().enumerate() {
                batch.push(Sample {
                    ts_ms: start_ms + i * 1000,
                    device: device.clone(),
                    factor: factor.clone(),
                    value: Some(10.0 + (i % 1000) as f64 / 7.0 + k as f64),
                    flag: Flag::N,
                });
            }
            if batch.len() >= 400_000 {
                store.insert(&batch).unwrap();
                batch.clear();
            }
        }
        store.insert(&batch).unwrap();
        assert_eq!(store.count().unwrap() as i64, SERIES * POLLS);
    }
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        cems_gateway::config::DEMO_CONFIG
            .replace("127.0.0.1:1502", "127.0.0.1:1")
            .replace("path = \"cems-demo.db\"", &format!("path = \"{}\"", db.display()))
            + "\n[web]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = bin()
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split("url=http://").nth(1) {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    let address: SocketAddr =
        rx.recv_timeout(Duration::from_secs(60)).expect("the page's address in the log").parse().unwrap();
    let pid = child.0.id();
    let hwm_kb = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // Warm: the first request opens the read connection and the page's caches.
        let (code, _, _) = request(address, "GET", "/api/v1/status", &[]).await;
        assert_eq!(code, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = hwm_kb();
        let from = local(start_ms / 1000 + UTC_OFFSET).replace(' ', "%20");
        let to = local(start_ms / 1000 + UTC_OFFSET + POLLS).replace(' ', "%20");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                format!("GET /api/v1/export?from={from}&to={to}&level=raw HTTP/1.0\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        // Counted as it arrives, never kept.
        let (mut bytes, mut newlines) = (0u64, 0u64);
        let mut buf = vec![0u8; 64 * 1024];
        let mut tail = Vec::new();
        loop {
            let n =
                tokio::time::timeout(Duration::from_secs(120), stream.read(&mut buf)).await.unwrap().unwrap();
            if n == 0 {
                break;
            }
            bytes += n as u64;
            newlines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
            tail = buf[..n].to_vec();
        }
        let after = hwm_kb();
        let growth_kb = after.saturating_sub(before);
        eprintln!("export: {bytes} bytes, {newlines} lines; daemon peak RSS {before} kB → {after} kB");
        // Headers (5 lines with the blank one) + CSV header + one line per sample.
        assert!(newlines > (SERIES * POLLS) as u64, "{newlines}");
        assert!(newlines <= (SERIES * POLLS) as u64 + 12, "{newlines}");
        assert!(String::from_utf8_lossy(&tail).ends_with(",N\n"), "the last row arrived whole");
        assert!(bytes > 80_000_000, "{bytes}");
        assert!(growth_kb < 24 * 1024, "peak RSS grew by {growth_kb} kB for a {bytes}-byte export");
        assert!(growth_kb * 1024 * 8 < bytes, "peak RSS grew by {growth_kb} kB for a {bytes}-byte export");
    });
    drop(child);
}

/// The demo serves the page (8080 on loopback, or a free port) and prints its URL.
#[test]
fn the_demo_prints_the_url_of_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin()
        .current_dir(dir.path())
        .args(["demo", "--for", "30s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Status page: http://") {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    let address = rx.recv_timeout(Duration::from_secs(30));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = address.map(|a| {
        let address: SocketAddr = a.parse().unwrap();
        assert!(address.ip().is_loopback());
        runtime.block_on(request(address, "GET", "/", &[]))
    });
    let _ = child.kill();
    let _ = child.wait();
    let (code, _, body) = result.expect("the demo printed its page's URL");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("排放口 Outlet kiln-tail"));
}

/// The local API fuzzed with malformed queries: 600 requests with random keys, values, bytes,
/// encodings, repetitions and lengths on every route. Every answer is a 2xx or a 4xx with a
/// message, never a 5xx or a dropped connection, and the server still answers afterwards.
#[tokio::test]
async fn malformed_queries_get_a_4xx_never_a_5xx_or_a_crash() {
    let f = seeded_gateway(None).await;
    let mut rng = fastrand::Rng::with_seed(212);
    let routes = [
        "/",
        "/api/v1/status",
        "/api/v1/export",
        "/api/v1/outlets/kiln-tail/records",
        "/api/v1/outlets/kiln-tail/events",
        "/metrics",
        "/live",
        "/ready",
        "/api/v1/outlets/%ZZ/records",
        "/api/v1/outlets/../../etc/passwd/events",
    ];
    let keys =
        ["from", "to", "level", "format", "date", "month", "token", "outlet", "x", "", "from[]", "%00"];
    let values = [
        "2026-11-29",
        "2026-11-29 10:00:00",
        "2026-13-45",
        "9999-99-99",
        "raw",
        "minute",
        "hour",
        "day",
        "csv",
        "json",
        "-1",
        "",
        "%FF%FE",
        "%00",
        "1e309",
        "💨",
        "2026-11-29T10:00:00Z",
        "2026-11-30",
        "NaN",
    ];
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..600 {
        let mut path = routes[rng.usize(..routes.len())].to_string();
        let n = rng.usize(0..6);
        for i in 0..n {
            path.push(if i == 0 { '?' } else { '&' });
            path.push_str(keys[rng.usize(..keys.len())]);
            if rng.bool() {
                path.push('=');
                let v = if rng.u8(..) < 20 {
                    // Long or random-byte values, percent-encoded.
                    (0..rng.usize(0..3000)).map(|_| format!("%{:02X}", rng.u8(..))).collect::<String>()
                } else {
                    values[rng.usize(..values.len())].replace(' ', "%20")
                };
                path.push_str(&v);
            }
        }
        let path: String =
            path.chars().map(|c| if c.is_ascii() { c.to_string() } else { urlencode(c) }).collect();
        let (code, _, body) = request(f.address, "GET", &path, &[]).await;
        assert!((200..500).contains(&code), "{code} for {path}: {}", String::from_utf8_lossy(&body));
        if code == 400 {
            assert!(!body.is_empty(), "a 400 says why: {path}");
        }
        *seen.entry(code).or_insert(0) += 1;
    }
    assert!(seen.get(&400).copied().unwrap_or(0) > 50, "most malformed queries are refused: {seen:?}");
    assert!(seen.get(&200).copied().unwrap_or(0) > 20, "well-formed ones still answer: {seen:?}");
    let (code, _, _) = request(f.address, "GET", "/live", &[]).await;
    assert_eq!(code, 200, "still alive after {seen:?}");
    f.stop().await;
}

fn urlencode(c: char) -> String {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf).bytes().map(|b| format!("%{b:02X}")).collect()
}
