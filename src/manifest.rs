//! The manifest every completed dump writes beside its files, so that a dump proves
//! itself: what was dumped from where, how consistent it is, and digests that a reader
//! (`chunkdump verify`) recomputes from the stored bytes and the values.
//!
//! * `files`: each file's key, bytes and `sha256` — SHA-256 over the SHA-256 digests of
//!   the file's consecutive `partSize`-byte pieces (an empty file is one empty piece).
//!   Parts are hashed as they are uploaded, so no chunk ever holds a whole file, and the
//!   value depends only on the bytes and the part size.
//! * `tables`: per table the row count and `contentHash` (see `engine::digest`): over the
//!   columns the dump carries, in order (for SQL the rowid too when it is restored).
//! * `schemaFingerprint`, `source` (path, bytes, page size, text encoding, journal mode,
//!   the SQLite version that read it), `consistency`, `warnings`, times, chunks.

use serde::{Deserialize, Serialize};

use crate::engine::digest::{DigestState, TableDigest};
use crate::error::DumpError;
use crate::model::{Compression, Consistency, FileEntry, Format, JobRecord};
use crate::ports::ObjectStore;

/// The version of the dump formats and the manifest (`manifestVersion`). 2: JSON rows
/// carry `$rowid` where no column carries the rowid, and CSV and JSON dumps have a
/// schema file (`schema.sql`); 1: neither.
pub const FORMAT_VERSION: u32 = 2;

/// The manifest document (`<id>.manifest.json`, or `<id>/manifest.json` for CSV).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub manifest_version: u32,
    pub dump_id: String,
    pub format: Format,
    pub compression: Compression,
    pub part_size: u64,
    pub files: Vec<FileEntry>,
    pub tables: Vec<TableDigest>,
    pub schema_fingerprint: Option<String>,
    pub source: SourceFacts,
    pub consistency: Consistency,
    pub warnings: Vec<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub chunks: u64,
    pub rows: u64,
    /// What was asked for (tables, schema, format …), so a copy of the dump can be
    /// verified from its manifest alone.
    #[serde(default)]
    pub spec: Option<crate::model::DumpSpec>,
}

impl Manifest {
    /// The table a CSV dump's file holds: the table whose file name (made by the one
    /// function that names them) is `key`. `None` for any other key.
    #[cfg(feature = "cli")]
    pub fn csv_table_of(&self, key: &str) -> Option<String> {
        (self.format == Format::Csv).then_some(())?;
        self.tables
            .iter()
            .find(|t| {
                crate::model::csv_table_key(
                    &self.dump_id,
                    &crate::engine::plan::safe_file_name(&t.table),
                    self.compression,
                ) == key
            })
            .map(|t| t.table.clone())
    }

    /// The store directory of a dump whose manifest file is at `path`: the directory its
    /// keys start from, found by walking up one level per component of the manifest's
    /// own key (`<id>.manifest.json`, `<id>/manifest.json`, and the database's name
    /// before either in a store of several databases).
    pub fn store_root_of(&self, path: &std::path::Path) -> std::path::PathBuf {
        let levels = crate::model::manifest_key(&self.dump_id, self.format)
            .split('/')
            .count();
        let mut root = path.to_path_buf();
        for _ in 0..levels {
            root = match root.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
        }
        root
    }
}

/// Facts about the database that was dumped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceFacts {
    pub path: String,
    pub bytes: Option<u64>,
    pub page_size: Option<i64>,
    /// `PRAGMA auto_vacuum` (0 none, 1 full, 2 incremental); a restore sets it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_vacuum: Option<i64>,
    pub text_encoding: Option<String>,
    pub journal_mode: Option<String>,
    /// The SQLite library that read it (chunkdump's bundled one).
    pub sqlite_version: String,
}

pub use crate::model::manifest_key;

/// Reads the source facts (best effort: a database gone by now still gets its path).
pub fn source_facts(path: &str) -> SourceFacts {
    let mut facts = SourceFacts {
        path: path.to_string(),
        sqlite_version: rusqlite::version().to_string(),
        ..Default::default()
    };
    facts.bytes = std::fs::metadata(path).ok().map(|m| m.len());
    if let Ok(conn) = crate::engine::open_database(path) {
        facts.page_size = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).ok();
        facts.auto_vacuum = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).ok();
        facts.text_encoding = conn.query_row("PRAGMA encoding", [], |r| r.get(0)).ok();
        facts.journal_mode = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).ok();
    }
    facts
}

/// Builds the manifest of the completed job `job` from its table digests.
pub fn build(job: &JobRecord, digests: &DigestState, source: SourceFacts) -> Manifest {
    let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    Manifest {
        manifest_version: FORMAT_VERSION,
        dump_id: job.id.clone(),
        format: job.spec.format,
        compression: job.spec.compression,
        part_size: job.spec.part_size,
        files: job.files.clone(),
        tables: digests.done.clone(),
        schema_fingerprint: job.schema_fingerprint.clone(),
        source,
        consistency: job.consistency,
        warnings: job.warnings.clone(),
        started_at: ts(job.started_at),
        completed_at: ts(job.completed_at),
        chunks: job.chunks,
        rows: job.processed_rows,
        spec: Some(job.spec.clone()),
    }
}

/// Writes the manifest of `job` (just completed) to the store.
pub async fn write_manifest(
    objects: &dyn ObjectStore,
    job: &JobRecord,
    digests: &DigestState,
) -> Result<(), DumpError> {
    let path = job.spec.database.clone();
    let source = tokio::task::spawn_blocking(move || source_facts(&path))
        .await
        .map_err(|e| DumpError::Internal(e.to_string()))?;
    let manifest = build(job, digests, source);
    let body =
        serde_json::to_vec_pretty(&manifest).map_err(|e| DumpError::Internal(e.to_string()))?;
    objects
        .put(&manifest_key(&job.id, job.spec.format), body)
        .await?;
    Ok(())
}
