//! Operators' marks through the status server and the `mark` command: only the operator token
//! writes (the officers' token gets 403, none 401); each bad input is refused with its message
//! and changes nothing; every add, edit and end is in the audit chain.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cems_gateway::config::Config;
use cems_gateway::live::Live;
use cems_gateway::model::now_ms;
use cems_gateway::store::Store;
use cems_gateway::web::{Context, Server};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OFFICER: &str = "officer-token-1";
const OPERATOR: &str = "operator-token-1";

fn config(db: &Path, window_hours: u32) -> Config {
    crate::support::config(&config_text(db, window_hours))
}

fn config_text(db: &Path, window_hours: u32) -> String {
    format!(
        r#"
[site]
mn = "MARKS0001"
pw = "123456"
[storage]
path = "{}"
[web]
listen = "127.0.0.1:0"
token = "{OFFICER}"
operator_token = "{OPERATOR}"
[marks]
window_hours = {window_hours}
[[bus]]
name = "b"
kind = "tcp"
address = "127.0.0.1:1"
[[outlet]]
name = "kiln"
[[device]]
name = "gas"
bus = "b"
slave = 1
outlet = "kiln"
  [[device.point]]
  factor = "a21026"
  address = 0
  type = "f32"
"#,
        db.display()
    )
}

/// One HTTP/1.0 request with a JSON body; (status, body).
async fn call(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut reply)).await.unwrap().unwrap();
    let text = String::from_utf8(reply).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_string())
}

/// Local plant time `hours` ago (+8).
fn ago(hours: f64) -> String {
    let t = now_ms() / 1000 - (hours * 3600.0) as i64 + 8 * 3600;
    cems_gateway::web::status::fmt_local(t)
}

