//! The HTTP uplink against an in-process HTTP platform on loopback whose answers the test sets:
//! 2xx delivers, 5xx and dropped connections are retried, 401 keeps the data queued, a 4xx
//! rejection is narrowed down to the period the platform refuses, which alone is skipped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cems_gateway::config::Config;
use cems_gateway::live::Live;
use cems_gateway::store::Store;
use cems_gateway::store::outbox::Kind;
use cems_gateway::uplink::http::HttpLink;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::{kiln_config, outbox};

#[derive(Clone, Debug, PartialEq)]
enum Mode {
    /// 200 for every batch (with the right token when one is required).
    Accept,
    /// 503 for every batch.
    Unavailable,
    /// Read the request, then close the connection without an answer.
    Drop,
    /// 422 for any batch holding this period start (Unix ms); 200 for the others.
    RejectPeriod(i64),
}

#[derive(Debug, Clone)]
struct Request {
    authorization: Option<String>,
    idempotency_key: Option<String>,
    body: serde_json::Value,
    status: u16,
}

struct HttpPlatform {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    mode: watch::Sender<Mode>,
}

impl HttpPlatform {
    async fn start(mode: Mode, token: Option<&str>) -> HttpPlatform {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cems/records", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (mode_tx, mode_rx) = watch::channel(mode);
        let token = token.map(|t| format!("Bearer {t}"));
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (log, mode_rx, token) = (log.clone(), mode_rx.clone(), token.clone());
                tokio::spawn(async move {
                    let (rd, mut wr) = stream.into_split();
                    let mut rd = BufReader::new(rd);
                    // Requests on one keep-alive connection, one after another.
                    loop {
                        let mut headers = Vec::new();
                        loop {
                            let mut line = String::new();
                            if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            headers.push(line.trim_end().to_string());
                        }
                        let header = |name: &str| {
                            headers.iter().find_map(|h| {
                                let (k, v) = h.split_once(':')?;
                                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                            })
                        };
                        let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                        let mut body = vec![0u8; len];
                        if rd.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        let mode = mode_rx.borrow().clone();
                        let authorization = header("authorization");
                        let holds = |p: i64| {
                            body["records"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|r| r["start_ms"].as_i64() == Some(p))
                        };
                        let status = match mode {
                            _ if token.is_some() && authorization != token => 401,
                            Mode::Accept => 200,
                            Mode::Unavailable => 503,
                            Mode::Drop => 0,
                            Mode::RejectPeriod(p) if holds(p) => 422,
                            Mode::RejectPeriod(_) => 200,
                        };
                        log.lock().unwrap().push(Request {
                            authorization,
                            idempotency_key: header("idempotency-key"),
                            body,
                            status,
                        });
                        if status == 0 {
                            return;
                        }
                        let text = if status == 200 { "ok" } else { "record refused: bad value" };
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if wr.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HttpPlatform { url, requests, mode: mode_tx }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Period starts (Unix ms) of every record the platform accepted, in arrival order.
    fn delivered(&self) -> Vec<i64> {
        let mut starts = Vec::new();
        for r in self.requests().iter().filter(|r| r.status == 200) {
            for rec in r.body["records"].as_array().unwrap() {
                let s = rec["start_ms"].as_i64().unwrap();
                if starts.last() != Some(&s) {
                    starts.push(s);
                }
            }
        }
        starts
    }

    async fn wait_for(&self, what: &str, check: impl Fn(&HttpPlatform) -> bool) {
        for _ in 0..500 {
            if check(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("platform never saw {what}: {:#?}", self.requests());
    }
}

fn http_config(db: &std::path::Path, url: &str, extra: &str) -> Config {
    kiln_config(
        db,
        "HTTPTEST01",
        &format!(
            r#"[[uplink]]
name = "json"
kind = "http"
url = "{url}"
minute = false
day = false
reconnect_max_s = 1
{extra}
"#
        ),
    )
}

/// Hour records of the last `n` closed hours; returns their starts in Unix ms.
fn store_with_hours(db: &std::path::Path, n: i64) -> (Arc<Mutex<Store>>, Vec<i64>) {
    let (store, starts) = crate::support::store_with_hours(db, n);
    (store, starts.iter().map(|s| cems_gateway::time::Offset::CHINA.utc_ms(*s)).collect())
}

fn start_link(cfg: &Config, live: Arc<Live>) -> watch::Sender<bool> {
    let outbox = outbox(&cfg.storage.path);
    let link = HttpLink::new(cfg.uplinks[0].clone(), Arc::new(cfg.clone()), outbox, live).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(link.run(stop_rx));
    stop
}

#[tokio::test]
async fn batches_reach_the_platform_in_order_with_token_and_record_ids() {
    let platform = HttpPlatform::start(Mode::Accept, Some("s3cret-token")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let cfg = http_config(&db, &platform.url, "token = \"s3cret-token\"\nbatch = 2");
    let (store, starts) = store_with_hours(&db, 5);
    let live = Arc::new(Live::default());
    let _stop = start_link(&cfg, live.clone());
    platform.wait_for("5 hours", |p| p.delivered().len() >= 5).await;

    assert_eq!(platform.delivered(), starts, "every period once, oldest first");
    let requests = platform.requests();
    // batch = 2 periods of 2 factors: 3 requests carry 2 + 2 + 1 periods.
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].body["records"].as_array().unwrap().len(), 4);
    for r in &requests {
        assert_eq!(r.authorization.as_deref(), Some("Bearer s3cret-token"));
        assert_eq!(r.body["mn"], "HTTPTEST01");
        assert_eq!(r.body["level"], "hour");
        assert!(r.idempotency_key.as_deref().unwrap().starts_with("HTTPTEST01/kiln/hour/"));
    }
    let ids: Vec<String> = requests
        .iter()
        .flat_map(|r| r.body["records"].as_array().unwrap().clone())
        .map(|rec| rec["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 10, "one id per record: {ids:?}");
    assert_eq!(ids[0], format!("HTTPTEST01/kiln/hour/{}/a19001", starts[0]));
    let first = &requests[0].body["records"][1];
    assert_eq!(first["factor"], "a21026");
    assert_eq!(first["avg"], 10.0);
    assert_eq!(first["flag"], "N");

    // The cursor is durable: a fresh link on the same store sends nothing again.
    platform
        .wait_for("the status", |_| {
            live.links().get("json").is_some_and(|s| s.queue.backlog(Kind::Hour) == 0)
        })
        .await;
    let cursor = store.lock().unwrap().cursor("json", Kind::Hour).unwrap();
    assert_eq!(cursor, Some(starts[4]));
    let status = &live.links()["json"];
    assert_eq!((status.frames_sent, status.frames_acked, status.rejected), (3, 3, 0));
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried_until_the_platform_takes_the_data() {
    let platform = HttpPlatform::start(Mode::Unavailable, None).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let cfg = http_config(&db, &platform.url, "");
    let (store, starts) = store_with_hours(&db, 3);
    let live = Arc::new(Live::default());
    let _stop = start_link(&cfg, live.clone());
    platform.wait_for("two 503 answers", |p| p.requests().len() >= 2).await;
    assert!(platform.delivered().is_empty());
    assert_eq!(
        store.lock().unwrap().cursor("json", Kind::Hour).unwrap(),
        None,
        "nothing leaves the queue on 5xx"
    );
    let error = live.links()["json"].last_error.clone().unwrap();
    assert!(error.contains("503"), "{error}");

    platform.mode.send(Mode::Drop).unwrap();
    let before = platform.requests().len();
    platform.wait_for("a dropped request", |p| p.requests().len() > before).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(platform.delivered().is_empty());

    platform.mode.send(Mode::Accept).unwrap();
    platform.wait_for("the 3 hours", |p| p.delivered().len() >= 3).await;
    assert_eq!(platform.delivered(), starts);
    // The platform logs the batch before its answer reaches the link, which then moves the cursor.
    let cursor = || store.lock().unwrap().cursor("json", Kind::Hour).unwrap();
    platform.wait_for("the cursor on the last hour", |_| cursor() == Some(starts[2])).await;
    assert_eq!(cursor(), Some(starts[2]));
}

#[tokio::test]
async fn a_rejected_period_is_narrowed_down_recorded_and_skipped_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let (store, starts) = store_with_hours(&db, 6);
    let bad = starts[3];
    let platform = HttpPlatform::start(Mode::RejectPeriod(bad), None).await;
    let cfg = http_config(&db, &platform.url, "batch = 6");
    let live = Arc::new(Live::default());
    let _stop = start_link(&cfg, live.clone());
    platform.wait_for("the 5 good hours", |p| p.delivered().len() >= 5).await;
    platform
        .wait_for("the status", |_| {
            live.links().get("json").is_some_and(|s| s.queue.backlog(Kind::Hour) == 0)
        })
        .await;

    let good: Vec<i64> = starts.iter().copied().filter(|s| *s != bad).collect();
    assert_eq!(platform.delivered(), good, "all but the refused period, in order");
    let rejected_alone = platform.requests().iter().any(|r| {
        let recs = r.body["records"].as_array().unwrap();
        r.status == 422 && recs.iter().all(|rec| rec["start_ms"].as_i64() == Some(bad))
    });
    assert!(rejected_alone, "the refused period was tried alone before it was skipped");
    let status = &live.links()["json"];
    assert_eq!(status.rejected, 1);
    assert_eq!(store.lock().unwrap().cursor("json", Kind::Hour).unwrap(), Some(starts[5]));
    let note = store.lock().unwrap().setting("json", "last_rejection").unwrap().unwrap();
    assert!(note.contains("HTTP 422") && note.contains("record refused"), "{note}");
    // Rejections are not retried forever: the refused period was sent a bounded number of times.
    let tries = platform
        .requests()
        .iter()
        .filter(|r| r.body["records"].as_array().unwrap().iter().any(|x| x["start_ms"].as_i64() == Some(bad)))
        .count();
    assert!(tries <= 4, "{tries} attempts");
}

#[tokio::test]
async fn a_wrong_token_keeps_every_record_queued_and_says_so() {
    let platform = HttpPlatform::start(Mode::Accept, Some("right")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let (store, _) = store_with_hours(&db, 2);
    let cfg = http_config(&db, &platform.url, "token = \"wrong\"");
    let live = Arc::new(Live::default());
    let stop = start_link(&cfg, live.clone());
    platform.wait_for("two refused attempts", |p| p.requests().len() >= 2).await;
    stop.send(true).unwrap();
    assert!(platform.requests().iter().all(|r| r.status == 401));
    assert_eq!(store.lock().unwrap().cursor("json", Kind::Hour).unwrap(), None);
    let status = &live.links()["json"];
    assert!(status.last_error.as_deref().unwrap().contains("401"), "{status:?}");
    assert_eq!(status.rejected, 0, "an authentication failure is not a rejection of the data");
    assert_eq!(status.queue.backlog(Kind::Hour), 2);

    // Fixed token (as after a SIGHUP reload): everything goes.
    let cfg = http_config(&db, &platform.url, "token = \"right\"");
    let _stop = start_link(&cfg, live.clone());
    platform.wait_for("the 2 hours", |p| p.delivered().len() >= 2).await;
}
