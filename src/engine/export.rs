//! The chunk loop: walk the plan from a cursor, reading each table in short keyset
//! slices (one read transaction per slice, so writers are never held off for long),
//! until the dump is done or the time budget is spent.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use super::consistency::change_token;
use super::count::count_rows;
use super::digest::{DigestState, TableDigest};
use super::outcome::Ran;
pub use super::outcome::{ChunkEnd, ChunkProgress, ExportOutcome, ProgressFn};
use super::output::{BufferPool, OutputSink, Tail, UploadEvent};
use super::pipe::Pipe;
use super::plan::{build_plan, generate, Plan, Step, TableSource};
use super::plan_cache::cached_plan;
use super::slice::{read_schema_version, read_slice, SliceError};
use super::table::nul_text_warning;
use crate::error::DumpError;
use crate::model::{Cursor, DumpSpec};

/// How long a slice waits for a writer's lock before the chunk gives up (retryably).
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// Compute the digests without rendering rows (verify's `--against`): the output
    /// then holds only the schema.
    pub digest_only: bool,
    /// The inode of the file the dump began with: a chunk refuses any other file.
    pub database_inode: Option<u64>,
    /// An encrypted dump's recipients and stream key (see `crate::encryption`).
    pub sealing: Option<Arc<crate::encryption::Sealing>>,
}

/// Opens the database read-only (it is never written) and checks it is SQLite.
pub fn open_database(path: &str) -> Result<Connection, DumpError> {
    let bad = |message: String| DumpError::Database {
        path: path.to_string(),
        message,
    };
    let meta = std::fs::metadata(Path::new(path)).map_err(|e| bad(format!("cannot open: {e}")))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| DumpError::from_sqlite(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| DumpError::from_sqlite(path, e))?;
    // Reading the header proves this is a SQLite database (NOTADB otherwise).
    conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| DumpError::from_sqlite(path, e))?;
    conn.execute_batch("PRAGMA query_only = 1")
        .map_err(|e| DumpError::from_sqlite(path, e))?;
    Ok(conn)
}

/// [`open_database`], and the inode of the file SQLite opened, which must be `pinned`
/// when given (the file a dump began with; see [`super::pinned`]).
pub fn open_pinned(path: &str, pinned: Option<u64>) -> Result<(Connection, u64), DumpError> {
    let conn = open_database(path)?;
    let bad = |message: String| DumpError::Database {
        path: path.to_string(),
        message,
    };
    let inode = super::pinned::opened_inode(&conn).map_err(bad)?;
    match pinned {
        Some(pinned) if pinned != inode => Err(bad(format!(
            "not the file this dump began with (inode {pinned}, now {inode}): it was replaced, or a symlink swapped in, during the dump; start a new dump"
        ))),
        _ => Ok((conn, inode)),
    }
}

/// Opens the database and builds the plan: validates a new dump (tables, modules).
/// Returns the inode of the file it opened, which every chunk of the dump must read.
pub fn validate(spec: &DumpSpec, dump_id: &str) -> Result<(Plan, u64), DumpError> {
    let (conn, inode) = open_pinned(&spec.database, None)?;
    Ok((build_plan(&conn, spec, dump_id)?, inode))
}

