//! House rules enforced as a test: every module opens with a `//!` line; no ignored or
//! should-panic tests; no stubs left in the code; no error message that repeats its source; the
//! links reach the store only through the outbox; the pure modules do no I/O and read no clock.

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
