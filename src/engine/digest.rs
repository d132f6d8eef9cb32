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
}

impl TableDigest {
    pub fn new(table: &str) -> Self {
        TableDigest {
            table: table.to_string(),
            rows: 0,
            content_hash: format!("{:032x}", 0u128),
        }
    }

    fn sum(&self) -> u128 {
        u128::from_str_radix(&self.content_hash, 16).unwrap_or(0)
    }

    /// Adds rows whose hashes sum to `sum`.
    pub fn add(&mut self, rows: u64, sum: u128) {
        self.rows += rows;
        self.content_hash = format!("{:032x}", self.sum().wrapping_add(sum));
    }
}

/// Digests so far: finished tables, and the table being read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestState {
    pub done: Vec<TableDigest>,
    pub current: Option<TableDigest>,
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
    for v in values {
        match v {
            ValueRef::Null => scratch.push(0),
            ValueRef::Integer(i) => {
                scratch.push(1);
                scratch.extend_from_slice(&i.to_be_bytes());
            }
            ValueRef::Real(f) => {
                scratch.push(2);
                scratch.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            ValueRef::Text(t) | ValueRef::Blob(t) => {
                scratch.push(if matches!(v, ValueRef::Text(_)) { 3 } else { 4 });
                scratch.extend_from_slice(&(t.len() as u64).to_be_bytes());
                if t.len() >= 1 << 20 {
                    // A large value is hashed on its own, so the buffer stays small.
                    scratch.extend_from_slice(&xxh3_128(t).to_be_bytes());
                } else {
                    scratch.extend_from_slice(t);
                }
            }
        }
    }
    xxh3_128(scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
