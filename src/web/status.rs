//! The status snapshot every view is drawn from (page, `/api/v1/status`, `/metrics`, the
//! `status` command): live values and link states from [`Live`], today's hours, the trends and
//! the month to date from the store's records.
//!
//! These are the API's own DTOs (serde, both ways: the `status` command reads them back); the
//! domain types stay free of serialization. Times are local plant time `YYYY-MM-DD HH:MM:SS`,
//! the same form the query parameters take; `utc_offset_hours` says which zone that is.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::compute::compliance::summarize_hours;
use crate::compute::evaluate::period_start;
use crate::compute::{FactorCompliance, Level, Record, realtime};
use crate::config::{Config, Outlet};
use crate::live::Live;
use crate::model::Flag;
use crate::store::outbox::Kind;
use crate::store::{Store, StoreError};
use crate::time::{Local, Offset, Utc};

/// Everything an officer is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub site: String,
    pub mn: String,
    /// When this snapshot was taken (local plant time).
    pub generated: String,
    pub utc_offset_hours: f64,
    pub outlets: Vec<OutletStatus>,
    pub devices: Vec<DeviceStatus>,
    pub uplinks: Vec<UplinkStatus>,
    pub gateway: GatewayHealth,
    /// The analyzers' key parameters and the operators' marks.
    #[serde(default)]
    pub evidence: super::evidence::Evidence,
}

/// One stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutletStatus {
    pub name: String,
    pub profile: Option<String>,
    /// Reference O2 (%) the limited concentrations are converted to.
    pub o2_ref: Option<f64>,
    /// Hourly limits (mg/m³) by factor.
    pub limits: BTreeMap<String, f64>,
    /// `exceeded` (a running hourly average above its limit), `ok`, `no-valid` (the open hour
    /// has no valid minute yet), `waiting` (readings arrive, the first minute is not closed)
    /// or `no-data`.
    pub state_now: String,
    pub current: Vec<CurrentValue>,
    pub open_hour: Option<OpenHourStatus>,
    /// Today's hours so far, one row per closed hour (00:00 first).
    pub today: Vec<HourRow>,
    /// Last 24 hours per limited factor.
    pub trends: Vec<Trend>,
    pub month: Option<MonthStatus>,
}

/// The latest value of one factor, converted as a 2011 upload converts it
/// ([`crate::compute::realtime`]): NOx and the flow also when they are derived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentValue {
    /// The device it comes from; empty for a derived value.
    pub device: String,
    pub factor: String,
    /// `中文 English` name of the factor.
    pub label: String,
    /// Unit of `value`, `measured` and `zs`: table B.2's (mg/m3, m3/s, %, ...).
    pub unit: String,
    /// Dry at standard state: what the records average.
    pub value: Option<f64>,
    /// As measured (wet or at actual state where the analyzer measures so), in `unit`.
    #[serde(default)]
    pub measured: Option<f64>,
    /// Converted to the reference O2 (ZsRtd), where one applies.
    #[serde(default)]
    pub zs: Option<f64>,
    /// The flag the records get (F while stopped, D at the O2 guard, T above the range).
    pub flag: char,
    pub flag_meaning: String,
    pub time: String,
    pub age_s: f64,
    /// The last reading with flag N, as the analyzer gave it (in `raw_unit`).
    pub last_good: Option<Reading>,
    /// The unit the point is configured with (ppm, m3/h, ...).
    #[serde(default)]
    pub raw_unit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub time: String,
    pub value: f64,
}

/// The running figures of the hour in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenHourStatus {
    pub start: String,
    pub factors: Vec<Running>,
}

/// One limited factor's running hourly average (converted to the reference O2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Running {
    pub factor: String,
    pub label: String,
    pub value: Option<f64>,
    pub limit: f64,
    pub valid_minutes: u32,
    pub flag: char,
    pub exceeded: bool,
}

/// One closed hour of today, a cell per limited factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourRow {
    /// `HH:MM`.
    pub hour: String,
    pub start: String,
    pub cells: BTreeMap<String, Cell>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Converted hourly average.
    pub value: Option<f64>,
    pub flag: char,
    pub valid: bool,
    pub exceeded: bool,
}

