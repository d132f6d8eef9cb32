//! Dump planning: turns the database schema into an ordered list of output objects, each
//! a list of steps (literal text, or the rows of one table read by keyset pagination).
//!
//! The plan is rebuilt by every chunk from the live schema (it is cheap and keeps the job
//! record small); its fingerprint, fixed by the first chunk, detects schema changes.

use std::collections::HashSet;
use std::sync::Arc;

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::render::{quote_ident, quote_literal};
use crate::error::DumpError;
use crate::job::{gz_suffix, DumpSpec, Format};

/// One output object (the SQL or JSON file, or one CSV file) and what goes into it.
#[derive(Debug)]
pub struct ObjectPlan {
    pub key: String,
    pub steps: Vec<Step>,
}

/// A piece of an output object.
#[derive(Debug)]
pub enum Step {
    /// Fixed text, written whole.
    Literal(Vec<u8>),
    /// The rows of one table.
    Rows(Arc<TableSource>),
}

/// How rows of a table are encoded.
#[derive(Debug)]
pub enum RowEncoding {
    /// `prefix` + values + `);\n`.
    Sql { prefix: Vec<u8> },
    Csv,
    /// One object per row; `keys` are the pre-rendered `"name":` members.
    Json { keys: Vec<Vec<u8>> },
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
    pub encoding: RowEncoding,
}

/// The whole dump.
#[derive(Debug)]
pub struct Plan {
    pub objects: Vec<ObjectPlan>,
    /// SHA-256 over the schema objects the plan depends on.
    pub fingerprint: String,
}

struct SchemaRow {
    kind: String,
    name: String,
    tbl_name: String,
    sql: Option<String>,
}

struct Column {
    name: String,
    decl_type: String,
    pk: i64,
    hidden: i64,
}

/// What kind of table a schema row is.
enum TableKind {
    Ordinary { without_rowid: bool },
    Virtual { module: String, content: Option<String> },
}

fn db_err(spec: &DumpSpec) -> impl Fn(rusqlite::Error) -> DumpError + '_ {
    move |e| DumpError::from_sqlite(&spec.database, e)
}

