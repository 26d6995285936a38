//! Rows of `spans` as ClickHouse's RowBinary: the bytes the writer sends.
//!
//! In: rows, whole ([`SpanRow`]) or column by column (the decoder's
//! in-place path writes them so, without a [`SpanRow`] in between). Out:
//! the body of the spans `INSERT` ([`catalog::inserts`](crate::catalog::inserts)),
//! its columns in the order of [`SpanRow`]'s fields.
//!
//! RowBinary: a `String` is its length (LEB128) and its bytes, an `Array`
//! its length and its elements, numbers are little-endian.
//! Guarantees: [`EncodedRows::push`] writes what the `clickhouse` crate's
//! serializer writes for the row, and [`EncodedRows::to_rows`] reads it back.

use bytes::Bytes;

use crate::writer::Strings;
use crate::SpanRow;

/// Rows encoded as RowBinary, and how many.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EncodedRows {
    bytes: Vec<u8>,
    rows: usize,
    /// The bytes, once [`share`](EncodedRows::share)d: read from here
    /// until [`clear`](EncodedRows::clear).
    shared: Option<Bytes>,
}

/// Where [`EncodedRows`] stood: rows written after it can be taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    bytes: usize,
    rows: usize,
}

impl EncodedRows {
    /// How many rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The encoded rows.
    pub fn bytes(&self) -> &[u8] {
        self.shared.as_deref().unwrap_or(&self.bytes)
    }

