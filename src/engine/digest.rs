//! Per-table content digests for the manifest: a row count and a content hash that any
//! reader of the dump can recompute from the values, whatever the chunking.
//!
//! Each row's values (the columns the dump carries, in order) are encoded canonically —
//! per value a tag byte then its payload: `0` NULL; `1` INTEGER as 8 bytes big-endian;
//! `2` REAL as its 8 IEEE-754 bytes big-endian; `3` TEXT and `4` BLOB as an 8-byte
//! big-endian length and the bytes (TEXT as UTF-8; a value of 1 MiB or more as its own
//! XXH3-128, big-endian, so no row is copied whole) — and hashed with XXH3-128. The
//! table's `contentHash` is the sum of its rows' hashes modulo 2^128, in hex: the order
//! rows are read in (and so where chunks are cut) cannot change it, and a missing,
//! extra or altered row does. It detects corruption, not tampering: the files' SHA-256
//! digests are the cryptographic check.

use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

/// One table's row count and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableDigest {
    pub table: String,
    pub rows: u64,
    /// Sum of the rows' XXH3-128 hashes mod 2^128, 32 hex digits.
    pub content_hash: String,
    /// CSV dumps: per column, the forms its values took (see [`super::census`]), so a
    /// restore types every field as it was; empty in other formats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub census: Vec<u8>,
}

impl TableDigest {
    pub fn new(table: &str) -> Self {
        TableDigest {
            table: table.to_string(),
            rows: 0,
            content_hash: format!("{:032x}", 0u128),
            census: Vec::new(),
        }
    }

    /// The content hash as a number.
    pub fn sum(&self) -> u128 {
        u128::from_str_radix(&self.content_hash, 16).unwrap_or(0)
    }

    /// Adds rows whose hashes sum to `sum`.
    pub fn add(&mut self, rows: u64, sum: u128) {
        self.rows += rows;
        self.content_hash = format!("{:032x}", self.sum().wrapping_add(sum));
    }
}

/// Digests of parts of tables (a Parquet table's files) summed per table, in the order
/// each table first appears.
pub fn merge_by_table(parts: Vec<TableDigest>) -> Vec<TableDigest> {
    let mut merged: Vec<TableDigest> = Vec::new();
    for part in parts {
        match merged.iter_mut().find(|d| d.table == part.table) {
            Some(d) => d.add(part.rows, part.sum()),
            None => merged.push(part),
        }
    }
    merged
}

/// Digests so far: finished tables, and the table being read; and the lengths of the
/// lines written, so the manifest can declare the longest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestState {
    pub done: Vec<TableDigest>,
    pub current: Option<TableDigest>,
    /// `None` for a dump begun by a version that did not count lines: its earlier chunks'
    /// lines are unknown, so its manifest declares no longest line.
    #[serde(default)]
    pub lines: Option<LineLengths>,
    /// The indexes, views and triggers the dump writes, set by the chunk that ends it
    /// (the manifest lists them, so a restore drill can name one that did not come back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_objects: Option<Vec<SchemaObject>>,
    /// Every schema object the dump creates, its SQL by digest, set with
    /// `schema_objects` (the manifest declares them; a restore creates no other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_statements: Option<Vec<SchemaStatement>>,
}

/// An index, view or trigger a dump writes (`type` as `sqlite_schema` has it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaObject {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

/// A schema object a dump creates (a table, virtual table, index, view or trigger), as
/// `sqlite_schema` holds it, its SQL by SHA-256: what a restore or verify of the dump may
/// create and nothing else (see `readback::declared`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaStatement {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub tbl_name: String,
    /// SHA-256 of its `sqlite_schema.sql`, in hex.
    pub sha256: String,
}

impl SchemaStatement {
    /// The entry of a `sqlite_schema` row (`sql` as SQLite keeps it).
    pub fn of(kind: &str, name: &str, tbl_name: &str, sql: &str) -> Self {
        use sha2::Digest;
        SchemaStatement {
            kind: kind.to_string(),
            name: name.to_string(),
            tbl_name: tbl_name.to_string(),
            sha256: hex::encode(sha2::Sha256::digest(sql.as_bytes())),
        }
    }
}

