//! The Zipkin receiver end to end: a Zipkin client's body → collector →
//! Kafka → ingester → ClickHouse → Jaeger query API, against the real
//! broker and ClickHouse.
//!
//! The fixtures are OpenZipkin's own example traces
//! (`tests/fixtures/zipkin/README.md`); their timestamps are moved to a few
//! minutes ago before sending, keeping the offsets between them.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use prost::Message;
use serde_json::{json, Value};
use skein_model::zipkin::proto;
use skein_tests::{topology, Stack};

const WAIT: Duration = Duration::from_secs(90);

fn fixture(name: &str) -> Result<Value> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/zipkin")).join(name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after the epoch")
        .as_micros() as u64
}

fn timestamps(value: &Value, out: &mut Vec<u64>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v.as_u64()) {
                    ("timestamp", Some(t)) => out.push(t),
                    _ => timestamps(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| timestamps(v, out)),
        _ => {}
    }
}

fn add_to_timestamps(value: &mut Value, delta: u64) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), v.as_u64()) {
                    ("timestamp", Some(t)) => *v = json!(t + delta),
                    _ => add_to_timestamps(v, delta),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| add_to_timestamps(v, delta)),
        _ => {}
    }
}

/// Moves every `timestamp` (µs) so that the earliest is five minutes ago.
fn shift_to_now(mut value: Value) -> Value {
    let mut all = Vec::new();
    timestamps(&value, &mut all);
    let earliest = all.into_iter().min().expect("fixture has timestamps");
    add_to_timestamps(&mut value, now_micros() - 300_000_000 - earliest);
    value
}

/// The `timestamp` of the span with `id` (and `kind`, when given) in a
/// fixture.
fn sent_timestamp(spans: &Value, id: &str, kind: Option<&str>) -> u64 {
    spans
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id && kind.is_none_or(|k| s["kind"] == k))
        .and_then(|s| s["timestamp"].as_u64())
        .expect("span in fixture")
}

async fn post(
    url: &str,
    content_type: Option<&str>,
    gzip: bool,
    body: Vec<u8>,
) -> Result<reqwest::Response> {
    let mut request = reqwest::Client::new().post(url);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let body = if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body)?;
        request = request.header("content-encoding", "gzip");
        gz.finish()?
    } else {
        body
    };
    Ok(request.body(body).send().await?)
}

fn v2_url(stack: &Stack) -> String {
    format!(
        "http://{}/api/v2/spans",
        stack.collector.zipkin_http.expect("zipkin receiver on")
    )
}

fn v1_url(stack: &Stack) -> String {
    format!(
        "http://{}/api/v1/spans",
        stack.collector.zipkin_http.expect("zipkin receiver on")
    )
}

/// Asserts a 202 with an empty body, as Zipkin answers.
async fn assert_accepted(response: reqwest::Response) -> Result<()> {
    let status = response.status();
    let body = response.text().await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, "");
    Ok(())
}

/// The spans of a trace as the query API answers, each with its process
/// resolved into `process`.
fn spans(answer: &Value) -> Vec<Value> {
    skein_tests::spans_with_process(&answer["data"][0])
}

/// The one span with `operation` (and `kind`, when given).
fn span<'a>(spans: &'a [Value], operation: &str, kind: Option<&str>) -> &'a Value {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| {
            s["operationName"] == operation
                && kind.is_none_or(|k| tag(s, "span.kind") == Some(&json!(k)))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {operation} {kind:?} span in {spans:#?}"
    );
    found[0]
}

fn span_by_id<'a>(spans: &'a [Value], id: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["spanID"] == id)
        .unwrap_or_else(|| panic!("span {id} in {spans:#?}"))
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

