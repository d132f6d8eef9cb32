//! Dump planning: turns the database schema into an ordered list of output objects, each
//! a list of steps (literal text, or the rows of one table read by keyset pagination).
//!
//! The plan is rebuilt by every chunk from the live schema (it is cheap and keeps the job
//! record small); its fingerprint, fixed by the first chunk, detects schema changes.

use crate::model::{encrypted_stem, Encoding};
use std::collections::HashSet;
use std::sync::Arc;

use rusqlite::Connection;
use sha2::{Digest, Sha256};

pub use super::generated::{generate, Generated};
use super::render::{quote_ident, quote_literal};
pub use super::render::{RowEncoding, TextEncoding};
use super::schema::{
    drop_valueless, fingerprint_row, is_selected, read_schema, requested_tables, schema_trailer,
    user_tables, PlannedTable, Schema,
};
use super::source::table_source;
pub use super::table::{Paging, TableSource};
use super::table::{TableKind, VtabRows};
use crate::error::DumpError;
use crate::model::{csv_table_key, output_name, parquet_table_dir, schema_key, DumpSpec, Format};

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

/// The whole dump.
#[derive(Debug)]
pub struct Plan {
    pub objects: Vec<ObjectPlan>,
    /// SHA-256 over the schema objects the plan depends on.
    pub fingerprint: String,
    /// Per-table corner cases that are dumped as far as they can be, each naming its table.
    pub warnings: Vec<String>,
    /// The indexes, views and triggers the dump writes.
    pub schema_objects: Vec<super::digest::SchemaObject>,
    /// Every schema object written (tables too), its SQL by digest.
    pub schema_statements: Vec<super::digest::SchemaStatement>,
}

/// What the object builders share: the connection, the request, the text encoding and
/// the warnings found so far.
struct PlanContext<'a> {
    conn: &'a Connection,
    spec: &'a DumpSpec,
    dump_id: &'a str,
    text: TextEncoding,
    warnings: Vec<String>,
    /// The indexes, views and triggers written so far.
    schema_objects: Vec<super::digest::SchemaObject>,
    /// Every schema statement written so far (tables, indexes, views, triggers).
    schema_statements: Vec<super::digest::SchemaStatement>,
}

impl PlanContext<'_> {
    /// How to read the rows of table `name`.
    fn rows(&mut self, name: &str, kind: &TableKind) -> Result<Arc<TableSource>, DumpError> {
        let source = table_source(
            self.conn,
            self.spec,
            name,
            kind,
            self.text,
            &mut self.warnings,
        )?;
        Ok(Arc::new(source))
    }
}

/// Builds the plan for `spec` from the live schema: the tables a dump can hold, those
/// requested, then the output objects of the format. The fingerprint hashes the dumped
/// tables' schema rows, then (SQL with schema) those of their indexes, views and triggers.
pub fn build_plan(conn: &Connection, spec: &DumpSpec, dump_id: &str) -> Result<Plan, DumpError> {
    let schema = read_schema(conn, spec)?;
    let mut tables = user_tables(&schema);
    let selected = requested_tables(&tables, spec)?;
    tables.retain(|(r, _)| is_selected(&selected, &r.name));
    let mut ctx = PlanContext {
        conn,
        spec,
        dump_id,
        text: TextEncoding::from_pragma(&schema.encoding),
        warnings: Vec::new(),
        schema_objects: Vec::new(),
        schema_statements: Vec::new(),
    };
    // CSV has no place for a contentless FTS table's index (JSON and SQL carry its
    // shadow tables' rows): its rows are left out, with a warning, and its schema file
    // still creates it, empty.
    let schema_tables = tables.clone();
    if spec.format.is_directory() {
        drop_valueless(&mut tables, spec, &mut ctx.warnings);
    }
    let mut hasher = Sha256::new();
    for (row, _) in &tables {
        fingerprint_row(&mut hasher, row);
    }
    let mut objects = match spec.format {
        Format::Sql => vec![sql_object(
            &mut ctx,
            &schema,
            &tables,
            &selected,
            &mut hasher,
            SqlContent::SchemaAndRows,
        )?],
        Format::Json => {
            // JSON rows carry `$rowid` since format 2: a dump begun without it must not
            // be resumed with it.
            hasher.update(b"json rows with $rowid");
            vec![json_object(&mut ctx, &schema, &tables)?]
        }
        Format::Csv => {
            super::schema::csv_rowid_warnings(conn, spec, &tables, &mut ctx.warnings)?;
            csv_objects(&mut ctx, &tables)?
        }
        Format::Parquet => {
            // The census, the layout and the files' names of this version.
            hasher.update(b"parquet layout 1");
            parquet_objects(&mut ctx, &tables)?
        }
    };
    if spec.format != Format::Sql && spec.include_schema {
        // What a restore needs besides the rows, last so the data objects keep their
        // places; its statements are not part of the fingerprint of these formats.
        objects.push(sql_object(
            &mut ctx,
            &schema,
            &schema_tables,
            &selected,
            &mut Sha256::new(),
            SqlContent::SchemaOnly,
        )?);
    }
    Ok(Plan {
        objects,
        fingerprint: hex_digest(hasher.finalize().as_slice()),
        warnings: ctx.warnings,
        schema_objects: ctx.schema_objects,
        schema_statements: ctx.schema_statements,
    })
}

