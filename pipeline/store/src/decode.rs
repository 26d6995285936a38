//! From a message of the spans topic to the rows it stores.
//!
//! In: a message's value and a way to read its headers (whatever the Kafka
//! client). Out: one row per span, enriched as `ingester.enrichment`
//! says, as [`SpanRow`]s or encoded for the INSERT ([`EncodedRows`], what
//! the ingester writes), or why the message does not decode (the ingester then sends it to
//! the dead-letter topic). Shared by the ingester's workers, its replay and
//! the aggregator, so all of them see the same rows (only
//! `ingested_unix_nano` differs between two decodings).

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::trace::v1::TracesData;
use skein_model::{flat, flat_raw, wire};

use crate::rowbinary::EncodedRows;
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

    /// What a message's headers say of all its rows; `Err` for a value
    /// encoded in a way skein does not read.
    fn stamp<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Result<Stamp, skein_model::Error> {
        wire::check_encoding(header(wire::ENCODING_HEADER))?;
        let now = now_unix_nano();
        let received = header(wire::RECEIVED_HEADER)
            .and_then(wire::decode_received)
            .unwrap_or(now);
        // The tenant header, else the default.
        let named = (!self.config.tenant_header.is_empty())
            .then(|| header(&self.config.tenant_header))
            .flatten()
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .filter(|t| !t.is_empty());
        Ok(Stamp {
            tenant: named.unwrap_or_else(|| self.config.default_tenant.clone()),
            received,
            now,
        })
    }

    /// The rows of the message whose value is `payload` and whose header
    /// `key` is `header(key)`, appended to `out`; `Err` says why it does not
    /// decode (and nothing is appended).
    ///
    /// A message encoded as prost encodes (what the collector and the
    /// OpenTelemetry SDKs write) whose names enrichment keeps is read in
    /// place ([`flat_raw`]) and its rows written column by column; any
    /// other is decoded into [`SpanRow`]s first. Both give the same bytes.
    pub fn encode<'a>(
        &self,
        payload: &[u8],
        header: impl Fn(&str) -> Option<&'a [u8]>,
        out: &mut EncodedRows,
    ) -> Result<(), skein_model::Error> {
        let stamp = self.stamp(header)?;
        let mark = out.mark();
        if self.encode_in_place(payload, &stamp, out).is_some() {
            return Ok(());
        }
        out.truncate(mark);
        for row in self.decode(payload, &stamp, flat::flatten)? {
            out.push(&row);
        }
        Ok(())
    }

    /// [`encode`](Self::encode)'s rows, as [`SpanRow`]s.
    pub fn rows<'a>(
        &self,
        payload: &[u8],
        header: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Result<Vec<SpanRow>, skein_model::Error> {
        let mut out = EncodedRows::default();
        self.encode(payload, header, &mut out)?;
        Ok(out.to_rows().expect("rows encoded here read back"))
    }

    /// Writes the rows of a message read in place; `None` when it is not
    /// encoded as prost encodes, or when enrichment would change more than
    /// it can there (a name, a blank `peer.service`), and then `out` may
    /// hold some of its rows.
    fn encode_in_place(&self, payload: &[u8], stamp: &Stamp, out: &mut EncodedRows) -> Option<()> {
        let t = flat_raw::read(payload)?;
        let mut services = t.resources.iter().filter_map(|r| r.service_name);
        if !services.all(|name| self.enricher.keeps_name(name, true)) {
            return None;
        }
        // Room reused from row to row: a value's text.
        let mut text = String::new();
        for span in &t.spans {
            if !self.enricher.keeps_name(span.name, false) {
                return None;
            }
            let own = &t.attributes[span.attributes.clone()];
            let (facts, add) = self.enricher.span_facts(span.kind, span.status_code, own)?;
            let scope = &t.scopes[span.scope];
            let resource = &t.resources[scope.resource];
            // The span's own attributes, the added, then the resource's,
            // the scope's, the events' and links': written as slices, keys
            // then values (walking one chained iterator twice cost more).
            let around = [
                &t.attributes[resource.attributes.clone()],
                &t.attributes[scope.attributes.clone()],
                &t.attributes[span.item_attributes.clone()],
            ];
            let added = add.then_some((crate::enrich::PEER_SERVICE, facts.peer_service.as_str()));
            let count =
                own.len() + usize::from(add) + around.iter().map(|r| r.len()).sum::<usize>();
            // The columns, in SpanRow's order.
            out.string(stamp.tenant.as_bytes());
            out.hex(span.trace_id);
            out.hex(span.span_id);
            out.hex(span.parent_span_id);
            out.u64(span.start_unix_nano);
            out.u64(span.end_unix_nano.saturating_sub(span.start_unix_nano));
            out.string(
                resource
                    .service_name
                    .unwrap_or(flat::UNKNOWN_SERVICE)
                    .as_bytes(),
            );
            out.string(span.name.as_bytes());
            out.string(flat::kind_name(span.kind).as_bytes());
            out.i32(span.status_code);
            out.u8(u8::from(facts.error));
            out.string(facts.peer_service.as_bytes());
            out.len(count);
            for a in own {
                out.string(a.key.as_bytes());
            }
            if let Some((key, _)) = added {
                out.string(key.as_bytes());
            }
            for a in around.into_iter().flatten() {
                out.string(a.key.as_bytes());
            }
            out.len(count);
            let mut value = |value: &flat_raw::Value<'_>| match value {
                flat_raw::Value::Str(s) => out.string(s.as_bytes()),
                other => out.text_with(&mut text, |t| other.write_text(t)),
            };
            own.iter().for_each(|a| value(&a.value));
            if let Some((_, v)) = added {
                value(&flat_raw::Value::Str(v));
            }
            around.into_iter().flatten().for_each(|a| value(&a.value));
            let one = flat_raw::OneSpan::new(&t, span, added);
            out.string_in_place(one.encoded_len(), |bytes| one.write(bytes));
            out.u64(stamp.received);
            out.u64(stamp.now);
            out.end_row();
        }
        Some(())
    }

    /// [`rows`](Self::rows) without attributes or the encoded span: what a
    /// reader of the trace's shape needs (IDs, times, service, kind, error,
    /// peer service), at a fraction of the cost.
    pub fn outline_rows<'a>(
        &self,
        payload: &[u8],
        header: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Result<Vec<SpanRow>, skein_model::Error> {
        self.decode(payload, &self.stamp(header)?, flat::outline)
    }

    fn decode(
        &self,
        payload: &[u8],
        stamp: &Stamp,
        flatten: fn(&TracesData) -> Vec<flat::FlatSpan>,
    ) -> Result<Vec<SpanRow>, skein_model::Error> {
        // The encoding header was checked by `stamp`: this is OTLP protobuf.
        let mut data = wire::decode_value(payload, None)?;
        let facts = self.enricher.enrich(&mut data);
        Ok(flatten(&data)
            .into_iter()
            .zip(facts)
            .map(|(span, facts)| {
                let mut row = SpanRow::new(span, stamp.received);
                row.tenant.clone_from(&stamp.tenant);
                row.error = u8::from(facts.error);
                row.peer_service = facts.peer_service;
                row.ingested_unix_nano = stamp.now;
                row
            })
            .collect())
    }
}

