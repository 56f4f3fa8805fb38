//! The local status server for enforcement officers: an HTML page, a JSON API, CSV export,
//! `/live`, `/ready` and Prometheus `/metrics`, all read-only (GET and HEAD); and the operators'
//! marks ([`marks`]): the only routes that change anything (POST), behind a token of their own.
//!
//! - [`status`]: the snapshot every view is drawn from (live values, store records), and its DTOs.
//! - [`page`], [`svg`], [`metrics`]: the HTML page, the trend charts, the Prometheus text; pure.
//! - [`evidence`]: the analyzers' key parameters and the operators' marks, for the page and API.
//! - [`export`]: CSV rows streamed from the store, shared with `cems-gateway export`.
//! - [`marks`]: the operators' marks: added, edited and ended with the operator token; listed.
//! - [`client`]: `cems-gateway status`, a minimal HTTP GET and the terminal summary.
//! - `server`: the accept loop with its [`Limits`], [`Server`] to start and stop it.
//!
//! Every handler that reads SQLite does it on a read connection of its own (never the
//! writer's), on a blocking thread. A failing server only logs: acquisition goes on.
//!
//! Bounded against clients that hold it up ([`Limits`]): a cap on connections served at once
//! (more wait in the kernel's backlog), a deadline for a request's head (a slowloris client
//! that dribbles its headers is cut; it also closes kept-alive connections left idle), a cap on
//! the head's size (431) and on a body (413; only the operator routes take one).

pub mod client;
pub mod evidence;
pub mod export;
pub mod marks;
pub mod metrics;
pub mod page;
mod server;
pub mod status;
pub mod svg;

pub use server::{Limits, Server, bind_or_ephemeral};

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;

use crate::compute::Level;
use crate::compute::evaluate::period_start;
use crate::config::Config;
use crate::lifecycle::Progress;
use crate::live::Live;
use crate::model::now_ms;
use crate::store::Store;

/// What the server shows.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub live: Arc<Live>,
    /// The pipeline's heartbeats, for `/ready` (`None`: ready whenever the store can be read).
    pub progress: Option<Arc<Progress>>,
    /// Unix ms when the gateway started.
    pub started_ms: i64,
}

/// Read connections kept open between requests.
const KEPT_READERS: usize = 2;
/// Bytes per chunk of a streamed export, and chunks in flight.
const CHUNK: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

struct Shared {
    ctx: Context,
    cache: status::Cache,
    readers: Mutex<Vec<Store>>,
}

impl Shared {
    /// A read connection: a kept one, or a new one.
    fn take_reader(&self) -> Result<Store, String> {
        if let Some(s) = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(s);
        }
        Store::open_secondary(&self.ctx.config.storage.path).map_err(|e| e.to_string())
    }

    fn put_reader(&self, store: Store) {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if readers.len() < KEPT_READERS {
            readers.push(store);
        }
    }

    fn sources(&self) -> status::Sources<'_> {
        status::Sources { config: &self.ctx.config, live: &self.ctx.live, started_ms: self.ctx.started_ms }
    }
}

/// Runs `f` with a read connection on a blocking thread.
async fn with_store<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Shared, Result<&Store, &str>) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || match shared.take_reader() {
        Ok(store) => {
            let out = f(&shared, Ok(&store));
            shared.put_reader(store);
            out
        }
        Err(e) => f(&shared, Err(&e)),
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the request's task failed: {e}")))
}

async fn snapshot(shared: &Arc<Shared>, with_records: bool) -> Result<status::Status, ApiError> {
    with_store(shared, move |s, store| {
        let status = status::build(s.sources(), store.ok(), &s.cache, with_records, now_ms());
        match store {
            Ok(_) => status,
            Err(e) => {
                let mut status = status;
                status.gateway.store_error = Some(e.to_string());
                status
            }
        }
    })
    .await
}

/// The routes, behind the token check when one is configured.
pub fn router(ctx: Context) -> Router {
    let shared = Arc::new(Shared { ctx, cache: status::Cache::default(), readers: Mutex::new(Vec::new()) });
    Router::new()
        .route("/", get(page_handler))
        .route("/live", get(live_handler))
        .route("/ready", get(ready_handler))
        .route("/metrics", get(metrics_handler))
        .route("/api/v1/status", get(status_handler))
        .route("/api/v1/outlets/{outlet}/records", get(records_handler))
        .route("/api/v1/outlets/{outlet}/events", get(events_handler))
        .route("/api/v1/export", get(export_handler))
        .route("/api/v1/marks", get(marks::list_handler))
        .fallback(|| async { ApiError::NotFound("no such page; see / and /api/v1/status".into()) })
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        // The only routes that change anything, behind the operators' own token.
        .merge(marks::operator_routes(shared.clone()))
        .with_state(shared)
}

