//! One partition worker: the batch of one assigned partition, and its writes.
//!
//! In: the messages of one partition, in offset order, from the pool's
//! consumer. Out: batches, written to ClickHouse with the other partitions'
//! batches due at the same time ([`Inserts`]), then the partition's stored
//! offset (which the consumer commits periodically and on revoke and close).
//!
//! Guarantees: an offset is stored only after every message up to it was
//! written (or dead-lettered and acknowledged); a write that fails for a
//! retryable reason is retried with backoff until it succeeds or the
//! partition is revoked. A revoked partition's open batch is dropped
//! uncommitted (the next owner consumes it again), never committed unwritten.
//! On shutdown the batch is written and its offset stored.

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use skein_kafka::consumer::EventConsumer;
use skein_kafka::{Message, Publisher};
use skein_store::rowbinary::EncodedRows;
use skein_store::SpanWriter;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::budget::{Budget, Charge};
use crate::inserts::{Inserts, Linger};
use crate::metrics as m;
use crate::received::{Received, Recycled};
use crate::{Error, Result};
use skein_store::decode::Decoder;

/// What every partition worker of a pool shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) consumer: Arc<EventConsumer>,
    pub(crate) topic: String,
    pub(crate) dead_letter_topic: String,
    pub(crate) writer: SpanWriter,
    pub(crate) dead_letters: Publisher,
    pub(crate) limits: skein_config::Batch,
    pub(crate) decoder: Arc<Decoder>,
    /// Where batches go to be written, with those of the other
    /// partitions.
    pub(crate) inserts: Inserts,
    /// When batches are due (`ingester.batch.linger_ms`, on one clock).
    pub(crate) linger: Linger,
    /// `ingester.max_buffered_bytes`: messages and rows held.
    pub(crate) budget: Arc<Budget>,
    /// Written messages' room, for the pool to fill again.
    pub(crate) recycled: Arc<Recycled>,
}

/// A message and its charge against the budget, from the pool to a worker.
pub(crate) type Charged = (Received, Charge);

#[derive(Clone)]
pub(crate) struct Worker {
    partition: i32,
    shared: Shared,
    /// Cancelled when the group takes the partition away.
    revoked: CancellationToken,
}

/// A batch being written: it comes back (emptied once written) with how
/// the write ended.
type Writing =
    std::pin::Pin<Box<dyn std::future::Future<Output = (Batch, Result<(), Stopped>)> + Send>>;

struct Batch {
    /// The rows, encoded for the INSERT as they are decoded.
    rows: EncodedRows,
    /// The messages and rows held, against the budget.
    charge: Charge,
    /// The messages the rows came from, for the dead-letter topic should
    /// ClickHouse refuse them for good.
    sources: Vec<Source>,
    /// The first and last offsets taken.
    offsets: Option<(i64, i64)>,
    started: Option<Instant>,
}

impl Batch {
    fn new(budget: &Arc<Budget>) -> Self {
        Self {
            rows: EncodedRows::default(),
            charge: budget.charge(0),
            sources: Vec::new(),
            offsets: None,
            started: None,
        }
    }

    /// Empties the batch for the next one, keeping the room its rows and
    /// sources took: growing a batch of thousands of rows again from
    /// nothing moved every row several times (memmove was 7% of the
    /// ingester's CPU profile). Its messages go to `recycled`.
    fn clear(&mut self, recycled: &Recycled) {
        // Every field named, so that a new one is not forgotten here.
        let Batch {
            rows,
            charge,
            sources,
            offsets,
            started,
        } = self;
        rows.clear();
        recycled.give_back(sources.drain(..).map(|s| s.message));
        charge.release();
        *offsets = None;
        *started = None;
    }
}

/// One message of a batch and where its rows are in the batch's bytes
/// (the message is kept, not copied again, for the dead-letter topic).
struct Source {
    message: Received,
    rows: std::ops::Range<usize>,
}

/// Why a write stopped before it succeeded.
enum Stopped {
    Revoked,
    Failed(Error),
}

impl From<Error> for Stopped {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

impl Worker {
    pub(crate) fn new(partition: i32, shared: Shared, revoked: CancellationToken) -> Self {
        Self {
            partition,
            shared,
            revoked,
        }
    }

