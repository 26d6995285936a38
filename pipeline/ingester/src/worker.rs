//! One partition worker: a consumer in the group, a batch, a writer.
//!
//! In: messages of the partitions the group assigns this consumer. Out:
//! batched writes to ClickHouse, then stored offsets.
//!
//! Guarantees: an offset is stored only after every message up to it was
//! written (or dead-lettered and acknowledged); a write that fails for a
//! retryable reason is retried with backoff until it succeeds or the worker
//! is stopped, and then nothing of the batch is committed.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use skein_kafka::{Message, Publisher};
use skein_store::{SpanRow, SpanWriter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::{Error, Result};

pub(crate) struct Worker {
    index: usize,
    consumer: StreamConsumer,
    topic: String,
    dead_letter_topic: String,
    writer: SpanWriter,
    dead_letters: Publisher,
    limits: skein_config::Batch,
}

#[derive(Default)]
struct Batch {
    rows: Vec<SpanRow>,
    bytes: usize,
    /// The highest offset taken per partition.
    offsets: BTreeMap<i32, i64>,
    started: Option<Instant>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        topology: &skein_config::Topology,
        writer: SpanWriter,
        dead_letters: Publisher,
    ) -> Result<Self> {
        let topic = topology.topics.spans.name.clone();
        let consumer = skein_kafka::consumer::subscribe(
            &topology.kafka,
            &topology.groups.ingester,
            &[&topic],
        )?;
        Ok(Self {
            index,
            consumer,
            topic,
            dead_letter_topic: topology.topics.dead_letter.name.clone(),
            writer,
            dead_letters,
            limits: topology.ingester.batch.clone(),
        })
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let mut batch = Batch::default();
        let linger = self.limits.linger();
        loop {
            let deadline = batch.started.map(|s| s + linger);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    self.flush(&mut batch, &shutdown).await?;
                }
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        self.take(&message, &mut batch).await?;
                        if batch.rows.len() >= self.limits.max_rows || batch.bytes >= self.limits.max_bytes {
                            self.flush(&mut batch, &shutdown).await?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(worker = self.index, error = %e, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        }
        // Write what is held, then commit what was stored, before leaving
        // the group: a clean stop replays nothing.
        let stop = CancellationToken::new();
        let flushed =
            tokio::time::timeout(Duration::from_secs(30), self.flush(&mut batch, &stop)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!(
                worker = self.index,
                "could not write the last batch at shutdown; it will be consumed again"
            );
        }
        // An offset-less commit sends the *stored* offsets (librdkafka), not
        // the consumer's position, so nothing unwritten is committed.
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(worker = self.index, error = %e, "final commit");
        }
        Ok(())
    }

    /// Adds one message to the batch, or dead-letters it.
    async fn take(&self, message: &BorrowedMessage<'_>, batch: &mut Batch) -> Result<()> {
        metrics::counter!(m::MESSAGES_CONSUMED).increment(1);
        match crate::decode::rows(message) {
            Ok(rows) => {
                for row in rows {
                    batch.bytes += row.approx_bytes();
                    batch.rows.push(row);
                }
            }
            Err(e) => self.dead_letter(message, &e.to_string()).await?,
        }
        batch.offsets.insert(message.partition(), message.offset());
        batch.started.get_or_insert_with(Instant::now);
        Ok(())
    }

    async fn dead_letter(&self, message: &BorrowedMessage<'_>, reason: &str) -> Result<()> {
        tracing::warn!(
            worker = self.index,
            partition = message.partition(),
            offset = message.offset(),
            reason,
            "message does not decode; sending it to the dead-letter topic"
        );
        let dead = Message {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            value: message.payload().unwrap_or_default().to_vec(),
            headers: vec![
                ("skein-error", reason.as_bytes().to_vec()),
                (
                    "skein-source",
                    format!(
                        "{}/{}/{}",
                        message.topic(),
                        message.partition(),
                        message.offset()
                    )
                    .into_bytes(),
                ),
            ],
        };
        let sent = self
            .dead_letters
            .send_all(&self.dead_letter_topic, vec![dead])
            .await
            .pop()
            .expect("one result per message");
        sent?;
        metrics::counter!(m::MESSAGES_DEAD_LETTERED, "reason" => "undecodable").increment(1);
        Ok(())
    }

    /// Writes the batch (retrying what can be retried), then stores its offsets.
    async fn flush(&self, batch: &mut Batch, shutdown: &CancellationToken) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        if !batch.rows.is_empty() {
            let write = || self.writer.write(&batch.rows);
            let retrying = write
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(100))
                        .with_max_delay(Duration::from_secs(10))
                        .without_max_times(),
                )
                .when(|e: &skein_store::Error| e.is_retryable())
                .notify(|e, wait| {
                    metrics::counter!(m::WRITE_RETRIES).increment(1);
                    tracing::warn!(worker = self.index, error = %e, ?wait, "clickhouse write failed; retrying");
                });
            tokio::select! {
                result = retrying => result?,
                _ = shutdown.cancelled() => {
                    return Err(Error::Worker { worker: self.index, message: "stopped while retrying a write".into() });
                }
            }
            metrics::counter!(m::SPANS_WRITTEN).increment(batch.rows.len() as u64);
            metrics::counter!(m::BATCHES_WRITTEN).increment(1);
            metrics::histogram!(m::BATCH_ROWS).record(batch.rows.len() as f64);
            metrics::histogram!(m::WRITE_SECONDS).record(started.elapsed().as_secs_f64());
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in &batch.offsets {
            offsets
                .add_partition_offset(&self.topic, *partition, Offset::Offset(offset + 1))
                .map_err(skein_kafka_error("build offsets"))?;
        }
        if let Err(e) = self.consumer.store_offsets(&offsets) {
            // The partition moved to another consumer; it replays from the
            // last commit, so nothing is lost (the rows may be written twice).
            tracing::warn!(worker = self.index, error = %e, "storing offsets failed");
        }
        tracing::debug!(
            worker = self.index,
            rows = batch.rows.len(),
            "batch written"
        );
        *batch = Batch::default();
        Ok(())
    }
}

fn skein_kafka_error(op: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    move |source| Error::Kafka(skein_kafka::Error::Kafka { op, source })
}
