//! Figures in the units and data types of HJ 212-2017 table B.2, end to end: an hour of flow
//! from the velocity reaches the platform in m³/s with its volume in m³, and `report` and
//! `compliance` give what the frame says; an analyzer's f32 20.9 stays 20.9 from the register to
//! the store, the probe, the export and the frame; a buffer whose flow records are in m³/h moves
//! to m³/s with every change chained.

use std::sync::Arc;
use std::time::Duration;

use cems_gateway::acquire::registers::{DataType, WordOrder, encode};
use cems_gateway::compute::Level;
use cems_gateway::figures::evaluate_range;
use cems_gateway::hj212::Packet;
use cems_gateway::live::Live;
use cems_gateway::model::{Flag, Sample, now_ms};
use cems_gateway::store::Store;
use cems_gateway::uplink::hj212::Link;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::{RtuPeer, config, eventually, outbox};

const OFFSET: i64 = 8 * 3600;

/// A cement kiln outlet with its duct (10 m²): a gas analyzer (SO2, NOx, O2), a dust meter and
/// a flow probe (velocity, temperature, static pressure, humidity); one platform link for hours.
fn kiln(db: &std::path::Path, platform: &str) -> cems_gateway::config::Config {
    let point = |factor: &str, address: u16| {
        format!("  [[device.point]]\n  factor = \"{factor}\"\n  address = {address}\n  type = \"f32\"\n")
    };
    let device = |name: &str, slave: u8, factors: &[&str]| {
        let points: String = factors.iter().enumerate().map(|(i, f)| point(f, 2 * i as u16)).collect();
        format!("[[device]]\nname = \"{name}\"\nbus = \"b\"\nslave = {slave}\noutlet = \"kiln\"\n{points}")
    };
    config(&format!(
        "[site]\nmn = \"UNITS0000000001\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n[web]\nlisten = \"off\"\n\
         [[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n\
         [[outlet]]\nname = \"kiln\"\nprofile = \"cement-kiln\"\nduct_area_m2 = 10.0\n{}{}{}\
         [[uplink]]\nname = \"province\"\naddress = \"{platform}\"\nminute = false\nday = false\n",
        db.display(),
        device("gas", 1, &["a21026", "a21002", "a19001"]),
        device("dust", 2, &["a34013"]),
        device("flow", 3, &["a01011", "a01012", "a01013", "a01014"]),
    ))
}

/// Samples every 5 s over `[from, from + 3600)` (local seconds) of the constant values given.
fn hour_of(from: i64, values: &[(&str, &str, f64)]) -> Vec<Sample> {
    let mut out = Vec::new();
    for k in 0..720 {
        for (device, factor, value) in values {
            out.push(Sample {
                ts_ms: (from + k * 5 - OFFSET) * 1000,
                device: Arc::from(*device),
                factor: Arc::from(*factor),
                value: Some(*value),
                flag: Flag::N,
            });
        }
    }
    out
}

