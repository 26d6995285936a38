//! Splitting an encoded OTLP export request by trace without decoding it.
//!
//! In: the protobuf bytes of an `ExportTraceServiceRequest` (OTLP/gRPC or
//! OTLP/HTTP protobuf), the [`Limits`] and the time. Out: an
//! [`EncodedSplit`]: one encoded `TracesData` per trace, ready to publish,
//! with the same accounting as [`split_by_trace`].
//!
//! Decoding a request into owned structs (a `String` or `Vec` for every
//! ID, name, key and value), then encoding each trace again, was most of
//! the collector's CPU. Here spans are copied as the bytes they arrived as:
//! one pass checks the request's upper levels as prost would decode them
//! (wire types of every known field, UTF-8 of every string, nesting), one
//! pass over each span checks it the same way while reading its IDs, times
//! and item counts, and each trace's message is assembled from slices of
//! the request.
//!
//! Guarantees: the messages decode to what [`split_by_trace`] of the
//! decoded request would publish, with the same spans accepted, rejected
//! (by reason) and trimmed. A span the limits would trim (more items than
//! allowed, or longer than the longest value allowed) is decoded, trimmed
//! and encoded on its own; anything the fast path does not handle (groups,
//! deep nesting, a request prost rejects) is handled by decoding the whole
//! request with prost, so errors and edge cases are prost's.

use std::collections::HashMap;
use std::ops::Range;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::otlp::{split_by_trace, validate_fields, Limits, Malformed, RejectReason, Split};
use crate::otlp_schema::{
    event, key_value, link, resource_spans, scope_spans, span, status, traces_data, Card, Spec,
    Type,
};
use crate::Result;

/// One trace's spans from one request, encoded as a `TracesData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedGroup {
    /// The trace ID shared by every span here.
    pub trace_id: [u8; 16],
    /// The `TracesData` protobuf: the message value.
    pub value: Vec<u8>,
    /// How many spans `value` holds.
    pub spans: usize,
}

/// A request split by trace, each trace encoded.
pub type EncodedSplit = Split<EncodedGroup>;

impl From<Split> for EncodedSplit {
    fn from(split: Split) -> Self {
        split.map(|t| EncodedGroup {
            trace_id: t.trace_id,
            value: t.data.encode_to_vec(),
            spans: t.spans,
        })
    }
}

/// Splits the encoded export request `body` by trace; see the module.
pub fn split_encoded(body: &[u8], limits: &Limits, now_unix_nano: u64) -> Result<EncodedSplit> {
    if let Some(split) = fast(body, limits, now_unix_nano) {
        return Ok(split);
    }
    let request = ExportTraceServiceRequest::decode(body)?;
    Ok(split_by_trace(
        request.resource_spans,
        Malformed::default(),
        limits,
        now_unix_nano,
    )
    .into())
}

// ---------------------------------------------------------------------------
// Wire format.

pub(crate) const VARINT: u8 = 0;
pub(crate) const I64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const I32: u8 = 5;

/// One field of a message: its number, wire type, value bytes (`LEN`: the
/// payload; others: the encoded scalar) and the whole field's bytes.
pub(crate) struct Field<'a> {
    pub(crate) number: u32,
    pub(crate) wire: u8,
    pub(crate) value: &'a [u8],
    pub(crate) whole: &'a [u8],
}

#[inline]
pub(crate) fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    if let Some(&b) = buf.get(*pos) {
        if b < 0x80 {
            *pos += 1;
            return Some(u64::from(b));
        }
    }
    let mut out = 0u64;
    for shift in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift == 9 && b > 1 {
            return None;
        }
        out |= u64::from(b & 0x7f) << (7 * shift);
        if b < 0x80 {
            return Some(out);
        }
    }
    None
}

/// The fields of a message, in order; `None` on anything malformed or
/// unhandled (groups).
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<Field<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
    pub(crate) fn of(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn field(&mut self) -> Option<Field<'a>> {
        let start = self.pos;
        let key = varint(self.buf, &mut self.pos)?;
        let number = u32::try_from(key >> 3).ok().filter(|&n| n > 0)?;
        let wire = (key & 7) as u8;
        let value_start;
        match wire {
            VARINT => {
                value_start = self.pos;
                varint(self.buf, &mut self.pos)?;
            }
            I64 => {
                value_start = self.pos;
                self.pos = self.pos.checked_add(8)?;
            }
            I32 => {
                value_start = self.pos;
                self.pos = self.pos.checked_add(4)?;
            }
            LEN => {
                let len = usize::try_from(varint(self.buf, &mut self.pos)?).ok()?;
                value_start = self.pos;
                self.pos = self.pos.checked_add(len)?;
            }
            _ => return None,
        }
        if self.pos > self.buf.len() {
            return None;
        }
        Some(Field {
            number,
            wire,
            value: &self.buf[value_start..self.pos],
            whole: &self.buf[start..self.pos],
        })
    }
}

