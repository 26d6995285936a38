//! End-to-end tests of Jaeger's Thrift receivers: `POST /api/traces`
//! (Thrift over HTTP) and the agent's UDP ports (compact and binary
//! `emitBatch`), each trace read back from the query API.
//!
//! The unmodified Node `jaeger-client` (tests/clients/node, installed with
//! `npm ci` when its `node_modules` is missing) sends over both of its
//! senders; hand-built Thrift from the Rust side covers the rest of the
//! mapping and the error paths.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use skein_model::jaeger;
use skein_model::jaeger_in::{Batch, Log, Process, RefType, Span, SpanRef, Tag, TagValue};
use skein_model::jaeger_thrift::{self, Protocol};
use skein_tests::{topology, Stack};

const WAIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------
// The Node client.

/// Sends the driver's trace over `transport` (`udp` or `http`) to `addr`,
/// and returns its trace ID.
async fn node_send(transport: &str, addr: SocketAddr, service: &str) -> Result<String> {
    let (transport, service) = (transport.to_owned(), service.to_owned());
    tokio::task::spawn_blocking(move || {
        let dir = skein_tests::npm_ci("node", "jaeger-client")?;
        let output = std::process::Command::new("node")
            .arg("send.js")
            .args([transport.as_str(), &addr.to_string(), &service])
            .current_dir(dir)
            .output()
            .context("running node (is it installed?)")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            output.status.success(),
            "node send.js {transport} failed: {stderr}"
        );
        let trace_id = String::from_utf8(output.stdout)?.trim().to_owned();
        ensure!(
            trace_id.len() == 16 || trace_id.len() == 32,
            "node send.js printed {trace_id:?}; stderr: {stderr}"
        );
        Ok(trace_id)
    })
    .await?
}

// ---------------------------------------------------------------------------
// Reading answers.

/// The spans of a query answer by operation name, each with its process
/// resolved.
fn spans_by_name(answer: &Value) -> BTreeMap<String, Value> {
    skein_tests::spans_with_process(&answer["data"][0])
        .into_iter()
        .map(|s| (s["operationName"].as_str().expect("name").to_owned(), s))
        .collect()
}

/// The tag `key` of a list of tags, as `{type, value}`.
fn tag(tags: &Value, key: &str) -> Value {
    let found: Vec<&Value> = tags
        .as_array()
        .expect("tags array")
        .iter()
        .filter(|t| t["key"] == key)
        .collect();
    match found[..] {
        [t] => json!({"type": t["type"], "value": t["value"]}),
        [] => Value::Null,
        _ => panic!("tag {key} appears {} times in {tags}", found.len()),
    }
}

fn has_no_tag(tags: &Value, key: &str) -> bool {
    tag(tags, key).is_null()
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after the epoch")
        .as_micros() as i64
}