/// Builds the plan for `spec` from the live schema.
pub fn build_plan(conn: &Connection, spec: &DumpSpec, dump_id: &str) -> Result<Plan, DumpError> {
    let err = db_err(spec);
    let schema: Vec<SchemaRow> = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(SchemaRow { kind: r.get(0)?, name: r.get(1)?, tbl_name: r.get(2)?, sql: r.get(3)? })
            })?
            .collect()
        })
        .map_err(&err)?;
    let kinds: std::collections::HashMap<String, (String, bool)> = conn
        .prepare("SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))?.collect())
        .map_err(&err)?;

    // User-visible tables, in schema order.
    let mut tables = Vec::new();
    for row in schema.iter().filter(|r| r.kind == "table") {
        let lower = row.name.to_ascii_lowercase();
        let (ty, wr) = kinds.get(&row.name).cloned().unwrap_or(("table".into(), false));
        if lower.starts_with("sqlite_") || ty == "shadow" {
            continue;
        }
        let kind = if ty == "virtual" {
            let sql = row.sql.clone().unwrap_or_default();
            TableKind::Virtual { module: vtab_module(&sql), content: vtab_option(&sql, "content") }
        } else {
            TableKind::Ordinary { without_rowid: wr }
        };
        tables.push((row, kind));
    }
    let selected: Option<HashSet<String>> = match &spec.tables {
        None => None,
        Some(list) => {
            let known: HashSet<String> = tables.iter().map(|(r, _)| r.name.to_ascii_lowercase()).collect();
            let mut chosen = HashSet::new();
            for t in list {
                let lower = t.to_ascii_lowercase();
                if !known.contains(&lower) {
                    let mut names: Vec<&str> = tables.iter().map(|(r, _)| r.name.as_str()).collect();
                    names.truncate(20);
                    return Err(DumpError::InvalidRequest(format!(
                        "unknown table {t:?}; tables in the database: {}",
                        names.join(", ")
                    )));
                }
                chosen.insert(lower);
            }
            Some(chosen)
        }
    };
    let is_selected = |name: &str| selected.as_ref().is_none_or(|s| s.contains(&name.to_ascii_lowercase()));
    tables.retain(|(r, _)| is_selected(&r.name));

    let mut hasher = Sha256::new();
    let mut fingerprint = |r: &SchemaRow| {
        for part in [r.kind.as_str(), &r.name, &r.tbl_name, r.sql.as_deref().unwrap_or("")] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
    };
    for (row, _) in &tables {
        fingerprint(row);
    }

    let mut objects = Vec::new();
    let gz = gz_suffix(spec.compression);
    match spec.format {
        Format::Sql => {
            let mut steps = vec![Step::Literal(b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n".to_vec())];
            let mut rebuilds = Vec::new();
            for (row, kind) in &tables {
                if spec.include_schema {
                    let sql = row.sql.as_deref().unwrap_or_default();
                    steps.push(Step::Literal(format!("{sql};\n").into_bytes()));
                }
                match kind {
                    TableKind::Virtual { module, content: Some(c) } if is_fts(module) => {
                        // External-content FTS holds no rows of its own: rebuild it from
                        // its content table after the data; contentless FTS cannot be
                        // restored by content at all.
                        if !c.is_empty() {
                            let q = quote_ident(&row.name);
                            rebuilds.push(format!("INSERT INTO {q}({q}) VALUES('rebuild');\n"));
                        } else {
                            tracing::warn!(table = %row.name, "contentless FTS table: only its definition is dumped");
                        }
                    }
                    _ => steps.push(Step::Rows(Arc::new(table_source(conn, spec, &row.name, kind)?))),
                }
            }
            if spec.include_schema {
                steps.push(Step::Literal(sql_trailer(conn, spec, &schema, &is_selected, &mut fingerprint, &rebuilds)?));
            } else {
                steps.push(Step::Literal(b"COMMIT;\n".to_vec()));
            }
            objects.push(ObjectPlan { key: format!("{dump_id}.sql{gz}"), steps });
        }
        Format::Json => {
            let mut steps = vec![Step::Literal(b"{\"tables\":{".to_vec())];
            for (i, (row, kind)) in tables.iter().enumerate() {
                let mut open = if i == 0 { b"\n".to_vec() } else { b",\n".to_vec() };
                super::render::push_json_string(&mut open, row.name.as_bytes());
                open.extend_from_slice(b":[");
                steps.push(Step::Literal(open));
                steps.push(Step::Rows(Arc::new(table_source(conn, spec, &row.name, kind)?)));
                steps.push(Step::Literal(b"\n]".to_vec()));
            }
            steps.push(Step::Literal(b"\n}}\n".to_vec()));
            objects.push(ObjectPlan { key: format!("{dump_id}.json{gz}"), steps });
        }
        Format::Csv => {
            for (row, kind) in &tables {
                let source = table_source(conn, spec, &row.name, kind)?;
                let mut header = Vec::new();
                for (i, col) in csv_columns(conn, spec, &row.name, kind)?.iter().enumerate() {
                    if i > 0 {
                        header.push(b',');
                    }
                    super::render::push_csv_value(&mut header, rusqlite::types::ValueRef::Text(col.as_bytes()));
                }
                header.extend_from_slice(b"\r\n");
                let key = format!("{dump_id}/{}.csv{gz}", safe_file_name(&row.name));
                objects.push(ObjectPlan { key, steps: vec![Step::Literal(header), Step::Rows(Arc::new(source))] });
            }
        }
    }
    let fingerprint = hex_digest(hasher.finalize().as_slice());
    Ok(Plan { objects, fingerprint })
}

fn hex_digest(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    super::render::push_hex(&mut out, bytes);
    String::from_utf8(out).expect("hex is ASCII")
}

/// `sqlite_sequence`, `sqlite_stat1`, indexes, views, triggers, FTS rebuilds, the
/// header pragmas, `COMMIT`.
fn sql_trailer(
    conn: &Connection,
    spec: &DumpSpec,
    schema: &[SchemaRow],
    is_selected: &dyn Fn(&str) -> bool,
    fingerprint: &mut dyn FnMut(&SchemaRow),
    rebuilds: &[String],
) -> Result<Vec<u8>, DumpError> {
    let err = db_err(spec);
    let mut out = String::new();
    let has = |name: &str| schema.iter().any(|r| r.kind == "table" && r.name == name);
    if has("sqlite_sequence") {
        let rows: Vec<(String, i64)> = conn
            .prepare("SELECT name, seq FROM sqlite_sequence ORDER BY rowid")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(&err)?;
        let rows: Vec<_> = rows.into_iter().filter(|(n, _)| is_selected(n)).collect();
        if !rows.is_empty() {
            out.push_str("DELETE FROM sqlite_sequence;\n");
            for (name, seq) in rows {
                out.push_str(&format!("INSERT INTO sqlite_sequence(name,seq) VALUES({},{seq});\n", quote_literal(&name)));
            }
        }
    }
    if has("sqlite_stat1") && spec.tables.is_none() {
        let rows: Vec<(String, Option<String>, String)> = conn
            .prepare("SELECT tbl, idx, stat FROM sqlite_stat1 ORDER BY rowid")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
            .map_err(&err)?;
        out.push_str("ANALYZE sqlite_schema;\n");
        for (tbl, idx, stat) in rows {
            let idx = idx.map_or("NULL".to_string(), |i| quote_literal(&i));
            out.push_str(&format!("INSERT INTO sqlite_stat1 VALUES({},{idx},{});\n", quote_literal(&tbl), quote_literal(&stat)));
        }
    }
    let whole_db = spec.tables.is_none();
    for kind in ["index", "view", "trigger"] {
        for row in schema.iter().filter(|r| r.kind == kind && r.sql.is_some()) {
            let wanted = if kind == "view" { whole_db } else { is_selected(&row.tbl_name) };
            if wanted && !row.name.starts_with("sqlite_") {
                fingerprint(row);
                out.push_str(row.sql.as_deref().unwrap_or_default());
                out.push_str(";\n");
            }
        }
    }
    for r in rebuilds {
        out.push_str(r);
    }
    for pragma in ["user_version", "application_id"] {
        let v: i64 = conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0)).map_err(&err)?;
        if v != 0 {
            out.push_str(&format!("PRAGMA {pragma}={v};\n"));
        }
    }
    out.push_str("COMMIT;\n");
    Ok(out.into_bytes())
}

