//! The dump job record: how far a dump got, and what came out (what is dumped is its
//! [`DumpSpec`]).
//!
//! A job record is the only state that survives between chunks. It stays small whatever
//! the database size (a cursor, counters, the open upload handle and the list of finished
//! files), so it fits a DynamoDB item and a Step Functions payload never has to carry it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::callback::CallbackState;
use super::names::Encoding;
use super::names::{output_name, path_segment, DownloadUrl};
use super::spec::{Consistency, DumpSpec, Format};
use super::upload::UploadHandle;

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
    /// Parquet: the files of the current table written so far (each chunk closes its
    /// own); `step` is 0 while its census is taken, 1 while its rows are written.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub file: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Lifecycle of a dump.
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
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
    /// The inode of the database file the dump was created on (read from the descriptor
    /// SQLite opened): every chunk refuses another file at the same path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_inode: Option<u64>,
    /// The outcome of the last restore drill of this (completed) dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<super::DrillSummary>,
    /// An encrypted dump's stream key (`encryption::StreamKey::store`'s form: wrapped
    /// with the deployment's signing key, or clear in a local progress store), which the
    /// chunks derive each object's age file key from; erased when the dump ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_key: Option<String>,
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
            database_inode: None,
            last_drill: None,
            stream_key: None,
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
        output_name(&self.id, self.spec.format, Encoding::of(&self.spec))
    }

    /// Where the API serves the completed dump, under `base` (empty for a relative
    /// path): one URL for SQL and JSON, one per table file for CSV. The one definition
    /// for the status view and the callback.
    pub fn download_url(&self, base: &str) -> DownloadUrl {
        // The dump id is one path segment (in a store of several databases it holds
        // `/`, sent as `%2F`), and so is a CSV table's file name after it; each is
        // percent-encoded once: a table file `a%20b.csv` (table `a b`) is served at
        // `…/a%2520b.csv`, which every server (axum, API Gateway) decodes back to the
        // object's name.
        let url = |name: &str| {
            let path = match name
                .strip_prefix(self.id.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                Some(file) => format!("{}/{}", path_segment(&self.id), path_segment(file)),
                None => path_segment(name),
            };
            format!("{base}/export/dump/download/{path}")
        };
        // Every file a restore needs: a SQL dump is one file; the others are their rows'
        // files and the `schema.sql` that creates their tables.
        match self.spec.format {
            Format::Sql => DownloadUrl::One(url(&self.output_name())),
            Format::Json | Format::Csv | Format::Parquet => {
                DownloadUrl::PerTable(self.files.iter().map(|f| url(&f.key)).collect())
            }
        }
    }

    /// Where the API serves the completed dump's manifest, under `base`.
    pub fn manifest_url(&self, base: &str) -> String {
        format!("{base}/export/dump/manifest/{}", path_segment(&self.id))
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

    /// Estimated completion time from the rate measured up to the last committed chunk
    /// (wall-clock time from the first chunk's start to that commit, so the breathing
    /// pauses between chunks count): it moves only when a chunk commits, instead of
    /// slipping a second per second while the next chunk runs. Never before `now`.
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
        let measured = self.updated_at.max(started);
        let elapsed_ms = (measured - started).num_milliseconds().max(1) as f64;
        let remaining = total.saturating_sub(self.processed_rows) as f64;
        let ms_left = elapsed_ms * remaining / self.processed_rows as f64;
        Some((measured + chrono::Duration::milliseconds(ms_left as i64)).max(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_moves_only_when_a_chunk_commits() {
        let spec = DumpSpec {
            database: "/a.db".into(),
            format: Format::Sql,
            compression: crate::model::Compression::None,
            tables: None,
            include_schema: true,
            slice_rows: crate::model::SliceRows::new(100).unwrap(),
            part_size: 5 << 20,
            snapshot: false,
            snapshot_max_block_ms: None,
            frame_size: None,
            shown_as: None,
            drill: false,
            recipients: Vec::new(),
        };
        let start = Utc::now() - chrono::Duration::seconds(60);
        let mut job = JobRecord::new("d1".into(), spec, start);
        job.status = JobStatus::Processing;
        job.started_at = Some(start);
        job.updated_at = start + chrono::Duration::seconds(30);
        (job.processed_rows, job.total_rows) = (300, Some(1000));
        // 300 rows took 30 s up to the last commit: 70 s more from that commit.
        let want = job.updated_at + chrono::Duration::seconds(70);
        let at = |s| job.estimated_completion(start + chrono::Duration::seconds(s));
        assert_eq!(at(31), Some(want));
        assert_eq!(at(50), Some(want), "no slipping while the next chunk runs");
        // Past it (a stalled dump): never in the past.
        let late = start + chrono::Duration::seconds(200);
        assert_eq!(job.estimated_completion(late), Some(late));
    }
    use crate::model::{key_belongs_to, Compression};

    #[test]
    fn download_urls_name_routable_files() {
        let spec = DumpSpec {
            database: "/a.db".into(),
            format: Format::Csv,
            compression: Compression::Zstd,
            tables: None,
            include_schema: true,
            slice_rows: crate::model::SliceRows::new(1000).unwrap(),
            part_size: 8 << 20,
            snapshot: false,
            snapshot_max_block_ms: None,
            frame_size: None,
            shown_as: None,
            drill: false,
            recipients: Vec::new(),
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
        // A dump of one of several databases: its id is one segment, `/` sent as `%2F`.
        let mut tenant = job.clone();
        tenant.id = "t/acme%20co/d1".into();
        assert_eq!(
            serde_json::to_value(tenant.download_url("")).unwrap(),
            serde_json::json!("/export/dump/download/t%2Facme%2520co%2Fd1.sql.zst")
        );
        tenant.spec.format = Format::Csv;
        tenant.files[0].key = "t/acme%20co/d1/a.csv.zst".into();
        assert_eq!(
            serde_json::to_value(tenant.download_url("")).unwrap()[0],
            "/export/dump/download/t%2Facme%2520co%2Fd1/a.csv.zst"
        );
        assert_eq!(
            tenant.manifest_url(""),
            "/export/dump/manifest/t%2Facme%2520co%2Fd1"
        );
        assert!(
            key_belongs_to("d1.sql", "d1")
                && key_belongs_to("d1/t.csv", "d1")
                && !key_belongs_to("d10.sql", "d1")
        );
    }
}
