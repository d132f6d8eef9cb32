//! Reading back a Parquet dump's file: its layout from its metadata (checked against the
//! file's own schema and the table the manifest names it for), then its rows, row group
//! by row group, as SQLite values. The file is untrusted: every size it declares is
//! bounded before anything is decoded, a reader panic is an error, and a mixed column's
//! row must set exactly one field.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, DataType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use rusqlite::types::ValueRef;

use crate::engine::census::{INTEGER, REAL, TEXT};
use crate::engine::parquet::layout::Leaf;
use crate::engine::parquet::writer::ROW_GROUP_BYTES;
use crate::engine::parquet::{TableLayout, METADATA_KEY};

/// The most one column of one row group may declare, decoded: what a dump writes is
/// bounded by the row group size plus its largest value (at most a statement).
fn column_bound() -> i64 {
    let statement = crate::readback::max_statement() as i64;
    (2 * ROW_GROUP_BYTES as i64).saturating_add(statement)
}

/// What a reader does with each row: gets the file's layout and the row's values.
pub type EachRow<'a> = dyn FnMut(&TableLayout, &[ValueRef<'_>]) -> Result<(), String> + 'a;

/// One leaf's values for a row group.
enum LeafValues {
    Integer(Vec<i64>),
    Real(Vec<f64>),
    Bytes(Vec<ByteArray>),
}

/// Copies `reader` (a file of the dump, decrypted) into a private temporary file in
/// `dir` (Parquet is read from its end), then reads it: `each` gets the layout once and
/// every row's values. Returns the rows read. At most `declared_size` bytes (the
/// manifest's size of the stored file, which decryption only shrinks) are copied: a file
/// longer than its manifest says is refused before it fills the disk.
pub fn read_file(
    reader: impl Read,
    dir: Option<&Path>,
    declared_size: u64,
    table: &str,
    mut each: impl FnMut(&TableLayout, &[ValueRef<'_>]) -> Result<(), String>,
) -> Result<u64, String> {
    let mut file = match dir {
        Some(dir) => tempfile::tempfile_in(dir),
        None => tempfile::tempfile(),
    }
    .map_err(|e| format!("a temporary file for the Parquet file: {e}"))?;
    let copied =
        std::io::copy(&mut reader.take(declared_size + 1), &mut file).map_err(|e| e.to_string())?;
    if copied > declared_size {
        return Err(format!(
            "longer than the {declared_size} bytes its manifest gives; not the file the dump wrote"
        ));
    }
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_rows(file, table, &mut each)
    }));
    read.unwrap_or_else(|_| Err("a malformed Parquet file (its reader failed)".into()))
}

