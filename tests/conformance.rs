//! The Jaeger storage conformance suite (`../shared/conformance/jaeger-storage`),
//! driven over skein's HTTP API exactly as its README describes: every
//! fixture is posted to the collector as OTLP/JSON, each of the 25 search
//! cases is retried until the number of traces and spans match, and the
//! traces found are compared with the fixtures span for span. Prints a line
//! per case.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use serde_json::Value;
use skein_model::jaeger;
use skein_tests::{
    conformance_query_time, copies, fixture, fixture_json, post_protobuf, topology, Stack,
};

const WAIT: Duration = Duration::from_secs(90);
/// How long the suite retries a search before it fails it.
const SEARCH_WAIT: Duration = Duration::from_secs(100);

/// A span made comparable: its process inlined, tags, log fields and
/// process tags sorted, as the suite compares them.
fn normalised(span: &Value) -> String {
    let mut span = span.clone();
    let sort = |v: &mut Value| {
        if let Some(items) = v.as_array_mut() {
            items.sort_by_key(Value::to_string);
        }
    };
    if let Some(obj) = span.as_object_mut() {
        // Where a process is keyed is the response's business.
        obj.remove("processID");
        obj.remove("warnings");
    }
    sort(&mut span["tags"]);
    sort(&mut span["references"]);
    sort(&mut span["process"]["tags"]);
    if let Some(logs) = span["logs"].as_array_mut() {
        for log in logs.iter_mut() {
            sort(&mut log["fields"]);
        }
        logs.sort_by_key(Value::to_string);
    }
    span.to_string()
}

/// The spans of Jaeger traces (as the API answers them), normalised and
/// grouped by trace ID.
fn traces_of(answer_data: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for trace in answer_data.as_array().into_iter().flatten() {
        for span in skein_tests::spans_with_process(trace) {
            let id = span["traceID"].as_str().unwrap_or_default().to_owned();
            out.entry(id).or_default().push(normalised(&span));
        }
    }
    for spans in out.values_mut() {
        spans.sort();
    }
    out
}

/// A fixture as the API must answer it.
fn expected_traces(data: &TracesData) -> Result<BTreeMap<String, Vec<String>>> {
    let trace = serde_json::to_value(jaeger::trace_from_otlp(&data.resource_spans))?;
    Ok(traces_of(&Value::Array(vec![trace])))
}

/// The query string of a case of `queries.json`, as Jaeger's UI would
/// send it (tag values as strings).
fn search_query(case: &Value) -> Result<String> {
    let q = &case["Query"];
    let mut params: Vec<(String, String)> = vec![(
        "service".into(),
        q["ServiceName"].as_str().unwrap_or_default().into(),
    )];
    if let Some(op) = q["OperationName"].as_str().filter(|s| !s.is_empty()) {
        params.push(("operation".into(), op.into()));
    }
    if let Some(tags) = q["Tags"].as_object().filter(|t| !t.is_empty()) {
        let strings: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, v)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k.clone(), Value::String(text))
            })
            .collect();
        params.push(("tags".into(), Value::Object(strings).to_string()));
    }
    for (key, param) in [("StartTimeMin", "start"), ("StartTimeMax", "end")] {
        let ns = conformance_query_time(q[key].as_str().context("query time")?)?;
        params.push((param.into(), (ns / 1_000).to_string()));
    }
    for (key, param) in [
        ("DurationMin", "minDuration"),
        ("DurationMax", "maxDuration"),
    ] {
        if let Some(ns) = q[key].as_u64().filter(|n| *n > 0) {
            params.push((param.into(), format!("{ns}ns")));
        }
    }
    params.push((
        "limit".into(),
        q["NumTraces"].as_u64().unwrap_or(0).to_string(),
    ));
    Ok(params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencoding(v)))
        .collect::<Vec<_>>()
        .join("&"))
}

