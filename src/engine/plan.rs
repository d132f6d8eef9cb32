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
pub use super::render::{RowEncoding, TextEncoding};
use super::table::{table_source, vtab_module, vtab_rows, TableKind, VtabRows};
pub use super::table::{Paging, TableSource};
use crate::error::DumpError;
use crate::model::{csv_table_key, output_name, DumpSpec, Format};

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
    /// SQL text that depends on data rather than schema (sequences, statistics, header
    /// pragmas), generated when the dump reaches it: a plan is reused while the schema
    /// is unchanged, and these must be as of the end of the dump.
    Generated(Generated),
}

/// The data-dependent parts of the SQL trailer.
#[derive(Debug)]
pub enum Generated {
    /// `sqlite_sequence` rows of the dumped tables (`None`: all), then `sqlite_stat1`
    /// (whole-database dumps only).
    SequencesAndStats {
        only: Option<HashSet<String>>,
        has_sequence: bool,
        has_stat1: bool,
        has_stat4: bool,
    },
    /// `user_version` and `application_id`.
    HeaderPragmas,
}

/// The whole dump.
#[derive(Debug)]
pub struct Plan {
    pub objects: Vec<ObjectPlan>,
    /// SHA-256 over the schema objects the plan depends on.
    pub fingerprint: String,
    /// Per-table corner cases that are dumped as far as they can be, each naming its table.
    pub warnings: Vec<String>,
}