fn process_tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["process"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

fn parent(span: &Value) -> Option<&str> {
    let refs = span["references"].as_array()?;
    let first = refs.first()?;
    assert_eq!(first["refType"], "CHILD_OF");
    first["spanID"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_v2_json_example_reads_back_from_the_query_api() -> Result<()> {
    let stack = Stack::start(topology("zipkin_v2_json")).await?;
    let sent = shift_to_now(fixture("v2_simple_db.json")?);
    let response = post(
        &v2_url(&stack),
        Some("application/json"),
        false,
        serde_json::to_vec(&sent)?,
    )
    .await?;
    assert_accepted(response).await?;

    let answer = stack.wait_for_trace("19f84f102048e047", 5, WAIT).await?;
    assert_eq!(answer["data"][0]["traceID"], "19f84f102048e047");
    let spans = spans(&answer);
    for s in &spans {
        assert_eq!(s["process"]["serviceName"], "bootifulmeters");
    }

    let root = span(&spans, "http:/book", Some("server"));
    assert_eq!(root["spanID"], "19f84f102048e047");
    assert_eq!(root["references"], json!([]));
    assert_eq!(
        root["startTime"],
        sent_timestamp(&sent, "19f84f102048e047", None)
    );
    assert_eq!(root["duration"], 252_016);
    assert_eq!(tag(root, "http.method"), Some(&json!("POST")));
    assert_eq!(tag(root, "http.path"), Some(&json!("/book")));
    assert_eq!(tag(root, "mvc.controller.method"), Some(&json!("postBook")));
    assert_eq!(tag(root, "net.host.ip"), Some(&json!("172.23.250.16")));
    assert_eq!(tag(root, "net.peer.ip"), Some(&json!("::1")));
    assert_eq!(tag(root, "net.peer.port"), Some(&json!(53367)));

    let call = span(&spans, "call", Some("client"));
    assert_eq!(call["spanID"], "8b1e63c0f49a81f7");
    assert_eq!(parent(call), Some("19f84f102048e047"));
    assert_eq!(
        call["startTime"],
        sent_timestamp(&sent, "8b1e63c0f49a81f7", None)
    );
    assert_eq!(call["duration"], 6051);
    assert_eq!(tag(call, "peer.service"), Some(&json!("app_db")));
    assert_eq!(
        tag(call, "sql.query"),
        Some(&json!("call next value for hibernate_sequence"))
    );
    let inserts: Vec<_> = spans
        .iter()
        .filter(|s| s["operationName"] == "insert")
        .collect();
    assert_eq!(inserts.len(), 3);
    for s in inserts {
        assert_eq!(parent(s), Some("19f84f102048e047"));
        assert_eq!(tag(s, "span.kind"), Some(&json!("client")));
    }
    stack.stop().await;
    Ok(())
}

/// A fixture's v2 JSON spans as Zipkin protobuf.
fn to_proto(spans: &Value) -> proto::ListOfSpans {
    let id = |v: &Value| v.as_str().map(hex_bytes).unwrap_or_default();
    let endpoint = |e: &Value| {
        (!e.is_null()).then(|| proto::Endpoint {
            service_name: e["serviceName"].as_str().unwrap_or("").to_owned(),
            ipv4: e["ipv4"]
                .as_str()
                .map(|ip| {
                    ip.parse::<std::net::Ipv4Addr>()
                        .expect("ipv4")
                        .octets()
                        .to_vec()
                })
                .unwrap_or_default(),
            ipv6: Vec::new(),
            port: e["port"].as_i64().unwrap_or(0) as i32,
        })
    };
    proto::ListOfSpans {
        spans: spans
            .as_array()
            .unwrap()
            .iter()
            .map(|s| proto::Span {
                trace_id: id(&s["traceId"]),
                parent_id: id(&s["parentId"]),
                id: id(&s["id"]),
                kind: match s["kind"].as_str() {
                    Some("CLIENT") => proto::span::Kind::Client,
                    Some("SERVER") => proto::span::Kind::Server,
                    _ => proto::span::Kind::Unspecified,
                } as i32,
                name: s["name"].as_str().unwrap_or("").to_owned(),
                timestamp: s["timestamp"].as_u64().unwrap_or(0),
                duration: s["duration"].as_u64().unwrap_or(0),
                local_endpoint: endpoint(&s["localEndpoint"]),
                remote_endpoint: endpoint(&s["remoteEndpoint"]),
                annotations: Vec::new(),
                tags: Default::default(),
                debug: false,
                shared: s["shared"].as_bool().unwrap_or(false),
            })
            .collect(),
    }
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_v2_protobuf_with_two_services_and_a_shared_span() -> Result<()> {
    let stack = Stack::start(topology("zipkin_v2_proto")).await?;
    let sent = shift_to_now(fixture("v2_skew.json")?);
    let body = to_proto(&sent).encode_to_vec();
    let response = post(&v2_url(&stack), Some("application/x-protobuf"), false, body).await?;
    assert_accepted(response).await?;

    // 8-byte trace IDs are padded to 16 bytes; Jaeger writes them short.
    let answer = stack.wait_for_trace("1e223ff1f80f1c69", 4, WAIT).await?;
    let spans = spans(&answer);
    let get = span(&spans, "get", Some("server"));
    assert_eq!(get["process"]["serviceName"], "servicea");
    assert_eq!(get["references"], json!([]));
    assert_eq!(tag(get, "net.host.ip"), Some(&json!("127.0.0.0")));
    assert_eq!(
        get["startTime"],
        sent_timestamp(&sent, "bf396325699c84bf", None)
    );
    assert_eq!(get["duration"], 99_411);

    // The client and the shared server span carry the same ID, each under
    // its own service, as stored (raw).
    let raw: Value = reqwest::get(stack.query_url("/api/traces/1e223ff1f80f1c69?raw=true"))
        .await?
        .json()
        .await?;
    let raw_spans = self::spans(&raw);
    let raw_server = span(&raw_spans, "post", Some("server"));
    assert_eq!(raw_server["spanID"], "74280ae0c10d8062");
    assert_eq!(parent(raw_server), Some("bf396325699c84bf"));
    // Adjusted, as Jaeger's UI gets it: the server span gets an ID of its
    // own and the client as its parent, and its children follow it.
    let client = span(&spans, "post", Some("client"));
    let server = span(&spans, "post", Some("server"));
    assert_eq!(client["process"]["serviceName"], "servicea");
    assert_eq!(server["process"]["serviceName"], "serviceb");
    assert_eq!(client["spanID"], "74280ae0c10d8062");
    assert_ne!(server["spanID"], "74280ae0c10d8062");
    assert_eq!(parent(client), Some("bf396325699c84bf"));
    assert_eq!(parent(server), Some("74280ae0c10d8062"));
    assert_eq!(
        server["startTime"],
        sent_timestamp(&sent, "74280ae0c10d8062", Some("SERVER"))
    );
    assert_eq!(server["duration"], 93_577);

    let async_span = span(&spans, "async", None);
    assert_eq!(tag(async_span, "span.kind"), None);
    assert_eq!(async_span["process"]["serviceName"], "serviceb");
    assert_eq!(parent(async_span), server["spanID"].as_str());
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_v1_json_example_reads_back_from_the_query_api() -> Result<()> {
    let stack = Stack::start(topology("zipkin_v1_json")).await?;
    let sent = shift_to_now(fixture("v1_data_model.json")?);
    let response = post(
        &v1_url(&stack),
        Some("application/json"),
        false,
        serde_json::to_vec(&sent)?,
    )
    .await?;
    assert_accepted(response).await?;

    let answer = stack.wait_for_trace("bd7a977555f6b982", 5, WAIT).await?;
    let spans = spans(&answer);
    for s in &spans {
        assert_eq!(s["process"]["serviceName"], "zipkin-query");
    }

    // sr/ss: a server span, its process from the annotations' endpoint.
    let get = span(&spans, "get", Some("server"));
    assert_eq!(get["spanID"], "bd7a977555f6b982");
    assert_eq!(get["references"], json!([]));
    assert_eq!(
        get["startTime"],
        sent_timestamp(&sent, "bd7a977555f6b982", None)
    );
    assert_eq!(get["duration"], 386_000);
    assert_eq!(process_tag(get, "ipv4"), Some(&json!("192.168.1.2")));
    assert_eq!(process_tag(get, "port"), Some(&json!("9411")));

    // lc: a local span named by its binary annotations' endpoint.
    let local = span(&spans, "get-traces", None);
    assert_eq!(tag(local, "span.kind"), None);
    assert_eq!(parent(local), Some("bd7a977555f6b982"));
    assert_eq!(tag(local, "component"), Some(&json!("JDBCSpanStore")));
    assert_eq!(local["duration"], 354_374);

    // cs/cr with sa: client spans with the remote address.
    for (id, duration) in [
        ("be2d01e33cc78d97", 13_000),
        ("13038c5fee5a2f2e", 1_000),
        ("37ee55f3d3a94336", 2_000),
    ] {
        let query = span_by_id(&spans, id);
        assert_eq!(query["operationName"], "query");
        assert_eq!(tag(query, "span.kind"), Some(&json!("client")));
        assert_eq!(parent(query), Some("ebf33e1a81dc6f71"));
        assert_eq!(query["startTime"], sent_timestamp(&sent, id, None));
        assert_eq!(query["duration"], duration);
        assert_eq!(tag(query, "peer.service"), Some(&json!("spanstore-jdbc")));
        assert_eq!(tag(query, "net.peer.ip"), Some(&json!("127.0.0.1")));
        assert_eq!(tag(query, "net.peer.port"), Some(&json!(3306)));
        assert!(tag(query, "jdbc.query")
            .and_then(Value::as_str)
            .is_some_and(|q| q.starts_with("select")));
    }
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_gzip_body_with_128_bit_ids_annotations_and_error() -> Result<()> {
    let stack = Stack::start(topology("zipkin_gzip")).await?;
    let start = now_micros() - 120_000_000;
    let trace = "5af7183fb1d4cf5f0000000000000abc";
    let body = json!([
        {
            "traceId": trace, "id": "6b221d5bc9e6496c", "name": "get /api",
            "kind": "SERVER", "timestamp": start, "duration": 1431,
            "localEndpoint": {"serviceName": "backend", "ipv4": "192.168.99.1", "port": 3306},
            "remoteEndpoint": {"ipv4": "172.19.0.2", "port": 58648},
            "annotations": [{"timestamp": start + 100, "value": "wire received"}],
            "tags": {"http.method": "GET", "http.path": "/api", "error": "true"}
        },
        {
            "traceId": trace, "parentId": "6b221d5bc9e6496c", "id": "352bff9a74ca9ad2",
            "name": "select", "kind": "CLIENT", "timestamp": start + 200, "duration": 50,
            "localEndpoint": {"serviceName": "backend"},
            "remoteEndpoint": {"serviceName": "mysql"},
            "tags": {"otel.library.name": "jdbc", "otel.library.version": "4.2"}
        }
    ]);
    // No content type: read as JSON, like Zipkin's clients expect.
    let response = post(&v2_url(&stack), None, true, serde_json::to_vec(&body)?).await?;
    assert_accepted(response).await?;

    let answer = stack.wait_for_trace(trace, 2, WAIT).await?;
    assert_eq!(answer["data"][0]["traceID"], trace);
    let spans = spans(&answer);
    let server = span(&spans, "get /api", Some("server"));
    assert_eq!(server["process"]["serviceName"], "backend");
    assert_eq!(server["startTime"], start);
    assert_eq!(server["duration"], 1431);
    assert_eq!(tag(server, "error"), Some(&json!(true)));
    assert_eq!(tag(server, "otel.status_code"), Some(&json!("ERROR")));
    assert_eq!(tag(server, "net.host.port"), Some(&json!(3306)));
    assert_eq!(tag(server, "net.peer.ip"), Some(&json!("172.19.0.2")));
    assert_eq!(
        server["logs"],
        json!([{"timestamp": start + 100, "fields": [
            {"key": "event", "type": "string", "value": "wire received"}
        ]}])
    );
    let client = span(&spans, "select", Some("client"));
    assert_eq!(parent(client), Some("6b221d5bc9e6496c"));
    assert_eq!(tag(client, "otel.scope.name"), Some(&json!("jdbc")));
    assert_eq!(tag(client, "otel.scope.version"), Some(&json!("4.2")));
    assert_eq!(tag(client, "peer.service"), Some(&json!("mysql")));
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_zipkin_span_is_dropped_and_its_neighbours_stored() -> Result<()> {
    let stack = Stack::start(topology("zipkin_malformed")).await?;
    let start = now_micros() - 60_000_000;
    let trace = "00000000000000000000000000c0ffee";
    let body = json!([
        {"traceId": trace, "id": "0000000000000001", "name": "first", "timestamp": start,
         "duration": 10, "localEndpoint": {"serviceName": "svc"}},
        {"traceId": trace, "id": "not-hex!", "name": "broken", "timestamp": start,
         "localEndpoint": {"serviceName": "svc"}},
        {"traceId": trace, "id": "0000000000000003", "parentId": "0000000000000001",
         "name": "third", "timestamp": start + 5, "duration": 2,
         "localEndpoint": {"serviceName": "svc"}}
    ]);
    // Zipkin has no partial success: still 202.
    let response = post(
        &v2_url(&stack),
        Some("application/json"),
        false,
        serde_json::to_vec(&body)?,
    )
    .await?;
    assert_accepted(response).await?;
    let answer = stack.wait_for_trace(&trace[16..], 2, WAIT).await?;
    let spans = spans(&answer);
    let names: Vec<_> = spans
        .iter()
        .map(|s| s["operationName"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"first") && names.contains(&"third"),
        "{names:?}"
    );
    assert_eq!(
        parent(span(&spans, "third", None)),
        Some("0000000000000001")
    );

    // Refusals, answered before anything reaches Kafka.
    let url = v2_url(&stack);
    let not_array = post(&url, Some("application/json"), false, b"{}".to_vec()).await?;
    assert_eq!(not_array.status(), 400);
    let text = not_array.text().await?;
    assert!(
        text.starts_with("zipkin v2 json body does not decode"),
        "{text}"
    );
    let garbage = post(
        &url,
        Some("application/x-protobuf"),
        false,
        b"\xff\xff\xff".to_vec(),
    )
    .await?;
    assert_eq!(garbage.status(), 400);
    let thrift = post(
        &v1_url(&stack),
        Some("application/x-thrift"),
        false,
        vec![0x0c, 0x00],
    )
    .await?;
    assert_eq!(thrift.status(), 415);
    assert!(thrift.text().await?.contains("thrift is not supported"));
    let bad_gzip = reqwest::Client::new()
        .post(&url)
        .header("content-encoding", "gzip")
        .body(b"[]".to_vec())
        .send()
        .await?;
    assert_eq!(bad_gzip.status(), 400);
    let empty = post(&url, Some("application/json"), false, b"[]".to_vec()).await?;
    assert_accepted(empty).await?;
    stack.stop().await;
    Ok(())
}
