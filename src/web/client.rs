//! `cems-gateway status`: fetches `/api/v1/status` from a running gateway with a minimal
//! HTTP/1.1 GET (one request, `Connection: close`, a deadline on the whole exchange) and
//! prints the same summary as the page, for an officer on SSH or a serial console.

use std::fmt::Write as _;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::page::{bytes, uptime, zone_label};
use super::status::Status;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("the URL must look like http://HOST:PORT, got {0:?}")]
    Url(String),
    #[error("cannot reach {url}: {reason}")]
    Connect { url: String, reason: std::io::Error },
    #[error("no answer from {0} within the deadline")]
    Timeout(String),
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url} sent a reply that is not HTTP: {why}")]
    Protocol { url: String, why: String },
    #[error("{url} sent a status that cannot be read: {reason}")]
    Json { url: String, reason: serde_json::Error },
}

/// The gateway's status from `base` (e.g. `http://127.0.0.1:8080`).
pub async fn fetch_status(
    base: &str,
    token: Option<&str>,
    deadline: Duration,
) -> Result<Status, ClientError> {
    let url = format!("{}/api/v1/status", base.trim_end_matches('/'));
    let body = get(&url, token, deadline).await?;
    serde_json::from_slice(&body).map_err(|reason| ClientError::Json { url, reason })
}

