//! The streaming aggregator: the spans topic in, dependency links out.
//!
//! In: messages of the spans topic, consumed in `groups.aggregator`. Per
//! assigned partition, a [`PartitionBuffer`] collects each trace's spans
//! until the trace is quiet for `aggregator.window_ms` (or memory passes
//! `aggregator.max_open_bytes`, which closes the quietest early). Out: the
//! links of every closed trace, written every `aggregator.flush_ms`, then
//! each partition's offset stored as its buffer allows.
//!
//! Guarantees: an offset is stored only once every trace with a span before
//! it has had its links written, and never inside such a trace, so a
//! restart re-reads whole traces only; the store counts a re-read call once
//! (by its link ID). A failed write keeps the links and tries again at the
//! next flush while the consumer keeps polling.

use std::collections::BTreeMap;
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use skein_kafka::consumer::Assignment;
use skein_store::{DependencyLink, DependencyWriter};
use tokio_util::sync::CancellationToken;

use crate::buffer::{ClosedTrace, PartitionBuffer};
use crate::links::{into_buckets, links, CallSpan};
use crate::metrics as m;
use crate::Result;

/// Links of closed traces not written yet, and where their spans were.
#[derive(Default)]
struct Pending {
    links: Vec<DependencyLink>,
    /// Per partition, the offset ranges of the traces the links came from.
    traces: BTreeMap<i32, Vec<(i64, i64)>>,
}

pub(crate) struct Stream {
    pub(crate) topology: skein_config::Topology,
    pub(crate) writer: DependencyWriter,
    pub(crate) decoder: skein_store::decode::Decoder,
}

