//! The officer's commands on a copy of a buffer: `report --db` reads the copy, not the
//! configuration's buffer, with the capture rate and over-range hours in its JSON; `export
//! --level parameters` gives each analyzer parameter change with the value it replaced.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cems_gateway::acquire::params::Reading;
use cems_gateway::model::{Flag, Sample};
use cems_gateway::store::Store;
use cems_gateway::time::{Local, Offset};

fn utc_ms(local: &str) -> i64 {
    Offset::CHINA.utc_ms(Local::parse_display(local).expect("a local time").secs())
}

/// A one-outlet configuration whose `[storage] path` is `db`.
fn config(dir: &Path, db: &Path) -> std::path::PathBuf {
    let path = dir.join("gw.toml");
    let text = format!(
        "[site]\nmn = \"EVID1\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\n\
         address = \"127.0.0.1:1\"\n[[outlet]]\nname = \"kiln\"\nprofile = \"cement-kiln\"\n\
         unlimited = [\"a21002\", \"a34013\"]\n[[device]]\nname = \"gas\"\nbus = \"b\"\nslave = 1\n\
         outlet = \"kiln\"\n[[device.point]]\nfactor = \"a21026\"\naddress = 0\ntype = \"f32\"\n\
         [[device.point]]\nfactor = \"a19001\"\naddress = 2\ntype = \"f32\"\n",
        db.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cems-gateway")).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn report_reads_the_copy_given_by_db_with_capture_and_over_range_hours() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    // Ten hours of March 1st, 12 samples a minute, but nothing in the sixth and seventh hours
    // (a cut); SO2 above the analyzer's range (T) in the second hour: valid, and counted as
    // over-range.
    let (mut store, _) = Store::open(&copy).unwrap();
    let start = utc_ms("2026-03-01 00:00:00");
    let mut samples = Vec::new();
    for i in 0..10 * 60 * 12 {
        if (5 * 720..7 * 720).contains(&i) {
            continue;
        }
        let ts_ms = start + i * 5000;
        let flag = if (720..1440).contains(&i) { Flag::T } else { Flag::N };
        for (factor, value, flag) in [("a21026", 20.0, flag), ("a19001", 10.0, Flag::N)] {
            samples.push(Sample {
                ts_ms,
                device: Arc::from("gas"),
                factor: Arc::from(factor),
                value: Some(value),
                flag,
            });
        }
    }
    store.insert(&samples).unwrap();
    drop(store);
    // The configuration names another buffer, which does not exist.
    let cfg = config(dir.path(), &dir.path().join("elsewhere.db"));

    let (code, out, err) = run(&[
        "report".as_ref(),
        "--month".as_ref(),
        "2026-03".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        "--config".as_ref(),
        cfg.as_os_str(),
        "--db".as_ref(),
        copy.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let so2 = &doc["factors"]["a21026"];
    assert_eq!(so2["valid_hours"], 8, "{so2}");
    assert_eq!(so2["over_range_hours"], 1, "{so2}");
    // The two silent hours between data are production time (nothing says the kiln stopped),
    // not valid: they count against the cement rate and the capture rate.
    assert_eq!(so2["production_hours"], 10, "{so2}");
    assert_eq!(
        so2["invalid_hours"].as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum::<u64>()),
        Some(2),
        "{so2}"
    );
    let capture = so2["capture_rate"].as_f64().expect("a capture rate");
    assert!((capture - 0.8).abs() < 1e-9, "{so2}");
    assert!((so2["compliance_rate"].as_f64().unwrap() - 0.8).abs() < 1e-9, "{so2}");
    assert!(!dir.path().join("elsewhere.db").exists(), "the configuration's buffer is not touched");
}

#[test]
fn export_gives_parameter_changes_with_the_value_they_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let (mut store, _) = Store::open(&db).unwrap();
    let reading = |local: &str, value: &str| Reading {
        device: Arc::from("gas"),
        code: "i13004".into(),
        pol: Some("a21026".into()),
        ts_ms: utc_ms(local),
        value: value.into(),
    };
    let mut last = None;
    store
        .record_parameters(
            &mut last,
            &[reading("2026-03-01 08:00:00", "500"), reading("2026-03-01 08:00:05", "500")],
        )
        .unwrap();
    store.record_parameters(&mut last, &[reading("2026-03-01 09:30:00", "2000")]).unwrap();
    drop(store);
    let cfg = config(dir.path(), &db);

    let (code, csv, err) = run(&[
        "export".as_ref(),
        "--config".as_ref(),
        cfg.as_os_str(),
        "--from".as_ref(),
        "2026-03-01".as_ref(),
        "--to".as_ref(),
        "2026-03-01".as_ref(),
        "--level".as_ref(),
        "parameters".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        [
            "time,device,code,pol,value,previous",
            "2026-03-01 08:00:00,gas,i13004,a21026,500,",
            "2026-03-01 09:30:00,gas,i13004,a21026,2000,500",
        ],
        "the unchanged reading is not a change; the range change names what it replaced"
    );
}
