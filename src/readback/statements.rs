//! Splits an SQL dump into statements as it streams by, without reading it whole.
//!
//! A statement ends at a `;` outside string literals, quoted identifiers and comments.
//! Row statements (`INSERT …`) end at their first such `;`; any other statement is
//! handed to SQLite's own `sqlite3_complete`, so a `CREATE TRIGGER … BEGIN …; END;`
//! is one statement, as the `sqlite3` shell reads it. Literals are skipped with
//! `memchr`, so long text and hex cost a vectorised scan, not a branch per byte.

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes read from the source at a time.
const READ_SIZE: usize = 256 * 1024;

/// The longest statement [`Statements::new`] reads: a dump's statements are one row
/// each, so this bounds the largest value a restore takes (by default a BLOB of 96 MiB,
/// written as hex). The process's setting (`CHUNKDUMP_MAX_STATEMENT_BYTES`, set once by
/// the command line with [`set_max_statement`]), like SQLite's own limits.
static MAX_STATEMENT: AtomicUsize =
    AtomicUsize::new(crate::config::DEFAULT_MAX_STATEMENT_BYTES as usize);

/// The longest statement a restore or verify holds (see [`MAX_STATEMENT`]).
pub fn max_statement() -> usize {
    MAX_STATEMENT.load(Ordering::Relaxed)
}

