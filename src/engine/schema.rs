//! What a plan reads of the schema: `sqlite_schema`, the table list and the text
//! encoding, once; the tables a dump can hold and those requested; the fingerprint of
//! their schema rows; the SQL trailer (indexes, views, triggers, FTS rebuilds).

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::table::{vtab_module, vtab_rows, TableKind, VtabRows};
use crate::error::DumpError;
use crate::model::DumpSpec;

/// A row of `sqlite_schema`.
pub(super) struct SchemaRow {
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) tbl_name: String,
    pub(super) sql: Option<String>,
}

/// The schema as a plan needs it, read once.
pub(super) struct Schema {
    /// `sqlite_schema`, in its order.
    pub(super) rows: Vec<SchemaRow>,
    /// `pragma_table_list`: name → (type, WITHOUT ROWID).
    pub(super) kinds: HashMap<String, (String, bool)>,
    /// `PRAGMA encoding`, as SQLite names it.
    pub(super) encoding: String,
}

/// A table a dump can hold, with how its rows are read.
pub(super) type PlannedTable<'s> = (&'s SchemaRow, TableKind);

pub(super) fn db_err(spec: &DumpSpec) -> impl Fn(rusqlite::Error) -> DumpError + '_ {
    move |e| DumpError::from_sqlite(&spec.database, e)
}

/// Reads `sqlite_schema`, the table list and the text encoding.
pub(super) fn read_schema(conn: &Connection, spec: &DumpSpec) -> Result<Schema, DumpError> {
    let err = db_err(spec);
    let rows: Vec<SchemaRow> = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(SchemaRow {
                    kind: r.get(0)?,
                    name: r.get(1)?,
                    tbl_name: r.get(2)?,
                    sql: r.get(3)?,
                })
            })?
            .collect()
        })
        .map_err(&err)?;
    let kinds: HashMap<String, (String, bool)> = conn
        .prepare("SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))?
                .collect()
        })
        .map_err(&err)?;
    let encoding: String = conn
        .query_row("PRAGMA encoding", [], |r| r.get(0))
        .map_err(&err)?;
    Ok(Schema {
        rows,
        kinds,
        encoding,
    })
}

/// The user-visible tables, in schema order: not `sqlite_*`, not FTS shadow tables; a
/// virtual table with how its rows can be read.
pub(super) fn user_tables(schema: &Schema) -> Vec<PlannedTable<'_>> {
    let shadows: HashSet<String> = schema
        .kinds
        .iter()
        .filter(|(_, (ty, _))| ty == "shadow")
        .map(|(n, _)| n.to_lowercase())
        .collect();
    let mut tables = Vec::new();
    for row in schema.rows.iter().filter(|r| r.kind == "table") {
        let lower = row.name.to_ascii_lowercase();
        let (ty, wr) = schema
            .kinds
            .get(&row.name)
            .cloned()
            .unwrap_or(("table".into(), false));
        if lower.starts_with("sqlite_") || ty == "shadow" {
            continue;
        }
        let kind = if ty == "virtual" {
            let sql = row.sql.clone().unwrap_or_default();
            let module = vtab_module(&sql);
            let rows = vtab_rows(&row.name, &module, &sql, &shadows);
            TableKind::Virtual { module, rows }
        } else {
            TableKind::Ordinary { without_rowid: wr }
        };
        tables.push((row, kind));
    }
    tables
}

