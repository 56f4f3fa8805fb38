//! Fuzzing regressions: every input kept by the fuzzing runs, the minimized corpora in
//! `fuzz/corpus/<target>` and the crash reproducers in `fuzz/artifacts/<target>`, replayed
//! through the fuzz targets' own bodies (`fuzz/fuzz_targets/checks.rs`), so that a fixed crash
//! stays fixed under `cargo test` without a nightly toolchain.

use std::path::Path;

#[path = "../../fuzz/fuzz_targets/checks.rs"]
mod checks;

/// Replays every file under `fuzz/{corpus,artifacts}/<target>`; returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} panics", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn hj212_decode_corpus_and_reproducers() {
    assert!(replay("hj212_decode", checks::hj212_decode) > 10);
}

#[test]
fn modbus_decode_corpus_and_reproducers() {
    assert!(replay("modbus_decode", checks::modbus_decode) > 10);
}

#[test]
fn config_load_corpus_and_reproducers() {
    assert!(replay("config_load", checks::config_load) > 10);
}

#[test]
fn compliance_csv_corpus_and_reproducers() {
    assert!(replay("compliance_csv", checks::compliance_csv) > 10);
}

#[test]
fn hj212_encrypted_corpus_and_reproducers() {
    assert!(replay("hj212_encrypted", checks::hj212_encrypted) > 10);
}

#[test]
fn hj212_stream_2025_corpus_and_reproducers() {
    assert!(replay("hj212_stream_2025", checks::hj212_stream_2025) > 10);
}

#[test]
fn uplink_session_corpus_and_reproducers() {
    assert!(replay("uplink_session", checks::uplink_session) > 10);
}