/// Sets the longest statement a restore or verify holds (see [`MAX_STATEMENT`]).
pub fn set_max_statement(bytes: u64) {
    MAX_STATEMENT.store(
        usize::try_from(bytes).unwrap_or(usize::MAX),
        Ordering::Relaxed,
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    /// Inside a literal or quoted identifier that ends at this byte.
    Quoted(u8),
    /// After a `-` (a `--` comment starts if another follows).
    Dash,
    /// After a `/` (a `/* */` comment starts if `*` follows).
    Slash,
    LineComment,
    BlockComment,
    /// After a `*` inside a block comment.
    BlockStar,
}

/// Statements of an SQL text read from `R`, one at a time.
pub struct Statements<R> {
    reader: R,
    buf: Vec<u8>,
    /// Where the current statement starts in `buf`.
    start: usize,
    /// How far `buf` has been scanned.
    scan: usize,
    state: State,
    eof: bool,
    /// A NUL-terminated copy for `sqlite3_complete`.
    scratch: Vec<u8>,
    /// Statements returned so far (the 1-based number of the last one).
    count: u64,
    /// The longest statement accepted, in bytes: a longer one is an error before more of
    /// it is held in memory (a decompression bomb is one endless line).
    limit: usize,
}

impl<R: Read> Statements<R> {
    pub fn new(reader: R) -> Self {
        Self::with_limit(reader, max_statement())
    }

    /// Statements of at most `limit` bytes each.
    pub fn with_limit(reader: R, limit: usize) -> Self {
        Statements {
            reader,
            buf: Vec::with_capacity(READ_SIZE * 2),
            start: 0,
            scan: 0,
            state: State::Normal,
            eof: false,
            scratch: Vec::new(),
            count: 0,
            limit,
        }
    }

    /// [`Self::next_statement`] with its 1-based number in the text.
    pub fn next_numbered(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        let n = self.count + 1;
        Ok(self.next_statement()?.map(|s| (n, s)))
    }

    /// The next statement, from its first byte (leading white space included) through its
    /// `;`; `None` at the end of the text. Text after the last `;` that is not white space
    /// or a comment is an error (the dump was cut inside a statement).
    pub fn next_statement(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            if let Some(end) = self.find_end() {
                let start = std::mem::replace(&mut self.start, end);
                self.count += 1;
                return Ok(Some(&self.buf[start..end]));
            }
            if self.buf.len() - self.start > self.limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "statement {} is longer than {} bytes, the most a restore holds (set CHUNKDUMP_MAX_STATEMENT_BYTES to allow more): {}",
                        self.count + 1,
                        self.limit,
                        String::from_utf8_lossy(&self.buf[self.start..][..60.min(self.buf.len() - self.start)])
                    ),
                ));
            }
            if !self.fill()? {
                let rest = &self.buf[self.start..];
                if only_space_and_comments(rest) {
                    self.start = self.buf.len();
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the dump ends inside a statement: {}",
                        String::from_utf8_lossy(&rest[..rest.len().min(200)])
                    ),
                ));
            }
        }
    }

    /// Scans from `scan` for the end of the current statement.
    fn find_end(&mut self) -> Option<usize> {
        let buf = &self.buf;
        while self.scan < buf.len() {
            let b = buf[self.scan];
            match self.state {
                State::Normal => match b {
                    b'\'' | b'"' | b'`' => self.state = State::Quoted(b),
                    b'[' => self.state = State::Quoted(b']'),
                    b'-' => self.state = State::Dash,
                    b'/' => self.state = State::Slash,
                    b';' => {
                        let end = self.scan + 1;
                        self.scan = end;
                        let candidate = &buf[self.start..end];
                        if is_row_statement(candidate) || complete(candidate, &mut self.scratch) {
                            return Some(end);
                        }
                        continue;
                    }
                    _ => {
                        // Ordinary text: skip to the next byte that may change the state.
                        let ordinary = buf[self.scan..]
                            .iter()
                            .position(|&b| SPECIAL[b as usize])
                            .unwrap_or(buf.len() - self.scan);
                        self.scan += ordinary.max(1);
                        continue;
                    }
                },
                // A doubled quote closes and reopens: the same state again.
                State::Quoted(close) => {
                    if !skip_to(buf, &mut self.scan, close) {
                        return None;
                    }
                    self.state = State::Normal;
                }
                State::Dash | State::Slash => {
                    let comment = match (self.state, b) {
                        (State::Dash, b'-') => Some(State::LineComment),
                        (State::Slash, b'*') => Some(State::BlockComment),
                        _ => None,
                    };
                    match comment {
                        Some(state) => self.state = state,
                        None => {
                            // Not a comment: this byte is read again as normal text.
                            self.state = State::Normal;
                            continue;
                        }
                    }
                }
                State::LineComment => {
                    if !skip_to(buf, &mut self.scan, b'\n') {
                        return None;
                    }
                    self.state = State::Normal;
                }
                State::BlockComment | State::BlockStar => {
                    self.state = match (self.state, b) {
                        (State::BlockStar, b'/') => State::Normal,
                        (_, b'*') => State::BlockStar,
                        _ => State::BlockComment,
                    }
                }
            }
            self.scan += 1;
        }
        None
    }

    /// Reads more of the source (after dropping statements already returned); `false`
    /// at its end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scan -= self.start;
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_SIZE, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(len + n);
        self.eof = n == 0;
        Ok(n > 0)
    }
}

/// Moves `scan` to the next `byte` in `buf` (`true`), or to the end of `buf` (`false`).
fn skip_to(buf: &[u8], scan: &mut usize, byte: u8) -> bool {
    match memchr::memchr(byte, &buf[*scan..]) {
        Some(at) => {
            *scan += at;
            true
        }
        None => {
            *scan = buf.len();
            false
        }
    }
}

