//! Values larger than [`LARGE_VALUE`](super::render::LARGE_VALUE), written to the output in pieces.
//!
//! Rendering a 200 MB BLOB into one row buffer costs the hex text (2x the value) plus the
//! buffer's growth (up to 2x again); written piece by piece it costs one piece. What stays
//! is SQLite's own copy of the value (it reads a value whole when the row is stepped), so
//! a dump needs about one value's size plus its part buffers (see docs/performance.md).
//! The bytes are identical to the whole-value renderers in [`super::render`].

use base64::Engine;
use rusqlite::types::ValueRef;

use super::render::{
    push_csv_value, push_hex, push_json_escaped, push_json_value, push_sql_value_in, RowEncoding,
    TextEncoding,
};

/// Source bytes per piece (a multiple of 3, so base64 pieces concatenate).
const PIECE: usize = 3 * 64 * 1024;

/// Writes `v` as `encoding` renders it, through `write` in pieces, using `scratch`.
pub fn write_value(
    encoding: &RowEncoding,
    v: ValueRef<'_>,
    scratch: &mut Vec<u8>,
    write: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut pieces = |open: &[u8],
                      bytes: &[u8],
                      close: &[u8],
                      render: &dyn Fn(&mut Vec<u8>, &[u8])|
     -> std::io::Result<()> {
        write(open)?;
        for piece in bytes.chunks(PIECE) {
            scratch.clear();
            render(scratch, piece);
            write(scratch)?;
        }
        write(close)
    };
    let utf8 = |t: &[u8]| std::str::from_utf8(t).is_ok();
    let controls = |t: &[u8]| t.iter().any(|&b| b < 0x20 && b != b'\t' && b != b'\n');
    let doubled = |q: u8| {
        move |out: &mut Vec<u8>, p: &[u8]| {
            for part in p.split_inclusive(|&b| b == q) {
                out.extend_from_slice(part);
                if part.last() == Some(&q) {
                    out.push(q);
                }
            }
        }
    };
    match (encoding, v) {
        (RowEncoding::Sql { .. }, ValueRef::Blob(b)) => pieces(b"X'", b, b"'", &push_hex),
        (RowEncoding::Sql { .. }, ValueRef::Text(t)) if utf8(t) && !controls(t) => {
            pieces(b"'", t, b"'", &doubled(b'\''))
        }
        (
            RowEncoding::Sql {
                text: TextEncoding::Utf8,
                ..
            },
            ValueRef::Text(t),
        ) => pieces(b"CAST(X'", t, b"' AS TEXT)", &push_hex),
        (RowEncoding::Csv, ValueRef::Blob(b)) => pieces(b"\\x", b, b"", &push_hex),
        (RowEncoding::Csv, ValueRef::Text(t)) if utf8(t) => {
            if t.iter().any(|&b| matches!(b, b'"' | b',' | b'\r' | b'\n')) {
                pieces(b"\"", t, b"\"", &doubled(b'"'))
            } else {
                pieces(b"", t, b"", &|out, p| out.extend_from_slice(p))
            }
        }
        (RowEncoding::Json { .. }, ValueRef::Blob(b)) => {
            pieces(b"{\"$base64\":\"", b, b"\"}", &base64_piece)
        }
        (RowEncoding::Json { .. }, ValueRef::Text(t)) if utf8(t) => {
            pieces(b"\"", t, b"\"", &push_json_escaped)
        }
        (RowEncoding::Json { .. }, ValueRef::Text(t)) => {
            pieces(b"{\"$textBase64\":\"", t, b"\"}", &base64_piece)
        }
        // Rare shapes (UTF-16 hex text, invalid UTF-8 in CSV): rendered whole.
        (encoding, v) => {
            scratch.clear();
            match encoding {
                RowEncoding::Sql { text, .. } => push_sql_value_in(scratch, v, *text),
                RowEncoding::Csv => push_csv_value(scratch, v),
                RowEncoding::Json { .. } => push_json_value(scratch, v),
            }
            write(scratch)
        }
    }
}

fn base64_piece(out: &mut Vec<u8>, piece: &[u8]) {
    let start = out.len();
    out.resize(
        start + base64::encoded_len(piece.len(), true).expect("pieces are small"),
        0,
    );
    base64::engine::general_purpose::STANDARD
        .encode_slice(piece, &mut out[start..])
        .expect("sized by encoded_len");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::render::{is_large, LARGE_VALUE};

    fn whole(encoding: &RowEncoding, v: ValueRef<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            RowEncoding::Sql { text, .. } => push_sql_value_in(&mut out, v, *text),
            RowEncoding::Csv => push_csv_value(&mut out, v),
            RowEncoding::Json { .. } => push_json_value(&mut out, v),
        }
        out
    }

    #[test]
    fn streamed_bytes_equal_the_whole_value_renderings() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut values: Vec<(bool, Vec<u8>)> = Vec::new();
        let random: Vec<u8> = (0..LARGE_VALUE + 12345).map(|_| rng.u8(..)).collect();
        values.push((false, random.clone()));
        values.push((true, random));
        let text: Vec<u8> = "quote ' and \" comma, é\n tab\t "
            .repeat(50_000)
            .into_bytes();
        values.push((true, text.clone()));
        let mut nul = text.clone();
        nul[1000] = 0;
        values.push((true, nul));
        values.push((true, b"plain".repeat(300_000)));
        let encodings = [
            RowEncoding::Sql {
                prefix: Vec::new(),
                text: TextEncoding::Utf8,
            },
            RowEncoding::Sql {
                prefix: Vec::new(),
                text: TextEncoding::Utf16Le,
            },
            RowEncoding::Csv,
            RowEncoding::Json { keys: Vec::new() },
        ];
        for enc in &encodings {
            for (is_text, bytes) in &values {
                let v = if *is_text {
                    ValueRef::Text(bytes)
                } else {
                    ValueRef::Blob(bytes)
                };
                assert!(is_large(&v));
                let mut streamed = Vec::new();
                let mut scratch = Vec::new();
                write_value(enc, v, &mut scratch, &mut |p| {
                    streamed.extend_from_slice(p);
                    Ok(())
                })
                .unwrap();
                assert!(streamed == whole(enc, v), "{enc:?} text={is_text}");
            }
        }
    }
}
