//! The SQLite buffer on real files: batches, reopen, corrupt files moved aside, retention, and
//! samples that survive the daemon being killed with SIGKILL.

use std::sync::Arc;
use std::time::Duration;

use cems_gateway::model::{Flag, Sample};
use cems_gateway::sim::{self, Script, Sim};
use cems_gateway::store::{OpenReport, Retention, Store};
use tokio::net::TcpListener;

fn sample(ts_ms: i64, device: &str, factor: &str, value: Option<f64>, flag: Flag) -> Sample {
    Sample { ts_ms, device: Arc::from(device), factor: Arc::from(factor), value, flag }
}

#[test]
fn batches_are_stored_and_read_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/cems.db");
    let (mut store, report) = Store::open(&path).unwrap();
    assert_eq!(report, OpenReport::Fresh);
    let batch = vec![
        sample(1_000, "gas", "a21026", Some(18.5), Flag::N),
        sample(1_000, "gas", "a19001", Some(10.9), Flag::N),
        sample(6_000, "gas", "a21026", None, Flag::B),
        sample(6_000, "dust", "a34013", Some(250.0), Flag::T),
    ];
    assert_eq!(store.insert(&batch).unwrap(), 4);
    drop(store);
    let (store, report) = Store::open(&path).unwrap();
    assert_eq!(report, OpenReport::Existing);
    let back = store.samples(0, 10_000).unwrap();
    let got: Vec<_> =
        back.iter().map(|s| (s.ts_ms, s.device.as_str(), s.factor.as_str(), s.value, s.flag)).collect();
    assert_eq!(
        got,
        vec![
            (1_000, "gas", "a19001", Some(10.9), Flag::N),
            (1_000, "gas", "a21026", Some(18.5), Flag::N),
            (6_000, "dust", "a34013", Some(250.0), Flag::T),
            (6_000, "gas", "a21026", None, Flag::B),
        ]
    );
    assert_eq!(store.newest_ts().unwrap(), Some(6_000));
}

#[test]
fn a_duplicate_time_and_series_is_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(&dir.path().join("c.db")).unwrap();
    let s = sample(5, "gas", "a21026", Some(1.0), Flag::N);
    assert_eq!(store.insert(&[s.clone(), s.clone()]).unwrap(), 1);
    assert_eq!(store.duplicates, 1);
    assert_eq!(store.insert(&[sample(6, "gas", "a21026", Some(2.0), Flag::N)]).unwrap(), 1);
}

#[test]
fn a_corrupt_file_is_moved_aside_and_a_fresh_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cems.db");
    std::fs::write(&path, b"this is not a database, it is what a bad SD card leaves behind".repeat(100))
        .unwrap();
    let (mut store, report) = Store::open(&path).unwrap();
    let OpenReport::MovedAside(aside) = report else { panic!("{report:?}") };
    assert!(aside.exists(), "the evidence is kept");
    assert!(std::fs::read(&aside).unwrap().starts_with(b"this is not a database"));
    assert_eq!(store.insert(&[sample(1, "gas", "a21026", Some(1.0), Flag::N)]).unwrap(), 1);

    // A real database whose pages were damaged.
    drop(store);
    let mut bytes = std::fs::read(&path).unwrap();
    let (mut store, _) = Store::open(&path).unwrap();
    let many: Vec<Sample> =
        (0..20_000).map(|i| sample(i, "gas", "a21026", Some(i as f64), Flag::N)).collect();
    store.insert(&many).unwrap();
    store.checkpoint().unwrap();
    drop(store);
    bytes = std::fs::read(&path).unwrap_or(bytes);
    for b in &mut bytes[4096 * 2..4096 * 6] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let (store, report) = Store::open(&path).unwrap();
    assert!(matches!(report, OpenReport::MovedAside(_)), "{report:?}");
    assert_eq!(store.count().unwrap(), 0);
}

