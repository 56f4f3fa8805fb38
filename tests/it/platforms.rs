//! The gateway against platforms that answer as real ones do (`sim::platform::Behaviour`): one
//! that has handlers for data only and refuses the rest with `9011 QnRtn=2` (an independent
//! HJ 212-2017 platform did exactly this with 2081 and 1013), one that never answers notices,
//! and one that acknowledges only the records it stores. From one store, each gets every minute
//! and hour record within two minutes of the period closing, on a single connection, and no
//! answer of theirs is ever answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cems_gateway::compute::{Level, Record};
use cems_gateway::live::Live;
use cems_gateway::model::{Flag, Sample, now_ms};
use cems_gateway::sim::platform::{self, Behaviour, Platform};
use cems_gateway::store::Store;
use cems_gateway::time::Offset;
use cems_gateway::uplink::Link;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::{hour_record, kiln_config, outbox};

const OFFSET: Offset = Offset::CHINA;

fn stamp(local_s: i64) -> String {
    cems_gateway::time::Local::from_secs(local_s).hj14()
}

fn minute_record(start_local: i64) -> Record {
    let mut r = hour_record(start_local, "a21026", 5.0);
    r.level = Level::Minute;
    r.limit = None;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_real_platform_behaviours_get_minutes_and_hours_within_two_minutes_on_one_connection() {
    let behaviours =
        [Behaviour::RefusesNotices, Behaviour::SilentOnNotices, Behaviour::AcknowledgesStoredDataOnly];
    let mut platforms: Vec<(Behaviour, String, Platform)> = Vec::new();
    for b in behaviours {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        platforms.push((b, address, platform::serve_as(listener, b, Duration::ZERO, true)));
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    // The last 20 minutes, the minute in progress and the next one (written ahead: the queue
    // sends a minute only once it closed and settled, as if the statistics had just written it),
    // and the last three closed hours.
    let now_local = OFFSET.local_secs(now_ms());
    let this_minute = now_local - now_local.rem_euclid(60);
    let this_hour = now_local - now_local.rem_euclid(3600);
    let minutes: Vec<i64> = (-20..=1).map(|k| this_minute + k * 60).collect();
    let hours: Vec<i64> = (1..=3).rev().map(|k| this_hour - k * 3600).collect();
    let mut records: Vec<Record> = minutes.iter().map(|m| minute_record(*m)).collect();
    records.extend(hours.iter().map(|h| hour_record(*h, "a21026", 10.0)));
    let (mut store, _) = Store::open(&db).unwrap();
    store.upsert_records("kiln", &records, OFFSET).unwrap();
    drop(store);

    let mut links = String::new();
    for (b, address, _) in &platforms {
        links += &format!(
            "[[uplink]]\nname = \"{b:?}\"\naddress = \"{address}\"\nminute = true\nmin_interval = 1\nhour = true\nday = false\novertime_s = 2\nrecount = 2\n"
        );
    }
    let mut cfg = kiln_config(&db, "PLATFORMS00001", &links);
    for u in &mut cfg.uplinks {
        u.rtd_interval = Duration::from_millis(500);
    }
    let cfg = Arc::new(cfg);
    let outbox = outbox(&db);
    let live = Arc::new(Live::default());
    let sample = Sample {
        ts_ms: now_ms(),
        device: "gas".into(),
        factor: "a21026".into(),
        value: Some(12.5),
        flag: Flag::N,
    };
    live.record_poll("gas", &[sample], None);
    let (stop, stop_rx) = watch::channel(false);
    for u in &cfg.uplinks {
        let link = Link::new(u.clone(), cfg.clone(), outbox.clone(), live.clone()).unwrap();
        tokio::spawn(link.run(stop_rx.clone()));
    }

    // The minute in progress at the start closes at `closes`; each platform must have it within
    // two minutes of that, with everything before it.
    let target = stamp(this_minute);
    let closes_ms = OFFSET.utc_ms(this_minute + 60);
    let mut arrived: Vec<Option<i64>> = vec![None; platforms.len()];
    let started = Instant::now();
    while arrived.iter().any(Option::is_none) && started.elapsed() < Duration::from_secs(240) {
        for (i, (_, _, p)) in platforms.iter().enumerate() {
            if arrived[i].is_none()
                && p.all
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|x| x.cn == "2051" && x.cp.get("DataTime") == Some(target.as_str()))
            {
                arrived[i] = Some(now_ms());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    let expected_minutes: Vec<String> = minutes[..=20].iter().map(|m| stamp(*m)).collect();
    let expected_hours: Vec<String> = hours.iter().map(|h| stamp(*h)).collect();
    for (i, (b, _, p)) in platforms.iter().enumerate() {
        let at = arrived[i].unwrap_or_else(|| panic!("{b:?}: the minute {target} never arrived"));
        assert!(at - closes_ms <= 120_000, "{b:?}: {} s after the minute closed", (at - closes_ms) / 1000);
        let all = p.all.lock().unwrap().clone();
        let seen = |cn: &str| {
            let mut t: Vec<String> = all
                .iter()
                .filter(|x| x.cn == cn)
                .map(|x| x.cp.get("DataTime").unwrap().to_string())
                .collect();
            t.sort();
            t.dedup();
            t
        };
        assert_eq!(seen("2051"), expected_minutes, "{b:?}: every minute up to the one that closed");
        assert_eq!(seen("2061"), expected_hours, "{b:?}: every hour");
        let r = p.snapshot();
        assert_eq!(r.connections, 1, "{b:?}: one connection");
        assert_eq!(r.by_cn.get("9011"), None, "{b:?}: no answer of the platform was answered");
        assert!(all.iter().any(|x| x.cn == "2011"), "{b:?}: real-time data flows too");
        match b {
            // Refused once: finished, not sent again.
            Behaviour::RefusesNotices => assert_eq!(r.by_cn["2081"], 1),
            // Never answered: sent ReCount times, then given up.
            _ => assert_eq!(r.by_cn["2081"], 2, "{b:?}"),
        }
    }
}
