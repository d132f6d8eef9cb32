//! Writing a table's rows as Parquet: rows are gathered column by column into a row
//! group of about [`ROW_GROUP_BYTES`] of values, which is encoded, compressed and
//! written whole (on its own thread, `super::file_thread`); a file is a run of row
//! groups and its footer, written into the output sink as one object.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression as Codec, GzipLevel, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use rusqlite::types::ValueRef;

use super::layout::{class_of, storage_class, Leaf, TableLayout, METADATA_KEY};
use crate::engine::census::{INTEGER, REAL, TEXT, TEXT_NOT_UTF8};
use crate::engine::digest::row_hash_with;
use crate::model::Compression;

/// Values gathered before a row group is written: what bounds a Parquet dump's memory
/// (two row groups, one filled while the other is written, with the encoded column
/// chunk and the output's parts), whatever the rows' sizes.
pub const ROW_GROUP_BYTES: usize = 8 << 20;

/// zstd's level inside Parquet files: its fastest, since pages are dictionary- and
/// run-length-encoded first (the files stay smaller than zstd CSV at level 3).
const PARQUET_ZSTD_LEVEL: i32 = 1;

/// The longest minimum or maximum a file's statistics keep.
const STATISTICS_BYTES: usize = 64;

/// The most a column chunk's dictionary holds before its values are written plain.
const DICTIONARY_BYTES: usize = 256 << 10;

/// The writer settings of a dump: Parquet's own compression (the dump's `compression`),
/// a fixed `created_by` (a file's bytes depend only on its rows), the layout as metadata.
pub fn properties(compression: Compression, layout: &TableLayout) -> WriterPropertiesPtr {
    let codec = match compression {
        Compression::None => Codec::UNCOMPRESSED,
        Compression::Zstd => {
            Codec::ZSTD(ZstdLevel::try_new(PARQUET_ZSTD_LEVEL).unwrap_or_default())
        }
        Compression::Gzip => Codec::GZIP(GzipLevel::default()),
    };
    Arc::new(
        WriterProperties::builder()
            .set_compression(codec)
            .set_created_by("chunkdump".into())
            // A dictionary pays where a column repeats itself; where it does not, a
            // small limit gives up on it early (plain encoding, then zstd).
            .set_dictionary_page_size_limit(DICTIONARY_BYTES)
            // Minimum and maximum of long values are kept truncated (as the column index
            // keeps them), never copied whole.
            .set_statistics_truncate_length(Some(STATISTICS_BYTES))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                METADATA_KEY.to_string(),
                layout.to_metadata(),
            )]))
            .build(),
    )
}

/// Why a row does not fit the table's layout: a value of a class the census did not see
/// (the table was written to between the census and this row).
#[derive(Debug)]
pub struct Misfit {
    pub column: String,
    pub class: &'static str,
}

/// One leaf's values and definition levels for the row group being gathered.
enum Values {
    Integer(Vec<i64>),
    Real(Vec<f64>),
    /// Bytes of every value back to back, and where each ends.
    Bytes {
        data: Vec<u8>,
        ends: Vec<usize>,
    },
}

struct LeafBuffer {
    leaf: Leaf,
    values: Values,
    levels: Vec<i16>,
}

/// The row group being gathered.
pub struct RowGroup {
    leaves: Vec<LeafBuffer>,
    /// Per column: its leaves' positions, and whether its TEXT must be UTF-8.
    columns: Vec<(Vec<usize>, bool)>,
    names: Vec<String>,
    rows: usize,
    bytes: usize,
}

impl RowGroup {
    pub fn new(layout: &TableLayout) -> Result<Self, String> {
        let leaves: Vec<LeafBuffer> = layout
            .leaves()?
            .into_iter()
            .map(|leaf| LeafBuffer {
                leaf,
                values: match leaf.class {
                    INTEGER => Values::Integer(Vec::new()),
                    REAL => Values::Real(Vec::new()),
                    _ => Values::Bytes {
                        data: Vec::new(),
                        ends: Vec::new(),
                    },
                },
                levels: Vec::new(),
            })
            .collect();
        let mut columns: Vec<(Vec<usize>, bool)> = layout
            .columns
            .iter()
            .map(|c| (Vec::new(), c.utf8))
            .collect();
        for (i, l) in leaves.iter().enumerate() {
            columns[l.leaf.column].0.push(i);
        }
        Ok(RowGroup {
            leaves,
            columns,
            names: layout.columns.iter().map(|c| c.name.clone()).collect(),
            rows: 0,
            bytes: 0,
        })
    }

    /// An empty row group of the same layout.
    pub fn empty_like(&self) -> Self {
        RowGroup {
            leaves: self
                .leaves
                .iter()
                .map(|l| LeafBuffer {
                    leaf: l.leaf,
                    values: match l.values {
                        Values::Integer(_) => Values::Integer(Vec::new()),
                        Values::Real(_) => Values::Real(Vec::new()),
                        Values::Bytes { .. } => Values::Bytes {
                            data: Vec::new(),
                            ends: Vec::new(),
                        },
                    },
                    levels: Vec::new(),
                })
                .collect(),
            columns: self.columns.clone(),
            names: self.names.clone(),
            rows: 0,
            bytes: 0,
        }
    }

