//! Key analyzer parameters against an independent analyzer (pymodbus) serving range, slope,
//! intercept, calibration time (BCD) and working state, with the whole gateway running: a range
//! changed mid-run (written by this test, as a technician would on the analyzer's panel) gives
//! an audit entry, a 3020 push in the C.42 format at a loopback platform while minute records
//! keep flowing, a highlighted row on the status page and the new `T` threshold; a state change
//! is pushed as table B.10 says; the platform asks for field information by PolId, by InfoId and
//! for a window of the logger log; a 3021 is refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cems_gateway::acquire::registers::{DataType, WordOrder, encode};
use cems_gateway::model::Flag;
use cems_gateway::store::Store;
use libtest_mimic::Failed;
use tokio_modbus::client::Writer;

use crate::modbus::{Peer, free_port};
use crate::need::{Need, Plan, python};
use crate::support::gateway::get_text;
use crate::support::platform::Platform;

pub fn add(plan: &mut Plan) {
    plan.add(
        "params::a_range_changed_mid_run_is_audited_pushed_shown_and_sets_t",
        &[Need::Pymodbus],
        a_range_changed_mid_run_is_audited_pushed_shown_and_sets_t,
    );
}

const MN: &str = "PARAMS0000000001";

fn config(db: &Path, analyzer: u16, platform: &str) -> cems_gateway::config::Config {
    crate::support::config(&format!(
        r#"
[site]
mn = "{MN}"
pw = "123456"
[storage]
path = "{db}"
[web]
listen = "127.0.0.1:0"
[[bus]]
name = "b"
kind = "tcp"
address = "127.0.0.1:{analyzer}"
timeout_ms = 1000
[[outlet]]
name = "kiln"
[[device]]
name = "gas"
bus = "b"
slave = 1
poll_interval_s = 1
outlet = "kiln"
  [[device.status]]
  address = 20
  type = "u16"
  map = {{ 3 = "C" }}
  [[device.point]]
  factor = "a21026"
  address = 0
  type = "f32"
  range_max = 2000.0
  [[device.parameter]]
  code = "i13001"
  pol = "a21026"
  address = 100
  type = "f32"
  poll_interval_s = 1
  [[device.parameter]]
  code = "i13008"
  address = 102
  type = "f32"
  [[device.parameter]]
  code = "i13007"
  address = 104
  type = "f32"
  [[device.parameter]]
  code = "i13006"
  pol = "a21026"
  address = 110
  type = "time-bcd"
  [[device.parameter]]
  code = "i12001"
  address = 120
  type = "u16"
  map = {{ 0 = 0, 1 = 1, 4 = 6 }}
  poll_interval_s = 1
[[uplink]]
name = "province"
address = "{platform}"
realtime = false
min_interval = 1
hour = false
day = false
"#,
        db = db.display()
    ))
}

fn a_range_changed_mid_run_is_audited_pushed_shown_and_sets_t() -> Result<(), Failed> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run())
}

