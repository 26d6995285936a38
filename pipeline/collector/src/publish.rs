//! From an export request to acknowledged Kafka messages.
//!
//! In: the resource spans of one export request. Out: an [`Outcome`] saying
//! how many spans were published, rejected, or failed.
//!
//! Guarantees: returns only after every delivery report came back.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use skein_kafka::{Message, Publisher};
use skein_model::{otlp, otlp_raw, wire};

use crate::metrics as m;
use crate::Result;

/// What became of one request's spans.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Spans acknowledged by Kafka.
    pub published: usize,
    /// Malformed spans, rejected.
    pub rejected: usize,
    /// The first rejection, described for the client.
    pub rejection: Option<String>,
    /// Spans whose message Kafka did not acknowledge.
    pub failed: usize,
    /// The first Kafka error, if any.
    pub failure: Option<String>,
}

/// Validates, groups by trace and publishes spans.
#[derive(Clone)]
pub struct SpanPublisher {
    publisher: Publisher,
    topic: String,
    limits: otlp::Limits,
}

/// The model's limits from the topology's.
fn limits(l: &skein_config::SpanLimits) -> otlp::Limits {
    otlp::Limits {
        max_attributes: l.max_attributes,
        max_events: l.max_events,
        max_links: l.max_links,
        max_value_bytes: l.max_attribute_value_bytes,
        max_past_nano: l.max_past_ms.saturating_mul(1_000_000),
        max_future_nano: l.max_future_ms.saturating_mul(1_000_000),
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

impl SpanPublisher {
    /// A publisher to the topology's spans topic.
    pub fn new(topology: &skein_config::Topology) -> Result<Self> {
        Ok(Self {
            publisher: Publisher::new(&topology.kafka, topology.collector.publish_timeout())?,
            topic: topology.topics.spans.name.clone(),
            limits: limits(&topology.collector.limits),
        })
    }

    /// Publishes the spans of one request received over `transport`;
    /// `malformed` spans were dropped while decoding and count as rejected.
    pub async fn publish(
        &self,
        transport: &'static str,
        resource_spans: Vec<ResourceSpans>,
        malformed: otlp::Malformed,
    ) -> Outcome {
        let started = Instant::now();
        let now = now_unix_nano();
        let split = otlp::split_by_trace(resource_spans, malformed, &self.limits, now);
        self.publish_split(transport, started, now, split.into())
            .await
    }

    /// Publishes the spans of an encoded OTLP export request, copying
    /// each span's bytes rather than decoding it ([`otlp_raw`]); a body
    /// that does not decode is an error, and nothing is published.
    pub async fn publish_encoded(
        &self,
        transport: &'static str,
        body: &[u8],
    ) -> skein_model::Result<Outcome> {
        let started = Instant::now();
        let now = now_unix_nano();
        let split = otlp_raw::split_encoded(body, &self.limits, now)?;
        Ok(self.publish_split(transport, started, now, split).await)
    }

    async fn publish_split(
        &self,
        transport: &'static str,
        started: Instant,
        now: u64,
        split: otlp_raw::EncodedSplit,
    ) -> Outcome {
        let rejected = split.rejected_total();
        metrics::counter!(m::SPANS_RECEIVED, "transport" => transport)
            .increment((split.accepted + rejected) as u64);
        for (reason, n) in &split.rejected {
            metrics::counter!(m::SPANS_REJECTED, "transport" => transport, "reason" => reason.as_str())
                .increment(*n as u64);
        }
        if split.dropped > 0 {
            metrics::counter!(m::ITEMS_DROPPED, "transport" => transport)
                .increment(split.dropped as u64);
        }
        if split.truncated > 0 {
            metrics::counter!(m::SPANS_TRUNCATED, "transport" => transport)
                .increment(split.truncated as u64);
        }
        let received = now.to_string().into_bytes();
        let sizes: Vec<usize> = split.traces.iter().map(|t| t.spans).collect();
        let messages = split
            .traces
            .into_iter()
            .map(|t| Message {
                key: wire::key(&t.trace_id),
                value: t.value,
                headers: wire::headers(&received),
            })
            .collect();
        let results = self.publisher.send_all(&self.topic, messages).await;
        let mut outcome = Outcome {
            rejected,
            rejection: split.first_rejection,
            ..Outcome::default()
        };
        for (result, n) in results.into_iter().zip(sizes) {
            match result {
                Ok(_) => outcome.published += n,
                Err(e) => {
                    outcome.failed += n;
                    outcome.failure.get_or_insert_with(|| e.to_string());
                }
            }
        }
        metrics::counter!(m::SPANS_PUBLISHED, "transport" => transport)
            .increment(outcome.published as u64);
        if outcome.failed > 0 {
            metrics::counter!(m::SPANS_FAILED, "transport" => transport)
                .increment(outcome.failed as u64);
            tracing::warn!(
                transport,
                failed = outcome.failed,
                error = outcome.failure.as_deref(),
                "publishing to kafka failed"
            );
        }
        metrics::histogram!(m::PUBLISH_SECONDS, "transport" => transport)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// Waits briefly for messages still queued.
    pub fn flush(&self) {
        if let Err(e) = self.publisher.flush(std::time::Duration::from_secs(10)) {
            tracing::warn!(error = %e, "flushing the producer at shutdown failed");
        }
    }
}

impl Outcome {
    /// The request's outcome label.
    pub fn label(&self) -> &'static str {
        if self.failed > 0 {
            "unavailable"
        } else if self.rejected > 0 {
            "partial"
        } else {
            "ok"
        }
    }
}
