//! The status page: server-rendered HTML in Chinese and English, without JavaScript if need
//! be, laid out for a phone (390 px: tables become stacked cards, the current values a grid of
//! boxes) as for a laptop. Pure: a [`Status`] in, the document out. Factors are named from
//! the one table in [`crate::factors`].
//!
//! Auto-refresh: a tiny inline script fetches the page again every [`REFRESH_S`] seconds and
//! swaps the `<main>` element (no reload flicker); without JavaScript a `<noscript>` meta
//! refresh reloads the whole page. When a refresh fails, the page says its data is stale.

use std::fmt::Write as _;

use super::status::{Cell, MonthFactor, OutletStatus, Status};
use crate::factors;

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

const STYLE: &str = include_str!("page.css");

/// The whole page.
pub fn render(s: &Status, opts: &PageOptions) -> String {
    let mut out = String::with_capacity(48 * 1024);
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

/// A table cell that becomes a labelled line of a card on a phone.
fn td(out: &mut String, class: &str, label: &str, content: &str) {
    let _ = write!(out, r#"<td class="{class}" data-label="{}">{content}</td>"#, esc(label));
}

/// `<table class="cards …"><thead>…</thead><tbody>`: a table on a wide screen, a stack of
/// cards on a phone.
fn cards_head(out: &mut String, class: &str, headers: &[&str]) {
    let _ = write!(out, r#"<table class="cards {class}"><thead><tr>"#);
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
}

fn outlet(out: &mut String, o: &OutletStatus) {
    let (class, text) = match o.state_now.as_str() {
        "exceeded" => ("badge bad exceeded", "当前超标 EXCEEDED now"),
        "ok" => ("badge ok", "当前达标 within limits now"),
        "no-valid" => ("badge warn", "本小时暂无有效数据 no valid data this hour"),
        "waiting" => ("badge none", "接收中，首个分钟均值即将计算 receiving; first averages within a minute"),
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
    let limits: Vec<String> = o.limits.iter().map(|(f, l)| format!("{} ≤ {l}", factors::short(f))).collect();
    let _ = write!(
        out,
        r#"<p class="meta">标准 Profile {} · 基准氧 reference O₂ {} · 小时限值 hourly limits (mg/m³): {}</p>"#,
        esc(o.profile.as_deref().unwrap_or("—")),
        o.o2_ref.map_or("—".into(), |v| format!("{v} %")),
        esc(&limits.join(", ")),
    );
    current_values(out, o);
    open_hour(out, o);
    today(out, o);
    trends(out, o);
    month(out, o);
    out.push_str("</section>\n");
}

fn current_values(out: &mut String, o: &OutletStatus) {
    out.push_str("<h3>实时数据 Current values <small>(干基标态 dry, standard state; 折算 converted to the reference O₂)</small></h3>");
    if o.current.is_empty() {
        out.push_str(r#"<p class="meta">暂无数据 no reading yet</p>"#);
        return;
    }
    cards_head(
        out,
        "current",
        &["因子 Factor", "数值 Value", "折算 Converted", "标记 Flag", "时间 Time", "最近有效 Last good"],
    );
    for c in &o.current {
        let unit = esc(&factors::pretty_unit(&c.unit));
        let value = c.value.map_or("—".into(), |v| format!("{v:.2}"));
        let zs = c.zs.map_or(String::new(), |v| format!("{v:.2} <small>{unit}</small>"));
        // The last good value says something only when the reading is not good.
        let last_good = match &c.last_good {
            Some(r) if c.flag != 'N' => format!(
                "{:.2} {} @ {}",
                r.value,
                factors::pretty_unit(&c.raw_unit),
                r.time.get(11..).unwrap_or(&r.time)
            ),
            Some(_) => String::new(),
            None if c.flag != 'N' => "—".into(),
            None => String::new(),
        };
        let _ =
            write!(out, r#"<tr class="row-{flag}" data-factor="{f}">"#, flag = c.flag, f = esc(&c.factor));
        let source = if c.device.is_empty() { "计算 derived" } else { c.device.as_str() };
        td(
            out,
            "head",
            "",
            &format!("{} <small>{} · {}</small>", esc(&c.label), esc(&c.factor), esc(source)),
        );
        td(out, "num value", "数值 Value", &format!("{value} <small>{unit}</small>"));
        td(out, "num zs", "折算 Converted", &zs);
        td(
            out,
            "flag-cell",
            "标记 Flag",
            &format!(
                r#"<span class="flag flag-{flag}">{flag}</span> {}"#,
                esc(&c.flag_meaning),
                flag = c.flag
            ),
        );
        td(
            out,
            "nowrap time",
            "时间 Time",
            &format!("{} <small>({:.0} s)</small>", esc(c.time.get(11..).unwrap_or(&c.time)), c.age_s),
        );
        td(out, "last-good", "最近有效 last good", &esc(&last_good));
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn open_hour(out: &mut String, o: &OutletStatus) {
    let Some(h) = o.open_hour.as_ref().filter(|h| !h.factors.is_empty()) else {
        out.push_str(r#"<h3>本小时 Open hour</h3><p class="meta">尚未计算 not computed yet (first figures a minute after start)</p>"#);
        return;
    };
    let _ = write!(
        out,
        r#"<h3>本小时 Open hour from {} <small>(折算浓度滑动均值 running converted average, mg/m³)</small></h3>"#,
        esc(h.start.get(11..16).unwrap_or(&h.start))
    );
    cards_head(
        out,
        "open-hour",
        &["因子 Factor", "均值 Average", "限值 Limit", "有效分钟 Valid minutes", "判定 Verdict"],
    );
    for f in &h.factors {
        let verdict = match (f.value, f.exceeded) {
            (None, _) => "无有效数据 no valid data",
            (Some(_), true) => "超标 ABOVE LIMIT",
            (Some(_), false) => "达标 within limit",
        };
        let _ = write!(
            out,
            r#"<tr class="{}" data-factor="{}">"#,
            if f.exceeded { "exceeded" } else { "" },
            esc(&f.factor)
        );
        td(out, "head", "", &esc(&f.label));
        td(out, "num", "均值 Average", &f.value.map_or("—".into(), |v| format!("{v:.2}")));
        td(out, "num", "限值 Limit", &f.limit.to_string());
        td(out, "num", "有效分钟 Valid minutes", &f.valid_minutes.to_string());
        td(out, "", "判定 Verdict", verdict);
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// Today's hours: a matrix (hour × limited factor) that fits a phone's width as it is.
fn today(out: &mut String, o: &OutletStatus) {
    let factors: Vec<&String> = o.limits.keys().collect();
    out.push_str(r#"<h3>今日小时均值 Today's hourly averages <small>(折算 converted, mg/m³)</small></h3><table class="today"><thead><tr><th>时段 Hour</th>"#);
    for f in &factors {
        let _ = write!(out, "<th>{} <small>≤ {}</small></th>", esc(&factors::short(f)), o.limits[*f]);
    }
    out.push_str("</tr></thead><tbody>");
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
    out.push_str("</tbody></table>");
}

fn trends(out: &mut String, o: &OutletStatus) {
    out.push_str(r#"<h3>24 小时趋势 24-hour trend <small>(5 分钟均值 5-min averages, ● 小时均值 hourly, - - 限值 limit; 折算 converted)</small></h3><div class="charts">"#);
    for t in &o.trends {
        let from = super::status::fmt_local(t.from);
        let to = super::status::fmt_local(t.to);
        let _ = write!(
            out,
            r#"<figure><figcaption>{} <small>≤ {} mg/m³ · {} – {}</small></figcaption>{}</figure>"#,
            esc(&t.label),
            t.limit,
            esc(from.get(..16).unwrap_or(&from)),
            esc(to.get(5..16).unwrap_or(&to)),
            super::svg::trend_chart(t)
        );
    }
    out.push_str("</div>");
}

fn month(out: &mut String, o: &OutletStatus) {
    let Some(m) = &o.month else { return };
    let _ = write!(
        out,
        r#"<h3>本月达标率 Month to date {} <small>(达标小时 / 有效小时 compliant / valid hours, 要求 ≥ 95 %; 超量程 T = 有效但高于仪器量程 valid, above the instrument's range: a lower bound)</small></h3>"#,
        esc(&m.month)
    );
    cards_head(
        out,
        "month",
        &[
            "因子 Factor",
            "达标/有效 Compliant/valid",
            "达标率 Rate",
            "判定 Verdict",
            "超量程 Over range (T)",
            "停运 Stopped",
            "无效 Invalid",
            "有效率 Capture",
        ],
    );
    for f in m.factors.iter().chain(std::iter::once(&m.joint)) {
        month_row(out, f);
    }
    out.push_str("</tbody></table>");
    out.push_str(r#"<h3>本月超标事件 Exceedance events this month</h3>"#);
    if m.events.is_empty() {
        out.push_str(r#"<p class="meta">无 none</p>"#);
        return;
    }
    cards_head(
        out,
        "events",
        &["因子 Factor", "开始 From", "结束 To", "小时 Hours", "峰值 Peak", "均值 Mean", "限值 Limit"],
    );
    for e in &m.events {
        out.push_str(r#"<tr class="exceeded">"#);
        td(out, "head", "", &esc(&e.label));
        td(out, "nowrap", "开始 From", &esc(e.start.get(..16).unwrap_or(&e.start)));
        td(out, "nowrap", "结束 To", &esc(e.end.get(..16).unwrap_or(&e.end)));
        td(out, "num", "小时 Hours", &e.hours.to_string());
        td(out, "num", "峰值 Peak", &format!("{:.2}", e.peak));
        td(out, "num", "均值 Mean", &format!("{:.2}", e.mean));
        td(out, "num", "限值 Limit", &e.limit.to_string());
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
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
    let _ = write!(out, r#"<tr class="{class}">"#);
    td(out, "head", "", &esc(&f.label));
    let compliant = f.valid_hours - f.exceeded_hours.min(f.valid_hours);
    // Cement counts production time: the rate is then over production hours.
    let of = if f.rate_of == "production hours" { f.production_hours } else { f.valid_hours };
    let (head, label) = if f.rate_of == "production hours" {
        ("达标/生产 Compliant/production", "production")
    } else {
        ("达标/有效 Compliant/valid", "valid")
    };
    td(out, "num", head, &format!("{compliant}/{of} <small>{label}</small>"));
    td(out, "num", "达标率 Rate", &f.rate_pct.map_or("—".into(), |r| format!("{r:.2} %")));
    td(out, "", "判定 Verdict", verdict);
    td(out, "num over-range", "超量程 Over range (T)", &f.over_range_hours.to_string());
    td(out, "num", "停运 Stopped", &f.stopped_hours.to_string());
    td(out, "num", "无效 Invalid", &f.invalid_hours.to_string());
    td(out, "num capture", "有效率 Capture", &f.capture_pct.map_or("—".into(), |r| format!("{r:.1} %")));
    out.push_str("</tr>");
}

fn chain(out: &mut String, s: &Status) {
    out.push_str(r#"<section class="chain"><h2>数据链路 Data chain <small>分析仪 analyzers → 数采仪 gateway → 平台 platforms</small></h2>"#);
    out.push_str("<h3>分析仪 Analyzers</h3>");
    cards_head(
        out,
        "devices",
        &["设备 Device", "状态 State", "最近有效 Last good", "轮询/错误 Polls/errors", "最近错误 Last error"],
    );
    for d in &s.devices {
        let class = match d.state.as_str() {
            "normal" => "badge ok",
            "comm lost" | "fault" => "badge bad",
            "not polled yet" => "badge none",
            _ => "badge warn",
        };
        let _ = write!(out, r#"<tr data-device="{}">"#, esc(&d.name));
        td(
            out,
            "head",
            "",
            &format!(
                "{} <small>{} · {}</small>",
                esc(&d.name),
                esc(d.outlet.as_deref().unwrap_or("—")),
                esc(&d.bus)
            ),
        );
        let not_polled =
            d.not_polled.as_deref().map(|w| format!(" <small>({})</small>", esc(w))).unwrap_or_default();
        td(
            out,
            "",
            "状态 State",
            &format!(r#"<span class="{class}">{} {}</span>{not_polled}"#, state_zh(&d.state), esc(&d.state)),
        );
        td(out, "", "最近有效 Last good", &esc(d.last_good.as_deref().unwrap_or("—")));
        td(out, "num", "轮询/错误 Polls/errors", &format!("{}/{}", d.polls, d.errors));
        // The last failure of a real request, with its time: kept after the device recovers.
        let error = match (&d.last_error, &d.last_error_at) {
            (Some(e), Some(at)) => format!("{} <small>@ {}</small>", esc(e), esc(at.get(5..).unwrap_or(at))),
            (Some(e), None) => esc(e),
            (None, _) => String::new(),
        };
        td(out, "last-error", "最近错误 Last error", &error);
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    super::evidence::render(out, &s.evidence);
    out.push_str(r#"<h3>上级平台 Platforms</h3>"#);
    if s.uplinks.is_empty() {
        out.push_str(r#"<p class="meta">未配置 none configured</p>"#);
    } else {
        cards_head(
            out,
            "uplinks",
            &[
                "平台 Platform",
                "链路 Link",
                "最近应答 Last ack",
                "已确认 Acknowledged up to",
                "待发 Backlog (min/h/d)",
                "最早未发 Oldest unsent",
                "应答/请求应答 Acked/asked (sent)",
                "最近错误 Last error",
            ],
        );
        for u in &s.uplinks {
            let (class, state) =
                if u.connected { ("badge ok", "已连接 connected") } else { ("badge bad", "断开 DOWN") };
            let acked = [("min", &u.acked.minute), ("h", &u.acked.hour), ("d", &u.acked.day)]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {}", esc(v.get(..16).unwrap_or(v)))))
                .collect::<Vec<_>>()
                .join("<br>");
            let _ = write!(out, r#"<tr data-uplink="{}">"#, esc(&u.name));
            td(
                out,
                "head",
                "",
                &format!("{} <small>{} · {}</small>", esc(&u.name), esc(&u.address), esc(&u.outlet)),
            );
            td(out, "", "链路 Link", &format!(r#"<span class="{class}">{state}</span>"#));
            td(out, "", "最近应答 Last ack", &esc(u.last_ack.as_deref().unwrap_or("—")));
            td(out, "", "已确认 Acknowledged up to", if acked.is_empty() { "—" } else { &acked });
            td(
                out,
                "num",
                "待发 Backlog (min/h/d)",
                &format!("{}/{}/{}", u.backlog.minute, u.backlog.hour, u.backlog.day),
            );
            td(out, "", "最早未发 Oldest unsent", &esc(u.oldest_unsent.as_deref().unwrap_or("—")));
            td(
                out,
                "num",
                "应答/请求应答 Acked/asked (sent)",
                &format!("{}/{} ({})", u.frames_acked, u.frames_asked, u.frames_sent),
            );
            let error = match (u.rejected, u.last_error.as_deref()) {
                (0, e) => e.unwrap_or("").to_string(),
                (n, e) => format!("{n} rejected 被拒收 · {}", e.unwrap_or("")),
            };
            td(out, "", "最近错误 Last error", &esc(&error));
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
    }
    gateway(out, s);
    out.push_str("</section>\n");
}

fn gateway(out: &mut String, s: &Status) {
    let g = &s.gateway;
    let _ = write!(
        out,
        r#"<h3>数采仪 Gateway</h3><dl class="gateway"><dt>版本 Version</dt><dd>{v}</dd><dt>运行 Uptime</dt><dd>{up}</dd><dt>磁盘可用 Disk free</dt><dd>{disk}</dd><dt>缓存文件 Buffer</dt><dd>{buf}</dd><dt>时钟同步 Clock</dt><dd>{sync}</dd><dt>平台时差 Platform clock</dt><dd>{clock}</dd><dt>已存样本 Samples stored</dt><dd>{n}</dd>"#,
        v = esc(&g.version),
        up = uptime(g.uptime_s),
        disk = match (g.disk_free_bytes, g.disk_total_bytes) {
            (Some(f), Some(t)) => format!("{} / {}", bytes(f), bytes(t)),
            _ => "—".into(),
        },
        buf = g.buffer_bytes.map_or("—".into(), bytes),
        sync = match g.clock_sync.as_str() {
            "synchronised" => r#"<span class="badge ok">已同步 synchronised</span>"#.to_string(),
            "unsynchronised" => r#"<span class="badge bad">未同步 NOT synchronised</span>"#.to_string(),
            other => esc(other),
        },
        clock = g.platform_clock_diff_ms.map_or("—".into(), |d| format!("{:+.1} s", d as f64 / 1000.0)),
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
    out.push_str("</dl>");
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
#[path = "page_tests.rs"]
mod tests;
