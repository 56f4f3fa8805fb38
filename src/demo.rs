//! `cems-gateway demo`: the simulator, the gateway, a local buffer, the status page and a
//! platform in one process, with the live values in the terminal.
//!
//! Before the live run the demo records a simulated past (a day by default) through the
//! gateway's own path, so that a newcomer sees a full page at once: the simulator's registers at
//! each past poll time are decoded by the devices' read plans, the samples written by the store,
//! and the records computed by the statistics worker hour by hour, as the daemon would have;
//! the platform link then uploads them. The past has a calibration, a kiln stop, a dust meter
//! off the line and an exceedance.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::acquire::DevicePlan;
use crate::acquire::plan::BlockResult;
use crate::app::{demo_config_with_platform, start, termination, web_context};
use crate::compute::evaluate::period_start;
use crate::compute::{Level, realtime};
use crate::config::{Config, Protocol};
use crate::figures::Figures;
use crate::live::Live;
use crate::model::{Flag, Sample, now_ms};
use crate::sim::{self, Event, EventKind, Script, Sim};
use crate::store::Store;

/// `cems-gateway demo`: simulator and gateway in one process, live values in the terminal;
/// `history` of simulated past first (zero for none). When it ends, it prints the commands that
/// report on, export and verify its buffer.
pub async fn demo(duration: Option<Duration>, db: &Path, history: Duration) -> anyhow::Result<()> {
    let sim = Arc::new(Sim::new(Default::default(), Script::demo()));
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the simulator")?;
    let address = listener.local_addr()?.to_string();
    let server = tokio::spawn(sim::serve_tcp(listener, sim));
    let platform_listener = TcpListener::bind("127.0.0.1:0").await.context("binding the demo platform")?;
    let platform_address = platform_listener.local_addr()?.to_string();
    let platform = sim::platform::serve(platform_listener, Duration::ZERO, false);
    let config = demo_config_with_platform(&address, db, Some(&platform_address))?;
    crate::telemetry::set_plant_offset(config.site.utc_offset_s);
    let config_file = write_config(db)?;
    println!(
        "cems-gateway demo: simulated CEMS on {address}, HJ 212 platform on {platform_address}, buffer {} (configuration {})",
        db.display(),
        config_file.display()
    );
    if !history.is_zero() {
        let seeded = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || seed_history(&config, history, now_ms())).await??
        };
        println!("{seeded}");
    }
    println!(
        "Scripted every 2 min: gas analyzer calibration at 20 s (C), dust meter silent at 45 s (B), exceedance at 75 s."
    );
    let gateway = start(&config)?;
    // The status page on loopback: port 8080 when free, else any free port.
    let page =
        crate::web::bind_or_ephemeral(std::net::SocketAddr::from(([127, 0, 0, 1], 8080))).and_then(|l| {
            crate::web::Server::spawn(l, web_context(&config, &gateway.live, Some(gateway.progress.clone())))
        });
    let page_url = match &page {
        Ok(server) => format!("http://{}/", server.address),
        Err(e) => format!("(not available: {e})"),
    };
    println!("Status page: {page_url}");
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = termination();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if started.elapsed() > Duration::from_millis(500) {
                    print!("{}", render_live(&config, &gateway.live, std::io::stdout().is_terminal()));
                    print!("{}", render_platform(&platform.snapshot()));
                    println!("Status page: {page_url}\n");
                }
                if duration.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
            }
            _ = &mut stop => break,
        }
    }
    if let Ok(page) = page {
        page.stop().await;
    }
    let store = gateway.stop().await;
    server.abort();
    let stored = store.as_ref().map(|s| s.count().unwrap_or(0)).unwrap_or(0);
    let first =
        store.as_ref().and_then(|s| s.samples(0, i64::MAX).ok()).and_then(|v| v.first().map(|s| s.ts_ms));
    println!("Demo stopped: {stored} samples in {}.", db.display());
    print!("{}", closing_commands(&config, db, &config_file, first.unwrap_or_else(now_ms), now_ms()));
    Ok(())
}