/// Bytes that may start or end a literal, a quoted name or a comment, or end a statement.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    let special = b"'\"`[-/;";
    while i < special.len() {
        t[special[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether `text` holds nothing but white space and comments (what may follow the last
/// statement).
fn only_space_and_comments(mut text: &[u8]) -> bool {
    loop {
        text = text.trim_ascii_start();
        if text.is_empty() {
            return true;
        }
        if let Some(rest) = text.strip_prefix(b"--") {
            match memchr::memchr(b'\n', rest) {
                Some(at) => text = &rest[at..],
                None => return true,
            }
        } else if let Some(rest) = text.strip_prefix(b"/*") {
            match memchr::memmem::find(rest, b"*/") {
                Some(at) => text = &rest[at + 2..],
                None => return true,
            }
        } else {
            return false;
        }
    }
}

/// Whether `statement` is an `INSERT` (which holds no `;` outside its literals).
pub fn is_row_statement(statement: &[u8]) -> bool {
    statement
        .trim_ascii_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"INSERT"))
}

/// SQLite's own judgement of whether `sql` ends a statement (triggers included).
fn complete(sql: &[u8], scratch: &mut Vec<u8>) -> bool {
    scratch.clear();
    scratch.extend_from_slice(sql);
    scratch.push(0);
    // SAFETY: `scratch` is NUL-terminated and outlives the call.
    unsafe { rusqlite::ffi::sqlite3_complete(scratch.as_ptr().cast()) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &[u8], read_size: usize) -> Result<Vec<String>, String> {
        // A reader that hands out `read_size` bytes at a time, to cut statements anywhere.
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(self.0.len()).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut s = Statements::new(Trickle(text, read_size));
        let mut out = Vec::new();
        while let Some(st) = s.next_statement().map_err(|e| e.to_string())? {
            out.push(String::from_utf8_lossy(st).trim().to_string());
        }
        Ok(out)
    }

    #[test]
    fn statements_end_at_semicolons_outside_literals_comments_and_triggers() {
        let text = b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n\
            CREATE TABLE \"a;b\"(x, [y;z], `w;`);\n\
            INSERT INTO \"a;b\" VALUES('it''s; here','-- no',X'3b');\n\
            INSERT INTO \"a;b\" VALUES('line\none; /* not */',2,3);\n\
            -- a comment; with a semicolon\n\
            /* block; comment */ CREATE TRIGGER t AFTER INSERT ON \"a;b\" BEGIN SELECT 1; SELECT 2; END;\n\
            SELECT 4-2/1;\nCOMMIT;\n";
        let want = vec![
            "PRAGMA foreign_keys=OFF;",
            "BEGIN TRANSACTION;",
            "CREATE TABLE \"a;b\"(x, [y;z], `w;`);",
            "INSERT INTO \"a;b\" VALUES('it''s; here','-- no',X'3b');",
            "INSERT INTO \"a;b\" VALUES('line\none; /* not */',2,3);",
            "-- a comment; with a semicolon\n/* block; comment */ CREATE TRIGGER t AFTER INSERT ON \"a;b\" BEGIN SELECT 1; SELECT 2; END;",
            "SELECT 4-2/1;",
            "COMMIT;",
        ];
        for read_size in [1, 2, 3, 7, 64, 1 << 20] {
            assert_eq!(
                split(text, read_size).unwrap(),
                want,
                "reads of {read_size}"
            );
        }
    }

    #[test]
    fn a_statement_longer_than_the_limit_is_refused_before_it_is_held() {
        // An endless statement: the reader would never end.
        struct Endless;
        impl Read for Endless {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                out.fill(b'a');
                Ok(out.len())
            }
        }
        let mut s = Statements::with_limit(
            io::Read::chain(&b"SELECT 1;\nINSERT INTO t VALUES('"[..], Endless),
            1 << 20,
        );
        assert_eq!(s.next_numbered().unwrap().unwrap().0, 1);
        let e = s.next_statement().unwrap_err().to_string();
        assert!(
            e.contains("statement 2 is longer than 1048576 bytes"),
            "{e}"
        );
        assert!(s.buf.capacity() < 4 << 20);
    }

    #[test]
    fn a_cut_statement_is_an_error_and_trailing_space_is_not() {
        assert!(split(b"INSERT INTO t VALUES('a;", 5)
            .unwrap_err()
            .contains("ends inside a statement"));
        assert!(split(b"SELECT 1", 5).is_err());
        assert_eq!(split(b"SELECT 1;\n\n  \n", 3).unwrap(), vec!["SELECT 1;"]);
        assert_eq!(
            split(b"SELECT 1;\n-- done\n", 3).unwrap(),
            vec!["SELECT 1;"]
        );
    }
}
