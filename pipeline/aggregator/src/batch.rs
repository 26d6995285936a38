//! The dependency graph in batch, from spans already in ClickHouse: for
//! backfill, and as Jaeger's spark-dependencies job computes it.
//!
//! In: a topology and a window `[from, to)` in ns since the epoch. Out:
//! [`rebuild`] writes the links of every trace with a span that started in
//! the window (the window's start rounded down to its minute) through
//! [`DependencyWriter`], whole traces, spans outside the window included;
//! [`graph`] computes the edges the query API would show for the window,
//! in memory, writing nothing.
//!
//! Guarantees: the links are those the streaming aggregator derives
//! ([`links`]), with the same link IDs, so a rebuild over a window the
//! stream wrote (or a second rebuild) counts no call twice. Memory is
//! bounded by a chunk of about [`skein_store::dependencies::TRACES_PER_CHUNK`]
//! traces (their spans and links), however long the window: the window is
//! cut into chunks of trace IDs from a sample, and each chunk is read,
//! turned into links and written before the next. A write or read that
//! fails in a way a retry can help is tried again a few times.
//!
//! [`links`]: crate::links::links

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use skein_config::Topology;
use skein_store::dependencies::TRACES_PER_CHUNK;
use skein_store::{DependencyLink, DependencyWriter, SpanReader, TraceChunk};

use crate::links::{bucket_of, into_buckets, links, CallSpan};

/// The graph: (parent, child) → (calls, errors).
pub type Graph = BTreeMap<(String, String), (u64, u64)>;

/// How far a rebuild is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Chunks of trace IDs done.
    pub chunks_done: usize,
    /// Chunks in all.
    pub chunks_total: usize,
    /// Traces read so far.
    pub traces: u64,
    /// Spans read so far.
    pub spans: u64,
    /// Links written so far.
    pub links: u64,
    /// Time since the rebuild started.
    pub elapsed: Duration,
}

/// What a rebuild did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildSummary {
    /// Chunks of trace IDs read.
    pub chunks: usize,
    /// Traces read.
    pub traces: u64,
    /// Spans read.
    pub spans: u64,
    /// Links written.
    pub links: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Links written per `INSERT`.
const LINKS_PER_WRITE: usize = 100_000;

/// Attempts at a read or write a retry can help.
const ATTEMPTS: u32 = 5;

