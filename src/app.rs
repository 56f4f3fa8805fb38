//! Wiring of the pipeline for `run`, `demo` and `probe`: opens the store, spawns the bus
//! tasks, and stops everything in order (buses first, then the final store flush).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::acquire::plan::BlockResult;
use crate::acquire::{DevicePlan, Link, spawn_buses};
use crate::config::{self, Config};
use crate::figures::Figures;
use crate::lifecycle::{Notifier, Progress, Signal, Signals};
use crate::live::Live;
use crate::store::audit::AuditKind;
use crate::store::outbox::{Outbox, OutboxThread};
use crate::store::seal::Handover;
use crate::store::{OpenReport, Retention, Store, Writer, WriterOptions, spawn_writer};

/// Longest time the bus tasks get to finish their request in flight at shutdown.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running acquisition pipeline.
#[derive(Debug)]
pub struct Gateway {
    pub live: Arc<Live>,
    pub progress: Arc<Progress>,
    shutdown: watch::Sender<bool>,
    buses: JoinSet<()>,
    links: JoinSet<()>,
    /// The thread that owns the links' queues.
    outbox: OutboxThread,
    /// The thread that keeps the analyzers' parameter history.
    params: std::thread::JoinHandle<()>,
    writer: Writer,
    /// The statistics worker, which ends when the writer closes the handover.
    figures: (Arc<Handover>, std::thread::JoinHandle<()>),
    /// The status page, when `[web]` has it on and its address could be bound.
    web: Option<crate::web::Server>,
}

/// Opens the store and starts one task per bus. Must be called inside a tokio runtime.
pub fn start(config: &Config) -> anyhow::Result<Gateway> {
    start_as(config, "start")
}

/// The SHA-256 (hex) of the effective configuration: the validated `Config` as the pipeline
/// sees it (its debug form, which has no maps and so no varying order), not the file's bytes,
/// so that a comment or whitespace edit does not count as a change.
pub fn config_digest(config: &Config) -> String {
    use sha2::Digest as _;
    crate::store::audit::hex(&sha2::Sha256::digest(format!("{config:?}").as_bytes()))
}

/// [`start`], with the reason (`start` or `reload`) that goes into the audit log beside the
/// effective configuration's hash.
pub fn start_as(config: &Config, reason: &str) -> anyhow::Result<Gateway> {
    start_shared(Arc::new(config.clone()), reason)
}

/// [`start_as`] with the one copy of the configuration that every part shares.
pub fn start_shared(shared: Arc<Config>, reason: &str) -> anyhow::Result<Gateway> {
    let config: &Config = &shared;
    let (mut store, report) = Store::open(&config.storage.path)
        .with_context(|| format!("opening the buffer {}", config.storage.path.display()))?;
    match report {
        OpenReport::MovedAside(p) => {
            tracing::error!(moved_to = %p.display(), "Started a fresh buffer; the corrupt one was kept.")
        }
        r => tracing::info!(path = %config.storage.path.display(), state = ?r, "Buffer open."),
    }
    store
        .audit(AuditKind::Config, reason, &format!("sha256={}", config_digest(config)))
        .context("writing the configuration's hash to the audit log")?;
    // So that a copy of the buffer can be read in plant time without the configuration.
    store
        .set_setting("*", crate::store::UTC_OFFSET_SETTING, &config.site.utc_offset.seconds().to_string())
        .context("recording the plant time in the buffer")?;
    let live = Arc::new(Live::default());
    let progress = Arc::new(Progress::default());
    let (tx, rx) = mpsc::channel(1024);
    // The rows of the outlets' devices go from the writer to the statistics worker.
    let handover = Arc::new(Handover::new(
        config.devices.iter().filter(|d| d.outlet.is_some()).map(|d| Arc::from(d.name.as_str())),
    ));
    // A commit on a slow SD card, or a retention pass, may take a while: minutes, not hours.
    let writer_beat =
        progress.register("store writer", config.storage.flush_interval + Duration::from_secs(300));
    let writer = spawn_writer(
        store,
        rx,
        WriterOptions {
            flush_interval: config.storage.flush_interval,
            max_batch: 20_000,
            retention: Retention {
                max_age: config.storage.retention,
                max_bytes: config.storage.max_size_bytes,
            },
            retention_every: Duration::from_secs(600),
            settle: settle_time(config),
        },
        live.clone(),
        writer_beat,
        handover.clone(),
    );
    let (shutdown, shutdown_rx) = watch::channel(false);
    // Parameter changes are stored (with their audit entries) by a thread of their own, then
    // pushed by the platform links.
    let keeper = crate::store::params::spawn(Store::open_secondary(&config.storage.path)?);
    let buses = spawn_buses(config, tx, Some(keeper.sink), live.clone(), &progress, shutdown_rx.clone());
    // The outbox owns every link's queue on its own thread; it ends once the links are gone.
    let (outbox, outbox_thread) = Outbox::spawn(Store::open_secondary(&config.storage.path)?);
    let links = crate::uplink::spawn_links(
        &shared,
        &outbox,
        live.clone(),
        shutdown_rx,
        crate::lifecycle::process_started_ms(),
        Some(&keeper.changes),
    )?;
    drop(outbox);
    let secondary = Store::open_secondary(&config.storage.path)?;
    let worker = Figures::new(shared.clone(), secondary, live.clone(), handover.clone());
    let figures_beat = progress.register("emission statistics", Duration::from_secs(600));
    let figures =
        std::thread::Builder::new().name("figures".into()).spawn(move || worker.run(figures_beat))?;
    let web = config.web.listen.and_then(|address| {
        crate::web::Server::start(address, shared_web_context(shared.clone(), &live, Some(progress.clone())))
    });
    Ok(Gateway {
        live,
        progress,
        shutdown,
        buses,
        links,
        outbox: outbox_thread,
        params: keeper.thread,
        writer,
        figures: (handover, figures),
        web,
    })
}

