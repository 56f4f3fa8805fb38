//! Configuration: the shipped examples are valid, and a table of bad configs gives exactly the
//! expected problems, every one at once, each at its key's line and column, named by its item.

use std::path::Path;

use cems_gateway::config::{self, DEMO_CONFIG, Link, Parity, validate};

fn errors(text: &str) -> Vec<String> {
    match validate::parse(text, Path::new("/etc/cems-gateway")) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

const SITE: &str = "[site]\nmn = \"TEST0001\"\npw = \"123456\"\n[storage]\npath = \"cems.db\"\n";

fn with_site(rest: &str) -> String {
    format!("{SITE}{rest}")
}

const BUS_AND_DEVICE: &str = r#"
[[bus]]
name = "b"
kind = "tcp"
address = "127.0.0.1:502"
[[device]]
name = "d"
bus = "b"
slave = 1
  [[device.point]]
  factor = "a21026"
  address = 0
  type = "f32"
"#;

/// Two hj212 buses (one bad, one good) and devices on them with problems.
const HJ212_INPUT: &str = r#"[[bus]]
name = "h"
kind = "hj212"
address = "1.2.3.4:5"
[[bus]]
name = "h2"
kind = "hj212"
listen = "0.0.0.0:9100"
[[device]]
name = "a"
bus = "h2"
mn = "bad mn!"
  [[device.point]]
  factor = "a21026"
  address = 0
[[device]]
name = "c"
bus = "h2"
  [[device.point]]
  factor = "a21026"
  code = "x y"
[[device]]
name = "e"
bus = "b"
slave = 3
  [[device.point]]
  factor = "a21026"
  address = 0
  type = "f32"
  code = "so2"
"#;

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for name in ["examples/cement-kiln-tail.toml", "examples/coke-oven-chimney.toml", "demo.toml"] {
        let cfg = config::load(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!cfg.devices.is_empty(), "{name}");
    }
    assert!(errors(DEMO_CONFIG).is_empty());
}

/// The kiln example's 4-20 mA counts (5530 at 4 mA, 27648 at 20 mA) scale to the ranges its
/// comments give: the temperature 0..300 °C, the static pressure -5..+5 kPa, the velocity
/// 0..40 m/s, the humidity 0..40 %.
#[test]
fn the_kiln_examples_analog_scales_match_their_ranges() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/cement-kiln-tail.toml");
    let cfg = config::load(&root).unwrap();
    let flue = cfg.device("flue").unwrap();
    for (factor, lo, hi) in
        [("a01012", 0.0, 300.0), ("a01013", -5.0, 5.0), ("a01011", 0.0, 40.0), ("a01014", 0.0, 40.0)]
    {
        let p = flue.points.iter().find(|p| p.factor == factor).unwrap();
        let (at_4ma, at_20ma) = (p.scaled(5530.0), p.scaled(27648.0));
        assert!((at_4ma - lo).abs() < 1e-4 * (hi - lo), "{factor}: 4 mA gives {at_4ma}, not {lo}");
        assert!((at_20ma - hi).abs() < 1e-4 * (hi - lo), "{factor}: 20 mA gives {at_20ma}, not {hi}");
    }
}

#[test]
fn defaults_and_resolution() {
    let cfg = validate::parse(&with_site(BUS_AND_DEVICE), Path::new("/etc/cems-gateway")).unwrap();
    assert_eq!(cfg.site.st, 31, "ST defaults to 31 (air emission source)");
    assert_eq!(cfg.storage.path, Path::new("/etc/cems-gateway/cems.db"), "relative to the file");
    assert_eq!(
        cfg.devices[0].poll_interval.as_secs(),
        2,
        "HJ 75: at most every 5 s; 2 s by default for margin"
    );
    let rtu =
        with_site(&BUS_AND_DEVICE.replace(
            "kind = \"tcp\"\naddress = \"127.0.0.1:502\"",
            "kind = \"rtu\"\npath = \"/dev/ttyUSB0\"",
        ));
    let cfg = validate::parse(&rtu, Path::new("/")).unwrap();
    match &cfg.buses[0].link {
        Link::Rtu(s) => assert_eq!((s.baud, s.parity, s.data_bits, s.stop_bits), (9600, Parity::None, 8, 1)),
        other => panic!("{other:?}"),
    }
    // 3.5 characters of 10 bits at 9600 baud = 3.65 ms.
    assert_eq!(cfg.buses[0].inter_frame.as_micros(), 3645);

    // The status page is on for the plant LAN unless switched off.
    let web = |extra: &str| {
        validate::parse(&with_site(&format!("{BUS_AND_DEVICE}{extra}")), Path::new("/")).unwrap().web
    };
    assert_eq!(web("").listen, Some("0.0.0.0:8080".parse().unwrap()));
    assert_eq!(web("").token, None);
    assert_eq!(web("[web]\nlisten = \"off\"\n").listen, None);
    assert_eq!(web("[web]\nenabled = false\n").listen, None);
    let w = web("[web]\nlisten = \"127.0.0.1:9000\"\ntoken = \"s3cret-token\"\n");
    assert_eq!(w.listen, Some("127.0.0.1:9000".parse().unwrap()));
    assert_eq!(w.token.as_deref(), Some("s3cret-token"));
}

