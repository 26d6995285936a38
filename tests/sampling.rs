//! End-to-end tests of Jaeger remote sampling: a collector started on the
//! local stack serves a strategies file on the agent-style `/sampling` and
//! the collector-style `/api/sampling`, reloads it when it changes, and keeps
//! the last good strategies when it breaks.
//!
//! The expected answers in `fixtures/sampling/responses` were written by hand
//! from Jaeger's rules and its HTTP handler's encoding, not generated.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skein_tests::{topology, Stack};

const RELOAD_MS: u64 = 200;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sampling")
        .join(name)
}

/// An expected answer, as the exact body.
fn response(name: &str) -> Result<String> {
    let path = fixture(&format!("responses/{name}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim_end().to_owned())
}

/// A folder of the test's own for its strategies file, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("skein-sampling-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn file(&self) -> PathBuf {
        self.0.join("strategies.json")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(test: &str, strategies_file: &Path) -> Result<Stack> {
    let mut t = topology(test);
    t.collector.sampling.strategies_file = strategies_file.display().to_string();
    t.collector.sampling.reload_interval_ms = RELOAD_MS;
    Stack::start(t).await
}

/// Both sampling URLs of `stack` for `query` (`service=foo`).
fn urls(stack: &Stack, query: &str) -> [String; 2] {
    let agent = stack.collector.sampling_http.expect("sampling_http is on");
    let collector = stack
        .collector
        .jaeger_thrift_http
        .expect("jaeger_thrift_http is on");
    [
        format!("http://{agent}/sampling?{query}"),
        format!("http://{collector}/api/sampling?{query}"),
    ]
}

/// Status, content type and body.
async fn get(url: &str) -> Result<(u16, String, String)> {
    let response = reqwest::get(url).await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, content_type, response.text().await?))
}

/// Asserts that both endpoints answer `service` with the response fixture `expected`.
async fn assert_serves(stack: &Stack, service: &str, expected: &str) -> Result<()> {
    let expected = response(expected)?;
    for url in urls(stack, &format!("service={service}")) {
        let (status, content_type, body) = get(&url).await?;
        assert_eq!(
            (status, content_type.as_str(), body.as_str()),
            (200, "application/json", expected.as_str()),
            "{url}"
        );
    }
    Ok(())
}

/// Polls both endpoints until they answer `service` with `expected`.
async fn wait_for(stack: &Stack, service: &str, expected: &str) -> Result<()> {
    let want = response(expected)?;
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(15) {
        let mut all = true;
        for url in urls(stack, &format!("service={service}")) {
            let (_, _, body) = get(&url).await?;
            if body != want {
                all = false;
                last = body;
            }
        }
        if all {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{service} was not answered with {expected} in 15 s; last: {last}")
}

#[tokio::test]
async fn serves_the_strategies_file_on_both_endpoints() -> Result<()> {
    let scratch = Scratch::new("serve")?;
    std::fs::copy(fixture("strategies.json"), scratch.file())?;
    let stack = start("sampling_serve", &scratch.file()).await?;

    assert_serves(&stack, "foo", "foo").await?;
    assert_serves(&stack, "bar", "bar").await?;
    assert_serves(&stack, "unknown", "unknown").await?;
    // An empty name is a name, which has no strategy of its own.
    assert_serves(&stack, "", "unknown").await?;
    // Percent-encoding is decoded.
    assert_serves(&stack, "%66oo", "foo").await?;

    for query in ["", "other=foo", "service=foo&service=bar"] {
        for url in urls(&stack, query) {
            let (status, content_type, body) = get(&url).await?;
            assert_eq!(
                (status, content_type.as_str(), body.as_str()),
                (
                    400,
                    "text/plain; charset=utf-8",
                    "'service' parameter must be provided once\n"
                ),
                "{url}"
            );
        }
    }
    for url in urls(&stack, "service=foo") {
        let status = reqwest::Client::new().post(&url).send().await?.status();
        assert_eq!(status.as_u16(), 405, "{url}");
    }
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn without_a_file_every_service_gets_the_default_probability() -> Result<()> {
    let mut t = topology("sampling_default");
    t.collector.sampling.reload_interval_ms = RELOAD_MS;
    let stack = Stack::start(t).await?;
    assert_serves(&stack, "foo", "default").await?;
    assert_serves(&stack, "anything", "default").await?;
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn reloads_a_changed_file_and_keeps_the_last_good_strategies() -> Result<()> {
    let scratch = Scratch::new("reload")?;
    let file = scratch.file();
    std::fs::copy(fixture("strategies.json"), &file)?;
    let stack = start("sampling_reload", &file).await?;
    assert_serves(&stack, "foo", "foo").await?;

    std::fs::copy(fixture("strategies_reloaded.json"), &file)?;
    wait_for(&stack, "foo", "foo_reloaded").await?;
    assert_serves(&stack, "bar", "bar_reloaded").await?;
    assert_serves(&stack, "unknown", "default").await?;

    // Broken, then gone: the last good strategies stay.
    std::fs::write(&file, r#"{"service_strategies": [{"service": "foo", "#)?;
    tokio::time::sleep(Duration::from_millis(5 * RELOAD_MS)).await;
    assert_serves(&stack, "foo", "foo_reloaded").await?;
    assert_serves(&stack, "bar", "bar_reloaded").await?;
    std::fs::remove_file(&file)?;
    tokio::time::sleep(Duration::from_millis(5 * RELOAD_MS)).await;
    assert_serves(&stack, "foo", "foo_reloaded").await?;

    // Valid again: the watcher is still there.
    std::fs::copy(fixture("strategies.json"), &file)?;
    wait_for(&stack, "foo", "foo").await?;
    assert_serves(&stack, "bar", "bar").await?;
    assert_serves(&stack, "unknown", "unknown").await?;
    stack.stop().await;
    Ok(())
}

/// The error of starting a collector with `strategies_file`.
async fn bind_error(test: &str, strategies_file: &Path) -> String {
    let mut t = topology(test);
    t.collector.sampling.strategies_file = strategies_file.display().to_string();
    match skein_collector::Collector::bind(&t).await {
        Ok(_) => panic!("{} was accepted", strategies_file.display()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn an_unreadable_or_invalid_file_stops_the_collector_from_starting() -> Result<()> {
    let scratch = Scratch::new("invalid")?;
    let file = scratch.file();
    let name = file.display();

    assert_eq!(
        bind_error("sampling_invalid", &file).await,
        format!(
            "cannot read strategies file {name}: \
             No such file or directory (os error 2)"
        )
    );

    std::fs::write(&file, "not json")?;
    assert_eq!(
        bind_error("sampling_invalid", &file).await,
        format!(
            "invalid strategies file {name}: \
             expected ident at line 1 column 2"
        )
    );

    std::fs::write(
        &file,
        "{\n  \"service_strategies\": [\n    {\"service\": \"foo\", \"type\": \"probabilistic\", \"param\": \"0.5\"}\n  ]\n}\n",
    )?;
    assert_eq!(
        bind_error("sampling_invalid", &file).await,
        format!(
            "invalid strategies file {name}: \
             invalid type: string \"0.5\", expected f64 at line 3 column 62"
        )
    );

    std::fs::write(&file, r#"{"service_strategies": [null]}"#)?;
    assert_eq!(
        bind_error("sampling_invalid", &file).await,
        format!(
            "invalid strategies file {name}: \
             service_strategies[0] is null"
        )
    );
    Ok(())
}
