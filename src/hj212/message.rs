//! Typed HJ 212 messages of a field unit (HJ 212-2017 table 9, Annex C): what it uploads, what
//! it answers, and the platform requests it understands. Pure: packets in, typed values out.

use super::frame::{Cp, Packet, Version};
use crate::compute::Record;
use crate::compute::realtime::Value;
use crate::model::Flag;

/// System code of the interaction replies (9011–9014).
pub const ST_INTERACTION: &str = "91";

/// Who the field unit is towards one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub st: String,
    pub pw: String,
    pub mn: String,
    pub version: Version,
}

/// QnRtn of table 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QnRtn {
    Ready = 1,
    Rejected = 2,
    PasswordError = 3,
    MnError = 4,
    StError = 5,
    FlagError = 6,
    QnError = 7,
    CnError = 8,
    CrcError = 9,
    Unknown = 100,
}

/// ExeRtn of table 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExeRtn {
    Success = 1,
    Failed = 2,
    ConditionError = 3,
    Timeout = 4,
    Busy = 5,
    Fault = 6,
    NoData = 100,
}

/// The history commands: which records a request or an upload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// 2051.
    Minute,
    /// 2061.
    Hour,
    /// 2031.
    Day,
    /// 2041: facility run time per day.
    RunTime,
}

impl DataKind {
    pub fn cn(self) -> &'static str {
        match self {
            DataKind::Minute => "2051",
            DataKind::Hour => "2061",
            DataKind::Day => "2031",
            DataKind::RunTime => "2041",
        }
    }

    pub fn from_cn(cn: &str) -> Option<DataKind> {
        Some(match cn {
            "2051" => DataKind::Minute,
            "2061" => DataKind::Hour,
            "2031" => DataKind::Day,
            "2041" => DataKind::RunTime,
            _ => return None,
        })
    }
}

/// Request CNs of table 9 this field unit knows but does not carry out (analyzer control and
/// sampling, 3011–3019; setting field parameters, 3021): refused with `QnRtn=2`.
pub const NOT_CARRIED_OUT: [&str; 10] =
    ["3011", "3012", "3013", "3014", "3015", "3016", "3017", "3018", "3019", "3021"];

/// Whether a CN is one of the interaction answers (9011–9014): matched or ignored, never
/// answered.
pub fn is_response(cn: &str) -> bool {
    matches!(cn, "9011" | "9012" | "9013" | "9014")
}

/// A platform's answer to something the field unit sent, matched by QN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// 9011 with its QnRtn (`None`: missing or not a number).
    QnRtn(Option<u16>),
    /// 9012 with its ExeRtn.
    ExeRtn(Option<u16>),
    /// 9013: a notification answered.
    NotificationAck,
    /// 9014: an upload acknowledged.
    Ack,
}

/// The answer a packet carries, if it is one (9011–9014).
pub fn response(p: &Packet) -> Option<Response> {
    let code = |k: &str| p.cp.get(k).and_then(|v| v.trim().parse::<u16>().ok());
    Some(match p.cn.as_str() {
        "9011" => Response::QnRtn(code("QnRtn")),
        "9012" => Response::ExeRtn(code("ExeRtn")),
        "9013" => Response::NotificationAck,
        "9014" => Response::Ack,
        _ => return None,
    })
}

