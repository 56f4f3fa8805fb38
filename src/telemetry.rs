//! Logging: `tracing` events as key=value lines on stderr.
//!
//! Under systemd (stderr connected to the journal, `JOURNAL_STREAM` set) each line starts with
//! its syslog priority, `<3>` error, `<4>` warning, `<6>` info, `<7>` debug, which journald
//! turns into the entry's priority (so `journalctl -p err` finds what matters), and carries no
//! timestamp of its own (the journal has one). Elsewhere lines carry the time in UTC and, once
//! the configuration is known ([`set_plant_offset`]), in plant time beside it
//! (`2026-12-06T09:06:49.638Z 17:06:49+08`), and the level as text.
//!
//! Level meanings: ERROR = data loss or an operator must act; WARN = something is wrong but no
//! data was lost; INFO = lifecycle; DEBUG = per-request detail.

use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::time::{Offset, Utc};

/// The syslog priority of a level (sd-daemon(3) prefixes).
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Formats events with a `<N>` priority prefix for journald.
struct Journald<F>(F);

impl<S, N, F> FormatEvent<S, N> for Journald<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The plant's UTC offset in seconds, once known (`i64::MIN`: not yet).
static PLANT_OFFSET_S: AtomicI64 = AtomicI64::new(i64::MIN);

/// From now on log lines show plant time beside UTC.
pub fn set_plant_offset(offset: Offset) {
    PLANT_OFFSET_S.store(offset.seconds(), Ordering::Relaxed);
}

/// UTC with milliseconds, and the plant's local time of day with its offset when known.
struct PlantClock;

impl FormatTime for PlantClock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        // The system clock itself (not `clock::now`): a log line says when it was written.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        write!(w, "{}", Utc(now).log_stamp())?;
        if let Some(offset) = Offset::from_seconds(PLANT_OFFSET_S.load(Ordering::Relaxed)) {
            write!(w, " {}", plant_time(Utc(now), offset))?;
        }
        Ok(())
    }
}

/// `17:06:49+08` (or `+05:30`): the time of day at the plant.
fn plant_time(now: Utc, offset: Offset) -> String {
    format!("{}{}", offset.local(now).clock(), offset.short_label())
}

/// Installs the global subscriber. `RUST_LOG` overrides the default filter `default`.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some() && !std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = if journal {
        let format = Format::default().without_time().with_level(false).with_target(false);
        builder.event_format(Journald(format)).try_init()
    } else {
        builder.with_timer(PlantClock).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plant_time_is_the_local_time_of_day_with_its_offset() {
        // 2026-12-06 09:06:49 UTC.
        let t = Utc::from_secs(1_796_548_009);
        let at = |seconds: i64| plant_time(t, Offset::from_seconds(seconds).unwrap());
        assert_eq!(at(8 * 3600), "17:06:49+08");
        assert_eq!(at(5 * 3600 + 1800), "14:36:49+05:30");
        assert_eq!(at(-3 * 3600), "06:06:49-03");
        assert_eq!(at(16 * 3600), "01:06:49+16");
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
    }
}
