//! Configuration: the shipped examples are valid, and a table of bad configs gives exactly the
//! expected problems, every one at once, with key path and line.

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
        ("syntax error", "[site\nmn = 1".into(), vec!["line 1: (syntax): unclosed table, expected `]`"]),
        ("site fields", "[site]\nmn = \"a b\"\npw = \"1234567\"\nst = 0\nindustry = \"bakery\"\n[storage]\npath = \"x\"\n".to_string() + BUS_AND_DEVICE, vec![
            "line 1: site.mn: must be 1 to 24 letters or digits, got \"a b\"",
            "line 1: site.pw: must be exactly 6 ASCII characters",
            "line 1: site.st: must be between 1 and 99, got 0",
            "line 1: site.industry: must be one of cement, coking, steel, power, other, got \"bakery\"",
        ]),
        ("unknown section and field", with_site(&format!("{BUS_AND_DEVICE}[extra]\nx = 1\n")).replace("path = \"cems.db\"", "path = \"cems.db\"\ncolour = 1"), vec![
            "extra: unknown section; expected one of site, storage, statistics, bus, device, outlet, uplink, web",
            "line 4: storage: unknown field `colour`, expected one of `path`, `retention_days`, `max_size_mb`, `flush_ms`",
        ]),
        ("bus problems", with_site("[[bus]]\nname = \"b\"\nkind = \"rtu\"\nbaud = 12\nparity = \"mark\"\naddress = \"x:1\"\n[[bus]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"nohost\"\nstop_bits = 2\n[[bus]]\nkind = \"can\"\n"), vec![
            "line 6: bus[0].address: is not allowed for kind = \"rtu\" (use path)",
            "line 6: bus[0].path: is required",
            "line 6: bus[0].baud: must be between 300 and 4000000, got 12",
            "line 6: bus[0].parity: must be one of none, even, odd, got \"mark\"",
            "line 12: bus[1].stop_bits: is not allowed for kind = \"tcp\" (use address)",
            "line 12: bus[1].address: must be host:port, got \"nohost\"",
            "line 17: bus[2].name: is required",
            "line 17: bus[2].kind: must be one of rtu, tcp, rtu-over-tcp, ascii, hj212, got \"can\"",
            "bus[1].name: duplicate name \"b\"",
            "device: at least one [[device]] is required",
        ]),
        ("device and point problems", with_site(&BUS_AND_DEVICE
            .replace("bus = \"b\"", "bus = \"nope\"\noutlet = \"stack\"\npoll_interval_s = 0")
            .replace("type = \"f32\"", "type = \"float\"\nword_order = \"ACBD\"\nrange_max = -1.0\n  [[device.point]]\n  factor = \"SO2!\"\n  address = 65535\n  type = \"f32\"\n  capture = \"x\"")), vec![
            "line 11: device[0].bus: no [[bus]] is named \"nope\"",
            "line 11: device[0].poll_interval_s: must be between 0.1 and 3600, got 0",
            "line 11: device[0].outlet: no [[outlet]] is named \"stack\"",
            "line 11: device[0].point[0].type: must be one of u16, i16, u32, i32, f32, f64, got \"float\"",
            "line 11: device[0].point[0].word_order: must be one of ABCD, CDAB, BADC, DCBA, got \"ACBD\"",
            "line 11: device[0].point[0].range_max: must be positive, got -1",
            "line 11: device[0].point[1].factor: must be an HJ 212 code such as a21026, got \"SO2!\"",
            "line 11: device[0].point[1].capture: is not allowed on a Modbus device",
            "line 11: device[0].point[1].address: value runs past register 65535",
        ]),
        ("status and outlet problems", with_site(&format!("[[outlet]]\nname = \"s\"\nprofile = \"glass\"\no2_ref = 21.0\n{}", BUS_AND_DEVICE.replace("slave = 1", "slave = 0\n  [[device.status]]\n  address = 9\n  type = \"f32\"\n  match = \"any\"\n  map = { 1 = \"T\", x = \"C\" }")))
            .replace("kind = \"tcp\"\naddress = \"127.0.0.1:502\"", "kind = \"rtu-over-tcp\"\naddress = \"10.0.0.1:4001\""), vec![
            "line 6: outlet[0].profile: must be one of power-coal, steel-sinter-head, cement-kiln, coke-oven-chimney, custom, got \"glass\"",
            "line 6: outlet[0].o2_ref: must be at least 0 and below 21 (%), got 21",
            "line 15: device[0].slave: must be between 1 and 247, got 0",
            "line 15: device[0].status[0].type: a status register must be an integer type",
            "line 15: device[0].status[0].map.1: must be one of N, F, M, D, C, got \"T\" (T and B are set by the gateway)",
            "line 15: device[0].status[0].map.x: key must be an integer",
            "line 15: device[0].status[0].match: must be one of value, bits, got \"any\"",
        ]),
        ("ascii problems", with_site("[[bus]]\nname = \"a\"\nkind = \"ascii\"\npath = \"/dev/ttyS1\"\n[[device]]\nname = \"d\"\nbus = \"a\"\n  [device.ascii]\n  request = \"RD\"\n  pattern = 'DUST=(?P<dust>[0-9.]+'\n  [[device.point]]\n  factor = \"a34013\"\n  capture = \"dust\"\n  address = 3\n"), vec![
            "line 10: device[0].ascii.pattern: is not a valid regular expression: regex parse error:\n    DUST=(?P<dust>[0-9.]+\n         ^\nerror: unclosed group",
            "line 10: device[0].point[0].address: is not allowed on an ascii device (use capture)",
        ]),
        ("statistics and outlet figures", with_site(&format!("[statistics]\nminutes_per_hour = 61\nnormal_share = 1.5\n[[outlet]]\nname = \"s\"\nprofile = \"custom\"\nvelocity_coefficient = 0.0\nrun_status = \"run status\"\n{BUS_AND_DEVICE}")).replace("mn = \"TEST0001\"", "mn = \"TEST0001\"\nutc_offset_hours = 8.3"), vec![
            "line 1: site.utc_offset_hours: must be between -12 and 14 in quarter hours, got 8.3",
            "line 7: statistics.minutes_per_hour: must be between 1 and 60, got 61",
            "line 7: statistics.normal_share: must be above 0 and at most 1, got 1.5",
            "line 10: outlet[0].limits: a custom profile needs its limits, e.g. limits = { a21026 = 35.0 }",
            "line 10: outlet[0].run_status: must be a factor code such as SB1-RS, got \"run status\"",
            "line 10: outlet[0].velocity_coefficient: must be above 0 and at most 5, got 0",
        ]),
        ("outlet cross-checks", with_site(&format!("[[outlet]]\nname = \"s\"\nprofile = \"cement-kiln\"\nrun_status = \"SB1-RS\"\n{BUS_AND_DEVICE}\n[[device]]\nname = \"e\"\nbus = \"b\"\nslave = 2\noutlet = \"s\"\n  [[device.point]]\n  factor = \"a21026\"\n  address = 0\n  type = \"f32\"\n").replace("slave = 1", "slave = 1\noutlet = \"s\"")), vec![
            "outlet[0].name: factor a21026 comes from two devices of this outlet (d and e): samples would mix",
            "outlet[0].run_status: no device of this outlet has a point with factor SB1-RS",
            "outlet[0].o2_ref: values are converted to a reference O2 but no device of this outlet measures O2 (a19001)",
        ]),
        ("uplink problems", with_site(&format!("{BUS_AND_DEVICE}[[uplink]]\nname = \"p\"\nkind = \"mqtt\"\naddress = \"nohost\"\nprotocol = \"2005\"\nrtd_interval_s = 10\nmin_interval = 7\npw = \"12\"\n")), vec![
            "line 19: uplink[0].kind: must be one of hj212, http, got \"mqtt\"",
            "line 19: uplink[0].outlet: is required when there is not exactly one [[outlet]]",
            "line 19: uplink[0].address: must be host:port, got \"nohost\"",
            "line 19: uplink[0].protocol: must be one of 2017, 2025, got \"2005\"",
            "line 19: uplink[0].pw: must be exactly 6 ASCII characters",
            "line 19: uplink[0].rtd_interval_s: must be between 30 and 3600, got 10",
            "line 19: uplink[0].min_interval: must be one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, got 7",
        ]),
        ("http uplink problems", with_site(&format!("{BUS_AND_DEVICE}[[uplink]]\nname = \"j\"\nkind = \"http\"\nurl = \"ftp://example.org/x\"\ntoken = \"has space\"\nbatch = 0\nrealtime = true\n[[uplink]]\nname = \"h\"\naddress = \"127.0.0.1:9\"\nurl = \"http://x\"\n[[uplink]]\nname = \"k\"\nkind = \"http\"\n")).replace("[[bus]]", "[[outlet]]\nname = \"o\"\n[[bus]]"), vec![
            "line 21: uplink[0].url: must be an http:// or https:// URL, got \"ftp://example.org/x\"",
            "line 21: uplink[0].token: must be non-empty printable ASCII without spaces",
            "line 21: uplink[0].batch: must be between 1 and 1000, got 0",
            "line 21: uplink[0].realtime: real-time (2011) data is sent over HJ 212 only",
            "line 28: uplink[1].url: applies only to kind = \"http\"",
            "line 32: uplink[2].url: is required",
        ]),
        ("hj212 input problems", with_site(&format!("{}{HJ212_INPUT}", BUS_AND_DEVICE.replace("slave = 1", "slave = 1\nmn = \"X1\"").replace("address = \"127.0.0.1:502\"", "address = \"127.0.0.1:502\"\nlisten = \"0.0.0.0:1\""))), vec![
            "line 7: bus[0].listen: is not allowed for this kind (only kind = \"hj212\" listens)",
            "line 21: bus[1].address: is not allowed for kind = \"hj212\" (use listen or path)",
            "line 21: bus[1].listen: kind = \"hj212\" needs exactly one of listen or path",
            "line 12: device[0].mn: is not allowed on a polled device (only on a bus of kind = \"hj212\")",
            "line 29: device[1].mn: must be 1 to 24 letters or digits, got \"bad mn!\"",
            "line 29: device[1].point[0].address: is not allowed on an hj212 device (use code)",
            "line 36: device[2].point[0].code: must be letters, digits or '-', got \"x y\"",
            "line 42: device[3].point[0].code: is not allowed here (only on a bus of kind = \"hj212\")",
        ]),
        ("hj212 devices told apart by mn", with_site("[[bus]]\nname = \"h\"\nkind = \"hj212\"\npath = \"/dev/ttyS1\"\n[[device]]\nname = \"a\"\nbus = \"h\"\nmn = \"M1\"\n  [[device.point]]\n  factor = \"a21026\"\n[[device]]\nname = \"b\"\nbus = \"h\"\nmn = \"M1\"\n  [[device.point]]\n  factor = \"a21026\"\n[[device]]\nname = \"c\"\nbus = \"h\"\n  [[device.point]]\n  factor = \"a21026\"\n"), vec![
            "device[1].mn: \"M1\" is used by two devices of bus \"h\"",
            "device[2].mn: is required: several devices share the hj212 bus \"h\"",
        ]),
        ("hj212 listener caps", with_site("[[bus]]\nname = \"h\"\nkind = \"hj212\"\nlisten = \"0.0.0.0:9100\"\nmax_connections = 0\nidle_timeout_s = 0\n[[bus]]\nname = \"s\"\nkind = \"hj212\"\npath = \"/dev/ttyS1\"\nmax_connections = 2\n[[device]]\nname = \"a\"\nbus = \"s\"\n  [[device.point]]\n  factor = \"a21026\"\n"), vec![
            "line 6: bus[0].max_connections: must be between 1 and 64, got 0",
            "line 6: bus[0].idle_timeout_s: must be between 1 and 86400, got 0",
            "line 12: bus[1].max_connections: is not allowed without listen (only kind = \"hj212\" with listen accepts connections)",
        ]),
        ("wrong type", with_site(&BUS_AND_DEVICE.replace("slave = 1", "slave = \"one\"")), vec![
            "line 11: device[0]: invalid type: string \"one\", expected i64 in `slave`",
        ]),
        ("web problems", with_site(&format!("{BUS_AND_DEVICE}[web]\nlisten = \"localhost:80\"\ntoken = \"short\"\n")), vec![
            "line 19: web.listen: must be an IP address and port such as \"0.0.0.0:8080\", or \"off\"; got \"localhost:80\"",
            "line 19: web.token: must be 8 to 128 characters long",
        ]),
        ("web token and field", with_site(&format!("[web]\nlisten = \"0.0.0.0:99999\"\ntoken = \"has a space\"\n{BUS_AND_DEVICE}")), vec![
            "line 6: web.listen: must be an IP address and port such as \"0.0.0.0:8080\", or \"off\"; got \"0.0.0.0:99999\"",
            "line 6: web.token: must be visible ASCII characters without spaces",
        ]),
        ("web unknown field", with_site(&format!("{BUS_AND_DEVICE}[web]\nport = 8080\n")), vec![
            "line 19: web: unknown field `port`, expected one of `enabled`, `listen`, `token`",
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
    // The key files are read by `config::load`'s check, passed into the pure validator.
    let text = with_site(&format!("{BUS_AND_DEVICE}{uplinks}[[outlet]]\nname = \"o\"\n"));
    let got: Vec<String> =
        validate::parse_with(&text, Path::new("/etc/cems-gateway"), &cems_gateway::config::check_key_file)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
    let expected = vec![
        "line 19: uplink[0].encrypt: applies only to protocol = \"2025\"".to_string(),
        "line 23: uplink[1].key_file: is required with encrypt = true (the registered SM4 key)".into(),
        "line 23: uplink[1].length_field: must be one of plain, wire, got \"both\"".into(),
        "line 23: uplink[1].operating_parameters[0]: is not an HJ 212 factor code: \"kiln temp\"".into(),
        "line 23: uplink[1].network: must be one of gprs, cdma, 4g, adsl, ethernet, nb-iot, got \"lora\""
            .into(),
        format!(
            "line 31: uplink[2].key_file: {} must be readable by its owner only (chmod 600), its mode is 644",
            open_key.display()
        ),
        format!(
            "line 36: uplink[3].key_file: {} must hold exactly 16 characters (the SM4 key)",
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
