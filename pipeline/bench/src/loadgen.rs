//! Load generation: synthetic traces sent to a collector over OTLP.
//!
//! In: a [`Config`]: the collector's endpoint and protocol (OTLP/HTTP
//! protobuf to `{endpoint}/v1/traces`, or OTLP/gRPC `TraceService/Export`),
//! a target rate in spans per second or none (as fast as accepted), a
//! duration, how many requests may be in flight, spans per request and the
//! traces' [`Shape`]. Out: a [`Report`]: spans sent, accepted, refused
//! (HTTP 429/503, gRPC `RESOURCE_EXHAUSTED`/`UNAVAILABLE`), rejected (an
//! accepted request's `partial_success.rejected_spans`) and failed (any
//! other error), requests per status, achieved rate and request latency;
//! progress lines on stderr every [`PROGRESS_EVERY`] meanwhile.
//!
//! Guarantees: every request holds whole traces of the [`Generator`]'s
//! seed, with trace indexes counted up from 0 over the run, so no span is
//! sent twice in a run and two runs with the same seed send the same IDs
//! (use another seed to add to what a run stored). A refused or failed
//! request is not retried: its spans count as refused or failed. At a
//! fixed rate, request `k` leaves when the spans of requests `0..=k` are
//! due ([`due_after`]: a token bucket that starts empty), so the spans sent
//! by any moment never exceed the rate times the time elapsed; a request
//! that would be due after the duration is not sent. With no rate, each of
//! `concurrency` workers sends its next request as soon as the last one was
//! answered, waiting [`BACKOFF`] after a refusal or error. Every request
//! sent is awaited before the report is made, so sent = accepted + refused
//! + rejected + failed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::json;
use tokio::time::Instant;

use crate::stats::{ms, Summary};
use crate::synth::{Generator, Shape};

/// How often a progress line is printed.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// How long a worker waits after a refused or failed request when sending
/// as fast as accepted.
pub const BACKOFF: Duration = Duration::from_millis(50);

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/HTTP, protobuf body, `POST {endpoint}/v1/traces`.
    Http,
    /// OTLP/gRPC, `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    Grpc,
}

impl Protocol {
    /// Its name in reports: `http` or `grpc`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// `skein-bench loadgen`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The collector's OTLP endpoint (HTTP: `/v1/traces` is appended).
    #[arg(long, default_value = "http://127.0.0.1:4318")]
    pub endpoint: String,
    /// The OTLP transport.
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    pub protocol: Protocol,
    /// Target spans per second.
    #[arg(long, conflicts_with = "max", required_unless_present = "max")]
    pub rate: Option<f64>,
    /// Send as fast as the collector accepts, `--concurrency` requests in flight.
    #[arg(long)]
    pub max: bool,
    /// How long to send, e.g. `30s`, `500ms`, `2m`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Spans per request (whole traces, so rounded up to a multiple of
    /// `--spans-per-trace`).
    #[arg(long, default_value_t = 500)]
    pub spans_per_request: usize,
    /// Distinct services.
    #[arg(long, default_value_t = Shape::default().services)]
    pub services: usize,
    /// Most levels in a trace.
    #[arg(long, default_value_t = Shape::default().depth)]
    pub depth: usize,
    /// Most children of a span.
    #[arg(long, default_value_t = Shape::default().fan_out)]
    pub fan_out: usize,
    /// Spans in every trace.
    #[arg(long, default_value_t = Shape::default().spans_per_trace)]
    pub spans_per_trace: usize,
    /// Attributes per span.
    #[arg(long, default_value_t = Shape::default().attributes)]
    pub attributes: usize,
    /// Bytes in every attribute value.
    #[arg(long, default_value_t = Shape::default().attribute_bytes)]
    pub attribute_bytes: usize,
    /// Share of spans in error.
    #[arg(long, default_value_t = Shape::default().error_rate)]
    pub error_rate: f64,
    /// Seed of the synthetic traces.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench/results/loadgen.json")]
    pub out: PathBuf,
}

impl Args {
    /// The run these options ask for.
    pub fn config(&self) -> Config {
        Config {
            endpoint: self.endpoint.clone(),
            protocol: self.protocol,
            rate: if self.max { None } else { self.rate },
            duration: self.duration,
            concurrency: self.concurrency,
            spans_per_request: self.spans_per_request,
            shape: Shape {
                services: self.services,
                depth: self.depth,
                fan_out: self.fan_out,
                spans_per_trace: self.spans_per_trace,
                attributes: self.attributes,
                attribute_bytes: self.attribute_bytes,
                error_rate: self.error_rate,
            },
            seed: self.seed,
            progress: true,
        }
    }
}

