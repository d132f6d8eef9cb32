//! One slice: up to `chunkSize` rows of one table in one short read transaction, rendered
//! in the dump's format, digested for the manifest, and written to the output.

use std::time::Instant;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

use super::digest::row_hash_with;
use super::large::write_value;
use super::pipe::{Pipe, PipeRowError};
use super::plan::{Paging, TableSource};
use super::render::{render_row, LARGE_VALUE};
use super::table::note_nul_text;
use crate::model::KeyValue;

/// Longest a slice holds its read transaction (besides the `chunkSize` row bound), so a
/// writer waits at most a few milliseconds even when rows are large.
pub const SLICE_MAX_TIME: std::time::Duration = std::time::Duration::from_millis(5);

impl ToSql for KeyValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(key_ref(self)))
    }
}

pub(super) fn key_ref(k: &KeyValue) -> ValueRef<'_> {
    match k {
        KeyValue::Null => ValueRef::Null,
        KeyValue::Integer(i) => ValueRef::Integer(*i),
        KeyValue::RealBits(b) => ValueRef::Real(f64::from_bits(*b)),
        KeyValue::Text(t) => ValueRef::Text(t),
        KeyValue::Blob(b) => ValueRef::Blob(b),
    }
}

pub(super) fn key_value(v: ValueRef<'_>) -> KeyValue {
    match v {
        ValueRef::Null => KeyValue::Null,
        ValueRef::Integer(i) => KeyValue::Integer(i),
        ValueRef::Real(f) => KeyValue::RealBits(f.to_bits()),
        ValueRef::Text(t) => KeyValue::Text(t.to_vec()),
        ValueRef::Blob(b) => KeyValue::Blob(b.to_vec()),
    }
}

pub(super) fn read_schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    // Cached: every slice asks.
    conn.prepare_cached("PRAGMA schema_version")?
        .query_row([], |r| r.get(0))
}

/// The statement of a slice of `table` after `after` (the first one when `None`), its
/// parameters (the key, then `limit`), and the OFFSET the slice starts at (OFFSET paging).
pub(super) fn slice_query<'a>(
    table: &'a TableSource,
    after: Option<&'a [KeyValue]>,
    limit: &'a u32,
) -> (&'a str, Vec<&'a dyn ToSql>, i64) {
    let (sql, mut params): (&str, Vec<&dyn ToSql>) = match after {
        None => (&table.select_first, Vec::new()),
        Some(keys) => (
            &table.select_after,
            keys.iter().map(|k| k as &dyn ToSql).collect(),
        ),
    };
    params.push(limit);
    let offset_base = match (table.paging, after) {
        (Paging::Offset, Some([KeyValue::Integer(n)])) => *n,
        _ => 0,
    };
    (sql, params, offset_base)
}

/// The key of a slice's `row` (into `key`), and the values past a result set's limit
/// (read by that key with `rest`, a table wider than a result set may be).
pub(super) fn row_key_and_rest(
    table: &TableSource,
    row: &rusqlite::Row<'_>,
    rest: Option<&mut rusqlite::CachedStatement<'_>>,
    key: &mut Vec<KeyValue>,
) -> rusqlite::Result<Vec<KeyValue>> {
    key.clear();
    for i in 0..table.key_len {
        key.push(key_value(row.get_ref(i)?));
    }
    let Some(st) = rest else {
        return Ok(Vec::new());
    };
    let keys: Vec<&dyn ToSql> = key.iter().map(|k| k as &dyn ToSql).collect();
    let mut q = st.query(keys.as_slice())?;
    let r = q.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    (0..table.rest_len)
        .map(|i| r.get_ref(i).map(key_value))
        .collect()
}

/// Renders and writes a row holding a large value on the reading thread: the row so far,
/// then the value in pieces (see [`super::large`]), so no copy of it is made whole.
fn write_large_row<'s, 'p: 's>(
    pipe: &mut Pipe<'s, 'p>,
    table: &TableSource,
    values: &[ValueRef<'_>],
    first_in_table: bool,
    line: &mut Vec<u8>,
) -> std::io::Result<()> {
    line.clear();
    let mut scratch = Vec::new();
    render_row(
        &table.encoding,
        values,
        first_in_table,
        line,
        &mut |line, v| {
            pipe.write(line)?;
            line.clear();
            write_value(&table.encoding, v, &mut scratch, &mut |piece| {
                pipe.write(piece)
            })
        },
    )?;
    pipe.write(line)
}

