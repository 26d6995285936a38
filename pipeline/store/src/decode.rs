//! From a message of the spans topic to the rows it stores.
//!
//! In: a message's value and a way to read its headers (whatever the Kafka
//! client). Out: one [`SpanRow`] per span, enriched as `ingester.enrichment`
//! says, or why the message does not decode (the ingester then sends it to
//! the dead-letter topic). Shared by the ingester's workers, its replay and
//! the aggregator, so all of them see the same rows (only
//! `ingested_unix_nano` differs between two decodings).

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::trace::v1::TracesData;
use skein_model::{flat, wire};

use crate::SpanRow;

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
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
    fn tenant<'a>(&self, header: &impl Fn(&str) -> Option<&'a [u8]>) -> String {
        let named = (!self.config.tenant_header.is_empty())
            .then(|| header(&self.config.tenant_header))
            .flatten()
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .filter(|t| !t.is_empty());
        named.unwrap_or_else(|| self.config.default_tenant.clone())
    }

    /// The rows of the message whose value is `payload` and whose header
    /// `key` is `header(key)`; `Err` says why it does not decode.
    pub fn rows<'a>(
        &self,
        payload: &[u8],
        header: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Result<Vec<SpanRow>, skein_model::Error> {
        self.decode(payload, header, flat::flatten)
    }

    /// [`rows`](Self::rows) without attributes or the encoded span: what a
    /// reader of the trace's shape needs (IDs, times, service, kind, error,
    /// peer service), at a fraction of the cost.
    pub fn outline_rows<'a>(
        &self,
        payload: &[u8],
        header: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Result<Vec<SpanRow>, skein_model::Error> {
        self.decode(payload, header, flat::outline)
    }

    fn decode<'a>(
        &self,
        payload: &[u8],
        header: impl Fn(&str) -> Option<&'a [u8]>,
        flatten: fn(&TracesData) -> Vec<flat::FlatSpan>,
    ) -> Result<Vec<SpanRow>, skein_model::Error> {
        let mut data = wire::decode_value(payload, header(wire::ENCODING_HEADER))?;
        let now = now_unix_nano();
        let received = header(wire::RECEIVED_HEADER)
            .and_then(wire::decode_received)
            .unwrap_or(now);
        let tenant = self.tenant(&header);
        let facts = self.enricher.enrich(&mut data);
        Ok(flatten(&data)
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
