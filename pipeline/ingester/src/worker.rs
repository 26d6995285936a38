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

use backon::Retryable;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
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
    /// Messages received while partitions were paused, for the next batch.
    held: std::sync::Mutex<Vec<OwnedMessage>>,
}

/// How long a write may take before the worker pauses its partitions.
const PAUSE_AFTER: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Batch {
    rows: Vec<SpanRow>,
    bytes: usize,
    /// The messages the rows came from, for the dead-letter topic should
    /// ClickHouse refuse them for good.
    sources: Vec<Source>,
    /// The highest offset taken per partition.
    offsets: BTreeMap<i32, i64>,
    started: Option<Instant>,
}

/// One message of a batch and the rows it gave.
struct Source {
    partition: i32,
    offset: i64,
    key: String,
    value: Vec<u8>,
    rows: std::ops::Range<usize>,
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
            held: std::sync::Mutex::default(),
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
                        let reason = e.rdkafka_error_code().map_or_else(|| "other".to_owned(), |c| format!("{c:?}"));
                        metrics::counter!(m::CONSUME_ERRORS, "reason" => reason).increment(1);
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
    async fn take<M: rdkafka::Message>(&self, message: &M, batch: &mut Batch) -> Result<()> {
        metrics::counter!(m::MESSAGES_CONSUMED).increment(1);
        match crate::decode::rows(message) {
            Ok(rows) => {
                let first = batch.rows.len();
                for row in rows {
                    batch.bytes += row.approx_bytes();
                    batch.rows.push(row);
                }
                batch.sources.push(Source {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                    value: message.payload().unwrap_or_default().to_vec(),
                    rows: first..batch.rows.len(),
                });
            }
            Err(e) => {
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                let value = message.payload().unwrap_or_default().to_vec();
                self.dead_letter(
                    key,
                    value,
                    message.partition(),
                    message.offset(),
                    "undecodable",
                    &e.to_string(),
                )
                .await?
            }
        }
        batch.offsets.insert(message.partition(), message.offset());
        batch.started.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Sends a message to the dead-letter topic with why (`skein-error`) and
    /// where it came from (`skein-source`), and counts it by `kind`.
    async fn dead_letter(
        &self,
        key: String,
        value: Vec<u8>,
        partition: i32,
        offset: i64,
        kind: &'static str,
        reason: &str,
    ) -> Result<()> {
        tracing::warn!(
            worker = self.index,
            partition,
            offset,
            kind,
            reason,
            "sending a message to the dead-letter topic"
        );
        let dead = Message {
            key,
            value,
            headers: vec![
                ("skein-error", reason.as_bytes().to_vec()),
                (
                    "skein-source",
                    format!("{}/{partition}/{offset}", self.topic).into_bytes(),
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
        metrics::counter!(m::MESSAGES_DEAD_LETTERED, "reason" => kind).increment(1);
        Ok(())
    }

    /// ClickHouse refused the batch for good: writes it message by message,
    /// so the messages it refuses go to the dead-letter topic and the rest
    /// are stored.
    async fn write_each_or_dead_letter(
        &self,
        batch: &Batch,
        refusal: &skein_store::Error,
    ) -> Result<()> {
        tracing::warn!(worker = self.index, error = %refusal, "clickhouse refused a batch; writing it message by message");
        for source in &batch.sources {
            let rows = &batch.rows[source.rows.clone()];
            let write = || self.writer.write(rows);
            let result = write
                .retry(crate::write_backoff().with_max_times(10))
                .when(|e: &skein_store::Error| e.is_retryable())
                .await;
            if let Err(e) = result {
                if e.is_retryable() {
                    return Err(e.into());
                }
                self.dead_letter(
                    source.key.clone(),
                    source.value.clone(),
                    source.partition,
                    source.offset,
                    "refused",
                    &format!("clickhouse refused the rows of this message: {e}"),
                )
                .await?;
            }
        }
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
                    crate::write_backoff(),
                )
                .when(|e: &skein_store::Error| e.is_retryable())
                .notify(|e, wait| {
                    metrics::counter!(m::WRITE_RETRIES).increment(1);
                    tracing::warn!(worker = self.index, error = %e, ?wait, "clickhouse write failed; retrying");
                });
            // A write normally takes milliseconds. One that does not finish
            // soon means ClickHouse is slow or down: stop fetching, but keep
            // polling, so the group does not evict this consumer while the
            // write is retried (max.poll.interval.ms) and no partition moves.
            let mut retrying = std::pin::pin!(retrying);
            let mut paused: Option<TopicPartitionList> = None;
            let result = loop {
                tokio::select! {
                    biased;
                    result = &mut retrying => break result,
                    _ = shutdown.cancelled() => {
                        self.resume(paused.as_ref());
                        return Err(Error::Worker { worker: self.index, message: "stopped while retrying a write".into() });
                    }
                    _ = tokio::time::sleep(PAUSE_AFTER), if paused.is_none() => {
                        let assignment = self.consumer.assignment().map_err(skein_kafka_error("read assignment"))?;
                        if let Err(e) = self.consumer.pause(&assignment) {
                            tracing::warn!(worker = self.index, error = %e, "pausing partitions failed");
                        }
                        metrics::gauge!(m::PARTITIONS_PAUSED, "worker" => self.index.to_string()).set(assignment.count() as f64);
                        tracing::warn!(worker = self.index, partitions = assignment.count(), "clickhouse write is slow or failing; pausing partitions until it succeeds");
                        paused = Some(assignment);
                    }
                    received = self.consumer.recv(), if paused.is_some() => {
                        // Fetched before the pause, or from a partition
                        // assigned since: hold it for the next batch and
                        // pause its partition too.
                        if let Ok(message) = received {
                            let held = message.detach();
                            let mut tp = TopicPartitionList::new();
                            tp.add_partition(held.topic(), held.partition());
                            let _ = self.consumer.pause(&tp);
                            if let Some(p) = paused.as_mut() {
                                p.add_partition(held.topic(), held.partition());
                            }
                            self.held.lock().expect("held lock").push(held);
                        }
                    }
                }
            };
            self.resume(paused.as_ref());
            match result {
                Err(e) if !e.is_retryable() => self.write_each_or_dead_letter(batch, &e).await?,
                other => other?,
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
        let held: Vec<OwnedMessage> = std::mem::take(&mut *self.held.lock().expect("held lock"));
        for message in &held {
            self.take(message, batch).await?;
        }
        Ok(())
    }

    /// Resumes the partitions paused while a write was retried.
    fn resume(&self, paused: Option<&TopicPartitionList>) {
        let Some(paused) = paused else { return };
        if let Err(e) = self.consumer.resume(paused) {
            // A partition revoked meanwhile cannot be resumed; the others are.
            tracing::debug!(worker = self.index, error = %e, "resuming partitions");
        }
        metrics::gauge!(m::PARTITIONS_PAUSED, "worker" => self.index.to_string()).set(0.0);
        tracing::info!(
            worker = self.index,
            "clickhouse write succeeded; partitions resumed"
        );
    }
}

fn skein_kafka_error(op: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    move |source| Error::Kafka(skein_kafka::Error::Kafka { op, source })
}
