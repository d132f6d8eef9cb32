//! What a dump is asked for: its format, compression and the rest of its spec (fixed
//! when the job is created), and the error for a value from outside the model refuses.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A value from outside (a request, a flag, a file name) that the model does not accept:
/// `field` names the request field it came from, the message the value and what was
/// expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub message: String,
}

/// Rows read per slice (one short read transaction; on the wire a request's
/// `chunkSize`): 1 to [`SliceRows::MAX`], checked where the number comes in (a request,
/// a flag, a variable, a record read back), so nothing downstream checks it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SliceRows(u32);

impl SliceRows {
    /// The most rows one slice may read: the one definition the API, the CLI and the
    /// configuration check against.
    pub const MAX: u32 = 100_000;
    /// The default (`DUMP_CHUNK_SIZE`).
    pub const DEFAULT: SliceRows = SliceRows(1000);

    /// `n` rows per slice, or an error naming `chunkSize` and the range.
    pub fn new(n: u32) -> Result<Self, InvalidValue> {
        if (1..=Self::MAX).contains(&n) {
            Ok(SliceRows(n))
        } else {
            Err(InvalidValue {
                field: "chunkSize",
                message: format!("chunkSize must be between 1 and {}", Self::MAX),
            })
        }
    }

    /// A constant number of rows, checked when the program is compiled (in a `const`).
    pub const fn of(n: u32) -> Self {
        assert!(n >= 1 && n <= Self::MAX, "rows per slice out of range");
        SliceRows(n)
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for SliceRows {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SliceRows::new(u32::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "api")]
impl schemars::JsonSchema for SliceRows {
    fn schema_name() -> String {
        "SliceRows".into()
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        schemars::schema::SchemaObject {
            instance_type: Some(schemars::schema::InstanceType::Integer.into()),
            number: Some(Box::new(schemars::schema::NumberValidation {
                minimum: Some(1.0),
                maximum: Some(f64::from(Self::MAX)),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}

/// Output format of a dump.
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// SQL statements that rebuild the database with the `sqlite3` shell.
    Sql,
    /// One RFC 4180 CSV file per table.
    Csv,
    /// One JSON document `{"tables":{name:[row objects]}}`.
    Json,
    /// Per table, Parquet files typed by the values' storage classes.
    Parquet,
}

impl Format {
    /// File extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Sql => "sql",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Parquet => "parquet",
        }
    }

    /// Whether a dump is a directory of files (CSV, Parquet) rather than one file.
    pub fn is_directory(self) -> bool {
        matches!(self, Format::Csv | Format::Parquet)
    }
}

impl std::str::FromStr for Format {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sql" => Ok(Format::Sql),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "parquet" => Ok(Format::Parquet),
            other => Err(InvalidValue {
                field: "format",
                message: format!("unknown format {other:?}: expected sql, csv, json or parquet"),
            }),
        }
    }
}

/// Compression applied to every output object.
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    /// gzip; a member ends every few MiB, at a row end the content fixes, so the object
    /// is a multi-member gzip stream.
    Gzip,
    /// zstd; a frame ends every few MiB, at a row end the content fixes, so the object is
    /// a stream of concatenated frames (which `zstd -d` reads as one).
    Zstd,
}

impl Compression {
    /// The compression a dump of `format` gets when none is asked for: none, but zstd
    /// for Parquet (its pages are compressed inside the file, which stays queryable).
    pub fn default_for(format: Format) -> Self {
        match format {
            Format::Parquet => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(InvalidValue {
                field: "compression",
                message: format!("unknown compression {other:?}: expected none, gzip or zstd"),
            }),
        }
    }
}

/// What to dump and how. Fixed when the job is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DumpSpec {
    /// Path of the SQLite database file (absolute for local runs).
    pub database: String,
    pub format: Format,
    #[serde(default)]
    pub compression: Compression,
    /// Tables to dump; `None` means every user table.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Include CREATE statements, indexes, triggers, views (SQL format only).
    pub include_schema: bool,
    /// Rows read per slice, one short read transaction (on the wire the original
    /// request's `chunkSize`).
    #[serde(rename = "chunkSize")]
    pub slice_rows: SliceRows,
    /// Size of every multipart part but the last, in bytes.
    pub part_size: u64,
    /// Dump a point-in-time copy of the database (see `engine::snapshot`) instead of the
    /// live file.
    #[serde(default)]
    pub snapshot: bool,
    /// Longest a rollback-journal snapshot may hold writers off (ms; default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_max_block_ms: Option<u64>,
    /// Bytes of output after which a gzip member or zstd frame ends at the next row end
    /// (default `engine::FRAME_BYTES`). Fixed for the whole dump, so every chunk cuts
    /// frames at the same places and the compressed bytes do not depend on the chunking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_size: Option<u64>,
    /// How readers of the dump see its database, where `database` is a server's own path
    /// (a dump started through the API): the name the caller used (`tenants/acme.db`), or
    /// the file name. The manifest then shows this, never the server's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shown_as: Option<String>,
    /// Drill the dump once it completes: the state machine's `Drill` step restores it
    /// into a scratch database and checks it (see `drill`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill: bool,
    /// age public keys (`age1…`) every object of the dump is encrypted to (see
    /// `encryption`); empty: not encrypted. Public keys, not secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

impl DumpSpec {
    /// The database as a dump's readers see it: [`DumpSpec::shown_as`], or the path.
    pub fn shown_database(&self) -> &str {
        self.shown_as.as_deref().unwrap_or(&self.database)
    }

    /// Whether the dump's objects are encrypted (it has recipients).
    pub fn encrypted(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// How the dump's files are compressed as whole files: as `compression` says, but
    /// never for Parquet, whose pages are compressed with it inside the file.
    pub fn file_compression(&self) -> Compression {
        match self.format {
            Format::Parquet => Compression::None,
            _ => self.compression,
        }
    }
}

/// How consistent a dump is: a snapshot dump is a point-in-time copy; a live dump is one
/// only if nothing changed the database while it ran.
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consistency {
    pub snapshot: bool,
    pub changed_during_dump: bool,
}
