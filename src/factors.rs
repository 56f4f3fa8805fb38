//! Factor names for people: the one table of HJ 212 factor code → Chinese and English name
//! (the waste-gas codes of HJ 212-2017 table B.2, from HJ 524-2009, that a CEMS reports), used
//! wherever a factor is shown to a person: the status page, the `status` and `report`
//! commands, the demo's terminal. Codes stay codes in data (JSON keys, CSV, metrics labels).

/// A factor's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factor {
    pub code: &'static str,
    /// The Chinese name of table B.2.
    pub zh: &'static str,
    /// A short English name: the formula where there is one.
    pub en: &'static str,
}

const fn f(code: &'static str, zh: &'static str, en: &'static str) -> Factor {
    Factor { code, zh, en }
}

/// Table B.2 (waste gas), the codes a CEMS reports.
pub const TABLE_B2: &[Factor] = &[
    f("a00000", "废气", "flue gas flow"),
    f("a01001", "温度", "temperature"),
    f("a01002", "湿度", "humidity"),
    f("a01006", "气压", "ambient pressure"),
    f("a01010", "林格曼黑度", "Ringelmann"),
    f("a01011", "烟气流速", "velocity"),
    f("a01012", "烟气温度", "flue temperature"),
    f("a01013", "烟气压力", "static pressure"),
    f("a01014", "烟气湿度", "humidity"),
    f("a01015", "制冷温度", "cooler temperature"),
    f("a01016", "烟道截面积", "duct area"),
    f("a01017", "烟气动压", "dynamic pressure"),
    f("a05001", "二氧化碳", "CO₂"),
    f("a19001", "氧气含量", "O₂"),
    f("a21001", "氨", "NH₃"),
    f("a21002", "氮氧化物", "NOx"),
    f("a21003", "一氧化氮", "NO"),
    f("a21004", "二氧化氮", "NO₂"),
    f("a21005", "一氧化碳", "CO"),
    f("a21018", "氟化物", "fluoride"),
    f("a21022", "氯气", "Cl₂"),
    f("a21024", "氯化氢", "HCl"),
    f("a21026", "二氧化硫", "SO₂"),
    f("a21028", "硫化氢", "H₂S"),
    f("a24087", "碳氢化合物", "hydrocarbons"),
    f("a24088", "非甲烷总烃", "NMHC"),
    f("a25002", "苯", "benzene"),
    f("a25003", "甲苯", "toluene"),
    f("a25005", "二甲苯", "xylene"),
    f("a34013", "烟尘", "PM"),
];

/// Table B.10: the field-information codes (现场端信息编码) of the analyzers (i1xxxx), the data
/// logger (i2xxxx) and auxiliary equipment (i3xxxx) a CEMS gateway reads or reports, with their
/// Chinese names and a short English one. Logs are between `//`; states are codes (i12001: 0
/// run, 1 maintenance, 2 fault, 3 calibration, 5 blowback, 6 power fault, 7 measuring, 8
/// calibrating (标定), 9 standby, 10 O&M; 4 is not listed).
pub const TABLE_B10: &[Factor] = &[
    f("i11001", "运行日志", "analyzer log"),
    f("i12001", "工作状态", "working state"),
    f("i12002", "分析仪与数采仪通讯状态", "analyzer comm state"),
    f("i12003", "分析仪报警状态", "alarm state"),
    f("i13001", "测量量程", "range"),
    f("i13002", "测量精度", "precision"),
    f("i13003", "测量间隔", "measuring interval"),
    f("i13004", "消解温度", "digestion temperature"),
    f("i13005", "消解时长", "digestion time"),
    f("i13006", "校准时间", "calibration time"),
    f("i13007", "截距", "intercept"),
    f("i13008", "斜率", "slope"),
    f("i13009", "测量检出限", "detection limit"),
    f("i21001", "运行日志", "logger log"),
    f("i22001", "工作状态", "logger state"),
    f("i22002", "用户状态", "user state"),
    f("i22003", "数采仪与上位机通讯状态", "platform comm state"),
    f("i22101", "数采仪通道通讯状态", "channel comm state"),
    f("i23001", "本地大气压力", "local pressure"),
    f("i31001", "门禁日志", "door log"),
    f("i32001", "门禁状态", "door state"),
    f("i33001", "CEMS伴热管温度", "heated line temperature"),
    f("i33002", "CEMS冷凝温度", "cooler temperature"),
    f("i33101", "监测站房温度", "shelter temperature"),
    f("i33102", "监测站房湿度", "shelter humidity"),
    f("i33103", "监测站房电压", "shelter voltage"),
];

/// The names of a field-information code of table B.10, if it is a known one.
pub fn info(code: &str) -> Option<Factor> {
    TABLE_B10.iter().find(|f| f.code == code).copied()
}

/// A facility's run status, `SBn-RS` (HJ 212-2017 §6.6.5 table 7).
const RUN_STATUS: Factor = f("", "运行状态", "run status");

/// The names of `code`, if it is a known one.
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
}