/// How long after a minute ends its samples may still be on their way to the store: a poll is
/// stamped when it starts, so the slowest poll interval and the longest request deadline, plus
/// two flush intervals. The writer seals a minute this long after it ends.
pub fn settle_time(config: &Config) -> Duration {
    let poll = config.devices.iter().map(|d| d.poll_interval).max().unwrap_or_default();
    let timeout = config.buses.iter().map(|b| b.timeout + b.inter_frame).max().unwrap_or_default();
    config.storage.flush_interval * 2 + poll + timeout
}

/// What the status page shows of a running pipeline.
pub fn web_context(
    config: &Config,
    live: &Arc<Live>,
    progress: Option<Arc<Progress>>,
) -> crate::web::Context {
    shared_web_context(Arc::new(config.clone()), live, progress)
}

fn shared_web_context(
    config: Arc<Config>,
    live: &Arc<Live>,
    progress: Option<Arc<Progress>>,
) -> crate::web::Context {
    crate::web::Context { config, live: live.clone(), progress, started: crate::lifecycle::process_started() }
}

impl Gateway {
    /// Where the status page listens, if it runs.
    pub fn web_address(&self) -> Option<std::net::SocketAddr> {
        self.web.as_ref().map(|w| w.address)
    }

    /// Stops the buses (each finishes its request in flight, within [`STOP_GRACE`]), then lets
    /// the store commit everything it was sent. Returns the store for inspection.
    pub async fn stop(mut self) -> Option<Store> {
        // The page first: on a reload the new pipeline binds the same address.
        if let Some(web) = self.web.take() {
            web.stop().await;
        }
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while let Some(r) = self.buses.join_next().await {
                if let Err(e) = r {
                    tracing::error!(error = %e, "A bus task failed.");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("Bus tasks did not stop within the grace period; aborting them.");
            self.buses.abort_all();
            while self.buses.join_next().await.is_some() {}
        }
        // Platform links stop at their next await; what they had not sent stays queued.
        if tokio::time::timeout(STOP_GRACE, async { while self.links.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            self.links.abort_all();
            while self.links.join_next().await.is_some() {}
        }
        let writer = self.writer;
        let outbox = self.outbox;
        let params = self.params;
        let (handover, figures) = self.figures;
        tokio::task::spawn_blocking(move || {
            // The links are gone: the outbox writes its last cursors and ends.
            outbox.join();
            // The buses are gone: the parameter keeper stores what it was sent and ends.
            let _ = params.join();
            // The writer seals its last minutes and closes the handover; the worker stores
            // their records and ends. Closed here too, should the writer have died.
            let store = writer.join();
            handover.close();
            let _ = figures.join();
            store
        })
        .await
        .ok()
        .flatten()
    }
}

/// Resolves when SIGTERM (systemd's stop) or SIGINT (Ctrl-C) arrives; for commands that do not
/// reload (demo, simulate), SIGHUP is logged and ignored.
pub async fn termination() {
    let mut signals = Signals::install().expect("installing signal handlers");
    while signals.next().await != Signal::Stop {}
}

/// How often the running daemon hands freed heap pages back (see [`release_freed_memory`]).
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Hands memory freed after start-up back to the kernel.
///
/// Parsing a large configuration (10,000 points is 600 KB of TOML) allocates about 25 MB that
/// is all freed before polling starts, but glibc keeps freed heap pages mapped. On a
/// Pi-class gateway that would count against the daemon's memory for its whole life.
pub fn release_startup_memory() {
    release_freed_memory();
}

/// Hands whole free pages inside the heap back to the kernel. Snapshots for the status page
/// and the real-time uploads allocate a few MB at 10,000 points and free them at once; glibc
/// keeps such pages, scattered between live allocations, mapped until asked.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the kernel; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops the pages of the program's own code from its resident set once the pipeline runs:
/// start-up code (argument and configuration parsing, validation, migrations) is not needed
/// again, and the pages polling uses come back from the page cache on first use. Only mappings
/// of the executable that cannot be written and hold no page of their own (relocated data made
/// read-only after start does) are dropped, so nothing is lost.
pub fn release_startup_code() {
    #[cfg(target_os = "linux")]
    {
        let (Ok(exe), Ok(smaps)) =
            (std::fs::read_link("/proc/self/exe"), std::fs::read_to_string("/proc/self/smaps"))
        else {
            return;
        };
        let mut mapping: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let Some(first) = fields.next() else { continue };
            if let Some((start, end)) = first.split_once('-')
                && let (Ok(start), Ok(end)) =
                    (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
            {
                // A mapping's header line: `start-end perms offset dev inode path`.
                let perms = fields.next().unwrap_or("");
                let ours = fields.nth(3).map(Path::new) == Some(exe.as_path());
                mapping = (ours && !perms.contains('w')).then_some((start, end));
            } else if first == "Anonymous:"
                && fields.next() == Some("0")
                && let Some((start, end)) = mapping.take()
            {
                // SAFETY: a private mapping of the executable that cannot be written and has no
                // page of its own: its pages are the file's, read again on the next access.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
                }
            }
        }
    }
}

/// Caps glibc's malloc arenas at two. By default each thread that meets contention gets an
/// arena of its own, up to eight per core, and each keeps the memory it freed: a few MB on a
/// 4-core Pi for a daemon whose threads allocate little (measured: `benches/memory.rs`).
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets an allocator parameter; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The configuration as the pipeline keeps it: a deep clone holds no spare capacity, where the
/// parsed one keeps the growth room of every vector filled during the parse (about half of a
/// 10,000-point configuration's 2.5 MB, measured by `benches/memory.rs`).
pub fn compact(config: Config) -> Arc<Config> {
    let mut compact = config.clone();
    for device in &mut compact.devices {
        *device = Arc::new(crate::config::Device::clone(device));
    }
    Arc::new(compact)
}

/// Longest graceful stop: the buses' grace, then the final commit and checkpoint.
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// `cems-gateway run`: acquisition until SIGTERM/SIGINT. SIGHUP re-reads `path`: a valid new
/// configuration restarts the pipeline with it (buses closed, buffer flushed, everything started
/// again); an invalid one is reported and the running configuration kept.
pub async fn run(path: &Path, config: Config) -> anyhow::Result<()> {
    limit_malloc_arenas();
    let mut config = compact(config);
    if let Some((step_ms, after)) = crate::clock::injected_step() {
        tracing::warn!(
            step_ms,
            after_s = after.as_secs(),
            "Fault injection: this process's wall clock will be stepped."
        );
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            crate::clock::apply_injected_step(step_ms);
        });
    }
    let notifier = Notifier::from_env();
    let mut signals = Signals::install().context("installing signal handlers")?;
    let mut reason = "start";
    loop {
        release_startup_memory();
        let gateway = start_shared(config.clone(), reason)?;
        release_startup_code();
        reason = "reload";
        tracing::info!(buses = config.buses.len(), devices = config.devices.len(), "Gateway running.");
        // The clock's state is known before READY, so the first STATUS= line already says it.
        let mut clock = ClockWatch::new();
        clock.check(&config.storage.path, &gateway.live);
        notifier.ready(&status_line(&config, &gateway.live));
        // Ping at half the watchdog period (never slower than every 5 s for the status line).
        let tick = notifier.watchdog.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stalled_before = false;
        let mut trimmed = std::time::Instant::now();
        let next = loop {
            tokio::select! {
                _ = ticker.tick() => {
                    stalled_before = supervise(&config, &gateway, &notifier, stalled_before);
                    clock.check(&config.storage.path, &gateway.live);
                    if trimmed.elapsed() >= TRIM_EVERY {
                        trimmed = std::time::Instant::now();
                        release_freed_memory();
                    }
                }
                signal = signals.next() => match signal {
                    Signal::Stop => break None,
                    Signal::Reload => match config::load(path) {
                        Ok(new) => break Some(new),
                        Err(e) => tracing::error!(problems = %e.to_string().trim_end(), "The changed configuration is invalid; keeping the running one."),
                    },
                },
            }
        };
        match next {
            None => {
                notifier.stopping();
                match tokio::time::timeout(STOP_DEADLINE, gateway.stop()).await {
                    Ok(store) => {
                        tracing::info!(stored = store.map(|s| s.count().unwrap_or(0)), "Gateway stopped.")
                    }
                    Err(_) => tracing::error!("Stop deadline passed; exiting without the final flush."),
                }
                return Ok(());
            }
            Some(new) => {
                notifier.reloading();
                gateway.stop().await;
                config = compact(new);
                tracing::info!("Configuration reloaded; pipeline restarted.");
            }
        }
    }
}

