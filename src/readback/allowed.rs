//! The first of two guards on a dump read back (the second is [`super::guard`]): only the
//! statement forms chunkdump's own dumps contain are accepted, and anything else is
//! refused before it reaches SQLite, naming its place and kind.
//!
//! A dump comes from a bucket, and whoever can write there (a leaked token, a shared
//! bucket) can write statements. So the forms are checked by their tokens, from the
//! generator's side (`engine::plan`, `engine::generated`, `engine::render`):
//!
//! * `PRAGMA encoding|foreign_keys|user_version|application_id = literal`;
//! * `BEGIN [TRANSACTION]`, `COMMIT`;
//! * `CREATE [UNIQUE] INDEX|TABLE|VIRTUAL TABLE|VIEW|TRIGGER` of a `main` object (never
//!   `TEMP`, never `CREATE TABLE … AS SELECT`): the source's own schema text;
//! * `INSERT INTO t[(columns)] VALUES(…)` whose values are literals and the arithmetic
//!   and `CAST(… AS TEXT)` forms of exact REALs and UTF-16 text, nothing else;
//! * `DELETE FROM t` (a contentless FTS table's shadow tables, `sqlite_sequence`),
//!   `ANALYZE sqlite_schema`, `DROP TABLE IF EXISTS sqlite_stat4`.
//!
//! What a schema statement contains past its head (a trigger's body, a view's query) is
//! SQLite's to judge, under the second guard's rules.

/// A statement this module refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The statement's first words (`ATTACH DATABASE`, `VACUUM`, `INSERT INTO`).
    pub kind: String,
    /// Why it is not a form chunkdump writes.
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not a statement chunkdump writes ({}); the dump is refused",
            self.kind, self.reason
        )
    }
}

