//! The chunk loop: walk the plan from a cursor, reading each table in short keyset
//! slices (one read transaction per slice, so writers are never held off for long),
//! until the dump is done or the time budget is spent.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use tokio::sync::mpsc;

use super::output::{BufferPool, OutputSink, Tail, UploadEvent};
use super::plan::{build_plan, generate, Paging, Plan, RowEncoding, Step, TableSource};
use super::consistency::change_token;
use super::digest::{row_hash_with, DigestState, TableDigest};
use super::large::{is_large, write_value};
use super::plan_cache::cached_plan;
use super::render::{push_csv_value, push_json_value, push_sql_value_in};
use crate::error::DumpError;
use crate::job::{Cursor, DumpSpec, KeyValue};

/// Progress of a chunk, reported after every slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkProgress {
    /// Rows written (by this chunk, or in total once the runner adds the job's count).
    pub rows: u64,
    /// Output bytes produced (after compression), same convention.
    pub bytes: u64,
    /// Rows to dump, when known.
    pub total_rows: Option<u64>,
}

/// Progress callback, called from the export thread.
pub type ProgressFn = Arc<dyn Fn(ChunkProgress) + Send + Sync>;

/// How long a slice waits for a writer's lock before the chunk gives up (retryably).
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest a slice holds its read transaction (besides the `chunkSize` row bound), so a
/// writer waits at most a few milliseconds even when rows are large.
pub const SLICE_MAX_TIME: std::time::Duration = std::time::Duration::from_millis(5);

/// Everything one chunk of export needs; owned, so it can move to a blocking thread.
pub struct ExportInput {
    pub spec: DumpSpec,
    pub dump_id: String,
    pub cursor: Cursor,
    pub tail: Option<Tail>,
    /// Fingerprint fixed by the first chunk; `None` for the first chunk.
    pub fingerprint: Option<String>,
    /// The database's change token when the dump started; `None` for the first chunk.
    pub first_change_token: Option<String>,
    /// Count the rows to dump (first chunk only).
    pub count_rows: bool,
    pub deadline: Instant,
    pub progress: Option<ProgressFn>,
    /// Where the uploader returns part buffers for reuse.
    pub pool: BufferPool,
    /// Table digests so far (see [`super::digest`]).
    pub digests: DigestState,
}

/// Why a chunk stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEnd {
    /// Every object is finished.
    Done,
    /// The time budget is spent.
    Budget,
    /// A writer held the database locked past the busy timeout.
    Busy,
    /// The schema changed mid-chunk; the next chunk re-plans and checks the fingerprint.
    SchemaMoved,
}

/// What a chunk of export achieved.
#[derive(Debug)]
pub struct ExportOutcome {
    pub cursor: Cursor,
    pub rows: u64,
    pub end: ChunkEnd,
    pub tail: Option<Tail>,
    /// Output bytes produced in this chunk (after compression).
    pub produced: u64,
    pub fingerprint: String,
    pub total_rows: Option<u64>,
    /// Per-table corner cases of the plan (see [`Plan::warnings`]).
    pub warnings: Vec<String>,
    /// The change token this chunk started from (the dump's, for the first chunk).
    pub change_token: String,
    /// The database changed since the dump started (seen by this chunk).
    pub changed: bool,
    pub digests: DigestState,
}

impl ToSql for KeyValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(key_ref(self)))
    }
}

fn key_ref(k: &KeyValue) -> ValueRef<'_> {
    match k {
        KeyValue::Null => ValueRef::Null,
        KeyValue::Integer(i) => ValueRef::Integer(*i),
        KeyValue::RealBits(b) => ValueRef::Real(f64::from_bits(*b)),
        KeyValue::Text(t) => ValueRef::Text(t),
        KeyValue::Blob(b) => ValueRef::Blob(b),
    }
}

fn key_value(v: ValueRef<'_>) -> KeyValue {
    match v {
        ValueRef::Null => KeyValue::Null,
        ValueRef::Integer(i) => KeyValue::Integer(i),
        ValueRef::Real(f) => KeyValue::RealBits(f.to_bits()),
        ValueRef::Text(t) => KeyValue::Text(t.to_vec()),
        ValueRef::Blob(b) => KeyValue::Blob(b.to_vec()),
    }
}

/// Opens the database read-only (it is never written) and checks it is SQLite.
pub fn open_database(path: &str) -> Result<Connection, DumpError> {
    let bad = |message: String| DumpError::Database { path: path.to_string(), message };
    let meta = std::fs::metadata(Path::new(path)).map_err(|e| bad(format!("cannot open: {e}")))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| DumpError::from_sqlite(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| DumpError::from_sqlite(path, e))?;
    // Reading the header proves this is a SQLite database (NOTADB otherwise).
    conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0)).map_err(|e| DumpError::from_sqlite(path, e))?;
    conn.execute_batch("PRAGMA query_only = 1").map_err(|e| DumpError::from_sqlite(path, e))?;
    Ok(conn)
}

