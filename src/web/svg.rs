//! The 24-hour trend chart of one limited factor, drawn by the server as inline SVG: the
//! five-minute averages as a thin line, the hourly averages (what is judged) as dots, red when
//! the hour exceeded, and the limit as a dashed red line; the unit on the value axis, the date
//! at midnight on the time axis. Drawn at about a phone's width so that its 12 px labels stay
//! 12 px there. Pure: a [`Trend`] in, markup out.

use std::fmt::Write as _;

use super::page::esc;
use super::status::Trend;
use crate::time::Local;

const W: f64 = 360.0;
const H: f64 = 210.0;
const LEFT: f64 = 36.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 22.0;
/// Axis labels, in the chart's units (about pixels on a phone).
const FONT: f64 = 12.0;

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
    // The unit, above the value axis.
    let _ = write!(
        out,
        r##"<text class="unit" x="4" y="{ty}" font-size="{FONT}" fill="#555">mg/m³</text>"##,
        ty = FONT + 2.0,
    );
    // Horizontal grid with values, four steps.
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<line class="grid" x1="{LEFT}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd" stroke-width="1"/><text x="{tx}" y="{ty:.1}" font-size="{FONT}" text-anchor="end" fill="#555">{v}</text>"##,
            x2 = W - RIGHT,
            yy = y(v),
            tx = LEFT - 4.0,
            ty = y(v) + 4.0,
            v = trim_number(v),
        );
    }
    // Time labels every six hours; midnight shows the date instead (MM-DD).
    let first_label = t.from + (6 * 3600 - t.from.rem_euclid(6 * 3600)) % (6 * 3600);
    let mut h = first_label;
    while h <= t.to {
        let local = Local::from_secs(h);
        let (class, label) = if h.rem_euclid(86_400) == 0 {
            ("date", local.date().get(5..).unwrap_or("").to_string())
        } else {
            ("hour-label", local.hour_minute())
        };
        let _ = write!(
            out,
            r##"<text class="{class}" x="{xx:.1}" y="{ty}" font-size="{FONT}" text-anchor="middle" fill="#555"{weight}>{label}</text>"##,
            xx = x(h).clamp(LEFT + 16.0, W - RIGHT - 16.0),
            ty = H - 6.0,
            weight = if class == "date" { r#" font-weight="600""# } else { "" },
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
        r##"<line class="limit" x1="{LEFT}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#c62828" stroke-width="1.5" stroke-dasharray="6 4"/><text class="limit-label" x="{lx}" y="{ty:.1}" font-size="{FONT}" fill="#c62828">限值 limit {limit}</text>"##,
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
            time = Local::from_secs(hour.start).hour_minute(),
            v = hour.value,
        );
    }
    if t.minutes.is_empty() && t.hours.is_empty() {
        // In the larger of the two bands the limit line leaves, on a white halo: never struck
        // through by the line.
        let (top, limit, bottom) = (TOP, y(t.limit), H - BOTTOM);
        let cy = if limit - top > bottom - limit { (top + limit) / 2.0 } else { (limit + bottom) / 2.0 };
        let _ = write!(
            out,
            r##"<text class="no-data" x="{cx}" y="{cy:.1}" font-size="13" text-anchor="middle" dominant-baseline="middle" fill="#777" stroke="#fff" stroke-width="4" paint-order="stroke">无数据 no data yet</text>"##,
            cx = (LEFT + W - RIGHT) / 2.0,
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
    fn no_data_is_said_away_from_the_limit_line() {
        for limit in [10.0, 35.0, 50.0, 80.0] {
            let mut t = trend(vec![], vec![]);
            t.limit = limit;
            let svg = trend_chart(&t);
            assert!(svg.contains(r#"class="limit""#));
            // The value of attribute `name` in the element with class `class`.
            let attr = |class: &str, name: &str| -> f64 {
                let element = svg.split(&format!(r#"class="{class}""#)).nth(1).unwrap();
                let rest = element.split(&format!(r#" {name}=""#)).nth(1).unwrap();
                rest.split('"').next().unwrap().parse().unwrap()
            };
            let (text_y, line_y) = (attr("no-data", "y"), attr("limit", "y1"));
            assert!((text_y - line_y).abs() > 15.0, "limit {limit}: text at {text_y}, line at {line_y}");
        }
    }

    #[test]
    fn axes_have_a_unit_readable_labels_and_the_date() {
        // From 18:00 local on day 1 to 18:00 on day 2: midnight shows the date.
        let mut t = trend(vec![], vec![(86_400 + 3600, 20.0), (86_400 + 3900, 21.0)]);
        (t.from, t.to) = (18 * 3600, 42 * 3600);
        let svg = trend_chart(&t);
        assert!(svg.contains(">mg/m³</text>"), "{svg}");
        assert!(svg.contains(r#"class="date""#) && svg.contains(">01-02</text>"), "{svg}");
        assert!(svg.contains(">06:00</text>") && svg.contains(">18:00</text>"), "{svg}");
        assert!(!svg.contains(r#"font-size="11""#) && svg.contains(r#"viewBox="0 0 360 210""#));
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
