//! Host builtins: time.*.
//!
//! Policies hand these functions Go layout strings ("2006-01-02T15:04:05Z07:00") and Go
//! duration strings ("1h30m"), so both are implemented here with Go's rules rather than
//! strftime or ISO 8601 ones. Civil-date arithmetic is done directly on day counts; only the
//! zone rules come from the IANA database (`chrono-tz`).

use super::{BuiltinError, BuiltinFn, BuiltinResult, Context};
use crate::value::{Number, Value};

pub(super) fn lookup(name: &str) -> Option<BuiltinFn> {
    Some(match name {
        "time.now_ns" => now_ns,
        "time.parse_ns" => parse_ns,
        "time.parse_rfc3339_ns" => parse_rfc3339_ns,
        "time.parse_duration_ns" => parse_duration_ns,
        "time.date" => date,
        "time.clock" => clock,
        "time.weekday" => weekday,
        "time.add_date" => add_date,
        "time.diff" => diff,
        "time.format" => format,
        _ => return None,
    })
}

fn err<T>(msg: impl Into<String>) -> Result<T, BuiltinError> {
    Err(BuiltinError(msg.into()))
}

fn string_operand(args: &[Value], pos: usize) -> Result<&str, BuiltinError> {
    match args.get(pos.wrapping_sub(1)) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => err(format!(
            "operand {pos} must be string but got {}",
            other.type_name()
        )),
        None => err(format!("operand {pos} missing")),
    }
}

fn int_operand(args: &[Value], pos: usize) -> Result<i64, BuiltinError> {
    match args.get(pos.wrapping_sub(1)) {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            BuiltinError(format!(
                "operand {pos} must be integer number but got floating-point number"
            ))
        }),
        Some(other) => err(format!(
            "operand {pos} must be number but got {}",
            other.type_name()
        )),
        None => err(format!("operand {pos} missing")),
    }
}

const NS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Where a time is viewed from. `Local` is resolved once per call to one of these.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Loc {
    Utc,
    Zone(chrono_tz::Tz),
}

impl Loc {
    /// The UTC offset in seconds and the zone abbreviation in force at a Unix second.
    fn lookup(self, unix: i64) -> (i64, String) {
        match self {
            Loc::Utc => (0, "UTC".to_owned()),
            Loc::Zone(tz) => {
                use chrono::{Offset as _, TimeZone as _};
                use chrono_tz::OffsetName as _;
                let Some(dt) = chrono::DateTime::from_timestamp(unix, 0) else {
                    return (0, "UTC".to_owned());
                };
                let off = tz.offset_from_utc_datetime(&dt.naive_utc());
                let secs = i64::from(off.fix().local_minus_utc());
                // Zones with no letter abbreviation are named by their offset in the
                // database ("-03", "+0545"), which is what Go prints.
                let abbr = off
                    .abbreviation()
                    .map_or_else(|| numeric_abbr(secs), str::to_owned);
                (secs, abbr)
            }
        }
    }

    fn load(name: &str) -> Result<Loc, BuiltinError> {
        match name {
            "" | "UTC" => Ok(Loc::Utc),
            "Local" => Ok(local_zone()),
            _ => name
                .parse::<chrono_tz::Tz>()
                .map(Loc::Zone)
                .or_else(|_| err(format!("unknown time zone {name}"))),
        }
    }
}

fn numeric_abbr(offset: i64) -> String {
    let mins = offset.abs() / 60;
    let sign = if offset < 0 { '-' } else { '+' };
    if mins % 60 == 0 {
        format!("{sign}{:02}", mins / 60)
    } else {
        format!("{sign}{:02}{:02}", mins / 60, mins % 60)
    }
}

/// Go's `strconv.Quote` for the printable text policies pass (`%q` in error messages).
pub(super) fn strconv_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `time.Local`: `$TZ` if set (empty means UTC), else the zone `/etc/localtime` links to.
fn local_zone() -> Loc {
    let named = |n: &str| n.parse::<chrono_tz::Tz>().map_or(Loc::Utc, Loc::Zone);
    match std::env::var("TZ") {
        Ok(tz) => {
            let tz = tz.strip_prefix(':').unwrap_or(&tz);
            if tz.is_empty() || tz == "UTC" {
                return Loc::Utc;
            }
            named(tz)
        }
        Err(_) => match std::fs::read_link("/etc/localtime") {
            Ok(target) => {
                let t = target.to_string_lossy();
                t.split_once("zoneinfo/")
                    .map_or(Loc::Utc, |(_, n)| named(n))
            }
            Err(_) => Loc::Utc,
        },
    }
}

/// An instant: Unix seconds plus nanoseconds in `0..1e9`, with the zone it is viewed in.
#[derive(Debug, Clone, Copy)]
struct Time {
    secs: i64,
    nsec: i64,
    loc: Loc,
}

/// Broken-down wall-clock fields of a `Time` in its zone.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    yday: i64,
    weekday: usize,
    hour: i64,
    min: i64,
    sec: i64,
    offset: i64,
    abbr: String,
}

impl Time {
    fn from_ns(ns: i64, loc: Loc) -> Time {
        Time {
            secs: ns.div_euclid(NS_PER_SEC),
            nsec: ns.rem_euclid(NS_PER_SEC),
            loc,
        }
    }

    /// Nanoseconds since the epoch, or OPA's error when that does not fit an i64.
    fn to_ns(self) -> Result<i64, BuiltinError> {
        let ns = i128::from(self.secs) * i128::from(NS_PER_SEC) + i128::from(self.nsec);
        i64::try_from(ns).map_err(|_| BuiltinError("time outside of valid range".to_owned()))
    }

