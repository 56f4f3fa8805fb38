//! The gateway's one TOML file: typed [`Config`], loading, and the compiled-in demo config.
//!
//! Loading: [`doc`] reads the file as a spanned document into the raw tables of [`raw`] (one
//! list of keys per table), [`validate`] turns them into the typed [`Config`] and collects every
//! problem, each at its key's line and column and named by its item.

pub mod doc;
pub mod raw;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use crate::acquire::registers::RegisterRef;
use crate::model::Flag;
use crate::time::Offset;

/// The demo configuration, compiled into the binary (`cems-gateway demo`).
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// Exit code for a configuration that cannot be used (sysexits `EX_USAGE`/`EX_DATAERR` family).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// A validated configuration. Built only by [`validate::validate`]; it has no `Default`.
#[derive(Debug, Clone)]
pub struct Config {
    pub site: Site,
    pub storage: Storage,
    pub statistics: Statistics,
    pub buses: Vec<Bus>,
    /// Shared with the devices' read plans: 10,000 points are over a megabyte.
    pub devices: Vec<Arc<Device>>,
    pub outlets: Vec<Outlet>,
    pub uplinks: Vec<Uplink>,
    pub web: Web,
    pub marks: Marks,
    /// What is allowed but probably not meant (printed by `check-config`, logged at start).
    pub warnings: Vec<ConfigError>,
}

/// Protocol profile of a platform link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol212 {
    /// HJ 212-2017, complete.
    V2017,
    /// HJ 212-2025 as far as it is known (version bits 000010, heartbeat 9015): provisional.
    V2025,
}

/// How a link reaches its platform.
#[derive(Clone, PartialEq)]
pub enum Transport {
    /// HJ 212 frames over a TCP connection the gateway opens (`address`).
    Hj212,
    /// JSON batches POSTed to `url` (http or https, rustls), with a bearer token.
    Http { url: String, token: Option<String>, batch: u32 },
}

impl fmt::Debug for Transport {
    /// The token is a secret: it never appears in logs or debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Hj212 => write!(f, "Hj212"),
            Transport::Http { url, token, batch } => f
                .debug_struct("Http")
                .field("url", url)
                .field("token", &token.as_ref().map(|_| "<set>"))
                .field("batch", batch)
                .finish(),
        }
    }
}

/// One provincial (or city, county) platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    pub name: String,
    pub transport: Transport,
    /// The outlet whose data this link carries (one MN per outlet).
    pub outlet: String,
    /// `host:port` of the platform's HJ 212 server (the URL for an HTTP link).
    pub address: String,
    pub protocol: Protocol212,
    pub mn: String,
    pub pw: String,
    pub st: u16,
    /// Real-time (2011) uploads, live only, every `rtd_interval`.
    pub realtime: bool,
    pub rtd_interval: Duration,
    /// Minute (2051) uploads of `min_interval`-minute periods.
    pub minute: bool,
    pub min_interval: u32,
    pub hour: bool,
    pub day: bool,
    /// Facility run-status (2021) uploads every `rtd_interval`, live only (the platform can
    /// start and stop them with 2021/2022).
    pub run_status: bool,
    /// Daily facility run-time (2041) uploads, queued like the day records.
    pub run_time: bool,
    /// Minute, hour and day uploads (2051/2061/2031) ask for an acknowledgement (Flag bit A);
    /// a period then leaves the queue only on its 9014.
    pub ack: bool,
    /// Real-time (2011) and run-status (2021) uploads ask for an acknowledgement (counted only:
    /// they are never sent again).
    pub ack_realtime: bool,
    /// Run-time (2041) uploads ask for an acknowledgement (and leave the queue only on it).
    pub ack_run_time: bool,
    /// Notices (2081 restart, 3020 pushes, and any other non-data upload) ask for an answer.
    pub ack_notices: bool,
    /// Periods recomputed after the platform had them (an operator's mark changed their flags)
    /// are sent again (`RF=1` under HJ 212-2025).
    pub corrections: bool,
    /// Answer timeout and retries (OverTime × ReCount) before the link is dropped.
    pub overtime: Duration,
    pub recount: u32,
    /// Uploads in flight awaiting their acknowledgement.
    pub window: u32,
    pub reconnect_max: Duration,
    /// HJ 212-2025 heartbeat (9015) period; unused with the 2017 profile.
    pub heartbeat: Duration,
    /// HJ 212-2025 settings; the defaults (nothing encrypted, no onboarding) with 2017.
    pub v2025: Profile2025,
}