/// 24 hours of one limited factor: minute averages in five-minute buckets, and the hourly
/// averages that are judged against the limit. Times are local seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub factor: String,
    pub label: String,
    pub limit: f64,
    pub from: i64,
    pub to: i64,
    /// (bucket start, average of the valid minutes' converted values).
    pub minutes: Vec<(i64, f64)>,
    pub hours: Vec<TrendHour>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendHour {
    pub start: i64,
    pub value: f64,
    pub exceeded: bool,
}

/// The month to date, from the stored hour records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthStatus {
    /// `YYYY-MM`.
    pub month: String,
    pub factors: Vec<MonthFactor>,
    /// All limited factors together.
    pub joint: MonthFactor,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthFactor {
    pub factor: String,
    pub label: String,
    pub valid_hours: u32,
    pub exceeded_hours: u32,
    /// Valid hours above the instrument's range (T): their averages are lower bounds.
    #[serde(default)]
    pub over_range_hours: u32,
    pub stopped_hours: u32,
    pub invalid_hours: u32,
    /// Hours not stopped: valid and invalid.
    #[serde(default)]
    pub production_hours: u32,
    /// Compliant share of `rate_of` hours, percent.
    pub rate_pct: Option<f64>,
    /// What the rate counts: `valid hours`, or `production hours` (cement).
    #[serde(default)]
    pub rate_of: String,
    pub meets_95: bool,
    /// Valid share of production hours, percent.
    #[serde(default)]
    pub capture_pct: Option<f64>,
}

/// Consecutive exceeded hours of one factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub factor: String,
    pub label: String,
    pub start: String,
    pub end: String,
    pub hours: i64,
    pub peak: f64,
    pub mean: f64,
    pub limit: f64,
}

/// One analyzer as the bus task sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub name: String,
    pub outlet: Option<String>,
    pub bus: String,
    /// normal, calibration, maintenance, fault, stopped, comm lost, or not polled yet.
    pub state: String,
    pub flag: char,
    pub polls: u64,
    pub errors: u64,
    pub consecutive_failures: u32,
    pub last_good: Option<String>,
    /// The last failed request (kept after the device answers again) and when.
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_at: Option<String>,
    /// Why its slots are recorded as B without a request, while they are (isolated, bus down).
    #[serde(default)]
    pub not_polled: Option<String>,
}

/// One platform link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UplinkStatus {
    pub name: String,
    pub address: String,
    pub outlet: String,
    pub connected: bool,
    pub frames_sent: u64,
    /// Frames that asked for an answer (Flag bit A; real-time frames usually ask for none).
    #[serde(default)]
    pub frames_asked: u64,
    /// Answers received to those.
    pub frames_acked: u64,
    /// When the platform last acknowledged anything.
    pub last_ack: Option<String>,
    /// Start of the newest period the platform acknowledged, per kind.
    pub acked: Acked,
    /// Periods waiting, per kind.
    pub backlog: Backlog,
    /// Start of the oldest period still waiting.
    pub oldest_unsent: Option<String>,
    pub last_error: Option<String>,
    /// Periods the platform refused (HTTP 4xx, HJ 212 QnRtn 2 or 8) and that are not sent again.
    #[serde(default)]
    pub rejected: u64,
    /// Notices (2081, 3020, …) the platform refused, and those it never answered.
    #[serde(default)]
    pub notices_refused: u64,
    #[serde(default)]
    pub notices_unanswered: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Acked {
    pub minute: Option<String>,
    pub hour: Option<String>,
    pub day: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Backlog {
    pub minute: u64,
    pub hour: u64,
    pub day: u64,
    /// Days of facility run time (2041).
    #[serde(default)]
    pub run_time: u64,
}

impl Backlog {
    pub fn total(&self) -> u64 {
        self.minute + self.hour + self.day + self.run_time
    }
}

/// The gateway itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayHealth {
    pub version: String,
    pub uptime_s: u64,
    pub disk_free_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
    /// The buffer file and its WAL.
    pub buffer_bytes: Option<u64>,
    /// Whether the kernel says the system clock is synchronised (NTP, an RTC):
    /// `synchronised`, `unsynchronised`, `unknown`, or `not checked yet`.
    pub clock_sync: String,
    /// A platform's time minus the gateway's, as its last (refused) 1012 showed it.
    pub platform_clock_diff_ms: Option<i64>,
    pub samples_stored: u64,
    /// Set when the store could not be read for this snapshot.
    pub store_error: Option<String>,
    /// The audit chain's head and whether its recent part verifies.
    #[serde(default)]
    pub audit: Option<AuditSummary>,
}

