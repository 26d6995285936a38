//! From a Kafka message of the spans topic to the rows it stores.
//!
//! In: any message of the spans topic (`rdkafka::Message`). Out: one
//! [`SpanRow`] per span, or why the message does not decode (it then goes
//! to the dead-letter topic). Shared by the live workers and replay, so a
//! replayed message stores exactly the rows the live path stored.

use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::message::Headers;
use skein_model::{flat, wire};
use skein_store::SpanRow;

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// The value of header `key`, if the message has it.
pub fn header<'a, M: rdkafka::Message>(message: &'a M, key: &str) -> Option<&'a [u8]> {
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == key).and_then(|h| h.value)
}

/// The rows of one message; `Err` says why it does not decode.
pub fn rows<M: rdkafka::Message>(message: &M) -> Result<Vec<SpanRow>, skein_model::Error> {
    let data = wire::decode_value(
        message.payload().unwrap_or_default(),
        header(message, wire::ENCODING_HEADER),
    )?;
    let received = header(message, wire::RECEIVED_HEADER)
        .and_then(wire::decode_received)
        .unwrap_or_else(now_unix_nano);
    Ok(flat::flatten(&data)
        .into_iter()
        .map(|span| SpanRow::new(span, received))
        .collect())
}