    fn civil(self) -> Civil {
        let (offset, abbr) = self.loc.lookup(self.secs);
        let local = self.secs.saturating_add(offset);
        let days = local.div_euclid(SECS_PER_DAY);
        let sod = local.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let yday = days - days_from_civil(year, 1, 1) + 1;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // rem_euclid(7) is 0..7
        let weekday = (days + 4).rem_euclid(7) as usize;
        Civil {
            year,
            month,
            day,
            yday,
            weekday,
            hour: sod / 3600,
            min: sod % 3600 / 60,
            sec: sod % 60,
            offset,
            abbr,
        }
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Inverse of `civil_from_days` for month 1..=12; callers bound `y` so nothing overflows.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in(month: i64, year: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Go's `time.Date`: out-of-range fields carry into the next larger one, and a wall time that
/// a zone transition skips or repeats resolves the way Go resolves it.
#[allow(clippy::too_many_arguments)]
fn go_date(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    min: i64,
    sec: i64,
    nsec: i64,
    loc: Loc,
) -> Option<Time> {
    let m0 = month.checked_sub(1)?;
    let year = year.checked_add(m0.div_euclid(12))?;
    let month = m0.rem_euclid(12) + 1;
    let sec = sec.checked_add(nsec.div_euclid(NS_PER_SEC))?;
    let nsec = nsec.rem_euclid(NS_PER_SEC);
    let min = min.checked_add(sec.div_euclid(60))?;
    let sec = sec.rem_euclid(60);
    let hour = hour.checked_add(min.div_euclid(60))?;
    let min = min.rem_euclid(60);
    let day = day.checked_add(hour.div_euclid(24))?;
    let hour = hour.rem_euclid(24);
    // Far outside the i64-nanosecond range anyway; the bound keeps the day maths exact.
    if year.abs() > 1_000_000_000 {
        return None;
    }
    let days = days_from_civil(year, month, 1).checked_add(day.checked_sub(1)?)?;
    let unix = days
        .checked_mul(SECS_PER_DAY)?
        .checked_add(hour * 3600 + min * 60 + sec)?;
    let (mut offset, _) = loc.lookup(unix);
    if offset != 0 {
        let (second, _) = loc.lookup(unix.checked_sub(offset)?);
        offset = second;
    }
    Some(Time {
        secs: unix.checked_sub(offset)?,
        nsec,
        loc,
    })
}

/// Reads OPA's time argument: `ns` or `[ns, tz]` or (for `time.format`) `[ns, tz, layout]`.
fn tz_time(v: &Value) -> Result<(Time, String), BuiltinError> {
    let want = "either number (ns) or [number (ns), string (tz)]";
    let (n, loc, layout) = match v {
        Value::Number(n) => (n, Loc::Utc, String::new()),
        Value::Array(items) => {
            let n = match items.first() {
                Some(Value::Number(n)) => n,
                Some(other) => {
                    return err(format!(
                        "operand 1 must be number but got {}",
                        other.type_name()
                    ))
                }
                None => return err(format!("operand 1 must be {want} but got array")),
            };
            let loc = match items.get(1) {
                None => Loc::Utc,
                Some(Value::String(s)) => Loc::load(s)?,
                Some(other) => {
                    return err(format!(
                        "operand 1 must be string but got {}",
                        other.type_name()
                    ))
                }
            };
            let layout = match items.get(2) {
                None => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    return err(format!(
                        "operand 1 must be string but got {}",
                        other.type_name()
                    ))
                }
            };
            (n, loc, layout)
        }
        other => {
            return err(format!(
                "operand 1 must be {want} but got {}",
                other.type_name()
            ))
        }
    };
    let ns = match n {
        Number::Int(i) => Some(*i),
        Number::Float(f)
            if f.fract() == 0.0
                && *f >= -9.223_372_036_854_776e18
                && *f < 9.223_372_036_854_776e18 =>
        {
            #[allow(clippy::cast_possible_truncation)] // range checked above
            Some(*f as i64)
        }
        _ => None,
    };
    let ns = ns.ok_or_else(|| BuiltinError("timestamp too big".to_owned()))?;
    Ok((Time::from_ns(ns, loc), layout))
}

fn now_ns(_: &[Value], ctx: &Context) -> BuiltinResult {
    Ok(Some(Value::int(ctx.now_ns)))
}

/// Layout names OPA accepts in place of a layout, mapped to Go's constants.
fn named_layout(name: &str) -> Option<&'static str> {
    Some(match name {
        "ANSIC" => "Mon Jan _2 15:04:05 2006",
        "UnixDate" => "Mon Jan _2 15:04:05 MST 2006",
        "RubyDate" => "Mon Jan 02 15:04:05 -0700 2006",
        "RFC822" => "02 Jan 06 15:04 MST",
        "RFC822Z" => "02 Jan 06 15:04 -0700",
        "RFC850" => "Monday, 02-Jan-06 15:04:05 MST",
        "RFC1123" => "Mon, 02 Jan 2006 15:04:05 MST",
        "RFC1123Z" => "Mon, 02 Jan 2006 15:04:05 -0700",
        "RFC3339" => RFC3339,
        "RFC3339Nano" => RFC3339_NANO,
        _ => return None,
    })
}

const RFC3339: &str = "2006-01-02T15:04:05Z07:00";
const RFC3339_NANO: &str = "2006-01-02T15:04:05.999999999Z07:00";

fn parse_ns(args: &[Value], _: &Context) -> BuiltinResult {
    let layout = string_operand(args, 1)?;
    let value = string_operand(args, 2)?;
    let layout = named_layout(layout).unwrap_or(layout);
    let t = go_parse(layout, value).map_err(BuiltinError)?;
    Ok(Some(Value::int(t.to_ns()?)))
}

fn parse_rfc3339_ns(args: &[Value], _: &Context) -> BuiltinResult {
    let value = string_operand(args, 1)?;
    let t = go_parse(RFC3339, value).map_err(BuiltinError)?;
    Ok(Some(Value::int(t.to_ns()?)))
}

fn parse_duration_ns(args: &[Value], _: &Context) -> BuiltinResult {
    let s = string_operand(args, 1)?;
    let ns = parse_extended_duration(s).map_err(BuiltinError)?;
    Ok(Some(Value::int(ns)))
}

fn format(args: &[Value], _: &Context) -> BuiltinResult {
    let (t, layout) = tz_time(args.first().unwrap_or(&Value::Null))?;
    let layout = if layout.is_empty() {
        RFC3339_NANO
    } else {
        named_layout(&layout).unwrap_or(&layout)
    };
    Ok(Some(Value::String(go_format(t, layout))))
}

fn date(args: &[Value], _: &Context) -> BuiltinResult {
    let (t, _) = tz_time(args.first().unwrap_or(&Value::Null))?;
    let c = t.civil();
    Ok(Some(Value::Array(vec![
        Value::int(c.year),
        Value::int(c.month),
        Value::int(c.day),
    ])))
}

fn clock(args: &[Value], _: &Context) -> BuiltinResult {
    let (t, _) = tz_time(args.first().unwrap_or(&Value::Null))?;
    let c = t.civil();
    Ok(Some(Value::Array(vec![
        Value::int(c.hour),
        Value::int(c.min),
        Value::int(c.sec),
    ])))
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn weekday(args: &[Value], _: &Context) -> BuiltinResult {
    let (t, _) = tz_time(args.first().unwrap_or(&Value::Null))?;
    let c = t.civil();
    Ok(WEEKDAYS.get(c.weekday).map(|w| Value::str(*w)))
}

fn add_date(args: &[Value], _: &Context) -> BuiltinResult {
    let (t, _) = tz_time(args.first().unwrap_or(&Value::Null))?;
    let years = int_operand(args, 2)?;
    let months = int_operand(args, 3)?;
    let days = int_operand(args, 4)?;
    let c = t.civil();
    let out = (|| {
        go_date(
            c.year.checked_add(years)?,
            c.month.checked_add(months)?,
            c.day.checked_add(days)?,
            c.hour,
            c.min,
            c.sec,
            t.nsec,
            t.loc,
        )
    })()
    .ok_or_else(|| BuiltinError("time outside of valid range".to_owned()))?;
    Ok(Some(Value::int(out.to_ns()?)))
}

fn diff(args: &[Value], _: &Context) -> BuiltinResult {
    let (t1, _) = tz_time(args.first().unwrap_or(&Value::Null))?;
    let (mut t2, _) = tz_time(args.get(1).unwrap_or(&Value::Null))?;
    t2.loc = t1.loc;
    let (a, b) = if (t1.secs, t1.nsec) > (t2.secs, t2.nsec) {
        (t2, t1)
    } else {
        (t1, t2)
    };
    let (c1, c2) = (a.civil(), b.civil());
    let mut year = c2.year - c1.year;
    let mut month = c2.month - c1.month;
    let mut day = c2.day - c1.day;
    let mut hour = c2.hour - c1.hour;
    let mut min = c2.min - c1.min;
    let mut sec = c2.sec - c1.sec;
    if sec < 0 {
        sec += 60;
        min -= 1;
    }
    if min < 0 {
        min += 60;
        hour -= 1;
    }
    if hour < 0 {
        hour += 24;
        day -= 1;
    }
    if day < 0 {
        day += days_in(c1.month, c1.year);
        month -= 1;
    }
    if month < 0 {
        month += 12;
        year -= 1;
    }
    Ok(Some(Value::Array(
        [year, month, day, hour, min, sec]
            .into_iter()
            .map(Value::int)
            .collect(),
    )))
}

// ---------------------------------------------------------------------------------------------
// Go layouts

/// One element of a Go layout string.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    Pm,
    LowerPm,
    Tz,
    Iso8601Tz,
    Iso8601SecondsTz,
    Iso8601ShortTz,
    Iso8601ColonTz,
    Iso8601ColonSecondsTz,
    NumTz,
    NumSecondsTz,
    NumShortTz,
    NumColonTz,
    NumColonSecondsTz,
    /// Fractional seconds: `.000` (fixed width, `trim == false`) or `.999` (trailing zeros
    /// trimmed), with the separator (`.` or `,`) and digit count.
    Frac {
        trim: bool,
        digits: usize,
        sep: u8,
    },
}

impl Std {
    fn is_iso_tz(self) -> bool {
        matches!(
            self,
            Std::Iso8601Tz
                | Std::Iso8601SecondsTz
                | Std::Iso8601ShortTz
                | Std::Iso8601ColonTz
                | Std::Iso8601ColonSecondsTz
        )
    }
}

fn starts_lower(s: &[u8]) -> bool {
    matches!(s.first(), Some(b'a'..=b'z'))
}

fn digit_at(s: &[u8], i: usize) -> bool {
    matches!(s.get(i), Some(b'0'..=b'9'))
}

/// Splits `layout` at its first layout element: (literal prefix length, element, rest offset).
/// Mirrors Go's recognition order so that ambiguous layouts read the same way.
fn next_std(layout: &[u8]) -> (usize, Option<Std>, usize) {
    let at = |i: usize, lit: &str| {
        layout
            .get(i..)
            .is_some_and(|s| s.starts_with(lit.as_bytes()))
    };
    for (i, &c) in layout.iter().enumerate() {
        let found: Option<(usize, Std, usize)> = match c {
            b'J' if at(i, "Jan") => {
                if at(i, "January") {
                    Some((i, Std::LongMonth, i + 7))
                } else if !starts_lower(layout.get(i + 3..).unwrap_or_default()) {
                    Some((i, Std::Month, i + 3))
                } else {
                    None
                }
            }
            b'M' if at(i, "Mon") => {
                if at(i, "Monday") {
                    Some((i, Std::LongWeekDay, i + 6))
                } else if !starts_lower(layout.get(i + 3..).unwrap_or_default()) {
                    Some((i, Std::WeekDay, i + 3))
                } else {
                    None
                }
            }
            b'M' if at(i, "MST") => Some((i, Std::Tz, i + 3)),
            b'0' => match layout.get(i + 1) {
                Some(d @ b'1'..=b'6') => {
                    let std = match d {
                        b'1' => Std::ZeroMonth,
                        b'2' => Std::ZeroDay,
                        b'3' => Std::ZeroHour12,
                        b'4' => Std::ZeroMinute,
                        b'5' => Std::ZeroSecond,
                        _ => Std::Year,
                    };
                    Some((i, std, i + 2))
                }
                Some(b'0') if layout.get(i + 2) == Some(&b'2') => {
                    Some((i, Std::ZeroYearDay, i + 3))
                }
                _ => None,
            },
            b'1' => {
                if layout.get(i + 1) == Some(&b'5') {
                    Some((i, Std::Hour, i + 2))
                } else {
                    Some((i, Std::NumMonth, i + 1))
                }
            }
            b'2' => {
                if at(i, "2006") {
                    Some((i, Std::LongYear, i + 4))
                } else {
                    Some((i, Std::Day, i + 1))
                }
            }
            b'_' => {
                if layout.get(i + 1) == Some(&b'2') {
                    // "_2006" is a literal underscore followed by the long year.
                    if at(i + 1, "2006") {
                        Some((i + 1, Std::LongYear, i + 5))
                    } else {
                        Some((i, Std::UnderDay, i + 2))
                    }
                } else if at(i, "__2") {
                    Some((i, Std::UnderYearDay, i + 3))
                } else {
                    None
                }
            }
            b'3' => Some((i, Std::Hour12, i + 1)),
            b'4' => Some((i, Std::Minute, i + 1)),
            b'5' => Some((i, Std::Second, i + 1)),
            b'P' if layout.get(i + 1) == Some(&b'M') => Some((i, Std::Pm, i + 2)),
            b'p' if layout.get(i + 1) == Some(&b'm') => Some((i, Std::LowerPm, i + 2)),
            b'-' => {
                if at(i, "-070000") {
                    Some((i, Std::NumSecondsTz, i + 7))
                } else if at(i, "-07:00:00") {
                    Some((i, Std::NumColonSecondsTz, i + 9))
                } else if at(i, "-0700") {
                    Some((i, Std::NumTz, i + 5))
                } else if at(i, "-07:00") {
                    Some((i, Std::NumColonTz, i + 6))
                } else if at(i, "-07") {
                    Some((i, Std::NumShortTz, i + 3))
                } else {
                    None
                }
            }
            b'Z' => {
                if at(i, "Z070000") {
                    Some((i, Std::Iso8601SecondsTz, i + 7))
                } else if at(i, "Z07:00:00") {
                    Some((i, Std::Iso8601ColonSecondsTz, i + 9))
                } else if at(i, "Z0700") {
                    Some((i, Std::Iso8601Tz, i + 5))
                } else if at(i, "Z07:00") {
                    Some((i, Std::Iso8601ColonTz, i + 6))
                } else if at(i, "Z07") {
                    Some((i, Std::Iso8601ShortTz, i + 3))
                } else {
                    None
                }
            }
            b'.' | b',' => match layout.get(i + 1) {
                Some(&ch @ (b'0' | b'9')) => {
                    let mut j = i + 1;
                    while layout.get(j) == Some(&ch) {
                        j += 1;
                    }
                    // Only a fraction if the run of digits ends here.
                    if digit_at(layout, j) {
                        None
                    } else {
                        Some((
                            i,
                            Std::Frac {
                                trim: ch == b'9',
                                digits: j - (i + 1),
                                sep: c,
                            },
                            j,
                        ))
                    }
                }
                _ => None,
            },
            _ => None,
        };
        if let Some((p, std, rest)) = found {
            return (p, Some(std), rest);
        }
    }
    (layout.len(), None, layout.len())
}

fn push_int(out: &mut String, x: i64, width: usize) {
    if x < 0 {
        out.push('-');
    }
    let digits = x.unsigned_abs().to_string();
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

fn prefix3(s: &str) -> &str {
    s.get(..3).unwrap_or(s)
}

fn go_format(t: Time, layout: &str) -> String {
    let c = t.civil();
    let mut out = String::new();
    let mut rest = layout.as_bytes();
    loop {
        let (p, std, next) = next_std(rest);
        out.push_str(&String::from_utf8_lossy(rest.get(..p).unwrap_or_default()));
        let Some(std) = std else { break };
        rest = rest.get(next..).unwrap_or_default();
        let month_name = usize::try_from(c.month - 1)
            .ok()
            .and_then(|m| MONTHS.get(m))
            .copied()
            .unwrap_or("");
        let weekday_name = WEEKDAYS.get(c.weekday).copied().unwrap_or("");
        let hour12 = if c.hour % 12 == 0 { 12 } else { c.hour % 12 };
        match std {
            Std::Year => push_int(&mut out, c.year.abs() % 100, 2),
            Std::LongYear => push_int(&mut out, c.year, 4),
            Std::Month => out.push_str(prefix3(month_name)),
            Std::LongMonth => out.push_str(month_name),
            Std::NumMonth => push_int(&mut out, c.month, 0),
            Std::ZeroMonth => push_int(&mut out, c.month, 2),
            Std::WeekDay => out.push_str(prefix3(weekday_name)),
            Std::LongWeekDay => out.push_str(weekday_name),
            Std::Day => push_int(&mut out, c.day, 0),
            Std::UnderDay => {
                if c.day < 10 {
                    out.push(' ');
                }
                push_int(&mut out, c.day, 0);
            }
            Std::ZeroDay => push_int(&mut out, c.day, 2),
            Std::UnderYearDay => {
                if c.yday < 100 {
                    out.push(' ');
                    if c.yday < 10 {
                        out.push(' ');
                    }
                }
                push_int(&mut out, c.yday, 0);
            }
            Std::ZeroYearDay => push_int(&mut out, c.yday, 3),
            Std::Hour => push_int(&mut out, c.hour, 2),
            Std::Hour12 => push_int(&mut out, hour12, 0),
            Std::ZeroHour12 => push_int(&mut out, hour12, 2),
            Std::Minute => push_int(&mut out, c.min, 0),
            Std::ZeroMinute => push_int(&mut out, c.min, 2),
            Std::Second => push_int(&mut out, c.sec, 0),
            Std::ZeroSecond => push_int(&mut out, c.sec, 2),
            Std::Pm => out.push_str(if c.hour >= 12 { "PM" } else { "AM" }),
            Std::LowerPm => out.push_str(if c.hour >= 12 { "pm" } else { "am" }),
            Std::Tz => {
                if c.abbr.is_empty() {
                    let zone = c.offset / 60;
                    out.push(if zone < 0 { '-' } else { '+' });
                    push_int(&mut out, zone.abs() / 60, 2);
                    push_int(&mut out, zone.abs() % 60, 2);
                } else {
                    out.push_str(&c.abbr);
                }
            }
            Std::Frac { trim, digits, sep } => push_frac(&mut out, t.nsec, trim, digits, sep),
            tz => {
                if c.offset == 0 && tz.is_iso_tz() {
                    out.push('Z');
                    continue;
                }
                let zone = c.offset / 60;
                out.push(if zone < 0 { '-' } else { '+' });
                push_int(&mut out, zone.abs() / 60, 2);
                if matches!(
                    tz,
                    Std::Iso8601ColonTz
                        | Std::NumColonTz
                        | Std::Iso8601ColonSecondsTz
                        | Std::NumColonSecondsTz
                ) {
                    out.push(':');
                }
                if !matches!(tz, Std::NumShortTz | Std::Iso8601ShortTz) {
                    push_int(&mut out, zone.abs() % 60, 2);
                }
                if matches!(
                    tz,
                    Std::Iso8601SecondsTz
                        | Std::NumSecondsTz
                        | Std::NumColonSecondsTz
                        | Std::Iso8601ColonSecondsTz
                ) {
                    if matches!(tz, Std::NumColonSecondsTz | Std::Iso8601ColonSecondsTz) {
                        out.push(':');
                    }
                    push_int(&mut out, c.offset.abs() % 60, 2);
                }
            }
        }
    }
    out
}

fn push_frac(out: &mut String, nsec: i64, trim: bool, digits: usize, sep: u8) {
    if trim && (digits == 0 || nsec == 0) {
        return;
    }
    let mut frac = format!("{nsec:09}");
    if digits < 9 {
        frac.truncate(digits);
    }
    if trim {
        while frac.ends_with('0') {
            frac.pop();
        }
        if frac.is_empty() {
            return;
        }
    }
    out.push(char::from(sep));
    out.push_str(&frac);
}

/// Go's `strconv.Quote`-like quoting used in time parse errors.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        if (ch as u32) < 0x20 || (ch as u32) >= 0x80 {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            if ch == '"' || ch == '\\' {
                out.push('\\');
            }
            out.push(ch);
        }
    }
    out.push('"');
    out
}