/// The audit chain as the page shows it: the head (the anchor an officer notes down) and the
/// verification of the last [`AUDIT_WINDOW_MS`] (`cems-gateway verify` checks all of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditSummary {
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    pub entries_checked: u64,
    pub verified: bool,
    pub first_broken: Option<String>,
    /// Local time of the check.
    pub checked: String,
}

/// How far back the page verifies the audit chain.
pub const AUDIT_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// How often the page verifies it again.
const AUDIT_TTL: Duration = Duration::from_secs(60);

/// What the views are built from besides the store.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub config: &'a Config,
    pub live: &'a Live,
    /// Seconds since the gateway started, on the monotonic clock.
    pub uptime_s: u64,
}

/// Store-derived parts of the snapshot, computed at most every [`VIEW_TTL`] (an officer's
/// auto-refreshing page and a Prometheus scraper must not recompute a month each time).
#[derive(Debug, Default)]
pub struct Cache {
    views: Mutex<HashMap<String, (Instant, StoreView)>>,
    months: Mutex<HashMap<String, CachedMonth>>,
    audit: Mutex<Option<(Instant, AuditSummary)>>,
}

/// A month's figures, when they were computed, and for which (month start, newest hour).
type CachedMonth = (Instant, (i64, Option<i64>), MonthStatus);

const VIEW_TTL: Duration = Duration::from_secs(10);
/// A month is recomputed when a newer hour record appears, and at least this often (late data
/// and day recomputes rewrite hours already stored).
const MONTH_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default)]
struct StoreView {
    today: Vec<HourRow>,
    trends: Vec<Trend>,
    month: Option<MonthStatus>,
}

