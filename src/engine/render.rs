//! Rendering of SQLite values and rows as SQL, CSV and JSON text.
//!
//! This is the hot path: every value of the database passes through here once, written
//! straight into a reusable byte buffer without intermediate `String`s.
//!
//! Documented encodings (see docs/formats.md):
//! * SQL: exact. REALs as described in [`super::real`] (exact in every SQLite from 3.37
//!   on, whatever its decimal parser). TEXT that is not valid UTF-8 or holds control
//!   characters other than TAB/LF is written as `CAST(X'..' AS TEXT)`, keeping NULs.
//! * CSV: NULL is an empty unquoted field, the empty string is `""`; BLOB is `\x` + hex;
//!   REAL is the shortest round-trip decimal, `Infinity`/`-Infinity`.
//! * JSON: BLOB is `{"$base64":"…"}`, ±Inf is `{"$real":"Infinity"}`, TEXT that is not
//!   valid UTF-8 is `{"$textBase64":"…"}`; every other value is a plain JSON value.

use std::io;

use base64::Engine;
use rusqlite::types::ValueRef;

pub use super::real::push_sql_real;

/// Values at least this large (bytes) are streamed.
pub const LARGE_VALUE: usize = 1 << 20;

/// Whether `v` is large enough to stream (see [`super::large`]).
pub fn is_large(v: &ValueRef<'_>) -> bool {
    matches!(v, ValueRef::Text(t) | ValueRef::Blob(t) if t.len() >= LARGE_VALUE)
}

/// The database's text encoding, which decides how TEXT that needs a hex literal is
/// written (SQLite reinterprets `CAST(X'…' AS TEXT)` in the database's encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextEncoding {
    #[default]
    Utf8,
    Utf16Le,
    Utf16Be,
}

impl TextEncoding {
    /// From `PRAGMA encoding`.
    pub fn from_pragma(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "UTF-16LE" => TextEncoding::Utf16Le,
            "UTF-16BE" => TextEncoding::Utf16Be,
            _ => TextEncoding::Utf8,
        }
    }
}

/// How rows of a table are encoded.
#[derive(Debug)]
pub enum RowEncoding {
    /// `prefix` + values + `);\n`.
    Sql {
        prefix: Vec<u8>,
        text: TextEncoding,
    },
    Csv,
    /// One object per row; `keys` are the pre-rendered `"name":` members.
    Json {
        keys: Vec<Vec<u8>>,
    },
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Two hex digits for every byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    table
};

/// Appends lowercase hex of `bytes`.
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + bytes.len() * 2, 0);
    for (pair, &b) in out[start..].chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[b as usize]);
    }
}

/// Which special bytes a text holds, found in one branch-free (vectorizable) pass.
#[derive(Default)]
struct Scan {
    /// A control character other than TAB and LF.
    control: bool,
    /// A byte >= 0x80 (so UTF-8 validity must be checked).
    non_ascii: bool,
    /// The quote character of the target syntax.
    quote: bool,
    /// Any of `,` `\r` `\n` (CSV) or `\\` `\n` `\r` `\t` (JSON), per `extra`.
    extra: bool,
}

fn scan(t: &[u8], quote: u8, extra: &[u8; 3]) -> Scan {
    let mut s = Scan::default();
    for &b in t {
        s.control |= (b < 0x20) & (b != b'\t') & (b != b'\n');
        s.non_ascii |= b >= 0x80;
        s.quote |= b == quote;
        s.extra |= (b == extra[0]) | (b == extra[1]) | (b == extra[2]);
    }
    s
}