/// The flow is the unit that was wrong by 3600: a 2061 frame carries a00000 in m³/s and its
/// volume in m³, every value with its table B.2 decimals; `report` (from the store) and
/// `compliance` (from the exported samples) say the same, to those decimals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_reaches_the_platform_in_the_units_of_table_b2_and_report_and_compliance_agree() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let platform_address = listener.local_addr().unwrap().to_string();
    let platform = cems_gateway::sim::platform::serve(listener, Duration::ZERO, true);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("units.db");
    let cfg = kiln(&db, &platform_address);
    let now_local = now_ms() / 1000 + OFFSET;
    let hour = now_local - now_local.rem_euclid(3600) - 3600;
    // SO2 20, NOx 40 and PM 6 mg/m³ at 13 % O2; velocity 10 m/s at 127 °C, −0.325 kPa static
    // (101,000 Pa absolute on the default 101.325 kPa), 10 % moisture.
    let (mut store, _) = Store::open(&db).unwrap();
    store
        .insert(&hour_of(
            hour,
            &[
                ("gas", "a21026", 20.0),
                ("gas", "a21002", 40.0),
                ("gas", "a19001", 13.0),
                ("dust", "a34013", 6.0),
                ("flow", "a01011", 10.0),
                ("flow", "a01012", 127.0),
                ("flow", "a01013", -0.325),
                ("flow", "a01014", 10.0),
            ],
        ))
        .unwrap();
    // The hour's records, computed from the samples as the statistics worker computes them.
    let cfg = Arc::new(cfg);
    let outlet = cfg.outlet("kiln").unwrap();
    let (outcome, _) = evaluate_range(&store, &cfg, outlet, hour - 120, hour + 3600, |_| {}).unwrap();
    let hours: Vec<_> = outcome.hours.into_iter().filter(|h| h.start == hour).collect();
    store.upsert_records("kiln", &hours, OFFSET).unwrap();

    let link =
        Link::new(cfg.uplinks[0].clone(), cfg.clone(), outbox(&db), Arc::new(Live::default())).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(link.run(stop_rx));
    let data_time = cems_gateway::hj212::message::format_time14((hour - OFFSET) * 1000, OFFSET);
    let frame = |all: &[Packet]| {
        all.iter().find(|p| p.cn == "2061" && p.cp.get("DataTime") == Some(&data_time)).cloned()
    };
    assert!(
        eventually(Duration::from_secs(30), || frame(&platform.all.lock().unwrap()).is_some()).await,
        "no 2061 for the hour"
    );
    let frame = frame(&platform.all.lock().unwrap()).unwrap();
    let cp = |key: &str| {
        frame.cp.get(key).map(str::to_string).unwrap_or_else(|| panic!("no {key} in {}", frame.cp))
    };
    // (30) 3600 × 10 m² × 10 m/s = 360,000 m³/h actual; (31) × 273/400 × 101000/101325 × 0.9 =
    // 220,420.73 m³/h dry standard = 61.2280 m³/s: N6.1 → 61.2; the hour's volume 220,420.73 m³
    // → 220420.7 (not 220,420.73 × 3600 as m³/h taken for m³/s would be).
    assert_eq!(
        (cp("a00000-Avg"), cp("a00000-Min"), cp("a00000-Max")),
        ("61.2".into(), "61.2".into(), "61.2".into())
    );
    assert_eq!(cp("a00000-Cou"), "220420.7");
    // SO2 N5.2: 20, converted (28) × 11/8 = 27.5; (33) 20 mg/m³ × 220,420.73 m³ × 10⁻⁶ =
    // 4.408415 kg → 4.4084 (kg to 4 decimals).
    assert_eq!(
        (cp("a21026-Avg"), cp("a21026-ZsAvg"), cp("a21026-Cou")),
        ("20".into(), "27.5".into(), "4.4084".into())
    );
    assert_eq!((cp("a21026-ZsMin"), cp("a21026-ZsMax")), ("27.5".into(), "27.5".into()));
    // NOx N5.1: 40 × 1.375 = 55 > 50: exceeded (the frame carries the figure, the flag N).
    assert_eq!((cp("a21002-ZsAvg"), cp("a21002-Flag")), ("55".into(), "N".into()));
    // PM N4: 6 × 1.375 = 8.25 → 8 (whole mg/m³).
    assert_eq!(cp("a34013-ZsAvg"), "8");
    assert_eq!(cp("a19001-Avg"), "13");
    stop.send(true).unwrap();
    task.await.unwrap();

    // `report` from the store for the month, and `compliance` on the exported samples.
    let month = &cems_gateway::report::format_day(hour)[..7];
    let mut json = Vec::new();
    cems_gateway::app::report(&cfg, month, Some("kiln"), true, &mut json).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let mut raw = Vec::new();
    let day = cems_gateway::report::format_day(hour);
    let next = cems_gateway::report::format_day(hour + 86_400);
    cems_gateway::commands::export(&db, Some(&cfg), &day, &next, "raw", Some("kiln"), &mut raw).unwrap();
    let csv = dir.path().join("raw.csv");
    std::fs::write(&csv, &raw).unwrap();
    let outcome =
        cems_gateway::report::evaluate_csv(&csv, cfg.outlet_spec(cfg.outlet("kiln").unwrap())).unwrap();
    let start = cems_gateway::report::format_local(hour);
    for (factor, field, key) in [
        ("a00000", "avg", "a00000-Avg"),
        ("a00000", "cou", "a00000-Cou"),
        ("a21026", "avg", "a21026-Avg"),
        ("a21026", "zs_avg", "a21026-ZsAvg"),
        ("a21026", "cou", "a21026-Cou"),
        ("a21002", "zs_avg", "a21002-ZsAvg"),
        ("a34013", "zs_avg", "a34013-ZsAvg"),
    ] {
        let decimals = if field == "cou" {
            cems_gateway::factors::cou_decimals(factor)
        } else {
            cems_gateway::factors::decimals(factor)
        };
        let reported = report["hours"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["factor"] == factor && h["start"] == start.as_str())
            .and_then(|h| h[field].as_f64())
            .unwrap_or_else(|| panic!("no {factor} {field} at {start} in the report"));
        assert_eq!(cems_gateway::factors::format(reported, decimals), cp(key), "report {factor} {field}");
        let h = outcome.hours.iter().find(|h| h.factor == factor && h.start == hour).unwrap();
        let computed = match field {
            "avg" => h.stat.avg,
            "zs_avg" => h.stat.zs_avg,
            _ => h.stat.cou,
        };
        assert_eq!(
            cems_gateway::factors::format(computed.unwrap(), decimals),
            cp(key),
            "compliance {factor} {field}"
        );
    }
    let nox = &report["factors"]["a21002"];
    assert_eq!((nox["valid_hours"].as_u64(), nox["exceeded_hours"].as_u64()), (Some(1), Some(1)));
    assert_eq!(
        report["hours"].as_array().unwrap().iter().find(|h| h["factor"] == "a00000").unwrap()["unit"],
        "m3/s"
    );
}

