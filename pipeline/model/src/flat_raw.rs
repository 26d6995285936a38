//! Reading an encoded `TracesData` in place, for flattening without
//! decoding it.
//!
//! In: the protobuf bytes of a message of the spans topic. Out: [`Traces`]:
//! every span's IDs, times, name, kind, status code and attributes, and its
//! resource and scope, as slices of the bytes (no copies); and
//! [`encode_one`], the `ResourceSpans` of one span as
//! [`flat::flatten`](crate::flat::flatten) encodes it.
//!
//! Decoding a message into owned structs (a `String` or `Vec` for every ID,
//! name, key and value), then encoding each span again, was most of the
//! ingester's decoding. Here a message is read only when it is encoded
//! exactly as prost encodes what it decodes from it (fields in order, no
//! default scalars, shortest varints, no unknown fields: what the collector
//! and the OpenTelemetry SDKs write); then slices of it are the bytes prost
//! would write, and the rows built from them are the rows of the decoded
//! message, byte for byte. [`read`] answers `None` for any other message,
//! and the caller decodes it instead.

use std::ops::Range;

use opentelemetry_proto::tonic::common::v1::AnyValue;
use prost::Message;

use crate::otlp_raw::{
    fixed64, len_field as field_len, len_varint, put_varint, text, varint, Field, Fields, I32, I64,
    LEN, VARINT,
};
use crate::otlp_schema::{
    any_value, array_value, entity_ref, event, key_value, key_value_list, link, resource,
    resource_spans, scope, scope_spans, span, status, traces_data, Card, Int, Spec, Type,
};

// ---------------------------------------------------------------------------
// Checking that a message is encoded as prost encodes it.

const MAX_DEPTH: usize = 32;

/// Field order as prost writes it: ascending numbers, only repeated
/// fields repeat, at most one member of the `oneof`.
#[derive(Default)]
struct Order {
    last: u32,
    oneof: bool,
}

impl Order {
    fn admits(&mut self, number: u32, card: Card) -> bool {
        if number < self.last || (number == self.last && card != Card::Repeated) {
            return false;
        }
        self.last = number;
        if card == Card::Oneof {
            if self.oneof {
                return false;
            }
            self.oneof = true;
        }
        true
    }
}

/// Whether prost writes `field` back as it is, as a field of type `ty`
/// appearing as `card` says: its wire type, the shortest varints, a
/// singular scalar never at its default, strings UTF-8; a message field's
/// content is checked with `canonical` only when `deep`.
fn field_ok(field: &Field<'_>, ty: Type, card: Card, deep: bool, depth: usize) -> bool {
    let key_len = if field.number < 16 {
        1
    } else {
        len_varint(u64::from(field.number) << 3)
    };
    let head = field.whole.len() - field.value.len();
    let single = card == Card::Single;
    match ty {
        Type::Varint(int) => {
            let v = varint_value(field.value);
            field.wire == VARINT
                && head == key_len
                && field.value.len() == len_varint(v)
                && !(single && v == 0)
                && match int {
                    Int::Int32 => v == i64::from(v as i32) as u64,
                    Int::Uint32 => v <= u64::from(u32::MAX),
                    Int::Int64 => true,
                    Int::Bool => v <= 1,
                }
        }
        Type::Fixed64 => {
            field.wire == I64 && head == key_len && !(single && fixed64(field.value) == 0)
        }
        Type::Fixed32 => field.wire == I32 && head == key_len && !(single && field.value == [0; 4]),
        Type::Bytes | Type::Str | Type::Text | Type::Msg(_) | Type::Attribute => {
            let utf8 = || text(field.value).is_some();
            field.wire == LEN
                && head == key_len + len_varint(field.value.len() as u64)
                && match ty {
                    Type::Bytes => !(single && field.value.is_empty()),
                    Type::Str => !(single && field.value.is_empty()) && utf8(),
                    Type::Text => !(single && field.value.is_empty()) && (!deep || utf8()),
                    Type::Msg(inner) => !deep || canonical(field.value, inner, depth + 1),
                    Type::Attribute => !deep || canonical(field.value, Spec(key_value), depth + 1),
                    _ => false,
                }
        }
    }
}

/// Whether prost, decoding `buf` as a `spec` message and encoding it again,
/// writes `buf` back: known fields only, in field order (see [`Order`] and
/// [`field_ok`]).
fn canonical(buf: &[u8], spec: Spec, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let mut order = Order::default();
    for field in Fields::of(buf) {
        let Some(field) = field else { return false };
        let Some((ty, card)) = (spec.0)(field.number) else {
            return false;
        };
        if !order.admits(field.number, card) || !field_ok(&field, ty, card, true, depth) {
            return false;
        }
    }
    true
}

/// The fields of a `spec` message, each checked as [`canonical`] checks
/// it but for the content of message fields (left to the caller, who reads
/// them); `None` for the first that is not as prost writes it.
fn checked<'a>(buf: &'a [u8], spec: Spec) -> impl Iterator<Item = Option<Field<'a>>> {
    checked_after(buf, spec, 0)
}

/// [`checked`] of the rest of a message whose fields up to number `last`
/// were read already.
fn checked_after(buf: &[u8], spec: Spec, last: u32) -> Checked<'_> {
    Checked {
        buf,
        pos: 0,
        spec,
        order: Order { last, oneof: false },
    }
}

/// The iterator of [`checked`].
struct Checked<'a> {
    buf: &'a [u8],
    pos: usize,
    spec: Spec,
    order: Order,
}

impl<'a> Iterator for Checked<'a> {
    type Item = Option<Field<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let &tag = self.buf.get(self.pos)?;
        Some(match self.len_field(tag) {
            Some(field) => field,
            None => self.field(),
        })
    }
}