/// Opens the database and builds the plan: validates a new dump (tables, modules).
pub fn validate(spec: &DumpSpec, dump_id: &str) -> Result<Plan, DumpError> {
    let conn = open_database(&spec.database)?;
    build_plan(&conn, spec, dump_id)
}

/// Runs one chunk of export. Blocking: call it from a blocking thread.
pub fn run_export(input: ExportInput, tx: mpsc::Sender<UploadEvent>) -> Result<ExportOutcome, DumpError> {
    let spec = &input.spec;
    let db = |e| DumpError::from_sqlite(&spec.database, e);
    let start_token = change_token(&spec.database);
    let conn = open_database(&spec.database)?;
    let schema_version = read_schema_version(&conn).map_err(db)?;
    let plan = cached_plan(&conn, spec, &input.dump_id, schema_version)?;
    if let Some(fp) = &input.fingerprint {
        if *fp != plan.fingerprint {
            return Err(DumpError::SchemaChanged("a dumped table, index, view or trigger was created, altered or dropped".into()));
        }
    }
    let total_rows = if input.count_rows { Some(count_rows(&conn, &plan).map_err(db)?) } else { None };

    let part_size = usize::try_from(spec.part_size).map_err(|_| DumpError::InvalidRequest("part size too large".into()))?;
    let mut sink = OutputSink::new(tx, input.pool.clone(), part_size, spec.compression);
    let io = |e: std::io::Error| DumpError::Internal(format!("writing output: {e}"));
    let mut cursor = input.cursor;
    if let Some(tail) = input.tail {
        if tail.object != cursor.object {
            return Err(DumpError::Internal(format!("tail of object {} but cursor at object {}", tail.object, cursor.object)));
        }
        sink.resume(tail);
    }
    let mut rows = 0u64;
    let mut digests = input.digests;
    let mut warnings = plan.warnings.clone();
    let mut sliced = false;
    let mut line = Vec::with_capacity(4096);
    let end = loop {
        let Some(object) = plan.objects.get(cursor.object as usize) else {
            break ChunkEnd::Done;
        };
        let Some(step) = object.steps.get(cursor.step as usize) else {
            sink.finish_object().map_err(io)?;
            cursor = Cursor { object: cursor.object + 1, step: 0, after: None };
            continue;
        };
        if sliced && Instant::now() >= input.deadline {
            break ChunkEnd::Budget;
        }
        if sink.current_object() != Some(cursor.object) {
            if cursor.step != 0 || cursor.after.is_some() {
                return Err(DumpError::Internal("resuming inside an object without its tail".into()));
            }
            sink.begin(cursor.object, &object.key);
        }
        match step {
            Step::Literal(bytes) => {
                sink.write_all(bytes).map_err(io)?;
                cursor.step += 1;
            }
            Step::Generated(what) => {
                sink.write_all(&generate(&conn, what).map_err(db)?).map_err(io)?;
                cursor.step += 1;
            }
            Step::Rows(table) => {
                sliced = true;
                if digests.current.as_ref().is_none_or(|d| d.table != table.name || cursor.after.is_none()) {
                    digests.current = Some(TableDigest::new(&table.name));
                }
                let mut sum = 0u128;
                match read_slice(&conn, table, &mut cursor.after, spec.chunk_size, schema_version, &mut sink, &mut line, &mut sum) {
                    Ok(slice) => {
                        rows += slice.rows;
                        for c in &slice.nul_text_columns {
                            let w = nul_text_warning(table, *c);
                            if !warnings.contains(&w) {
                                warnings.push(w);
                            }
                        }
                        let current = digests.current.as_mut().expect("set above");
                        current.add(slice.rows, sum);
                        if slice.exhausted {
                            cursor.step += 1;
                            cursor.after = None;
                            digests.done.extend(digests.current.take());
                        }
                    }
                    Err(SliceError::Busy) => break ChunkEnd::Busy,
                    Err(SliceError::SchemaMoved) => break ChunkEnd::SchemaMoved,
                    Err(SliceError::Db(e)) => return Err(db(e)),
                    Err(SliceError::Io(e)) => return Err(io(e)),
                }
                if let Some(p) = &input.progress {
                    p(ChunkProgress { rows, bytes: sink.produced, total_rows });
                }
            }
        }
    };
    let (tail, produced) = sink.suspend().map_err(io)?;
    let first_token = input.first_change_token.unwrap_or_else(|| start_token.clone());
    let changed = first_token != start_token || change_token(&spec.database) != start_token;
    Ok(ExportOutcome {
        cursor,
        rows,
        end,
        tail,
        produced,
        fingerprint: plan.fingerprint.clone(),
        total_rows,
        warnings,
        change_token: first_token,
        changed,
        digests,
    })
}

