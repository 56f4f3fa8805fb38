//! The operators' marks over HTTP: the only routes that change anything, behind a token of
//! their own (`[web] operator_token`, as `Authorization: Bearer …` only: a token in a URL ends
//! up in logs). The officers' token reads the marks (`GET /api/v1/marks`) and is refused on the
//! operator routes with 403; without an operator token configured those routes are off (403).
//!
//! - `POST /api/v1/operator/marks` `{"outlet", "kind", "start", "end"?, "reason", "who"}`: 201
//!   and the mark.
//! - `POST /api/v1/operator/marks/{id}/end` `{"end"?, "who"}` (`end` defaults to now).
//! - `POST /api/v1/operator/marks/{id}/edit` `{"start"?, "end"?, "reason"?, "who"}`.
//!
//! Times are local plant time `YYYY-MM-DD HH:MM:SS`. A mark that breaks a rule (end before
//! start, unknown kind, outside the window, overlapping a mark of another kind…) gets 400 with
//! the reason and changes nothing; every add, edit and end is in the audit chain (see
//! `store::marks`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use super::evidence::MarkRow;
use super::export::parse_time;
use super::status::fmt_local;
use super::{ApiError, Params, Shared, same, with_store};
use crate::compute::marks::{Kind, Mark, MarkError, Rules};
use crate::config::Config;
use crate::model::now_ms;
use crate::store::marks::{Edit, MarkStoreError};

/// The operator routes, each behind the operator token.
pub(super) fn operator_routes(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/operator/marks", post(add_handler))
        .route("/api/v1/operator/marks/{id}/end", post(end_handler))
        .route("/api/v1/operator/marks/{id}/edit", post(edit_handler))
        .layer(middleware::from_fn_with_state(shared, operator_auth))
}

fn refuse(code: StatusCode, message: &str) -> Response {
    let mut r =
        (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response();
    if code == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"cems-gateway operator\""),
        );
    }
    r
}