/// The supervision loop's eye on the wall clock: steps (NTP after a long power cut, a person,
/// the fault hook) go into the audit log, since samples on either side of a step carry the
/// clock's time; and whether the kernel says the clock is synchronised, shown on the page,
/// `/metrics` and `STATUS=`, with every change audited.
struct ClockWatch {
    steps: crate::clock::StepDetector,
    sync: Option<crate::clock::Sync>,
    last_sync_check: Option<std::time::Instant>,
}

impl ClockWatch {
    /// The kernel's synchronisation state changes slowly: asked once a minute.
    const SYNC_EVERY: Duration = Duration::from_secs(60);

    fn new() -> ClockWatch {
        ClockWatch {
            steps: crate::clock::StepDetector::new(crate::clock::mono_ms(), crate::model::now_ms()),
            sync: None,
            last_sync_check: None,
        }
    }

    fn check(&mut self, db: &Path, live: &Live) {
        if let Some(step) = self.steps.observe(crate::clock::mono_ms(), crate::model::now_ms()) {
            tracing::warn!(step_ms = step, "The system clock was stepped.");
            let detail = format!("system clock stepped by {step} ms to {}", crate::model::now_ms());
            audit(db, AuditKind::Clock, "system", &detail);
        }
        if self.last_sync_check.is_some_and(|t| t.elapsed() < Self::SYNC_EVERY) {
            return;
        }
        self.last_sync_check = Some(std::time::Instant::now());
        let sync = crate::clock::discipline();
        live.set_clock_sync(sync);
        let changed = self.sync.is_none_or(|old| old.is_synchronised() != sync.is_synchronised());
        if changed {
            match sync {
                crate::clock::Sync::Synchronised { max_error_ms } => {
                    tracing::info!(max_error_ms, "The system clock is synchronised.")
                }
                other => tracing::warn!(
                    state = other.label(),
                    "The system clock is not synchronised: sample times may be wrong until chrony (NTP) or an RTC sets it."
                ),
            }
            audit(db, AuditKind::Clock, "system", &format!("clock {}", sync.label()));
        }
        self.sync = Some(sync);
    }
}

