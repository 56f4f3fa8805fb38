//! Dead links found for real: the platform lives in a network namespace of its own, joined to
//! the gateway by a veth pair; once the exchange runs, the platform's end is set down, so that
//! every packet is dropped and nothing answers, as when a 4G modem loses its carrier (a
//! half-open connection: no FIN, no RST). TCP keepalive and `TCP_USER_TIMEOUT` on the platform
//! socket must find it within a minute; without them the link would wait for the kernel's
//! retransmission timeout (about fifteen minutes) or, idle, forever. Then the platform's end
//! comes back and the link reconnects.
//!
//! This needs root and `ip` (iproute2): `need::Need::Netns`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cems_gateway::config::validate;
use cems_gateway::live::Live;
use cems_gateway::model::now_ms;
use cems_gateway::sim::platform::{self, Platform};
use cems_gateway::store::Store;
use cems_gateway::store::outbox::Outbox;
use cems_gateway::uplink::Link;
use libtest_mimic::Failed;

use crate::need::{Need, Plan};

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).stdout(Stdio::null()).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A namespace and a veth pair, removed when dropped.
struct Net {
    ns: String,
    outer: String,
    inner: String,
    gateway_ip: String,
    platform_ip: String,
}

impl Net {
    fn create() -> Result<Net, String> {
        let id = std::process::id() % 10_000;
        let octet = 16 + id % 200;
        let net = Net {
            ns: format!("cemsdead{id}"),
            outer: format!("cvo{id}"),
            inner: format!("cvi{id}"),
            gateway_ip: format!("10.213.{octet}.1"),
            platform_ip: format!("10.213.{octet}.2"),
        };
        ip(&["netns", "add", &net.ns])?;
        ip(&["link", "add", &net.outer, "type", "veth", "peer", "name", &net.inner])?;
        ip(&["link", "set", &net.inner, "netns", &net.ns])?;
        ip(&["addr", "add", &format!("{}/30", net.gateway_ip), "dev", &net.outer])?;
        ip(&["link", "set", &net.outer, "up"])?;
        net.inside(&["addr", "add", &format!("{}/30", net.platform_ip), "dev", &net.inner])?;
        net.inside(&["link", "set", &net.inner, "up"])?;
        net.inside(&["link", "set", "lo", "up"])?;
        Ok(net)
    }

    fn inside(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.ns, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Sets the platform's end of the link down or up.
    fn platform_link(&self, up: bool) -> Result<(), String> {
        self.inside(&["link", "set", &self.inner, if up { "up" } else { "down" }])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.outer]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

/// Runs a platform inside the namespace (a thread that joined it, with a runtime of its own).
fn platform_in(net: &Net) -> Result<(Platform, String), String> {
    let path = format!("/run/netns/{}", net.ns);
    let bind = format!("{}:0", net.platform_ip);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let joined = std::fs::File::open(&path).map_err(|e| e.to_string()).and_then(|f| {
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
        });
        if let Err(e) = joined {
            let _ = tx.send(Err(e));
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = match tokio::net::TcpListener::bind(&bind).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let address = listener.local_addr().unwrap().to_string();
            let platform = platform::serve(listener, Duration::ZERO, true);
            let _ = tx.send(Ok((platform, address)));
            std::future::pending::<()>().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())?
}

fn half_open_link_is_found_within_a_minute() -> Result<(), Failed> {
    let net = Net::create()?;
    let (platform, address) = platform_in(&net)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = dir.path().join("n.db");
    // Two closed hours to deliver, then an idle link (no real-time data, no heartbeat: only
    // TCP's own means can tell that the platform is gone).
    let text = format!(
        "[site]\nmn = \"NETNS0000001\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n[[outlet]]\nname = \"kiln\"\n[[device]]\nname = \"gas\"\nbus = \"b\"\nslave = 1\noutlet = \"kiln\"\n[[device.point]]\nfactor = \"a21026\"\naddress = 0\ntype = \"f32\"\n[[uplink]]\nname = \"p\"\naddress = \"{address}\"\nrealtime = false\nminute = false\nday = false\nreconnect_max_s = 2\n",
        db.display()
    );
    let cfg = Arc::new(validate::parse(&text, std::path::Path::new("/")).map_err(|e| format!("{e:?}"))?);
    let (mut store, _) = Store::open(&db).map_err(|e| e.to_string())?;
    let now_local = now_ms() / 1000 + 8 * 3600;
    let hour = now_local - now_local.rem_euclid(3600);
    let records: Vec<_> = [hour - 7200, hour - 3600]
        .iter()
        .map(|s| cems_gateway::compute::Record {
            level: cems_gateway::compute::Level::Hour,
            start: *s,
            factor: "a21026".into(),
            stat: cems_gateway::compute::stats::Stat {
                n_total: 60,
                n_valid: 60,
                min: Some(1.0),
                avg: Some(1.0),
                max: Some(1.0),
                zs_min: None,
                zs_avg: None,
                zs_max: None,
                cou: None,
                flag: cems_gateway::model::Flag::N,
                valid: true,
            },
            limit: None,
            exceeded: false,
        })
        .collect();
    store.upsert_records("kiln", &records, 8 * 3600).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let live = Arc::new(Live::default());
    let result: Result<(), String> = rt.block_on(async {
        let (outbox, _thread) = Outbox::spawn(Store::open_secondary(&db).map_err(|e| e.to_string())?);
        let link = Link::new(cfg.uplinks[0].clone(), cfg.clone(), outbox, live.clone())
            .map_err(|e| e.to_string())?;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(link.run(stop_rx));
        let connected = || live.links().get("p").is_some_and(|s| s.connected);
        let hours = || platform.snapshot().by_cn.get("2061").copied().unwrap_or(0);
        wait(Duration::from_secs(20), || connected() && hours() >= 2)
            .await
            .ok_or("the hours never arrived")?;
        net.platform_link(false)?;
        let cut = Instant::now();
        wait(Duration::from_secs(120), || !connected())
            .await
            .ok_or("the dead link was not found in 2 minutes")?;
        let found = cut.elapsed();
        if found > Duration::from_secs(60) {
            return Err(format!("the dead link was found after {found:?}, over a minute"));
        }
        eprintln!("half-open link found after {:.1} s", found.as_secs_f64());
        net.platform_link(true)?;
        wait(Duration::from_secs(60), || platform.snapshot().connections >= 2 && connected())
            .await
            .ok_or("no new connection once the link was back")?;
        Ok(())
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    result.map_err(Failed::from)
}

async fn wait(within: Duration, check: impl Fn() -> bool) -> Option<()> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if check() {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().then_some(())
}

pub fn add(plan: &mut Plan) {
    plan.add(
        "netns::half_open_link_is_found_within_a_minute",
        &[Need::Netns],
        half_open_link_is_found_within_a_minute,
    );
}

/// Whether this process may create namespaces and veth pairs: root, and `ip` that works.
pub fn can_make_namespaces() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    let probe = format!("cemsprobe{}", std::process::id() % 10_000);
    let made = ip(&["netns", "add", &probe]).is_ok();
    let _ = ip(&["netns", "del", &probe]);
    made
}
