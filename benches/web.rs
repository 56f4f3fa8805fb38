//! Status page benchmark (`cargo bench --bench web`): a gateway whose store holds a month of
//! hour and minute records and a day of raw samples for one outlet answers `/`,
//! `/api/v1/status` and `/metrics` over loopback (latency per request, one client after the
//! other), and streams a raw CSV export (rows per second, peak RSS growth of the process).

use std::time::{Duration, Instant};

use cems_gateway::app;
use cems_gateway::compute::stats::Stat;
use cems_gateway::compute::{Level, Record};
use cems_gateway::config::validate;
use cems_gateway::model::{Flag, Sample, now_ms};
use cems_gateway::store::Store;
use cems_gateway::web::client;

const FACTORS: [&str; 4] = ["a21026", "a21002", "a34013", "a19001"];

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn record(level: Level, start: i64, factor: &str, v: f64) -> Record {
    Record {
        level,
        start,
        factor: factor.into(),
        stat: Stat {
            n_total: 60,
            n_valid: 60,
            min: Some(v - 1.0),
            avg: Some(v),
            max: Some(v + 1.0),
            zs_min: Some((v - 1.0) * 1.1),
            zs_avg: Some(v * 1.1),
            zs_max: Some((v + 1.0) * 1.1),
            cou: None,
            flag: Flag::N,
            valid: true,
        },
        limit: None,
        exceeded: false,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let (days, raw_hours, requests) = if quick { (3, 2, 20) } else { (31, 24, 200) };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("web.db");
    let offset = 8 * 3600;
    let now_local = now_ms() / 1000 + offset;
    let this_hour = now_local - now_local.rem_euclid(3600);
    {
        let (mut store, _) = Store::open(&db).unwrap();
        let mut hours = Vec::new();
        let mut minutes = Vec::new();
        for h in 1..=days * 24 {
            let start = this_hour - h * 3600;
            for (i, f) in FACTORS.iter().enumerate() {
                hours.push(record(Level::Hour, start, f, 10.0 + i as f64 + (h % 7) as f64));
                for m in 0..60 {
                    minutes.push(record(Level::Minute, start + m * 60, f, 10.0 + i as f64));
                }
            }
        }
        store.upsert_records("kiln", &hours, offset).unwrap();
        store.upsert_records("kiln", &minutes, offset).unwrap();
        let first = (this_hour - raw_hours * 3600 - offset) * 1000;
        let mut batch = Vec::new();
        for k in 0..raw_hours * 3600 / 2 {
            for f in FACTORS {
                batch.push(Sample {
                    ts_ms: first + k * 2000,
                    device: "gas".into(),
                    factor: f.into(),
                    value: Some(12.5),
                    flag: Flag::N,
                });
            }
            if batch.len() >= 10_000 {
                store.insert(&batch).unwrap();
                batch.clear();
            }
        }
        store.insert(&batch).unwrap();
    }
    let text = format!(
        r#"
[site]
mn = "BENCHWEB0001"
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
  factor = "a21002"
  address = 2
  type = "f32"
  [[device.point]]
  factor = "a34013"
  address = 4
  type = "f32"
  [[device.point]]
  factor = "a19001"
  address = 6
  type = "f32"
[web]
listen = "127.0.0.1:0"
"#,
        db.display()
    );
    let config = validate::parse(&text, dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let gateway = app::start(&config).unwrap();
        let base = format!("http://{}", gateway.web_address().expect("the page is on"));
        println!(
            "store: {days} days of hour and minute records ({} records), {raw_hours} h of raw samples ({} samples)",
            days * 24 * FACTORS.len() as i64 * 61,
            raw_hours * 1800 * FACTORS.len() as i64
        );
        for path in ["/", "/api/v1/status", "/metrics"] {
            let url = format!("{base}{path}");
            client::get(&url, None, Duration::from_secs(30)).await.unwrap();
            let mut times = Vec::with_capacity(requests);
            let mut size = 0;
            for _ in 0..requests {
                let t = Instant::now();
                size = client::get(&url, None, Duration::from_secs(30)).await.unwrap().len();
                times.push(t.elapsed());
            }
            times.sort();
            let mean = times.iter().sum::<Duration>() / requests as u32;
            let p99 = times[(requests * 99 / 100).min(requests - 1)];
            println!("{path:<16} {size:>7} B  mean {mean:>10.2?}  p99 {p99:>10.2?}  ({requests} requests)");
        }
        let hwm = vm_hwm_kb();
        let url = format!(
            "{base}/api/v1/export?from={}&to={}&level=raw&format=csv",
            cems_gateway::report::format_local(this_hour - raw_hours * 3600 - 3600).replace(' ', "%20") + ":00",
            cems_gateway::report::format_local(this_hour + 3600).replace(' ', "%20") + ":00",
        );
        let t = Instant::now();
        let body = client::get(&url, None, Duration::from_secs(300)).await.unwrap();
        let took = t.elapsed();
        let rows = body.iter().filter(|b| **b == b'\n').count().saturating_sub(1);
        println!(
            "raw export: {rows} rows, {:.1} MB in {took:.2?} = {:.0} rows/s; peak RSS {} MB before, {} MB after (the bench holds the body)",
            body.len() as f64 / 1e6,
            rows as f64 / took.as_secs_f64(),
            hwm / 1024,
            vm_hwm_kb() / 1024
        );
        gateway.stop().await;
    });
}
