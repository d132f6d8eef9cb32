//! One chunk of a Parquet dump. Each table is read twice, in short keyset slices like
//! every dump: first for its census (the storage classes each column holds, which fix
//! the files' types; see [`super::layout`]), then for its rows. A chunk writes whole
//! files: the one it opens for a table is closed when the chunk ends, however it ends,
//! so no Parquet state is carried between chunks; the next chunk opens the table's next
//! file (`part-00002.parquet`, …). File keys depend only on the cursor, so a retried
//! chunk overwrites what a killed one left.

use std::time::Instant;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use super::file_thread::FileThread;
use super::layout::TableLayout;
use super::writer::{note_classes, properties, Misfit, RowGroup, ROW_GROUP_BYTES};
use crate::engine::digest::{DigestState, TableDigest};
use crate::engine::outcome::{ChunkEnd, ChunkProgress, ProgressFn};
use crate::engine::output::OutputSink;
use crate::engine::plan::{generate, Paging, Plan, Step, TableSource};
use crate::engine::slice::{
    key_ref, read_schema_version, row_key_and_rest, slice_query, SliceError, SLICE_MAX_TIME,
};
use crate::error::DumpError;
use crate::model::{parquet_file_key, Cursor, DumpSpec, KeyValue};

/// What a Parquet chunk reads from and reports to.
pub struct ParquetChunk<'a> {
    pub conn: &'a Connection,
    pub plan: &'a Plan,
    pub spec: &'a DumpSpec,
    pub schema_version: i64,
    pub deadline: Instant,
    pub progress: Option<&'a ProgressFn>,
    pub total_rows: Option<u64>,
}

/// The phase of a table's object in `Cursor::step`: its census, then its rows.
const CENSUS: u32 = 0;
const ROWS: u32 = 1;