/// A platform request the field unit acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// 1000: set the answer timeout (s) and retry count.
    SetTimeout {
        overtime_s: u32,
        recount: u32,
    },
    /// 1011: get the field time.
    GetTime,
    /// 1012: set the field time (`YYYYMMDDhhmmss`).
    SetTime(String),
    /// 1061 / 1062: get / set the real-time interval (s, 30..3600).
    GetRtdInterval,
    SetRtdInterval(u32),
    /// 1063 / 1064: get / set the minute-data interval (min).
    GetMinInterval,
    SetMinInterval(u32),
    /// 1072: set the password.
    SetPassword(String),
    /// 2011 / 2012: start / stop real-time uploads.
    StartRealtime,
    StopRealtime,
    /// 2021 / 2022: start / stop facility run-status uploads.
    StartRunStatus,
    StopRunStatus,
    /// 2051 / 2061 / 2031 / 2041 with BeginTime and EndTime: history (backfill).
    History {
        kind: DataKind,
        begin: String,
        end: String,
    },
    /// 3020: field information (PolId and InfoId optional; BeginTime and EndTime, both or
    /// neither, for logs: C.41).
    Info {
        pol_id: Option<String>,
        info_id: Option<String>,
        window: Option<(String, String)>,
    },
    /// A known request this field unit does not carry out ([`NOT_CARRIED_OUT`]).
    NotCarriedOut(String),
    /// 1002 (HJ 212-2025): the platform assigns this MN to the logger with this ID (i23005).
    SetMn {
        mn: String,
        logger_id: String,
    },
    /// 1014 (HJ 212-2025): a new SM4 key (16 characters) and its creation time.
    NewKey {
        created: String,
        key: String,
    },
}

/// A received packet, checked against the identity and classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub qn: Option<String>,
    pub request: Result<Request, QnRtn>,
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// Classifies a packet from the platform. Password, MN and malformed fields give the QnRtn the
/// standard prescribes; nothing here can fail harder than that.
pub fn classify(p: &Packet, me: &Identity) -> Incoming {
    let qn = p.qn.clone();
    let request = (|| {
        if p.qn.as_deref().is_none_or(|q| !digits(q, 17)) {
            return Err(QnRtn::QnError);
        }
        // 1002 is addressed by the new MN; the logger recognises itself by its ID (i23005).
        if p.cn == "1002" && me.version == Version::V2025 {
            if p.pw != me.pw {
                return Err(QnRtn::PasswordError);
            }
            return match p.cp.get("i23005-Info") {
                Some(id) if !p.mn.is_empty() => {
                    Ok(Request::SetMn { mn: p.mn.clone(), logger_id: id.to_string() })
                }
                _ => Err(QnRtn::Rejected),
            };
        }
        if p.mn != me.mn {
            return Err(QnRtn::MnError);
        }
        if p.pw != me.pw {
            return Err(QnRtn::PasswordError);
        }
        if p.st != me.st && p.st != ST_INTERACTION {
            return Err(QnRtn::StError);
        }
        let get = |k: &str| p.cp.get(k);
        let number = |k: &str, lo: u32, hi: u32| {
            get(k)
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|v| (lo..=hi).contains(v))
                .ok_or(QnRtn::Rejected)
        };
        Ok(match p.cn.as_str() {
            "1000" => Request::SetTimeout {
                overtime_s: number("OverTime", 1, 99)?,
                recount: number("ReCount", 1, 99)?,
            },
            "1011" => Request::GetTime,
            "1012" => match get("SystemTime") {
                Some(t) if digits(t, 14) => Request::SetTime(t.to_string()),
                _ => return Err(QnRtn::Rejected),
            },
            "1061" => Request::GetRtdInterval,
            "1062" => Request::SetRtdInterval(number("RtdInterval", 30, 3600)?),
            "1063" => Request::GetMinInterval,
            "1064" => {
                let m = number("MinInterval", 1, 30)?;
                if ![1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30].contains(&m) {
                    return Err(QnRtn::Rejected);
                }
                Request::SetMinInterval(m)
            }
            "1072" => match get("NewPW") {
                Some(pw) if pw.chars().count() == 6 && pw.is_ascii() => Request::SetPassword(pw.to_string()),
                _ => return Err(QnRtn::Rejected),
            },
            "2011" => Request::StartRealtime,
            "2012" => Request::StopRealtime,
            "2021" => Request::StartRunStatus,
            "2022" => Request::StopRunStatus,
            cn @ ("2031" | "2041" | "2051" | "2061") => match (get("BeginTime"), get("EndTime")) {
                (Some(b), Some(e)) if digits(b, 14) && digits(e, 14) && b <= e => Request::History {
                    kind: DataKind::from_cn(cn).expect("matched above"),
                    begin: b.to_string(),
                    end: e.to_string(),
                },
                _ => return Err(QnRtn::Rejected),
            },
            "3020" => Request::Info {
                pol_id: get("PolId").map(str::to_string),
                info_id: get("InfoId").map(str::to_string),
                window: match (get("BeginTime"), get("EndTime")) {
                    (None, None) => None,
                    (Some(b), Some(e)) if digits(b, 14) && digits(e, 14) && b <= e => {
                        Some((b.to_string(), e.to_string()))
                    }
                    _ => return Err(QnRtn::Rejected),
                },
            },
            cn if NOT_CARRIED_OUT.contains(&cn) => Request::NotCarriedOut(cn.to_string()),
            "1014" if me.version == Version::V2025 => match (get("SKCreateTime"), get("NewSK")) {
                (Some(t), Some(k)) if (digits(t, 17) || digits(t, 14)) && k.len() == 16 && k.is_ascii() => {
                    Request::NewKey { created: t.to_string(), key: k.to_string() }
                }
                _ => return Err(QnRtn::Rejected),
            },
            _ => return Err(QnRtn::CnError),
        })
    })();
    Incoming { qn, request }
}

