//! Loading synthetic spans into ClickHouse through the store's own writer.
//!
//! In: a ClickHouse client, a database, how many spans it should hold, a
//! batch size and a seed. Out: the database with skein's schema (every
//! migration, materialized views included) holding at least that many
//! spans, written as the ingester writes them ([`SpanRow`]s through
//! [`SpanWriter`]), and a [`Report`] of what it took; progress lines on
//! stderr meanwhile.
//!
//! Traces are written in the order of their start times, spread evenly
//! over `window` before now, as an ingester writes live traffic: each
//! batch covers a slice of the window.
//!
//! Guarantees: memory stays bounded whatever the span count: a generator
//! thread builds the next batch while one is written, and never more than
//! [`BATCHES_IN_MEMORY`] batches exist at once. A database that already holds enough spans is
//! left as it is; one that holds fewer gets the rest from trace indexes
//! after the ones it has, so no trace is written twice.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clickhouse::Client;
use skein_store::{SpanRow, SpanWriter};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::synth::{self, Generator};

/// What to load.
#[derive(Debug, Clone)]
pub struct Options {
    /// The database should hold at least this many spans.
    pub spans: u64,
    /// Rows per `INSERT` (whole traces, so a batch may be a little larger).
    pub batch_rows: usize,
    /// Seed of the synthetic traces.
    pub seed: u64,
    /// Trace starts are spread over this long before now, in order.
    pub window: Duration,
}

/// What loading did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Spans the database held before.
    pub spans_before: u64,
    /// Spans written now (0: loading was skipped).
    pub spans_written: u64,
    /// Traces written now.
    pub traces_written: u64,
    /// `INSERT`s made.
    pub batches: u64,
    /// From the first generated trace to the last acknowledged batch.
    pub elapsed: Duration,
    /// Time spent in `INSERT`s (the rest of `elapsed` waited for the generator).
    pub writing: Duration,
}

impl Report {
    /// Spans written per second.
    pub fn spans_per_second(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.spans_written as f64 / self.elapsed.as_secs_f64()
        }
    }
}

/// A batch of whole traces.
struct Batch {
    rows: Vec<SpanRow>,
    traces: u64,
    /// Held while the batch exists: one of [`BATCHES_IN_MEMORY`].
    _permit: OwnedSemaphorePermit,
}

/// Batches in memory at once: one being written, the next being built.
pub const BATCHES_IN_MEMORY: usize = 2;

/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Attempts per batch when ClickHouse reports a retryable error.
const WRITE_ATTEMPTS: u32 = 5;

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A count from a `SELECT count() ...`.
async fn count(client: &Client, sql: &str) -> Result<u64> {
    client
        .query(sql)
        .fetch_one::<u64>()
        .await
        .with_context(|| format!("clickhouse: {sql}"))
}

/// Applies the schema to `database` and fills it up to `options.spans`.
pub async fn load(client: &Client, database: &str, options: &Options) -> Result<Report> {
    let applied = skein_store::schema::apply(client, database)
        .await
        .with_context(|| format!("applying the schema to {database}"))?;
    let spans_before = count(client, &format!("SELECT count() FROM {database}.spans")).await?;
    let mut report = Report {
        spans_before,
        ..Report::default()
    };
    if spans_before >= options.spans {
        eprintln!(
            "{database} already holds {spans_before} spans (>= {}): not loading",
            options.spans
        );
        return Ok(report);
    }
    // Each trace has one trace_bounds row per INSERT, and a trace is never
    // split between INSERTs here, so this is the number of traces written.
    let first_index = count(
        client,
        &format!("SELECT uniqExact(trace_id) FROM {database}.trace_bounds"),
    )
    .await?;
    let target = options.spans - spans_before;
    if spans_before > 0 {
        eprintln!(
            "{database} holds {spans_before} spans: adding {target} from trace {first_index} on"
        );
    }
    let writer = SpanWriter::new(client.clone(), database).with_capabilities(applied.capabilities);
    let window = u64::try_from(options.window.as_nanos())
        .context("window too long")?
        .checked_sub(synth::MAX_TRACE_NANO)
        .context("window shorter than a trace")?;
    let timeline = Timeline {
        first_unix_nano: now_unix_nano() - synth::MAX_TRACE_NANO - window,
        window_nano: window,
        spans: target,
    };
    let generator = Generator::new(options.seed);
    let (tx, mut rx) = mpsc::channel::<Batch>(1);
    let permits = Arc::new(Semaphore::new(BATCHES_IN_MEMORY));
    let runtime = tokio::runtime::Handle::current();
    let batch_rows = options.batch_rows.max(1);
    let producer = std::thread::Builder::new()
        .name("generate".into())
        .spawn(move || {
            let permit = || runtime.block_on(Arc::clone(&permits).acquire_owned()).ok();
            generate(&generator, first_index, &timeline, batch_rows, permit, &tx);
        })
        .context("starting the generator thread")?;

    let started = Instant::now();
    let mut last_line = started;
    let mut shown = 0;
    while let Some(batch) = rx.recv().await {
        let t = Instant::now();
        write(&writer, &batch.rows).await?;
        report.writing += t.elapsed();
        report.spans_written += batch.rows.len() as u64;
        report.traces_written += batch.traces;
        report.batches += 1;
        drop(batch);
        if last_line.elapsed() >= PROGRESS_EVERY {
            last_line = Instant::now();
            shown = report.spans_written;
            progress(&report, target, started.elapsed());
        }
    }
    report.elapsed = started.elapsed();
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?;
    if shown != report.spans_written {
        progress(&report, target, report.elapsed);
    }
    Ok(report)
}