impl<'a> Checked<'a> {
    /// A `LEN` field of a one-byte key (fields 1 to 15: nearly every
    /// field of resources, scopes, events and links) and a shortest
    /// length, read and checked straight from its bytes, as
    /// [`field_ok`] would check it; `None` when it is not one, for
    /// [`field`](Self::field) to read (or refuse). The generic walk's key
    /// decoding and checks were some 130 instructions a field.
    #[inline]
    fn len_field(&mut self, tag: u8) -> Option<Option<Field<'a>>> {
        if tag & 7 != LEN || tag >= 0x80 {
            return None;
        }
        let start = self.pos;
        let mut end = start;
        let value = len_field(self.buf, &mut end, tag)?;
        let number = u32::from(tag >> 3);
        let field = (|| {
            let (ty, card) = (self.spec.0)(number)?;
            let single = card == Card::Single;
            let ok = self.order.admits(number, card)
                && match ty {
                    Type::Bytes | Type::Text => !(single && value.is_empty()),
                    Type::Str => !(single && value.is_empty()) && text(value).is_some(),
                    Type::Msg(_) | Type::Attribute => true,
                    Type::Varint(_) | Type::Fixed64 | Type::Fixed32 => false,
                };
            ok.then_some(Field {
                number,
                wire: LEN,
                value,
                whole: &self.buf[start..end],
            })
        })();
        self.pos = end;
        Some(field)
    }

    /// Any other field, checked by [`field_ok`].
    fn field(&mut self) -> Option<Field<'a>> {
        let mut fields = Fields::of(&self.buf[self.pos..]);
        let field = fields.next()??;
        self.pos += field.whole.len();
        let (ty, card) = (self.spec.0)(field.number)?;
        (self.order.admits(field.number, card) && field_ok(&field, ty, card, false, 0))
            .then_some(field)
    }
}

/// Walks a `spec` message as [`checked`] does, but for its repeated field
/// `tag` (a `LEN` field with a one-byte key: the one most of the fields
/// of the message are): that one is taken straight from its key and
/// length when it comes in order, its payload given to `repeated`, without
/// the generic walk's key decoding, spec lookup and checks (some 130
/// instructions a field). Every other field goes to `other`, checked;
/// `None` at the first field either refuses or that is not as prost
/// writes it.
fn walk<'a, S>(
    state: &mut S,
    buf: &'a [u8],
    spec: Spec,
    tag: u8,
    mut repeated: impl FnMut(&mut S, &'a [u8]) -> Option<()>,
    mut other: impl FnMut(&mut S, Field<'a>) -> Option<()>,
) -> Option<()> {
    let number = u32::from(tag >> 3);
    let (mut pos, mut last) = (0, 0);
    while pos < buf.len() {
        let mut next = pos;
        if last <= number {
            if let Some(value) = len_field(buf, &mut next, tag) {
                repeated(state, value)?;
                (pos, last) = (next, number);
                continue;
            }
        }
        let f = checked_after(&buf[pos..], spec, last).next()??;
        (pos, last) = (pos + f.whole.len(), f.number);
        other(state, f)?;
    }
    Some(())
}

// ---------------------------------------------------------------------------
// Reading.

/// An attribute value, read in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// No value (a `KeyValue` without one, or an empty `AnyValue`).
    Unset,
    /// `string_value`.
    Str(&'a str),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bytes_value`.
    Bytes(&'a [u8]),
    /// `string_value_strindex` (profiles only).
    StrIndex(i32),
    /// An array or a map: the whole `AnyValue`, decoded when shown.
    Nested(&'a [u8]),
}

impl<'a> Value<'a> {
    /// A decoded value, seen as one read in place; arrays and maps as
    /// [`Value::Nested`] of no bytes (their text is
    /// [`flat::value_text`](crate::flat::value_text)'s).
    pub fn of(value: Option<&'a AnyValue>) -> Self {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        match value.and_then(|v| v.value.as_ref()) {
            None => Value::Unset,
            Some(V::StringValue(s)) => Value::Str(s),
            Some(V::BoolValue(b)) => Value::Bool(*b),
            Some(V::IntValue(i)) => Value::Int(*i),
            Some(V::DoubleValue(d)) => Value::Double(*d),
            Some(V::BytesValue(b)) => Value::Bytes(b),
            Some(V::StringValueStrindex(i)) => Value::StrIndex(*i),
            Some(V::ArrayValue(_) | V::KvlistValue(_)) => Value::Nested(&[]),
        }
    }

    /// The value as text, as [`flat::value_text`](crate::flat::value_text)
    /// shows the decoded value.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out);
        out
    }

    /// [`text`](Self::text), appended to `out`.
    pub fn write_text(&self, out: &mut String) {
        use base64::Engine as _;
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = match *self {
            Value::Unset => Ok(()),
            Value::Str(s) => {
                out.push_str(s);
                Ok(())
            }
            Value::Bool(b) => write!(out, "{b}"),
            Value::Int(i) => write!(out, "{i}"),
            Value::Double(d) => write!(out, "{d}"),
            Value::Bytes(b) => {
                base64::engine::general_purpose::STANDARD.encode_string(b, out);
                Ok(())
            }
            Value::StrIndex(i) => write!(out, "{i}"),
            Value::Nested(bytes) => {
                out.push_str(&crate::flat::value_text(
                    AnyValue::decode(bytes).ok().as_ref(),
                ));
                Ok(())
            }
        };
    }
}

/// A `KeyValue`, read in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attribute<'a> {
    /// The key.
    pub key: &'a str,
    /// The value.
    pub value: Value<'a>,
}

/// A resource or a scope of the message: its encoded field in the
/// `ResourceSpans` or `ScopeSpans` (empty when absent), that message's
/// schema URL field (empty when absent), and its attributes.
#[derive(Debug, Clone, Default)]
pub struct Part<'a> {
    /// The whole field 1 (`resource` or `scope`), key and length included.
    pub field: &'a [u8],
    /// The whole field 3 (`schema_url`) of the `ResourceSpans` or
    /// `ScopeSpans`.
    pub schema_url: &'a [u8],
    /// Its attributes, in [`Traces::attributes`].
    pub attributes: Range<usize>,
    /// For a resource: the first string `service.name`.
    pub service_name: Option<&'a str>,
    /// For a scope: its resource, in [`Traces::resources`].
    pub resource: usize,
}

/// One span, read in place.
#[derive(Debug, Clone)]
pub struct SpanRef<'a> {
    /// The span's encoded message.
    pub bytes: &'a [u8],
    /// Where in `bytes` the fields after `attributes` start (where prost
    /// writes an attribute added to the span).
    pub attributes_end: usize,
    /// Its scope, in [`Traces::scopes`].
    pub scope: usize,
    /// Trace ID bytes.
    pub trace_id: &'a [u8],
    /// Span ID bytes.
    pub span_id: &'a [u8],
    /// Parent span ID bytes.
    pub parent_span_id: &'a [u8],
    /// The span's name.
    pub name: &'a str,
    /// The span kind.
    pub kind: i32,
    /// Start, ns since the epoch.
    pub start_unix_nano: u64,
    /// End, ns since the epoch.
    pub end_unix_nano: u64,
    /// The status code.
    pub status_code: i32,
    /// Its own attributes, in [`Traces::attributes`].
    pub attributes: Range<usize>,
    /// Its events' and then its links' attributes, in
    /// [`Traces::attributes`].
    pub item_attributes: Range<usize>,
}

