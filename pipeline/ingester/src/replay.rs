//! Replay (backfill): the spans topic read again and written to ClickHouse.
//!
//! In: a [`ReplaySpec`]: where each partition of the spans topic starts
//! (earliest, an offset, or a time) and ends, and optionally which
//! partitions. Out: the rows of those messages in `spans`, decoded by
//! [`skein_store::decode::Decoder`] exactly as the live workers store them, written
//! in batches bounded by `ingester.batch`; [`Progress`] reports while it
//! runs, and a [`ReplaySummary`] at the end.
//!
//! Guarantees: the topic is read by direct assignment in a throwaway group
//! (`skein-replay-<pid>`) that never commits, so the ingester group's
//! offsets and members are untouched. Each partition's end is fixed when the
//! replay starts (its high watermark then, or `to` if earlier), so a replay
//! ends even while the collector keeps producing. A batch is written once
//! ClickHouse acknowledges it, retried while the failure is retryable; a
//! message that does not decode is logged, counted and skipped (it is not
//! dead-lettered again). Rows that are still in ClickHouse are written a
//! second time: replay does not deduplicate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::Retryable;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use skein_config::Topology;
use skein_store::rowbinary::EncodedRows;
use skein_store::SpanWriter;
use tokio::time::Instant;

use crate::{Error, Result};

/// How long a metadata, watermark or time lookup may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// How long reading a partition's first message may take (a broker may
/// send everything after it in the same answer).
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// The least time between two progress reports.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// A position in every partition of the spans topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The oldest message the broker still holds (the low watermark).
    Earliest,
    /// After the newest message (the high watermark when the replay starts).
    Latest,
    /// This offset, clamped to the partition's watermarks.
    Offset(i64),
    /// The first message whose Kafka timestamp is at or after this time (the
    /// time the collector published it, not the spans' start times).
    Time(SystemTime),
}

/// What to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySpec {
    /// Where reading starts in each partition (inclusive).
    pub from: Position,
    /// Where reading stops in each partition (exclusive: an offset `to` is
    /// not read, nor is a message at or after a time `to`); `None` is the
    /// high watermark when the replay starts. A `to` past that watermark
    /// stops at the watermark.
    pub to: Option<Position>,
    /// The partitions to read; `None` for all of them.
    pub partitions: Option<Vec<i32>>,
}

/// How far a replay is; reported a few times a second at most, and once at
/// the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Offsets passed whose rows ClickHouse acknowledged (a partition that
    /// ends in a gap counts its whole range, so this reaches the total).
    pub messages_done: u64,
    /// Offsets in every partition's range.
    pub messages_total: u64,
    /// Spans ClickHouse acknowledged.
    pub spans_written: u64,
    /// Time since the replay started.
    pub elapsed: Duration,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Messages read.
    pub messages: u64,
    /// Spans written.
    pub spans: u64,
    /// Messages that did not decode, skipped (each was logged).
    pub undecodable: u64,
    /// Every chosen partition with the offsets it was read from (inclusive)
    /// and to (exclusive), in partition order; `from == to` when it had
    /// nothing to read.
    pub per_partition: Vec<(i32, i64, i64)>,
}

/// Reads the spans topic as `spec` says and writes its spans to ClickHouse
/// (after applying the schema, as the ingester does), calling `progress` a
/// few times a second at most and once at the end.
///
/// A retryable ClickHouse failure is retried with backoff for as long as it
/// lasts; drop the future to give up.
pub async fn replay(
    topology: &Topology,
    spec: ReplaySpec,
    mut progress: impl FnMut(&Progress) + Send,
) -> Result<ReplaySummary> {
    let started = Instant::now();
    check(&spec)?;
    let ch = &topology.storage.clickhouse;
    let client = skein_store::client(ch);
    skein_store::schema::apply(&client, &ch.database).await?;
    let writer = SpanWriter::new(client, &ch.database);

    let topic = topology.topics.spans.name.clone();
    let consumer = Arc::new(consumer(&topology.kafka)?);
    let ranges = plan(&consumer, &topology.kafka, &topic, &spec).await?;
    for r in &ranges {
        tracing::info!(topic = %topic, partition = r.partition, from = r.from, to = r.to, "replay range");
    }

    let mut run = Run {
        topic,
        consumer,
        writer,
        decoder: skein_store::decode::Decoder::new(&topology.ingester.enrichment),
        limits: topology.ingester.batch.clone(),
        partitions: ranges
            .iter()
            .map(|r| {
                let state = PartitionState {
                    from: r.from,
                    to: r.to,
                    next: r.from,
                    written: r.from,
                    done: r.from >= r.to,
                };
                (r.partition, state)
            })
            .collect(),
        batch: Batch::default(),
        summary: ReplaySummary {
            messages: 0,
            spans: 0,
            undecodable: 0,
            per_partition: ranges.iter().map(|r| (r.partition, r.from, r.to)).collect(),
        },
        started,
    };
    progress(&run.progress());
    run.read(&mut progress).await?;
    progress(&run.progress());
    tracing::info!(
        messages = run.summary.messages,
        spans = run.summary.spans,
        undecodable = run.summary.undecodable,
        "replay done"
    );
    Ok(run.summary)
}