/// What the HJ 212-2025 profile adds to a link. Several points of the 2025 text are known only
/// from public implementations (see README): each is a setting here, not a constant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile2025 {
    /// SM4-encrypt the CP of data uploads (CN 2000–2999), 1014 and 3020.
    pub encrypt: bool,
    /// Whether 3020 (field information) is among them: the 2025 text is read so (§6.4.4, quoted
    /// with an ellipsis by the one implementation that cites it), not confirmed.
    pub encrypt_3020: bool,
    /// The registered initial key (16 characters), readable by its owner only.
    pub key_file: Option<PathBuf>,
    /// Length field of encrypted frames: plaintext length (the standard's examples) or wire.
    pub length_rule: Option<crate::hj212::crypt::LengthRule>,
    /// Also accept platform frames with the 2017 version bits.
    pub accept_2017: bool,
    /// The MN is assigned by the platform (CN 1001 → 1002) instead of configured.
    pub onboarding: bool,
    /// The data logger's own ID for 1001 (i23005); default: the machine ID.
    pub logger_id: Option<String>,
    /// Ask the platform for a new key (CN 1014) once the key is this old.
    pub key_request_after: Duration,
    /// Key operating parameters: a fault (D) on them is sent as the 2025 flag `Td`.
    pub operating_parameters: Vec<String>,
    /// Sent as a converted value that cannot be computed (O2 at or above the guard).
    pub unconvertible_value: f64,
}

#[derive(Debug, Clone)]
pub struct Site {
    /// HJ 212 MN: the data logger's unique id.
    pub mn: String,
    /// HJ 212 PW: the six-character access password.
    pub pw: String,
    /// HJ 212 system code (31 = flue gas / air emission source).
    pub st: u16,
    pub name: String,
    pub industry: Industry,
    /// Local plant time minus UTC (China: +8 h). Periods are local hours and days.
    pub utc_offset: Offset,
}

/// Validity thresholds and the O2 guard of the emission statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Statistics {
    pub thresholds: crate::compute::Thresholds,
    pub o2_guard_pct: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Industry {
    Cement,
    Coking,
    Steel,
    Power,
    Other,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub path: PathBuf,
    /// Real-time samples older than this are deleted.
    pub retention: Duration,
    /// The live data in the file is kept under this size by deleting the oldest samples.
    pub max_size_bytes: u64,
    /// Longest time a sample waits in memory before its batch is committed.
    pub flush_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSettings {
    pub path: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
}

impl SerialSettings {
    /// Time on the wire for one character, from the configured framing.
    pub fn char_time(&self) -> Duration {
        let bits = 1
            + u32::from(self.data_bits)
            + u32::from(self.parity != Parity::None)
            + u32::from(self.stop_bits);
        Duration::from_nanos(u64::from(bits) * 1_000_000_000 / u64::from(self.baud.max(1)))
    }
}

/// How a bus reaches its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Modbus RTU on a local serial port (RS-485 adapter).
    Rtu(SerialSettings),
    /// Modbus TCP.
    Tcp { address: String },
    /// Modbus RTU frames carried over TCP (serial servers, DTUs).
    RtuOverTcp { address: String },
    /// Line-oriented ASCII request/reply on a serial port.
    AsciiSerial(SerialSettings),
    /// Line-oriented ASCII request/reply over TCP.
    AsciiTcp { address: String },
    /// HJ 212 frames pushed by an upstream system that connects to this listen address.
    Hj212Listen { address: String, limits: ListenLimits },
    /// HJ 212 frames pushed on a serial line.
    Hj212Serial(SerialSettings),
}