/// Parses one or two digits (`fixed`: exactly two).
fn getnum(s: &[u8], fixed: bool) -> Option<(i64, &[u8])> {
    let d0 = i64::from(s.first().filter(|b| b.is_ascii_digit())? - b'0');
    match s.get(1).filter(|b| b.is_ascii_digit()) {
        Some(d1) => Some((d0 * 10 + i64::from(d1 - b'0'), s.get(2..)?)),
        None if fixed => None,
        None => Some((d0, s.get(1..)?)),
    }
}

fn getnum3(s: &[u8], fixed: bool) -> Option<(i64, &[u8])> {
    let mut n = 0i64;
    let mut i = 0;
    while i < 3 && digit_at(s, i) {
        n = n * 10 + i64::from(s.get(i).copied().unwrap_or(b'0') - b'0');
        i += 1;
    }
    if i == 0 || (fixed && i != 3) {
        return None;
    }
    Some((n, s.get(i..)?))
}

/// Strips `prefix` from `value`, with a run of spaces in the prefix matching any run of spaces.
fn skip<'a>(mut value: &'a [u8], mut prefix: &[u8]) -> Option<&'a [u8]> {
    while let Some(&p) = prefix.first() {
        if p == b' ' {
            if value.first().is_some_and(|&v| v != b' ') {
                return None;
            }
            prefix = trim_spaces(prefix);
            value = trim_spaces(value);
            continue;
        }
        if value.first() != Some(&p) {
            return None;
        }
        prefix = prefix.get(1..)?;
        value = value.get(1..)?;
    }
    Some(value)
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    s.get(n..).unwrap_or_default()
}