/// Rejects a spec whose range ends before it starts, a negative offset, or
/// an empty list of partitions.
fn check(spec: &ReplaySpec) -> Result<()> {
    if let Some(to) = spec.to {
        let reversed = match (spec.from, to) {
            (Position::Offset(from), Position::Offset(to)) => to < from,
            (Position::Time(from), Position::Time(to)) => to < from,
            (Position::Latest, Position::Earliest) => true,
            _ => false,
        };
        if reversed {
            return Err(replay_error(format!(
                "replay range ends before it starts (from {:?}, to {to:?})",
                spec.from
            )));
        }
    }
    if let Position::Offset(o) = spec.from {
        if o < 0 {
            return Err(replay_error(format!("replay from offset {o}: negative")));
        }
    }
    if let Some(Position::Offset(o)) = spec.to {
        if o < 0 {
            return Err(replay_error(format!("replay to offset {o}: negative")));
        }
    }
    if spec.partitions.as_ref().is_some_and(Vec::is_empty) {
        return Err(replay_error(
            "the list of partitions to replay is empty".into(),
        ));
    }
    Ok(())
}

/// A consumer that is assigned partitions, never subscribes, and never
/// commits: its group exists only because librdkafka wants one.
fn consumer(kafka: &skein_config::Kafka) -> Result<StreamConsumer> {
    // client_config applies the topology's properties (TLS, SASL, ...); the
    // settings below come after them because replay must never commit.
    let mut config = skein_kafka::client_config(kafka, skein_kafka::Client::Consumer);
    config
        .set("group.id", format!("skein-replay-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    config
        .create()
        .map_err(kafka_error("create replay consumer"))
}

/// One partition's range: offsets `from..to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    partition: i32,
    from: i64,
    to: i64,
}

/// Runs a blocking rdkafka call off the async threads.
async fn blocking<T, F>(consumer: &Arc<StreamConsumer>, call: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&StreamConsumer) -> Result<T> + Send + 'static,
{
    let consumer = Arc::clone(consumer);
    tokio::task::spawn_blocking(move || call(&consumer))
        .await
        .map_err(|e| replay_error(format!("replay kafka lookup task: {e}")))?
}

/// Finds the topic's partitions, their watermarks and the offsets of any
/// times, and so each chosen partition's range.
async fn plan(
    consumer: &Arc<StreamConsumer>,
    kafka: &skein_config::Kafka,
    topic: &str,
    spec: &ReplaySpec,
) -> Result<Vec<Range>> {
    let watermarks = {
        let (topic, partitions) = (topic.to_owned(), spec.partitions.clone());
        blocking(consumer, move |c| watermarks(c, &topic, partitions)).await?
    };
    let from_times = offsets_for_time(consumer, kafka, topic, &watermarks, spec.from).await?;
    let to_times = match spec.to {
        Some(to) => offsets_for_time(consumer, kafka, topic, &watermarks, to).await?,
        None => BTreeMap::new(),
    };
    Ok(watermarks
        .iter()
        .map(|(&partition, &(low, high))| {
            let from = resolve(spec.from, low, high, from_times.get(&partition).copied());
            let to = match spec.to {
                None => high,
                Some(to) => resolve(to, low, high, to_times.get(&partition).copied()),
            };
            Range {
                partition,
                from,
                to: to.max(from),
            }
        })
        .collect())
}

/// The low and high watermarks of the chosen partitions (all when `None`),
/// after checking the topic has them; blocking.
fn watermarks(
    consumer: &StreamConsumer,
    topic: &str,
    chosen: Option<Vec<i32>>,
) -> Result<BTreeMap<i32, (i64, i64)>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .map_err(kafka_error("fetch spans topic metadata"))?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| replay_error(format!("topic {topic} not found")))?;
    let mut existing: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    existing.sort_unstable();
    let chosen = match chosen {
        None => existing.clone(),
        Some(mut wanted) => {
            wanted.sort_unstable();
            wanted.dedup();
            let missing: Vec<String> = wanted
                .iter()
                .filter(|p| !existing.contains(p))
                .map(i32::to_string)
                .collect();
            if !missing.is_empty() {
                return Err(replay_error(format!(
                    "topic {topic} has no partition {} (it has {})",
                    missing.join(", "),
                    existing.len()
                )));
            }
            wanted
        }
    };
    chosen
        .into_iter()
        .map(|p| {
            let w = consumer
                .fetch_watermarks(topic, p, KAFKA_TIMEOUT)
                .map_err(kafka_error("fetch watermarks"))?;
            Ok((p, w))
        })
        .collect()
}

