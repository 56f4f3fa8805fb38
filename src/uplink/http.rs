//! Links to platforms that take JSON over HTTP: batches of minute, hour and day records POSTed
//! with a bearer token (reqwest, rustls).
//!
//! Delivery is the same as over HJ 212: a durable cursor per kind; a batch leaves the queue
//! only on a 2xx answer. Every record carries an idempotency key (`id`), so a batch sent again
//! after a crash or a lost answer can be recognised by the platform.
//!
//! What the platform's answer means:
//! - 2xx: delivered.
//! - 408, 425, 429, 5xx, no answer, network errors: transient; the batch is sent again with
//!   capped exponential backoff.
//! - 401, 403, 404, 405, 407: the link's configuration is wrong (token, URL); nothing is
//!   dropped, the link waits `reconnect_max` between attempts and says why on the status page.
//! - Any other 4xx (400, 409, 413, 422, …): the platform rejects the data. The batch is halved
//!   until the rejected period stands alone; that period is then logged, counted and recorded
//!   in the store as a rejection, and the queue moves on, so one bad period does not block the
//!   link forever.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::sleep;

use super::{LinkError, LinkStatus, queue_spec, stopped};
use crate::compute::{Level, Record};
use crate::config::{Config, Transport, Uplink};
use crate::factors;
use crate::live::Live;
use crate::model::now_ms;
use crate::store::audit::AuditKind;
use crate::store::outbox::{Item, Outbox, OutboxError, Payload, Queue};

/// How often the queue is looked at when it is empty.
const QUEUE_POLL: Duration = Duration::from_secs(1);
/// Longest part of a platform's error answer kept for the log and the status page.
const BODY_EXCERPT: usize = 200;

/// What one POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again later with backoff.
    Transient(String),
    /// The link's own settings are wrong: wait long, drop nothing.
    Refused(String),
    /// The platform refuses this data.
    Rejected(String),
}

/// The meaning of an HTTP status for a batch (see the module documentation).
pub fn classify(status: u16) -> fn(String) -> Outcome {
    match status {
        200..=299 => |_| Outcome::Delivered,
        401 | 403 | 404 | 405 | 407 => Outcome::Refused,
        408 | 425 | 429 => Outcome::Transient,
        400..=499 => Outcome::Rejected,
        _ => Outcome::Transient,
    }
}

/// One record as the platform receives it. Values are in the factor's unit of HJ 212-2017
/// table B.2 (`unit`: mg/m3 for pollutants, m3/s for the flow a00000, dry at standard state),
/// rounded to the decimals of its default data type, as in the HJ 212 frames.
#[derive(Debug, Serialize)]
pub struct JsonRecord<'a> {
    /// Idempotency key: the same period and factor always get the same id.
    pub id: String,
    pub level: &'static str,
    /// Local period start, RFC 3339 with the plant's offset.
    pub start: String,
    pub start_ms: i64,
    pub factor: &'a str,
    /// Unit of `avg`, `min`, `max` and the converted values.
    pub unit: &'static str,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Converted (reference-oxygen) average, minimum and maximum, where they apply.
    pub zs_avg: Option<f64>,
    pub zs_min: Option<f64>,
    pub zs_max: Option<f64>,
    /// Amount of the period: emission (kg) where flow is measured, volume (m3) for the flow.
    pub cou: Option<f64>,
    /// Unit of `cou`.
    pub cou_unit: Option<&'static str>,
    pub flag: String,
    /// Whether the period is valid (an over-range `T` period can be).
    pub valid: bool,
    pub n_valid: u32,
    pub n_total: u32,
    pub limit: Option<f64>,
    pub exceeded: bool,
}

/// The body of one POST.
#[derive(Debug, Serialize)]
pub struct Batch<'a> {
    pub mn: &'a str,
    pub outlet: &'a str,
    pub level: &'static str,
    pub records: Vec<JsonRecord<'a>>,
}

