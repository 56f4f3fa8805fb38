//! The session state machine exchange by exchange, with the behaviours real platforms show:
//! refusing or ignoring notices, acknowledging only data, answering nothing; Annex C's request
//! exchanges; the send window; heartbeats; onboarding and key renewal (HJ 212-2025).

use super::state::*;
use crate::compute::stats::Stat;
use crate::compute::{Level, Record};
use crate::hj212::frame::Version;
use crate::hj212::{Cp, Packet};
use crate::model::Flag;
use crate::store::audit::AuditKind;
use crate::store::outbox::{Item, Kind, Payload};

const MN: &str = "88888880000001";
const HOUR: i64 = 3_600_000;
/// 2026-11-29 10:00 local (+8) in Unix ms.
const T0: i64 = 1_795_917_600_000;

fn setup() -> Setup {
    Setup {
        name: "province".into(),
        st: "31".into(),
        version: Version::V2017,
        window: 4,
        asks: Asks { data: true, run_time: false, realtime: false, notices: true },
        accept_2017: false,
        onboarding: false,
        hardware: Default::default(),
        heartbeat_ms: None,
        encrypts: false,
        key_request_after_ms: 80 * 86_400_000,
        offset: crate::time::Offset::CHINA,
        content: None,
    }
}

fn settings() -> Settings {
    Settings {
        pw: "123456".into(),
        mn: MN.into(),
        overtime_ms: 10_000,
        recount: 3,
        rtd_interval_ms: 30_000,
        min_interval: 10,
        realtime: false,
        run_status: false,
        key_created_ms: T0,
        restart_ms: Some(T0 - 60_000),
    }
}

fn at(mono: u64) -> Now {
    Now { mono, wall_ms: T0 + mono as i64 }
}

fn sent(actions: &[Action]) -> Vec<Packet> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(p.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn cns(actions: &[Action]) -> Vec<String> {
    sent(actions).iter().map(|p| p.cn.clone()).collect()
}

fn fetch(actions: &[Action]) -> Option<usize> {
    actions.iter().find_map(|a| match a {
        Action::Fetch(n) => Some(*n),
        _ => None,
    })
}

fn dropped(actions: &[Action]) -> Option<Fault> {
    actions.iter().find_map(|a| match a {
        Action::Drop(f) => Some(f.clone()),
        _ => None,
    })
}

fn audits(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Audit { detail, .. } => Some(detail.clone()),
            _ => None,
        })
        .collect()
}

fn delivered(actions: &[Action]) -> Vec<(Kind, i64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Delivered { kind, start_ms } => Some((*kind, *start_ms)),
            _ => None,
        })
        .collect()
}

/// A packet from the platform.
fn from_platform(cn: &str, qn: &str, cp: &[(&str, &str)]) -> Event {
    let st = if message_is_answer(cn) { "91" } else { "31" };
    Event::Packet(Packet {
        qn: Some(qn.into()),
        st: st.into(),
        cn: cn.into(),
        pw: "123456".into(),
        mn: MN.into(),
        flag: Some(if message_is_answer(cn) { 4 } else { 5 }),
        packets: None,
        rf: false,
        cp: Cp::single(cp),
    })
}

/// The same packet with HJ 212-2025 version bits (Flag 8 or 9).
fn v25(event: Event) -> Event {
    match event {
        Event::Packet(mut p) => {
            p.flag = p.flag.map(|f| (f & 3) | 8);
            Event::Packet(p)
        }
        other => other,
    }
}

fn message_is_answer(cn: &str) -> bool {
    crate::hj212::message::is_response(cn)
}

fn ack(p: &Packet) -> Event {
    from_platform("9014", p.qn.as_deref().unwrap(), &[])
}

fn hour(start_ms: i64) -> Item {
    let record = Record {
        level: Level::Hour,
        start: crate::time::Offset::CHINA.local_secs(start_ms),
        factor: "a21026".into(),
        stat: Stat {
            n_total: 60,
            n_valid: 60,
            min: Some(1.0),
            avg: Some(2.0),
            max: Some(3.0),
            zs_min: Some(1.25),
            zs_avg: Some(2.5),
            zs_max: Some(3.75),
            cou: None,
            flag: Flag::N,
            valid: true,
        },
        limit: Some(35.0),
        exceeded: false,
    };
    Item { kind: Kind::Hour, start_ms, live: false, backlog: true, payload: Payload::Records(vec![record]) }
}

