//! Time in one place: a UTC instant, plant-local time, the offset between them, and the one
//! parser and formatter of each wire format (HJ 212's 14- and 17-digit stamps, RFC 3339, the
//! page's and the CLI's `YYYY-MM-DD HH:MM:SS`). Pure: nothing here reads a clock.
//!
//! Three conventions meet in the gateway, and each has a type:
//! - [`Utc`]: an instant, Unix milliseconds. The store keeps it, the wall clock gives it.
//! - [`Local`]: plant-local wall time in milliseconds, counted like Unix time on the plain
//!   calendar (no time zone rules: a plant's hours are its local hours). Periods (minute, hour,
//!   day, month), HJ 212 stamps and everything shown to people are local.
//! - [`Offset`]: local minus UTC (China: +8 h), the only way from one to the other.
//!
//! Every formatter is total (a value outside years 0000–9999 is clamped into them, never a
//! panic) and every parser returns `None` on anything it does not fully understand.

use std::fmt;

use ::time::{Date, Month, PrimitiveDateTime, Time};

/// An instant: Unix milliseconds, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utc(pub i64);

/// Plant-local wall time: milliseconds counted like Unix time on the plain calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Local(pub i64);

/// Plant-local time minus UTC, whole seconds, within ±18 h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(i32);

/// Largest offset accepted, as RFC 3339 and the `time` crate do.
const MAX_OFFSET_S: i64 = 18 * 3600;
/// The span every formatter stays within: 0000-01-01 to 9999-12-31 23:59:59.999, local.
const MIN_LOCAL_MS: i64 = -62_167_219_200_000;
const MAX_LOCAL_MS: i64 = 253_402_300_799_999;

impl Offset {
    /// China Standard Time, the default of `[site] utc_offset_hours`.
    pub const CHINA: Offset = Offset(8 * 3600);
    pub const ZERO: Offset = Offset(0);

    /// An offset of `seconds`, if within ±18 h.
    pub fn from_seconds(seconds: i64) -> Option<Offset> {
        (-MAX_OFFSET_S..=MAX_OFFSET_S).contains(&seconds).then_some(Offset(seconds as i32))
    }

    /// An offset of `hours` (fractions allowed: India is +5.5), if within ±18 h and a whole
    /// number of seconds.
    pub fn from_hours(hours: f64) -> Option<Offset> {
        let seconds = hours * 3600.0;
        if !seconds.is_finite() || seconds.fract() != 0.0 {
            return None;
        }
        Offset::from_seconds(seconds as i64)
    }

    pub fn seconds(self) -> i64 {
        i64::from(self.0)
    }

    /// Hours, as the status JSON carries them (`8.0`, `5.5`).
    pub fn hours(self) -> f64 {
        f64::from(self.0) / 3600.0
    }

    /// `UTC+8`, `UTC+5:30`, `UTC-3`: the page's and the CLI's name of the zone.
    pub fn utc_label(self) -> String {
        let (sign, h, m) = self.sign_hours_minutes();
        if m == 0 { format!("UTC{sign}{h}") } else { format!("UTC{sign}{h}:{m:02}") }
    }

    /// `+08`, `+05:30`: the log line's short zone beside the plant's time of day.
    pub fn short_label(self) -> String {
        let (sign, h, m) = self.sign_hours_minutes();
        if m == 0 { format!("{sign}{h:02}") } else { format!("{sign}{h:02}:{m:02}") }
    }

    fn sign_hours_minutes(self) -> (char, u32, u32) {
        let abs = self.0.unsigned_abs();
        (if self.0 < 0 { '-' } else { '+' }, abs / 3600, abs % 3600 / 60)
    }

    /// The plant-local time of an instant.
    pub fn local(self, t: Utc) -> Local {
        Local(t.0.saturating_add(self.seconds() * 1000))
    }

    /// The instant of a plant-local time.
    pub fn utc(self, t: Local) -> Utc {
        Utc(t.0.saturating_sub(self.seconds() * 1000))
    }

    /// Plant-local seconds (how records count their period starts) of Unix milliseconds
    /// (how the store and the wall clock count).
    pub fn local_secs(self, utc_ms: i64) -> i64 {
        self.local(Utc(utc_ms)).secs()
    }

