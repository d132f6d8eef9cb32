//! An SQL dump read back without loading its rows into SQLite.
//!
//! Rows are the `INSERT` statements into the tables the manifest digests: their values
//! are parsed ([`super::literal`]) and hashed for the table's digest. Every other
//! statement (schema, pragmas, `sqlite_sequence`) runs in a scratch in-memory database:
//! it must be valid SQL, and it sets what SQLite's evaluation of an unusual value depends
//! on (the text encoding).

use std::collections::HashSet;
use std::io::Read;

use xxhash_rust::xxh3::xxh3_128;

use super::declared::DeclaredSchema;
use super::literal::{evaluate, values, Bytes};
use super::statements::{is_row_statement, Statements};
use super::TableSums;
use crate::engine::digest::TableDigest;

/// Reads a whole SQL dump and digests the rows of `row_tables` (the manifest's tables).
/// `with_schema`: the dump creates its tables, so an empty table must be created too.
///
/// Nothing reaches SQLite here: the statements it must run (schema, pragmas) and the rows
/// whose values only it evaluates are checked against the statements chunkdump writes
/// and held, for [`PendingSql::finish`] once the caller has checked the file's bytes
/// against the manifest.
/// `declared`: the schema the manifest lists, the only one the statements may create.
pub fn sql_digests(
    reader: impl Read,
    row_tables: &HashSet<String>,
    with_schema: bool,
    declared: Option<DeclaredSchema>,
) -> Result<PendingSql, String> {
    let mut statements = Statements::new(reader);
    let mut pending = PendingSql {
        tables: TableSums::default(),
        deferred: Vec::new(),
        held: 0,
        row_tables: row_tables.clone(),
        with_schema,
        declared,
    };
    let mut rows = RowParser::default();
    while let Some((n, statement)) = statements.next_numbered().map_err(|e| e.to_string())? {
        let is_row =
            is_row_statement(statement) && rows.row(statement, n, row_tables, &mut pending)?;
        if !is_row {
            checked(statement, n)?;
            if is_empty_statement(statement) {
                continue;
            }
            pending.hold(Deferred::Statement(statement.to_vec()))?;
            rows.note_statement(statement);
        }
    }
    Ok(pending)
}

/// Whether `statement` is a lone `;` (white space around it): it does nothing, so it is
/// neither run nor held (a file of 20,000,000 of them took minutes to run one by one).
pub fn is_empty_statement(statement: &[u8]) -> bool {
    statement
        .iter()
        .all(|b| b.is_ascii_whitespace() || *b == b';')
}

/// What of an SQL dump only SQLite can check, held in order until the file's bytes are
/// known to be the manifest's (see [`sql_digests`]), with the rows digested so far.
pub struct PendingSql {
    tables: TableSums,
    deferred: Vec<Deferred>,
    /// Memory `deferred` takes (its items and their buffers): at most
    /// [`super::max_statement`], like one statement.
    held: usize,
    row_tables: HashSet<String>,
    with_schema: bool,
    /// The manifest's schema, held against what the statements create.
    declared: Option<DeclaredSchema>,
}

/// One thing left to SQLite.
enum Deferred {
    /// A statement to run in the scratch database.
    Statement(Vec<u8>),
    /// The values of a row of `table` (counted already) to evaluate and hash.
    Row { table: String, values: Vec<u8> },
}

impl PendingSql {
    fn hold(&mut self, item: Deferred) -> Result<(), String> {
        // What the item costs in memory, not only its text: a file of 20,000,000 lone
        // `;` is 20 MB of text but 1.6 GB of held items.
        self.held += std::mem::size_of::<Deferred>()
            + match &item {
                Deferred::Statement(s) => s.capacity(),
                Deferred::Row { table, values } => table.capacity() + values.capacity(),
            };
        if self.held > super::max_statement() {
            return Err(format!(
                "more than {} bytes of statements and rows only SQLite can check, the most a verify holds (CHUNKDUMP_MAX_STATEMENT_BYTES)",
                super::max_statement()
            ));
        }
        self.deferred.push(item);
        Ok(())
    }

