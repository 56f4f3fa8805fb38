//! The 24-hour trend chart of one limited factor, drawn by the server as inline SVG: the
//! five-minute averages as a thin line, the hourly averages (what is judged) as dots, red when
//! the hour exceeded, and the limit as a dashed red line. Pure: a [`Trend`] in, markup out.

use std::fmt::Write as _;

use super::page::esc;
use super::status::{Trend, fmt_local};

const W: f64 = 600.0;
const H: f64 = 200.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// The chart as an `<svg>` element (scales to its container's width).
pub fn trend_chart(t: &Trend) -> String {
    let span = (t.to - t.from).max(1) as f64;
    let top_value =
        t.minutes.iter().map(|m| m.1).chain(t.hours.iter().map(|h| h.value)).fold(t.limit * 1.25, f64::max);
    let y_max = nice_ceiling(top_value);
    let x = |time: i64| LEFT + (time - t.from) as f64 / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v.clamp(0.0, y_max) / y_max) * (H - TOP - BOTTOM);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="trend" data-factor="{f}" viewBox="0 0 {W} {H}" width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-label="{label}: 24 h trend, limit {limit}" xmlns="http://www.w3.org/2000/svg"><title>{label}</title>"#,
        f = esc(&t.factor),
        label = esc(&t.label),
        limit = t.limit,
    );
    // Horizontal grid with values, four steps.
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<line class="grid" x1="{LEFT}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd" stroke-width="1"/><text x="{tx}" y="{ty:.1}" font-size="11" text-anchor="end" fill="#555">{v}</text>"##,
            x2 = W - RIGHT,
            yy = y(v),
            tx = LEFT - 4.0,
            ty = y(v) + 4.0,
            v = trim_number(v),
        );
    }
    // Hour labels every six hours.
    let first_label = t.from + (6 * 3600 - t.from.rem_euclid(6 * 3600)) % (6 * 3600);
    let mut h = first_label;
    while h <= t.to {
        let _ = write!(
            out,
            r##"<text x="{xx:.1}" y="{ty}" font-size="11" text-anchor="middle" fill="#555">{label}</text>"##,
            xx = x(h),
            ty = H - 6.0,
            label = fmt_local(h).get(11..16).unwrap_or(""),
        );
        h += 6 * 3600;
    }
    // Five-minute averages; a gap of more than two buckets breaks the line.
    let mut segment: Vec<String> = Vec::new();
    let mut last: Option<i64> = None;
    let flush = |segment: &mut Vec<String>, out: &mut String| {
        if segment.len() > 1 {
            let _ = write!(
                out,
                r##"<polyline class="minutes" fill="none" stroke="#1f6fb2" stroke-width="1.2" points="{}"/>"##,
                segment.join(" ")
            );
        }
        segment.clear();
    };
    for (time, v) in &t.minutes {
        if last.is_some_and(|l| time - l > 600) {
            flush(&mut segment, &mut out);
        }
        segment.push(format!("{:.1},{:.1}", x(*time + 150), y(*v)));
        last = Some(*time);
    }
    flush(&mut segment, &mut out);
    // Limit line.
    let _ = write!(
        out,
        r##"<line class="limit" x1="{LEFT}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#c62828" stroke-width="1.5" stroke-dasharray="6 4"/><text class="limit-label" x="{lx}" y="{ty:.1}" font-size="11" fill="#c62828">限值 limit {limit}</text>"##,
        x2 = W - RIGHT,
        lx = LEFT + 4.0,
        yy = y(t.limit),
        ty = y(t.limit) - 4.0,
        limit = trim_number(t.limit),
    );
    // Hourly averages, at the middle of their hour.
    for hour in &t.hours {
        let (class, fill) = if hour.exceeded { ("hour exceeded", "#c62828") } else { ("hour", "#1b5e20") };
        let _ = write!(
            out,
            r#"<circle class="{class}" cx="{cx:.1}" cy="{cy:.1}" r="{r}" fill="{fill}"><title>{time} {v:.2}</title></circle>"#,
            cx = x(hour.start + 1800),
            cy = y(hour.value),
            r = if hour.exceeded { 4.5 } else { 3.5 },
            time = fmt_local(hour.start).get(11..16).unwrap_or(""),
            v = hour.value,
        );
    }
    if t.minutes.is_empty() && t.hours.is_empty() {
        let _ = write!(
            out,
            r##"<text x="{cx}" y="{cy}" font-size="13" text-anchor="middle" fill="#777">无数据 no data yet</text>"##,
            cx = W / 2.0,
            cy = H / 2.0,
        );
    }
    out.push_str("</svg>");
    out
}

/// The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * p).find(|c| *c >= v).unwrap_or(10.0 * p)
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::status::TrendHour;

    fn trend(hours: Vec<TrendHour>, minutes: Vec<(i64, f64)>) -> Trend {
        Trend {
            factor: "a21026".into(),
            label: "二氧化硫 SO₂".into(),
            limit: 35.0,
            from: 0,
            to: 24 * 3600,
            minutes,
            hours,
        }
    }

    #[test]
    fn limit_line_and_exceeded_hours_are_drawn() {
        let svg = trend_chart(&trend(
            vec![
                TrendHour { start: 0, value: 20.0, exceeded: false },
                TrendHour { start: 3600, value: 60.0, exceeded: true },
            ],
            vec![(0, 19.0), (300, 21.0), (3600, 58.0)],
        ));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"class="limit""#), "{svg}");
        assert!(svg.contains("限值 limit 35"), "{svg}");
        assert_eq!(svg.matches(r#"class="hour exceeded""#).count(), 1);
        assert_eq!(svg.matches(r#"class="hour""#).count(), 1);
        // 0 and 300 are one segment; 3600 is after a gap and alone (no line of one point).
        assert_eq!(svg.matches("<polyline").count(), 1);
        // The scale covers the highest value: 60 → 100 at the top.
        assert!(svg.contains(">100</text>"), "{svg}");
    }

    #[test]
    fn no_data_is_said() {
        let svg = trend_chart(&trend(vec![], vec![]));
        assert!(svg.contains("no data yet"));
        assert!(svg.contains(r#"class="limit""#));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(43.75), 50.0);
        assert_eq!(nice_ceiling(12.5), 20.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }
}
