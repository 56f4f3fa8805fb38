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
    assert!(
        String::from_utf8_lossy(&ok.stdout)
            .contains("OK (3 buses, 4 devices, 1 outlet; buffer /var/lib/cems-gateway/cems.db)")
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[site]\nmn = \"x\"\n[storage]\npath = \"a.db\"\n").unwrap();
    let out = bin().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        format!(
            "{}: 2 problems\n  device: at least one [[device]] is required\n  line 1, column 1: site: pw: is required\n",
            bad.display()
        )
    );

    // Usable but probably not meant: a warning on stderr, exit 0. The kiln example's gas
    // analyzer polled every 10 s gets 6 samples a minute of the 12 a valid minute needs.
    let slow = dir.path().join("slow.toml");
    let text = std::fs::read_to_string(root.join("config/examples/cement-kiln-tail.toml")).unwrap();
    std::fs::write(&slow, text.replacen("poll_interval_s = 2 ", "poll_interval_s = 10", 1)).unwrap();
    let out = bin().arg("check-config").arg(&slow).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK (3 buses, 4 devices, 1 outlet;"));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "warning: line 82, column 1: device \"gas\": poll_interval_s: polled every 10 s: a minute has fewer than the 12 \
         samples it needs ([statistics] samples_per_minute), so every minute of this device's factors would be invalid; \
         poll every 5 s or faster\n"
    );

    // The installer's four mistakes, as check-config prints them.
    let text = std::fs::read_to_string(root.join("config/examples/cement-kiln-tail.toml")).unwrap();
    std::fs::write(&bad, crate::config::mistakes(&text)).unwrap();
    let out = bin().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}: 4 problems
  line 44, column 1: bus \"rs485-1\": buad: unknown key; did you mean baud?
  line 45, column 1: bus \"rs485-1\": parity: must be one of none, even, odd, got \"nada\"
  line 81, column 1: device \"gas\": slave: must be an integer, got \"one\"
  line 99, column 3: device \"gas\" point a21026: word_ordr: unknown key; did you mean word_order?
",
            bad.display()
        )
    );

    // A file that cannot be read: sysexits EX_NOINPUT, the OS reason said once.
    let missing = dir.path().join("missing.toml");
    for args in
        [vec!["check-config"], vec!["run", "--config"], vec!["report", "--month", "2026-01", "--config"]]
    {
        let out = bin().args(&args).arg(&missing).output().unwrap();
        assert_eq!(out.status.code(), Some(66), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("cannot read {}: No such file or directory (os error 2)\n", missing.display()),
            "{args:?}"
        );
    }
    let out = bin().arg("check-config").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(66));
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
    // The analyzer's key parameters: raw registers, then each value.
    assert!(text.contains("parameters holding @100 ×14: 4348 0000 43FA 0000 3F80 0000 0000 0000"), "{text}");
    assert!(text.contains("  i13001 range (a21026): 200 mg/m3\n"), "{text}");
    assert!(text.contains("  i13006 calibration time: 20261201080000\n"), "{text}");
}

/// `simulate` with several `--tcp` addresses serves the same analyzers on each (the benchmarks'
/// one server per bus): a 100-register read of a bench slave answers on both, with its floats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_serves_the_same_analyzers_on_every_tcp_address() {
    use std::io::BufRead as _;
    use tokio_modbus::client::Reader as _;

    /// Kills the simulator however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        bin()
            .args(["simulate", "--tcp", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix("simulator: Modbus TCP on ") {
                let _ = tx.send(address.to_string());
            }
        }
    });
    let mut addresses = Vec::new();
    for _ in 0..2 {
        let address = rx.recv_timeout(std::time::Duration::from_secs(30));
        addresses.push(address.expect("the simulator announces two TCP servers within 30 s"));
    }
    assert_ne!(addresses[0], addresses[1]);
    for address in &addresses {
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::TcpStream::connect(address.as_str()),
        )
        .await
        .expect("connect within 10 s")
        .unwrap();
        let mut ctx = tokio_modbus::prelude::tcp::attach_slave(stream, tokio_modbus::prelude::Slave(42));
        let regs =
            tokio::time::timeout(std::time::Duration::from_secs(10), ctx.read_holding_registers(0, 100))
                .await
                .expect("a reply within 10 s")
                .unwrap()
                .unwrap();
        assert_eq!(regs.len(), 100, "{address}");
        // Float i of bench slave s drifts by at most 1 around s + i / 100.
        for i in [0usize, 49] {
            let v = f32::from_bits(u32::from(regs[2 * i]) << 16 | u32::from(regs[2 * i + 1]));
            assert!((f64::from(v) - (42.0 + i as f64 / 100.0)).abs() <= 1.001, "{address} float {i}: {v}");
        }
    }
}