#[tokio::test]
async fn only_the_operator_token_writes_and_bad_marks_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let cfg = config(&db, 48);
    drop(Store::open(&db).unwrap());
    let ctx = Context {
        config: Arc::new(cfg.clone()),
        live: Arc::new(Live::default()),
        progress: None,
        started_ms: now_ms(),
    };
    let server = Server::spawn(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), ctx).unwrap();
    let at = server.address;
    let add = |body: Value| body.to_string();
    let good = add(
        json!({"outlet": "kiln", "kind": "maintenance", "start": ago(5.0), "end": ago(3.0), "reason": "探头清洗 probe cleaning", "who": "王工"}),
    );

    // Who may write.
    let (code, body) = call(at, "POST", "/api/v1/operator/marks", Some(OFFICER), &good).await;
    assert_eq!(
        (code, body.trim()),
        (403, "the officers' token only reads: marks are added, edited and ended with the operator token")
    );
    let (code, _) = call(at, "POST", "/api/v1/operator/marks", None, &good).await;
    assert_eq!(code, 401);
    let (code, _) = call(at, "POST", &format!("/api/v1/operator/marks?token={OPERATOR}"), None, &good).await;
    assert_eq!(code, 401, "a token in the URL is not accepted for writes");
    // The officers' routes stay read-only, whoever asks; the operator routes are the only
    // non-GET routes (the invariant of ARCHITECTURE.md).
    for path in [
        "/",
        "/live",
        "/ready",
        "/metrics",
        "/api/v1/status",
        "/api/v1/outlets/kiln/records",
        "/api/v1/outlets/kiln/events",
        "/api/v1/export",
        "/api/v1/marks",
    ] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let (code, _) = call(at, method, path, Some(OPERATOR), &good).await;
            assert_eq!(code, 405, "{method} {path}");
        }
    }
    for path in ["/api/v1/operator/marks", "/api/v1/operator/marks/1/end", "/api/v1/operator/marks/1/edit"] {
        let (code, _) = call(at, "GET", path, Some(OPERATOR), "").await;
        assert_eq!(code, 405, "GET {path}");
    }
    let (code, body) = call(at, "POST", "/api/v1/operator/marks", Some(OPERATOR), &good).await;
    assert_eq!(code, 201, "{body}");
    let mark: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (mark["kind"].as_str(), mark["flag"].as_str(), mark["who"].as_str()),
        (Some("maintenance"), Some("M"), Some("王工"))
    );
    let id = mark["id"].as_i64().unwrap();

    // Each bad input, refused with its message; nothing changes.
    let bad = [
        (
            json!({"outlet": "kiln", "kind": "stopped", "start": ago(2.0), "end": ago(2.5), "reason": "r", "who": "w"}),
            "refused: the end (",
        ),
        (
            json!({"outlet": "kiln", "kind": "holiday", "start": ago(2.0), "reason": "r", "who": "w"}),
            "kind: unknown kind \"holiday\": one of stopped, start-up, shutdown, fault, maintenance, calibration",
        ),
        (
            json!({"outlet": "kiln", "kind": "stopped", "start": ago(60.0), "end": ago(59.0), "reason": "r", "who": "w"}),
            "is outside the window: marks may change only the last 48 hours",
        ),
        (
            json!({"outlet": "kiln", "kind": "fault", "start": ago(4.0), "end": ago(1.0), "reason": "r", "who": "w"}),
            &format!("refused: overlaps mark {id} (maintenance, "),
        ),
        (
            json!({"outlet": "stack", "kind": "fault", "start": ago(1.0), "reason": "r", "who": "w"}),
            "outlet: no outlet named \"stack\"",
        ),
        (
            json!({"outlet": "kiln", "kind": "fault", "start": "yesterday", "reason": "r", "who": "w"}),
            "start: must be a local time",
        ),
        (
            json!({"outlet": "kiln", "kind": "fault", "start": ago(1.0), "reason": " ", "who": "w"}),
            "refused: reason is required",
        ),
        (
            json!({"outlet": "kiln", "kind": "fault", "start": ago(1.0), "reason": "r", "who": "w", "extra": 1}),
            "body: unknown field `extra`",
        ),
    ];
    for (body, message) in &bad {
        let (code, reply) =
            call(at, "POST", "/api/v1/operator/marks", Some(OPERATOR), &body.to_string()).await;
        assert_eq!(code, 400, "{body}: {reply}");
        assert!(reply.contains(message), "{body}: {reply}");
    }
    let (code, reply) = call(at, "POST", "/api/v1/operator/marks", Some(OPERATOR), "{not json").await;
    assert!(code == 400 && reply.starts_with("body: "), "{code} {reply}");
    let (code, reply) =
        call(at, "POST", "/api/v1/operator/marks/999/end", Some(OPERATOR), r#"{"who": "w"}"#).await;
    assert_eq!((code, reply.trim()), (404, "no mark 999"));
    let (code, list) = call(at, "GET", "/api/v1/marks", Some(OFFICER), "").await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&list).unwrap().as_array().unwrap().len(),
        1,
        "nothing else stored: {list}"
    );

    // An open stop, then its end; an edit of the first mark's reason.
    let stop = add(
        json!({"outlet": "kiln", "kind": "stopped", "start": ago(2.0), "reason": "kiln stop", "who": "Li"}),
    );
    let (code, body) = call(at, "POST", "/api/v1/operator/marks", Some(OPERATOR), &stop).await;
    assert_eq!(code, 201, "{body}");
    let stop_id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_i64().unwrap();
    let (code, body) = call(
        at,
        "POST",
        &format!("/api/v1/operator/marks/{stop_id}/end"),
        Some(OPERATOR),
        r#"{"who": "Li"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["end"].is_string());
    let (code, body) = call(
        at,
        "POST",
        &format!("/api/v1/operator/marks/{stop_id}/end"),
        Some(OPERATOR),
        r#"{"who": "Li"}"#,
    )
    .await;
    assert_eq!((code, body.trim().to_string()), (400, format!("refused: mark {stop_id} has already ended")));
    let (code, body) = call(
        at,
        "POST",
        &format!("/api/v1/operator/marks/{id}/edit"),
        Some(OPERATOR),
        r#"{"reason": "probe cleaning, log 42", "who": "Li"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // The marks in the CSV export, as officers download them.
    let (from, today) = (&ago(30.0)[..10], &ago(0.0)[..10]);
    let (code, csv) =
        call(at, "GET", &format!("/api/v1/export?from={from}&to={today}&level=marks"), Some(OFFICER), "")
            .await;
    assert_eq!(code, 200, "{csv}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,outlet,kind,flag,start,end,reason,who");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{id},kiln,maintenance,M,"))
            && l.ends_with(",\"probe cleaning, log 42\",王工")),
        "{csv}"
    );
    assert!(lines.iter().any(|l| l.starts_with(&format!("{stop_id},kiln,stopped,F,"))), "{csv}");
    server.stop().await;

    let store = Store::open_read_only(&db).unwrap();
    let (entries, _) = store.log_entries(0, i64::MAX, 100).unwrap();
    let marks: Vec<&str> =
        entries.iter().filter(|e| e.kind == "mark").map(|e| e.detail.lines().next().unwrap()).collect();
    assert_eq!(
        marks,
        ["add by 王工 via api", "add by Li via api", "end by Li via api", "edit by Li via api"]
    );
    let chain = store.verify_chain(None, None).unwrap();
    assert!(chain.verified, "{:?}", chain.first_broken);
}