/// Builds the snapshot at `now_ms`. `store` is a read connection (never the writer's); with
/// `None`, or `with_records = false` (for `/metrics`), the store-derived parts are left empty.
pub fn build(src: Sources, store: Option<&Store>, cache: &Cache, with_records: bool, now_ms: i64) -> Status {
    let config = src.config;
    let offset = config.site.utc_offset;
    let local_now = offset.local_secs(now_ms);
    let current = src.live.current();
    let health = src.live.devices();
    let open_hours = src.live.open_hours();
    let links = src.live.links();
    let mut store_error = None;

    let outlets: Vec<OutletStatus> = config
        .outlets
        .iter()
        .map(|outlet| {
            let spec = config.outlet_spec(outlet);
            let limits = spec.limits.limits.clone();
            let values = current_values(config, outlet, &spec, &current, now_ms);
            let open_hour = open_hours.get(&outlet.name).map(|h| OpenHourStatus {
                start: Local::from_secs(h.start).display(),
                factors: limits
                    .iter()
                    .filter_map(|(factor, limit)| {
                        let stat = h.stats.get(factor)?;
                        let value = stat.zs_avg.or(stat.avg);
                        Some(Running {
                            factor: factor.clone(),
                            label: factor_label(factor),
                            value,
                            limit: *limit,
                            valid_minutes: stat.n_valid,
                            flag: stat.flag.as_char(),
                            exceeded: value.is_some_and(|v| v > *limit),
                        })
                    })
                    .collect(),
            });
            let state_now = match &open_hour {
                Some(h) if h.factors.iter().any(|f| f.exceeded) => "exceeded",
                Some(h) if h.factors.iter().any(|f| f.value.is_some()) => "ok",
                Some(h) if !h.factors.is_empty() => "no-valid",
                _ if !values.is_empty() => "waiting",
                _ => "no-data",
            };
            let view = match store.filter(|_| with_records) {
                Some(store) => match store_view(store, config, outlet, local_now, cache) {
                    Ok(v) => v,
                    Err(e) => {
                        store_error = Some(e.to_string());
                        StoreView::default()
                    }
                },
                None => StoreView::default(),
            };
            OutletStatus {
                name: outlet.name.clone(),
                profile: outlet.profile.clone(),
                o2_ref: spec.limits.o2_ref,
                limits,
                state_now: state_now.into(),
                current: values,
                open_hour,
                today: view.today,
                trends: view.trends,
                month: view.month,
            }
        })
        .collect();

    let devices = config
        .devices
        .iter()
        .map(|d| {
            let h = health.get(&d.name);
            let flags: Vec<Flag> = d
                .points
                .iter()
                .filter_map(|p| current.get(&(d.name.clone(), p.factor.clone())))
                .map(|c| c.flag)
                .collect();
            let last_good = d
                .points
                .iter()
                .filter_map(|p| current.get(&(d.name.clone(), p.factor.clone()))?.last_good)
                .map(|(ts, _)| ts)
                .max();
            let flag = device_flag(h.map(|h| h.consecutive_failures), &flags);
            DeviceStatus {
                name: d.name.clone(),
                outlet: d.outlet.clone(),
                bus: config.buses.get(d.bus).map(|b| b.name.clone()).unwrap_or_default(),
                state: match flag {
                    None => "not polled yet".into(),
                    Some(f) => device_state(f).into(),
                },
                flag: flag.map_or('-', Flag::as_char),
                polls: h.map_or(0, |h| h.polls),
                errors: h.map_or(0, |h| h.errors),
                consecutive_failures: h.map_or(0, |h| h.consecutive_failures),
                last_good: last_good.map(|ts| offset.local(Utc(ts)).display()),
                last_error: h.and_then(|h| h.last_error.clone()),
                last_error_at: h.and_then(|h| h.last_error_ms).map(|ts| offset.local(Utc(ts)).display()),
                not_polled: h.and_then(|h| h.not_polled.clone()),
            }
        })
        .collect();

    let uplinks = config
        .uplinks
        .iter()
        .map(|u| {
            let link = links.get(&u.name).cloned().unwrap_or_default();
            // Where the queue stands comes from the outbox, through the link's published state.
            let q = &link.queue;
            let fmt = |ms: i64| offset.local(Utc(ms)).display();
            let acked_at = |kind| q.get(kind).and_then(|k| k.acked).map(fmt);
            UplinkStatus {
                name: u.name.clone(),
                address: u.address.clone(),
                outlet: u.outlet.clone(),
                connected: link.connected,
                frames_sent: link.frames_sent,
                frames_asked: link.frames_asked,
                frames_acked: link.frames_acked,
                last_ack: link.last_ack_ms.map(|ts| offset.local(Utc(ts)).display()),
                acked: Acked {
                    minute: acked_at(Kind::Minute),
                    hour: acked_at(Kind::Hour),
                    day: acked_at(Kind::Day),
                },
                backlog: Backlog {
                    minute: q.backlog(Kind::Minute),
                    hour: q.backlog(Kind::Hour),
                    day: q.backlog(Kind::Day),
                    run_time: q.backlog(Kind::RunTime),
                },
                oldest_unsent: q.oldest_unsent().map(fmt),
                last_error: link.last_error,
                rejected: link.rejected,
                notices_refused: link.notices_refused,
                notices_unanswered: link.notices_unanswered,
            }
        })
        .collect();

    let events: Vec<(String, Vec<Event>)> = outlets
        .iter()
        .map(|o| (o.name.clone(), o.month.as_ref().map(|m| m.events.clone()).unwrap_or_default()))
        .collect();
    let evidence = super::evidence::build(config, src.live, store.filter(|_| with_records), &events, now_ms)
        .unwrap_or_else(|e| {
            store_error = Some(e.to_string());
            super::evidence::Evidence::default()
        });
    let path = &config.storage.path;
    let (disk_free_bytes, disk_total_bytes) = disk_space(path).unzip();
    let buffer_bytes = std::fs::metadata(path)
        .ok()
        .map(|m| m.len() + std::fs::metadata(format!("{}-wal", path.display())).map_or(0, |w| w.len()));
    let platform_clock_diff_ms = match store.map(|s| s.setting("*", crate::uplink::PLATFORM_CLOCK_SETTING)) {
        Some(Ok(v)) => v.and_then(|v| v.parse().ok()),
        Some(Err(e)) => {
            store_error = Some(e.to_string());
            None
        }
        None => None,
    };
    let clock_sync = src.live.clock_sync().map_or("not checked yet", |s| s.label()).to_string();
    Status {
        site: config.site.name.clone(),
        mn: config.site.mn.clone(),
        generated: Local::from_secs(local_now).display(),
        utc_offset_hours: offset.hours(),
        outlets,
        devices,
        uplinks,
        gateway: GatewayHealth {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_s: src.uptime_s,
            disk_free_bytes,
            disk_total_bytes,
            buffer_bytes,
            clock_sync,
            platform_clock_diff_ms,
            samples_stored: src.live.samples_stored(),
            store_error,
            audit: store.and_then(|s| audit_summary(s, cache, now_ms, offset)),
        },
        evidence,
    }
}

