//! The command line as an installer uses it: check-config exit codes, probe, demo.

use std::process::Command;
use std::sync::Arc;

use cems_gateway::sim::{self, Script, Sim};
use tokio::net::TcpListener;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
}

#[test]
fn check_config_exit_codes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ok =
        bin().arg("check-config").arg(root.join("config/examples/cement-kiln-tail.toml")).output().unwrap();
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK (3 buses, 4 devices, 1 outlets)"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[site]\nmn = \"x\"\n[storage]\npath = \"a.db\"\n").unwrap();
    let out = bin().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(err.contains("line 1: site.pw: is required"), "{err}");
    assert!(err.contains("device: at least one [[device]] is required"), "{err}");

    let out = bin().arg("run").arg("--config").arg(dir.path().join("missing.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "run refuses a bad config with 64 too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_prints_raw_registers_and_values() {
    let sim = Arc::new(Sim::new(Default::default(), Script::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(sim::serve_tcp(listener, sim));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, cems_gateway::config::DEMO_CONFIG.replace("127.0.0.1:1502", &address)).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        bin().args(["probe", "--device", "gas", "--config"]).arg(&cfg).output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("device gas (bus sim tcp"), "{text}");
    assert!(text.contains("FC03 holding @0 ×21:"), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("a21026") && l.trim_end().ends_with('N')),
        "{text}"
    );
}

#[test]
fn demo_runs_with_no_files_and_shows_live_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().current_dir(dir.path()).args(["demo", "--for", "6s"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("simulated CEMS on 127.0.0.1:"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("gas") && l.contains("a21026") && l.contains("mg/m3")),
        "{text}"
    );
    assert!(dir.path().join("cems-demo.db").exists());
    assert!(text.contains("Demo stopped:"));
}