#[test]
fn the_mark_command_adds_lists_ends_and_refuses_with_exit_65() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(&cfg_path, config_text(&db, 48)).unwrap();
    drop(Store::open(&db).unwrap());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cems-gateway"))
            .arg("mark")
            .args(args)
            .arg("--config")
            .arg(&cfg_path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&[
        "add",
        "--kind",
        "calibration",
        "--start",
        &ago(1.0),
        "--reason",
        "span check",
        "--who",
        "Zhao",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("added #1 kiln calibration (校准 C) ")
            && out.contains(" to open by Zhao: span check"),
        "{out}"
    );
    let (code, _, err) = run(&["add", "--kind", "nap", "--start", &ago(1.0), "--reason", "r", "--who", "w"]);
    assert_eq!(code, Some(65));
    assert!(err.contains("--kind: unknown kind \"nap\""), "{err}");
    let (code, _, err) =
        run(&["add", "--kind", "fault", "--start", &ago(0.5), "--reason", "r", "--who", "w"]);
    assert_eq!(code, Some(65));
    assert!(
        err.starts_with("refused: overlaps mark 1 (calibration, ") && err.contains("nothing was changed"),
        "{err}"
    );
    let (code, out, err) = run(&["end", "--id", "1", "--who", "Zhao"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ended #1"), "{out}");
    let (code, out, _) = run(&["list"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, out, _) = run(&["list", "--format", "json"]);
    assert_eq!(code, Some(0));
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["kind"], "calibration");
    assert!(rows[0]["end"].is_string());
}

/// A stop marked late, within the window: the statistics worker recomputes the hours it covers
/// (flag F, no longer exceeded), the month's rate changes accordingly, the records' new content
/// is audited, and a platform that already acknowledged those hours gets them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_mark_flags_its_hours_changes_the_rate_and_reaches_the_platform_again() {
    use cems_gateway::compute::evaluate::summarize_hours;
    use cems_gateway::compute::marks::{Kind, Mark, Rules};
    use cems_gateway::compute::{Level, Record};
    use cems_gateway::figures::{Figures, evaluate_range};
    use cems_gateway::model::{Flag, Sample};
    use cems_gateway::store::outbox::Kind as QueueKind;

    let platform = crate::support::platform::Platform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("late.db");
    let text = config_text(&db, 72).replace(
        "[[outlet]]\nname = \"kiln\"",
        "[[outlet]]\nname = \"kiln\"\nprofile = \"custom\"\nlimits = { a21026 = 35.0 }",
    ) + &format!(
        "[[uplink]]\nname = \"province\"\naddress = \"{}\"\nrealtime = false\nminute = false\nday = false\n",
        platform.address
    );
    let cfg = crate::support::config(&text);
    let offset = cfg.site.utc_offset_s;
    let now_local = now_ms() / 1000 + offset;
    let this_hour = now_local - now_local.rem_euclid(3600);
    let hours: Vec<i64> = (1..=5).rev().map(|k| this_hour - k * 3600).collect();
    let ms = |local: i64| (local - offset) * 1000;
    {
        // Five closed hours of SO2 every 5 s: 20, but 50 in the second and third (exceeded).
        let (mut store, _) = Store::open(&db).unwrap();
        let mut batch = Vec::new();
        for t in (hours[0]..this_hour).step_by(5) {
            let value = if (hours[1]..hours[3]).contains(&t) { 50.0 } else { 20.0 };
            batch.push(Sample {
                ts_ms: ms(t),
                device: Arc::from("gas"),
                factor: Arc::from("a21026"),
                value: Some(value),
                flag: Flag::N,
            });
        }
        store.insert(&batch).unwrap();
        let outlet = cfg.outlet("kiln").unwrap();
        let mut minutes = Vec::new();
        let (outcome, _) =
            evaluate_range(&store, &cfg, outlet, hours[0], this_hour, |m| minutes.push(m.clone())).unwrap();
        store.upsert_records("kiln", &minutes, offset).unwrap();
        store.upsert_records("kiln", &outcome.hours, offset).unwrap();
        // The platform acknowledged every hour already.
        store.set_cursor("province", QueueKind::Hour, ms(hours[4])).unwrap();
    }
    let spec = cfg.outlet_spec(cfg.outlet("kiln").unwrap());
    let month = |store: &Store| {
        let hours: Vec<Record> =
            store.records("kiln", Level::Hour, ms(hours[0]), ms(this_hour), offset).unwrap();
        let flags: Vec<(char, bool)> = hours.iter().map(|h| (h.stat.flag.as_char(), h.exceeded)).collect();
        let out = summarize_hours(hours, &spec.limits);
        let so2 = out.factors["a21026"].clone();
        (flags, so2.valid_hours, so2.exceeded_hours, so2.stopped_hours, so2.rate())
    };
    let reader = Store::open_secondary(&db).unwrap();
    let before = month(&reader);
    assert_eq!(before.0, [('N', false), ('N', true), ('N', true), ('N', false), ('N', false)]);
    assert_eq!((before.1, before.2, before.4), (5, 2, Some(0.6)), "3 of 5 valid hours compliant");

    // The kiln was in fact stopped: marked the next morning, as the rules allow.
    let fmt = |ms: i64| ms.to_string();
    let rules = Rules { now_ms: now_ms(), window_ms: 72 * 3_600_000, fmt: &fmt };
    let mark = Mark {
        id: 0,
        outlet: "kiln".into(),
        kind: Kind::Stopped,
        start_ms: ms(hours[1]),
        end_ms: Some(ms(hours[3])),
        reason: "kiln stopped for relining".into(),
        who: "Wang".into(),
    };
    let seq_before = reader.chain_head().unwrap().unwrap().0;
    Store::open_secondary(&db).unwrap().add_mark(mark, rules, "cli").unwrap();
    let mut worker =
        Figures::new(Arc::new(cfg.clone()), Store::open_secondary(&db).unwrap(), Arc::new(Live::default()));
    worker.run_once(now_local).unwrap();

    let after = month(&reader);
    assert_eq!(
        after.0,
        [('N', false), ('F', false), ('F', false), ('N', false), ('N', false)],
        "the marked hours are F"
    );
    assert_eq!(
        (after.1, after.2, after.3, after.4),
        (3, 0, 2, Some(1.0)),
        "stopped hours leave the denominator"
    );
    // The new content of the two hours is chained after the mark; the chain verifies.
    let chain = reader.verify_chain(None, None).unwrap();
    assert!(chain.verified, "{:?}", chain.first_broken);
    let sql = rusqlite::Connection::open(&db).unwrap();
    let newer: Vec<String> = sql
        .prepare("SELECT subject FROM audit WHERE kind = 'record' AND seq > ?1")
        .unwrap()
        .query_map([seq_before], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for h in &hours[1..3] {
        let subject = cems_gateway::store::audit::record_subject(1, ms(*h), "kiln");
        assert!(newer.contains(&subject), "{subject} re-chained: {newer:?}");
    }
    assert!(
        !newer.contains(&cems_gateway::store::audit::record_subject(1, ms(hours[0]), "kiln")),
        "an unmarked hour is not rewritten"
    );
    // A second round changes nothing more.
    worker.run_once(now_local).unwrap();
    assert_eq!(month(&reader), after);

    // The platform had those hours: they go again, flagged F.
    let config = Arc::new(cfg.clone());
    let link = cems_gateway::uplink::Link::new(
        config.uplinks[0].clone(),
        config.clone(),
        crate::support::outbox(&db),
        Arc::new(Live::default()),
    )
    .unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(link.run(stop_rx));
    let stamp = |local: i64| cems_gateway::web::status::fmt_local(local).replace(['-', ' ', ':'], "");
    let all = platform
        .wait_for("the corrected hours", Duration::from_secs(20), |all| {
            hours[1..3].iter().all(|h| {
                all.iter().any(|p| p.cn == "2061" && p.cp.get("DataTime") == Some(stamp(*h).as_str()))
            })
        })
        .await;
    let again: Vec<&cems_gateway::hj212::Packet> = all.iter().filter(|p| p.cn == "2061").collect();
    assert_eq!(again.len(), 2, "only the corrected hours: {again:?}");
    assert!(again.iter().all(|p| p.cp.get("a21026-Flag") == Some("F")), "{again:?}");
    stop.send(true).unwrap();
    task.await.unwrap();
}