/// A request that cannot be answered, with the message the client gets.
#[derive(Debug)]
enum ApiError {
    BadRequest(String),
    NotFound(String),
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            ApiError::Internal(m) => {
                tracing::warn!(error = %m, "Status page request failed.");
                (StatusCode::INTERNAL_SERVER_ERROR, m)
            }
        };
        (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
    }
}

/// Query parameters, checked against the names a route knows.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(q: Query<Vec<(String, String)>>, known: &[&str]) -> Result<Params, ApiError> {
        for (k, _) in &q.0 {
            if k != "token" && !known.contains(&k.as_str()) {
                let known = if known.is_empty() { "none".into() } else { known.join(", ") };
                return Err(ApiError::BadRequest(format!("{k}: unknown parameter (known: {known})")));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (k, _) in &q.0 {
            if !seen.insert(k.as_str()) {
                return Err(ApiError::BadRequest(format!("{k}: given more than once")));
            }
        }
        Ok(Params(q.0))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Checks the token (header or query) when one is configured; the operators' token reads too.
async fn auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let web = &shared.ctx.config.web;
    let Some(token) = web.token.as_deref() else {
        return next.run(req).await;
    };
    let known = |t: &str| same(t, token) || web.operator_token.as_deref().is_some_and(|op| same(t, op));
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| known(t.trim()));
    let from_query = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .is_ok_and(|q| q.0.iter().any(|(k, v)| k == "token" && known(v)));
    if from_header || from_query {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"cems-gateway\"")),
            (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
        ],
        "a token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
    )
        .into_response()
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn page_handler(
    State(shared): State<Arc<Shared>>,
    q: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = Params::new(q, &[])?;
    let status = snapshot(&shared, true).await?;
    let opts = page::PageOptions { token: params.get("token").map(str::to_string) };
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(page::render(&status, &opts))).into_response())
}

async fn live_handler() -> &'static str {
    "alive\n"
}

/// Ready while every part of the pipeline makes progress and the store can be read.
async fn ready_handler(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let stalled = shared.ctx.progress.as_ref().map(|p| p.stalled()).unwrap_or_default();
    if !stalled.is_empty() {
        let parts: Vec<String> =
            stalled.iter().map(|(n, d)| format!("{n} silent for {} s", d.as_secs())).collect();
        return Err(ApiError::Unavailable(format!("not ready: {}", parts.join(", "))));
    }
    with_store(&shared, |_, store| store.map(|_| ()).map_err(str::to_string))
        .await?
        .map_err(|e| ApiError::Unavailable(format!("not ready: the buffer cannot be read: {e}")))?;
    Ok("ready\n".into_response())
}

async fn metrics_handler(
    State(shared): State<Arc<Shared>>,
    q: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    Params::new(q, &[])?;
    let status = snapshot(&shared, false).await?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render(&status)).into_response())
}

async fn status_handler(
    State(shared): State<Arc<Shared>>,
    q: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    Params::new(q, &[])?;
    Ok(axum::Json(snapshot(&shared, true).await?).into_response())
}

/// One stored record, for the API.
#[derive(Debug, serde::Serialize)]
struct RecordOut {
    start: String,
    factor: String,
    n_total: u32,
    n_valid: u32,
    min: Option<f64>,
    avg: Option<f64>,
    max: Option<f64>,
    zs_avg: Option<f64>,
    cou: Option<f64>,
    flag: char,
    limit: Option<f64>,
    exceeded: bool,
}

