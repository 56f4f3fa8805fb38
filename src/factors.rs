//! The one table of HJ 212 factors (the waste-gas codes of HJ 212-2017 table B.2, from
//! HJ 524-2009, that a CEMS reports): code → Chinese and English name, unit, unit of the
//! amount (`-Cou`) and default data type. Names are used wherever a factor is shown to a person
//! (the status page, the `status` and `report` commands, the demo's terminal); units and data
//! types wherever a value leaves the gateway (every HJ 212 frame, the HTTP JSON, the status
//! API). Codes stay codes in data (JSON keys, CSV, metrics labels). Table B.10's
//! field-information codes (`i12001`, `i13001`…) are named here too.

/// A factor of table B.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factor {
    pub code: &'static str,
    /// The Chinese name of table B.2.
    pub zh: &'static str,
    /// A short English name: the formula where there is one.
    pub en: &'static str,
    /// Unit of a value (table B.2 "缺省计量单位（浓度）"), ASCII: `mg/m3`, `m3/s`, `%`.
    pub unit: &'static str,
    /// Unit of the period amount `-Cou` (table B.2 "缺省计量单位（排放量）"), where it has one.
    pub cou_unit: Option<&'static str>,
    /// Decimals of the default data type (table B.2 "缺省数据类型": N5.2 → 2, N4 → 0).
    pub decimals: u8,
}

const fn f(
    code: &'static str,
    zh: &'static str,
    en: &'static str,
    unit: &'static str,
    decimals: u8,
) -> Factor {
    Factor { code, zh, en, unit, cou_unit: None, decimals }
}

/// A pollutant: mg/m³, its amount in kg.
const fn p(code: &'static str, zh: &'static str, en: &'static str, decimals: u8) -> Factor {
    Factor { code, zh, en, unit: "mg/m3", cou_unit: Some("kg"), decimals }
}

/// Table B.2 (waste gas), the codes a CEMS reports, with their default data types.
pub const TABLE_B2: &[Factor] = &[
    // N6.1, m³/s; the amount in m³.
    Factor { cou_unit: Some("m3"), ..f("a00000", "废气", "flue gas flow", "m3/s", 1) },
    f("a01001", "温度", "temperature", "°C", 1),
    f("a01002", "湿度", "humidity", "%", 1),
    f("a01006", "气压", "ambient pressure", "kPa", 3),
    f("a01010", "林格曼黑度", "Ringelmann", "", 0),
    f("a01011", "烟气流速", "velocity", "m/s", 2),
    f("a01012", "烟气温度", "flue temperature", "°C", 1),
    f("a01013", "烟气压力", "static pressure", "kPa", 3),
    f("a01014", "烟气湿度", "humidity", "%", 1),
    f("a01015", "制冷温度", "cooler temperature", "°C", 1),
    f("a01016", "烟道截面积", "duct area", "m2", 2),
    f("a01017", "烟气动压", "dynamic pressure", "kPa", 3),
    p("a05001", "二氧化碳", "CO₂", 3),
    f("a19001", "氧气含量", "O₂", "%", 1),
    // Printed as ng/m³ (amount g) in table B.2, N4.3; ammonia slip is reported and limited in
    // mg/m³ (GB 4915-2013, the ultra-low opinions), the unit kept here.
    p("a21001", "氨", "NH₃", 3),
    p("a21002", "氮氧化物", "NOx", 1),
    p("a21003", "一氧化氮", "NO", 1),
    p("a21004", "二氧化氮", "NO₂", 1),
    p("a21005", "一氧化碳", "CO", 3),
    p("a21018", "氟化物", "fluoride", 3),
    p("a21022", "氯气", "Cl₂", 3),
    p("a21024", "氯化氢", "HCl", 3),
    p("a21026", "二氧化硫", "SO₂", 2),
    p("a21028", "硫化氢", "H₂S", 2),
    p("a24087", "碳氢化合物", "hydrocarbons", 2),
    p("a24088", "非甲烷总烃", "NMHC", 3),
    p("a25002", "苯", "benzene", 3),
    p("a25003", "甲苯", "toluene", 2),
    p("a25005", "二甲苯", "xylene", 2),
    // N4: whole mg/m³.
    p("a34013", "烟尘", "PM", 0),
];