/// GET `url` (plain http) and return the body of a 200 reply.
pub async fn get(url: &str, token: Option<&str>, deadline: Duration) -> Result<Vec<u8>, ClientError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| ClientError::Url(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(ClientError::Url(url.to_string()));
    }
    let address = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|reason| ClientError::Connect { url: url.to_string(), reason })?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: cems-gateway/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(t) = token {
            let _ = write!(request, "Authorization: Bearer {t}\r\n");
        }
        request.push_str("\r\n");
        let io = |reason| ClientError::Connect { url: url.to_string(), reason };
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.map_err(io)?;
        Ok::<_, ClientError>(reply)
    };
    let reply = tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| ClientError::Timeout(url.to_string()))??;
    let (status, body) =
        parse_response(&reply).map_err(|why| ClientError::Protocol { url: url.to_string(), why })?;
    if status != 200 {
        return Err(ClientError::Status {
            url: url.to_string(),
            status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    Ok(body)
}

/// Splits an HTTP/1.1 reply read to its end into status and body (chunked or not).
pub fn parse_response(reply: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&reply[..split]).map_err(|_| "headers are not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = &reply[split + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or("chunk size without end")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "chunk size is not text")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The terminal summary; ANSI colours when `color`.
pub fn render_text(s: &Status, color: bool) -> String {
    let paint = |code: &str, text: &str| {
        if color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    };
    let red = |t: &str| paint("1;31", t);
    let green = |t: &str| paint("32", t);
    let yellow = |t: &str| paint("33", t);
    let bold = |t: &str| paint("1", t);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — MN {} — {} ({}) — cems-gateway {}, up {}",
        bold(if s.site.is_empty() { "cems-gateway" } else { &s.site }),
        s.mn,
        s.generated,
        zone_label(s.utc_offset_hours),
        s.gateway.version,
        uptime(s.gateway.uptime_s)
    );
    for o in &s.outlets {
        let now = match o.state_now.as_str() {
            "exceeded" => red("EXCEEDED NOW"),
            "ok" => green("within limits now"),
            "no-valid" => yellow("no valid data this hour"),
            "waiting" => yellow("receiving; first averages within a minute"),
            _ => yellow("no data yet"),
        };
        let _ = writeln!(
            out,
            "\nOutlet {} ({}, reference O2 {}): {now}",
            bold(&o.name),
            o.profile.as_deref().unwrap_or("no profile"),
            o.o2_ref.map_or("—".into(), |v| format!("{v} %"))
        );
        let _ = writeln!(
            out,
            "  {:<10} {:<24} {:>10} {:<7} {:<4} {:>7}",
            "device", "factor", "value", "unit", "flag", "age"
        );
        for c in &o.current {
            let value = c.value.map_or("—".into(), |v| format!("{v:.2}"));
            let flag = c.flag.to_string();
            let flag = if c.flag == 'N' { flag } else { yellow(&flag) };
            let _ = writeln!(
                out,
                "  {:<10} {:<24} {:>10} {:<7} {:<4} {:>6.0}s  {}",
                c.device,
                format!("{} {}", crate::factors::short(&c.factor), c.factor),
                value,
                c.unit,
                flag,
                c.age_s,
                if c.flag == 'N' { "" } else { &c.flag_meaning }
            );
        }
        if let Some(h) = &o.open_hour {
            let _ = writeln!(
                out,
                "  open hour from {} (running converted averages):",
                h.start.get(11..16).unwrap_or(&h.start)
            );
            for f in &h.factors {
                let verdict = match (f.value, f.exceeded) {
                    (None, _) => yellow("no valid data"),
                    (Some(_), true) => red("ABOVE LIMIT"),
                    (Some(_), false) => green("within limit"),
                };
                let _ = writeln!(
                    out,
                    "    {:<8} {:>8} / {:<6} {verdict} ({})",
                    crate::factors::short(&f.factor),
                    f.value.map_or("—".into(), |v| format!("{v:.2}")),
                    f.limit,
                    crate::commands::plural(u64::from(f.valid_minutes), "valid minute", "valid minutes")
                );
            }
        }
        let exceeded_today: Vec<String> = o
            .today
            .iter()
            .flat_map(|r| r.cells.iter().filter(|(_, c)| c.exceeded).map(move |(f, c)| (r, f, c)))
            .map(|(r, f, c)| {
                format!("{} {} {:.2}", r.hour, crate::factors::short(f), c.value.unwrap_or(f64::NAN))
            })
            .collect();
        let _ = writeln!(
            out,
            "  today: {}, {}",
            crate::commands::plural(o.today.len() as u64, "closed hour", "closed hours"),
            if exceeded_today.is_empty() {
                green("none exceeded")
            } else {
                red(&format!("exceeded: {}", exceeded_today.join(", ")))
            }
        );
        if let Some(m) = &o.month {
            let _ = writeln!(out, "  month {} (compliant / valid hours, ≥ 95 % required):", m.month);
            for f in m.factors.iter().chain(std::iter::once(&m.joint)) {
                let rate = f.rate_pct.map_or("—".into(), |r| format!("{r:.2} %"));
                let verdict = match (f.rate_pct, f.meets_95) {
                    (None, _) => yellow("no valid hour"),
                    (_, true) => green("meets"),
                    (_, false) => red("BELOW 95 %"),
                };
                let _ = writeln!(
                    out,
                    "    {:<8} {:>4}/{:<4} {:>9}  {verdict}",
                    if f.factor == "all" { "all".to_string() } else { crate::factors::short(&f.factor) },
                    f.valid_hours - f.exceeded_hours.min(f.valid_hours),
                    f.valid_hours,
                    rate
                );
            }
            if m.events.is_empty() {
                let _ = writeln!(out, "  exceedance events this month: none");
            } else {
                let _ = writeln!(out, "  exceedance events this month:");
                for e in &m.events {
                    let _ = writeln!(
                        out,
                        "    {}",
                        red(&format!(
                            "{} {} – {} ({} h): peak {:.2}, mean {:.2}, limit {}",
                            crate::factors::short(&e.factor),
                            e.start.get(..16).unwrap_or(&e.start),
                            e.end.get(..16).unwrap_or(&e.end),
                            e.hours,
                            e.peak,
                            e.mean,
                            e.limit
                        ))
                    );
                }
            }
        }
    }
    let _ = writeln!(out, "\nAnalyzers:");
    for d in &s.devices {
        let state = match d.state.as_str() {
            "normal" => green(&d.state),
            "comm lost" | "fault" => red(&d.state),
            _ => yellow(&d.state),
        };
        let plural = crate::commands::plural;
        let _ = writeln!(
            out,
            "  {:<10} {state:<12} last good {}, {}, {}{}{}",
            d.name,
            d.last_good.as_deref().unwrap_or("—"),
            plural(d.polls, "poll", "polls"),
            plural(d.errors, "error", "errors"),
            d.not_polled.as_deref().map(|w| format!(" ({w})")).unwrap_or_default(),
            match (&d.last_error, &d.last_error_at) {
                (Some(e), Some(at)) => format!("; last error at {at}: {e}"),
                (Some(e), None) => format!("; last error: {e}"),
                (None, _) => String::new(),
            }
        );
    }
    if !s.uplinks.is_empty() {
        let _ = writeln!(out, "\nPlatforms:");
    }
    for u in &s.uplinks {
        let state = if u.connected { green("up") } else { red("DOWN") };
        let _ = writeln!(
            out,
            "  {:<10} {state} {}, acknowledged hour {}, acked {}/{} asked, backlog {}/{}/{} (min/h/d), oldest unsent {}, last ack {}{}",
            u.name,
            u.address,
            u.acked.hour.as_deref().unwrap_or("—"),
            u.frames_acked,
            u.frames_asked,
            u.backlog.minute,
            u.backlog.hour,
            u.backlog.day,
            u.oldest_unsent.as_deref().unwrap_or("—"),
            u.last_ack.as_deref().unwrap_or("—"),
            u.last_error.as_deref().map(|e| format!(", last error: {e}")).unwrap_or_default()
        );
    }
    let g = &s.gateway;
    let _ = writeln!(
        out,
        "\nGateway: disk free {}, buffer {}, clock {}, platform clock {}, {} samples stored{}",
        g.disk_free_bytes.map_or("—".into(), bytes),
        g.buffer_bytes.map_or("—".into(), bytes),
        if g.clock_sync == "unsynchronised" { red("NOT synchronised") } else { g.clock_sync.clone() },
        g.platform_clock_diff_ms.map_or("—".into(), |d| format!("{:+.1} s", d as f64 / 1000.0)),
        g.samples_stored,
        g.store_error.as_deref().map(|e| red(&format!(", store error: {e}"))).unwrap_or_default()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked = b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (401, b"abcde".to_vec()));
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").is_err());
    }
}
