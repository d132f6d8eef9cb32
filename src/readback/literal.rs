//! The values of a row statement, parsed from the literal forms the renderer writes
//! (`NULL`, integers, REAL decimals and the exact quotient and product forms of
//! [`crate::engine::real`], `'text'`, `X'hex'`, `CAST(X'hex' AS TEXT)`) straight into the
//! digest's canonical encoding, with the arithmetic SQLite itself does for those forms
//! (one IEEE double operation per step). Any other form is left to SQLite
//! ([`evaluate`]), so nothing is guessed; the property test below holds the parser to
//! SQLite's own reading of random values.

use rusqlite::types::ValueRef;

use crate::engine::digest::encode_row;

/// Asks SQLite for the values of `inner` (`SELECT <inner>`), for forms not parsed here.
pub(super) fn evaluate(
    scratch: &rusqlite::Connection,
    inner: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let sql = format!(
        "SELECT {}",
        std::str::from_utf8(inner).map_err(|_| "values that are not UTF-8".to_string())?
    );
    let mut stmt = scratch.prepare(&sql).map_err(|e| e.to_string())?;
    let n = stmt.column_count();
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let row = rows.next().map_err(|e| e.to_string())?.ok_or("no values")?;
    for i in 0..n {
        encode_row(
            std::iter::once(row.get_ref(i).map_err(|e| e.to_string())?),
            out,
        );
    }
    Ok(())
}

/// Parses a row's comma-separated values into their canonical encoding; `false` if one
/// is in a form this parser leaves to SQLite.
pub(super) fn values(inner: &[u8], utf16: bool, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> bool {
    let mut p = Bytes { s: inner, pos: 0 };
    loop {
        p.space();
        if !value(&mut p, utf16, out, scratch) {
            return false;
        }
        p.space();
        match p.next() {
            Some(b',') => continue,
            None => return true,
            Some(_) => return false,
        }
    }
}

fn value(p: &mut Bytes<'_>, utf16: bool, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> bool {
    let mut push = |v: ValueRef<'_>| encode_row(std::iter::once(v), out);
    match p.peek() {
        Some(b'\'') => match p.string(scratch) {
            Some(text) => push(ValueRef::Text(text)),
            None => return false,
        },
        Some(b'X' | b'x') if p.s.get(p.pos + 1) == Some(&b'\'') => {
            p.pos += 1;
            match p.hex(scratch) {
                Some(()) => push(ValueRef::Blob(scratch)),
                None => return false,
            }
        }
        Some(b'N' | b'n') => {
            if p.keyword(b"NULL").is_none() {
                return false;
            }
            push(ValueRef::Null);
        }
        Some(b'C' | b'c') if !utf16 => {
            let ok = p.keyword(b"CAST").is_some()
                && p.next() == Some(b'(')
                && {
                    p.space();
                    matches!(p.next(), Some(b'X' | b'x'))
                }
                && p.hex(scratch).is_some()
                && p.keyword(b"AS").is_some()
                && p.keyword(b"TEXT").is_some()
                && {
                    p.space();
                    p.next() == Some(b')')
                };
            if !ok {
                return false;
            }
            push(ValueRef::Text(scratch));
        }
        Some(b'(') => {
            p.pos += 1;
            match p.product() {
                Some(f) => push(ValueRef::Real(f)),
                None => return false,
            }
        }
        Some(b'-' | b'0'..=b'9') => match p.number() {
            Some(Num::Int(i)) => push(ValueRef::Integer(i)),
            Some(Num::Real(f)) => push(ValueRef::Real(f)),
            None => return false,
        },
        _ => return false,
    }
    true
}

/// The value of each hex digit; 0xff for any other byte.
static HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0u8;
    while i < 10 {
        t[(b'0' + i) as usize] = i;
        i += 1;
    }
    let mut i = 0u8;
    while i < 6 {
        t[(b'a' + i) as usize] = 10 + i;
        t[(b'A' + i) as usize] = 10 + i;
        i += 1;
    }
    t
};

enum Num {
    Int(i64),
    Real(f64),
}

impl Num {
    fn real(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Real(f) => f,
        }
    }
}

/// A cursor over a statement's bytes.
pub(super) struct Bytes<'a> {
    pub(super) s: &'a [u8],
    pub(super) pos: usize,
}