/// Decimals of a value of a factor table B.2 does not list (a gateway choice).
pub const DEFAULT_DECIMALS: u8 = 3;

/// Decimals of a pollutant amount in kg (`-Cou`): table B.2 gives data types for values only;
/// a tenth of a gram keeps a minute's amount of a low concentration (a gateway choice).
pub const KG_DECIMALS: u8 = 4;

/// A field-information code of table B.10 (现场端信息编码) and its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    pub code: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
}

const fn i(code: &'static str, zh: &'static str, en: &'static str) -> Info {
    Info { code, zh, en }
}

/// Table B.10: the field-information codes of the analyzers (i1xxxx), the data logger (i2xxxx)
/// and auxiliary equipment (i3xxxx) a CEMS gateway reads or reports. Logs are between `//`;
/// states are codes (i12001: 0 run, 1 maintenance, 2 fault, 3 calibration, 5 blowback, 6 power
/// fault, 7 measuring, 8 calibrating (标定), 9 standby, 10 O&M; 4 is not listed).
pub const TABLE_B10: &[Info] = &[
    i("i11001", "运行日志", "analyzer log"),
    i("i12001", "工作状态", "working state"),
    i("i12002", "分析仪与数采仪通讯状态", "analyzer comm state"),
    i("i12003", "分析仪报警状态", "alarm state"),
    i("i13001", "测量量程", "range"),
    i("i13002", "测量精度", "precision"),
    i("i13003", "测量间隔", "measuring interval"),
    i("i13004", "消解温度", "digestion temperature"),
    i("i13005", "消解时长", "digestion time"),
    i("i13006", "校准时间", "calibration time"),
    i("i13007", "截距", "intercept"),
    i("i13008", "斜率", "slope"),
    i("i13009", "测量检出限", "detection limit"),
    i("i21001", "运行日志", "logger log"),
    i("i22001", "工作状态", "logger state"),
    i("i22002", "用户状态", "user state"),
    i("i22003", "数采仪与上位机通讯状态", "platform comm state"),
    i("i22101", "数采仪通道通讯状态", "channel comm state"),
    i("i23001", "本地大气压力", "local pressure"),
    i("i31001", "门禁日志", "door log"),
    i("i32001", "门禁状态", "door state"),
    i("i33001", "CEMS伴热管温度", "heated line temperature"),
    i("i33002", "CEMS冷凝温度", "cooler temperature"),
    i("i33101", "监测站房温度", "shelter temperature"),
    i("i33102", "监测站房湿度", "shelter humidity"),
    i("i33103", "监测站房电压", "shelter voltage"),
];

/// The names of a field-information code of table B.10, if it is a known one.
pub fn info(code: &str) -> Option<Info> {
    TABLE_B10.iter().find(|f| f.code == code).copied()
}

/// A facility's run status, `SBn-RS` (HJ 212-2017 §6.6.5 table 7).
const RUN_STATUS: Factor = f("", "运行状态", "run status", "", 0);

/// The table's entry for `code`, if it is a known one.
pub fn lookup(code: &str) -> Option<Factor> {
    if code.starts_with("SB") && code.ends_with("-RS") {
        return Some(Factor { code: "", ..RUN_STATUS });
    }
    TABLE_B2.iter().find(|f| f.code == code).copied()
}

/// `二氧化硫 SO₂`; the code itself when unknown.
pub fn label(code: &str) -> String {
    lookup(code).map_or_else(|| code.to_string(), |f| format!("{} {}", f.zh, f.en))
}

/// `SO₂`, for narrow places (a table header, a limit); the code itself when unknown.
pub fn short(code: &str) -> String {
    lookup(code).map_or_else(|| code.to_string(), |f| f.en.to_string())
}

/// The unit of a factor's values (table B.2); empty when unknown or dimensionless.
pub fn unit(code: &str) -> &'static str {
    lookup(code).map_or("", |f| f.unit)
}

