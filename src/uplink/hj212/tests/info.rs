//! Field information exchanges (CN 3020, 3021; Annex C.40–C.46) through the session state
//! machine: requests answered with 9011, the frames and 9012; pushes as notices outside the
//! data window; 3021 refused and audited.

use super::*;
use crate::hj212::message::ExeRtn;
use crate::uplink::hj212::info::{Answer, InfoRequest};

fn gathered(actions: &[Action]) -> Option<(String, InfoRequest)> {
    actions.iter().find_map(|a| match a {
        Action::GatherInfo { request, info } => Some((request.clone(), info.clone())),
        _ => None,
    })
}

#[test]
fn a_3020_request_is_answered_9011_then_the_frames_with_its_qn_then_9012() {
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    let qn = "20261129100000040";
    let a = s.handle(at(10), from_platform("3020", qn, &[("PolId", "a21026"), ("InfoId", "i13001")]));
    assert_eq!(cns(&a), ["9011"]);
    assert_eq!(sent(&a)[0].cp.to_string(), "QnRtn=1");
    let (request, info) = gathered(&a).expect("the answer is gathered");
    assert_eq!(request, qn);
    assert_eq!(
        info,
        InfoRequest { pol_id: Some("a21026".into()), info_id: Some("i13001".into()), window: None }
    );
    let answer = Answer {
        frames: vec![Cp::single(&[
            ("DataTime", "20261129100000"),
            ("PolId", "a21026"),
            ("i13001-Info", "500"),
        ])],
        logs: Vec::new(),
        rtn: ExeRtn::Success,
    };
    let a = s.handle(at(11), Event::Info { request, answer });
    let p = sent(&a);
    assert_eq!(cns(&a), ["3020", "9012"]);
    // C.45: the response carries the request's QN and asks for no answer.
    assert_eq!((p[0].qn.as_deref(), p[0].flag, p[0].st.as_str()), (Some(qn), Some(4), "31"));
    assert_eq!(p[0].cp.to_string(), "DataTime=20261129100000;PolId=a21026;i13001-Info=500");
    assert_eq!((p[1].qn.as_deref(), p[1].cp.to_string().as_str()), (Some(qn), "ExeRtn=1"));
}

#[test]
fn log_frames_get_their_own_qns_and_a_refusal_is_a_9012_alone() {
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    let qn = "20261129100000041";
    let a = s.handle(
        at(10),
        from_platform(
            "3020",
            qn,
            &[("InfoId", "i21001"), ("BeginTime", "20261129080000"), ("EndTime", "20261129095959")],
        ),
    );
    let (request, info) = gathered(&a).unwrap();
    // Local 08:00 at +8 is 00:00 UTC; EndTime is inclusive to its second.
    assert_eq!(info.window, Some((T0 - 2 * HOUR, T0 - 1000)));
    let line =
        |t: &str| Cp::single(&[("DataTime", t), ("i21001-Info", "//配置 configuration start: sha256=ab//")]);
    let answer = Answer {
        frames: Vec::new(),
        logs: vec![line("20261129080000"), line("20261129090000")],
        rtn: ExeRtn::Success,
    };
    let p = sent(&s.handle(at(11), Event::Info { request, answer }));
    assert_eq!(p.iter().map(|p| p.cn.as_str()).collect::<Vec<_>>(), ["3020", "3020", "9012"]);
    // C.41: each log frame a QN of its own, then the 9012 with the request's.
    assert!(p[0].qn.as_deref() != Some(qn) && p[1].qn.as_deref() != Some(qn) && p[0].qn != p[1].qn);
    assert_eq!(p[2].qn.as_deref(), Some(qn));
    let refused = Answer { frames: Vec::new(), logs: Vec::new(), rtn: ExeRtn::ConditionError };
    let a = s.handle(at(12), from_platform("3020", "20261129100000042", &[("InfoId", "i13004")]));
    let (request, _) = gathered(&a).unwrap();
    let p = sent(&s.handle(at(13), Event::Info { request, answer: refused }));
    assert_eq!(
        p.iter().map(|p| (p.cn.as_str(), p.cp.to_string())).collect::<Vec<_>>(),
        [("9012", "ExeRtn=3".to_string())]
    );
    // A window given by halves is no request: QnRtn=2.
    let a = s.handle(
        at(14),
        from_platform("3020", "20261129100000043", &[("InfoId", "i21001"), ("BeginTime", "20261129080000")]),
    );
    assert_eq!(sent(&a)[0].cp.to_string(), "QnRtn=2");
    assert!(gathered(&a).is_none());
}

