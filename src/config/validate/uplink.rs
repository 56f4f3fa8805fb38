//! Checks of the platform links (`[[uplink]]`): HJ 212 (2017 and the 2025 profile) and HTTP.

use std::path::Path;
use std::time::Duration;

use super::{FileCheck, check_address, valid_factor, valid_mn};
use crate::config::doc::{At, Report};
use crate::config::raw::RawUplink;
use crate::config::{Profile2025, Protocol212, Site, Transport, Uplink};

/// One link. `mn`, `pw` and `st` default to the site's; a default is checked with `[site]`,
/// never again here.
pub(super) fn check_uplink(
    r: &mut Report,
    raw: RawUplink,
    at: &At,
    site: Option<&Site>,
    outlets: &[Option<String>],
    base: &Path,
    files: FileCheck,
) -> Option<Uplink> {
    let before = r.count();
    let v2025 = check_2025(r, at, &raw, raw.protocol.as_deref() == Some("2025"), base, files);
    let name = r.need(at, "name", raw.name);
    let kind = raw.kind.unwrap_or_else(|| "hj212".into());
    let http = kind == "http";
    if kind != "hj212" && !http {
        r.push(at, "kind", format!("must be one of hj212, http, got \"{kind}\""));
    }
    let transport = if http {
        check_http(r, at, raw.url, raw.token, raw.batch)
    } else {
        for (key, set) in
            [("url", raw.url.is_some()), ("token", raw.token.is_some()), ("batch", raw.batch.is_some())]
        {
            if set {
                r.push(at, key, "applies only to kind = \"http\"");
            }
        }
        Some(Transport::Hj212)
    };
    if http && raw.realtime == Some(true) {
        r.push(at, "realtime", "real-time (2011) data is sent over HJ 212 only");
    }
    if http {
        for (key, set) in [
            ("run_status", raw.run_status.is_some()),
            ("run_time", raw.run_time.is_some()),
            ("ack_realtime", raw.ack_realtime.is_some()),
            ("ack_run_time", raw.ack_run_time.is_some()),
            ("ack_notices", raw.ack_notices.is_some()),
        ] {
            if set {
                r.push(at, key, "applies only to HJ 212 links (kind = \"hj212\")");
            }
        }
    }
    let outlet = match raw.outlet {
        Some(o) => Some(o),
        None if outlets.len() == 1 => outlets[0].clone(),
        None => {
            r.push(at, "outlet", "is required when there is not exactly one [[outlet]]");
            None
        }
    };
    if let Some(o) = &outlet
        && !outlets.iter().flatten().any(|x| x == o)
        && outlets.iter().all(Option::is_some)
    {
        r.push(at, "outlet", format!("no [[outlet]] is named \"{o}\""));
    }
    let address = match &transport {
        Some(Transport::Http { url, .. }) => Some(url.clone()),
        _ if http => None,
        _ => check_address(r, at, "address", raw.address),
    };
    let protocol = r.one_of(
        at,
        "protocol",
        Some(raw.protocol.as_deref().unwrap_or("2017")),
        |s| match s {
            "2017" => Some(Protocol212::V2017),
            "2025" => Some(Protocol212::V2025),
            _ => None,
        },
        "2017, 2025",
    );
    let onboarding = v2025.as_ref().is_some_and(|p| p.onboarding);
    let mn = match raw.mn {
        Some(mn) => {
            if !(valid_mn(&mn) || onboarding && mn.is_empty()) {
                r.push(at, "mn", format!("must be 1 to 24 letters or digits, got \"{mn}\""));
            }
            Some(mn)
        }
        // Assigned by the platform (1002); until then the logger sends an empty MN.
        None if onboarding => Some(String::new()),
        None => site.map(|s| s.mn.clone()),
    };
    let pw = match raw.pw {
        Some(pw) => {
            if pw.chars().count() != 6 || !pw.is_ascii() {
                r.push(at, "pw", "must be exactly 6 ASCII characters");
            }
            Some(pw)
        }
        None => site.map(|s| s.pw.clone()),
    };
    let st = match raw.st {
        Some(st) => r.int_in::<u16>(at, "st", Some(st), 1, 99),
        None => site.map(|s| s.st),
    };
    let rtd = r.int_in::<u64>(at, "rtd_interval_s", Some(raw.rtd_interval_s.unwrap_or(30)), 30, 3600);
    let min_interval = r.int_in::<u32>(at, "min_interval", Some(raw.min_interval.unwrap_or(10)), 1, 30);
    if let Some(m) = min_interval
        && ![1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30].contains(&m)
    {
        r.push(at, "min_interval", format!("must be one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, got {m}"));
    }
    // Table 1 of the standard: GPRS/CDMA 10 s × 3, ADSL 5 s × 3, NB-IoT 30 s × 5 (2025).
    let (overtime_default, recount_default) = match raw.network.as_deref() {
        None | Some("gprs" | "cdma" | "4g") => (10, 3),
        Some("adsl" | "ethernet") => (5, 3),
        Some("nb-iot") => (30, 5),
        Some(other) => {
            r.push(
                at,
                "network",
                format!("must be one of gprs, cdma, 4g, adsl, ethernet, nb-iot, got \"{other}\""),
            );
            (10, 3)
        }
    };
    let overtime = r.int_in::<u64>(at, "overtime_s", Some(raw.overtime_s.unwrap_or(overtime_default)), 1, 99);
    let recount = r.int_in::<u32>(at, "recount", Some(raw.recount.unwrap_or(recount_default)), 1, 99);
    let window = r.int_in::<u32>(at, "window", Some(raw.window.unwrap_or(32)), 1, 64);
    let reconnect = r.int_in::<u64>(at, "reconnect_max_s", Some(raw.reconnect_max_s.unwrap_or(60)), 1, 3600);
    let heartbeat = r.int_in::<u64>(at, "heartbeat_s", Some(raw.heartbeat_s.unwrap_or(60)), 5, 3600);
    if r.count() != before {
        return None;
    }
    Some(Uplink {
        name: name?,
        transport: transport?,
        outlet: outlet?,
        address: address?,
        protocol: protocol?,
        mn: mn?,
        pw: pw?,
        st: st?,
        realtime: raw.realtime.unwrap_or(!http),
        rtd_interval: Duration::from_secs(rtd?),
        minute: raw.minute.unwrap_or(true),
        min_interval: min_interval?,
        hour: raw.hour.unwrap_or(true),
        day: raw.day.unwrap_or(true),
        run_status: raw.run_status.unwrap_or(false),
        run_time: raw.run_time.unwrap_or(!http),
        ack: raw.ack.unwrap_or(true),
        ack_realtime: raw.ack_realtime.unwrap_or(false),
        ack_run_time: raw.ack_run_time.unwrap_or(false),
        ack_notices: raw.ack_notices.unwrap_or(true),
        corrections: raw.corrections.unwrap_or(true),
        overtime: Duration::from_secs(overtime?),
        recount: recount?,
        window: window?,
        reconnect_max: Duration::from_secs(reconnect?),
        heartbeat: Duration::from_secs(heartbeat?),
        v2025: v2025?,
    })
}