// ---------------------------------------------------------------------------
// Checking a request as prost decodes it.

/// Deepest nesting checked (prost's limit is 100).
const MAX_DEPTH: usize = 64;

/// Whether prost decodes `buf` as a message of `spec`: every known field
/// of its wire type, every string UTF-8 (unknown fields are skipped, as
/// prost skips them; how often a field appears does not matter to prost).
fn check(buf: &[u8], spec: Spec, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    for field in Fields::of(buf) {
        let Some(field) = field else { return false };
        let Some((ty, _)) = (spec.0)(field.number) else {
            continue;
        };
        let ok = match ty {
            Type::Varint(_) => field.wire == VARINT,
            Type::Fixed64 => field.wire == I64,
            Type::Fixed32 => field.wire == I32,
            Type::Bytes => field.wire == LEN,
            Type::Str | Type::Text => field.wire == LEN && text(field.value).is_some(),
            Type::Msg(inner) => field.wire == LEN && check(field.value, inner, depth + 1),
            // A key and a string, bool, int, double or bytes value, written
            // as prost writes them, decodes; anything else is checked
            // field by field.
            Type::Attribute => {
                field.wire == LEN
                    && (crate::flat_raw::is_plain_attribute(field.value)
                        || check(field.value, Spec(key_value), depth + 1))
            }
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A [`Type::Text`] field's string; `None` when it is not UTF-8.
///
/// Checking strings was 16% of the instructions of reading a message
/// (`skein-bench rows` under callgrind; 4.5% of the draining ingester's
/// CPU under perf): `std::str::from_utf8` walks short strings (keys, IDs,
/// names: most are under 32 bytes) byte by byte, some 120 instructions
/// each. Most are ASCII, which `is_ascii` tells a word at a time, and
/// ASCII is UTF-8; the rest are checked in full.
#[allow(unsafe_code)]
pub(crate) fn text(value: &[u8]) -> Option<&str> {
    if value.is_ascii() {
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(value) })
    } else {
        std::str::from_utf8(value).ok()
    }
}

// ---------------------------------------------------------------------------
// Splitting.

/// What the split needs of one span.
#[derive(Debug, Default, PartialEq)]
struct SpanView<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_span_id: &'a [u8],
    start: u64,
    end: u64,
    attributes: usize,
    events: usize,
    links: usize,
    /// Most attributes of any event or link.
    item_attributes: usize,
}

pub(crate) fn fixed64(value: &[u8]) -> u64 {
    u64::from_le_bytes(value.try_into().unwrap_or_default())
}

fn count(buf: &[u8], number: u32) -> usize {
    Fields::of(buf)
        .flatten()
        .filter(|f| f.number == number)
        .count()
}

/// A `TracesData` as [`check`] checks it with `Spec(traces_data)`, but
/// for its spans, which [`span_view`] checks as it reads them: the spec
/// of a `TracesData`, a `ResourceSpans` and a `ScopeSpans` whose spans
/// are bytes.
fn traces_data_but_spans(n: u32) -> Option<(Type, Card)> {
    match n {
        1 => Some((Type::Msg(Spec(resource_spans_but_spans)), Card::Repeated)),
        _ => traces_data(n),
    }
}

fn resource_spans_but_spans(n: u32) -> Option<(Type, Card)> {
    match n {
        2 => Some((Type::Msg(Spec(scope_spans_but_spans)), Card::Repeated)),
        _ => resource_spans(n),
    }
}

fn scope_spans_but_spans(n: u32) -> Option<(Type, Card)> {
    match n {
        2 => Some((Type::Bytes, Card::Repeated)),
        _ => scope_spans(n),
    }
}

/// How deep a span is in a request, as [`check`] counts it.
const SPAN_DEPTH: usize = 3;

/// A span checked as [`check`] checks it and read as [`view`] reads it,
/// in one pass: `None` when [`check`] refuses it. The fields the SDKs
/// write, each with a one-byte key (two for `flags`) and the wire type of
/// its field, are taken straight from their tags, without `Fields`' key
/// decoding and the spec lookup (that walk, then `view`'s second one,
/// were most of the collector's splitting); for anything else (an
/// unknown field, a wrong wire type, a longer key) the span goes the
/// generic way.
fn span_view(buf: &[u8]) -> Option<SpanView<'_>> {
    match span_view_plain(buf) {
        Some(v) => Some(v),
        None => check(buf, Spec(span), SPAN_DEPTH).then(|| view(buf)),
    }
}

