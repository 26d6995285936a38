//! The collector's own work on a request, alone: `skein-bench split`.
//!
//! In: a request shape and a path. Out: nanoseconds per span of splitting
//! synthetic OTLP export requests by trace into the messages the
//! collector publishes, by decoding them with prost (`--path decode`: the
//! path of JSON, Jaeger and Zipkin) or as bytes (`--path raw`: OTLP
//! protobuf). No network and no broker: run it under
//! `valgrind --tool=callgrind` for instruction counts that repeat exactly
//! (`--path none` measures building the requests alone, to subtract).
//!
//! Guarantees: both paths publish the same spans (checked on the first
//! request before measuring).

use std::time::Instant;

use anyhow::{ensure, Result};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use skein_model::otlp::{self, Limits, Malformed};
use skein_model::otlp_raw::{self, EncodedSplit};

use crate::synth::{Generator, Shape};

/// Which way requests are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitPath {
    /// prost decode, split, encode each trace.
    Decode,
    /// The bytes as they are ([`otlp_raw::split_encoded`]).
    Raw,
    /// Build the requests only.
    None,
}

/// `skein-bench split` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The path measured.
    #[arg(long, value_enum, default_value_t = SplitPath::Raw)]
    pub path: SplitPath,
    /// Requests split.
    #[arg(long, default_value_t = 200)]
    pub requests: u64,
    /// Spans per request (whole traces of 30 spans).
    #[arg(long, default_value_t = 510)]
    pub spans_per_request: u64,
    /// Attributes per span.
    #[arg(long, default_value_t = 10)]
    pub attributes: usize,
}

fn split(path: SplitPath, body: &[u8], limits: &Limits) -> Result<EncodedSplit> {
    Ok(match path {
        SplitPath::Decode => {
            let request = ExportTraceServiceRequest::decode(body)?;
            otlp::split_by_trace(request.resource_spans, Malformed::default(), limits, 0).into()
        }
        SplitPath::Raw => otlp_raw::split_encoded(body, limits, 0)?,
        SplitPath::None => EncodedSplit::default(),
    })
}

/// Runs it and prints ns per span.
pub fn run(args: &Args) -> Result<()> {
    let shape = Shape {
        attributes: args.attributes,
        ..Shape::default()
    };
    let traces = args
        .spans_per_request
        .div_ceil(shape.spans_per_trace as u64);
    let generator = Generator::shaped(1, shape);
    let limits = Limits {
        max_attributes: 128,
        max_events: 128,
        max_links: 128,
        max_value_bytes: 32 * 1024,
        ..Limits::default()
    };
    let requests: Vec<Vec<u8>> = (0..args.requests)
        .map(|r| {
            let mut request = ExportTraceServiceRequest::default();
            for t in 0..traces {
                request.resource_spans.extend(
                    generator
                        .trace(r * traces + t, 1_700_000_000_000_000_000)
                        .resource_spans,
                );
            }
            request.encode_to_vec()
        })
        .collect();
    if let Some(first) = requests.first() {
        let a = split(SplitPath::Decode, first, &limits)?;
        let b = split(SplitPath::Raw, first, &limits)?;
        ensure!(
            a.accepted == b.accepted
                && a.traces
                    .iter()
                    .map(|t| &t.value)
                    .eq(b.traces.iter().map(|t| &t.value)),
            "the two paths split the first request differently"
        );
    }
    let started = Instant::now();
    let mut spans = 0;
    for body in &requests {
        spans += split(args.path, body, &limits)?.accepted;
    }
    let elapsed = started.elapsed();
    let total = args.requests * traces * 30;
    println!(
        "{:?}: {} requests, {total} spans, {} accepted, {:.0} ns/span",
        args.path,
        args.requests,
        spans,
        elapsed.as_nanos() as f64 / total.max(1) as f64
    );
    Ok(())
}
