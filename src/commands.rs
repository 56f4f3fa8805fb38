//! The commands that read a buffer file, on the gateway beside the running daemon or on a copy:
//! which file and which plant time (`--db`, else the configuration's), `verify`, `export`
//! without a configuration, and `backup` (SQLite's online backup, safe while the daemon writes).
//!
//! Paths given on the command line are relative to the current folder, like every path of a
//! configuration file (see `config::load`).

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::time::{Local, Offset};
use crate::web::export::{self, ExportError, ExportLevel, Scope};

/// Plant time when neither the configuration nor the buffer says (China, UTC+8).
pub const DEFAULT_UTC_OFFSET: Offset = Offset::CHINA;

/// Why a buffer command could not do its work.
#[derive(Debug, Error)]
pub enum CommandError {
    /// A bad argument (sysexits `EX_USAGE`, 64).
    #[error("{0}")]
    Usage(String),
    /// The buffer cannot be opened or read (sysexits `EX_IOERR`, 74).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output cannot be written.
    #[error("{0}")]
    Output(String),
}

impl From<ExportError> for CommandError {
    fn from(e: ExportError) -> CommandError {
        match e {
            ExportError::Store(e) => CommandError::Store(e),
            ExportError::Write(e) => CommandError::Output(format!("writing the export: {e}")),
        }
    }
}

/// The buffer a command reads: `--db` when given, else the configuration's `[storage] path`.
pub fn buffer_path(config: Option<&Config>, db: Option<&Path>) -> Result<PathBuf, CommandError> {
    match (db, config) {
        (Some(db), _) => Ok(db.to_path_buf()),
        (None, Some(c)) => Ok(c.storage.path.clone()),
        (None, None) => Err(CommandError::Usage("give --db FILE (the buffer) or --config FILE".into())),
    }
}

/// The plant's UTC offset: the configuration's, else the one the gateway recorded in the
/// buffer, else UTC+8; with a note when it was assumed.
pub fn plant_offset(config: Option<&Config>, store: &Store) -> Result<(Offset, Option<String>), StoreError> {
    if let Some(c) = config {
        return Ok((c.site.utc_offset, None));
    }
    Ok(match store.utc_offset()? {
        Some(offset) => (offset, None),
        None => (
            DEFAULT_UTC_OFFSET,
            Some("plant time taken as UTC+8: this buffer does not record it (give --config)".into()),
        ),
    })
}

/// A plant-time bound of `--from`/`--to` in Unix ms: `YYYY-MM-DD` (midnight) or
/// `"YYYY-MM-DD HH:MM:SS"`.
fn bound(name: &str, text: Option<&str>, offset: Offset) -> Result<Option<i64>, CommandError> {
    let Some(text) = text else { return Ok(None) };
    let local = Local::parse_bound(text, false).ok_or_else(|| {
        CommandError::Usage(format!("{name} must be YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\", got {text:?}"))
    })?;
    Ok(Some(offset.utc(local).0))
}

/// What `verify` found: whether the chain is intact, and the lines to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub intact: bool,
    pub text: String,
}

