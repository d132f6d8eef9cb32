//! Loading a dump's rows into the restored database, on a blocking thread while the
//! next bytes are fetched: prepared `INSERT`s with bound values (never a statement
//! compiled per row), one transaction for the whole load.
//!
//! * SQL: the dump's own statements in order; each row statement's values are parsed
//!   (`readback::sql`) and bound to the table's prepared `INSERT`; any other statement,
//!   and a row whose values only SQLite evaluates, runs as written.
//! * JSON: each row object's members bound by name; `$rowid` to the table's rowid;
//!   generated columns are computed again, not inserted.
//! * CSV: NULL for an empty unquoted field; every other field by its column's census in
//!   the manifest (the storage classes it held, see [`crate::engine::census`]); without
//!   one (a dump begun by an older chunkdump) by the column's declared type.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use super::insert::{build_insert, count_values, csv_value, Affinity, Insert};

use crate::engine::census::{self, Field};
use crate::engine::digest::{decode_value, decode_value_whole};
use crate::readback::csv::CsvRecords;
use crate::readback::declared::{is_create, DeclaredSchema, Rehearsal};
use crate::readback::guard::{
    guard, is_shadow, run_bound, statement_bound, Deadline, ShadowWrites,
};
use crate::readback::json::{read_json, JsonRows, Values};
use crate::readback::sql::{checked, is_empty_statement, written_table, SqlItem, SqlItems};
use crate::readback::Statements;

/// The restored database while rows go in.
pub(super) struct Loader {
    pub(super) conn: Connection,
    /// The time bound of the statement running on `conn` (see [`guard`]).
    deadline: Deadline,
    /// `--tables`: the only tables whose rows are loaded.
    pub(super) selected: Option<HashSet<String>>,
    pub(super) rows: u64,
    /// How each table's rows are inserted (JSON and CSV).
    inserts: HashMap<String, Insert>,
    /// The last SQL row prefix and the `INSERT` made from it.
    sql_prefix: SqlPrefix,
    /// Where each `CREATE` runs first, held against the manifest's schema (`None` for a
    /// manifest of a version that declares none).
    rehearsal: Option<Rehearsal>,
    /// Each table's rows: loaded so far, and the most the manifest declares (a table
    /// that yields more stops at once, not after the 67,000,000th row).
    table_rows: HashMap<String, (u64, u64)>,
}

/// An SQL row prefix (`INSERT INTO "t"(…) VALUES(`) and what is made of it once.
#[derive(Default)]
struct SqlPrefix {
    prefix: Vec<u8>,
    /// Values per row.
    n: usize,
    /// The prepared statement's text.
    sql: String,
    /// Whether it writes a shadow table (see [`ShadowWrites`]).
    shadow: bool,
}

impl Loader {
    /// A loader of `conn`, which gets SQLite's guards on a dump read back, creating only
    /// the schema `declared` (the manifest's) lists.
    pub(super) fn new(
        conn: Connection,
        selected: Option<HashSet<String>>,
        declared: Option<DeclaredSchema>,
    ) -> Result<Self, String> {
        let deadline = guard(&conn).map_err(|e| e.to_string())?;
        Ok(Loader {
            conn,
            deadline,
            selected,
            rows: 0,
            inserts: HashMap::new(),
            sql_prefix: SqlPrefix::default(),
            rehearsal: declared.map(Rehearsal::new).transpose()?,
            table_rows: HashMap::new(),
        })
    }

    /// Bounds the whole load by what the manifest declares: its time (see
    /// [`run_bound`]), and each table's rows.
    pub(super) fn bound_by(&mut self, manifest: &crate::manifest::Manifest) {
        let rows = manifest.tables.iter().map(|t| t.rows).sum::<u64>();
        let bytes = manifest.files.iter().map(|f| f.size).sum::<u64>();
        self.deadline.bound_run(run_bound(rows, bytes));
        self.table_rows = (manifest.tables.iter())
            .map(|t| (t.table.clone(), (0, t.rows)))
            .collect();
    }

    /// Counts a row of `table`: an error past the rows the manifest declares for it.
    fn count_row(&mut self, table: &str) -> Result<(), String> {
        self.rows += 1;
        if let Some((loaded, declared)) = self.table_rows.get_mut(table) {
            *loaded += 1;
            if *loaded > *declared {
                return Err(format!(
                    "table {table:?} has more rows than the {declared} its manifest declares"
                ));
            }
        }
        Ok(())
    }

    /// Checks the restored database's schema whole against the manifest's: every object
    /// it lists, none it does not (whatever statement made it).
    pub(super) fn check_schema(&self) -> Result<(), String> {
        match &self.rehearsal {
            Some(rehearsal) => rehearsal.check_restored(&self.conn),
            None => Ok(()),
        }
    }

