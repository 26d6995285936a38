//! One trace the whole way: OTLP client → collector → Kafka → ingester →
//! ClickHouse → query API, against the real broker and ClickHouse.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde_json::Value;
use skein_model::jaeger;
use skein_tests::{fixture, fixture_in_trace, fixture_json, topology, Stack};

const WAIT: Duration = Duration::from_secs(90);

/// A span as the query API shows it, with its process resolved, so that two
/// answers can be compared whatever their span order and process keys.
fn spans_by_id(trace: &Value) -> BTreeMap<String, Value> {
    skein_tests::spans_with_process(trace)
        .into_iter()
        .map(|s| (s["spanID"].as_str().expect("spanID").to_owned(), s))
        .collect()
}

/// What the API must answer for `data`: Jaeger's rendering of exactly the
/// spans that were sent, adjusted as the query service adjusts it.
fn expected(data: &TracesData) -> BTreeMap<String, Value> {
    let mut trace = jaeger::trace_from_otlp(&data.resource_spans);
    skein_model::adjust::standard(&mut trace, &skein_model::adjust::Options::default());
    spans_by_id(&serde_json::to_value(trace).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_trace_posted_as_otlp_json_reads_back_from_the_query_api() -> Result<()> {
    let stack = Stack::start(topology("example_json")).await?;
    let body = fixture_json("example_trace")?;
    let sent = fixture("example_trace")?;

    let response = stack.post_otlp_json(body).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await?, serde_json::json!({}));

    let answer = stack.wait_for_trace("0000000000000011", 5, WAIT).await?;
    let trace = &answer["data"][0];
    assert_eq!(trace["traceID"], "0000000000000011");
    let got = spans_by_id(trace);
    let want = expected(&sent);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (id, span) in &want {
        assert_eq!(&got[id], span, "span {id} differs");
    }
    // Spot checks against the fixture itself, not only the converter.
    let s6 = &got["0000000000000006"];
    assert_eq!(s6["operationName"], "example-operation-3");
    assert_eq!(s6["process"]["serviceName"], "example-service-1");
    assert!(s6["tags"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"key": "span.kind", "type": "string", "value": "server"})));
    let start_ns: u64 = sent.resource_spans[2].scope_spans[0].spans[1].start_time_unix_nano;
    assert_eq!(s6["startTime"], start_ns / 1000);
    assert_eq!(s6["duration"], 100);
    assert_eq!(s6["logs"].as_array().unwrap().len(), 2);
    let services: std::collections::BTreeSet<_> = trace["processes"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["serviceName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        [
            "example-service-1",
            "example-service-2",
            "example-service-3"
        ]
    );

    let missing =
        reqwest::get(stack.query_url("/api/traces/00000000000000000000000000abcdef")).await?;
    assert_eq!(missing.status(), 404);
    let bad = reqwest::get(stack.query_url("/api/traces/not-hex")).await?;
    assert_eq!(bad.status(), 400);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_attributes_survive_protobuf_and_gzip() -> Result<()> {
    let stack = Stack::start(topology("span_tags_gzip")).await?;
    let sent = fixture("span_tags_trace")?;
    let request = ExportTraceServiceRequest {
        resource_spans: sent.resource_spans.clone(),
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&request.encode_to_vec())?;
    let response = reqwest::Client::new()
        .post(stack.traces_url())
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz.finish()?)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let decoded = ExportTraceServiceResponse::decode(response.bytes().await?)?;
    assert_eq!(decoded.partial_success, None);

    let answer = stack
        .wait_for_trace("00000000000000000000000000000001", 1, WAIT)
        .await?;
    let got = spans_by_id(&answer["data"][0]);
    assert_eq!(got, expected(&sent));
    let tags = got["0000000000000002"]["tags"].as_array().unwrap().clone();
    for want in [
        serde_json::json!({"key": "sameplacetag2", "type": "int64", "value": 123}),
        serde_json::json!({"key": "sameplacetag3", "type": "float64", "value": 72.5}),
        serde_json::json!({"key": "sameplacetag4", "type": "bool", "value": true}),
        serde_json::json!({"key": "blob", "type": "binary", "value": "AAAwOQ=="}),
    ] {
        assert!(tags.contains(&want), "{want} missing from {tags:?}");
    }
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_rejects_a_malformed_span_and_keeps_its_neighbours() -> Result<()> {
    let stack = Stack::start(topology("grpc_partial")).await?;
    // The trace gets its own ID, and one span a broken ID.
    let mut sent = fixture_in_trace("example_trace", 0xab)?;
    sent.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2, 3];
    let mut client = TraceServiceClient::connect(format!("http://{}", stack.otlp_grpc)).await?;
    let response = client
        .export(ExportTraceServiceRequest {
            resource_spans: sent.resource_spans.clone(),
        })
        .await?
        .into_inner();
    let partial = response.partial_success.expect("partial success reported");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("span id"),
        "{}",
        partial.error_message
    );

    let answer = stack.wait_for_trace(&"ab".repeat(16), 4, WAIT).await?;
    let got = spans_by_id(&answer["data"][0]);
    sent.resource_spans.remove(0);
    assert_eq!(got, expected(&sent));
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() -> Result<()> {
    let stack = Stack::start(topology("bad_requests")).await?;
    let http = reqwest::Client::new();
    let garbage = http
        .post(stack.traces_url())
        .header("content-type", "application/json")
        .body("{\"resourceSpans\": 7}")
        .send()
        .await?;
    assert_eq!(garbage.status(), 400);
    let body: Value = garbage.json().await?;
    assert_eq!(body["code"], 3);
    assert!(body["message"].as_str().unwrap().contains("json"), "{body}");

    let wrong_type = http
        .post(stack.traces_url())
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await?;
    assert_eq!(wrong_type.status(), 415);
    stack.stop().await;
    Ok(())
}