fn value(factor: &str, value: Option<f64>, flag: Flag) -> crate::compute::realtime::Value {
    crate::compute::realtime::Value { factor: factor.into(), value, zs: None, flag, unconvertible: false }
}

/// A session just connected; returns it and what it sent.
fn connected(setup: Setup, settings: Settings) -> (Session, Vec<Action>) {
    let mut s = Session::new(setup, settings);
    let a = s.handle(at(0), Event::Connected);
    (s, a)
}

#[test]
fn on_connection_2081_with_flag_a_then_the_queue_without_waiting() {
    let (s, a) = connected(setup(), settings());
    let p = sent(&a);
    // No 1013: the gateway refuses a platform's 1012 (its clock follows NTP), so it does not ask
    // for one.
    assert_eq!(cns(&a), ["2081"]);
    assert_eq!(p[0].flag, Some(5), "asks for an answer, as the standard's 2081 example does");
    assert_eq!(p[0].cp.get("RestartTime"), Some("20261129095900"), "the process start, not this connection");
    assert_eq!(fetch(&a), Some(4), "data does not wait for the notices");
    assert_eq!(s.mode(), Mode::Normal { look_at: 0 });
}

#[test]
fn a_reload_sends_no_2081() {
    let (_, a) = connected(setup(), Settings { restart_ms: None, ..settings() });
    assert!(cns(&a).is_empty(), "{a:?}");
}

#[test]
fn a_notice_refused_with_qnrtn_2_is_finished_audited_and_never_answered() {
    let (mut s, a) = connected(setup(), settings());
    let restart = sent(&a)[0].clone();
    let a = s.handle(at(100), from_platform("9011", restart.qn.as_deref().unwrap(), &[("QnRtn", "2")]));
    assert!(sent(&a).is_empty(), "a 9011 is never answered: {a:?}");
    assert!(dropped(&a).is_none());
    assert!(audits(&a).iter().any(|d| d.contains("CN=2081") && d.contains("QnRtn=2")), "{a:?}");
    assert!(a.contains(&Action::Save { key: "restart_notified_ms", value: (T0 - 60_000).to_string() }));
    assert_eq!(s.counters().notices_refused, 1);
    // Long after: nothing is sent again for it.
    let a = s.handle(at(60_000), Event::Queued(Vec::new()));
    let a2 = s.handle(at(61_000), Event::Tick);
    assert!(!cns(&a).contains(&"2081".to_string()) && !cns(&a2).contains(&"2081".to_string()));
}

#[test]
fn a_notice_never_answered_is_given_up_after_recount_and_the_link_stays() {
    let (mut s, _) = connected(setup(), settings());
    let mut all = Vec::new();
    for t in [10_000, 20_000, 30_000] {
        let a = s.handle(at(t), Event::Tick);
        assert!(dropped(&a).is_none(), "at {t}: {a:?}");
        all.extend(a);
    }
    // 2081: sent twice more (3 attempts), then given up.
    let again = cns(&all);
    assert_eq!(again.iter().filter(|c| *c == "2081").count(), 2, "{again:?}");
    assert_eq!(s.counters().notices_unanswered, 1);
    let given_up = audits(&all);
    assert!(given_up.iter().any(|d| d.contains("CN=2081") && d.contains("unanswered")), "{given_up:?}");
    assert!(all.iter().any(|a| matches!(a, Action::Save { key: "restart_notified_ms", .. })));
    let later = s.handle(at(90_000), Event::Tick);
    assert!(!cns(&later).iter().any(|c| c == "2081"));
}

#[test]
fn a_platform_that_acknowledges_only_data_gets_all_of_it_on_one_connection() {
    let (mut s, _) = connected(setup(), settings());
    let starts: Vec<i64> = (0..8).map(|i| T0 - (8 - i) * HOUR).collect();
    let mut done = Vec::new();
    let mut queue: std::collections::VecDeque<i64> = starts.iter().copied().collect();
    let mut a = s.handle(at(10), Event::Queued(queue.drain(..4).map(hour).collect()));
    for t in 1..200u64 {
        // The platform: 9014 for data, silence for everything else.
        let now = at(10 + t * 1000);
        let mut next = Vec::new();
        for p in sent(&a).iter().filter(|p| p.cn == "2061") {
            next.extend(s.handle(now, ack(p)));
        }
        if let Some(n) = fetch(&next).or(fetch(&a)) {
            let items: Vec<Item> = queue.drain(..n.min(queue.len())).map(hour).collect();
            next.extend(s.handle(now, Event::Queued(items)));
        }
        next.extend(s.handle(now, Event::Tick));
        assert!(dropped(&next).is_none(), "at {t}: {next:?}");
        done.extend(delivered(&next));
        a = next;
    }
    let got: Vec<i64> = done.iter().map(|(_, s)| *s).collect();
    assert_eq!(got, starts, "every period delivered once, in order");
}

