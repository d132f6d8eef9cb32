//! The manifest every completed dump writes beside its files, so that a dump proves
//! itself: what was dumped from where, how consistent it is, and digests that a reader
//! (`chunkdump verify`) recomputes from the stored bytes and the values.
//!
//! * `files`: each file's key, bytes and `sha256` — SHA-256 over the SHA-256 digests of
//!   the file's consecutive `partSize`-byte pieces (an empty file is one empty piece); an
//!   encrypted file's first piece is digested from byte 4096 on, after its age header
//!   and nonce, which have their own MAC and which `rekey` rewrites.
//!   Parts are hashed as they are uploaded, so no chunk ever holds a whole file, and the
//!   value depends only on the bytes and the part size.
//! * `tables`: per table the row count and `contentHash` (see `engine::digest`): over the
//!   columns the dump carries, in order (for SQL the rowid too when it is restored).
//! * `schemaFingerprint`, `source` (path, bytes, page size, text encoding, journal mode,
//!   the SQLite version that read it), `consistency`, `warnings`, times, chunks.

mod sealed;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::SigningKey;
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
    /// The longest line of any file's plain bytes, without its newline: a reader refuses
    /// a longer line before holding it (absent in manifests of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_line: Option<u64>,
    /// The indexes, views and triggers the dump writes (absent in manifests of older
    /// versions): a restore drill names any that did not come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_objects: Option<Vec<crate::engine::digest::SchemaObject>>,
    /// Every schema object the dump creates (tables, indexes, views, triggers) with the
    /// SHA-256 of its SQL (absent in manifests of older versions): a restore or verify
    /// refuses a dump that creates any other, or one whose SQL differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_statements: Option<Vec<crate::engine::digest::SchemaStatement>>,
    /// What was asked for (tables, schema, format …), so a copy of the dump can be
    /// verified from its manifest alone.
    #[serde(default)]
    pub spec: Option<crate::model::DumpSpec>,
    /// The identities an encrypted dump's manifest was opened with ([`parse`]), which
    /// its files are decrypted with; never serialized.
    #[serde(skip)]
    pub keys: OpenedWith,
}

/// The identities a manifest was opened with (none for a dump that is not encrypted).
/// Two manifests compare equal whatever opened them.
#[derive(Clone, Default)]
pub struct OpenedWith(pub Option<std::sync::Arc<crate::encryption::Identities>>);

impl PartialEq for OpenedWith {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for OpenedWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OpenedWith(identities)"
        } else {
            "OpenedWith(none)"
        })
    }
}

impl Manifest {
    /// The table a CSV or Parquet dump's file holds: the table whose file name (made by
    /// the one function that names them) is `key` (for Parquet, one of the names of its
    /// files). `None` for any other key.
    pub fn table_of(&self, key: &str) -> Option<String> {
        let encoding = self.encoding();
        let is_file = |stem: &str| match self.format {
            Format::Csv => crate::model::csv_table_key(&self.dump_id, stem, encoding) == key,
            Format::Parquet => {
                let dir = crate::model::parquet_table_dir(&self.dump_id, stem);
                key.strip_prefix(&dir).is_some_and(|name| {
                    let n = name
                        .strip_prefix("part-")
                        .and_then(|n| n.get(..5))
                        .and_then(|n| n.parse::<u32>().ok());
                    n.is_some_and(|n| {
                        n > 0 && crate::model::parquet_file_key(&dir, n, encoding.encrypted) == key
                    })
                })
            }
            _ => false,
        };
        self.tables
            .iter()
            .enumerate()
            .find(|(n, t)| {
                let stem = if encoding.encrypted {
                    crate::model::encrypted_stem(*n)
                } else {
                    crate::engine::plan::safe_file_name(&t.table)
                };
                is_file(&stem)
            })
            .map(|(_, t)| t.table.clone())
    }

    /// How the files' digests are taken: over `partSize` pieces, from the byte the
    /// uploader started at (after an encrypted file's age header).
    pub fn digesting(&self) -> (u64, u64) {
        let skip = crate::encryption::digest_skip(self.encoding().encrypted);
        (self.part_size, skip)
    }

    /// How the dump's files are encoded (compressed, encrypted).
    pub fn encoding(&self) -> crate::model::Encoding {
        crate::model::Encoding {
            compression: self.compression,
            encrypted: self.spec.as_ref().is_some_and(|s| s.encrypted()),
        }
    }

    /// The store directory of a dump whose manifest file is at `path`: the directory its
    /// keys start from, found by walking up one level per component of the manifest's
    /// own key (`<id>.manifest.json`, `<id>/manifest.json`, and the database's name
    /// before either in a store of several databases).
    pub fn store_root_of(&self, path: &std::path::Path) -> std::path::PathBuf {
        store_root(
            &crate::model::manifest_key(&self.dump_id, self.format),
            path,
        )
    }
}