impl Stream {
    pub(crate) async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let t = &self.topology;
        let topic = t.topics.spans.name.clone();
        let (consumer, mut events) = skein_kafka::consumer::subscribe_with_events(
            &t.kafka,
            &t.groups.aggregator,
            &[&topic],
        )?;
        let config = &t.aggregator;
        let mut buffers: BTreeMap<i32, PartitionBuffer> = BTreeMap::new();
        let mut pending = Pending::default();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_flush = Instant::now();
        tracing::info!(group = %t.groups.aggregator, %topic, window = ?config.window(), "aggregator running");
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(event) = events.recv() => apply(&mut buffers, event, &topic),
                received = consumer.recv() => match received {
                    Ok(message) => {
                        while let Ok(event) = events.try_recv() {
                            apply(&mut buffers, event, &topic);
                        }
                        let Some(buffer) = buffers.get_mut(&message.partition()) else {
                            continue;
                        };
                        metrics::counter!(m::MESSAGES_CONSUMED).increment(1);
                        let spans = match self.decoder.outline_rows(message.payload().unwrap_or_default(), |k| skein_kafka::header(&message, k)) {
                            Ok(rows) => rows
                                .iter()
                                .map(|row| (row.trace_id.clone(), CallSpan::from(row)))
                                .collect(),
                            Err(e) => {
                                // The ingester dead-letters it; here it only
                                // moves the position on.
                                metrics::counter!(m::MESSAGES_SKIPPED).increment(1);
                                tracing::debug!(partition = message.partition(), offset = message.offset(), error = %e, "skipping a message that does not decode");
                                Vec::new()
                            }
                        };
                        buffer.add(message.offset(), spans, Instant::now());
                    }
                    Err(e) => {
                        let reason = e.rdkafka_error_code().map_or_else(|| "other".to_owned(), |c| format!("{c:?}"));
                        metrics::counter!(m::CONSUME_ERRORS, "reason" => reason).increment(1);
                        tracing::warn!(error = %e, "kafka consume error");
                    }
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    // The cap is the process's; each partition gets a share.
                    let share = config.max_open_bytes / buffers.len().max(1);
                    for (&partition, buffer) in &mut buffers {
                        let quiet = buffer.close_quiet(now, config.window());
                        metrics::counter!(m::TRACES_CLOSED, "reason" => "quiet").increment(quiet.len() as u64);
                        let early = buffer.close_over(share);
                        if !early.is_empty() {
                            metrics::counter!(m::TRACES_CLOSED, "reason" => "memory").increment(early.len() as u64);
                            tracing::warn!(partition, traces = early.len(), "over aggregator.max_open_bytes: closing the quietest traces early");
                        }
                        for trace in quiet.into_iter().chain(early) {
                            pending.add(partition, trace, config.bucket_nanos());
                        }
                    }
                    gauges(&buffers);
                    if last_flush.elapsed() >= config.flush_every() {
                        last_flush = Instant::now();
                        self.flush(&consumer, &topic, &mut buffers, &mut pending).await;
                    }
                }
            }
        }
        // What is open stays uncommitted and is read again on restart;
        // what closed is written, and its offsets committed.
        self.flush(&consumer, &topic, &mut buffers, &mut pending)
            .await;
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
        Ok(())
    }

    /// Writes the pending links; on success, marks their traces written and
    /// stores each partition's commit offset.
    async fn flush(
        &self,
        consumer: &skein_kafka::consumer::EventConsumer,
        topic: &str,
        buffers: &mut BTreeMap<i32, PartitionBuffer>,
        pending: &mut Pending,
    ) {
        if !pending.links.is_empty() {
            let started = Instant::now();
            match self.writer.write(&pending.links).await {
                Ok(()) => {
                    metrics::counter!(m::LINKS_WRITTEN).increment(pending.links.len() as u64);
                    metrics::histogram!(m::WRITE_SECONDS).record(started.elapsed().as_secs_f64());
                }
                Err(e) => {
                    metrics::counter!(m::WRITE_FAILURES).increment(1);
                    tracing::warn!(error = %e, links = pending.links.len(), "writing dependency links failed; trying again at the next flush");
                    return;
                }
            }
        }
        let done = std::mem::take(pending);
        let mut offsets = TopicPartitionList::new();
        for (&partition, buffer) in buffers.iter_mut() {
            if let Some(ranges) = done.traces.get(&partition) {
                buffer.written(ranges);
            }
            if let Some(offset) = buffer.commit_offset() {
                let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(offset));
            }
        }
        if offsets.count() > 0 {
            if let Err(e) = consumer.store_offsets(&offsets) {
                // A partition moved meanwhile; its new owner starts from
                // the last commit, which is safe.
                tracing::debug!(error = %e, "storing aggregator offsets");
            }
        }
    }
}

impl Pending {
    fn add(&mut self, partition: i32, trace: ClosedTrace, bucket_nanos: u64) {
        let mut found = links(&trace.trace_id, &trace.spans);
        into_buckets(&mut found, bucket_nanos);
        self.links.extend(found);
        self.traces
            .entry(partition)
            .or_default()
            .push((trace.first_offset, trace.last_offset));
    }
}

fn apply(buffers: &mut BTreeMap<i32, PartitionBuffer>, event: Assignment, topic: &str) {
    match event {
        Assignment::Assigned(partitions) => {
            for (t, partition) in partitions {
                if t == topic {
                    buffers.entry(partition).or_default();
                }
            }
        }
        Assignment::Revoked(partitions) => {
            for (_, partition) in partitions {
                // Its open traces are read again by the next owner from
                // the last commit.
                if let Some(mut buffer) = buffers.remove(&partition) {
                    buffer.clear();
                }
            }
        }
    }
    tracing::info!(partitions = ?buffers.keys().collect::<Vec<_>>(), "aggregator partitions");
}

fn gauges(buffers: &BTreeMap<i32, PartitionBuffer>) {
    let open: usize = buffers.values().map(PartitionBuffer::open_traces).sum();
    let bytes: usize = buffers.values().map(PartitionBuffer::bytes).sum();
    metrics::gauge!(m::TRACES_OPEN).set(open as f64);
    metrics::gauge!(m::OPEN_BYTES).set(bytes as f64);
    metrics::gauge!(m::PARTITIONS_ASSIGNED).set(buffers.len() as f64);
}
