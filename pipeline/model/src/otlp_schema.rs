//! The OTLP trace messages' fields, for reading and checking them as
//! bytes: for each message type, what each known field holds and how often
//! it may appear. Shared by the collector's split of requests
//! ([`otlp_raw`](crate::otlp_raw)) and the ingester's reader of messages
//! ([`flat_raw`](crate::flat_raw)).
//!
//! `traces_data` also describes `ExportTraceServiceRequest`: both hold
//! `repeated ResourceSpans` as field 1.

/// What a varint field holds, for the values prost writes for it.
#[derive(Clone, Copy)]
pub(crate) enum Int {
    Int32,
    Uint32,
    Int64,
    Bool,
}

/// What a known field holds.
#[derive(Clone, Copy)]
pub(crate) enum Type {
    Varint(Int),
    Fixed64,
    Fixed32,
    Bytes,
    Str,
    /// A string the reader converts to `&str` itself (and so checks).
    Text,
    Msg(Spec),
    /// A `KeyValue` (a message of [`key_value`]): most fields of a
    /// message, which readers take a faster way when they can.
    Attribute,
}

/// How often a field may appear, and whether its default is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    /// At most once, never with its default value (proto3 scalars), or a
    /// message (written whenever present).
    Single,
    /// Any number of times, one after another.
    Repeated,
    /// A member of the message's one `oneof`: at most one member appears,
    /// with any value.
    Oneof,
}

/// A message type: its known fields.
#[derive(Clone, Copy)]
pub(crate) struct Spec(pub(crate) fn(u32) -> Option<(Type, Card)>);

pub(crate) fn traces_data(n: u32) -> Option<(Type, Card)> {
    (n == 1).then_some((Type::Msg(Spec(resource_spans)), Card::Repeated))
}

pub(crate) fn resource_spans(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        1 => (Type::Msg(Spec(resource)), Card::Single),
        2 => (Type::Msg(Spec(scope_spans)), Card::Repeated),
        3 => (Type::Str, Card::Single),
        _ => return None,
    })
}

pub(crate) fn resource(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        1 => (Type::Attribute, Card::Repeated),
        2 => (Type::Varint(Int::Uint32), Card::Single),
        3 => (Type::Msg(Spec(entity_ref)), Card::Repeated),
        _ => return None,
    })
}

pub(crate) fn entity_ref(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        1 | 2 => (Type::Str, Card::Single),
        3 | 4 => (Type::Str, Card::Repeated),
        _ => return None,
    })
}

pub(crate) fn scope_spans(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        1 => (Type::Msg(Spec(scope)), Card::Single),
        2 => (Type::Msg(Spec(span)), Card::Repeated),
        3 => (Type::Str, Card::Single),
        _ => return None,
    })
}

pub(crate) fn scope(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        1 | 2 => (Type::Str, Card::Single),
        3 => (Type::Attribute, Card::Repeated),
        4 => (Type::Varint(Int::Uint32), Card::Single),
        _ => return None,
    })
}

pub(crate) fn span(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        1 | 2 | 4 => (Type::Bytes, Card::Single),
        3 => (Type::Str, Card::Single),
        5 => (Type::Text, Card::Single),
        6 => (Type::Varint(Int::Int32), Card::Single),
        7 | 8 => (Type::Fixed64, Card::Single),
        9 => (Type::Attribute, Card::Repeated),
        10 | 12 | 14 => (Type::Varint(Int::Uint32), Card::Single),
        11 => (Type::Msg(Spec(event)), Card::Repeated),
        13 => (Type::Msg(Spec(link)), Card::Repeated),
        15 => (Type::Msg(Spec(status)), Card::Single),
        16 => (Type::Fixed32, Card::Single),
        _ => return None,
    })
}

pub(crate) fn event(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        1 => (Type::Fixed64, Card::Single),
        2 => (Type::Str, Card::Single),
        3 => (Type::Attribute, Card::Repeated),
        4 => (Type::Varint(Int::Uint32), Card::Single),
        _ => return None,
    })
}

pub(crate) fn link(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        1 | 2 => (Type::Bytes, Card::Single),
        3 => (Type::Str, Card::Single),
        4 => (Type::Attribute, Card::Repeated),
        5 => (Type::Varint(Int::Uint32), Card::Single),
        6 => (Type::Fixed32, Card::Single),
        _ => return None,
    })
}

pub(crate) fn status(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        2 => (Type::Str, Card::Single),
        3 => (Type::Varint(Int::Int32), Card::Single),
        _ => return None,
    })
}

pub(crate) fn key_value(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        1 => (Type::Text, Card::Single),
        2 => (Type::Msg(Spec(any_value)), Card::Single),
        3 => (Type::Varint(Int::Int32), Card::Single),
        _ => return None,
    })
}

pub(crate) fn any_value(n: u32) -> Option<(Type, Card)> {
    Some(match n {
        1 => (Type::Text, Card::Oneof),
        2 => (Type::Varint(Int::Bool), Card::Oneof),
        3 => (Type::Varint(Int::Int64), Card::Oneof),
        4 => (Type::Fixed64, Card::Oneof),
        5 => (Type::Msg(Spec(array_value)), Card::Oneof),
        6 => (Type::Msg(Spec(key_value_list)), Card::Oneof),
        7 => (Type::Bytes, Card::Oneof),
        8 => (Type::Varint(Int::Int32), Card::Oneof),
        _ => return None,
    })
}

pub(crate) fn array_value(n: u32) -> Option<(Type, Card)> {
    (n == 1).then_some((Type::Msg(Spec(any_value)), Card::Repeated))
}

pub(crate) fn key_value_list(n: u32) -> Option<(Type, Card)> {
    (n == 1).then_some((Type::Attribute, Card::Repeated))
}