struct SchemaRow {
    kind: String,
    name: String,
    tbl_name: String,
    sql: Option<String>,
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
    let kinds: std::collections::HashMap<String, (String, bool)> = conn
        .prepare("SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))?
                .collect()
        })
        .map_err(&err)?;

    let encoding: String = conn
        .query_row("PRAGMA encoding", [], |r| r.get(0))
        .map_err(&err)?;
    let text = TextEncoding::from_pragma(&encoding);
    let shadows: HashSet<String> = kinds
        .iter()
        .filter(|(_, (ty, _))| ty == "shadow")
        .map(|(n, _)| n.to_lowercase())
        .collect();
    let mut warnings = Vec::new();

    // User-visible tables, in schema order.
    let mut tables = Vec::new();
    for row in schema.iter().filter(|r| r.kind == "table") {
        let lower = row.name.to_ascii_lowercase();
        let (ty, wr) = kinds
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
    let selected: Option<HashSet<String>> = match &spec.tables {
        None => None,
        Some(list) => {
            let known: HashSet<String> = tables
                .iter()
                .map(|(r, _)| r.name.to_ascii_lowercase())
                .collect();
            let mut chosen = HashSet::new();
            for t in list {
                let lower = t.to_ascii_lowercase();
                if !known.contains(&lower) {
                    let mut names: Vec<&str> =
                        tables.iter().map(|(r, _)| r.name.as_str()).collect();
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
            Some(chosen)
        }
    };
    let is_selected = |name: &str| {
        selected
            .as_ref()
            .is_none_or(|s| s.contains(&name.to_ascii_lowercase()))
    };
    tables.retain(|(r, _)| is_selected(&r.name));
    if spec.format != Format::Sql {
        // A contentless FTS table stores no column values, only its index (which SQL
        // dumps copy): there is nothing to put in CSV or JSON.
        tables.retain(|(r, kind)| {
            let contentless = matches!(kind, TableKind::Virtual { rows: VtabRows::Contentless { .. }, .. });
            if contentless {
                warnings.push(format!(
                    "table {:?}: a contentless FTS index stores no column values, so it is left out of {} dumps",
                    r.name,
                    spec.format.extension()
                ));
            }
            !contentless
        });
    }

    let mut hasher = Sha256::new();
    let mut fingerprint = |r: &SchemaRow| {
        for part in [
            r.kind.as_str(),
            &r.name,
            &r.tbl_name,
            r.sql.as_deref().unwrap_or(""),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
    };
    for (row, _) in &tables {
        fingerprint(row);
    }

    let mut objects = Vec::new();
    match spec.format {
        Format::Sql => {
            // A UTF-16 database is restored as one (the pragma only acts on a new database).
            let header = match text {
                TextEncoding::Utf8 => String::new(),
                _ => format!("PRAGMA encoding={};\n", quote_literal(&encoding)),
            };
            let mut steps = vec![Step::Literal(
                format!("{header}PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n").into_bytes(),
            )];
            let mut rebuilds = Vec::new();
            for (row, kind) in &tables {
                if spec.include_schema {
                    let sql = row.sql.as_deref().unwrap_or_default();
                    steps.push(Step::Literal(format!("{sql};\n").into_bytes()));
                }
                match kind {
                    TableKind::Virtual {
                        rows: VtabRows::External,
                        ..
                    } => {
                        // External-content FTS holds no rows of its own: rebuild it from
                        // its content table after the data.
                        let q = quote_ident(&row.name);
                        rebuilds.push(format!("INSERT INTO {q}({q}) VALUES('rebuild');\n"));
                    }
                    TableKind::Virtual {
                        rows: VtabRows::Contentless { shadows },
                        ..
                    } => {
                        // Only the index exists: replace the fresh shadow tables' rows
                        // with the source's (rowids and the terms MATCH uses).
                        for shadow in shadows {
                            steps.push(Step::Literal(
                                format!("DELETE FROM {};\n", quote_ident(shadow)).into_bytes(),
                            ));
                            let kind = TableKind::Ordinary {
                                without_rowid: kinds.get(shadow).is_some_and(|k| k.1),
                            };
                            steps.push(Step::Rows(Arc::new(table_source(
                                conn,
                                spec,
                                shadow,
                                &kind,
                                text,
                                &mut warnings,
                            )?)));
                        }
                    }
                    _ => steps.push(Step::Rows(Arc::new(table_source(
                        conn,
                        spec,
                        &row.name,
                        kind,
                        text,
                        &mut warnings,
                    )?))),
                }
            }
            if spec.include_schema {
                let has = |name: &str| schema.iter().any(|r| r.kind == "table" && r.name == name);
                steps.push(Step::Generated(Generated::SequencesAndStats {
                    only: selected.clone(),
                    has_sequence: has("sqlite_sequence"),
                    has_stat1: has("sqlite_stat1") && spec.tables.is_none(),
                    has_stat4: has("sqlite_stat4"),
                }));
                steps.push(Step::Literal(schema_trailer(
                    &schema,
                    spec,
                    &is_selected,
                    &mut fingerprint,
                    &rebuilds,
                )));
                steps.push(Step::Generated(Generated::HeaderPragmas));
                steps.push(Step::Literal(b"COMMIT;\n".to_vec()));
            } else {
                steps.push(Step::Literal(b"COMMIT;\n".to_vec()));
            }
            objects.push(ObjectPlan {
                key: output_name(dump_id, Format::Sql, spec.compression),
                steps,
            });
        }
        Format::Json => {
            let mut steps = vec![Step::Literal(b"{\"tables\":{".to_vec())];
            for (i, (row, kind)) in tables.iter().enumerate() {
                let mut open = if i == 0 {
                    b"\n".to_vec()
                } else {
                    b",\n".to_vec()
                };
                super::render::push_json_string(&mut open, row.name.as_bytes());
                open.extend_from_slice(b":[");
                steps.push(Step::Literal(open));
                steps.push(Step::Rows(Arc::new(table_source(
                    conn,
                    spec,
                    &row.name,
                    kind,
                    text,
                    &mut warnings,
                )?)));
                steps.push(Step::Literal(b"\n]".to_vec()));
            }
            steps.push(Step::Literal(b"\n}}\n".to_vec()));
            objects.push(ObjectPlan {
                key: output_name(dump_id, Format::Json, spec.compression),
                steps,
            });
        }
        Format::Csv => {
            for (row, kind) in &tables {
                let source = table_source(conn, spec, &row.name, kind, text, &mut warnings)?;
                let mut header = Vec::new();
                for (i, col) in source.column_names.iter().enumerate() {
                    if i > 0 {
                        header.push(b',');
                    }
                    super::render::push_csv_value(
                        &mut header,
                        rusqlite::types::ValueRef::Text(col.as_bytes()),
                    );
                }
                header.extend_from_slice(b"\r\n");
                let key = csv_table_key(dump_id, &safe_file_name(&row.name), spec.compression);
                objects.push(ObjectPlan {
                    key,
                    steps: vec![Step::Literal(header), Step::Rows(Arc::new(source))],
                });
            }
        }
    }
    let fingerprint = hex_digest(hasher.finalize().as_slice());
    Ok(Plan {
        objects,
        fingerprint,
        warnings,
    })
}

fn hex_digest(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    super::render::push_hex(&mut out, bytes);
    String::from_utf8(out).expect("hex is ASCII")
}

/// Indexes, views, triggers and FTS rebuilds of the dumped tables.
fn schema_trailer(
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

/// Renders a [`Generated`] step from the database as it is now.
pub fn generate(conn: &Connection, step: &Generated) -> rusqlite::Result<Vec<u8>> {
    let mut out = String::new();
    match step {
        Generated::SequencesAndStats {
            only,
            has_sequence,
            has_stat1,
            has_stat4,
        } => {
            if *has_sequence {
                let rows: Vec<(String, i64)> = conn
                    .prepare("SELECT name, seq FROM sqlite_sequence ORDER BY rowid")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let rows: Vec<_> = rows
                    .into_iter()
                    .filter(|(n, _)| {
                        only.as_ref()
                            .is_none_or(|o| o.contains(&n.to_ascii_lowercase()))
                    })
                    .collect();
                if !rows.is_empty() {
                    out.push_str("DELETE FROM sqlite_sequence;\n");
                    for (name, seq) in rows {
                        out.push_str(&format!(
                            "INSERT INTO sqlite_sequence(name,seq) VALUES({},{seq});\n",
                            quote_literal(&name)
                        ));
                    }
                }
            }
            if *has_stat1 {
                let rows: Vec<(String, Option<String>, String)> = conn
                    .prepare("SELECT tbl, idx, stat FROM sqlite_stat1 ORDER BY rowid")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                out.push_str("ANALYZE sqlite_schema;\n");
                for (tbl, idx, stat) in rows {
                    let idx = idx.map_or("NULL".to_string(), |i| quote_literal(&i));
                    out.push_str(&format!(
                        "INSERT INTO sqlite_stat1 VALUES({},{idx},{});\n",
                        quote_literal(&tbl),
                        quote_literal(&stat)
                    ));
                }
                if !has_stat4 {
                    // ANALYZE made an (empty) sqlite_stat4 in loaders built with STAT4,
                    // which the source does not have.
                    out.push_str("DROP TABLE IF EXISTS sqlite_stat4;\n");
                }
            }
        }
        Generated::HeaderPragmas => {
            for pragma in ["user_version", "application_id"] {
                let v: i64 = conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))?;
                if v != 0 {
                    out.push_str(&format!("PRAGMA {pragma}={v};\n"));
                }
            }
        }
    }
    Ok(out.into_bytes())
}

/// The longest file name [`safe_file_name`] gives: with the dump's `.csv.zst` it stays
/// under the 255 bytes file systems allow.
pub const MAX_FILE_NAME: usize = 200;

/// A file name for a table that is safe on any file system and in any URL: bytes outside
/// `[A-Za-z0-9_-]` are percent-encoded (so `a/b c` becomes `a%2Fb%20c`). A name longer
/// than [`MAX_FILE_NAME`] is cut (never inside a `%XX`) and ends in `~` and 16 hex digits
/// of the table name's SHA-256, so long names that share a beginning stay apart.
pub fn safe_file_name(table: &str) -> String {
    use sha2::Digest;
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
    if out.len() > MAX_FILE_NAME {
        let digest = hex::encode(&sha2::Sha256::digest(table.as_bytes())[..8]);
        let mut cut = MAX_FILE_NAME - 1 - digest.len();
        // Step back over a cut `%XX`: a `%` in the last two kept bytes starts one.
        if let Some(at) = out.as_bytes()[cut.saturating_sub(2)..cut]
            .iter()
            .position(|&b| b == b'%')
        {
            cut = cut - 2 + at;
        }
        out.truncate(cut);
        out.push('~');
        out.push_str(&digest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(safe_file_name("a/b c.\"x\""), "a%2Fb%20c%2E%22x%22");
        assert_eq!(safe_file_name(".."), "%2E%2E");
        assert_eq!(safe_file_name("plain_Name-1"), "plain_Name-1");
        // Long names are cut to a bounded length, never inside an escape, and stay apart.
        let long = "é".repeat(50);
        let (a, b) = (safe_file_name(&long), safe_file_name(&format!("{long}x")));
        assert!(a.len() <= MAX_FILE_NAME && b.len() <= MAX_FILE_NAME, "{a}");
        assert_ne!(a, b);
        let kept = a.split('~').next().unwrap();
        assert!(kept.len() % 3 == 0 && kept.starts_with("%C3%A9"), "{kept}");
        for n in 190..210 {
            let name = safe_file_name(&"a".repeat(n));
            assert!(name.len() <= MAX_FILE_NAME, "{n}: {name}");
        }
    }
}