pub(super) enum SliceError {
    Busy,
    SchemaMoved,
    Db(rusqlite::Error),
    Io(std::io::Error),
}

impl From<rusqlite::Error> for SliceError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                SliceError::Busy
            }
            _ => SliceError::Db(e),
        }
    }
}

/// What one slice read.
pub(super) struct Slice {
    pub rows: u64,
    /// The table has no rows after the last one read.
    pub exhausted: bool,
    /// Of the rows rendered on the reading thread (those with a large value): the sum of
    /// their hashes, and the value columns holding TEXT with a NUL in numeric affinity
    /// (see `nul_text_warning`). The pipe keeps both for the rows it rendered.
    pub sum: u128,
    pub nul_text_columns: Vec<usize>,
    /// The census of those rows (CSV; see [`super::census`]).
    pub census: Vec<u8>,
}

/// Reads up to `limit` rows after `after` in one short read transaction, ending early
/// after [`SLICE_MAX_TIME`], when the render worker falls behind or, when `closing` (the
/// chunk's budget is spent), where the pipe may stop (a compressed frame ended), and
/// sends them down the pipe.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_slice<'s, 'p: 's>(
    conn: &Connection,
    table: &'p TableSource,
    after: &mut Option<Vec<KeyValue>>,
    limit: u32,
    closing: bool,
    schema_version: i64,
    pipe: &mut Pipe<'s, 'p>,
    line: &mut Vec<u8>,
) -> Result<Slice, SliceError> {
    let started = Instant::now();
    let mut unchecked_bytes = 0usize;
    let mut cut_short = false;
    // Wait for the render worker before the read transaction, never inside it.
    pipe.send_held().map_err(SliceError::Io)?;
    let txn = conn.unchecked_transaction()?;
    if read_schema_version(&txn)? != schema_version {
        return Err(SliceError::SchemaMoved);
    }
    let (sql, params, offset_base) = slice_query(table, after.as_deref(), &limit);
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
    let mut census = Vec::new();
    let mut hash_scratch = Vec::new();
    let mut sum = 0u128;
    while let Some(row) = result.next()? {
        // The key, and the columns past a result set's limit, read by this row's key.
        let rest_row = row_key_and_rest(table, row, rest_stmt.as_mut(), &mut last_key)?;
        let n_values = table.value_len + table.rest_len;
        let value = |i: usize| -> rusqlite::Result<ValueRef<'_>> {
            if i < table.value_len {
                row.get_ref(table.key_len + i)
            } else {
                Ok(key_ref(&rest_row[i - table.value_len]))
            }
        };
        // The common row goes straight into the pipe's batch; one with a large value
        // (seen while encoding) is rendered here, in pieces.
        let written = match pipe.row(table, n_values, &value, first_in_table) {
            Ok(Some(size)) => size,
            Ok(None) => {
                let values = (0..n_values)
                    .map(value)
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                note_nul_text(table, &values, &mut nul_text_columns);
                if matches!(table.encoding, super::render::RowEncoding::Csv) {
                    super::census::note_row(&mut census, &values);
                }
                write_large_row(pipe, table, &values, first_in_table, line)
                    .map_err(SliceError::Io)?;
                sum = sum.wrapping_add(row_hash_with(values.iter().copied(), &mut hash_scratch));
                LARGE_VALUE // at least: such a row always brings the clock check
            }
            Err(PipeRowError::Db(e)) => return Err(e.into()),
            Err(PipeRowError::Io(e)) => return Err(SliceError::Io(e)),
        };
        first_in_table = false;
        count += 1;
        if pipe.end_row() && closing && count < u64::from(limit) {
            cut_short = true;
            break;
        }
        if pipe.backed_up() && count < u64::from(limit) {
            // The worker is behind: end the transaction before waiting for it.
            cut_short = true;
            break;
        }
        // Look at the clock every 32 rows or every MiB, not on every row.
        unchecked_bytes += written;
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
    Ok(Slice {
        rows: count,
        exhausted: !cut_short && count < u64::from(limit),
        sum,
        nul_text_columns,
        census,
    })
}
