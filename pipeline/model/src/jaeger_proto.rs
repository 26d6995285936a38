//! Jaeger's protobuf API (`jaeger.api_v2`): the span model, the collector's
//! `PostSpans` and the `SamplingManager`, generated from
//! `schemas/proto/jaeger/api_v2/`.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("jaeger.api_v2");
