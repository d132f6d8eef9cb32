//! Per-table introspection: columns, the keyset key (rowid or primary key), the
//! SELECTs that read a table in key order, and how its rows are encoded.

use std::collections::HashSet;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use super::render::RowEncoding;
use crate::error::DumpError;
use crate::model::DumpSpec;

pub(super) struct Column {
    pub name: String,
    pub decl_type: String,
    pub pk: i64,
    pub hidden: i64,
}

/// What kind of table a schema row is.
#[derive(Clone)]
pub(super) enum TableKind {
    Ordinary { without_rowid: bool },
    Virtual { module: String, rows: VtabRows },
}

/// Where a virtual table's rows live, decided by what its module really created (its
/// shadow tables), not by a pattern in its SQL: `USING fts3(a, content="x")` is an FTS3
/// table with a column named `content`, while in FTS4/FTS5 `content=` is an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum VtabRows {
    /// The table holds its rows (FTS with a `_content` shadow table, rtree, …): dumped
    /// by content and re-inserted, which rebuilds the index.
    Own,
    /// External-content FTS: rebuilt from its content table after the data.
    External,
    /// Contentless FTS: no content to read, only the index; restored by copying these
    /// shadow tables into the ones `CREATE VIRTUAL TABLE` made.
    Contentless { shadows: Vec<String> },
}

/// Decides [`VtabRows`] for a virtual table from its module, SQL and the shadow tables
/// that exist (`shadows`: lowercased names).
pub(super) fn vtab_rows(
    name: &str,
    module: &str,
    sql: &str,
    shadows: &HashSet<String>,
) -> VtabRows {
    if !is_fts(module) {
        return VtabRows::Own;
    }
    let shadow = |suffix: &str| format!("{name}_{suffix}");
    if shadows.contains(&shadow("content").to_lowercase()) {
        return VtabRows::Own;
    }
    let content = if module == "fts3" {
        None
    } else {
        vtab_option(sql, "content")
    };
    match content {
        Some(c) if !c.is_empty() => VtabRows::External,
        _ => {
            let suffixes: &[&str] = if module == "fts5" {
                &["config", "data", "idx", "docsize"]
            } else {
                &["segments", "segdir", "docsize", "stat"]
            };
            VtabRows::Contentless {
                shadows: suffixes
                    .iter()
                    .map(|s| shadow(s))
                    .filter(|s| shadows.contains(&s.to_lowercase()))
                    .collect(),
            }
        }
    }
}

/// How a table is paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `WHERE key > last ORDER BY key`: the normal, O(log n) resume.
    Keyset,
    /// `LIMIT n OFFSET k` in table order: only for a rowid table whose rowid has no name
    /// left (columns named rowid, oid and _rowid_); reported as a warning.
    Offset,
}

/// How to read one table in key order.
#[derive(Debug)]
pub struct TableSource {
    pub name: String,
    /// Number of leading key columns in the SELECT (1 for rowid, n for a primary key).
    pub key_len: usize,
    /// The key columns, comma-separated, as written in the SELECTs.
    pub key_list: String,
    /// SELECT for the first slice (`?1` = limit).
    pub select_first: String,
    /// SELECT after a key (`?1..?key_len` = key, `?key_len+1` = limit).
    pub select_after: String,
    /// Number of value columns after the key columns.
    pub value_len: usize,
    /// For tables wider than a result set may be: the SELECT of the remaining value
    /// columns of one row (`?1..?key_len` = its key), and how many there are.
    pub select_rest: Option<String>,
    pub rest_len: usize,
    pub paging: Paging,
    /// Per value column (main then rest): its name, and whether it has numeric affinity
    /// (INTEGER, REAL or NUMERIC), where SQLite converts number-like TEXT on insert.
    pub value_columns: Vec<(String, bool)>,
    /// Names of the visible columns (the CSV header); for SQL, without the rowid.
    pub column_names: Vec<String>,
    /// Per value column, its declared type (`INTEGER` for a rowid carried as a column).
    pub declared_types: Vec<String>,
    pub encoding: RowEncoding,
}

