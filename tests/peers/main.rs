//! The tests that need a program from outside Rust, in one harness that reports each of them as
//! ignored, with what is missing, when that program is not installed (see `need`), and fails
//! them under `CEMS_REQUIRE_PEERS=1`: the pymodbus and socat interop (`modbus`), key analyzer
//! parameters against a pymodbus analyzer with the whole gateway (`params`), the audit log
//! edited with the `sqlite3` shell (`sqlite3_cli`), the status page in headless chromium
//! (`browser`) and a platform link cut for real in a network namespace (`netns`).

mod browser;
mod modbus;
mod need;
mod netns;
mod params;
mod sqlite3_cli;
#[path = "../it/support/mod.rs"]
mod support;

fn main() {
    let mut plan = need::Plan::default();
    modbus::add(&mut plan);
    params::add(&mut plan);
    sqlite3_cli::add(&mut plan);
    browser::add(&mut plan);
    netns::add(&mut plan);
    plan.run()
}