async fn retry<T, F, Fut>(what: &str, mut op: F) -> skein_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = skein_store::Result<T>>,
{
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "{what} failed; trying again in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// A client of the topology's ClickHouse and a reader of its database.
fn reader(topology: &Topology) -> (clickhouse::Client, SpanReader) {
    let ch = &topology.storage.clickhouse;
    let client = skein_store::client(ch);
    let reader = SpanReader::new(client.clone(), &ch.database);
    (client, reader)
}

/// The links of one chunk's traces, with how many traces and spans it had.
async fn chunk_links(
    reader: &SpanReader,
    from: u64,
    to: u64,
    chunk: &TraceChunk,
) -> skein_store::Result<(Vec<DependencyLink>, u64, u64)> {
    let traces = retry("reading a chunk of traces", || {
        reader.call_spans(from, to, chunk)
    })
    .await?;
    let (mut out, mut spans) = (Vec::new(), 0u64);
    let n = traces.len() as u64;
    for (trace_id, rows) in traces {
        spans += rows.len() as u64;
        let calls: Vec<CallSpan> = rows.into_iter().map(CallSpan::from).collect();
        out.extend(links(&trace_id, &calls));
    }
    Ok((out, n, spans))
}

/// Derives the links of every trace with a span that started in
/// `[from, to)` (ns; `from` rounded down to its minute) and writes them,
/// applying the schema first. `progress` is called after each chunk.
pub async fn rebuild(
    topology: &Topology,
    from: u64,
    to: u64,
    mut progress: impl FnMut(&Progress),
) -> skein_store::Result<RebuildSummary> {
    let started = Instant::now();
    let (client, reader) = reader(topology);
    let database = &topology.storage.clickhouse.database;
    skein_store::schema::apply(&client, database).await?;
    let writer = DependencyWriter::new(client, database);
    let bucket = topology.aggregator.bucket_nanos();
    let from = bucket_of(from, bucket);
    let chunks = retry("sampling trace ids", || {
        reader.trace_chunks(from, to, TRACES_PER_CHUNK)
    })
    .await?;
    let mut p = Progress {
        chunks_total: chunks.len(),
        ..Progress::default()
    };
    progress(&p);
    for chunk in &chunks {
        let (mut found, traces, spans) = chunk_links(&reader, from, to, chunk).await?;
        into_buckets(&mut found, bucket);
        for batch in found.chunks(LINKS_PER_WRITE) {
            retry("writing dependency links", || writer.write(batch)).await?;
        }
        p.chunks_done += 1;
        p.traces += traces;
        p.spans += spans;
        p.links += found.len() as u64;
        p.elapsed = started.elapsed();
        progress(&p);
    }
    tracing::info!(
        from,
        to,
        chunks = p.chunks_total,
        traces = p.traces,
        spans = p.spans,
        links = p.links,
        "rebuilt dependency links"
    );
    Ok(RebuildSummary {
        chunks: p.chunks_total,
        traces: p.traces,
        spans: p.spans,
        links: p.links,
        elapsed: started.elapsed(),
    })
}

/// The graph of `[from, to)` computed from the stored spans, writing
/// nothing: the calls whose minute starts in the range (the minute of
/// `from` whole), as [`SpanReader::dependencies`] sums them once the links
/// of the same traces are written.
pub async fn graph(topology: &Topology, from: u64, to: u64) -> skein_store::Result<Graph> {
    let (_, reader) = reader(topology);
    let bucket = topology.aggregator.bucket_nanos();
    let from = bucket_of(from, bucket);
    let mut graph = Graph::new();
    for chunk in retry("sampling trace ids", || {
        reader.trace_chunks(from, to, TRACES_PER_CHUNK)
    })
    .await?
    {
        let (found, _, _) = chunk_links(&reader, from, to, &chunk).await?;
        add(&mut graph, &found, from, to, bucket);
    }
    Ok(graph)
}

/// Adds the links whose minute starts in `[from, to)` to `graph`; each
/// link is a distinct call ([`links`] gives every call once).
fn add(graph: &mut Graph, found: &[DependencyLink], from: u64, to: u64, bucket: u64) {
    for l in found {
        let minute = bucket_of(l.start_unix_nano, bucket);
        if minute < bucket_of(from, bucket) || minute >= to {
            continue;
        }
        let edge = graph
            .entry((l.parent.clone(), l.child.clone()))
            .or_default();
        edge.0 += 1;
        edge.1 += u64::from(l.error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::links::BUCKET_NANOS;

    fn link(parent: &str, child: &str, start: u64, error: u8) -> DependencyLink {
        DependencyLink {
            parent: parent.into(),
            child: child.into(),
            link_id: start,
            start_unix_nano: start,
            duration_nano: 1,
            error,
        }
    }

    #[test]
    fn the_graph_counts_calls_in_minutes_that_start_in_the_range() {
        let m = BUCKET_NANOS;
        let found = [
            link("a", "b", 10 * m - 1, 0), // the minute before
            link("a", "b", 10 * m + 5, 1), // in the minute of `from`
            link("a", "b", 12 * m, 0),
            link("a", "c", 13 * m + 1, 1), // its minute starts before `to`
            link("a", "c", 14 * m, 0),     // at `to`: out
        ];
        let mut graph = Graph::new();
        add(&mut graph, &found, 10 * m + 30, 13 * m + 2, m);
        assert_eq!(
            graph,
            Graph::from([
                (("a".into(), "b".into()), (2, 1)),
                (("a".into(), "c".into()), (1, 1)),
            ])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_what_a_retry_can_help() {
        let transient = || skein_store::Error::ClickHouse {
            op: "x",
            source: clickhouse::error::Error::TimedOut,
        };
        let mut calls = 0;
        let result: skein_store::Result<u8> = retry("op", || {
            calls += 1;
            let fail = calls < 3;
            async move {
                if fail {
                    Err(transient())
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!((result.unwrap(), calls), (7, 3));
        let mut calls = 0;
        let result: skein_store::Result<u8> = retry("op", || {
            calls += 1;
            async { Err(skein_store::Error::Version("x".into())) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "permanent errors are not retried");
        let mut calls = 0;
        let result: skein_store::Result<u8> = retry("op", || {
            calls += 1;
            async { Err(transient()) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, ATTEMPTS);
    }
}
