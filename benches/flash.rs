//! Flash wear (`cargo bench --bench flash`): bytes the real daemon writes to the device, from
//! `/proc/<pid>/io` `write_bytes` (what reaches the block layer: WAL appends, checkpoints into
//! the database file, the WAL index), over a window after a warm-up, per day and per stored
//! sample, against the payload (what the samples take in the database file).
//!
//! `FLASH_LOAD=typical` (default): a typical plant, 3 outlets × 15 points polled every 5 s
//! (per outlet a gas analyzer, a dust meter, a flue probe with the kiln's run status and a
//! two-point analyzer over Modbus TCP), each outlet uploaded to a loopback HJ 212 platform
//! (real-time every 30 s, minutes, hours, days). `FLASH_LOAD=10k`: the soak's 200 devices × 50
//! f32 points at 1 s with one outlet and its link. `FLASH_SECS` sets the window (1800 typical,
//! 600 for 10k), `FLASH_FLUSH_MS` the store's flush interval (the configuration's default when
//! unset). The buffer lives in a temporary directory under `FLASH_DIR` (default: the system's
//! temp dir), which must be on a real block device for `write_bytes` to count.

use std::time::{Duration, Instant};

mod common;
use common::{env_u64, proc_io};

use cems_gateway::store::Store;

fn file_len(path: &std::path::Path, suffix: &str) -> u64 {
    std::fs::metadata(format!("{}{suffix}", path.display())).map_or(0, |m| m.len())
}

fn typical(simulator: &str, platform: &str) -> String {
    let mut text = String::new();
    for o in 0..3 {
        text += &format!(
            "[[bus]]\nname = \"bus{o}\"\nkind = \"tcp\"\naddress = \"{simulator}\"\n\
             [[outlet]]\nname = \"stack{o}\"\nprofile = \"cement-kiln\"\nduct_area_m2 = 12.57\nrun_status = \"SB{o}-RS\"\n\
             [[uplink]]\nname = \"province{o}\"\naddress = \"{platform}\"\noutlet = \"stack{o}\"\nmn = \"FLASH00000000{o}\"\n\
             realtime = true\nrtd_interval_s = 30\nminute = true\nhour = true\nday = true\n"
        );
        let poll = format!("bus = \"bus{o}\"\npoll_interval_s = 5\noutlet = \"stack{o}\"\n");
        text += &format!("[[device]]\nname = \"gas{o}\"\nslave = 1\n{poll}");
        text +=
            "[[device.status]]\naddress = 20\ntype = \"u16\"\nmap = { 1 = \"M\", 2 = \"D\", 3 = \"C\" }\n";
        for (i, f) in ["a21026", "a21002", "a21003", "a21004", "a19001", "a21005"].iter().enumerate() {
            text += &format!("[[device.point]]\nfactor = \"{f}\"\naddress = {}\ntype = \"f32\"\n", i * 2);
        }
        text += &format!("[[device]]\nname = \"dust{o}\"\nslave = 2\n{poll}");
        text += "[[device.point]]\nfactor = \"a34013\"\naddress = 0\ntype = \"f32\"\n";
        text += &format!("[[device]]\nname = \"flow{o}\"\nslave = 3\n{poll}");
        for (i, f) in ["a01012", "a01013", "a01011", "a01014", "a01017"].iter().enumerate() {
            text += &format!(
                "[[device.point]]\nfactor = \"{f}\"\ntable = \"input\"\naddress = {}\ntype = \"f32\"\n",
                i * 2
            );
        }
        text += &format!("[[device.point]]\nfactor = \"SB{o}-RS\"\naddress = 21\ntype = \"u16\"\n");
        text += &format!("[[device]]\nname = \"acid{o}\"\nslave = {}\n{poll}", 10 + o);
        for (i, f) in ["a21024", "a21001"].iter().enumerate() {
            text += &format!("[[device.point]]\nfactor = \"{f}\"\naddress = {}\ntype = \"f32\"\n", i * 2);
        }
    }
    text
}