impl Link {
    pub fn kind(&self) -> &'static str {
        match self {
            Link::Rtu(_) => "rtu",
            Link::Tcp { .. } => "tcp",
            Link::RtuOverTcp { .. } => "rtu-over-tcp",
            Link::AsciiSerial(_) | Link::AsciiTcp { .. } => "ascii",
            Link::Hj212Listen { .. } | Link::Hj212Serial(_) => "hj212",
        }
    }

    /// Whether the devices on this bus push HJ 212 frames instead of being polled.
    pub fn is_hj212(&self) -> bool {
        matches!(self, Link::Hj212Listen { .. } | Link::Hj212Serial(_))
    }

    pub fn is_ascii(&self) -> bool {
        matches!(self, Link::AsciiSerial(_) | Link::AsciiTcp { .. })
    }

    /// Where the bus goes, for logs and the probe.
    pub fn endpoint(&self) -> &str {
        match self {
            Link::Rtu(s) | Link::AsciiSerial(s) | Link::Hj212Serial(s) => &s.path,
            Link::Tcp { address }
            | Link::RtuOverTcp { address }
            | Link::AsciiTcp { address }
            | Link::Hj212Listen { address, .. } => address,
        }
    }
}

/// What an HJ 212 input listener serves at most (`[[bus]] kind = "hj212"` with `listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenLimits {
    /// Senders connected at once (`max_connections`, default [`ListenLimits::DEFAULT_CONNECTIONS`]);
    /// more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// A connection silent this long is closed (`idle_timeout_s`); `None`: three times the
    /// slowest device's interval plus the bus timeout.
    pub idle_timeout: Option<Duration>,
}

impl ListenLimits {
    /// A data system or two, and room for one reconnecting before its old socket is gone.
    pub const DEFAULT_CONNECTIONS: usize = 4;
    /// Upper bound of `max_connections`.
    pub const MAX_CONNECTIONS: usize = 64;
}

#[derive(Debug, Clone)]
pub struct Bus {
    pub name: String,
    pub link: Link,
    /// Deadline of each request (write, turnaround and reply).
    pub timeout: Duration,
    /// Silence kept on the line between a reply and the next request.
    pub inter_frame: Duration,
    /// Cap of the exponential reconnect backoff.
    pub reconnect_max: Duration,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    /// Index into [`Config::buses`].
    pub bus: usize,
    pub slave: u8,
    pub poll_interval: Duration,
    pub outlet: Option<String>,
    /// Largest hole (in registers) bridged when coalescing reads.
    pub max_gap: u16,
    pub protocol: Protocol,
    pub points: Vec<Point>,
    pub status: Vec<StatusRegister>,
    /// Key parameters read from the analyzer (`[[device.parameter]]`).
    pub parameters: Vec<crate::acquire::params::Parameter>,
}