fn reply(me: &Identity, qn: &str, cn: &str, cp: Cp) -> Packet {
    Packet {
        qn: Some(qn.to_string()),
        st: ST_INTERACTION.into(),
        cn: cn.into(),
        pw: me.pw.clone(),
        mn: me.mn.clone(),
        flag: Some(me.version.flag(false, false)),
        packets: None,
        rf: false,
        cp,
    }
}

/// 9011: request answer, with the request's QN.
pub fn qn_rtn(me: &Identity, qn: &str, rtn: QnRtn) -> Packet {
    reply(me, qn, "9011", Cp::single(&[("QnRtn", &(rtn as u16).to_string())]))
}

/// 9012: execution result, with the request's QN.
pub fn exe_rtn(me: &Identity, qn: &str, rtn: ExeRtn) -> Packet {
    reply(me, qn, "9012", Cp::single(&[("ExeRtn", &(rtn as u16).to_string())]))
}

/// 9013: notification answer.
pub fn notification_ack(me: &Identity, qn: &str) -> Packet {
    reply(me, qn, "9013", Cp::default())
}

/// An upload (or a response to a request) with our system code.
pub fn upload(me: &Identity, qn: &str, cn: &str, ack: bool, cp: Cp) -> Packet {
    Packet {
        qn: Some(qn.to_string()),
        st: me.st.clone(),
        cn: cn.into(),
        pw: me.pw.clone(),
        mn: me.mn.clone(),
        flag: Some(me.version.flag(ack, false)),
        packets: None,
        rf: false,
        cp,
    }
}

/// `YYYYMMDDhhmmss` local time of Unix milliseconds (`offset_s`: local minus UTC).
pub fn format_time14(ms: i64, offset_s: i64) -> String {
    let t = local(ms, offset_s);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A QN (`YYYYMMDDhhmmsszzz`) for the local time of Unix milliseconds.
pub fn format_qn(ms: i64, offset_s: i64) -> String {
    format!("{}{:03}", format_time14(ms, offset_s), ms.rem_euclid(1000))
}

fn local(ms: i64, offset_s: i64) -> time::PrimitiveDateTime {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000) + offset_s)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    time::PrimitiveDateTime::new(t.date(), t.time())
}

/// Unix milliseconds of a `YYYYMMDDhhmmss` local time (`offset_s`: local minus UTC).
pub fn parse_time14(s: &str, offset_s: i64) -> Option<i64> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    crate::report::parse_local(&format!(
        "{}-{}-{} {}:{}:{}",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[8..10],
        &s[10..12],
        &s[12..14]
    ))
    .map(|t| (t - offset_s) * 1000)
}

