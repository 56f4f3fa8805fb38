//! Modbus RTU over real pty pairs: a fault-injecting analyzer on the master side, the gateway's
//! link on the slave side. Every fault must give `B` (or `D`) without a value for the poll it
//! hits, and the next good reply must be used again.

use std::time::Duration;

use cems_gateway::acquire::{DevicePlan, Link, PollError};
use cems_gateway::config::Config;
use cems_gateway::model::Flag;

use crate::support::{Behaviour, RtuPeer, image, one_device_config, repoint};

fn rtu_config(path: &std::path::Path) -> Config {
    let dir = tempfile::tempdir().unwrap();
    one_device_config(
        &format!("kind = \"rtu\"\npath = \"{}\"\nbaud = 9600\ntimeout_ms = 200", path.display()),
        &dir.path().join("x.db"),
    )
}

fn link_and_plan(cfg: &Config) -> (Link, DevicePlan) {
    (Link::new(cfg.buses[0].clone()), DevicePlan::new(cfg.devices[0].clone()))
}

fn values(samples: &[cems_gateway::model::Sample]) -> Vec<(Option<f64>, Flag)> {
    samples.iter().map(|s| (s.value.map(|v| (v * 1000.0).round() / 1000.0), s.flag)).collect()
}

#[tokio::test]
async fn rtu_reads_decodes_and_flags() {
    let peer = RtuPeer::start(image(123.456, 10.5, 0));
    let cfg = rtu_config(&peer.path);
    let (mut link, plan) = link_and_plan(&cfg);
    assert_eq!(plan.blocks.len(), 1, "points and status coalesced into one request");
    let out = link.poll(&plan).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(values(&out.samples), vec![(Some(123.456), Flag::N), (Some(10.5), Flag::N)]);

    peer.set_regs(image(250.0, 10.5, 0));
    let out = link.poll(&plan).await;
    assert_eq!(values(&out.samples)[0], (Some(250.0), Flag::T), "above range_max 200");

    peer.set_regs(image(80.0, 10.5, 3));
    let out = link.poll(&plan).await;
    assert_eq!(values(&out.samples), vec![(Some(80.0), Flag::C), (Some(10.5), Flag::C)]);
}

/// Each fault: one poll flagged, the next poll (peer healthy again) normal.
#[tokio::test]
async fn rtu_faults_are_flagged_and_the_next_good_frame_is_used() {
    let peer = RtuPeer::start(image(42.0, 9.0, 0));
    let cfg = rtu_config(&peer.path);
    let (mut link, plan) = link_and_plan(&cfg);
    let cases = [
        (Behaviour::Silent, Flag::B),
        (Behaviour::Garbage, Flag::B),
        (Behaviour::BadCrc, Flag::B),
        (Behaviour::Exception(2), Flag::B),
        (Behaviour::Exception(4), Flag::D),
        (Behaviour::WrongSlave, Flag::B),
        (Behaviour::Partial, Flag::B),
    ];
    for (behaviour, flag) in cases {
        peer.set(behaviour.clone());
        let out = link.poll(&plan).await;
        assert!(out.error.is_some(), "{behaviour:?} must be an error");
        assert!(
            out.samples.iter().all(|s| s.flag == flag && s.value.is_none()),
            "{behaviour:?}: {:?}",
            out.samples
        );
        peer.set(Behaviour::Normal);
        let out = link.poll(&plan).await;
        assert!(out.error.is_none(), "after {behaviour:?}: {:?}", out.error);
        assert_eq!(
            values(&out.samples),
            vec![(Some(42.0), Flag::N), (Some(9.0), Flag::N)],
            "after {behaviour:?}"
        );
    }
}

#[tokio::test]
async fn garbage_before_a_good_reply_does_not_lose_the_link() {
    let peer = RtuPeer::start(image(42.0, 9.0, 0));
    let cfg = rtu_config(&peer.path);
    let (mut link, plan) = link_and_plan(&cfg);
    peer.set(Behaviour::GarbageThenGood);
    let first = link.poll(&plan).await;
    // Either the codec resynchronised onto the reply, or the poll is flagged B: never a wrong value.
    for s in &first.samples {
        assert!(s.flag == Flag::B && s.value.is_none() || s.flag == Flag::N && s.value.is_some());
    }
    peer.set(Behaviour::Normal);
    let out = link.poll(&plan).await;
    assert_eq!(values(&out.samples), vec![(Some(42.0), Flag::N), (Some(9.0), Flag::N)]);
}

#[tokio::test]
async fn a_silent_poll_costs_one_deadline() {
    let peer = RtuPeer::start(image(1.0, 2.0, 0));
    let cfg = rtu_config(&peer.path);
    let (mut link, plan) = link_and_plan(&cfg);
    peer.set(Behaviour::Silent);
    let out = link.poll(&plan).await;
    assert!(
        matches!(out.error, Some(PollError::Timeout(d)) if d == Duration::from_millis(200)),
        "{:?}",
        out.error
    );
}

#[tokio::test]
async fn unplug_and_replug_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let stable = dir.path().join("ttyCEMS");
    let peer = RtuPeer::start(image(42.0, 9.0, 0));
    repoint(&stable, &peer.path);
    let cfg = rtu_config(&stable);
    let (mut link, plan) = link_and_plan(&cfg);
    assert!(link.poll(&plan).await.error.is_none());

    let state = peer.unplug();
    let out = link.poll(&plan).await;
    assert!(out.error.is_some());
    assert!(out.samples.iter().all(|s| s.flag == Flag::B && s.value.is_none()));
    // While unplugged, every attempt fails and is flagged.
    let out = link.poll(&plan).await;
    assert!(out.samples.iter().all(|s| s.flag == Flag::B));

    let peer = RtuPeer::start_with(state);
    repoint(&stable, &peer.path);
    // The link retries with its capped backoff; poll as the bus task would, every 200 ms.
    let mut recovered = None;
    for _ in 0..100 {
        let out = link.poll(&plan).await;
        if out.error.is_none() {
            recovered = Some(out.samples);
            break;
        }
        assert!(out.samples.iter().all(|s| s.flag == Flag::B && s.value.is_none()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let samples = recovered.expect("no good poll within 20 s of replugging");
    assert_eq!(values(&samples), vec![(Some(42.0), Flag::N), (Some(9.0), Flag::N)]);
}