/// `cems-gateway verify`: recomputes the audit chain of the buffer at `path` and checks every
/// stored record against it, between `from` and `to` (plant time) when given.
pub fn verify(
    path: &Path,
    config: Option<&Config>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Verified, CommandError> {
    let store = Store::open_read_only(path)?;
    let (offset, note) = plant_offset(config, &store)?;
    let (from_ms, to_ms) = (bound("--from", from, offset)?, bound("--to", to, offset)?);
    let status = store.verify_chain(from_ms, to_ms)?;
    let head = match (status.head_seq, &status.head_hash) {
        (Some(seq), Some(hash)) => format!("head seq {seq} hash {hash}"),
        _ => "empty".to_string(),
    };
    let counts = format!(
        "{}, {} checked; {head}",
        plural(status.entries, "entry", "entries"),
        plural(status.record_periods, "record period", "record periods")
    );
    let mut text = format!("buffer {}\n", path.display());
    if let Some(note) = note {
        text.push_str(&format!("note: {note}\n"));
    }
    let intact = match &status.first_broken {
        None => {
            text.push_str(&format!("audit chain intact: {counts}\n"));
            true
        }
        Some(broken) => {
            text.push_str(&format!("audit chain BROKEN at {}\n({counts})\n", broken.describe(offset)));
            false
        }
    };
    if let Some(s) = &status.samples {
        text.push_str(&format!(
            "raw samples: {} sealed minutes checked, {} pruned by retention, {} not sealed yet, {} stored before samples were chained\n",
            s.minutes, s.pruned, s.pending, s.unchained
        ));
        // Every fault of the raw samples, not only the first: each edited, deleted or inserted
        // minute is named.
        if !s.faults.is_empty() {
            text.push_str(&format!("raw samples at fault: {}\n", s.faults.len()));
        }
        for fault in s.faults.iter().take(MAX_SAMPLE_FAULTS) {
            text.push_str(&format!("  {}\n", fault.describe(offset)));
        }
        if s.faults.len() > MAX_SAMPLE_FAULTS {
            text.push_str(&format!("  … and {} more\n", s.faults.len() - MAX_SAMPLE_FAULTS));
        }
    }
    Ok(Verified { intact, text })
}

/// Faults of the raw samples `verify` lists one by one; past this it says how many more.
const MAX_SAMPLE_FAULTS: usize = 100;

/// `cems-gateway export`: the rows of `/api/v1/export` from the buffer at `path`. With a
/// configuration its outlets and devices apply; without one, the outlets the buffer has
/// records of and its recorded plant time.
pub fn export(
    path: &Path,
    config: Option<&Config>,
    from: &str,
    to: &str,
    level: &str,
    outlet: Option<&str>,
    out: &mut dyn Write,
) -> Result<u64, CommandError> {
    let store = Store::open_read_only(path)?;
    let (query, scope) = match config {
        Some(c) => {
            let q = export::check_query(c, Some(from), Some(to), Some(level), outlet)
                .map_err(|e| CommandError::Usage(format!("--{e}")))?;
            let scope = Scope::of(c, &q);
            (q, scope)
        }
        None => {
            let outlets = store.record_outlets()?;
            let names: Vec<&str> = outlets.iter().map(String::as_str).collect();
            let q = export::check_query_of(&names, Some(from), Some(to), Some(level), outlet)
                .map_err(|e| CommandError::Usage(format!("--{e}")))?;
            if q.level == ExportLevel::Raw && q.outlet.is_some() {
                return Err(CommandError::Usage(
                    "--outlet with --level raw needs --config (which devices belong to the outlet)".into(),
                ));
            }
            let (offset, note) = plant_offset(None, &store)?;
            if let Some(note) = note {
                tracing::warn!("Export in assumed {note}.");
            }
            let outlets = q.outlet.clone().map_or(outlets, |o| vec![o]);
            (q, Scope { utc_offset: offset, outlets, devices: None })
        }
    };
    Ok(export::write_rows(&store, &scope, &query, out)?)
}

/// `cems-gateway backup`: a consistent copy of the buffer at `path` into `dest` (which must not
/// exist), then the copy opened and its audit chain verified. Returns the lines to print.
pub fn backup(path: &Path, dest: &Path) -> Result<String, CommandError> {
    if dest.exists() {
        return Err(CommandError::Usage(format!(
            "{} exists: give a new file name (a backup never overwrites)",
            dest.display()
        )));
    }
    let store = Store::open_read_only(path)?;
    store.backup_to(dest)?;
    let copy = Store::open_read_only(dest)?;
    let status = copy.verify_chain(None, None)?;
    let size = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    let mut text = format!(
        "backup of {} written to {} ({}, {} samples)\n",
        path.display(),
        dest.display(),
        crate::web::page::bytes(size),
        copy.count()?
    );
    match (&status.first_broken, status.head_seq, &status.head_hash) {
        (None, Some(seq), Some(hash)) => {
            text.push_str(&format!("audit chain of the copy intact: head seq {seq} hash {hash}\n"))
        }
        (None, _, _) => text.push_str("audit chain of the copy intact (empty)\n"),
        (Some(b), _, _) => {
            let (offset, _) = plant_offset(None, &copy)?;
            text.push_str(&format!("audit chain of the copy BROKEN at {}\n", b.describe(offset)));
        }
    }
    Ok(text)
}

/// `1 entry`, `3 entries`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}
