//! The `cems-gateway` command: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cems_gateway::acquire::registers::WordOrder;
use cems_gateway::compute::evaluate::Basis;
use cems_gateway::compute::{OutletLimits, OutletSpec};
use cems_gateway::config::{self, EXIT_BAD_CONFIG};
use cems_gateway::{app, report, sim, telemetry, web};
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
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file: exit 0 when valid, 64 with every problem listed when not.
    CheckConfig { file: PathBuf },
    /// Simulated analyzers, the gateway and a local buffer in one process, no files needed.
    Demo {
        /// Stop after this long (e.g. 90s, 5m); default: until Ctrl-C.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Buffer file.
        #[arg(long, default_value = "cems-demo.db")]
        db: PathBuf,
    },
    /// Poll devices once and print raw registers and decoded values.
    Probe {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
    },
    /// Serve a simulated CEMS over Modbus TCP and/or RTU.
    Simulate {
        /// TCP listen address, e.g. 0.0.0.0:1502.
        #[arg(long)]
        tcp: Option<String>,
        /// Serial device for an RTU server (a pty works).
        #[arg(long)]
        rtu: Option<String>,
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
        #[arg(long, short)]
        config: PathBuf,
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
        #[arg(long, short)]
        config: PathBuf,
        /// The month, YYYY-MM (local plant time).
        #[arg(long)]
        month: String,
        /// The outlet (needed when several have devices).
        #[arg(long)]
        outlet: Option<String>,
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
        #[arg(long, short)]
        config: PathBuf,
        /// Start, local plant time: YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS".
        #[arg(long)]
        from: String,
        /// End (exclusive); a bare date includes that day.
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "raw", value_parser = ["raw", "minute", "hour", "day"])]
        level: String,
        /// Only this outlet (raw: its devices); default every outlet and device.
        #[arg(long)]
        outlet: Option<String>,
        #[arg(long, default_value = "csv", value_parser = ["csv"])]
        format: String,
        /// Output file; "-" for standard output.
        #[arg(long, short, default_value = "-")]
        output: PathBuf,
    },
    /// Hourly limit checks and the monthly compliance rate from a CSV of real-time samples
    /// (header time,factor,value,flag; time as YYYY-MM-DD HH:MM:SS local plant time).
    Compliance {
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
        #[arg(long, default_value = "json", value_parser = ["json", "table"])]
        format: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init("info");
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    match cli.command {
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: OK ({} buses, {} devices, {} outlets)",
                    file.display(),
                    c.buses.len(),
                    c.devices.len(),
                    c.outlets.len()
                );
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
        Command::Demo { duration, db } => report(runtime.block_on(app::demo(duration, &db))),
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
            if tcp.is_none() && rtu.is_none() {
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
        Command::Report { config, month, outlet, format } => {
            let cfg = match load_or_report(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
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
        Command::Export { config, from, to, level, outlet, format: _, output } => {
            let cfg = match load_or_report(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            match export(&cfg, &from, &to, &level, outlet.as_deref(), &output) {
                Ok(rows) => {
                    tracing::debug!(rows, "Export written.");
                    ExitCode::SUCCESS
                }
                Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
        Command::Verify { config, from, to } => {
            let cfg = match load_or_report(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            let offset = cfg.site.utc_offset_s;
            let mut range = [None, None];
            for (slot, (name, text)) in range.iter_mut().zip([("--from", from), ("--to", to)]) {
                let Some(text) = text else { continue };
                let full = if text.len() == 10 { format!("{text} 00:00:00") } else { text.clone() };
                let Some(local) = report::parse_local(&full) else {
                    eprintln!("{name} must be YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\", got {text:?}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                };
                *slot = Some((local - offset) * 1000);
            }
            let status = cems_gateway::store::Store::open_read_only(&cfg.storage.path)
                .and_then(|store| store.verify_chain(range[0], range[1]));
            match status {
                Ok(status) => {
                    let head = match (status.head_seq, &status.head_hash) {
                        (Some(seq), Some(hash)) => format!("head seq {seq} hash {hash}"),
                        _ => "empty".to_string(),
                    };
                    match &status.first_broken {
                        None => {
                            println!(
                                "audit chain intact: {} entries, {} record periods checked; {head}",
                                status.entries, status.record_periods
                            );
                            ExitCode::SUCCESS
                        }
                        Some(broken) => {
                            println!("audit chain BROKEN at {broken}");
                            println!(
                                "({} entries, {} record periods checked; {head})",
                                status.entries, status.record_periods
                            );
                            ExitCode::from(EXIT_CHAIN_BROKEN)
                        }
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_IO_ERROR)
                }
            }
        }
        Command::PrintDemoConfig => {
            print!("{}", config::DEMO_CONFIG);
            ExitCode::SUCCESS
        }
    }
}

async fn simulate(
    tcp: Option<String>,
    rtu: Option<String>,
    baud: u32,
    sim: Arc<sim::Sim>,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(address) = tcp {
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

/// `cems-gateway export`: the same rows as `/api/v1/export`, from the store directly.
fn export(
    cfg: &config::Config,
    from: &str,
    to: &str,
    level: &str,
    outlet: Option<&str>,
    output: &std::path::Path,
) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    let query = web::export::check_query(cfg, Some(from), Some(to), Some(level), outlet)
        .map_err(|e| anyhow::anyhow!("--{e}"))?;
    if !cfg.storage.path.exists() {
        anyhow::bail!("no buffer at {}", cfg.storage.path.display());
    }
    let store = cems_gateway::store::Store::open_secondary(&cfg.storage.path)?;
    let mut out: Box<dyn std::io::Write> = if output.as_os_str() == "-" {
        Box::new(std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock()))
    } else {
        let file = std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
        Box::new(std::io::BufWriter::with_capacity(64 * 1024, file))
    };
    match web::export::write_csv(&store, cfg, &query, &mut out) {
        Ok(rows) => Ok(rows),
        Err(web::export::ExportError::Write(e)) => Err(e.into()),
        Err(e) => Err(e.into()),
    }
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

/// `verify`: the buffer cannot be opened or read (sysexits `EX_IOERR`).
const EXIT_IO_ERROR: u8 = 74;

/// Exit code for input data that cannot be read (sysexits `EX_DATAERR`).
const EXIT_DATA_ERROR: u8 = 65;

fn parse_basis(s: &str) -> Result<(String, Basis), String> {
    let (factor, basis) = s.split_once('=').ok_or("expected FACTOR=BASIS, e.g. a21026=wet-actual")?;
    let basis =
        Basis::parse(basis).ok_or("BASIS is one of dry-standard, dry-actual, wet-standard, wet-actual")?;
    Ok((factor.to_string(), basis))
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
    config::load(path).map_err(|e| {
        eprintln!("{}", e.to_string().trim_end());
        ExitCode::from(e.exit_code())
    })
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
