//! The dump job record: what is dumped, how far it got, and what came out.
//!
//! A job record is the only state that survives between chunks. It stays small whatever
//! the database size (a cursor, counters, the open upload handle and the list of finished
//! files), so it fits a DynamoDB item and a Step Functions payload never has to carry it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::callback::CallbackState;
use super::upload::UploadHandle;

/// A value from outside (a request, a flag, a file name) that the model does not accept:
/// `field` names the request field it came from, the message the value and what was
/// expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub message: String,
}

/// Output format of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// SQL statements that rebuild the database with the `sqlite3` shell.
    Sql,
    /// One RFC 4180 CSV file per table.
    Csv,
    /// One JSON document `{"tables":{name:[row objects]}}`.
    Json,
}

impl Format {
    /// File extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Sql => "sql",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sql" => Ok(Format::Sql),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(InvalidValue {
                field: "format",
                message: format!("unknown format {other:?}: expected sql, csv or json"),
            }),
        }
    }
}

/// Compression applied to every output object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    /// gzip; every chunk ends its own member, so the object is a multi-member gzip stream.
    Gzip,
    /// zstd; every chunk ends its own frame, so the object is a stream of concatenated
    /// frames (which `zstd -d` reads as one).
    Zstd,
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
    /// Rows read per short read transaction (the original request's `chunkSize`).
    pub chunk_size: u32,
    /// Size of every multipart part but the last, in bytes.
    pub part_size: u64,
    /// Dump a point-in-time copy of the database (see `engine::snapshot`) instead of the
    /// live file.
    #[serde(default)]
    pub snapshot: bool,
    /// Longest a rollback-journal snapshot may hold writers off (ms; default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_max_block_ms: Option<u64>,
}

/// How consistent a dump is: a snapshot dump is a point-in-time copy; a live dump is one
/// only if nothing changed the database while it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consistency {
    pub snapshot: bool,
    pub changed_during_dump: bool,
}

/// A key value saved in a cursor (one column of a primary key, or a rowid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum KeyValue {
    #[serde(rename = "n")]
    Null,
    #[serde(rename = "i")]
    Integer(i64),
    /// IEEE-754 bits, so the value survives JSON exactly.
    #[serde(rename = "r")]
    RealBits(u64),
    /// Text bytes as stored (may be invalid UTF-8), base64.
    #[serde(rename = "s", with = "b64")]
    Text(Vec<u8>),
    #[serde(rename = "b", with = "b64")]
    Blob(Vec<u8>),
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// Position in the dump plan: which object, which step within it, and (for row steps)
/// the key of the last row written. Keyset pagination resumes with `key > after`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub object: u32,
    pub step: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<KeyValue>>,
}

/// Lifecycle of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Processing,
    /// Paused by a fault outside the data (the store unreachable or full, the database
    /// locked past the retries) or by its runner's end (a killed process, a stopped
    /// execution): everything committed is kept, and a resume continues from the last
    /// committed chunk. Not terminal.
    Interrupted,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Whether no more work will happen on this dump.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Processing => "processing",
            JobStatus::Interrupted => "interrupted",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The object being written when a chunk ended: its upload and the carried tail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenObject {
    /// Index of the object in the plan.
    pub object: u32,
    pub key: String,
    /// The multipart upload, once the first full part was uploaded.
    pub upload: Option<UploadHandle>,
    /// Next part number to upload (1-based).
    pub next_part: u32,
    /// Bytes of this object produced so far (uploaded parts plus tail).
    pub bytes: u64,
}

/// A finished output object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub key: String,
    pub size: u64,
    /// SHA-256 over the SHA-256 digests of the file's consecutive part-size pieces
    /// (hex): computed part by part as they are uploaded, so no chunk keeps the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Why a dump failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// The persisted state of one dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub id: String,
    /// Optimistic-concurrency version, bumped by every committed chunk.
    pub version: u64,
    pub status: JobStatus,
    pub spec: DumpSpec,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Hash of the dumped schema objects, fixed by the first chunk.
    pub schema_fingerprint: Option<String>,
    pub cursor: Cursor,
    pub open_object: Option<OpenObject>,
    pub files: Vec<FileEntry>,
    /// Rows to dump, counted by the first chunk.
    pub total_rows: Option<u64>,
    pub processed_rows: u64,
    /// Output bytes written so far (after compression).
    pub bytes_written: u64,
    /// Chunks committed so far.
    pub chunks: u64,
    /// Milliseconds spent inside chunks (excludes breathing pauses).
    pub busy_ms: u64,
    pub error: Option<JobError>,
    /// The completion callback, if one was requested.
    #[serde(default)]
    pub callback: Option<CallbackState>,
    /// Per-table corner cases the dump could not reproduce exactly (each names its
    /// table), recorded by the first chunk. The rest of the database is exact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The source's change token when the first chunk started.
    #[serde(default)]
    pub change_token: Option<String>,
    #[serde(default)]
    pub consistency: Consistency,
    /// The point-in-time copy this dump reads (snapshot dumps), deleted when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_path: Option<String>,
    /// The schedule that started this dump, if one did: its retention policy applies to
    /// the dumps it started, never to others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The version whose staging object the next chunk reads, when it is not `version`:
    /// pausing and resuming change the record (one version up each) but not what the
    /// last committed chunk staged. `None`: staged at `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_version: Option<u64>,
}