/// A value as HJ 212 writes it: plain decimal, at most 6 decimals, no exponent.
pub fn number(v: f64) -> String {
    crate::factors::format(v, 6)
}

/// A value of `factor` with the decimals of its data type (table B.2; see [`crate::factors`]).
pub fn value_of(factor: &str, v: f64) -> String {
    crate::factors::format(v, crate::factors::decimals(factor))
}

/// A period amount (`-Cou`) of `factor`: m³ for the flow, kg for a pollutant.
pub fn amount_of(factor: &str, v: f64) -> String {
    crate::factors::format(v, crate::factors::cou_decimals(factor))
}

/// The CP of a 2051/2061/2031 upload: `DataTime` (period start) then, per factor,
/// `-Cou,-Min,-Avg,-Max,-ZsMin,-ZsAvg,-ZsMax,-Flag` as far as they exist, each value with its
/// factor's decimals. A factor without a valid average still reports its flag.
pub fn period_cp(data_time: &str, records: &[Record]) -> Cp {
    period_cp_with(data_time, records, None)
}

/// What the HJ 212-2025 profile changes in the content of uploads.
#[derive(Debug, Clone, Copy)]
pub struct Content2025<'a> {
    /// Key operating parameters: a fault (`D`) on them is sent as `Td`.
    pub operating_parameters: &'a [String],
    /// Sent for a converted value that cannot be computed (§8.1.1: the data type's maximum).
    pub unconvertible: f64,
}

impl Content2025<'_> {
    fn flag(&self, factor: &str, flag: Flag) -> String {
        if flag == Flag::D && self.operating_parameters.iter().any(|f| f == factor) {
            "Td".into()
        } else {
            flag.to_string()
        }
    }

    /// The configured maximum, as written in the configuration.
    fn unconvertible(&self) -> String {
        number(self.unconvertible)
    }
}

/// [`period_cp`] with the 2025 content rules when `v2025` is given: `Td` for a fault of a key
/// operating parameter, and the configured maximum for a converted value that could not be
/// computed.
pub fn period_cp_with(data_time: &str, records: &[Record], v2025: Option<Content2025<'_>>) -> Cp {
    let mut items = vec![vec![("DataTime".to_string(), data_time.to_string())]];
    for r in records {
        let mut item = Vec::new();
        let f = &r.factor;
        let st = &r.stat;
        if let Some(v) = st.cou.filter(|v| v.is_finite()) {
            item.push((format!("{f}-Cou"), amount_of(f, v)));
        }
        for (suffix, value) in [("Min", st.min), ("Avg", st.avg), ("Max", st.max)] {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                item.push((format!("{f}-{suffix}"), value_of(f, v)));
            }
        }
        // A converted value that could not be computed: a value exists, the converted one does
        // not, and the O2 guard flagged the period D.
        let unconvertible = v2025
            .filter(|_| st.zs_avg.is_none() && st.avg.is_some() && st.flag == Flag::D && r.limit.is_some());
        for (suffix, value) in [("ZsMin", st.zs_min), ("ZsAvg", st.zs_avg), ("ZsMax", st.zs_max)] {
            match (value.filter(|v| v.is_finite()), unconvertible) {
                (Some(v), _) => item.push((format!("{f}-{suffix}"), value_of(f, v))),
                (None, Some(c)) => item.push((format!("{f}-{suffix}"), c.unconvertible())),
                (None, None) => {}
            }
        }
        let flag = v2025.map_or_else(|| st.flag.to_string(), |c| c.flag(f, st.flag));
        item.push((format!("{f}-Flag"), flag));
        items.push(item);
    }
    Cp(items)
}