fn rfc3339(local_s: i64, offset_s: i64) -> String {
    let offset = time::UtcOffset::from_whole_seconds(offset_s as i32).unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::from_unix_timestamp(local_s - offset_s)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The JSON body for `records` (all of one level), pure.
pub fn batch<'a>(
    mn: &'a str,
    outlet: &'a str,
    level: Level,
    records: &'a [Record],
    offset_s: i64,
) -> Batch<'a> {
    let name = level.name();
    Batch {
        mn,
        outlet,
        level: name,
        records: records
            .iter()
            .map(|r| {
                let start_ms = (r.start - offset_s) * 1000;
                let f = r.factor.as_str();
                let value = |v: Option<f64>| v.map(|v| factors::round(v, factors::decimals(f)));
                JsonRecord {
                    id: format!("{mn}/{outlet}/{name}/{start_ms}/{}", r.factor),
                    level: name,
                    start: rfc3339(r.start, offset_s),
                    start_ms,
                    factor: f,
                    unit: factors::unit(f),
                    avg: value(r.stat.avg),
                    min: value(r.stat.min),
                    max: value(r.stat.max),
                    zs_avg: value(r.stat.zs_avg),
                    zs_min: value(r.stat.zs_min),
                    zs_max: value(r.stat.zs_max),
                    cou: r.stat.cou.map(|v| factors::round(v, factors::cou_decimals(f))),
                    cou_unit: factors::cou_unit(f),
                    flag: r.stat.flag.to_string(),
                    valid: r.stat.valid,
                    n_valid: r.stat.n_valid,
                    n_total: r.stat.n_total,
                    limit: r.limit,
                    exceeded: r.exceeded,
                }
            })
            .collect(),
    }
}

/// One HTTP link's task.
pub struct HttpLink {
    cfg: Uplink,
    config: Arc<Config>,
    url: String,
    token: Option<String>,
    batch: u32,
    /// Current batch size: halved while isolating a rejected period, grown back after.
    limit: u32,
    outbox: Outbox,
    live: Arc<Live>,
    client: reqwest::Client,
    offset_s: i64,
    status: LinkStatus,
}

