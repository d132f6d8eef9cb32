//! How rows go into the restored database: each table's prepared `INSERT` (generated
//! columns left out, `$rowid` bound by a name no column hides), SQLite's column
//! affinities, and a CSV field read as the value it most likely was.

use std::collections::{HashMap, HashSet};

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::engine::digest::decode_value;
use crate::engine::quote_ident;

/// How one table's rows are inserted: the statement, and per value in the dump where it
/// goes (`None`: a generated column, left out) and its column's affinity.
pub(super) struct Insert {
    pub(super) sql: String,
    pub(super) targets: Vec<Option<Affinity>>,
    /// It writes a shadow table (a contentless FTS table's index; see
    /// `readback::guard::ShadowWrites`).
    pub(super) shadow: bool,
}

/// The affinity SQLite gives a column of a declared type (its rules, in their order).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    pub(super) fn of(declared: &str) -> Self {
        let t = declared.to_ascii_uppercase();
        if t.contains("INT") {
            Affinity::Integer
        } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
            Affinity::Text
        } else if t.contains("BLOB") || t.is_empty() {
            Affinity::Blob
        } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }
}

/// How many values a row encoding holds.
pub(super) fn count_values(values: &[u8]) -> usize {
    let (mut pos, mut n) = (0, 0);
    while decode_value(values, &mut pos).is_some() {
        n += 1;
    }
    n
}

/// The `INSERT` for `table` from the dump's value names: `$rowid` (with `rowid_key`) is
/// the rowid under a name no column hides; generated columns are left out.
pub(super) fn build_insert(
    conn: &Connection,
    table: &str,
    keys: &[String],
    rowid_key: bool,
) -> Result<Insert, String> {
    let mut info = conn
        .prepare("SELECT name, type, hidden FROM pragma_table_xinfo(?1)")
        .map_err(|e| e.to_string())?;
    let columns: HashMap<String, (String, i64)> = info
        .query_map([table], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, String>(1)?, r.get::<_, i64>(2)?),
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    if columns.is_empty() {
        return Err(format!("table {table:?} is not in the restored schema"));
    }
    let (mut names, mut targets) = (Vec::new(), Vec::new());
    for key in keys {
        if rowid_key && key == crate::engine::JSON_ROWID && !columns.contains_key(key) {
            let lower: HashSet<String> = columns.keys().map(|c| c.to_ascii_lowercase()).collect();
            let name = ["rowid", "_rowid_", "oid"]
                .into_iter()
                .find(|n| !lower.contains(*n))
                .ok_or_else(|| format!("table {table:?}: no name left for its rowid"))?;
            names.push(name.to_string());
            targets.push(Some(Affinity::Integer));
            continue;
        }
        let (declared, hidden) = columns
            .get(key)
            .ok_or_else(|| format!("table {table:?} has no column {key:?}"))?;
        if *hidden == 2 || *hidden == 3 {
            targets.push(None);
        } else {
            names.push(quote_ident(key));
            targets.push(Some(Affinity::of(declared)));
        }
    }
    let sql = format!(
        "INSERT INTO {}({}) VALUES({})",
        quote_ident(table),
        names.join(","),
        vec!["?"; names.len()].join(",")
    );
    Ok(Insert {
        sql,
        targets,
        shadow: crate::readback::guard::is_shadow(conn, table),
    })
}

/// A CSV field as the value it most likely was, given its column's affinity.
pub(super) fn csv_value<'a>(
    field: Option<&'a [u8]>,
    affinity: Affinity,
    blob: &'a mut Vec<u8>,
) -> ValueRef<'a> {
    let Some(bytes) = field else {
        return ValueRef::Null;
    };
    let text = std::str::from_utf8(bytes).ok();
    let numeric = || -> Option<ValueRef<'a>> {
        let t = text?;
        if let Ok(i) = t.parse::<i64>() {
            return Some(ValueRef::Integer(i));
        }
        let looks_real = t.contains(['.', 'e', 'E']) || t == "Infinity" || t == "-Infinity";
        if looks_real && !t.starts_with(['+', '.']) && !t.ends_with('.') {
            if let Ok(f) = t.parse::<f64>() {
                return Some(ValueRef::Real(f));
            }
        }
        None
    };
    match affinity {
        Affinity::Text => ValueRef::Text(bytes),
        Affinity::Integer | Affinity::Real | Affinity::Numeric => {
            numeric().unwrap_or(ValueRef::Text(bytes))
        }
        Affinity::Blob => {
            if let Some(hex) = bytes.strip_prefix(b"\\x") {
                if hex.len() % 2 == 0
                    && hex
                        .iter()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                {
                    *blob = hex::decode(hex).unwrap_or_default();
                    return ValueRef::Blob(blob);
                }
            }
            numeric().unwrap_or(ValueRef::Text(bytes))
        }
    }
}

/// Tables of a CSV restore whose rows got new rowids: rowid tables with rows and no
/// INTEGER PRIMARY KEY (and FTS tables), whose rowids CSV has no place for.
pub(super) fn csv_rowid_warnings(
    conn: &Connection,
    tables: &[String],
) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    for table in tables {
        let (kind, without_rowid): (String, bool) = conn
            .query_row(
                "SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
                [table],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| format!("table {table:?}: {e}"))?;
        let sql: String = conn
            .query_row(
                "SELECT coalesce(sql, '') FROM sqlite_schema WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(|e| format!("table {table:?}: {e}"))?;
        let integer_key = crate::engine::has_integer_key(conn, table)
            .map_err(|e| format!("table {table:?}: {e}"))?;
        let loses_rowids = match kind.as_str() {
            "table" => !without_rowid && !integer_key,
            "virtual" => sql.to_ascii_lowercase().contains("using fts"),
            _ => false,
        };
        let has_rows = conn
            .query_row(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", quote_ident(table)),
                [],
                |r| r.get::<_, bool>(0),
            )
            .unwrap_or(false);
        if loses_rowids && has_rows {
            warnings.push(format!(
                "table {table:?}: CSV carries no rowids, so its rows got new ones (1, 2, … in the dump's order); dump it as SQL or JSON to keep them"
            ));
        }
    }
    Ok(warnings)
}