#[derive(Debug, Clone)]
pub enum Protocol {
    Modbus,
    Ascii {
        request: String,
        pattern: Regex,
    },
    /// Receives HJ 212 real-time uploads; `mn` selects this device's frames (any MN when the
    /// device is alone on its bus and has none set).
    Hj212 {
        mn: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// HJ 212 factor code, e.g. `a21026` (SO2).
    pub factor: String,
    pub source: PointSource,
    pub scale: f64,
    pub offset: f64,
    pub unit: String,
    /// Upper end of the instrument's range; a value above it is flagged `T`.
    pub range_max: Option<f64>,
    /// Wet or dry, actual or standard state, as the analyzer measures (default dry standard).
    pub basis: crate::compute::spec::Basis,
}

impl Point {
    /// Engineering value from the raw decoded number, without the noise of binary arithmetic
    /// (a u16 209 with scale 0.1 is 20.9, see [`crate::acquire::registers::decimal`]).
    pub fn scaled(&self, raw: f64) -> f64 {
        if self.scale == 1.0 && self.offset == 0.0 {
            return raw;
        }
        crate::acquire::registers::decimal(raw * self.scale + self.offset)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PointSource {
    Register(RegisterRef),
    /// Named capture group of the ASCII reply pattern.
    Capture(String),
    /// Factor code in incoming HJ 212 frames (`<code>-Rtd`, `<code>-Flag`).
    Code(String),
}

/// A register that reports the analyzer's state, and how its value maps to data flags.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRegister {
    pub register: RegisterRef,
    pub rule: StatusRule,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StatusRule {
    /// The whole value selects a flag; values not listed mean normal.
    Value(BTreeMap<i64, Flag>),
    /// Each set bit (0 = least significant) selects a flag; the most severe wins.
    Bits(BTreeMap<u8, Flag>),
}

#[derive(Debug, Clone)]
pub struct Outlet {
    pub name: String,
    /// Outlet code used on the platform, if different from the name.
    pub code: Option<String>,
    /// Built-in limit profile (applied by the compliance statistics).
    pub profile: Option<String>,
    /// Reference O2 (%) for converted concentrations; overrides the profile's.
    pub o2_ref: Option<f64>,
    /// Hourly limits (mg/m³) overriding the profile's, by factor.
    pub limits: BTreeMap<String, f64>,
    /// Factor code of the facility run status point (0 = stopped); default: one named `*-RS`.
    pub run_status: Option<String>,
    pub duct_area_m2: Option<f64>,
    /// Velocity-field coefficient Kv (Annex D (29)).
    pub velocity_coefficient: f64,
    /// Ambient pressure (kPa) when no a01006 point is measured.
    pub ambient_pressure_kpa: f64,
    /// Basis and unit of a measured flow (a00000): `wet-actual` and `m3/s` unless set (a flow
    /// computer may give dry standard m³/h).
    pub flow_basis: crate::compute::spec::Basis,
    pub flow_unit: crate::compute::spec::FlowUnit,
    /// Factors the profile limits that are not limited at this outlet.
    pub unlimited: Vec<String>,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The item: `site`, `bus "rs485-1"`, `device "gas" point a21026`; empty for the file.
    pub item: String,
    /// The key within the item, e.g. `baud` or `limits.a21026`; empty for the item itself.
    pub key: String,
    /// 1-based line and column of the key (or of the item's header), where known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}, column {}: ", self.column.unwrap_or(1))?;
        }
        for part in [&self.item, &self.key] {
            if !part.is_empty() {
                write!(f, "{part}: ")?;
            }
        }
        write!(f, "{}", self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(f, "{}: {n} problem{}", self.source_name, if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Why a configuration file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read (missing, a folder, no permission): the OS says why.
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: std::io::Error },
    /// The file was read and has problems.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl LoadError {
    /// The exit code of a command that could not load its configuration: sysexits
    /// `EX_NOINPUT` (66) for a file that cannot be read, [`EXIT_BAD_CONFIG`] for a bad one.
    pub fn exit_code(&self) -> u8 {
        match self {
            LoadError::Unreadable { .. } => EXIT_NO_INPUT,
            LoadError::Invalid(_) => EXIT_BAD_CONFIG,
        }
    }
}

/// Exit code for an input file that cannot be read (sysexits `EX_NOINPUT`).
pub const EXIT_NO_INPUT: u8 = 66;

/// Reads and validates a file; the key files it names are checked (present, 16 characters,
/// readable by their owner only).
///
/// A relative path in the file (`[storage] path`, `key_file`) is relative to the folder the
/// command runs in, like a path given on the command line: `cems-gateway demo` writes
/// `./cems-demo.db` and `cems-gateway report --config config/demo.toml` reads that same file.
/// The service's configuration uses absolute paths (the service runs in `/`).
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|reason| LoadError::Unreadable { path: path.to_path_buf(), reason })?;
    let base = std::env::current_dir().unwrap_or_default();
    validate::parse_with(&text, &base, &check_key_file).map_err(|errors| {
        LoadError::Invalid(ConfigErrors { source_name: path.display().to_string(), errors })
    })
}

/// A key file must hold exactly 16 characters (a trailing newline is allowed) and be readable by
/// its owner only: the key is what makes the platform trust the data. Read here, not in the
/// pure `validate`, which gets this function from [`load`].
pub fn check_key_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} must be readable by its owner only (chmod 600), its mode is {mode:o}",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key = text.trim_end_matches(['\r', '\n']);
    if crate::hj212::crypt::Key::from_text(key).is_none() {
        // The key itself is never echoed.
        return Err(format!("{} must hold exactly 16 characters (the SM4 key)", path.display()));
    }
    Ok(())
}

