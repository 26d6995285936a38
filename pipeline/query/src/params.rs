//! Query-string values in the formats Jaeger's Go query service parses:
//! durations as Go's `time.ParseDuration` reads them, times as
//! `time.Parse(time.RFC3339Nano, ...)` reads them, bools as
//! `strconv.ParseBool` reads them.
//!
//! In: the text of one parameter. Out: a [`Duration`], nanoseconds since
//! the Unix epoch, or a bool; `Err` holds a message for a 400 that quotes
//! the text (Go's own wording where Go has one).
//!
//! Guarantees: no floating point, so `1.2ms` is exactly 1 200 000 ns; what
//! Go rejects is rejected, with three differences, each stricter or
//! lenient only where Go's answer is unusable here: negative durations
//! other than zero are refused (a span has no negative duration), times
//! before 1970 or after 2554 (outside `u64` nanoseconds) are refused, and a
//! lowercase `t` or `z` is accepted in a time, as RFC 3339 allows.

use std::time::Duration;

/// Nanoseconds per Go duration unit (`time.unitMap`).
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // U+00B5 (micro sign) and U+03BC (Greek small letter mu), as Go.
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Splits the leading ASCII digits off `s`.
fn split_digits(s: &str) -> (&str, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    s.split_at(n)
}

/// A duration in Go's `time.ParseDuration` syntax: an optional sign, then
/// one or more decimal numbers, each with an optional fraction and a unit
/// (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), such as `300ms`, `1.5h`
/// or `2h45m`; a bare `0` is zero.
pub(crate) fn go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    // Go's bound: the magnitude fits an int64 of nanoseconds.
    let max = u128::from(i64::MAX.unsigned_abs()) + u128::from(negative);
    let mut total: u128 = 0;
    while !s.is_empty() {
        let (int_digits, rest) = split_digits(s);
        let mut whole: u64 = 0;
        for d in int_digits.bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u64::from(d - b'0')))
                .filter(|w| *w <= 1 << 63)
                .ok_or_else(invalid)?;
        }
        s = rest;
        // Fraction digits past what 63 bits hold are ignored, as Go does,
        // and so are those past 10^-18 of a unit (under a thousandth of a
        // nanosecond even in hours).
        let (mut frac, mut scale, mut has_frac) = (0u64, 1u64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let (frac_digits, rest) = split_digits(rest);
            has_frac = !frac_digits.is_empty();
            for d in frac_digits.bytes() {
                if frac > (i64::MAX as u64 - 9) / 10 || scale == 1_000_000_000_000_000_000 {
                    break;
                }
                frac = frac * 10 + u64::from(d - b'0');
                scale *= 10;
            }
            s = rest;
        }
        if int_digits.is_empty() && !has_frac {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {text:?}"));
        }
        let (unit, rest) = s.split_at(unit_len);
        let Some(per_unit) = unit_nanos(unit) else {
            return Err(format!("time: unknown unit {unit:?} in duration {text:?}"));
        };
        s = rest;
        let per_unit = u128::from(per_unit);
        total += u128::from(whole) * per_unit + u128::from(frac) * per_unit / u128::from(scale);
        if total > max {
            return Err(invalid());
        }
    }
    if negative && total > 0 {
        return Err(format!("negative duration {text:?}"));
    }
    let total = u64::try_from(total).map_err(|_| invalid())?;
    Ok(Duration::from_nanos(total))
}

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d` (Howard
/// Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An RFC 3339 time with optional fractional seconds, as Go's
/// `time.RFC3339Nano` layout parses it (`2017-01-26T16:46:31.639875Z`,
/// `2017-01-26T18:46:31+02:00`), as nanoseconds since the Unix epoch.
/// Fractions past nanoseconds are cut, as Go does.
pub(crate) fn rfc3339_nanos(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("parsing time {text:?} as RFC 3339: {why}");
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Result<i64, String> {
        let digits = b.get(from..to).ok_or_else(|| bad("too short"))?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad("want digits"));
        }
        Ok(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, want: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(c) if want.contains(c) => Ok(()),
            _ => Err(bad(&format!("want {:?} at byte {at}", char::from(want[0])))),
        }
    };
    let year = num(0, 4)?;
    sep(4, b"-")?;
    let month = num(5, 7)?;
    sep(7, b"-")?;
    let day = num(8, 10)?;
    sep(10, b"Tt")?;
    let hour = num(11, 13)?;
    sep(13, b":")?;
    let minute = num(14, 16)?;
    sep(16, b":")?;
    let second = num(17, 19)?;
    if !(1..=12).contains(&month) {
        return Err(bad("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(bad("day out of range"));
    }
    if hour > 23 {
        return Err(bad("hour out of range"));
    }
    if minute > 59 {
        return Err(bad("minute out of range"));
    }
    if second > 59 {
        return Err(bad("second out of range"));
    }
    let mut at = 19;
    let mut nanos: i64 = 0;
    if b.get(at) == Some(&b'.') {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(bad("want digits after '.'"));
        }
        for (i, d) in b[at + 1..at + 1 + digits].iter().take(9).enumerate() {
            nanos += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
        }
        at += 1 + digits;
    }
    let offset = match b.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let (oh, om) = (num(at + 1, at + 3)?, num(at + 4, at + 6)?);
            sep(at + 3, b":")?;
            if oh > 23 || om > 59 {
                return Err(bad("time zone offset out of range"));
            }
            at += 6;
            let secs = oh * 3600 + om * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return Err(bad("want a time zone: Z or an offset like +02:00")),
    };
    if at != b.len() {
        return Err(bad(&format!("extra text {:?}", &text[at..])));
    }
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).map_err(|_| bad("before 1970-01-01T00:00:00Z"))?;
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(nanos as u64))
        .ok_or_else(|| bad("too far in the future"))
}

/// A bool as Go's `strconv.ParseBool` reads it.
pub(crate) fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(text: &str) -> u128 {
        go_duration(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .as_nanos()
    }

    #[test]
    fn durations_parse_as_go_parses_them() {
        assert_eq!(ns("0"), 0);
        assert_eq!(ns("-0"), 0);
        assert_eq!(ns("+0"), 0);
        assert_eq!(ns("0s"), 0);
        assert_eq!(ns("5s"), 5_000_000_000);
        assert_eq!(ns("+5s"), 5_000_000_000);
        assert_eq!(ns("1.2ms"), 1_200_000);
        assert_eq!(ns("300us"), 300_000);
        assert_eq!(ns("300\u{b5}s"), 300_000);
        assert_eq!(ns("300\u{3bc}s"), 300_000);
        assert_eq!(ns("7ns"), 7);
        assert_eq!(ns("1h30m"), 5_400_000_000_000);
        assert_eq!(ns("1h30m15.5s"), 5_415_500_000_000);
        assert_eq!(ns("1.5h"), 5_400_000_000_000);
        assert_eq!(ns(".5s"), 500_000_000);
        assert_eq!(ns("1.s"), 1_000_000_000);
        assert_eq!(ns("1.000000001s"), 1_000_000_001);
        // Sub-nanosecond fractions are cut.
        assert_eq!(ns("1.9ns"), 1);
        assert_eq!(ns("0.0000000019s"), 1);
        // Many fraction digits stop counting, as Go's leadingFraction.
        assert_eq!(ns("1.00000000000000000000001s"), 1_000_000_000);
        // Go's largest duration, 2562047h47m16.854775807s.
        assert_eq!(ns("9223372036854775807ns"), i64::MAX as u128);
        assert_eq!(ns("2562047h47m16.854775807s"), i64::MAX as u128);
    }

    #[test]
    fn bad_durations_are_refused_with_go_s_messages() {
        let err = |text: &str| go_duration(text).unwrap_err();
        assert_eq!(err(""), r#"time: invalid duration """#);
        assert_eq!(err("-"), r#"time: invalid duration "-""#);
        assert_eq!(err("fast"), r#"time: invalid duration "fast""#);
        assert_eq!(err(".s"), r#"time: invalid duration ".s""#);
        assert_eq!(err("1"), r#"time: missing unit in duration "1""#);
        assert_eq!(err("1h2"), r#"time: missing unit in duration "1h2""#);
        assert_eq!(err("3d"), r#"time: unknown unit "d" in duration "3d""#);
        assert_eq!(err("1 s"), r#"time: unknown unit " s" in duration "1 s""#);
        assert_eq!(err("1S"), r#"time: unknown unit "S" in duration "1S""#);
        assert_eq!(
            err("9223372036854775808ns"),
            r#"time: invalid duration "9223372036854775808ns""#
        );
        assert_eq!(
            err("99999999999999999999s"),
            r#"time: invalid duration "99999999999999999999s""#
        );
        assert_eq!(err("3000000h"), r#"time: invalid duration "3000000h""#);
        assert_eq!(err("-1s"), r#"negative duration "-1s""#);
    }

    #[test]
    fn rfc3339_times_parse_to_unix_nanos() {
        let t = |text: &str| rfc3339_nanos(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t("1970-01-01T00:00:00Z"), 0);
        assert_eq!(t("2017-01-26T16:46:31Z"), 1_485_449_191_000_000_000);
        assert_eq!(t("2017-01-26T16:46:31.639875Z"), 1_485_449_191_639_875_000);
        assert_eq!(t("2017-01-26T16:46:31.6Z"), 1_485_449_191_600_000_000);
        assert_eq!(
            t("2017-01-26T16:46:31.123456789Z"),
            1_485_449_191_123_456_789
        );
        // Past nanoseconds, digits are cut.
        assert_eq!(
            t("2017-01-26T16:46:31.1234567899Z"),
            1_485_449_191_123_456_789
        );
        assert_eq!(t("2017-01-26T18:46:31+02:00"), 1_485_449_191_000_000_000);
        assert_eq!(t("2017-01-26T11:16:31-05:30"), 1_485_449_191_000_000_000);
        assert_eq!(t("2017-01-26t16:46:31z"), 1_485_449_191_000_000_000);
        // Leap days and the end of a leap year.
        assert_eq!(t("2024-02-29T00:00:00Z"), 1_709_164_800_000_000_000);
        assert_eq!(t("2000-12-31T23:59:59Z"), 978_307_199_000_000_000);
        assert_eq!(t("2100-03-01T00:00:00Z"), 4_107_542_400_000_000_000);
    }

    #[test]
    fn bad_times_are_refused() {
        for text in [
            "",
            "yesterday",
            "2017-01-26",
            "2017-01-26 16:46:31Z",
            "2017-01-26T16:46:31",
            "2017-01-26T16:46:31.Z",
            "2017-01-26T16:46:31+0200",
            "2017-01-26T16:46:31+02",
            "2017-01-26T16:46:31Zjunk",
            "2017-13-26T16:46:31Z",
            "2017-00-26T16:46:31Z",
            "2017-02-29T16:46:31Z",
            "2017-04-31T16:46:31Z",
            "2017-01-26T24:00:00Z",
            "2017-01-26T16:60:31Z",
            "2017-01-26T16:46:60Z",
            "2017-01-26T16:46:31+24:00",
            "17-01-26T16:46:31Z",
            "1969-12-31T23:59:59Z",
            "2600-01-01T00:00:00Z",
            "１７-01-26T16:46:31Z",
        ] {
            let err = rfc3339_nanos(text).expect_err(text);
            assert!(err.starts_with("parsing time "), "{text}: {err}");
        }
    }

    #[test]
    fn bools_parse_as_strconv_parse_bool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(go_bool(f), Some(false), "{f}");
        }
        for bad in ["", "yes", "tRUE", "2"] {
            assert_eq!(go_bool(bad), None, "{bad}");
        }
    }
}