    /// Bounds the next statement's time (it grows with the rows loaded: index builds);
    /// an error once the whole run is past its bound.
    fn arm(&self) -> Result<(), String> {
        self.deadline.check_run()?;
        self.deadline.arm(statement_bound(self.rows));
        Ok(())
    }

    /// Runs `write` with shadow-table writes allowed if `table` is a shadow table (see
    /// [`ShadowWrites`]).
    fn shadow_writes<T>(
        &self,
        table: Option<&str>,
        write: impl FnOnce(&Connection) -> Result<T, String>,
    ) -> Result<T, String> {
        let _lowered = match table {
            Some(t) if is_shadow(&self.conn, t) => Some(ShadowWrites::allow(&self.conn)?),
            _ => None,
        };
        write(&self.conn)
    }

    fn wanted(&self, table: &str) -> bool {
        self.selected.as_ref().is_none_or(|s| s.contains(table))
    }

    /// Runs SQL text (a schema file's part, or a statement of an SQL dump) statement by
    /// statement, each checked to be a form chunkdump writes before it reaches SQLite.
    pub(super) fn run(&mut self, sql: &str) -> Result<(), String> {
        let mut statements = Statements::new(sql.as_bytes());
        while let Some((n, statement)) = statements.next_numbered().map_err(|e| e.to_string())? {
            checked(statement, n)?;
            if is_empty_statement(statement) {
                continue;
            }
            let text =
                std::str::from_utf8(statement).map_err(|_| "a statement that is not UTF-8")?;
            // A schema object the manifest does not list is refused before the restored
            // database runs its statement.
            if let Some(rehearsal) = self.rehearsal.as_mut().filter(|_| is_create(statement)) {
                rehearsal.create(text)?;
            }
            self.arm()?;
            let deadline = self.deadline.clone();
            let table = written_table(statement);
            self.shadow_writes(table.as_deref(), |conn| {
                conn.execute_batch(text).map_err(|e| {
                    format!(
                        "{} in: {}",
                        deadline.explain(e.to_string()),
                        text.trim().chars().take(200).collect::<String>()
                    )
                })
            })?;
        }
        Ok(())
    }

    /// Loads an SQL dump; `row_tables` are the manifest's tables.
    pub(super) fn load_sql(
        &mut self,
        reader: impl BufRead,
        row_tables: HashSet<String>,
    ) -> Result<(), String> {
        let mut items = SqlItems::new(reader, row_tables);
        while let Some(item) = items.next_item()? {
            match item {
                SqlItem::Statement(sql) => self.run(sql)?,
                SqlItem::Row { table, .. } if !self.wanted(table) => {}
                SqlItem::Row {
                    table,
                    prefix,
                    values,
                } => {
                    self.arm()?;
                    // A prefix names the same table and columns every time: the statement,
                    // its number of values and whether it writes a shadow table are made
                    // out once per prefix, not per row.
                    if self.sql_prefix.prefix.as_slice() != prefix {
                        let n = count_values(values);
                        let mut sql = String::from_utf8_lossy(prefix).into_owned();
                        sql.push_str(&vec!["?"; n].join(","));
                        sql.push(')');
                        self.sql_prefix = SqlPrefix {
                            prefix: prefix.to_vec(),
                            n,
                            sql,
                            shadow: is_shadow(&self.conn, table),
                        };
                    }
                    let SqlPrefix { n, sql, shadow, .. } = &self.sql_prefix;
                    // Statements that write shadow tables are refused when prepared, so
                    // the guard is lowered before.
                    let _lowered = match shadow {
                        true => Some(ShadowWrites::allow(&self.conn)?),
                        false => None,
                    };
                    let mut stmt = self.conn.prepare_cached(sql).map_err(|e| e.to_string())?;
                    let (mut pos, mut bound) = (0, 0);
                    while pos < values.len() {
                        let v =
                            decode_value(values, &mut pos).ok_or("a row that does not decode")?;
                        bound += 1;
                        if bound > *n {
                            break;
                        }
                        stmt.raw_bind_parameter(bound, ToSqlOutput::Borrowed(v))
                            .map_err(|e| e.to_string())?;
                    }
                    if bound != *n {
                        return Err(format!(
                            "a row of {bound} values where its statement has {n}"
                        ));
                    }
                    stmt.raw_execute()
                        .map_err(|e| self.deadline.explain(e.to_string()))?;
                    drop(stmt);
                    drop(_lowered);
                    self.count_row(table)?;
                }
            }
        }
        Ok(())
    }

