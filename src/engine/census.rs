//! CSV's census: per column of a CSV dump, the storage classes its values had and the
//! forms its TEXT took, so a restore can give every field its storage class back and a
//! dump can say where CSV cannot (a column where TEXT reads like the numbers or BLOBs
//! beside it, or text that is not UTF-8).
//!
//! A field's text has exactly one reading per census: `\x` and lowercase hex is a BLOB
//! when the column held BLOBs; the canonical decimal of an integer is an INTEGER when it
//! held integers; the shortest round-trip decimal of a REAL (always with `.` or an
//! exponent, or `Infinity`/`-Infinity`) is a REAL when it held REALs; anything else is
//! TEXT. The renderer writes exactly these forms, and these functions read them.

use rusqlite::types::ValueRef;

/// The column held integers.
pub const INTEGER: u8 = 1;
/// The column held REALs.
pub const REAL: u8 = 2;
/// The column held TEXT.
pub const TEXT: u8 = 4;
/// The column held BLOBs.
pub const BLOB: u8 = 8;
/// Some TEXT reads like an integer.
pub const TEXT_LIKE_INTEGER: u8 = 16;
/// Some TEXT reads like a REAL.
pub const TEXT_LIKE_REAL: u8 = 32;
/// Some TEXT reads like a BLOB.
pub const TEXT_LIKE_BLOB: u8 = 64;
/// Some TEXT is not valid UTF-8 (CSV writes U+FFFD for it).
pub const TEXT_NOT_UTF8: u8 = 128;

/// Adds one row's values to a table's census (one byte per column).
pub fn note_row(census: &mut Vec<u8>, values: &[ValueRef<'_>]) {
    if census.len() < values.len() {
        census.resize(values.len(), 0);
    }
    for (c, v) in census.iter_mut().zip(values) {
        *c |= form(*v);
    }
}

/// Merges a census into another.
pub fn merge(into: &mut Vec<u8>, more: &[u8]) {
    if into.len() < more.len() {
        into.resize(more.len(), 0);
    }
    for (c, m) in into.iter_mut().zip(more) {
        *c |= m;
    }
}

fn form(v: ValueRef<'_>) -> u8 {
    match v {
        ValueRef::Null => 0,
        ValueRef::Real(f) if f.is_nan() => 0,
        ValueRef::Integer(_) => INTEGER,
        ValueRef::Real(_) => REAL,
        ValueRef::Blob(_) => BLOB,
        ValueRef::Text(t) => {
            TEXT | match std::str::from_utf8(t) {
                Err(_) => TEXT_NOT_UTF8,
                Ok(s) if integer_form(s).is_some() => TEXT_LIKE_INTEGER,
                Ok(s) if real_form(s).is_some() => TEXT_LIKE_REAL,
                Ok(s) if blob_form(s).is_some() => TEXT_LIKE_BLOB,
                Ok(_) => 0,
            }
        }
    }
}

/// Why a column with this census cannot be kept exactly in CSV, if it cannot.
pub fn lossy(census: u8) -> Option<&'static str> {
    if census & TEXT_NOT_UTF8 != 0 {
        return Some("it holds text that is not UTF-8");
    }
    let clash = |like: u8, class: u8| census & like != 0 && census & class != 0;
    if clash(TEXT_LIKE_INTEGER, INTEGER)
        || clash(TEXT_LIKE_REAL, REAL)
        || clash(TEXT_LIKE_BLOB, BLOB)
    {
        return Some("it holds TEXT written like the numbers or BLOBs beside it");
    }
    None
}

/// A CSV field read back by its column's census.
#[derive(Debug, PartialEq)]
pub enum Field<'a> {
    Integer(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(Vec<u8>),
}

/// Reads a non-NULL field of a column whose census is `census` (see the module doc).
pub fn read_field(bytes: &[u8], census: u8) -> Field<'_> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if census & BLOB != 0 {
            if let Some(b) = blob_form(s) {
                return Field::Blob(b);
            }
        }
        if census & INTEGER != 0 {
            if let Some(i) = integer_form(s) {
                return Field::Integer(i);
            }
        }
        if census & REAL != 0 {
            if let Some(f) = real_form(s) {
                return Field::Real(f);
            }
        }
    }
    Field::Text(bytes)
}

/// The integer whose canonical decimal `s` is.
pub fn integer_form(s: &str) -> Option<i64> {
    let first = *s.as_bytes().first()?;
    if !(first.is_ascii_digit() || first == b'-') {
        return None;
    }
    let i: i64 = s.parse().ok()?;
    (itoa::Buffer::new().format(i) == s).then_some(i)
}

/// The REAL whose CSV form (shortest round-trip decimal, `Infinity`) `s` is.
pub fn real_form(s: &str) -> Option<f64> {
    match s {
        "Infinity" => return Some(f64::INFINITY),
        "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let first = *s.as_bytes().first()?;
    if !(first.is_ascii_digit() || first == b'-') || !s.contains(['.', 'e', 'E']) {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    (f.is_finite() && ryu::Buffer::new().format_finite(f) == s).then_some(f)
}

/// The bytes whose CSV form (`\x` and lowercase hex) `s` is.
pub fn blob_form(s: &str) -> Option<Vec<u8>> {
    let hex = s.strip_prefix("\\x")?;
    if hex.len() % 2 != 0
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    hex::decode(hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_form_reads_back_as_its_class() {
        let mut out = Vec::new();
        for v in [
            ValueRef::Integer(-42),
            ValueRef::Integer(i64::MIN),
            ValueRef::Real(-26.819604),
            ValueRef::Real(1e20),
            ValueRef::Real(-0.0),
            ValueRef::Real(f64::INFINITY),
            ValueRef::Blob(&[0, 255, 16]),
            ValueRef::Blob(&[]),
        ] {
            out.clear();
            crate::engine::render::push_csv_value(&mut out, v);
            let census = form(v);
            let back = read_field(&out, census);
            let same = match (back, v) {
                (Field::Integer(a), ValueRef::Integer(b)) => a == b,
                (Field::Real(a), ValueRef::Real(b)) => a.to_bits() == b.to_bits(),
                (Field::Blob(a), ValueRef::Blob(b)) => a == b,
                _ => false,
            };
            assert!(same, "{v:?} written as {:?}", String::from_utf8_lossy(&out));
        }
        // TEXT stays TEXT unless it reads like a class the column also holds.
        assert_eq!(
            read_field(b"12", TEXT | TEXT_LIKE_INTEGER),
            Field::Text(b"12")
        );
        assert_eq!(read_field(b"012", INTEGER | TEXT), Field::Text(b"012"));
        assert_eq!(read_field(b"1.50", REAL | TEXT), Field::Text(b"1.50"));
        let mut census = Vec::new();
        note_row(
            &mut census,
            &[ValueRef::Integer(1), ValueRef::Text(b"\\x41")],
        );
        note_row(
            &mut census,
            &[ValueRef::Text(b"7"), ValueRef::Text(b"plain")],
        );
        assert!(lossy(census[0]).is_some(), "TEXT 7 beside INTEGER 1");
        assert!(lossy(census[1]).is_none(), "TEXT alone is exact");
        note_row(&mut census, &[ValueRef::Null, ValueRef::Blob(b"A")]);
        assert!(lossy(census[1]).is_some(), "TEXT \\x41 beside BLOB");
    }
}