fn lookup_name<'a>(names: &[&str], value: &'a [u8]) -> Option<(usize, &'a [u8])> {
    for (i, name) in names.iter().enumerate() {
        let n = name.len();
        if let Some(head) = value.get(..n) {
            if head.eq_ignore_ascii_case(name.as_bytes()) {
                return Some((i, value.get(n..)?));
            }
        }
    }
    None
}

fn atoi(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut x: i64 = 0;
    for &d in digits {
        x = x.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -x } else { x })
}

/// Parses `.ddd` (the separator plus `nbytes - 1` digits) into nanoseconds.
fn parse_nanos(value: &[u8], nbytes: usize) -> Option<i64> {
    if !matches!(value.first(), Some(b'.' | b',')) {
        return None;
    }
    let nbytes = nbytes.min(10);
    let mut ns = atoi(value.get(1..nbytes)?)?;
    if ns < 0 {
        return None;
    }
    for _ in nbytes..10 {
        ns *= 10;
    }
    Some(ns)
}

/// Length of a zone abbreviation at the start of `value`, by Go's heuristics.
fn parse_time_zone(value: &[u8]) -> Option<usize> {
    if value.len() < 3 {
        return None;
    }
    if value.starts_with(b"ChST") || value.starts_with(b"MeST") {
        return Some(4);
    }
    if value.starts_with(b"GMT") {
        return Some(3 + parse_signed_offset(value.get(3..)?));
    }
    if matches!(value.first(), Some(b'+' | b'-')) {
        let n = parse_signed_offset(value);
        return (n > 0).then_some(n);
    }
    let upper = value
        .iter()
        .take(6)
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    match upper {
        5 if value.get(4) == Some(&b'T') => Some(5),
        4 if value.get(3) == Some(&b'T') || value.starts_with(b"WITA") => Some(4),
        3 => Some(3),
        _ => None,
    }
}