fn header<'a>(m: &'a rdkafka::message::OwnedMessage, key: &str) -> Option<&'a [u8]> {
    use rdkafka::message::Headers;
    use rdkafka::Message as _;
    let headers = m.headers()?;
    headers.iter().find(|h| h.key == key).and_then(|h| h.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spans_topic_holds_otlp_traces_data_keyed_by_trace_id() -> Result<()> {
    use rdkafka::Message as _;
    use skein_model::wire;
    let stack = Stack::start(topology("wire_format")).await?;
    let sent = fixture("example_trace")?;
    let response = stack.post_otlp_json(fixture_json("example_trace")?).await?;
    assert_eq!(response.status(), 200);
    let before_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;

    let topic = stack.topology.topics.spans.name.clone();
    let messages = skein_tests::read_topic(&stack.topology, &topic, 1, WAIT).await?;
    let m = &messages[0];
    assert_eq!(
        m.key(),
        Some(b"00000000000000000000000000000011".as_slice())
    );
    assert_eq!(
        header(m, wire::ENCODING_HEADER),
        Some(b"otlp_proto/1".as_slice())
    );
    let received: u64 =
        std::str::from_utf8(header(m, wire::RECEIVED_HEADER).expect("received header"))?.parse()?;
    assert!(
        received <= before_ns && before_ns - received < 120_000_000_000,
        "received {received}, now {before_ns}"
    );
    // Any OpenTelemetry Kafka receiver reads the value as plain TracesData.
    let data = TracesData::decode(m.payload().expect("value"))?;
    let spans: usize = data
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(spans, 5);
    assert_eq!(data, sent, "the message holds the request's spans as sent");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_goes_to_the_dead_letter_topic_and_its_neighbours_are_stored(
) -> Result<()> {
    use rdkafka::Message as _;
    use skein_model::wire;
    let stack = Stack::start(topology("dead_letter")).await?;
    let t = &stack.topology;
    let publisher = skein_kafka::Publisher::new(&t.kafka, Duration::from_secs(30))?;
    let garbage = skein_kafka::Message {
        key: "ff".repeat(16),
        value: b"\xff\xfe not protobuf".to_vec(),
        headers: vec![(
            wire::ENCODING_HEADER,
            wire::ENCODING_OTLP_PROTO_V1.as_bytes().to_vec(),
        )],
    };
    for r in publisher
        .send_all(&t.topics.spans.name, vec![garbage])
        .await
    {
        r?;
    }
    let response = stack.post_otlp_json(fixture_json("example_trace")?).await?;
    assert_eq!(response.status(), 200);
    stack.wait_for_trace("0000000000000011", 5, WAIT).await?;

    let dead = skein_tests::read_topic(t, &t.topics.dead_letter.name, 1, WAIT).await?;
    assert_eq!(dead[0].payload(), Some(b"\xff\xfe not protobuf".as_slice()));
    let error = String::from_utf8_lossy(header(&dead[0], "skein-error").expect("error header"))
        .into_owned();
    assert!(error.contains("decode"), "{error}");
    assert!(header(&dead[0], "skein-source").is_some());
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_schema_apply_are_idempotent_and_report_what_differs() -> Result<()> {
    use skein_kafka::admin::{apply_topics, TopicState};
    let mut t = topology("apply");
    let first = apply_topics(&t).await?;
    assert_eq!(first.len(), 2);
    assert!(
        first.iter().all(|(_, s)| *s == TopicState::Created),
        "{first:?}"
    );
    let again = apply_topics(&t).await?;
    assert!(
        again.iter().all(|(_, s)| *s == TopicState::Present),
        "{again:?}"
    );
    t.topics.spans.partitions = 5;
    let differs = apply_topics(&t).await?;
    assert!(
        differs.contains(&(
            t.topics.spans.name.clone(),
            TopicState::Mismatch {
                wanted: 5,
                actual: 3
            }
        )),
        "{differs:?}"
    );

    let ch = &t.storage.clickhouse;
    let client = skein_store::client(ch);
    let applied = skein_store::schema::apply(&client, &ch.database).await?;
    let all: Vec<&str> = skein_store::schema::MIGRATIONS
        .iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(applied.applied, all);
    let version = skein_store::schema::server_version(&client).await?;
    assert_eq!(applied.capabilities.version, version);
    let second = skein_store::schema::apply(&client, &ch.database).await?;
    assert!(second.applied.is_empty());
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Recorded {
        name: String,
        server_version: String,
        modern: u8,
    }
    let rows: Vec<Recorded> = client
        .query_raw(&format!(
            "SELECT name, server_version, modern FROM {}.schema_migrations",
            ch.database
        ))
        .fetch_all()
        .await?;
    let mut names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, all, "each migration is recorded once");
    for row in &rows {
        assert_eq!(row.server_version, version.text);
        assert_eq!(row.modern, u8::from(applied.capabilities.modern));
    }
    client
        .query_raw(&format!("DROP DATABASE {}", ch.database))
        .execute()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_span_with_a_non_hex_id_is_rejected_alone() -> Result<()> {
    let stack = Stack::start(topology("json_bad_hex")).await?;
    let mut body: Value = serde_json::from_str(&fixture_json("example_trace")?)?;
    for rs in body["resourceSpans"].as_array_mut().unwrap() {
        for span in rs["scopeSpans"][0]["spans"].as_array_mut().unwrap() {
            span["traceId"] = "cd".repeat(16).into();
        }
    }
    body["resourceSpans"][1]["scopeSpans"][0]["spans"][0]["spanId"] = "zz-not-hex".into();
    let response = stack.post_otlp_json(body.to_string()).await?;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await?;
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1");
    let message = answer["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("span 0 of scope 0 of resource 1"),
        "{message}"
    );

    let stored = stack.wait_for_trace(&"cd".repeat(16), 4, WAIT).await?;
    let ids: Vec<_> = spans_by_id(&stored["data"][0]).into_keys().collect();
    assert_eq!(
        ids,
        [
            "0000000000000003",
            "0000000000000004",
            "0000000000000006",
            "0000000000000007"
        ]
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_size_limit_are_refused_on_every_otlp_transport() -> Result<()> {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    let mut t = topology("size_limit");
    t.collector.max_request_bytes = 64 * 1024;
    let stack = Stack::start(t).await?;
    // 200 KB of attribute text: over the limit, and tiny once gzipped.
    let mut sent = fixture("example_trace")?;
    sent.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "big".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("x".repeat(200_000))),
            }),
            ..Default::default()
        });
    let request = ExportTraceServiceRequest {
        resource_spans: sent.resource_spans,
    };

    let mut client = TraceServiceClient::connect(format!("http://{}", stack.otlp_grpc)).await?;
    let plain = client.export(request.clone()).await.unwrap_err();
    assert_eq!(plain.code(), tonic::Code::ResourceExhausted, "{plain:?}");
    let mut gzipped = TraceServiceClient::connect(format!("http://{}", stack.otlp_grpc))
        .await?
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let bomb = gzipped.export(request.clone()).await.unwrap_err();
    assert_eq!(bomb.code(), tonic::Code::ResourceExhausted, "{bomb:?}");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&request.encode_to_vec())?;
    let gz = gz.finish()?;
    assert!(
        gz.len() < 64 * 1024,
        "the gzip body itself is under the limit"
    );
    let response = reqwest::Client::new()
        .post(stack.traces_url())
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await?;
    assert_eq!(response.status(), 413);
    stack.stop().await;
    Ok(())
}

