//! The status page in a real headless browser (Debian's chromium): the rendered DOM holds the
//! values, an exceeded hour marked, and the trend charts with their limit lines; screenshots
//! at desktop and phone width are kept as CI artifacts in `target/`.
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
        dom.split("<tr ").find(|r| r.contains("data-factor=\"a21026\"") && r.contains("mg/m3")).unwrap();
    let value: f64 = so2_row
        .split("class=\"num value\">")
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
    assert!(dom.contains("分析仪 Analyzers") && dom.contains("data-device=\"gas\""));
    assert!(dom.contains("正常 normal"));
    assert!(
        dom.contains(r#"data-audit="true""#) && dom.contains("完整 intact"),
        "the audit chain verifies: {dom}"
    );

    // Screenshots: desktop and phone width.
    for (path, size) in [(&desktop, "1280,2400"), (&phone, "390,3400")] {
        let _ = std::fs::remove_file(path);
        let (browser, url, profile, path) =
            (browser.clone(), url.clone(), profile_path.clone(), path.to_path_buf());
        let args = vec![format!("--screenshot={}", path.display()), format!("--window-size={size}"), url];
        tokio::task::spawn_blocking(move || run(&browser, &profile, &args, Duration::from_secs(90)))
            .await
            .unwrap();
        assert_png(&path);
    }
    eprintln!("screenshots: {} and {}", desktop.display(), phone.display());
    f.stop().await;
    Ok(())
}
