//! How each column of a table is typed in Parquet, decided by its census: the storage
//! classes its values actually have (see [`crate::engine::census`]), never its declared
//! type.
//!
//! - One class (and NULLs): the natural type: INTEGER → `INT64`, REAL → `DOUBLE`,
//!   TEXT → `BYTE_ARRAY (STRING)`, BLOB → `BYTE_ARRAY`. TEXT that is not valid UTF-8 is
//!   `BYTE_ARRAY` without the STRING annotation, exact, with a warning.
//! - Several classes: an optional group with one optional field per class present
//!   (`integer`, `real`, `text`, `blob`, in that order), exactly one set per non-NULL
//!   row, with a warning naming the column. DuckDB reads it as a STRUCT, pyarrow as a
//!   struct column.
//! - No values at all: the type the declared affinity suggests (nothing to convert).
//!
//! The layout travels in each file's key-value metadata (`chunkdump`, JSON) with every
//! column's declared type, so a reader knows the columns' storage classes without
//! guessing; [`TableLayout::from_metadata`] reads it back and checks the file's schema
//! is the one it implies.

use std::sync::Arc;

use parquet::basic::{LogicalType, Repetition, Type as Physical};
use parquet::schema::types::{Type, TypePtr};
use serde::{Deserialize, Serialize};

use crate::engine::census::{BLOB, INTEGER, REAL, TEXT, TEXT_NOT_UTF8};

/// The key-value metadata key of the layout.
pub const METADATA_KEY: &str = "chunkdump";

/// The storage classes in the order a mixed column's fields are written.
pub const CLASSES: [u8; 4] = [INTEGER, REAL, TEXT, BLOB];

/// The name of a class, as a mixed column's field and in the metadata.
pub fn class_name(class: u8) -> &'static str {
    match class {
        INTEGER => "integer",
        REAL => "real",
        TEXT => "text",
        _ => "blob",
    }
}

/// One column's layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnLayout {
    pub name: String,
    /// The declared type, as `CREATE TABLE` has it (empty when none).
    pub declared: String,
    /// The storage classes present, by name, in [`CLASSES`] order.
    pub classes: Vec<String>,
    /// TEXT values are valid UTF-8 (written as STRING); `false`: as plain bytes.
    #[serde(default = "yes")]
    pub utf8: bool,
}

fn yes() -> bool {
    true
}

/// A table's layout: the metadata every one of its files carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableLayout {
    /// Layout version (1).
    pub version: u32,
    pub table: String,
    pub columns: Vec<ColumnLayout>,
}

/// What a leaf (a Parquet primitive column) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// The storage class its values have.
    pub class: u8,
    /// The column it belongs to, and whether it is a field of a mixed column's group.
    pub column: usize,
    pub nested: bool,
}

impl ColumnLayout {
    /// The layout of a column whose census is `census` and declared type `declared`.
    pub fn new(name: &str, declared: &str, census: u8) -> Self {
        let mut present: Vec<u8> = CLASSES.into_iter().filter(|c| census & c != 0).collect();
        if present.is_empty() {
            present.push(by_affinity(declared));
        }
        ColumnLayout {
            name: name.to_string(),
            declared: declared.to_string(),
            classes: present.iter().map(|c| class_name(*c).to_string()).collect(),
            utf8: census & TEXT_NOT_UTF8 == 0,
        }
    }

    /// The class bits present.
    pub fn class_bits(&self) -> Result<Vec<u8>, String> {
        self.classes
            .iter()
            .map(|n| {
                CLASSES
                    .into_iter()
                    .find(|c| class_name(*c) == n)
                    .ok_or_else(|| format!("column {:?}: unknown storage class {n:?}", self.name))
            })
            .collect()
    }

    /// Whether the column mixes storage classes (a group of fields).
    pub fn mixed(&self) -> bool {
        self.classes.len() > 1
    }

    /// What a reader is told about the column, if anything.
    pub fn warning(&self, table: &str) -> Option<String> {
        if self.mixed() {
            return Some(format!(
                "table {table:?}, column {:?}: its values mix storage classes ({}); Parquet keeps each exactly in a struct with one field per class (see docs/parquet.md)",
                self.name,
                self.classes.join(", ")
            ));
        }
        (!self.utf8).then(|| {
            format!(
                "table {table:?}, column {:?}: it holds TEXT that is not valid UTF-8; Parquet keeps it exactly as BINARY, not STRING",
                self.name
            )
        })
    }

