//! The names a dump goes by: its id, its object keys (files, schema file, manifest) and
//! the URL path segments the API serves them under. The one definition of each, so that
//! writers, readers, `verify`, retention and the API never disagree on a name.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::spec::{Compression, Format, InvalidValue};

/// Where a completed dump is downloaded: one URL (SQL), or one per file (JSON, CSV and
/// Parquet: their rows' files and their `schema.sql`).
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DownloadUrl {
    One(String),
    PerTable(Vec<String>),
}

/// `s` percent-encoded as a URL path segment: bytes outside the unreserved set
/// (`A-Z a-z 0-9 - . _ ~`) become `%XX`.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How a dump's files are encoded, which their names end with: the compression, then
/// `.age` when they are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub compression: Compression,
    pub encrypted: bool,
}

impl Encoding {
    /// The encoding of a dump of `spec`.
    pub fn of(spec: &super::DumpSpec) -> Self {
        Encoding {
            compression: spec.file_compression(),
            encrypted: spec.encrypted(),
        }
    }

    /// `.gz`, `.zst` or nothing, then `.age` if encrypted.
    pub fn suffix(self) -> String {
        let age = if self.encrypted { ".age" } else { "" };
        format!("{}{age}", compression_suffix(self.compression))
    }
}

impl From<Compression> for Encoding {
    /// Compressed, not encrypted.
    fn from(compression: Compression) -> Self {
        Encoding {
            compression,
            encrypted: false,
        }
    }
}

/// The one definition of a dump's object names (see also [`key_belongs_to`]): a SQL or
/// JSON dump is the one file `<id>.<ext>[.gz|.zst][.age]`; a CSV dump is the directory
/// `<id>`.
pub fn output_name(id: &str, format: Format, encoding: impl Into<Encoding>) -> String {
    match format {
        Format::Csv | Format::Parquet => id.to_string(),
        f => format!("{id}.{}{}", f.extension(), encoding.into().suffix()),
    }
}

/// The object name of one table's file in CSV dump `id`: `<id>/<stem>.csv[.gz|.zst][.age]`
/// (`stem` is the table's file-safe name, or in an encrypted dump [`encrypted_stem`]).
pub fn csv_table_key(id: &str, stem: &str, encoding: impl Into<Encoding>) -> String {
    format!("{id}/{stem}.csv{}", encoding.into().suffix())
}

/// The object name of file `n` (from 1) of a table in a Parquet dump, under the table's
/// directory `dir` (`<id>/<stem>/`, see [`parquet_table_dir`]):
/// `<dir>part-00001.parquet[.age]`, so `read_parquet('<id>/<stem>/*.parquet')` reads it.
pub fn parquet_file_key(dir: &str, n: u32, encrypted: bool) -> String {
    let age = if encrypted { ".age" } else { "" };
    format!("{dir}part-{n:05}.parquet{age}")
}

/// The directory of one table's files in Parquet dump `id`: `<id>/<stem>/` (`stem` as
/// for CSV). No table's directory can hold the schema file or the manifest.
pub fn parquet_table_dir(id: &str, stem: &str) -> String {
    format!("{id}/{stem}/")
}

/// The file stem of the `n`th table (from 0) of an encrypted CSV dump: its position,
/// never its name, which the bucket must not learn.
pub fn encrypted_stem(n: usize) -> String {
    format!("table-{:05}", n + 1)
}

/// The object name of the schema file of CSV or JSON dump `id` (encoded like its data):
/// `<id>/schema.sql[.gz|.zst][.age]` inside a CSV dump's directory,
/// `<id>.schema.sql[.gz|.zst][.age]` beside a JSON file. A CSV table's file always ends
/// in `.csv…`, so no table name can take this one.
pub fn schema_key(id: &str, format: Format, encoding: impl Into<Encoding>) -> String {
    let sep = if format.is_directory() { '/' } else { '.' };
    format!("{id}{sep}schema.sql{}", encoding.into().suffix())
}

/// The object name of dump `id`'s manifest: next to its file, or inside its CSV
/// directory.
pub fn manifest_key(id: &str, format: Format) -> String {
    match format {
        Format::Csv | Format::Parquet => format!("{id}/manifest.json"),
        _ => format!("{id}.manifest.json"),
    }
}

/// The file name suffix of a compression: `.gz`, `.zst`, or nothing.
pub fn compression_suffix(c: Compression) -> &'static str {
    match c {
        Compression::None => "",
        Compression::Gzip => ".gz",
        Compression::Zstd => ".zst",
    }
}

/// The longest dump id: with a CSV table's file name inside, its keys stay within the
/// 1,024 bytes S3 and R2 allow.
pub const MAX_DUMP_ID: usize = 600;

/// Checks a dump id: `dump_…` (1..=100 characters of `[A-Za-z0-9_-]`), or in a store of
/// several databases `<database>/dump_…`, the database a [`database_name`]
/// (components of `[A-Za-z0-9_%~-]`). So it is safe in object keys, file names and URLs
/// (no component is `.` or `..`: no traversal possible).
///
/// [`database_name`]: super::database_name
pub fn validate_dump_id(id: &str) -> Result<(), InvalidValue> {
    let (database, own) = match id.rsplit_once('/') {
        Some((database, own)) => (Some(database), own),
        None => (None, id),
    };
    let own_ok = !own.is_empty()
        && own.len() <= 100
        && own
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let database_ok = database.is_none_or(|d| {
        d.split('/').count() <= super::MAX_DATABASE_DEPTH
            && d.split('/').all(super::file_names::is_database_segment)
    });
    if own_ok && database_ok && id.len() <= MAX_DUMP_ID {
        Ok(())
    } else {
        Err(InvalidValue {
            field: "id",
            message: format!(
                "invalid dump id {id:?}: use 1 to 100 characters from A-Z a-z 0-9 _ -, \
                 after the database's name and a / in a store of several databases"
            ),
        })
    }
}