impl JobRecord {
    /// A new pending job at version 1.
    pub fn new(id: String, spec: DumpSpec, now: DateTime<Utc>) -> Self {
        let spec_snapshot = spec.snapshot;
        JobRecord {
            id,
            version: 1,
            status: JobStatus::Pending,
            spec,
            created_at: now,
            started_at: None,
            updated_at: now,
            completed_at: None,
            schema_fingerprint: None,
            cursor: Cursor::default(),
            open_object: None,
            files: Vec::new(),
            total_rows: None,
            processed_rows: 0,
            bytes_written: 0,
            chunks: 0,
            busy_ms: 0,
            error: None,
            callback: None,
            warnings: Vec::new(),
            change_token: None,
            consistency: Consistency {
                snapshot: spec_snapshot,
                changed_during_dump: false,
            },
            snapshot_path: None,
            schedule: None,
            staged_version: None,
        }
    }

    /// The version whose staging object holds what the last committed chunk left for
    /// the next one.
    pub fn staging_version(&self) -> u64 {
        self.staged_version.unwrap_or(self.version)
    }

    /// Base name of the dump's output: its one file, or its directory for CSV
    /// ([`output_name`]).
    pub fn output_name(&self) -> String {
        output_name(&self.id, self.spec.format, self.spec.compression)
    }

    /// Where the API serves the completed dump, under `base` (empty for a relative
    /// path): one URL for SQL and JSON, one per table file for CSV. The one definition
    /// for the status view and the callback.
    pub fn download_url(&self, base: &str) -> DownloadUrl {
        // An object name is one path segment per `/`, each percent-encoded once: a
        // table file `a%20b.csv` (table `a b`) is served at `…/a%2520b.csv`, which every
        // server (axum, API Gateway) decodes back to the object's name.
        let url = |name: &str| {
            let path: Vec<String> = name.split('/').map(path_segment).collect();
            format!("{base}/export/dump/download/{}", path.join("/"))
        };
        match self.spec.format {
            Format::Csv => DownloadUrl::PerTable(self.files.iter().map(|f| url(&f.key)).collect()),
            _ => DownloadUrl::One(url(&self.output_name())),
        }
    }

    /// Where the API serves the completed dump's manifest, under `base`.
    pub fn manifest_url(&self, base: &str) -> String {
        format!("{base}/export/dump/manifest/{}", self.id)
    }

    /// Percent complete (0..=100); never 100 before the dump is completed.
    pub fn percent_complete(&self) -> u8 {
        if self.status == JobStatus::Completed {
            return 100;
        }
        match self.total_rows {
            Some(total) if total > 0 => {
                ((self.processed_rows.saturating_mul(100) / total).min(99)) as u8
            }
            _ => 0,
        }
    }

    /// Estimated completion time from the measured rate (breathing pauses included,
    /// since it extrapolates wall-clock time since the start).
    pub fn estimated_completion(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.status == JobStatus::Completed {
            return self.completed_at;
        }
        let started = self.started_at?;
        let total = self.total_rows?;
        if self.processed_rows == 0
            || self.status.is_terminal()
            || self.status == JobStatus::Interrupted
        {
            return None;
        }
        let elapsed_ms = (now - started).num_milliseconds().max(1) as f64;
        let remaining = total.saturating_sub(self.processed_rows) as f64;
        let ms_left = elapsed_ms * remaining / self.processed_rows as f64;
        Some(now + chrono::Duration::milliseconds(ms_left as i64))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_urls_name_routable_files() {
        let spec = DumpSpec {
            database: "/a.db".into(),
            format: Format::Csv,
            compression: Compression::Zstd,
            tables: None,
            include_schema: true,
            chunk_size: 1000,
            part_size: 8 << 20,
            snapshot: false,
            snapshot_max_block_ms: None,
        };
        let mut job = JobRecord::new("d1".into(), spec, chrono::Utc::now());
        job.files = ["d1/a.csv.zst", "d1/b.csv.zst"]
            .iter()
            .map(|k| FileEntry {
                key: k.to_string(),
                size: 1,
                sha256: None,
            })
            .collect();
        // A table file's name is encoded once more in its URL (see `download_url`).
        let mut spaced = job.clone();
        spaced.files[0].key = "d1/a%20b.csv.zst".into();
        assert_eq!(
            serde_json::to_value(spaced.download_url("")).unwrap()[0],
            "/export/dump/download/d1/a%2520b.csv.zst"
        );
        // CSV: one URL per table file (the route `/export/dump/download/{id}/{table}.csv`).
        assert_eq!(
            serde_json::to_value(job.download_url("https://x")).unwrap(),
            serde_json::json!([
                "https://x/export/dump/download/d1/a.csv.zst",
                "https://x/export/dump/download/d1/b.csv.zst"
            ])
        );
        job.spec.format = Format::Sql;
        assert_eq!(
            serde_json::to_value(job.download_url("")).unwrap(),
            serde_json::json!("/export/dump/download/d1.sql.zst")
        );
        assert_eq!(job.manifest_url(""), "/export/dump/manifest/d1");
        assert!(
            key_belongs_to("d1.sql", "d1")
                && key_belongs_to("d1/t.csv", "d1")
                && !key_belongs_to("d10.sql", "d1")
        );
    }
}