/// Appends one audit entry from the supervision loop (its own short-lived connection).
fn audit(db: &Path, kind: AuditKind, subject: &str, detail: &str) {
    if let Err(e) = Store::open_secondary(db).and_then(|mut s| s.audit(kind, subject, detail)) {
        tracing::error!(error = %e, "An audit entry could not be written.");
    }
}

/// One supervision tick: the watchdog ping only while every part makes progress, and the
/// status line. Returns whether something is stalled, to log each episode once.
fn supervise(config: &Config, gateway: &Gateway, notifier: &Notifier, stalled_before: bool) -> bool {
    let stalled = gateway.progress.stalled();
    // The logger's own working state (HJ 212 i22001) as the platforms are told it.
    gateway.live.set_stalled(!stalled.is_empty());
    if stalled.is_empty() {
        if notifier.watchdog.is_some() {
            notifier.watchdog();
        }
        if stalled_before {
            tracing::info!("Every part makes progress again; watchdog pings resumed.");
        }
        notifier.status(&status_line(config, &gateway.live));
        return false;
    }
    if !stalled_before {
        let parts: Vec<String> =
            stalled.iter().map(|(n, d)| format!("{n} silent for {} s", d.as_secs())).collect();
        tracing::error!(stuck = %parts.join(", "), "Pipeline stuck: watchdog pings withheld so that systemd restarts the service.");
    }
    notifier.status(&format!(
        "STUCK: {}",
        stalled.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
    ));
    true
}

