//! Found by the soak: real-time data (2011) of an outlet with many factors did not fit one HJ 212
//! packet and was never sent. It is split into numbered packets like the period uploads.

use std::sync::Arc;
use std::time::Duration;

use cems_gateway::live::Live;
use cems_gateway::model::{Flag, Sample, now_ms};
use cems_gateway::store::Store;
use cems_gateway::uplink::Link;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::config;

#[tokio::test]
async fn realtime_data_of_fifty_factors_is_split_and_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let platform = cems_gateway::sim::platform::serve(listener, Duration::ZERO, true);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut text = format!(
        "[site]\nmn = \"RTSPLIT0000001\"\npw = \"123456\"\n[storage]\npath = \"{}\"\n\
         [[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n\
         [[outlet]]\nname = \"kiln\"\nprofile = \"cement-kiln\"\nunlimited = [\"a21026\", \"a21002\", \"a34013\"]\n\
         [[device]]\nname = \"d\"\nbus = \"b\"\nslave = 1\noutlet = \"kiln\"\n",
        db.display()
    );
    for p in 0..50 {
        let factor = if p == 0 { "a19001".to_string() } else { format!("p{p:03}") };
        text += &format!("[[device.point]]\nfactor = \"{factor}\"\naddress = {}\ntype = \"f32\"\n", p * 2);
    }
    text += &format!(
        "[[uplink]]\nname = \"p\"\naddress = \"{address}\"\nminute = false\nhour = false\nday = false\n"
    );
    let mut cfg = config(&text);
    cfg.uplinks[0].rtd_interval = Duration::from_millis(200);
    let (store, _) = Store::open(&db).unwrap();
    let live = Arc::new(Live::default());
    let samples: Vec<Sample> = (0..50)
        .map(|p| Sample {
            ts_ms: now_ms(),
            device: Arc::from("d"),
            factor: Arc::from(if p == 0 { "a19001".to_string() } else { format!("p{p:03}") }.as_str()),
            value: Some(1_234.567_891 + f64::from(p)),
            flag: Flag::N,
        })
        .collect();
    live.record_poll("d", &samples, None);
    let cfg = Arc::new(cfg);
    drop(store);
    let link = Link::new(cfg.uplinks[0].clone(), cfg.clone(), crate::support::outbox(&db), live).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(link.run(stop_rx));
    let got = crate::support::eventually(Duration::from_secs(10), || {
        platform.all.lock().unwrap().iter().filter(|p| p.cn == "2011").count() >= 2
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(got, "real-time data arrives");
    let all = platform.all.lock().unwrap();
    let first: Vec<_> = all.iter().filter(|p| p.cn == "2011").collect();
    let (total, _) = first[0].packets.expect("split into numbered packets");
    let factors: usize = first
        .iter()
        .take(total as usize)
        .map(|p| p.cp.0.iter().filter(|item| item.iter().any(|(k, _)| k.ends_with("-Rtd"))).count())
        .sum();
    assert!(total >= 2 && factors == 50, "{total} packets carrying {factors} factors");
}