/// A message's spans, read in place; see the module.
#[derive(Debug, Clone, Default)]
pub struct Traces<'a> {
    /// Resources, in message order.
    pub resources: Vec<Part<'a>>,
    /// Scopes, in message order.
    pub scopes: Vec<Part<'a>>,
    /// Spans, in message order (the order of `flat::flatten`).
    pub spans: Vec<SpanRef<'a>>,
    /// Every attribute the ranges above point into.
    pub attributes: Vec<Attribute<'a>>,
}

/// Reads the encoded `TracesData` `buf`; `None` unless prost would encode
/// what it decodes from `buf` as `buf` (see the module).
pub fn read(buf: &[u8]) -> Option<Traces<'_>> {
    let mut t = Traces::default();
    // Room for a typical message at once (an encoded attribute takes some
    // 40 bytes, a span some 600 with its attributes), instead of growing
    // each list from nothing: reallocations were 8% of reading.
    t.attributes.reserve(buf.len() / 40);
    t.spans.reserve(buf.len() / 600 + 1);
    // A `TracesData` has one field, its repeated `ResourceSpans`: any
    // other is refused by `walk`'s check.
    walk(
        &mut t,
        buf,
        Spec(traces_data),
        0x0a,
        read_resource,
        |_, _| None,
    )?;
    Some(t)
}

fn read_resource<'a>(t: &mut Traces<'a>, buf: &'a [u8]) -> Option<()> {
    let r = t.resources.len();
    t.resources.push(Part::default());
    walk(
        t,
        buf,
        Spec(resource_spans),
        0x12,
        |t, scope_spans| read_scope(t, r, scope_spans),
        |t, f| {
            match f.number {
                1 => {
                    let start = t.attributes.len();
                    walk(
                        t,
                        f.value,
                        Spec(resource),
                        0x0a,
                        |t, a| {
                            t.attributes.push(attribute(a)?);
                            Some(())
                        },
                        |_, field| match field.number {
                            3 => canonical(field.value, Spec(entity_ref), 1).then_some(()),
                            _ => Some(()),
                        },
                    )?;
                    let part = &mut t.resources[r];
                    part.field = f.whole;
                    part.attributes = start..t.attributes.len();
                    part.service_name = t.attributes[start..].iter().find_map(|a| match a {
                        Attribute {
                            key: "service.name",
                            value: Value::Str(s),
                        } => Some(*s),
                        _ => None,
                    });
                }
                // Not reached, as in `read_scope`.
                2 => return None,
                _ => t.resources[r].schema_url = f.whole,
            }
            Some(())
        },
    )
}

fn read_scope<'a>(t: &mut Traces<'a>, resource: usize, buf: &'a [u8]) -> Option<()> {
    let s = t.scopes.len();
    t.scopes.push(Part {
        resource,
        ..Part::default()
    });
    walk(
        t,
        buf,
        Spec(scope_spans),
        0x12,
        |t, span| {
            let span = read_span(t, s, span)?;
            t.spans.push(span);
            Some(())
        },
        |t, f| {
            match f.number {
                1 => {
                    let start = t.attributes.len();
                    walk(
                        t,
                        f.value,
                        Spec(scope),
                        0x1a,
                        |t, a| {
                            t.attributes.push(attribute(a)?);
                            Some(())
                        },
                        |_, _| Some(()),
                    )?;
                    t.scopes[s].field = f.whole;
                    t.scopes[s].attributes = start..t.attributes.len();
                }
                // A span `walk` did not take itself is one the generic
                // walk refuses too (a key or length not as prost writes
                // it, or out of order): not reached.
                2 => return None,
                _ => t.scopes[s].schema_url = f.whole,
            }
            Some(())
        },
    )
}

fn read_span<'a>(t: &mut Traces<'a>, scope: usize, buf: &'a [u8]) -> Option<SpanRef<'a>> {
    read_span_with(t, scope, buf, true)
}

/// [`read_span`], its common fields read by [`span_plain`] when `head`
/// (the generic walk alone otherwise, which the tests compare it with).
fn read_span_with<'a>(
    t: &mut Traces<'a>,
    scope: usize,
    buf: &'a [u8],
    head: bool,
) -> Option<SpanRef<'a>> {
    let mut span = SpanRef {
        bytes: buf,
        attributes_end: buf.len(),
        scope,
        trace_id: &[],
        span_id: &[],
        parent_span_id: &[],
        name: "",
        kind: 0,
        start_unix_nano: 0,
        end_unix_nano: 0,
        status_code: 0,
        attributes: 0..0,
        item_attributes: 0..0,
    };
    let start = t.attributes.len();
    let mut items = None;
    let (mut pos, last) = if head {
        span_plain(t, &mut span, buf)?
    } else {
        (0, 0)
    };
    for f in checked_after(&buf[pos..], Spec(self::span), last) {
        let f = f?;
        if f.number > 9 && span.attributes_end == buf.len() {
            span.attributes_end = pos;
        }
        pos += f.whole.len();
        match f.number {
            1 => span.trace_id = f.value,
            2 => span.span_id = f.value,
            4 => span.parent_span_id = f.value,
            5 => span.name = text(f.value)?,
            6 => span.kind = varint_value(f.value) as i32,
            7 => span.start_unix_nano = fixed64(f.value),
            8 => span.end_unix_nano = fixed64(f.value),
            9 => t.attributes.push(attribute(f.value)?),
            11 | 13 => {
                items.get_or_insert(t.attributes.len());
                let (spec, number) = if f.number == 11 {
                    (Spec(event), 3)
                } else {
                    (Spec(link), 4)
                };
                for field in checked(f.value, spec) {
                    let field = field?;
                    if field.number == number {
                        t.attributes.push(attribute(field.value)?);
                    }
                }
            }
            15 => {
                for field in checked(f.value, Spec(status)) {
                    let field = field?;
                    if field.number == 3 {
                        span.status_code = varint_value(field.value) as i32;
                    }
                }
            }
            _ => {}
        }
    }
    let end = t.attributes.len();
    let own_end = items.unwrap_or(end);
    span.attributes = start..own_end;
    span.item_attributes = own_end..end;
    Some(span)
}

