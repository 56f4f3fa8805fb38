//! Identity through the session state machine: onboarding (CN 1001/1002) and a new password
//! (CN 1072); no data request promised before the MN is assigned, everything sent under the
//! identity in force (resends too), and room for RF=1 on a resend.

use super::*;

fn onboarding() -> (Session, Vec<Action>) {
    let mut setup = setup_2025();
    setup.onboarding = true;
    setup.hardware = ["GW-1".into(), "CPU".into(), "MAC1".into(), "MAC2".into()];
    connected(setup, Settings { mn: String::new(), restart_ms: None, realtime: true, ..settings() })
}

/// A 2025 request with the given MN.
fn to_mn(mn: &str, event: Event) -> Event {
    match v25(event) {
        Event::Packet(mut p) => {
            p.mn = mn.into();
            Event::Packet(p)
        }
        other => other,
    }
}

#[test]
fn before_the_mn_is_assigned_requests_for_data_are_refused_not_promised() {
    // Found by the `uplink_session` fuzz target: a platform that addressed the logger by its
    // empty MN got QnRtn=1 for a history request, and never its 9012 (no data goes out before
    // the MN is assigned).
    let (mut s, _) = onboarding();
    let range = [("BeginTime", "20261129070000"), ("EndTime", "20261129080000")];
    for (cn, cp) in [("2061", &range[..]), ("2011", &[]), ("2021", &[])] {
        let a = s.handle(at(10), to_mn("", from_platform(cn, "20261129100000050", cp)));
        let out = sent(&a);
        assert_eq!(out.len(), 1, "{cn}: {a:?}");
        assert_eq!((out[0].cn.as_str(), out[0].cp.to_string().as_str()), ("9011", "QnRtn=2"), "{cn}");
        assert!(!a.iter().any(|x| matches!(x, Action::LoadHistory { .. } | Action::Gather { .. })), "{a:?}");
        assert!(audits(&a).iter().any(|d| d.contains(&format!("CN={cn}")) && d.contains("before the MN")));
    }
    let a = s.handle(
        at(20),
        to_mn("NEWMN", from_platform("1002", "20261129100000051", &[("i23005-Info", "GW-1")])),
    );
    assert_eq!(s.identity().mn, "NEWMN", "{a:?}");
    let a = s.handle(at(30), to_mn("NEWMN", from_platform("2061", "20261129100000052", &range)));
    assert_eq!(sent(&a)[0].cp.to_string(), "QnRtn=1");
    assert!(a.iter().any(|x| matches!(x, Action::LoadHistory { kind: Kind::Hour, .. })), "{a:?}");
}

#[test]
fn the_live_schedules_start_when_the_mn_is_assigned_not_at_the_connection() {
    let (mut s, _) = onboarding();
    assert_eq!(s.next_deadline(), Some(10_000), "while onboarding: the 1001's OverTime, no real-time data");
    s.handle(
        at(5_000),
        to_mn("NEWMN", from_platform("1002", "20261129100000051", &[("i23005-Info", "GW-1")])),
    );
    assert_eq!(s.next_deadline(), Some(5_000), "real-time data is due now, not since the connection");
    let a = s.handle(at(5_000), Event::Tick);
    assert!(a.contains(&Action::Gather { what: Live::Pollutants, request: None }), "{a:?}");
    assert!(s.next_deadline() > Some(5_000));
}

