//! Where the daemon's memory goes (`cargo bench --bench memory`), at the soak's load: 200
//! devices × 50 f32 points at 1 s over 10 TCP buses (600 KB of configuration), one outlet.
//!
//! A counting global allocator gives the Rust heap in use and its peak; SQLite's own allocator
//! reports its part (`sqlite3_memory_used`, page caches included); `/proc/self/status` gives
//! RSS. Reported: the configuration's text, its parse (heap in use after, peak during), one
//! clone of the parsed `Config`, the device plans, `Live` after every point has a value, then
//! the whole pipeline (`app::start` against the in-process simulator) after `MEM_SECS`
//! (default 90) of polling, with the split between Rust heap, SQLite and the rest of RSS.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;
use common::proc_status_kb;

use cems_gateway::acquire::DevicePlan;
use cems_gateway::config::validate;
use cems_gateway::live::Live;
use cems_gateway::sim::{self, Script, Sim};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                let now =
                    LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn sqlite_bytes() -> usize {
    // SAFETY: a read of SQLite's allocation counter; no pointers.
    unsafe { rusqlite::ffi::sqlite3_memory_used() as usize }
}

/// The soak's configuration (see `benches/soak.rs`), without the platform link.
fn config_text(db: &Path, address: &str) -> String {
    let mut text = format!(
        "[site]\nmn = \"SOAK0000000001\"\npw = \"123456\"\n[storage]\npath = \"{}\"\nmax_size_mb = 65536\n\
         [[outlet]]\nname = \"o\"\nprofile = \"cement-kiln\"\n",
        db.display()
    );
    text += &common::soak_devices(address, 200, 50, 1);
    text
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = std::env::var("MEM_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(90);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let address = rt.block_on(async {
        let sim = Arc::new(Sim::new(Default::default(), Script::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(sim::serve_tcp(listener, sim));
        address
    });

    let text = config_text(&dir.path().join("mem.db"), &address);
    println!("Memory at 10,000 f32 points (200 devices × 50, 10 TCP buses, one outlet):");
    println!("  configuration text              {:>7.2} MB", mb(text.len()));
    let before = live();
    reset_peak();
    let tree: std::collections::BTreeMap<String, serde::de::IgnoredAny> = toml::from_str(&text).unwrap();
    drop(tree);
    println!(
        "  the toml crate's document tree   peak {:.2} MB (what any parse of the text costs)",
        mb(peak() - before)
    );
    let before = live();
    reset_peak();
    let cfg = validate::parse(&text, dir.path()).expect("valid");
    let parsed = live() - before;
    println!(
        "  parsed Config                   {:>7.2} MB in use; parse peak {:.2} MB above it (Rust heap)",
        mb(parsed),
        mb(peak() - before)
    );
    let before = live();
    let cfg = cems_gateway::app::compact(cfg);
    let compacted = (parsed + live()).saturating_sub(before);
    println!("  compacted Config (what the daemon keeps) {:>7.2} MB", mb(compacted));
    let before = live();
    let plans: Vec<DevicePlan> = cfg.devices.iter().map(|d| DevicePlan::new(d.clone())).collect();
    println!("  device plans (sharing the devices)       {:>7.2} MB", mb(live() - before));
    let before = live();
    let view = Live::default();
    for p in &plans {
        view.record_poll(&p.name, &p.comm_failure(0), None);
    }
    println!("  Live with every point           {:>7.2} MB", mb(live() - before));
    drop((view, plans));

    let (rust0, sqlite0) = (live(), sqlite_bytes());
    let gateway =
        rt.block_on(async { cems_gateway::app::start_shared(cfg.clone(), "start") }).expect("pipeline");
    std::thread::sleep(Duration::from_secs(secs));
    let (rust1, sqlite1) = (live(), sqlite_bytes());
    let me = std::process::id();
    let (rss, anon, file) =
        (proc_status_kb(me, "VmRSS:"), proc_status_kb(me, "RssAnon:"), proc_status_kb(me, "RssFile:"));
    println!("  pipeline after {secs} s of polling:");
    println!(
        "    Rust heap in use              {:>7.2} MB (beyond the configuration above)",
        mb(rust1 - rust0)
    );
    println!("    SQLite (page caches, statements) {:>7.2} MB", mb(sqlite1 - sqlite0));
    println!(
        "    process RSS {:.1} MB: anonymous {:.1} MB (heap, arenas, stacks), file-backed {:.1} MB (the binary's pages)",
        rss as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0
    );
    println!("    stored {} samples", gateway.live.samples_stored());
    rt.block_on(gateway.stop());
}