/// [`span_view`] of a span of the fields the SDKs write; `None` for any
/// other span, checked or not.
fn span_view_plain(buf: &[u8]) -> Option<SpanView<'_>> {
    let mut v = SpanView::default();
    let mut pos = 0;
    let deep = SPAN_DEPTH + 1;
    while let Some(&tag) = buf.get(pos) {
        match tag {
            // LEN: IDs, trace state, name, attributes, events, links,
            // status.
            0x0a | 0x12 | 0x1a | 0x22 | 0x2a | 0x4a | 0x5a | 0x6a | 0x7a => {
                let value = crate::flat_raw::len_field(buf, &mut pos, tag)?;
                match tag {
                    0x0a => v.trace_id = value,
                    0x12 => v.span_id = value,
                    0x22 => v.parent_span_id = value,
                    0x1a | 0x2a => {
                        text(value)?;
                    }
                    0x4a => {
                        if !(crate::flat_raw::is_plain_attribute(value)
                            || check(value, Spec(key_value), deep))
                        {
                            return None;
                        }
                        v.attributes += 1;
                    }
                    0x5a | 0x6a => {
                        let (spec, attributes, items) = if tag == 0x5a {
                            (Spec(event), 3, &mut v.events)
                        } else {
                            (Spec(link), 4, &mut v.links)
                        };
                        if !check(value, spec, deep) {
                            return None;
                        }
                        *items += 1;
                        v.item_attributes = v.item_attributes.max(count(value, attributes));
                    }
                    _ => {
                        if !check(value, Spec(status), deep) {
                            return None;
                        }
                    }
                }
            }
            // kind and the dropped counts: varints.
            0x30 | 0x50 | 0x60 | 0x70 => {
                pos += 1;
                varint(buf, &mut pos)?;
            }
            // start and end: fixed64.
            0x39 | 0x41 => {
                let value = fixed64(buf.get(pos + 1..pos + 9)?);
                if tag == 0x39 {
                    v.start = value;
                } else {
                    v.end = value;
                }
                pos += 9;
            }
            // flags: fixed32, its key two bytes.
            0x85 if buf.get(pos + 1) == Some(&0x01) => {
                buf.get(pos + 2..pos + 6)?;
                pos += 6;
            }
            _ => return None,
        }
    }
    Some(v)
}

/// Reads a checked span (bytes fields: the last occurrence wins, as in prost).
fn view(buf: &[u8]) -> SpanView<'_> {
    let mut v = SpanView::default();
    for f in Fields::of(buf).flatten() {
        match f.number {
            1 => v.trace_id = f.value,
            2 => v.span_id = f.value,
            4 => v.parent_span_id = f.value,
            7 => v.start = fixed64(f.value),
            8 => v.end = fixed64(f.value),
            9 => v.attributes += 1,
            11 => {
                v.events += 1;
                v.item_attributes = v.item_attributes.max(count(f.value, 3));
            }
            13 => {
                v.links += 1;
                v.item_attributes = v.item_attributes.max(count(f.value, 4));
            }
            _ => {}
        }
    }
    v
}

impl SpanView<'_> {
    /// [`validate_span`] of the decoded span, on the bytes (no copies).
    fn validate(&self) -> Result<(), RejectReason> {
        validate_fields(
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.start,
            self.end,
        )
    }

    /// Whether the limits leave the span as it is.
    fn within(&self, limits: &Limits, len: usize) -> bool {
        len <= limits.max_value_bytes
            && self.attributes <= limits.max_attributes
            && self.item_attributes <= limits.max_attributes
            && self.events <= limits.max_events
            && self.links <= limits.max_links
    }
}

/// A span to publish: its bytes as received, or trimmed and re-encoded.
enum SpanBytes<'a> {
    Received(&'a [u8]),
    Trimmed(Vec<u8>),
}

impl SpanBytes<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            SpanBytes::Received(b) => b,
            SpanBytes::Trimmed(b) => b,
        }
    }
}

/// The fields of a message other than its repeated field 2, as received:
/// those numbered before it and after it (ranges of [`Parts::fields`]),
/// so that the message is written back in field order, as prost writes it.
#[derive(Default)]
struct Header {
    before: Range<usize>,
    after: Range<usize>,
}