/// `30s`, `500ms`, `2m`, `1.5s`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("duration {text:?}: not a number"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("duration {text:?}: unit is not ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("duration {text:?}: {e}"))
}

/// What to send, where, how fast.
#[derive(Debug, Clone)]
pub struct Config {
    /// The collector's OTLP endpoint, e.g. `http://127.0.0.1:4318`.
    pub endpoint: String,
    /// The transport.
    pub protocol: Protocol,
    /// Target spans per second; `None`: as fast as accepted.
    pub rate: Option<f64>,
    /// How long to send.
    pub duration: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Spans per request, rounded up to whole traces.
    pub spans_per_request: usize,
    /// The traces' shape.
    pub shape: Shape,
    /// Seed of the traces.
    pub seed: u64,
    /// Print progress lines on stderr.
    pub progress: bool,
}

impl Config {
    /// Every problem with the configuration, naming the option.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = self.shape.validate().err().unwrap_or_default();
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                problems.push(format!("rate {rate} is not a positive number of spans/s"));
            }
        }
        if self.concurrency == 0 {
            problems.push("concurrency must be at least 1".to_owned());
        }
        if self.spans_per_request == 0 {
            problems.push("spans-per-request must be at least 1".to_owned());
        }
        if self.duration.is_zero() {
            problems.push("duration must be more than 0".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Traces per request: enough whole traces for `spans_per_request`.
    pub fn traces_per_request(&self) -> u64 {
        self.spans_per_request
            .div_ceil(self.shape.spans_per_trace.max(1))
            .max(1) as u64
    }
}

/// When, after the start, a request is due at `rate` spans/s once the
/// spans of every request up to and including it, `spans_through`, have
/// accumulated.
pub fn due_after(spans_through: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(spans_through as f64 / rate)
}

/// Hands out departure times at a fixed rate, in the order asked.
#[derive(Debug)]
struct Pacer {
    start: Instant,
    rate: Option<f64>,
    reserved: Mutex<u64>,
}

impl Pacer {
    /// When a request of `spans` spans may leave (now, with no rate).
    fn reserve(&self, spans: u64) -> Instant {
        let Some(rate) = self.rate else {
            return Instant::now();
        };
        let mut reserved = self.reserved.lock().expect("pacer lock");
        *reserved += spans;
        self.start + due_after(*reserved, rate)
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; `rejected` of its spans were refused one by one
    /// (`partial_success`).
    Accepted {
        /// Spans the collector reported rejected.
        rejected: u64,
    },
    /// Refused as a whole because the collector is overloaded or
    /// unavailable (HTTP 429/503, gRPC `RESOURCE_EXHAUSTED`/`UNAVAILABLE`).
    Refused,
    /// Any other error.
    Failed,
}

/// The outcome of an HTTP status (and, for a success, the rejected spans).
pub fn http_outcome(status: u16, rejected: u64) -> Outcome {
    match status {
        200..=299 => Outcome::Accepted { rejected },
        429 | 503 => Outcome::Refused,
        _ => Outcome::Failed,
    }
}

/// The outcome of a gRPC status code.
pub fn grpc_outcome(code: tonic::Code) -> Outcome {
    match code {
        tonic::Code::Ok => Outcome::Accepted { rejected: 0 },
        tonic::Code::ResourceExhausted | tonic::Code::Unavailable => Outcome::Refused,
        _ => Outcome::Failed,
    }
}

/// A gRPC status code's canonical name.
fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The configuration it ran with.
    pub config: Config,
    /// Requests sent (and answered, or failed).
    pub requests: u64,
    /// Spans sent.
    pub spans_sent: u64,
    /// Spans accepted.
    pub spans_accepted: u64,
    /// Spans of refused requests.
    pub spans_refused: u64,
    /// Spans an accepted request's `partial_success` rejected.
    pub spans_rejected: u64,
    /// Spans of requests that failed otherwise.
    pub spans_failed: u64,
    /// Requests per status: `http 200`, `grpc UNAVAILABLE`, `error: ...`.
    pub statuses: BTreeMap<String, u64>,
    /// From the start to the last answer.
    pub elapsed: Duration,
    /// Latency of every request, sent to answered (none: nothing sent).
    pub latency: Option<Summary>,
}

impl Report {
    /// Accepted spans per second over the run.
    pub fn accepted_per_second(&self) -> f64 {
        per_second(self.spans_accepted, self.elapsed)
    }

    /// Sent spans per second over the run.
    pub fn sent_per_second(&self) -> f64 {
        per_second(self.spans_sent, self.elapsed)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.config;
        let latency = self.latency.map(|l| {
            json!({
                "requests": l.count,
                "p50_ms": ms(l.p50),
                "p99_ms": ms(l.p99),
                "mean_ms": ms(l.mean),
                "max_ms": ms(l.max),
            })
        });
        json!({
            "endpoint": c.endpoint,
            "protocol": c.protocol.name(),
            "target_spans_per_second": c.rate,
            "duration_s": c.duration.as_secs_f64(),
            "concurrency": c.concurrency,
            "spans_per_request": c.traces_per_request() * c.shape.spans_per_trace as u64,
            "shape": {
                "services": c.shape.services,
                "depth": c.shape.depth,
                "fan_out": c.shape.fan_out,
                "spans_per_trace": c.shape.spans_per_trace,
                "attributes": c.shape.attributes,
                "attribute_bytes": c.shape.attribute_bytes,
                "error_rate": c.shape.error_rate,
            },
            "seed": c.seed,
            "requests": self.requests,
            "spans_sent": self.spans_sent,
            "spans_accepted": self.spans_accepted,
            "spans_refused": self.spans_refused,
            "spans_rejected": self.spans_rejected,
            "spans_failed": self.spans_failed,
            "statuses": self.statuses,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "sent_spans_per_second": self.sent_per_second(),
            "accepted_spans_per_second": self.accepted_per_second(),
            "latency": latency,
        })
    }

    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        let c = &self.config;
        let target = c
            .rate
            .map_or_else(|| "max".to_owned(), |r| format!("{r:.0} spans/s"));
        let mut out = format!(
            "loadgen: {} {} target {target}, {} in flight, {} spans/request, {:.1} s\n",
            c.protocol.name(),
            c.endpoint,
            c.concurrency,
            c.traces_per_request() * c.shape.spans_per_trace as u64,
            self.elapsed.as_secs_f64(),
        );
        let rows = [
            ("requests", self.requests),
            ("spans sent", self.spans_sent),
            ("spans accepted", self.spans_accepted),
            ("spans refused", self.spans_refused),
            ("spans rejected", self.spans_rejected),
            ("spans failed", self.spans_failed),
        ];
        for (name, value) in rows {
            out.push_str(&format!("  {name:<22} {value:>12}\n"));
        }
        out.push_str(&format!(
            "  {:<22} {:>12.0}\n  {:<22} {:>12.0}\n",
            "sent spans/s",
            self.sent_per_second(),
            "accepted spans/s",
            self.accepted_per_second()
        ));
        if let Some(l) = self.latency {
            out.push_str(&format!(
                "  {:<22} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
                "request latency",
                ms(l.p50),
                ms(l.p99),
                ms(l.max)
            ));
        }
        for (status, n) in &self.statuses {
            out.push_str(&format!("  {:<22} {n:>12}\n", format!("[{status}]")));
        }
        out
    }
}

