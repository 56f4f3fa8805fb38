//! The one place that decides what happens to a test that needs a program from outside Rust:
//! with the program there the test runs; without it the test is reported as ignored, with what
//! is missing in its name (`test [needs sqlite3] … ignored`) and a closing summary of how to get
//! it; under `CEMS_REQUIRE_PEERS=1` (what `.ci/run` sets) a missing program fails the test. A
//! test never passes without having run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Failed, Trial};

/// A program (or module) from outside Rust that some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// The SQLite command-line shell, which the audit tests edit a buffer with.
    Sqlite3,
    /// Debian's headless browser, for the status page.
    Chromium,
    /// Makes pty pairs for the serial interop tests.
    Socat,
    /// The independent Modbus implementation (Python, `CEMS_PYTHON` or `python3`).
    Pymodbus,
    /// Network namespaces and veth pairs: root and `ip` (iproute2).
    Netns,
}

impl Need {
    pub fn name(self) -> &'static str {
        match self {
            Need::Sqlite3 => "sqlite3",
            Need::Chromium => "chromium",
            Need::Socat => "socat",
            Need::Pymodbus => "pymodbus",
            Need::Netns => "root and ip",
        }
    }

    /// How to get it.
    pub fn hint(self) -> &'static str {
        match self {
            Need::Sqlite3 => "apt install sqlite3",
            Need::Chromium => "apt install chromium fonts-wqy-microhei",
            Need::Socat => "apt install socat",
            Need::Pymodbus => {
                "python3 -m venv V && V/bin/pip install -r tests/peers/requirements.txt, then CEMS_PYTHON=V/bin/python"
            }
            Need::Netns => "run as root with apt install iproute2",
        }
    }

    /// Whether it is there (looked up once per run).
    pub fn available(self) -> bool {
        static FOUND: [OnceLock<bool>; 5] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
        *FOUND[self as usize].get_or_init(|| match self {
            Need::Sqlite3 => runs("sqlite3", &["-version"]),
            Need::Chromium => chromium().is_some(),
            Need::Socat => runs("socat", &["-V"]),
            Need::Pymodbus => runs(&python(), &["-c", "import pymodbus, serial"]),
            Need::Netns => crate::netns::can_make_namespaces(),
        })
    }
}

/// Whether `program args` runs and succeeds.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Python that has pymodbus: `CEMS_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("CEMS_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Debian's `chromium` (or Ubuntu's `chromium-browser`) on `PATH`.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether a missing program fails its tests (`CEMS_REQUIRE_PEERS=1`).
pub fn required() -> bool {
    std::env::var("CEMS_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// The tests of this harness and what each needs.
#[derive(Default)]
pub struct Plan {
    trials: Vec<Trial>,
    /// Tests not run, with what they miss.
    ignored: Vec<(String, Vec<Need>)>,
}

impl Plan {
    /// Adds a test that needs `needs`.
    pub fn add(&mut self, name: &str, needs: &[Need], test: fn() -> Result<(), Failed>) {
        let kind = format!("needs {}", needs.iter().map(|n| n.name()).collect::<Vec<_>>().join(", "));
        let missing: Vec<Need> = needs.iter().copied().filter(|n| !n.available()).collect();
        let trial = if missing.is_empty() {
            Trial::test(name, test)
        } else if required() {
            let why = missing_text(&missing);
            Trial::test(name, move || Err(format!("{why}; CEMS_REQUIRE_PEERS=1 requires it").into()))
        } else {
            self.ignored.push((name.to_string(), missing));
            // The real test: `--ignored` runs it anyway, and then it fails for what it misses.
            Trial::test(name, test).with_ignored_flag(true)
        };
        self.trials.push(trial.with_kind(kind));
    }

    /// Runs the tests, then says what was not run and why; exits with the outcome.
    pub fn run(self) -> ! {
        let args = Arguments::from_args();
        let listing = args.list;
        let conclusion = libtest_mimic::run(&args, self.trials);
        if !listing && !self.ignored.is_empty() {
            let mut by_need: Vec<(Need, Vec<&str>)> = Vec::new();
            for (name, missing) in &self.ignored {
                for need in missing {
                    match by_need.iter_mut().find(|(n, _)| n == need) {
                        Some((_, names)) => names.push(name),
                        None => by_need.push((*need, vec![name])),
                    }
                }
            }
            by_need.sort();
            println!("{} not run (reported as ignored):", plural(self.ignored.len(), "test"));
            for (need, names) in by_need {
                println!("  {} not found ({}): {}", need.name(), need.hint(), names.join(", "));
            }
            println!(
                "  CEMS_REQUIRE_PEERS=1 makes a missing program a failure (.ci/run installs them all).\n"
            );
        }
        conclusion.exit()
    }
}

fn missing_text(missing: &[Need]) -> String {
    missing.iter().map(|n| format!("{} not found ({})", n.name(), n.hint())).collect::<Vec<_>>().join("; ")
}

/// `1 test`, `3 tests`.
fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}