/// Percent-encodes a query value.
fn urlencoding(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_25_search_cases_pass_over_http() -> Result<()> {
    let stack = Stack::start(topology("conformance")).await?;
    let names = skein_tests::fixture_names()?;
    // Every trace is written first, so that the others are counter-examples.
    let mut expected: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for name in &names {
        let response = stack.post_otlp_json(fixture_json(name)?).await?;
        ensure!(
            response.status() == 200,
            "posting {name}: {}",
            response.status()
        );
        expected.insert(name.clone(), expected_traces(&fixture(name)?)?);
    }
    let text = std::fs::read_to_string(skein_tests::conformance_dir().join("queries.json"))?;
    let cases: Vec<Value> = serde_json::from_str(&text)?;
    ensure!(cases.len() == 25, "25 cases, found {}", cases.len());
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let caption = case["Caption"].as_str().unwrap_or("?");
        let want: BTreeMap<String, Vec<String>> = case["ExpectedFixtures"]
            .as_array()
            .context("ExpectedFixtures")?
            .iter()
            .filter_map(Value::as_str)
            .flat_map(|f| expected[f].clone())
            .collect();
        let want_spans: usize = want.values().map(Vec::len).sum();
        let url = stack.query_url(&format!("/api/traces?{}", search_query(case)?));
        let started = Instant::now();
        // Retried until the number of traces and spans match, as the suite does.
        let got = loop {
            let answer: Value = http.get(&url).send().await?.json().await?;
            let got = traces_of(&answer["data"]);
            let spans: usize = got.values().map(Vec::len).sum();
            if (got.len() == want.len() && spans == want_spans) || started.elapsed() > SEARCH_WAIT {
                break got;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let outcome = if got == want {
            "ok"
        } else {
            let got_ids: BTreeSet<_> = got.keys().collect();
            let want_ids: BTreeSet<_> = want.keys().collect();
            failures.push(format!(
                "{caption}: want traces {want_ids:?}, got {got_ids:?}{}",
                if got_ids == want_ids {
                    " (same IDs, other spans)"
                } else {
                    ""
                }
            ));
            "FAILED"
        };
        println!(
            "case {:2} {caption}: {outcome} ({} traces, {want_spans} spans, {:?})",
            n + 1,
            want.len(),
            started.elapsed()
        );
    }
    stack.stop().await;
    if !failures.is_empty() {
        bail!("failed cases:\n{}", failures.join("\n"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_a_trace_by_id_and_an_unknown_one() -> Result<()> {
    let stack = Stack::start(topology("conformance_get")).await?;
    ensure!(
        stack
            .post_otlp_json(fixture_json("example_trace")?)
            .await?
            .status()
            == 200
    );
    let answer = stack.wait_for_trace("0000000000000011", 5, WAIT).await?;
    ensure!(
        traces_of(&answer["data"]) == expected_traces(&fixture("example_trace")?)?,
        "example_trace comes back span for span"
    );
    println!("get trace: ok");
    let unknown = reqwest::get(stack.query_url(&format!("/api/traces/{}", "f".repeat(32)))).await?;
    ensure!(
        unknown.status() == 404,
        "unknown trace: {}",
        unknown.status()
    );
    let body: Value = unknown.json().await?;
    ensure!(body["errors"][0]["code"] == 404, "{body}");
    println!("unknown trace: ok (404)");
    // Several at once by ID, the unknown one reported among the errors.
    let both: Value = reqwest::get(stack.query_url(&format!(
        "/api/traces?traceID=11&traceID={}",
        "f".repeat(32)
    )))
    .await?
    .json()
    .await?;
    ensure!(both["data"].as_array().map(Vec::len) == Some(1), "{both}");
    ensure!(both["errors"][0]["traceID"] == "f".repeat(32), "{both}");
    println!("traces by ID: ok");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_operations_are_listed_as_jaeger_lists_them() -> Result<()> {
    let stack = Stack::start(topology("services")).await?;
    assert_eq!(
        stack
            .post_otlp_json(fixture_json("example_trace")?)
            .await?
            .status(),
        200
    );
    stack.wait_for_trace("0000000000000011", 5, WAIT).await?;
    let get = |path: &str| {
        let url = stack.query_url(path);
        async move { anyhow::Ok(reqwest::get(url).await?.json::<Value>().await?) }
    };
    let services = get("/api/services").await?;
    assert_eq!(
        services["data"],
        serde_json::json!([
            "example-service-1",
            "example-service-2",
            "example-service-3"
        ])
    );
    assert_eq!(services["total"], 3);
    let names = get("/api/services/example-service-1/operations").await?;
    assert_eq!(
        names["data"],
        serde_json::json!([
            "example-operation-1",
            "example-operation-3",
            "example-operation-4"
        ])
    );
    let ops = get("/api/operations?service=example-service-1").await?;
    assert_eq!(
        ops["data"],
        serde_json::json!([
            {"name": "example-operation-1", "spanKind": ""},
            {"name": "example-operation-3", "spanKind": "server"},
            {"name": "example-operation-4", "spanKind": "client"},
        ])
    );
    let servers = get("/api/operations?service=example-service-1&spanKind=server").await?;
    assert_eq!(
        servers["data"],
        serde_json::json!([{"name": "example-operation-3", "spanKind": "server"}])
    );
    let missing = reqwest::get(stack.query_url("/api/operations")).await?;
    assert_eq!(missing.status(), 400);
    println!("services and operations: ok");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_of_10008_spans_comes_back_whole() -> Result<()> {
    let stack = Stack::start(topology("big_trace")).await?;
    post_protobuf(&stack, &copies(10_008, None)?).await?;
    let answer = stack
        .wait_for_trace(&"ee".repeat(16), 10_008, Duration::from_secs(120))
        .await?;
    let ids: std::collections::BTreeSet<_> = answer["data"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spanID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 10_008, "every copy has its own span ID");
    println!("trace of 10,008 spans: ok");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reusing_a_span_id_are_all_kept() -> Result<()> {
    let stack = Stack::start(topology("dup_ids")).await?;
    post_protobuf(&stack, &copies(200, Some(20))?).await?;
    let answer = stack
        .wait_for_trace(&"ee".repeat(16), 200, Duration::from_secs(90))
        .await?;
    let original = answer["data"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["spanID"] == "0000000000000004") // the first span of the fixture
        .count();
    assert_eq!(
        original, 10,
        "every 20th of 200 copies reuses the original span ID"
    );
    println!("trace with duplicate span IDs: ok");
    stack.stop().await;
    Ok(())
}