#[test]
fn once_the_mn_is_assigned_nothing_goes_out_again_without_it() {
    // Found by the `uplink_session` fuzz target: notices sent before the 1002 (2081, 1014) were
    // sent again with the empty MN, and the 1001 itself was sent again after it was answered by
    // the assignment.
    let mut setup = setup_2025();
    setup.onboarding = true;
    setup.hardware = ["GW-1".into(), "CPU".into(), "MAC1".into(), "MAC2".into()];
    let (mut s, a) = connected(setup, Settings { mn: String::new(), ..settings() });
    assert_eq!(cns(&a), ["1001", "2081"]);
    assert!(sent(&a).iter().all(|p| p.mn.is_empty()));
    let restart_qn = sent(&a)[1].qn.clone();
    s.handle(
        at(5_000),
        to_mn("NEWMN", from_platform("1002", "20261129100000051", &[("i23005-Info", "GW-1")])),
    );
    let a = s.handle(at(10_000), Event::Tick);
    let again: Vec<Packet> = sent(&a).into_iter().filter(|p| p.cn != "9015").collect();
    assert_eq!(again.len(), 1, "the 2081 alone, the 1001 was answered by the 1002: {a:?}");
    assert_eq!((again[0].cn.as_str(), &again[0].qn), ("2081", &restart_qn), "the same frame");
    assert_eq!(again[0].mn, "NEWMN", "under the assigned MN");
}

#[test]
fn after_a_new_password_uploads_sent_again_carry_it() {
    // Found by the `uplink_session` fuzz target's identity check: after 1072 an upload still
    // unanswered was sent again under the old password (a platform that checks it answers
    // QnRtn=3 and the link drops).
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    let first = sent(&s.handle(at(5), Event::Queued(vec![hour(T0 - HOUR)])))[0].clone();
    assert_eq!(first.pw, "123456");
    let a = s.handle(at(10), from_platform("1072", "20261129100000060", &[("NewPW", "654321")]));
    let answers = sent(&a);
    assert_eq!(answers.len(), 2, "{a:?}");
    assert!(answers.iter().all(|p| p.pw == "123456"), "the request is answered under the old password");
    let again = sent(&s.handle(at(10_005), Event::Tick));
    assert_eq!(again.len(), 1);
    assert_eq!(
        (&again[0].qn, again[0].pw.as_str()),
        (&first.qn, "654321"),
        "the same frame, the new password"
    );
}

#[test]
fn in_2025_a_live_upload_that_just_fits_still_fits_when_sent_again_with_rf() {
    // Found by the `uplink_session` fuzz target: a live period of 1020-1024 characters went out,
    // and its resend, 5 characters longer with RF=1, could not be encoded (so never went out,
    // and the link dropped after ReCount).
    let mut near_the_limit = 0;
    let sizes = (6..=9).flat_map(|n| (0..=4).flat_map(move |c| (0..=22).map(move |z| (n, c, z))));
    for (n, cous, zeros) in sizes {
        let (mut s, _) = connected(setup_2025(), Settings { restart_ms: None, ..settings() });
        let mut item = hour(T0 - HOUR);
        (item.live, item.backlog) = (true, false);
        let Payload::Records(records) = &mut item.payload else { unreachable!() };
        let one = records[0].clone();
        *records = (0..n).map(|i| Record { factor: format!("a2{i:04}"), ..one.clone() }).collect();
        records.iter_mut().take(cous).for_each(|r| r.stat.cou = Some(10f64.powi(zeros)));
        // The period as one packet: does it fit without RF=1 and not with it?
        let cp = crate::hj212::message::period_cp("20261129090000", records);
        let mut whole = crate::hj212::message::upload(s.identity(), "20261129100000000", "2061", true, cp);
        let fits = whole.encode().is_ok();
        whole.rf = true;
        near_the_limit += usize::from(fits && whole.encode().is_err());
        let first = sent(&s.handle(at(5), Event::Queued(vec![item])));
        assert!(first.iter().all(|p| !p.rf && p.encode().is_ok()), "{n} records: {first:?}");
        let again = sent(&s.handle(at(10_005), Event::Tick));
        assert_eq!(again.len(), first.len());
        for p in &again {
            assert!(p.rf, "a resend is backlog");
            let len = p.segment().chars().count();
            assert!(p.encode().is_ok(), "{n} records, 1e{zeros}: a resend of {len} characters");
        }
    }
    assert!(near_the_limit > 0, "some of the periods tried fit one packet without RF=1 and not with it");
}
