//! The stores a command names (`--out DIR`, or `--store` and `--progress`), opened once.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::DumpError;
use crate::local::{DirStore, SqliteProgress};
use crate::ports::{ObjectStore, ProgressStore, RateCounter, StartGuard};

use super::*;

/// The opened stores, and where the per-dump run locks live.
pub(super) struct Stores {
    pub(super) objects: Arc<dyn ObjectStore>,
    pub(super) progress: Arc<dyn ProgressStore>,
    /// The API's start guard (`serve`), in the same table as the job records.
    pub(super) guard: Arc<dyn StartGuard>,
    /// The API's rate counters (`serve`), in the same table.
    pub(super) rates: Arc<dyn RateCounter>,
    pub(super) lock_dir: PathBuf,
    /// Default place for snapshot copies (CHUNKDUMP_SNAPSHOT_DIR overrides it).
    pub(super) snapshot_dir: PathBuf,
}

/// Whether a command may create the store it names (a read-only one never does: a
/// mistyped `--out` is an error, not a new empty store).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

pub(super) async fn open_stores(loc: &Location, access: Access) -> Result<Stores, DumpError> {
    match (&loc.out, &loc.store, &loc.progress) {
        (Some(out), None, None) => {
            let progress_file = out.join(".chunkdump/progress.sqlite3");
            if access == Access::ReadOnly && !progress_file.is_file() {
                return Err(DumpError::InvalidRequest(format!(
                    "{} holds no chunkdump dumps (no {} there)",
                    out.display(),
                    ".chunkdump/progress.sqlite3"
                )));
            }
            let progress = Arc::new(SqliteProgress::open(
                &out.join(".chunkdump/progress.sqlite3"),
            )?);
            Ok(Stores {
                objects: Arc::new(DirStore::open(out)?),
                progress: progress.clone(),
                guard: progress.clone(),
                rates: progress,
                lock_dir: out.join(".chunkdump/locks"),
                snapshot_dir: out.join(".chunkdump/snapshots"),
            })
        }
        (None, Some(store), Some(progress)) => {
            let config = crate::cloud::load_aws_config().await;
            let objects = crate::cloud::S3Store::new(&config, store)?;
            let progress = Arc::new(crate::cloud::DynamoProgress::new(&config, progress)?);
            // A host-local lock: in AWS, Step Functions runs one execution per dump.
            let lock_dir = std::env::temp_dir()
                .join("chunkdump-locks")
                .join(safe_lock_name(store));
            let snapshot_dir = std::env::temp_dir().join("chunkdump-snapshots");
            Ok(Stores {
                objects: Arc::new(objects),
                progress: progress.clone(),
                guard: progress.clone(),
                rates: progress,
                lock_dir,
                snapshot_dir,
            })
        }
        _ => Err(DumpError::InvalidRequest(
            "give --out DIR, or both --store s3://… and --progress dynamodb://…".into(),
        )),
    }
}

pub(super) fn safe_lock_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