/// The one-line summary for `systemctl status`.
pub fn status_line(config: &Config, live: &Live) -> String {
    let health = live.devices();
    let lost = health.values().filter(|h| h.consecutive_failures > 0).count();
    let n = |n: usize, one: &str, many: &str| crate::commands::plural(n as u64, one, many);
    let mut line = format!(
        "polling {} on {}; {lost} without data; {} stored",
        n(config.devices.len(), "device", "devices"),
        n(config.buses.len(), "bus", "buses"),
        n(live.samples_stored() as usize, "sample", "samples")
    );
    if let Some(sync) = live.clock_sync().filter(|s| !s.is_synchronised()) {
        line.push_str(&format!("; clock {}", sync.label()));
    }
    for (name, link) in live.links() {
        let state = if link.connected { "up" } else { "DOWN" };
        line.push_str(&format!(
            "; {name} {state}, backlog {}",
            link.queue.kinds.iter().map(|k| k.backlog).sum::<u64>()
        ));
    }
    line
}

/// The demo configuration with its simulator address and buffer path filled in.
pub fn demo_config(sim_address: &str, db: &Path) -> anyhow::Result<Config> {
    demo_config_with_platform(sim_address, db, None)
}

/// The demo configuration, with a platform link to `platform` if given.
pub fn demo_config_with_platform(
    sim_address: &str,
    db: &Path,
    platform: Option<&str>,
) -> anyhow::Result<Config> {
    let mut text = config::DEMO_CONFIG.replace("127.0.0.1:1502", sim_address);
    if let Some(address) = platform {
        // Minute data per minute so that uploads show within the demo's first minutes.
        text.push_str(&format!(
            "\n[[uplink]]\nname = \"demo-platform\"\naddress = \"{address}\"\nrtd_interval_s = 30\nmin_interval = 1\n"
        ));
    }
    let mut cfg = config::validate::parse(&text, Path::new(".")).map_err(|errs| {
        anyhow::anyhow!(
            "compiled-in demo config is invalid: {}",
            errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        )
    })?;
    cfg.storage.path = db.to_path_buf();
    // The demo serves its page itself (on loopback, see `demo`); tests built on this config
    // must not take the plant's port.
    cfg.web.listen = None;
    Ok(cfg)
}