impl ParquetChunk<'_> {
    fn db(&self) -> impl Fn(rusqlite::Error) -> DumpError + '_ {
        move |e| DumpError::from_sqlite(&self.spec.database, e)
    }

    fn past_deadline(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Runs the chunk from `cursor`: returns why it stopped and the rows it wrote.
    pub fn run(
        &self,
        sink: &mut OutputSink,
        cursor: &mut Cursor,
        digests: &mut DigestState,
        warnings: &mut Vec<String>,
    ) -> Result<(ChunkEnd, u64), DumpError> {
        let mut rows = 0u64;
        let mut worked = false;
        loop {
            let Some(object) = self.plan.objects.get(cursor.object as usize) else {
                return Ok((ChunkEnd::Done, rows));
            };
            if worked && self.past_deadline() {
                return Ok((ChunkEnd::Budget, rows));
            }
            if let [Step::Rows(table)] = object.steps.as_slice() {
                let end = self.table(
                    sink,
                    &object.key,
                    table,
                    cursor,
                    digests,
                    warnings,
                    &mut rows,
                )?;
                worked = true;
                if let Some(end) = end {
                    return Ok((end, rows));
                }
            } else {
                self.text_object(sink, cursor, &object.key, &object.steps)?;
            }
            *cursor = Cursor {
                object: cursor.object + 1,
                ..Cursor::default()
            };
        }
    }

    /// Writes an object of fixed and generated text (the schema file) whole.
    fn text_object(
        &self,
        sink: &mut OutputSink,
        cursor: &Cursor,
        key: &str,
        steps: &[Step],
    ) -> Result<(), DumpError> {
        let io = |e: std::io::Error| DumpError::Internal(format!("writing output: {e}"));
        if cursor.step != 0 || cursor.after.is_some() {
            return Err(DumpError::Internal("resuming inside a text object".into()));
        }
        sink.begin(cursor.object, key).map_err(io)?;
        for step in steps {
            match step {
                Step::Literal(bytes) => sink.write_all(bytes).map_err(io)?,
                Step::Generated(what) => sink
                    .write_all(&generate(self.conn, what).map_err(self.db())?)
                    .map_err(io)?,
                Step::Rows(t) => {
                    return Err(DumpError::Internal(format!(
                        "rows of {:?} inside a text object",
                        t.name
                    )))
                }
            }
        }
        sink.finish_object().map_err(io)
    }

    /// Advances table `table` (object key `dir`): its census, then one file of its rows.
    /// `None` when the table is done.
    #[allow(clippy::too_many_arguments)]
    fn table(
        &self,
        sink: &mut OutputSink,
        dir: &str,
        table: &TableSource,
        cursor: &mut Cursor,
        digests: &mut DigestState,
        warnings: &mut Vec<String>,
        rows: &mut u64,
    ) -> Result<Option<ChunkEnd>, DumpError> {
        let fresh = cursor.step == CENSUS && cursor.after.is_none();
        if fresh
            || digests
                .current
                .as_ref()
                .is_none_or(|d| d.table != table.name)
        {
            digests.current = Some(TableDigest::new(&table.name));
        }
        let mut sliced = false;
        while cursor.step == CENSUS {
            if sliced && self.past_deadline() {
                return Ok(Some(ChunkEnd::Budget));
            }
            let census = &mut digests.current.as_mut().expect("set above").census;
            let read = read_rows(self, table, &mut cursor.after, |values| {
                note_classes(census, values);
                Ok(true)
            });
            sliced = true;
            match read {
                Ok((_, true)) => {
                    cursor.step = ROWS;
                    cursor.after = None;
                }
                Ok((_, false)) => {}
                Err(stop) => return stop.end(self, table).map(Some),
            }
        }
        if sliced && self.past_deadline() {
            return Ok(Some(ChunkEnd::Budget));
        }
        let current = digests.current.as_mut().expect("set above");
        let columns: Vec<(String, String)> = table
            .value_columns
            .iter()
            .zip(&table.declared_types)
            .map(|((name, _), declared)| (name.clone(), declared.clone()))
            .collect();
        let layout = TableLayout::new(&table.name, &columns, &current.census);
        for w in layout.warnings() {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        let bad = |e: String| DumpError::Internal(format!("table {:?}: {e}", table.name));
        let io = |e: std::io::Error| DumpError::Internal(format!("writing output: {e}"));
        let key = parquet_file_key(dir, cursor.file + 1, self.spec.encrypted());
        sink.begin(cursor.object, &key).map_err(io)?;
        let schema = layout.schema().map_err(bad)?;
        let props = properties(self.spec.compression, &layout);
        let mut group = RowGroup::new(&layout).map_err(bad)?;
        let end = std::thread::scope(|scope| -> Result<_, DumpError> {
            let mut file = FileThread::spawn(scope, sink, schema, props).map_err(io)?;
            let end = loop {
                let read = read_rows(self, table, &mut cursor.after, |values| {
                    group.push(values).map_err(RowStop::Misfit)?;
                    Ok(group.bytes() < ROW_GROUP_BYTES)
                });
                let (n, exhausted) = match read {
                    Ok(read) => read,
                    Err(stop) => break Some(stop.end(self, table)?),
                };
                *rows += n;
                current.add(n, 0);
                if group.bytes() >= ROW_GROUP_BYTES {
                    group = file.write(group).map_err(bad)?;
                }
                if let Some(p) = self.progress {
                    p(ChunkProgress {
                        rows: *rows,
                        bytes: file.written.load(std::sync::atomic::Ordering::Relaxed),
                        total_rows: self.total_rows,
                    });
                }
                if exhausted {
                    break None;
                }
                if self.past_deadline() {
                    break Some(ChunkEnd::Budget);
                }
            };
            let sum = file.close(group).map_err(bad)?;
            current.add(0, sum);
            Ok(end)
        })?;
        sink.finish_object().map_err(io)?;
        cursor.file += 1;
        if end.is_none() {
            digests.done.extend(digests.current.take());
        }
        Ok(end)
    }
}

/// Why a row callback or a slice stopped the table.
enum RowStop {
    /// A value of a class the census did not see.
    Misfit(Misfit),
    Slice(SliceError),
}

impl From<rusqlite::Error> for RowStop {
    fn from(e: rusqlite::Error) -> Self {
        RowStop::Slice(e.into())
    }
}

impl RowStop {
    /// How the chunk reading `table` ends for this stop: a pause, or an error.
    fn end(self, chunk: &ParquetChunk<'_>, table: &TableSource) -> Result<ChunkEnd, DumpError> {
        match self {
            RowStop::Misfit(m) => Err(DumpError::SchemaChanged(format!(
                "table {:?}, column {:?}: a {} value was written after this dump fixed the column's Parquet type from its values (the table changed during the dump); start a new dump",
                table.name, m.column, m.class
            ))),
            RowStop::Slice(SliceError::Busy) => Ok(ChunkEnd::Busy),
            RowStop::Slice(SliceError::SchemaMoved) => Ok(ChunkEnd::SchemaMoved),
            RowStop::Slice(SliceError::Db(e)) => Err(chunk.db()(e)),
            RowStop::Slice(SliceError::Io(e)) => {
                Err(DumpError::Internal(format!("writing output: {e}")))
            }
        }
    }
}

/// Rows at most this wide are gathered on the stack.
const STACK_VALUES: usize = 64;

/// Reads up to `slice_rows` rows of `table` after `after` in one short read transaction
/// (ended after [`SLICE_MAX_TIME`] too), handing each row's values to `each`, which says
/// whether to go on. Returns the rows read and whether the table has no more.
fn read_rows(
    chunk: &ParquetChunk<'_>,
    table: &TableSource,
    after: &mut Option<Vec<KeyValue>>,
    mut each: impl FnMut(&[ValueRef<'_>]) -> Result<bool, RowStop>,
) -> Result<(u64, bool), RowStop> {
    let limit = chunk.spec.slice_rows.get();
    let started = Instant::now();
    let txn = chunk.conn.unchecked_transaction()?;
    if read_schema_version(&txn)? != chunk.schema_version {
        return Err(RowStop::Slice(SliceError::SchemaMoved));
    }
    let (sql, params, offset_base) = slice_query(table, after.as_deref(), &limit);
    let mut stmt = txn.prepare_cached(sql)?;
    let mut rest_stmt = match &table.select_rest {
        Some(rest) => Some(txn.prepare_cached(rest)?),
        None => None,
    };
    let mut result = stmt.query(params.as_slice())?;
    let (mut count, mut cut_short) = (0u64, false);
    let mut last_key: Vec<KeyValue> = Vec::with_capacity(table.key_len);
    while let Some(row) = result.next()? {
        let rest_row = row_key_and_rest(table, row, rest_stmt.as_mut(), &mut last_key)?;
        // The row's values, on the stack for the common width (no allocation per row).
        let n = table.value_len + table.rest_len;
        let mut on_stack = [ValueRef::Null; STACK_VALUES];
        let mut on_heap = Vec::new();
        let values: &mut [ValueRef<'_>] = if n <= STACK_VALUES {
            &mut on_stack[..n]
        } else {
            on_heap.resize(n, ValueRef::Null);
            &mut on_heap
        };
        for (i, v) in values.iter_mut().enumerate() {
            *v = if i < table.value_len {
                row.get_ref(table.key_len + i)?
            } else {
                key_ref(&rest_row[i - table.value_len])
            };
        }
        let go_on = each(values)?;
        count += 1;
        if count >= u64::from(limit) {
            break;
        }
        if !go_on || (count.is_multiple_of(32) && started.elapsed() >= SLICE_MAX_TIME) {
            cut_short = true;
            break;
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
    Ok((count, !cut_short && count < u64::from(limit)))
}
