//! House rules enforced as a test: every module opens with a `//!` line; no ignored or
//! should-panic tests; no stubs left in the code; no error message that repeats its source; the
//! links reach the store only through the outbox; the pure modules do no I/O, read no clock and
//! use no module that does; only `src/time.rs` formats stamps and converts offsets.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_has_a_doc_line_and_no_test_is_ignored() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 10);
    let mut problems = Vec::new();
    // Spelled in pieces so that this file does not trip its own check.
    let banned = [
        ["#[", "ignore"].concat(),
        ["should", "_panic"].concat(),
        ["todo", "!("].concat(),
        ["unimplemented", "!("].concat(),
    ];
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(root).unwrap().display();
        if !text.starts_with("//!") {
            problems.push(format!("{rel}: first line is not a //! module doc"));
        }
        for b in &banned {
            if text.contains(b.as_str()) {
                problems.push(format!("{rel}: contains {b}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// ARCHITECTURE.md: the outbox is the one owner of every link's queue, and no SQLite call is
/// made on the async runtime by a platform link: the links and the status page reach queues and
/// settings through the outbox only.
#[test]
fn the_links_reach_the_store_only_through_the_outbox() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/uplink"), &mut files);
    files.push(root.join("src/web/status.rs"));
    assert!(files.len() > 5);
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(root).unwrap().display();
        for banned in
            ["rusqlite", "store::Store", "Mutex<Store>", "set_cursor", ".cursor(", "next_record_start"]
        {
            if text.contains(banned) {
                problems.push(format!("{rel}: uses {banned}"));
            }
        }
    }
    // Cursors are moved by the outbox's queue alone (tools and tests set them through `Store`).
    let mut src = Vec::new();
    rust_files(&root.join("src"), &mut src);
    for file in src.iter().filter(|f| !f.starts_with(root.join("src/store"))) {
        if std::fs::read_to_string(file).unwrap().contains("set_cursor") {
            problems.push(format!("{}: moves a cursor outside the outbox", file.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A thiserror message that interpolates the error's own source prints the cause twice in an
/// error chain (`{:#}`, anyhow's context): "No such file or directory (os error 2): No such file
/// or directory (os error 2)". A field named `source`, or one marked `#[from]`/`#[source]`, is
/// the source; the message must not also show it (name the field `reason` instead).
#[test]
fn no_error_message_repeats_its_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let variant = regex::Regex::new(
        r#"#\[error\("((?:[^"\\]|\\.)*)"[^\]]*\]\s*\w+\s*(\((?:[^()]|\([^()]*\))*\)|\{[^{}]*\})"#,
    )
    .unwrap();
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(root).unwrap().display();
        for c in variant.captures_iter(&text) {
            let (message, fields) = (&c[1], &c[2]);
            let shown = |name: &str| {
                message.contains(&format!("{{{name}}}")) || message.contains(&format!("{{{name}:"))
            };
            let is_source = |decl: &str| decl.contains("#[from]") || decl.contains("#[source]");
            if fields.starts_with('(') {
                let decls: Vec<&str> = fields[1..fields.len() - 1].split(',').collect();
                for (i, decl) in decls.iter().enumerate() {
                    if is_source(decl) && shown(&i.to_string()) {
                        problems.push(format!("{rel}: \"{message}\" shows its source {{{i}}}"));
                    }
                }
            } else {
                for decl in fields[1..fields.len() - 1].split(',') {
                    let name = decl.split(':').next().unwrap_or("").split_whitespace().last().unwrap_or("");
                    if (name == "source" || is_source(decl)) && shown(name) {
                        problems.push(format!("{rel}: \"{message}\" shows its source {{{name}}}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The pure modules (ARCHITECTURE.md's first invariant): the HJ 212 codec, the emission
/// figures, register decoding, flags and read plans, and configuration validation. They take
/// values and give values: no file, socket, process, database, async runtime or clock. What
/// they need from outside (a key file, the time) is read by their callers and passed in.
const PURE: [&str; 9] = [
    "src/hj212",
    "src/compute",
    "src/acquire/registers.rs",
    "src/acquire/flags.rs",
    "src/acquire/plan.rs",
    "src/config/validate",
    "src/config/doc.rs",
    "src/config/raw.rs",
    "src/time.rs",
];

/// What a pure module may not name, and why. `std::net` is allowed for its address types
/// (parsing `"0.0.0.0:8080"` is pure) but not for sockets or name resolution.
const IMPURE: [(&str, &str); 14] = [
    ("std::fs", "files"),
    ("File::", "files"),
    ("tokio", "the async runtime and its I/O"),
    ("rusqlite", "the database (only `store` touches SQLite)"),
    ("TcpStream", "sockets"),
    ("TcpListener", "sockets"),
    ("UdpSocket", "sockets"),
    ("to_socket_addrs", "name resolution"),
    ("std::process", "processes"),
    ("std::env", "the environment"),
    ("SystemTime::now", "the wall clock: time comes with the data"),
    ("Instant::now", "the monotonic clock: time comes with the data"),
    ("now_ms(", "the wall clock: time comes with the data"),
    ("thread::sleep", "waiting"),
];

#[test]
fn pure_modules_do_no_io_and_read_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for p in PURE {
        let path = root.join(p);
        if path.is_dir() { rust_files(&path, &mut files) } else { files.push(path) }
    }
    assert!(files.len() >= 12, "the pure modules moved? found {files:?}");
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(root).unwrap().display();
        // Unit tests may use what they like; comments may name what the code does not use.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or_default();
            for (word, what) in IMPURE {
                if line.contains(word) {
                    problems.push(format!("{rel}:{}: {word} ({what})", n + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "a pure module does I/O or reads a clock:\n{}", problems.join("\n"));
}

/// What a pure module may use of the crate: other pure modules and the plain types (`model`,
/// `factors`, the configuration's types), never a module that does I/O (`report`, `store`,
/// `web`, `uplink`, `clock`…). The codec once imported `report` to format a time.
const PURE_MAY_USE: [&str; 10] = [
    "acquire::flags",
    "acquire::params",
    "acquire::registers",
    "acquire::plan",
    "compute",
    "config",
    "factors",
    "hj212",
    "model",
    "time",
];

#[test]
fn pure_modules_use_only_pure_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for p in PURE {
        let path = root.join(p);
        if path.is_dir() { rust_files(&path, &mut files) } else { files.push(path) }
    }
    let path = regex::Regex::new(r"crate::([a-z_0-9]+(?:::[a-z_0-9]+)?)").unwrap();
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(root).unwrap().display();
        for (n, line) in text.lines().enumerate() {
            let line = line.split("//").next().unwrap_or_default();
            for used in path.captures_iter(line).map(|c| c[1].to_string()) {
                if !PURE_MAY_USE.iter().any(|m| used == *m || used.starts_with(&format!("{m}::"))) {
                    problems.push(format!("{rel}:{}: crate::{used}", n + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "a pure module uses a module that does I/O:\n{}", problems.join("\n"));
}

/// ARCHITECTURE.md: time has one home. Outside `src/time.rs` nothing formats or parses a
/// calendar time by hand (HJ 212 stamps, RFC 3339, the page's and CLI's forms) and nothing
/// converts between plant-local time and UTC with offset arithmetic: they call `time`.
#[test]
fn only_time_rs_formats_stamps_and_converts_offsets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let home = root.join("src/time.rs");
    files.retain(|f| *f != home);
    assert!(files.len() > 50);
    let rules: [(&str, &str); 6] = [
        // Two zero-padded two-digit fields side by side (`{:02}{:02}`, `{m:02}-{d:02}`,
        // `{h:02}:{m:02}`) or a four-digit year before one: a date or a time of day.
        (r"\{[a-z_]*:0[24]\}[-: T]?\{[a-z_]*:02\}", "a hand-formatted date or time of day"),
        // The `time` crate's calendar and formatting types: time.rs wraps them.
        (
            r"\b(OffsetDateTime|PrimitiveDateTime|UtcOffset|format_description|time::Date|time::Month)\b",
            "calendar types",
        ),
        // Seconds of offset turned into milliseconds, or milliseconds into seconds and shifted.
        (r"offset(_s)?\)? \* 1_?000\b", "offset arithmetic"),
        (r"div_euclid\(1_?000\) \+ ", "offset arithmetic"),
        (r"/ 1_?000 \+ [a-z_.]*offset", "offset arithmetic"),
        (r"- [a-z_.]*offset(_s)?\) \* 1_?000", "offset arithmetic"),
    ];
    let rules: Vec<(regex::Regex, &str)> =
        rules.iter().map(|(r, what)| (regex::Regex::new(r).unwrap(), *what)).collect();
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(root).unwrap().display();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for (rule, what) in &rules {
                if rule.is_match(code) {
                    problems.push(format!("{rel}:{}: {what}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "use src/time.rs:\n{}", problems.join("\n"));
}

/// The rules above catch what they are meant to catch (a rule that matches nothing proves
/// nothing) and leave the frame's length and CRC fields alone.
#[test]
fn the_time_rules_catch_hand_formatting() {
    let date = regex::Regex::new(r"\{[a-z_]*:0[24]\}[-: T]?\{[a-z_]*:02\}").unwrap();
    for caught in [
        r#"format!("{:04}{:02}{:02}", y, m, d)"#,
        r#"format!("{year:04}-{month:02}-{day:02}")"#,
        r#"format!("{:02}:{:02}:{:02}", h, m, s)"#,
    ] {
        assert!(date.is_match(caught), "{caught}");
    }
    for left in [r###"format!("##{len:04}{segment}{:04X}\r\n", crc)"###, r#"format!("{:02}", cfg.st)"#] {
        assert!(!date.is_match(left), "{left}");
    }
    let offset = regex::Regex::new(r"- [a-z_.]*offset(_s)?\) \* 1_?000").unwrap();
    assert!(offset.is_match("(local - config.site.utc_offset_s) * 1000"));
    assert!(!offset.is_match("offset.utc_ms(local)"));
}