/// Runs one chunk of export. Blocking: call it from a blocking thread.
pub fn run_export(
    input: ExportInput,
    tx: mpsc::Sender<UploadEvent>,
) -> Result<ExportOutcome, DumpError> {
    let spec = &input.spec;
    let db = |e| DumpError::from_sqlite(&spec.database, e);
    let start_token = change_token(&spec.database);
    let (conn, _) = open_pinned(&spec.database, input.database_inode)?;
    let schema_version = read_schema_version(&conn).map_err(db)?;
    let plan = cached_plan(&conn, spec, &input.dump_id, schema_version)?;
    if let Some(fp) = &input.fingerprint {
        if *fp != plan.fingerprint {
            return Err(DumpError::SchemaChanged(
                "a dumped table, index, view or trigger was created, altered or dropped".into(),
            ));
        }
    }
    let total_rows = if input.count_rows {
        Some(count_rows(&conn, &plan).map_err(db)?)
    } else {
        None
    };

    let part_size = usize::try_from(spec.part_size)
        .map_err(|_| DumpError::InvalidRequest("part size too large".into()))?;
    let mut sink = OutputSink::new(
        tx,
        input.pool.clone(),
        part_size,
        spec.file_compression(),
        input.sealing.clone(),
    );
    sink.lines = input.digests.lines.unwrap_or_default();
    let io = |e: std::io::Error| DumpError::Internal(format!("writing output: {e}"));
    let mut cursor = input.cursor;
    if spec.format == crate::model::Format::Parquet {
        if input.tail.is_some() {
            return Err(DumpError::Internal(
                "a Parquet dump never carries a tail between chunks".into(),
            ));
        }
        let chunk = super::parquet::ParquetChunk {
            conn: &conn,
            plan: &plan,
            spec,
            schema_version,
            deadline: input.deadline,
            progress: input.progress.as_ref(),
            total_rows,
        };
        let mut digests = input.digests;
        let mut warnings = plan.warnings.clone();
        let (end, rows) = chunk.run(&mut sink, &mut cursor, &mut digests, &mut warnings)?;
        let ran = Ran {
            cursor,
            rows,
            end,
            sink,
            warnings,
            digests,
        };
        return ran.outcome(
            &plan,
            spec,
            input.first_change_token,
            start_token,
            total_rows,
        );
    }
    if let Some(tail) = input.tail {
        if tail.object != cursor.object {
            return Err(DumpError::Internal(format!(
                "tail of object {} but cursor at object {}",
                tail.object, cursor.object
            )));
        }
        sink.resume(tail).map_err(io)?;
    }
    let mut current_object = sink.current_object();
    let mut rows = 0u64;
    let mut digests = input.digests;
    // Digests finished from here on are this chunk's (see the renderer's sums below).
    let done_before = digests.done.len();
    let mut warnings = plan.warnings.clone();
    let plan: &Plan = &plan;
    let (end, rendered) = std::thread::scope(|scope| -> Result<_, DumpError> {
        let frame_size = spec.frame_size.unwrap_or(super::output::FRAME_BYTES);
        let mut pipe = Pipe::new(
            scope,
            sink,
            Pipe::worth_a_thread(),
            !input.digest_only,
            frame_size,
        )
        .map_err(io)?;
        let mut sliced = false;
        let mut line = Vec::with_capacity(4096);
        // A failed write is reported with the renderer's own error, when it has one.
        let failed = |pipe: Pipe<'_, '_>, e: std::io::Error| io(pipe.end().err().unwrap_or(e));
        let end = loop {
            let Some(object) = plan.objects.get(cursor.object as usize) else {
                break ChunkEnd::Done;
            };
            let Some(step) = object.steps.get(cursor.step as usize) else {
                pipe.finish_object();
                current_object = None;
                cursor = Cursor {
                    object: cursor.object + 1,
                    ..Cursor::default()
                };
                continue;
            };
            // Past the budget the chunk stops where a compressed frame ends (see
            // `FRAME_BYTES`): at most a frame more, at a place the rows fix.
            let closing = sliced && Instant::now() >= input.deadline;
            if closing && pipe.may_stop() {
                break ChunkEnd::Budget;
            }
            if current_object != Some(cursor.object) {
                if cursor.step != 0 || cursor.after.is_some() {
                    return Err(DumpError::Internal(
                        "resuming inside an object without its tail".into(),
                    ));
                }
                pipe.begin(cursor.object, &object.key);
                current_object = Some(cursor.object);
            }
            let written = match step {
                Step::Literal(bytes) => pipe.write(bytes),
                Step::Generated(what) => pipe.write(&generate(&conn, what).map_err(db)?),
                Step::Rows(_) => Ok(()),
            };
            if let Err(e) = written {
                return Err(failed(pipe, e));
            }
            let Step::Rows(table) = step else {
                cursor.step += 1;
                continue;
            };
            sliced = true;
            if digests
                .current
                .as_ref()
                .is_none_or(|d| d.table != table.name || cursor.after.is_none())
            {
                digests.current = Some(TableDigest::new(&table.name));
            }
            let slice = match read_slice(
                &conn,
                table,
                &mut cursor.after,
                spec.slice_rows.get(),
                closing,
                schema_version,
                &mut pipe,
                &mut line,
            ) {
                Ok(slice) => slice,
                Err(SliceError::Busy) => break ChunkEnd::Busy,
                Err(SliceError::SchemaMoved) => break ChunkEnd::SchemaMoved,
                Err(SliceError::Db(e)) => return Err(db(e)),
                Err(SliceError::Io(e)) => return Err(failed(pipe, e)),
            };
            rows += slice.rows;
            note_nul_text_warnings(&mut warnings, table, &slice.nul_text_columns);
            let current = digests.current.as_mut().expect("set above");
            current.add(slice.rows, slice.sum);
            super::census::merge(&mut current.census, &slice.census);
            if slice.exhausted {
                cursor.step += 1;
                cursor.after = None;
                digests.done.extend(digests.current.take());
            }
            if pipe.failed() {
                let e = std::io::Error::other("the render worker stopped");
                return Err(failed(pipe, e));
            }
            if let Some(p) = &input.progress {
                p(ChunkProgress {
                    rows,
                    bytes: pipe.produced(),
                    total_rows,
                });
            }
        };
        Ok((end, pipe.end().map_err(io)?))
    })?;
    // The rows the renderer hashed count toward their tables' digests: each is `current`
    // or was finished in this chunk (each table is read once, in one stretch).
    let mut sums: HashMap<&str, u128> = HashMap::with_capacity(rendered.sums.len());
    for (table, sum) in &rendered.sums {
        let total = sums.entry(*table).or_default();
        *total = total.wrapping_add(*sum);
    }
    let first_touched = done_before.min(digests.done.len());
    let touched = digests.done[first_touched..].iter_mut();
    for d in touched.chain(digests.current.iter_mut()) {
        if let Some(sum) = sums.remove(d.table.as_str()) {
            d.add(0, sum);
        }
    }
    let mut census: HashMap<&str, Vec<u8>> = HashMap::new();
    for (table, c) in &rendered.census {
        super::census::merge(census.entry(*table).or_default(), c);
    }
    let touched = digests.done[first_touched..].iter_mut();
    for d in touched.chain(digests.current.iter_mut()) {
        if let Some(c) = census.get(d.table.as_str()) {
            super::census::merge(&mut d.census, c);
        }
        note_census_warnings(&mut warnings, plan, d);
    }
    if let Some((table, _)) = sums.into_iter().next() {
        return Err(DumpError::Internal(format!(
            "rows of table {table:?} rendered without its digest"
        )));
    }
    for (table, columns) in &rendered.nul_text_columns {
        note_nul_text_warnings(&mut warnings, table, columns);
    }
    let ran = Ran {
        cursor,
        rows,
        end,
        sink: rendered.sink,
        warnings,
        digests,
    };
    ran.outcome(
        plan,
        spec,
        input.first_change_token,
        start_token,
        total_rows,
    )
}

/// Adds the warning for each of `table`'s value `columns` found holding TEXT with a NUL
/// in numeric affinity, once.
/// Warns, once per column, where a CSV table's census shows CSV cannot keep its values
/// exactly (see [`super::census::lossy`]).
fn note_census_warnings(warnings: &mut Vec<String>, plan: &Plan, digest: &TableDigest) {
    for (column, &c) in digest.census.iter().enumerate() {
        let Some(why) = super::census::lossy(c) else {
            continue;
        };
        let name = plan
            .objects
            .iter()
            .flat_map(|o| &o.steps)
            .find_map(|s| match s {
                Step::Rows(t) if t.name == digest.table => t.column_names.get(column).cloned(),
                _ => None,
            })
            .unwrap_or_else(|| format!("#{}", column + 1));
        let w = format!(
            "table {:?}, column {name:?}: CSV cannot keep its values exactly ({why}); dump it as SQL or JSON for an exact copy",
            digest.table
        );
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
}

fn note_nul_text_warnings(warnings: &mut Vec<String>, table: &TableSource, columns: &[usize]) {
    for &c in columns {
        let w = nul_text_warning(table, c);
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
}