fn per_second(n: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        n as f64 / elapsed.as_secs_f64()
    }
}

/// Counters the workers share (for progress and the report).
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    sent: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// What one worker measured.
#[derive(Debug, Default)]
struct Tally {
    statuses: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
}

/// Sends requests with one protocol.
#[derive(Clone)]
enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
    },
    Grpc(TraceServiceClient<tonic::transport::Channel>),
}

impl Sender {
    async fn connect(config: &Config) -> Result<Self> {
        let endpoint = config.endpoint.trim_end_matches('/');
        Ok(match config.protocol {
            Protocol::Http => Sender::Http {
                client: reqwest::Client::new(),
                url: format!("{endpoint}/v1/traces"),
            },
            Protocol::Grpc => Sender::Grpc(
                TraceServiceClient::connect(endpoint.to_owned())
                    .await
                    .with_context(|| format!("connecting to {endpoint} over gRPC"))?,
            ),
        })
    }

    /// Sends `request`; returns its outcome and a status label.
    async fn send(&mut self, request: ExportTraceServiceRequest) -> (Outcome, String) {
        match self {
            Sender::Http { client, url } => {
                let sent = client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(request.encode_to_vec())
                    .send()
                    .await;
                let response = match sent {
                    Ok(r) => r,
                    Err(e) => return (Outcome::Failed, error_label(&e)),
                };
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                let rejected = ExportTraceServiceResponse::decode(body.as_ref())
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
                (http_outcome(status, rejected), format!("http {status}"))
            }
            Sender::Grpc(client) => match client.export(request).await {
                Ok(response) => {
                    let rejected = response
                        .into_inner()
                        .partial_success
                        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
                    (Outcome::Accepted { rejected }, "grpc OK".to_owned())
                }
                Err(status) => (
                    grpc_outcome(status.code()),
                    format!("grpc {}", grpc_code_name(status.code())),
                ),
            },
        }
    }
}

