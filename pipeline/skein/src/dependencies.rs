//! `skein dependencies rebuild`: the dependency graph of a window computed
//! again from the spans in ClickHouse.
//!
//! In: `--from` and `--to` as the user typed them, RFC 3339 times (or bare
//! dates, midnight UTC) compared with the spans' start times. Out: the
//! rebuild run by [`skein_aggregator::batch::rebuild`], a progress bar on
//! stdout while it runs (plain lines every few seconds when stdout is not a
//! terminal), and a summary on stdout.
//!
//! Running it again, or over a window the streaming aggregator wrote,
//! changes no count: every call is written with the same link ID.

use std::io::IsTerminal;
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};
use skein_aggregator::batch::Progress;
use skein_config::Topology;
use skein_ingester::replay::Position;

use crate::progress::{count, Display};

/// Parses a time: RFC 3339, or a bare date (midnight UTC); ns since the epoch.
pub fn parse_time(s: &str) -> Result<u64> {
    match crate::replay::parse_position(s) {
        Ok(Position::Time(t)) => {
            let since = t.duration_since(UNIX_EPOCH).context("time before 1970")?;
            u64::try_from(since.as_nanos()).context("time after 2554")
        }
        Err(e) if s.trim().as_bytes().get(4) == Some(&b'-') => Err(e),
        _ => bail!(
            "time {s:?} not understood: use an RFC 3339 time (e.g. 2026-11-24T00:00:00Z) \
             or a date (2026-11-24)"
        ),
    }
}

/// Runs `skein dependencies rebuild` and prints its summary.
pub async fn rebuild(topology: &Topology, from: &str, to: &str) -> Result<()> {
    let from_ns = parse_time(from).context("--from")?;
    let to_ns = parse_time(to).context("--to")?;
    if from_ns >= to_ns {
        bail!("--from {from} is not before --to {to}");
    }
    let db = &topology.storage.clickhouse.database;
    println!(
        "rebuilding dependency links of traces with spans from {from} to {to} into clickhouse {db}.dependencies"
    );
    let mut display = Display::new("rebuild", "chunks", std::io::stdout().is_terminal());
    let summary = skein_aggregator::batch::rebuild(topology, from_ns, to_ns, |p| {
        display.show(
            p.chunks_done as u64,
            p.chunks_total as u64,
            describe(p),
            p.elapsed,
        );
    })
    .await
    .context("dependencies rebuild")?;
    display.finish();
    let seconds = summary.elapsed.as_secs_f64();
    println!(
        "rebuilt {} from {} of {} in {:.1} s ({:.0} spans/s)",
        count(summary.links, "link"),
        count(summary.spans, "span"),
        count(summary.traces, "trace"),
        seconds,
        if seconds > 0.0 {
            summary.spans as f64 / seconds
        } else {
            0.0
        },
    );
    Ok(())
}

fn describe(p: &Progress) -> String {
    format!(
        "{}, {}, {}",
        count(p.traces, "trace"),
        count(p.spans, "span"),
        count(p.links, "link")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_and_dates_and_nothing_else() {
        const S: u64 = 1_000_000_000;
        assert_eq!(
            parse_time("2026-11-24T00:00:00Z").unwrap(),
            1_795_478_400 * S
        );
        assert_eq!(parse_time("2026-11-24").unwrap(), 1_795_478_400 * S);
        assert_eq!(
            parse_time("2026-11-24T01:00:00.5+01:00").unwrap(),
            1_795_478_400 * S + S / 2
        );
        for bad in ["earliest", "latest", "1200", "", "yesterday"] {
            let e = parse_time(bad).unwrap_err().to_string();
            assert!(e.contains("not understood"), "{bad:?}: {e}");
        }
        let e = format!("{:#}", parse_time("2026-11-24T00:00:00").unwrap_err());
        assert!(e.contains("UTC offset"), "{e}");
    }
}