fn push_int(out: &mut Vec<u8>, i: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

/// Shortest round-trip decimal of a finite double, always with a `.` or an exponent so
/// it reads back as REAL (`3.0`, `1e20`, `-0.0`).
fn push_finite_real(out: &mut Vec<u8>, f: f64) {
    out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
}

/// Writes `t` between `quote`s, doubling any quote inside (`has_quote` from a scan).
fn push_quoted(out: &mut Vec<u8>, t: &[u8], quote: u8, has_quote: bool) {
    out.push(quote);
    if has_quote {
        let mut pieces = t.split(|&b| b == quote);
        out.extend_from_slice(pieces.next().unwrap_or_default());
        for piece in pieces {
            out.push(quote);
            out.push(quote);
            out.extend_from_slice(piece);
        }
    } else {
        out.extend_from_slice(t);
    }
    out.push(quote);
}

/// Writes any value as an SQL literal (or exact expression) for a UTF-8 database.
pub fn push_sql_value(out: &mut Vec<u8>, v: ValueRef<'_>) {
    push_sql_value_in(out, v, TextEncoding::Utf8)
}

/// Writes any value as an SQL literal (or exact expression) for a database whose text
/// encoding is `enc`: hex TEXT literals carry the bytes in that encoding, since SQLite
/// reinterprets `CAST(X'…' AS TEXT)` in the database's own encoding.
pub fn push_sql_value_in(out: &mut Vec<u8>, v: ValueRef<'_>, enc: TextEncoding) {
    match v {
        ValueRef::Null => out.extend_from_slice(b"NULL"),
        ValueRef::Integer(i) => push_int(out, i),
        ValueRef::Real(f) => push_sql_real(out, f),
        ValueRef::Text(t) => {
            // A plain literal needs valid UTF-8 and no control characters but TAB and LF
            // (the shell keeps LF inside literals; CR and NUL it does not).
            let s = scan(t, b'\'', b"\0\0\0");
            if !s.control && (!s.non_ascii || std::str::from_utf8(t).is_ok()) {
                return push_quoted(out, t, b'\'', s.quote);
            }
            out.extend_from_slice(b"CAST(X'");
            match enc {
                TextEncoding::Utf8 => push_hex(out, t),
                TextEncoding::Utf16Le => push_hex(out, &utf16_bytes(t, u16::to_le_bytes)),
                TextEncoding::Utf16Be => push_hex(out, &utf16_bytes(t, u16::to_be_bytes)),
            }
            out.extend_from_slice(b"' AS TEXT)");
        }
        ValueRef::Blob(b) => {
            out.extend_from_slice(b"X'");
            push_hex(out, b);
            out.push(b'\'');
        }
    }
}

/// Re-encodes text that SQLite converted from UTF-16 to UTF-8 back to UTF-16 code units.
/// SQLite writes an unpaired surrogate as its 3-byte form, which is decoded back to the
/// same unit here (so such text survives too); a stray byte becomes U+FFFD.
fn utf16_bytes(t: &[u8], order: fn(u16) -> [u8; 2]) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.len() * 2);
    let mut push = |u: u16| out.extend_from_slice(&order(u));
    let mut i = 0;
    while i < t.len() {
        let b = t[i];
        let (len, init) = match b {
            0x00..=0x7f => (1, u32::from(b)),
            0xc0..=0xdf => (2, u32::from(b & 0x1f)),
            0xe0..=0xef => (3, u32::from(b & 0x0f)),
            0xf0..=0xf7 => (4, u32::from(b & 0x07)),
            _ => (0, 0xfffd),
        };
        let cont = t
            .get(i + 1..i + len.max(1))
            .filter(|c| len > 0 && c.iter().all(|&c| c & 0xc0 == 0x80));
        let code = match cont {
            Some(c) => c
                .iter()
                .fold(init, |acc, &c| (acc << 6) | u32::from(c & 0x3f)),
            None if len == 1 => init,
            None => 0xfffd,
        };
        i += if cont.is_some() || len == 1 { len } else { 1 };
        if code >= 0x10000 {
            let v = code - 0x10000;
            push(0xd800 | (v >> 10) as u16);
            push(0xdc00 | (v & 0x3ff) as u16);
        } else {
            push(code as u16);
        }
    }
    out
}

/// Quotes an SQL identifier with double quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Writes a value as one RFC 4180 CSV field.
pub fn push_csv_value(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => {}
        ValueRef::Integer(i) => push_int(out, i),
        ValueRef::Real(f) if f.is_finite() => push_finite_real(out, f),
        ValueRef::Real(f) if f.is_nan() => {}
        ValueRef::Real(f) => {
            out.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" })
        }
        ValueRef::Text(t) => {
            let s = scan(t, b'"', b",\r\n");
            // CSV must be valid UTF-8: invalid sequences become U+FFFD (documented).
            let lossy;
            let t = if s.non_ascii {
                lossy = String::from_utf8_lossy(t);
                lossy.as_bytes()
            } else {
                t
            };
            if t.is_empty() || s.quote || s.extra {
                push_quoted(out, t, b'"', s.quote);
            } else {
                out.extend_from_slice(t);
            }
        }
        ValueRef::Blob(b) => {
            out.extend_from_slice(b"\\x");
            push_hex(out, b);
        }
    }
}

/// Writes `s` as a JSON string (quotes included).
pub fn push_json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    push_json_escaped(out, s);
    out.push(b'"');
}

