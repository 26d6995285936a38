//! `skein replay`: the spans topic written to ClickHouse again.
//!
//! In: `--from`, `--to` and `--partitions` as the user typed them. Out: the
//! replay run by [`skein_ingester::replay::replay`], a progress bar on
//! stdout while it runs (plain lines every few seconds when stdout is not a
//! terminal), and a summary on stdout.
//!
//! Positions are `earliest`, `latest`, an offset (`1200`), or a time in
//! RFC 3339 (`2026-11-24T00:00:00Z`, `2026-11-24T01:00:00.5+01:00`) or a
//! bare date (`2026-11-24`, midnight UTC). A time is compared with the Kafka
//! timestamps of the messages (when the collector published them), not with
//! the spans' start times.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::progress::{count, Display};
use anyhow::{bail, Context, Result};
use skein_config::Topology;
use skein_ingester::replay::{Position, Progress, ReplaySpec};

/// Parses a position: `earliest`, `latest`, an offset, or an RFC 3339 time.
pub fn parse_position(s: &str) -> Result<Position> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("earliest") {
        return Ok(Position::Earliest);
    }
    if s.eq_ignore_ascii_case("latest") {
        return Ok(Position::Latest);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let offset = s
            .parse::<i64>()
            .with_context(|| format!("offset {s:?} is too large"))?;
        return Ok(Position::Offset(offset));
    }
    if let Some(time) = parse_rfc3339(s) {
        return time.map(Position::Time);
    }
    bail!(
        "position {s:?} not understood: use earliest, latest, an offset (e.g. 1200) \
         or an RFC 3339 time (e.g. 2026-11-24T00:00:00Z)"
    )
}

/// Parses `--partitions`: comma-separated partition numbers, e.g. `0,2,5`.
pub fn parse_partitions(s: &str) -> Result<Vec<i32>> {
    let mut partitions = Vec::new();
    for part in s.split(',').map(str::trim) {
        let p: i32 = part
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .with_context(|| format!("partition {part:?} is not a partition number"))?;
        partitions.push(p);
    }
    partitions.sort_unstable();
    partitions.dedup();
    Ok(partitions)
}

/// Parses an RFC 3339 date-time (or a bare date, midnight UTC). `None`: it
/// does not look like one; `Some(Err)`: it does, but is not a valid time.
fn parse_rfc3339(s: &str) -> Option<Result<SystemTime>> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    // The date must be there for this to be a time at all.
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    Some(date_time(s, b, year, month, day, digits))
}

fn date_time(
    s: &str,
    b: &[u8],
    year: i64,
    month: i64,
    day: i64,
    digits: impl Fn(std::ops::Range<usize>) -> Option<i64>,
) -> Result<SystemTime> {
    let invalid = || format!("time {s:?} is not a valid RFC 3339 time (e.g. 2026-11-24T00:00:00Z)");
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        bail!("{}: no such date", invalid());
    }
    let (mut seconds, mut nanos) = (days_from_civil(year, month, day) * 86_400, 0u32);
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') {
            bail!(invalid());
        }
        let (Some(hour), Some(minute), Some(second)) =
            (digits(11..13), digits(14..16), digits(17..19))
        else {
            bail!(invalid());
        };
        if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
            bail!(invalid());
        }
        // 60 is a leap second; it counts as the next minute's first.
        if hour > 23 || minute > 59 || second > 60 {
            bail!("{}: no such time of day", invalid());
        }
        seconds += hour * 3600 + minute * 60 + second;
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                bail!(invalid());
            }
            let mut fraction: String = s[start..i.min(start + 9)].to_owned();
            while fraction.len() < 9 {
                fraction.push('0');
            }
            nanos = fraction.parse().with_context(invalid)?;
        }
        match b.get(i) {
            Some(b'Z' | b'z') if b.len() == i + 1 => {}
            Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
                let (Some(h), Some(m)) = (digits(i + 1..i + 3), digits(i + 4..i + 6)) else {
                    bail!(invalid());
                };
                if h > 23 || m > 59 {
                    bail!("{}: no such UTC offset", invalid());
                }
                let offset = h * 3600 + m * 60;
                // Local time minus its offset is UTC.
                seconds -= if *sign == b'+' { offset } else { -offset };
            }
            None => bail!("{}: add a UTC offset, e.g. Z", invalid()),
            _ => bail!(invalid()),
        }
    }
    let Ok(seconds) = u64::try_from(seconds) else {
        bail!("time {s:?} is before 1970");
    };
    Ok(UNIX_EPOCH + Duration::new(seconds, nanos))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Runs `skein replay` and prints its summary.