/// A request's pieces, in vectors shared by all its traces, from which
/// each trace's message is assembled. (Each trace had vectors of its own
/// for its resources, scopes and spans, and a copy of each header's, all
/// grown from empty: doing without them saved 470 of the 4,000
/// instructions a span took to split, under callgrind.)
#[derive(Default)]
struct Parts<'a> {
    /// Header fields of every resource and scope.
    fields: Vec<&'a [u8]>,
    /// Each resource's header, by its place in the request.
    resources: Vec<Header>,
    /// Each scope's header, by its place among the request's scopes.
    scopes: Vec<Header>,
    /// The spans kept, in the request's order.
    spans: Vec<Kept<'a>>,
    /// Fields after field 2, while a message is read.
    after: Vec<&'a [u8]>,
}

/// A span kept: its trace's place in the split, its resource's and
/// scope's places in [`Parts`], its bytes.
struct Kept<'a> {
    group: usize,
    resource: usize,
    scope: usize,
    bytes: SpanBytes<'a>,
}

impl<'a> Parts<'a> {
    /// The header of `message` (kept in `fields`), and the payloads of
    /// its field 2 in `repeated` (cleared first), in one pass.
    fn split(&mut self, message: &'a [u8], repeated: &mut Vec<&'a [u8]>) -> Header {
        repeated.clear();
        self.after.clear();
        let start = self.fields.len();
        for f in Fields::of(message).flatten() {
            match f.number {
                1 => self.fields.push(f.whole),
                2 => repeated.push(f.value),
                _ => self.after.push(f.whole),
            }
        }
        let middle = self.fields.len();
        self.fields.append(&mut self.after);
        Header {
            before: start..middle,
            after: middle..self.fields.len(),
        }
    }

    fn fields(&self, range: &Range<usize>) -> &[&'a [u8]] {
        &self.fields[range.clone()]
    }

    fn header_len(&self, h: &Header) -> usize {
        self.fields(&h.before)
            .iter()
            .chain(self.fields(&h.after))
            .map(|f| f.len())
            .sum()
    }