/// One token of SQL text, as far as the check needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// A bare word: keyword or name.
    Word(&'a [u8]),
    /// A quoted name (`"…"`, `[…]`, `` `…` ``), quotes included.
    Name(&'a [u8]),
    /// A string literal, quotes included (SQLite takes one as a name in places).
    Str(&'a [u8]),
    /// A BLOB literal (`X'…'`).
    Blob,
    Number,
    /// Any other byte.
    Punct(u8),
}

/// The tokens of `sql` (comments and white space dropped); `None` if a literal or
/// quoted name is not closed.
fn tokens(sql: &[u8]) -> Option<Vec<Token<'_>>> {
    let mut out = Vec::new();
    let mut i = 0;
    // The end (exclusive) of a quoted run opened at `i` and closed by `close`, with a
    // doubled `close` standing for itself.
    let quoted = |i: usize, close: u8| -> Option<usize> {
        let mut j = i + 1;
        loop {
            let at = j + memchr::memchr(close, &sql[j..])?;
            if close != b']' && sql.get(at + 1) == Some(&close) {
                j = at + 2;
            } else {
                return Some(at + 1);
            }
        }
    };
    while i < sql.len() {
        let b = sql[i];
        match b {
            _ if b.is_ascii_whitespace() => i += 1,
            b'-' if sql.get(i + 1) == Some(&b'-') => {
                i = memchr::memchr(b'\n', &sql[i..]).map_or(sql.len(), |at| i + at + 1);
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                i = memchr::memmem::find(&sql[i + 2..], b"*/").map_or(sql.len(), |at| i + at + 4);
            }
            b'\'' => {
                let start = i;
                i = quoted(i, b'\'')?;
                out.push(Token::Str(&sql[start..i]));
            }
            b'x' | b'X' if sql.get(i + 1) == Some(&b'\'') => {
                i = quoted(i + 1, b'\'')?;
                out.push(Token::Blob);
            }
            b'"' | b'`' | b'[' => {
                let start = i;
                i = quoted(i, if b == b'[' { b']' } else { b })?;
                out.push(Token::Name(&sql[start..i]));
            }
            b'0'..=b'9' | b'.' if b != b'.' || sql.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                while i < sql.len() {
                    let c = sql[i];
                    let sign = (c == b'+' || c == b'-') && matches!(sql[i - 1], b'e' | b'E');
                    if c.is_ascii_alphanumeric() || c == b'.' || (sign && i > start) {
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push(Token::Number);
            }
            _ if b == b'_' || b.is_ascii_alphabetic() || b >= 0x80 => {
                let start = i;
                while i < sql.len()
                    && (sql[i] == b'_'
                        || sql[i] == b'$'
                        || sql[i].is_ascii_alphanumeric()
                        || sql[i] >= 0x80)
                {
                    i += 1;
                }
                out.push(Token::Word(&sql[start..i]));
            }
            _ => {
                out.push(Token::Punct(b));
                i += 1;
            }
        }
    }
    Some(out)
}

/// The pragmas a dump sets.
const PRAGMAS: [&str; 4] = ["encoding", "foreign_keys", "user_version", "application_id"];

/// Checks that `statement` (one statement, its `;` included or not) is a form chunkdump
/// writes.
pub fn check_statement(statement: &[u8]) -> Result<(), Refused> {
    let toks = tokens(statement).ok_or_else(|| Refused {
        kind: head(statement),
        reason: "a literal or name is not closed".into(),
    })?;
    // The trailing `;`, and a lone `;`.
    let toks = match toks.split_last() {
        Some((Token::Punct(b';'), rest)) => rest,
        _ => &toks[..],
    };
    if toks.is_empty() {
        return Ok(());
    }
    let refuse = |reason: &str| {
        Err(Refused {
            kind: kind_of(toks),
            reason: reason.into(),
        })
    };
    let mut p = Cursor { toks, at: 0 };
    let Some(first) = p.word() else {
        return refuse("it does not start with a keyword");
    };
    match first.to_ascii_uppercase().as_str() {
        "PRAGMA" => {
            let name = p.word().unwrap_or_default();
            if !PRAGMAS.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                return refuse(
                    "a dump sets only encoding, foreign_keys, user_version and application_id",
                );
            }
            if !p.punct(b'=') {
                return refuse("a dump's pragmas set a value");
            }
            p.punct(b'-');
            match p.next() {
                Some(Token::Number | Token::Str(_) | Token::Word(_)) if p.done() => Ok(()),
                _ => refuse("the value is not one literal"),
            }
        }
        "BEGIN" | "COMMIT" => {
            p.keyword("TRANSACTION");
            if p.done() {
                Ok(())
            } else {
                refuse("a dump's transactions are plain")
            }
        }
        "CREATE" => {
            p.keyword("UNIQUE");
            let what = if p.keyword("VIRTUAL") { "VIRTUAL" } else { "" };
            let object = p.word().unwrap_or_default().to_ascii_uppercase();
            let ok_object = matches!(
                (what, object.as_str()),
                ("VIRTUAL", "TABLE") | ("", "TABLE" | "INDEX" | "VIEW" | "TRIGGER")
            );
            if !ok_object {
                return refuse("a dump creates tables, indexes, views and triggers in main only");
            }
            if p.keyword("IF") && !(p.keyword("NOT") && p.keyword("EXISTS")) {
                return refuse("IF without NOT EXISTS");
            }
            if !p.object_name() {
                return refuse("the object is not in the main database");
            }
            let next = p.peek();
            let ok_next = match (what, object.as_str()) {
                ("VIRTUAL", _) => p.keyword("USING"),
                (_, "TABLE") => next == Some(Token::Punct(b'(')),
                (_, "INDEX") => p.keyword("ON"),
                _ => true,
            };
            if ok_next {
                Ok(())
            } else {
                refuse("a dump's tables are declared column by column (never AS SELECT)")
            }
        }
        "INSERT" => {
            if !p.keyword("INTO") || !p.object_name() {
                return refuse("a dump inserts INTO a table of main");
            }
            if p.punct(b'(') {
                loop {
                    if !matches!(
                        p.next(),
                        Some(Token::Word(_) | Token::Name(_) | Token::Str(_))
                    ) {
                        return refuse("the column list holds names only");
                    }
                    if p.punct(b')') {
                        break;
                    }
                    if !p.punct(b',') {
                        return refuse("the column list holds names only");
                    }
                }
            }
            if !p.keyword("VALUES") || p.peek() != Some(Token::Punct(b'(')) {
                return refuse("a dump's rows are VALUES(…)");
            }
            let mut depth = 0i32;
            while let Some(t) = p.next() {
                let ok = match t {
                    Token::Number | Token::Str(_) | Token::Blob => true,
                    Token::Word(w) => ["NULL", "CAST", "AS", "TEXT"]
                        .iter()
                        .any(|k| k.as_bytes().eq_ignore_ascii_case(w)),
                    Token::Punct(b'(') => {
                        depth += 1;
                        true
                    }
                    Token::Punct(b')') => {
                        depth -= 1;
                        depth >= 0
                    }
                    Token::Punct(b',' | b'+' | b'-' | b'*' | b'/') => true,
                    _ => false,
                };
                if !ok {
                    return refuse("a row's values are literals (and the exact forms of REALs and UTF-16 text)");
                }
            }
            if depth == 0 {
                Ok(())
            } else {
                refuse("unbalanced parentheses")
            }
        }
        "DELETE" => {
            if p.keyword("FROM") && p.object_name() && p.done() {
                Ok(())
            } else {
                refuse("a dump deletes all rows of one table (FTS shadow tables, sqlite_sequence)")
            }
        }
        "ANALYZE" => {
            let target = p.word().unwrap_or_default();
            if (target.eq_ignore_ascii_case("sqlite_schema")
                || target.eq_ignore_ascii_case("sqlite_master"))
                && p.done()
            {
                Ok(())
            } else {
                refuse("a dump analyzes sqlite_schema only")
            }
        }
        "DROP" => {
            let ok = p.keyword("TABLE")
                && p.keyword("IF")
                && p.keyword("EXISTS")
                && p.word()
                    .is_some_and(|n| n.eq_ignore_ascii_case("sqlite_stat4"))
                && p.done();
            if ok {
                Ok(())
            } else {
                refuse("a dump drops sqlite_stat4 only")
            }
        }
        _ => refuse("not among the statements a dump holds"),
    }
}

/// Reads tokens in order.
struct Cursor<'t, 'a> {
    toks: &'t [Token<'a>],
    at: usize,
}