    fn leaf_type(&self, class: u8, name: &str) -> Result<TypePtr, String> {
        let (physical, logical) = match class {
            INTEGER => (Physical::INT64, None),
            REAL => (Physical::DOUBLE, None),
            TEXT if self.utf8 => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
            _ => (Physical::BYTE_ARRAY, None),
        };
        Type::primitive_type_builder(name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .build()
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    fn parquet_type(&self) -> Result<TypePtr, String> {
        let classes = self.class_bits()?;
        if !self.mixed() {
            return self.leaf_type(classes[0], &self.name);
        }
        let fields = classes
            .iter()
            .map(|&c| self.leaf_type(c, class_name(c)))
            .collect::<Result<Vec<_>, _>>()?;
        Type::group_type_builder(&self.name)
            .with_repetition(Repetition::OPTIONAL)
            .with_fields(fields)
            .build()
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

/// The class a column with no values is typed as: its declared type's affinity.
fn by_affinity(declared: &str) -> u8 {
    let d = declared.to_ascii_uppercase();
    if d.contains("INT") {
        INTEGER
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        TEXT
    } else if d.is_empty() || d.contains("BLOB") {
        BLOB
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        REAL
    } else {
        INTEGER
    }
}

impl TableLayout {
    /// The layout of `table` from its columns (name, declared type) and census.
    pub fn new(table: &str, columns: &[(String, String)], census: &[u8]) -> Self {
        TableLayout {
            version: 1,
            table: table.to_string(),
            columns: columns
                .iter()
                .enumerate()
                .map(|(i, (name, declared))| {
                    ColumnLayout::new(name, declared, census.get(i).copied().unwrap_or(0))
                })
                .collect(),
        }
    }

    /// The Parquet schema of the table's files.
    pub fn schema(&self) -> Result<TypePtr, String> {
        let fields = self
            .columns
            .iter()
            .map(ColumnLayout::parquet_type)
            .collect::<Result<Vec<_>, _>>()?;
        Type::group_type_builder("schema")
            .with_fields(fields)
            .build()
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    /// The leaves in schema order.
    pub fn leaves(&self) -> Result<Vec<Leaf>, String> {
        let mut leaves = Vec::new();
        for (column, c) in self.columns.iter().enumerate() {
            let nested = c.mixed();
            for class in c.class_bits()? {
                leaves.push(Leaf {
                    class,
                    column,
                    nested,
                });
            }
        }
        Ok(leaves)
    }

    /// The metadata value.
    pub fn to_metadata(&self) -> String {
        serde_json::to_string(self).expect("a layout serializes")
    }

    /// The layout a file's metadata declares, checked: version 1, every class known,
    /// and the file's `schema` exactly the one the layout implies.
    pub fn from_metadata(value: &str, schema: &Type) -> Result<Self, String> {
        let layout: TableLayout = serde_json::from_str(value)
            .map_err(|e| format!("the file's {METADATA_KEY:?} metadata is not a layout: {e}"))?;
        if layout.version != 1 {
            return Err(format!(
                "layout version {} (this chunkdump reads 1)",
                layout.version
            ));
        }
        if layout.columns.iter().any(|c| c.classes.is_empty()) {
            return Err("a column with no storage class".into());
        }
        if *layout.schema()? != *schema {
            return Err("the file's schema is not the one its layout declares".into());
        }
        Ok(layout)
    }

    /// The warnings for the table's columns.
    pub fn warnings(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter_map(|c| c.warning(&self.table))
            .collect()
    }
}

/// A value's storage class bit (0 for NULL), without looking at its bytes.
pub fn storage_class(v: rusqlite::types::ValueRef<'_>) -> u8 {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => 0,
        ValueRef::Integer(_) => INTEGER,
        ValueRef::Real(_) => REAL,
        ValueRef::Text(_) => TEXT,
        ValueRef::Blob(_) => BLOB,
    }
}

/// The census bits of a value: its class, and [`TEXT_NOT_UTF8`] for such TEXT.
pub fn class_of(v: rusqlite::types::ValueRef<'_>) -> u8 {
    match v {
        rusqlite::types::ValueRef::Text(t) if std::str::from_utf8(t).is_err() => {
            TEXT | TEXT_NOT_UTF8
        }
        v => storage_class(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(census: &[u8]) -> TableLayout {
        let cols: Vec<(String, String)> = (0..census.len())
            .map(|i| (format!("c{i}"), String::new()))
            .collect();
        TableLayout::new("t", &cols, census)
    }

    #[test]
    fn one_class_is_the_natural_type_and_several_a_group() {
        let l = layout(&[
            INTEGER,
            REAL,
            TEXT,
            BLOB,
            TEXT | TEXT_NOT_UTF8,
            INTEGER | TEXT,
            0,
        ]);
        let schema = l.schema().unwrap();
        let fields = schema.get_fields();
        assert_eq!(fields[0].get_physical_type(), Physical::INT64);
        assert_eq!(fields[1].get_physical_type(), Physical::DOUBLE);
        assert_eq!(
            fields[2].get_basic_info().logical_type_ref(),
            Some(&LogicalType::String)
        );
        assert_eq!(fields[3].get_basic_info().logical_type_ref(), None);
        assert_eq!(fields[4].get_basic_info().logical_type_ref(), None);
        assert!(fields[5].is_group());
        let names: Vec<&str> = fields[5].get_fields().iter().map(|f| f.name()).collect();
        assert_eq!(names, ["integer", "text"]);
        // No values, no declared type: BLOB affinity, plain bytes.
        assert_eq!(fields[6].get_physical_type(), Physical::BYTE_ARRAY);
        assert_eq!(l.leaves().unwrap().len(), 8);
        let warned = l.warnings();
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert!(warned[0].contains("\"c4\"") && warned[1].contains("\"c5\""));
    }

    #[test]
    fn the_metadata_reads_back_only_with_its_schema() {
        let l = layout(&[INTEGER | REAL | BLOB, TEXT]);
        let back = TableLayout::from_metadata(&l.to_metadata(), &l.schema().unwrap()).unwrap();
        assert_eq!(back, l);
        let other = layout(&[INTEGER, TEXT]);
        let e = TableLayout::from_metadata(&l.to_metadata(), &other.schema().unwrap());
        assert!(e.unwrap_err().contains("not the one"));
        assert!(TableLayout::from_metadata("{}", &l.schema().unwrap()).is_err());
    }
}