impl Default for DigestState {
    fn default() -> Self {
        DigestState {
            done: Vec::new(),
            current: None,
            lines: Some(LineLengths::default()),
            schema_objects: None,
            schema_statements: None,
        }
    }
}

/// Line lengths of a dump's plain (uncompressed) bytes, counted across chunks: a reader
/// refuses a line longer than the longest the writer wrote, before holding it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineLengths {
    /// The longest line ended so far, in bytes, without its `\n`.
    pub longest: u64,
    /// Bytes of the line not yet ended (carried into the next chunk).
    pub open: u64,
}

impl LineLengths {
    /// Counts `bytes` written after the ones counted so far.
    pub fn note(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(at) = memchr::memchr(b'\n', rest) {
            self.longest = self.longest.max(self.open + at as u64);
            self.open = 0;
            rest = &rest[at + 1..];
        }
        self.open += rest.len() as u64;
    }

    /// Ends an object: its unended last line counts as a line.
    pub fn end_object(&mut self) {
        self.longest = self.longest.max(self.open);
        self.open = 0;
    }
}

/// Hashes one row given its values in order.
pub fn row_hash<'a>(values: impl Iterator<Item = ValueRef<'a>>) -> u128 {
    row_hash_with(values, &mut Vec::new())
}

/// [`row_hash`] with a reusable buffer: the row is encoded into `scratch` and hashed in
/// one call (much faster than feeding a streaming hasher value by value).
pub fn row_hash_with<'a>(
    values: impl Iterator<Item = ValueRef<'a>>,
    scratch: &mut Vec<u8>,
) -> u128 {
    scratch.clear();
    encode_row(values, scratch);
    xxh3_128(scratch)
}

/// Appends the row's canonical encoding (see the module doc) to `out`; its XXH3-128 is
/// the row's hash. Values under 1 MiB are carried whole, so the encoding of such a row
/// can be decoded again ([`decode_value`]).
pub fn encode_row<'a>(values: impl Iterator<Item = ValueRef<'a>>, out: &mut Vec<u8>) {
    for v in values {
        match v {
            ValueRef::Null => out.push(0),
            ValueRef::Integer(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            ValueRef::Real(f) => {
                out.push(2);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            ValueRef::Text(t) | ValueRef::Blob(t) => {
                out.push(if matches!(v, ValueRef::Text(_)) { 3 } else { 4 });
                out.extend_from_slice(&(t.len() as u64).to_be_bytes());
                if t.len() >= HASHED_VALUE {
                    // A large value is hashed on its own, so the buffer stays small.
                    out.extend_from_slice(&xxh3_128(t).to_be_bytes());
                } else {
                    out.extend_from_slice(t);
                }
            }
        }
    }
}

/// Values at least this long are represented by their own hash in a row's encoding.
pub const HASHED_VALUE: usize = 1 << 20;

/// Decodes the value at `*pos` of a row encoding made by [`encode_row`] from values
/// shorter than [`HASHED_VALUE`], and moves `*pos` past it. `None` if the bytes are not
/// such an encoding.
pub fn decode_value<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<ValueRef<'a>> {
    decode(bytes, pos, HASHED_VALUE)
}

/// Appends `v` in the encoding of [`encode_row`], but whole whatever its size (for a
/// reader that needs the value, not its hash): decode it with [`decode_value_whole`].
pub fn encode_value_whole(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) if t.len() >= HASHED_VALUE => {
            out.push(if matches!(v, ValueRef::Text(_)) { 3 } else { 4 });
            out.extend_from_slice(&(t.len() as u64).to_be_bytes());
            out.extend_from_slice(t);
        }
        v => encode_row(std::iter::once(v), out),
    }
}