/// What an SQL object holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SqlContent {
    /// The SQL dump.
    SchemaAndRows,
    /// The schema file of a CSV or JSON dump: the same statements without the rows, and
    /// [`ROWS_MARKER`] where the rows belong (after the tables, before sequences,
    /// indexes and triggers).
    SchemaOnly,
}

/// The comment line in a schema file where a restore loads the rows.
pub const ROWS_MARKER: &str = "-- chunkdump: rows\n";

/// The SQL dump, one object: the header, each table's schema and rows (a contentless
/// FTS table as its shadow tables' rows), then the trailer. Or, as
/// [`SqlContent::SchemaOnly`], the schema file of a CSV or JSON dump.
fn sql_object(
    ctx: &mut PlanContext<'_>,
    schema: &Schema,
    tables: &[PlannedTable<'_>],
    selected: &Option<HashSet<String>>,
    hasher: &mut Sha256,
    content: SqlContent,
) -> Result<ObjectPlan, DumpError> {
    let spec = ctx.spec;
    let with_rows = content == SqlContent::SchemaAndRows;
    // A UTF-16 database is restored as one (the pragma only acts on a new database).
    let header = match ctx.text {
        TextEncoding::Utf8 => String::new(),
        _ => format!("PRAGMA encoding={};\n", quote_literal(&schema.encoding)),
    };
    let mut steps = vec![Step::Literal(
        format!("{header}PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n").into_bytes(),
    )];
    let mut rebuilds = Vec::new();
    for (row, kind) in tables {
        if spec.include_schema || !with_rows {
            let sql = row.sql.as_deref().unwrap_or_default();
            steps.push(Step::Literal(format!("{sql};\n").into_bytes()));
            ctx.schema_statements
                .push(super::digest::SchemaStatement::of(
                    &row.kind,
                    &row.name,
                    &row.tbl_name,
                    sql,
                ));
        }
        match kind {
            TableKind::Virtual {
                rows: VtabRows::External,
                ..
            } => {
                // External-content FTS holds no rows of its own: rebuild it from its
                // content table after the data.
                let q = quote_ident(&row.name);
                rebuilds.push(format!("INSERT INTO {q}({q}) VALUES('rebuild');\n"));
            }
            TableKind::Virtual {
                rows: VtabRows::Contentless { shadows },
                ..
            } => {
                // Only the index exists: replace the fresh shadow tables' rows with the
                // source's (rowids and the terms MATCH uses). A JSON dump's rows come
                // after its schema file's part before the rows marker; a CSV dump has
                // none, and keeps the fresh (empty, valid) index.
                if with_rows || spec.format == Format::Json {
                    for shadow in shadows {
                        steps.push(Step::Literal(
                            format!("DELETE FROM {};\n", quote_ident(shadow)).into_bytes(),
                        ));
                        if with_rows {
                            steps.push(Step::Rows(ctx.rows(shadow, &shadow_kind(schema, shadow))?));
                        }
                    }
                }
            }
            _ if !with_rows => {}
            _ => steps.push(Step::Rows(ctx.rows(&row.name, kind)?)),
        }
    }
    if !with_rows {
        steps.push(Step::Literal(ROWS_MARKER.as_bytes().to_vec()));
    }
    if spec.include_schema || !with_rows {
        let has = |name: &str| {
            schema
                .rows
                .iter()
                .any(|r| r.kind == "table" && r.name == name)
        };
        steps.push(Step::Generated(Generated::SequencesAndStats {
            only: selected.clone(),
            has_sequence: has("sqlite_sequence"),
            has_stat1: has("sqlite_stat1") && spec.tables.is_none(),
            has_stat4: has("sqlite_stat4"),
        }));
        let written = &mut ctx.schema_objects;
        let statements = &mut ctx.schema_statements;
        steps.push(Step::Literal(schema_trailer(
            &schema.rows,
            spec,
            &|name| is_selected(selected, name),
            &mut |r| {
                fingerprint_row(hasher, r);
                written.push(super::digest::SchemaObject {
                    kind: r.kind.clone(),
                    name: r.name.clone(),
                });
                statements.push(super::digest::SchemaStatement::of(
                    &r.kind,
                    &r.name,
                    &r.tbl_name,
                    r.sql.as_deref().unwrap_or_default(),
                ));
            },
            &rebuilds,
        )));
        steps.push(Step::Generated(Generated::HeaderPragmas));
    }
    steps.push(Step::Literal(b"COMMIT;\n".to_vec()));
    let key = match content {
        SqlContent::SchemaAndRows => output_name(ctx.dump_id, Format::Sql, Encoding::of(spec)),
        SqlContent::SchemaOnly => schema_key(ctx.dump_id, spec.format, Encoding::of(spec)),
    };
    Ok(ObjectPlan { key, steps })
}

/// How a shadow table's rows are read (an ordinary table, with or without rowid).
fn shadow_kind(schema: &Schema, shadow: &str) -> TableKind {
    TableKind::Ordinary {
        without_rowid: schema.kinds.get(shadow).is_some_and(|k| k.1),
    }
}

/// The JSON dump, one object: `{"tables":{"name":[rows…],…}}`. A contentless FTS table
/// is its shadow tables, each under its own name, as the SQL dump carries it.
fn json_object(
    ctx: &mut PlanContext<'_>,
    schema: &Schema,
    tables: &[PlannedTable<'_>],
) -> Result<ObjectPlan, DumpError> {
    let mut steps = vec![Step::Literal(b"{\"tables\":{".to_vec())];
    let mut written = 0;
    for (row, kind) in tables {
        let sources = match kind {
            TableKind::Virtual {
                rows: VtabRows::Contentless { shadows },
                ..
            } => shadows
                .iter()
                .map(|shadow| {
                    Ok((
                        shadow.as_str(),
                        ctx.rows(shadow, &shadow_kind(schema, shadow))?,
                    ))
                })
                .collect::<Result<Vec<_>, DumpError>>()?,
            _ => vec![(row.name.as_str(), ctx.rows(&row.name, kind)?)],
        };
        for (name, source) in sources {
            let mut open = if written == 0 {
                b"\n".to_vec()
            } else {
                b",\n".to_vec()
            };
            written += 1;
            super::render::push_json_string(&mut open, name.as_bytes());
            open.extend_from_slice(b":[");
            steps.push(Step::Literal(open));
            steps.push(Step::Rows(source));
            steps.push(Step::Literal(b"\n]".to_vec()));
        }
    }
    steps.push(Step::Literal(b"\n}}\n".to_vec()));
    Ok(ObjectPlan {
        key: output_name(ctx.dump_id, Format::Json, Encoding::of(ctx.spec)),
        steps,
    })
}

/// The CSV dump, one object per table: a header row of column names, then the rows.
fn csv_objects(
    ctx: &mut PlanContext<'_>,
    tables: &[PlannedTable<'_>],
) -> Result<Vec<ObjectPlan>, DumpError> {
    let mut objects = Vec::new();
    for (n, (row, kind)) in tables.iter().enumerate() {
        let source = ctx.rows(&row.name, kind)?;
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
        let stem = table_stem(ctx.spec, n, &row.name);
        let key = csv_table_key(ctx.dump_id, &stem, Encoding::of(ctx.spec));
        objects.push(ObjectPlan {
            key,
            steps: vec![Step::Literal(header), Step::Rows(source)],
        });
    }
    Ok(objects)
}

/// The Parquet dump, one object per table: its directory, its rows (the census, then
/// the files; see `engine::parquet`).
fn parquet_objects(
    ctx: &mut PlanContext<'_>,
    tables: &[PlannedTable<'_>],
) -> Result<Vec<ObjectPlan>, DumpError> {
    let mut objects = Vec::new();
    for (n, (row, kind)) in tables.iter().enumerate() {
        let source = ctx.rows(&row.name, kind)?;
        objects.push(ObjectPlan {
            key: parquet_table_dir(ctx.dump_id, &table_stem(ctx.spec, n, &row.name)),
            steps: vec![Step::Rows(source)],
        });
    }
    Ok(objects)
}

/// The file stem of the `n`th table, `name`, of a directory dump: its file-safe name, or
/// in an encrypted dump its position.
fn table_stem(spec: &DumpSpec, n: usize, name: &str) -> String {
    if spec.encrypted() {
        encrypted_stem(n)
    } else {
        safe_file_name(name)
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    super::render::push_hex(&mut out, bytes);
    String::from_utf8(out).expect("hex is ASCII")
}

pub use crate::model::{safe_file_name, MAX_FILE_NAME};
