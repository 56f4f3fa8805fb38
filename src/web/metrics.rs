//! `/metrics` in the Prometheus text exposition format (version 0.0.4): counters end in
//! `_total`, every family has its `# HELP` and `# TYPE`, one label set per device and per
//! platform link. Pure: a [`Status`] in, the text out.

use std::fmt::Write as _;

use super::status::Status;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition of one snapshot.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    let device = |name: &str| format!("device=\"{}\"", label(name));
    let uplink = |name: &str| format!("uplink=\"{}\"", label(name));

    family(
        "cems_build_info",
        "gauge",
        "The gateway's version.",
        vec![(format!("version=\"{}\"", label(&s.gateway.version)), "1".into())],
    );
    family(
        "cems_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
        vec![(String::new(), s.gateway.uptime_s.to_string())],
    );
    family(
        "cems_polls_total",
        "counter",
        "Polls of each device since start.",
        s.devices.iter().map(|d| (device(&d.name), d.polls.to_string())).collect(),
    );
    family(
        "cems_poll_errors_total",
        "counter",
        "Failed polls of each device since start (no reply, timeout, bad frame, exception).",
        s.devices.iter().map(|d| (device(&d.name), d.errors.to_string())).collect(),
    );
    family(
        "cems_device_up",
        "gauge",
        "1 while the device's last poll succeeded, 0 while its polls fail (flag B) or before its first poll.",
        s.devices
            .iter()
            .map(|d| (device(&d.name), u8::from(d.polls > 0 && d.consecutive_failures == 0).to_string()))
            .collect(),
    );
    family(
        "cems_device_normal",
        "gauge",
        "1 while the device reports a normal state (flag N), 0 in calibration, maintenance, fault, stopped or without communication.",
        s.devices.iter().map(|d| (device(&d.name), u8::from(d.state == "normal").to_string())).collect(),
    );
    family(
        "cems_samples_stored_total",
        "counter",
        "Samples committed to the buffer since start.",
        vec![(String::new(), s.gateway.samples_stored.to_string())],
    );
    family(
        "cems_uplink_connected",
        "gauge",
        "1 while the platform link is connected.",
        s.uplinks.iter().map(|u| (uplink(&u.name), u8::from(u.connected).to_string())).collect(),
    );
    family(
        "cems_uplink_frames_sent_total",
        "counter",
        "HJ 212 frames sent on the link since start.",
        s.uplinks.iter().map(|u| (uplink(&u.name), u.frames_sent.to_string())).collect(),
    );
    family(
        "cems_uplink_frames_asked_total",
        "counter",
        "Frames that asked the platform for an answer (Flag bit A; HTTP: requests) since start.",
        s.uplinks.iter().map(|u| (uplink(&u.name), u.frames_asked.to_string())).collect(),
    );
    family(
        "cems_uplink_frames_acked_total",
        "counter",
        "Answers the platform gave to those (9014, 9013; HTTP 2xx) since start.",
        s.uplinks.iter().map(|u| (uplink(&u.name), u.frames_acked.to_string())).collect(),
    );
    family(
        "cems_uplink_notices_refused_total",
        "counter",
        "Notices (2081, 3020, ...) the platform refused with QnRtn other than 1 since start.",
        s.uplinks.iter().map(|u| (uplink(&u.name), u.notices_refused.to_string())).collect(),
    );
    family(
        "cems_uplink_notices_unanswered_total",
        "counter",
        "Notices the platform never answered (given up after ReCount attempts) since start.",
        s.uplinks.iter().map(|u| (uplink(&u.name), u.notices_unanswered.to_string())).collect(),
    );
    family(
        "cems_audit_chain_verified",
        "gauge",
        "1 when the audit chain's last day verifies, 0 when it is broken.",
        s.gateway.audit.iter().map(|a| (String::new(), u8::from(a.verified).to_string())).collect(),
    );
    family(
        "cems_uplink_rejected_total",
        "counter",
        "Periods the platform refused (HTTP 4xx, HJ 212 QnRtn 2 or 8) and that are not sent again.",
        s.uplinks.iter().map(|u| (uplink(&u.name), u.rejected.to_string())).collect(),
    );
    family(
        "cems_uplink_backlog",
        "gauge",
        "Periods waiting to be sent to the platform, by kind.",
        s.uplinks
            .iter()
            .flat_map(|u| {
                [
                    ("minute", u.backlog.minute),
                    ("hour", u.backlog.hour),
                    ("day", u.backlog.day),
                    ("run_time", u.backlog.run_time),
                ]
                .map(|(kind, n)| (format!("{},kind=\"{kind}\"", uplink(&u.name)), n.to_string()))
            })
            .collect(),
    );
    family(
        "cems_open_hour_average",
        "gauge",
        "Running converted average of the open hour per limited factor (mg/m3).",
        s.outlets
            .iter()
            .flat_map(|o| {
                o.open_hour.iter().flat_map(|h| h.factors.iter()).filter_map(|f| {
                    Some((
                        format!("outlet=\"{}\",factor=\"{}\"", label(&o.name), label(&f.factor)),
                        f.value?.to_string(),
                    ))
                })
            })
            .collect(),
    );
    family(
        "cems_value",
        "gauge",
        "Current value per outlet and factor, dry at standard state, in the unit of HJ 212-2017 table B.2 (label unit), as a 2011 upload converts it.",
        s.outlets
            .iter()
            .flat_map(|o| {
                o.current.iter().filter_map(|c| {
                    Some((
                        format!(
                            "outlet=\"{}\",factor=\"{}\",unit=\"{}\"",
                            label(&o.name),
                            label(&c.factor),
                            label(&c.unit)
                        ),
                        c.value?.to_string(),
                    ))
                })
            })
            .collect(),
    );
    family(
        "cems_value_converted",
        "gauge",
        "Current value converted to the reference O2 (ZsRtd) per outlet and factor (mg/m3).",
        s.outlets
            .iter()
            .flat_map(|o| {
                o.current.iter().filter_map(|c| {
                    Some((
                        format!("outlet=\"{}\",factor=\"{}\"", label(&o.name), label(&c.factor)),
                        c.zs?.to_string(),
                    ))
                })
            })
            .collect(),
    );
    family(
        "cems_limit",
        "gauge",
        "Hourly limit per outlet and factor (mg/m3).",
        s.outlets
            .iter()
            .flat_map(|o| {
                o.limits.iter().map(|(f, l)| {
                    (format!("outlet=\"{}\",factor=\"{}\"", label(&o.name), label(f)), l.to_string())
                })
            })
            .collect(),
    );
    let mut single = |name: &str, help: &str, v: Option<u64>| {
        if let Some(v) = v {
            family(name, "gauge", help, vec![(String::new(), v.to_string())]);
        }
    };
    single("cems_buffer_bytes", "Size of the buffer file and its WAL.", s.gateway.buffer_bytes);
    single(
        "cems_disk_free_bytes",
        "Free space for the gateway on the buffer's file system.",
        s.gateway.disk_free_bytes,
    );
    family(
        "cems_clock_synchronised",
        "gauge",
        "1 when the kernel says the system clock is synchronised (NTP, RTC), 0 when not.",
        match s.gateway.clock_sync.as_str() {
            "synchronised" => vec![(String::new(), "1".into())],
            "unsynchronised" => vec![(String::new(), "0".into())],
            _ => vec![],
        },
    );
    family(
        "cems_platform_clock_difference_seconds",
        "gauge",
        "A platform's time minus the gateway's, as its last (refused) 1012 showed it.",
        s.gateway
            .platform_clock_diff_ms
            .map(|d| vec![(String::new(), (d as f64 / 1000.0).to_string())])
            .unwrap_or_default(),
    );
    out
}

/// Escapes a label value: backslash, double quote and newline.
fn label(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