#[test]
fn bad_configs_report_every_problem_with_key_and_line() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("empty file", String::new(), vec![
            "site: section [site] is required",
            "storage: section [storage] is required",
            "device: at least one [[device]] is required",
        ]),
        // Every syntax error of the file, at its own column, and nothing checked beyond them.
        ("syntax errors", "[site\nmn = 1\nx = = 2\n".into(), vec![
            "line 1, column 6: syntax: unclosed table, expected `]`",
            "line 3, column 5: syntax: extra `=`, expected nothing",
            "line 3, column 7: syntax: unexpected key or value, expected newline, `#`",
        ]),
        ("a key written twice", with_site("[web]\nlisten = \"off\"\nlisten = \"off\"\n"), vec![
            "line 8, column 1: syntax: duplicate key",
        ]),
        ("site fields", "[site]\nmn = \"a b\"\npw = \"1234567\"\nst = 0\nindustry = \"bakery\"\n[storage]\npath = \"x\"\n".to_string() + BUS_AND_DEVICE, vec![
            "line 2, column 1: site: mn: must be 1 to 24 letters or digits, got \"a b\"",
            "line 3, column 1: site: pw: must be exactly 6 ASCII characters",
            "line 4, column 1: site: st: must be between 1 and 99, got 0",
            "line 5, column 1: site: industry: must be one of cement, coking, steel, power, other, got \"bakery\"",
        ]),
        ("unknown section and key", with_site(&format!("{BUS_AND_DEVICE}[extra]\nx = 1\n")).replace("path = \"cems.db\"", "path = \"cems.db\"\ncolour = 1"), vec![
            "line 6, column 1: storage: colour: unknown key; expected one of path, retention_days, max_size_mb, flush_ms",
            "line 20, column 1: extra: unknown section; expected one of site, storage, statistics, bus, device, outlet, uplink, web, marks",
        ]),
        ("a section of the wrong kind", format!("web = 1\n[[statistics]]\n{}", with_site(BUS_AND_DEVICE)), vec![
            "line 1, column 1: web: must be a table: write it as [web]",
            "line 2, column 3: statistics: must be a table: write it as [statistics]",
        ]),
        ("bus problems", with_site("[[bus]]\nname = \"b\"\nkind = \"rtu\"\nbaud = 12\nparity = \"mark\"\naddress = \"x:1\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"nohost\"\nstop_bits = 2\n[[bus]]\nkind = \"can\"\n"), vec![
            "device: at least one [[device]] is required",
            "line 6, column 1: bus \"b\": path: is required",
            "line 9, column 1: bus \"b\": baud: must be between 300 and 4000000, got 12",
            "line 10, column 1: bus \"b\": parity: must be one of none, even, odd, got \"mark\"",
            "line 11, column 1: bus \"b\": address: is not allowed for kind = \"rtu\" (use path)",
            "line 13, column 1: bus \"b\": name: another [[bus]] has this name (line 7)",
            "line 15, column 1: bus \"b\": address: must be host:port, got \"nohost\"",
            "line 16, column 1: bus \"b\": stop_bits: is not allowed for kind = \"tcp\" (use address)",
            "line 17, column 1: bus #3: name: is required",
            "line 18, column 1: bus #3: kind: must be one of rtu, tcp, rtu-over-tcp, ascii, hj212, got \"can\"",
        ]),
        // The bus does not exist: the point's values are still checked, but not which keys a
        // point on that bus needs.
        ("device and point problems", with_site(&BUS_AND_DEVICE
            .replace("bus = \"b\"", "bus = \"nope\"\noutlet = \"stack\"\npoll_interval_s = 0")
            .replace("type = \"f32\"", "type = \"float\"\nword_order = \"ACBD\"\nrange_max = -1.0\n  [[device.point]]\n  factor = \"SO2!\"\n  address = 65535\n  type = \"f32\"\n  capture = \"x\"")), vec![
            "line 13, column 1: device \"d\": bus: no [[bus]] is named \"nope\"",
            "line 14, column 1: device \"d\": outlet: no [[outlet]] is named \"stack\"",
            "line 15, column 1: device \"d\": poll_interval_s: must be between 0.1 and 3600, got 0",
            "line 20, column 3: device \"d\" point a21026: type: must be one of u16, i16, u32, i32, f32, f64, got \"float\"",
            "line 21, column 1: device \"d\" point a21026: word_order: must be one of ABCD, CDAB, BADC, DCBA, got \"ACBD\"",
            "line 22, column 1: device \"d\" point a21026: range_max: must be positive, got -1",
            "line 24, column 3: device \"d\" point SO2!: factor: must be an HJ 212 code such as a21026, got \"SO2!\"",
            "line 25, column 3: device \"d\" point SO2!: address: value runs past register 65535",
        ]),
        ("status and outlet problems", with_site(&format!("[[outlet]]\nname = \"s\"\nprofile = \"glass\"\no2_ref = 21.0\n{}", BUS_AND_DEVICE.replace("slave = 1", "slave = 0\n  [[device.status]]\n  address = 9\n  type = \"f32\"\n  match = \"any\"\n  map = { 1 = \"T\", x = \"C\" }")))
            .replace("kind = \"tcp\"\naddress = \"127.0.0.1:502\"", "kind = \"rtu-over-tcp\"\naddress = \"10.0.0.1:4001\""), vec![
            "line 8, column 1: outlet \"s\": profile: must be one of power-coal, steel-sinter-head, cement-kiln, coke-oven-chimney, custom, got \"glass\"",
            "line 9, column 1: outlet \"s\": o2_ref: must be at least 0 and below 21 (%), got 21",
            "line 18, column 1: device \"d\": slave: must be between 1 and 247, got 0",
            "line 21, column 3: device \"d\" status register 9: type: a status register must be an integer type",
            "line 22, column 3: device \"d\" status register 9: match: must be one of value, bits, got \"any\"",
            "line 23, column 11: device \"d\" status register 9: map.1: must be one of N, F, M, D, C, got \"T\" (T and B are set by the gateway)",
            "line 23, column 20: device \"d\" status register 9: map.x: key must be an integer",
        ]),
        // Key parameters: table B.10 codes read from registers, a time only for i13006 and only
        // as a time, map values from table B.10, pol a point of the device.
        ("parameter problems", with_site(&BUS_AND_DEVICE.replace("type = \"f32\"\n", "type = \"f32\"\n  [[device.parameter]]\n  code = \"i13001\"\n  address = 100\n  type = \"f32\"\n  pol = \"a21002\"\n  [[device.parameter]]\n  code = \"i13006\"\n  address = 110\n  type = \"u32\"\n  [[device.parameter]]\n  code = \"i13008\"\n  address = 120\n  type = \"time-bcd\"\n  word_order = \"CDAB\"\n  [[device.parameter]]\n  code = \"i12001\"\n  address = 20\n  type = \"u16\"\n  map = { 0 = 0, 4 = 4 }\n  poll_interval_s = 0.5\n  [[device.parameter]]\n  code = \"i22001\"\n  address = 30\n  type = \"u16\"\n  [[device.parameter]]\n  code = \"i13099\"\n  address = 40\n  type = \"f32\"\n  map = { 1 = 2 }\n  [[device.parameter]]\n  code = \"i12001\"\n  address = 21\n  type = \"u16\"\n")), vec![
            "line 23, column 3: device \"d\" parameter i13001: pol: must be the factor of a point of this device (a21026), got \"a21002\"",
            "line 27, column 3: device \"d\" parameter i13006: type: i13006 (calibration time) is a time: time-bcd or time-fields",
            "line 31, column 3: device \"d\" parameter i13008: type: only i13006 (calibration time) is a time; i13008 is a number",
            "line 32, column 3: device \"d\" parameter i13008: word_order: is not allowed for a time (its registers are read in order)",
            "line 37, column 18: device \"d\" parameter i12001: map.4: i12001 takes one of 0, 1, 2, 3, 5, 6, 7, 8, 9, 10 (table B.10), got 4",
            "line 38, column 3: device \"d\" parameter i12001: poll_interval_s: must be between 1 and 86400, got 0.5",
            "line 40, column 3: device \"d\" parameter i22001: code: i22001 is the data logger's own: the gateway reports it, it is not read",
            "line 44, column 3: device \"d\" parameter i13099: code: must be a code of HJ 212 table B.10 read from an analyzer, such as i12001 (working state), i13001 (range), i13006 (calibration time), i13007 (intercept), i13008 (slope); got \"i13099\"",
            "line 47, column 3: device \"d\" parameter i13099: map: maps device values of an integer type (u16, i16, u32, i32)",
            "line 49, column 3: device \"d\" parameter i12001: code: i12001 appears twice in this device",
        ]),
        // The operators' token differs from the officers'; the marks window is bounded.
        ("operator token and marks window", with_site(&format!("[web]\ntoken = \"same-token-1\"\noperator_token = \"same-token-1\"\n[marks]\nwindow_hours = 0\n{BUS_AND_DEVICE}")), vec![
            "line 8, column 1: web: operator_token: must differ from token (the officers' token only reads)",
            "line 10, column 1: marks: window_hours: must be between 1 and 744, got 0",
        ]),
        ("ascii problems", with_site("[[bus]]\nname = \"a\"\nkind = \"ascii\"\npath = \"/dev/ttyS1\"\n[[device]]\nname = \"d\"\nbus = \"a\"\n  [device.ascii]\n  request = \"RD\"\n  pattern = 'DUST=(?P<dust>[0-9.]+'\n  [[device.point]]\n  factor = \"a34013\"\n  capture = \"dust\"\n  address = 3\n"), vec![
            "line 15, column 3: device \"d\" ascii: pattern: is not a valid regular expression: regex parse error:\n    DUST=(?P<dust>[0-9.]+\n         ^\nerror: unclosed group",
            "line 19, column 3: device \"d\" point a34013: address: is not allowed on an ascii device (use capture)",
        ]),
        ("statistics and outlet figures", with_site(&format!("[statistics]\nminutes_per_hour = 61\nnormal_share = 1.5\n[[outlet]]\nname = \"s\"\nprofile = \"custom\"\nvelocity_coefficient = 0.0\nrun_status = \"run status\"\n{BUS_AND_DEVICE}")).replace("mn = \"TEST0001\"", "mn = \"TEST0001\"\nutc_offset_hours = 8.3"), vec![
            "line 3, column 1: site: utc_offset_hours: must be between -12 and 14 in quarter hours, got 8.3",
            "line 8, column 1: statistics: minutes_per_hour: must be between 1 and 60, got 61",
            "line 9, column 1: statistics: normal_share: must be above 0 and at most 1, got 1.5",
            "line 10, column 1: outlet \"s\": limits: a custom profile needs its limits, e.g. limits = { a21026 = 35.0 }",
            "line 13, column 1: outlet \"s\": velocity_coefficient: must be above 0 and at most 5, got 0",
            "line 14, column 1: outlet \"s\": run_status: must be a factor code such as SB1-RS, got \"run status\"",
        ]),
        ("outlet cross-checks", with_site(&format!("[[outlet]]\nname = \"s\"\nprofile = \"cement-kiln\"\nrun_status = \"SB1-RS\"\n{BUS_AND_DEVICE}\n[[device]]\nname = \"e\"\nbus = \"b\"\nslave = 2\noutlet = \"s\"\n  [[device.point]]\n  factor = \"a21026\"\n  address = 0\n  type = \"f32\"\n").replace("slave = 1", "slave = 1\noutlet = \"s\"")), vec![
            "line 8, column 1: outlet \"s\": profile: values are converted to a reference O2 but no device of this outlet measures O2 (a19001)",
            "line 8, column 1: outlet \"s\": profile: profile cement-kiln limits a21002 (NOx), which no device of this outlet measures; measure a21002 (NOx), or measure both a21003 (NO) and a21004 (NO₂), or override the limit with unlimited = [\"a21002\"]",
            "line 8, column 1: outlet \"s\": profile: profile cement-kiln limits a34013 (PM), which no device of this outlet measures; measure a34013 (PM), or override the limit with unlimited = [\"a34013\"]",
            "line 9, column 1: outlet \"s\": run_status: no device of this outlet has a point with factor SB1-RS",
            "line 29, column 1: device \"e\": outlet: factor a21026 also comes from device \"d\" of outlet \"s\": samples would mix",
        ]),
        // A NOx limit with only NO measured: the joint rate would silently be over SO2 and PM.
        ("a limited factor nothing measures", with_site(&format!("[[outlet]]\nname = \"s\"\nprofile = \"cement-kiln\"\nlimits = {{ a21001 = 8.0 }}\n{}", BUS_AND_DEVICE.replace("slave = 1", "slave = 1\noutlet = \"s\"") + &["a21003", "a19001", "a34013"].iter().enumerate().map(|(i, f)| format!("  [[device.point]]\n  factor = \"{f}\"\n  address = {}\n  type = \"f32\"\n", 2 * i + 2)).collect::<String>())), vec![
            "line 8, column 1: outlet \"s\": profile: profile cement-kiln limits a21002 (NOx), which no device of this outlet measures; measure a21002 (NOx), or measure both a21003 (NO) and a21004 (NO₂), or override the limit with unlimited = [\"a21002\"]",
            "line 9, column 12: outlet \"s\": limits.a21001: this outlet limits a21001 (NH₃), which no device of this outlet measures; measure a21001 (NH₃), or override the limit with unlimited = [\"a21001\"]",
        ]),
        ("which flags are valid, and the measured flow", with_site(&format!("[statistics]\nvalid_flags = [\"N\", \"C\", \"NT\"]\n[[outlet]]\nname = \"s\"\nflow_basis = \"damp\"\nflow_unit = \"l/s\"\nunlimited = [\"NOx!\"]\n{BUS_AND_DEVICE}")), vec![
            "line 7, column 21: statistics: valid_flags[1]: C cannot count as valid: only N, T (above the instrument's range) and S (a manual value) can",
            "line 7, column 26: statistics: valid_flags[2]: must be one of the flags N, T, S, got \"NT\"",
            "line 10, column 1: outlet \"s\": flow_basis: must be one of wet-actual, wet-standard, dry-actual, dry-standard, got \"damp\"",
            "line 11, column 1: outlet \"s\": flow_unit: must be one of m3/s, m3/h, got \"l/s\"",
            "line 12, column 14: outlet \"s\": unlimited[0]: must be a factor code such as a21002, got \"NOx!\"",
        ]),
        ("valid flags without N, a limit that is not there", with_site(&format!("[statistics]\nvalid_flags = [\"T\"]\n[[outlet]]\nname = \"s\"\nunlimited = [\"a21002\"]\n{}", BUS_AND_DEVICE.replace("slave = 1", "slave = 1\noutlet = \"s\""))), vec![
            "line 7, column 1: statistics: valid_flags: must include N (normal samples are always valid)",
            "line 10, column 14: outlet \"s\": unlimited[0]: a21002 is not limited at this outlet",
        ]),
        // A device with a problem of its own leaves the outlet's cross-checks undecided.
        ("no cross-check over a device with a problem", with_site(&format!("[[outlet]]\nname = \"s\"\nrun_status = \"SB1-RS\"\n{}", BUS_AND_DEVICE.replace("slave = 1", "slave = 1\noutlet = \"s\"\nmax_gap = 999"))), vec![
            "line 19, column 1: device \"d\": max_gap: must be between 0 and 120, got 999",
        ]),
        ("uplink problems", with_site(&format!("{BUS_AND_DEVICE}[[uplink]]\nname = \"p\"\nkind = \"mqtt\"\naddress = \"nohost\"\nprotocol = \"2005\"\nrtd_interval_s = 10\nmin_interval = 7\npw = \"12\"\n")), vec![
            "line 19, column 1: uplink \"p\": outlet: is required when there is not exactly one [[outlet]]",
            "line 21, column 1: uplink \"p\": kind: must be one of hj212, http, got \"mqtt\"",
            "line 22, column 1: uplink \"p\": address: must be host:port, got \"nohost\"",
            "line 23, column 1: uplink \"p\": protocol: must be one of 2017, 2025, got \"2005\"",
            "line 24, column 1: uplink \"p\": rtd_interval_s: must be between 30 and 3600, got 10",
            "line 25, column 1: uplink \"p\": min_interval: must be one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, got 7",
            "line 26, column 1: uplink \"p\": pw: must be exactly 6 ASCII characters",
        ]),
        // A link takes the site's password: a bad one is a problem of [site] only.
        ("a bad site password is reported once", with_site(&format!("[[outlet]]\nname = \"o\"\n{BUS_AND_DEVICE}[[uplink]]\nname = \"p\"\naddress = \"127.0.0.1:9\"\n")).replace("pw = \"123456\"", "pw = \"12\""), vec![
            "line 3, column 1: site: pw: must be exactly 6 ASCII characters",
        ]),
        ("http uplink problems", with_site(&format!("{BUS_AND_DEVICE}[[uplink]]\nname = \"j\"\nkind = \"http\"\nurl = \"ftp://example.org/x\"\ntoken = \"has space\"\nbatch = 0\nrealtime = true\n[[uplink]]\nname = \"h\"\naddress = \"127.0.0.1:9\"\nurl = \"http://x\"\n[[uplink]]\nname = \"k\"\nkind = \"http\"\n")).replace("[[bus]]", "[[outlet]]\nname = \"o\"\n[[bus]]"), vec![
            "line 24, column 1: uplink \"j\": url: must be an http:// or https:// URL, got \"ftp://example.org/x\"",
            "line 25, column 1: uplink \"j\": token: must be non-empty printable ASCII without spaces",
            "line 26, column 1: uplink \"j\": batch: must be between 1 and 1000, got 0",
            "line 27, column 1: uplink \"j\": realtime: real-time (2011) data is sent over HJ 212 only",
            "line 31, column 1: uplink \"h\": url: applies only to kind = \"http\"",
            "line 32, column 1: uplink \"k\": url: is required",
        ]),
        ("hj212 input problems", with_site(&format!("{}{HJ212_INPUT}", BUS_AND_DEVICE.replace("slave = 1", "slave = 1\nmn = \"X1\"").replace("address = \"127.0.0.1:502\"", "address = \"127.0.0.1:502\"\nlisten = \"0.0.0.0:1\""))), vec![
            "line 11, column 1: bus \"b\": listen: is not allowed for this kind (only kind = \"hj212\" listens)",
            "line 16, column 1: device \"d\": mn: is not allowed on a polled device (only on a bus of kind = \"hj212\")",
            "line 21, column 1: bus \"h\": listen: kind = \"hj212\" needs exactly one of listen or path",
            "line 24, column 1: bus \"h\": address: is not allowed for kind = \"hj212\" (use listen or path)",
            "line 32, column 1: device \"a\": mn: must be 1 to 24 letters or digits, got \"bad mn!\"",
            "line 35, column 3: device \"a\" point a21026: address: is not allowed on an hj212 device (use code)",
            "line 41, column 3: device \"c\" point a21026: code: must be letters, digits or '-', got \"x y\"",
            "line 50, column 3: device \"e\" point a21026: code: is not allowed here (only on a bus of kind = \"hj212\")",
        ]),
        ("hj212 devices told apart by mn", with_site("[[bus]]\nname = \"h\"\nkind = \"hj212\"\npath = \"/dev/ttyS1\"\n[[device]]\nname = \"a\"\nbus = \"h\"\nmn = \"M1\"\n  [[device.point]]\n  factor = \"a21026\"\n[[device]]\nname = \"b\"\nbus = \"h\"\nmn = \"M1\"\n  [[device.point]]\n  factor = \"a21026\"\n[[device]]\nname = \"c\"\nbus = \"h\"\n  [[device.point]]\n  factor = \"a21026\"\n"), vec![
            "line 19, column 1: device \"b\": mn: \"M1\" is used by two devices of bus \"h\"",
            "line 22, column 1: device \"c\": mn: is required: several devices share the hj212 bus \"h\"",
        ]),
        ("hj212 listener caps", with_site("[[bus]]\nname = \"h\"\nkind = \"hj212\"\nlisten = \"0.0.0.0:9100\"\nmax_connections = 0\nidle_timeout_s = 0\n[[bus]]\nname = \"s\"\nkind = \"hj212\"\npath = \"/dev/ttyS1\"\nmax_connections = 2\n[[device]]\nname = \"a\"\nbus = \"s\"\n  [[device.point]]\n  factor = \"a21026\"\n"), vec![
            "line 10, column 1: bus \"h\": max_connections: must be between 1 and 64, got 0",
            "line 11, column 1: bus \"h\": idle_timeout_s: must be between 1 and 86400, got 0",
            "line 16, column 1: bus \"s\": max_connections: is not allowed without listen (only kind = \"hj212\" with listen accepts connections)",
        ]),
        // A value of the wrong type is that key's problem, not the item's: no "is required".
        ("wrong types", with_site(&BUS_AND_DEVICE.replace("slave = 1", "slave = \"one\"").replace("factor = \"a21026\"", "factor = \"a21026\"\n  scale = \"10\"")), vec![
            "line 14, column 1: device \"d\": slave: must be an integer, got \"one\"",
            "line 17, column 3: device \"d\" point a21026: scale: must be a number, got \"10\"",
        ]),
        ("wrong types in lists and tables", with_site(&format!("[[outlet]]\nname = \"o\"\nlimits = {{ a21026 = \"35\" }}\n{BUS_AND_DEVICE}[[uplink]]\nname = \"u\"\naddress = \"127.0.0.1:9\"\nprotocol = \"2025\"\noperating_parameters = [\"a01012\", 7]\n")), vec![
            "line 8, column 21: outlet \"o\": limits: must be a number (each value of the table), got \"35\"",
            "line 26, column 35: uplink \"u\": operating_parameters: must be a string (each element of the list), got 7",
        ]),
        ("web problems", with_site(&format!("{BUS_AND_DEVICE}[web]\nlisten = \"localhost:80\"\ntoken = \"short\"\n")), vec![
            "line 20, column 1: web: listen: must be an IP address and port such as \"0.0.0.0:8080\", or \"off\"; got \"localhost:80\"",
            "line 21, column 1: web: token: must be 8 to 128 characters long",
        ]),
        ("web token and key", with_site(&format!("[web]\nlisten = \"0.0.0.0:99999\"\ntoken = \"has a space\"\n{BUS_AND_DEVICE}")), vec![
            "line 7, column 1: web: listen: must be an IP address and port such as \"0.0.0.0:8080\", or \"off\"; got \"0.0.0.0:99999\"",
            "line 8, column 1: web: token: must be visible ASCII characters without spaces",
        ]),
        ("web unknown key", with_site(&format!("{BUS_AND_DEVICE}[web]\nport = 8080\n")), vec![
            "line 20, column 1: web: port: unknown key; expected one of enabled, listen, token, operator_token",
        ]),
    ];
    let mut failures = Vec::new();
    for (name, text, expected) in cases {
        let got = errors(&text);
        if got != expected {
            failures.push(format!("{name}:\n  expected {expected:#?}\n  got {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Allowed but probably not meant: a device of a limited outlet polled more slowly than a minute's
/// samples need (60 / 12 = 5 s) is a warning at its key; the file is still usable.
#[test]
fn a_slow_device_on_a_limited_outlet_is_a_warning() {
    let text = with_site(&format!(
        "[[outlet]]\nname = \"s\"\nlimits = {{ a21026 = 35.0 }}\n{}",
        BUS_AND_DEVICE.replace("slave = 1", "slave = 1\noutlet = \"s\"\npoll_interval_s = 10")
    ));
    let cfg = validate::parse(&text, Path::new("/")).expect("usable");
    let warnings: Vec<String> = cfg.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "line 19, column 1: device \"d\": poll_interval_s: polled every 10 s: a minute has fewer than the 12 samples it needs ([statistics] samples_per_minute), so every minute of this device's factors would be invalid; poll every 5 s or faster"
        ]
    );
    // At 5 s, or on an outlet without limits, nothing to say.
    let at_five = text.replace("poll_interval_s = 10", "poll_interval_s = 5");
    assert!(validate::parse(&at_five, Path::new("/")).unwrap().warnings.is_empty());
    let unlimited = text.replace("limits = { a21026 = 35.0 }", "");
    assert!(validate::parse(&unlimited, Path::new("/")).unwrap().warnings.is_empty());
}

/// The installer's four mistakes in the shipped kiln example (issue 16): exactly these four,
/// each at its key, named by its item, in file order; the misspelt bus is still the bus the
/// devices name, and the bad `slave` is not also "required".
#[test]
fn four_mistakes_give_four_problems() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config/examples/cement-kiln-tail.toml")).unwrap();
    let four = mistakes(&text);
    assert_eq!(
        errors(&four),
        [
            "line 44, column 1: bus \"rs485-1\": buad: unknown key; did you mean baud?",
            "line 45, column 1: bus \"rs485-1\": parity: must be one of none, even, odd, got \"nada\"",
            "line 81, column 1: device \"gas\": slave: must be an integer, got \"one\"",
            "line 99, column 3: device \"gas\" point a21026: word_ordr: unknown key; did you mean word_order?",
        ]
    );
}

/// The kiln example with `buad = 9600`, `parity = "nada"`, the gas analyzer's `slave = "one"`
/// and its first point's `word_ordr = "CDAB"`.
pub fn mistakes(text: &str) -> String {
    let mut out = text.replacen("\nbaud = 9600", "\nbuad = 9600", 1).replacen(
        "parity = \"none\"",
        "parity = \"nada\"",
        1,
    );
    out = out.replacen("\nslave = 1\n", "\nslave = \"one\"\n", 1);
    out.replacen("word_order = \"CDAB\"", "word_ordr = \"CDAB\"", 1)
}

/// The HJ 212-2025 settings of a link: only with protocol = "2025", a key file readable by its
/// owner only and holding 16 characters, and the network's timeout defaults.
#[test]
fn hj212_2025_link_settings_are_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open_key = dir.path().join("open.key");
    std::fs::write(&open_key, "0000000000000000").unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let short_key = dir.path().join("short.key");
    std::fs::write(&short_key, "123").unwrap();
    std::fs::set_permissions(&short_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let uplinks = format!(
        "[[uplink]]\nname = \"a\"\naddress = \"127.0.0.1:9\"\nencrypt = true\n\
         [[uplink]]\nname = \"b\"\naddress = \"127.0.0.1:9\"\nprotocol = \"2025\"\nencrypt = true\nnetwork = \"lora\"\nlength_field = \"both\"\noperating_parameters = [\"kiln temp\"]\n\
         [[uplink]]\nname = \"c\"\naddress = \"127.0.0.1:9\"\nprotocol = \"2025\"\nkey_file = \"{}\"\n\
         [[uplink]]\nname = \"d\"\naddress = \"127.0.0.1:9\"\nprotocol = \"2025\"\nkey_file = \"{}\"\n",
        open_key.display(),
        short_key.display()
    );
    // The key files are read by `config::load`; the validation itself only names them.
    let text = with_site(&format!("{BUS_AND_DEVICE}{uplinks}[[outlet]]\nname = \"o\"\n"));
    let got: Vec<String> = match validate::parse_with(&text, Path::new("/"), &config::check_key_file) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    };
    let expected = vec![
        "line 22, column 1: uplink \"a\": encrypt: applies only to protocol = \"2025\"".to_string(),
        "line 23, column 1: uplink \"b\": key_file: is required with encrypt = true (the registered SM4 key)".into(),
        "line 28, column 1: uplink \"b\": network: must be one of gprs, cdma, 4g, adsl, ethernet, nb-iot, got \"lora\""
            .into(),
        "line 29, column 1: uplink \"b\": length_field: must be one of plain, wire, got \"both\"".into(),
        "line 30, column 25: uplink \"b\": operating_parameters[0]: is not an HJ 212 factor code: \"kiln temp\"".into(),
        format!(
            "line 35, column 1: uplink \"c\": key_file: {} must be readable by its owner only (chmod 600), its mode is 644",
            open_key.display()
        ),
        format!(
            "line 40, column 1: uplink \"d\": key_file: {} must hold exactly 16 characters (the SM4 key)",
            short_key.display()
        ),
    ];
    assert_eq!(got, expected);
    assert!(!got.iter().any(|e| e.contains("0000000000000000")), "a key never appears in messages");

    let nb = validate::parse(
        &with_site(&format!("{BUS_AND_DEVICE}[[uplink]]\nname = \"n\"\naddress = \"127.0.0.1:9\"\nprotocol = \"2025\"\nnetwork = \"nb-iot\"\n[[outlet]]\nname = \"o\"\n")),
        Path::new("/etc/cems-gateway"),
    )
    .unwrap();
    let u = &nb.uplinks[0];
    assert_eq!((u.overtime.as_secs(), u.recount), (30, 5), "NB-IoT: 30 s × 5");
    assert_eq!(u.v2025.key_request_after.as_secs(), 80 * 86_400);
    assert_eq!(u.v2025.unconvertible_value, 9999.99);
}

/// An HJ 212 input listener serves a few senders by default, with an idle deadline derived from
/// its devices; both can be set.
#[test]
fn an_hj212_listener_is_capped_by_default() {
    let text = |extra: &str| {
        with_site(&format!(
            "[[bus]]\nname = \"h\"\nkind = \"hj212\"\nlisten = \"0.0.0.0:9100\"\n{extra}[[device]]\nname = \"a\"\nbus = \"h\"\n  [[device.point]]\n  factor = \"a21026\"\n"
        ))
    };
    let limits = |t: &str| match validate::parse(t, Path::new("/")).unwrap().buses[0].link {
        Link::Hj212Listen { limits, .. } => limits,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(limits(&text("")), config::ListenLimits { max_connections: 4, idle_timeout: None });
    assert_eq!(
        limits(&text("max_connections = 8\nidle_timeout_s = 120\n")),
        config::ListenLimits { max_connections: 8, idle_timeout: Some(std::time::Duration::from_secs(120)) }
    );
}