/// A big-endian (ABCD) f32 register holding 20.9 (0x41A73333, 20.899999618530273 when widened
/// bit for bit) is 20.9 in the store, in `probe`, in the export and in the 2011 frame; CO's
/// 123.456 likewise (its data type N3.3 keeps three decimals). Through the real daemon: a pty
/// analyzer, the bus task, the store writer, the platform link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_f32_20_9_stays_20_9_from_register_to_frame() {
    let mut regs = encode(20.9, DataType::F32, WordOrder::Abcd);
    regs.extend(encode(123.456, DataType::F32, WordOrder::Abcd));
    assert_eq!(regs, [0x41A7, 0x3333, 0x42F6, 0xE979], "the registers an analyzer sends");
    regs.resize(8, 0);
    let peer = RtuPeer::start(regs);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let platform_address = listener.local_addr().unwrap().to_string();
    let platform = cems_gateway::sim::platform::serve(listener, Duration::ZERO, true);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f32.db");
    let mut cfg = config(&format!(
        "[site]\nmn = \"F32000000000001\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n[web]\nlisten = \"off\"\n\
         [[bus]]\nname = \"b\"\nkind = \"rtu\"\npath = \"{}\"\nbaud = 9600\ntimeout_ms = 300\n\
         [[outlet]]\nname = \"stack\"\n\
         [[device]]\nname = \"gas\"\nbus = \"b\"\nslave = 1\npoll_interval_s = 0.2\noutlet = \"stack\"\n\
           [[device.point]]\n  factor = \"a19001\"\n  address = 0\n  type = \"f32\"\n  word_order = \"ABCD\"\n\
           [[device.point]]\n  factor = \"a21005\"\n  address = 2\n  type = \"f32\"\n  word_order = \"ABCD\"\n\
         [[uplink]]\nname = \"province\"\naddress = \"{platform_address}\"\nrealtime = true\nminute = false\nhour = false\nday = false\n",
        db.display(),
        peer.path.display()
    ));
    cfg.uplinks[0].rtd_interval = Duration::from_millis(200);

    let probe = cems_gateway::app::probe(&cfg, Some("gas")).await.unwrap();
    assert!(probe.contains("20.9") && probe.contains("123.456"), "{probe}");
    assert!(!probe.contains("20.8999") && !probe.contains("123.4560"), "{probe}");

    let gateway = cems_gateway::app::start(&cfg).unwrap();
    let frame =
        |all: &[Packet]| all.iter().find(|p| p.cn == "2011" && p.cp.get("a19001-Rtd").is_some()).cloned();
    assert!(
        eventually(Duration::from_secs(30), || frame(&platform.all.lock().unwrap()).is_some()).await,
        "no 2011 frame"
    );
    let rtd = frame(&platform.all.lock().unwrap()).unwrap();
    assert_eq!(
        (rtd.cp.get("a19001-Rtd"), rtd.cp.get("a21005-Rtd")),
        (Some("20.9"), Some("123.456")),
        "{}",
        rtd.cp
    );
    // Until a batch is in the store.
    let store = Store::open_read_only(&db).unwrap();
    assert!(eventually(Duration::from_secs(30), || store.count().unwrap_or(0) >= 4).await);
    gateway.stop().await;
    let samples = store.samples(0, i64::MAX).unwrap();
    let o2: Vec<Option<f64>> = samples.iter().filter(|s| s.factor == "a19001").map(|s| s.value).collect();
    assert!(!o2.is_empty() && o2.iter().all(|v| *v == Some(20.9)), "{o2:?}");
    assert!(samples.iter().filter(|s| s.factor == "a21005").all(|s| s.value == Some(123.456)));
    let mut raw = Vec::new();
    let today = cems_gateway::report::format_day(now_ms() / 1000 + OFFSET - 86_400);
    let tomorrow = cems_gateway::report::format_day(now_ms() / 1000 + OFFSET + 86_400);
    cems_gateway::commands::export(&db, Some(&cfg), &today, &tomorrow, "raw", None, &mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.lines().any(|l| l.ends_with(",gas,a19001,20.9,N")), "{raw}");
    assert!(raw.lines().any(|l| l.ends_with(",gas,a21005,123.456,N")), "{raw}");
    assert!(!raw.contains("20.899"), "{raw}");
}

