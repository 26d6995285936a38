//! The Kafka message format of the spans topic (see `schemas/README.md`).
//!
//! In: a [`TraceGroup`](crate::otlp::TraceGroup). Out: a message key, value
//! and headers, and back.
//!
//! Guarantees: the key is the trace ID, so every span of a trace lands on
//! one partition; the value is a plain OTLP `TracesData` protobuf, so any
//! OpenTelemetry Kafka receiver reads the topic as it is.

use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;

use crate::{Error, Result};

/// Header naming the value's encoding and its version.
pub const ENCODING_HEADER: &str = "skein-encoding";
/// The only encoding written today: OTLP `TracesData` protobuf, version 1.
pub const ENCODING_OTLP_PROTO_V1: &str = "otlp_proto/1";
/// Header holding the time the collector received the spans, as decimal
/// nanoseconds since the Unix epoch.
pub const RECEIVED_HEADER: &str = "skein-received-unix-nano";

/// The message key of a trace: its ID as 32 lowercase hex characters.
pub fn key(trace_id: &[u8; 16]) -> String {
    hex::encode(trace_id)
}

/// The headers of a message the collector publishes: the encoding, and
/// `received`, the time it received the spans as [`RECEIVED_HEADER`]
/// text (decimal nanoseconds since the Unix epoch).
pub fn headers(received: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (ENCODING_HEADER, ENCODING_OTLP_PROTO_V1.as_bytes().to_vec()),
        (RECEIVED_HEADER, received.to_vec()),
    ]
}

/// The message value of a group of spans.
pub fn encode_value(data: &TracesData) -> Vec<u8> {
    data.encode_to_vec()
}

/// Decodes a message value; `encoding` is the header's value, if any (a
/// message without the header is taken to be OTLP protobuf, as the
/// OpenTelemetry Kafka exporter writes it).
pub fn decode_value(value: &[u8], encoding: Option<&[u8]>) -> Result<TracesData> {
    check_encoding(encoding)?;
    Ok(TracesData::decode(value)?)
}

/// Whether a message whose encoding header is `encoding` holds an OTLP
/// `TracesData` protobuf (see [`decode_value`]); `Err` names the encoding.
pub fn check_encoding(encoding: Option<&[u8]>) -> Result<()> {
    match encoding {
        None => Ok(()),
        Some(e) if e == ENCODING_OTLP_PROTO_V1.as_bytes() => Ok(()),
        Some(other) => Err(Error::Wire(format!(
            "unknown encoding {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// Parses the received-time header.
pub fn decode_received(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_lowercase_hex_of_the_trace_id() {
        let mut id = [0u8; 16];
        id[15] = 0x1f;
        assert_eq!(key(&id), "0000000000000000000000000000001f");
    }

    #[test]
    fn headers_name_the_encoding_and_the_receipt_time() {
        let h = headers(b"1700000000000000001");
        assert_eq!(
            h,
            vec![
                (ENCODING_HEADER, b"otlp_proto/1".to_vec()),
                (RECEIVED_HEADER, b"1700000000000000001".to_vec()),
            ]
        );
        check_encoding(Some(&h[0].1)).unwrap();
    }

    #[test]
    fn unknown_encoding_is_a_permanent_error() {
        let err = decode_value(b"", Some(b"avro/9")).unwrap_err();
        assert!(err.to_string().contains("avro/9"));
        assert!(!err.is_retryable());
    }

    #[test]
    fn value_round_trips() {
        let data = TracesData::default();
        let back = decode_value(
            &encode_value(&data),
            Some(ENCODING_OTLP_PROTO_V1.as_bytes()),
        );
        assert_eq!(back.unwrap(), data);
    }
}