    /// The `TracesData` of one trace's spans (in the request's order):
    /// a `ResourceSpans` for each run of spans from one resource, in it a
    /// `ScopeSpans` for each run from one scope. `lens` is room reused
    /// from trace to trace.
    fn encode(&self, spans: &[&Kept<'a>], lens: &mut Vec<usize>) -> Vec<u8> {
        // The lengths of the runs' messages, in the order they open: a
        // resource's, then each of its scopes'.
        lens.clear();
        let (mut resource_at, mut scope_at, mut total) = (0, 0, 0);
        let mut last: Option<&Kept<'a>> = None;
        for k in spans {
            let new_resource = last.is_none_or(|l| l.resource != k.resource);
            if new_resource || last.is_some_and(|l| l.scope != k.scope) {
                if last.is_some() {
                    lens[resource_at] += len_field(lens[scope_at]);
                    if new_resource {
                        total += len_field(lens[resource_at]);
                    }
                }
                if new_resource {
                    resource_at = lens.len();
                    lens.push(self.header_len(&self.resources[k.resource]));
                }
                scope_at = lens.len();
                lens.push(self.header_len(&self.scopes[k.scope]));
            }
            lens[scope_at] += len_field(k.bytes.bytes().len());
            last = Some(k);
        }
        if last.is_some() {
            lens[resource_at] += len_field(lens[scope_at]);
            total += len_field(lens[resource_at]);
        }
        let mut out = Vec::with_capacity(total);
        let mut lens_iter = lens.iter();
        let mut last: Option<&Kept<'a>> = None;
        let put = |out: &mut Vec<u8>, fields: &[&[u8]]| {
            for f in fields {
                out.extend_from_slice(f);
            }
        };
        for k in spans {
            let new_resource = last.is_none_or(|l| l.resource != k.resource);
            let new_scope = new_resource || last.is_some_and(|l| l.scope != k.scope);
            if new_scope {
                if let Some(l) = last {
                    put(&mut out, self.fields(&self.scopes[l.scope].after));
                    if new_resource {
                        put(&mut out, self.fields(&self.resources[l.resource].after));
                    }
                }
                if new_resource {
                    // TracesData.resource_spans = 1
                    out.push(0x0a);
                    put_varint(&mut out, *lens_iter.next().expect("measured") as u64);
                    put(&mut out, self.fields(&self.resources[k.resource].before));
                }
                // ResourceSpans.scope_spans = 2
                out.push(0x12);
                put_varint(&mut out, *lens_iter.next().expect("measured") as u64);
                put(&mut out, self.fields(&self.scopes[k.scope].before));
            }
            // ScopeSpans.spans = 2
            out.push(0x12);
            put_varint(&mut out, k.bytes.bytes().len() as u64);
            out.extend_from_slice(k.bytes.bytes());
            last = Some(k);
        }
        if let Some(l) = last {
            put(&mut out, self.fields(&self.scopes[l.scope].after));
            put(&mut out, self.fields(&self.resources[l.resource].after));
        }
        debug_assert_eq!(out.len(), total);
        out
    }
}

pub(crate) fn len_varint(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Length of a `LEN` field with a `len`-byte payload and a one-byte key.
pub(crate) fn len_field(len: usize) -> usize {
    1 + len_varint(len as u64) + len
}

/// The split, when the fast path handles the request.
fn fast(body: &[u8], limits: &Limits, now: u64) -> Option<EncodedSplit> {
    // Spans are checked one by one below, as they are read.
    if !check(body, Spec(traces_data_but_spans), 0) {
        return None;
    }
    let mut split = EncodedSplit::default();
    let mut parts = Parts::default();
    // Each trace's ID and span count, by its place in the split.
    let mut groups: Vec<([u8; 16], usize)> = Vec::new();
    // Trace IDs are random bytes, or a client's choice: a seeded hash, not
    // the ID's own bits, but not std's SipHash either (with it, 4,189
    // instructions per span under callgrind; 4,014 with foldhash).
    let mut index: HashMap<[u8; 16], usize, foldhash::fast::RandomState> = HashMap::default();
    let (mut scopes, mut spans) = (Vec::new(), Vec::new());
    let resources = Fields::of(body).flatten().filter(|f| f.number == 1);
    for (r, rs) in resources.enumerate() {
        let header = parts.split(rs.value, &mut scopes);
        parts.resources.push(header);
        for (s, &ss) in scopes.iter().enumerate() {
            let header = parts.split(ss, &mut spans);
            let scope = parts.scopes.len();
            parts.scopes.push(header);
            for (n, &sp) in spans.iter().enumerate() {
                let v = span_view(sp)?;
                let bytes = if v.within(limits, sp.len()) {
                    let checked = v.validate().and_then(|()| limits.check_start(v.start, now));
                    if let Err(reason) = checked {
                        split.reject(reason, n, s, r);
                        continue;
                    }
                    SpanBytes::Received(sp)
                } else {
                    let Ok(mut decoded) = Span::decode(sp) else {
                        return None;
                    };
                    if !split.admit(&mut decoded, limits, now, (n, s, r)) {
                        continue;
                    }
                    SpanBytes::Trimmed(decoded.encode_to_vec())
                };
                let trace_id: [u8; 16] = v.trace_id.try_into().expect("validated");
                let group = *index.entry(trace_id).or_insert_with(|| {
                    groups.push((trace_id, 0));
                    groups.len() - 1
                });
                groups[group].1 += 1;
                parts.spans.push(Kept {
                    group,
                    resource: r,
                    scope,
                    bytes,
                });
                split.accepted += 1;
            }
        }
    }
    // Each trace's spans, in the request's order: placed by a counting
    // sort on the trace.
    let mut starts: Vec<usize> = groups
        .iter()
        .scan(0, |at, &(_, n)| {
            let start = *at;
            *at += n;
            Some(start)
        })
        .collect();
    let mut ordered: Vec<Option<&Kept<'_>>> = vec![None; parts.spans.len()];
    for k in &parts.spans {
        ordered[starts[k.group]] = Some(k);
        starts[k.group] += 1;
    }
    let ordered: Vec<&Kept<'_>> = ordered.into_iter().map(|k| k.expect("placed")).collect();
    let mut lens = Vec::new();
    let mut at = 0;
    split.traces = groups
        .iter()
        .map(|&(trace_id, n)| {
            let value = parts.encode(&ordered[at..at + n], &mut lens);
            at += n;
            EncodedGroup {
                trace_id,
                value,
                spans: n,
            }
        })
        .collect();
    Some(split)
}

/// A message's every truncation, every byte of it replaced by each of
/// `values`, and each of `inserts` put at every field boundary: what the
/// tests give a fast path and the generic walk it stands for, to see
/// them read or refuse alike.
#[cfg(test)]
pub(crate) fn variants(bytes: &[u8], values: &[u8], inserts: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut variants: Vec<Vec<u8>> = (0..=bytes.len()).map(|n| bytes[..n].to_vec()).collect();
    for i in 0..bytes.len() {
        for &b in values {
            let mut v = bytes.to_vec();
            v[i] = b;
            variants.push(v);
        }
    }
    let mut boundaries = vec![0];
    for field in Fields::of(bytes) {
        boundaries.push(boundaries.last().unwrap() + field.unwrap().whole.len());
    }
    for &p in &boundaries {
        for insert in inserts {
            variants.push([&bytes[..p], insert, &bytes[p..]].concat());
        }
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::key_value as kv;
    use opentelemetry_proto::tonic::common::v1::{
        any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, TracesData};

    fn span(trace: u8, id: u8, attributes: usize) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: if id > 1 { vec![1; 8] } else { Vec::new() },
            name: format!("op {id} é"),
            kind: 2,
            start_time_unix_nano: 1_000 + u64::from(id),
            end_time_unix_nano: 2_000 + u64::from(id),
            attributes: (0..attributes)
                .map(|i| kv(&format!("k{i}"), Value::StringValue(format!("value {i}"))))
                .collect(),
            events: vec![Event {
                time_unix_nano: 1_500,
                name: "exception".into(),
                attributes: vec![kv("exception.message", Value::StringValue("boom".into()))],
                ..Default::default()
            }],
            links: vec![Link {
                trace_id: vec![9; 16],
                span_id: vec![9; 8],
                attributes: vec![kv(
                    "n",
                    Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(Value::IntValue(3)),
                        }],
                    }),
                )],
                ..Default::default()
            }],
            status: Some(Status {
                code: 2,
                message: "bad".into(),
            }),
            ..Default::default()
        }
    }

    fn resource(service: &str, scopes: Vec<(&str, Vec<Span>)>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue(service.into()))],
                ..Default::default()
            }),
            scope_spans: scopes
                .into_iter()
                .map(|(name, spans)| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: name.into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: "https://schema/1".into(),
                })
                .collect(),
            schema_url: "https://schema/r".into(),
        }
    }

    /// Interleaved traces over two resources and three scopes.
    fn request() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![
                resource(
                    "cart",
                    vec![
                        ("http", vec![span(1, 1, 3), span(2, 1, 0), span(1, 2, 2)]),
                        ("db", vec![span(1, 3, 1), span(3, 1, 10)]),
                    ],
                ),
                resource("pay", vec![("rpc", vec![span(2, 2, 4), span(1, 4, 0)])]),
            ],
        }
    }

    /// What the struct path publishes, decoded.
    fn by_structs(
        body: &[u8],
        limits: &Limits,
        now: u64,
    ) -> (Vec<([u8; 16], TracesData, usize)>, EncodedSplit) {
        let decoded = ExportTraceServiceRequest::decode(body).unwrap();
        let split: EncodedSplit =
            split_by_trace(decoded.resource_spans, Malformed::default(), limits, now).into();
        (decoded_groups(&split), split)
    }

    fn decoded_groups(split: &EncodedSplit) -> Vec<([u8; 16], TracesData, usize)> {
        split
            .traces
            .iter()
            .map(|g| {
                (
                    g.trace_id,
                    TracesData::decode(g.value.as_slice()).unwrap(),
                    g.spans,
                )
            })
            .collect()
    }

    fn assert_same(body: &[u8], limits: &Limits, now: u64) -> EncodedSplit {
        let fast = fast(body, limits, now).expect("the fast path handles it");
        let (expected, slow) = by_structs(body, limits, now);
        assert_eq!(decoded_groups(&fast), expected);
        assert_eq!(fast.accepted, slow.accepted);
        assert_eq!(fast.rejected, slow.rejected);
        assert_eq!(fast.first_rejection, slow.first_rejection);
        assert_eq!(
            (fast.dropped, fast.truncated),
            (slow.dropped, slow.truncated)
        );
        fast
    }

    #[test]
    fn groups_spans_by_trace_under_their_resources_and_scopes() {
        let body = request().encode_to_vec();
        let split = assert_same(&body, &Limits::default(), 0);
        assert_eq!(split.traces.len(), 3);
        assert_eq!(split.accepted, 7);
        let spans: Vec<usize> = split.traces.iter().map(|t| t.spans).collect();
        assert_eq!(spans, [4, 2, 1]);
        // Untouched spans are copied as received: prost encodes the same bytes.
        let (_, slow) = by_structs(&body, &Limits::default(), 0);
        let values: Vec<&Vec<u8>> = slow.traces.iter().map(|t| &t.value).collect();
        assert_eq!(
            split.traces.iter().map(|t| &t.value).collect::<Vec<_>>(),
            values
        );
    }

    #[test]
    fn invalid_and_out_of_window_spans_are_rejected_alone() {
        let mut request = request();
        let spans = &mut request.resource_spans[0].scope_spans[0].spans;
        spans[0].trace_id = vec![0; 16];
        spans[1].span_id = vec![1; 7];
        spans[2].end_time_unix_nano = 1;
        request.resource_spans[1].scope_spans[0].spans[0].parent_span_id = vec![1; 3];
        let body = request.encode_to_vec();
        let split = assert_same(&body, &Limits::default(), 0);
        assert_eq!(split.rejected_total(), 4);
        assert_eq!(split.accepted, 3);
        assert!(split
            .first_rejection
            .unwrap()
            .starts_with("span 0 of scope 0 of resource 0"));
        // Time window: spans start at about 1 µs; "now" is 1 ms later.
        let limits = Limits {
            max_past_nano: 100,
            ..Limits::default()
        };
        let split = assert_same(&request.encode_to_vec(), &limits, 1_000_000);
        assert_eq!(split.accepted, 0);
        assert_eq!(split.rejected[&RejectReason::TooOld], 3);
    }

    #[test]
    fn spans_over_the_limits_are_trimmed_as_the_struct_path_trims_them() {
        let mut request = request();
        request.resource_spans[0].scope_spans[1].spans[0]
            .attributes
            .push(kv("long", Value::StringValue("x".repeat(100))));
        let body = request.encode_to_vec();
        for limits in [
            Limits {
                max_attributes: 2,
                ..Limits::default()
            },
            Limits {
                max_value_bytes: 50,
                ..Limits::default()
            },
            Limits {
                max_events: 0,
                max_links: 0,
                ..Limits::default()
            },
            Limits {
                max_attributes: 0,
                ..Limits::default()
            },
        ] {
            let split = assert_same(&body, &limits, 0);
            assert!(split.dropped + split.truncated > 0, "{limits:?}");
        }
    }

    #[test]
    fn unknown_fields_are_skipped_and_repeated_singular_fields_merge() {
        let mut body = request().encode_to_vec();
        // An unknown varint field (number 99) at the top level.
        body.extend_from_slice(&[0x98, 0x06, 0x01]);
        assert_same(&body, &Limits::default(), 0);
        // A span whose trace_id appears twice: the last wins.
        let mut s = span(5, 1, 1).encode_to_vec();
        s.extend_from_slice(&[0x0a, 16]);
        s.extend_from_slice(&[6; 16]);
        let mut scope = Vec::new();
        scope.push(0x12);
        put_varint(&mut scope, s.len() as u64);
        scope.extend_from_slice(&s);
        let mut rs = vec![0x12];
        put_varint(&mut rs, scope.len() as u64);
        rs.extend_from_slice(&scope);
        let mut req = vec![0x0a];
        put_varint(&mut req, rs.len() as u64);
        req.extend_from_slice(&rs);
        let split = assert_same(&req, &Limits::default(), 0);
        assert_eq!(split.traces[0].trace_id, [6; 16]);
    }

    #[test]
    fn what_prost_rejects_is_an_error() {
        // Invalid UTF-8 in a span name.
        let mut request = request();
        request.resource_spans[0].scope_spans[0].spans[0].name = "NAME".into();
        let mut body = request.encode_to_vec();
        let at = body.windows(4).position(|w| w == b"NAME").unwrap();
        body[at] = 0xff;
        assert!(fast(&body, &Limits::default(), 0).is_none());
        assert!(split_encoded(&body, &Limits::default(), 0).is_err());
        // A wrong wire type for a known field (start time as a varint).
        let mut s = Vec::new();
        s.extend_from_slice(&[0x38, 0x05]);
        let mut req = vec![
            0x0a,
            (s.len() + 4) as u8,
            0x12,
            (s.len() + 2) as u8,
            0x12,
            s.len() as u8,
        ];
        req.extend_from_slice(&s);
        assert!(fast(&req, &Limits::default(), 0).is_none());
        assert!(split_encoded(&req, &Limits::default(), 0).is_err());
        // Truncated input.
        let body = request.encode_to_vec();
        assert!(split_encoded(&body[..body.len() - 3], &Limits::default(), 0).is_err());
        // An empty request is no spans.
        let split = split_encoded(&[], &Limits::default(), 0).unwrap();
        assert_eq!((split.accepted, split.traces.len()), (0, 0));
    }

    #[test]
    fn what_the_check_takes_prost_decodes() {
        // Every truncation and every byte changed to a few values of a
        // request with attributes of every plain kind: the check (with its
        // fast path for plain attributes) never takes what prost refuses.
        let mut request = request();
        let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
        span.attributes = vec![
            KeyValue {
                key: "s".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue("é".into())),
                }),
                ..Default::default()
            },
            KeyValue {
                key: "b".into(),
                value: Some(AnyValue {
                    value: Some(Value::BoolValue(true)),
                }),
                ..Default::default()
            },
            KeyValue {
                key: "i".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(-300)),
                }),
                ..Default::default()
            },
            KeyValue {
                key: "d".into(),
                value: Some(AnyValue {
                    value: Some(Value::DoubleValue(0.5)),
                }),
                ..Default::default()
            },
        ];
        let body = request.encode_to_vec();
        assert!(check(&body, Spec(traces_data), 0));
        let mut taken = 0;
        for i in 0..body.len() {
            for b in [0x00, 0x01, 0x0a, 0x12, 0x7f, 0x80, 0xc3, 0xff] {
                let mut v = body.clone();
                v[i] = b;
                if check(&v, Spec(traces_data), 0) {
                    assert!(
                        ExportTraceServiceRequest::decode(v.as_slice()).is_ok(),
                        "{i}: {b:#x}"
                    );
                    taken += 1;
                }
                // The split checks its spans as it reads them: the same.
                assert_eq!(
                    fast(&v, &Limits::default(), 0).is_some(),
                    check(&v, Spec(traces_data), 0),
                    "{i}: {b:#x}"
                );
            }
            if check(&body[..i], Spec(traces_data), 0) {
                assert!(
                    ExportTraceServiceRequest::decode(&body[..i]).is_ok(),
                    "cut at {i}"
                );
            }
        }
        assert!(taken > body.len(), "{taken}");
    }

    #[test]
    fn a_span_read_from_its_tags_is_checked_and_read_as_the_generic_walk_does() {
        // Spans as the SDKs write them (status, flags, dropped counts) and
        // with events and links, every truncation, every byte changed to a
        // few values, and a field of each kind inserted at every field
        // boundary: the same view, or the same refusal.
        let mut sdk = span(3, 4, 3);
        sdk.events.clear();
        sdk.links.clear();
        sdk.status = Some(Status::default());
        sdk.flags = 0x301;
        sdk.dropped_attributes_count = 300;
        let spans = [span(1, 2, 2), sdk, Span::default()];
        fn generic(buf: &[u8]) -> Option<SpanView<'_>> {
            check(buf, Spec(crate::otlp_schema::span), SPAN_DEPTH).then(|| view(buf))
        }
        let mut compared = 0;
        let mut plain = 0;
        for span in &spans {
            let bytes = span.encode_to_vec();
            assert!(span_view_plain(&bytes).is_some(), "{span:?}");
            let values = [
                0x00, 0x01, 0x08, 0x0a, 0x12, 0x30, 0x39, 0x4a, 0x5a, 0x7a, 0x7f, 0x80, 0x85, 0xc3,
                0xff,
            ];
            let inserts: [&[u8]; 15] = [
                // Field 6 (a varint) as a fixed64 whose bytes read as a
                // varint and fields.
                &[0x31, 0x81, 0, 0x50, 1, 0x50, 1, 0x50, 1],
                &[0x0a, 1, 0xff],
                &[0x1a, 1, 0xff],
                &[0x2a, 2, 0xc3, 0xa9],
                &[0x30, 0x80, 0x80, 0],
                &[0x31, 0, 0, 0, 0, 0, 0, 0, 0],
                &[0x4a, 2, 0x0a, 0],
                &[0x4a, 2, 0x08, 0],
                &[0x5a, 2, 0x10, 1],
                &[0x6a, 1, 0x0a],
                &[0x7a, 2, 0x12, 0xff],
                &[0x7a, 2, 0x18, 1],
                &[0x85, 0x01, 1, 0, 0, 0],
                &[0x85, 0x02, 1, 0, 0, 0],
                &[0x98, 0x01, 1],
            ];
            for v in variants(&bytes, &values, &inserts) {
                assert_eq!(span_view(&v), generic(&v), "{v:02x?}");
                plain += usize::from(span_view_plain(&v).is_some());
                compared += 1;
            }
        }
        assert!(
            compared > 1000 && plain > compared / 4,
            "{compared} {plain}"
        );
    }

    #[test]
    fn deep_nesting_falls_back_to_prost() {
        let mut value = AnyValue {
            value: Some(Value::IntValue(1)),
        };
        for _ in 0..40 {
            value = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })),
            };
        }
        let mut request = request();
        request.resource_spans[0].scope_spans[0].spans[0]
            .attributes
            .push(KeyValue {
                key: "deep".into(),
                value: Some(value),
                ..Default::default()
            });
        let body = request.encode_to_vec();
        assert!(fast(&body, &Limits::default(), 0).is_none());
        let split = split_encoded(&body, &Limits::default(), 0).unwrap();
        assert_eq!(split.accepted, 7);
    }
}