/// Reads a span's fields as the collector and the SDKs write them (IDs,
/// trace state, parent, name, kind, times, attributes, then the dropped
/// counts, status and flags: fields 1 to 16 but events and links,
/// ascending) straight from their tags, without the generic walk's key
/// decoding, spec lookup and checks per field (some 240 instructions a
/// field, most of reading a span). Takes a field only as [`checked`] and
/// [`read_span_with`] take it; stops at the first field that is not one of
/// these, out of order or not as prost writes it, and says where, and
/// after which field number, the generic walk goes on (which then reads or
/// refuses it). `None` where the generic walk refuses too: a name or an
/// attribute it cannot read.
fn span_plain<'a>(
    t: &mut Traces<'a>,
    span: &mut SpanRef<'a>,
    buf: &'a [u8],
) -> Option<(usize, u32)> {
    let (mut pos, mut last) = (0, 0u32);
    while let Some(&tag) = buf.get(pos) {
        // Field 16's key is two bytes, 0x85 0x01: its first alone says 16.
        let number = u32::from(tag >> 3);
        if !(1..=16).contains(&number)
            || number == 11
            || number == 13
            || number < last
            || (number == last && number != 9)
        {
            break;
        }
        let mut next = pos;
        match tag {
            // LEN: trace_id, span_id, trace_state, parent_span_id, name,
            // attributes.
            0x0a | 0x12 | 0x1a | 0x22 | 0x2a | 0x4a => {
                let Some(value) = len_field(buf, &mut next, tag) else {
                    break;
                };
                // A singular field is never written empty.
                if number != 9 && value.is_empty() {
                    break;
                }
                match number {
                    1 => span.trace_id = value,
                    2 => span.span_id = value,
                    3 if text(value).is_none() => break,
                    3 => {}
                    4 => span.parent_span_id = value,
                    5 => span.name = text(value)?,
                    _ => t.attributes.push(attribute(value)?),
                }
            }
            // kind: an int32 varint, shortest, never 0.
            0x30 => {
                next += 1;
                let Some(v) = varint(buf, &mut next) else {
                    break;
                };
                if next - pos - 1 != len_varint(v) || v == 0 || v != i64::from(v as i32) as u64 {
                    break;
                }
                span.kind = v as i32;
            }
            // start and end: fixed64, never 0.
            0x39 | 0x41 => {
                let Some(bytes) = buf.get(pos + 1..pos + 9) else {
                    break;
                };
                let v = fixed64(bytes);
                if v == 0 {
                    break;
                }
                if number == 7 {
                    span.start_unix_nano = v;
                } else {
                    span.end_unix_nano = v;
                }
                next = pos + 9;
            }
            // The tail: dropped attributes, events and links counts
            // (uint32 varints, shortest, never 0), status and flags.
            0x50 | 0x60 | 0x70 => {
                next += 1;
                let Some(v) = varint(buf, &mut next) else {
                    break;
                };
                if next - pos - 1 != len_varint(v) || v == 0 || v > u64::from(u32::MAX) {
                    break;
                }
            }
            0x7a => {
                let Some(value) = len_field(buf, &mut next, tag) else {
                    break;
                };
                let Some(code) = status_code(value) else {
                    break;
                };
                span.status_code = code;
            }
            // flags: fixed32, never 0.
            0x85 => match buf.get(pos + 1..pos + 6) {
                Some([0x01, flags @ ..]) if flags != [0; 4] => next = pos + 6,
                _ => break,
            },
            _ => break,
        }
        if number > 9 && span.attributes_end == buf.len() {
            span.attributes_end = pos;
        }
        pos = next;
        last = number;
    }
    Some((pos, last))
}

/// The code of a `Status` as prost writes it (message, then code, each
/// only when set: a non-empty UTF-8 string, a shortest non-zero int32
/// varint): `None` for any other, which the generic walk reads or
/// refuses.
fn status_code(buf: &[u8]) -> Option<i32> {
    let mut pos = 0;
    if buf.first() == Some(&0x12) {
        let message = len_field(buf, &mut pos, 0x12)?;
        if message.is_empty() {
            return None;
        }
        text(message)?;
    }
    let mut code = 0;
    if pos < buf.len() {
        if buf[pos] != 0x18 {
            return None;
        }
        pos += 1;
        let start = pos;
        let v = varint(buf, &mut pos)?;
        if pos - start != len_varint(v) || v == 0 || v != i64::from(v as i32) as u64 {
            return None;
        }
        code = v as i32;
    }
    (pos == buf.len()).then_some(code)
}

fn varint_value(buf: &[u8]) -> u64 {
    match buf {
        [b] if *b < 0x80 => u64::from(*b),
        _ => {
            let mut pos = 0;
            varint(buf, &mut pos).unwrap_or_default()
        }
    }
}

/// A checked `KeyValue`.
fn attribute(buf: &[u8]) -> Option<Attribute<'_>> {
    plain_attribute(buf).or_else(|| any_attribute(buf))
}

/// The payload of the `LEN` field at `pos` if its key is the one byte
/// `tag` and its length is the shortest varint; moves `pos` past it.
#[inline]
pub(crate) fn len_field<'a>(buf: &'a [u8], pos: &mut usize, tag: u8) -> Option<&'a [u8]> {
    // Most lengths (keys, values, IDs, names) are one byte, always the
    // shortest: read inline, without the varint loop and its check.
    if let Some(&[t, len]) = buf.get(*pos..*pos + 2) {
        if t == tag && len < 0x80 {
            let start = *pos + 2;
            let value = buf.get(start..start + usize::from(len))?;
            *pos = start + usize::from(len);
            return Some(value);
        }
    }
    if buf.get(*pos) != Some(&tag) {
        return None;
    }
    let mut p = *pos + 1;
    let len = varint(buf, &mut p)?;
    if p - *pos - 1 != len_varint(len) {
        return None;
    }
    let end = p.checked_add(usize::try_from(len).ok()?)?;
    let value = buf.get(p..end)?;
    *pos = end;
    Some(value)
}

/// [`any_attribute`] of the common case, faster: a non-empty key and a
/// string, bool, int, double or bytes value, or none. `None` for anything
/// else, which [`any_attribute`] then reads (or refuses).
fn plain_attribute(buf: &[u8]) -> Option<Attribute<'_>> {
    if let Some(a) = short_string_attribute(buf) {
        return Some(a);
    }
    let mut pos = 0;
    let key = len_field(buf, &mut pos, 0x0a)?;
    if key.is_empty() {
        return None;
    }
    let value = if pos == buf.len() {
        Value::Unset
    } else {
        plain_value(len_field(buf, &mut pos, 0x12)?)?
    };
    (pos == buf.len()).then_some(Attribute {
        key: text(key)?,
        value,
    })
}