/// Writes the row so far, then a large value in pieces (see [`super::large`]).
fn stream_large(encoding: &RowEncoding, v: ValueRef<'_>, line: &mut Vec<u8>, sink: &mut OutputSink) -> Result<(), SliceError> {
    sink.write_all(line).map_err(SliceError::Io)?;
    line.clear();
    let mut scratch = Vec::new();
    write_value(encoding, v, &mut scratch, &mut |piece| sink.write_all(piece)).map_err(SliceError::Io)
}

enum SliceError {
    Busy,
    SchemaMoved,
    Db(rusqlite::Error),
    Io(std::io::Error),
}

impl From<rusqlite::Error> for SliceError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                SliceError::Busy
            }
            _ => SliceError::Db(e),
        }
    }
}

fn read_schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA schema_version", [], |r| r.get(0))
}

/// What one slice read.
struct Slice {
    rows: u64,
    /// The table has no rows after the last one read.
    exhausted: bool,
    /// Value columns holding TEXT with a NUL in numeric affinity (see `nul_text_warning`).
    nul_text_columns: Vec<usize>,
}

/// SQLite 3.54 (unlike 3.39–3.50, tested) reads TEXT as a number up to an embedded NUL, so such
/// a value in a column of numeric affinity is converted when the dump is restored there.
/// No SQL text can avoid the conversion: the dump says so, naming the column.
fn nul_text_warning(table: &TableSource, column: usize) -> String {
    let name = table.value_columns.get(column).map_or("?", |c| c.0.as_str());
    format!(
        "table {:?}, column {name:?}: TEXT values containing NUL in a column of numeric affinity; SQLite 3.54 and later convert \
         such a value to a number when they restore the dump (3.39 to 3.50 keep it as TEXT), so restore with one of those to keep it",
        table.name
    )
}

