//! The streaming dependency graph equals the batch one: a generated
//! multi-service workload (fan-out, retries, errors, peer services, shared
//! client/server span IDs, late parents, traces spread over seconds) goes
//! through the collector; the aggregator builds the graph from the spans
//! topic while the ingester stores the spans; then the graph computed in
//! batch from ClickHouse must match it edge for edge and count for count,
//! also after the aggregator is stopped mid-stream and started again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Result};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use skein_tests::{topology, Stack};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(120);

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A span of the workload, with the service that emits it.
struct Emitted {
    service: &'static str,
    span: Span,
}

struct TraceBuilder {
    trace: u32,
    start: u64,
    spans: Vec<Emitted>,
}

impl TraceBuilder {
    fn id(&self, n: u32) -> Vec<u8> {
        (u64::from(self.trace) << 16 | u64::from(n))
            .to_be_bytes()
            .to_vec()
    }

    /// Adds a span; `at_ms` after the trace's start, lasting `ms`.
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: &'static str,
        n: u32,
        parent: Option<u32>,
        kind: SpanKind,
        at_ms: u64,
        ms: u64,
        error: bool,
        attributes: Vec<KeyValue>,
    ) {
        let ms_ns = 1_000_000;
        self.spans.push(Emitted {
            service,
            span: Span {
                trace_id: u128::from(self.trace).to_be_bytes().to_vec(),
                span_id: self.id(n),
                parent_span_id: parent.map(|p| self.id(p)).unwrap_or_default(),
                name: format!("{service}-op"),
                kind: kind as i32,
                start_time_unix_nano: self.start + at_ms * ms_ns,
                end_time_unix_nano: self.start + (at_ms + ms) * ms_ns,
                attributes,
                status: Some(Status {
                    code: if error {
                        StatusCode::Error
                    } else {
                        StatusCode::Unset
                    } as i32,
                    message: String::new(),
                }),
                ..Default::default()
            },
        });
    }
}

/// One trace of the workload; its shape varies with `i`.
fn workload_trace(i: u32, start: u64) -> TraceBuilder {
    use SpanKind::{Client, Consumer, Internal, Producer, Server};
    let mut t = TraceBuilder {
        trace: 0x5e00 + i,
        start,
        spans: Vec::new(),
    };
    t.span("frontend", 1, None, Server, 0, 900, false, vec![]);
    // Fan-out from the frontend.
    t.span("frontend", 2, Some(1), Client, 10, 300, false, vec![]);
    t.span(
        "api",
        3,
        Some(2),
        Server,
        20,
        280,
        i.is_multiple_of(5),
        vec![],
    );
    t.span("frontend", 4, Some(1), Client, 10, 100, false, vec![]);
    t.span("auth", 5, Some(4), Server, 15, 90, false, vec![]);
    // The api calls the cache, retrying after an error.
    t.span("api", 6, Some(3), Client, 30, 20, true, vec![]);
    t.span("cache", 7, Some(6), Server, 32, 15, true, vec![]);
    t.span("api", 8, Some(3), Client, 60, 20, false, vec![]);
    t.span("cache", 9, Some(8), Server, 62, 15, false, vec![]);
    // Calls to things that send no spans: peer.service, and db.system
    // (the ingester's enrichment turns it into peer.service).
    t.span(
        "api",
        10,
        Some(3),
        Client,
        100,
        50,
        false,
        vec![text("peer.service", "billing")],
    );
    t.span(
        "api",
        11,
        Some(3),
        Client,
        160,
        30,
        i.is_multiple_of(3),
        vec![text("db.system", "postgresql")],
    );
    // Internal work stays within its service.
    t.span("api", 12, Some(3), Internal, 200, 10, false, vec![]);
    // Messaging.
    if i.is_multiple_of(2) {
        t.span("frontend", 13, Some(1), Producer, 400, 5, false, vec![]);
        t.span("worker", 14, Some(13), Consumer, 900, 50, false, vec![]);
    }
    // Zipkin style: the server span shares the client's span ID.
    if i % 4 == 1 {
        t.span("frontend", 15, Some(1), Client, 500, 100, false, vec![]);
        let mut shared = Emitted {
            service: "search",
            span: t.spans.last().expect("just added").span.clone(),
        };
        shared.span.kind = Server as i32;
        shared.span.start_time_unix_nano += 5_000_000;
        shared.span.end_time_unix_nano -= 5_000_000;
        t.spans.push(shared);
    }
    t
}