/// The run-time code of a run-status point: `SB1-RS` → `SB1-RT` (table 4).
pub fn run_time_code(run_status: &str) -> String {
    format!("{}-RT", run_status.strip_suffix("-RS").unwrap_or(run_status))
}

/// The CP of a 2041 upload (C.19): `DataTime` (the day's start) then `SBx-RT` (hours, N2.2) per
/// facility, one item each.
pub fn run_time_cp(data_time: &str, hours: &[(String, f64)]) -> Cp {
    let mut items = vec![vec![("DataTime".to_string(), data_time.to_string())]];
    for (point, h) in hours {
        items.push(vec![(run_time_code(point), crate::factors::format(*h, 2))]);
    }
    Cp(items)
}

/// The CP of a 2021 upload (C.15): `DataTime` then `SBx-RS` (the state, N1) per facility, one
/// item each; a point without a value is left out.
pub fn run_status_cp(data_time: &str, values: &[Value]) -> Cp {
    let mut items = vec![vec![("DataTime".to_string(), data_time.to_string())]];
    for v in values {
        if let Some(state) = v.value.filter(|v| v.is_finite()) {
            items.push(vec![(v.factor.clone(), crate::factors::format(state, 0))]);
        }
    }
    Cp(items)
}

/// The CP of a 2011 real-time upload: `DataTime` then `-Rtd,-ZsRtd,-Flag` per factor (no value
/// for `B`), each value with its factor's decimals.
pub fn realtime_cp(data_time: &str, values: &[Value]) -> Cp {
    realtime_cp_with(data_time, values, None)
}