/// A peer that answers with something else than Modbus (here an HTTP server's refusal): the
/// probe says what the transport error means and what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_explains_a_peer_that_does_not_speak_modbus() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n").await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, cems_gateway::config::DEMO_CONFIG.replace("127.0.0.1:1502", &address)).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        bin().args(["probe", "--device", "gas", "--config"]).arg(&cfg).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("  error: transport: "), "{err}");
    let check: String = err
        .split("what to check: ")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(check.contains("is not a Modbus TCP frame"), "{err}");
    assert!(check.contains("use kind = \"rtu-over-tcp\""), "{err}");
    assert!(err.trim_end().ends_with("1 device failed"), "{err}");
}

/// Every option of every command says what it is for (`--help`).
#[test]
fn every_option_has_help_text() {
    let out = bin().arg("--help").output().unwrap();
    let top = String::from_utf8_lossy(&out.stdout);
    let commands: Vec<String> = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 10, "{top}");
    for command in commands {
        let out = bin().args([command.as_str(), "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        // clap prints an argument without help text as a line of its own name only.
        for line in help.lines().filter(|l| l.starts_with("  ")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let described =
                words.iter().any(|w| !w.starts_with('-') && !w.starts_with('<') && !w.starts_with('['));
            assert!(described || words.is_empty(), "{command} --help: no help text for {line:?}\n{help}");
        }
    }
}

#[test]
fn demo_runs_with_no_files_and_shows_live_values() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        bin().current_dir(dir.path()).args(["demo", "--for", "6s", "--history", "10h"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("simulated CEMS on 127.0.0.1:"), "{text}");
    assert!(text.contains("Recorded a simulated past of 10 h ("), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("gas") && l.contains("a21026") && l.contains("mg/m3")),
        "{text}"
    );
    assert!(dir.path().join("cems-demo.db").exists());
    assert!(text.contains("Demo stopped:"));

    // The commands it prints at the end work, from the folder it ran in.
    let commands: Vec<&str> =
        text.split("Look at this buffer").nth(1).expect("the closing commands").lines().skip(1).collect();
    assert_eq!(commands.len(), 3, "{text}");
    let mut outputs = Vec::new();
    for line in &commands {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], env!("CARGO_BIN_EXE_cems-gateway"), "{line}");
        let out = bin().current_dir(dir.path()).args(&words[1..]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{line}:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
        outputs.push(stdout);
    }
    // report: the seeded hours, with the exceedance (5 to 3 hours back), the calibration
    // (6 hours back, an invalid C hour) and the kiln stop (9 to 7 hours back, F hours). The
    // month may have begun within the 10 hours: its hours are then in the report of the
    // previous month.
    let report = &outputs[0];
    assert!(report.contains("Outlet kiln-tail"), "{report}");
    let into_month = {
        let now = cems_gateway::time::Offset::CHINA.local_secs(cems_gateway::model::now_ms());
        now - cems_gateway::compute::evaluate::period_start(cems_gateway::compute::Level::Month, now)
    };
    if into_month > 10 * 3600 {
        let events = report.split("Exceedances:").nth(1).unwrap().split("Compliance").next().unwrap();
        for factor in ["NOx (a21002) ", "SO₂ (a21026) ", "PM (a34013) "] {
            assert!(events.contains(factor), "{report}");
        }
        assert!(report.contains("!C"), "{report}");
        assert!(report.contains("!F"), "{report}");
        // The start-up the operator marked, with its flag, and the analyzer's parameters read.
        assert!(
            report.contains(" start-up (F) ") && report.contains("by demo: 窑启动 kiln start-up"),
            "{report}"
        );
    }
    // export: the hour records as CSV.
    assert!(outputs[1].starts_with("time,outlet,level,factor,"), "{}", outputs[1]);
    assert!(
        outputs[1].lines().filter(|l| l.contains(",kiln-tail,hour,a21026,")).count() >= 2,
        "{}",
        outputs[1]
    );
    // verify: the chain of every record the statistics worker wrote, intact.
    assert!(outputs[2].contains("audit chain intact: "), "{}", outputs[2]);

    // The repository's config/demo.toml names `cems-demo.db`: relative to the folder the
    // command runs in, so from the demo's folder it is the demo's buffer (not one beside the
    // configuration file).
    let demo_toml = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let month = commands[0].split("--month ").nth(1).unwrap().trim();
    let out = bin()
        .current_dir(dir.path())
        .args(["report", "--month", month, "--config"])
        .arg(&demo_toml)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), outputs[0], "the same buffer, the same report");
}

