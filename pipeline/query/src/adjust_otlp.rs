//! Jaeger's adjusters for traces answered in OTLP (api_v3).
//!
//! In: a trace as the reader returns it (one span per `ResourceSpans`).
//! Out: the same spans, each shifted as Jaeger's clock-skew adjuster says
//! and with its warnings in the `@jaeger@warnings` attribute, as Jaeger v2
//! carries them in OTLP; plus a warning on the first span when the trace was
//! cut at `query.max_spans_per_trace`.
//!
//! Guarantees: the adjuster is the one the legacy API runs
//! ([`skein_model::adjust::clock_skew`]), run on the Jaeger rendering of the
//! same spans, so both APIs shift a span alike; exact copies were already
//! removed by the reader and spans come ordered by start.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use skein_model::jaeger::{self, WARNINGS_ATTRIBUTE};

fn spans_mut(spans: &mut [ResourceSpans]) -> impl Iterator<Item = &mut Span> {
    spans
        .iter_mut()
        .flat_map(|rs| &mut rs.scope_spans)
        .flat_map(|ss| &mut ss.spans)
}

/// Appends `more` to the span's `@jaeger@warnings` list.
fn add_warnings(span: &mut Span, more: Vec<String>) {
    if more.is_empty() {
        return;
    }
    let text = |s: String| AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    };
    let at = span
        .attributes
        .iter()
        .position(|kv| kv.key == WARNINGS_ATTRIBUTE);
    let list = match at {
        Some(at) => &mut span.attributes[at],
        None => {
            span.attributes.push(KeyValue {
                key: WARNINGS_ATTRIBUTE.to_owned(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue::default())),
                }),
                ..Default::default()
            });
            span.attributes.last_mut().expect("just pushed")
        }
    };
    if let Some(AnyValue {
        value: Some(any_value::Value::ArrayValue(array)),
    }) = list.value.as_mut()
    {
        array.values.extend(more.into_iter().map(text));
    } else {
        list.value = Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: more.into_iter().map(text).collect(),
            })),
        });
    }
}

/// Adjusts one trace in place (see the module's doc).
pub(crate) fn adjust(
    spans: &mut [ResourceSpans],
    options: &skein_model::adjust::Options,
    truncated_at: Option<usize>,
) {
    let mut trace = jaeger::trace_from_otlp(spans);
    let before: Vec<(u64, usize)> = trace
        .spans
        .iter()
        .map(|s| (s.start_time, s.warnings.as_ref().map_or(0, Vec::len)))
        .collect();
    skein_model::adjust::clock_skew(&mut trace, options.max_clock_skew_adjust);
    // trace_from_otlp keeps the spans' order: the i-th Jaeger span is the
    // i-th OTLP span.
    for ((span, adjusted), (start, had)) in spans_mut(spans).zip(&trace.spans).zip(before) {
        let shift_ns = (i128::from(adjusted.start_time) - i128::from(start)) * 1_000;
        if shift_ns != 0 {
            let shift = |t: &mut u64| {
                *t = u64::try_from(i128::from(*t) + shift_ns).unwrap_or(*t);
            };
            shift(&mut span.start_time_unix_nano);
            shift(&mut span.end_time_unix_nano);
            for event in &mut span.events {
                shift(&mut event.time_unix_nano);
            }
        }
        let new: Vec<String> = adjusted
            .warnings
            .iter()
            .flatten()
            .skip(had)
            .cloned()
            .collect();
        add_warnings(span, new);
    }
    if let Some(max) = truncated_at {
        if let Some(first) = spans_mut(spans).next() {
            add_warnings(
                first,
                vec![format!(
                    "trace has more than {max} spans (query.max_spans_per_trace); only the earliest are shown"
                )],
            );
        }
    }
}
