//! `GET /api/pipeline`: what the UI's Pipeline page shows a person on call.
//!
//! In: the topology's consumer groups (`groups.ingester`,
//! `groups.aggregator`) on the spans topic, and the roles' Prometheus
//! `/metrics` endpoints (`query.pipeline_metrics`, or the topology's admin
//! endpoints when that is empty). Out: JSON with, per group, the committed
//! offset, high watermark and lag of every partition; the pipeline's
//! counters (spans in and out, dead letters, ClickHouse write retries and
//! failures), each summed over its labels and over every endpoint that
//! answered; and whether each endpoint answered.
//!
//! Guarantees: read only (the lag client never joins a group, see
//! `skein_kafka::lag`). A broker or an endpoint that does not answer is
//! reported in the JSON, never as a server error, and bounds the answer's
//! time: lag gets [`LAG_TIMEOUT`], each scrape [`SCRAPE_TIMEOUT`], all run at
//! once. Counters are totals; the page computes rates from two polls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::Json;
use serde::Serialize;

/// The most a group's lag may take to read.
const LAG_TIMEOUT: Duration = Duration::from_secs(5);
/// The most one `/metrics` scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The counters read, as the roles' `metrics.rs` name them (the end-to-end
/// test `tests/pipeline.rs` checks them against those constants).
pub(crate) const COUNTERS: &[&str] = &[
    "skein_collector_spans_received_total",
    "skein_collector_spans_rejected_total",
    "skein_collector_spans_published_total",
    "skein_collector_spans_failed_total",
    "skein_ingester_spans_written_total",
    "skein_ingester_messages_dead_lettered_total",
    "skein_ingester_write_retries_total",
    "skein_aggregator_links_written_total",
    "skein_aggregator_write_failures_total",
];

/// What the handler needs, from the topology.
#[derive(Clone)]
pub(crate) struct Pipeline(Arc<Inner>);

struct Inner {
    kafka: skein_config::Kafka,
    topic: String,
    /// (role, group id).
    groups: Vec<(&'static str, String)>,
    endpoints: Vec<String>,
    http: reqwest::Client,
}

impl Pipeline {
    pub(crate) fn new(topology: &skein_config::Topology) -> Self {
        let http = reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT)
            .connect_timeout(SCRAPE_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self(Arc::new(Inner {
            kafka: topology.kafka.clone(),
            topic: topology.topics.spans.name.clone(),
            groups: vec![
                ("ingester", topology.groups.ingester.clone()),
                ("aggregator", topology.groups.aggregator.clone()),
            ],
            endpoints: endpoints(topology),
            http,
        }))
    }
}

/// `query.pipeline_metrics`, or the admin endpoints of the collector (and
/// all-in-one), the ingester and the aggregator.
fn endpoints(topology: &skein_config::Topology) -> Vec<String> {
    let configured: Vec<String> = topology
        .query
        .pipeline_metrics
        .iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    if !configured.is_empty() {
        return configured;
    }
    let admin = &topology.admin;
    [&admin.http, &admin.ingester_http, &admin.aggregator_http]
        .into_iter()
        .map(|addr| format!("http://{}/metrics", local(addr)))
        .collect()
}

/// The metrics endpoint of a process that runs every role (all-in-one): its
/// one admin endpoint serves every role's metrics.
pub fn all_in_one_endpoints(topology: &skein_config::Topology) -> Vec<String> {
    vec![format!("http://{}/metrics", local(&topology.admin.http))]
}

/// A listen address as a client on this host reaches it: the unspecified
/// address becomes loopback.
fn local(addr: &str) -> String {
    if let Some(port) = addr.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = addr.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        addr.to_owned()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    topic: String,
    groups: Vec<GroupLag>,
    /// Each counter's total over its labels and the endpoints that
    /// answered; absent when no endpoint has it (a role registers a counter
    /// when it first counts, so absent from an answering endpoint is 0).
    counters: BTreeMap<&'static str, f64>,
    endpoints: Vec<Endpoint>,
    /// When the answer was made, in ms since the epoch (for rates).
    scraped_at_ms: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupLag {
    role: &'static str,
    group: String,
    partitions: Vec<Partition>,
    total_lag: i64,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Partition {
    partition: i32,
    committed: Option<i64>,
    low_watermark: i64,
    high_watermark: i64,
    lag: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    url: String,
    reachable: bool,
    error: Option<String>,
}

/// `GET /api/pipeline`.
pub(crate) async fn handler(State(api): State<crate::api::Api>) -> Json<serde_json::Value> {
    let p = &api.pipeline.0;
    let lags = futures::future::join_all(
        p.groups
            .iter()
            .map(|(role, group)| group_lag(&p.kafka, role, group, &p.topic)),
    );
    let scrapes = futures::future::join_all(p.endpoints.iter().map(|u| scrape(&p.http, u)));
    let (groups, scrapes) = tokio::join!(lags, scrapes);
    let mut counters = BTreeMap::new();
    let mut endpoints = Vec::new();
    for (url, result) in p.endpoints.iter().zip(scrapes) {
        let error = match result {
            Ok(text) => {
                for (name, value) in sum_counters(&text) {
                    *counters.entry(name).or_insert(0.0) += value;
                }
                None
            }
            Err(e) => Some(e),
        };
        endpoints.push(Endpoint {
            url: url.clone(),
            reachable: error.is_none(),
            error,
        });
    }
    let scraped_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let answer = Answer {
        topic: p.topic.clone(),
        groups,
        counters,
        endpoints,
        scraped_at_ms,
    };
    Json(serde_json::to_value(answer).unwrap_or_default())
}

async fn group_lag(
    kafka: &skein_config::Kafka,
    role: &'static str,
    group: &str,
    topic: &str,
) -> GroupLag {
    let result = tokio::time::timeout(
        LAG_TIMEOUT,
        skein_kafka::lag::group_lag(kafka, group, topic),
    )
    .await;
    let (partitions, error) = match result {
        Ok(Ok(rows)) => (
            rows.into_iter()
                .map(|r| Partition {
                    partition: r.partition,
                    committed: r.committed,
                    low_watermark: r.low_watermark,
                    high_watermark: r.high_watermark,
                    lag: r.lag,
                })
                .collect(),
            None,
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, group, "reading consumer lag failed");
            (Vec::new(), Some(e.to_string()))
        }
        Err(_) => (
            Vec::new(),
            Some(format!(
                "reading consumer lag: no answer from kafka in {LAG_TIMEOUT:?}"
            )),
        ),
    };
    GroupLag {
        role,
        group: group.to_owned(),
        total_lag: partitions.iter().map(|p: &Partition| p.lag).sum(),
        partitions,
        error,
    }
}

/// The body of one `/metrics` endpoint, or why there is none (without
/// the URL, which the answer gives beside it).
async fn scrape(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = http
        .get(url)
        .header("accept", "text/plain")
        .send()
        .await
        .map_err(|e| error_chain(&e.without_url()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("http {status}"));
    }
    response
        .text()
        .await
        .map_err(|e| error_chain(&e.without_url()))
}

/// An error and its causes, `: `-separated (reqwest's own message alone
/// says little, e.g. "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The [`COUNTERS`] found in a Prometheus text exposition, each summed over
/// its samples (every label set).
fn sum_counters(text: &str) -> BTreeMap<&'static str, f64> {
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        let Some((name, value)) = sample(line) else {
            continue;
        };
        if let Some(known) = COUNTERS.iter().find(|c| **c == name) {
            *sums.entry(*known).or_insert(0.0) += value;
        }
    }
    sums
}