fn columns(conn: &Connection, spec: &DumpSpec, table: &str) -> Result<Vec<Column>, DumpError> {
    conn.prepare("SELECT name, type, pk, hidden FROM pragma_table_xinfo(?1)")
        .and_then(|mut s| {
            s.query_map([table], |r| Ok(Column { name: r.get(0)?, decl_type: r.get(1)?, pk: r.get(2)?, hidden: r.get(3)? }))?
                .collect()
        })
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(_, Some(msg)) if msg.contains("no such module") => DumpError::InvalidRequest(
                format!("table {table:?} is a virtual table whose module is not available ({msg}); leave it out with --tables"),
            ),
            e => DumpError::from_sqlite(&spec.database, e),
        })
}

/// Column names written by CSV and JSON: everything a `SELECT *` shows, generated
/// columns included, virtual-table hidden columns excluded.
fn csv_columns(conn: &Connection, spec: &DumpSpec, table: &str, _kind: &TableKind) -> Result<Vec<String>, DumpError> {
    Ok(columns(conn, spec, table)?.into_iter().filter(|c| c.hidden != 1).map(|c| c.name).collect())
}

fn table_source(conn: &Connection, spec: &DumpSpec, table: &str, kind: &TableKind) -> Result<TableSource, DumpError> {
    let cols = columns(conn, spec, table)?;
    let q = quote_ident(table);
    let names: HashSet<String> = cols.iter().map(|c| c.name.to_ascii_lowercase()).collect();
    let rowid_alias = ["rowid", "_rowid_", "oid"].into_iter().find(|a| !names.contains(*a));

    // Key columns (keyset order) and whether SQL must insert the rowid explicitly.
    let (keys, sql_rowid): (Vec<String>, bool) = match kind {
        TableKind::Ordinary { without_rowid: true } => {
            let mut pk: Vec<&Column> = cols.iter().filter(|c| c.pk > 0).collect();
            pk.sort_by_key(|c| c.pk);
            (pk.iter().map(|c| quote_ident(&c.name)).collect(), false)
        }
        TableKind::Ordinary { without_rowid: false } => {
            let alias = rowid_alias.ok_or_else(|| {
                DumpError::InvalidRequest(format!("table {table:?} has columns named rowid, _rowid_ and oid; its rowid cannot be read"))
            })?;
            (vec![alias.to_string()], !has_integer_primary_key(conn, spec, table, &cols)?)
        }
        TableKind::Virtual { module, .. } => {
            let alias = rowid_alias.unwrap_or("rowid");
            (vec![alias.to_string()], !module.starts_with("rtree"))
        }
    };
    let visible: Vec<&Column> = match spec.format {
        Format::Sql => cols.iter().filter(|c| c.hidden == 0).collect(),
        _ => cols.iter().filter(|c| c.hidden != 1).collect(),
    };
    let mut values: Vec<String> = Vec::new();
    if spec.format == Format::Sql && sql_rowid {
        values.push(keys[0].clone());
    }
    values.extend(visible.iter().map(|c| quote_ident(&c.name)));
    let encoding = match spec.format {
        Format::Sql => {
            let all_plain = cols.iter().all(|c| c.hidden == 0);
            let prefix = if sql_rowid || !all_plain {
                format!("INSERT INTO {q}({}) VALUES(", values.join(","))
            } else {
                format!("INSERT INTO {q} VALUES(")
            };
            RowEncoding::Sql { prefix: prefix.into_bytes() }
        }
        Format::Csv => RowEncoding::Csv,
        Format::Json => RowEncoding::Json {
            keys: visible
                .iter()
                .map(|c| {
                    let mut k = Vec::new();
                    super::render::push_json_string(&mut k, c.name.as_bytes());
                    k.push(b':');
                    k
                })
                .collect(),
        },
    };
    let key_list = keys.join(",");
    let select_cols = if values.is_empty() { key_list.clone() } else { format!("{key_list},{}", values.join(",")) };
    let params: Vec<String> = (1..=keys.len()).map(|i| format!("?{i}")).collect();
    let after = if keys.len() == 1 {
        format!("{key_list} > {}", params[0])
    } else {
        format!("({key_list}) > ({})", params.join(","))
    };
    Ok(TableSource {
        name: table.to_string(),
        key_len: keys.len(),
        key_list: key_list.clone(),
        select_first: format!("SELECT {select_cols} FROM {q} ORDER BY {key_list} LIMIT ?1"),
        select_after: format!("SELECT {select_cols} FROM {q} WHERE {after} ORDER BY {key_list} LIMIT ?{}", keys.len() + 1),
        value_len: values.len(),
        encoding,
    })
}