/// A message whose field 1 has the wrong wire type for an export request.
#[derive(Clone, PartialEq, prost::Message)]
struct NotAnExportRequest {
    #[prost(uint64, tag = "1")]
    resource_spans: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_grpc_request_is_invalid_argument() -> Result<()> {
    let stack = Stack::start(topology("grpc_garbage")).await?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", stack.otlp_grpc))?
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    let codec =
        tonic_prost::ProstCodec::<NotAnExportRequest, ExportTraceServiceResponse>::default();
    let status = grpc
        .unary(
            tonic::Request::new(NotAnExportRequest { resource_spans: 7 }),
            path,
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("decode"), "{status:?}");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_copies_collapse_and_same_id_spans_with_other_content_are_kept() -> Result<()> {
    let stack = Stack::start(topology("dedupe")).await?;
    let sent = fixture_in_trace("example_trace", 0xdd)?;
    let body = serde_json::to_string(&sent)?;
    // The same request twice (a client retry, a redelivery): 5 spans, not 10.
    for _ in 0..2 {
        assert_eq!(stack.post_otlp_json(body.clone()).await?.status(), 200);
    }
    // A span that reuses an ID with other content is a different span.
    let mut other = sent.clone();
    other.resource_spans.truncate(1);
    other.resource_spans[0].scope_spans[0].spans[0].name = "same id, other content".into();
    assert_eq!(
        stack
            .post_otlp_json(serde_json::to_string(&other)?)
            .await?
            .status(),
        200
    );

    let answer = stack.wait_for_trace(&"dd".repeat(16), 6, WAIT).await?;
    tokio::time::sleep(Duration::from_secs(3)).await; // let any late copy land
    let again = stack.wait_for_trace(&"dd".repeat(16), 6, WAIT).await?;
    assert_eq!(answer, again);
    let ids: Vec<_> = answer["data"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spanID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.iter().filter(|id| *id == "0000000000000004").count(), 2);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_over_the_span_cap_comes_back_cut_with_a_warning() -> Result<()> {
    let mut t = topology("span_cap");
    t.query.max_spans_per_trace = 3;
    let stack = Stack::start(t).await?;
    assert_eq!(
        stack
            .post_otlp_json(fixture_json("example_trace")?)
            .await?
            .status(),
        200
    );
    let answer = stack.wait_for_trace("0000000000000011", 3, WAIT).await?;
    let trace = &answer["data"][0];
    let starts: Vec<u64> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["startTime"].as_u64().unwrap())
        .collect();
    assert_eq!(starts.len(), 3, "cut at the cap");
    // The earliest spans are the ones kept.
    let mut all: Vec<u64> = expected(&fixture("example_trace")?)
        .values()
        .map(|s| s["startTime"].as_u64().unwrap())
        .collect();
    all.sort_unstable();
    let mut kept = starts.clone();
    kept.sort_unstable();
    assert_eq!(kept, all[..3]);
    let warning = trace["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("more than 3 spans"), "{trace}");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_is_corrected_unless_the_trace_is_asked_for_raw() -> Result<()> {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let mut t = topology("clock_skew");
    t.query.max_clock_skew_adjust_ms = 10_000;
    let stack = Stack::start(t).await?;
    let text = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        - 3_600_000_000_000;
    let ms = 1_000_000u64;
    let host = |service: &str, host: &str, span: Span| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![text("service.name", service), text("host.name", host)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![span],
            ..Default::default()
        }],
        ..Default::default()
    };
    // The server's clock runs 2 s ahead: its span starts after the client's
    // ended.
    let client = Span {
        trace_id: vec![0xc5; 16],
        span_id: vec![1; 8],
        name: "call".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 100 * ms,
        ..Default::default()
    };
    let server = Span {
        trace_id: vec![0xc5; 16],
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: "serve".into(),
        start_time_unix_nano: start + 2_000 * ms,
        end_time_unix_nano: start + 2_050 * ms,
        ..Default::default()
    };
    let data = TracesData {
        resource_spans: vec![host("client", "a", client), host("server", "b", server)],
    };
    assert_eq!(
        stack
            .post_otlp_json(serde_json::to_string(&data)?)
            .await?
            .status(),
        200
    );
    let id = "c5".repeat(16);
    stack.wait_for_trace(&id, 2, WAIT).await?;
    let serve_start = |answer: &Value| {
        answer["data"][0]["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["operationName"] == "serve")
            .map(|s| (s["startTime"].as_u64().unwrap(), s["warnings"].clone()))
            .unwrap()
    };
    let get = |path: String| {
        let url = stack.query_url(&path);
        async move { anyhow::Ok(reqwest::get(url).await?.json::<Value>().await?) }
    };
    let (adjusted, warnings) = serve_start(&get(format!("/api/traces/{id}")).await?);
    // Centred in its parent: (100 - 50) / 2 = 25 ms after the client's start.
    assert_eq!(adjusted, (start + 25 * ms) / 1_000, "{warnings}");
    assert!(warnings.to_string().contains("adjusted"), "{warnings}");
    let (raw, _) = serve_start(&get(format!("/api/traces/{id}?raw=true")).await?);
    assert_eq!(raw, (start + 2_000 * ms) / 1_000);
    // The search answers adjusted traces too.
    let (searched, _) = serve_start(&get("/api/traces?service=server&lookback=2h".into()).await?);
    assert_eq!(searched, adjusted);
    // So does api_v3, in OTLP, with the warning where Jaeger v2 puts it.
    let v3_serve = |answer: &Value| {
        let spans: Vec<Value> = answer["result"]["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rs| rs["scopeSpans"].as_array().unwrap().clone())
            .flat_map(|ss| ss["spans"].as_array().unwrap().clone())
            .collect();
        spans
            .into_iter()
            .find(|s| s["name"] == "serve")
            .map(|s| {
                let start: u64 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
                (start, s["attributes"].to_string())
            })
            .unwrap()
    };
    let (v3_start, attributes) = v3_serve(&get(format!("/api/v3/traces/{id}")).await?);
    assert_eq!(v3_start, start + 25 * ms, "{attributes}");
    assert!(
        attributes.contains("@jaeger@warnings") && attributes.contains("adjusted"),
        "{attributes}"
    );
    let (v3_raw, _) = v3_serve(&get(format!("/api/v3/traces/{id}?raw_traces=true")).await?);
    assert_eq!(v3_raw, start + 2_000 * ms);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_service_reads_as_its_own_clickhouse_user() -> Result<()> {
    let mut t = topology("query_user");
    // A user ClickHouse does not know: every read must fail with its name,
    // which shows the query service connects as query.clickhouse_user.
    t.query.clickhouse_user = "skein_reader_that_does_not_exist".into();
    let stack = Stack::start(t).await?;
    let response = reqwest::get(stack.query_url("/api/services")).await?;
    assert!(response.status().is_server_error(), "{}", response.status());
    let body: Value = response.json().await?;
    let msg = body["errors"][0]["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("skein_reader_that_does_not_exist"), "{body}");
    stack.stop().await;
    Ok(())
}