fn parse_signed_offset(value: &[u8]) -> usize {
    if !matches!(value.first(), Some(b'+' | b'-')) {
        return 0;
    }
    let digits = value
        .iter()
        .skip(1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return 0;
    }
    match value.get(1..=digits).and_then(atoi) {
        Some(x) if x <= 23 => 1 + digits,
        _ => 0,
    }
}

/// Whether `time.Parse(layout, value)` succeeds in Go; YAML's timestamp detection uses it.
pub(super) fn parses_as(layout: &str, value: &str) -> bool {
    go_parse(layout, value).is_ok()
}

/// Go's `time.Parse` (default zone UTC), returning Go's error text on failure.
fn go_parse(layout: &str, value: &str) -> Result<Time, String> {
    let (alayout, avalue) = (layout, value);
    let elem_err = |lelem: &[u8], velem: &[u8]| {
        format!(
            "parsing time {} as {}: cannot parse {} as {}",
            quote(avalue),
            quote(alayout),
            quote(&String::from_utf8_lossy(velem)),
            quote(&String::from_utf8_lossy(lelem))
        )
    };
    let msg_err = |msg: &str| format!("parsing time {}{msg}", quote(avalue));

    let mut layout = layout.as_bytes();
    let mut value = value.as_bytes();
    let (mut am_set, mut pm_set) = (false, false);
    let (mut year, mut month, mut day, mut yday) = (0i64, -1i64, -1i64, -1i64);
    let (mut hour, mut min, mut sec, mut nsec) = (0i64, 0i64, 0i64, 0i64);
    let mut utc_zone = false;
    let mut zone_offset: Option<i64> = None;
    let mut zone_name: Option<String> = None;

    loop {
        let (p, std, next) = next_std(layout);
        let prefix = layout.get(..p).unwrap_or_default();
        let stdstr = layout.get(p..next).unwrap_or_default();
        value = match skip(value, prefix) {
            Some(v) => v,
            None => return Err(elem_err(prefix, value)),
        };
        let Some(std) = std else {
            if !value.is_empty() {
                return Err(msg_err(&format!(
                    ": extra text: {}",
                    quote(&String::from_utf8_lossy(value))
                )));
            }
            break;
        };
        layout = layout.get(next..).unwrap_or_default();
        let hold = value;
        let mut range_err: Option<&str> = None;
        let ok: Option<()> = (|| {
            match std {
                Std::Year => {
                    let p = value.get(..2)?;
                    value = value.get(2..)?;
                    year = atoi(p)?;
                    year += if year >= 69 { 1900 } else { 2000 };
                }
                Std::LongYear => {
                    if !digit_at(value, 0) {
                        return None;
                    }
                    let p = value.get(..4)?;
                    value = value.get(4..)?;
                    year = atoi(p)?;
                }
                Std::Month | Std::LongMonth => {
                    let names: Vec<&str> = if std == Std::Month {
                        MONTHS.iter().map(|m| prefix3(m)).collect()
                    } else {
                        MONTHS.to_vec()
                    };
                    let (m, rest) = lookup_name(&names, value)?;
                    month = i64::try_from(m).ok()? + 1;
                    value = rest;
                }
                Std::NumMonth | Std::ZeroMonth => {
                    let (m, rest) = getnum(value, std == Std::ZeroMonth)?;
                    month = m;
                    value = rest;
                    if !(1..=12).contains(&month) {
                        range_err = Some("month");
                    }
                }
                Std::WeekDay | Std::LongWeekDay => {
                    let names: Vec<&str> = if std == Std::WeekDay {
                        WEEKDAYS.iter().map(|m| prefix3(m)).collect()
                    } else {
                        WEEKDAYS.to_vec()
                    };
                    let (_, rest) = lookup_name(&names, value)?;
                    value = rest;
                }
                Std::Day | Std::UnderDay | Std::ZeroDay => {
                    if std == Std::UnderDay && value.first() == Some(&b' ') {
                        value = value.get(1..)?;
                    }
                    let (d, rest) = getnum(value, std == Std::ZeroDay)?;
                    day = d;
                    value = rest;
                }
                Std::UnderYearDay | Std::ZeroYearDay => {
                    for _ in 0..2 {
                        if std == Std::UnderYearDay && value.first() == Some(&b' ') {
                            value = value.get(1..)?;
                        }
                    }
                    let (d, rest) = getnum3(value, std == Std::ZeroYearDay)?;
                    yday = d;
                    value = rest;
                }
                Std::Hour => {
                    let (h, rest) = getnum(value, false)?;
                    hour = h;
                    value = rest;
                    if !(0..24).contains(&hour) {
                        range_err = Some("hour");
                    }
                }
                Std::Hour12 | Std::ZeroHour12 => {
                    let (h, rest) = getnum(value, std == Std::ZeroHour12)?;
                    hour = h;
                    value = rest;
                    if !(0..=12).contains(&hour) {
                        range_err = Some("hour");
                    }
                }
                Std::Minute | Std::ZeroMinute => {
                    let (m, rest) = getnum(value, std == Std::ZeroMinute)?;
                    min = m;
                    value = rest;
                    if !(0..60).contains(&min) {
                        range_err = Some("minute");
                    }
                }
                Std::Second | Std::ZeroSecond => {
                    let (s, rest) = getnum(value, std == Std::ZeroSecond)?;
                    sec = s;
                    value = rest;
                    if !(0..60).contains(&sec) {
                        range_err = Some("second");
                        return Some(());
                    }
                    // A fraction in the input that the layout does not spell out is accepted.
                    if value.len() >= 2
                        && matches!(value.first(), Some(b'.' | b','))
                        && digit_at(value, 1)
                    {
                        if let (_, Some(Std::Frac { .. }), _) = next_std(layout) {
                            return Some(());
                        }
                        let mut n = 2;
                        while digit_at(value, n) {
                            n += 1;
                        }
                        nsec = parse_nanos(value, n)?;
                        value = value.get(n..)?;
                    }
                }
                Std::Pm | Std::LowerPm => {
                    let p = value.get(..2)?;
                    value = value.get(2..)?;
                    let (pm, am): (&[u8], &[u8]) = if std == Std::Pm {
                        (b"PM", b"AM")
                    } else {
                        (b"pm", b"am")
                    };
                    if p == pm {
                        pm_set = true;
                    } else if p == am {
                        am_set = true;
                    } else {
                        return None;
                    }
                }
                Std::Tz => {
                    if value.starts_with(b"UTC") {
                        utc_zone = true;
                        value = value.get(3..)?;
                        return Some(());
                    }
                    let n = parse_time_zone(value)?;
                    zone_name = Some(String::from_utf8_lossy(value.get(..n)?).into_owned());
                    value = value.get(n..)?;
                }
                Std::Frac {
                    trim: false,
                    digits,
                    ..
                } => {
                    let ndigit = 1 + digits;
                    if value.len() < ndigit {
                        return None;
                    }
                    nsec = parse_nanos(value, ndigit)?;
                    value = value.get(ndigit..)?;
                }
                Std::Frac { trim: true, .. } => {
                    if value.len() < 2
                        || !matches!(value.first(), Some(b'.' | b','))
                        || !digit_at(value, 1)
                    {
                        return Some(());
                    }
                    let mut i = 0;
                    while digit_at(value, i + 1) {
                        i += 1;
                    }
                    nsec = parse_nanos(value, 1 + i)?;
                    value = value.get(1 + i..)?;
                }
                tz => {
                    if tz.is_iso_tz() && value.first() == Some(&b'Z') {
                        value = value.get(1..)?;
                        utc_zone = true;
                        return Some(());
                    }
                    let (sign, hh, mm, ss): (u8, &[u8], &[u8], &[u8]);
                    match tz {
                        Std::Iso8601ColonTz | Std::NumColonTz => {
                            if value.len() < 6 || value.get(3) != Some(&b':') {
                                return None;
                            }
                            (sign, hh, mm, ss) =
                                (*value.first()?, value.get(1..3)?, value.get(4..6)?, b"00");
                            value = value.get(6..)?;
                        }
                        Std::NumShortTz | Std::Iso8601ShortTz => {
                            (sign, hh, mm, ss) = (*value.first()?, value.get(1..3)?, b"00", b"00");
                            value = value.get(3..)?;
                        }
                        Std::Iso8601ColonSecondsTz | Std::NumColonSecondsTz => {
                            if value.len() < 9
                                || value.get(3) != Some(&b':')
                                || value.get(6) != Some(&b':')
                            {
                                return None;
                            }
                            (sign, hh, mm, ss) = (
                                *value.first()?,
                                value.get(1..3)?,
                                value.get(4..6)?,
                                value.get(7..9)?,
                            );
                            value = value.get(9..)?;
                        }
                        Std::Iso8601SecondsTz | Std::NumSecondsTz => {
                            (sign, hh, mm, ss) = (
                                *value.first()?,
                                value.get(1..3)?,
                                value.get(3..5)?,
                                value.get(5..7)?,
                            );
                            value = value.get(7..)?;
                        }
                        _ => {
                            (sign, hh, mm, ss) =
                                (*value.first()?, value.get(1..3)?, value.get(3..5)?, b"00");
                            value = value.get(5..)?;
                        }
                    }
                    let (hr, _) = getnum(hh, true)?;
                    let (mi, _) = getnum(mm, true)?;
                    let (se, _) = getnum(ss, true)?;
                    if hr > 24 {
                        range_err = Some("time zone offset hour");
                    }
                    if mi > 60 {
                        range_err = Some("time zone offset minute");
                    }
                    if se > 60 {
                        range_err = Some("time zone offset second");
                    }
                    let off = (hr * 60 + mi) * 60 + se;
                    zone_offset = Some(match sign {
                        b'+' => off,
                        b'-' => -off,
                        _ => return None,
                    });
                }
            }
            Some(())
        })();
        if let Some(what) = range_err {
            return Err(msg_err(&format!(": {what} out of range")));
        }
        if ok.is_none() {
            return Err(elem_err(stdstr, hold));
        }
    }
    if pm_set && hour < 12 {
        hour += 12;
    } else if am_set && hour == 12 {
        hour = 0;
    }

    if yday >= 0 {
        let mut m = 0;
        let mut d = 0;
        if is_leap(year) {
            if yday == 31 + 29 {
                m = 2;
                d = 29;
            } else if yday > 31 + 29 {
                yday -= 1;
            }
        }
        if !(1..=365).contains(&yday) {
            return Err(msg_err(": day-of-year out of range"));
        }
        if m == 0 {
            // Cumulative days before each month in a common year.
            const BEFORE: [i64; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];
            m = (yday - 1) / 31 + 1;
            let before = |mm: i64| {
                usize::try_from(mm - 1)
                    .ok()
                    .and_then(|i| BEFORE.get(i))
                    .copied()
                    .unwrap_or(365)
            };
            if before(m + 1) < yday {
                m += 1;
            }
            d = yday - before(m);
        }
        if month >= 0 && month != m {
            return Err(msg_err(": day-of-year does not match month"));
        }
        month = m;
        if day >= 0 && day != d {
            return Err(msg_err(": day-of-year does not match day"));
        }
        day = d;
    } else {
        if month < 0 {
            month = 1;
        }
        if day < 0 {
            day = 1;
        }
    }
    if day < 1 || day > days_in(month, year) {
        return Err(msg_err(": day out of range"));
    }

    let wall = |loc| {
        go_date(year, month, day, hour, min, sec, nsec, loc)
            .ok_or_else(|| msg_err(": out of range"))
    };
    if utc_zone {
        return wall(Loc::Utc);
    }
    if let Some(off) = zone_offset {
        let mut t = wall(Loc::Utc)?;
        t.secs -= off;
        return Ok(t);
    }
    if let Some(name) = zone_name {
        let mut t = wall(Loc::Utc)?;
        // A known abbreviation of the local zone takes that zone's offset, as Go does.
        if let Loc::Zone(_) = local_zone() {
            let local = local_zone();
            let (guess, _) = local.lookup(t.secs);
            let (off, abbr) = local.lookup(t.secs - guess);
            if abbr == name {
                t.secs -= off;
                return Ok(t);
            }
        }
        // Go records any other abbreviation (GMT+3 included) in a fabricated zone without
        // moving the instant, so the wall time is read as UTC.
        return Ok(t);
    }
    wall(Loc::Utc)
}