impl Bytes<'_> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    pub(super) fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    pub(super) fn space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// A keyword (any case) after optional white space, not followed by a name byte.
    pub(super) fn keyword(&mut self, word: &[u8]) -> Option<()> {
        self.space();
        let end = self.pos + word.len();
        let found = self.s.get(self.pos..end)?.eq_ignore_ascii_case(word)
            && !self
                .s
                .get(end)
                .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_');
        found.then(|| self.pos = end)
    }

    /// A `"quoted"` or bare identifier.
    pub(super) fn ident(&mut self) -> Option<String> {
        self.space();
        if self.peek() == Some(b'"') {
            let mut name = Vec::new();
            self.pos += 1;
            loop {
                let at = memchr::memchr(b'"', &self.s[self.pos..])?;
                name.extend_from_slice(&self.s[self.pos..self.pos + at]);
                self.pos += at + 1;
                if self.peek() == Some(b'"') {
                    name.push(b'"');
                    self.pos += 1;
                } else {
                    return String::from_utf8(name).ok();
                }
            }
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.s[start..self.pos]).into())
    }

    /// A `'string'` literal (`''` is one quote); borrowed unless it holds a quote.
    fn string<'b>(&'b mut self, scratch: &'b mut Vec<u8>) -> Option<&'b [u8]> {
        self.pos += 1;
        let start = self.pos;
        let at = memchr::memchr(b'\'', &self.s[start..])?;
        if self.s.get(start + at + 1) != Some(&b'\'') {
            self.pos = start + at + 1;
            return Some(&self.s[start..start + at]);
        }
        scratch.clear();
        loop {
            let at = memchr::memchr(b'\'', &self.s[self.pos..])?;
            scratch.extend_from_slice(&self.s[self.pos..self.pos + at]);
            self.pos += at + 1;
            if self.peek() == Some(b'\'') {
                scratch.push(b'\'');
                self.pos += 1;
            } else {
                return Some(scratch);
            }
        }
    }

    /// The `'hex'` after an `X`, decoded into `scratch`.
    fn hex(&mut self, scratch: &mut Vec<u8>) -> Option<()> {
        if self.next()? != b'\'' {
            return None;
        }
        let at = memchr::memchr(b'\'', &self.s[self.pos..])?;
        let digits = &self.s[self.pos..self.pos + at];
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        scratch.clear();
        scratch.resize(digits.len() / 2, 0);
        let mut bad = 0u8;
        for (pair, byte) in digits.chunks_exact(2).zip(scratch.iter_mut()) {
            let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
            bad |= hi | lo;
            *byte = (hi << 4) | (lo & 0x0f);
        }
        if bad & 0xf0 != 0 {
            return None;
        }
        self.pos += at + 1;
        Some(())
    }

    /// An integer or decimal literal, with an optional `-`.
    fn number(&mut self) -> Option<Num> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        // Integers (most values) are accumulated as they are scanned.
        let digits = self.pos;
        let mut magnitude = 0u64;
        let mut fits = true;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            match magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(d - b'0')))
            {
                Some(m) => magnitude = m,
                None => fits = false,
            }
            self.pos += 1;
        }
        if self.pos == digits {
            return None;
        }
        if !matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            // Out of i64 range SQLite reads a REAL: left to SQLite.
            let value = if negative {
                0i64.checked_sub_unsigned(magnitude)
            } else {
                i64::try_from(magnitude).ok()
            };
            return value.filter(|_| fits).map(Num::Int);
        }
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' | b'.' | b'e' | b'E' => {}
                b'+' | b'-' if matches!(self.s[self.pos - 1], b'e' | b'E') => {}
                _ => break,
            }
            self.pos += 1;
        }
        // Only ASCII was scanned. Rust's parser is correctly rounded; the renderer writes
        // only decimals that are exact doubles, which every SQLite reads to the same bits.
        let text = std::str::from_utf8(&self.s[start..self.pos]).ok()?;
        text.parse().ok().map(Num::Real)
    }

    /// The inside of `(a op b op c …)` with `op` `*` or `/`, after the `(`: evaluated as
    /// SQLite does for a REAL operand (one IEEE double operation per step). An integer
    /// operation (integer division) is left to SQLite.
    fn product(&mut self) -> Option<f64> {
        self.space();
        let mut acc = self.number()?;
        loop {
            self.space();
            let op = self.next()?;
            if op == b')' {
                return match acc {
                    Num::Real(f) => Some(f),
                    Num::Int(_) => None,
                };
            }
            self.space();
            let rhs = self.number()?;
            if matches!((&acc, &rhs), (Num::Int(_), Num::Int(_))) {
                return None;
            }
            let (a, b) = (acc.real(), rhs.real());
            acc = Num::Real(match op {
                b'*' => a * b,
                // SQLite divides by zero to NULL, IEEE to an infinity: left to SQLite.
                b'/' if b != 0.0 => a / b,
                _ => return None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::render::push_sql_value;
    use proptest::prelude::*;

    /// The fast parse of rendered values, and SQLite's evaluation of the same text.
    fn both(row: &[ValueRef<'_>]) -> (Option<Vec<u8>>, Vec<u8>) {
        let mut text = Vec::new();
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                text.push(b',');
            }
            push_sql_value(&mut text, *v);
        }
        let (mut fast, mut scratch) = (Vec::new(), Vec::new());
        let parsed = values(&text, false, &mut fast, &mut scratch).then_some(fast);
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut slow = Vec::new();
        evaluate(&conn, &text, &mut slow).unwrap();
        (parsed, slow)
    }

    fn value() -> impl Strategy<Value = rusqlite::types::Value> {
        use rusqlite::types::Value;
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Integer),
            any::<u64>().prop_map(|b| Value::Real(f64::from_bits(b))),
            // Real-looking decimals: coordinates and money.
            (-180_000_000i64..180_000_000).prop_map(|c| Value::Real(c as f64 / 1e6)),
            (-10_000_000i64..10_000_000).prop_map(|c| Value::Real(c as f64 / 100.0)),
            any::<String>().prop_map(Value::Text),
            "[a-z' \\n\\t\\r\\x00]{0,12}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Blob),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Every value the renderer writes is parsed here, to the bits SQLite reads.
        #[test]
        fn rendered_values_parse_as_sqlite_reads_them(row in proptest::collection::vec(value(), 1..6)) {
            let refs: Vec<ValueRef<'_>> = row.iter().map(ValueRef::from).collect();
            let (fast, slow) = both(&refs);
            let fast = fast.expect("the renderer's forms are parsed without SQLite");
            prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn corner_values_parse_as_sqlite_reads_them() {
        let rows: Vec<Vec<ValueRef<'_>>> = vec![
            vec![ValueRef::Integer(i64::MIN), ValueRef::Integer(i64::MAX)],
            vec![ValueRef::Real(-0.0), ValueRef::Real(0.0)],
            vec![
                ValueRef::Real(f64::INFINITY),
                ValueRef::Real(f64::NEG_INFINITY),
            ],
            vec![ValueRef::Real(f64::NAN), ValueRef::Real(5e-324)],
            vec![ValueRef::Real(f64::MAX), ValueRef::Real(-26.819604)],
            vec![ValueRef::Text(b""), ValueRef::Blob(b"")],
            vec![
                ValueRef::Text(b"it's ''quoted''"),
                ValueRef::Text(b"a\0b\r\n"),
            ],
            vec![ValueRef::Text(&[0xff, 0xfe, b'x'])],
        ];
        for row in rows {
            let (fast, slow) = both(&row);
            assert_eq!(fast.as_ref(), Some(&slow), "{row:?}");
        }
    }

    #[test]
    fn other_forms_are_left_to_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for text in [
            "7/2",
            "(7/2)",
            "(1.5/0)",
            "0x10",
            "99999999999999999999",
            "'a'||'b'",
            "abs(-1)",
            "+5",
        ] {
            let (mut fast, mut scratch) = (Vec::new(), Vec::new());
            assert!(
                !values(text.as_bytes(), false, &mut fast, &mut scratch),
                "{text} must not be parsed here"
            );
            // ... and SQLite gives them a value (so the fallback has one).
            let mut slow = Vec::new();
            evaluate(&conn, text.as_bytes(), &mut slow).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        // A name is no value: not parsed here (and SQLite then refuses it).
        assert!(!values(b"NULLx", false, &mut Vec::new(), &mut Vec::new()));
    }
}