    /// Batches and writes the partition's messages until it is revoked, its
    /// channel closes, or `shutdown`.
    ///
    /// One write of the partition is in flight at a time, and the next
    /// batch fills while it runs: a message that arrives during a write is
    /// decoded then, and its batch's linger runs then too, instead of both
    /// waiting for the write to end (which, with ClickHouse busy, put a
    /// write's whole duration on top of every span's latency). Writes, and
    /// so stored offsets, stay in offset order. A batch that is full while
    /// a write is in flight stops taking messages; the channel fills and
    /// the pool pauses the partition.
    pub(crate) async fn run(
        self,
        mut messages: mpsc::Receiver<Charged>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let mut filling = Batch::new(&self.shared.budget);
        let mut spare = Some(Batch::new(&self.shared.budget));
        let mut writing: Option<Writing> = None;
        let outcome = loop {
            let deadline = filling.started.map(|s| self.shared.linger.due(s));
            let full = self.is_full(&filling);
            let step = tokio::select! {
                biased;
                _ = self.revoked.cancelled() => break Err(Stopped::Revoked),
                _ = shutdown.cancelled() => break Ok(()),
                (batch, written) = async { writing.as_mut().expect("guarded").await }, if writing.is_some() => {
                    writing = None;
                    spare = Some(batch);
                    let due = full || deadline.is_some_and(|d| d <= Instant::now());
                    match written {
                        Ok(()) if due => {
                            writing = Some(self.write(&mut filling, &mut spare));
                            Ok(())
                        }
                        other => other,
                    }
                }
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() && writing.is_none() => {
                    writing = Some(self.write(&mut filling, &mut spare));
                    Ok(())
                }
                received = messages.recv(), if !(full && writing.is_some()) => match received {
                    Some(message) => match self.take(message, &mut filling).await {
                        Ok(()) if writing.is_none() && self.is_full(&filling) => {
                            writing = Some(self.write(&mut filling, &mut spare));
                            Ok(())
                        }
                        other => other.map_err(Stopped::from),
                    },
                    None => break Ok(()),
                },
            };
            if let Err(stopped) = step {
                break Err(stopped);
            }
        };
        match outcome {
            Err(Stopped::Revoked) => {
                tracing::debug!(
                    partition = self.partition,
                    "partition revoked; its open batches are left uncommitted"
                );
                Ok(())
            }
            Err(Stopped::Failed(e)) => Err(e),
            Ok(()) => {
                // Shutdown: finish the write in flight, then write what is
                // held, and store their offsets before the pool commits and
                // leaves the group.
                let last = async {
                    if let Some(write) = writing {
                        write.await.1?;
                    }
                    self.flush(&mut filling).await
                };
                let flushed = tokio::time::timeout(Duration::from_secs(30), last).await;
                if !matches!(flushed, Ok(Ok(()))) {
                    tracing::warn!(
                        partition = self.partition,
                        "could not write the last batch at shutdown; it will be consumed again"
                    );
                }
                Ok(())
            }
        }
    }

    /// Starts writing `filling`, which becomes the spare batch (empty) in
    /// turn; the write gives its batch back, emptied, to be the next spare.
    fn write(&self, filling: &mut Batch, spare: &mut Option<Batch>) -> Writing {
        let next = spare
            .take()
            .unwrap_or_else(|| Batch::new(&self.shared.budget));
        let mut batch = std::mem::replace(filling, next);
        let worker = self.clone();
        Box::pin(async move {
            let written = worker.flush(&mut batch).await;
            (batch, written)
        })
    }

    /// The insert deduplication token of the messages `first..=last` of
    /// this partition: a write of the same messages again (a retry whose
    /// first attempt did land) is not stored twice, on servers with tokens.
    fn token(&self, first: i64, last: i64) -> String {
        format!("{}/{}/{first}-{last}", self.shared.topic, self.partition)
    }

    fn is_full(&self, batch: &Batch) -> bool {
        batch.rows.reach(&self.shared.limits)
    }

