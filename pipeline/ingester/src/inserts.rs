//! Inserts: the batches of every partition worker, written to ClickHouse
//! together.
//!
//! In: from each partition worker, a batch's encoded rows and its
//! deduplication token. Out: `INSERT`s, each carrying every batch that was
//! waiting when one of the `ingester.workers` write slots was free (and
//! those that came within [`GATHER`] of the first), in one body; each
//! batch's outcome back to its worker. The batches of all partitions come
//! due at the same instants ([`Linger`]), so at a steady rate one `INSERT`
//! carries a batch of each.
//!
//! Why: ClickHouse makes a part of every `INSERT` in `spans` and in each
//! table its materialized views fill (three more), then merges them, on
//! the cores the pipeline shares; with a write per partition batch, 20,000
//! spans/s on 6 partitions made 12 `INSERT`s a second of ~1,700 rows,
//! which took 0.33 s each on average and put the end-to-end p99 at 2.1 to
//! 2.5 s on the 2-core machine of the README.
//!
//! Guarantees: a worker's write succeeds only once ClickHouse acknowledged
//! the `INSERT` that carried its batch. A retryable failure is retried with
//! backoff while any of the insert's workers still waits for it; one that
//! ClickHouse refuses for good is tried again batch by batch, so only the
//! batches it refuses see the refusal (their workers then write them
//! message by message). A worker has one write in flight, so an insert
//! never holds two batches of a partition nor reorders one.

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use bytes::Bytes;
use skein_store::SpanWriter;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::metrics as m;
use crate::{Error, Result};

/// How long an insert that has its first batch waits for others that came
/// due at the same instant: their workers' timers fire together, but on a
/// busy machine the workers may run some milliseconds apart.
pub const GATHER: Duration = Duration::from_millis(10);

/// When the batches of every partition come due: their linger ends on a
/// clock shared by the process, at the first multiple of the linger after
/// the batch's first message (a span waits at most the linger, half of it
/// on average), so that batches started at different times are due
/// together and go in one `INSERT`.
#[derive(Debug, Clone, Copy)]
pub struct Linger {
    since: Instant,
    every: Duration,
}

impl Linger {
    /// A clock ticking every `every` from now.
    pub fn new(every: Duration) -> Self {
        Self::since(Instant::now(), every)
    }

    /// A clock ticking every `every` from `since`.
    pub fn since(since: Instant, every: Duration) -> Self {
        Self { since, every }
    }

    /// When a batch whose first message came at `started` is due: the
    /// first tick after it (at `started` when the linger is zero).
    pub fn due(&self, started: Instant) -> Instant {
        if self.every.is_zero() {
            return started;
        }
        let every = self.every.as_nanos();
        let ticks = started.saturating_duration_since(self.since).as_nanos() / every + 1;
        u64::try_from(ticks * every)
            .ok()
            .and_then(|after| self.since.checked_add(Duration::from_nanos(after)))
            .unwrap_or(started + self.every)
    }
}

/// What the `INSERT` that carried a batch held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    /// Batches in it, this one included.
    pub batches: usize,
}

/// Hands batches to the task that writes them; cloned for every worker.
#[derive(Clone)]
pub struct Inserts {
    queue: mpsc::UnboundedSender<Pending>,
}

/// A batch waiting for its insert.
struct Pending {
    rows: Bytes,
    token: String,
    done: oneshot::Sender<Result<Carried, skein_store::Error>>,
}

impl Inserts {
    /// Starts the task that writes what workers hand over: at most
    /// `slots` `INSERT`s at once, each of at most `max_bytes` unless one
    /// batch alone is larger. The task ends when every clone of the
    /// returned `Inserts` is dropped (an insert under way ends on its own).
    pub fn start(writer: SpanWriter, slots: usize, max_bytes: usize, gather: Duration) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(slots.max(1)));
        tokio::spawn(run(writer, pending, slots, max_bytes, gather));
        Self { queue }
    }

    /// Writes `rows` (whole RowBinary rows) in an `INSERT` with the other
    /// batches due now, their tokens joined for deduplication (`token`
    /// must name this batch's content, see
    /// [`SpanWriter::write_with_token`]); returns once ClickHouse
    /// acknowledged it.
    pub async fn write(&self, rows: Bytes, token: String) -> Result<Carried> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Pending { rows, token, done })
            .map_err(|_| Error::InsertsStopped)?;
        outcome
            .await
            .map_err(|_| Error::InsertsStopped)?
            .map_err(Error::from)
    }
}

