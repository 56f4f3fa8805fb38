//! The chaos run (issue #7): the real daemon, killed with SIGKILL at random moments and
//! restarted each time, while one platform drains a week of backlog and the other follows live
//! data, the platforms are cut, the gas analyzer drops off its TCP link, garbage arrives on the
//! serial line, and the buffer is over its size cap. Then, from the platforms' logs and the
//! store: every stored minute, hour and day record reached its platform at least once, in order
//! per connection, with the stored values; duplicates are counted; `integrity_check` passes;
//! the size cap pruned only the oldest raw samples and no record; the audit chain verifies.
//!
//! What is simulated how: the week the platform was down is a week of raw samples (4 factors at
//! 10 s) written before the run, with the records the evaluator computes from them, and the
//! platform's cursor a week back; the daemon then drains it under kills. That outlet has no
//! live devices, so its records are left as they are (the statistics worker recomputes only
//! outlets with devices). Live acquisition, statistics and upload run in real time on the other
//! outlet. The figures are printed (`--nocapture`). `CEMS_CHAOS_KILLS` sets the number of kills
//! (10 here, 50 for the long form), `CEMS_CHAOS_SEED` the random seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cems_gateway::compute::evaluate::{Evaluator, Input};
use cems_gateway::compute::{Level, OutletLimits, OutletSpec, Record, limits};
use cems_gateway::hj212::{Cp, Decoded, Decoder, Packet, message};
use cems_gateway::model::{Flag, Sample, now_ms};
use cems_gateway::sim::{self, Script, Sim};
use cems_gateway::store::Store;
use cems_gateway::store::outbox::Kind;
use cems_gateway::time::Offset;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::{Behaviour, RtuPeer, image};

const OFFSET: Offset = Offset::CHINA;
const FACTORS: [&str; 4] = ["a21026", "a21002", "a34013", "a19001"];

/// One packet as a platform received it.
struct Got {
    conn: u64,
    at: Instant,
    packet: Packet,
}

/// An HJ 212 platform that acknowledges everything, logs each packet with its connection, and
/// can be cut: open connections dropped, new ones closed at once.
struct Platform {
    address: String,
    log: Arc<Mutex<Vec<Got>>>,
    up: watch::Sender<bool>,
}

async fn cut(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|up| !*up).await;
}