/// A dump's id, checked once where it comes in (an API path, a state machine task's
/// input, a command line argument; see [`validate_dump_id`]): from then on it is safe
/// in object keys, file names and URLs, and nothing checks it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DumpId(String);

impl DumpId {
    /// `id` if it is a valid dump id; an error naming the field `id` otherwise.
    pub fn parse(id: impl Into<String>) -> Result<Self, InvalidValue> {
        let id = id.into();
        validate_dump_id(&id)?;
        Ok(DumpId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for DumpId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DumpId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DumpId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        DumpId::parse(s)
    }
}

/// A dump id in a document is checked as it is read.
impl<'de> serde::Deserialize<'de> for DumpId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = String::deserialize(d)?;
        DumpId::parse(id).map_err(serde::de::Error::custom)
    }
}

/// The database part of dump `id` (`tenants/acme` of `tenants/acme/dump_…`), if the
/// store holds several databases.
pub fn database_of(id: &str) -> Option<&str> {
    id.rsplit_once('/').map(|(database, _)| database)
}

/// Which database's dumps a command's `--database` means: the database's file (its
/// canonical path, as dumps record it) or its name in the store (what `dump` prints
/// before `/dump_…`, such as `acme%20corp` or `tenants/acme`), given as that name or as
/// the path under the root it comes from (`tenants/acme.db`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseFilter {
    path: String,
    names: Vec<String>,
}

impl DatabaseFilter {
    /// The dumps of the database at canonical `path` only (how the API names one).
    pub fn path(path: impl Into<String>) -> Self {
        DatabaseFilter {
            path: path.into(),
            names: Vec::new(),
        }
    }

    /// What a user gave (`given`), which is the file at canonical `path` if it is one.
    pub fn given(given: &str, path: impl Into<String>) -> Self {
        let mut names = vec![given.to_string()];
        if let Ok(name) = super::database_name(std::path::Path::new(given)) {
            names.push(name);
        }
        DatabaseFilter {
            path: path.into(),
            names,
        }
    }

    /// Whether dump `id` of the database at `database` (its recorded path) is meant.
    pub fn matches(&self, database: &str, id: &str) -> bool {
        database == self.path
            || database_of(id).is_some_and(|name| self.names.iter().any(|n| n == name))
    }

    /// How to name it in a message.
    pub fn describe(&self) -> String {
        match self.names.first() {
            Some(given) => given.clone(),
            None => self.path.clone(),
        }
    }
}

/// The id of a dump (the original request's naming) started at `now`: `dump_YYYYMMDD-HHMMSS` (UTC).
pub fn dump_id_for(now: DateTime<Utc>) -> String {
    now.format("dump_%Y%m%d-%H%M%S").to_string()
}

/// The id of a dump of `database` (a [`database_name`], in a store of several databases)
/// started at `now`: `<database>/dump_YYYYMMDD-HHMMSS`; without one, [`dump_id_for`].
///
/// [`database_name`]: super::database_name
pub fn dump_id_of(database: Option<&str>, now: DateTime<Utc>) -> String {
    match database {
        Some(database) => format!("{database}/{}", dump_id_for(now)),
        None => dump_id_for(now),
    }
}

/// Whether object `key` is one of dump `id`'s outputs: `<id>.<ext>…` or `<id>/…` (and
/// not, say, an output of a dump named `<id>x`).
pub fn key_belongs_to(key: &str, id: &str) -> bool {
    key.strip_prefix(id)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_ids_of_one_or_several_databases() {
        for ok in [
            "dump_1",
            "dump_20260101-000000-2",
            "acme/dump_1",
            "t/acme%20co/dump_1",
        ] {
            assert!(validate_dump_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../dump_1",
            "a/../dump_1",
            "/dump_1",
            "a//dump_1",
            "a/",
            "a.b/dump_1",
            "a/dump.1",
            ".chunkdump/dump_1",
            "a b/dump_1",
        ] {
            assert!(validate_dump_id(bad).is_err(), "{bad}");
        }
        assert!(validate_dump_id(&format!("{}/dump_1", "d".repeat(MAX_DUMP_ID))).is_err());
        assert_eq!(database_of("t/acme/dump_1"), Some("t/acme"));
        assert_eq!(database_of("dump_1"), None);
        let now = chrono::DateTime::from_timestamp(0, 0).unwrap();
        assert_eq!(dump_id_of(Some("acme"), now), "acme/dump_19700101-000000");
        assert!(validate_dump_id(&dump_id_of(Some("t/acme%20co"), now)).is_ok());
    }

    #[test]
    fn a_dump_id_is_checked_once_as_it_comes_in() {
        let id: DumpId = "tenants/acme/dump_20261207-010101".parse().unwrap();
        assert_eq!(&*id, "tenants/acme/dump_20261207-010101");
        let read: DumpId = serde_json::from_str("\"dump_1\"").unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), "\"dump_1\"");
        for bad in ["../etc/passwd", "dump 1", "", "a//dump_1"] {
            assert!(DumpId::parse(bad).is_err(), "{bad}");
            let text = serde_json::to_string(bad).unwrap();
            let err = serde_json::from_str::<DumpId>(&text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("invalid dump id"), "{err}");
        }
    }
}