    /// Unix milliseconds of plant-local seconds: [`Offset::local_secs`] the other way.
    pub fn utc_ms(self, local_secs: i64) -> i64 {
        self.utc(Local::from_secs(local_secs)).0
    }
}

impl Utc {
    pub fn from_secs(s: i64) -> Utc {
        Utc(s.saturating_mul(1000))
    }

    /// Whole seconds, rounded down.
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// RFC 3339 with the plant's offset and milliseconds when there are any:
    /// `2026-11-29T08:00:00+08:00`, `2026-11-29T08:00:00.250+08:00`; a zero offset is `Z`.
    pub fn rfc3339(self, offset: Offset) -> String {
        let (dt, ms) = civil(offset.local(self));
        let frac = if ms == 0 { String::new() } else { format!(".{ms:03}") };
        if offset == Offset::ZERO {
            return format!("{}{frac}Z", ymd_t_hms(&dt));
        }
        let (sign, h, m) = offset.sign_hours_minutes();
        format!("{}{frac}{sign}{h:02}:{m:02}", ymd_t_hms(&dt))
    }

    /// `2026-11-29T00:00:00.250Z`: a log line's UTC time, always with milliseconds.
    pub fn log_stamp(self) -> String {
        let (dt, ms) = civil(Offset::ZERO.local(self));
        format!("{}.{ms:03}Z", ymd_t_hms(&dt))
    }

    /// `2026-01-01T00:03Z`: the UTC minute a seal of raw samples names (`store::seal`); it
    /// sorts as time does.
    pub fn minute_z(self) -> String {
        let (dt, _) = civil(Offset::ZERO.local(self));
        format!("{}T{:02}:{:02}Z", ymd(&dt), dt.hour(), dt.minute())
    }

    /// Parses [`Utc::minute_z`].
    pub fn parse_minute_z(s: &str) -> Option<Utc> {
        let (date, hm) = s.strip_suffix('Z')?.split_once('T')?;
        if hm.len() != 5 {
            return None;
        }
        Some(Offset::ZERO.utc(Local::parse_parts(date, &format!("{hm}:00"))?))
    }

    /// Parses RFC 3339 (`T` or a space between date and time, `Z` or `±hh:mm`, optional
    /// fraction of up to 9 digits, rounded down to milliseconds).
    pub fn parse_rfc3339(s: &str) -> Option<Utc> {
        let s = s.trim();
        let (date, rest) = (s.get(..10)?, s.get(10..)?);
        let rest = rest.strip_prefix(['T', 't', ' '])?;
        let (clock, zone) = match rest.find(['Z', 'z', '+', '-']) {
            Some(i) => (rest.get(..i)?, rest.get(i..)?),
            None => return None,
        };
        let (hms, frac) = match clock.split_once('.') {
            Some((hms, frac)) if (1..=9).contains(&frac.len()) && all_digits(frac) => (hms, frac),
            Some(_) => return None,
            None => (clock, ""),
        };
        let local = Local::parse_parts(date, hms)?;
        let ms = frac.get(..3.min(frac.len())).map_or(0, |f| {
            let n: i64 = f.parse().unwrap_or(0);
            n * 10_i64.pow(3 - f.len() as u32)
        });
        let offset = match zone {
            "Z" | "z" => Offset::ZERO,
            z => {
                let sign = if z.starts_with('-') { -1 } else { 1 };
                let (h, m) = z.get(1..)?.split_once(':')?;
                if h.len() != 2 || m.len() != 2 || !all_digits(h) || !all_digits(m) {
                    return None;
                }
                let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
                if m >= 60 {
                    return None;
                }
                Offset::from_seconds(sign * (h * 3600 + m * 60))?
            }
        };
        Some(offset.utc(Local(local.0 + ms)))
    }
}

impl Local {
    pub fn from_secs(s: i64) -> Local {
        Local(s.saturating_mul(1000))
    }