impl Platform {
    async fn start() -> Platform {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let log: Arc<Mutex<Vec<Got>>> = Arc::default();
        let (up, up_rx) = watch::channel(true);
        let l = log.clone();
        tokio::spawn(async move {
            let mut conn = 0;
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                if !*up_rx.borrow() {
                    continue;
                }
                conn += 1;
                let (log, mut up_rx) = (l.clone(), up_rx.clone());
                tokio::spawn(async move {
                    let (mut rd, mut wr) = stream.into_split();
                    let mut decoder = Decoder::default();
                    let mut buf = vec![0u8; 8192];
                    loop {
                        let n = tokio::select! {
                            r = rd.read(&mut buf) => match r {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            },
                            _ = cut(&mut up_rx) => return,
                        };
                        decoder.push(&buf[..n]);
                        while let Some(d) = decoder.next_frame() {
                            let Decoded::Packet(packet) = d else { continue };
                            let wants_ack = packet.wants_ack();
                            let ack = Packet {
                                qn: packet.qn.clone(),
                                st: "91".into(),
                                cn: "9014".into(),
                                pw: packet.pw.clone(),
                                mn: packet.mn.clone(),
                                flag: Some(4),
                                packets: None,
                                rf: false,
                                cp: Cp::default(),
                            };
                            log.lock().unwrap().push(Got { conn, at: Instant::now(), packet });
                            if wants_ack
                                && let Ok(frame) = ack.encode()
                                && wr.write_all(frame.as_bytes()).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Platform { address, log, up }
    }

    fn set_up(&self, up: bool) {
        let _ = self.up.send(up);
    }

    /// Distinct (CN, DataTime) of the period uploads received.
    fn periods(&self) -> BTreeSet<(String, String)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|g| matches!(g.packet.cn.as_str(), "2051" | "2061" | "2031"))
            .filter_map(|g| Some((g.packet.cn.clone(), g.packet.cp.get("DataTime")?.to_string())))
            .collect()
    }
}

fn cn_of(level: Level) -> &'static str {
    match level {
        Level::Minute => "2051",
        Level::Hour => "2061",
        _ => "2031",
    }
}

fn data_time(start_local: i64) -> String {
    cems_gateway::time::Local::from_secs(start_local).hj14()
}

/// A smooth, deterministic value per factor and time, with a `B` now and then.
fn seeded_value(factor: usize, t: i64) -> (Option<f64>, Flag) {
    if (t / 10 + factor as i64) % 997 == 0 {
        return (None, Flag::B);
    }
    let base = [18.0, 40.0, 4.0, 10.5][factor];
    let x = t as f64 / 3600.0;
    (Some(base * (1.0 + 0.2 * (x + factor as f64).sin() + 0.05 * (x * 7.3).cos())), Flag::N)
}

/// The week the platform was down: samples written and sealed into the audit chain minute by
/// minute (as the gateway's writer did while the platform was down), records computed by the
/// evaluator and stored. Returns the records by level and the seeded samples' time range (Unix
/// ms).
fn seed_week(store: &mut Store, start_local: i64) -> (Vec<Record>, (i64, i64)) {
    let profile = limits::profile("cement-kiln").unwrap();
    let spec = OutletSpec::new(OutletLimits::resolve(Some(profile), None, &Default::default()));
    let minutes = Arc::new(Mutex::new(Vec::new()));
    let m = minutes.clone();
    let mut evaluator = Evaluator::new(spec).on_minute(move |r| m.lock().unwrap().push(r.clone()));
    let factors: Vec<Arc<str>> = FACTORS.iter().map(|f| Arc::from(*f)).collect();
    let device: Arc<str> = Arc::from("wk-gas");
    let mut batch = Vec::new();
    let end_local = start_local + 7 * 86_400;
    for t in (start_local..end_local).step_by(10) {
        for (i, factor) in factors.iter().enumerate() {
            let (value, flag) = seeded_value(i, t);
            evaluator.push(Input { t, factor: factor.clone(), value, flag });
            batch.push(Sample {
                ts_ms: OFFSET.utc_ms(t),
                device: device.clone(),
                factor: factor.clone(),
                value,
                flag,
            });
        }
        if batch.len() >= 20_000 {
            store.insert(&batch).unwrap();
            batch.clear();
        }
    }
    store.insert(&batch).unwrap();
    let handover = Arc::new(cems_gateway::store::seal::Handover::new([]));
    let mut sealer =
        cems_gateway::store::seal::Sealer::start(store, Duration::from_secs(5), handover).unwrap();
    sealer.finish(store).unwrap();
    let outcome = evaluator.finish();
    let mut records = std::mem::take(&mut *minutes.lock().unwrap());
    records.extend(outcome.hours);
    records.extend(outcome.days);
    records.retain(|r| r.start >= start_local && r.start < end_local);
    store.upsert_records("week", &records, OFFSET).unwrap();
    (records, (OFFSET.utc_ms(start_local), OFFSET.utc_ms(end_local - 10)))
}

fn config_text(db: &Path, sim: &str, pty: &Path, province: &str, city: &str, cap_mb: u64) -> String {
    format!(
        r#"
[site]
mn = "CHAOS000000001"
pw = "123456"
[storage]
path = "{db}"
max_size_mb = {cap_mb}
flush_ms = 500
[[bus]]
name = "tcp"
kind = "tcp"
address = "{sim}"
timeout_ms = 300
[[bus]]
name = "serial"
kind = "rtu"
path = "{pty}"
baud = 9600
timeout_ms = 200
[[outlet]]
name = "kiln"
profile = "cement-kiln"
[[outlet]]
name = "week"
profile = "cement-kiln"
[[device]]
name = "gas"
bus = "tcp"
slave = 1
poll_interval_s = 1
outlet = "kiln"
  [[device.status]]
  address = 20
  type = "u16"
  map = {{ 1 = "M", 2 = "D", 3 = "C" }}
  [[device.point]]
  factor = "a21026"
  address = 0
  type = "f32"
  [[device.point]]
  factor = "a21002"
  address = 2
  type = "f32"
  [[device.point]]
  factor = "a19001"
  address = 8
  type = "f32"
[[device]]
name = "dust"
bus = "serial"
slave = 1
poll_interval_s = 1
outlet = "kiln"
  [[device.status]]
  address = 4
  type = "u16"
  map = {{ 2 = "D", 3 = "C" }}
  [[device.point]]
  factor = "a34013"
  address = 0
  type = "f32"
  word_order = "CDAB"
[[uplink]]
name = "province"
address = "{province}"
outlet = "week"
realtime = false
min_interval = 1
window = 4
overtime_s = 3
reconnect_max_s = 1
[[uplink]]
name = "city"
address = "{city}"
outlet = "kiln"
realtime = false
min_interval = 1
overtime_s = 3
reconnect_max_s = 1
"#,
        db = db.display(),
        pty = pty.display(),
    )
}

struct Daemon {
    cfg: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn spawn(&self) -> std::process::Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
            .args(["run", "--config"])
            .arg(&self.cfg)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }
}

/// Checks one platform's log against the store's records of `outlet` (`wanted`: the periods
/// that must have arrived). Returns (period uploads received, distinct periods, duplicates).
fn check_platform(
    name: &str,
    p: &Platform,
    store: &Store,
    outlet: &str,
    wanted: &BTreeSet<(String, String)>,
) -> (usize, usize, usize) {
    let log = p.log.lock().unwrap();
    let uploads: Vec<&Got> =
        log.iter().filter(|g| matches!(g.packet.cn.as_str(), "2051" | "2061" | "2031")).collect();
    // In order within each connection, per kind (a new connection may repeat what was sent
    // but not yet durably acknowledged: at least once).
    let mut last: BTreeMap<(u64, &str), String> = BTreeMap::new();
    for g in &uploads {
        let t = g.packet.cp.get("DataTime").unwrap().to_string();
        if let Some(prev) = last.insert((g.conn, g.packet.cn.as_str()), t.clone()) {
            assert!(
                prev <= t,
                "{name}: CN={} out of order on connection {}: {prev} then {t}",
                g.packet.cn,
                g.conn
            );
        }
    }
    // Every upload carries exactly the stored record's values.
    let mut by_period: BTreeMap<(String, String), Vec<Record>> = BTreeMap::new();
    for level in [Level::Minute, Level::Hour, Level::Day] {
        for r in store.records(outlet, level, i64::MIN, i64::MAX, OFFSET).unwrap() {
            by_period.entry((cn_of(level).to_string(), data_time(r.start))).or_default().push(r);
        }
    }
    for g in &uploads {
        let t = g.packet.cp.get("DataTime").unwrap();
        let records = by_period
            .get(&(g.packet.cn.clone(), t.to_string()))
            .unwrap_or_else(|| panic!("{name}: CN={} {t} was uploaded but is not in the store", g.packet.cn));
        assert_eq!(
            g.packet.cp,
            message::period_cp(t, records),
            "{name}: CN={} {t}: values differ from the store",
            g.packet.cn
        );
    }
    let distinct: BTreeSet<(String, String)> = uploads
        .iter()
        .map(|g| (g.packet.cn.clone(), g.packet.cp.get("DataTime").unwrap().to_string()))
        .collect();
    let missing: Vec<_> = wanted.difference(&distinct).take(5).collect();
    assert!(
        missing.is_empty(),
        "{name}: {} periods never arrived, e.g. {missing:?}",
        wanted.difference(&distinct).count()
    );
    (uploads.len(), distinct.len(), uploads.len() - distinct.len())
}

fn store_periods(store: &Store, outlet: &str) -> BTreeSet<(String, String)> {
    due_periods(store, outlet, i64::MAX)
}

/// The periods of `outlet` that a link must have sent by `now_local` (seconds): a minute block
/// waits 70 s after it closes for late samples (`uplink::MINUTE_SETTLE_MS`), with 3 s of slack
/// for the link's queue poll; hours and days go once stored.
fn due_periods(store: &Store, outlet: &str, now_local: i64) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for level in [Level::Minute, Level::Hour, Level::Day] {
        for r in store.records(outlet, level, i64::MIN, i64::MAX, OFFSET).unwrap() {
            if level != Level::Minute || r.start + 60 + 70 + 3 <= now_local {
                set.insert((cn_of(level).to_string(), data_time(r.start)));
            }
        }
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_kills_outages_garbage_and_a_full_buffer_lose_nothing() {
    let kills: u32 = std::env::var("CEMS_CHAOS_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let seed: u64 =
        std::env::var("CEMS_CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| now_ms() as u64);
    let mut rng = fastrand::Rng::with_seed(seed);
    let run_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chaos.db");

    // The week the province platform was down, and a buffer over its size cap.
    let now_local = OFFSET.local_secs(now_ms());
    let week_start = now_local - now_local.rem_euclid(86_400) - 7 * 86_400;
    let (mut store, _) = Store::open(&db).unwrap();
    let (week_records, (first_sample_ms, last_sample_ms)) = seed_week(&mut store, week_start);
    let seeded_bytes = store.used_bytes().unwrap();
    // A cursor is the start of the newest acknowledged period (minute block, hour, day).
    let week_start_ms = OFFSET.utc_ms(week_start);
    for (kind, before) in [
        (Kind::Minute, week_start_ms - 60_000),
        (Kind::Hour, week_start_ms - 3_600_000),
        (Kind::Day, week_start_ms - 86_400_000),
    ] {
        store.set_cursor("province", kind, before).unwrap();
    }
    let week_periods = store_periods(&store, "week");
    drop(store);
    // The cap lets about half of the seeded samples stay.
    let cap_mb = (seeded_bytes * 2 / 3).div_ceil(1 << 20).max(1);
    let seed_s = run_started.elapsed().as_secs_f64();

    // Analyzers: the gas analyzer over TCP drops off for 10 s and calibrates for 8 s every
    // minute; the dust meter on a pty answers with garbage part of the time.
    let script = Script::parse("drop@20s+10s/1,calibration@40s+8s/1,every=60s").unwrap();
    let sim = Arc::new(Sim::new(Default::default(), script));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_address = listener.local_addr().unwrap().to_string();
    tokio::spawn(sim::serve_tcp(listener, sim));
    let peer = Arc::new(RtuPeer::start(image(3.2, 0.0, 0)));
    let garbage = {
        let peer = peer.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                peer.set(match i % 4 {
                    0 | 1 => Behaviour::Normal,
                    2 => Behaviour::Garbage,
                    _ => Behaviour::GarbageThenGood,
                });
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let province = Platform::start().await;
    let city = Platform::start().await;
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        config_text(&db, &sim_address, &peer.path, &province.address, &city.address, cap_mb),
    )
    .unwrap();
    let daemon = Daemon { cfg, log: dir.path().join("gw.log") };

    // Kills at random moments; the province platform is cut early in the drain, the city one
    // a little later, never both at once.
    let t0 = Instant::now();
    let mut recoveries: Vec<Duration> = Vec::new();
    let mut not_recovered = 0;
    for k in 0..kills {
        let at = t0.elapsed();
        province.set_up(!(Duration::from_secs(3)..Duration::from_secs(10)).contains(&at));
        city.set_up(!(Duration::from_secs(15)..Duration::from_secs(35)).contains(&at));
        let spawned = Instant::now();
        let mut child = daemon.spawn();
        let delay = Duration::from_millis(rng.u64(1_000..if k % 3 == 2 { 8_000 } else { 4_000 }));
        tokio::time::sleep(delay).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let first = [&province, &city]
            .iter()
            .filter_map(|p| p.log.lock().unwrap().iter().find(|g| g.at > spawned).map(|g| g.at))
            .min();
        match first {
            Some(t) => recoveries.push(t - spawned),
            None => not_recovered += 1,
        }
    }
    province.set_up(true);
    city.set_up(true);

    // The last run: until the week has drained and the city platform has every live period
    // the store holds (at least two minutes computed from live samples).
    let mut last = daemon.spawn();
    let mut settled = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(store) = Store::open_read_only(&db) else { continue };
        // Records computed from live samples that the link had time to send.
        let live = due_periods(&store, "kiln", OFFSET.local_secs(now_ms()));
        if !live.is_empty() && week_periods.is_subset(&province.periods()) && live.is_subset(&city.periods())
        {
            settled = Some(live);
            break;
        }
    }
    last.kill().unwrap();
    last.wait().unwrap();
    garbage.abort();
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    let Some(live_periods) = settled else {
        let store = Store::open_read_only(&db).unwrap();
        let live = due_periods(&store, "kiln", OFFSET.local_secs(now_ms()));
        panic!(
            "not settled in time: province {}/{} (missing {:?}), city {}/{} (missing {:?}); daemon log tail:\n{}",
            province.periods().intersection(&week_periods).count(),
            week_periods.len(),
            week_periods.difference(&province.periods()).take(5).collect::<Vec<_>>(),
            city.periods().intersection(&live).count(),
            live.len(),
            live.difference(&city.periods()).take(5).collect::<Vec<_>>(),
            log.lines()
                .filter(|l| l.contains("uplink") || l.contains("ERROR"))
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        )
    };

    // Verification from the store and the platforms' logs.
    let store = Store::open_read_only(&db).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let (p_up, p_distinct, p_dup) = check_platform("province", &province, &store, "week", &week_periods);
    let (c_up, c_distinct, c_dup) = check_platform("city", &city, &store, "kiln", &live_periods);
    // The week's records are all still there, unchanged, although the buffer hit its cap.
    let mut stored_week = Vec::new();
    for level in [Level::Minute, Level::Hour, Level::Day] {
        stored_week.extend(store.records("week", level, i64::MIN, i64::MAX, OFFSET).unwrap());
    }
    let key = |r: &Record| (r.level, r.start, r.factor.clone());
    let mut expected = week_records.clone();
    expected.sort_by_key(key);
    stored_week.sort_by_key(key);
    assert_eq!(stored_week.len(), expected.len(), "no record pruned");
    assert!(stored_week == expected, "the week's records are unchanged");
    // Only the oldest raw samples were pruned.
    let (oldest, newest): (i64, i64) = conn
        .query_row(
            "SELECT min(ts), max(ts) FROM sample WHERE series IN (SELECT id FROM series WHERE device = 'wk-gas')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(oldest > first_sample_ms, "the size cap pruned the oldest samples");
    assert_eq!(newest, last_sample_ms, "the newest seeded samples are kept");
    let used = store.used_bytes().unwrap();
    assert!(used <= (cap_mb << 20) + (1 << 20), "{used} bytes for a cap of {cap_mb} MB");
    // The analyzer link drop and the garbage show as flags, and in the audit log.
    let b_polls: i64 = conn
        .query_row(
            "SELECT count(*) FROM sample WHERE flag = ?1 AND series IN (SELECT id FROM series WHERE device IN ('gas', 'dust'))",
            [Flag::B.code()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(b_polls > 0, "lost polls are stored as B");
    let chain = store.verify_chain(None, None).unwrap();
    assert!(chain.verified, "audit chain after {kills} kills: {:?}", chain.first_broken);

    recoveries.sort();
    let max_recovery = recoveries.last().copied().unwrap_or_default();
    let median = recoveries.get(recoveries.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "chaos run (seed {seed}): {kills} SIGKILLs survived in {:.0} s (seeding {seed_s:.1} s); \
         week backlog {} periods ({} records) to province: {p_up} uploads, {p_distinct} distinct, {p_dup} duplicates; \
         live {} periods to city: {c_up} uploads, {c_distinct} distinct, {c_dup} duplicates; \
         recovery (restart to first packet at a platform) median {:.2} s, max {:.2} s over {} restarts \
         ({not_recovered} killed before connecting); buffer cap {cap_mb} MB held ({:.1} MB used), \
         {b_polls} lost polls stored as B, audit chain of {} entries verifies",
        t0.elapsed().as_secs_f64(),
        week_periods.len(),
        week_records.len(),
        live_periods.len(),
        median.as_secs_f64(),
        max_recovery.as_secs_f64(),
        recoveries.len(),
        used as f64 / f64::from(1 << 20),
        chain.entries,
    );
    assert!(recoveries.len() as u32 >= kills / 2, "most restarts reached a platform before the next kill");
}