#[test]
fn a_push_is_a_notice_outside_a_full_data_window_and_a_refusal_does_not_drop_the_link() {
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    // The data window is full and unanswered.
    let a = s.handle(at(10), Event::Queued((1..=4).map(|i| hour(T0 - i * HOUR)).collect()));
    assert_eq!(s.in_flight(), 4);
    assert_eq!(cns(&a), ["2061", "2061", "2061", "2061"]);
    let cp = Cp::single(&[("DataTime", "20261129100000"), ("PolId", "a21026"), ("i13001-Info", "500")]);
    let a = s.handle(at(20), Event::Push(vec![cp.clone()]));
    let p = sent(&a);
    assert_eq!(cns(&a), ["3020"], "not held up by the data window");
    assert_eq!(p[0].flag, Some(5), "C.42/C.44: Flag=5 (ack_notices)");
    assert_eq!(p[0].cp, cp);
    assert_eq!(s.in_flight(), 4, "a notice takes no room in the window");
    // A platform without a 3020 handler refuses it: finished, audited, the link stays.
    let a = s.handle(at(30), from_platform("9011", p[0].qn.as_deref().unwrap(), &[("QnRtn", "2")]));
    assert!(dropped(&a).is_none());
    assert!(audits(&a).iter().any(|d| d.contains("CN=3020")), "{a:?}");
    assert_eq!(s.counters().notices_refused, 1);
    // With ack_notices off the push asks for nothing.
    let (mut quiet, _) = connected(
        Setup { asks: Asks { notices: false, ..setup().asks }, ..setup() },
        Settings { restart_ms: None, ..settings() },
    );
    let a = quiet.handle(at(10), Event::Push(vec![cp]));
    assert_eq!(sent(&a)[0].flag, Some(4));
}

#[test]
fn no_push_before_the_platform_assigned_the_mn() {
    let mut setup = setup_2025();
    setup.onboarding = true;
    setup.hardware = ["GW-1".into(), "CPU".into(), "MAC1".into(), "MAC2".into()];
    let (mut s, _) = connected(setup, Settings { mn: String::new(), restart_ms: None, ..settings() });
    let a = s.handle(
        at(10),
        Event::Push(vec![Cp::single(&[("DataTime", "20261129100000"), ("i22001-Info", "0")])]),
    );
    assert!(cns(&a).is_empty(), "{a:?}");
}

#[test]
fn a_3021_is_refused_with_qnrtn_2_and_audited_with_what_it_asked() {
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    let a = s.handle(
        at(10),
        from_platform(
            "3021",
            "20261129100000044",
            &[("PolId", "a21026"), ("InfoId", "i13001"), ("i13001-Info", "2000")],
        ),
    );
    let p = sent(&a);
    assert_eq!(
        p.iter().map(|p| (p.cn.as_str(), p.cp.to_string())).collect::<Vec<_>>(),
        [("9011", "QnRtn=2".to_string())]
    );
    assert_eq!(p[0].qn.as_deref(), Some("20261129100000044"));
    let entries = audits(&a);
    assert!(entries.iter().any(|d| d.contains("CN=3021") && d.contains("i13001-Info=2000")), "{entries:?}");
    assert!(
        entries.iter().any(|d| d.contains("CN=3021") && d.contains("refused with QnRtn=2")),
        "{entries:?}"
    );
    assert!(dropped(&a).is_none());
}