/// Writes `s` escaped for the inside of a JSON string (no quotes).
pub fn push_json_escaped(out: &mut Vec<u8>, s: &[u8]) {
    let flags = scan(s, b'"', b"\\\n\t");
    if !flags.control && !flags.quote && !flags.extra {
        out.extend_from_slice(s);
        return;
    }
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

fn push_tagged(out: &mut Vec<u8>, tag: &str, payload: &str) {
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(payload.as_bytes());
    out.extend_from_slice(b"\"}");
}

/// `{"<tag>":"<base64 of bytes>"}`, encoded in place (no temporary string).
fn push_base64_tagged(out: &mut Vec<u8>, tag: &str, bytes: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    push_tagged(out, tag, "");
    out.truncate(out.len() - 2); // reopen the string before `"}`
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).expect("BLOBs are far below usize::MAX / 4");
    out.resize(start + len, 0);
    b64.encode_slice(bytes, &mut out[start..])
        .expect("buffer sized by encoded_len");
    out.extend_from_slice(b"\"}");
}

/// Writes a value as JSON.
pub fn push_json_value(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Integer(i) => push_int(out, i),
        ValueRef::Real(f) if f.is_finite() => push_finite_real(out, f),
        ValueRef::Real(f) if f.is_nan() => out.extend_from_slice(b"null"),
        ValueRef::Real(f) => {
            push_tagged(out, "$real", if f > 0.0 { "Infinity" } else { "-Infinity" })
        }
        ValueRef::Text(t) if std::str::from_utf8(t).is_ok() => push_json_string(out, t),
        ValueRef::Text(t) => push_base64_tagged(out, "$textBase64", t),
        ValueRef::Blob(b) => push_base64_tagged(out, "$base64", b),
    }
}

/// Renders one row in `encoding`: `first_in_table` starts a JSON array's first member.
/// A large value goes to `large` (which may write `out` first), the rest into `out`.
pub fn render_row(
    encoding: &RowEncoding,
    values: &[ValueRef<'_>],
    first_in_table: bool,
    out: &mut Vec<u8>,
    large: &mut dyn FnMut(&mut Vec<u8>, ValueRef<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let mut each = |out: &mut Vec<u8>, push: &dyn Fn(&mut Vec<u8>, ValueRef<'_>)| {
        for (i, &v) in values.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if let RowEncoding::Json { keys } = encoding {
                out.extend_from_slice(&keys[i]);
            }
            if is_large(&v) {
                large(out, v)?;
            } else {
                push(out, v);
            }
        }
        Ok::<_, io::Error>(())
    };
    match encoding {
        RowEncoding::Sql { prefix, text } => {
            out.extend_from_slice(prefix);
            each(out, &|out, v| push_sql_value_in(out, v, *text))?;
            out.extend_from_slice(b");\n");
        }
        RowEncoding::Csv => {
            each(out, &|out, v| push_csv_value(out, v))?;
            out.extend_from_slice(b"\r\n");
        }
        RowEncoding::Json { .. } => {
            out.extend_from_slice(if first_in_table { b"\n{" } else { b",\n{" });
            each(out, &|out, v| push_json_value(out, v))?;
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(v: ValueRef<'_>) -> String {
        let mut out = Vec::new();
        push_sql_value(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn sql_values_are_exact_literals() {
        assert_eq!(sql(ValueRef::Integer(i64::MIN)), "-9223372036854775808");
        assert_eq!(sql(ValueRef::Real(3.0)), "3.0");
        assert_eq!(sql(ValueRef::Real(-0.0)), "-0.0");
        assert_eq!(sql(ValueRef::Real(f64::INFINITY)), "1e999");
        assert_eq!(sql(ValueRef::Text(b"it's")), "'it''s'");
        assert_eq!(sql(ValueRef::Text(b"a\0b")), "CAST(X'610062' AS TEXT)");
        assert_eq!(sql(ValueRef::Text(b"a\r\n")), "CAST(X'610d0a' AS TEXT)");
        assert_eq!(sql(ValueRef::Blob(&[0xde, 0xad])), "X'dead'");
        assert_eq!(sql(ValueRef::Real(-26.819604)), "(-26819604/1e6)");
    }

    #[test]
    fn csv_distinguishes_null_and_empty() {
        let field = |v| {
            let mut out = Vec::new();
            push_csv_value(&mut out, v);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(field(ValueRef::Null), "");
        assert_eq!(field(ValueRef::Text(b"")), "\"\"");
        assert_eq!(field(ValueRef::Text(b"a,\"b\"")), "\"a,\"\"b\"\"\"");
        assert_eq!(field(ValueRef::Blob(b"\x01")), "\\x01");
        assert_eq!(field(ValueRef::Real(f64::NEG_INFINITY)), "-Infinity");
    }

    #[test]
    fn json_escapes_and_tags() {
        let mut out = Vec::new();
        push_json_value(&mut out, ValueRef::Text(b"q\"\\\x01\n"));
        assert_eq!(String::from_utf8(out).unwrap(), r#""q\"\\\u0001\n""#);
        let mut out = Vec::new();
        push_json_value(&mut out, ValueRef::Blob(b"hi"));
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"$base64":"aGk="}"#);
    }
}