fn error_label(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "error: connect".to_owned()
    } else if e.is_timeout() {
        "error: timeout".to_owned()
    } else {
        "error: transport".to_owned()
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Runs the load `config` describes and reports what it did.
pub async fn run(config: Config) -> Result<Report> {
    if let Err(problems) = config.validate() {
        bail!("loadgen options: {}", problems.join("; "));
    }
    let generator = Generator::shaped(config.seed, config.shape.clone());
    let counters = Arc::new(Counters::default());
    let next_trace = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::with_capacity(config.concurrency);
    for _ in 0..config.concurrency {
        senders.push(Sender::connect(&config).await?);
    }
    let start = Instant::now();
    let deadline = start + config.duration;
    let pacer = Arc::new(Pacer {
        start,
        rate: config.rate,
        reserved: Mutex::new(0),
    });
    let progress = config.progress.then(|| {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(start + PROGRESS_EVERY, PROGRESS_EVERY);
            let mut last = 0;
            loop {
                tick.tick().await;
                let accepted = counters.accepted.load(Ordering::Relaxed);
                eprintln!(
                    "{:>5.1} s: sent {} accepted {} ({:.0}/s now) refused {} rejected {} failed {}",
                    start.elapsed().as_secs_f64(),
                    counters.sent.load(Ordering::Relaxed),
                    accepted,
                    (accepted - last) as f64 / PROGRESS_EVERY.as_secs_f64(),
                    counters.refused.load(Ordering::Relaxed),
                    counters.rejected.load(Ordering::Relaxed),
                    counters.failed.load(Ordering::Relaxed),
                );
                last = accepted;
            }
        })
    });
    let traces_per_request = config.traces_per_request();
    let mut workers = Vec::with_capacity(config.concurrency);
    for mut sender in senders {
        let (generator, counters, next_trace, pacer) = (
            generator.clone(),
            counters.clone(),
            next_trace.clone(),
            pacer.clone(),
        );
        let paced = config.rate.is_some();
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let first = next_trace.fetch_add(traces_per_request, Ordering::Relaxed);
                let start_nano = now_unix_nano();
                let mut request = ExportTraceServiceRequest::default();
                for index in first..first + traces_per_request {
                    request
                        .resource_spans
                        .extend(generator.trace(index, start_nano).resource_spans);
                }
                let spans: u64 = request
                    .resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len() as u64)
                    .sum();
                let due = pacer.reserve(spans);
                if due > deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let sent_at = Instant::now();
                counters.requests.fetch_add(1, Ordering::Relaxed);
                counters.sent.fetch_add(spans, Ordering::Relaxed);
                let (outcome, label) = sender.send(request).await;
                tally.latencies.push(sent_at.elapsed());
                *tally.statuses.entry(label).or_default() += 1;
                match outcome {
                    Outcome::Accepted { rejected } => {
                        let rejected = rejected.min(spans);
                        counters
                            .accepted
                            .fetch_add(spans - rejected, Ordering::Relaxed);
                        counters.rejected.fetch_add(rejected, Ordering::Relaxed);
                    }
                    Outcome::Refused | Outcome::Failed => {
                        let counter = if outcome == Outcome::Refused {
                            &counters.refused
                        } else {
                            &counters.failed
                        };
                        counter.fetch_add(spans, Ordering::Relaxed);
                        if !paced {
                            tokio::time::sleep(BACKOFF).await;
                        }
                    }
                }
            }
            tally
        }));
    }
    let mut statuses = BTreeMap::new();
    let mut latencies = Vec::new();
    for worker in workers {
        let tally = worker.await.context("a loadgen worker panicked")?;
        for (status, n) in tally.statuses {
            *statuses.entry(status).or_default() += n;
        }
        latencies.extend(tally.latencies);
    }
    let elapsed = start.elapsed();
    if let Some(progress) = progress {
        progress.abort();
    }
    let c = &counters;
    Ok(Report {
        requests: c.requests.load(Ordering::Relaxed),
        spans_sent: c.sent.load(Ordering::Relaxed),
        spans_accepted: c.accepted.load(Ordering::Relaxed),
        spans_refused: c.refused.load(Ordering::Relaxed),
        spans_rejected: c.rejected.load(Ordering::Relaxed),
        spans_failed: c.failed.load(Ordering::Relaxed),
        statuses,
        elapsed,
        latency: (!latencies.is_empty()).then(|| Summary::of(&latencies)),
        config,
    })
}