/// The HJ 212-2025 settings of a link; with the 2017 profile they must not be set.
fn check_2025(
    r: &mut Report,
    at: &At,
    raw: &RawUplink,
    is_2025: bool,
    base: &Path,
    files: FileCheck,
) -> Option<Profile2025> {
    if !is_2025 {
        for (key, set) in [
            ("encrypt", raw.encrypt.is_some()),
            ("encrypt_3020", raw.encrypt_3020.is_some()),
            ("key_file", raw.key_file.is_some()),
            ("length_field", raw.length_field.is_some()),
            ("accept_2017", raw.accept_2017.is_some()),
            ("onboarding", raw.onboarding.is_some()),
            ("logger_id", raw.logger_id.is_some()),
            ("key_request_after_days", raw.key_request_after_days.is_some()),
            ("operating_parameters", raw.operating_parameters.is_some()),
            ("unconvertible_value", raw.unconvertible_value.is_some()),
        ] {
            if set {
                r.push(at, key, "applies only to protocol = \"2025\"");
            }
        }
        return Some(Profile2025::default());
    }
    let before = r.count();
    let encrypt = raw.encrypt.unwrap_or(false);
    let key_file = raw.key_file.as_ref().map(|k| base.join(k));
    match (&key_file, encrypt) {
        (None, true) => r.push(at, "key_file", "is required with encrypt = true (the registered SM4 key)"),
        (Some(path), _) => {
            if let Err(problem) = files(path) {
                r.push(at, "key_file", problem);
            }
        }
        (None, false) => {}
    }
    let length_rule = r.one_of(
        at,
        "length_field",
        Some(raw.length_field.as_deref().unwrap_or("plain")),
        |s| match s {
            "plain" => Some(crate::hj212::crypt::LengthRule::Plain),
            "wire" => Some(crate::hj212::crypt::LengthRule::Wire),
            _ => None,
        },
        "plain, wire",
    );
    if let Some(id) = &raw.logger_id
        && (id.is_empty() || id.contains([';', ',', '=', '&']))
    {
        r.push(at, "logger_id", "must be non-empty without ; , = &");
    }
    let days =
        r.int_in::<u64>(at, "key_request_after_days", Some(raw.key_request_after_days.unwrap_or(80)), 1, 89);
    let operating_parameters = raw.operating_parameters.clone().unwrap_or_default();
    for (i, f) in operating_parameters.iter().enumerate() {
        if !valid_factor(f) {
            r.push(
                at,
                &format!("operating_parameters[{i}]"),
                format!("is not an HJ 212 factor code: \"{f}\""),
            );
        }
    }
    let unconvertible = raw.unconvertible_value.unwrap_or(9999.99);
    if !(unconvertible.is_finite() && unconvertible > 0.0) {
        r.push(at, "unconvertible_value", format!("must be a positive number, got {unconvertible}"));
    }
    if r.count() != before {
        return None;
    }
    if raw.encrypt_3020.is_some() && !encrypt {
        r.push(at, "encrypt_3020", "applies only with encrypt = true");
    }
    Some(Profile2025 {
        encrypt,
        encrypt_3020: raw.encrypt_3020.unwrap_or(true),
        key_file,
        length_rule: Some(length_rule?),
        accept_2017: raw.accept_2017.unwrap_or(false),
        onboarding: raw.onboarding.unwrap_or(false),
        logger_id: raw.logger_id.clone(),
        key_request_after: Duration::from_secs(days? * 86_400),
        operating_parameters,
        unconvertible_value: unconvertible,
    })
}

/// The target of an HTTP link: an http(s) URL, an optional bearer token, a batch size.
fn check_http(
    r: &mut Report,
    at: &At,
    url: Option<String>,
    token: Option<String>,
    batch: Option<i64>,
) -> Option<Transport> {
    let url = r.need(at, "url", url).and_then(|u| match reqwest::Url::parse(&u) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => Some(u),
        Ok(_) => {
            r.push(at, "url", format!("must be an http:// or https:// URL, got \"{u}\""));
            None
        }
        Err(e) => {
            r.push(at, "url", format!("is not a URL ({e}): \"{u}\""));
            None
        }
    });
    if let Some(t) = &token
        && (t.is_empty() || !t.chars().all(|c| c.is_ascii_graphic()))
    {
        // The token itself is not echoed: it is a secret.
        r.push(at, "token", "must be non-empty printable ASCII without spaces");
    }
    let batch = r.int_in::<u32>(at, "batch", Some(batch.unwrap_or(60)), 1, 1000);
    Some(Transport::Http { url: url?, token, batch: batch? })
}