    /// Runs what was held, in order, in a scratch in-memory database under SQLite's
    /// guards, and returns the tables' digests.
    pub fn finish(mut self) -> Result<Vec<TableDigest>, String> {
        let scratch = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
        let deadline = super::guard::guard(&scratch).map_err(|e| e.to_string())?;
        let mut encoded = Vec::new();
        for item in std::mem::take(&mut self.deferred) {
            deadline.arm(super::guard::statement_bound(0));
            match item {
                Deferred::Statement(statement) => {
                    // A contentless FTS table's index rows (see `guard::ShadowWrites`).
                    let _lowered = match written_table(&statement) {
                        Some(t) if super::guard::is_shadow(&scratch, &t) => {
                            Some(super::guard::ShadowWrites::allow(&scratch)?)
                        }
                        _ => None,
                    };
                    run(&scratch, &statement).map_err(|e| deadline.explain(e))?;
                    if let Some(declared) = self
                        .declared
                        .as_mut()
                        .filter(|_| super::declared::is_create(&statement))
                    {
                        declared.check_new(&scratch)?;
                    }
                }
                Deferred::Row { table, values } => {
                    encoded.clear();
                    evaluate(&scratch, &values, &mut encoded)
                        .map_err(|e| deadline.explain(cut(&values, &e)))?;
                    self.tables.add_hash(&table, xxh3_128(&encoded))?;
                }
            }
        }
        if let Some(declared) = &self.declared {
            declared.finish()?;
        }
        for table in &self.row_tables {
            if !self.tables.has(table) && (!self.with_schema || exists(&scratch, table)?) {
                self.tables.begin(table);
            }
        }
        Ok(self.tables.finish())
    }
}

fn run(scratch: &rusqlite::Connection, statement: &[u8]) -> Result<(), String> {
    let sql = std::str::from_utf8(statement).map_err(|_| {
        format!(
            "a statement is not UTF-8: {}",
            String::from_utf8_lossy(&statement[..statement.len().min(200)])
        )
    })?;
    scratch.execute_batch(sql).map_err(|e| {
        format!(
            "{e} in: {}",
            sql.trim().chars().take(200).collect::<String>()
        )
    })
}

fn exists(scratch: &rusqlite::Connection, table: &str) -> Result<bool, String> {
    scratch
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|e| e.to_string())
}

/// Parses row statements, remembering the last one's table.
#[derive(Default)]
struct RowParser {
    /// `INSERT INTO "t"(…) VALUES(` of the last row statement, and its table.
    prefix: Vec<u8>,
    table: String,
    /// The dump declared a text encoding other than UTF-8: `CAST(X'…' AS TEXT)` is then
    /// the database's encoding, left to SQLite.
    utf16: bool,
    encoded: Vec<u8>,
    scratch: Vec<u8>,
}

impl RowParser {
    fn note_statement(&mut self, statement: &[u8]) {
        let s = statement.trim_ascii();
        if s.len() >= 15 && s[..15].eq_ignore_ascii_case(b"PRAGMA encoding") {
            self.utf16 = !s.windows(5).any(|w| w.eq_ignore_ascii_case(b"UTF-8"));
        }
    }

    /// Digests `statement` if it is a row of one of `row_tables` (holding its values in
    /// `pending` when only SQLite can evaluate them); `false` if it is another kind of
    /// `INSERT` (to run as a statement).
    fn row(
        &mut self,
        statement: &[u8],
        n: u64,
        row_tables: &HashSet<String>,
        pending: &mut PendingSql,
    ) -> Result<bool, String> {
        let s = statement.trim_ascii();
        let parsed = match self.parse(statement, row_tables)? {
            None => return Ok(false),
            Some(parsed) => parsed,
        };
        let tables = &mut pending.tables;
        if !tables.is_current(&self.table) {
            tables.begin(&self.table);
        }
        match parsed {
            Parsed::Values => tables.add_row(xxh3_128(&self.encoded))?,
            Parsed::LeftToSqlite(inner) => {
                checked(statement, n)?;
                // Counted now, hashed once SQLite has evaluated the values.
                tables.add_row(0)?;
                pending.hold(Deferred::Row {
                    table: self.table.clone(),
                    values: s[inner].to_vec(),
                })?;
            }
        }
        Ok(true)
    }