pub async fn run(
    topology: &Topology,
    from: &str,
    to: Option<&str>,
    partitions: Option<&str>,
) -> Result<()> {
    let spec = ReplaySpec {
        from: parse_position(from).context("--from")?,
        to: to.map(parse_position).transpose().context("--to")?,
        partitions: partitions
            .map(parse_partitions)
            .transpose()
            .context("--partitions")?,
    };
    let topic = &topology.topics.spans.name;
    let table = format!("{}.spans", topology.storage.clickhouse.database);
    println!("replaying kafka topic {topic} into clickhouse {table}");
    let mut display = Display::new("replay", "messages", std::io::stdout().is_terminal());
    let summary = skein_ingester::replay::replay(topology, spec, |p| {
        display.show(p.messages_done, p.messages_total, describe(p), p.elapsed);
    })
    .await
    .context("replay")?;
    let elapsed = display.finish();
    println!(
        "replayed {}, {} written in {:.1} s ({:.0} spans/s)",
        count(summary.messages, "message"),
        count(summary.spans, "span"),
        elapsed.as_secs_f64(),
        rate(summary.spans, elapsed),
    );
    for (partition, from, to) in &summary.per_partition {
        if from == to {
            println!("  partition {partition}: offset {from}, nothing to read");
        } else {
            println!("  partition {partition}: offsets {from} to {to} (exclusive)");
        }
    }
    if summary.undecodable > 0 {
        println!(
            "{} did not decode and {} skipped (logged above with partition and offset)",
            count(summary.undecodable, "message"),
            if summary.undecodable == 1 {
                "was"
            } else {
                "were"
            }
        );
    }
    Ok(())
}

fn rate(spans: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        spans as f64 / seconds
    } else {
        0.0
    }
}

fn describe(p: &Progress) -> String {
    format!(
        "{}, {:.0} spans/s, {} left",
        count(p.spans_written, "span"),
        rate(p.spans_written, p.elapsed),
        count(p.messages_total.saturating_sub(p.messages_done), "message")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> u128 {
        match parse_position(s).unwrap() {
            Position::Time(t) => t.duration_since(UNIX_EPOCH).unwrap().as_nanos(),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn parses_named_positions_and_offsets() {
        assert_eq!(parse_position("earliest").unwrap(), Position::Earliest);
        assert_eq!(parse_position("LATEST").unwrap(), Position::Latest);
        assert_eq!(parse_position("0").unwrap(), Position::Offset(0));
        assert_eq!(parse_position(" 1200 ").unwrap(), Position::Offset(1200));
        assert!(parse_position("99999999999999999999").is_err());
        for bad in ["", "-5", "+5", "1.5", "12abc", "yesterday", "earliest-ish"] {
            assert!(parse_position(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parses_rfc3339_times_in_utc_and_with_offsets() {
        const S: u128 = 1_000_000_000;
        assert_eq!(time("1970-01-01T00:00:00Z"), 0);
        assert_eq!(time("2026-11-24T00:00:00Z"), 1_795_478_400 * S);
        assert_eq!(time("2026-11-24"), 1_795_478_400 * S);
        assert_eq!(time("2026-11-24t00:00:00z"), 1_795_478_400 * S);
        assert_eq!(time("2026-11-24 00:00:00Z"), 1_795_478_400 * S);
        assert_eq!(time("2026-11-24T01:30:00+01:30"), 1_795_478_400 * S);
        assert_eq!(time("2026-11-23T19:00:00-05:00"), 1_795_478_400 * S);
        assert_eq!(time("2026-11-24T00:00:00.5Z"), 1_795_478_400 * S + S / 2);
        assert_eq!(
            time("2026-11-24T00:00:00.123456789123Z"),
            1_795_478_400 * S + 123_456_789
        );
        // 2017-01-26T16:46:31.639875Z, the conformance fixtures' day.
        assert_eq!(
            time("2017-01-26T16:46:31.639875Z"),
            1_485_449_191_639_875_000
        );
        assert_eq!(time("2024-02-29T00:00:00Z"), 1_709_164_800 * S);
    }

    #[test]
    fn refuses_times_that_are_not_valid() {
        for bad in [
            "2026-11-24T00:00:00",       // no offset
            "2026-13-01T00:00:00Z",      // month
            "2026-02-29T00:00:00Z",      // not a leap year
            "2026-11-31T00:00:00Z",      // day
            "2026-11-24T24:00:00Z",      // hour
            "2026-11-24T00:60:00Z",      // minute
            "2026-11-24T00:00:00.Z",     // empty fraction
            "2026-11-24T00:00:00+0100",  // offset without colon
            "2026-11-24T00:00:00+24:00", // offset hour
            "2026-11-24T00:00Z",         // no seconds
            "2026-11-24X00:00:00Z",      // separator
            "2026-11-24T00:00:00Zjunk",
            "1969-12-31T23:59:59Z", // before the epoch
        ] {
            assert!(parse_position(bad).is_err(), "{bad:?} accepted");
        }
        let message = parse_position("2026-11-24T00:00:00")
            .unwrap_err()
            .to_string();
        assert!(message.contains("UTC offset"), "{message}");
    }

    #[test]
    fn parses_partition_lists() {
        assert_eq!(parse_partitions("0,2,5").unwrap(), [0, 2, 5]);
        assert_eq!(parse_partitions(" 5, 0 ,5").unwrap(), [0, 5]);
        assert_eq!(parse_partitions("3").unwrap(), [3]);
        for bad in ["", "0,,1", "a", "-1", "1;2"] {
            assert!(parse_partitions(bad).is_err(), "{bad:?} accepted");
        }
    }
}