/// The demo's configuration, written beside its buffer (`cems-demo.db` → `cems-demo.toml`) with
/// the buffer's absolute path, so that `report` and `export` can be given it from any folder.
fn write_config(db: &Path) -> anyhow::Result<PathBuf> {
    let path = db.with_extension("toml");
    let absolute = std::path::absolute(db).context("resolving the buffer's path")?;
    let storage =
        format!("path = {:?}            # written by `cems-gateway demo`", absolute.display().to_string());
    let text: Vec<String> = crate::config::DEMO_CONFIG
        .lines()
        .map(
            |line| {
                if line.starts_with("path = \"cems-demo.db\"") { storage.clone() } else { line.to_string() }
            },
        )
        .collect();
    std::fs::write(&path, text.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// What the demo prints when it ends: the exact commands that report on, export and verify its
/// buffer (they are run by a test).
pub fn closing_commands(
    config: &Config,
    db: &Path,
    config_file: &Path,
    first_ms: i64,
    now_ms: i64,
) -> String {
    let offset = config.site.utc_offset_s;
    let day = |ms: i64| crate::report::format_local(ms.div_euclid(1000) + offset)[..10].to_string();
    let month = &day(now_ms)[..7];
    let program = program_name();
    let quote = |p: &Path| shell_word(&p.display().to_string());
    format!(
        "Look at this buffer (its configuration is {cfg}):\n  \
         {program} report --config {cfg} --month {month}\n  \
         {program} export --config {cfg} --from {from} --to {to} --level hour\n  \
         {program} verify --db {db}\n",
        cfg = quote(config_file),
        db = quote(db),
        from = day(first_ms),
        to = day(now_ms),
    )
}

/// How this program was started (`target/release/cems-gateway` under cargo, else its name).
fn program_name() -> String {
    let arg0 = std::env::args().next().unwrap_or_default();
    if arg0.contains('/') { shell_word(&arg0) } else { "cems-gateway".into() }
}

/// A word for a POSIX shell: as is when it is plain, else in single quotes.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What the simulated past does, in whole hours before the current one (all of it within 10
/// hours): the kiln stops for the 9th and 8th hours back (and the operator marks the 7th, its
/// start-up, in `seed_history`), the gas analyzer calibrates for 25
/// minutes from the start of the 6th, every concentration is about four times its usual level
/// (above the limits) for the 5th and 4th, and the dust meter is off the line for 10 minutes
/// 100 minutes before the current hour. `length` is the past's length, `into_hour` how far the
/// current hour has gone at its end.
fn history_script(length: Duration, into_hour: Duration) -> Script {
    let h = |hours: f64| Duration::from_secs_f64(hours * 3600.0);
    let events = [
        (EventKind::Stop, h(9.0), h(2.0), Some(3)),
        (EventKind::Calibration, h(6.0), Duration::from_secs(25 * 60), Some(1)),
        (EventKind::Exceed, h(5.0), h(2.0), None),
        (EventKind::Drop, Duration::from_secs(100 * 60), Duration::from_secs(10 * 60), Some(2)),
    ];
    Script {
        events: events
            .into_iter()
            .filter(|(_, back, _, _)| *back + into_hour <= length)
            .map(|(kind, back, duration, slave)| Event {
                kind,
                start: length - into_hour - back,
                duration,
                slave,
            })
            .collect(),
        every: None,
    }
}

/// Records `length` of simulated past ending at `now_ms` into the configuration's buffer,
/// through the gateway's own path (see the module's documentation). Does nothing to a buffer
/// that already holds samples. Returns a line for the terminal.
pub fn seed_history(config: &Config, length: Duration, now_ms: i64) -> anyhow::Result<String> {
    let (mut store, _) = Store::open(&config.storage.path)
        .with_context(|| format!("opening the buffer {}", config.storage.path.display()))?;
    if store.count()? > 0 {
        return Ok("The buffer already holds data: no simulated past added.".into());
    }
    let started = std::time::Instant::now();
    let into_hour = Duration::from_millis(now_ms.rem_euclid(3_600_000) as u64);
    let sim = Sim::new(Default::default(), history_script(length, into_hour));
    let plans: Vec<DevicePlan> = config
        .devices
        .iter()
        .filter(|d| matches!(d.protocol, Protocol::Modbus))
        .map(|d| DevicePlan::new(d.clone()))
        .collect();
    let step = plans.iter().map(|p| p.device.poll_interval).min().unwrap_or(Duration::from_secs(2));
    let step_ms = step.as_millis().max(100) as i64;
    let start_ms = (now_ms - length.as_millis() as i64).div_euclid(step_ms) * step_ms;
    let mut batch: Vec<Sample> = Vec::with_capacity(20_000);
    let mut n = 0;
    let mut ts = start_ms;
    while ts < now_ms {
        let at = Duration::from_millis((ts - start_ms) as u64);
        for plan in &plans {
            batch.extend(poll_at(&sim, plan, at, ts));
        }
        if batch.len() >= 10_000 {
            n += store.insert(&batch)?;
            batch.clear();
        }
        ts += step_ms;
    }
    n += store.insert(&batch)?;
    drop(store);

    // After the stop, the operator marked the kiln's start-up hour (the 7th back), as the
    // marking rules ask: its data are flagged F and not judged against the limits.
    let start_up = now_ms - now_ms.rem_euclid(3_600_000) - 7 * 3_600_000;
    if start_up >= start_ms {
        use crate::compute::marks::{Kind, Mark, Rules};
        let offset = config.site.utc_offset_s;
        let fmt = move |ms: i64| crate::web::status::fmt_local(ms.div_euclid(1000) + offset);
        let rules = Rules { now_ms, window_ms: config.marks.window.as_millis() as i64, fmt: &fmt };
        let outlet = config.outlets.first().map(|o| o.name.clone()).unwrap_or_default();
        let mark = Mark {
            id: 0,
            outlet,
            kind: Kind::StartUp,
            start_ms: start_up,
            end_ms: Some(start_up + 3_600_000),
            reason: "窑启动 kiln start-up after the stop".into(),
            who: "demo".into(),
        };
        Store::open_secondary(&config.storage.path)?.add_mark(mark, rules, "demo")?;
    }

    // The statistics worker, run at the end of every past hour as the daemon runs it every
    // minute: closed minutes, hours and days become records.
    let offset = config.site.utc_offset_s;
    let secondary = Store::open_secondary(&config.storage.path)?;
    let mut figures = Figures::new(Arc::new(config.clone()), secondary, Arc::new(Live::default()));
    let local_now = now_ms.div_euclid(1000) + offset;
    let mut hour = period_start(Level::Hour, start_ms.div_euclid(1000) + offset) + 3600;
    while hour <= local_now {
        figures.run_once(hour + 10)?;
        hour += 3600;
    }
    figures.run_once(local_now)?;
    Ok(format!(
        "Recorded a simulated past of {} ({n} samples, with a calibration, a kiln stop and its start-up marked by the operator, the dust meter off the line and an exceedance) in {:.1} s.",
        match length.as_secs() {
            s if s % 3600 == 0 => format!("{} h", s / 3600),
            s => format!("{} min", s / 60),
        },
        started.elapsed().as_secs_f64()
    ))
}

/// One poll of a device as the simulator would have answered at `at` after its start, decoded
/// by the device's read plan.
fn poll_at(sim: &Sim, plan: &DevicePlan, at: Duration, ts_ms: i64) -> Vec<Sample> {
    let mut blocks = Vec::with_capacity(plan.blocks.len());
    for block in &plan.blocks {
        match sim::server::read_at(sim, plan.device.slave, block.table, block.start, block.count, at) {
            Ok(Some(regs)) => blocks.push(BlockResult::Ok(regs)),
            // No reply: the poll fails as a timeout does, every point B.
            Ok(None) => return plan.comm_failure(ts_ms),
            Err(tokio_modbus::ExceptionCode::ServerDeviceFailure) => blocks.push(BlockResult::DeviceFailure),
            Err(_) => blocks.push(BlockResult::Lost),
        }
    }
    plan.decode(&blocks, ts_ms)
}

/// What the demo's platform received, in one or two lines.
pub fn render_platform(r: &sim::platform::Received) -> String {
    let counts: Vec<String> =
        r.by_cn.iter().filter(|(cn, _)| !cn.starts_with('9')).map(|(cn, n)| format!("{cn} ×{n}")).collect();
    let mut out = format!(
        "HJ 212 platform received: {}\n",
        if counts.is_empty() { "nothing yet".into() } else { counts.join(", ") }
    );
    if let Some(p) = r.last.iter().rev().find(|p| matches!(p.cn.as_str(), "2051" | "2061" | "2031")) {
        let cp = p.cp.to_string();
        let cut: String = cp.chars().take(110).collect();
        out.push_str(&format!(
            "  last record: CN={} {cut}{}\n",
            p.cn,
            if cp.len() > cut.len() { "…" } else { "" }
        ));
    }
    out.push('\n');
    out
}

/// The live table shown by the demo: one line per value with its unit (table B.2), converted
/// value, flag and age, converted as a 2011 upload converts them ([`realtime::current`]).
pub fn render_live(config: &Config, live: &Live, clear: bool) -> String {
    let mut out = String::new();
    if clear {
        out.push_str("\x1b[2J\x1b[H");
    }
    let now = crate::model::now_ms();
    let current = live.current();
    let health = live.devices();
    let _ = writeln!(
        out,
        "{:<12} {:<24} {:>10} {:<6} {:>10} {:<4} {:>6}  note",
        "device", "factor", "value", "unit", "converted", "flag", "age"
    );
    for outlet in &config.outlets {
        let devices = config.outlet_devices(&outlet.name);
        let inputs = crate::live::inputs(&current, &devices);
        let newest = inputs.iter().map(|i| i.t * 1000).max().unwrap_or(now);
        for c in realtime::current(&config.outlet_spec(outlet), &inputs) {
            let device = devices.iter().find(|d| d.points.iter().any(|p| *p.factor == *c.factor));
            let ts = device
                .and_then(|d| current.get(&(d.name.clone(), c.factor.to_string())))
                .map_or(newest, |r| r.ts_ms);
            let fmt = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "—".into());
            let note = match c.flag {
                Flag::N => "",
                Flag::B => "communication lost: no value",
                Flag::C => "calibration",
                Flag::M => "maintenance",
                Flag::D => "instrument fault",
                Flag::F => "stopped",
                Flag::T => "above instrument range",
                Flag::S => "manual value",
            };
            let _ = writeln!(
                out,
                "{:<12} {:<24} {:>10} {:<6} {:>10} {:<4} {:>5.1}s  {}",
                device.map_or("(derived)", |d| d.name.as_str()),
                format!("{} {}", crate::factors::short(c.factor), c.factor),
                fmt(c.value),
                crate::factors::unit(c.factor),
                if c.zs.is_some() { fmt(c.zs) } else { String::new() },
                c.flag,
                (now - ts) as f64 / 1000.0,
                note
            );
        }
    }
    for d in &config.devices {
        if let Some(h) = health.get(&d.name).filter(|h| h.consecutive_failures > 0) {
            let _ = writeln!(
                out,
                "  ! {}: {} failed polls in a row: {}",
                d.name,
                h.consecutive_failures,
                h.last_error.as_deref().unwrap_or("")
            );
        }
    }
    for (outlet, hour) in live.open_hours() {
        let _ = writeln!(
            out,
            "\n{outlet}: open hour from {} (running averages of closed minutes, at reference O2)",
            &crate::report::format_local(hour.start)[11..]
        );
        for (factor, limit) in &hour.limits {
            let Some(stat) = hour.stats.get(factor) else { continue };
            let judged = stat.zs_avg.or(stat.avg);
            let verdict = match judged {
                Some(v) if v > *limit => "ABOVE LIMIT",
                Some(_) => "within limit",
                None => "no valid data",
            };
            let value = judged.map_or_else(|| "—".to_string(), |v| format!("{v:.2}"));
            let _ = writeln!(
                out,
                "  {:<8} {value:>8} / {limit:<6} {verdict:<13} ({})",
                crate::factors::short(factor),
                crate::commands::plural(u64::from(stat.n_valid), "valid minute", "valid minutes")
            );
        }
    }
    let _ = writeln!(out, "samples stored: {}\n", live.samples_stored());
    out
}