/// The current values of an outlet's points, converted as one poll ([`realtime::current`]), each
/// with the time of its own reading (a derived one with the newest time of its outlet).
fn current_values(
    config: &Config,
    outlet: &Outlet,
    spec: &crate::compute::OutletSpec,
    current: &BTreeMap<(String, String), crate::live::Current>,
    now_ms: i64,
) -> Vec<CurrentValue> {
    let offset = config.site.utc_offset;
    let devices = config.outlet_devices(&outlet.name);
    let inputs = crate::live::inputs(current, &devices);
    let newest = inputs.iter().map(|i| i.t * 1000).max().unwrap_or(now_ms);
    realtime::current(spec, &inputs)
        .into_iter()
        .map(|c| {
            let point = devices
                .iter()
                .find_map(|d| d.points.iter().find(|p| *p.factor == *c.factor).map(|p| (*d, p)));
            let reading = point.and_then(|(d, p)| current.get(&(d.name.clone(), p.factor.clone())));
            let ts = reading.map_or(newest, |r| r.ts_ms);
            let unit = match crate::factors::unit(c.factor) {
                "" => point.map_or("", |(_, p)| p.unit.as_str()),
                known => known,
            };
            CurrentValue {
                device: point.map(|(d, _)| d.name.clone()).unwrap_or_default(),
                factor: c.factor.to_string(),
                label: factor_label(c.factor),
                unit: unit.to_string(),
                value: c.value,
                measured: c.measured,
                zs: c.zs,
                flag: c.flag.as_char(),
                flag_meaning: flag_meaning(c.flag).to_string(),
                time: offset.local(Utc(ts)).display(),
                age_s: ((now_ms - ts) as f64 / 1000.0).max(0.0),
                last_good: reading
                    .and_then(|r| r.last_good)
                    .map(|(ts, value)| Reading { time: offset.local(Utc(ts)).display(), value }),
                raw_unit: point.map(|(_, p)| p.unit.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// The audit chain's head and the verification of its last day, at most every [`AUDIT_TTL`].
fn audit_summary(store: &Store, cache: &Cache, now_ms: i64, offset: Offset) -> Option<AuditSummary> {
    let mut cached = cache.audit.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, summary)) = cached.as_ref()
        && at.elapsed() < AUDIT_TTL
    {
        return Some(summary.clone());
    }
    let status = store.verify_chain_without_samples(Some(now_ms - AUDIT_WINDOW_MS), None).ok()?;
    let summary = AuditSummary {
        head_seq: status.head_seq,
        head_hash: status.head_hash,
        entries_checked: status.entries,
        verified: status.verified,
        first_broken: status.first_broken.map(|b| b.describe(offset)),
        checked: offset.local(Utc(now_ms)).display(),
    };
    *cached = Some((Instant::now(), summary.clone()));
    Some(summary)
}

fn store_view(
    store: &Store,
    config: &Config,
    outlet: &Outlet,
    local_now: i64,
    cache: &Cache,
) -> Result<StoreView, StoreError> {
    {
        let views = cache.views.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, v)) = views.get(&outlet.name)
            && at.elapsed() < VIEW_TTL
        {
            return Ok(v.clone());
        }
    }
    let offset = config.site.utc_offset;
    let ms = |local: i64| offset.utc_ms(local);
    let spec = config.outlet_spec(outlet);
    let limits = &spec.limits.limits;
    let this_hour = period_start(Level::Hour, local_now);
    let today = period_start(Level::Day, local_now);
    let from = today.min(this_hour - 23 * 3600);
    let hours = store.records(&outlet.name, Level::Hour, ms(from), ms(this_hour + 3600), offset)?;
    let rows = hour_rows(hours.iter().filter(|h| h.start >= today), limits);
    let trend_from = this_hour - 23 * 3600;
    let minutes = store.records(&outlet.name, Level::Minute, ms(trend_from), ms(local_now + 60), offset)?;
    let trends = limits
        .iter()
        .map(|(factor, limit)| Trend {
            factor: factor.clone(),
            label: factor_label(factor),
            limit: *limit,
            from: trend_from,
            to: this_hour + 3600,
            minutes: buckets(minutes.iter().filter(|m| &m.factor == factor), 300),
            hours: hours
                .iter()
                .filter(|h| &h.factor == factor && h.start >= trend_from && h.stat.valid)
                .filter_map(|h| Some(TrendHour { start: h.start, value: h.judged()?, exceeded: h.exceeded }))
                .collect(),
        })
        .collect();
    let month = month_status(store, config, outlet, local_now, cache)?;
    let view = StoreView { today: rows, trends, month: Some(month) };
    cache
        .views
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(outlet.name.clone(), (Instant::now(), view.clone()));
    Ok(view)
}

/// Today's table: one row per hour that has records, a cell per limited factor.
pub fn hour_rows<'r>(
    hours: impl Iterator<Item = &'r Record>,
    limits: &BTreeMap<String, f64>,
) -> Vec<HourRow> {
    let mut rows: BTreeMap<i64, HourRow> = BTreeMap::new();
    for h in hours.filter(|h| limits.contains_key(&h.factor)) {
        let row = rows.entry(h.start).or_insert_with(|| HourRow {
            hour: Local::from_secs(h.start).hour_minute(),
            start: Local::from_secs(h.start).display(),
            cells: BTreeMap::new(),
        });
        row.cells.insert(
            h.factor.clone(),
            Cell {
                value: h.judged(),
                flag: h.stat.flag.as_char(),
                valid: h.stat.valid,
                exceeded: h.exceeded,
            },
        );
    }
    rows.into_values().collect()
}