fn ten_thousand(simulator: &str, platform: &str) -> String {
    let mut text = String::from("[[outlet]]\nname = \"o\"\nprofile = \"cement-kiln\"\n");
    text += &common::soak_devices(simulator, 200, 50, 1);
    text += &format!(
        "[[uplink]]\nname = \"soak\"\naddress = \"{platform}\"\noutlet = \"o\"\nrealtime = true\nrtd_interval_s = 30\n\
         minute = true\nhour = true\nday = true\n"
    );
    text
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let load = std::env::var("FLASH_LOAD").unwrap_or_else(|_| "typical".into());
    let heavy = load == "10k";
    let secs = env_u64("FLASH_SECS", if heavy { 600 } else { 1800 });
    let base = std::env::var_os("FLASH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    let bin = env!("CARGO_BIN_EXE_cems-gateway");

    let mut loopback = common::Loopback::start(bin);
    let db = dir.path().join("flash.db");
    let flush = std::env::var("FLASH_FLUSH_MS").map(|ms| format!("flush_ms = {ms}\n")).unwrap_or_default();
    let mut text = format!(
        "[site]\nmn = \"FLASH000000000\"\npw = \"123456\"\n[storage]\npath = \"{}\"\nmax_size_mb = 65536\n{flush}",
        db.display()
    );
    let (simulator, platform) = (&loopback.simulator_address, &loopback.platform_address);
    text += &if heavy { ten_thousand(simulator, platform) } else { typical(simulator, platform) };
    let cfg_path = dir.path().join("flash.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let log = std::fs::File::create(dir.path().join("gw.log")).unwrap();
    let mut gw =
        std::process::Command::new(bin).args(["run", "--config"]).arg(&cfg_path).stderr(log).spawn().unwrap();
    let pid = gw.id();
    // A warm-up past the first minute's seal and the first checkpoint's start.
    std::thread::sleep(Duration::from_secs(90));
    let open = |db: &std::path::Path| Store::open_read_only(db).unwrap();
    let (n0, used0) = {
        let s = open(&db);
        (s.count().unwrap(), s.used_bytes().unwrap())
    };
    let (w0, c0, t0) = (proc_io(pid, "write_bytes"), proc_io(pid, "wchar"), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (w1, c1, elapsed) = (proc_io(pid, "write_bytes"), proc_io(pid, "wchar"), t0.elapsed().as_secs_f64());
    let (n1, used1) = {
        let s = open(&db);
        (s.count().unwrap(), s.used_bytes().unwrap())
    };
    let wal = file_len(&db, "-wal");
    // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = gw.wait();
    loopback.stop_simulator();
    let samples = n1 - n0;
    let written = w1 - w0;
    let per_day = |b: u64| b as f64 / elapsed * 86_400.0;
    let payload = used1.saturating_sub(used0);
    println!("flash, load {load}, {elapsed:.0} s window after a 90 s warm-up:");
    println!("  samples stored       {samples} ({:.1}/s)", samples as f64 / elapsed);
    println!(
        "  written to the device {:.1} MB ({:.0} MB/day), {:.0} bytes per stored sample",
        written as f64 / 1e6,
        per_day(written) / 1e6,
        written as f64 / samples.max(1) as f64
    );
    println!(
        "  write(2) bytes        {:.1} MB ({:.0} MB/day)",
        (c1 - c0) as f64 / 1e6,
        per_day(c1 - c0) / 1e6
    );
    println!(
        "  payload               {:.1} MB of database pages for the samples and records ({:.1} bytes per sample); written / payload = {:.1}",
        payload as f64 / 1e6,
        payload as f64 / samples.max(1) as f64,
        written as f64 / payload.max(1) as f64
    );
    println!("  WAL at the end        {:.1} MB", wal as f64 / 1e6);
    let r = loopback.platform.snapshot();
    println!(
        "  platform received     2011 ×{} 2051 ×{} 2061 ×{}",
        r.by_cn.get("2011").unwrap_or(&0),
        r.by_cn.get("2051").unwrap_or(&0),
        r.by_cn.get("2061").unwrap_or(&0)
    );
}