    /// Whole seconds, rounded down (what periods and the evaluator count in).
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// HJ 212 `YYYYMMDDhhmmss` (DataTime, BeginTime, SystemTime, RestartTime…).
    pub fn hj14(self) -> String {
        let (dt, _) = civil(self);
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )
    }

    /// HJ 212 `YYYYMMDDhhmmsszzz` (QN, SKCreateTime).
    pub fn hj17(self) -> String {
        let (_, ms) = civil(self);
        format!("{}{ms:03}", self.hj14())
    }

    /// Parses exactly 14 digits `YYYYMMDDhhmmss` of a real calendar time.
    pub fn parse_hj14(s: &str) -> Option<Local> {
        if s.len() != 14 || !all_digits(s) {
            return None;
        }
        let n = |a: usize, b: usize| s.get(a..b).and_then(|d| d.parse::<u32>().ok());
        from_fields(n(0, 4)? as i32, n(4, 6)?, n(6, 8)?, n(8, 10)?, n(10, 12)?, n(12, 14)?)
    }

    /// Parses exactly 17 digits `YYYYMMDDhhmmsszzz`.
    pub fn parse_hj17(s: &str) -> Option<Local> {
        if s.len() != 17 || !all_digits(s) {
            return None;
        }
        let base = Local::parse_hj14(s.get(..14)?)?;
        let ms: i64 = s.get(14..)?.parse().ok()?;
        Some(Local(base.0 + ms))
    }

    /// `YYYY-MM-DD HH:MM:SS`: the page's, the CLI's and the CSV export's form.
    pub fn display(self) -> String {
        let (dt, _) = civil(self);
        format!("{} {:02}:{:02}:{:02}", ymd(&dt), dt.hour(), dt.minute(), dt.second())
    }

    /// `YYYY-MM-DD HH:MM`: reports and period labels.
    pub fn display_minute(self) -> String {
        let (dt, _) = civil(self);
        format!("{} {:02}:{:02}", ymd(&dt), dt.hour(), dt.minute())
    }

    /// `HH:MM:SS`: the time of day.
    pub fn clock(self) -> String {
        let (dt, _) = civil(self);
        format!("{:02}:{:02}:{:02}", dt.hour(), dt.minute(), dt.second())
    }

    /// `HH:MM`: an hour's label on the page and in its charts.
    pub fn hour_minute(self) -> String {
        let (dt, _) = civil(self);
        format!("{:02}:{:02}", dt.hour(), dt.minute())
    }

    /// Midnight of the first day of this time's month.
    pub fn month_start(self) -> Local {
        let (dt, _) = civil(self);
        let first = dt.date().replace_day(1).unwrap_or(dt.date());
        Local((i64::from(first.to_julian_day()) - 2_440_588) * 86_400_000)
    }

    /// The month of the year, 1–12.
    pub fn month_of_year(self) -> u8 {
        u8::from(civil(self).0.month())
    }

    /// `YYYY-MM-DD`.
    pub fn date(self) -> String {
        ymd(&civil(self).0)
    }

    /// `YYYY-MM`.
    pub fn month(self) -> String {
        let (dt, _) = civil(self);
        format!("{:04}-{:02}", dt.year(), u8::from(dt.month()))
    }

    /// Parses what people type: `YYYY-MM-DD HH:MM:SS` (a `T` instead of the space is
    /// accepted) or `YYYY-MM-DD HH:MM`. A bare date is [`Local::parse_date`]'s.
    pub fn parse_display(s: &str) -> Option<Local> {
        let s = s.trim();
        let (date, hms) = (s.get(..10)?, s.get(10..)?);
        let hms = hms.strip_prefix([' ', 'T'])?;
        let hms = if hms.len() == 5 { format!("{hms}:00") } else { hms.to_string() };
        Local::parse_parts(date, &hms)
    }

    /// The calendar time of these fields, if they make a real one (a device's clock
    /// registers, say).
    pub fn from_calendar(
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    ) -> Option<Local> {
        from_fields(year, month, day, hour, minute, second)
    }

    /// Parses a bound of a query (`from=`, `to=`, `--from`, `--to`): `YYYY-MM-DD` or what
    /// [`Local::parse_display`] takes. `end_of_day` turns a bare date into the next midnight,
    /// so that `to=2026-03-01` includes that day.
    pub fn parse_bound(s: &str, end_of_day: bool) -> Option<Local> {
        match Local::parse_date(s) {
            Some(midnight) if end_of_day => Some(Local(midnight.0 + 86_400_000)),
            Some(midnight) => Some(midnight),
            None => Local::parse_display(s),
        }
    }

    /// Parses `YYYY-MM-DD` as that day's midnight.
    pub fn parse_date(s: &str) -> Option<Local> {
        Local::parse_parts(s.trim(), "00:00:00")
    }

    /// Parses `YYYY-MM` as the first of that month, midnight.
    pub fn parse_month(s: &str) -> Option<Local> {
        let s = s.trim();
        if s.len() != 7 {
            return None;
        }
        Local::parse_parts(&format!("{s}-01"), "00:00:00")
    }

    /// `YYYY-MM-DD` and `HH:MM:SS`, strictly (two-digit fields, real calendar values).
    fn parse_parts(date: &str, hms: &str) -> Option<Local> {
        let d = date.as_bytes();
        let t = hms.as_bytes();
        if d.len() != 10 || d[4] != b'-' || d[7] != b'-' || t.len() != 8 || t[2] != b':' || t[5] != b':' {
            return None;
        }
        let n = |s: &str, a: usize, b: usize| {
            s.get(a..b).filter(|x| all_digits(x)).and_then(|x| x.parse::<u32>().ok())
        };
        from_fields(
            n(date, 0, 4)? as i32,
            n(date, 5, 7)?,
            n(date, 8, 10)?,
            n(hms, 0, 2)?,
            n(hms, 3, 5)?,
            n(hms, 6, 8)?,
        )
    }
}