/// Where `position` falls in a partition with watermarks `low..high`, given
/// the offset the broker found for it if it is a time (`None`: no message
/// that late).
fn resolve(position: Position, low: i64, high: i64, for_time: Option<i64>) -> i64 {
    let offset = match position {
        Position::Earliest => low,
        Position::Latest => high,
        Position::Offset(o) => o,
        Position::Time(_) => for_time.unwrap_or(high),
    };
    offset.clamp(low, high.max(low))
}

/// The first offset whose timestamp is at or after `position`'s time in
/// each partition, for the partitions that have a message that late; empty
/// unless `position` is a time.
///
/// Kafka answers -1 when no message is that late, but some brokers (tansu
/// 0.6) answer 0. So when the answer is a partition's first offset, the
/// message there is read, and if it is older than the time the answer counts
/// as none. (A later offset is always a real answer.)
async fn offsets_for_time(
    consumer: &Arc<StreamConsumer>,
    kafka: &skein_config::Kafka,
    topic: &str,
    watermarks: &BTreeMap<i32, (i64, i64)>,
    position: Position,
) -> Result<BTreeMap<i32, i64>> {
    let Position::Time(time) = position else {
        return Ok(BTreeMap::new());
    };
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| replay_error("a time before 1970 has no offsets".into()))?
        .as_millis();
    let millis =
        i64::try_from(millis).map_err(|_| replay_error("a time too far in the future".into()))?;
    let mut query = TopicPartitionList::new();
    for &p in watermarks.keys() {
        query
            .add_partition_offset(topic, p, Offset::Offset(millis))
            .map_err(kafka_error("build time lookup"))?;
    }
    let answer = blocking(consumer, move |c| {
        c.offsets_for_times(query, KAFKA_TIMEOUT)
            .map_err(kafka_error("look up offsets for a time"))
    })
    .await?;
    let mut found = BTreeMap::new();
    for element in answer.elements() {
        element
            .error()
            .map_err(kafka_error("look up offsets for a time"))?;
        let (low, high) = watermarks
            .get(&element.partition())
            .copied()
            .unwrap_or_default();
        if let Offset::Offset(o) = element.offset() {
            if o < high {
                found.insert(element.partition(), o.max(low));
            }
        }
    }
    let doubtful: BTreeMap<i32, i64> = found
        .iter()
        .filter(|(p, o)| watermarks.get(p).is_some_and(|(low, _)| **o <= *low))
        .map(|(p, o)| (*p, *o))
        .collect();
    let stamps = first_timestamps(kafka, topic, &doubtful).await?;
    found.retain(|p, o| match stamps.get(p) {
        Some(Some(stamp)) if *stamp < millis => {
            tracing::debug!(
                partition = *p,
                offset = *o,
                "the broker's time lookup found no message that late"
            );
            false
        }
        _ => true,
    });
    Ok(found)
}