/// Averages of the valid minutes' converted values in buckets of `width` seconds.
fn buckets<'r>(minutes: impl Iterator<Item = &'r Record>, width: i64) -> Vec<(i64, f64)> {
    let mut sums: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
    for m in minutes.filter(|m| m.stat.valid) {
        if let Some(v) = m.judged() {
            let e = sums.entry(m.start - m.start.rem_euclid(width)).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    sums.into_iter().map(|(t, (s, n))| (t, s / f64::from(n))).collect()
}

/// The month to date of one outlet from its stored hour records (cached until a newer hour
/// record appears, or for [`MONTH_TTL`]).
pub fn month_status(
    store: &Store,
    config: &Config,
    outlet: &Outlet,
    local_now: i64,
    cache: &Cache,
) -> Result<MonthStatus, StoreError> {
    let first = period_start(Level::Month, local_now);
    let newest = store.newest_record(&outlet.name, Level::Hour)?;
    let key = (first, newest);
    {
        let months = cache.months.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, k, m)) = months.get(&outlet.name)
            && *k == key
            && at.elapsed() < MONTH_TTL
        {
            return Ok(m.clone());
        }
    }
    let next = period_start(Level::Month, first + 32 * 86_400);
    let month = month_of(store, config, outlet, first, next)?;
    cache
        .months
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(outlet.name.clone(), (Instant::now(), key, month.clone()));
    Ok(month)
}