/// `?date=YYYY-MM-DD` (one day) or `YYYY-MM` (the month; not for minute records) `&level=hour`.
async fn records_handler(
    State(shared): State<Arc<Shared>>,
    UrlPath(outlet): UrlPath<String>,
    q: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = Params::new(q, &["date", "level"])?;
    let config = shared.ctx.config.clone();
    if config.outlet(&outlet).is_none() {
        return Err(ApiError::NotFound(format!("no outlet named {outlet:?}")));
    }
    let level = match params.get("level").unwrap_or("hour") {
        "minute" => Level::Minute,
        "hour" => Level::Hour,
        "day" => Level::Day,
        other => {
            return Err(ApiError::BadRequest(format!(
                "level: must be one of minute, hour, day, got {other:?}"
            )));
        }
    };
    let date = params
        .get("date")
        .ok_or_else(|| ApiError::BadRequest("date: is required (YYYY-MM-DD or YYYY-MM)".into()))?;
    let (from, to) = match date.len() {
        10 => export::parse_time(date, false).map(|d| (d, d + 86_400)),
        7 => export::parse_time(&format!("{date}-01"), false)
            .map(|first| (first, period_start(Level::Month, first + 32 * 86_400))),
        _ => None,
    }
    .ok_or_else(|| ApiError::BadRequest(format!("date: must be YYYY-MM-DD or YYYY-MM, got {date:?}")))?;
    if level == Level::Minute && to - from > 86_400 {
        return Err(ApiError::BadRequest(
            "date: minute records are given a day at a time (YYYY-MM-DD); use /api/v1/export for more".into(),
        ));
    }
    let offset = config.site.utc_offset_s;
    let name = outlet.clone();
    let records = with_store(&shared, move |_, store| {
        let store = store.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        store
            .records(&name, level, (from - offset) * 1000, (to - offset) * 1000, offset)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await??;
    let records: Vec<RecordOut> = records
        .into_iter()
        .map(|r| RecordOut {
            start: status::fmt_local(r.start),
            factor: r.factor,
            n_total: r.stat.n_total,
            n_valid: r.stat.n_valid,
            min: r.stat.min,
            avg: r.stat.avg,
            max: r.stat.max,
            zs_avg: r.stat.zs_avg,
            cou: r.stat.cou,
            flag: r.stat.flag.as_char(),
            limit: r.limit,
            exceeded: r.exceeded,
        })
        .collect();
    Ok(axum::Json(serde_json::json!({
        "outlet": outlet,
        "level": level.name(),
        "from": status::fmt_local(from),
        "to": status::fmt_local(to),
        "records": records,
    }))
    .into_response())
}

/// `?month=YYYY-MM` (default: this month): compliance and exceedance events from the hours.
async fn events_handler(
    State(shared): State<Arc<Shared>>,
    UrlPath(outlet): UrlPath<String>,
    q: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = Params::new(q, &["month"])?;
    let config = shared.ctx.config.clone();
    if config.outlet(&outlet).is_none() {
        return Err(ApiError::NotFound(format!("no outlet named {outlet:?}")));
    }
    let offset = config.site.utc_offset_s;
    let first = match params.get("month") {
        None => period_start(Level::Month, now_ms().div_euclid(1000) + offset),
        Some(m) => export::parse_time(&format!("{m}-01"), false)
            .filter(|_| m.len() == 7)
            .ok_or_else(|| ApiError::BadRequest(format!("month: must be YYYY-MM, got {m:?}")))?,
    };
    let next = period_start(Level::Month, first + 32 * 86_400);
    let month = with_store(&shared, move |s, store| {
        let store = store.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let outlet = s.ctx.config.outlet(&outlet).ok_or_else(|| ApiError::NotFound(outlet.clone()))?;
        status::month_of(store, &s.ctx.config, outlet, first, next)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await??;
    Ok(axum::Json(month).into_response())
}

/// `?from=&to=&level=raw|minute|hour|day&format=csv[&outlet=]`, streamed.
async fn export_handler(
    State(shared): State<Arc<Shared>>,
    q: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = Params::new(q, &["from", "to", "level", "format", "outlet"])?;
    match params.get("format").unwrap_or("csv") {
        "csv" => {}
        other => return Err(ApiError::BadRequest(format!("format: must be csv, got {other:?}"))),
    }
    let config = shared.ctx.config.clone();
    let query = export::check_query(
        &config,
        params.get("from"),
        params.get("to"),
        params.get("level"),
        params.get("outlet"),
    )
    .map_err(ApiError::BadRequest)?;
    let store = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || shared.take_reader())
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Unavailable(format!("the buffer cannot be read: {e}")))?
    };
    let filename = format!(
        "cems-{}-{}-{}.csv",
        query
            .outlet
            .as_deref()
            .unwrap_or("all")
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
        params.get("level").unwrap_or("raw"),
        status::fmt_local(query.from).get(..10).unwrap_or("")
    );
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx, buf: Vec::with_capacity(CHUNK) };
        match export::write_csv(&store, &config, &query, &mut out) {
            Ok(rows) => tracing::debug!(rows, "Export sent."),
            Err(export::ExportError::Write(_)) => tracing::debug!("Export reader went away."),
            Err(e) => {
                tracing::warn!(error = %e, "Export failed midway.");
                let _ = out.tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
        shared.put_reader(store);
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        Body::from_stream(Chunks(rx)),
    )
        .into_response())
}

/// Hands full chunks to the response through a bounded channel; blocks (on its blocking
/// thread) while the client is slower than the store, and fails once the client is gone.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The receiving end as a body stream.
struct Chunks(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