fn read_rows(file: File, table: &str, each: &mut EachRow<'_>) -> Result<u64, String> {
    let pq = |e: parquet::errors::ParquetError| format!("not a readable Parquet file: {e}");
    let reader = SerializedFileReader::new(file).map_err(pq)?;
    let meta = reader.metadata();
    let declared = meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == METADATA_KEY))
        .and_then(|k| k.value.as_deref())
        .ok_or_else(|| format!("no {METADATA_KEY:?} metadata: not a file of a chunkdump dump"))?;
    let schema = meta.file_metadata().schema_descr().root_schema();
    let layout = TableLayout::from_metadata(declared, schema)?;
    if layout.table != table {
        return Err(format!(
            "the file holds table {:?}, but its name is that of table {table:?}",
            layout.table
        ));
    }
    let leaves = layout.leaves()?;
    let bound = column_bound();
    let mut rows = 0u64;
    for g in 0..reader.num_row_groups() {
        let group_meta = meta.row_group(g);
        let n = usize::try_from(group_meta.num_rows())
            .map_err(|_| "a row group of a negative number of rows".to_string())?;
        for c in group_meta.columns() {
            if c.uncompressed_size() > bound || c.compressed_size() > bound {
                return Err(format!(
                    "a column chunk declares {} bytes, more than the {bound} a restore holds (CHUNKDUMP_MAX_STATEMENT_BYTES)",
                    c.uncompressed_size().max(c.compressed_size())
                ));
            }
        }
        let group = reader.get_row_group(g).map_err(pq)?;
        let mut columns = Vec::with_capacity(leaves.len());
        for (i, leaf) in leaves.iter().enumerate() {
            let (levels, values) = read_leaf(group.get_column_reader(i).map_err(pq)?, n, leaf)?;
            columns.push((levels, values));
        }
        let mut next = vec![0usize; leaves.len()];
        let mut values: Vec<ValueRef<'_>> = Vec::with_capacity(layout.columns.len());
        for r in 0..n {
            values.clear();
            let mut l = 0;
            while l < leaves.len() {
                let column = leaves[l].column;
                let mut value = None;
                let mut set = 0;
                while l < leaves.len() && leaves[l].column == column {
                    let (levels, leaf_values) = &columns[l];
                    let top = if leaves[l].nested { 2 } else { 1 };
                    let level = *levels.get(r).ok_or("a column shorter than its row group")?;
                    if level == top {
                        set += 1;
                        value = Some(value_at(leaf_values, next[l], leaves[l].class)?);
                        next[l] += 1;
                    }
                    l += 1;
                }
                if set > 1 {
                    return Err(format!(
                        "row {} of column {:?} sets {set} storage classes",
                        rows + r as u64 + 1,
                        layout.columns[column].name
                    ));
                }
                values.push(value.unwrap_or(ValueRef::Null));
            }
            each(&layout, &values)?;
        }
        rows += n as u64;
    }
    Ok(rows)
}

/// The value at `at` of a leaf of class `class`.
fn value_at(values: &LeafValues, at: usize, class: u8) -> Result<ValueRef<'_>, String> {
    let missing = || "a column with fewer values than its levels say".to_string();
    Ok(match values {
        LeafValues::Integer(v) => ValueRef::Integer(*v.get(at).ok_or_else(missing)?),
        LeafValues::Real(v) => ValueRef::Real(*v.get(at).ok_or_else(missing)?),
        LeafValues::Bytes(v) => {
            let b = v.get(at).ok_or_else(missing)?.data();
            if class == TEXT {
                ValueRef::Text(b)
            } else {
                ValueRef::Blob(b)
            }
        }
    })
}

/// All `n` levels and the values of one leaf of a row group.
fn read_leaf(
    reader: ColumnReader,
    n: usize,
    leaf: &Leaf,
) -> Result<(Vec<i16>, LeafValues), String> {
    fn all<T: DataType>(
        mut r: ColumnReaderImpl<T>,
        n: usize,
    ) -> Result<(Vec<i16>, Vec<T::T>), String> {
        let (mut levels, mut values) = (Vec::new(), Vec::new());
        while levels.len() < n {
            let (records, _, _) = r
                .read_records(n - levels.len(), Some(&mut levels), None, &mut values)
                .map_err(|e| format!("reading a column: {e}"))?;
            if records == 0 {
                return Err("a column shorter than its row group".into());
            }
        }
        Ok((levels, values))
    }
    let wrong = || format!("a column of the wrong type for its layout ({leaf:?})");
    Ok(match (reader, leaf.class) {
        (ColumnReader::Int64ColumnReader(r), INTEGER) => {
            let (l, v) = all(r, n)?;
            (l, LeafValues::Integer(v))
        }
        (ColumnReader::DoubleColumnReader(r), REAL) => {
            let (l, v) = all(r, n)?;
            (l, LeafValues::Real(v))
        }
        (ColumnReader::ByteArrayColumnReader(r), _)
            if leaf.class != INTEGER && leaf.class != REAL =>
        {
            let (l, v) = all(r, n)?;
            (l, LeafValues::Bytes(v))
        }
        _ => return Err(wrong()),
    })
}