    /// The encoded rows as [`Bytes`], for an `INSERT`'s body, without a
    /// copy: they then stay as they are (no rows are added) until
    /// [`clear`](Self::clear), which takes their room back for the next
    /// rows once every clone of the `Bytes` is dropped. The body used to
    /// be copied into a fresh megabyte at a time: part of the memmove
    /// (9.6%) and page faults (~4%) of the ingester's CPU profile.
    pub fn share(&mut self) -> Bytes {
        self.shared
            .get_or_insert_with(|| Bytes::from(std::mem::take(&mut self.bytes)))
            .clone()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Whether they reach either limit of a batch (`ingester.batch`):
    /// time to write them.
    pub fn reach(&self, limits: &skein_config::Batch) -> bool {
        self.rows >= limits.max_rows || self.bytes.len() >= limits.max_bytes
    }

    /// Empties it, keeping its room for the next rows (when shared: if no
    /// clone of what [`share`](Self::share) gave is left).
    pub fn clear(&mut self) {
        if let Some(Ok(room)) = self.shared.take().map(Bytes::try_into_mut) {
            self.bytes = room.into();
        }
        self.bytes.clear();
        self.rows = 0;
    }

    /// Where it stands now.
    pub fn mark(&self) -> Mark {
        Mark {
            bytes: self.bytes.len(),
            rows: self.rows,
        }
    }

    /// Takes back every row written since `mark`.
    pub fn truncate(&mut self, mark: Mark) {
        self.bytes.truncate(mark.bytes);
        self.rows = mark.rows;
    }

    /// Appends `row`.
    pub fn push(&mut self, row: &SpanRow) {
        self.push_stamped(row, row.ingested_unix_nano);
    }

    /// Appends `row`, with `now` as its write time unless it has one.
    pub fn push_stamped(&mut self, row: &SpanRow, now: u64) {
        self.string(row.tenant.as_bytes());
        self.string(row.trace_id.as_bytes());
        self.string(row.span_id.as_bytes());
        self.string(row.parent_span_id.as_bytes());
        self.u64(row.start_unix_nano);
        self.u64(row.duration_nano);
        self.string(row.service_name.as_bytes());
        self.string(row.span_name.as_bytes());
        self.string(row.span_kind.as_bytes());
        self.i32(row.status_code);
        self.u8(row.error);
        self.string(row.peer_service.as_bytes());
        for strings in [&row.attribute_keys, &row.attribute_values] {
            self.len(strings.len());
            for s in strings.iter() {
                self.string(s.as_bytes());
            }
        }
        self.string(&row.span);
        self.u64(row.received_unix_nano);
        self.u64(if row.ingested_unix_nano == 0 {
            now
        } else {
            row.ingested_unix_nano
        });
        self.end_row();
    }

    /// The rows, read back.
    pub fn to_rows(&self) -> Result<Vec<SpanRow>, Malformed> {
        let mut r = Reader {
            bytes: self.bytes(),
            pos: 0,
        };
        let mut rows = Vec::with_capacity(self.rows);
        while r.pos < r.bytes.len() {
            rows.push(r.row()?);
        }
        if rows.len() != self.rows {
            return Err(Malformed);
        }
        Ok(rows)
    }

    /// A `String` column.
    #[allow(unsafe_code)]
    pub(crate) fn string(&mut self, s: &[u8]) {
        if s.len() < 0x80 {
            // Most strings (some 60 a span: keys, values, names): their
            // length byte and bytes in one reserve and one copy, without
            // `push` and `extend_from_slice` checking the room again.
            self.bytes.reserve(1 + s.len());
            let len = self.bytes.len();
            // SAFETY: `reserve` left room for `1 + s.len()` bytes past
            // `len`; they are written (the length byte, then `s`, which
            // cannot overlap room not yet in the Vec) before `set_len`.
            unsafe {
                let end = self.bytes.as_mut_ptr().add(len);
                end.write(s.len() as u8);
                std::ptr::copy_nonoverlapping(s.as_ptr(), end.add(1), s.len());
                self.bytes.set_len(len + 1 + s.len());
            }
        } else {
            self.len(s.len());
            self.bytes.extend_from_slice(s);
        }
    }

    /// A `String` column: `id` in lowercase hex.
    pub(crate) fn hex(&mut self, id: &[u8]) {
        // Trace and span IDs: their length byte and digits made on the
        // stack and appended in one copy of a known size (no memset of
        // the room first, no length pushed on its own).
        match id.len() {
            16 => return self.hex_id::<16, 33>(id),
            8 => return self.hex_id::<8, 17>(id),
            _ => {}
        }
        self.len(2 * id.len());
        let start = self.bytes.len();
        self.bytes.resize(start + 2 * id.len(), 0);
        const_hex::encode_to_slice(id, &mut self.bytes[start..])
            .expect("the room is twice the bytes");
    }

    /// [`hex`](Self::hex) of an `N`-byte ID; `W` is `1 + 2 * N`.
    fn hex_id<const N: usize, const W: usize>(&mut self, id: &[u8]) {
        debug_assert_eq!((id.len(), W), (N, 1 + 2 * N));
        let mut out = [0u8; W];
        out[0] = (2 * N) as u8;
        for (pair, &b) in out[1..].chunks_exact_mut(2).zip(id) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        self.bytes.extend_from_slice(&out);
    }

    /// A `String` column that `write` fills; `scratch` is room it may reuse.
    pub(crate) fn text_with(&mut self, scratch: &mut String, write: impl FnOnce(&mut String)) {
        scratch.clear();
        write(scratch);
        self.string(scratch.as_bytes());
    }

    /// An `Array`'s or a `String`'s length (LEB128: protobuf's varint).
    pub(crate) fn len(&mut self, n: usize) {
        // Most lengths (keys, values, names) take one byte: skip the loop.
        if n < 0x80 {
            self.bytes.push(n as u8);
        } else {
            prost::encoding::encode_varint(n as u64, &mut self.bytes);
        }
    }

    /// A `String` column of `len` bytes that `write` appends to the rows'
    /// bytes in place (no copy through a buffer of its own).
    pub(crate) fn string_in_place(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        self.len(len);
        let start = self.bytes.len();
        write(&mut self.bytes);
        debug_assert_eq!(self.bytes.len() - start, len, "the length announced");
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    /// Counts the row whose columns were just written.
    pub(crate) fn end_row(&mut self) {
        debug_assert!(self.shared.is_none(), "rows written after sharing");
        self.rows += 1;
    }
}

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    table
};

/// Where each row of `bytes` (rows of [`SpanRow`] in RowBinary, as a
/// `SELECT` of its columns returns them) ends: to cut rows read back from
/// ClickHouse into batches.
pub fn row_ends(bytes: &[u8]) -> Result<Vec<usize>, Malformed> {
    let mut r = Reader { bytes, pos: 0 };
    let mut ends = Vec::new();
    while r.pos < bytes.len() {
        r.row()?;
        ends.push(r.pos);
    }
    Ok(ends)
}

/// Encoded rows that do not read back as rows of `spans`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed RowBinary rows of spans")]
pub struct Malformed;

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn row(&mut self) -> Result<SpanRow, Malformed> {
        Ok(SpanRow {
            tenant: self.text()?,
            trace_id: self.text()?,
            span_id: self.text()?,
            parent_span_id: self.text()?,
            start_unix_nano: u64::from_le_bytes(self.array()?),
            duration_nano: u64::from_le_bytes(self.array()?),
            service_name: self.text()?,
            span_name: self.text()?,
            span_kind: self.text()?,
            status_code: i32::from_le_bytes(self.array()?),
            error: self.array::<1>()?[0],
            peer_service: self.text()?,
            attribute_keys: self.strings()?,
            attribute_values: self.strings()?,
            span: self.string()?.to_vec(),
            received_unix_nano: u64::from_le_bytes(self.array()?),
            ingested_unix_nano: u64::from_le_bytes(self.array()?),
        })
    }