/// The timestamp (ms) of the first message at or after each offset of
/// `at`; `None` for a partition whose message has none or that has no
/// message there. Reads with a consumer of its own, so that nothing it
/// fetched reaches the replay's.
async fn first_timestamps(
    kafka: &skein_config::Kafka,
    topic: &str,
    at: &BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, Option<i64>>> {
    let mut stamps = BTreeMap::new();
    if at.is_empty() {
        return Ok(stamps);
    }
    let consumer = consumer(kafka)?;
    let mut assignment = TopicPartitionList::new();
    for (&p, &o) in at {
        assignment
            .add_partition_offset(topic, p, Offset::Offset(o))
            .map_err(kafka_error("build assignment"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(kafka_error("assign partitions"))?;
    let read = async {
        while stamps.len() < at.len() {
            match consumer.recv().await {
                Ok(m) => {
                    stamps
                        .entry(m.partition())
                        .or_insert_with(|| m.timestamp().to_millis());
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    stamps.entry(p).or_insert(None);
                }
                Err(source) => {
                    let e = skein_kafka::Error::Kafka {
                        op: "read the message at a time's offset",
                        source,
                    };
                    if !e.is_retryable() {
                        return Err(e.into());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(CHECK_TIMEOUT, read).await {
        Ok(result) => result.map(|()| stamps),
        Err(_) => Err(replay_error(format!(
            "could not read the first messages of partitions {:?} in {CHECK_TIMEOUT:?} to check \
             the broker's answer for a time; give an offset instead",
            at.keys().collect::<Vec<_>>()
        ))),
    }
}

struct PartitionState {
    from: i64,
    to: i64,
    /// The offset after the last one read.
    next: i64,
    /// The offset after the last one whose rows are written.
    written: i64,
    done: bool,
}

#[derive(Default)]
struct Batch {
    rows: EncodedRows,
    started: Option<Instant>,
}

struct Run {
    topic: String,
    consumer: Arc<StreamConsumer>,
    writer: SpanWriter,
    decoder: skein_store::decode::Decoder,
    limits: skein_config::Batch,
    partitions: BTreeMap<i32, PartitionState>,
    batch: Batch,
    summary: ReplaySummary,
    started: Instant,
}

impl Run {
    fn progress(&self) -> Progress {
        let sum = |f: fn(&PartitionState) -> i64| {
            self.partitions.values().map(f).sum::<i64>().max(0) as u64
        };
        Progress {
            messages_done: sum(|s| s.written - s.from),
            messages_total: sum(|s| s.to - s.from),
            spans_written: self.summary.spans,
            elapsed: self.started.elapsed(),
        }
    }

    fn finished(&self) -> bool {
        self.partitions.values().all(|s| s.done)
    }

    /// Reads until every partition reached its end, then writes what is held.
    async fn read(&mut self, progress: &mut (impl FnMut(&Progress) + Send)) -> Result<()> {
        if self.finished() {
            return Ok(());
        }
        let mut assignment = TopicPartitionList::new();
        for (&p, s) in self.partitions.iter().filter(|(_, s)| !s.done) {
            assignment
                .add_partition_offset(&self.topic, p, Offset::Offset(s.from))
                .map_err(kafka_error("build assignment"))?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(kafka_error("assign partitions"))?;
        let consumer = Arc::clone(&self.consumer);
        let linger = self.limits.linger();
        let mut reported = Instant::now();
        // Wakes the loop to report while the broker is slow to answer.
        let mut ticker = tokio::time::interval(REPORT_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !self.finished() {
            let deadline = self.batch.started.map(|s| s + linger);
            tokio::select! {
                biased;
                _ = ticker.tick() => {}
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    self.flush().await?;
                }
                received = consumer.recv() => match received {
                    Ok(message) => self.take(&message),
                    Err(KafkaError::PartitionEOF(p)) => self.end(p),
                    Err(source) => {
                        let e = skein_kafka::Error::Kafka { op: "consume spans topic", source };
                        if !e.is_retryable() {
                            return Err(e.into());
                        }
                        tracing::warn!(error = %e, "kafka consume error during replay");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
            if self.batch.rows.reach(&self.limits) {
                self.flush().await?;
            }
            if reported.elapsed() >= REPORT_EVERY {
                progress(&self.progress());
                reported = Instant::now();
            }
        }
        self.flush().await?;
        if let Err(e) = self.consumer.unassign() {
            tracing::debug!(error = %e, "replay unassign");
        }
        Ok(())
    }

    /// Adds a message's rows to the batch, unless it is past its
    /// partition's end.
    fn take<M: rdkafka::Message>(&mut self, message: &M) {
        let (partition, offset) = (message.partition(), message.offset());
        let Some(state) = self.partitions.get_mut(&partition) else {
            return;
        };
        if state.done {
            return; // fetched before the partition was paused
        }
        if offset >= state.to {
            self.end(partition); // the range ended in a gap
            return;
        }
        self.summary.messages += 1;
        match self.decoder.encode(
            message.payload().unwrap_or_default(),
            |k| skein_kafka::header(message, k),
            &mut self.batch.rows,
        ) {
            Ok(()) => {}
            Err(e) => {
                self.summary.undecodable += 1;
                tracing::warn!(
                    partition,
                    offset,
                    reason = %e,
                    "message does not decode; skipped"
                );
            }
        }
        state.next = offset + 1;
        self.batch.started.get_or_insert_with(Instant::now);
        if offset + 1 >= state.to {
            self.end(partition);
        }
    }

    /// Marks a partition read to its end and stops fetching it.
    fn end(&mut self, partition: i32) {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return;
        };
        if state.done {
            return;
        }
        state.done = true;
        state.next = state.to;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::debug!(partition, error = %e, "replay pause");
        }
        tracing::debug!(partition, "replay partition read to its end");
    }

    /// Writes the batch, retrying what can be retried.
    async fn flush(&mut self) -> Result<()> {
        if !self.batch.rows.is_empty() {
            let rows = &mut self.batch.rows;
            let body = rows.share();
            let writer = &self.writer;
            let write = || writer.write_encoded(body.clone(), None);
            write
                .retry(
                    crate::write_backoff(),
                )
                .when(|e: &skein_store::Error| e.is_retryable())
                .notify(|e, wait| {
                    tracing::warn!(error = %e, ?wait, "clickhouse write failed during replay; retrying");
                })
                .await?;
            self.summary.spans += rows.rows() as u64;
        }
        for state in self.partitions.values_mut() {
            state.written = state.next;
        }
        self.batch = Batch::default();
        Ok(())
    }
}

fn kafka_error(op: &'static str) -> impl FnOnce(KafkaError) -> Error {
    move |source| Error::Kafka(skein_kafka::Error::Kafka { op, source })
}

fn replay_error(message: String) -> Error {
    Error::Replay(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_resolve_within_the_watermarks() {
        assert_eq!(resolve(Position::Earliest, 5, 20, None), 5);
        assert_eq!(resolve(Position::Latest, 5, 20, None), 20);
        assert_eq!(resolve(Position::Offset(12), 5, 20, None), 12);
        assert_eq!(resolve(Position::Offset(2), 5, 20, None), 5);
        assert_eq!(resolve(Position::Offset(99), 5, 20, None), 20);
        let t = Position::Time(UNIX_EPOCH);
        assert_eq!(resolve(t, 5, 20, Some(9)), 9);
        assert_eq!(resolve(t, 5, 20, None), 20, "no message that late");
        assert_eq!(resolve(t, 5, 20, Some(1)), 5);
    }

    #[test]
    fn reversed_or_empty_specs_are_refused() {
        let spec = |from, to, partitions| ReplaySpec {
            from,
            to,
            partitions,
        };
        assert!(check(&spec(Position::Offset(5), Some(Position::Offset(4)), None)).is_err());
        assert!(check(&spec(Position::Offset(5), Some(Position::Offset(5)), None)).is_ok());
        let later = UNIX_EPOCH + Duration::from_secs(10);
        assert!(check(&spec(
            Position::Time(later),
            Some(Position::Time(UNIX_EPOCH)),
            None
        ))
        .is_err());
        assert!(check(&spec(Position::Offset(-1), None, None)).is_err());
        assert!(check(&spec(Position::Earliest, None, Some(vec![]))).is_err());
        assert!(check(&spec(
            Position::Earliest,
            Some(Position::Latest),
            Some(vec![1])
        ))
        .is_ok());
    }
}