    /// Bytes of values gathered.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Rows gathered.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds a row (values in the layout's column order). A misfit leaves the row group
    /// as it was before the row.
    pub fn push(&mut self, values: &[ValueRef<'_>]) -> Result<(), Misfit> {
        // Check the whole row first, so a misfit adds nothing.
        for (c, v) in values.iter().enumerate() {
            let class = storage_class(*v);
            if class == 0 {
                continue;
            }
            let (leaves, utf8) = &self.columns[c];
            let misfit = |class: &'static str| Misfit {
                column: self.names[c].clone(),
                class,
            };
            if !leaves.iter().any(|&l| self.leaves[l].leaf.class == class) {
                return Err(misfit(match class {
                    INTEGER => "INTEGER",
                    REAL => "REAL",
                    TEXT => "TEXT",
                    _ => "BLOB",
                }));
            }
            if class == TEXT && *utf8 && class_of(*v) & TEXT_NOT_UTF8 != 0 {
                return Err(misfit("TEXT that is not UTF-8"));
            }
        }
        for (c, v) in values.iter().enumerate() {
            let class = storage_class(*v);
            for &l in &self.columns[c].0 {
                let buffer = &mut self.leaves[l];
                let top = if buffer.leaf.nested { 2 } else { 1 };
                if class == 0 {
                    buffer.levels.push(0);
                    continue;
                }
                if class != buffer.leaf.class {
                    // Another field of the group holds it: this one is null in it.
                    buffer.levels.push(1);
                    continue;
                }
                buffer.levels.push(top);
                self.bytes += match (&mut buffer.values, *v) {
                    (Values::Integer(out), ValueRef::Integer(i)) => {
                        out.push(i);
                        8
                    }
                    (Values::Real(out), ValueRef::Real(f)) => {
                        out.push(f);
                        8
                    }
                    (Values::Bytes { data, ends }, ValueRef::Text(b) | ValueRef::Blob(b)) => {
                        data.extend_from_slice(b);
                        ends.push(data.len());
                        b.len() + 4
                    }
                    _ => unreachable!("classes checked above"),
                };
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The sum of the gathered rows' digest hashes (see `engine::digest`), each row's
    /// values read back from the columns as they were pushed.
    pub fn row_hash_sum(&self) -> u128 {
        let mut next = vec![0usize; self.leaves.len()];
        let mut level_at = 0usize;
        let mut scratch = Vec::new();
        let mut values = vec![ValueRef::Null; self.columns.len()];
        let mut sum = 0u128;
        for _ in 0..self.rows {
            for (c, (leaves, _)) in self.columns.iter().enumerate() {
                values[c] = ValueRef::Null;
                for &l in leaves {
                    let buffer = &self.leaves[l];
                    let top = if buffer.leaf.nested { 2 } else { 1 };
                    if buffer.levels[level_at] != top {
                        continue;
                    }
                    let at = next[l];
                    next[l] += 1;
                    values[c] = match &buffer.values {
                        Values::Integer(v) => ValueRef::Integer(v[at]),
                        Values::Real(v) => ValueRef::Real(v[at]),
                        Values::Bytes { data, ends } => {
                            let start = if at == 0 { 0 } else { ends[at - 1] };
                            let bytes = &data[start..ends[at]];
                            if buffer.leaf.class == TEXT {
                                ValueRef::Text(bytes)
                            } else {
                                ValueRef::Blob(bytes)
                            }
                        }
                    };
                }
            }
            level_at += 1;
            sum = sum.wrapping_add(row_hash_with(values.iter().copied(), &mut scratch));
        }
        sum
    }

    /// Writes the gathered rows as one row group of `file`, and empties the buffer.
    pub fn write_to<W: Write + Send>(
        &mut self,
        file: &mut SerializedFileWriter<W>,
    ) -> parquet::errors::Result<()> {
        let mut group = file.next_row_group()?;
        for buffer in &mut self.leaves {
            let mut column = group
                .next_column()?
                .ok_or_else(|| parquet::errors::ParquetError::General("too few columns".into()))?;
            let levels = Some(&buffer.levels[..]);
            // The bytes of a BYTE_ARRAY leaf, shared by its values until the column closes.
            let mut shared = None;
            match &mut buffer.values {
                Values::Integer(v) => {
                    column.typed::<Int64Type>().write_batch(v, levels, None)?;
                    v.clear();
                }
                Values::Real(v) => {
                    column.typed::<DoubleType>().write_batch(v, levels, None)?;
                    v.clear();
                }
                Values::Bytes { data, ends } => {
                    let all = Bytes::from(std::mem::take(data));
                    let mut start = 0;
                    let values: Vec<ByteArray> = ends
                        .iter()
                        .map(|&end| {
                            let v = ByteArray::from(all.slice(start..end));
                            start = end;
                            v
                        })
                        .collect();
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, levels, None)?;
                    ends.clear();
                    shared = Some(all);
                }
            }
            buffer.levels.clear();
            column.close()?;
            // The values are written: their buffer is reused for the next row group (no
            // fresh pages to fault in), when nothing holds a slice of it any more.
            if let (Some(all), Values::Bytes { data, .. }) = (shared, &mut buffer.values) {
                if let Ok(unique) = all.try_into_mut() {
                    *data = Vec::from(unique);
                    data.clear();
                }
            }
        }
        group.close()?;
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }
}

/// The census bits of a row's values, merged into `census`.
pub fn note_classes(census: &mut Vec<u8>, values: &[ValueRef<'_>]) {
    if census.len() < values.len() {
        census.resize(values.len(), 0);
    }
    for (c, v) in census.iter_mut().zip(values) {
        *c |= class_of(*v);
    }
}
