//! What the ingester derives from each span before storing it: normalised
//! names, the error flag from status and HTTP/gRPC codes, `peer.service`
//! inferred for client spans, the tenant from a Kafka header, and ingest
//! time. Sent straight to the spans topic (as any producer may), read back
//! from ClickHouse and from the query API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Result};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status, TracesData,
};
use serde::Deserialize;
use skein_model::wire;
use skein_tests::{topology, Stack};

fn attr(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    attr(key, Value::StringValue(value.into()))
}

fn span(n: u8, name: &str, kind: SpanKind, status: StatusCode, attrs: Vec<KeyValue>) -> Span {
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        - 60_000_000_000;
    Span {
        trace_id: vec![0xe7; 16],
        span_id: vec![n; 8],
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: start + u64::from(n) * 1_000_000,
        end_time_unix_nano: start + u64::from(n) * 1_000_000 + 500_000,
        attributes: attrs,
        status: Some(Status {
            code: status as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Stored {
    span_name: String,
    service_name: String,
    tenant: String,
    error: u8,
    peer_service: String,
    received_unix_nano: u64,
    ingested_unix_nano: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_enriched_before_they_are_stored() -> Result<()> {
    let stack = Stack::start(topology("enrich")).await?;
    let t = &stack.topology;
    use SpanKind::{Client, Producer, Server};
    use StatusCode::{Error, Ok as Fine, Unset};
    let spans = vec![
        span(
            1,
            "  GET   /cart ",
            Server,
            Unset,
            vec![attr("http.response.status_code", Value::IntValue(404))],
        ),
        span(
            2,
            "GET /pay",
            Client,
            Unset,
            vec![
                attr("http.response.status_code", Value::IntValue(404)),
                text("server.address", "pay.internal:8443"),
            ],
        ),
        span(
            3,
            "GET /stock",
            Server,
            Unset,
            vec![text("http.status_code", "503")],
        ),
        span(
            4,
            "Charge",
            Client,
            Unset,
            vec![
                attr("rpc.grpc.status_code", Value::IntValue(4)),
                text("rpc.service", "billing.Charger"),
            ],
        ),
        span(
            5,
            "SELECT",
            Client,
            Unset,
            vec![
                text("db.system", "postgresql"),
                text("server.address", "db:5432"),
            ],
        ),
        span(
            6,
            "GET /ok",
            Client,
            Fine,
            vec![attr("http.response.status_code", Value::IntValue(500))],
        ),
        span(
            7,
            "publish",
            Producer,
            Error,
            vec![text("peer.service", "orders-queue")],
        ),
    ];
    let data = TracesData {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", " Checkout\t Service ")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let received = 1_700_000_000_000_000_000u64;
    let publisher = skein_kafka::Publisher::new(&t.kafka, Duration::from_secs(10))?;
    publisher
        .send_all(
            &t.topics.spans.name,
            vec![skein_kafka::Message {
                key: wire::key(&[0xe7; 16]),
                value: wire::encode_value(&data),
                headers: vec![
                    (
                        wire::ENCODING_HEADER,
                        wire::ENCODING_OTLP_PROTO_V1.as_bytes().to_vec(),
                    ),
                    (wire::RECEIVED_HEADER, received.to_string().into_bytes()),
                    ("skein-tenant", b"acme".to_vec()),
                ],
            }],
        )
        .await
        .pop()
        .expect("one result")?;
    let trace_id = "e7".repeat(16);
    stack
        .wait_for_trace(&trace_id, 7, Duration::from_secs(60))
        .await?;

    let ch = &t.storage.clickhouse;
    let rows: Vec<Stored> = skein_store::client(ch)
        .query(&format!(
            "SELECT span_name, service_name, tenant, error, peer_service, received_unix_nano, \
             ingested_unix_nano FROM {}.spans WHERE trace_id = ? ORDER BY start_unix_nano",
            ch.database
        ))
        .bind(&trace_id)
        .fetch_all()
        .await?;
    let got: Vec<(&str, u8, &str)> = rows
        .iter()
        .map(|r| (r.span_name.as_str(), r.error, r.peer_service.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("GET /cart", 0, ""),            // a server's 404 is the client's fault
            ("GET /pay", 1, "pay.internal"), // a client's 404 is its error
            ("GET /stock", 1, ""),           // 5xx, even as text
            ("Charge", 1, "billing.Charger"),
            ("SELECT", 0, "postgresql"), // db.system wins over the address
            ("GET /ok", 0, ""),          // an explicit OK stands
            ("publish", 1, "orders-queue"),
        ]
    );
    for r in &rows {
        assert_eq!(r.service_name, "Checkout Service");
        assert_eq!(r.tenant, "acme");
        assert_eq!(r.received_unix_nano, received);
        assert!(r.ingested_unix_nano > received, "{r:?}");
    }

    // The inferred peer.service is stored with the span, so the query API
    // shows it as a tag like one the client set.
    let trace: serde_json::Value =
        reqwest::get(stack.query_url(&format!("/api/traces/{trace_id}")))
            .await?
            .json()
            .await?;
    let pay = trace["data"][0]["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["operationName"] == "GET /pay")
        .cloned()
        .unwrap_or_default();
    let tags = pay["tags"].as_array().cloned().unwrap_or_default();
    ensure!(
        tags.iter()
            .any(|t| t["key"] == "peer.service" && t["value"] == "pay.internal"),
        "peer.service tag missing: {pay}"
    );
    stack.stop().await;
    Ok(())
}