/// What a message's headers and the time of decoding give each of its
/// rows.
struct Stamp {
    tenant: String,
    received: u64,
    now: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{
        any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;
    use skein_model::otlp::key_value as kv;

    fn s(key: &str, value: &str) -> KeyValue {
        kv(key, Value::StringValue(value.into()))
    }

    fn span(id: u8, name: &str, kind: i32, status: i32, attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![7; 16],
            span_id: vec![id; 8],
            parent_span_id: if id > 1 { vec![1; 8] } else { vec![] },
            name: name.into(),
            kind,
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(id),
            end_time_unix_nano: 1_700_000_000_000_500_000,
            attributes,
            events: vec![Event {
                time_unix_nano: 1_700_000_000_000_100_000,
                name: "retry".into(),
                attributes: vec![kv("attempt", Value::IntValue(2))],
                ..Default::default()
            }],
            links: vec![Link {
                trace_id: vec![8; 16],
                span_id: vec![9; 8],
                attributes: vec![kv("sampled", Value::BoolValue(true))],
                ..Default::default()
            }],
            status: (status != 0).then(|| Status {
                code: status,
                message: String::new(),
            }),
            ..Default::default()
        }
    }

    /// Spans that meet every rule: errors from status, HTTP and gRPC;
    /// an own, an inferred and no peer service; a resource without
    /// `service.name`; nested values; a scope with attributes.
    fn message(service: &str, name: &str, extra: Vec<KeyValue>) -> Vec<u8> {
        let mut client = vec![
            s("db.system", "postgresql"),
            s("server.address", "db:5432"),
            kv("x", Value::DoubleValue(0.25)),
            kv(
                "list",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue("a".into())),
                    }],
                }),
            ),
        ];
        client.extend(extra);
        TracesData {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![s("service.name", service), s("host.name", "h1")],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "lib".into(),
                            version: "2".into(),
                            attributes: vec![s("scope.k", "v")],
                            ..Default::default()
                        }),
                        spans: vec![
                            span(
                                1,
                                "GET /",
                                2,
                                0,
                                vec![kv("http.response.status_code", Value::IntValue(503))],
                            ),
                            span(2, name, 3, 0, client),
                            span(
                                3,
                                "rpc",
                                3,
                                1,
                                vec![s("rpc.grpc.status_code", "UNAVAILABLE")],
                            ),
                            span(4, "send", 4, 2, vec![s("peer.service", "queue")]),
                        ],
                        schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                    }],
                    schema_url: String::new(),
                },
                ResourceSpans {
                    resource: None,
                    scope_spans: vec![ScopeSpans {
                        scope: None,
                        spans: vec![span(5, "orphan", 0, 0, vec![])],
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                },
            ],
        }
        .encode_to_vec()
    }

    fn headers(key: &str) -> Option<&'static [u8]> {
        match key {
            wire::RECEIVED_HEADER => Some(b"1700000000000000001"),
            "skein-tenant" => Some(b"acme"),
            _ => None,
        }
    }

    /// The rows of `payload` both ways (ingest times zeroed), and whether
    /// it was read in place.
    fn both(decoder: &Decoder, payload: &[u8]) -> (Vec<SpanRow>, Vec<SpanRow>, bool) {
        let zero = |mut rows: Vec<SpanRow>| {
            for row in &mut rows {
                row.ingested_unix_nano = 0;
            }
            rows
        };
        let stamp = decoder.stamp(headers).unwrap();
        let in_place = decoder
            .encode_in_place(payload, &stamp, &mut EncodedRows::default())
            .is_some();
        let rows = zero(decoder.rows(payload, headers).unwrap());
        let decoded = zero(decoder.decode(payload, &stamp, flat::flatten).unwrap());
        (rows, decoded, in_place)
    }

    #[test]
    fn rows_read_in_place_are_the_decoded_rows() {
        let decoder = Decoder::new(&skein_config::Enrichment::default());
        let (rows, decoded, in_place) = both(&decoder, &message("shop", "query", vec![]));
        assert!(in_place);
        assert_eq!(rows, decoded);
        assert_eq!(rows.len(), 5);
        let errors: Vec<u8> = rows.iter().map(|r| r.error).collect();
        assert_eq!(errors, [1, 0, 0, 1, 0]);
        let peers: Vec<&str> = rows.iter().map(|r| r.peer_service.as_str()).collect();
        assert_eq!(peers, ["", "postgresql", "", "queue", ""]);
        assert_eq!(rows[1].attribute_keys.get(4), Some("peer.service"));
        assert_eq!(rows[4].service_name, flat::UNKNOWN_SERVICE);
        assert!(rows.iter().all(|r| r.tenant == "acme"));
    }

    #[test]
    fn what_cannot_be_read_in_place_is_decoded_to_the_same_rows() {
        let default = Decoder::new(&skein_config::Enrichment::default());
        let lowercase = Decoder::new(&skein_config::Enrichment {
            lowercase_services: true,
            ..Default::default()
        });
        let mut unknown_field = message("shop", "query", vec![]);
        unknown_field.extend_from_slice(&[0x10, 0x01]);
        let cases = [
            (&default, message("shop", "  query  all ", vec![])),
            (
                &default,
                message("shop", "query", vec![s("peer.service", " ")]),
            ),
            (&lowercase, message("Shop", "query", vec![])),
            (&default, message(&"s".repeat(300), "query", vec![])),
            (&default, unknown_field),
        ];
        for (i, (decoder, payload)) in cases.iter().enumerate() {
            let (rows, decoded, in_place) = both(decoder, payload);
            assert!(!in_place, "case {i}");
            assert_eq!(rows, decoded, "case {i}");
            assert_eq!(rows.len(), 5, "case {i}");
        }
        // And what can, is: lowercase services already lowercase.
        let (rows, decoded, in_place) = both(&lowercase, &message("shop", "query", vec![]));
        assert!(in_place);
        assert_eq!(rows, decoded);
    }

    #[test]
    fn an_unknown_encoding_or_a_broken_message_is_an_error() {
        let decoder = Decoder::new(&skein_config::Enrichment::default());
        let err = decoder
            .rows(&message("shop", "q", vec![]), |k| {
                (k == wire::ENCODING_HEADER).then_some(b"avro/1".as_slice())
            })
            .unwrap_err();
        assert!(err.to_string().contains("avro/1"), "{err}");
        assert!(decoder.rows(&[0x0a, 0x05, 0x01], |_| None).is_err());
    }
}