impl HttpLink {
    pub fn new(
        cfg: Uplink,
        config: Arc<Config>,
        outbox: Outbox,
        live: Arc<Live>,
    ) -> Result<HttpLink, LinkError> {
        let Transport::Http { url, token, batch } = cfg.transport.clone() else {
            return Err(LinkError::Connect("not an HTTP link".into()));
        };
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.overtime)
            .timeout(cfg.overtime)
            .tcp_keepalive(Duration::from_secs(20))
            .user_agent(concat!("cems-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LinkError::Connect(e.to_string()))?;
        Ok(HttpLink {
            url,
            token,
            batch,
            limit: batch,
            outbox,
            live,
            client,
            offset_s: config.site.utc_offset_s,
            status: LinkStatus::default(),
            config,
            cfg,
        })
    }

    /// The gateway's one clock (see `time` in the README: a platform cannot move it).
    fn now(&self) -> i64 {
        now_ms()
    }

    /// POSTs the records of `items` (all of one kind) and says what came of it.
    async fn post(&self, level: Level, items: &[Item]) -> Outcome {
        let (Some(first), Some(last)) = (items.first(), items.last()) else {
            return Outcome::Delivered;
        };
        let records: Vec<Record> = items
            .iter()
            .flat_map(|i| match &i.payload {
                Payload::Records(r) => r.clone(),
                Payload::RunTime(_) => Vec::new(),
            })
            .collect();
        let body = batch(&self.cfg.mn, &self.cfg.outlet, level, &records, self.offset_s);
        let mut request = self
            .client
            .post(&self.url)
            .header(
                "Idempotency-Key",
                format!(
                    "{}/{}/{}/{}-{}",
                    self.cfg.mn, self.cfg.outlet, body.level, first.start_ms, last.start_ms
                ),
            )
            .json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Err(e) => Outcome::Transient(describe(&e)),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = if resp.status().is_success() {
                    String::new()
                } else {
                    let body = tokio::time::timeout(self.cfg.overtime, resp.text())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default();
                    let excerpt: String = body.chars().take(BODY_EXCERPT).collect();
                    format!("HTTP {status}: {}", excerpt.trim())
                };
                classify(status)(text)
            }
        }
    }

    async fn publish(&mut self, queue: &Queue) {
        if let Ok(summary) = queue.summary(self.now()).await {
            self.status.queue = summary;
        }
        self.live.set_link(&self.cfg.name, self.status.clone());
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(uplink = %self.cfg.name, url = %self.url, "HTTP uplink started.");
        let queue = match self.prepare().await {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(uplink = %self.cfg.name, error = %e, "HTTP uplink cannot start; its data stays queued.");
                self.status.last_error = Some(e.to_string());
                self.live.set_link(&self.cfg.name, self.status.clone());
                return;
            }
        };
        let mut backoff = Duration::from_secs(1);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.step(&queue).await {
                Ok(None) => {
                    backoff = Duration::from_secs(1);
                    Duration::ZERO
                }
                Ok(Some(Idle)) => QUEUE_POLL,
                Err(Wait::Retry) => {
                    let w = backoff;
                    backoff = (backoff * 2).min(self.cfg.reconnect_max);
                    w
                }
                Err(Wait::Long) => self.cfg.reconnect_max,
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = sleep(wait) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }

    async fn prepare(&mut self) -> Result<Queue, OutboxError> {
        // Minute records go one by one over HTTP, whatever the HJ 212 minute interval.
        let spec = queue_spec(&self.cfg, &self.config, false, 1);
        self.outbox.open(spec, self.now()).await
    }

    /// Sends one batch: up to `limit` periods of the kind whose oldest unsent period ends
    /// first. `Ok(None)`: something was delivered or skipped, go on at once.
    async fn step(&mut self, queue: &Queue) -> Result<Option<Idle>, Wait> {
        // Nothing is pipelined: what the last attempt handed out is offered again.
        queue.rewind().await.map_err(|e| self.outbox_failed(e))?;
        let items =
            queue.next(self.limit as usize, self.now(), true).await.map_err(|e| self.outbox_failed(e))?;
        let Some(level) = items.first().and_then(|i| i.kind.level()) else {
            self.status.connected = true;
            self.publish(queue).await;
            return Ok(Some(Idle));
        };
        let outcome = self.post(level, &items).await;
        self.status.frames_sent += 1;
        self.status.frames_asked += 1;
        let result = match outcome {
            Outcome::Delivered => {
                for i in &items {
                    queue.ack(i.kind, i.start_ms).await.map_err(|e| self.outbox_failed(e))?;
                }
                queue.flush().await.map_err(|e| self.outbox_failed(e))?;
                self.status.frames_acked += 1;
                self.status.last_ack_ms = Some(now_ms());
                self.status.connected = true;
                self.status.last_error = None;
                self.limit = (self.limit * 2).min(self.batch);
                Ok(None)
            }
            Outcome::Transient(why) => {
                tracing::warn!(uplink = %self.cfg.name, error = %why, "Platform unavailable; data stays queued.");
                self.status.connected = false;
                self.status.last_error = Some(why);
                Err(Wait::Retry)
            }
            Outcome::Refused(why) => {
                tracing::error!(uplink = %self.cfg.name, error = %why, "Platform refuses this link (check url and token); data stays queued.");
                self.status.connected = false;
                self.status.last_error = Some(why);
                Err(Wait::Long)
            }
            Outcome::Rejected(why) if items.len() > 1 => {
                // Narrow it down: the next attempts send half as many periods.
                self.limit = (items.len() as u32 / 2).max(1);
                tracing::warn!(uplink = %self.cfg.name, error = %why, periods = items.len(), "Platform rejected a batch; retrying in smaller batches to find the period it refuses.");
                Ok(None)
            }
            Outcome::Rejected(why) => {
                let item = &items[0];
                let when = crate::report::format_local(item.start_ms / 1000 + self.offset_s);
                let level = level.name();
                tracing::error!(uplink = %self.cfg.name, error = %why, level, period = %when, "Platform rejected a period; it is recorded as rejected and not sent again.");
                self.status.rejected += 1;
                self.status.last_error = Some(format!("rejected {level} {when}: {why}"));
                let note = format!("{level} {when} {why}");
                let recorded = async {
                    self.outbox.save(&self.cfg.name, "last_rejection", &note).await?;
                    self.outbox
                        .audit(AuditKind::Platform, &self.cfg.name, &format!("rejected {note}"))
                        .await?;
                    queue.ack(item.kind, item.start_ms).await?;
                    queue.flush().await
                }
                .await;
                recorded.map_err(|e| self.outbox_failed(e))?;
                Ok(None)
            }
        };
        self.publish(queue).await;
        result
    }

    fn outbox_failed(&mut self, e: OutboxError) -> Wait {
        tracing::error!(uplink = %self.cfg.name, error = %e, "Store unavailable to the HTTP uplink.");
        self.status.last_error = Some(e.to_string());
        Wait::Retry
    }
}

