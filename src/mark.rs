//! `cems-gateway mark add|end|edit|list`: the operators' marks on the box, written straight to
//! the buffer (with their audit entries, under the same rules as the HTTP API's, see
//! `compute::marks`), whether the daemon runs or not: the running daemon's statistics worker
//! sees the change within a minute and recomputes the periods it covers. Times are local plant
//! time.

use std::io::Write;

use thiserror::Error;

use crate::compute::marks::{Kind, Mark, MarkError, Rules};
use crate::config::Config;
use crate::model::now_ms;
use crate::store::marks::{Edit, MarkStoreError};
use crate::store::{Store, StoreError};
use crate::web::export::parse_time;
use crate::web::status::fmt_local;

/// What the command does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Add {
        outlet: Option<String>,
        kind: String,
        start: String,
        end: Option<String>,
        reason: String,
        who: String,
    },
    End {
        id: i64,
        end: Option<String>,
        who: String,
    },
    Edit {
        id: i64,
        start: Option<String>,
        end: Option<String>,
        reopen: bool,
        reason: Option<String>,
        who: String,
    },
    List {
        outlet: Option<String>,
        from: Option<String>,
        to: Option<String>,
        json: bool,
    },
}

#[derive(Debug, Error)]
pub enum MarkCommandError {
    /// Bad input or a mark that breaks a rule: nothing was changed (exit 65).
    #[error("{0}")]
    Refused(String),
    /// The buffer cannot be read or written (exit 74).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<MarkStoreError> for MarkCommandError {
    fn from(e: MarkStoreError) -> MarkCommandError {
        match e {
            MarkStoreError::Refused(e) => {
                MarkCommandError::Refused(format!("refused: {e}; nothing was changed"))
            }
            MarkStoreError::Store(e) => MarkCommandError::Store(e),
        }
    }
}

fn refused(message: impl Into<String>) -> MarkCommandError {
    MarkCommandError::Refused(message.into())
}

/// A local time given on the command line, as Unix ms.
fn time_ms(config: &Config, option: &str, text: &str) -> Result<i64, MarkCommandError> {
    let local = parse_time(text, false).ok_or_else(|| {
        refused(format!("{option}: must be a local time \"YYYY-MM-DD HH:MM:SS\", got {text:?}"))
    })?;
    Ok((local - config.site.utc_offset_s) * 1000)
}

fn describe(m: &Mark, offset: i64) -> String {
    let local = |ms: i64| fmt_local(ms.div_euclid(1000) + offset);
    let end = m.end_ms.map_or_else(|| "open".to_string(), local);
    format!(
        "#{} {} {} ({} {}) {} to {} by {}: {}",
        m.id,
        m.outlet,
        m.kind,
        m.kind.zh(),
        m.kind.flag(),
        local(m.start_ms),
        end,
        m.who,
        m.reason
    )
}

/// Runs the command against the configuration's buffer; what it did goes to `out`.
pub fn run(config: &Config, action: Action, out: &mut dyn Write) -> Result<(), MarkCommandError> {
    let offset = config.site.utc_offset_s;
    let fmt = move |ms: i64| fmt_local(ms.div_euclid(1000) + offset);
    let rules = Rules { now_ms: now_ms(), window_ms: config.marks.window.as_millis() as i64, fmt: &fmt };
    let path = &config.storage.path;
    if !path.exists() {
        return Err(StoreError::Io {
            path: path.clone(),
            reason: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no buffer file (has the gateway run?)",
            ),
        }
        .into());
    }
    let write = |out: &mut dyn Write, text: String| {
        out.write_all(text.as_bytes()).map_err(|e| refused(format!("writing: {e}")))
    };
    match action {
        Action::Add { outlet, kind, start, end, reason, who } => {
            let outlet = match outlet {
                Some(o) if config.outlet(&o).is_some() => o,
                Some(o) => return Err(refused(format!("--outlet: {}", MarkError::UnknownOutlet(o)))),
                None if config.outlets.len() == 1 => config.outlets[0].name.clone(),
                None => return Err(refused("--outlet is needed: the configuration has several outlets")),
            };
            let kind = Kind::parse(&kind)
                .ok_or_else(|| refused(format!("--kind: {}", MarkError::UnknownKind(kind))))?;
            let start_ms = time_ms(config, "--start", &start)?;
            let end_ms = end.as_deref().map(|e| time_ms(config, "--end", e)).transpose()?;
            let mark = Mark { id: 0, outlet, kind, start_ms, end_ms, reason, who };
            let mut store = Store::open_secondary(path)?;
            let added = store.add_mark(mark, rules, "cli")?;
            write(out, format!("added {}\n", describe(&added, offset)))
        }
        Action::End { id, end, who } => {
            let end_ms = match end {
                Some(e) => time_ms(config, "--end", &e)?,
                None => now_ms(),
            };
            let mut store = Store::open_secondary(path)?;
            let ended = store.end_mark(id, end_ms, &who, "cli", rules)?;
            write(out, format!("ended {}\n", describe(&ended, offset)))
        }
        Action::Edit { id, start, end, reopen, reason, who } => {
            if reopen && end.is_some() {
                return Err(refused("--reopen and --end: give one"));
            }
            let edit = Edit {
                start_ms: start.as_deref().map(|s| time_ms(config, "--start", s)).transpose()?,
                end_ms: match (end, reopen) {
                    (_, true) => Some(None),
                    (Some(e), false) => Some(Some(time_ms(config, "--end", &e)?)),
                    (None, false) => None,
                },
                reason,
            };
            let mut store = Store::open_secondary(path)?;
            let edited = store.edit_mark(id, edit, &who, "cli", rules)?;
            write(out, format!("edited {}\n", describe(&edited, offset)))
        }
        Action::List { outlet, from, to, json } => {
            let local_now = now_ms().div_euclid(1000) + offset;
            let from = match from {
                Some(f) => parse_time(&f, false)
                    .ok_or_else(|| refused(format!("--from: not a local time: {f:?}")))?,
                None => local_now - 31 * 86_400,
            };
            let to = match to {
                Some(t) => {
                    parse_time(&t, true).ok_or_else(|| refused(format!("--to: not a local time: {t:?}")))?
                }
                None => local_now + 1,
            };
            let store = Store::open_read_only(path)?;
            let marks = store.marks(outlet.as_deref(), (from - offset) * 1000, (to - offset) * 1000)?;
            if json {
                let rows: Vec<_> = marks.iter().map(|m| crate::web::marks::row(m, offset)).collect();
                let text = serde_json::to_string_pretty(&rows).map_err(|e| refused(e.to_string()))?;
                return write(out, format!("{text}\n"));
            }
            if marks.is_empty() {
                return write(out, "no marks in this period\n".into());
            }
            let lines: String = marks.iter().map(|m| describe(m, offset) + "\n").collect();
            write(out, lines)
        }
    }
}