    /// Adds one message to the batch, or dead-letters it.
    async fn take(&self, (message, charge): Charged, batch: &mut Batch) -> Result<()> {
        metrics::counter!(m::MESSAGES_CONSUMED).increment(1);
        let offset = message.offset();
        let first = batch.rows.bytes().len();
        match self
            .shared
            .decoder
            .encode(message.payload(), |k| message.header(k), &mut batch.rows)
        {
            Ok(()) => {
                let rows = first..batch.rows.bytes().len();
                // What was expected becomes what is held.
                drop(charge);
                let held = crate::budget::message_bytes(&message) + rows.len();
                batch.charge.add(held);
                batch.sources.push(Source { message, rows });
            }
            Err(e) => {
                self.dead_letter(&message, "undecodable", &e.to_string())
                    .await?
            }
        }
        let first = batch.offsets.map_or(offset, |(first, _)| first);
        batch.offsets = Some((first, offset));
        batch.started.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Sends a message to the dead-letter topic with why (`skein-error`) and
    /// where it came from (`skein-source`), and counts it by `kind`.
    async fn dead_letter(
        &self,
        message: &Received,
        kind: &'static str,
        reason: &str,
    ) -> Result<()> {
        let (partition, offset) = (self.partition, message.offset());
        tracing::warn!(
            partition,
            offset,
            kind,
            reason,
            "sending a message to the dead-letter topic"
        );
        let dead = Message {
            key: String::from_utf8_lossy(message.key()).into_owned(),
            value: message.payload().to_vec(),
            headers: vec![
                ("skein-error", reason.as_bytes().to_vec()),
                (
                    "skein-source",
                    format!("{}/{partition}/{offset}", self.shared.topic).into_bytes(),
                ),
            ],
        };
        let sent = self
            .shared
            .dead_letters
            .send_all(&self.shared.dead_letter_topic, vec![dead])
            .await
            .pop()
            .expect("one result per message");
        sent?;
        metrics::counter!(m::MESSAGES_DEAD_LETTERED, "reason" => kind).increment(1);
        Ok(())
    }

    /// ClickHouse refused the batch for good: writes it message by message,
    /// so the messages it refuses go to the dead-letter topic and the rest
    /// are stored.
    async fn write_each_or_dead_letter(
        &self,
        batch: &Batch,
        body: &bytes::Bytes,
        refusal: &skein_store::Error,
    ) -> Result<()> {
        tracing::warn!(partition = self.partition, error = %refusal, "clickhouse refused a batch; writing it message by message");
        for source in &batch.sources {
            let rows = body.slice(source.rows.clone());
            let offset = source.message.offset();
            let token = self.token(offset, offset);
            let write = || self.shared.writer.write_encoded(rows.clone(), Some(&token));
            let result = write
                .retry(crate::write_backoff().with_max_times(10))
                .when(|e: &skein_store::Error| e.is_retryable())
                .await;
            if let Err(e) = result {
                if e.is_retryable() {
                    return Err(e.into());
                }
                self.dead_letter(
                    &source.message,
                    "refused",
                    &format!("clickhouse refused the rows of this message: {e}"),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Writes the batch (in an insert with others' batches, retried while
    /// the failure can pass), then stores its offset. While a write is
    /// retried the pool keeps polling, so the group keeps this consumer,
    /// and this partition's channel fills up until the pool pauses the
    /// partition. A batch ClickHouse refuses for good is written again
    /// message by message, outside the inserts' slots (it is rare).
    async fn flush(&self, batch: &mut Batch) -> Result<(), Stopped> {
        let Some((first, last)) = batch.offsets else {
            return Ok(());
        };
        if !batch.rows.is_empty() {
            let started = Instant::now();
            let body = batch.rows.share();
            let result = tokio::select! {
                biased;
                result = self.shared.inserts.write(body.clone(), self.token(first, last)) => result,
                _ = self.revoked.cancelled() => return Err(Stopped::Revoked),
            };
            match result {
                Err(Error::Store(e)) if !e.is_retryable() => {
                    self.write_each_or_dead_letter(batch, &body, &e).await?
                }
                other => {
                    other?;
                }
            }
            metrics::counter!(m::SPANS_WRITTEN).increment(batch.rows.rows() as u64);
            metrics::counter!(m::BATCHES_WRITTEN).increment(1);
            metrics::histogram!(m::BATCH_ROWS).record(batch.rows.rows() as f64);
            metrics::histogram!(m::WRITE_SECONDS).record(started.elapsed().as_secs_f64());
        }
        if self.revoked.is_cancelled() {
            // Written, but the partition has moved on: its next owner
            // consumes these messages again, and the copies collapse.
            return Err(Stopped::Revoked);
        }
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&self.shared.topic, self.partition, Offset::Offset(last + 1))
            .map_err(|source| {
                Error::Kafka(skein_kafka::Error::Kafka {
                    op: "build offsets",
                    source,
                })
            })?;
        if let Err(e) = self.shared.consumer.store_offsets(&offsets) {
            // The partition moved to another consumer; it replays from the
            // last commit, so nothing is lost (the rows may be written twice).
            tracing::warn!(partition = self.partition, error = %e, "storing offsets failed");
        }
        tracing::debug!(
            partition = self.partition,
            rows = batch.rows.rows(),
            "batch written"
        );
        batch.clear(&self.shared.recycled);
        Ok(())
    }
}