    fn len(&mut self) -> Result<usize, Malformed> {
        let mut rest = &self.bytes[self.pos..];
        let n = prost::encoding::decode_varint(&mut rest).map_err(|_| Malformed)?;
        self.pos = self.bytes.len() - rest.len();
        usize::try_from(n).map_err(|_| Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed)?;
        let out = self.bytes.get(self.pos..end).ok_or(Malformed)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn string(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.len()?;
        self.take(n)
    }

    fn text(&mut self) -> Result<String, Malformed> {
        std::str::from_utf8(self.string()?)
            .map(str::to_owned)
            .map_err(|_| Malformed)
    }

    fn strings(&mut self) -> Result<Strings, Malformed> {
        let n = self.len()?;
        let mut out = Strings::with_capacity(n, 0);
        for _ in 0..n {
            out.push(std::str::from_utf8(self.string()?).map_err(|_| Malformed)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> SpanRow {
        SpanRow {
            tenant: "t".into(),
            trace_id: "0102".into(),
            span_id: "03".into(),
            parent_span_id: String::new(),
            start_unix_nano: 1,
            duration_nano: 2,
            service_name: "svc".into(),
            span_name: "op".into(),
            span_kind: "server".into(),
            status_code: -1,
            error: 1,
            peer_service: String::new(),
            attribute_keys: ["k"].into_iter().collect(),
            attribute_values: ["v".repeat(200)].into_iter().collect(),
            span: vec![0xff; 3],
            received_unix_nano: 3,
            ingested_unix_nano: 0,
        }
    }

    #[test]
    fn a_row_is_its_columns_in_order_as_rowbinary() {
        let mut out = EncodedRows::default();
        out.push_stamped(&row(), 9);
        let mut want = vec![1, b't', 4, b'0', b'1', b'0', b'2', 2, b'0', b'3', 0];
        want.extend(1u64.to_le_bytes());
        want.extend(2u64.to_le_bytes());
        want.extend(b"\x03svc\x02op\x06server");
        want.extend((-1i32).to_le_bytes());
        want.extend([1, 0]); // error, empty peer service
        want.extend(b"\x01\x01k\x01"); // one key; one value of 200 bytes:
        want.extend([0xc8, 0x01]);
        want.extend(b"v".repeat(200));
        want.extend([3, 0xff, 0xff, 0xff]);
        want.extend(3u64.to_le_bytes());
        want.extend(9u64.to_le_bytes()); // stamped
        assert_eq!(out.bytes(), want);
        assert_eq!(out.rows(), 1);
    }

    #[test]
    fn strings_around_the_one_byte_length_read_back() {
        let mut sized = row();
        let lengths = [0, 1, 126, 127, 128, 129, 16_383, 16_384];
        sized.attribute_keys = lengths.iter().map(|&n| "k".repeat(n)).collect();
        sized.attribute_values = lengths.iter().map(|&n| "v".repeat(n)).collect();
        let mut out = EncodedRows::default();
        out.push(&sized);
        assert_eq!(out.to_rows().unwrap(), [sized]);
    }

    #[test]
    fn rows_read_back_and_marks_take_rows_back() {
        let mut out = EncodedRows::default();
        let mut stamped = row();
        stamped.ingested_unix_nano = 5;
        out.push(&stamped);
        let mark = out.mark();
        out.push(&row());
        out.truncate(mark);
        out.push(&stamped);
        assert_eq!(out.to_rows(), Ok(vec![stamped.clone(), stamped]));
        let mut cut = out.clone();
        cut.bytes.pop();
        assert_eq!(cut.to_rows(), Err(Malformed));
    }

    #[test]
    fn row_ends_cut_rows_where_each_ends() {
        let mut out = EncodedRows::default();
        let mut long = row();
        long.span = vec![7; 300];
        out.push(&row());
        let first = out.bytes().len();
        out.push(&long);
        out.push(&row());
        let ends = row_ends(out.bytes()).unwrap();
        assert_eq!(ends.len(), 3);
        assert_eq!(ends[0], first);
        assert_eq!(ends[2], out.bytes().len());
        assert!(ends[1] - ends[0] > 300, "{ends:?}");
        assert_eq!(row_ends(&out.bytes()[..ends[2] - 1]), Err(Malformed));
        assert_eq!(row_ends(&[]), Ok(vec![]));
    }

    #[test]
    fn shared_rows_are_the_same_bytes_and_their_room_comes_back() {
        let mut out = EncodedRows::default();
        out.push(&row());
        out.push(&row());
        let before = out.bytes().to_vec();
        let ptr = out.bytes().as_ptr();
        let shared = out.share();
        assert_eq!(&shared[..], &before[..]);
        assert_eq!(shared.as_ptr(), ptr, "not a copy");
        assert_eq!(out.share().as_ptr(), ptr, "shared once");
        assert_eq!(out.bytes(), &before[..]);
        assert_eq!(out.rows(), 2);
        assert_eq!(out.to_rows().unwrap().len(), 2);
        // Cleared while the body is still held: a new room, same rows.
        out.clear();
        assert!(out.is_empty() && out.bytes().is_empty());
        assert_eq!(&shared[..], &before[..], "the body is untouched");
        out.push(&row());
        assert_eq!(out.bytes(), &before[..before.len() / 2]);
        // Cleared once the body is dropped: the same room again.
        let ptr = out.bytes().as_ptr();
        let shared = out.share();
        drop(shared);
        out.clear();
        out.push(&row());
        assert_eq!(out.bytes().as_ptr(), ptr, "the room came back");
        assert_eq!(out.bytes(), &before[..before.len() / 2]);
    }

    #[test]
    fn hex_ids_are_lowercase() {
        let mut out = EncodedRows::default();
        out.hex(&[0xab, 0x01]);
        out.hex(&[]);
        assert_eq!(out.bytes(), b"\x04ab01\x00");
    }

    #[test]
    fn hex_ids_of_every_length_and_byte_are_what_const_hex_writes() {
        // Every byte value at every place of 8- and 16-byte IDs (the
        // table's path) and of the lengths around them (const_hex's).
        let bytes: Vec<u8> = (0..=255).collect();
        for len in 0..=20 {
            for window in bytes.chunks(len.max(1)) {
                let id = &window[..len.min(window.len())];
                for id in [id.to_vec(), id.iter().rev().copied().collect()] {
                    let mut out = EncodedRows::default();
                    out.hex(&id);
                    let mut expected = vec![2 * id.len() as u8];
                    expected.extend_from_slice(const_hex::encode(&id).as_bytes());
                    assert_eq!(out.bytes(), expected, "{id:02x?}");
                }
            }
        }
    }
}