impl<'a> Cursor<'_, 'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.toks.get(self.at).copied()
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.peek();
        self.at += usize::from(t.is_some());
        t
    }

    fn done(&self) -> bool {
        self.at == self.toks.len()
    }

    /// The next token if it is a bare word.
    fn word(&mut self) -> Option<String> {
        match self.peek() {
            Some(Token::Word(w)) => {
                self.at += 1;
                Some(String::from_utf8_lossy(w).into_owned())
            }
            _ => None,
        }
    }

    /// Consumes keyword `k` if it is next.
    fn keyword(&mut self, k: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(k.as_bytes()) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn punct(&mut self, c: u8) -> bool {
        if self.peek() == Some(Token::Punct(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// A name, or `main.name`; `false` for another database's object.
    fn object_name(&mut self) -> bool {
        let name = |t: Option<Token<'_>>| match t {
            Some(Token::Word(w)) => Some(w.to_vec()),
            // Quotes off (a doubled quote inside does not matter for `main`).
            Some(Token::Name(q) | Token::Str(q)) => Some(q[1..q.len() - 1].to_vec()),
            _ => None,
        };
        let Some(first) = name(self.next()) else {
            return false;
        };
        if !self.punct(b'.') {
            return true;
        }
        first.eq_ignore_ascii_case(b"main") && name(self.next()).is_some()
    }
}

/// Second words that belong to a statement's kind (`ATTACH DATABASE`, `CREATE TEMP`).
const KIND_WORDS: [&str; 12] = [
    "DATABASE",
    "INTO",
    "FROM",
    "TABLE",
    "INDEX",
    "VIEW",
    "TRIGGER",
    "TEMP",
    "TEMPORARY",
    "VIRTUAL",
    "UNIQUE",
    "RECURSIVE",
];

/// The first word of a statement, upper-cased, and the second if it is part of the kind
/// (`ATTACH DATABASE`; a pragma's name), for messages.
fn kind_of(toks: &[Token<'_>]) -> String {
    let word = |t: Option<&Token<'_>>| match t {
        Some(Token::Word(w)) => Some(String::from_utf8_lossy(w).into_owned()),
        _ => None,
    };
    let mut words: Vec<String> = word(toks.first())
        .map(|w| w.to_ascii_uppercase())
        .into_iter()
        .collect();
    if let Some(second) = word(toks.get(1)) {
        if words.first().is_some_and(|w| w == "PRAGMA") {
            words.push(second);
        } else if KIND_WORDS.iter().any(|k| k.eq_ignore_ascii_case(&second)) {
            words.push(second.to_ascii_uppercase());
        }
    }
    if words.is_empty() {
        "a statement".into()
    } else {
        words.join(" ")
    }
}

/// The start of a statement that could not be read into tokens, for messages.
fn head(statement: &[u8]) -> String {
    let s = String::from_utf8_lossy(&statement[..statement.len().min(40)]);
    format!("{:?}", s.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) {
        if let Err(e) = check_statement(sql.as_bytes()) {
            panic!("{sql}: {e}");
        }
    }

    fn refused(sql: &str) -> Refused {
        check_statement(sql.as_bytes()).expect_err(sql)
    }

    #[test]
    fn what_chunkdump_writes_is_accepted() {
        for sql in [
            "PRAGMA foreign_keys=OFF;",
            "PRAGMA encoding='UTF-16le';",
            "PRAGMA user_version=-7;",
            "BEGIN TRANSACTION;",
            "COMMIT;",
            "CREATE TABLE \"a;b\"(x INTEGER PRIMARY KEY, [y;z], `w`);",
            "CREATE TABLE t(a, CHECK (a > 0)) WITHOUT ROWID;",
            "CREATE UNIQUE INDEX i ON t(a);",
            "CREATE VIRTUAL TABLE f USING fts5(body, content='');",
            "CREATE VIEW v AS SELECT * FROM t;",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = 1; END;",
            "CREATE TRIGGER 'gpkg_zoom_insert' BEFORE INSERT ON 'gpkg_tile_matrix' BEGIN SELECT 1; END;",
            "CREATE TABLE \"main\".\"t\"(a);",
            "INSERT INTO \"t\" VALUES(1,'it''s',X'00ff',NULL,1e999,-1e999,(-26819604/1e6));",
            "INSERT INTO \"t\"(\"a\",b) VALUES((5404319552844596.0/4611686018427387904/4),CAST(X'6100' AS TEXT),.5,-0.0);",
            "INSERT INTO sqlite_sequence(name,seq) VALUES('t',3);",
            "INSERT INTO \"f\"(\"f\") VALUES('rebuild');",
            "DELETE FROM \"f_data\";",
            "DELETE FROM sqlite_sequence;",
            "ANALYZE sqlite_schema;",
            "INSERT INTO sqlite_stat1 VALUES('t','i','10 1');",
            "DROP TABLE IF EXISTS sqlite_stat4;",
            "-- chunkdump: rows\n",
            ";",
        ] {
            ok(sql);
        }
    }

    #[test]
    fn anything_else_is_refused_naming_its_kind() {
        for (sql, kind) in [
            ("ATTACH DATABASE '/tmp/x' AS x;", "ATTACH DATABASE"),
            ("attach '/tmp/x' as x;", "ATTACH"),
            ("DETACH x;", "DETACH"),
            ("VACUUM INTO '/tmp/copy.db';", "VACUUM INTO"),
            ("SELECT load_extension('/tmp/evil.so');", "SELECT"),
            ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c;", "WITH RECURSIVE"),
            ("CREATE TABLE x.t(a);", "CREATE TABLE"),
            ("CREATE TEMP TABLE t(a);", "CREATE TEMP"),
            ("CREATE TABLE t AS SELECT 1;", "CREATE TABLE"),
            ("INSERT INTO t SELECT * FROM u;", "INSERT INTO"),
            ("INSERT INTO x.t VALUES(1);", "INSERT INTO"),
            ("INSERT INTO t VALUES(readfile('/etc/passwd'));", "INSERT INTO"),
            ("INSERT INTO t VALUES((SELECT 1));", "INSERT INTO"),
            ("INSERT INTO t VALUES(1); ATTACH 'x' AS y;", "INSERT INTO"),
            ("DELETE FROM t WHERE 1;", "DELETE FROM"),
            ("UPDATE t SET a = 1;", "UPDATE"),
            ("DROP TABLE t;", "DROP TABLE"),
            ("PRAGMA writable_schema=ON;", "PRAGMA writable_schema"),
            ("PRAGMA trusted_schema=1;", "PRAGMA trusted_schema"),
            ("PRAGMA main.user_version=1;", "PRAGMA main"),
            ("ANALYZE t;", "ANALYZE"),
            ("REPLACE INTO t VALUES(1);", "REPLACE INTO"),
            ("INSERT INTO t VALUES('a", "\"INSERT INTO t VALUES('a\""),
        ] {
            let r = refused(sql);
            assert_eq!(r.kind, kind, "{sql}");
            assert!(r.to_string().contains("is not a statement chunkdump writes"), "{r}");
        }
    }
}