#[test]
fn an_unanswered_upload_is_resent_after_overtime_then_the_link_is_dropped() {
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    let a = s.handle(at(5), Event::Queued(vec![hour(T0 - HOUR)]));
    let first = sent(&a)[0].clone();
    assert_eq!(first.flag, Some(5));
    let a = s.handle(at(10_005), Event::Tick);
    assert_eq!(sent(&a).iter().filter(|p| p.cn == "2061").count(), 1, "sent again");
    assert_eq!(sent(&a)[0].qn, first.qn, "a resend repeats the frame");
    let a = s.handle(at(20_005), Event::Tick);
    assert_eq!(sent(&a).iter().filter(|p| p.cn == "2061").count(), 1);
    let a = s.handle(at(30_005), Event::Tick);
    assert_eq!(dropped(&a), Some(Fault::NoAck(3)));
}

#[test]
fn a_platform_that_answers_a_full_window_slowly_one_by_one_is_waited_for() {
    let mut setup = setup();
    setup.window = 32;
    let (mut s, _) = connected(setup, Settings { restart_ms: None, ..settings() });
    let items: Vec<Item> = (0..32).map(|i| hour(T0 - (40 - i) * HOUR)).collect();
    let out = sent(&s.handle(at(5), Event::Queued(items)));
    assert_eq!(out.len(), 32);
    // One answer every 2 s: the last comes 64 s after it was sent, far past OverTime (10 s).
    for (i, p) in out.iter().enumerate() {
        let t = 5 + 2_000 * (i as u64 + 1);
        let tick = s.handle(at(t), Event::Tick);
        assert!(!cns(&tick).contains(&"2061".to_string()) && dropped(&tick).is_none(), "at {t}: {tick:?}");
        s.handle(at(t), ack(p));
    }
    assert_eq!(s.in_flight(), 0);
    // Silence is another matter: the next upload is sent again after OverTime.
    let more = sent(&s.handle(at(70_000), Event::Queued(vec![hour(T0 - HOUR)])));
    let a = s.handle(at(80_000), Event::Tick);
    let again: Vec<Packet> = sent(&a).into_iter().filter(|p| p.cn == "2061").collect();
    assert_eq!(again, more);
}

