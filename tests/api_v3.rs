//! End-to-end tests of Jaeger's api_v3 over HTTP (`/api/v3/...`): traces
//! posted as OTLP/JSON to the collector, read back through the query
//! service's api_v3 routes, against the real broker and ClickHouse.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Result};
use opentelemetry_proto::tonic::common::v1::{any_value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status, TracesData,
};
use serde_json::{json, Value};
use skein_model::otlp::key_value as kv;
use skein_tests::{fixture, fixture_json, topology, Stack};

const WAIT: Duration = Duration::from_secs(90);
const MS: u64 = 1_000_000;
const MINUTE: u64 = 60_000_000_000;

fn now_ns() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after the epoch")
            .as_nanos(),
    )
    .expect("ns fit u64")
}

/// `ns` since the epoch as RFC 3339 with nanoseconds, in UTC or, with
/// `offset_minutes`, in that zone (Howard Hinnant's `civil_from_days`).
fn rfc3339(ns: u64, offset_minutes: i64) -> String {
    let local = ns as i64 + offset_minutes * 60_000_000_000;
    let (secs, nanos) = (
        local.div_euclid(1_000_000_000),
        local.rem_euclid(1_000_000_000),
    );
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let zone = match offset_minutes {
        0 => "Z".to_owned(),
        o => format!(
            "{}{:02}:{:02}",
            if o < 0 { '-' } else { '+' },
            o.abs() / 60,
            o.abs() % 60
        ),
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}{zone}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn resource(service: &str, host: Option<&str>) -> Option<Resource> {
    let mut attributes = vec![text("service.name", service)];
    attributes.extend(host.map(|h| text("host.name", h)));
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn scope(name: &str, version: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: version.into(),
        ..Default::default()
    })
}

fn span_id(trace: u8, n: u8) -> Vec<u8> {
    vec![trace, 0, 0, 0, 0, 0, 0, n]
}

fn server_span(trace: u8, n: u8, name: &str, start: u64, duration: u64) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: span_id(trace, n),
        name: name.into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration,
        ..Default::default()
    }
}

const A: u8 = 0xa1;
const B: u8 = 0xb2;
const C: u8 = 0xc3;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_id(trace: u8) -> String {
    format!("{trace:02x}").repeat(16)
}

