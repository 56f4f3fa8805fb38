//! What the daemon benchmarks share: their settings from the environment, readings of a process
//! from `/proc`, the soak's 10,000-point devices, and a loopback platform with
//! `cems-gateway simulate` beside it.

// Each bench uses part of this.
#![allow(dead_code)]

use std::time::Duration;

use cems_gateway::sim::platform::{self, Platform};

/// A setting from the environment, or `default`.
pub fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time (user + system) of `pid`, in clock ticks.
pub fn proc_stat_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, `RssAnon:`…); 0 once it is gone.
pub fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A field of `/proc/<pid>/io` (`write_bytes`, `wchar`…).
pub fn proc_io(pid: u32, key: &str) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(": ")?.trim().parse().ok()).unwrap_or(0)
}

/// The soak's buses and devices: 10 TCP buses to `address`, `devices` × `points` f32 polled
/// every second; the first `outlet_devices` devices belong to outlet `o` and carry the O2 and
/// the pollutants its conversion needs.
pub fn soak_devices(address: &str, devices: u32, points: u32, outlet_devices: u32) -> String {
    let mut text = String::new();
    for b in 0..10 {
        text += &format!("[[bus]]\nname = \"b{b}\"\nkind = \"tcp\"\naddress = \"{address}\"\n");
    }
    for d in 0..devices {
        let outlet = if d < outlet_devices { "outlet = \"o\"\n" } else { "" };
        text += &format!(
            "[[device]]\nname = \"d{d}\"\nbus = \"b{}\"\nslave = {}\npoll_interval_s = 1\n{outlet}",
            d % 10,
            10 + d % 238
        );
        for p in 0..points {
            let factor = match (d < outlet_devices, p) {
                (true, 0) => "a19001".to_string(),
                (true, 1) => "a21026".to_string(),
                (true, 2) => "a21002".to_string(),
                (true, 3) => "a34013".to_string(),
                _ => format!("p{d:03}{p:03}"),
            };
            text += &format!(
                "[[device.point]]\nfactor = \"{factor}\"\naddress = {}\ntype = \"f32\"\n",
                (p * 2) % 124
            );
        }
    }
    text
}

/// A platform acknowledging everything, on its own runtime thread, and `cems-gateway simulate`
/// as the analyzers on another loopback port.
pub struct Loopback {
    /// Keeps the platform running.
    _runtime: tokio::runtime::Runtime,
    pub platform_address: String,
    pub platform: Platform,
    pub simulator: std::process::Child,
    pub simulator_address: String,
}

impl Loopback {
    pub fn start(bin: &str) -> Loopback {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (platform_address, platform) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap().to_string();
            (address, platform::serve(listener, Duration::ZERO, false))
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let simulator_address = format!("127.0.0.1:{port}");
        let simulator = std::process::Command::new(bin)
            .args(["simulate", "--tcp", &simulator_address])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Loopback { _runtime: runtime, platform_address, platform, simulator, simulator_address }
    }

    /// Stops the simulator.
    pub fn stop_simulator(&mut self) {
        let _ = self.simulator.kill();
        let _ = self.simulator.wait();
    }
}