/// A buffer from before schema 5 holds its flow records in m³/h. Opening it moves them to m³/s
/// (÷ 3600), says so in a `migration` entry and chains every period again: the chain verifies,
/// the pollutant rows are untouched, and each record is valid exactly when it was flagged N.
#[test]
fn flow_records_in_m3_per_hour_move_to_m3_per_second_with_every_change_chained() {
    use cems_gateway::store::audit::{GENESIS, entry_hash};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        for sql in &cems_gateway::store::schema::MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        let insert = "INSERT INTO record (level, outlet, factor, start, n_total, n_valid, min, avg, max, zs_avg, cou, flag, lim, exceeded) \
                      VALUES (1, 'kiln', ?1, ?2, 60, 60, ?3, ?4, ?5, NULL, ?6, ?7, NULL, 0)";
        let hour = 1_772_323_200_000i64; // 2026-03-01 00:00 UTC
        // Flow 360,000 m³/h (100 m³/s), its volume 360,000 m³; SO2 20 mg/m³; an hour in calibration.
        // (factor, start, min, avg, max, cou, flag code)
        type Row<'a> = (&'a str, i64, f64, f64, f64, Option<f64>, u8);
        let rows: [Row; 3] = [
            ("a00000", hour, 352_800.0, 360_000.0, 367_200.0, Some(360_000.0), 0),
            ("a21026", hour, 19.0, 20.0, 21.0, Some(7.2), 0),
            ("a21026", hour + 3_600_000, 19.0, 20.0, 21.0, None, 5),
        ];
        let mut prev = GENESIS.to_vec();
        for (seq, (factor, start, min, avg, max, cou, flag)) in rows.iter().enumerate() {
            conn.execute(insert, rusqlite::params![factor, start, min, avg, max, cou, flag]).unwrap();
            // The entries of the old schema (their content hashes are what they were).
            let seq = seq as i64 + 1;
            let subject = format!("1/{start}/kiln");
            let detail = format!("old content {seq}");
            let hash = entry_hash(&prev, seq, 0, "record", &subject, &detail);
            conn.execute(
                "INSERT INTO audit (seq, ts_ms, kind, subject, detail, prev_hash, hash) VALUES (?1, 0, 'record', ?2, ?3, ?4, ?5)",
                rusqlite::params![seq, subject, detail, prev, hash.as_slice()],
            )
            .unwrap();
            prev = hash.to_vec();
        }
    }
    let (store, _) = Store::open(&db).unwrap();
    let hours = store.records("kiln", Level::Hour, 0, i64::MAX, 0).unwrap();
    let flow = hours.iter().find(|h| h.factor == "a00000").unwrap();
    // 352,800 / 3600 = 98, 360,000 / 3600 = 100, 367,200 / 3600 = 102 m³/s; the volume stays.
    assert_eq!(
        (flow.stat.min, flow.stat.avg, flow.stat.max, flow.stat.cou),
        (Some(98.0), Some(100.0), Some(102.0), Some(360_000.0))
    );
    let so2: Vec<_> = hours.iter().filter(|h| h.factor == "a21026").collect();
    assert_eq!((so2[0].stat.avg, so2[0].stat.cou, so2[0].stat.valid), (Some(20.0), Some(7.2), true));
    assert_eq!((so2[1].stat.flag, so2[1].stat.valid), (Flag::C, false));
    let status = store.verify_chain(None, None).unwrap();
    assert!(status.verified, "{:?}", status.first_broken);
    // 3 old entries, the migration's, and one for each of the 2 periods.
    assert_eq!(status.entries, 6);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let detail: String =
        conn.query_row("SELECT detail FROM audit WHERE kind = 'migration'", [], |r| r.get(0)).unwrap();
    assert!(detail.contains("divided by 3600") && detail.contains("in 1 rows"), "{detail}");
}