/// [`plain_attribute`] of the most common attribute of all, straight from
/// its bytes: an ASCII key under 128 bytes and string value under 126,
/// laid out as `0a klen key 12 vlen 0a slen value` with `vlen = slen + 2`.
/// Key, tags and value are then one run of bytes under 0x80, which one
/// `is_ascii` tells (the general path reads three length fields and walks
/// the key and the value apart: 187 instructions an attribute under
/// callgrind, 144 with this, for some 11 attributes a span). `None` for
/// anything else, which the general path reads.
#[allow(unsafe_code)]
#[inline]
fn short_string_attribute(buf: &[u8]) -> Option<Attribute<'_>> {
    let [0x0a, klen, rest @ ..] = buf else {
        return None;
    };
    let klen = usize::from(*klen);
    let (key, rest) = rest.split_at_checked(klen)?;
    let [0x12, vlen, 0x0a, slen, value @ ..] = rest else {
        return None;
    };
    let (vlen, slen) = (usize::from(*vlen), usize::from(*slen));
    if klen == 0
        || klen >= 0x80
        || vlen >= 0x80
        || vlen != slen + 2
        || value.len() != slen
        || !buf[2..].is_ascii()
    {
        return None;
    }
    // SAFETY: every byte of the key and the value is below 0x80 (checked
    // above with the tags between them), and ASCII is valid UTF-8.
    let (key, value) = unsafe {
        (
            std::str::from_utf8_unchecked(key),
            std::str::from_utf8_unchecked(value),
        )
    };
    Some(Attribute {
        key,
        value: Value::Str(value),
    })
}

/// Whether `buf` is a `KeyValue` [`plain_attribute`] reads: one prost
/// decodes (the collector's check of requests takes it as is).
pub(crate) fn is_plain_attribute(buf: &[u8]) -> bool {
    plain_attribute(buf).is_some()
}

/// A one-field `AnyValue` of the common kinds, as [`value`] reads it.
fn plain_value(buf: &[u8]) -> Option<Value<'_>> {
    let (&tag, rest) = buf.split_first()?;
    match tag {
        // string_value = 1, bytes_value = 7
        0x0a | 0x3a => {
            let mut pos = 0;
            let payload = len_field(buf, &mut pos, tag)?;
            if pos != buf.len() {
                return None;
            }
            Some(if tag == 0x0a {
                Value::Str(text(payload)?)
            } else {
                Value::Bytes(payload)
            })
        }
        // bool_value = 2
        0x10 => match rest {
            [0] => Some(Value::Bool(false)),
            [1] => Some(Value::Bool(true)),
            _ => None,
        },
        // int_value = 3
        0x18 => {
            let mut pos = 0;
            let v = varint(rest, &mut pos)?;
            (pos == rest.len() && pos == len_varint(v)).then_some(Value::Int(v as i64))
        }
        // double_value = 4
        0x21 if rest.len() == 8 => Some(Value::Double(f64::from_bits(fixed64(rest)))),
        _ => None,
    }
}

/// A `KeyValue` checked field by field, whatever it holds.
fn any_attribute(buf: &[u8]) -> Option<Attribute<'_>> {
    let mut out = Attribute {
        key: "",
        value: Value::Unset,
    };
    for f in checked(buf, Spec(key_value)) {
        let f = f?;
        match f.number {
            1 => out.key = text(f.value)?,
            2 => out.value = value(f.value)?,
            _ => {}
        }
    }
    Some(out)
}

/// A checked `AnyValue`.
fn value(buf: &[u8]) -> Option<Value<'_>> {
    let mut fields = checked(buf, Spec(any_value));
    let Some(f) = fields.next() else {
        return Some(Value::Unset);
    };
    let f = f?;
    // A second member of the oneof is refused by `checked`.
    if let Some(second) = fields.next() {
        second?;
    }
    Some(match f.number {
        1 => Value::Str(text(f.value)?),
        2 => Value::Bool(varint_value(f.value) != 0),
        3 => Value::Int(varint_value(f.value) as i64),
        4 => Value::Double(f64::from_bits(fixed64(f.value))),
        5 => {
            canonical(f.value, Spec(array_value), 1).then_some(())?;
            Value::Nested(buf)
        }
        6 => {
            canonical(f.value, Spec(key_value_list), 1).then_some(())?;
            Value::Nested(buf)
        }
        7 => Value::Bytes(f.value),
        _ => Value::StrIndex(varint_value(f.value) as i32),
    })
}

// ---------------------------------------------------------------------------
// Encoding one span.

/// The `ResourceSpans` holding only `span` under its resource and scope,
/// with `added` (a string attribute, e.g. an inferred `peer.service`)
/// after its attributes: the bytes prost writes for the decoded resource,
/// scope and span with `added` pushed to its attributes.
pub fn encode_one(t: &Traces<'_>, span: &SpanRef<'_>, added: Option<(&str, &str)>) -> Vec<u8> {
    let one = OneSpan::new(t, span, added);
    let mut out = Vec::with_capacity(one.encoded_len());
    one.write(&mut out);
    out
}