impl Config {
    /// The device with this name.
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name).map(|d| &**d)
    }

    pub fn outlet(&self, name: &str) -> Option<&Outlet> {
        self.outlets.iter().find(|o| o.name == name)
    }

    /// The devices whose samples belong to an outlet.
    pub fn outlet_devices(&self, outlet: &str) -> Vec<&Device> {
        self.devices.iter().filter(|d| d.outlet.as_deref() == Some(outlet)).map(|d| &**d).collect()
    }

    /// Everything the emission statistics need for one outlet.
    pub fn outlet_spec(&self, outlet: &Outlet) -> crate::compute::OutletSpec {
        use crate::compute::{OutletLimits, OutletSpec, limits};
        let profile = outlet.profile.as_deref().and_then(limits::profile);
        let mut limits = OutletLimits::resolve(profile, outlet.o2_ref, &outlet.limits);
        limits.remove(&outlet.unlimited);
        let mut spec = OutletSpec::new(limits);
        spec.thresholds = self.statistics.thresholds;
        spec.o2_guard = self.statistics.o2_guard_pct;
        spec.run_status = outlet.run_status.clone();
        spec.flow.duct_area_m2 = outlet.duct_area_m2;
        spec.flow.kv = outlet.velocity_coefficient;
        spec.flow.ambient_pa = outlet.ambient_pressure_kpa * 1000.0;
        spec.flow.measured_basis = outlet.flow_basis;
        spec.flow.measured_unit = outlet.flow_unit;
        spec.ppm = self
            .outlet_devices(&outlet.name)
            .iter()
            .flat_map(|d| d.points.iter())
            .filter(|p| p.unit.eq_ignore_ascii_case("ppm"))
            .map(|p| p.factor.clone())
            .collect();
        // O2, flue parameters and run status may come from a device polled more slowly than the
        // pollutants: they stay usable for two of the slowest poll intervals (at least 30 s).
        let slowest = self
            .outlet_devices(&outlet.name)
            .iter()
            .map(|d| d.poll_interval.as_secs_f64())
            .fold(0.0, f64::max);
        spec.context_max_age = ((slowest * 2.0).ceil() as i64).max(30);
        spec.basis = self
            .outlet_devices(&outlet.name)
            .iter()
            .flat_map(|d| d.points.iter())
            .filter(|p| p.basis != crate::compute::spec::Basis::DRY_STANDARD)
            .map(|p| (p.factor.clone(), p.basis))
            .collect();
        spec
    }
}

/// `[web]`: the local status page, JSON API and metrics (read-only), and the operators' marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    /// Where to listen; `None` when the server is switched off.
    pub listen: Option<std::net::SocketAddr>,
    /// When set, every request needs `Authorization: Bearer <token>` or `?token=<token>`.
    pub token: Option<String>,
    /// The operators' token: the only one that may add, edit or end a mark (the officers' token
    /// reads only). Without it the operator routes are off.
    pub operator_token: Option<String>,
}

/// `[marks]`: the operators' marks (see `compute::marks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// How far back a mark may change flags: a mark added, edited or ended may not cover (or
    /// uncover) anything older.
    pub window: Duration,
}

/// Default of `[marks] window_hours`: a weekend (Friday evening to Monday morning) can be
/// marked on Monday. The marking rules seen set no figure (a gateway choice).
pub const DEFAULT_MARK_WINDOW_HOURS: i64 = 72;

/// The status page's address when `[web]` does not say: every interface, for the plant LAN.
pub const DEFAULT_WEB_LISTEN: &str = "0.0.0.0:8080";