// ---------------------------------------------------------------------------------------------
// Durations

/// Go's `time.ParseDuration`, with Go's error text.
fn go_parse_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", quote(orig));
    let mut s = orig.as_bytes();
    let mut neg = false;
    if let Some(&c) = s.first() {
        if c == b'-' || c == b'+' {
            neg = c == b'-';
            s = s.get(1..).unwrap_or_default();
        }
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut d: u64 = 0;
    while !s.is_empty() {
        if !matches!(s.first(), Some(b'.' | b'0'..=b'9')) {
            return Err(invalid());
        }
        let int_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &c in s.get(..int_len).unwrap_or_default() {
            if v > LIMIT / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(c - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        s = s.get(int_len..).unwrap_or_default();
        let pre = int_len > 0;
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if s.first() == Some(&b'.') {
            s = s.get(1..).unwrap_or_default();
            let frac_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
            let mut overflow = false;
            for &c in s.get(..frac_len).unwrap_or_default() {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(c - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            post = frac_len > 0;
            s = s.get(frac_len..).unwrap_or_default();
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s
            .iter()
            .take_while(|&&c| c != b'.' && !c.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", quote(orig)));
        }
        let u = s.get(..unit_len).unwrap_or_default();
        s = s.get(unit_len..).unwrap_or_default();
        let unit: u64 = match u {
            b"ns" => 1,
            b"us" => 1_000,
            b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(&String::from_utf8_lossy(u)),
                    quote(orig)
                ))
            }
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let add = (f as f64 * (unit as f64 / scale)) as u64;
            v = v.checked_add(add).ok_or_else(invalid)?;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        d = d.checked_add(v).ok_or_else(invalid)?;
        if d > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        #[allow(clippy::cast_possible_wrap)] // d <= 2^63, and -(2^63) is i64::MIN
        return Ok((d as i64).wrapping_neg());
    }
    i64::try_from(d).map_err(|_| invalid())
}

/// OPA's duration syntax: Go's, plus `d` (24h), `w` (7d) and `y` (365d) units.
fn parse_extended_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", strconv_quote(s));
    if s.is_empty() {
        return Err(invalid());
    }
    if !s.contains(['d', 'w', 'y']) {
        return go_parse_duration(s);
    }
    // Segments are `[0-9.]+` followed by `ms`, `us`, `µs`, `ns` or one lower-case letter.
    let mut rest = s;
    let mut rewritten = String::new();
    if let Some(r) = rest.strip_prefix(['-', '+']) {
        rewritten.push_str(rest.get(..1).unwrap_or_default());
        rest = r;
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if n == 0 {
            return Err(invalid());
        }
        let digits = rest.get(..n).unwrap_or_default();
        rest = rest.get(n..).unwrap_or_default();
        let unit = ["ms", "us", "µs", "ns"]
            .into_iter()
            .find(|u| rest.starts_with(u))
            .or_else(|| {
                rest.get(..1)
                    .filter(|u| u.bytes().all(|b| b.is_ascii_lowercase()))
            })
            .ok_or_else(invalid)?;
        rest = rest.get(unit.len()..).unwrap_or_default();
        let hours = match unit {
            "d" => Some(24.0),
            "w" => Some(168.0),
            "y" => Some(8760.0),
            _ => None,
        };
        match hours {
            Some(coeff) => {
                let v: f64 = digits.parse().map_err(|_| invalid())?;
                rewritten.push_str(&format_go_float(v * coeff));
                rewritten.push('h');
            }
            None => {
                rewritten.push_str(digits);
                rewritten.push_str(unit);
            }
        }
    }
    go_parse_duration(&rewritten).map_err(|msg| {
        // Go's message names the rewritten string; report the caller's instead.
        let head = msg.rsplit_once(' ').map_or(msg.as_str(), |(h, _)| h);
        format!("{head} {}", strconv_quote(s))
    })
}

/// `strconv.FormatFloat(v, 'f', -1, 64)`: shortest round-trip digits, never an exponent.
fn format_go_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e21 {
        return format!("{v:.0}");
    }
    format!("{v}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> BuiltinResult {
        lookup(name).unwrap()(args, &Context { now_ns: 42 })
    }

    fn s(x: &str) -> Value {
        Value::str(x)
    }

    fn ns_of(name: &str, args: &[Value]) -> i64 {
        match call(name, args).unwrap().unwrap() {
            Value::Number(n) => n.as_i64().unwrap(),
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn parse_ns_conformance() {
        let cases = [
            (
                "2006-01-02T15:04:05Z07:00",
                "2017-06-02T19:00:00-07:00",
                1_496_455_200_000_000_000,
            ),
            (
                "2006-01-02T15:04:05Z07:00",
                "1677-09-21T00:12:43.145224192-00:00",
                i64::MIN,
            ),
            (
                "2006-01-02T15:04:05Z07:00",
                "2262-04-11T23:47:16.854775807-00:00",
                i64::MAX,
            ),
            (
                "01/02 03:04:05PM '06 -0700",
                "06/02 07:00:00PM '17 -0700",
                1_496_455_200_000_000_000,
            ),
            (
                "02 Jan 06 15:04 -0700",
                "02 Jun 17 19:00 -0700",
                1_496_455_200_000_000_000,
            ),
            (
                "RFC822Z",
                "02 Jun 17 19:00 -0700",
                1_496_455_200_000_000_000,
            ),
        ];
        for (layout, value, want) in cases {
            assert_eq!(
                ns_of("time.parse_ns", &[s(layout), s(value)]),
                want,
                "{layout} {value}"
            );
        }
        let too_small = call(
            "time.parse_ns",
            &[s(RFC3339), s("1677-09-21T00:12:43.145224191-00:00")],
        );
        assert_eq!(too_small, err("time outside of valid range"));
        assert_eq!(
            call(
                "time.parse_rfc3339_ns",
                &[s("2262-04-11T23:47:16.854775808-00:00")]
            ),
            err("time outside of valid range")
        );
    }

    #[test]
    fn parse_errors_match_go() {
        assert_eq!(
            call("time.parse_rfc3339_ns", &[s("2020-13-01T00:00:00Z")]),
            err(r#"parsing time "2020-13-01T00:00:00Z": month out of range"#)
        );
        assert_eq!(
            call("time.parse_ns", &[s("2006-01-02"), s("2020-1-01")]),
            err(r#"parsing time "2020-1-01" as "2006-01-02": cannot parse "1-01" as "01""#)
        );
        assert_eq!(
            call("time.parse_ns", &[s("2006-01-02"), s("2020-01-01x")]),
            err(r#"parsing time "2020-01-01x": extra text: "x""#)
        );
    }

    #[test]
    fn formats_like_go() {
        let t = 1_496_455_200_123_456_789; // 2017-06-03T02:00:00.123456789Z
        let fmt = |v: Value| call("time.format", &[v]).unwrap().unwrap();
        assert_eq!(fmt(Value::int(t)), s("2017-06-03T02:00:00.123456789Z"));
        assert_eq!(
            fmt(Value::Array(vec![Value::int(t), s("America/New_York")])),
            s("2017-06-02T22:00:00.123456789-04:00")
        );
        assert_eq!(
            fmt(Value::Array(vec![
                Value::int(t),
                s("Asia/Kolkata"),
                s("Mon Jan _2 3:04:05.000 PM MST 2006 002")
            ])),
            s("Sat Jun  3 7:30:00.123 AM IST 2017 154")
        );
        assert_eq!(
            fmt(Value::Array(vec![Value::int(0), s("UTC"), s("RFC1123")])),
            s("Thu, 01 Jan 1970 00:00:00 UTC")
        );
    }

    #[test]
    fn date_clock_weekday() {
        let t = 1_517_814_000 * NS_PER_SEC;
        assert_eq!(
            call(
                "time.date",
                &[Value::Array(vec![Value::int(t), s("America/Los_Angeles")])]
            ),
            Ok(Some(Value::Array(vec![
                Value::int(2018),
                Value::int(2),
                Value::int(4)
            ])))
        );
        assert_eq!(
            call(
                "time.clock",
                &[Value::Array(vec![
                    Value::int(1_517_832_000 * NS_PER_SEC),
                    s("America/New_York")
                ])]
            ),
            Ok(Some(Value::Array(vec![
                Value::int(7),
                Value::int(0),
                Value::int(0)
            ])))
        );
        assert_eq!(
            call("time.weekday", &[Value::int(0)]),
            Ok(Some(s("Thursday")))
        );
        assert_eq!(
            call("time.date", &[Value::float(1.582_977_6e27)]),
            err("timestamp too big")
        );
        assert_eq!(
            call(
                "time.date",
                &[Value::Array(vec![Value::int(0), s("Mars/Olympus")])]
            ),
            err("unknown time zone Mars/Olympus")
        );
    }

    #[test]
    fn add_date_normalises() {
        // 2020-01-31 + 1 month is 2020-03-02, as in Go.
        let t = ns_of("time.parse_rfc3339_ns", &[s("2020-01-31T10:00:00Z")]);
        let got = ns_of(
            "time.add_date",
            &[Value::int(t), Value::int(0), Value::int(1), Value::int(0)],
        );
        assert_eq!(
            got,
            ns_of("time.parse_rfc3339_ns", &[s("2020-03-02T10:00:00Z")])
        );
        assert_eq!(
            call(
                "time.add_date",
                &[Value::int(t), Value::int(500), Value::int(0), Value::int(0)]
            ),
            err("time outside of valid range")
        );
    }

    #[test]
    fn diff_like_opa() {
        let a = ns_of("time.parse_rfc3339_ns", &[s("2017-03-31T10:00:00Z")]);
        let b = ns_of("time.parse_rfc3339_ns", &[s("2018-02-28T09:30:15Z")]);
        assert_eq!(
            call("time.diff", &[Value::int(b), Value::int(a)]),
            Ok(Some(Value::Array(
                [0, 10, 27, 23, 30, 15]
                    .into_iter()
                    .map(Value::int)
                    .collect()
            )))
        );
    }

    #[test]
    fn durations() {
        let d = |x: &str| call("time.parse_duration_ns", &[s(x)]);
        assert_eq!(d("100ms"), Ok(Some(Value::int(100_000_000))));
        assert_eq!(d("-1.5h"), Ok(Some(Value::int(-5_400_000_000_000))));
        assert_eq!(d("1d2h"), Ok(Some(Value::int(26 * 3_600_000_000_000))));
        assert_eq!(d("1.5w"), Ok(Some(Value::int(252 * 3_600_000_000_000))));
        assert_eq!(d("1µs"), Ok(Some(Value::int(1000))));
        assert_eq!(d(""), err(r#"time: invalid duration """#));
        assert_eq!(d("5x"), err(r#"time: unknown unit "x" in duration "5x""#));
        assert_eq!(
            d("1d5x"),
            err(r#"time: unknown unit "x" in duration "1d5x""#)
        );
        assert_eq!(d("3"), err(r#"time: missing unit in duration "3""#));
        assert_eq!(
            d("9999999999h"),
            err(r#"time: invalid duration "9999999999h""#)
        );
    }

    #[test]
    fn now_is_the_context_clock() {
        assert_eq!(call("time.now_ns", &[]), Ok(Some(Value::int(42))));
    }

    #[test]
    fn garbage_never_panics() {
        let layouts = [
            "",
            "2006",
            "Z07:00:00",
            "Jan _2 __2 002 .000 ,999",
            "MST -07 pm PM",
            "\u{ff}\u{fe}",
        ];
        let values = [
            "",
            "x",
            "2006-",
            "\u{e9}\u{e9}\u{e9}\u{e9}",
            "+99",
            "GMT+30",
            "0000000000000000000",
        ];
        for l in layouts {
            for v in values {
                let _ = call("time.parse_ns", &[s(l), s(v)]);
            }
            let _ = call(
                "time.format",
                &[Value::Array(vec![Value::int(i64::MIN), s("Local"), s(l)])],
            );
            let _ = call(
                "time.format",
                &[Value::Array(vec![
                    Value::int(i64::MAX),
                    s("Pacific/Kiritimati"),
                    s(l),
                ])],
            );
        }
        for v in ["1.2.3d", "-", "+d", ".d", "99999999999999999999y", "1e5h"] {
            let _ = call("time.parse_duration_ns", &[s(v)]);
        }
        let _ = call(
            "time.add_date",
            &[
                Value::int(0),
                Value::int(i64::MAX),
                Value::int(i64::MAX),
                Value::int(i64::MIN),
            ],
        );
    }
}
