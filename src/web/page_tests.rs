//! Unit tests of the status page's markup.

use super::*;

#[test]
fn escaping() {
    assert_eq!(esc(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}

fn status(outlet_name: &str) -> Status {
    use super::super::status::*;
    let cell = |value: f64, exceeded: bool| Cell { value: Some(value), flag: 'N', valid: true, exceeded };
    Status {
        site: "Plant & Co".into(),
        mn: "MN1".into(),
        generated: "2026-03-01 10:20:30".into(),
        utc_offset_hours: 8.0,
        outlets: vec![OutletStatus {
            name: outlet_name.into(),
            profile: Some("cement-kiln".into()),
            o2_ref: Some(10.0),
            limits: [("a21026".to_string(), 35.0)].into_iter().collect(),
            state_now: "exceeded".into(),
            current: vec![CurrentValue {
                device: "gas".into(),
                factor: "a21026".into(),
                label: factor_label("a21026"),
                unit: "mg/m3".into(),
                value: None,
                measured: None,
                zs: None,
                flag: 'B',
                flag_meaning: "通讯异常 comm lost".into(),
                time: "2026-03-01 10:20:29".into(),
                age_s: 1.0,
                last_good: Some(Reading { time: "2026-03-01 10:19:00".into(), value: 18.0 }),
                raw_unit: "mg/m3".into(),
            }],
            open_hour: Some(OpenHourStatus {
                start: "2026-03-01 10:00:00".into(),
                factors: vec![Running {
                    factor: "a21026".into(),
                    label: factor_label("a21026"),
                    value: Some(40.0),
                    limit: 35.0,
                    valid_minutes: 19,
                    flag: 'N',
                    exceeded: true,
                }],
            }),
            today: vec![
                HourRow {
                    hour: "08:00".into(),
                    start: "2026-03-01 08:00:00".into(),
                    cells: [("a21026".to_string(), cell(20.0, false))].into_iter().collect(),
                },
                HourRow {
                    hour: "09:00".into(),
                    start: "2026-03-01 09:00:00".into(),
                    cells: [("a21026".to_string(), cell(61.5, true))].into_iter().collect(),
                },
            ],
            trends: vec![],
            month: None,
        }],
        devices: vec![],
        uplinks: vec![],
        gateway: GatewayHealth {
            version: "0.1.0".into(),
            uptime_s: 90,
            disk_free_bytes: None,
            disk_total_bytes: None,
            buffer_bytes: None,
            clock_sync: "unsynchronised".into(),
            platform_clock_diff_ms: Some(-1500),
            samples_stored: 7,
            store_error: None,
            audit: Some(crate::web::status::AuditSummary {
                head_seq: Some(42),
                head_hash: Some("ab".repeat(32)),
                entries_checked: 42,
                verified: false,
                first_broken: Some("entry 17 (record 1/0/kiln): content changed".into()),
                checked: "2026-11-29 10:00:00".into(),
            }),
        },
        evidence: Default::default(),
    }
}

#[test]
fn a_broken_audit_chain_is_shown_with_where_it_breaks() {
    let html = render(&status("kiln"), &PageOptions::default());
    assert!(html.contains(r#"data-audit="false""#), "{html}");
    assert!(html.contains("BROKEN: entry 17 (record 1/0/kiln): content changed"));
    assert!(html.contains("#42 abababababababab…"));
}

#[test]
fn page_marks_what_an_officer_must_see_and_escapes_names() {
    let html = render(&status("<script>alert(1)</script>"), &PageOptions { token: Some("a&b".into()) });
    assert!(!html.contains("<script>alert"), "configured names are escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("Plant &amp; Co"));
    // The exceeded hour, the running average above its limit, the state badge.
    assert!(html.contains(r#"<td class="num exceeded" data-factor="a21026">61.50</td>"#), "{html}");
    assert!(
        html.contains(
            r#"<tr class="exceeded" data-factor="a21026"><td class="head" data-label="">二氧化硫 SO₂</td><td class="num" data-label="均值 Average">40.00</td>"#
        ),
        "{html}"
    );
    assert!(html.contains("当前超标 EXCEEDED now"));
    // Limits by name, not by code.
    assert!(html.contains("hourly limits (mg/m³): SO₂ ≤ 35</p>"), "{html}");
    // A lost reading shows no value, its flag, and the last good value.
    assert!(html.contains(r#"<td class="num value" data-label="数值 Value">— <small>mg/m³</small></td><td class="num zs" data-label="折算 Converted"></td><td class="flag-cell" data-label="标记 Flag"><span class="flag flag-B">B</span>"#), "{html}");
    assert!(html.contains(r#"data-label="最近有效 last good">18.00 mg/m³ @ 10:19:00</td>"#), "{html}");
    assert!(html.contains("<dd>-1.5 s</dd>"));
    // Refresh: the script swaps <main>; without script a meta refresh.
    assert_eq!(html.matches(r#"<main id="main">"#).count(), 1);
    assert!(html.contains(r#"<noscript><meta http-equiv="refresh" content="20"></noscript>"#));
    assert!(html.contains("getElementById(\"main\")"));
    assert!(html.contains("api/v1/status?token=a%26b"), "the token is carried, encoded");
}

#[test]
fn human_units() {
    assert_eq!(bytes(512), "512 B");
    assert_eq!(bytes(1536), "1.5 KB");
    assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GB");
    assert_eq!(uptime(59), "59 s");
    assert_eq!(uptime(3 * 3600 + 120), "3 h 2 min");
    assert_eq!(uptime(2 * 86_400 + 3600), "2 d 1 h");
    assert_eq!(url_encode("a b&c"), "a%20b%26c");
}

/// An analyzer isolated after failures: its state, why it is not polled, and the last error of a
/// real request with its time (kept, not replaced by the isolation).
#[test]
fn an_isolated_device_shows_its_last_error() {
    use super::super::status::DeviceStatus;
    let mut s = status("kiln");
    s.devices = vec![DeviceStatus {
        name: "dust".into(),
        outlet: Some("kiln".into()),
        bus: "rs485-1".into(),
        state: "comm lost".into(),
        flag: 'B',
        polls: 35,
        errors: 7,
        consecutive_failures: 12,
        last_good: Some("2026-03-01 10:02:00".into()),
        last_error: Some("no reply within 800ms".into()),
        last_error_at: Some("2026-03-01 10:03:10".into()),
        not_polled: Some("device isolated after repeated failures".into()),
    }];
    let html = render(&s, &PageOptions::default());
    let row = html.split(r#"<tr data-device="dust">"#).nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(
        row.contains("通讯中断 comm lost</span> <small>(device isolated after repeated failures)</small>"),
        "{row}"
    );
    assert!(
        row.contains(
            r#"data-label="最近错误 Last error">no reply within 800ms <small>@ 03-01 10:03:10</small>"#
        ),
        "{row}"
    );
}

/// Readings arrive but the first minute has not closed: the badge says so, not "no data".
#[test]
fn readings_without_an_open_hour_yet_are_not_no_data() {
    let mut s = status("kiln");
    s.outlets[0].state_now = "waiting".into();
    let html = render(&s, &PageOptions::default());
    assert!(html.contains(r#"data-state="waiting">接收中"#), "{html}");
    assert!(!html.contains("暂无数据 no data yet"), "{html}");
}

/// Parameters changed this month are highlighted with what to look at; a stale one says since
/// when; an open mark says so; an operator's text is escaped.
#[test]
fn parameters_and_marks_show_what_changed_and_what_is_marked() {
    use super::super::evidence::{Evidence, MarkRow, ParamRow};
    let row = |code: &str, value: &str| ParamRow {
        device: "gas".into(),
        code: code.into(),
        label: "测量量程 range".into(),
        pol: Some("a21026".into()),
        value: Some(value.into()),
        unit: "mg/m3".into(),
        read_at: Some("2026-03-01 10:20:00".into()),
        stale_since: None,
        stale_why: None,
        changed_at: None,
        previous: None,
        changes_this_month: 0,
        highlighted: false,
        callouts: vec![],
    };
    let mut changed = row("i13001", "500");
    changed.changed_at = Some("2026-03-01 09:30:00".into());
    changed.previous = Some("1000".into());
    changed.changes_this_month = 1;
    changed.highlighted = true;
    changed.callouts = vec![
        "超标期间变更 changed during an exceedance: SO₂ 2026-03-01 09:00:00 to 2026-03-01 10:00:00".into(),
    ];
    let mut stale = row("i13008", "1.02");
    stale.stale_since = Some("2026-03-01 10:00:00".into());
    stale.stale_why = Some("no reply within 1s".into());
    let mut s = status("kiln");
    s.evidence = Evidence {
        parameters: vec![changed, stale],
        marks: vec![MarkRow {
            id: 3,
            outlet: "kiln".into(),
            kind: "maintenance".into(),
            kind_zh: "维护/调试".into(),
            flag: 'M',
            start: "2026-03-01 08:00:00".into(),
            end: None,
            reason: "<b>probe</b> cleaning".into(),
            who: "Wang".into(),
        }],
    };
    let html = render(&s, &PageOptions::default());
    let row = html
        .split(r#"<tr class="changed" data-param="gas/i13001">"#)
        .nth(1)
        .expect("highlighted")
        .split("</tr>")
        .next()
        .unwrap();
    assert!(row.contains(r#"<span class="value">500</span> mg/m3"#), "{row}");
    assert!(row.contains("2026-03-01 09:30:00 <small>(was 1000)</small>"), "{row}");
    assert!(row.contains(r#"<span class="callout">超标期间变更 changed during an exceedance"#), "{row}");
    let row = html
        .split(r#"<tr data-param="gas/i13008">"#)
        .nth(1)
        .expect("not highlighted")
        .split("</tr>")
        .next()
        .unwrap();
    assert!(
        row.contains("过时 stale</span> <small>since 2026-03-01 10:00:00 (no reply within 1s)</small>"),
        "{row}"
    );
    let mark = html.split(r#"<tr data-mark="3">"#).nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(mark.contains(r#"<span class="flag flag-M">M</span>"#) && mark.contains("进行中 open"), "{mark}");
    assert!(mark.contains("&lt;b&gt;probe&lt;/b&gt; cleaning"), "{mark}");
}

/// The month's cards: hours above the instrument's range (T) and the capture rate per factor;
/// for cement the rate over production hours.
#[test]
fn the_month_shows_over_range_hours_and_the_capture_rate() {
    use super::super::status::{MonthFactor, MonthStatus, factor_label};
    let mut s = status("kiln");
    let factor = MonthFactor {
        factor: "a21026".into(),
        label: factor_label("a21026"),
        valid_hours: 700,
        exceeded_hours: 4,
        over_range_hours: 3,
        stopped_hours: 24,
        invalid_hours: 20,
        production_hours: 720,
        // 696 compliant of 720 production hours = 96.67 %; 700 valid of 720 = 97.2 %.
        rate_pct: Some(696.0 / 720.0 * 100.0),
        rate_of: "production hours".into(),
        meets_95: true,
        capture_pct: Some(700.0 / 720.0 * 100.0),
    };
    s.outlets[0].month = Some(MonthStatus {
        month: "2026-03".into(),
        factors: vec![factor.clone()],
        joint: MonthFactor { factor: "all".into(), ..factor },
        events: vec![],
    });
    let html = render(&s, &PageOptions::default());
    let row = html.split(r#"<table class="cards month">"#).nth(1).unwrap().split("</tr>").nth(1).unwrap();
    assert!(
        row.contains(r#"data-label="达标/生产 Compliant/production">696/720 <small>production</small>"#),
        "{row}"
    );
    assert!(row.contains(r#"data-label="达标率 Rate">96.67 %"#), "{row}");
    assert!(row.contains(r#"<td class="num over-range" data-label="超量程 Over range (T)">3</td>"#), "{row}");
    assert!(row.contains(r#"<td class="num capture" data-label="有效率 Capture">97.2 %</td>"#), "{row}");
}

#[test]
fn the_clock_state_is_shown_on_the_page_and_in_the_metrics() {
    let mut s = status("kiln");
    assert_eq!(s.gateway.clock_sync, "unsynchronised");
    let html = render(&s, &PageOptions::default());
    assert!(html.contains(r#"<span class="badge bad">未同步 NOT synchronised</span>"#), "{html}");
    let metrics = crate::web::metrics::render(&s);
    assert!(metrics.lines().any(|l| l == "cems_clock_synchronised 0"), "{metrics}");

    s.gateway.clock_sync = "synchronised".into();
    let html = render(&s, &PageOptions::default());
    assert!(html.contains(r#"<span class="badge ok">已同步 synchronised</span>"#), "{html}");
    assert!(!html.contains("NOT synchronised"));
    let metrics = crate::web::metrics::render(&s);
    assert!(metrics.lines().any(|l| l == "cems_clock_synchronised 1"), "{metrics}");

    // Not checked yet: no badge claims either, and no gauge value is invented.
    s.gateway.clock_sync = "not checked yet".into();
    let metrics = crate::web::metrics::render(&s);
    assert!(!metrics.lines().any(|l| l.starts_with("cems_clock_synchronised ")), "{metrics}");
}