/// Whether the table has an INTEGER PRIMARY KEY that aliases the rowid. (`INTEGER
/// PRIMARY KEY DESC` does not: such a table gets an automatic `pk` index, an alias never.)
fn has_integer_primary_key(conn: &Connection, spec: &DumpSpec, table: &str, cols: &[Column]) -> Result<bool, DumpError> {
    let pk: Vec<&Column> = cols.iter().filter(|c| c.pk > 0).collect();
    if pk.len() != 1 || !pk[0].decl_type.eq_ignore_ascii_case("integer") {
        return Ok(false);
    }
    let pk_index: i64 = conn
        .query_row("SELECT count(*) FROM pragma_index_list(?1) WHERE origin = 'pk'", [table], |r| r.get(0))
        .map_err(|e| DumpError::from_sqlite(&spec.database, e))?;
    Ok(pk_index == 0)
}

fn is_fts(module: &str) -> bool {
    matches!(module, "fts3" | "fts4" | "fts5")
}

/// The module name of a `CREATE VIRTUAL TABLE … USING module(…)` statement, lowercased.
fn vtab_module(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    lower
        .find(" using ")
        .map(|i| lower[i + 7..].trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
        .unwrap_or_default()
}

/// The value of a `key=value` module argument (quotes removed), if present.
fn vtab_option(sql: &str, key: &str) -> Option<String> {
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
            Some(q @ ('\'' | '"' | '`')) if v.len() >= 2 && v.ends_with(q) => v[1..v.len() - 1].replace(&format!("{q}{q}"), &q.to_string()),
            _ => v.to_string(),
        };
        Some(unquoted)
    })
}

/// A file name for a table that is safe on any file system and in any URL: bytes outside
/// `[A-Za-z0-9_-]` are percent-encoded (so `a/b c` becomes `a%2Fb%20c`).
pub fn safe_file_name(table: &str) -> String {
    let mut out = String::new();
    for b in table.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vtab_module_and_content_option() {
        let sql = "CREATE VIRTUAL TABLE x USING fts5(a, b, content='docs', content_rowid='id')";
        assert_eq!(vtab_module(sql), "fts5");
        assert_eq!(vtab_option(sql, "content").as_deref(), Some("docs"));
        assert_eq!(vtab_option("CREATE VIRTUAL TABLE y USING fts5(a, content='')", "content").as_deref(), Some(""));
        assert_eq!(vtab_option("CREATE VIRTUAL TABLE z USING fts4(a)", "content"), None);
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(safe_file_name("a/b c.\"x\""), "a%2Fb%20c%2E%22x%22");
        assert_eq!(safe_file_name(".."), "%2E%2E");
        assert_eq!(safe_file_name("plain_Name-1"), "plain_Name-1");
    }
}