fn by_service(spans: Vec<Emitted>) -> Vec<ResourceSpans> {
    let mut grouped: BTreeMap<&'static str, Vec<Span>> = BTreeMap::new();
    for e in spans {
        grouped.entry(e.service).or_default().push(e.span);
    }
    grouped
        .into_iter()
        .map(|(service, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect()
}

async fn post(stack: &Stack, spans: Vec<Emitted>) -> Result<()> {
    let body = ExportTraceServiceRequest {
        resource_spans: by_service(spans),
    }
    .encode_to_vec();
    let response = reqwest::Client::new()
        .post(stack.traces_url())
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "collector answered {}",
        response.status()
    );
    Ok(())
}

type Graph = BTreeMap<(String, String), (u64, u64)>;

async fn streamed(reader: &skein_store::SpanReader, from: u64, to: u64) -> Result<Graph> {
    Ok(reader
        .dependencies(from, to)
        .await?
        .into_iter()
        .map(|d| ((d.parent, d.child), (d.call_count, d.error_count)))
        .collect())
}

fn start_aggregator(
    t: &skein_config::Topology,
) -> (CancellationToken, tokio::task::JoinHandle<Result<()>>) {
    let shutdown = CancellationToken::new();
    let t = t.clone();
    let s = shutdown.clone();
    let task = tokio::spawn(async move {
        skein_aggregator::Aggregator::new(&t).await?.run(s).await?;
        Ok(())
    });
    (shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streaming_graph_equals_the_batch_graph() -> Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let mut t = topology("aggregator");
    t.aggregator.window_ms = 3_000;
    t.aggregator.flush_ms = 500;
    // Five-minute buckets, so that the non-default path is the one tested.
    t.aggregator.bucket_seconds = 300;
    let stack = Stack::start(t.clone()).await?;
    let t = stack.topology.clone();
    let (mut stop, mut aggregator) = start_aggregator(&t);

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let base = now - 600 * 1_000_000_000;
    let traces = 24u32;
    let mut total_spans = 0usize;
    // Each trace arrives in three parts a second apart: children before
    // their parents (the root comes last), so parents arrive late.
    let mut parts: [Vec<Emitted>; 3] = Default::default();
    for i in 0..traces {
        let trace = workload_trace(i, base + u64::from(i) * 2_000_000_000);
        total_spans += trace.spans.len();
        for e in trace.spans {
            let n =
                u64::from_be_bytes(e.span.span_id.clone().try_into().expect("8 bytes")) & 0xffff;
            let part = match n {
                1 => 2,
                2..=5 => 1,
                _ => 0,
            };
            parts[part].push(e);
        }
    }
    for (k, part) in parts.into_iter().enumerate() {
        let half = part.len() / 2;
        let mut part = part;
        let second = part.split_off(half);
        post(&stack, part).await?;
        if k == 1 {
            // Stopped mid-stream: open traces are dropped uncommitted and
            // read again by the next aggregator of the group.
            stop.cancel();
            aggregator.await??;
            (stop, aggregator) = start_aggregator(&t);
        }
        post(&stack, second).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Every span stored, then the batch graph over the same window.
    let ch = &t.storage.clickhouse;
    let client = skein_store::client(ch);
    let started = Instant::now();
    loop {
        let stored: u64 = client
            .query(&format!("SELECT count() FROM {}.spans", ch.database))
            .fetch_one()
            .await?;
        if stored as usize >= total_spans {
            break;
        }
        ensure!(
            started.elapsed() < WAIT,
            "{stored} of {total_spans} spans stored"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (from, to) = (base - 3_600_000_000_000, now + 3_600_000_000_000);
    let batch: Graph = skein_aggregator::batch::graph(&t, from, to).await?;
    let reader = skein_store::SpanReader::new(client.clone(), &ch.database);
    let started = Instant::now();
    let stream = loop {
        let stream = streamed(&reader, from, to).await?;
        if stream == batch || started.elapsed() > WAIT {
            break stream;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for ((parent, child), (calls, errors)) in &batch {
        println!("{parent} -> {child}: {calls} calls, {errors} errors");
    }
    assert_eq!(
        stream, batch,
        "streaming graph (left) against batch (right)"
    );

    // What the workload must give, edge for edge.
    let n = u64::from(traces);
    let even = u64::from((0..traces).filter(|i| i.is_multiple_of(2)).count() as u32);
    let zipkin = u64::from((0..traces).filter(|i| i % 4 == 1).count() as u32);
    let fifth = u64::from((0..traces).filter(|i| i.is_multiple_of(5)).count() as u32);
    let third = u64::from((0..traces).filter(|i| i.is_multiple_of(3)).count() as u32);
    let edge = |p: &str, c: &str| batch.get(&(p.to_owned(), c.to_owned())).copied();
    assert_eq!(edge("frontend", "api"), Some((n, fifth)));
    assert_eq!(edge("frontend", "auth"), Some((n, 0)));
    assert_eq!(
        edge("api", "cache"),
        Some((2 * n, n)),
        "retries count as calls"
    );
    assert_eq!(edge("api", "billing"), Some((n, 0)), "peer.service");
    assert_eq!(edge("api", "postgresql"), Some((n, third)), "db.system");
    assert_eq!(
        edge("frontend", "worker"),
        Some((even, 0)),
        "producer to consumer"
    );
    assert_eq!(
        edge("frontend", "search"),
        Some((zipkin, 0)),
        "shared span IDs"
    );

    // The aggregator stops and starts again, and a batch rebuild writes the
    // same window: nothing counts twice.
    stop.cancel();
    aggregator.await??;
    let (stop, aggregator) = start_aggregator(&t);
    skein_aggregator::batch::rebuild(&t, from, to, |_| {}).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        streamed(&reader, from, to).await?,
        batch,
        "after restart and rebuild"
    );
    stop.cancel();
    aggregator.await??;
    // What /metrics shows of it.
    let text = metrics.render();
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("skein_aggregator_links_written_total") >= 348.0,
        "{text}"
    );
    assert!(
        value("skein_aggregator_traces_closed_total{reason=\"quiet\"}") >= f64::from(traces),
        "{text}"
    );
    assert_eq!(value("skein_aggregator_traces_open"), 0.0, "{text}");
    assert!(text.contains("skein_aggregator_consumer_lag{"), "{text}");
    stack.stop().await;
    Ok(())
}