async fn run(
    writer: SpanWriter,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    slots: Arc<Semaphore>,
    max_bytes: usize,
    gather: Duration,
) {
    // A batch that did not fit in the last insert: the next one's first.
    let mut left = None;
    loop {
        // While every slot is taken, batches wait in the queue: the next
        // insert takes them all (ClickHouse slower, inserts larger).
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let first = match left.take() {
            Some(first) => first,
            None => match pending.recv().await {
                Some(first) => first,
                None => break,
            },
        };
        let mut bytes = first.rows.len();
        let mut group = vec![first];
        let until = Instant::now() + gather;
        while bytes < max_bytes {
            match tokio::time::timeout_at(until, pending.recv()).await {
                Ok(Some(next)) if bytes + next.rows.len() > max_bytes => {
                    left = Some(next);
                    break;
                }
                Ok(Some(next)) => {
                    bytes += next.rows.len();
                    group.push(next);
                }
                Ok(None) | Err(_) => break,
            }
        }
        tokio::spawn(insert(writer.clone(), group, slot));
    }
}

/// Writes `group` as one `INSERT` and tells each batch's worker how it
/// went; the slot is free again when it returns.
async fn insert(writer: SpanWriter, group: Vec<Pending>, _slot: OwnedSemaphorePermit) {
    metrics::counter!(m::INSERTS).increment(1);
    metrics::histogram!(m::INSERT_BATCHES).record(group.len() as f64);
    let carried = Carried {
        batches: group.len(),
    };
    match written(&writer, &group).await {
        Ok(()) => group
            .into_iter()
            .for_each(|pending| reply(pending, Ok(carried))),
        Err(e) if group.len() > 1 && !e.is_retryable() => {
            tracing::warn!(batches = group.len(), error = %e, "clickhouse refused an insert of several batches; writing them one by one");
            for pending in group {
                let alone = written(&writer, std::slice::from_ref(&pending)).await;
                reply(pending, alone.map(|()| Carried { batches: 1 }));
            }
        }
        // Refused for good (the group is one batch), or a retryable
        // failure no worker waits for any more (retrying stops only then).
        Err(e) => {
            if let Some(first) = group.into_iter().next() {
                reply(first, Err(e));
            }
        }
    }
}

/// Tells a batch's worker how its write went, having let go of its rows
/// first: the worker takes their room back for its next batch only if
/// nothing else holds them.
fn reply(pending: Pending, outcome: Result<Carried, skein_store::Error>) {
    let Pending { rows, token, done } = pending;
    drop((rows, token));
    let _ = done.send(outcome);
}

/// One `INSERT` of `group`'s rows, retried with backoff while the failure
/// is retryable and a worker still waits.
async fn written(writer: &SpanWriter, group: &[Pending]) -> Result<(), skein_store::Error> {
    let parts: Vec<Bytes> = group.iter().map(|p| p.rows.clone()).collect();
    let token = group
        .iter()
        .map(|p| p.token.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let write = || writer.write_encoded_parts(&parts, Some(&token));
    write
        .retry(crate::write_backoff())
        .when(|e: &skein_store::Error| {
            e.is_retryable() && group.iter().any(|p| !p.done.is_closed())
        })
        .notify(|e, wait| {
            metrics::counter!(m::WRITE_RETRIES).increment(1);
            tracing::warn!(batches = group.len(), error = %e, ?wait, "clickhouse write failed; retrying");
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_due_at_the_first_tick_after_their_first_message() {
        let since = Instant::now();
        let clock = Linger::since(since, Duration::from_millis(500));
        let at = |ms: u64| since + Duration::from_millis(ms);
        assert_eq!(clock.due(at(0)), at(500));
        assert_eq!(clock.due(at(1)), at(500));
        assert_eq!(clock.due(at(499)), at(500));
        assert_eq!(clock.due(at(500)), at(1000), "on a tick: the next one");
        assert_eq!(clock.due(at(1234)), at(1500));
        // Started before the clock: its first tick.
        let early = since.checked_sub(Duration::from_millis(3)).unwrap_or(since);
        assert_eq!(clock.due(early), at(500));
        for ms in (0..5_000).step_by(37) {
            let due = clock.due(at(ms));
            assert!(due > at(ms) && due <= at(ms + 500), "{ms}");
        }
    }

    #[test]
    fn no_linger_is_due_at_once() {
        let since = Instant::now();
        let clock = Linger::since(since, Duration::ZERO);
        let later = since + Duration::from_millis(7);
        assert_eq!(clock.due(later), later);
    }
}