/// [`encode_one`]'s bytes, their length known before they are written
/// (so that a caller writes the length and then the bytes in place).
pub struct OneSpan<'s, 'a> {
    resource: [&'a [u8]; 2],
    scope: [&'a [u8]; 2],
    span: &'s SpanRef<'a>,
    /// The encoded added attribute (span field 9), or nothing.
    extra: Vec<u8>,
}

impl<'s, 'a> OneSpan<'s, 'a> {
    /// `span` of `t` with `added`, as [`encode_one`] takes them.
    pub fn new(t: &Traces<'a>, span: &'s SpanRef<'a>, added: Option<(&str, &str)>) -> Self {
        let scope = &t.scopes[span.scope];
        let resource = &t.resources[scope.resource];
        let mut extra = Vec::new();
        if let Some((key, value)) = added {
            // As prost writes `Span.attributes` (9) holding a `KeyValue`
            // of `key` (1, left out when empty) and `value` (2), an
            // `AnyValue` whose `string_value` (1) is written even when
            // empty (a member of a oneof).
            let any = field_len(value.len());
            let key_field = if key.is_empty() {
                0
            } else {
                field_len(key.len())
            };
            let kv = key_field + field_len(any);
            extra.reserve(field_len(kv));
            let head = |extra: &mut Vec<u8>, tag: u8, len: usize| {
                extra.push(tag);
                put_varint(extra, len as u64);
            };
            head(&mut extra, 0x4a, kv);
            if !key.is_empty() {
                head(&mut extra, 0x0a, key.len());
                extra.extend_from_slice(key.as_bytes());
            }
            head(&mut extra, 0x12, any);
            head(&mut extra, 0x0a, value.len());
            extra.extend_from_slice(value.as_bytes());
        }
        Self {
            resource: [resource.field, resource.schema_url],
            scope: [scope.field, scope.schema_url],
            span,
            extra,
        }
    }

    fn span_len(&self) -> usize {
        self.span.bytes.len() + self.extra.len()
    }

    fn span_field_len(&self) -> usize {
        field_len(self.span_len())
    }

    /// How many bytes [`write`](Self::write) appends.
    pub fn encoded_len(&self) -> usize {
        crate::flat::one_span_len(self.resource, self.scope, self.span_field_len())
    }

    /// Appends the bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let span_len = self.span_len();
        let (before, after) = self.span.bytes.split_at(self.span.attributes_end);
        crate::flat::one_span(
            self.resource,
            self.scope,
            self.span_field_len(),
            |out| {
                out.push(0x12); // ScopeSpans.spans = 2
                put_varint(out, span_len as u64);
                out.extend_from_slice(before);
                out.extend_from_slice(&self.extra);
                out.extend_from_slice(after);
            },
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::key_value as kv;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{
        ResourceSpans, ScopeSpans, Span, Status, TracesData,
    };

    fn sample() -> TracesData {
        use any_value::Value as V;
        let span = |id: u8, name: &str| Span {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            parent_span_id: if id > 2 { vec![2; 8] } else { vec![] },
            name: name.into(),
            kind: 3,
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 3_500,
            attributes: vec![
                kv("s", V::StringValue("v".into())),
                kv("e", V::StringValue(String::new())),
                kv("i", V::IntValue(-5)),
                kv("z", V::IntValue(0)),
                kv("d", V::DoubleValue(72.5)),
                kv("b", V::BoolValue(false)),
                kv("x", V::BytesValue(vec![0, 1])),
                kv(
                    "a",
                    V::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(V::IntValue(1)),
                        }],
                    }),
                ),
                kv(
                    "m",
                    V::KvlistValue(KeyValueList {
                        values: vec![kv("k", V::StringValue("w".into()))],
                    }),
                ),
                KeyValue {
                    key: "none".into(),
                    value: None,
                    ..Default::default()
                },
            ],
            dropped_attributes_count: 2,
            events: vec![Event {
                time_unix_nano: 2_000,
                name: "ev".into(),
                attributes: vec![kv("ek", V::StringValue("ev".into()))],
                dropped_attributes_count: 0,
            }],
            links: vec![Link {
                trace_id: vec![3; 16],
                span_id: vec![4; 8],
                attributes: vec![kv("lk", V::IntValue(9))],
                flags: 0x100,
                ..Default::default()
            }],
            status: Some(Status {
                code: 2,
                message: "boom".into(),
            }),
            flags: 0x300,
            ..Default::default()
        };
        TracesData {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("host", V::StringValue("h".into())),
                            kv("service.name", V::StringValue("svc".into())),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "lib".into(),
                                version: "1".into(),
                                attributes: vec![kv("sc", V::BoolValue(true))],
                                ..Default::default()
                            }),
                            spans: vec![span(2, "root"), span(3, "child")],
                            schema_url: "scope-url".into(),
                        },
                        ScopeSpans {
                            scope: None,
                            spans: vec![span(5, "bare")],
                            schema_url: String::new(),
                        },
                    ],
                    schema_url: "res-url".into(),
                },
                ResourceSpans {
                    resource: None,
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope::default()),
                        spans: vec![span(6, "")],
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                },
            ],
        }
    }

    #[test]
    fn prost_output_is_read_and_matches_flatten() {
        let data = sample();
        let bytes = data.encode_to_vec();
        let t = read(&bytes).expect("prost's own encoding is canonical");
        let flat = crate::flat::flatten(&data);
        assert_eq!(t.spans.len(), flat.len());
        for (span, f) in t.spans.iter().zip(&flat) {
            assert_eq!(hex::encode(span.trace_id), f.trace_id);
            assert_eq!(hex::encode(span.span_id), f.span_id);
            assert_eq!(hex::encode(span.parent_span_id), f.parent_span_id);
            assert_eq!(span.name, f.span_name);
            assert_eq!(span.status_code, f.status_code);
            assert_eq!(crate::flat::kind_name(span.kind), f.span_kind);
            let scope = &t.scopes[span.scope];
            let resource = &t.resources[scope.resource];
            let keys: Vec<&str> = [
                span.attributes.clone(),
                resource.attributes.clone(),
                scope.attributes.clone(),
                span.item_attributes.clone(),
            ]
            .into_iter()
            .flat_map(|r| t.attributes[r].iter().map(|a| a.key))
            .collect();
            let values: Vec<String> = [
                span.attributes.clone(),
                resource.attributes.clone(),
                scope.attributes.clone(),
                span.item_attributes.clone(),
            ]
            .into_iter()
            .flat_map(|r| t.attributes[r].iter().map(|a| a.value.text()))
            .collect();
            assert_eq!(keys, f.attribute_keys);
            assert_eq!(values, f.attribute_values);
            assert_eq!(encode_one(&t, span, None), f.encoded);
        }
        assert_eq!(t.resources[0].service_name, Some("svc"));
        assert_eq!(t.resources[1].service_name, None);
    }

    #[test]
    fn an_added_attribute_is_where_prost_writes_it() {
        let long = "v".repeat(200);
        // Empty keys and values, and lengths of two-byte varints, too.
        let cases = [
            ("peer.service", "db"),
            ("peer.service", ""),
            ("", "x"),
            ("", ""),
            ("k", long.as_str()),
        ];
        for (key, value) in cases {
            let mut data = sample();
            let bytes = data.encode_to_vec();
            let t = read(&bytes).unwrap();
            let encoded: Vec<Vec<u8>> = t
                .spans
                .iter()
                .map(|s| encode_one(&t, s, Some((key, value))))
                .collect();
            for rs in &mut data.resource_spans {
                for ss in &mut rs.scope_spans {
                    for span in &mut ss.spans {
                        span.attributes
                            .push(kv(key, any_value::Value::StringValue(value.into())));
                    }
                }
            }
            let flat = crate::flat::flatten(&data);
            assert_eq!(encoded.len(), flat.len());
            for (e, f) in encoded.iter().zip(&flat) {
                assert_eq!(e, &f.encoded, "{key:?} = {value:?}");
            }
        }
    }

    #[test]
    fn a_span_read_from_tags_is_what_the_generic_walk_reads() {
        use any_value::Value as V;
        let mut spans: Vec<Span> = sample()
            .resource_spans
            .into_iter()
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect();
        spans.push(Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            trace_state: "k=v".into(),
            parent_span_id: vec![0xef; 8],
            name: "GET /é".into(),
            kind: 2,
            start_time_unix_nano: 1,
            end_time_unix_nano: u64::MAX,
            attributes: vec![
                kv("a", V::StringValue("x".repeat(130))),
                kv("b", V::IntValue(-300)),
            ],
            ..Default::default()
        });
        // The tail as the SDKs write it: an empty status or one with a
        // code or a message, flags, dropped counts (of 1 and 2 bytes).
        for (status, flags, dropped) in [
            (Some(Status::default()), 0x101, 0),
            (Some(Status::default()), 0x301, 300),
            (
                Some(Status {
                    code: 2,
                    message: String::new(),
                }),
                0,
                1,
            ),
            (
                Some(Status {
                    code: 1,
                    message: "ok é".into(),
                }),
                0x100,
                0,
            ),
            (
                Some(Status {
                    code: 0,
                    message: "m".into(),
                }),
                u32::MAX,
                u32::MAX,
            ),
        ] {
            spans.push(Span {
                trace_id: vec![0xab; 16],
                span_id: vec![0xcd; 8],
                name: "tail".into(),
                attributes: vec![kv("a", V::StringValue("x".into()))],
                dropped_attributes_count: dropped,
                dropped_events_count: dropped / 2,
                dropped_links_count: dropped,
                status,
                flags,
                ..Default::default()
            });
        }
        let read = |buf: &[u8], head: bool| {
            let mut t = Traces::default();
            let span = read_span_with(&mut t, 0, buf, head);
            format!("{span:?} {:?}", t.attributes)
        };
        let mut compared = 0;
        for span in &spans {
            let bytes = span.encode_to_vec();
            assert!(read(&bytes, true).starts_with("Some("), "{span:?}");
            // Every truncation and every byte changed to a few values: the
            // same span and attributes, or the same refusal.
            let values = [
                0x00, 0x01, 0x08, 0x0a, 0x12, 0x18, 0x30, 0x39, 0x4a, 0x50, 0x52, 0x60, 0x7a, 0x7f,
                0x80, 0x85, 0xff,
            ];
            // An empty or zero field (never written by prost), or a field
            // again, at every field boundary.
            let inserts: [&[u8]; 21] = [
                &[0x50, 0],
                &[0x50, 0x81, 0],
                &[0x60, 1],
                &[0x70, 0x80, 0x80, 0x80, 0x80, 0x10],
                &[0x7a, 0],
                &[0x7a, 2, 0x18, 0],
                &[0x7a, 2, 0x12, 0],
                &[0x7a, 4, 0x18, 1, 0x12, 0x61],
                &[0x7a, 2, 0x08, 1],
                &[0x85, 1, 0, 0, 0, 0],
                &[0x0a, 0],
                &[0x12, 0],
                &[0x1a, 0],
                &[0x22, 0],
                &[0x2a, 0],
                &[0x4a, 0],
                &[0x1a, 1, 0xff],
                &[0x30, 0],
                &[0x30, 0x80, 0],
                &[0x39, 0, 0, 0, 0, 0, 0, 0, 0],
                &[0x41, 0, 0, 0, 0, 0, 0, 0, 0],
            ];
            for v in crate::otlp_raw::variants(&bytes, &values, &inserts) {
                assert_eq!(read(&v, true), read(&v, false), "{v:02x?}");
                compared += 1;
            }
        }
        assert!(compared > 1000, "{compared}");
    }

    #[test]
    fn the_fast_attribute_path_agrees_with_the_checked_one() {
        use any_value::Value as V;
        let samples = [
            kv("k", V::StringValue("value".into())),
            kv("k", V::StringValue(String::new())),
            kv("k", V::StringValue("é".into())),
            kv("é", V::StringValue("v".into())),
            kv(&"k".repeat(127), V::StringValue("v".into())),
            kv(&"k".repeat(128), V::StringValue("v".into())),
            kv("k", V::StringValue("v".repeat(125))),
            kv("k", V::StringValue("v".repeat(126))),
            kv("k", V::StringValue("v".repeat(128))),
            kv("k", V::BoolValue(true)),
            kv("k", V::BoolValue(false)),
            kv("k", V::IntValue(0)),
            kv("k", V::IntValue(-1)),
            kv("k", V::IntValue(300)),
            kv("k", V::DoubleValue(-0.0)),
            kv("k", V::BytesValue(vec![1, 2, 3])),
            kv("k", V::StringValueStrindex(4)),
            kv(
                "k",
                V::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(V::BoolValue(true)),
                    }],
                }),
            ),
            KeyValue {
                key: "k".into(),
                value: None,
                ..Default::default()
            },
            KeyValue {
                key: "k".into(),
                value: Some(AnyValue { value: None }),
                ..Default::default()
            },
            KeyValue::default(),
        ];
        let mut checked = 0;
        for sample in &samples {
            let bytes = sample.encode_to_vec();
            let decoded = any_attribute(&bytes).expect("prost's encoding is read");
            assert_eq!(attribute(&bytes), Some(decoded), "{sample:?}");
            // Every truncation and every byte changed to a few values: the
            // fast path reads nothing the checked one would not, the same.
            let mut variants: Vec<Vec<u8>> =
                (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            for i in 0..bytes.len() {
                for b in [0x00, 0x01, 0x02, 0x0a, 0x12, 0x7f, 0x80, 0xff] {
                    let mut v = bytes.clone();
                    v[i] = b;
                    variants.push(v);
                }
            }
            for v in variants {
                if let Some(fast) = plain_attribute(&v) {
                    assert_eq!(Some(fast), any_attribute(&v), "{v:02x?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "{checked}");
        // A key length of one byte at or over 0x80 is a varint's first
        // byte, not a length, whatever follows.
        let mut long = vec![0x0a, 0x80];
        long.extend([b'k'; 128]);
        long.extend([0x12, 0x03, 0x0a, 0x01, b'v']);
        assert_eq!(any_attribute(&long), None);
        assert_eq!(plain_attribute(&long), None);
    }

    #[test]
    fn text_is_what_std_makes_of_the_bytes() {
        let mut samples: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"http.method".to_vec(),
            "é".as_bytes().to_vec(),
            "service-\u{1F600}-name".as_bytes().to_vec(),
            vec![0x80],
            vec![b'a', 0xc3],
            vec![0xed, 0xa0, 0x80], // a surrogate
            vec![0xff; 40],
        ];
        // Every length to 40 with a non-ASCII byte at every place.
        for n in 1..=40 {
            for i in 0..n {
                let mut ascii = vec![b'x'; n];
                ascii[i] = 0xc3;
                samples.push(ascii.clone());
                ascii[i] = 0x7f;
                samples.push(ascii);
            }
        }
        for bytes in &samples {
            assert_eq!(text(bytes), std::str::from_utf8(bytes).ok(), "{bytes:02x?}");
        }
    }

    #[test]
    fn the_fast_field_walk_checks_as_field_ok_does() {
        // `checked` against the walk it replaced, field by field up to the
        // first refusal, for each kind of message, its encodings changed.
        // Each field as its number, value and whole bytes.
        type Walked = Vec<Option<(u32, Vec<u8>, Vec<u8>)>>;
        fn generic(buf: &[u8], spec: Spec) -> Walked {
            let mut order = Order::default();
            let mut out = Vec::new();
            for field in Fields::of(buf) {
                let field = field.filter(|f| {
                    (spec.0)(f.number).is_some_and(|(ty, card)| {
                        order.admits(f.number, card) && field_ok(f, ty, card, false, 0)
                    })
                });
                out.push(field.map(|f| (f.number, f.value.to_vec(), f.whole.to_vec())));
                if out.last() == Some(&None) {
                    break;
                }
            }
            out
        }
        fn fast(buf: &[u8], spec: Spec) -> Walked {
            let mut out = Vec::new();
            for field in checked(buf, spec) {
                out.push(field.map(|f| (f.number, f.value.to_vec(), f.whole.to_vec())));
                if out.last() == Some(&None) {
                    break;
                }
            }
            out
        }
        let data = sample();
        let rs = &data.resource_spans[0];
        let ss = &rs.scope_spans[0];
        let span = &ss.spans[0];
        let messages: [(Vec<u8>, Spec); 8] = [
            (data.encode_to_vec(), Spec(traces_data)),
            (rs.encode_to_vec(), Spec(resource_spans)),
            (
                rs.resource.as_ref().unwrap().encode_to_vec(),
                Spec(resource),
            ),
            (ss.encode_to_vec(), Spec(scope_spans)),
            (ss.scope.as_ref().unwrap().encode_to_vec(), Spec(scope)),
            (span.encode_to_vec(), Spec(self::span)),
            (span.events[0].encode_to_vec(), Spec(event)),
            (span.links[0].encode_to_vec(), Spec(link)),
        ];
        let mut compared = 0;
        for (bytes, spec) in messages {
            let mut variants: Vec<Vec<u8>> =
                (0..=bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            for i in 0..bytes.len() {
                for b in [0x00, 0x01, 0x0a, 0x12, 0x1a, 0x22, 0x7f, 0x80, 0xff] {
                    let mut v = bytes.clone();
                    v[i] = b;
                    variants.push(v);
                }
            }
            // An empty field, or one of a non-UTF-8 byte, of each one-byte
            // LEN key, first and last.
            for tag in (0x0a..0x80).step_by(8) {
                for insert in [vec![tag, 0], vec![tag, 1, 0xff]] {
                    variants.push([insert.as_slice(), &bytes].concat());
                    variants.push([bytes.as_slice(), &insert].concat());
                }
            }
            for v in variants {
                assert_eq!(fast(&v, spec), generic(&v, spec), "{v:02x?}");
                compared += 1;
            }
        }
        assert!(compared > 1000, "{compared}");
    }

    #[test]
    fn a_message_is_read_when_prost_writes_it_back_as_it_is() {
        // Every truncation and byte change of the sample: read (its spans
        // those prost decodes) exactly when prost writes it back as it is.
        let bytes = sample().encode_to_vec();
        let mut variants: Vec<Vec<u8>> = (0..=bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        for i in 0..bytes.len() {
            for b in [0x00, 0x01, 0x0a, 0x12, 0x1a, 0x22, 0x7f, 0x80, 0xff] {
                let mut v = bytes.clone();
                v[i] = b;
                variants.push(v);
            }
        }
        let mut read_some = 0;
        for v in &variants {
            let same =
                TracesData::decode(v.as_slice()).is_ok_and(|data| data.encode_to_vec() == *v);
            let t = read(v);
            assert_eq!(t.is_some(), same, "{v:02x?}");
            if let Some(t) = t {
                let data = TracesData::decode(v.as_slice()).unwrap();
                assert_eq!(t.spans.len(), crate::flat::flatten(&data).len());
                read_some += 1;
            }
        }
        assert!(read_some > 100, "{read_some}");
    }

    #[test]
    fn anything_prost_would_write_differently_is_refused() {
        let bytes = sample().encode_to_vec();
        assert!(read(&bytes).is_some());
        // An unknown field at the end.
        let mut unknown = bytes.clone();
        unknown.extend_from_slice(&[0x10, 0x01]);
        assert!(read(&unknown).is_none());
        // A span's kind written as its default (0).
        let zero_kind = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        }
        .encode_to_vec();
        let mut with_zero = zero_kind.clone();
        with_zero.extend_from_slice(&[0x30, 0x00]);
        let wrap = |span: &[u8]| {
            let mut scope = vec![0x12];
            put_varint(&mut scope, span.len() as u64);
            scope.extend_from_slice(span);
            let mut rs = vec![0x12];
            put_varint(&mut rs, scope.len() as u64);
            rs.extend_from_slice(&scope);
            let mut td = vec![0x0a];
            put_varint(&mut td, rs.len() as u64);
            td.extend_from_slice(&rs);
            td
        };
        assert!(read(&wrap(&zero_kind)).is_some());
        assert!(read(&wrap(&with_zero)).is_none());
        // Fields out of order: the span ID before the trace ID.
        let (trace, rest) = zero_kind.split_at(18);
        let swapped = [rest, trace].concat();
        assert!(read(&wrap(&swapped)).is_none());
        // A longer varint than needed (kind 1 as two bytes).
        let mut long = zero_kind.clone();
        long.extend_from_slice(&[0x30, 0x81, 0x00]);
        assert!(read(&wrap(&long)).is_none());
        // Not a message at all.
        assert!(read(&[0x0a, 0x05, 0x01]).is_none());
    }
}