/// [`realtime_cp`] with the 2025 content rules: `Td` for a fault of a key operating parameter,
/// the configured maximum for a converted value that could not be computed.
pub fn realtime_cp_with(data_time: &str, values: &[Value], v2025: Option<Content2025<'_>>) -> Cp {
    let mut items = vec![vec![("DataTime".to_string(), data_time.to_string())]];
    for v in values {
        let f = &v.factor;
        let mut item = Vec::new();
        if let Some(x) = v.value.filter(|x| x.is_finite()) {
            item.push((format!("{f}-Rtd"), value_of(f, x)));
        }
        match (v.zs.filter(|x| x.is_finite()), v2025) {
            (Some(x), _) => item.push((format!("{f}-ZsRtd"), value_of(f, x))),
            (None, Some(c)) if v.unconvertible => item.push((format!("{f}-ZsRtd"), c.unconvertible())),
            (None, _) => {}
        }
        let flag = v2025.map_or_else(|| v.flag.to_string(), |c| c.flag(f, v.flag));
        item.push((format!("{f}-Flag"), flag));
        items.push(item);
    }
    Cp(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::Level;
    use crate::compute::stats::Stat;
    use crate::hj212::decode;

    fn me() -> Identity {
        Identity {
            st: "31".into(),
            pw: "123456".into(),
            mn: "88888880000001".into(),
            version: Version::V2017,
        }
    }

    fn request(cn: &str, cp: &str) -> Packet {
        decode(&{
            let p = Packet {
                qn: Some("20261129080000123".into()),
                st: "31".into(),
                cn: cn.into(),
                pw: "123456".into(),
                mn: "88888880000001".into(),
                flag: Some(5),
                packets: None,
                rf: false,
                cp: Cp::default(),
            };
            let seg = p.segment().replace("CP=&&&&", &format!("CP=&&{cp}&&"));
            format!("##{:04}{seg}{:04X}", seg.len(), crate::hj212::crc::crc(seg.as_bytes()))
        })
        .unwrap()
    }

    #[test]
    fn requests_are_classified() {
        let c = |cn: &str, cp: &str| classify(&request(cn, cp), &me()).request;
        assert_eq!(c("1000", "OverTime=5;ReCount=3"), Ok(Request::SetTimeout { overtime_s: 5, recount: 3 }));
        assert_eq!(c("1011", ""), Ok(Request::GetTime));
        assert_eq!(c("1012", "SystemTime=20261129083000"), Ok(Request::SetTime("20261129083000".into())));
        assert_eq!(c("1062", "RtdInterval=30"), Ok(Request::SetRtdInterval(30)));
        assert_eq!(c("1062", "RtdInterval=10"), Err(QnRtn::Rejected), "30..3600 s");
        assert_eq!(c("1064", "MinInterval=10"), Ok(Request::SetMinInterval(10)));
        assert_eq!(c("1064", "MinInterval=7"), Err(QnRtn::Rejected), "7 is not an allowed interval");
        assert_eq!(c("1072", "NewPW=654321"), Ok(Request::SetPassword("654321".into())));
        assert_eq!(
            c("2061", "BeginTime=20261128000000;EndTime=20261128235959"),
            Ok(Request::History {
                kind: DataKind::Hour,
                begin: "20261128000000".into(),
                end: "20261128235959".into()
            })
        );
        assert_eq!(c("2051", "BeginTime=20261129000000"), Err(QnRtn::Rejected));
        assert_eq!(
            c("3020", "PolId=a21026;InfoId=i12001"),
            Ok(Request::Info { pol_id: Some("a21026".into()), info_id: Some("i12001".into()), window: None })
        );
        // C.41 writes a comma between BeginTime and EndTime.
        assert_eq!(
            c("3020", "PolId=w01018;InfoId=i11001;BeginTime=20160801010522,EndTime=20160801085857"),
            Ok(Request::Info {
                pol_id: Some("w01018".into()),
                info_id: Some("i11001".into()),
                window: Some(("20160801010522".into(), "20160801085857".into()))
            })
        );
        assert_eq!(c("3020", "InfoId=i21001;BeginTime=20160801010522"), Err(QnRtn::Rejected));
        assert_eq!(
            c("3020", "InfoId=i21001;BeginTime=20160802000000;EndTime=20160801000000"),
            Err(QnRtn::Rejected)
        );
        assert_eq!(c("2021", ""), Ok(Request::StartRunStatus));
        assert_eq!(c("2022", ""), Ok(Request::StopRunStatus));
        assert_eq!(
            c("2041", "BeginTime=20160801000000;EndTime=20160801000000"),
            Ok(Request::History {
                kind: DataKind::RunTime,
                begin: "20160801000000".into(),
                end: "20160801000000".into()
            })
        );
        assert_eq!(c("3011", "PolId=a21026"), Ok(Request::NotCarriedOut("3011".into())));
        assert_eq!(c("3021", ""), Ok(Request::NotCarriedOut("3021".into())));
        assert_eq!(c("4242", ""), Err(QnRtn::CnError));
        let mut bad_pw = request("1011", "");
        bad_pw.pw = "000000".into();
        assert_eq!(classify(&bad_pw, &me()).request, Err(QnRtn::PasswordError));
        let mut bad_mn = request("1011", "");
        bad_mn.mn = "X".into();
        assert_eq!(classify(&bad_mn, &me()).request, Err(QnRtn::MnError));
        let mut no_qn = request("1011", "");
        no_qn.qn = None;
        assert_eq!(classify(&no_qn, &me()).request, Err(QnRtn::QnError));
    }

    #[test]
    fn answers_are_recognised_as_answers_never_as_requests() {
        let answer = |cn: &str, cp: &str| response(&request(cn, cp));
        assert_eq!(answer("9011", "QnRtn=2"), Some(Response::QnRtn(Some(2))));
        assert_eq!(answer("9011", ""), Some(Response::QnRtn(None)));
        assert_eq!(answer("9012", "ExeRtn=1"), Some(Response::ExeRtn(Some(1))));
        assert_eq!(answer("9013", ""), Some(Response::NotificationAck));
        assert_eq!(answer("9014", ""), Some(Response::Ack));
        assert_eq!(answer("1011", ""), None);
        assert!(["9011", "9012", "9013", "9014"].iter().all(|cn| is_response(cn)));
        assert!(!is_response("9015") && !is_response("2011"));
    }

    fn value(factor: &str, value: Option<f64>, zs: Option<f64>, flag: Flag) -> Value {
        Value { factor: factor.into(), value, zs, flag, unconvertible: false }
    }

    #[test]
    fn run_status_and_run_time_follow_c15_and_c19() {
        let cp = run_time_cp("20160801000000", &[("SB1-RS".into(), 1.1), ("SB2-RS".into(), 2.104)]);
        assert_eq!(cp.to_string(), "DataTime=20160801000000;SB1-RT=1.1;SB2-RT=2.1");
        let rs = run_status_cp(
            "20160801085857",
            &[
                value("SB1-RS", Some(1.0), None, Flag::N),
                value("SB2-RS", Some(0.0), None, Flag::N),
                value("SB3-RS", None, None, Flag::B),
            ],
        );
        assert_eq!(rs.to_string(), "DataTime=20160801085857;SB1-RS=1;SB2-RS=0");
        assert_eq!(format_time14(1_470_041_937_223 - 8 * 3600 * 1000, 8 * 3600), "20160801085857");
        assert_eq!(format_qn(1_470_041_937_223 - 8 * 3600 * 1000, 8 * 3600), "20160801085857223");
    }

    #[test]
    fn replies_follow_annex_c() {
        // As in Annex C (and liruoyu2008's published 9011, CRC verified there): ST=91, Flag=4,
        // the request's QN, 84 characters with a 14-character MN.
        let p = qn_rtn(&me(), "20261129080000123", QnRtn::Ready);
        let frame = p.encode().unwrap();
        assert!(
            frame.starts_with(
                "##0084QN=20261129080000123;ST=91;CN=9011;PW=123456;MN=88888880000001;Flag=4;CP=&&QnRtn=1&&"
            ),
            "{frame}"
        );
        assert_eq!(decode(&frame).unwrap(), p);
        let e = exe_rtn(&me(), "20261129080000123", ExeRtn::NoData);
        assert_eq!(e.cp.get("ExeRtn"), Some("100"));
        assert_eq!(notification_ack(&me(), "20261129080000123").cn, "9013");
    }

    fn stat(min: f64, avg: f64, max: f64, zs: Option<(f64, f64, f64)>, cou: Option<f64>, flag: Flag) -> Stat {
        Stat {
            n_total: 60,
            n_valid: 60,
            min: Some(min),
            avg: Some(avg),
            max: Some(max),
            zs_min: zs.map(|z| z.0),
            zs_avg: zs.map(|z| z.1),
            zs_max: zs.map(|z| z.2),
            cou,
            flag,
            valid: flag == Flag::N,
        }
    }

    fn record(factor: &str, stat: Stat, limit: Option<f64>) -> Record {
        Record { level: Level::Hour, start: 0, factor: factor.into(), stat, limit, exceeded: false }
    }

    #[test]
    fn period_and_realtime_cp_carry_each_value_with_its_data_type() {
        // SO2 N5.2: 12.254 → 12.25, ZsAvg 16.84375 → 16.84; its amount in kg to 4 decimals:
        // 0.123456789 → 0.1235.
        let so2 = stat(10.0, 12.254, 15.5, Some((13.75, 16.84375, 21.3125)), Some(0.123456789), Flag::N);
        // Flow N6.1, m³/s: 116.93497 → 116.9; an hour of it in m³, 116.93497 × 3600 =
        // 420,965.892 → 420965.9.
        let flow = stat(110.0, 116.93497, 120.04, None, Some(116.93497 * 3600.0), Flag::N);
        // PM N4: whole mg/m³ (6.5 → 6, a tie to the even; 8.9375 → 9).
        let pm = stat(5.2, 6.5, 7.9, Some((7.15, 8.9375, 10.8625)), None, Flag::N);
        let mut invalid = record("a21002", stat(0.0, 0.0, 0.0, None, None, Flag::B), Some(50.0));
        invalid.stat = Stat::empty();
        let cp = period_cp(
            "20261129070000",
            &[
                record("a21026", so2, Some(35.0)),
                record("a00000", flow, None),
                record("a34013", pm, Some(10.0)),
                invalid,
            ],
        );
        assert_eq!(
            cp.to_string(),
            "DataTime=20261129070000;\
             a21026-Cou=0.1235,a21026-Min=10,a21026-Avg=12.25,a21026-Max=15.5,a21026-ZsMin=13.75,a21026-ZsAvg=16.84,a21026-ZsMax=21.31,a21026-Flag=N;\
             a00000-Cou=420965.9,a00000-Min=110,a00000-Avg=116.9,a00000-Max=120,a00000-Flag=N;\
             a34013-Min=5,a34013-Avg=6,a34013-Max=8,a34013-ZsMin=7,a34013-ZsAvg=9,a34013-ZsMax=11,a34013-Flag=N;\
             a21002-Flag=B"
        );
        let rt = realtime_cp(
            "20261129080005",
            &[
                value("a21026", Some(18.456), Some(25.377), Flag::N),
                value("a19001", Some(13.04), None, Flag::N),
                value("a34013", None, None, Flag::B),
            ],
        );
        assert_eq!(
            rt.to_string(),
            "DataTime=20261129080005;a21026-Rtd=18.46,a21026-ZsRtd=25.38,a21026-Flag=N;a19001-Rtd=13,a19001-Flag=N;a34013-Flag=B"
        );
        assert_eq!(number(-0.0000001), "0");
        assert_eq!(number(1e20), "100000000000000000000");
    }

    #[test]
    fn the_2025_content_rules_send_td_and_the_data_type_maximum() {
        let guarded =
            Stat { zs_min: None, zs_avg: None, zs_max: None, ..stat(12.0, 12.0, 12.0, None, None, Flag::D) };
        let records = [
            record("a21026", guarded, Some(35.0)),
            record("a21002", stat(40.0, 40.0, 40.0, Some((48.0, 48.0, 48.0)), None, Flag::N), Some(50.0)),
            record("a01012", stat(150.0, 150.0, 150.0, None, None, Flag::D), None),
        ];
        let ops = ["a01012".to_string()];
        let rules = Content2025 { operating_parameters: &ops, unconvertible: 9999.99 };
        let cp = period_cp_with("20261129100000", &records, Some(rules)).to_string();
        assert!(
            cp.contains("a21026-ZsMin=9999.99,a21026-ZsAvg=9999.99,a21026-ZsMax=9999.99,a21026-Flag=D"),
            "{cp}"
        );
        assert!(cp.contains("a21002-ZsAvg=48,a21002-ZsMax=48,a21002-Flag=N"), "{cp}");
        assert!(cp.contains("a01012-Flag=Td"), "{cp}");
        assert!(!cp.contains("a01012-ZsAvg"), "no converted value for an unlimited factor: {cp}");
        // The 2017 form is untouched.
        let plain = period_cp("20261129100000", &records).to_string();
        assert!(!plain.contains("9999.99") && !plain.contains("Td"), "{plain}");
        // Real-time: the maximum where the guard stopped a limited factor's conversion, written
        // as configured (not rounded to NOx's one decimal).
        let rules = Content2025 { operating_parameters: &ops, unconvertible: 99999.99 };
        let stopped = Value { unconvertible: true, ..value("a21002", Some(40.0), None, Flag::D) };
        let rt = realtime_cp_with("20261129100005", &[stopped], Some(rules)).to_string();
        assert!(rt.ends_with("a21002-Rtd=40,a21002-ZsRtd=99999.99,a21002-Flag=D"), "{rt}");
    }
}