/// Compliance and exceedance events of `[first, next)` (local seconds) from the stored hours.
pub fn month_of(
    store: &Store,
    config: &Config,
    outlet: &Outlet,
    first: i64,
    next: i64,
) -> Result<MonthStatus, StoreError> {
    let offset = config.site.utc_offset;
    let spec = config.outlet_spec(outlet);
    let hours =
        store.records(&outlet.name, Level::Hour, offset.utc_ms(first), offset.utc_ms(next), offset)?;
    let outcome = summarize_hours(hours, &spec.limits);
    let factor = |name: &str, fc: &FactorCompliance| MonthFactor {
        factor: name.to_string(),
        label: if name == "all" { "全部 All limited factors".into() } else { factor_label(name) },
        valid_hours: fc.valid_hours,
        exceeded_hours: fc.exceeded_hours,
        over_range_hours: fc.over_range_hours,
        stopped_hours: fc.stopped_hours,
        invalid_hours: fc.production_hours().saturating_sub(fc.valid_hours),
        production_hours: fc.production_hours(),
        rate_pct: fc.rate().map(|r| r * 100.0),
        rate_of: if fc.production_time { "production hours" } else { "valid hours" }.into(),
        meets_95: fc.meets_95(),
        capture_pct: fc.capture_rate().map(|r| r * 100.0),
    };
    Ok(MonthStatus {
        month: Local::from_secs(first).month(),
        factors: outcome.factors.iter().map(|(f, fc)| factor(f, fc)).collect(),
        joint: factor("all", &outcome.joint),
        events: outcome
            .events
            .iter()
            .map(|e| Event {
                factor: e.factor.clone(),
                label: factor_label(&e.factor),
                start: Local::from_secs(e.start).display(),
                end: Local::from_secs(e.end).display(),
                hours: (e.end - e.start) / 3600,
                peak: e.peak,
                mean: e.mean,
                limit: e.limit,
            })
            .collect(),
    })
}

/// The device's flag for the officer: `B` while polls fail, else the most severe state flag
/// among its points (T, a point above its instrument range, is not a device state).
fn device_flag(consecutive_failures: Option<u32>, flags: &[Flag]) -> Option<Flag> {
    let failures = consecutive_failures?;
    if failures > 0 {
        return Some(Flag::B);
    }
    Some(
        flags
            .iter()
            .copied()
            .filter(|f| !matches!(f, Flag::T | Flag::N))
            .max_by_key(|f| f.severity())
            .unwrap_or(Flag::N),
    )
}

/// The analyzer state a device flag stands for.
pub fn device_state(flag: Flag) -> &'static str {
    match flag {
        Flag::N | Flag::T => "normal",
        Flag::C => "calibration",
        Flag::M => "maintenance",
        Flag::D => "fault",
        Flag::F => "stopped",
        Flag::B => "comm lost",
        Flag::S => "manual",
    }
}

/// HJ 212 table 8, for people.
pub fn flag_meaning(flag: Flag) -> &'static str {
    match flag {
        Flag::N => "正常 normal",
        Flag::F => "停运 stopped",
        Flag::M => "维护 maintenance",
        Flag::S => "手工输入 manual value",
        Flag::D => "故障 fault",
        Flag::C => "校准 calibration",
        Flag::T => "超仪器量程 above instrument range",
        Flag::B => "通讯异常 comm lost",
    }
}

/// `中文 English` name of a factor code (the code itself when unknown), from [`crate::factors`].
pub fn factor_label(code: &str) -> String {
    crate::factors::label(code)
}

/// Free and total bytes of the file system holding `path`.
fn disk_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data (all-zero is a valid value); `c` is a NUL-terminated
    // path and `s` a writable statvfs that the call fills in.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frag = s.f_frsize as u64;
    Some((s.f_bavail as u64 * frag, s.f_blocks as u64 * frag))
}