/// Three traces of the service `v3-shop`:
/// - A, 5 minutes ago: `GET /cart` (server, 2 ms, host h1, status 200),
///   its `db.query` (client, 1 ms, another scope of the same resource),
///   and `select` of `v3-db` (server, 0.5 ms);
/// - B, a second later: `GET /cart` (server, 20 ms, host h2, status 500);
/// - C, 30 minutes ago: `POST /order` (server, 5 ms, host h2).
fn shop_traces(now: u64) -> [TracesData; 3] {
    use any_value::Value as V;
    let t = now - 5 * MINUTE;
    let mut a1 = server_span(A, 1, "GET /cart", t, 2 * MS);
    a1.attributes = vec![
        text("http.method", "GET"),
        kv("http.status_code", V::IntValue(200)),
    ];
    a1.events = vec![span::Event {
        time_unix_nano: t + MS / 2,
        name: "cache miss".into(),
        attributes: vec![text("cache.key", "cart:42")],
        ..Default::default()
    }];
    a1.status = Some(Status {
        code: status::StatusCode::Ok as i32,
        ..Default::default()
    });
    let a2 = Span {
        kind: span::SpanKind::Client as i32,
        parent_span_id: a1.span_id.clone(),
        attributes: vec![
            text("peer.service", "v3-db"),
            text("db.system", "postgresql"),
            kv("db.rows", V::IntValue(0)),
            kv("sampled.ratio", V::DoubleValue(0.25)),
            kv("cached", V::BoolValue(false)),
        ],
        ..server_span(A, 2, "db.query", t + MS / 10, MS)
    };
    let a3 = Span {
        parent_span_id: a2.span_id.clone(),
        ..server_span(A, 3, "select", t + MS / 5, MS / 2)
    };
    let a = TracesData {
        resource_spans: vec![
            ResourceSpans {
                resource: resource("v3-shop", Some("h1")),
                scope_spans: vec![
                    ScopeSpans {
                        scope: scope("shop-http", "1.0"),
                        spans: vec![a1],
                        schema_url: String::new(),
                    },
                    ScopeSpans {
                        scope: scope("sqlx", "0.7"),
                        spans: vec![a2],
                        schema_url: String::new(),
                    },
                ],
                schema_url: String::new(),
            },
            ResourceSpans {
                resource: resource("v3-db", None),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![a3],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
        ],
    };
    let one = |span: Span| TracesData {
        resource_spans: vec![ResourceSpans {
            resource: resource("v3-shop", Some("h2")),
            scope_spans: vec![ScopeSpans {
                scope: scope("shop-http", "1.0"),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let mut b1 = server_span(B, 1, "GET /cart", t + 1_000 * MS, 20 * MS);
    b1.attributes = vec![
        text("http.method", "GET"),
        kv("http.status_code", V::IntValue(500)),
    ];
    b1.status = Some(Status {
        code: status::StatusCode::Error as i32,
        message: "boom".into(),
    });
    let mut c1 = server_span(C, 1, "POST /order", now - 30 * MINUTE, 5 * MS);
    c1.attributes = vec![text("http.method", "POST")];
    [a, one(b1), one(c1)]
}

/// Every span of `data` by its hex ID, with its resource and scope.
type Placed = (Option<Resource>, Option<InstrumentationScope>, Span);

fn spans_by_id(data: &TracesData) -> BTreeMap<String, Placed> {
    let mut out = BTreeMap::new();
    for rs in &data.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let placed = (rs.resource.clone(), ss.scope.clone(), s.clone());
                out.insert(hex(&s.span_id), placed);
            }
        }
    }
    out
}

/// The `result` of an api_v3 answer, read with opentelemetry-proto's serde.
fn result(body: &Value) -> Result<TracesData> {
    Ok(serde_json::from_value(body["result"].clone())?)
}

/// The trace IDs of every span in an api_v3 `result`.
fn trace_ids(body: &Value) -> Result<BTreeSet<String>> {
    Ok(result(body)?
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| hex(&s.trace_id))
        .collect())
}

fn ids(traces: &[u8]) -> BTreeSet<String> {
    traces.iter().map(|t| hex_id(*t)).collect()
}

/// No `null` anywhere: absent fields are left out, as Jaeger leaves them.
fn assert_no_nulls(value: &Value, path: &str) {
    match value {
        Value::Null => panic!("null at {path}"),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| assert_no_nulls(v, &format!("{path}.{k}"))),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| assert_no_nulls(v, &format!("{path}[{i}]"))),
        _ => {}
    }
}

async fn get(stack: &Stack, path: &str, query: &[(&str, &str)]) -> Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .get(stack.query_url(path))
        .query(query)
        .send()
        .await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        content_type.starts_with("application/json"),
        "{path}: content-type {content_type:?}"
    );
    Ok((status, response.json().await?))
}