    /// Parses `statement` if it is a row of one of `row_tables` (`None` otherwise): its
    /// table is then `self.table`, and its values' canonical encoding `self.encoded`
    /// unless they are in a form left to SQLite.
    fn parse(
        &mut self,
        statement: &[u8],
        row_tables: &HashSet<String>,
    ) -> Result<Option<Parsed>, String> {
        let s = statement.trim_ascii();
        let values_at = if !self.prefix.is_empty() && s.starts_with(&self.prefix) {
            self.prefix.len()
        } else {
            let Some((table, at)) = insert_prefix(s) else {
                return Ok(None);
            };
            if !row_tables.contains(&table) {
                return Ok(None);
            }
            self.prefix.clear();
            self.prefix.extend_from_slice(&s[..at]);
            self.table = table;
            at
        };
        // The values run from after `VALUES(` to the `)` before the final `;`.
        let inner = s[values_at..]
            .strip_suffix(b";")
            .map(<[u8]>::trim_ascii_end)
            .and_then(|v| v.strip_suffix(b")"))
            .ok_or_else(|| cut(s, "a row statement must end with );"))?;
        self.encoded.clear();
        if values(inner, self.utf16, &mut self.encoded, &mut self.scratch) {
            Ok(Some(Parsed::Values))
        } else {
            Ok(Some(Parsed::LeftToSqlite(
                values_at..values_at + inner.len(),
            )))
        }
    }
}

/// What [`RowParser::parse`] made of a row statement.
enum Parsed {
    /// The values are in `encoded`.
    Values,
    /// These bytes of the trimmed statement are values only SQLite can evaluate.
    LeftToSqlite(std::ops::Range<usize>),
}

/// An SQL dump read back for a restore: statements, with the rows of the given tables
/// parsed into values.
pub(crate) struct SqlItems<R> {
    statements: Statements<R>,
    rows: RowParser,
    row_tables: HashSet<String>,
}

/// One item of an SQL dump.
pub(crate) enum SqlItem<'a> {
    /// A statement to run as it is (schema, pragmas, and rows whose values only SQLite
    /// evaluates).
    Statement(&'a str),
    /// A row: `INSERT INTO "t"(…) VALUES(` and its values' canonical encoding (see
    /// [`crate::engine::digest::decode_value`]).
    Row {
        table: &'a str,
        prefix: &'a [u8],
        values: &'a [u8],
    },
}

impl<R: Read> SqlItems<R> {
    pub(crate) fn new(reader: R, row_tables: HashSet<String>) -> Self {
        SqlItems {
            statements: Statements::new(reader),
            rows: RowParser::default(),
            row_tables,
        }
    }

    /// The next item; `None` at the end.
    pub(crate) fn next_item(&mut self) -> Result<Option<SqlItem<'_>>, String> {
        let Some((n, statement)) = self.statements.next_numbered().map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        if is_row_statement(statement) {
            if let Some(Parsed::Values) = self.rows.parse(statement, &self.row_tables)? {
                // Values of 1 MiB or more are hashed in the encoding: run those rows.
                if decodable(&self.rows.encoded) {
                    return Ok(Some(SqlItem::Row {
                        table: &self.rows.table,
                        prefix: &self.rows.prefix,
                        values: &self.rows.encoded,
                    }));
                }
            }
        } else {
            self.rows.note_statement(statement);
        }
        // Only now can it reach SQLite: it must be a form chunkdump writes.
        checked(statement, n)?;
        let sql = std::str::from_utf8(statement).map_err(|_| cut(statement, "not UTF-8"))?;
        Ok(Some(SqlItem::Statement(sql)))
    }
}

/// Whether every value of a row encoding decodes (none was hashed for its size).
fn decodable(encoded: &[u8]) -> bool {
    let mut pos = 0;
    while pos < encoded.len() {
        if crate::engine::digest::decode_value(encoded, &mut pos).is_none() {
            return false;
        }
    }
    true
}

