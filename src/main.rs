//! The `cems-gateway` command: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cems_gateway::acquire::registers::WordOrder;
use cems_gateway::compute::evaluate::Basis;
use cems_gateway::compute::{OutletLimits, OutletSpec};
use cems_gateway::config::{self, EXIT_BAD_CONFIG};
use cems_gateway::{app, commands, report, sim, telemetry, web};
use clap::{Parser, Subcommand};

/// CEMS emission data logger: Modbus acquisition, SQLite buffer, HJ 212 uplink.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the systemd unit's command).
    Run {
        /// The configuration file (the service's is /etc/cems-gateway/cems-gateway.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file: exit 0 when valid, 64 with every problem listed when not,
    /// 66 when it cannot be read.
    CheckConfig {
        /// The configuration file to check.
        file: PathBuf,
    },
    /// Simulated analyzers, the gateway and a local buffer in one process, no files needed.
    Demo {
        /// Stop after this long (e.g. 90s, 5m); default: until Ctrl-C.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// The buffer file (created, or continued), relative to the current folder.
        #[arg(long, default_value = "cems-demo.db")]
        db: PathBuf,
        /// A simulated past of this length (e.g. 24h, 6h) is recorded before the live run, with
        /// a calibration, a stop and an exceedance, so that the page has hours and charts to show
        /// at once; 0 for none. Skipped when the buffer already has data.
        #[arg(long, default_value = "24h", value_parser = parse_history)]
        history: Duration,
    },
    /// Poll devices once and print raw registers, decoded values and what to check on errors.
    Probe {
        /// The configuration file: buses, devices and their register maps.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this device (default: every device).
        #[arg(long)]
        device: Option<String>,
    },
    /// Serve a simulated CEMS over Modbus TCP and/or RTU.
    Simulate {
        /// TCP listen address, e.g. 0.0.0.0:1502; repeat it for several servers of the same
        /// analyzers (one per bus, as in the benchmarks).
        #[arg(long)]
        tcp: Vec<String>,
        /// Serial device for an RTU server (a pty works).
        #[arg(long)]
        rtu: Option<String>,
        /// Baud rate of the RTU server (8 data bits, no parity, 1 stop bit).
        #[arg(long, default_value_t = 9600)]
        baud: u32,
        /// Word order of floats: ABCD, CDAB, BADC or DCBA.
        #[arg(long, default_value = "ABCD")]
        word_order: String,
        /// Events, e.g. "calibration@20s+15s/1,drop@45s+15s/2,exceed@75s+25s,every=2m"; "demo" for the demo's.
        #[arg(long, default_value = "")]
        script: String,
    },
    /// Print the compiled-in demo configuration (a starting point for a real one).
    PrintDemoConfig,
    /// Recompute the audit log's hash chain and check every record against it: exit 0 with the
    /// chain head when intact, 1 with the first broken link, 74 when the buffer cannot be read.
    Verify {
        /// The buffer file to check, e.g. a copy; needs no configuration.
        #[arg(long, required_unless_present = "config")]
        db: Option<PathBuf>,
        /// A configuration: its buffer ([storage] path) and plant time zone.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only entries written from this time and records of periods starting from it
        /// (YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS", local plant time).
        #[arg(long)]
        from: Option<String>,
        /// Up to (excluding) this time, same format.
        #[arg(long)]
        to: Option<String>,
    },
    /// One outlet's month from the gateway's own store: hourly checks, exceedances, compliance.
    Report {
        /// The configuration: the outlet's devices, limits and reference O2, and its buffer.
        #[arg(long, short)]
        config: PathBuf,
        /// Read this buffer file instead of the configuration's [storage] path (e.g. a copy).
        #[arg(long)]
        db: Option<PathBuf>,
        /// The month, YYYY-MM (local plant time).
        #[arg(long)]
        month: String,
        /// The outlet (needed when several have devices).
        #[arg(long)]
        outlet: Option<String>,
        /// A table for people, or JSON.
        #[arg(long, default_value = "table", value_parser = ["json", "table"])]
        format: String,
    },
    /// The running gateway's status (what its status page shows), in the terminal.
    Status {
        /// The gateway's status page.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The access token, when `[web] token` is set (default: the CEMS_TOKEN environment
        /// variable, which other users cannot see in the process list).
        #[arg(long)]
        token: Option<String>,
        /// Give up after this long.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Samples or records from the store as CSV (the same as /api/v1/export), streamed.
    Export {
        /// The buffer file, e.g. a copy; without --config its outlets and plant time are those
        /// the buffer records.
        #[arg(long, required_unless_present = "config")]
        db: Option<PathBuf>,
        /// A configuration: its buffer, outlets and devices.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Start, local plant time: YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS".
        #[arg(long)]
        from: String,
        /// End (exclusive); a bare date includes that day.
        #[arg(long)]
        to: String,
        /// Raw samples, minute, hour or day records, the analyzers' parameter changes, or the
        /// operators' marks.
        #[arg(long, default_value = "raw", value_parser = ["raw", "minute", "hour", "day", "parameters", "marks"])]
        level: String,
        /// Only this outlet (raw: its devices); default every outlet and device.
        #[arg(long)]
        outlet: Option<String>,
        /// The output format (CSV only).
        #[arg(long, default_value = "csv", value_parser = ["csv"])]
        format: String,
        /// Output file; "-" for standard output.
        #[arg(long, short, default_value = "-")]
        output: PathBuf,
    },
    /// A consistent copy of the buffer while the gateway runs (SQLite's online backup), then
    /// the copy's audit chain verified.
    Backup {
        /// The buffer to copy.
        #[arg(long, required_unless_present = "config")]
        db: Option<PathBuf>,
        /// A configuration: its buffer ([storage] path).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The copy to write (a new file; never overwritten).
        output: PathBuf,
    },
    /// Operators' marks (stopped, start-up, shutdown, fault, maintenance, calibration): the data
    /// they cover are flagged and not used to judge exceedances. Written to the buffer with their
    /// audit entries; the running gateway recomputes what they cover. Exit 65 when refused.
    Mark {
        #[command(subcommand)]
        action: MarkCommand,
    },
    /// Hourly limit checks and the monthly compliance rate from a CSV of real-time samples
    /// (header time,factor,value,flag; time as YYYY-MM-DD HH:MM:SS local plant time).
    Compliance {
        /// The CSV file of real-time samples.
        #[arg(long)]
        input: PathBuf,
        /// Limit profile: power-coal, steel-sinter-head, cement-kiln, coke-oven-chimney, custom.
        #[arg(long)]
        profile: String,
        /// Reference O2 (%), overriding the profile's.
        #[arg(long = "reference-o2")]
        reference_o2: Option<f64>,
        /// A limit override, FACTOR=VALUE (mg/m3), repeatable.
        #[arg(long = "limit", value_parser = parse_limit)]
        limits: Vec<(String, f64)>,
        /// Factor code of the facility run status (0 = stopped); default: any factor ending in -RS.
        #[arg(long = "run-status")]
        run_status: Option<String>,
        /// A factor whose values are in ppm, repeatable.
        #[arg(long = "ppm")]
        ppm: Vec<String>,
        /// Duct cross-section (m2), for the flow from the velocity.
        #[arg(long = "duct-area")]
        duct_area: Option<f64>,
        /// How a factor was measured, FACTOR=BASIS (dry-standard, dry-actual, wet-standard,
        /// wet-actual), repeatable; default dry-standard.
        #[arg(long = "basis", value_parser = parse_basis)]
        basis: Vec<(String, Basis)>,
        /// The flags whose samples count as valid, as `[statistics] valid_flags` (N required;
        /// T and S allowed).
        #[arg(long = "valid-flags", default_value = "N,T", value_parser = parse_valid_flags)]
        valid_flags: cems_gateway::model::FlagSet,
        /// JSON, or a table for people.
        #[arg(long, default_value = "json", value_parser = ["json", "table"])]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
enum MarkCommand {
    /// Marks a period (open until ended when --end is not given).
    Add {
        #[arg(long, short)]
        config: PathBuf,
        /// The outlet (needed when the configuration has several).
        #[arg(long)]
        outlet: Option<String>,
        /// stopped, start-up, shutdown, fault, maintenance (or debugging) or calibration.
        #[arg(long)]
        kind: String,
        /// Local plant time "YYYY-MM-DD HH:MM:SS".
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        reason: String,
        /// Who marks (a name, for the audit log).
        #[arg(long)]
        who: String,
    },
    /// Ends an open mark (at --end, default now).
    End {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        id: i64,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        who: String,
    },
    /// Changes a mark's start, end or reason.
    Edit {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        id: i64,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        /// Makes an ended mark open again.
        #[arg(long)]
        reopen: bool,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        who: String,
    },
    /// Lists the marks covering a period (default: the last 31 days).
    List {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        outlet: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
}

/// `cems-gateway mark …`.
fn mark(command: MarkCommand) -> ExitCode {
    use cems_gateway::mark::{Action, MarkCommandError, run};
    let (config, action) = match command {
        MarkCommand::Add { config, outlet, kind, start, end, reason, who } => {
            (config, Action::Add { outlet, kind, start, end, reason, who })
        }
        MarkCommand::End { config, id, end, who } => (config, Action::End { id, end, who }),
        MarkCommand::Edit { config, id, start, end, reopen, reason, who } => {
            (config, Action::Edit { id, start, end, reopen, reason, who })
        }
        MarkCommand::List { config, outlet, from, to, format } => {
            (config, Action::List { outlet, from, to, json: format == "json" })
        }
    };
    let cfg = match load_or_report(&config) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    match run(&cfg, action, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ MarkCommandError::Refused(_)) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_DATA_ERROR)
        }
        Err(e @ MarkCommandError::Store(_)) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_IO_ERROR)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init("info");
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    match cli.command {
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(c) => {
                let n = |n: usize, one: &str, many: &str| commands::plural(n as u64, one, many);
                println!(
                    "{}: OK ({}, {}, {}; buffer {})",
                    file.display(),
                    n(c.buses.len(), "bus", "buses"),
                    n(c.devices.len(), "device", "devices"),
                    n(c.outlets.len(), "outlet", "outlets"),
                    c.storage.path.display()
                );
                // Allowed, but probably not meant: said, and the file is still OK (exit 0).
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}", e.to_string().trim_end());
                ExitCode::from(e.exit_code())
            }
        },
        Command::Run { config } => {
            let cfg = match load_or_report(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            report(runtime.block_on(app::run(&config, cfg)))
        }
        Command::Probe { config, device } => {
            let cfg = match load_or_report(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            match runtime.block_on(app::probe(&cfg, device.as_deref())) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo { duration, db, history } => {
            report(runtime.block_on(cems_gateway::demo::demo(duration, &db, history)))
        }
        Command::Simulate { tcp, rtu, baud, word_order, script } => {
            let Some(order) = WordOrder::parse(&word_order) else {
                eprintln!("--word-order must be ABCD, CDAB, BADC or DCBA");
                return ExitCode::from(EXIT_BAD_CONFIG);
            };
            let script = if script == "demo" { Ok(sim::Script::demo()) } else { sim::Script::parse(&script) };
            let script = match script {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("--script: {e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            if tcp.is_empty() && rtu.is_none() {
                eprintln!("give --tcp ADDRESS and/or --rtu DEVICE");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            report(runtime.block_on(simulate(tcp, rtu, baud, Arc::new(sim::Sim::new(order, script)))))
        }
        Command::Compliance {
            input,
            profile,
            reference_o2,
            limits,
            run_status,
            ppm,
            duct_area,
            basis,
            valid_flags,
            format,
        } => {
            let Some(p) = cems_gateway::compute::limits::profile(&profile) else {
                let names: Vec<&str> =
                    cems_gateway::compute::limits::PROFILES.iter().map(|p| p.name).collect();
                eprintln!("--profile must be one of {}, got {profile:?}", names.join(", "));
                return ExitCode::from(EXIT_BAD_CONFIG);
            };
            if reference_o2.is_some_and(|o| !(0.0..21.0).contains(&o)) {
                eprintln!("--reference-o2 must be at least 0 and below 21");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            let overrides = limits.into_iter().collect();
            let mut spec = OutletSpec::new(OutletLimits::resolve(Some(p), reference_o2, &overrides));
            spec.run_status = run_status;
            spec.ppm = ppm.into_iter().collect();
            spec.flow.duct_area_m2 = duct_area;
            spec.basis = basis.into_iter().collect();
            spec.thresholds.valid_flags = valid_flags;
            match report::evaluate_csv(&input, spec.clone()) {
                Ok(outcome) => {
                    if format == "json" {
                        let heading = report::Heading { profile: Some(p.name), ..Default::default() };
                        match report::write_json(std::io::stdout().lock(), &outcome, &spec, heading) {
                            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                                eprintln!("cannot write the output: {e}");
                                ExitCode::FAILURE
                            }
                            _ => ExitCode::SUCCESS,
                        }
                    } else {
                        print_out(&report::to_table(&outcome, &spec))
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_DATA_ERROR)
                }
            }
        }
        Command::Report { config, db, month, outlet, format } => {
            let mut cfg = match load_or_report(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            if let Some(db) = db {
                cfg.storage.path = db;
            }
            match app::report(&cfg, &month, outlet.as_deref(), format == "json", std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
        Command::Status { url, token, timeout } => {
            let token = token.or_else(|| std::env::var("CEMS_TOKEN").ok().filter(|t| !t.is_empty()));
            match runtime.block_on(web::client::fetch_status(&url, token.as_deref(), timeout)) {
                Ok(status) => {
                    use std::io::IsTerminal;
                    print_out(&web::client::render_text(&status, std::io::stdout().is_terminal()))
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Export { db, config, from, to, level, outlet, format: _, output } => {
            let cfg = match config.as_deref().map(load_or_report).transpose() {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            match export(cfg.as_ref(), db.as_deref(), &from, &to, &level, outlet.as_deref(), &output) {
                Ok(rows) => {
                    tracing::debug!(rows, "Export written.");
                    ExitCode::SUCCESS
                }
                Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::from(command_exit(&e))
                }
            }
        }
        Command::Backup { db, config, output } => {
            let cfg = match config.as_deref().map(load_or_report).transpose() {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            let result = commands::buffer_path(cfg.as_ref(), db.as_deref())
                .and_then(|path| commands::backup(&path, &output));
            match result {
                Ok(text) => print_out(&text),
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(command_error_exit(&e))
                }
            }
        }
        Command::Verify { db, config, from, to } => {
            let cfg = match config.as_deref().map(load_or_report).transpose() {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            let result = commands::buffer_path(cfg.as_ref(), db.as_deref())
                .and_then(|path| commands::verify(&path, cfg.as_ref(), from.as_deref(), to.as_deref()));
            match result {
                Ok(v) => match print_out(&v.text) {
                    code if code != ExitCode::SUCCESS => code,
                    _ if v.intact => ExitCode::SUCCESS,
                    _ => ExitCode::from(EXIT_CHAIN_BROKEN),
                },
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(command_error_exit(&e))
                }
            }
        }
        Command::PrintDemoConfig => {
            print!("{}", config::DEMO_CONFIG);
            ExitCode::SUCCESS
        }
        Command::Mark { action } => mark(action),
    }
}

async fn simulate(
    tcp: Vec<String>,
    rtu: Option<String>,
    baud: u32,
    sim: Arc<sim::Sim>,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for address in tcp {
        let listener = tokio::net::TcpListener::bind(&address).await?;
        eprintln!("simulator: Modbus TCP on {}", listener.local_addr()?);
        tasks.spawn(sim::serve_tcp(listener, sim.clone()));
    }
    if let Some(path) = rtu {
        eprintln!("simulator: Modbus RTU on {path} at {baud} baud");
        let sim = sim.clone();
        tasks.spawn(async move { sim::serve_rtu(&path, baud, sim).await });
    }
    tokio::select! {
        Some(r) = tasks.join_next() => r??,
        _ = app::termination() => {}
    }
    Ok(())
}

/// `cems-gateway export`: the same rows as `/api/v1/export`, from the buffer directly.
fn export(
    cfg: Option<&config::Config>,
    db: Option<&std::path::Path>,
    from: &str,
    to: &str,
    level: &str,
    outlet: Option<&str>,
    output: &std::path::Path,
) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    let path = commands::buffer_path(cfg, db)?;
    let mut out: Box<dyn std::io::Write> = if output.as_os_str() == "-" {
        Box::new(std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock()))
    } else {
        let file = std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
        Box::new(std::io::BufWriter::with_capacity(64 * 1024, file))
    };
    Ok(commands::export(&path, cfg, from, to, level, outlet, &mut out)?)
}

/// The exit code of a buffer command's error: 64 for a bad argument, 74 when the buffer cannot
/// be read, 1 otherwise.
fn command_error_exit(e: &commands::CommandError) -> u8 {
    match e {
        commands::CommandError::Usage(_) => EXIT_BAD_CONFIG,
        commands::CommandError::Store(_) => EXIT_IO_ERROR,
        commands::CommandError::Output(_) => 1,
    }
}

fn command_exit(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<commands::CommandError>().map_or(1, command_error_exit)
}

/// `--history`: a duration, or 0 for none.
fn parse_history(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(7 * 86_400) {
        return Err("at most 7 days (e.g. 24h)".into());
    }
    Ok(d)
}

/// Writes a command's output; a closed pipe (`| head`) is not an error worth a panic.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `verify`: the audit chain or a record does not check out.
const EXIT_CHAIN_BROKEN: u8 = 1;

/// A buffer that cannot be opened or read (sysexits `EX_IOERR`).
const EXIT_IO_ERROR: u8 = 74;

/// Exit code for input data that cannot be read (sysexits `EX_DATAERR`).
const EXIT_DATA_ERROR: u8 = 65;

fn parse_basis(s: &str) -> Result<(String, Basis), String> {
    let (factor, basis) = s.split_once('=').ok_or("expected FACTOR=BASIS, e.g. a21026=wet-actual")?;
    let basis =
        Basis::parse(basis).ok_or("BASIS is one of dry-standard, dry-actual, wet-standard, wet-actual")?;
    Ok((factor.to_string(), basis))
}

fn parse_valid_flags(s: &str) -> Result<cems_gateway::model::FlagSet, String> {
    use cems_gateway::model::{Flag, FlagSet};
    let mut flags = Vec::new();
    for letter in s.split(',').map(str::trim) {
        match Flag::from_char(letter.chars().next().unwrap_or(' ')).filter(|_| letter.len() == 1) {
            Some(f @ (Flag::N | Flag::T | Flag::S)) => flags.push(f),
            _ => return Err(format!("{letter:?}: the valid flags are among N, T, S")),
        }
    }
    if !flags.contains(&Flag::N) {
        return Err("N must be one of the valid flags".into());
    }
    Ok(FlagSet::of(&flags))
}

fn parse_limit(s: &str) -> Result<(String, f64), String> {
    let (factor, value) = s.split_once('=').ok_or("expected FACTOR=VALUE, e.g. a21026=30")?;
    let value: f64 = value.parse().map_err(|_| format!("{value:?} is not a number"))?;
    if factor.is_empty() || !(value > 0.0 && value.is_finite()) {
        return Err("expected FACTOR=VALUE with a positive value".into());
    }
    Ok((factor.to_string(), value))
}

/// The configuration, or the exit code after saying why it cannot be used.
fn load_or_report(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    let config = config::load(path).map_err(|e| {
        eprintln!("{}", e.to_string().trim_end());
        ExitCode::from(e.exit_code())
    })?;
    telemetry::set_plant_offset(config.site.utc_offset);
    for w in &config.warnings {
        tracing::warn!(problem = %w, "The configuration is usable but probably not as meant.");
    }
    Ok(config)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "Stopped with an error.");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