/// The `compliance` contract: CSV in, the documented JSON out; order of rows does not matter;
/// a bad row is an error with its line.
#[test]
fn compliance_command_contract() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = vec!["time,factor,value,flag".to_string()];
    // Two hours at 12 samples a minute, 13 % O2: hour 0 SO2 20 (→ 27.5), hour 1 SO2 30 (→ 41.25 > 35).
    for h in 0..2 {
        for m in 0..60 {
            for k in 0..12 {
                let time = format!("2026-03-01 {:02}:{m:02}:{:02}", 8 + h, k * 5);
                rows.push(format!("{time},a21026,{},N", if h == 0 { 20 } else { 30 }));
                rows.push(format!("{time},a19001,13,N"));
            }
        }
    }
    let sorted = dir.path().join("sorted.csv");
    std::fs::write(&sorted, rows.join("\n")).unwrap();
    let mut grouped = vec![rows[0].clone()];
    grouped.extend(rows[1..].iter().filter(|r| r.contains("a21026")).cloned());
    grouped.extend(rows[1..].iter().filter(|r| r.contains("a19001")).cloned());
    let by_factor = dir.path().join("grouped.csv");
    std::fs::write(&by_factor, grouped.join("\n")).unwrap();

    let run = |file: &std::path::Path, extra: &[&str]| {
        let out = bin()
            .args(["compliance", "--profile", "cement-kiln", "--input"])
            .arg(file)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let doc: serde_json::Value = serde_json::from_slice(&run(&sorted, &[])).unwrap();
    let hours = doc["hours"].as_array().unwrap();
    let so2: Vec<&serde_json::Value> = hours.iter().filter(|h| h["factor"] == "a21026").collect();
    assert_eq!(so2.len(), 2);
    assert_eq!(
        (so2[0]["start"].as_str(), so2[0]["avg"].as_f64(), so2[0]["zs_avg"].as_f64()),
        (Some("2026-03-01 08:00"), Some(20.0), Some(27.5))
    );
    assert_eq!((so2[0]["valid"].as_bool(), so2[0]["exceeded"].as_bool()), (Some(true), Some(false)));
    assert_eq!((so2[1]["zs_avg"].as_f64(), so2[1]["exceeded"].as_bool()), (Some(41.25), Some(true)));
    assert_eq!(doc["factors"]["a21026"]["valid_hours"], 2);
    assert_eq!(doc["factors"]["a21026"]["exceeded_hours"], 1);
    assert_eq!(doc["factors"]["a21026"]["compliance_rate"], 0.5);
    assert_eq!((doc["valid_hours"].as_u64(), doc["compliant_hours"].as_u64()), (Some(2), Some(1)));
    assert_eq!((doc["compliance_rate"].as_f64(), doc["meets_95"].as_bool()), (Some(0.5), Some(false)));

    let grouped_doc: serde_json::Value = serde_json::from_slice(&run(&by_factor, &[])).unwrap();
    assert_eq!(grouped_doc, doc, "rows grouped by factor give the same result");

    // Overrides: a local SO2 limit of 45 and reference O2 of 11 %: 30 × 10/8 = 37.5 ≤ 45.
    let doc: serde_json::Value =
        serde_json::from_slice(&run(&sorted, &["--limit", "a21026=45", "--reference-o2", "11"])).unwrap();
    assert_eq!(doc["factors"]["a21026"]["exceeded_hours"], 0);
    assert_eq!(doc["meets_95"], true);

    let table = String::from_utf8(run(&sorted, &["--format", "table"])).unwrap();
    assert!(table.contains("2026-03-01 09:00") && table.contains("41.25*N"), "{table}");

    // The second hour's SO2 above the analyzer's range (T): valid by default, and exceeded; with
    // `--valid-flags N` (as `[statistics] valid_flags = ["N"]`) it is not valid and its
    // exceedance is gone.
    let over = dir.path().join("over.csv");
    std::fs::write(&over, rows.iter().map(|r| r.replace(",30,N", ",30,T")).collect::<Vec<_>>().join("\n"))
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&run(&over, &[])).unwrap();
    let so2 = &doc["factors"]["a21026"];
    assert_eq!((so2["valid_hours"].as_u64(), so2["exceeded_hours"].as_u64()), (Some(2), Some(1)));
    assert_eq!((so2["over_range_hours"].as_u64(), doc["valid_flags"].as_str()), (Some(1), Some("N,T")));
    let doc: serde_json::Value = serde_json::from_slice(&run(&over, &["--valid-flags", "N"])).unwrap();
    let so2 = &doc["factors"]["a21026"];
    assert_eq!((so2["valid_hours"].as_u64(), so2["exceeded_hours"].as_u64()), (Some(1), Some(0)));
    assert_eq!(so2["invalid_hours"]["T"], 1);
    let out = bin()
        .args(["compliance", "--profile", "cement-kiln", "--valid-flags", "T,C", "--input"])
        .arg(&over)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap refuses it");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the valid flags are among N, T, S"));

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "time,factor,value,flag\n2026-03-01 08:00:00,a21026,20,N\n2026-03-01 08:00:05,a21026,abc,N\n",
    )
    .unwrap();
    let out = bin().args(["compliance", "--profile", "cement-kiln", "--input"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 3: value \"abc\" is not a number"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin().args(["compliance", "--profile", "glass", "--input"]).arg(&sorted).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}