/// `cems-gateway report`: one outlet's month recomputed from the store's raw samples.
pub fn report(
    config: &Config,
    month: &str,
    outlet: Option<&str>,
    json: bool,
    mut out: impl std::io::Write,
) -> anyhow::Result<()> {
    let first = crate::time::Local::parse_month(month)
        .map(crate::time::Local::secs)
        .ok_or_else(|| anyhow::anyhow!("--month must be YYYY-MM, got {month:?}"))?;
    let with_devices: Vec<&config::Outlet> =
        config.outlets.iter().filter(|o| !config.outlet_devices(&o.name).is_empty()).collect();
    let outlet = match outlet {
        Some(name) => config.outlet(name).ok_or_else(|| anyhow::anyhow!("no outlet named {name:?}"))?,
        None if with_devices.len() == 1 => with_devices[0],
        None => anyhow::bail!(
            "give --outlet: this configuration has {} outlets with devices ({})",
            with_devices.len(),
            with_devices.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    let next = crate::compute::evaluate::period_start(crate::compute::Level::Month, first + 32 * 86_400);
    if !config.storage.path.exists() {
        anyhow::bail!("no buffer at {}", config.storage.path.display());
    }
    // The daemon checked and migrated the file when it started; a report only reads samples.
    let store = Store::open_secondary(&config.storage.path)?;
    let (outcome, _) = crate::figures::evaluate_range(&store, config, outlet, first, next, |_| {})?;
    let spec = config.outlet_spec(outlet);
    let evidence = crate::web::evidence::period(&store, config, &outlet.name, first, next)?;
    if json {
        let heading = crate::report::Heading {
            profile: outlet.profile.as_deref(),
            outlet: Some(&outlet.name),
            month: Some(month),
        };
        // The month's figures with the parameter changes and marks beside them.
        let mut doc = Vec::new();
        crate::report::write_json(&mut doc, &outcome, &spec, heading)?;
        let mut doc: serde_json::Value = serde_json::from_slice(&doc)?;
        doc["parameters"] = serde_json::to_value(&evidence.parameters)?;
        doc["marks"] = serde_json::to_value(&evidence.marks)?;
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        write!(out, "Outlet {} — {month}\n{}", outlet.name, crate::report::to_table(&outcome, &spec))?;
        write!(out, "{}", crate::web::evidence::period_table(&evidence))?;
    }
    Ok(())
}

/// The probe of an hj212 input bus: listens (or reads the port) until each device has sent a
/// real-time frame, or its interval plus the bus timeout has passed. Returns the failures.
async fn probe_hj212_input(
    config: &Config,
    bus_index: usize,
    devices: &[&crate::config::Device],
    out: &mut String,
) -> usize {
    use std::fmt::Write as _;
    if devices.is_empty() {
        return 0;
    }
    let bus = config.buses[bus_index].clone();
    let wait = devices.iter().map(|d| d.poll_interval).max().unwrap_or_default() + bus.timeout;
    let _ =
        writeln!(out, "bus {} hj212 {}: waiting up to {wait:?} for frames", bus.name, bus.link.endpoint());
    let plans = devices.iter().map(|d| DevicePlan::new((*d).clone())).collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let task = crate::acquire::hj212in::InputTask::new(
        bus,
        plans,
        tx,
        Arc::new(Live::default()),
        config.site.utc_offset,
    );
    let (stop, stop_rx) = watch::channel(false);
    let handle = tokio::spawn(task.run(stop_rx));
    let deadline = tokio::time::Instant::now() + wait;
    let mut heard: std::collections::BTreeMap<String, Vec<crate::model::Sample>> = Default::default();
    while heard.len() < devices.len() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            // A frame gives at least one value or a flag other than B; silence gives only B.
            Ok(Some(samples))
                if samples.iter().any(|s| s.value.is_some() || s.flag != crate::model::Flag::B) =>
            {
                if let Some(first) = samples.first() {
                    heard.entry(first.device.to_string()).or_insert(samples);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let _ = stop.send(true);
    let _ = handle.await;
    let mut failures = 0;
    for d in devices {
        let _ = writeln!(
            out,
            "device {} (mn {})",
            d.name,
            match &d.protocol {
                crate::config::Protocol::Hj212 { mn: Some(mn) } => mn.as_str(),
                _ => "any",
            }
        );
        match heard.get(&d.name) {
            Some(samples) => {
                for (s, p) in samples.iter().zip(&d.points) {
                    let value = s.value.map(|v| format!("{v}")).unwrap_or_else(|| "—".into());
                    let _ = writeln!(out, "  {:<8} {:>14} {:<6} {}", s.factor, value, p.unit, s.flag);
                }
            }
            None => {
                failures += 1;
                let _ = writeln!(out, "  error: no HJ 212 real-time frame within {wait:?}");
            }
        }
    }
    failures
}

/// `cems-gateway probe`: polls each selected device once and reports raw registers and
/// decoded values, for an installer checking a register map.
pub async fn probe(config: &Config, device: Option<&str>) -> anyhow::Result<String> {
    let selected: Vec<&crate::config::Device> =
        config.devices.iter().filter(|d| device.is_none_or(|n| n == d.name)).map(|d| &**d).collect();
    if selected.is_empty() {
        anyhow::bail!("no device named {:?}", device.unwrap_or_default());
    }
    let mut out = String::new();
    let mut failures = 0;
    for bus_index in 0..config.buses.len() {
        if config.buses[bus_index].link.is_hj212() {
            let on_bus: Vec<&crate::config::Device> =
                selected.iter().copied().filter(|d| d.bus == bus_index).collect();
            failures += probe_hj212_input(config, bus_index, &on_bus, &mut out).await;
            continue;
        }
        let mut link = Link::new(config.buses[bus_index].clone());
        for d in selected.iter().filter(|d| d.bus == bus_index) {
            let plan = DevicePlan::new((*d).clone());
            let outcome = link.poll(&plan).await;
            let bus = link.bus();
            let _ = writeln!(
                out,
                "device {} (bus {} {} {}, slave {})",
                d.name,
                bus.name,
                bus.link.kind(),
                bus.link.endpoint(),
                d.slave
            );
            for (block, result) in plan.blocks.iter().zip(&outcome.blocks) {
                let fc = match block.table {
                    crate::acquire::registers::Table::Holding => 3,
                    crate::acquire::registers::Table::Input => 4,
                };
                let raw = match result {
                    BlockResult::Ok(regs) => {
                        regs.iter().map(|r| format!("{r:04X}")).collect::<Vec<_>>().join(" ")
                    }
                    BlockResult::Lost => "(not read)".into(),
                    BlockResult::DeviceFailure => "(exception: device failure)".into(),
                };
                let _ = writeln!(out, "  FC{fc:02} {} @{} ×{}: {raw}", block.table, block.start, block.count);
            }
            for (s, p) in outcome.samples.iter().zip(&d.points) {
                let value = s.value.map(|v| format!("{v}")).unwrap_or_else(|| "—".into());
                let _ = writeln!(out, "  {:<8} {:>14} {:<6} {}", s.factor, value, p.unit, s.flag);
            }
            if let Some(e) = &outcome.error {
                failures += 1;
                let _ = writeln!(out, "  error: {e}");
                out.push_str(&wrap(&format!("what to check: {}", e.hint(&bus.link)), "  ", 96));
            }
            // A device counts once, whether its points or its parameters failed.
            let params_failed = probe_parameters(&mut link, d, &mut out).await;
            if outcome.error.is_none() {
                failures += params_failed;
            }
        }
    }
    if failures > 0 {
        let devices = if failures == 1 { "1 device".to_string() } else { format!("{failures} devices") };
        anyhow::bail!("{out}{devices} failed");
    }
    Ok(out)
}

/// Reads a device's key parameters once, group by group, and prints what each gave (raw
/// registers and value, or why not). Returns 1 when a read failed.
async fn probe_parameters(link: &mut Link, d: &crate::config::Device, out: &mut String) -> usize {
    let plan = crate::acquire::params::ParamPlan::new(&d.parameters, d.max_gap);
    let mut failed = 0;
    for (g, group) in plan.groups.iter().enumerate() {
        let mut results = Vec::with_capacity(group.blocks.len());
        for block in &group.blocks {
            match link.read(d.slave, block.table, block.start, block.count).await {
                Ok(regs) => {
                    let hex: Vec<String> = regs.iter().map(|r| format!("{r:04X}")).collect();
                    let _ = writeln!(
                        out,
                        "  parameters {} @{} ×{}: {}",
                        block.table,
                        block.start,
                        block.count,
                        hex.join(" ")
                    );
                    results.push(BlockResult::Ok(regs));
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "  parameters {} @{} ×{}: error: {e}",
                        block.table, block.start, block.count
                    );
                    results.push(BlockResult::Lost);
                    failed = 1;
                }
            }
        }
        for (index, value) in plan.decode(g, &results) {
            let p = &plan.params[index];
            let name = crate::factors::info(&p.code).map_or("", |f| f.en);
            let pol = p.pol.as_deref().map(|f| format!(" ({f})")).unwrap_or_default();
            let shown = match value {
                Ok(v) => format!("{} {}", v.text, p.unit),
                Err(why) => format!("— ({why})"),
            };
            let _ = writeln!(out, "  {} {name}{pol}: {}", p.code, shown.trim_end());
        }
    }
    failed
}

/// Wraps `text` at spaces into lines of at most `width` characters, each starting with `indent`.
fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&format!("{indent}{line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{indent}{line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_an_unsynchronised_clock_and_only_then() {
        let text = include_str!("../config/demo.toml");
        let config = crate::config::validate::parse(text, Path::new("/")).expect("the demo configuration");
        let live = Live::default();
        assert!(!status_line(&config, &live).contains("clock"), "not checked yet: nothing claimed");
        live.set_clock_sync(crate::clock::Sync::Unsynchronised);
        let line = status_line(&config, &live);
        assert!(line.contains("; clock unsynchronised"), "{line}");
        live.set_clock_sync(crate::clock::Sync::Synchronised { max_error_ms: 12 });
        assert!(!status_line(&config, &live).contains("clock"));
    }
}