/// The store directory of the manifest file at `path` whose key in its store is `key`:
/// one level up per component of the key.
pub fn store_root(key: &str, path: &std::path::Path) -> std::path::PathBuf {
    let mut root = path.to_path_buf();
    for _ in 0..key.split('/').count() {
        root = match root.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
    }
    root
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
use sealed::seal;
pub use sealed::{clear_files, parse, ClearFiles};

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
        compression: job.spec.file_compression(),
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
        longest_line: digests.lines.map(|l| l.longest),
        schema_objects: digests.schema_objects.clone(),
        schema_statements: digests.schema_statements.clone(),
        spec: Some(job.spec.clone()),
        keys: OpenedWith::default(),
    }
}

/// The key of the signature beside the manifest at `manifest_key`.
pub fn signature_key(manifest_key: &str) -> String {
    format!("{manifest_key}.sig")
}

/// The HMAC-SHA256 of manifest bytes under `key`.
fn mac(key: &SigningKey, manifest: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key.bytes()).expect("HMAC takes keys of any length");
    mac.update(manifest);
    mac
}

/// The signature object for `manifest` (its exact bytes): `hmac-sha256:<hex>`.
pub fn sign(key: &SigningKey, manifest: &[u8]) -> Vec<u8> {
    format!(
        "hmac-sha256:{}\n",
        hex::encode(mac(key, manifest).finalize().into_bytes())
    )
    .into_bytes()
}

/// Checks `signature` (the object beside the manifest; `None` if there is none) against
/// the manifest's exact bytes, in constant time; the error says which check failed.
pub fn check_signature(
    key: &SigningKey,
    manifest: &[u8],
    signature: Option<&[u8]>,
) -> Result<(), String> {
    let Some(signature) = signature else {
        return Err("has no signature (no .sig beside it): it was not written by a chunkdump holding the signing key".into());
    };
    let wrong = || {
        "its signature does not match: the manifest was changed, or signed with another key"
            .to_string()
    };
    let text = std::str::from_utf8(signature).map_err(|_| wrong())?;
    let digest = text
        .trim()
        .strip_prefix("hmac-sha256:")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(wrong)?;
    mac(key, manifest)
        .verify_slice(&digest)
        .map_err(|_| wrong())
}

/// Writes the manifest of `job` (just completed) to the store, signed with `signing`
/// when there is a key (the signature first, so a manifest that exists is complete).
pub async fn write_manifest(
    objects: &dyn ObjectStore,
    job: &JobRecord,
    digests: &DigestState,
    signing: Option<&SigningKey>,
) -> Result<(), DumpError> {
    let path = job.spec.database.clone();
    let source = tokio::task::spawn_blocking(move || source_facts(&path))
        .await
        .map_err(|e| DumpError::Internal(e.to_string()))?;
    let mut manifest = build(job, digests, source);
    // A server's own paths are not its callers' business (a read-only token reads this).
    if let Some(shown) = &job.spec.shown_as {
        manifest.source.path.clone_from(shown);
        if let Some(spec) = &mut manifest.spec {
            spec.database.clone_from(shown);
            spec.shown_as = None;
        }
    }
    store_manifest(objects, &manifest, signing).await
}

/// Writes `manifest` to its key: sealed for its recipients if the dump is encrypted,
/// signed with `signing` when there is a key (the signature first, so a manifest that
/// exists is complete).
pub async fn store_manifest(
    objects: &dyn ObjectStore,
    manifest: &Manifest,
    signing: Option<&SigningKey>,
) -> Result<(), DumpError> {
    let body =
        serde_json::to_vec_pretty(&manifest).map_err(|e| DumpError::Internal(e.to_string()))?;
    let body = if manifest.encoding().encrypted {
        seal(manifest, &body)?
    } else {
        body
    };
    let key = manifest_key(&manifest.dump_id, manifest.format);
    if let Some(signing) = signing {
        objects
            .put(&signature_key(&key), sign(signing, &body))
            .await?;
    }
    objects.put(&key, body).await?;
    Ok(())
}

#[cfg(all(test, feature = "cli"))]
mod signature_tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_the_exact_bytes_and_key_only() {
        let key = SigningKey::new(vec![7; 32]).unwrap();
        let other = SigningKey::new(vec![8; 32]).unwrap();
        let manifest = br#"{"dumpId":"dump_1"}"#;
        let sig = sign(&key, manifest);
        assert!(check_signature(&key, manifest, Some(&sig)).is_ok());
        let changed = br#"{"dumpId":"dump_2"}"#;
        for (k, m, s) in [
            (&key, &changed[..], Some(&sig[..])),
            (&other, &manifest[..], Some(&sig[..])),
            (&key, &manifest[..], Some(&b"hmac-sha256:00"[..])),
            (&key, &manifest[..], Some(&b"garbage"[..])),
        ] {
            let e = check_signature(k, m, s).unwrap_err();
            assert!(e.contains("does not match"), "{e}");
        }
        let e = check_signature(&key, manifest, None).unwrap_err();
        assert!(e.contains("has no signature"), "{e}");
    }
}
