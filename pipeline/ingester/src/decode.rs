//! From a Kafka message of the spans topic to the rows it stores.
//!
//! In: any message of the spans topic (`rdkafka::Message`). Out: one
//! [`SpanRow`] per span, enriched as `ingester.enrichment` says, or why the
//! message does not decode (it then goes to the dead-letter topic). Shared
//! by the live workers and replay, so a replayed message stores the rows the
//! live path stored (only `ingested_unix_nano` differs).

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

/// Turns messages into enriched rows.
#[derive(Debug, Clone)]
pub struct Decoder {
    config: skein_config::Enrichment,
    enricher: crate::enrich::Enricher,
}

impl Decoder {
    /// A decoder that enriches as `config` says.
    pub fn new(config: &skein_config::Enrichment) -> Self {
        Self {
            config: config.clone(),
            enricher: crate::enrich::Enricher::new(config),
        }
    }

    /// The tenant of a message: its tenant header, else the default.
    fn tenant<M: rdkafka::Message>(&self, message: &M) -> String {
        let named = (!self.config.tenant_header.is_empty())
            .then(|| header(message, &self.config.tenant_header))
            .flatten()
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .filter(|t| !t.is_empty());
        named.unwrap_or_else(|| self.config.default_tenant.clone())
    }

    /// The rows of one message; `Err` says why it does not decode.
    pub fn rows<M: rdkafka::Message>(
        &self,
        message: &M,
    ) -> Result<Vec<SpanRow>, skein_model::Error> {
        let mut data = wire::decode_value(
            message.payload().unwrap_or_default(),
            header(message, wire::ENCODING_HEADER),
        )?;
        let now = now_unix_nano();
        let received = header(message, wire::RECEIVED_HEADER)
            .and_then(wire::decode_received)
            .unwrap_or(now);
        let tenant = self.tenant(message);
        let facts = self.enricher.enrich(&mut data);
        Ok(flat::flatten(&data)
            .into_iter()
            .zip(facts)
            .map(|(span, facts)| {
                let mut row = SpanRow::new(span, received);
                row.tenant.clone_from(&tenant);
                row.error = u8::from(facts.error);
                row.peer_service = facts.peer_service;
                row.ingested_unix_nano = now;
                row
            })
            .collect())
    }
}
