//! The names a dump goes by: its id, its object keys (files, schema file, manifest) and
//! the URL path segments the API serves them under. The one definition of each, so that
//! writers, readers, `verify`, retention and the API never disagree on a name.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::spec::{Compression, Format, InvalidValue};

/// Where a completed dump is downloaded: one URL, or one per table file (CSV).
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

/// The one definition of a dump's object names (see also [`key_belongs_to`]): a SQL or
/// JSON dump is the one file `<id>.<ext>[.gz|.zst]`; a CSV dump is the directory `<id>`.
pub fn output_name(id: &str, format: Format, compression: Compression) -> String {
    match format {
        Format::Csv => id.to_string(),
        f => format!("{id}.{}{}", f.extension(), compression_suffix(compression)),
    }
}

/// The object name of one table's file in CSV dump `id`: `<id>/<stem>.csv[.gz|.zst]`
/// (`stem` is the table's file-safe name).
pub fn csv_table_key(id: &str, stem: &str, compression: Compression) -> String {
    format!("{id}/{stem}.csv{}", compression_suffix(compression))
}

/// The object name of the schema file of CSV or JSON dump `id` (compressed like its
/// data): `<id>/schema.sql[.gz|.zst]` inside a CSV dump's directory,
/// `<id>.schema.sql[.gz|.zst]` beside a JSON file. A CSV table's file always ends in
/// `.csv…`, so no table name can take this one.
pub fn schema_key(id: &str, format: Format, compression: Compression) -> String {
    let sep = if format == Format::Csv { '/' } else { '.' };
    format!("{id}{sep}schema.sql{}", compression_suffix(compression))
}

/// The object name of dump `id`'s manifest: next to its file, or inside its CSV
/// directory.
pub fn manifest_key(id: &str, format: Format) -> String {
    match format {
        Format::Csv => format!("{id}/manifest.json"),
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

/// Checks a dump id: 1..=100 characters of `[A-Za-z0-9_-]`, so it is safe in object
/// keys, file names and URLs (no traversal possible).
pub fn validate_dump_id(id: &str) -> Result<(), InvalidValue> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidValue {
            field: "id",
            message: format!(
                "invalid dump id {id:?}: use 1 to 100 characters from A-Z a-z 0-9 _ -"
            ),
        })
    }
}

/// The id of a dump (the original request's naming) started at `now`: `dump_YYYYMMDD-HHMMSS` (UTC).
pub fn dump_id_for(now: DateTime<Utc>) -> String {
    now.format("dump_%Y%m%d-%H%M%S").to_string()
}

/// Whether object `key` is one of dump `id`'s outputs: `<id>.<ext>…` or `<id>/…` (and
/// not, say, an output of a dump named `<id>x`).
pub fn key_belongs_to(key: &str, id: &str) -> bool {
    key.strip_prefix(id)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('/'))
}
