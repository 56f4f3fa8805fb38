//! The status page in a real headless browser (Debian's chromium): the rendered DOM holds the
//! values, an exceeded hour marked, and the trend charts with their limit lines; at a phone's
//! width (390 px) nothing is wider than the screen (measured in the browser); screenshots at
//! desktop and phone width, of the whole page, are kept as CI artifacts in `target/`.
//!

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;

use crate::need::{Need, Plan, chromium};
use crate::support::gateway::{seeded_gateway, target_dir};

/// The tests of this module.
pub fn add(plan: &mut Plan) {
    plan.add(
        "browser::the_page_renders_in_a_real_browser",
        &[Need::Chromium],
        the_page_renders_in_a_real_browser,
    );
}

/// Runs the browser with `args` and a private profile, killed after `limit`; its stdout.
fn run(browser: &Path, profile: &Path, args: &[String], limit: Duration) -> String {
    let mut child = Command::new(browser)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        out
    });
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium {args:?} exited with {status}");
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The page's layout as the browser computed it.
#[derive(Debug)]
struct Layout {
    inner_width: u32,
    scroll_width: u32,
    scroll_height: u32,
    /// Elements whose right edge is past the window's (tag.class).
    too_wide: Vec<String>,
}

/// Measures `html` at `width` × `height` in the browser. Headless chromium keeps its window at
/// least 500 px wide, so the page is shown in an iframe of exactly that size (its viewport, for
/// media queries and `innerWidth`): a copy of the page with a script that, once it has loaded,
/// posts `innerWidth`, `document.documentElement.scrollWidth`, its height and the elements
/// reaching past its right edge to the frame's parent, which writes them into its DOM for
/// `--dump-dom` to print.
fn layout(browser: &Path, profile: &Path, dir: &Path, html: &str, width: u32, height: u32) -> Layout {
    const PROBE: &str = r#"<script>
addEventListener("load", function () {
  var d = document.documentElement, wide = [];
  document.querySelectorAll("body *").forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > innerWidth + 0.5) wide.push(e.tagName.toLowerCase() + "." + e.className);
  });
  parent.postMessage([innerWidth, d.scrollWidth, d.scrollHeight].join(" ") + "\n" + wide.slice(0, 12).join("\n"), "*");
});
</script></body>"#;
    let page = framed(dir, html, PROBE, width, height);
    let args = vec![
        "--dump-dom".to_string(),
        "--virtual-time-budget=5000".into(),
        format!("--window-size={},{}", width.max(500), height),
        format!("file://{}", page.display()),
    ];
    let dom = run(browser, profile, &args, Duration::from_secs(90));
    let report = dom.split("<pre id=\"layout\">").nth(1).and_then(|r| r.split("</pre>").next());
    let report = report.unwrap_or_else(|| panic!("no layout report in {dom}"));
    let mut lines = report.lines();
    let numbers: Vec<u32> = lines.next().unwrap().split(' ').map(|n| n.parse().unwrap()).collect();
    Layout {
        inner_width: numbers[0],
        scroll_width: numbers[1],
        scroll_height: numbers[2],
        too_wide: lines.map(str::to_string).collect(),
    }
}

/// Writes a copy of the page (with `script` before `</body>`) and a frame page that shows it
/// in a `width` × `height` iframe on grey and writes any message from it into a
/// `<pre id="layout">`; returns the frame page.
fn framed(dir: &Path, html: &str, script: &str, width: u32, height: u32) -> std::path::PathBuf {
    let inner = dir.join(format!("page-{width}.html"));
    std::fs::write(&inner, html.replacen("</body>", script, 1)).unwrap();
    let outer = dir.join(format!("frame-{width}.html"));
    std::fs::write(
        &outer,
        format!(
            r#"<!doctype html><html><body style="margin:0;background:#9aa">
<iframe src="{}" scrolling="no" style="display:block;border:0;width:{width}px;height:{height}px;background:#fff"></iframe>
<script>addEventListener("message", function (e) {{
  var p = document.createElement("pre"); p.id = "layout"; p.textContent = e.data; document.body.appendChild(p);
}});</script></body></html>"#,
            inner.file_name().unwrap().to_string_lossy()
        ),
    )
    .unwrap();
    outer
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    assert!(bytes.len() > 20_000, "{} is suspiciously small ({} bytes)", path.display(), bytes.len());
}

fn the_page_renders_in_a_real_browser() -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(page_in_the_browser())
}