/// The unit of a factor's period amount (`-Cou`): m³ for the flow, kg for a pollutant.
pub fn cou_unit(code: &str) -> Option<&'static str> {
    lookup(code).and_then(|f| f.cou_unit)
}

/// Decimals of a factor's values: its default data type's, [`DEFAULT_DECIMALS`] when unknown.
pub fn decimals(code: &str) -> u8 {
    lookup(code).map_or(DEFAULT_DECIMALS, |f| f.decimals)
}

/// Decimals of a factor's amount (`-Cou`).
pub fn cou_decimals(code: &str) -> u8 {
    match cou_unit(code) {
        Some("kg") | None => KG_DECIMALS,
        Some(_) => decimals(code),
    }
}

/// A value written with `decimals` decimals at most: plain decimal, no exponent, trailing
/// zeros dropped (`12.30` → `12.3`), `-0` as `0`. The rounding is that of the decimal
/// expansion of the binary value (`2.675` is 2.67499…: `2.67`).
pub fn format(v: f64, decimals: u8) -> String {
    let s = format!("{v:.*}", usize::from(decimals));
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    if s == "-0" { "0".to_string() } else { s.to_string() }
}

/// A value rounded as [`format`] writes it (for JSON numbers).
pub fn round(v: f64, decimals: u8) -> f64 {
    format(v, decimals).parse().unwrap_or(v)
}

/// Unit for people: `mg/m³`.
pub fn pretty_unit(unit: &str) -> String {
    unit.replace("m3", "m³").replace("m2", "m²")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_one_table() {
        assert_eq!(label("a21026"), "二氧化硫 SO₂");
        assert_eq!(short("a21002"), "NOx");
        assert_eq!(label("SB1-RS"), "运行状态 run status");
        assert_eq!(label("x99"), "x99");
        let mut codes: Vec<&str> = TABLE_B2.iter().map(|f| f.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TABLE_B2.len(), "each code once");
        assert_eq!(info("i13001").map(|f| f.zh), Some("测量量程"));
        assert!(info("i13010").is_none());
    }

    #[test]
    fn units_and_data_types_are_those_of_table_b2() {
        // a00000 m³/s, amount m³, N6.1; a21026 N5.2; a21002 N5.1; a34013 N4; a19001 N3.1.
        assert_eq!((unit("a00000"), cou_unit("a00000"), decimals("a00000")), ("m3/s", Some("m3"), 1));
        assert_eq!((unit("a21026"), cou_unit("a21026"), decimals("a21026")), ("mg/m3", Some("kg"), 2));
        assert_eq!((decimals("a21002"), decimals("a34013"), decimals("a19001")), (1, 0, 1));
        assert_eq!((unit("a19001"), cou_unit("a19001")), ("%", None));
        assert_eq!((decimals("x99"), unit("x99")), (DEFAULT_DECIMALS, ""));
        assert_eq!((cou_decimals("a21026"), cou_decimals("a00000")), (KG_DECIMALS, 1));
    }

    #[test]
    fn values_are_written_with_their_decimals() {
        // SO2 12.345 as N5.2: 12.35 (12.345 is 12.3450000000000006… in binary); 12.3 stays 12.3.
        assert_eq!(format(12.345, decimals("a21026")), "12.35");
        assert_eq!(format(12.3, decimals("a21026")), "12.3");
        // PM 6.5 as N4: 6.5 is exact in binary, a tie: to the even 6; 6.51 → 7.
        assert_eq!(format(6.5, decimals("a34013")), "6");
        assert_eq!(format(6.51, decimals("a34013")), "7");
        assert_eq!(format(120.0, 0), "120", "no decimals: zeros of the integer part stay");
        assert_eq!(format(-0.0001, 2), "0");
        assert_eq!(format(1e20, 1), "100000000000000000000");
        assert_eq!(round(41.666_666, 1), 41.7);
        assert_eq!(pretty_unit("mg/m3"), "mg/m³");
    }
}