async fn run() -> Result<(), Failed> {
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/params_analyzer.py");
    let _analyzer = Peer(
        Command::new(python())
            .arg(script)
            .args(["127.0.0.1", &port.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .expect("starting pymodbus"),
    );
    let mut writer = None;
    for _ in 0..100 {
        if let Ok(ctx) = tokio_modbus::client::tcp::connect_slave(
            format!("127.0.0.1:{port}").parse()?,
            tokio_modbus::Slave(1),
        )
        .await
        {
            writer = Some(ctx);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut technician = writer.ok_or("pymodbus never listened")?;
    let platform = Platform::start().await;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("p.db");
    let cfg = config(&db, port, &platform.address);
    let started = cems_gateway::model::now_ms();
    let gateway = cems_gateway::app::start(&cfg)?;
    let web = gateway.web_address().ok_or("the status page runs")?;
    let live = gateway.live.clone();
    let second = Duration::from_secs(1);

    // First readings: every parameter pushed once (a first reading is news to the platform).
    platform
        .wait_for("the first parameters", 30 * second, |all| {
            all.iter().any(|p| p.cn == "3020" && p.cp.get("i13006-Info") == Some("20261206153045"))
                && all.iter().any(|p| p.cn == "3020" && p.cp.get("i13001-Info") == Some("1000"))
        })
        .await;
    let flag_of_so2 = || live.current().get(&("gas".to_string(), "a21026".to_string())).map(|c| c.flag);
    if flag_of_so2() != Some(Flag::N) {
        return Err(format!("700 within the range 1000: {:?}", flag_of_so2()).into());
    }

    // The technician lowers the range to 500 on the analyzer.
    technician.write_multiple_registers(100, &encode(500.0, DataType::F32, WordOrder::Abcd)).await??;
    let all = platform
        .wait_for("the range change pushed", 30 * second, |all| {
            all.iter().any(|p| p.cn == "3020" && p.cp.get("i13001-Info") == Some("500"))
        })
        .await;
    let push_at = all.iter().position(|p| p.cn == "3020" && p.cp.get("i13001-Info") == Some("500")).unwrap();
    let push = &all[push_at];
    // C.42/C.44: DataTime first, one PolId, fields separated by ';', Flag=5 (notices ask).
    let cp = push.cp.to_string();
    if !(cp.starts_with("DataTime=") && cp.contains(";PolId=a21026;") && cp.ends_with("i13001-Info=500")) {
        return Err(format!("push CP {cp}").into());
    }
    if push.cp.0.iter().filter(|item| item.iter().any(|(k, _)| k == "PolId")).count() != 1
        || push.flag != Some(5)
    {
        return Err(format!("push {push:?}").into());
    }
    // The new T threshold: 700 is now above the analyzer's range.
    for _ in 0..50 {
        if flag_of_so2() == Some(Flag::T) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if flag_of_so2() != Some(Flag::T) {
        return Err(format!("700 above the new range 500 is T: {:?}", flag_of_so2()).into());
    }
    // Audited, with the previous value.
    let store = Store::open_read_only(&db)?;
    let (entries, _) = store.log_entries(started, i64::MAX, 10_000)?;
    if !entries.iter().any(|e| {
        e.kind == "parameter"
            && e.subject == "gas/i13001/a21026"
            && e.detail.starts_with("value=500 previous=1000 ")
    }) {
        return Err(format!("no audit entry for the range change: {entries:#?}").into());
    }
    // The page: the row highlighted, the change and the threshold called out.
    let page = get_text(web, "/").await;
    let row = page
        .split(r#"<tr class="changed" data-param="gas/i13001">"#)
        .nth(1)
        .ok_or("the range row is highlighted")?;
    let row = row.split("</tr>").next().unwrap_or_default();
    if !(row.contains("(was 1000)")
        && row.contains("range changed 1000 → 500")
        && row.contains("T (超量程) now above 500"))
    {
        return Err(format!("range row: {row}").into());
    }

    // A power fault on the analyzer's state register (device 4 → table B.10's 6).
    technician.write_single_register(120, 4).await??;
    platform
        .wait_for("the working state pushed", 30 * second, |all| {
            all.iter().any(|p| p.cn == "3020" && p.cp.get("i12001-Info") == Some("6"))
        })
        .await;

    // Minute records keep flowing after the push.
    platform
        .wait_for("a minute record after the push", 150 * second, |all| {
            all[push_at..].iter().any(|p| p.cn == "2051")
        })
        .await;

    // Requests: by PolId, by InfoId, the logger log of a window, and a 3021.
    platform.request(MN, "20261206153000001", "3020", &[("PolId", "a21026")]);
    platform.request(MN, "20261206153000002", "3020", &[("InfoId", "i13008")]);
    let fmt = |ms: i64| cems_gateway::hj212::message::format_time14(ms, 8 * 3600);
    let (from, to) = (fmt(started - 3_600_000), fmt(cems_gateway::model::now_ms() + 3_600_000));
    platform.request(
        MN,
        "20261206153000003",
        "3020",
        &[("InfoId", "i21001"), ("BeginTime", &from), ("EndTime", &to)],
    );
    platform.request(
        MN,
        "20261206153000004",
        "3021",
        &[("PolId", "a21026"), ("InfoId", "i13001"), ("i13001-Info", "5000")],
    );
    platform
        .wait_for("the answers", 20 * second, |_| {
            ["20261206153000001", "20261206153000002", "20261206153000003"]
                .iter()
                .all(|qn| platform.replies(qn).iter().any(|p| p.cn == "9012"))
                && !platform.replies("20261206153000004").is_empty()
        })
        .await;
    let by_pol = platform.replies("20261206153000001");
    let frames: Vec<String> = by_pol.iter().filter(|p| p.cn == "3020").map(|p| p.cp.to_string()).collect();
    let one = frames.first().ok_or("a frame for a21026")?;
    for field in [
        "PolId=a21026",
        "i12001-Info=6",
        "i13001-Info=500",
        "i13006-Info=20261206153045",
        "i13007-Info=0.5",
        "i13008-Info=1.02",
    ] {
        if !one.contains(field) {
            return Err(format!("by PolId, {field} missing: {frames:?}").into());
        }
    }
    let by_info = platform.replies("20261206153000002");
    let info_frames: Vec<String> =
        by_info.iter().filter(|p| p.cn == "3020").map(|p| p.cp.to_string()).collect();
    if info_frames.len() != 1 || !info_frames[0].ends_with(";PolId=a21026;i13008-Info=1.02") {
        return Err(format!("by InfoId: {info_frames:?}").into());
    }
    let logs: Vec<String> = platform
        .packets("3020")
        .iter()
        .filter(|p| p.cp.get("i21001-Info").is_some())
        .map(|p| p.cp.get("i21001-Info").unwrap().to_string())
        .collect();
    if !logs.iter().any(|l| l.starts_with("//配置 configuration start") && l.ends_with("//")) {
        let replies: Vec<String> =
            platform.replies("20261206153000003").iter().map(|p| format!("{} {}", p.cn, p.cp)).collect();
        return Err(format!("the logger log of the window: {logs:?}; replies {replies:?}").into());
    }
    if platform.replies("20261206153000003").last().map(|p| p.cp.to_string()) != Some("ExeRtn=1".into()) {
        return Err("the log request ends with ExeRtn=1".into());
    }
    let refused: Vec<String> =
        platform.replies("20261206153000004").iter().map(|p| format!("{} {}", p.cn, p.cp)).collect();
    if refused != ["9011 QnRtn=2"] {
        return Err(format!("3021: {refused:?}").into());
    }
    gateway.stop().await;
    let store = Store::open_read_only(&db)?;
    let (entries, _) = store.log_entries(started, i64::MAX, 100_000)?;
    if !entries
        .iter()
        .any(|e| e.kind == "platform" && e.detail.contains("CN=3021") && e.detail.contains("QnRtn=2"))
    {
        return Err("the 3021 refusal is audited".into());
    }
    let chain = store.verify_chain(None, None)?;
    if !chain.verified {
        return Err(format!("the chain verifies: {:?}", chain.first_broken).into());
    }
    Ok(())
}