/// `skein-bench loadgen`: runs, prints the table, writes the JSON.
pub async fn main(args: Args) -> Result<()> {
    let report = run(args.config()).await?;
    print!("{}", report.table());
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&report.to_json())?;
    std::fs::write(&args.out, json + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("report written to {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_due_when_their_spans_have_accumulated() {
        assert_eq!(due_after(0, 1000.0), Duration::ZERO);
        assert_eq!(due_after(500, 1000.0), Duration::from_millis(500));
        assert_eq!(due_after(3000, 2000.0), Duration::from_millis(1500));
        // 10 s at 2,000 spans/s with 510-span requests: 39 requests fit.
        let fit = (1..)
            .take_while(|k| due_after(k * 510, 2000.0) <= Duration::from_secs(10))
            .count();
        assert_eq!(fit, 39);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_hands_out_times_at_the_rate_in_order() {
        let start = Instant::now();
        let pacer = Pacer {
            start,
            rate: Some(100.0),
            reserved: Mutex::new(0),
        };
        assert_eq!(pacer.reserve(50), start + Duration::from_millis(500));
        assert_eq!(pacer.reserve(50), start + Duration::from_secs(1));
        assert_eq!(pacer.reserve(10), start + Duration::from_millis(1100));
        let unpaced = Pacer {
            start,
            rate: None,
            reserved: Mutex::new(0),
        };
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(unpaced.reserve(1_000_000), start + Duration::from_secs(3));
    }

    #[test]
    fn overload_is_refused_and_other_errors_fail() {
        assert_eq!(http_outcome(200, 3), Outcome::Accepted { rejected: 3 });
        assert_eq!(http_outcome(429, 0), Outcome::Refused);
        assert_eq!(http_outcome(503, 0), Outcome::Refused);
        assert_eq!(http_outcome(400, 0), Outcome::Failed);
        assert_eq!(http_outcome(500, 0), Outcome::Failed);
        assert_eq!(
            grpc_outcome(tonic::Code::Ok),
            Outcome::Accepted { rejected: 0 }
        );
        assert_eq!(grpc_outcome(tonic::Code::Unavailable), Outcome::Refused);
        assert_eq!(
            grpc_outcome(tonic::Code::ResourceExhausted),
            Outcome::Refused
        );
        assert_eq!(grpc_outcome(tonic::Code::InvalidArgument), Outcome::Failed);
        assert_eq!(
            grpc_code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn the_cli_defaults_and_requests_of_whole_traces() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let config = Cli::parse_from(["loadgen", "--max"]).args.config();
        assert_eq!(config.rate, None);
        assert_eq!(config.shape, Shape::default());
        assert_eq!(config.duration, Duration::from_secs(30));
        assert_eq!(
            config.traces_per_request(),
            17,
            "510 spans of 30-span traces"
        );
        assert_eq!(config.validate(), Ok(()));
        let config = Cli::parse_from(["loadgen", "--rate", "2000", "--protocol", "grpc"])
            .args
            .config();
        assert_eq!(
            (config.rate, config.protocol),
            (Some(2000.0), Protocol::Grpc)
        );
        assert!(Cli::try_parse_from(["loadgen"]).is_err(), "a rate or --max");
        assert!(Cli::try_parse_from(["loadgen", "--max", "--rate", "1"]).is_err());
        let bad = Config {
            concurrency: 0,
            rate: Some(0.0),
            ..config
        };
        assert_eq!(bad.validate().unwrap_err().len(), 2);
    }
}
