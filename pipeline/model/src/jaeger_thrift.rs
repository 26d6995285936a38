//! Jaeger's Thrift wire formats, decoded to [`crate::jaeger_in`].
//!
//! In: a `jaeger.Batch` struct as the body of `POST /api/traces` (Thrift
//! binary protocol), or one UDP datagram holding an `Agent` call message
//! (`emitBatch(1: jaeger.Batch batch)`, compact protocol on 6831, binary on
//! 6832); the IDL is `jaeger-idl/thrift/jaeger.thrift` and `agent.thrift`.
//! Out: a [`Batch`], or an [`AgentCall`].
//!
//! Guarantees:
//! - hostile input costs at most a small multiple of its own size: every
//!   declared length is checked against the bytes that remain *before*
//!   anything is allocated (a string or binary may not be longer than what
//!   is left, a list may not hold more elements than the smallest encoding
//!   of its element type fits in what is left), lists never preallocate
//!   more than [`PREALLOCATE_MAX`] elements, and structs, lists, sets and
//!   maps nest at most [`MAX_DEPTH`] deep; decoding never panics;
//! - unknown fields of every type are skipped, as Thrift requires, and so is
//!   a known field sent with an unexpected type (what Thrift's generated Go
//!   code does); trailing bytes after the message are ignored;
//! - required fields are enforced as Jaeger's generated Go code enforces
//!   them (`Required field ... is not set`), so a span without IDs, times,
//!   operation name or flags is an error, not a half-filled span;
//! - strings that are not UTF-8 are decoded lossily (Go keeps the bytes,
//!   Rust strings cannot), never refused.
//!
//! The encoders ([`encode_batch`], [`encode_agent_call`]) write the same
//! formats; skein's receivers do not need them, tests and tools do.

use std::fmt;

use crate::jaeger_in::{Batch, Log, Process, RefType, Span, SpanRef, Tag, TagValue};

/// The deepest nesting of structs and containers accepted. Jaeger's own
/// messages nest 6 deep (message, arguments, batch, span, log, tag).
pub const MAX_DEPTH: usize = 32;

/// The most list elements reserved in advance, whatever a list declares; a
/// longer list grows as its elements actually decode.
pub const PREALLOCATE_MAX: usize = 64;

/// Which Thrift protocol encodes the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `TBinaryProtocol`: fixed-width big-endian integers.
    Binary,
    /// `TCompactProtocol`: varints and field ID deltas.
    Compact,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Binary => "binary",
            Self::Compact => "compact",
        })
    }
}

/// A call the Jaeger agent's UDP port accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentCall {
    /// `emitBatch(1: jaeger.Batch batch)`.
    EmitBatch(Batch),
    /// `emitZipkinBatch(1: list<zipkincore.Span> spans)`; its arguments are
    /// not decoded.
    EmitZipkinBatch,
}

/// Bytes that are not the Thrift message they should be. Never retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decode jaeger thrift ({protocol}) at byte {offset}: {reason}")]
pub struct DecodeError {
    /// The protocol the bytes were read with.
    pub protocol: Protocol,
    /// Where in the input the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

impl DecodeError {
    /// Whether the same input can decode later: never.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// Decodes a bare `jaeger.Batch` struct, as the body of Jaeger's
/// `POST /api/traces` carries it (binary protocol).
pub fn decode_batch(bytes: &[u8], protocol: Protocol) -> Result<Batch> {
    let mut r = Reader::new(bytes, protocol);
    r.batch()
}

/// Decodes one `Agent` call message, as a Jaeger client sends it in a UDP
/// datagram: the message envelope (strict or old-style in the binary
/// protocol), then the call's arguments struct.
pub fn decode_agent_call(bytes: &[u8], protocol: Protocol) -> Result<AgentCall> {
    let mut r = Reader::new(bytes, protocol);
    let (name, message_type) = r.message_begin()?;
    if message_type != MESSAGE_CALL && message_type != MESSAGE_ONEWAY {
        return Err(r.error(format!(
            "message type {message_type} is not a call (1) or a oneway call (4)"
        )));
    }
    match name.as_str() {
        "emitBatch" => {
            let mut batch = None;
            r.read_struct(|r, id, ty| {
                if id == 1 && ty == Type::Struct {
                    batch = Some(r.batch()?);
                    return Ok(true);
                }
                Ok(false)
            })?;
            batch
                .map(AgentCall::EmitBatch)
                .ok_or_else(|| r.error("emitBatch arguments have no batch (field 1)".to_owned()))
        }
        "emitZipkinBatch" => Ok(AgentCall::EmitZipkinBatch),
        other => {
            let shown: String = other.chars().take(64).collect();
            Err(r.error(format!("unknown agent method {shown:?}")))
        }
    }
}

/// Encodes a bare `jaeger.Batch` struct (the body of `POST /api/traces`
/// with the binary protocol). A span's own `process` is not encoded: Thrift
/// spans have none.
pub fn encode_batch(batch: &Batch, protocol: Protocol) -> Vec<u8> {
    let mut w = Writer::new(protocol);
    w.batch(batch);
    w.out
}

/// Encodes an `Agent.emitBatch` oneway call message (a UDP datagram), with
/// a strict message header in the binary protocol.
pub fn encode_agent_call(batch: &Batch, protocol: Protocol, sequence: i32) -> Vec<u8> {
    let mut w = Writer::new(protocol);
    w.message_begin("emitBatch", MESSAGE_ONEWAY, sequence);
    w.struct_begin();
    w.field(Type::Struct, 1);
    w.batch(batch);
    w.struct_end();
    w.out
}

const MESSAGE_CALL: u8 = 1;
const MESSAGE_ONEWAY: u8 = 4;

/// Binary protocol: strict message header `0x8001_00TT`.
const BINARY_VERSION_1: u32 = 0x8001_0000;
const BINARY_VERSION_MASK: u32 = 0xffff_0000;
/// Compact protocol: the first byte of a message, then version 1.
const COMPACT_PROTOCOL_ID: u8 = 0x82;
const COMPACT_VERSION: u8 = 1;

/// Thrift value types (protocol independent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Bool,
    Byte,
    Double,
    I16,
    I32,
    I64,
    Binary,
    Struct,
    Map,
    Set,
    List,
    Uuid,
}

impl Type {
    fn from_binary(b: u8) -> Option<Self> {
        Some(match b {
            2 => Self::Bool,
            3 => Self::Byte,
            4 => Self::Double,
            6 => Self::I16,
            8 => Self::I32,
            10 => Self::I64,
            11 => Self::Binary,
            12 => Self::Struct,
            13 => Self::Map,
            14 => Self::Set,
            15 => Self::List,
            16 => Self::Uuid,
            _ => return None,
        })
    }

    fn to_binary(self) -> u8 {
        match self {
            Self::Bool => 2,
            Self::Byte => 3,
            Self::Double => 4,
            Self::I16 => 6,
            Self::I32 => 8,
            Self::I64 => 10,
            Self::Binary => 11,
            Self::Struct => 12,
            Self::Map => 13,
            Self::Set => 14,
            Self::List => 15,
            Self::Uuid => 16,
        }
    }

    /// A compact type nibble; 1 and 2 are both bool (true and false in a
    /// field header).
    fn from_compact(b: u8) -> Option<Self> {
        Some(match b {
            1 | 2 => Self::Bool,
            3 => Self::Byte,
            4 => Self::I16,
            5 => Self::I32,
            6 => Self::I64,
            7 => Self::Double,
            8 => Self::Binary,
            9 => Self::List,
            10 => Self::Set,
            11 => Self::Map,
            12 => Self::Struct,
            13 => Self::Uuid,
            _ => return None,
        })
    }

    fn to_compact(self) -> u8 {
        match self {
            Self::Bool => 1,
            Self::Byte => 3,
            Self::I16 => 4,
            Self::I32 => 5,
            Self::I64 => 6,
            Self::Double => 7,
            Self::Binary => 8,
            Self::List => 9,
            Self::Set => 10,
            Self::Map => 11,
            Self::Struct => 12,
            Self::Uuid => 13,
        }
    }