#[test]
fn the_window_bounds_what_is_in_flight_and_order_is_kept() {
    let (mut s, a) = connected(setup(), Settings { restart_ms: None, ..settings() });
    assert_eq!(fetch(&a), Some(4));
    let items: Vec<Item> = (0..4).map(|i| hour(T0 - (10 - i) * HOUR)).collect();
    let a = s.handle(at(5), Event::Queued(items));
    let out = sent(&a);
    let times: Vec<&str> = out.iter().map(|p| p.cp.get("DataTime").unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert_eq!(s.in_flight(), 4);
    assert_eq!(s.mode(), Mode::Draining, "a full batch: more is waiting");
    assert_eq!(fetch(&a), None, "the window is full");
    // The second is acknowledged first: its period is done, the window has room for one.
    let a = s.handle(at(6), ack(&out[1]));
    assert_eq!(delivered(&a), [(Kind::Hour, T0 - 9 * HOUR)]);
    assert_eq!(fetch(&a), Some(1));
    // The outbox had nothing more: the queue is looked at again a second later.
    let a = s.handle(at(7), Event::Queued(Vec::new()));
    assert_eq!(s.mode(), Mode::Normal { look_at: 7 + QUEUE_POLL_MS });
    assert_eq!(fetch(&a), None);
    assert_eq!(fetch(&s.handle(at(7 + QUEUE_POLL_MS), Event::Tick)), Some(1));
}

#[test]
fn an_ack_false_link_sends_without_flag_a_and_delivers_once_written() {
    let mut setup = setup();
    setup.asks = Asks { data: false, run_time: false, realtime: false, notices: false };
    let (mut s, a) = connected(setup, settings());
    assert!(sent(&a).iter().all(|p| p.flag == Some(4)), "notices without Flag A too");
    assert!(a.contains(&Action::Save { key: "restart_notified_ms", value: (T0 - 60_000).to_string() }));
    let a = s.handle(at(5), Event::Queued((1..=4).map(|h| hour(T0 - h * HOUR)).collect()));
    // Each period: written, then delivered (in that order: the session writes first).
    let kinds: Vec<&str> = a
        .iter()
        .filter_map(|x| match x {
            Action::Send(_) => Some("send"),
            Action::Delivered { .. } => Some("delivered"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["send", "delivered"].repeat(4));
    assert!(sent(&a).iter().all(|p| p.flag == Some(4)));
    assert_eq!(s.in_flight(), 0);
    assert_eq!(fetch(&a), Some(4), "a full batch and nothing in flight: the next one at once");
}

#[test]
fn overlapping_history_requests_are_queued_and_each_gets_its_9012() {
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    let a = s.handle(at(5), Event::Queued(Vec::new()));
    assert!(sent(&a).is_empty());
    let r1 = from_platform(
        "2061",
        "20261129100000001",
        &[("BeginTime", "20261129070000"), ("EndTime", "20261129080000")],
    );
    let r2 = from_platform(
        "2061",
        "20261129100000002",
        &[("BeginTime", "20200101000000"), ("EndTime", "20200102000000")],
    );
    let a1 = s.handle(at(10), r1);
    assert_eq!(sent(&a1)[0].cn, "9011");
    assert!(a1.contains(&Action::LoadHistory {
        kind: Kind::Hour,
        from_ms: T0 - 3 * HOUR,
        to_ms: T0 - 2 * HOUR
    }));
    let a2 = s.handle(at(11), r2);
    assert_eq!((sent(&a2)[0].cn.as_str(), sent(&a2)[0].qn.as_deref()), ("9011", Some("20261129100000002")));
    assert!(!a2.iter().any(|a| matches!(a, Action::LoadHistory { .. })), "the second waits for the first");
    let a = s.handle(at(12), Event::HistoryPeriods(vec![T0 - 3 * HOUR, T0 - 2 * HOUR]));
    assert!(
        a.contains(&Action::LoadPeriods { kind: Kind::Hour, starts: vec![T0 - 3 * HOUR, T0 - 2 * HOUR] })
    );
    let a = s.handle(at(13), Event::HistoryItems(vec![hour(T0 - 3 * HOUR), hour(T0 - 2 * HOUR)]));
    let uploads = sent(&a);
    assert_eq!(uploads.len(), 2);
    assert!(uploads.iter().all(|p| p.qn.as_deref() != Some("20261129100000001")), "new QNs");
    let a = s.handle(at(14), ack(&uploads[0]));
    assert!(sent(&a).is_empty());
    assert!(delivered(&a).is_empty(), "history answers are not the queue's periods");
    let a = s.handle(at(15), ack(&uploads[1]));
    let done = sent(&a);
    assert_eq!(done[0].cn, "9012");
    assert_eq!((done[0].qn.as_deref(), done[0].cp.get("ExeRtn")), (Some("20261129100000001"), Some("1")));
    assert!(a.iter().any(|x| matches!(x, Action::LoadHistory { kind: Kind::Hour, .. })), "now the second");
    let a = s.handle(at(16), Event::HistoryPeriods(Vec::new()));
    let done = sent(&a);
    assert_eq!((done[0].qn.as_deref(), done[0].cp.get("ExeRtn")), (Some("20261129100000002"), Some("100")));
}

#[test]
fn a_2011_request_gets_9011_then_the_data_then_9012() {
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    let a = s.handle(at(10), from_platform("2011", "20261129100000003", &[]));
    assert_eq!(sent(&a)[0].cp.to_string(), "QnRtn=1");
    assert!(a.contains(&Action::Save { key: "realtime", value: "1".into() }));
    assert!(
        a.contains(&Action::Gather { what: Live::Pollutants, request: Some("20261129100000003".into()) })
    );
    let values = vec![value("a21026", Some(18.5), Flag::N)];
    let a = s.handle(
        at(11),
        Event::Values { what: Live::Pollutants, values, request: Some("20261129100000003".into()) },
    );
    let out = sent(&a);
    assert_eq!(out[0].cn, "2011");
    assert_eq!(out[0].cp.get("a21026-Rtd"), Some("18.5"));
    assert_eq!(out[0].flag, Some(4), "real-time asks for no answer by default");
    assert_eq!((out[1].cn.as_str(), out[1].qn.as_deref()), ("9012", Some("20261129100000003")));
    assert_eq!(out[1].cp.get("ExeRtn"), Some("1"));
    // From now on every RtdInterval.
    let a = s.handle(at(11 + 30_000), Event::Tick);
    assert!(a.contains(&Action::Gather { what: Live::Pollutants, request: None }));
}

#[test]
fn answers_from_the_platform_are_matched_or_ignored_never_answered() {
    let (mut s, _) = connected(setup(), settings());
    for (cn, cp) in [("9011", "2"), ("9011", "1"), ("9012", "1"), ("9013", ""), ("9014", "")] {
        let key = if cn == "9011" { "QnRtn" } else { "ExeRtn" };
        let pairs: Vec<(&str, &str)> = if cp.is_empty() { vec![] } else { vec![(key, cp)] };
        let a = s.handle(at(10), from_platform(cn, "20261129100000009", &pairs));
        assert!(sent(&a).is_empty(), "{cn} {cp}: {a:?}");
    }
    // Even a malformed one (another MN, no QN) gets no answer.
    let Event::Packet(mut p) = from_platform("9014", "20261129100000009", &[]) else { unreachable!() };
    p.mn = "SOMEONEELSE".into();
    assert!(sent(&s.handle(at(11), Event::Packet(p.clone()))).is_empty());
    p.qn = None;
    assert!(sent(&s.handle(at(12), Event::Packet(p))).is_empty());
}

#[test]
fn known_requests_not_carried_out_get_qnrtn_2_notifications_9013_unknown_qnrtn_8() {
    let (mut s, _) = connected(setup(), settings());
    let a = s.handle(at(10), from_platform("3011", "20261129100000010", &[("PolId", "a21026")]));
    assert_eq!(sent(&a)[0].cp.to_string(), "QnRtn=2");
    assert!(audits(&a).iter().any(|d| d.contains("CN=3011") && d.contains("not carried out")), "{a:?}");
    let a = s.handle(at(11), from_platform("2012", "20261129100000011", &[]));
    assert_eq!((sent(&a)[0].cn.as_str(), sent(&a)[0].qn.as_deref()), ("9013", Some("20261129100000011")));
    assert!(a.contains(&Action::Save { key: "realtime", value: "0".into() }));
    let a = s.handle(at(12), from_platform("2022", "20261129100000012", &[]));
    assert_eq!(sent(&a)[0].cn, "9013");
    let a = s.handle(at(13), from_platform("4242", "20261129100000013", &[]));
    assert_eq!(sent(&a)[0].cp.to_string(), "QnRtn=8");
}

#[test]
fn a_1012_is_refused_audited_and_moves_no_clock() {
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    let before = s.handle(at(5), from_platform("1011", "20261129100000004", &[]));
    let a = s.handle(at(10), from_platform("1012", "20261129100000005", &[("SystemTime", "20261129110000")]));
    let out = sent(&a);
    assert_eq!(out.len(), 1, "QnRtn=2 and nothing more: {a:?}");
    assert_eq!((out[0].cn.as_str(), out[0].cp.to_string().as_str()), ("9011", "QnRtn=2"));
    // T0 is 2026-11-29 10:00 plant time; the platform says 11:00: an hour ahead.
    assert!(a.contains(&Action::SavePlatformClock(3_600_000 - 10)), "{a:?}");
    assert!(audits(&a).iter().any(|d| d.starts_with("1012 refused: platform time 20261129110000")), "{a:?}");
    // The time the gateway reports is still its own.
    let after = s.handle(at(20), from_platform("1011", "20261129100000006", &[]));
    let time = |a: &[Action]| {
        sent(a).iter().find(|p| p.cn == "1011").and_then(|p| p.cp.get("SystemTime").map(String::from))
    };
    assert_eq!(time(&before), time(&after));
    assert_eq!(time(&after).as_deref(), Some("20261129100000"));
}

#[test]
fn a_2021_request_sends_the_run_states_and_2041_asks_for_run_time_history() {
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    let a = s.handle(at(10), from_platform("2021", "20261129100000020", &[]));
    assert!(a.contains(&Action::Gather { what: Live::RunStatus, request: Some("20261129100000020".into()) }));
    let values = vec![value("SB1-RS", Some(1.0), Flag::N), value("SB2-RS", Some(0.0), Flag::N)];
    let a = s.handle(
        at(11),
        Event::Values { what: Live::RunStatus, values, request: Some("20261129100000020".into()) },
    );
    let out = sent(&a);
    assert_eq!(out[0].cn, "2021");
    assert!(out[0].cp.to_string().ends_with(";SB1-RS=1;SB2-RS=0"), "{}", out[0].cp);
    assert_eq!(out[1].cn, "9012");
    let a = s.handle(
        at(12),
        from_platform(
            "2041",
            "20261129100000021",
            &[("BeginTime", "20261128000000"), ("EndTime", "20261128000000")],
        ),
    );
    assert!(a.iter().any(|x| matches!(x, Action::LoadHistory { kind: Kind::RunTime, .. })), "{a:?}");
    let day = T0 - 34 * HOUR;
    s.handle(at(13), Event::HistoryPeriods(vec![day]));
    let item = Item {
        kind: Kind::RunTime,
        start_ms: day,
        live: false,
        backlog: true,
        payload: Payload::RunTime(vec![("SB1-RS".into(), 23.5)]),
    };
    let a = s.handle(at(14), Event::HistoryItems(vec![item]));
    let out = sent(&a);
    assert_eq!(out[0].cn, "2041");
    assert_eq!(out[0].cp.to_string(), "DataTime=20261128000000;SB1-RT=23.5");
    assert_eq!(out[0].flag, Some(4), "2041 asks for no answer by default");
    assert_eq!((out[1].cn.as_str(), out[1].cp.get("ExeRtn")), ("9012", Some("1")));
}

#[test]
fn a_period_refused_with_qnrtn_2_leaves_the_queue_a_refused_identity_drops_the_link() {
    let (mut s, _) = connected(setup(), Settings { restart_ms: None, ..settings() });
    let a = s.handle(at(5), Event::Queued(vec![hour(T0 - 2 * HOUR), hour(T0 - HOUR)]));
    let out = sent(&a);
    let a = s.handle(at(6), from_platform("9011", out[0].qn.as_deref().unwrap(), &[("QnRtn", "2")]));
    assert_eq!(delivered(&a), [(Kind::Hour, T0 - 2 * HOUR)]);
    assert_eq!(s.counters().rejected, 1);
    assert!(sent(&a).is_empty());
    let a = s.handle(at(7), from_platform("9011", out[1].qn.as_deref().unwrap(), &[("QnRtn", "3")]));
    assert_eq!(dropped(&a), Some(Fault::Refused("QnRtn=3 (wrong password)".into())));
    assert!(delivered(&a).is_empty(), "the data stays queued");
}

fn setup_2025() -> Setup {
    Setup { version: Version::V2025, heartbeat_ms: Some(60_000), ..setup() }
}

#[test]
fn a_platform_that_never_answers_heartbeats_does_not_make_the_link_flap() {
    let (mut s, _) = connected(setup_2025(), Settings { restart_ms: None, ..settings() });
    for t in (1..=10).map(|m| m * 60_000) {
        let a = s.handle(at(t), Event::Tick);
        assert!(dropped(&a).is_none(), "at {t}: {a:?}");
        assert!(cns(&a).contains(&"9015".to_string()));
    }
}

#[test]
fn a_platform_that_stops_answering_heartbeats_drops_the_link() {
    let (mut s, _) = connected(setup_2025(), Settings { restart_ms: None, ..settings() });
    let a = s.handle(at(60_000), Event::Tick);
    let beat = sent(&a).into_iter().find(|p| p.cn == "9015").unwrap();
    assert_eq!(beat.flag, Some(9));
    s.handle(at(60_100), v25(from_platform("9013", beat.qn.as_deref().unwrap(), &[])));
    let a = s.handle(at(120_000), Event::Tick);
    assert!(cns(&a).contains(&"9015".to_string()));
    // Unanswered for OverTime × ReCount (30 s): the platform is known to answer, so it is gone.
    let a = s.handle(at(150_000), Event::Tick);
    assert_eq!(dropped(&a), Some(Fault::NoAck(3)));
}

#[test]
fn onboarding_sends_no_data_until_the_platform_assigns_the_mn() {
    let mut setup = setup_2025();
    setup.onboarding = true;
    setup.hardware = ["GW-1".into(), "CPU".into(), "MAC1".into(), "MAC2".into()];
    let (mut s, a) = connected(setup, Settings { mn: String::new(), restart_ms: None, ..settings() });
    assert_eq!(s.mode(), Mode::Onboarding);
    assert_eq!(cns(&a), ["1001"]);
    assert_eq!(fetch(&a), None);
    let Event::Packet(mut p) = from_platform("1002", "20261129100000030", &[("i23005-Info", "GW-1")]) else {
        unreachable!()
    };
    p.mn = "NEWMN".into();
    p.flag = Some(9);
    let a = s.handle(at(10), Event::Packet(p));
    assert!(a.contains(&Action::Save { key: "mn", value: "NEWMN".into() }));
    assert_eq!(cns(&a)[..2], ["9011", "9012"]);
    assert_eq!(fetch(&a), Some(4), "data follows under the new MN");
    assert_eq!(s.identity().mn, "NEWMN");
}

#[test]
fn an_aging_key_is_renewed_once_an_hour_until_a_new_one_comes() {
    let mut setup = setup_2025();
    setup.encrypts = true;
    let old = T0 - 85 * 86_400_000;
    let (mut s, _) = connected(setup, Settings { key_created_ms: old, restart_ms: None, ..settings() });
    let a = s.handle(at(1), Event::Tick);
    let ask = sent(&a).into_iter().find(|p| p.cn == "1014").unwrap();
    assert!(ask.wants_ack());
    assert_eq!(ask.cp.get("SKCreateTime").map(str::len), Some(17));
    assert_eq!(s.renewal(), Renewal::Asked { at: 1 });
    // The platform answers the notice; no second request within the hour.
    s.handle(at(2), v25(from_platform("9013", ask.qn.as_deref().unwrap(), &[])));
    let a = s.handle(at(60_001), Event::Tick);
    assert!(!cns(&a).contains(&"1014".to_string()));
    // The key comes (1014 NewSK): the session asks to rotate; once done, 9012 and renewal ends.
    let Event::Packet(mut p) = from_platform(
        "1014",
        "20261129100000040",
        &[("SKCreateTime", "20261129100000000"), ("NewSK", "Kx7pQ2vR9sT4wY6z")],
    ) else {
        unreachable!()
    };
    p.flag = Some(9);
    let a = s.handle(at(70_000), Event::Packet(p));
    assert!(
        audits(&a).iter().all(|d| !d.contains("Kx7pQ2vR9sT4wY6z")),
        "the key never reaches the audit log"
    );
    let rotate = a.iter().find_map(|x| match x {
        Action::RotateKey { request, key, created_ms } => Some((request.clone(), key.clone(), *created_ms)),
        _ => None,
    });
    let (request, key, created_ms) = rotate.unwrap();
    assert_eq!((request.as_str(), key.as_str()), ("20261129100000040", "Kx7pQ2vR9sT4wY6z"));
    let a = s.handle(at(70_001), Event::KeyRotated { request, created_ms, result: Ok(()) });
    assert_eq!(sent(&a)[0].cp.get("ExeRtn"), Some("1"));
    assert_eq!(s.renewal(), Renewal::Idle);
    assert!(a.iter().any(|x| matches!(x, Action::Audit { kind: AuditKind::Key, .. })));
}

#[test]
fn in_2025_backlog_and_resends_carry_rf_live_data_does_not() {
    let (mut s, _) = connected(setup_2025(), Settings { restart_ms: None, ..settings() });
    let mut live = hour(T0 - HOUR);
    live.live = true;
    live.backlog = false;
    let a = s.handle(at(5), Event::Queued(vec![live, hour(T0 - 5 * HOUR)]));
    let out = sent(&a);
    assert!(!out[0].rf && out[1].rf);
    let a = s.handle(at(10_005), Event::Tick);
    let resent: Vec<Packet> = sent(&a).into_iter().filter(|p| p.cn == "2061").collect();
    assert_eq!(resent.len(), 2);
    assert!(resent.iter().all(|p| p.rf), "a resend is backlog");
}

mod identity;
mod info;