#[test]
fn retention_by_age_and_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(&dir.path().join("r.db")).unwrap();
    let day = 86_400_000i64;
    let batch: Vec<Sample> =
        (0..10).map(|d| sample(d * day, "gas", "a21026", Some(d as f64), Flag::N)).collect();
    store.insert(&batch).unwrap();
    let deleted = store
        .enforce_retention(
            Retention { max_age: Duration::from_secs(3 * 86_400), max_bytes: u64::MAX },
            9 * day,
        )
        .unwrap();
    assert_eq!(deleted, 6, "days 0..=5 are older than 3 days at day 9");
    assert_eq!(store.samples(0, 100 * day).unwrap().first().map(|s| s.ts_ms), Some(6 * day));

    let big: Vec<Sample> =
        (0..200_000).map(|i| sample(20 * day + i, "gas", "a21026", Some(i as f64), Flag::N)).collect();
    store.insert(&big).unwrap();
    let before = store.used_bytes().unwrap();
    let limit = before / 2;
    store
        .enforce_retention(
            Retention { max_age: Duration::from_secs(3650 * 86_400), max_bytes: limit },
            21 * day,
        )
        .unwrap();
    assert!(store.used_bytes().unwrap() <= limit, "{} > {limit}", store.used_bytes().unwrap());
    let kept = store.samples(0, 100 * day).unwrap();
    assert!(!kept.is_empty());
    assert_eq!(kept.last().unwrap().ts_ms, 20 * day + 199_999, "the newest samples are kept");
}

/// The real daemon, killed with SIGKILL mid-run: every sample it had committed is still there
/// and the file passes its check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_samples_survive_sigkill() {
    let sim = Arc::new(Sim::new(Default::default(), Script::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(sim::serve_tcp(listener, sim));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill.db");
    let text = cems_gateway::config::DEMO_CONFIG
        .replace("127.0.0.1:1502", &address)
        .replace("path = \"cems-demo.db\"", &format!("path = \"{}\"", db.display()))
        .replace("poll_interval_s = 2", "poll_interval_s = 0.2")
        .replace("flush_ms = 1000", "flush_ms = 100");
    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Watch the file from outside, as an officer's sqlite3 would, until it holds enough.
    let mut seen = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(n) = rusqlite_count(&db) {
            seen = n;
            if seen >= 200 {
                break;
            }
        }
    }
    assert!(seen >= 200, "the daemon stored only {seen} samples");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (store, report) = Store::open(&db).unwrap();
    assert_eq!(report, OpenReport::Existing, "no corruption after SIGKILL");
    assert!(store.count().unwrap() >= seen as u64, "{} < {seen}", store.count().unwrap());
}

/// Counts samples through a second, read-only connection, as `sqlite3` would see the file.
fn rusqlite_count(db: &std::path::Path) -> rusqlite::Result<i64> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.query_row("SELECT count(*) FROM sample", [], |r| r.get(0))
}

/// `cems-gateway backup` while the real daemon writes: the copy is a single file, opens, holds
/// what the daemon had committed when the copy began, and its audit chain verifies (the
/// daemon's buffer records the plant time, so `verify --db` on the copy needs no configuration).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_daemon_writes_opens_and_verifies() {
    let sim = Arc::new(Sim::new(Default::default(), Script::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(sim::serve_tcp(listener, sim));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let text = cems_gateway::config::DEMO_CONFIG
        .replace("127.0.0.1:1502", &address)
        .replace("path = \"cems-demo.db\"", &format!("path = \"{}\"", db.display()))
        .replace("poll_interval_s = 2", "poll_interval_s = 0.1")
        .replace("flush_ms = 1000", "flush_ms = 50");
    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut before = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        before = rusqlite_count(&db).unwrap_or(0);
        if before >= 300 {
            break;
        }
    }
    assert!(before >= 300, "the daemon stored only {before} samples");
    let copy = dir.path().join("copy.db");
    let bin = env!("CARGO_BIN_EXE_cems-gateway");
    let out = std::process::Command::new(bin)
        .args(["backup", "--config"])
        .arg(&cfg_path)
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("audit chain of the copy intact: head seq "), "{text}");
    // The daemon kept writing meanwhile.
    let mut after = before;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = rusqlite_count(&db).unwrap_or(0);
        if after > before + 50 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(after > before, "the daemon went on storing ({before} → {after})");
    // One self-contained file, at least what was committed before the copy began.
    assert!(!dir.path().join("copy.db-wal").exists() && !dir.path().join("copy.db.partial").exists());
    assert!(rusqlite_count(&copy).unwrap() >= before);
    let out = std::process::Command::new(bin).args(["verify", "--db"]).arg(&copy).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("audit chain intact: ") && !text.contains("note:"), "{text}");
    // A backup never overwrites.
    let out = std::process::Command::new(bin).args(["backup", "--db"]).arg(&db).arg(&copy).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists: give a new file name"));
}