    /// The fewest bytes one value of this type takes, so that a declared
    /// element count can be checked against what remains.
    fn min_size(self, protocol: Protocol) -> usize {
        match (protocol, self) {
            (_, Self::Double) => 8,
            (_, Self::Uuid) => 16,
            (Protocol::Compact, _) => 1,
            (Protocol::Binary, Self::Bool | Self::Byte | Self::Struct) => 1,
            (Protocol::Binary, Self::I16) => 2,
            (Protocol::Binary, Self::I32 | Self::Binary) => 4,
            (Protocol::Binary, Self::I64) => 8,
            (Protocol::Binary, Self::List | Self::Set) => 5,
            (Protocol::Binary, Self::Map) => 6,
        }
    }
}

/// A bounded reader over one message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    protocol: Protocol,
    depth: usize,
    /// Compact protocol: a bool field's value, carried in its header.
    pending_bool: Option<bool>,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], protocol: Protocol) -> Self {
        Self {
            buf,
            pos: 0,
            protocol,
            depth: 0,
            pending_bool: None,
        }
    }

    fn error(&self, reason: String) -> DecodeError {
        DecodeError {
            protocol: self.protocol,
            offset: self.pos,
            reason,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "needs {n} bytes but only {} remain",
                self.remaining()
            )));
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().expect("took exactly N bytes"))
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH}")));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn varint(&mut self, max_bytes: usize) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(format!("varint longer than {max_bytes} bytes")))
    }

    fn zigzag32(&mut self) -> Result<i32> {
        let n = self.varint(5)? as u32;
        Ok((n >> 1) as i32 ^ -((n & 1) as i32))
    }

    fn zigzag64(&mut self) -> Result<i64> {
        let n = self.varint(10)?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    fn read_bool(&mut self) -> Result<bool> {
        if let Some(b) = self.pending_bool.take() {
            return Ok(b);
        }
        // Binary: 1 is true; compact, in a list: 1 (CT_BOOLEAN_TRUE) is
        // true. Anything else is false, as Go's and Java's readers have it.
        Ok(self.byte()? == 1)
    }

    fn read_i16(&mut self) -> Result<i16> {
        match self.protocol {
            Protocol::Binary => Ok(i16::from_be_bytes(self.array()?)),
            Protocol::Compact => Ok(self.zigzag32()? as i16),
        }
    }

    fn read_i32(&mut self) -> Result<i32> {
        match self.protocol {
            Protocol::Binary => Ok(i32::from_be_bytes(self.array()?)),
            Protocol::Compact => self.zigzag32(),
        }
    }

    fn read_i64(&mut self) -> Result<i64> {
        match self.protocol {
            Protocol::Binary => Ok(i64::from_be_bytes(self.array()?)),
            Protocol::Compact => self.zigzag64(),
        }
    }

    fn read_double(&mut self) -> Result<f64> {
        match self.protocol {
            Protocol::Binary => Ok(f64::from_be_bytes(self.array()?)),
            Protocol::Compact => Ok(f64::from_le_bytes(self.array()?)),
        }
    }

    /// A declared size, checked before anything is allocated: not negative,
    /// and at most what `remaining / min_size` allows.
    fn checked_size(&self, what: &str, declared: i64, min_size: usize) -> Result<usize> {
        let fits = self.remaining() / min_size.max(1);
        if declared < 0 || declared as u64 > fits as u64 {
            return Err(self.error(format!(
                "{what} claims {declared} but at most {fits} fit in the {} bytes left",
                self.remaining()
            )));
        }
        Ok(declared as usize)
    }

    /// A string or binary, borrowed from the input.
    fn read_binary(&mut self) -> Result<&'a [u8]> {
        let declared = match self.protocol {
            Protocol::Binary => i64::from(self.read_i32()?),
            Protocol::Compact => self.varint(5)? as i64,
        };
        let len = self.checked_size("string length", declared, 1)?;
        self.take(len)
    }

    fn read_string(&mut self) -> Result<String> {
        Ok(String::from_utf8_lossy(self.read_binary()?).into_owned())
    }

    /// A list or set header: element type and count.
    fn list_begin(&mut self) -> Result<(Type, usize)> {
        let (ty, declared) = match self.protocol {
            Protocol::Binary => {
                let t = self.byte()?;
                let ty = Type::from_binary(t)
                    .ok_or_else(|| self.error(format!("unknown list element type {t}")))?;
                (ty, i64::from(self.read_i32()?))
            }
            Protocol::Compact => {
                let b = self.byte()?;
                let ty = Type::from_compact(b & 0x0f)
                    .ok_or_else(|| self.error(format!("unknown list element type {}", b & 0x0f)))?;
                let short = b >> 4;
                let n = if short == 15 {
                    self.varint(5)? as i64
                } else {
                    i64::from(short)
                };
                (ty, n)
            }
        };
        let n = self.checked_size("list size", declared, ty.min_size(self.protocol))?;
        Ok((ty, n))
    }

    /// A map header: key type, value type and count.
    fn map_begin(&mut self) -> Result<(Type, Type, usize)> {
        let (k, v, declared) = match self.protocol {
            Protocol::Binary => {
                let (k, v) = (self.byte()?, self.byte()?);
                let n = i64::from(self.read_i32()?);
                (Type::from_binary(k), Type::from_binary(v), n)
            }
            Protocol::Compact => {
                let n = self.varint(5)? as i64;
                if n == 0 {
                    return Ok((Type::Byte, Type::Byte, 0));
                }
                let kv = self.byte()?;
                (
                    Type::from_compact(kv >> 4),
                    Type::from_compact(kv & 0x0f),
                    n,
                )
            }
        };
        let (Some(k), Some(v)) = (k, v) else {
            return Err(self.error("unknown map key or value type".to_owned()));
        };
        let entry = k.min_size(self.protocol) + v.min_size(self.protocol);
        let n = self.checked_size("map size", declared, entry)?;
        Ok((k, v, n))
    }

    /// The next field header of a struct, `None` at its end. `last` is the
    /// previous field ID (compact protocol deltas).
    fn field_begin(&mut self, last: &mut i16) -> Result<Option<(i16, Type)>> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        match self.protocol {
            Protocol::Binary => {
                let ty = Type::from_binary(b)
                    .ok_or_else(|| self.error(format!("unknown field type {b}")))?;
                Ok(Some((self.read_i16()?, ty)))
            }
            Protocol::Compact => {
                let nibble = b & 0x0f;
                let ty = Type::from_compact(nibble)
                    .ok_or_else(|| self.error(format!("unknown field type {nibble}")))?;
                let delta = b >> 4;
                let id = if delta == 0 {
                    self.read_i16()?
                } else {
                    last.wrapping_add(i16::from(delta))
                };
                *last = id;
                if ty == Type::Bool {
                    self.pending_bool = Some(nibble == 1);
                }
                Ok(Some((id, ty)))
            }
        }
    }

    /// Reads a struct, handing each field to `field`, which reads it and
    /// answers true, or answers false to have it skipped.
    fn read_struct(
        &mut self,
        mut field: impl FnMut(&mut Self, i16, Type) -> Result<bool>,
    ) -> Result<()> {
        self.enter()?;
        let mut last = 0i16;
        while let Some((id, ty)) = self.field_begin(&mut last)? {
            if !field(self, id, ty)? {
                self.skip(ty)?;
            }
            // A bool field the callback did not read.
            self.pending_bool = None;
        }
        self.leave();
        Ok(())
    }

    fn skip(&mut self, ty: Type) -> Result<()> {
        match ty {
            Type::Bool => {
                self.read_bool()?;
            }
            Type::Byte => {
                self.take(1)?;
            }
            Type::I16 => {
                self.read_i16()?;
            }
            Type::I32 => {
                self.read_i32()?;
            }
            Type::I64 => {
                self.read_i64()?;
            }
            Type::Double => {
                self.take(8)?;
            }
            Type::Uuid => {
                self.take(16)?;
            }
            Type::Binary => {
                self.read_binary()?;
            }
            Type::Struct => self.read_struct(|_, _, _| Ok(false))?,
            Type::List | Type::Set => {
                let (elem, n) = self.list_begin()?;
                self.enter()?;
                for _ in 0..n {
                    self.skip(elem)?;
                }
                self.leave();
            }
            Type::Map => {
                let (k, v, n) = self.map_begin()?;
                self.enter()?;
                for _ in 0..n {
                    self.skip(k)?;
                    self.skip(v)?;
                }
                self.leave();
            }
        }
        Ok(())
    }

    /// A list of structs; a list of anything else is skipped whole.
    fn struct_list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let (elem, n) = self.list_begin()?;
        if elem != Type::Struct {
            self.enter()?;
            for _ in 0..n {
                self.skip(elem)?;
            }
            self.leave();
            return Ok(Vec::new());
        }
        self.enter()?;
        let mut out = Vec::with_capacity(n.min(PREALLOCATE_MAX));
        for _ in 0..n {
            out.push(item(self)?);
        }
        self.leave();
        Ok(out)
    }

    fn missing(&self, what: &str, field: &str) -> DecodeError {
        self.error(format!("required field {what}.{field} is not set"))
    }

    /// The message envelope: the method name and message type.
    fn message_begin(&mut self) -> Result<(String, u8)> {
        match self.protocol {
            Protocol::Binary => {
                let header = self.read_i32()?;
                if header < 0 {
                    let header = header as u32;
                    if header & BINARY_VERSION_MASK != BINARY_VERSION_1 {
                        return Err(self.error(format!("bad binary protocol version {header:#x}")));
                    }
                    let name = self.read_string()?;
                    self.read_i32()?; // sequence ID
                    Ok((name, (header & 0xff) as u8))
                } else {
                    // Old-style header: the name's length came first.
                    let len = self.checked_size("method name length", i64::from(header), 1)?;
                    let name = String::from_utf8_lossy(self.take(len)?).into_owned();
                    let message_type = self.byte()?;
                    self.read_i32()?; // sequence ID
                    Ok((name, message_type))
                }
            }
            Protocol::Compact => {
                let id = self.byte()?;
                if id != COMPACT_PROTOCOL_ID {
                    return Err(self.error(format!("bad compact protocol id {id:#x}")));
                }
                let b = self.byte()?;
                if b & 0x1f != COMPACT_VERSION {
                    return Err(self.error(format!("bad compact protocol version {}", b & 0x1f)));
                }
                self.varint(5)?; // sequence ID
                let name = self.read_string()?;
                Ok((name, (b >> 5) & 0x07))
            }
        }
    }

    fn batch(&mut self) -> Result<Batch> {
        let mut process = None;
        let mut spans = None;
        self.read_struct(|r, id, ty| {
            match (id, ty) {
                (1, Type::Struct) => process = Some(r.process()?),
                (2, Type::List) => spans = Some(r.struct_list(Self::span)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Batch {
            process: process.ok_or_else(|| self.missing("Batch", "process"))?,
            spans: spans.ok_or_else(|| self.missing("Batch", "spans"))?,
        })
    }

    fn process(&mut self) -> Result<Process> {
        let mut service_name = None;
        let mut tags = Vec::new();
        self.read_struct(|r, id, ty| {
            match (id, ty) {
                (1, Type::Binary) => service_name = Some(r.read_string()?),
                (2, Type::List) => tags = r.struct_list(Self::tag)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Process {
            service_name: service_name.ok_or_else(|| self.missing("Process", "serviceName"))?,
            tags,
        })
    }

    fn span(&mut self) -> Result<Span> {
        let mut span = Span::default();
        // Bits of the required fields seen, by field ID.
        let mut seen = 0u16;
        self.read_struct(|r, id, ty| {
            match (id, ty) {
                (1, Type::I64) => span.trace_id_low = r.read_i64()? as u64,
                (2, Type::I64) => span.trace_id_high = r.read_i64()? as u64,
                (3, Type::I64) => span.span_id = r.read_i64()? as u64,
                (4, Type::I64) => span.parent_span_id = r.read_i64()? as u64,
                (5, Type::Binary) => span.operation_name = r.read_string()?,
                (6, Type::List) => span.references = r.struct_list(Self::span_ref)?,
                (7, Type::I32) => span.flags = r.read_i32()? as u32,
                (8, Type::I64) => span.start_time_us = r.read_i64()?,
                (9, Type::I64) => span.duration_us = r.read_i64()?,
                (10, Type::List) => span.tags = r.struct_list(Self::tag)?,
                (11, Type::List) => span.logs = r.struct_list(Self::log)?,
                _ => return Ok(false),
            }
            seen |= 1 << id;
            Ok(true)
        })?;
        for (id, name) in [
            (1, "traceIdLow"),
            (2, "traceIdHigh"),
            (3, "spanId"),
            (4, "parentSpanId"),
            (5, "operationName"),
            (7, "flags"),
            (8, "startTime"),
            (9, "duration"),
        ] {
            if seen & (1 << id) == 0 {
                return Err(self.missing("Span", name));
            }
        }
        Ok(span)
    }

    fn span_ref(&mut self) -> Result<SpanRef> {
        let mut r_out = SpanRef::default();
        let mut seen = 0u8;
        self.read_struct(|r, id, ty| {
            match (id, ty) {
                // An unknown value is not a parent candidate in Jaeger;
                // it is kept as the weaker FOLLOWS_FROM.
                (1, Type::I32) => {
                    r_out.ref_type = match r.read_i32()? {
                        0 => RefType::ChildOf,
                        _ => RefType::FollowsFrom,
                    }
                }
                (2, Type::I64) => r_out.trace_id_low = r.read_i64()? as u64,
                (3, Type::I64) => r_out.trace_id_high = r.read_i64()? as u64,
                (4, Type::I64) => r_out.span_id = r.read_i64()? as u64,
                _ => return Ok(false),
            }
            seen |= 1 << id;
            Ok(true)
        })?;
        for (id, name) in [
            (1, "refType"),
            (2, "traceIdLow"),
            (3, "traceIdHigh"),
            (4, "spanId"),
        ] {
            if seen & (1 << id) == 0 {
                return Err(self.missing("SpanRef", name));
            }
        }
        Ok(r_out)
    }

    fn log(&mut self) -> Result<Log> {
        let mut timestamp = None;
        let mut fields = None;
        self.read_struct(|r, id, ty| {
            match (id, ty) {
                (1, Type::I64) => timestamp = Some(r.read_i64()?),
                (2, Type::List) => fields = Some(r.struct_list(Self::tag)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Log {
            timestamp_us: timestamp.ok_or_else(|| self.missing("Log", "timestamp"))?,
            fields: fields.ok_or_else(|| self.missing("Log", "fields"))?,
        })
    }

    /// A tag's value is the field its `vType` names; the zero value when that
    /// field is absent, like the Go getters (clients such as Node's set
    /// every value field and let `vType` choose).
    fn tag(&mut self) -> Result<Tag> {
        let mut key = None;
        let mut v_type = None;
        let (mut v_str, mut v_double, mut v_bool, mut v_long, mut v_binary) =
            (None, None, None, None, None);
        self.read_struct(|r, id, ty| {
            match (id, ty) {
                (1, Type::Binary) => key = Some(r.read_string()?),
                (2, Type::I32) => v_type = Some(r.read_i32()?),
                (3, Type::Binary) => v_str = Some(r.read_binary()?),
                (4, Type::Double) => v_double = Some(r.read_double()?),
                (5, Type::Bool) => v_bool = Some(r.read_bool()?),
                (6, Type::I64) => v_long = Some(r.read_i64()?),
                (7, Type::Binary) => v_binary = Some(r.read_binary()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let key = key.ok_or_else(|| self.missing("Tag", "key"))?;
        let v_type = v_type.ok_or_else(|| self.missing("Tag", "vType"))?;
        let value = match v_type {
            0 => TagValue::Str(String::from_utf8_lossy(v_str.unwrap_or_default()).into_owned()),
            1 => TagValue::Double(v_double.unwrap_or_default()),
            2 => TagValue::Bool(v_bool.unwrap_or_default()),
            3 => TagValue::Long(v_long.unwrap_or_default()),
            4 => TagValue::Binary(v_binary.unwrap_or_default().to_vec()),
            // What the Collector writes for a type it does not know.
            _ => TagValue::Str("<Unknown Jaeger TagType \"<UNSET>\">".to_owned()),
        };
        Ok(Tag { key, value })
    }
}

/// A writer for the same formats.
struct Writer {
    out: Vec<u8>,
    protocol: Protocol,
    /// Compact protocol: the last field ID of each open struct.
    last: Vec<i16>,
}

impl Writer {
    fn new(protocol: Protocol) -> Self {
        Self {
            out: Vec::new(),
            protocol,
            last: vec![0],
        }
    }

    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.out.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.out.push(n as u8);
    }

    fn i16(&mut self, v: i16) {
        match self.protocol {
            Protocol::Binary => self.out.extend_from_slice(&v.to_be_bytes()),
            Protocol::Compact => self.varint(((v << 1) ^ (v >> 15)) as u16 as u64),
        }
    }

    fn i32(&mut self, v: i32) {
        match self.protocol {
            Protocol::Binary => self.out.extend_from_slice(&v.to_be_bytes()),
            Protocol::Compact => self.varint(((v << 1) ^ (v >> 31)) as u32 as u64),
        }
    }

    fn i64(&mut self, v: i64) {
        match self.protocol {
            Protocol::Binary => self.out.extend_from_slice(&v.to_be_bytes()),
            Protocol::Compact => self.varint(((v << 1) ^ (v >> 63)) as u64),
        }
    }

    fn double(&mut self, v: f64) {
        match self.protocol {
            Protocol::Binary => self.out.extend_from_slice(&v.to_be_bytes()),
            Protocol::Compact => self.out.extend_from_slice(&v.to_le_bytes()),
        }
    }

    fn binary(&mut self, b: &[u8]) {
        match self.protocol {
            Protocol::Binary => self.i32(b.len() as i32),
            Protocol::Compact => self.varint(b.len() as u64),
        }
        self.out.extend_from_slice(b);
    }

    fn message_begin(&mut self, name: &str, message_type: u8, sequence: i32) {
        match self.protocol {
            Protocol::Binary => {
                self.i32((BINARY_VERSION_1 | u32::from(message_type)) as i32);
                self.binary(name.as_bytes());
                self.i32(sequence);
            }
            Protocol::Compact => {
                self.out.push(COMPACT_PROTOCOL_ID);
                self.out.push(COMPACT_VERSION | (message_type << 5));
                self.varint(u64::from(sequence as u32));
                self.binary(name.as_bytes());
            }
        }
    }

    fn struct_begin(&mut self) {
        self.last.push(0);
    }

    fn struct_end(&mut self) {
        self.out.push(0);
        self.last.pop();
    }

    /// A field header (not for bools in the compact protocol: see
    /// [`Self::bool_field`]).
    fn field(&mut self, ty: Type, id: i16) {
        self.field_with(ty.to_binary(), ty.to_compact(), id);
    }

    fn field_with(&mut self, binary_type: u8, compact_type: u8, id: i16) {
        match self.protocol {
            Protocol::Binary => {
                self.out.push(binary_type);
                self.i16(id);
            }
            Protocol::Compact => {
                let last = self.last.last_mut().expect("inside a struct");
                let delta = i32::from(id) - i32::from(*last);
                *last = id;
                if (1..=15).contains(&delta) {
                    self.out.push(((delta as u8) << 4) | compact_type);
                } else {
                    self.out.push(compact_type);
                    self.i16(id);
                }
            }
        }
    }

    fn bool_field(&mut self, id: i16, v: bool) {
        match self.protocol {
            Protocol::Binary => {
                self.field(Type::Bool, id);
                self.out.push(u8::from(v));
            }
            Protocol::Compact => self.field_with(0, if v { 1 } else { 2 }, id),
        }
    }

    fn list_begin(&mut self, elem: Type, n: usize) {
        match self.protocol {
            Protocol::Binary => {
                self.out.push(elem.to_binary());
                self.i32(n as i32);
            }
            Protocol::Compact => {
                if n < 15 {
                    self.out.push(((n as u8) << 4) | elem.to_compact());
                } else {
                    self.out.push(0xf0 | elem.to_compact());
                    self.varint(n as u64);
                }
            }
        }
    }

    fn list<T>(&mut self, id: i16, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.field(Type::List, id);
        self.list_begin(Type::Struct, items.len());
        for i in items {
            item(self, i);
        }
    }

    fn batch(&mut self, b: &Batch) {
        self.struct_begin();
        self.field(Type::Struct, 1);
        self.process(&b.process);
        self.list(2, &b.spans, Self::span);
        self.struct_end();
    }

    fn process(&mut self, p: &Process) {
        self.struct_begin();
        self.field(Type::Binary, 1);
        self.binary(p.service_name.as_bytes());
        if !p.tags.is_empty() {
            self.list(2, &p.tags, Self::tag);
        }
        self.struct_end();
    }

    fn span(&mut self, s: &Span) {
        self.struct_begin();
        for (id, v) in [
            (1, s.trace_id_low),
            (2, s.trace_id_high),
            (3, s.span_id),
            (4, s.parent_span_id),
        ] {
            self.field(Type::I64, id);
            self.i64(v as i64);
        }
        self.field(Type::Binary, 5);
        self.binary(s.operation_name.as_bytes());
        if !s.references.is_empty() {
            self.list(6, &s.references, Self::span_ref);
        }
        self.field(Type::I32, 7);
        self.i32(s.flags as i32);
        self.field(Type::I64, 8);
        self.i64(s.start_time_us);
        self.field(Type::I64, 9);
        self.i64(s.duration_us);
        if !s.tags.is_empty() {
            self.list(10, &s.tags, Self::tag);
        }
        if !s.logs.is_empty() {
            self.list(11, &s.logs, Self::log);
        }
        self.struct_end();
    }

    fn span_ref(&mut self, r: &SpanRef) {
        self.struct_begin();
        self.field(Type::I32, 1);
        self.i32(match r.ref_type {
            RefType::ChildOf => 0,
            RefType::FollowsFrom => 1,
        });
        for (id, v) in [(2, r.trace_id_low), (3, r.trace_id_high), (4, r.span_id)] {
            self.field(Type::I64, id);
            self.i64(v as i64);
        }
        self.struct_end();
    }

    fn log(&mut self, l: &Log) {
        self.struct_begin();
        self.field(Type::I64, 1);
        self.i64(l.timestamp_us);
        self.list(2, &l.fields, Self::tag);
        self.struct_end();
    }

    fn tag(&mut self, t: &Tag) {
        self.struct_begin();
        self.field(Type::Binary, 1);
        self.binary(t.key.as_bytes());
        self.field(Type::I32, 2);
        match &t.value {
            TagValue::Str(s) => {
                self.i32(0);
                self.field(Type::Binary, 3);
                self.binary(s.as_bytes());
            }
            TagValue::Double(d) => {
                self.i32(1);
                self.field(Type::Double, 4);
                self.double(*d);
            }
            TagValue::Bool(b) => {
                self.i32(2);
                self.bool_field(5, *b);
            }
            TagValue::Long(i) => {
                self.i32(3);
                self.field(Type::I64, 6);
                self.i64(*i);
            }
            TagValue::Binary(b) => {
                self.i32(4);
                self.field(Type::Binary, 7);
                self.binary(b);
            }
        }
        self.struct_end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [Protocol; 2] = [Protocol::Binary, Protocol::Compact];

    /// `emitBatch` written by Apache Thrift's Python `TCompactProtocol` (0.22).
    const PYTHON_COMPACT: &str = concat!(
    "82810909656d697442617463681c1c180670792d737663192c1808686f73746e616d651500180770792d686f73740018",
    "0e6a61656765722e76657273696f6e1500180c507974686f6e2d342e382e300000191c168f9cb0d080c181820216b0dc",
    "b0d182c589922216031600180570792d6f70191c1500168f9cb0d080c181820216b0dcb0d182c5899222169a01001502",
    "16808981828389850616882719fc161801731500180373747200180164150227000000000000d03f0018016215043100",
    "1801661504320018016c150646e9f0e0fd5b00180178150858030001fe0018026b30150646000018026b311506460200",
    "18026b32150646040018026b33150646060018026b34150646080018026b351506460a0018026b361506460c0018026b",
    "371506460e0018026b38150646100018026b39150646120018036b3130150646140018036b3131150646160018036b31",
    "32150646180018036b31331506461a0018036b31341506461c0018036b31351506461e00191c16c09181828389850619",
    "2c18056576656e74150018057265747279001807617474656d7074150646040000110b500189016d27000000000000f0",
    "3f00000000000000400016180000",
    );
    /// The same call written by Apache Thrift's Python `TBinaryProtocol`.
    const PYTHON_BINARY: &str = concat!(
    "8001000400000009656d69744261746368000000090c00010c00010b00010000000670792d7376630f00020c00000002",
    "0b000100000008686f73746e616d65080002000000000b00030000000770792d686f7374000b00010000000e6a616567",
    "65722e76657273696f6e080002000000000b00030000000c507974686f6e2d342e382e3000000f00020c000000010a00",
    "01fefdfcfbfaf9f8f80a000211121314151617180a0003fffffffffffffffe0a000400000000000000000b0005000000",
    "0570792d6f700f00060c00000001080001000000000a0002fefdfcfbfaf9f8f80a000311121314151617180a00040000",
    "00000000004d00080007000000010a000800060a24182022400a000900000000000009c40f000a0c000000160b000100",
    "00000173080002000000000b000300000003737472000b00010000000164080002000000010400043fd0000000000000",
    "000b000100000001620800020000000202000501000b000100000001660800020000000202000500000b000100000001",
    "6c080002000000030a0006fffffffd2023e3cb000b00010000000178080002000000040b0007000000030001fe000b00",
    "01000000026b30080002000000030a00060000000000000000000b0001000000026b31080002000000030a0006000000",
    "0000000001000b0001000000026b32080002000000030a00060000000000000002000b0001000000026b330800020000",
    "00030a00060000000000000003000b0001000000026b34080002000000030a00060000000000000004000b0001000000",
    "026b35080002000000030a00060000000000000005000b0001000000026b36080002000000030a000600000000000000",
    "06000b0001000000026b37080002000000030a00060000000000000007000b0001000000026b38080002000000030a00",
    "060000000000000008000b0001000000026b39080002000000030a00060000000000000009000b0001000000036b3130",
    "080002000000030a0006000000000000000a000b0001000000036b3131080002000000030a0006000000000000000b00",
    "0b0001000000036b3132080002000000030a0006000000000000000c000b0001000000036b3133080002000000030a00",
    "06000000000000000d000b0001000000036b3134080002000000030a0006000000000000000e000b0001000000036b31",
    "35080002000000030a0006000000000000000f000f000b0c000000010a000100060a24182024600f00020c000000020b",
    "0001000000056576656e74080002000000000b0003000000057265747279000b000100000007617474656d7074080002",
    "000000030a00060000000000000002000002000c010d00280b0f00000001000000016d04000000023ff0000000000000",
    "4000000000000000000a0003000000000000000c0000",
    );
    /// A datagram captured from Node `jaeger-client` 3.19.0's `UDPSender`.
    const NODE_UDP: &str = concat!(
    "8001000400000009656d69744261746368000000000c00010c00010b00010000000b666978747572652d7376630f0002",
    "0c000000040b000100000008686f73746e616d65080002000000000b00030000000c666978747572652d686f73740400",
    "040000000000000000020005000a000600000000000000000b0007000000080000000000000000000b00010000000269",
    "70080002000000000b00030000000831302e302e302e310400040000000000000000020005000a000600000000000000",
    "000b0007000000080000000000000000000b00010000000b636c69656e742d75756964080002000000000b0003000000",
    "2464333765383435342d316433652d343630382d616237352d3163353837646366393139360400040000000000000000",
    "020005000a000600000000000000000b0007000000080000000000000000000b00010000000e6a61656765722e766572",
    "73696f6e080002000000000b00030000000b4e6f64652d332e31392e300400040000000000000000020005000a000600",
    "000000000000000b000700000008000000000000000000000f00020c000000020a0001a689cf2cb2e543d20a00020000",
    "0000000000000a0003712b3231101fec090a0004a689cf2cb2e543d20b0005000000056368696c640f00060c00000000",
    "080007000000010a000800066118111b83080a000900000000000000000f000a0c000000030b0001000000016e080002",
    "000000010b0003000000000400044045000000000000020005000a000600000000000000000b00070000000800000000",
    "00000000000b00010000000173080002000000000b000300000001780400040000000000000000020005000a00060000",
    "0000000000000b0007000000080000000000000000000b00010000000162080002000000020b00030000000004000400",
    "00000000000000020005010a000600000000000000000b0007000000080000000000000000000f000b0c000000010a00",
    "0100066118111b83080f00020c000000020b0001000000056576656e74080002000000000b0003000000016504000400",
    "00000000000000020005000a000600000000000000000b0007000000080000000000000000000b0001000000016b0800",
    "02000000000b000300000001760400040000000000000000020005000a000600000000000000000b0007000000080000",
    "0000000000000000000a0001a689cf2cb2e543d20a000200000000000000000a0003a689cf2cb2e543d20a0004000000",
    "00000000000b000500000006706172656e740f00060c00000000080007000000010a000800066118111b7f200a000900",
    "000000000003e80f000a0c000000030b00010000000c73616d706c65722e74797065080002000000000b000300000005",
    "636f6e73740400040000000000000000020005000a000600000000000000000b0007000000080000000000000000000b",
    "00010000000d73616d706c65722e706172616d080002000000020b000300000000040004000000000000000002000501",
    "0a000600000000000000000b0007000000080000000000000000000b0001000000097370616e2e6b696e640800020000",
    "00000b0003000000067365727665720400040000000000000000020005000a000600000000000000000b000700000008",
    "0000000000000000000f000b0c00000000000000",
    );
    /// A body captured from Node `jaeger-client` 3.19.0's `HTTPSender`.
    const NODE_HTTP: &str = concat!(
    "0c00010b00010000000b666978747572652d7376630f00020c000000040b000100000008686f73746e616d6508000200",
    "0000000b00030000000c666978747572652d686f73740400040000000000000000020005000a00060000000000000000",
    "0b0007000000080000000000000000000b0001000000026970080002000000000b00030000000831302e302e302e3104",
    "00040000000000000000020005000a000600000000000000000b0007000000080000000000000000000b00010000000b",
    "636c69656e742d75756964080002000000000b00030000002433653663626462632d623865662d346538632d61396336",
    "2d3562343432333266346636610400040000000000000000020005000a000600000000000000000b0007000000080000",
    "000000000000000b00010000000e6a61656765722e76657273696f6e080002000000000b00030000000b4e6f64652d33",
    "2e31392e300400040000000000000000020005000a000600000000000000000b00070000000800000000000000000000",
    "0f00020c000000020a000128171301203684a80a0002f0324ed37e121aa00a0003c5875433c3a945940a000428171301",
    "203684a80b0005000000056368696c640f00060c00000000080007000000010a000800066118111b8ec00a0009000000",
    "00000000000f000a0c000000030b0001000000016e080002000000010b00030000000004000440450000000000000200",
    "05000a000600000000000000000b0007000000080000000000000000000b00010000000173080002000000000b000300",
    "000001780400040000000000000000020005000a000600000000000000000b0007000000080000000000000000000b00",
    "010000000162080002000000020b0003000000000400040000000000000000020005010a000600000000000000000b00",
    "07000000080000000000000000000f000b0c000000010a000100066118111b8ec00f00020c000000020b000100000005",
    "6576656e74080002000000000b000300000001650400040000000000000000020005000a000600000000000000000b00",
    "07000000080000000000000000000b0001000000016b080002000000000b000300000001760400040000000000000000",
    "020005000a000600000000000000000b00070000000800000000000000000000000a000128171301203684a80a0002f0",
    "324ed37e121aa00a000328171301203684a80a000400000000000000000b000500000006706172656e740f00060c0000",
    "0000080007000000010a000800066118111b8ec00a000900000000000000000f000a0c000000030b00010000000c7361",
    "6d706c65722e74797065080002000000000b000300000005636f6e73740400040000000000000000020005000a000600",
    "000000000000000b0007000000080000000000000000000b00010000000d73616d706c65722e706172616d0800020000",
    "00020b0003000000000400040000000000000000020005010a000600000000000000000b000700000008000000000000",
    "0000000b0001000000097370616e2e6b696e64080002000000000b000300000006736572766572040004000000000000",
    "0000020005000a000600000000000000000b0007000000080000000000000000000f000b0c000000000000",
    );

    fn unhex(h: &str) -> Vec<u8> {
        hex::decode(h).expect("fixture is hex")
    }

    /// What the Python fixtures hold.
    fn python_batch() -> Batch {
        let trace_low = (-0x0102_0304_0506_0708i64) as u64;
        let trace_high = 0x1112_1314_1516_1718;
        let mut tags = vec![
            Tag::str("s", "str"),
            Tag::new("d", TagValue::Double(0.25)),
            Tag::new("b", TagValue::Bool(true)),
            Tag::new("f", TagValue::Bool(false)),
            Tag::new("l", TagValue::Long(-12_345_678_901)),
            Tag::new("x", TagValue::Binary(vec![0, 1, 0xfe])),
        ];
        tags.extend((0..16).map(|i| Tag::new(format!("k{i}"), TagValue::Long(i))));
        Batch {
            process: Process {
                service_name: "py-svc".into(),
                tags: vec![
                    Tag::str("hostname", "py-host"),
                    Tag::str("jaeger.version", "Python-4.8.0"),
                ],
            },
            spans: vec![Span {
                trace_id_low: trace_low,
                trace_id_high: trace_high,
                span_id: u64::MAX - 1,
                parent_span_id: 0,
                operation_name: "py-op".into(),
                references: vec![SpanRef {
                    ref_type: RefType::ChildOf,
                    trace_id_low: trace_low,
                    trace_id_high: trace_high,
                    span_id: 77,
                }],
                flags: 1,
                start_time_us: 1_700_000_000_123_456,
                duration_us: 2_500,
                tags,
                logs: vec![Log {
                    timestamp_us: 1_700_000_000_124_000,
                    fields: vec![
                        Tag::str("event", "retry"),
                        Tag::new("attempt", TagValue::Long(2)),
                    ],
                }],
                process: None,
            }],
        }
    }

    /// Messages written by another Thrift implementation, with fields our
    /// IDL does not have (`Span.incomplete`, a map at field 40,
    /// `Batch.seqNo`), long-form compact field and list headers.
    #[test]
    fn decodes_what_apache_thrift_python_writes() {
        for (hex, p) in [
            (PYTHON_COMPACT, Protocol::Compact),
            (PYTHON_BINARY, Protocol::Binary),
        ] {
            let call = decode_agent_call(&unhex(hex), p).unwrap();
            assert_eq!(call, AgentCall::EmitBatch(python_batch()), "{p}");
        }
    }

    /// What the Node client actually sends: every tag value field set, the
    /// process tags the client adds, numbers as doubles.
    #[test]
    fn decodes_what_the_node_client_sends() {
        let AgentCall::EmitBatch(udp) =
            decode_agent_call(&unhex(NODE_UDP), Protocol::Binary).unwrap()
        else {
            panic!("not emitBatch")
        };
        let http = decode_batch(&unhex(NODE_HTTP), Protocol::Binary).unwrap();
        for (batch, high_zero) in [(udp, true), (http, false)] {
            assert_eq!(batch.process.service_name, "fixture-svc");
            let process_tags: Vec<_> = batch.process.tags.iter().map(|t| t.key.as_str()).collect();
            for key in ["jaeger.version", "hostname", "ip", "client-uuid"] {
                assert!(process_tags.contains(&key), "{process_tags:?}");
            }
            assert!(batch
                .process
                .tags
                .contains(&Tag::str("jaeger.version", "Node-3.19.0")));
            let [child, parent] = &batch.spans[..] else {
                panic!("{:?}", batch.spans)
            };
            assert_eq!(
                (
                    child.operation_name.as_str(),
                    parent.operation_name.as_str()
                ),
                ("child", "parent")
            );
            assert_eq!(child.trace_id_high == 0, high_zero);
            assert_eq!(
                (child.trace_id_low, child.trace_id_high),
                (parent.trace_id_low, parent.trace_id_high)
            );
            assert_eq!(child.parent_span_id, parent.span_id);
            assert_eq!(parent.parent_span_id, 0);
            // `childOf` travels as parentSpanId alone.
            assert!(child.references.is_empty());
            assert_eq!(child.flags, 1);
            assert!(child.tags.contains(&Tag::new("n", TagValue::Double(42.0))));
            assert!(child.tags.contains(&Tag::str("s", "x")));
            assert!(child.tags.contains(&Tag::new("b", TagValue::Bool(true))));
            assert!(parent.tags.contains(&Tag::str("span.kind", "server")));
            assert_eq!(
                child.logs[0].fields,
                [Tag::str("event", "e"), Tag::str("k", "v")]
            );
            assert!(child.start_time_us > 1_600_000_000_000_000);
        }
    }

    fn sample() -> Batch {
        Batch {
            process: Process {
                service_name: "svc".into(),
                tags: vec![
                    Tag::str("hostname", "box"),
                    Tag::new("pid", TagValue::Long(4242)),
                ],
            },
            spans: vec![
                Span {
                    trace_id_low: 0x0102_0304_0506_0708,
                    trace_id_high: 0xf1f2_f3f4_f5f6_f7f8,
                    span_id: 0xffff_ffff_ffff_fffe,
                    parent_span_id: 0,
                    operation_name: "GET /ünïcode".into(),
                    references: vec![SpanRef {
                        ref_type: RefType::FollowsFrom,
                        trace_id_low: 9,
                        trace_id_high: 0,
                        span_id: 10,
                    }],
                    flags: 3,
                    start_time_us: 1_700_000_000_123_456,
                    duration_us: 789,
                    tags: vec![
                        Tag::str("s", "x"),
                        Tag::new("d", TagValue::Double(-2.5)),
                        Tag::new("t", TagValue::Bool(true)),
                        Tag::new("f", TagValue::Bool(false)),
                        Tag::new("l", TagValue::Long(i64::MIN)),
                        Tag::new("b", TagValue::Binary(vec![0, 255, 7])),
                    ],
                    logs: vec![Log {
                        timestamp_us: 1_700_000_000_123_500,
                        fields: vec![Tag::str("event", "e"), Tag::new("n", TagValue::Long(-1))],
                    }],
                    process: None,
                },
                Span {
                    trace_id_low: 1,
                    span_id: 2,
                    parent_span_id: 3,
                    operation_name: "child".into(),
                    flags: 1,
                    start_time_us: 5,
                    duration_us: 0,
                    // More than 14 tags: the compact long list header.
                    tags: (0..20)
                        .map(|i| Tag::new(format!("k{i}"), TagValue::Long(i)))
                        .collect(),
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn batches_round_trip_in_both_protocols() {
        for p in BOTH {
            let bytes = encode_batch(&sample(), p);
            assert_eq!(decode_batch(&bytes, p).unwrap(), sample(), "{p}");
        }
    }

    #[test]
    fn agent_calls_round_trip_in_both_protocols() {
        for p in BOTH {
            let bytes = encode_agent_call(&sample(), p, 77);
            assert_eq!(
                decode_agent_call(&bytes, p).unwrap(),
                AgentCall::EmitBatch(sample()),
                "{p}"
            );
        }
    }

    /// An `emitBatch` datagram in the compact protocol, written out byte by
    /// byte from the protocol specification (not by our encoder).
    #[test]
    fn decodes_a_hand_written_compact_datagram() {
        #[rustfmt::skip]
        let datagram: &[u8] = &[
            0x82, 0x81, 0x05,                    // compact, version 1, type 4 (oneway); seq 5
            0x09, b'e', b'm', b'i', b't', b'B', b'a', b't', b'c', b'h',
            0x1c,                                // args field 1: struct (Batch)
              0x1c,                              //   Batch field 1: struct (Process)
                0x18, 0x01, b's',                //     serviceName = "s"
                0x00,                            //   end Process
              0x19, 0x1c,                        //   Batch field 2: list of 1 struct
                0x16, 0x54,                      //     traceIdLow = zigzag(84) = 42
                0x16, 0x00,                      //     traceIdHigh = 0
                0x16, 0x0e,                      //     spanId = 7
                0x16, 0x01,                      //     parentSpanId = -1
                0x18, 0x02, b'o', b'p',          //     operationName = "op"
                0x25, 0x02,                      //     field 7 (delta 2): flags = 1
                0x16, 0x80, 0x01,                //     startTime = 64
                0x16, 0x04,                      //     duration = 2
                0x19, 0x1c,                      //     tags: list of 1 struct
                  0x18, 0x01, b'k',              //       key = "k"
                  0x15, 0x04,                    //       vType = 2 (BOOL)
                  0x31,                          //       field 5 (delta 3): vBool = true
                  0x00,                          //     end Tag
                0x00,                            //   end Span
              0x00,                              // end Batch
            0x00,                                // end args
        ];
        let AgentCall::EmitBatch(batch) = decode_agent_call(datagram, Protocol::Compact).unwrap()
        else {
            panic!("not emitBatch")
        };
        assert_eq!(batch.process.service_name, "s");
        let span = &batch.spans[0];
        assert_eq!(
            (span.trace_id_low, span.trace_id_high, span.span_id),
            (42, 0, 7)
        );
        assert_eq!(span.parent_span_id, u64::MAX);
        assert_eq!(span.operation_name, "op");
        assert_eq!(span.flags, 1);
        assert_eq!((span.start_time_us, span.duration_us), (64, 2));
        assert_eq!(span.tags, [Tag::new("k", TagValue::Bool(true))]);
        // Our encoder writes the same bytes.
        assert_eq!(encode_agent_call(&batch, Protocol::Compact, 5), datagram);
    }

    /// Old-style (non-strict) binary message headers: name length first.
    #[test]
    fn decodes_a_non_strict_binary_message() {
        let strict = encode_agent_call(&sample(), Protocol::Binary, 1);
        // strict: 4 version bytes, 4 length bytes, 9 name bytes, 4 seq bytes.
        let mut old = Vec::new();
        old.extend_from_slice(&9i32.to_be_bytes());
        old.extend_from_slice(b"emitBatch");
        old.push(MESSAGE_ONEWAY);
        old.extend_from_slice(&1i32.to_be_bytes());
        old.extend_from_slice(&strict[21..]);
        assert_eq!(
            decode_agent_call(&old, Protocol::Binary).unwrap(),
            AgentCall::EmitBatch(sample())
        );
    }

    #[test]
    fn zipkin_and_unknown_methods_and_bad_envelopes() {
        for p in BOTH {
            let mut w = Writer::new(p);
            w.message_begin("emitZipkinBatch", MESSAGE_ONEWAY, 0);
            w.struct_begin();
            w.struct_end();
            assert_eq!(
                decode_agent_call(&w.out, p).unwrap(),
                AgentCall::EmitZipkinBatch
            );

            let mut w = Writer::new(p);
            w.message_begin("getSamplingStrategy", MESSAGE_CALL, 0);
            let err = decode_agent_call(&w.out, p).unwrap_err();
            assert!(err.reason.contains("unknown agent method"), "{err}");

            let mut w = Writer::new(p);
            w.message_begin("emitBatch", 2, 0); // a reply
            assert!(decode_agent_call(&w.out, p).is_err());

            let mut w = Writer::new(p);
            w.message_begin("emitBatch", MESSAGE_ONEWAY, 0);
            w.struct_begin();
            w.struct_end();
            let err = decode_agent_call(&w.out, p).unwrap_err();
            assert!(err.reason.contains("no batch"), "{err}");
        }
        assert!(decode_agent_call(&[0x81, 0x01, 0, 0], Protocol::Compact).is_err());
        assert!(decode_agent_call(&[0x80, 0x02, 0, 4], Protocol::Binary).is_err());
    }

    /// Writes one unknown field of every type, with nesting, into `w`.
    fn unknown_fields(w: &mut Writer) {
        w.bool_field(100, true);
        w.bool_field(101, false);
        w.field(Type::Byte, 102);
        w.out.push(0x7f);
        w.field(Type::I16, 103);
        w.i16(-300);
        w.field(Type::I32, 104);
        w.i32(70_000);
        w.field(Type::I64, 105);
        w.i64(-1);
        w.field(Type::Double, 106);
        w.double(3.25);
        w.field(Type::Binary, 107);
        w.binary(b"ignored");
        w.field(Type::Uuid, 108);
        w.out.extend_from_slice(&[0xaa; 16]);
        w.field(Type::Struct, 109);
        w.struct_begin();
        w.field(Type::I32, 1);
        w.i32(1);
        w.field(Type::Struct, 2);
        w.struct_begin();
        w.bool_field(3, true);
        w.struct_end();
        w.struct_end();
        w.field(Type::List, 110);
        w.list_begin(Type::Bool, 3);
        w.out.extend_from_slice(&[1, 0, 1]);
        w.field(Type::Set, 111);
        w.list_begin(Type::I64, 2);
        w.i64(1);
        w.i64(2);
        w.field(Type::Map, 112);
        match w.protocol {
            Protocol::Binary => {
                w.out.push(Type::Binary.to_binary());
                w.out.push(Type::List.to_binary());
                w.i32(1);
            }
            Protocol::Compact => {
                w.varint(1);
                w.out
                    .push((Type::Binary.to_compact() << 4) | Type::List.to_compact());
            }
        }
        w.binary(b"key");
        w.list_begin(Type::Double, 1);
        w.double(1.0);
        w.field(Type::Map, 113);
        match w.protocol {
            Protocol::Binary => {
                w.out.extend_from_slice(&[3, 3]);
                w.i32(0);
            }
            Protocol::Compact => w.varint(0),
        }
        // A known field with an unexpected type: skipped too.
        w.field(Type::Binary, 7);
        w.binary(b"not flags");
    }

    #[test]
    fn unknown_fields_of_every_type_are_skipped() {
        for p in BOTH {
            let want = sample();
            let mut w = Writer::new(p);
            w.struct_begin();
            unknown_fields(&mut w);
            w.field(Type::Struct, 1);
            w.process(&want.process);
            w.field(Type::List, 2);
            w.list_begin(Type::Struct, want.spans.len());
            for s in &want.spans {
                // The span's own fields, then unknown ones, then its end.
                let mut inner = Writer::new(p);
                inner.span(s);
                inner.out.pop(); // its stop byte
                inner.struct_begin(); // reopened; field 100 is written in full anyway
                unknown_fields(&mut inner);
                inner.out.push(0);
                w.out.extend_from_slice(&inner.out);
            }
            unknown_fields(&mut w);
            w.struct_end();
            assert_eq!(decode_batch(&w.out, p).unwrap(), want, "{p}");
        }
    }

    #[test]
    fn required_fields_are_enforced() {
        for p in BOTH {
            // A span with only its trace ID.
            let mut w = Writer::new(p);
            w.struct_begin();
            w.field(Type::Struct, 1);
            w.process(&Process::default());
            w.field(Type::List, 2);
            w.list_begin(Type::Struct, 1);
            w.struct_begin();
            w.field(Type::I64, 1);
            w.i64(1);
            w.struct_end();
            w.struct_end();
            let err = decode_batch(&w.out, p).unwrap_err();
            assert!(err.reason.contains("Span.traceIdHigh is not set"), "{err}");
            // A batch without spans.
            let mut w = Writer::new(p);
            w.struct_begin();
            w.field(Type::Struct, 1);
            w.process(&Process::default());
            w.struct_end();
            let err = decode_batch(&w.out, p).unwrap_err();
            assert!(err.reason.contains("Batch.spans"), "{err}");
            // A tag without a type.
            let mut w = Writer::new(p);
            w.struct_begin();
            w.field(Type::Binary, 1);
            w.binary(b"k");
            w.struct_end();
            let err = Reader::new(&w.out, p).tag().unwrap_err();
            assert!(err.reason.contains("Tag.vType"), "{err}");
        }
    }

    #[test]
    fn tag_values_follow_v_type_whatever_else_is_set() {
        for p in BOTH {
            // As the Node client writes tags: every value field set.
            let mut w = Writer::new(p);
            w.struct_begin();
            w.field(Type::Binary, 1);
            w.binary(b"n");
            w.field(Type::I32, 2);
            w.i32(1);
            w.field(Type::Binary, 3);
            w.binary(b"");
            w.field(Type::Double, 4);
            w.double(42.0);
            w.bool_field(5, false);
            w.field(Type::I64, 6);
            w.i64(0);
            w.field(Type::Binary, 7);
            w.binary(b"");
            w.struct_end();
            let tag = Reader::new(&w.out, p).tag().unwrap();
            assert_eq!(tag, Tag::new("n", TagValue::Double(42.0)));
            // An unknown type, and a type whose value is absent.
            for (v_type, want) in [
                (
                    9,
                    TagValue::Str("<Unknown Jaeger TagType \"<UNSET>\">".into()),
                ),
                (3, TagValue::Long(0)),
                (4, TagValue::Binary(Vec::new())),
            ] {
                let mut w = Writer::new(p);
                w.struct_begin();
                w.field(Type::Binary, 1);
                w.binary(b"k");
                w.field(Type::I32, 2);
                w.i32(v_type);
                w.struct_end();
                assert_eq!(Reader::new(&w.out, p).tag().unwrap().value, want);
            }
        }
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        for p in BOTH {
            let mut w = Writer::new(p);
            w.struct_begin();
            w.field(Type::Binary, 1);
            w.binary(b"a\xffb");
            w.struct_end();
            let process = Reader::new(&w.out, p).process().unwrap();
            assert_eq!(process.service_name, "a\u{fffd}b");
        }
    }

    /// A 20-byte input that claims a 2 GB string, or a billion-element list,
    /// is refused by the length check, before any allocation.
    #[test]
    fn huge_declared_lengths_are_refused_before_allocating() {
        // Binary: Batch { 1: Process { 1: string of 0x7fffffff bytes } }.
        let mut bin = vec![12, 0, 1, 11, 0, 1, 0x7f, 0xff, 0xff, 0xff];
        bin.extend_from_slice(b"0123456789");
        assert_eq!(bin.len(), 20);
        let err = decode_batch(&bin, Protocol::Binary).unwrap_err();
        assert!(err.reason.contains("claims 2147483647"), "{err}");
        // Negative length.
        let neg = [12, 0, 1, 11, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0];
        assert!(decode_batch(&neg, Protocol::Binary)
            .unwrap_err()
            .reason
            .contains("claims -2"));
        // Compact: a string of varint 0xffffffff bytes.
        let comp = [0x1c, 0x18, 0xff, 0xff, 0xff, 0xff, 0x0f, b'x'];
        let err = decode_batch(&comp, Protocol::Compact).unwrap_err();
        assert!(err.reason.contains("claims 4294967295"), "{err}");
        // Lists: a billion spans declared in a few bytes, each protocol.
        let list_bin = [15, 0, 2, 12, 0x3b, 0x9a, 0xca, 0x00, 0, 0];
        let err = decode_batch(&list_bin, Protocol::Binary).unwrap_err();
        assert!(err.reason.contains("list size claims 1000000000"), "{err}");
        let list_comp = [0x29, 0xfc, 0x80, 0x94, 0xeb, 0xdc, 0x03, 0, 0];
        let err = decode_batch(&list_comp, Protocol::Compact).unwrap_err();
        assert!(err.reason.contains("list size claims 1000000000"), "{err}");
        // A list of i64 may not claim more elements than 8-byte slots left.
        let mut r = Reader::new(&[10, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0], Protocol::Binary);
        assert!(r.list_begin().is_err());
        // Maps: the entry size counts both key and value.
        let map = [13, 0, 1, 10, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let err = decode_batch(&map, Protocol::Binary).unwrap_err();
        assert!(
            err.reason.contains("map size claims 1 but at most 0"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        for p in BOTH {
            // An unknown field nesting structs 1000 deep.
            let mut w = Writer::new(p);
            w.struct_begin();
            for _ in 0..1000 {
                w.field(Type::Struct, 50);
                w.struct_begin();
            }
            let err = decode_batch(&w.out, p).unwrap_err();
            assert!(err.reason.contains("nested deeper than 32"), "{p}: {err}");
            // Lists of lists.
            let mut w = Writer::new(p);
            w.struct_begin();
            w.field(Type::List, 50);
            for _ in 0..1000 {
                w.list_begin(Type::List, 1);
            }
            let err = decode_batch(&w.out, p).unwrap_err();
            assert!(err.reason.contains("nested deeper"), "{p}: {err}");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for p in BOTH {
            let whole = encode_agent_call(&sample(), p, 3);
            for cut in 0..whole.len() {
                assert!(
                    decode_agent_call(&whole[..cut], p).is_err(),
                    "{p}: a prefix of {cut} bytes decoded"
                );
            }
            let whole = encode_batch(&sample(), p);
            for cut in 0..whole.len() {
                assert!(decode_batch(&whole[..cut], p).is_err());
            }
        }
    }

    #[test]
    fn overlong_varints_are_refused() {
        let bytes = [
            0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        let mut r = Reader::new(&bytes, Protocol::Compact);
        let err = r.span().unwrap_err();
        assert!(err.reason.contains("varint longer than 10"), "{err}");
    }

    /// Random bytes, and valid messages with random bytes changed, never
    /// panic (a small deterministic fuzz).
    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for p in BOTH {
            let valid = encode_agent_call(&sample(), p, 1);
            for _ in 0..3000 {
                let len = (next() % 200) as usize;
                let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let _ = decode_agent_call(&junk, p);
                let _ = decode_batch(&junk, p);
                let mut mutated = valid.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % mutated.len();
                    mutated[i] = next() as u8;
                }
                let _ = decode_agent_call(&mutated, p);
            }
        }
    }

    #[test]
    fn errors_say_where_and_what() {
        let err = decode_batch(&[], Protocol::Binary).unwrap_err();
        assert_eq!(
            err.to_string(),
            "decode jaeger thrift (binary) at byte 0: needs 1 bytes but only 0 remain"
        );
        assert!(!err.is_retryable());
    }
}