/// Checks what the driver's trace must look like, whichever sender carried it.
fn check_node_trace(answer: &Value, trace_id: &str, service: &str) {
    let trace = &answer["data"][0];
    assert_eq!(trace["traceID"], trace_id);
    let spans = spans_by_name(answer);
    assert_eq!(
        spans.keys().collect::<Vec<_>>(),
        ["checkout", "load-cart", "send-receipt"]
    );
    let (parent, child, receipt) = (
        &spans["checkout"],
        &spans["load-cart"],
        &spans["send-receipt"],
    );
    for s in [parent, child, receipt] {
        assert_eq!(s["traceID"], trace_id);
        assert_eq!(s["flags"], 1, "sampled: {s}");
        let process = &s["process"];
        assert_eq!(process["serviceName"], service);
        // The client's process tags, with Jaeger's renames.
        let tags = &process["tags"];
        assert_eq!(
            tag(tags, "opencensus.exporterversion"),
            json!({"type": "string", "value": "Jaeger-Node-3.19.0"})
        );
        assert_eq!(tag(tags, "host.name")["type"], "string");
        assert!(has_no_tag(tags, "hostname") && has_no_tag(tags, "jaeger.version"));
        assert_eq!(
            tag(tags, "deployment.stage"),
            json!({"type": "string", "value": "test"})
        );
        assert_eq!(
            tag(tags, "build.number"),
            json!({"type": "float64", "value": 7.0})
        );
        let start = s["startTime"].as_i64().unwrap();
        assert!((now_us() - start).abs() < 600_000_000, "start {start}");
    }

    assert_eq!(parent["references"], json!([]));
    assert_eq!(
        tag(&parent["tags"], "span.kind"),
        json!({"type": "string", "value": "server"})
    );
    assert_eq!(
        tag(&parent["tags"], "http.method"),
        json!({"type": "string", "value": "POST"})
    );
    assert_eq!(
        tag(&parent["tags"], "sampler.type"),
        json!({"type": "string", "value": "const"})
    );

    assert_eq!(
        child["references"],
        json!([{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent["spanID"]}])
    );
    let tags = &child["tags"];
    for (key, want) in [
        ("span.kind", json!({"type": "string", "value": "client"})),
        ("cart.owner", json!({"type": "string", "value": "alice"})),
        // JavaScript numbers travel as Thrift doubles.
        ("cart.items", json!({"type": "float64", "value": 3.0})),
        ("cart.total", json!({"type": "float64", "value": 12.5})),
        ("cart.cached", json!({"type": "bool", "value": false})),
        // error=true became the error status, which Jaeger shows so.
        ("error", json!({"type": "bool", "value": true})),
        (
            "otel.status_code",
            json!({"type": "string", "value": "ERROR"}),
        ),
    ] {
        assert_eq!(tag(tags, key), want, "tag {key} of {child}");
    }
    let logs = child["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1);
    // `event` became the event's name; the Collector removes it from the
    // fields as pdata does, moving the last field into its place.
    assert_eq!(
        logs[0]["fields"],
        json!([
            {"key": "event", "type": "string", "value": "cache-miss"},
            {"key": "attempts", "type": "float64", "value": 2.0},
            {"key": "key", "type": "string", "value": "cart:alice"}
        ])
    );
    let child_start = child["startTime"].as_i64().unwrap();
    assert!(logs[0]["timestamp"].as_i64().unwrap() >= child_start);

    // A FOLLOWS_FROM reference is the parent and keeps its type.
    assert_eq!(
        receipt["references"],
        json!([{"refType": "FOLLOWS_FROM", "traceID": trace_id, "spanID": parent["spanID"]}])
    );
    assert_eq!(
        tag(&receipt["tags"], "receipt.bytes"),
        json!({"type": "binary", "value": "AAEC/w=="})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_over_udp_reads_back_from_the_query_api() -> Result<()> {
    let stack = Stack::start(topology("jaeger_node_udp")).await?;
    // Node's UDPSender speaks the binary protocol (thriftrw has no compact
    // one), so it reports to the agent's binary port, 6832 by default.
    let addr = stack.collector.agent_binary.context("agent_binary off")?;
    let trace_id = node_send("udp", addr, "node-udp-svc").await?;
    assert_eq!(trace_id.len(), 16, "a 64-bit trace ID");
    let answer = stack.wait_for_trace(&trace_id, 3, WAIT).await?;
    check_node_trace(&answer, &trace_id, "node-udp-svc");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_over_http_reads_back_from_the_query_api() -> Result<()> {
    let stack = Stack::start(topology("jaeger_node_http")).await?;
    let addr = stack
        .collector
        .jaeger_thrift_http
        .context("jaeger_thrift_http off")?;
    let trace_id = node_send("http", addr, "node-http-svc").await?;
    assert_eq!(trace_id.len(), 32, "a 128-bit trace ID");
    let answer = stack.wait_for_trace(&trace_id, 3, WAIT).await?;
    check_node_trace(&answer, &trace_id, "node-http-svc");
    stack.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Hand-built Thrift.

/// A batch covering the mapping: a 128-bit trace of two spans, every tag
/// type, the special tags, a log, a parent given only as a reference, and a
/// link to another trace.
fn mapping_batch(trace_high: u64, trace_low: u64, service: &str) -> Batch {
    let start = now_us() - 5_000_000;
    let root = Span {
        trace_id_low: trace_low,
        trace_id_high: trace_high,
        span_id: 0x1000,
        parent_span_id: 0,
        operation_name: "GET /orders".into(),
        flags: 1,
        start_time_us: start,
        duration_us: 2_500,
        tags: vec![
            Tag::str("span.kind", "server"),
            Tag::str("otel.scope.name", "orders-lib"),
            Tag::str("otel.scope.version", "2.1.0"),
            Tag::str("w3c.tracestate", "vendor=abc"),
            Tag::str("otel.status_code", "OK"),
            Tag::new("http.status_code", TagValue::Long(200)),
            Tag::new("ratio", TagValue::Double(0.75)),
            Tag::new("cached", TagValue::Bool(true)),
            Tag::new("payload", TagValue::Binary(vec![0xde, 0xad, 0xbe, 0xef])),
            Tag::str("user", "bob"),
        ],
        logs: vec![Log {
            timestamp_us: start + 100,
            fields: vec![
                Tag::str("event", "order-loaded"),
                Tag::new("rows", TagValue::Long(12)),
            ],
        }],
        ..Default::default()
    };
    let child = Span {
        trace_id_low: trace_low,
        trace_id_high: trace_high,
        span_id: 0x2000,
        parent_span_id: 0,
        operation_name: "SELECT orders".into(),
        references: vec![
            SpanRef {
                ref_type: RefType::FollowsFrom,
                trace_id_low: 0x77,
                trace_id_high: 0,
                span_id: 0x7777,
            },
            SpanRef {
                ref_type: RefType::ChildOf,
                trace_id_low: trace_low,
                trace_id_high: trace_high,
                span_id: 0x1000,
            },
        ],
        flags: 1,
        start_time_us: start + 200,
        duration_us: 1_000,
        tags: vec![
            Tag::str("span.kind", "client"),
            Tag::new("error", TagValue::Bool(true)),
            Tag::str("otel.status_description", "deadlock"),
        ],
        ..Default::default()
    };
    Batch {
        process: Process {
            service_name: service.into(),
            tags: vec![
                Tag::str("hostname", "db-7"),
                Tag::str("jaeger.version", "Go-2.30.0"),
                Tag::new("pid", TagValue::Long(4242)),
            ],
        },
        spans: vec![root, child],
    }
}

/// Checks the mapping of [`mapping_batch`] as the query API shows it.
fn check_mapping(answer: &Value, trace_id: &str, sent: &Batch) {
    let service = sent.process.service_name.as_str();
    let spans = spans_by_name(answer);
    let (root, child) = (&spans["GET /orders"], &spans["SELECT orders"]);
    assert_eq!(root["traceID"], trace_id);
    assert_eq!(root["spanID"], "0000000000001000");
    assert_eq!(root["duration"], 2_500);
    assert_eq!(root["flags"], 1);
    let process = &root["process"];
    assert_eq!(process["serviceName"], service);
    assert_eq!(
        process["tags"],
        json!([
            {"key": "host.name", "type": "string", "value": "db-7"},
            {"key": "opencensus.exporterversion", "type": "string", "value": "Jaeger-Go-2.30.0"},
            {"key": "pid", "type": "int64", "value": 4242}
        ])
    );
    let tags = &root["tags"];
    for (key, want) in [
        (
            "otel.scope.name",
            json!({"type": "string", "value": "orders-lib"}),
        ),
        (
            "otel.scope.version",
            json!({"type": "string", "value": "2.1.0"}),
        ),
        (
            "w3c.tracestate",
            json!({"type": "string", "value": "vendor=abc"}),
        ),
        ("otel.status_code", json!({"type": "string", "value": "OK"})),
        ("span.kind", json!({"type": "string", "value": "server"})),
        ("http.status_code", json!({"type": "int64", "value": 200})),
        ("ratio", json!({"type": "float64", "value": 0.75})),
        ("cached", json!({"type": "bool", "value": true})),
        ("payload", json!({"type": "binary", "value": "3q2+7w=="})),
        ("user", json!({"type": "string", "value": "bob"})),
    ] {
        assert_eq!(tag(tags, key), want, "tag {key} of {root}");
    }
    assert!(has_no_tag(tags, "error"));
    assert_eq!(
        root["logs"][0]["fields"],
        json!([
            {"key": "event", "type": "string", "value": "order-loaded"},
            {"key": "rows", "type": "int64", "value": 12}
        ])
    );
    assert_eq!(
        root["logs"][0]["timestamp"].as_i64(),
        root["startTime"].as_i64().map(|t| t + 100)
    );
    // The parent came from the CHILD_OF reference; the other trace's
    // FOLLOWS_FROM is a link.
    assert_eq!(
        child["references"],
        json!([
            {"refType": "CHILD_OF", "traceID": trace_id, "spanID": "0000000000001000"},
            {"refType": "FOLLOWS_FROM", "traceID": "0000000000000077", "spanID": "0000000000007777"}
        ])
    );
    for (key, want) in [
        ("span.kind", json!({"type": "string", "value": "client"})),
        (
            "otel.status_code",
            json!({"type": "string", "value": "ERROR"}),
        ),
        ("error", json!({"type": "bool", "value": true})),
        (
            "otel.status_description",
            json!({"type": "string", "value": "deadlock"}),
        ),
    ] {
        assert_eq!(tag(&child["tags"], key), want, "tag {key} of {child}");
    }
    assert!(has_no_tag(&child["tags"], "otel.scope.name"));
    // The rest, field for field: what Jaeger shows for the Collector's
    // translation of the batch.
    let otlp = skein_model::jaeger_in::to_otlp(vec![sent.clone()]);
    let mut want = jaeger::trace_from_otlp(&otlp);
    // The query service adjusts traces as Jaeger's does (tags sorted).
    skein_model::adjust::standard(&mut want, &skein_model::adjust::Options::default());
    let want = serde_json::to_value(want).unwrap();
    let want = spans_by_name(&json!({"data": [want]}));
    for (name, span) in &spans {
        for field in ["references", "tags", "logs", "flags", "duration"] {
            assert_eq!(span[field], want[name][field], "{field} of {name}");
        }
        assert_eq!(
            span["process"]["tags"], want[name]["process"]["tags"],
            "process of {name}"
        );
    }
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes)?;
    Ok(gz.finish()?)
}

fn unique_ids() -> (u64, u64) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after the epoch")
        .as_nanos() as u64;
    (
        0x5eed_0000_0000_0000 | (nanos >> 16),
        nanos ^ u64::from(std::process::id()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thrift_batch_over_http_maps_every_field() -> Result<()> {
    let stack = Stack::start(topology("jaeger_http_mapping")).await?;
    let url = format!(
        "http://{}/api/traces",
        stack.collector.jaeger_thrift_http.context("off")?
    );
    let client = reqwest::Client::new();
    let (high, low) = unique_ids();
    let trace_id = format!("{high:016x}{low:016x}");
    let sent = mapping_batch(high, low, "orders");
    let body = jaeger_thrift::encode_batch(&sent, Protocol::Binary);

    let response = client
        .post(&url)
        .header("content-type", "application/vnd.apache.thrift.binary")
        .header("content-encoding", "gzip")
        .body(gzip(&body)?)
        .send()
        .await?;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);

    // Refusals, each with a plain-text reason.
    let response = client
        .post(&url)
        .header("content-type", "application/x-thrift")
        .body(&b"\x0c\x00\x01\x0b\x00\x01\x7f\xff\xff\xffnot a batch"[..])
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let text = response.text().await?;
    assert!(
        text.contains("not a thrift jaeger batch") && text.contains("string length claims"),
        "{text}"
    );
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    assert_eq!(response.status(), 415);
    assert!(response.text().await?.contains("application/x-thrift"));
    let response = client
        .post(&url)
        .header("content-type", "application/x-thrift")
        .header("content-encoding", "br")
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(response.status(), 415);
    // A span without a trace ID is rejected alone; its neighbour lands.
    let mut partial = sent.clone();
    partial.spans[0].trace_id_low = 0;
    partial.spans[0].trace_id_high = 0;
    partial.spans[1].span_id = 0x3000;
    partial.spans[1].operation_name = "late".into();
    let response = client
        .post(&url)
        .header("content-type", "application/x-thrift")
        .body(jaeger_thrift::encode_batch(&partial, Protocol::Binary))
        .send()
        .await?;
    assert_eq!(response.status(), 202);
    let text = response.text().await?;
    assert!(text.contains("rejected 1 malformed spans"), "{text}");

    let mut answer = stack.wait_for_trace(&trace_id, 3, WAIT).await?;
    // Only the two spans of the first request are checked against the
    // mapping.
    let spans = answer["data"][0]["spans"].as_array_mut().unwrap();
    spans.retain(|s| s["operationName"] != "late");
    check_mapping(&answer, &trace_id, &sent);
    stack.stop().await;
    Ok(())
}

async fn send_datagrams(to: SocketAddr, datagrams: &[Vec<u8>]) -> Result<()> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    for d in datagrams {
        socket.send_to(d, to).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_datagrams_survive_garbage_and_map_every_field() -> Result<()> {
    let stack = Stack::start(topology("jaeger_udp_compact")).await?;
    let compact = stack.collector.agent_compact.context("agent_compact off")?;
    let binary = stack.collector.agent_binary.context("agent_binary off")?;
    let (high, low) = unique_ids();
    let trace_id = format!("{high:016x}{low:016x}");
    let batch = mapping_batch(high, low, "udp-orders");
    let valid = jaeger_thrift::encode_agent_call(&batch, Protocol::Compact, 1);

    // Garbage of every kind first, on both ports: random bytes, an empty
    // datagram, a truncated call, a call in the other protocol, a Zipkin
    // batch, a huge declared string.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let junk: Vec<u8> = (0..1500)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let zipkin = {
        let mut d = vec![0x82, 0x81, 0x00, 0x0f];
        d.extend_from_slice(b"emitZipkinBatch");
        d.extend_from_slice(&[0x19, 0x0c, 0x00]);
        d
    };
    let garbage = vec![
        junk.clone(),
        Vec::new(),
        valid[..valid.len() / 2].to_vec(),
        jaeger_thrift::encode_agent_call(&batch, Protocol::Binary, 2),
        zipkin,
        vec![
            0x82, 0x81, 0x00, 0x09, b'e', b'm', b'i', b't', b'B', b'a', b't', b'c', b'h', 0x1c,
            0x1c, 0x18, 0xff, 0xff, 0xff, 0xff, 0x07,
        ],
    ];
    send_datagrams(compact, &garbage).await?;
    send_datagrams(binary, &[junk, valid.clone()]).await?;
    // Then the real one.
    send_datagrams(compact, &[valid]).await?;

    let answer = match stack.wait_for_trace(&trace_id, 2, WAIT).await {
        Ok(a) => a,
        Err(e) => bail!("the valid datagram after the garbage did not arrive: {e}"),
    };
    check_mapping(&answer, &trace_id, &batch);

    // Still receiving after all that: a second trace on the same port.
    let (high2, low2) = unique_ids();
    let again = jaeger_thrift::encode_agent_call(
        &mapping_batch(high2, low2, "udp-orders"),
        Protocol::Compact,
        3,
    );
    send_datagrams(compact, &[again]).await?;
    stack
        .wait_for_trace(&format!("{high2:016x}{low2:016x}"), 2, WAIT)
        .await?;
    stack.stop().await;
    Ok(())
}

/// With Kafka gone, a Thrift post is never answered 202: it waits for the
/// delivery report and gets 503, and one that does not fit in the in-flight
/// budget meanwhile gets 429; both say when to retry. Runs against a broker
/// of its own, which it kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_broker_gets_retryable_refusals_over_thrift_http() -> Result<()> {
    let mut broker = skein_tests::PrivateBroker::start("jaeger_backpressure").await?;
    let mut t = topology("jaeger_backpressure");
    t.kafka.brokers = broker.addr.clone();
    t.collector.publish_timeout_ms = 3_000;
    t.collector.max_request_bytes = 64 * 1024;
    t.collector.max_in_flight_bytes = 64 * 1024;
    skein_kafka::admin::apply_topics(&t).await?;
    let collector = skein_collector::Collector::bind(&t).await?;
    let url = format!(
        "http://{}/api/traces",
        collector.addresses().jaeger_thrift_http.context("off")?
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(collector.run(shutdown.clone()));
    let post = |body: Vec<u8>| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-thrift")
                .body(body)
                .timeout(Duration::from_secs(60))
                .send()
                .await
        }
    };
    let (high, low) = unique_ids();
    let small = jaeger_thrift::encode_batch(&mapping_batch(high, low, "bp"), Protocol::Binary);
    let mut padded = mapping_batch(high, low, "bp");
    padded.spans[0]
        .tags
        .push(Tag::str("padding", "x".repeat(40 * 1024)));
    let big = jaeger_thrift::encode_batch(&padded, Protocol::Binary);

    let ok = post(small.clone()).await?;
    assert_eq!(ok.status(), 202, "{}", ok.text().await?);

    broker.kill();
    let held = tokio::spawn(post(big.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = post(big).await?;
    assert_eq!(busy.status(), 429);
    assert_eq!(busy.headers()["retry-after"], "1");
    assert!(busy.text().await?.contains("in-flight limit"));
    let failed = held.await??;
    assert_eq!(failed.status(), 503, "no 202 before a delivery report");
    assert_eq!(failed.headers()["retry-after"], "1");
    let text = failed.text().await?;
    assert!(text.contains("kafka did not acknowledge"), "{text}");

    // Recovery once the broker returns is the publisher's, whatever the
    // receiver: tests/backpressure.rs covers it.
    drop(broker);
    shutdown.cancel();
    running.await??;
    Ok(())
}

// ---------------------------------------------------------------------------
// Jaeger gRPC: CollectorService/PostSpans and SamplingManager on 14250.

/// The neutral batch in Jaeger's protobuf model, as a Jaeger SDK sends it.
fn to_proto(b: &Batch) -> skein_model::jaeger_proto::Batch {
    use skein_model::jaeger_proto as pb;
    fn kv(t: &Tag) -> pb::KeyValue {
        let mut kv = pb::KeyValue {
            key: t.key.clone(),
            ..Default::default()
        };
        match &t.value {
            TagValue::Str(s) => kv.v_str = s.clone(),
            TagValue::Bool(v) => (kv.v_type, kv.v_bool) = (pb::ValueType::Bool as i32, *v),
            TagValue::Long(v) => (kv.v_type, kv.v_int64) = (pb::ValueType::Int64 as i32, *v),
            TagValue::Double(v) => (kv.v_type, kv.v_float64) = (pb::ValueType::Float64 as i32, *v),
            TagValue::Binary(v) => {
                (kv.v_type, kv.v_binary) = (pb::ValueType::Binary as i32, v.clone())
            }
        }
        kv
    }
    let ts = |us: i64| prost_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1_000) as i32,
    };
    let id = |high: u64, low: u64| [high.to_be_bytes(), low.to_be_bytes()].concat();
    pb::Batch {
        process: Some(pb::Process {
            service_name: b.process.service_name.clone(),
            tags: b.process.tags.iter().map(kv).collect(),
        }),
        spans: b
            .spans
            .iter()
            .map(|s| pb::Span {
                trace_id: id(s.trace_id_high, s.trace_id_low),
                span_id: s.span_id.to_be_bytes().to_vec(),
                operation_name: s.operation_name.clone(),
                references: s
                    .references
                    .iter()
                    .map(|r| pb::SpanRef {
                        trace_id: id(r.trace_id_high, r.trace_id_low),
                        span_id: r.span_id.to_be_bytes().to_vec(),
                        ref_type: match r.ref_type {
                            RefType::ChildOf => pb::SpanRefType::ChildOf as i32,
                            RefType::FollowsFrom => pb::SpanRefType::FollowsFrom as i32,
                        },
                    })
                    .collect(),
                flags: s.flags,
                start_time: Some(ts(s.start_time_us)),
                duration: Some(prost_types::Duration {
                    seconds: s.duration_us / 1_000_000,
                    nanos: ((s.duration_us % 1_000_000) * 1_000) as i32,
                }),
                tags: s.tags.iter().map(kv).collect(),
                logs: s
                    .logs
                    .iter()
                    .map(|l| pb::Log {
                        timestamp: Some(ts(l.timestamp_us)),
                        fields: l.fields.iter().map(kv).collect(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_post_spans_maps_every_field_and_sampling_answers() -> Result<()> {
    use skein_model::jaeger_proto as pb;
    use skein_model::jaeger_proto::collector_service_client::CollectorServiceClient;
    use skein_model::jaeger_proto::sampling_manager_client::SamplingManagerClient;
    let stack = Stack::start(topology("jaeger_grpc")).await?;
    let endpoint = format!("http://{}", stack.collector.jaeger_grpc.context("off")?);
    let (high, low) = unique_ids();
    let trace_id = format!("{high:016x}{low:016x}");
    let sent = mapping_batch(high, low, "orders-grpc");
    let channel = tonic::transport::Channel::from_shared(endpoint)?
        .connect()
        .await?;
    let mut client = CollectorServiceClient::new(channel.clone());
    client
        .post_spans(pb::PostSpansRequest {
            batch: Some(to_proto(&sent)),
        })
        .await?;
    let answer = stack.wait_for_trace(&trace_id, 2, WAIT).await?;
    check_mapping(&answer, &trace_id, &sent);

    // A span with a malformed ID is rejected alone.
    let (high, low) = unique_ids();
    let mut bad = to_proto(&mapping_batch(high, low, "orders-grpc"));
    bad.spans[0].span_id = vec![1, 2, 3];
    client
        .post_spans(pb::PostSpansRequest { batch: Some(bad) })
        .await?;
    stack
        .wait_for_trace(&format!("{high:016x}{low:016x}"), 1, WAIT)
        .await?;

    let mut sampling = SamplingManagerClient::new(channel);
    let strategy = sampling
        .get_sampling_strategy(pb::SamplingStrategyParameters {
            service_name: "orders-grpc".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        strategy.strategy_type,
        pb::SamplingStrategyType::Probabilistic as i32
    );
    assert_eq!(
        strategy.probabilistic_sampling.map(|p| p.sampling_rate),
        Some(stack.topology.collector.sampling.default_probability)
    );
    stack.stop().await;
    Ok(())
}