/// [`decode_value`] for an encoding made by [`encode_value_whole`].
pub fn decode_value_whole<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<ValueRef<'a>> {
    decode(bytes, pos, usize::MAX)
}

fn decode<'a>(bytes: &'a [u8], pos: &mut usize, limit: usize) -> Option<ValueRef<'a>> {
    let tag = *bytes.get(*pos)?;
    let word = |at: usize| -> Option<[u8; 8]> { bytes.get(at..at + 8)?.try_into().ok() };
    let (value, end) = match tag {
        0 => (ValueRef::Null, *pos + 1),
        1 => (
            ValueRef::Integer(i64::from_be_bytes(word(*pos + 1)?)),
            *pos + 9,
        ),
        2 => (
            ValueRef::Real(f64::from_bits(u64::from_be_bytes(word(*pos + 1)?))),
            *pos + 9,
        ),
        3 | 4 => {
            let len = usize::try_from(u64::from_be_bytes(word(*pos + 1)?)).ok()?;
            if len >= limit {
                return None;
            }
            let start = *pos + 9;
            let t = bytes.get(start..start + len)?;
            let v = if tag == 3 {
                ValueRef::Text(t)
            } else {
                ValueRef::Blob(t)
            };
            (v, start + len)
        }
        _ => return None,
    };
    *pos = end;
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_lengths_count_lines_cut_anywhere() {
        let text = b"ab\nabcdef\n\nabc\nabcdefgh";
        for cut in 0..text.len() {
            let mut lines = LineLengths::default();
            lines.note(&text[..cut]);
            lines.note(&text[cut..]);
            assert_eq!(lines.longest, 6, "cut at {cut}");
            lines.end_object();
            assert_eq!((lines.longest, lines.open), (8, 0), "cut at {cut}");
        }
    }

    #[test]
    fn the_sum_ignores_order_and_sees_every_value() {
        let rows: Vec<Vec<ValueRef<'static>>> = vec![
            vec![ValueRef::Integer(1), ValueRef::Text(b"a")],
            vec![ValueRef::Real(1.0), ValueRef::Null],
            vec![ValueRef::Blob(b"a"), ValueRef::Integer(0)],
        ];
        let mut forward = TableDigest::new("t");
        for r in &rows {
            forward.add(1, row_hash(r.iter().copied()));
        }
        let mut backward = TableDigest::new("t");
        for r in rows.iter().rev() {
            backward.add(1, row_hash(r.iter().copied()));
        }
        assert_eq!(forward, backward);
        // Same bytes, other storage class: another hash.
        assert_ne!(
            row_hash([ValueRef::Text(b"a")].into_iter()),
            row_hash([ValueRef::Blob(b"a")].into_iter())
        );
        assert_ne!(
            row_hash([ValueRef::Integer(1)].into_iter()),
            row_hash([ValueRef::Real(1.0)].into_iter())
        );
    }

    #[test]
    fn a_row_encoding_decodes_to_the_same_values() {
        let row = [
            ValueRef::Null,
            ValueRef::Integer(-7),
            ValueRef::Real(-26.819604),
            ValueRef::Text("é\0x".as_bytes()),
            ValueRef::Blob(&[0, 255, 1]),
            ValueRef::Text(b""),
        ];
        let mut bytes = Vec::new();
        encode_row(row.iter().copied(), &mut bytes);
        let mut pos = 0;
        let decoded: Vec<_> = (0..row.len())
            .map(|_| decode_value(&bytes, &mut pos).unwrap())
            .collect();
        assert_eq!(decoded, row);
        assert_eq!(pos, bytes.len());
        assert_eq!(xxh3_128(&bytes), row_hash(row.iter().copied()));
        // Truncated or unknown bytes are refused, not misread.
        let cut = &bytes[..bytes.len() - 1];
        let mut pos = 0;
        let last = (0..row.len()).map(|_| decode_value(cut, &mut pos)).last();
        assert_eq!(last, Some(None));
        assert_eq!(decode_value(&[9], &mut 0), None);
    }
}
