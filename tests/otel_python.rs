//! The OpenTelemetry Python SDK (PyPI `opentelemetry-sdk` with the OTLP
//! exporters) sends a trace over OTLP gRPC and over OTLP HTTP; each is read
//! back from the query API with the right service, operations, attributes,
//! events, status and parent.
//!
//! The SDK is installed into `tests/clients/python/.venv` from the pinned
//! `requirements.txt` the first time (and only when it is missing).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use skein_tests::{topology, Stack};

const WAIT: Duration = Duration::from_secs(90);

fn client_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python"))
}

/// Creates the virtualenv and installs the SDK, once per test process and
/// only when the SDK does not import yet.
fn install_sdk() -> Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = client_dir();
    let python = dir.join(".venv/bin/python");
    let ready = python.exists()
        && std::process::Command::new(&python)
            .args(["-c", "import opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        skein_tests::run_command(
            std::process::Command::new("python3")
                .args(["-m", "venv", ".venv"])
                .current_dir(&dir),
            "python3 -m venv",
        )?;
        skein_tests::run_command(
            std::process::Command::new(dir.join(".venv/bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    "requirements.txt",
                ])
                .current_dir(&dir),
            "pip install -r tests/clients/python/requirements.txt",
        )?;
    }
    Ok(python)
}

async fn send(protocol: &str, addr: std::net::SocketAddr, service: &str) -> Result<String> {
    let python = install_sdk()?;
    let (protocol, addr, service) = (protocol.to_owned(), addr.to_string(), service.to_owned());
    tokio::task::spawn_blocking(move || {
        skein_tests::run_command(
            std::process::Command::new(python)
                .arg(client_dir().join("send.py"))
                .args([&protocol, &addr, &service]),
            "send.py",
        )
    })
    .await?
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"].as_array()?.iter().find(|t| t["key"] == key)
}

fn check(answer: &Value, trace_id: &str, service: &str) {
    let trace = &answer["data"][0];
    assert_eq!(trace["traceID"], trace_id);
    let spans = trace["spans"].as_array().expect("spans");
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s["operationName"] == name)
            .unwrap_or_else(|| panic!("no span {name}"))
    };
    let (parent, child) = (by_name("checkout"), by_name("charge card"));
    let process = &trace["processes"][parent["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], service);
    assert!(process["tags"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "deployment.environment", "type": "string", "value": "test"})));
    assert!(process["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "telemetry.sdk.language" && t["value"] == "python"));

    assert_eq!(tag(parent, "span.kind").unwrap()["value"], "server");
    assert_eq!(
        tag(parent, "otel.scope.name").unwrap()["value"],
        "skein-e2e"
    );
    assert_eq!(tag(parent, "otel.scope.version").unwrap()["value"], "1.2.3");
    assert_eq!(
        tag(parent, "http.request.method").unwrap(),
        &json!({"key": "http.request.method", "type": "string", "value": "POST"})
    );
    assert_eq!(
        tag(parent, "items").unwrap(),
        &json!({"key": "items", "type": "int64", "value": 3})
    );
    assert_eq!(
        tag(parent, "ratio").unwrap(),
        &json!({"key": "ratio", "type": "float64", "value": 0.25})
    );
    assert_eq!(
        tag(parent, "retry").unwrap(),
        &json!({"key": "retry", "type": "bool", "value": false})
    );
    assert_eq!(tag(parent, "tags").unwrap()["value"], "[\"a\",\"b\"]");
    assert_eq!(parent["references"], json!([]));

    assert_eq!(tag(child, "span.kind").unwrap()["value"], "client");
    assert_eq!(tag(child, "error").unwrap()["value"], true);
    assert_eq!(
        tag(child, "otel.status_description").unwrap()["value"],
        "declined"
    );
    assert_eq!(
        child["references"],
        json!([{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent["spanID"]}])
    );
    let log = &child["logs"][0];
    assert!(log["fields"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "event", "type": "string", "value": "card declined"})));
    assert!(log["fields"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "attempt", "type": "int64", "value": 2})));
    let (p_start, c_start) = (
        parent["startTime"].as_u64().unwrap(),
        child["startTime"].as_u64().unwrap(),
    );
    assert!(
        c_start >= p_start
            && c_start + child["duration"].as_u64().unwrap()
                <= p_start + parent["duration"].as_u64().unwrap() + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_otlp_grpc() -> Result<()> {
    let stack = Stack::start(topology("python_grpc")).await?;
    let trace_id = send("grpc", stack.otlp_grpc, "py-grpc").await?;
    let answer = stack.wait_for_trace(&trace_id, 2, WAIT).await?;
    check(&answer, &trace_id, "py-grpc");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_otlp_http() -> Result<()> {
    let stack = Stack::start(topology("python_http")).await?;
    let trace_id = send("http", stack.otlp_http, "py-http").await?;
    let answer = stack.wait_for_trace(&trace_id, 2, WAIT).await?;
    check(&answer, &trace_id, "py-http");
    stack.stop().await;
    Ok(())
}