impl fmt::Display for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The calendar fields of a local time (clamped into years 0000–9999) and its milliseconds.
fn civil(t: Local) -> (PrimitiveDateTime, u16) {
    let ms = t.0.clamp(MIN_LOCAL_MS, MAX_LOCAL_MS);
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400) as u32;
    // Julian day of 1970-01-01 is 2,440,588; the clamp keeps the day inside `time`'s range.
    let date = Date::from_julian_day((days + 2_440_588) as i32).unwrap_or(Date::MIN);
    let clock = Time::from_hms((in_day / 3600) as u8, (in_day % 3600 / 60) as u8, (in_day % 60) as u8)
        .unwrap_or(Time::MIDNIGHT);
    (PrimitiveDateTime::new(date, clock), ms.rem_euclid(1000) as u16)
}

fn from_fields(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<Local> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let clock =
        Time::from_hms(u8::try_from(hour).ok()?, u8::try_from(minute).ok()?, u8::try_from(second).ok()?)
            .ok()?;
    let days = i64::from(date.to_julian_day()) - 2_440_588;
    let secs = days * 86_400
        + i64::from(clock.hour()) * 3600
        + i64::from(clock.minute()) * 60
        + i64::from(clock.second());
    Some(Local(secs * 1000))
}

fn ymd(dt: &PrimitiveDateTime) -> String {
    format!("{:04}-{:02}-{:02}", dt.year(), u8::from(dt.month()), dt.day())
}