/// Reads and writes up to `limit` rows after `after` in one short read transaction,
/// ending early after [`SLICE_MAX_TIME`].
#[allow(clippy::too_many_arguments)]
fn read_slice(
    conn: &Connection,
    table: &TableSource,
    after: &mut Option<Vec<KeyValue>>,
    limit: u32,
    schema_version: i64,
    sink: &mut OutputSink,
    line: &mut Vec<u8>,
    sum: &mut u128,
) -> Result<Slice, SliceError> {
    let started = Instant::now();
    let mut unchecked_bytes = 0usize;
    let mut cut_short = false;
    let txn = conn.unchecked_transaction()?;
    if read_schema_version(&txn)? != schema_version {
        return Err(SliceError::SchemaMoved);
    }
    let (sql, mut params): (&str, Vec<&dyn ToSql>) = match after.as_ref() {
        None => (&table.select_first, Vec::new()),
        Some(keys) => (&table.select_after, keys.iter().map(|k| k as &dyn ToSql).collect()),
    };
    params.push(&limit);
    let offset_base = match (table.paging, after.as_deref()) {
        (Paging::Offset, Some([KeyValue::Integer(n)])) => *n,
        _ => 0,
    };
    let mut stmt = txn.prepare_cached(sql)?;
    let mut rest_stmt = match &table.select_rest {
        Some(rest) => Some(txn.prepare_cached(rest)?),
        None => None,
    };
    let mut result = stmt.query(params.as_slice())?;
    let mut count = 0u64;
    let mut last_key: Vec<KeyValue> = Vec::with_capacity(table.key_len);
    let mut first_in_table = after.is_none();
    let mut nul_text_columns = Vec::new();
    let mut hash_scratch = Vec::with_capacity(1024);
    while let Some(row) = result.next()? {
        line.clear();
        last_key.clear();
        for i in 0..table.key_len {
            last_key.push(key_value(row.get_ref(i)?));
        }
        // The columns past a result set's limit, read by this row's key.
        let rest_row = match rest_stmt.as_mut() {
            Some(st) => {
                let keys: Vec<&dyn ToSql> = last_key.iter().map(|k| k as &dyn ToSql).collect();
                let mut q = st.query(keys.as_slice())?;
                let r = q.next()?.ok_or_else(|| SliceError::Db(rusqlite::Error::QueryReturnedNoRows))?;
                (0..table.rest_len).map(|i| r.get_ref(i).map(key_value)).collect::<Result<Vec<_>, _>>()?
            }
            None => Vec::new(),
        };
        let n_values = table.value_len + table.rest_len;
        let value = |i: usize| -> rusqlite::Result<ValueRef<'_>> {
            if i < table.value_len {
                row.get_ref(table.key_len + i)
            } else {
                Ok(key_ref(&rest_row[i - table.value_len]))
            }
        };
        // Each value is fetched once, for rendering and for the row's digest (on the
        // stack for ordinary widths: no allocation per row).
        let mut on_stack = [ValueRef::Null; 32];
        let on_heap: Vec<ValueRef<'_>>;
        let values: &[ValueRef<'_>] = if n_values <= on_stack.len() {
            for (i, slot) in on_stack[..n_values].iter_mut().enumerate() {
                *slot = value(i)?;
            }
            &on_stack[..n_values]
        } else {
            on_heap = (0..n_values).map(value).collect::<rusqlite::Result<_>>()?;
            &on_heap
        };
        match &table.encoding {
            RowEncoding::Sql { prefix, text } => {
                line.extend_from_slice(prefix);
                for i in 0..n_values {
                    if i > 0 {
                        line.push(b',');
                    }
                    let v = values[i];
                    if let ValueRef::Text(t) = v {
                        if table.value_columns.get(i).is_some_and(|c| c.1) && t.contains(&0) && !nul_text_columns.contains(&i) {
                            nul_text_columns.push(i);
                        }
                    }
                    if is_large(&v) {
                        stream_large(&table.encoding, v, line, sink)?;
                    } else {
                        push_sql_value_in(line, v, *text);
                    }
                }
                line.extend_from_slice(b");\n");
            }
            RowEncoding::Csv => {
                for (i, &v) in values.iter().enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    if is_large(&v) {
                        stream_large(&table.encoding, v, line, sink)?;
                    } else {
                        push_csv_value(line, v);
                    }
                }
                line.extend_from_slice(b"\r\n");
            }
            RowEncoding::Json { keys } => {
                line.extend_from_slice(if first_in_table { b"\n{" } else { b",\n{" });
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    line.extend_from_slice(key);
                    let v = values[i];
                    if is_large(&v) {
                        stream_large(&table.encoding, v, line, sink)?;
                    } else {
                        push_json_value(line, v);
                    }
                }
                line.push(b'}');
            }
        }
        sink.write_all(line).map_err(SliceError::Io)?;
        *sum = sum.wrapping_add(row_hash_with(values.iter().copied(), &mut hash_scratch));
        first_in_table = false;
        count += 1;
        // Look at the clock every 32 rows or every MiB, not on every row.
        unchecked_bytes += line.len();
        if (count.is_multiple_of(32) || unchecked_bytes >= 1 << 20) && count < u64::from(limit) {
            unchecked_bytes = 0;
            if started.elapsed() >= SLICE_MAX_TIME {
                cut_short = true;
                break;
            }
        }
    }
    if table.paging == Paging::Offset {
        last_key = vec![KeyValue::Integer(offset_base + count as i64)];
    }
    drop(result);
    drop(stmt);
    drop(rest_stmt);
    txn.commit()?;
    if count > 0 {
        *after = Some(last_key);
    }
    Ok(Slice { rows: count, exhausted: !cut_short && count < u64::from(limit), nul_text_columns })
}

/// Counts the rows the plan will dump, in short slices for single-key tables so the
/// count never holds a long read lock.
fn count_rows(conn: &Connection, plan: &Plan) -> rusqlite::Result<u64> {
    const SLICE: i64 = 100_000;
    let mut total = 0u64;
    for object in &plan.objects {
        for step in &object.steps {
            let Step::Rows(t) = step else { continue };
            let q = super::render::quote_ident(&t.name);
            if t.key_len != 1 {
                total += conn.query_row(&format!("SELECT count(*) FROM {q}"), [], |r| r.get::<_, i64>(0))? as u64;
                continue;
            }
            let key = &t.key_list;
            let first = format!("SELECT count(*), max(k) FROM (SELECT {key} AS k FROM {q} ORDER BY {key} LIMIT ?1)");
            let next = format!("SELECT count(*), max(k) FROM (SELECT {key} AS k FROM {q} WHERE {key} > ?2 ORDER BY {key} LIMIT ?1)");
            let mut after: Option<rusqlite::types::Value> = None;
            loop {
                let read = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, rusqlite::types::Value>(1)?));
                let (n, max) = match &after {
                    None => conn.query_row(&first, [SLICE], read)?,
                    Some(a) => conn.query_row(&next, rusqlite::params![SLICE, a], read)?,
                };
                total += n as u64;
                if n < SLICE {
                    break;
                }
                after = Some(max);
            }
        }
    }
    Ok(total)
}
