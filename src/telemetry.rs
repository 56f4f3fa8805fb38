//! Logging: `tracing` events as key=value lines on stderr (journald captures stderr under
//! systemd). Level meanings: ERROR = data loss or an operator must act; WARN = something is
//! wrong but no data was lost; INFO = lifecycle; DEBUG = per-request detail.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` overrides the default filter `default`.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