fn ymd_t_hms(dt: &PrimitiveDateTime) -> String {
    format!("{}T{:02}:{:02}:{:02}", ymd(dt), dt.hour(), dt.minute(), dt.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_minute_round_trips() {
        let t = Utc(1_767_225_600_000 + 3 * 60_000);
        assert_eq!(t.minute_z(), "2026-01-01T00:03Z");
        assert_eq!(Utc::parse_minute_z("2026-01-01T00:03Z"), Some(t));
        for bad in ["2026-01-01T00:03", "2026-01-01 00:03Z", "2026-01-01T0:03Z", "2026-13-01T00:03Z", ""] {
            assert_eq!(Utc::parse_minute_z(bad), None, "{bad}");
        }
    }

    /// 2016-08-01 08:58:57.223 in Beijing, the standard's example QN 20160801085857223.
    const EXAMPLE_UTC_MS: i64 = 1_470_013_137_223;

    #[test]
    fn the_standards_example_qn_round_trips() {
        let local = Offset::CHINA.local(Utc(EXAMPLE_UTC_MS));
        assert_eq!(local.hj17(), "20160801085857223");
        assert_eq!(local.hj14(), "20160801085857");
        assert_eq!(Local::parse_hj17("20160801085857223"), Some(local));
        assert_eq!(Offset::CHINA.utc(local), Utc(EXAMPLE_UTC_MS));
        assert_eq!(Offset::CHINA.local_secs(EXAMPLE_UTC_MS), local.secs());
        assert_eq!(Offset::CHINA.utc_ms(local.secs()), EXAMPLE_UTC_MS - 223);
        assert_eq!(Offset::CHINA.local_secs(-1), 8 * 3600 - 1);
        assert_eq!(Local::parse_hj14("20160801085857"), Some(Local(local.0 - 223)));
    }

    #[test]
    fn display_forms_and_their_parsers_agree() {
        let t = Offset::CHINA.local(Utc(EXAMPLE_UTC_MS));
        assert_eq!(t.display(), "2016-08-01 08:58:57");
        assert_eq!(t.display_minute(), "2016-08-01 08:58");
        assert_eq!(t.date(), "2016-08-01");
        assert_eq!(t.month(), "2016-08");
        let whole = Local(t.0 - 223);
        assert_eq!(Local::parse_display("2016-08-01 08:58:57"), Some(whole));
        assert_eq!(Local::parse_display("2016-08-01T08:58:57"), Some(whole));
        assert_eq!(Local::parse_display("2016-08-01 08:58"), Some(Local(whole.0 - 57_000)));
        assert_eq!(Local::parse_date("2016-08-01"), Some(Local(whole.0 - (8 * 3600 + 58 * 60 + 57) * 1000)));
        assert_eq!(Local::parse_month("2016-08"), Local::parse_date("2016-08-01"));
        assert_eq!(t.clock(), "08:58:57");
        assert_eq!(t.month_start(), Local::parse_date("2016-08-01").unwrap());
        assert_eq!(t.month_of_year(), 8);
        let leap = Local::parse_display("2024-02-29 23:59:59").unwrap();
        assert_eq!((leap.month_start(), leap.month_of_year()), (Local::parse_month("2024-02").unwrap(), 2));
        assert_eq!(Local(-1).month_start(), Local::parse_date("1969-12-01").unwrap());
        assert_eq!(t.hour_minute(), "08:58");
        let day = Local::parse_date("2026-03-01");
        assert_eq!(Local::parse_bound("2026-03-01", false), day);
        assert_eq!(Local::parse_bound(" 2026-03-01", true), day.map(|d| Local(d.0 + 86_400_000)));
        assert_eq!(Local::parse_bound("2026-03-01T08:30:00", true), day.map(|d| Local(d.0 + 30_600_000)));
        assert_eq!(Local::parse_bound("2026-02-30", false), None);
        assert_eq!(Local::parse_bound("yesterday", true), None);
        assert_eq!(Local::from_calendar(2016, 8, 1, 8, 58, 57), Some(whole));
        assert_eq!(Local::from_calendar(2016, 2, 30, 0, 0, 0), None);
    }

    #[test]
    fn offsets_name_their_zone() {
        let india = Offset::from_hours(5.5).unwrap();
        assert_eq!(india.seconds(), 19_800);
        assert_eq!(india.hours(), 5.5);
        assert_eq!((india.utc_label(), india.short_label()), ("UTC+5:30".into(), "+05:30".into()));
        assert_eq!((Offset::CHINA.utc_label(), Offset::CHINA.short_label()), ("UTC+8".into(), "+08".into()));
        let west = Offset::from_hours(-3.0).unwrap();
        assert_eq!((west.utc_label(), west.short_label()), ("UTC-3".into(), "-03".into()));
        assert_eq!(Offset::from_hours(8.3 / 3600.0), None);
        assert_eq!(Offset::from_hours(f64::NAN), None);
        assert_eq!(Offset::from_hours(19.0), None);
    }

    #[test]
    fn rfc3339_carries_the_plant_offset() {
        let t = Utc(EXAMPLE_UTC_MS - 223);
        assert_eq!(t.rfc3339(Offset::CHINA), "2016-08-01T08:58:57+08:00");
        assert_eq!(Utc(EXAMPLE_UTC_MS).rfc3339(Offset::CHINA), "2016-08-01T08:58:57.223+08:00");
        assert_eq!(t.rfc3339(Offset::ZERO), "2016-08-01T00:58:57Z");
        assert_eq!(Utc(EXAMPLE_UTC_MS).log_stamp(), "2016-08-01T00:58:57.223Z");
        assert_eq!(
            Utc(0).rfc3339(Offset::from_seconds(-5 * 3600 - 1800).unwrap()),
            "1969-12-31T18:30:00-05:30"
        );
        for s in ["2016-08-01T08:58:57+08:00", "2016-08-01T00:58:57Z", "2016-08-01 00:58:57z"] {
            assert_eq!(Utc::parse_rfc3339(s), Some(t), "{s}");
        }
        assert_eq!(Utc::parse_rfc3339("2016-08-01T08:58:57.2239+08:00"), Some(Utc(EXAMPLE_UTC_MS)));
        assert_eq!(
            Utc::parse_rfc3339("2016-08-01T08:58:57.5Z"),
            Some(Utc(EXAMPLE_UTC_MS - 223 + 8 * 3_600_000 + 500))
        );
    }

    #[test]
    fn parsers_refuse_what_is_not_a_real_time() {
        for s in [
            "",
            "2016080108585",
            "201608010858577",
            "2016a801085857",
            "20160230085857",
            "20161301085857",
            "20160801245857",
            "20160801086057",
            "20160801085860",
            "+0160801085857",
            "２０16080108585",
        ] {
            assert_eq!(Local::parse_hj14(s), None, "{s:?}");
        }
        assert_eq!(Local::parse_hj17("2016080108585722"), None);
        assert_eq!(Local::parse_hj17("2016080108585722x"), None);
        for s in [
            "",
            "2016-08-01",
            "2016-8-01 08:58:57",
            "2016-08-01 8:58:57",
            "2016-08-01 08:58:57x",
            "2016-02-30 00:00:00",
            "2016-08-01 08:58:5é",
            "é016-08-01 08:58:57",
        ] {
            assert_eq!(Local::parse_display(s), None, "{s:?}");
        }
        for s in [
            "2016-08-01T08:58:57",
            "2016-08-01T08:58:57+8:00",
            "2016-08-01T08:58:57+19:00",
            "2016-08-01T08:58:57.+08:00",
            "2016-08-01T08:58:57+08:60",
            "2016-08-01X08:58:57Z",
        ] {
            assert_eq!(Utc::parse_rfc3339(s), None, "{s:?}");
        }
        assert_eq!(Local::parse_month("2016-13"), None);
        assert_eq!(Offset::from_seconds(19 * 3600), None);
        assert_eq!(Offset::from_seconds(i64::MIN), None);
    }

    #[test]
    fn formatters_are_total() {
        for ms in [i64::MIN, i64::MAX, MIN_LOCAL_MS - 1, MAX_LOCAL_MS + 1, -1, 0] {
            let t = Local(ms);
            assert_eq!(t.hj14().len(), 14, "{ms}");
            assert_eq!(t.hj17().len(), 17, "{ms}");
            assert_eq!(t.display().len(), 19, "{ms}");
            let _ = Offset::CHINA.utc(t).rfc3339(Offset::CHINA);
        }
        assert_eq!(Local(i64::MAX).hj14(), "99991231235959");
        assert_eq!(Local(-1).display(), "1969-12-31 23:59:59");
        assert_eq!(Local(-1).secs(), -1);
    }

    #[test]
    fn every_second_of_a_leap_year_round_trips() {
        // A spot check every 7,919 s through 2024 (a leap year) and its month and year ends.
        let start = Local::parse_date("2024-01-01").unwrap().0;
        let end = Local::parse_date("2025-01-02").unwrap().0;
        let mut t = start;
        while t < end {
            let l = Local(t);
            assert_eq!(Local::parse_hj14(&l.hj14()), Some(l));
            assert_eq!(Local::parse_display(&l.display()), Some(l));
            let u = Offset::CHINA.utc(l);
            assert_eq!(Utc::parse_rfc3339(&u.rfc3339(Offset::CHINA)), Some(u));
            t += 7_919_000;
        }
        assert_eq!(Local::parse_hj14("20240229235959").map(|t| t.hj14()).as_deref(), Some("20240229235959"));
        assert_eq!(Local::parse_hj14("20230229000000"), None);
    }
}