/// `statement` (number `n` of its file) if it is a form chunkdump writes
/// ([`super::allowed`]); else the refusal, naming its place and kind.
pub(crate) fn checked(statement: &[u8], n: u64) -> Result<(), String> {
    super::allowed::check_statement(statement)
        .map_err(|refused| format!("statement {n}: {refused}"))
}

fn cut(statement: &[u8], why: &str) -> String {
    format!(
        "{why} in: {}",
        String::from_utf8_lossy(&statement[..statement.len().min(200)])
    )
}

/// The table a statement writes, for the two forms that write one table's rows:
/// `INSERT INTO <table>…` and `DELETE FROM <table>`.
pub(crate) fn written_table(statement: &[u8]) -> Option<String> {
    let s = statement.trim_ascii();
    if let Some((table, _)) = insert_prefix(s) {
        return Some(table);
    }
    let mut p = Bytes { s, pos: 0 };
    p.keyword(b"DELETE")?;
    p.keyword(b"FROM")?;
    p.ident()
}

/// `INSERT INTO <table>[(<columns>)] VALUES(`: the table and where the values start.
fn insert_prefix(s: &[u8]) -> Option<(String, usize)> {
    let mut p = Bytes { s, pos: 0 };
    p.keyword(b"INSERT")?;
    p.keyword(b"INTO")?;
    let table = p.ident()?;
    p.space();
    if p.peek() == Some(b'(') {
        p.pos += 1;
        loop {
            p.space();
            p.ident()?;
            p.space();
            match p.next()? {
                b',' => continue,
                b')' => break,
                _ => return None,
            }
        }
    }
    p.keyword(b"VALUES")?;
    (p.next()? == b'(').then_some((table, p.pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_the_manifest_tables_are_digested_and_the_rest_is_run() {
        let dump = b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n\
            CREATE TABLE \"a \"\"b\"(x INTEGER PRIMARY KEY AUTOINCREMENT, y);\n\
            INSERT INTO \"a \"\"b\" VALUES(1,'one');\n\
            INSERT INTO \"a \"\"b\" VALUES(2,(-26819604/1e6));\n\
            INSERT INTO \"a \"\"b\"(x,y) VALUES(3, 7/2);\n\
            CREATE TABLE empty(z);\nCREATE TABLE other(w);\n\
            DELETE FROM sqlite_sequence;\n\
            INSERT INTO sqlite_sequence(name,seq) VALUES('a \"b',3);\nCOMMIT;\n";
        let tables: HashSet<String> = ["a \"b", "empty"].map(String::from).into();
        let got = sql_digests(&dump[..], &tables, true, None)
            .and_then(PendingSql::finish)
            .unwrap();
        let find = |name: &str| got.iter().find(|t| t.table == name).cloned();
        assert_eq!(find("a \"b").unwrap().rows, 3);
        assert_eq!(find("empty").unwrap().rows, 0);
        assert!(find("other").is_none() && find("sqlite_sequence").is_none());
        // The same rows, hashed from values SQLite read: the same digest.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(std::str::from_utf8(dump).unwrap())
            .unwrap();
        let mut want = crate::engine::digest::TableDigest::new("a \"b");
        let mut stmt = conn.prepare("SELECT x, y FROM \"a \"\"b\"").unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let hash = crate::engine::digest::row_hash(
                [r.get_ref(0).unwrap(), r.get_ref(1).unwrap()].into_iter(),
            );
            want.add(1, hash);
        }
        assert_eq!(find("a \"b").unwrap(), want);
        // A statement SQLite refuses, or a cut one, is an error naming it.
        let bad = b"CREATE TABLE t(a);\nINSERT INTO nowhere VALUES(1);\n";
        let tables: HashSet<String> = ["t".to_string()].into();
        assert!(sql_digests(&bad[..], &tables, true, None)
            .and_then(PendingSql::finish)
            .unwrap_err()
            .contains("nowhere"));
        let cut = b"CREATE TABLE t(a);\nINSERT INTO t VALUES('x";
        assert!(sql_digests(&cut[..], &tables, true, None)
            .and_then(PendingSql::finish)
            .unwrap_err()
            .contains("ends inside a statement"));
    }
}