/// A sample line's metric name and value: `name{labels} value [timestamp]`;
/// `None` for comments, blank lines and values that are not finite.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        // Label values are quoted and may hold `}` and escaped quotes.
        let mut quoted = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end? + 1..];
    }
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_over_labels_and_other_series_ignored() {
        let text = "# HELP skein_ingester_spans_written_total spans written\n\
            # TYPE skein_ingester_spans_written_total counter\n\
            skein_ingester_spans_written_total{partition=\"0\"} 10\n\
            skein_ingester_spans_written_total{partition=\"1\"} 2.5 1700000000000\n\
            skein_ingester_spans_written_total_other 100\n\
            skein_ingester_messages_dead_lettered_total{reason=\"a } \\\" b\"} 3\n\
            skein_ingester_write_retries_total 4\n\
            skein_collector_spans_published_total NaN\n\
            \n\
            garbage\n";
        let sums = sum_counters(text);
        assert_eq!(sums.get("skein_ingester_spans_written_total"), Some(&12.5));
        assert_eq!(
            sums.get("skein_ingester_messages_dead_lettered_total"),
            Some(&3.0)
        );
        assert_eq!(sums.get("skein_ingester_write_retries_total"), Some(&4.0));
        assert_eq!(sums.get("skein_collector_spans_published_total"), None);
        assert_eq!(sums.len(), 3);
    }

    #[test]
    fn endpoints_default_to_the_admin_addresses_on_loopback() {
        let mut t = skein_config::Topology::default();
        t.admin.ingester_http = "[::]:14270".into();
        t.admin.aggregator_http = "10.0.0.5:14271".into();
        assert_eq!(
            endpoints(&t),
            [
                "http://127.0.0.1:14269/metrics",
                "http://[::1]:14270/metrics",
                "http://10.0.0.5:14271/metrics",
            ]
        );
        t.query.pipeline_metrics = vec![" http://a:1/metrics ".into(), String::new()];
        assert_eq!(endpoints(&t), ["http://a:1/metrics"]);
    }
}
