//! Fuzz target: arbitrary text as a configuration file. `config::validate::parse` must return
//! a `Config` or a list of errors, each with a line inside the file, and never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = cems_gateway::config::validate::parse(text, Path::new("/etc/cems-gateway")) {
        assert!(!errors.is_empty(), "an invalid file has at least one problem");
        for e in &errors {
            let _ = e.to_string();
        }
    }
});