    /// Loads a JSON dump's rows.
    pub(super) fn load_json(&mut self, reader: impl BufRead) -> Result<(), String> {
        struct Rows<'a> {
            loader: &'a mut Loader,
            table: Option<String>,
        }
        impl JsonRows for Rows<'_> {
            fn table(&mut self, name: &str) -> Result<(), String> {
                self.table = self.loader.wanted(name).then(|| name.to_string());
                Ok(())
            }
            fn row(&mut self, keys: &[String], encoded: &[u8]) -> Result<(), String> {
                let Some(table) = &self.table else {
                    return Ok(());
                };
                self.loader.insert(table, keys, true, |sink| {
                    let mut pos = 0;
                    for _ in keys {
                        sink(
                            decode_value_whole(encoded, &mut pos)
                                .ok_or("a value that does not decode")?,
                        )?;
                    }
                    Ok(())
                })
            }
        }
        read_json(
            reader,
            &mut Rows {
                loader: self,
                table: None,
            },
            Values::Whole,
        )
    }

    /// Loads the rows of one CSV file, of table `table` whose census is `census`.
    pub(super) fn load_csv(
        &mut self,
        reader: impl BufRead,
        table: &str,
        census: &[u8],
    ) -> Result<(), String> {
        if !self.wanted(table) {
            return Ok(());
        }
        let mut records = CsvRecords::new(reader);
        if !records.next_record()? {
            return Err("no header row".into());
        }
        let header: Vec<String> = (0..records.len())
            .map(|i| String::from_utf8_lossy(records.field(i).unwrap_or_default()).into_owned())
            .collect();
        let mut blob = Vec::new();
        let affinities = self.insert_for(table, &header, false)?.targets.clone();
        while records.next_record()? {
            if records.len() != header.len() {
                return Err(format!(
                    "a record of {} fields under a header of {}",
                    records.len(),
                    header.len()
                ));
            }
            self.insert(table, &header, false, |sink| {
                for (i, affinity) in affinities.iter().enumerate() {
                    let value = match (records.field(i), census.get(i)) {
                        (None, _) => ValueRef::Null,
                        (Some(bytes), Some(&c)) => match census::read_field(bytes, c) {
                            Field::Integer(i) => ValueRef::Integer(i),
                            Field::Real(f) => ValueRef::Real(f),
                            Field::Text(t) => ValueRef::Text(t),
                            Field::Blob(b) => {
                                blob = b;
                                ValueRef::Blob(&blob)
                            }
                        },
                        // No census (a dump begun by an older chunkdump): by the column's type.
                        (field, None) => {
                            csv_value(field, affinity.unwrap_or(Affinity::Blob), &mut blob)
                        }
                    };
                    sink(value)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Loads the rows of one Parquet file of table `table` (its layout names the columns;
    /// the file is copied to a private temporary file in `dir` to be read).
    pub(super) fn load_parquet(
        &mut self,
        reader: impl std::io::Read,
        table: &str,
        declared_size: u64,
        dir: Option<&std::path::Path>,
    ) -> Result<(), String> {
        if !self.wanted(table) {
            return Ok(());
        }
        let mut keys: Vec<String> = Vec::new();
        crate::readback::parquet::read_file(
            reader,
            dir,
            declared_size,
            table,
            |layout, values| {
                if keys.is_empty() {
                    keys = layout.columns.iter().map(|c| c.name.clone()).collect();
                }
                self.insert(table, &keys, true, |sink| {
                    values.iter().try_for_each(|v| sink(*v))
                })
            },
        )?;
        Ok(())
    }

    /// The `INSERT` for `table` with the dump's value names `keys` (made once).
    fn insert_for(
        &mut self,
        table: &str,
        keys: &[String],
        rowid_key: bool,
    ) -> Result<&Insert, String> {
        if !self.inserts.contains_key(table) {
            let insert = build_insert(&self.conn, table, keys, rowid_key)?;
            self.inserts.insert(table.to_string(), insert);
        }
        Ok(&self.inserts[table])
    }

    /// Inserts one row of `table`: `values` hands each value, in the dump's order, to
    /// the sink it is given.
    fn insert(
        &mut self,
        table: &str,
        keys: &[String],
        rowid_key: bool,
        values: impl FnOnce(&mut dyn FnMut(ValueRef<'_>) -> Result<(), String>) -> Result<(), String>,
    ) -> Result<(), String> {
        self.insert_for(table, keys, rowid_key)?;
        self.arm()?;
        let Insert {
            sql,
            targets,
            shadow,
        } = &self.inserts[table];
        // A contentless FTS table's index rows (JSON carries them as SQL does).
        let _lowered = match shadow {
            true => Some(ShadowWrites::allow(&self.conn)?),
            false => None,
        };
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| e.to_string())?;
        let (mut at, mut param) = (0, 0);
        values(&mut |v| {
            let keep = targets.get(at).ok_or("more values than columns")?.is_some();
            at += 1;
            if keep {
                param += 1;
                stmt.raw_bind_parameter(param, ToSqlOutput::Borrowed(v))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })?;
        stmt.raw_execute()
            .map_err(|e| format!("table {table:?}: {}", self.deadline.explain(e.to_string())))?;
        drop(stmt);
        drop(_lowered);
        self.count_row(table)
    }

    pub(super) fn finish(self) -> Connection {
        self.conn
    }
}