pub(super) fn columns(
    conn: &Connection,
    spec: &DumpSpec,
    table: &str,
) -> Result<Vec<Column>, DumpError> {
    conn.prepare("SELECT name, type, pk, hidden FROM pragma_table_xinfo(?1)")
        .and_then(|mut s| s.query_map([table], |r| Ok(Column { name: r.get(0)?, decl_type: r.get(1)?, pk: r.get(2)?, hidden: r.get(3)? }))?.collect())
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(_, Some(msg)) if msg.contains("no such module") => {
                DumpError::InvalidRequest(format!("table {table:?} is a virtual table whose module is not available ({msg}); leave it out with --tables"))
            }
            e => DumpError::from_sqlite(&spec.database, e),
        })
}

pub(super) fn is_fts(module: &str) -> bool {
    matches!(module, "fts3" | "fts4" | "fts5")
}

/// The module name of a `CREATE VIRTUAL TABLE … USING module(…)` statement, lowercased.
pub(super) fn vtab_module(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    lower
        .find(" using ")
        .map(|i| {
            lower[i + 7..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .unwrap_or_default()
}

/// The value of a `key=value` module argument (quotes removed), if present.
pub(super) fn vtab_option(sql: &str, key: &str) -> Option<String> {
    let open = sql.find('(')?;
    let close = sql.rfind(')')?;
    let args = &sql[open + 1..close];
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in args.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&args[start..]);
    parts.iter().find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case(key) {
            return None;
        }
        let v = v.trim();
        let unquoted = match v.chars().next() {
            Some(q @ ('\'' | '"' | '`')) if v.len() >= 2 && v.ends_with(q) => {
                v[1..v.len() - 1].replace(&format!("{q}{q}"), &q.to_string())
            }
            _ => v.to_string(),
        };
        Some(unquoted)
    })
}

/// SQLite 3.54 (unlike 3.39–3.50, tested) reads TEXT as a number up to an embedded NUL, so such
/// a value in a column of numeric affinity is converted when the dump is restored there.
/// No SQL text can avoid the conversion: the dump says so, naming the column.
pub(super) fn nul_text_warning(table: &TableSource, column: usize) -> String {
    let name = table
        .value_columns
        .get(column)
        .map_or("?", |c| c.0.as_str());
    format!(
        "table {:?}, column {name:?}: TEXT values containing NUL in a column of numeric affinity; SQLite 3.54 and later convert \
         such a value to a number when they restore the dump (3.39 to 3.50 keep it as TEXT), so restore with one of those to keep it",
        table.name
    )
}

/// Notes, in `found`, the value columns of `table` where this row holds TEXT with a NUL
/// in a column of numeric affinity (only SQL restores convert those).
pub(super) fn note_nul_text(table: &TableSource, values: &[ValueRef<'_>], found: &mut Vec<usize>) {
    if !matches!(table.encoding, RowEncoding::Sql { .. }) {
        return;
    }
    for (i, v) in values.iter().enumerate() {
        if let ValueRef::Text(t) = v {
            if table.value_columns.get(i).is_some_and(|c| c.1)
                && t.contains(&0)
                && !found.contains(&i)
            {
                found.push(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vtab_module_and_content_option() {
        let sql = "CREATE VIRTUAL TABLE x USING fts5(a, b, content='docs', content_rowid='id')";
        assert_eq!(vtab_module(sql), "fts5");
        assert_eq!(vtab_option(sql, "content").as_deref(), Some("docs"));
        assert_eq!(
            vtab_option(
                "CREATE VIRTUAL TABLE y USING fts5(a, content='')",
                "content"
            )
            .as_deref(),
            Some("")
        );
        assert_eq!(
            vtab_option("CREATE VIRTUAL TABLE z USING fts4(a)", "content"),
            None
        );
    }
}