/// Nothing to send.
struct Idle;

/// How long to wait before the next attempt.
enum Wait {
    Retry,
    Long,
}

/// A reqwest error in a line, with its cause (timeouts and refused connections say so).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() { kind.to_string() } else { format!("{kind}: {cause}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::stats::Stat;
    use crate::model::Flag;

    #[test]
    fn statuses_are_classified_by_what_the_link_should_do() {
        let of = |s: u16| classify(s)("x".into());
        assert_eq!(of(200), Outcome::Delivered);
        assert_eq!(of(204), Outcome::Delivered);
        assert_eq!(of(500), Outcome::Transient("x".into()));
        assert_eq!(of(503), Outcome::Transient("x".into()));
        assert_eq!(of(429), Outcome::Transient("x".into()));
        assert_eq!(of(401), Outcome::Refused("x".into()));
        assert_eq!(of(404), Outcome::Refused("x".into()));
        assert_eq!(of(400), Outcome::Rejected("x".into()));
        assert_eq!(of(422), Outcome::Rejected("x".into()));
        assert_eq!(of(413), Outcome::Rejected("x".into()));
    }

    #[test]
    fn batch_carries_a_stable_id_and_local_time_per_record() {
        let offset = 8 * 3600;
        // 2026-11-29 10:00 local = 02:00 UTC.
        let start_local = 1_795_917_600 + offset;
        let stat = |min: f64, avg: f64, max: f64, zs: Option<f64>, cou: Option<f64>| Stat {
            n_total: 60,
            n_valid: 58,
            min: Some(min),
            avg: Some(avg),
            max: Some(max),
            zs_min: zs,
            zs_avg: zs,
            zs_max: zs,
            cou,
            flag: Flag::N,
            valid: true,
        };
        let rec = |factor: &str, stat: Stat| Record {
            level: Level::Hour,
            start: start_local,
            factor: factor.into(),
            stat,
            limit: Some(35.0),
            exceeded: false,
        };
        let records = [
            // SO2 N5.2: 12.5049 → 12.5; 14.0 converted.
            rec("a21026", stat(1.0, 12.5049, 20.0, Some(14.0), None)),
            // Flow N6.1 in m³/s: 116.93497 → 116.9; the hour's volume 420,965.892 m³ → 420965.9.
            rec("a00000", stat(110.0, 116.93497, 120.0, None, Some(420_965.892))),
        ];
        let b = batch("MN1", "kiln", Level::Hour, &records, offset);
        let json = serde_json::to_value(&b).expect("serializes");
        let r = &json["records"][0];
        assert_eq!(r["id"], "MN1/kiln/hour/1795917600000/a21026");
        assert_eq!(r["start"], "2026-11-29T10:00:00+08:00");
        assert_eq!((&r["unit"], &r["avg"], &r["zs_avg"]), (&"mg/m3".into(), &12.5.into(), &14.0.into()));
        assert_eq!((&r["flag"], &r["valid"]), (&"N".into(), &true.into()));
        assert_eq!(json["level"], "hour");
        assert!(r["cou"].is_null());
        let flow = &json["records"][1];
        assert_eq!((&flow["unit"], &flow["avg"]), (&"m3/s".into(), &116.9.into()));
        assert_eq!((&flow["cou_unit"], &flow["cou"]), (&"m3".into(), &420_965.9.into()));
    }
}