/// When the traces start: evenly over the window, in the order they are
/// made, so that `spans` spans fill it.
struct Timeline {
    first_unix_nano: u64,
    window_nano: u64,
    spans: u64,
}

impl Timeline {
    /// The start of the trace made after `made` spans.
    fn start(&self, made: u64) -> u64 {
        let share = made.min(self.spans) as f64 / self.spans.max(1) as f64;
        self.first_unix_nano + (self.window_nano as f64 * share) as u64
    }
}

/// Makes batches of whole traces until the timeline's spans are made or
/// the receiver is gone.
/// `permit` waits until a batch may be built.
fn generate(
    generator: &Generator,
    first_index: u64,
    timeline: &Timeline,
    batch_rows: usize,
    permit: impl Fn() -> Option<OwnedSemaphorePermit>,
    tx: &mpsc::Sender<Batch>,
) {
    let mut made = 0u64;
    let mut index = first_index;
    let target = timeline.spans;
    while made < target {
        let Some(permit) = permit() else { return };
        let mut batch = Batch {
            rows: Vec::with_capacity(batch_rows + 64),
            traces: 0,
            _permit: permit,
        };
        while batch.rows.len() < batch_rows && made < target {
            let trace = generator.trace(index, timeline.start(made));
            index += 1;
            for flat in skein_model::flat::flatten(&trace) {
                // Received a few milliseconds after the span ended.
                let received = flat.start_unix_nano + flat.duration_nano + 3_000_000;
                batch.rows.push(SpanRow::new(flat, received));
                made += 1;
            }
            batch.traces += 1;
        }
        if tx.blocking_send(batch).is_err() {
            return;
        }
    }
}

/// Writes a batch, retrying what ClickHouse says may pass.
async fn write(writer: &SpanWriter, rows: &[SpanRow]) -> Result<()> {
    let mut attempt = 1;
    loop {
        match writer.write(rows).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < WRITE_ATTEMPTS => {
                eprintln!("writing a batch failed (attempt {attempt}), retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e).context("writing a batch of spans"),
        }
    }
}

fn progress(report: &Report, target: u64, elapsed: Duration) {
    let rate = report.spans_written as f64 / elapsed.as_secs_f64().max(1e-9);
    let left = target.saturating_sub(report.spans_written);
    eprintln!(
        "loaded {:>10} / {target} spans ({:>3.0}%), {:>7.0} spans/s, {:>6.1} s{}",
        report.spans_written,
        100.0 * report.spans_written as f64 / target as f64,
        rate,
        elapsed.as_secs_f64(),
        if left > 0 && rate > 0.0 {
            format!(", ~{:.0} s left", left as f64 / rate)
        } else {
            String::new()
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_spreads_starts_evenly_and_stays_inside_the_window() {
        let t = Timeline {
            first_unix_nano: 1_000,
            window_nano: 100,
            spans: 10,
        };
        assert_eq!(t.start(0), 1_000);
        assert_eq!(t.start(5), 1_050);
        assert_eq!(t.start(10), 1_100);
        assert_eq!(
            t.start(12),
            1_100,
            "a last trace that overshoots stays inside"
        );
    }
}