async fn page_in_the_browser() -> Result<(), Failed> {
    let browser = chromium().ok_or("chromium not found")?;
    let f = seeded_gateway(None).await;
    // An open mark with a long reason, and the analyzer's parameters read: their tables are laid
    // out too.
    {
        use cems_gateway::compute::marks::{Kind, Mark, Rules};
        let now = cems_gateway::model::now_ms();
        let fmt = |ms: i64| ms.to_string();
        let rules = Rules { now_ms: now, window_ms: 72 * 3_600_000, fmt: &fmt };
        let mut store = cems_gateway::store::Store::open_secondary(&f.config.storage.path)?;
        let reason =
            "探头清洗，更换滤芯并检查伴热管 probe cleaning, filter change and heated line check".to_string();
        let mark = Mark {
            id: 0,
            outlet: "kiln-tail".into(),
            kind: Kind::Maintenance,
            start_ms: now - 3_600_000,
            end_ms: None,
            reason,
            who: "王工".into(),
        };
        store.add_mark(mark, rules, "test").map_err(|e| e.to_string())?;
    }
    for _ in 0..100 {
        let status: serde_json::Value =
            serde_json::from_str(&crate::support::gateway::get_text(f.address, "/api/v1/status").await)?;
        if status["evidence"]["parameters"]
            .as_array()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|p| p["value"].is_string()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("{}/", f.base);
    let profile = tempfile::tempdir().unwrap();
    let target = target_dir();
    let (desktop, phone) = (target.join("status-page.png"), target.join("status-page-phone.png"));
    let profile_path = profile.path().to_path_buf();
    let (dom, exceeded_hour, this_hour) = (
        {
            let (browser, url, profile) = (browser.clone(), url.clone(), profile_path.clone());
            tokio::task::spawn_blocking(move || {
                run(&browser, &profile, &["--dump-dom".into(), url], Duration::from_secs(90))
            })
            .await
            .unwrap()
        },
        f.exceeded_hour,
        f.this_hour,
    );
    // Everything the server put in: the page is the document, not a script's output.
    assert!(dom.contains("排放口 Outlet kiln-tail"), "{dom}");
    assert!(dom.contains("<main id=\"main\">"), "{dom}");
    let so2_row =
        dom.split("<tr ").find(|r| r.contains("data-factor=\"a21026\"") && r.contains("mg/m³")).unwrap();
    let value: f64 = so2_row
        .split("class=\"num value\" data-label=\"数值 Value\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no SO2 value in {so2_row}"));
    assert!(value > 40.0, "the simulator's exceeding SO2: {value}");
    assert!(so2_row.contains("class=\"flag flag-N\""), "{so2_row}");
    // The trend charts: one per limited factor, each with its limit line, the exceeded hour red.
    assert_eq!(dom.matches("<svg class=\"trend\"").count(), 3, "{dom}");
    assert_eq!(dom.matches("class=\"limit\"").count(), 3);
    assert!(dom.contains("限值 limit 35"));
    let hhmm = &cems_gateway::web::status::fmt_local(exceeded_hour)[11..16];
    assert!(dom.contains("<circle class=\"hour exceeded\""), "{dom}");
    assert!(dom.contains(&format!("<title>{hhmm} 60.00</title>")), "{dom}");
    // Today's table marks the hour (unless it was yesterday, in the first two hours of a day).
    if exceeded_hour >= this_hour - this_hour.rem_euclid(86_400) {
        assert!(dom.contains("<td class=\"num exceeded\" data-factor=\"a21026\">60.00</td>"), "{dom}");
    }
    // Limits by name; the charts with their unit and time labels.
    assert!(dom.contains("hourly limits (mg/m³): NOx ≤ 50, SO₂ ≤ 35, PM ≤ 10"), "{dom}");
    assert_eq!(dom.matches(">mg/m³</text>").count(), 3);
    assert!(dom.contains("分析仪 Analyzers") && dom.contains("data-device=\"gas\""));
    assert!(dom.contains("正常 normal"));
    assert!(
        dom.contains(r#"data-param="gas/i13001""#) && dom.contains("20261201080000"),
        "the parameters: {dom}"
    );
    assert!(dom.contains(r#"<tr data-mark="1">"#) && dom.contains("进行中 open"), "the mark: {dom}");
    assert!(
        dom.contains(r#"data-audit="true""#) && dom.contains("完整 intact"),
        "the audit chain verifies: {dom}"
    );

    // Layout, measured in the browser: at a phone's width nothing is wider than the screen.
    let html = crate::support::gateway::get_text(f.address, "/").await;
    let dir = tempfile::tempdir().unwrap();
    let mut heights = Vec::new();
    for (width, height) in [(390, 844), (1280, 900)] {
        let layout = {
            let (browser, profile, dir, html) =
                (browser.clone(), profile_path.clone(), dir.path().to_path_buf(), html.clone());
            tokio::task::spawn_blocking(move || layout(&browser, &profile, &dir, &html, width, height))
                .await
                .unwrap()
        };
        assert_eq!(layout.inner_width, width, "the viewport is the window: {layout:?}");
        assert!(
            layout.scroll_width <= layout.inner_width && layout.too_wide.is_empty(),
            "at {width} px the page is {} px wide: {:?}",
            layout.scroll_width,
            layout.too_wide
        );
        heights.push(layout.scroll_height);
    }
    if let Some(phone_height) = heights.first() {
        assert!(*phone_height > 844, "the phone layout stacks: {phone_height} px");
    }

    // Screenshots of the whole page: desktop and phone width (the phone's in a 390 px frame).
    for (path, width, height) in [(&desktop, 1280, heights[1]), (&phone, 390, heights[0])] {
        let _ = std::fs::remove_file(path);
        let frame = framed(dir.path(), &html, "</body>", width, height);
        let (browser, profile, path) = (browser.clone(), profile_path.clone(), path.to_path_buf());
        let args = vec![
            format!("--screenshot={}", path.display()),
            "--virtual-time-budget=5000".into(),
            format!("--window-size={},{height}", width.max(500)),
            format!("file://{}", frame.display()),
        ];
        tokio::task::spawn_blocking(move || run(&browser, &profile, &args, Duration::from_secs(90)))
            .await
            .unwrap();
        assert_png(&path);
    }
    eprintln!("screenshots: {} and {}", desktop.display(), phone.display());
    f.stop().await;
    Ok(())
}