/// The requested tables, lower-cased (`None`: every table). An unknown name is refused,
/// naming (some of) the tables there are.
pub(super) fn requested_tables(
    tables: &[PlannedTable<'_>],
    spec: &DumpSpec,
) -> Result<Option<HashSet<String>>, DumpError> {
    let Some(list) = &spec.tables else {
        return Ok(None);
    };
    let known: HashSet<String> = tables
        .iter()
        .map(|(r, _)| r.name.to_ascii_lowercase())
        .collect();
    let mut chosen = HashSet::new();
    for t in list {
        let lower = t.to_ascii_lowercase();
        if !known.contains(&lower) {
            let mut names: Vec<&str> = tables.iter().map(|(r, _)| r.name.as_str()).collect();
            names.truncate(20);
            return Err(DumpError::InvalidField {
                field: "tables",
                message: format!(
                    "unknown table {t:?}; tables in the database: {}",
                    names.join(", ")
                ),
            });
        }
        chosen.insert(lower);
    }
    Ok(Some(chosen))
}

/// Whether table `name` is dumped under the selection `selected` (`None`: all).
pub(super) fn is_selected(selected: &Option<HashSet<String>>, name: &str) -> bool {
    selected
        .as_ref()
        .is_none_or(|s| s.contains(&name.to_ascii_lowercase()))
}

/// Leaves out of CSV dumps the rows of tables with no column values to write: a
/// contentless FTS table stores only its index (which SQL and JSON dumps copy as its
/// shadow tables' rows). Each is named in a warning; the schema file still creates it.
pub(super) fn drop_valueless(
    tables: &mut Vec<PlannedTable<'_>>,
    spec: &DumpSpec,
    warnings: &mut Vec<String>,
) {
    tables.retain(|(r, kind)| {
        let contentless = matches!(
            kind,
            TableKind::Virtual {
                rows: VtabRows::Contentless { .. },
                ..
            }
        );
        if contentless {
            warnings.push(format!(
                "table {:?}: a contentless FTS index stores no column values, so its index is left out of {} dumps and a restore creates it empty; dump it as SQL or JSON to keep it",
                r.name,
                spec.format.extension()
            ));
        }
        !contentless
    });
}

/// Warns, when a CSV dump begins (while SQL or JSON can still be chosen), of each table
/// whose rowids CSV has no place for: a rowid table with rows and no INTEGER PRIMARY KEY
/// (its rowid is no column), and an FTS table. A restore gives their rows new rowids.
pub(super) fn csv_rowid_warnings(
    conn: &Connection,
    spec: &DumpSpec,
    tables: &[PlannedTable<'_>],
    warnings: &mut Vec<String>,
) -> Result<(), DumpError> {
    let db = db_err(spec);
    for (row, kind) in tables {
        let loses_rowids = match kind {
            TableKind::Ordinary { without_rowid } => {
                !without_rowid && !has_integer_key(conn, &row.name).map_err(&db)?
            }
            TableKind::Virtual { module, .. } => module.starts_with("fts"),
        };
        if !loses_rowids {
            continue;
        }
        let has_rows: bool = conn
            .query_row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {})",
                    super::quote_ident(&row.name)
                ),
                [],
                |r| r.get(0),
            )
            .map_err(&db)?;
        if has_rows {
            warnings.push(format!(
                "table {:?}: CSV carries no rowids, so a restore gives its rows new ones (1, 2, … in the dump's order); dump it as SQL or JSON to keep them",
                row.name
            ));
        }
    }
    Ok(())
}

/// Whether rowid table `table` has an INTEGER PRIMARY KEY (its rowid as a column).
pub(crate) fn has_integer_key(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) = 1 AND max(pk = 1 AND upper(type) = 'INTEGER') FROM pragma_table_info(?1) WHERE pk > 0",
        [table],
        |r| r.get::<_, Option<bool>>(0),
    )
    .map(|b| b.unwrap_or(false))
}

/// Adds a schema row to the plan's fingerprint.
pub(super) fn fingerprint_row(hasher: &mut Sha256, r: &SchemaRow) {
    for part in [
        r.kind.as_str(),
        &r.name,
        &r.tbl_name,
        r.sql.as_deref().unwrap_or(""),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
}

/// Indexes, views, triggers and FTS rebuilds of the dumped tables.
pub(super) fn schema_trailer(
    schema: &[SchemaRow],
    spec: &DumpSpec,
    is_selected: &dyn Fn(&str) -> bool,
    fingerprint: &mut dyn FnMut(&SchemaRow),
    rebuilds: &[String],
) -> Vec<u8> {
    let mut out = String::new();
    let whole_db = spec.tables.is_none();
    for kind in ["index", "view", "trigger"] {
        for row in schema.iter().filter(|r| r.kind == kind && r.sql.is_some()) {
            let wanted = if kind == "view" {
                whole_db
            } else {
                is_selected(&row.tbl_name)
            };
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
    out.into_bytes()
}
