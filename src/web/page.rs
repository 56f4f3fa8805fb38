//! The status page: server-rendered HTML in Chinese and English, readable on a phone and
//! without JavaScript. Pure: a [`Status`] in, the document out.
//!
//! Auto-refresh: a tiny inline script fetches the page again every [`REFRESH_S`] seconds and
//! swaps the `<main>` element (no reload flicker); without JavaScript a `<noscript>` meta
//! refresh reloads the whole page. When a refresh fails, the page says its data is stale.

use std::fmt::Write as _;

use super::status::{Cell, MonthFactor, OutletStatus, Status};

/// Seconds between refreshes with JavaScript; the no-script fallback reloads at twice that.
pub const REFRESH_S: u32 = 10;

/// How the page refers to itself and the API.
#[derive(Debug, Clone, Default)]
pub struct PageOptions {
    /// The access token the page was opened with (`?token=`), carried into its links.
    pub token: Option<String>,
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:15px/1.4 system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;color:#1a1a1a;background:#f4f5f7}
header{background:#12355b;color:#fff;padding:10px 14px}
header h1{margin:0;font-size:1.25em}
header p{margin:2px 0 0;opacity:.85;font-size:.9em}
main{padding:8px 10px 24px;max-width:1200px;margin:0 auto}
section{background:#fff;border-radius:6px;padding:8px 12px 12px;margin:10px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:1.15em;margin:6px 0}
h3{font-size:1em;margin:14px 0 6px;color:#12355b}
small,.meta{color:#555}
.meta{font-size:.9em;margin:2px 0 6px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 6px;text-align:left;vertical-align:top}
td.num,td.nowrap{white-space:nowrap}
th{background:#f0f2f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.exceeded{background:#ffcdd2;color:#8e0000;font-weight:700}
.invalid{color:#777;background:#f3f3f3}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.85em;font-weight:600;vertical-align:middle}
.ok{background:#c8e6c9;color:#1b5e20}
.bad{background:#c62828;color:#fff}
.warn{background:#ffe0b2;color:#8a4b00}
.none{background:#e0e0e0;color:#444}
.flag{display:inline-block;min-width:1.4em;text-align:center;border-radius:3px;font-weight:700;background:#e0e0e0}
.flag-N{background:#c8e6c9;color:#1b5e20}
.flag-B,.flag-D{background:#ffcdd2;color:#8e0000}
.flag-C,.flag-M,.flag-T,.flag-S,.flag-F{background:#ffe0b2;color:#8a4b00}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px}
figure{margin:0;border:1px solid #e3e3e3;border-radius:4px;padding:4px}
figcaption{font-size:.9em;font-weight:600;padding:2px 4px}
svg.trend{display:block;width:100%;height:auto}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
dt{color:#555}
dd{margin:0}
.stale-note{display:none;background:#ffe0b2;padding:6px 10px;border-radius:4px}
.stale .stale-note{display:block}
footer{font-size:.85em;color:#555;margin-top:12px}
footer a{color:#12355b}
@media (max-width:600px){.wide{display:none}body{font-size:14px}main{padding:6px}section{padding:6px 8px}th,td{padding:3px 4px}}
"#;

/// The whole page.
pub fn render(s: &Status, opts: &PageOptions) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>排放状态 Emission status — {site}</title>
<noscript><meta http-equiv="refresh" content="{noscript}"></noscript>
<style>{STYLE}</style>
</head>
<body>
<header><h1>排放监测状态 Emission status</h1><p>{site} · MN {mn}</p></header>
"#,
        site = esc(if s.site.is_empty() { "cems-gateway" } else { &s.site }),
        mn = esc(&s.mn),
        noscript = REFRESH_S * 2,
    );
    out.push_str(&render_main(s, opts));
    let _ = write!(
        out,
        r#"<script>
(function(){{var busy=false;setInterval(function(){{if(busy||document.hidden)return;busy=true;
fetch(location.href,{{cache:"no-store"}}).then(function(r){{if(!r.ok)throw new Error(r.status);return r.text();}})
.then(function(t){{var n=new DOMParser().parseFromString(t,"text/html").getElementById("main");if(n)document.getElementById("main").replaceWith(n);}})
.catch(function(){{var m=document.getElementById("main");if(m)m.classList.add("stale");}})
.finally(function(){{busy=false;}});}},{ms});}})();
</script>
</body>
</html>
"#,
        ms = REFRESH_S * 1000
    );
    out
}

/// The `<main>` element: everything that the refresh replaces.
pub fn render_main(s: &Status, opts: &PageOptions) -> String {
    let mut out = String::new();
    let zone = format_offset(s.utc_offset_hours);
    out.push_str(r#"<main id="main">"#);
    out.push_str(r#"<p class="stale-note">⚠ 刷新失败，数据可能已过时 Refresh failed: the data below may be stale.</p>"#);
    let _ = write!(out, r#"<p class="meta">更新 Updated <time>{}</time> ({zone})"#, esc(&s.generated));
    if s.outlets.len() > 1 {
        out.push_str(" · ");
        for o in &s.outlets {
            let _ = write!(out, r##"<a href="#outlet-{n}">{n}</a> "##, n = esc(&o.name));
        }
    }
    out.push_str("</p>\n");
    for o in &s.outlets {
        outlet(&mut out, o);
    }
    chain(&mut out, s);
    let q = opts.token.as_deref().map(|t| format!("?token={}", esc(&url_encode(t)))).unwrap_or_default();
    let amp = if q.is_empty() { "?" } else { "&amp;" };
    let today = s.generated.get(..10).unwrap_or("");
    let _ = write!(
        out,
        r#"<footer>API: <a href="api/v1/status{q}">/api/v1/status</a> · <a href="metrics{q}">/metrics</a> · <a href="api/v1/export{q}{amp}from={today}&amp;to={today}%2023:59:59&amp;level=hour&amp;format=csv">今日小时数据 CSV today's hours</a> · cems-gateway {v}</footer>"#,
        v = esc(&s.gateway.version),
    );
    out.push_str("</main>\n");
    out
}

fn outlet(out: &mut String, o: &OutletStatus) {
    let (class, text) = match o.state_now.as_str() {
        "exceeded" => ("badge bad exceeded", "当前超标 EXCEEDED now"),
        "ok" => ("badge ok", "当前达标 within limits now"),
        _ => ("badge none", "暂无数据 no data yet"),
    };
    let _ = write!(
        out,
        r#"<section class="outlet" id="outlet-{n}"><h2>排放口 Outlet {n} <span class="{class}" data-state="{state}">{text}</span>"#,
        n = esc(&o.name),
        state = esc(&o.state_now),
    );
    if let Some(m) = &o.month {
        let (c, t) = if m.joint.valid_hours == 0 {
            ("badge none", "本月暂无有效小时 no valid hour this month")
        } else if m.joint.meets_95 {
            ("badge ok", "本月达标率 ≥ 95 % month OK")
        } else {
            ("badge bad", "本月达标率 < 95 % month BELOW")
        };
        let _ = write!(out, r#" <span class="{c}">{t}</span>"#);
    }
    out.push_str("</h2>");
    let limits: Vec<String> = o.limits.iter().map(|(f, l)| format!("{f} ≤ {l}")).collect();
    let _ = write!(
        out,
        r#"<p class="meta">标准 Profile {} · 基准氧 reference O₂ {} · 小时限值 hourly limits (mg/m³): {}</p>"#,
        esc(o.profile.as_deref().unwrap_or("—")),
        o.o2_ref.map_or("—".into(), |v| format!("{v} %")),
        esc(&limits.join(", ")),
    );

    // Current values.
    out.push_str(r#"<h3>实时数据 Current values</h3><div class="scroll"><table class="current"><tr><th>因子 Factor</th><th>数值 Value</th><th>标记 Flag</th><th>时间 Time</th><th>最近有效 Last good</th></tr>"#);
    if o.current.is_empty() {
        out.push_str(r#"<tr><td colspan="5">暂无数据 no reading yet</td></tr>"#);
    }
    for c in &o.current {
        let value = c.value.map_or("—".into(), |v| format!("{v:.2}"));
        let last_good = c
            .last_good
            .as_ref()
            .map_or("—".into(), |r| format!("{:.2} @ {}", r.value, r.time.get(11..).unwrap_or(&r.time)));
        let _ = write!(
            out,
            r#"<tr class="row-{flag}" data-factor="{f}"><td>{label} <small>{f} · {dev}</small></td><td class="num value">{value} <small>{unit}</small></td><td class="nowrap"><span class="flag flag-{flag}">{flag}</span> <span class="{wide}">{meaning}</span></td><td class="nowrap">{time} <small>({age:.0} s)</small></td><td class="{wide}">{last_good}</td></tr>"#,
            // On a phone the meaning of N and the last good value of a good reading are left out.
            wide = if c.flag == 'N' { "wide" } else { "" },
            flag = c.flag,
            f = esc(&c.factor),
            dev = esc(&c.device),
            label = esc(&c.label),
            unit = esc(&c.unit),
            meaning = esc(&c.flag_meaning),
            time = esc(c.time.get(11..).unwrap_or(&c.time)),
            age = c.age_s,
            last_good = esc(&last_good),
        );
    }
    out.push_str("</table></div>");

    // The open hour.
    match &o.open_hour {
        Some(h) if !h.factors.is_empty() => {
            let _ = write!(
                out,
                r#"<h3>本小时 Open hour from {} <small>(折算浓度滑动均值 running converted average)</small></h3><div class="scroll"><table class="open-hour"><tr><th>因子 Factor</th><th>均值 Average</th><th>限值 Limit</th><th>有效分钟 Valid minutes</th><th>判定 Verdict</th></tr>"#,
                esc(h.start.get(11..16).unwrap_or(&h.start))
            );
            for f in &h.factors {
                let verdict = match (f.value, f.exceeded) {
                    (None, _) => "无有效数据 no valid data",
                    (Some(_), true) => "超标 ABOVE LIMIT",
                    (Some(_), false) => "达标 within limit",
                };
                let _ = write!(
                    out,
                    r#"<tr class="{class}" data-factor="{f}"><td>{label}</td><td class="num">{v}</td><td class="num">{limit}</td><td class="num">{n}</td><td>{verdict}</td></tr>"#,
                    class = if f.exceeded { "exceeded" } else { "" },
                    f = esc(&f.factor),
                    label = esc(&f.label),
                    v = f.value.map_or("—".into(), |v| format!("{v:.2}")),
                    limit = f.limit,
                    n = f.valid_minutes,
                );
            }
            out.push_str("</table></div>");
        }
        _ => out.push_str(r#"<h3>本小时 Open hour</h3><p class="meta">尚未计算 not computed yet (first figures a minute after start)</p>"#),
    }

    // Today's hours.
    let factors: Vec<&String> = o.limits.keys().collect();
    out.push_str(r#"<h3>今日小时均值 Today's hourly averages <small>(折算 converted, mg/m³)</small></h3><div class="scroll"><table class="today"><tr><th>时段 Hour</th>"#);
    for f in &factors {
        let _ = write!(out, "<th>{} <small>≤ {}</small></th>", esc(&short_label(f)), o.limits[*f]);
    }
    out.push_str("</tr>");
    if o.today.is_empty() {
        let _ = write!(
            out,
            r#"<tr><td colspan="{}">今日暂无完整小时 no closed hour today yet</td></tr>"#,
            factors.len() + 1
        );
    }
    for row in &o.today {
        let _ = write!(out, r#"<tr><td>{}</td>"#, esc(&row.hour));
        for f in &factors {
            match row.cells.get(*f) {
                Some(c) => cell(out, f, c),
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></div>");

    // Trends.
    out.push_str(r#"<h3>24 小时趋势 24-hour trend <small>(5 分钟均值 5-min averages, ● 小时均值 hourly, - - 限值 limit)</small></h3><div class="charts">"#);
    for t in &o.trends {
        let _ = write!(
            out,
            r#"<figure><figcaption>{} <small>≤ {} mg/m³</small></figcaption>{}</figure>"#,
            esc(&t.label),
            t.limit,
            super::svg::trend_chart(t)
        );
    }
    out.push_str("</div>");

    // The month.
    if let Some(m) = &o.month {
        let _ = write!(
            out,
            r#"<h3>本月达标率 Month to date {} <small>(达标小时 / 有效小时 compliant / valid hours, 要求 ≥ 95 %)</small></h3><div class="scroll"><table class="month"><tr><th>因子 Factor</th><th>达标/有效 Compliant/valid</th><th>达标率 Rate</th><th>判定 Verdict</th><th>停运 Stopped</th><th>无效 Invalid</th></tr>"#,
            esc(&m.month)
        );
        for f in m.factors.iter().chain(std::iter::once(&m.joint)) {
            month_row(out, f);
        }
        out.push_str("</table></div>");
        out.push_str(r#"<h3>本月超标事件 Exceedance events this month</h3>"#);
        if m.events.is_empty() {
            out.push_str(r#"<p class="meta">无 none</p>"#);
        } else {
            out.push_str(r#"<div class="scroll"><table class="events"><tr><th>因子 Factor</th><th>开始 From</th><th>结束 To</th><th>小时 Hours</th><th>峰值 Peak</th><th>均值 Mean</th><th>限值 Limit</th></tr>"#);
            for e in &m.events {
                let _ = write!(
                    out,
                    r#"<tr class="exceeded"><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{:.2}</td><td class="num">{:.2}</td><td class="num">{}</td></tr>"#,
                    esc(&e.label),
                    esc(e.start.get(..16).unwrap_or(&e.start)),
                    esc(e.end.get(..16).unwrap_or(&e.end)),
                    e.hours,
                    e.peak,
                    e.mean,
                    e.limit
                );
            }
            out.push_str("</table></div>");
        }
    }
    out.push_str("</section>\n");
}

fn cell(out: &mut String, factor: &str, c: &Cell) {
    let class = if c.exceeded {
        "num exceeded"
    } else if !c.valid {
        "num invalid"
    } else {
        "num"
    };
    let value = c.value.map_or("—".into(), |v| format!("{v:.2}"));
    let flag = if c.flag == 'N' { String::new() } else { format!(" <small>{}</small>", c.flag) };
    let _ = write!(out, r#"<td class="{class}" data-factor="{}">{value}{flag}</td>"#, esc(factor));
}

fn month_row(out: &mut String, f: &MonthFactor) {
    let (class, verdict) = match (f.rate_pct, f.meets_95) {
        (None, _) => ("", "无有效小时 no valid hour"),
        (Some(_), true) => ("", "达标 meets ≥ 95 %"),
        (Some(_), false) => ("exceeded", "未达标 BELOW 95 %"),
    };
    let _ = write!(
        out,
        r#"<tr class="{class}"><td>{}</td><td class="num">{}/{}</td><td class="num">{}</td><td>{verdict}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
        esc(&f.label),
        f.valid_hours - f.exceeded_hours.min(f.valid_hours),
        f.valid_hours,
        f.rate_pct.map_or("—".into(), |r| format!("{r:.2} %")),
        f.stopped_hours,
        f.invalid_hours,
    );
}

fn chain(out: &mut String, s: &Status) {
    out.push_str(r#"<section class="chain"><h2>数据链路 Data chain <small>分析仪 analyzers → 数采仪 gateway → 平台 platforms</small></h2>"#);
    out.push_str(r#"<h3>分析仪 Analyzers</h3><div class="scroll"><table class="devices"><tr><th>设备 Device</th><th>状态 State</th><th>最近有效 Last good</th><th>轮询/错误 Polls/errors</th><th>最近错误 Last error</th></tr>"#);
    for d in &s.devices {
        let class = match d.state.as_str() {
            "normal" => "badge ok",
            "comm lost" | "fault" => "badge bad",
            "not polled yet" => "badge none",
            _ => "badge warn",
        };
        let _ = write!(
            out,
            r#"<tr data-device="{n}"><td>{n} <small>{outlet} · {bus}</small></td><td><span class="{class}">{zh} {state}</span></td><td>{good}</td><td class="num">{polls}/{errors}</td><td>{err}</td></tr>"#,
            n = esc(&d.name),
            outlet = esc(d.outlet.as_deref().unwrap_or("—")),
            bus = esc(&d.bus),
            zh = state_zh(&d.state),
            state = esc(&d.state),
            good = esc(d.last_good.as_deref().unwrap_or("—")),
            polls = d.polls,
            errors = d.errors,
            err = esc(d.last_error.as_deref().filter(|_| d.consecutive_failures > 0).unwrap_or("")),
        );
    }
    out.push_str("</table></div>");
    out.push_str(r#"<h3>上级平台 Platforms</h3>"#);
    if s.uplinks.is_empty() {
        out.push_str(r#"<p class="meta">未配置 none configured</p>"#);
    } else {
        out.push_str(r#"<div class="scroll"><table class="uplinks"><tr><th>平台 Platform</th><th>链路 Link</th><th>最近应答 Last ack</th><th>已确认 Acknowledged up to</th><th>待发 Backlog (min/h/d)</th><th>最早未发 Oldest unsent</th><th>应答/请求应答 Acked/asked (sent)</th><th>最近错误 Last error</th></tr>"#);
        for u in &s.uplinks {
            let (class, state) =
                if u.connected { ("badge ok", "已连接 connected") } else { ("badge bad", "断开 DOWN") };
            let acked = [("min", &u.acked.minute), ("h", &u.acked.hour), ("d", &u.acked.day)]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {}", v.get(..16).unwrap_or(v))))
                .collect::<Vec<_>>()
                .join("<br>");
            let _ = write!(
                out,
                r#"<tr data-uplink="{n}"><td>{n} <small>{addr} · {outlet}</small></td><td><span class="{class}">{state}</span></td><td>{ack}</td><td>{acked}</td><td class="num">{bm}/{bh}/{bd}</td><td>{oldest}</td><td class="num">{acks}/{asked} ({sent})</td><td>{err}</td></tr>"#,
                n = esc(&u.name),
                addr = esc(&u.address),
                outlet = esc(&u.outlet),
                ack = esc(u.last_ack.as_deref().unwrap_or("—")),
                acked =
                    if acked.is_empty() { "—".into() } else { esc(&acked).replace("&lt;br&gt;", "<br>") },
                bm = u.backlog.minute,
                bh = u.backlog.hour,
                bd = u.backlog.day,
                oldest = esc(u.oldest_unsent.as_deref().unwrap_or("—")),
                sent = u.frames_sent,
                asked = u.frames_asked,
                acks = u.frames_acked,
                err = esc(&match (u.rejected, u.last_error.as_deref()) {
                    (0, e) => e.unwrap_or("").to_string(),
                    (n, e) => format!("{n} rejected 被拒收 · {}", e.unwrap_or("")),
                }),
            );
        }
        out.push_str("</table></div>");
    }
    let g = &s.gateway;
    let _ = write!(
        out,
        r#"<h3>数采仪 Gateway</h3><dl class="gateway"><dt>版本 Version</dt><dd>{v}</dd><dt>运行 Uptime</dt><dd>{up}</dd><dt>磁盘可用 Disk free</dt><dd>{disk}</dd><dt>缓存文件 Buffer</dt><dd>{buf}</dd><dt>时钟偏差 Clock offset</dt><dd>{clock:+.1} s</dd><dt>已存样本 Samples stored</dt><dd>{n}</dd>"#,
        v = esc(&g.version),
        up = uptime(g.uptime_s),
        disk = match (g.disk_free_bytes, g.disk_total_bytes) {
            (Some(f), Some(t)) => format!("{} / {}", bytes(f), bytes(t)),
            _ => "—".into(),
        },
        buf = g.buffer_bytes.map_or("—".into(), bytes),
        clock = g.clock_offset_ms as f64 / 1000.0,
        n = g.samples_stored,
    );
    if let Some(a) = &g.audit {
        let head = match (a.head_seq, &a.head_hash) {
            (Some(seq), Some(hash)) => format!("#{seq} {}…", &hash[..hash.len().min(16)]),
            _ => "—".into(),
        };
        let state = match &a.first_broken {
            None if a.verified => r#"<span class="ok">完整 intact</span>"#.to_string(),
            Some(b) => format!(r#"<span class="exceeded">断裂 BROKEN: {}</span>"#, esc(b)),
            None => r#"<span class="exceeded">未验证 not verified</span>"#.to_string(),
        };
        let _ = write!(
            out,
            r#"<dt>审计链 Audit chain</dt><dd data-audit="{ok}">{state} · 链头 head {head} <small>(近 24 小时 last 24 h, {checked}; 全部 all: cems-gateway verify)</small></dd>"#,
            ok = a.verified,
            head = esc(&head),
            checked = esc(&a.checked),
        );
    }
    if let Some(e) = &g.store_error {
        let _ = write!(out, r#"<dt>存储错误 Store error</dt><dd class="exceeded">{}</dd>"#, esc(e));
    }
    out.push_str("</dl></section>\n");
}

fn state_zh(state: &str) -> &'static str {
    match state {
        "normal" => "正常",
        "calibration" => "校准",
        "maintenance" => "维护",
        "fault" => "故障",
        "stopped" => "停运",
        "comm lost" => "通讯中断",
        "manual" => "手工",
        _ => "未轮询",
    }
}

/// The English part of a factor's label, for narrow table headers.
fn short_label(factor: &str) -> String {
    let label = super::status::factor_label(factor);
    label.rsplit_once(' ').map_or(label.clone(), |(_, en)| en.to_string())
}

/// `UTC+8`, `UTC+5:30`.
fn format_offset(hours: f64) -> String {
    let minutes = (hours * 60.0).round() as i64;
    let sign = if minutes < 0 { '-' } else { '+' };
    let (h, m) = (minutes.abs() / 60, minutes.abs() % 60);
    if m == 0 { format!("UTC{sign}{h}") } else { format!("UTC{sign}{h}:{m:02}") }
}

/// `3 d 4 h`, `2 h 5 min`, `40 s`.
pub fn uptime(s: u64) -> String {
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `512 B`, `1.5 MB`, `12.3 GB` (powers of 1024).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Percent-encodes everything but unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
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
                    flag: 'B',
                    flag_meaning: "通讯异常 comm lost".into(),
                    time: "2026-03-01 10:20:29".into(),
                    age_s: 1.0,
                    last_good: Some(Reading { time: "2026-03-01 10:19:00".into(), value: 18.0 }),
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
                clock_offset_ms: -1500,
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
                r#"<tr class="exceeded" data-factor="a21026"><td>二氧化硫 SO₂</td><td class="num">40.00</td>"#
            ),
            "{html}"
        );
        assert!(html.contains("当前超标 EXCEEDED now"));
        // A lost reading shows no value, its flag, and the last good value.
        assert!(html.contains(r#"<td class="num value">— <small>mg/m3</small></td><td class="nowrap"><span class="flag flag-B">B</span>"#), "{html}");
        assert!(html.contains("18.00 @ 10:19:00"));
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
        assert_eq!(format_offset(8.0), "UTC+8");
        assert_eq!(format_offset(5.5), "UTC+5:30");
        assert_eq!(format_offset(-3.0), "UTC-3");
        assert_eq!(url_encode("a b&c"), "a%20b%26c");
    }
}