/// Only the operator token passes; the officers' token is known and refused (403).
async fn operator_auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let web = &shared.ctx.config.web;
    let Some(operator) = web.operator_token.as_deref() else {
        return refuse(StatusCode::FORBIDDEN, "the operator routes are off: set [web] operator_token");
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(t) if same(t, operator) => next.run(req).await,
        Some(t) if web.token.as_deref().is_some_and(|officer| same(t, officer)) => refuse(
            StatusCode::FORBIDDEN,
            "the officers' token only reads: marks are added, edited and ended with the operator token",
        ),
        _ => refuse(StatusCode::UNAUTHORIZED, "the operator token is needed: Authorization: Bearer TOKEN"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    outlet: String,
    kind: String,
    start: String,
    #[serde(default)]
    end: Option<String>,
    reason: String,
    who: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndBody {
    #[serde(default)]
    end: Option<String>,
    who: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditBody {
    #[serde(default)]
    start: Option<String>,
    /// A time, or `null` to reopen the mark; absent: unchanged.
    #[serde(default, with = "double_option")]
    end: Option<Option<String>>,
    #[serde(default)]
    reason: Option<String>,
    who: String,
}

/// `"end": null` (reopen) told apart from no `end` at all (unchanged).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

/// A local plant time of a body field, as Unix ms.
fn time_ms(config: &Config, field: &str, text: &str) -> Result<i64, ApiError> {
    let local = parse_time(text, false).ok_or_else(|| {
        ApiError::BadRequest(format!("{field}: must be a local time YYYY-MM-DD HH:MM:SS, got {text:?}"))
    })?;
    Ok((local - config.site.utc_offset_s) * 1000)
}

/// A mark as the API gives it.
pub fn row(m: &Mark, utc_offset_s: i64) -> MarkRow {
    let local = |ms: i64| fmt_local(ms.div_euclid(1000) + utc_offset_s);
    MarkRow {
        id: m.id,
        outlet: m.outlet.clone(),
        kind: m.kind.name().into(),
        kind_zh: m.kind.zh().into(),
        flag: m.kind.flag().as_char(),
        start: local(m.start_ms),
        end: m.end_ms.map(local),
        reason: m.reason.clone(),
        who: m.who.clone(),
    }
}

/// Runs one store change of a mark on a blocking thread, with the rules of the configuration.
async fn change(
    shared: &Arc<Shared>,
    f: impl FnOnce(&mut crate::store::Store, Rules<'_>) -> Result<Mark, MarkStoreError> + Send + 'static,
) -> Result<Mark, ApiError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let config = &shared.ctx.config;
        let offset = config.site.utc_offset_s;
        let fmt = move |ms: i64| fmt_local(ms.div_euclid(1000) + offset);
        let rules = Rules { now_ms: now_ms(), window_ms: config.marks.window.as_millis() as i64, fmt: &fmt };
        let mut store = crate::store::Store::open_secondary(&config.storage.path)
            .map_err(|e| ApiError::Unavailable(format!("the buffer cannot be written: {e}")))?;
        f(&mut store, rules).map_err(|e| match e {
            MarkStoreError::Refused(MarkError::NotFound(id)) => ApiError::NotFound(format!("no mark {id}")),
            MarkStoreError::Refused(e) => ApiError::BadRequest(format!("refused: {e}")),
            MarkStoreError::Store(e) => ApiError::Internal(e.to_string()),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the request's task failed: {e}")))?
}

async fn add_handler(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Result<Response, ApiError> {
    let b: AddBody = body(&bytes)?;
    let config = shared.ctx.config.clone();
    if config.outlet(&b.outlet).is_none() {
        return Err(ApiError::BadRequest(format!("outlet: {}", MarkError::UnknownOutlet(b.outlet))));
    }
    let kind = Kind::parse(&b.kind)
        .ok_or_else(|| ApiError::BadRequest(format!("kind: {}", MarkError::UnknownKind(b.kind.clone()))))?;
    let start_ms = time_ms(&config, "start", &b.start)?;
    let end_ms = b.end.as_deref().map(|e| time_ms(&config, "end", e)).transpose()?;
    let mark = Mark { id: 0, outlet: b.outlet, kind, start_ms, end_ms, reason: b.reason, who: b.who };
    let added = change(&shared, move |store, rules| store.add_mark(mark, rules, "api")).await?;
    Ok((StatusCode::CREATED, axum::Json(row(&added, config.site.utc_offset_s))).into_response())
}

async fn end_handler(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<i64>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let b: EndBody = body(&bytes)?;
    let config = shared.ctx.config.clone();
    let end_ms = match b.end.as_deref() {
        Some(e) => time_ms(&config, "end", e)?,
        None => now_ms(),
    };
    let ended = change(&shared, move |store, rules| store.end_mark(id, end_ms, &b.who, "api", rules)).await?;
    Ok(axum::Json(row(&ended, config.site.utc_offset_s)).into_response())
}

async fn edit_handler(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<i64>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let b: EditBody = body(&bytes)?;
    let config = shared.ctx.config.clone();
    let edit = Edit {
        start_ms: b.start.as_deref().map(|s| time_ms(&config, "start", s)).transpose()?,
        end_ms: match b.end {
            None => None,
            Some(None) => Some(None),
            Some(Some(e)) => Some(Some(time_ms(&config, "end", &e)?)),
        },
        reason: b.reason,
    };
    let edited = change(&shared, move |store, rules| store.edit_mark(id, edit, &b.who, "api", rules)).await?;
    Ok(axum::Json(row(&edited, config.site.utc_offset_s)).into_response())
}

/// `GET /api/v1/marks[?outlet=&from=&to=]` (officers and operators): the marks covering the
/// period (default: the last 31 days to now), by start.
pub(super) async fn list_handler(
    State(shared): State<Arc<Shared>>,
    q: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = Params::new(q, &["outlet", "from", "to"])?;
    let config = shared.ctx.config.clone();
    let offset = config.site.utc_offset_s;
    let outlet = params.get("outlet").map(str::to_string);
    if let Some(o) = &outlet
        && config.outlet(o).is_none()
    {
        return Err(ApiError::NotFound(format!("no outlet named {o:?}")));
    }
    let now_local = now_ms().div_euclid(1000) + offset;
    let from = match params.get("from") {
        Some(t) => parse_time(t, false)
            .ok_or_else(|| ApiError::BadRequest(format!("from: must be a local time, got {t:?}")))?,
        None => now_local - 31 * 86_400,
    };
    let to = match params.get("to") {
        Some(t) => parse_time(t, true)
            .ok_or_else(|| ApiError::BadRequest(format!("to: must be a local time, got {t:?}")))?,
        None => now_local + 1,
    };
    let marks = with_store(&shared, move |_, store| {
        let store = store.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        store
            .marks(outlet.as_deref(), (from - offset) * 1000, (to - offset) * 1000)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await??;
    let rows: Vec<MarkRow> = marks.iter().map(|m| row(m, offset)).collect();
    Ok(axum::Json(rows).into_response())
}