fn not_found() -> Value {
    json!({"error": {"httpCode": 404, "message": "No traces found"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v3_lists_gets_and_searches_what_was_stored() -> Result<()> {
    let stack = Stack::start(topology("api_v3")).await?;
    let now = now_ns();
    let traces = shop_traces(now);
    for data in &traces {
        let response = stack.post_otlp_json(serde_json::to_string(data)?).await?;
        assert_eq!(response.status(), 200);
    }
    let response = stack.post_otlp_json(fixture_json("example_trace")?).await?;
    assert_eq!(response.status(), 200);
    for (trace, spans) in [(A, 3), (B, 1), (C, 1)] {
        stack.wait_for_trace(&hex_id(trace), spans, WAIT).await?;
    }
    stack.wait_for_trace("0000000000000011", 5, WAIT).await?;

    // Services and operations.
    let (status, services) = get(&stack, "/api/v3/services", &[]).await?;
    assert_eq!(status, 200);
    assert_eq!(
        services,
        json!({"services": [
            "example-service-1", "example-service-2", "example-service-3", "v3-db", "v3-shop"
        ]})
    );
    let ops =
        |query: &'static [(&'static str, &'static str)]| get(&stack, "/api/v3/operations", query);
    assert_eq!(
        ops(&[("service", "v3-shop")]).await?,
        (
            200,
            json!({"operations": [
                {"name": "GET /cart", "spanKind": "server"},
                {"name": "POST /order", "spanKind": "server"},
                {"name": "db.query", "spanKind": "client"},
            ]})
        )
    );
    assert_eq!(
        ops(&[("service", "v3-shop"), ("span_kind", "client")]).await?,
        (
            200,
            json!({"operations": [{"name": "db.query", "spanKind": "client"}]})
        )
    );
    assert_eq!(
        ops(&[("service", "v3-shop"), ("spanKind", "server")])
            .await?
            .1["operations"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        ops(&[("service", "example-service-1")]).await?.1,
        json!({"operations": [
            {"name": "example-operation-1", "spanKind": ""},
            {"name": "example-operation-3", "spanKind": "server"},
            {"name": "example-operation-4", "spanKind": "client"},
        ]})
    );
    assert_eq!(
        ops(&[("service", "nope")]).await?,
        (200, json!({"operations": []}))
    );

    // One trace: OTLP/JSON that reads back into exactly the spans posted,
    // grouped by resource and scope.
    let (status, body) = get(&stack, &format!("/api/v3/traces/{}", hex_id(A)), &[]).await?;
    assert_eq!(status, 200, "{body}");
    assert_no_nulls(&body, "$");
    let got = result(&body)?;
    assert_eq!(spans_by_id(&got), spans_by_id(&traces[0]));
    assert_eq!(got.resource_spans.len(), 2, "one per resource: {body}");
    let shop = &body["result"]["resourceSpans"][0];
    assert_eq!(
        shop["scopeSpans"].as_array().map(Vec::len),
        Some(2),
        "{shop}"
    );
    let a1 = &shop["scopeSpans"][0]["spans"][0];
    assert_eq!(a1["traceId"], hex_id(A));
    assert_eq!(a1["spanId"], "a100000000000001");
    assert_eq!(a1["kind"], 2);
    assert_eq!(a1["startTimeUnixNano"], (now - 5 * MINUTE).to_string());
    assert_eq!(a1["status"], json!({"code": 1}));
    assert!(
        a1.get("parentSpanId").is_none(),
        "a root has no parent: {a1}"
    );
    assert_eq!(
        a1["attributes"][1],
        json!({"key": "http.status_code", "value": {"intValue": "200"}})
    );
    let a2 = &shop["scopeSpans"][1]["spans"][0];
    assert_eq!(a2["parentSpanId"], "a100000000000001");
    assert_eq!(
        a2["attributes"][2],
        json!({"key": "db.rows", "value": {"intValue": "0"}})
    );
    // The same trace with the optional parameters, by a short ID too.
    let (status, again) = get(
        &stack,
        &format!("/api/v3/traces/{}", hex_id(A).to_uppercase()),
        &[
            ("start_time", rfc3339(now - 10 * MINUTE, 0).as_str()),
            ("end_time", rfc3339(now, 120).as_str()),
            ("raw_traces", "true"),
        ],
    )
    .await?;
    assert_eq!((status, &again), (200, &body));
    let (status, example) = get(&stack, "/api/v3/traces/11", &[]).await?;
    assert_eq!(status, 200, "{example}");
    let sent = spans_by_id(&fixture("example_trace")?);
    let got = spans_by_id(&result(&example)?);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        sent.keys().collect::<Vec<_>>()
    );
    for (id, (resource, _, span)) in &sent {
        assert_eq!(&got[id].0, resource, "resource of {id}");
        assert_eq!(
            (
                &got[id].2.name,
                got[id].2.start_time_unix_nano,
                &got[id].2.events
            ),
            (&span.name, span.start_time_unix_nano, &span.events),
            "span {id}"
        );
    }

    // Searches.
    let (min, max) = (rfc3339(now - 60 * MINUTE, 0), rfc3339(now + MINUTE, 0));
    let search = |extra: Vec<(&'static str, String)>| {
        let mut query = vec![
            ("query.start_time_min", min.clone()),
            ("query.start_time_max", max.clone()),
        ];
        query.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        query.extend(extra);
        let stack = &stack;
        async move {
            let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            get(stack, "/api/v3/traces", &pairs).await
        }
    };
    let found = |extra: Vec<(&'static str, String)>| {
        let search = &search;
        async move {
            let (status, body) = search(extra).await?;
            ensure!(status == 200, "{status}: {body}");
            trace_ids(&body)
        }
    };
    let shop = || ("query.service_name", "v3-shop".to_owned());
    let cart = || ("query.operation_name", "GET /cart".to_owned());
    let attrs = |json: Value| ("query.attributes", json.to_string());
    let s = |v: &str| v.to_owned();

    let (status, all) = search(vec![shop()]).await?;
    assert_eq!(status, 200, "{all}");
    assert_no_nulls(&all, "$");
    assert_eq!(trace_ids(&all)?, ids(&[A, B, C]));
    assert_eq!(
        spans_by_id(&result(&all)?).len(),
        5,
        "every span of each found trace, the v3-db one included"
    );
    assert_eq!(found(vec![shop(), cart()]).await?, ids(&[A, B]));
    assert_eq!(
        found(vec![shop(), attrs(json!({"http.status_code": "500"}))]).await?,
        ids(&[B]),
        "an int attribute matches its decimal text"
    );
    assert_eq!(
        found(vec![shop(), attrs(json!({"host.name": "h1"}))]).await?,
        ids(&[A]),
        "resource attributes count"
    );
    assert_eq!(
        found(vec![
            shop(),
            attrs(json!({"http.method": "GET"})),
            attrs(json!({"host.name": "h2"})),
        ])
        .await?,
        ids(&[B]),
        "repeated query.attributes all apply"
    );
    assert_eq!(
        found(vec![shop(), cart(), ("query.duration_min", s("10ms"))]).await?,
        ids(&[B])
    );
    assert_eq!(
        found(vec![shop(), cart(), ("query.duration_max", s("3ms"))]).await?,
        ids(&[A])
    );
    assert_eq!(
        found(vec![
            shop(),
            ("query.duration_min", s("1.5ms")),
            ("query.duration_max", s("2500us")),
        ])
        .await?,
        ids(&[A])
    );
    assert_eq!(
        found(vec![
            shop(),
            ("query.start_time_min", rfc3339(now - 40 * MINUTE, 120)),
            ("query.start_time_max", rfc3339(now - 20 * MINUTE, -330)),
        ])
        .await?,
        ids(&[C]),
        "times in any zone"
    );
    assert_eq!(
        found(vec![
            shop(),
            ("query.start_time_min", rfc3339(now - 10 * MINUTE, 0))
        ])
        .await?,
        ids(&[A, B])
    );
    assert_eq!(
        found(vec![shop(), ("query.search_depth", s("1"))]).await?,
        ids(&[B]),
        "the newest trace"
    );
    let (_, db) = search(vec![("query.service_name", s("v3-db"))]).await?;
    assert_eq!(trace_ids(&db)?, ids(&[A]));
    assert_eq!(spans_by_id(&result(&db)?), spans_by_id(&traces[0]));
    assert_eq!(
        found(vec![
            ("query.serviceName", s("v3-shop")),
            ("query.operationName", s("POST /order")),
            ("query.raw_traces", s("false")),
        ])
        .await?,
        ids(&[C]),
        "the camelCase names of newer Jaeger releases"
    );
    assert_eq!(
        search(vec![shop(), attrs(json!({"http.status_code": "418"}))]).await?,
        (404, not_found())
    );
    assert_eq!(
        search(vec![("query.service_name", s("nope"))]).await?,
        (404, not_found())
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v3_answers_bad_requests_and_unknown_traces_as_jaeger_does() -> Result<()> {
    let stack = Stack::start(topology("api_v3_errors")).await?;
    assert_eq!(
        get(&stack, "/api/v3/services", &[]).await?,
        (200, json!({"services": []}))
    );
    assert_eq!(
        get(
            &stack,
            "/api/v3/traces/00000000000000000000000000abcdef",
            &[]
        )
        .await?,
        (404, not_found())
    );
    let bad = |path: String, query: Vec<(&'static str, &'static str)>| {
        let stack = &stack;
        async move {
            let (status, body) = get(stack, &path, &query).await?;
            ensure!(status == 400, "{path} {query:?}: {status} {body}");
            ensure!(body["error"]["httpCode"] == 400, "{body}");
            Ok::<_, anyhow::Error>(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    let trace = |id: &str| format!("/api/v3/traces/{id}");
    assert!(bad(trace("not-hex"), vec![])
        .await?
        .starts_with("malformed parameter trace_id"));
    assert!(bad(trace(&"a".repeat(33)), vec![])
        .await?
        .starts_with("malformed parameter trace_id"));
    assert!(bad(trace("abc"), vec![("start_time", "yesterday")])
        .await?
        .starts_with("malformed parameter start_time: parsing time \"yesterday\""));
    assert!(bad(trace("abc"), vec![("raw_traces", "maybe")])
        .await?
        .starts_with("malformed parameter raw_traces"));

    const MIN: (&str, &str) = ("query.start_time_min", "2017-01-26T16:00:00Z");
    const MAX: (&str, &str) = ("query.start_time_max", "2017-01-26T17:00:00Z");
    const SHOP: (&str, &str) = ("query.service_name", "v3-shop");
    let search = |query: Vec<(&'static str, &'static str)>| bad("/api/v3/traces".into(), query);
    assert_eq!(
        search(vec![MIN, MAX]).await?,
        "query.service_name is required"
    );
    assert_eq!(
        search(vec![SHOP]).await?,
        "query.start_time_min and query.start_time_max are required"
    );
    assert!(
        search(vec![SHOP, ("query.start_time_min", "2017-01-26"), MAX])
            .await?
            .starts_with("malformed parameter query.start_time_min: parsing time")
    );
    assert_eq!(
        search(vec![
            SHOP,
            ("query.start_time_min", "2017-01-26T18:00:00Z"),
            MAX
        ])
        .await?,
        "query.start_time_min must be before query.start_time_max"
    );
    assert_eq!(
        search(vec![SHOP, MIN, MAX, ("query.duration_min", "fast")]).await?,
        "malformed parameter query.duration_min: time: invalid duration \"fast\""
    );
    assert_eq!(
        search(vec![SHOP, MIN, MAX, ("query.duration_max", "10")]).await?,
        "malformed parameter query.duration_max: time: missing unit in duration \"10\""
    );
    assert_eq!(
        search(vec![
            SHOP,
            MIN,
            MAX,
            ("query.duration_min", "2s"),
            ("query.duration_max", "1s")
        ])
        .await?,
        "query.duration_min must not be greater than query.duration_max"
    );
    assert!(search(vec![SHOP, MIN, MAX, ("query.attributes", "{nope")])
        .await?
        .starts_with("malformed parameter query.attributes"));
    assert!(search(vec![
        SHOP,
        MIN,
        MAX,
        ("query.attributes", r#"{"http.status_code":500}"#)
    ])
    .await?
    .starts_with("malformed parameter query.attributes: want a JSON object of strings"));
    assert!(search(vec![SHOP, MIN, MAX, ("query.search_depth", "many")])
        .await?
        .starts_with("malformed parameter query.search_depth"));
    assert_eq!(
        get(&stack, "/api/v3/traces", &[SHOP, MIN, MAX]).await?,
        (404, not_found())
    );
    stack.stop().await;
    Ok(())
}
