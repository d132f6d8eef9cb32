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
    /// Whether every runner of these dumps is on this machine (local progress), so a
    /// free run lock means the dump's runner is gone.
    pub(super) runs_here: bool,
    /// Default place for snapshot copies (CHUNKDUMP_SNAPSHOT_DIR overrides it).
    pub(super) snapshot_dir: PathBuf,
}

/// Whether a command may create the store it names (a read-only one never does: a
/// mistyped `--out` is an error, not a new empty store).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: the store must exist.
    ReadOnly,
    /// Changes only what is there (`prune`): the store must exist, as for reading, so a
    /// mistyped `--out` is an error instead of a new, empty store.
    Existing,
    /// Makes dumps: the store is created if need be.
    ReadWrite,
}

pub(super) async fn open_stores(loc: &Location, access: Access) -> Result<Stores, DumpError> {
    match (&loc.out, &loc.store, &loc.progress) {
        (Some(out), None, None) => {
            let progress = open_local_progress(&out.join(".chunkdump/progress.sqlite3"), access, &out.display().to_string())?;
            Ok(Stores {
                objects: Arc::new(DirStore::open(out)?),
                progress: progress.clone(),
                guard: progress.clone(),
                rates: progress,
                lock_dir: out.join(".chunkdump/locks"),
                runs_here: true,
                snapshot_dir: out.join(".chunkdump/snapshots"),
            })
        }
        (None, Some(store), progress) => {
            // Every URL is checked before any AWS setup (region lookups, credentials).
            crate::cloud::S3Store::check_url(store)?;
            let progress_place = ProgressPlace::parse(progress.as_deref(), store)?;
            let uses_aws = matches!(progress_place, ProgressPlace::Dynamo(_));
            let (objects, config) = object_store(store, uses_aws).await?;
            // A missing bucket is a mistake to fix before anything starts (a typo, or no
            // `setup` yet), not a fault to pause a dump for: no job is made.
            if objects.bucket_is_missing().await {
                return Err(DumpError::InvalidRequest(format!(
                    "bucket {:?} does not exist at this endpoint: create it with `chunkdump setup --store s3://{}` (or in the R2 dashboard), or check the name in {store}",
                    objects.bucket(),
                    objects.bucket()
                )));
            }
            let runs_here = matches!(progress_place, ProgressPlace::File(_));
            let (progress, guard, rates): (Arc<dyn ProgressStore>, Arc<dyn StartGuard>, Arc<dyn RateCounter>) =
                match progress_place {
                    ProgressPlace::Dynamo(url) => {
                        let config = match config {
                            Some(config) => config,
                            None => crate::cloud::load_aws_config().await,
                        };
                        let dynamo = Arc::new(crate::cloud::DynamoProgress::new(&config, &url)?);
                        (dynamo.clone(), dynamo.clone(), dynamo)
                    }
                    ProgressPlace::File(path) => {
                        let local = open_local_progress(&path, access, store)?;
                        (local.clone(), local.clone(), local)
                    }
                };
            // A host-local lock: in AWS, Step Functions runs one execution per dump.
            let lock_dir = std::env::temp_dir()
                .join("chunkdump-locks")
                .join(safe_lock_name(store));
            let snapshot_dir = std::env::temp_dir().join("chunkdump-snapshots");
            Ok(Stores {
                objects: Arc::new(objects),
                progress,
                guard,
                rates,
                lock_dir,
                runs_here,
                snapshot_dir,
            })
        }
        (_, None, Some(_)) => Err(DumpError::InvalidRequest(
            "--progress goes with --store s3://…; with --out DIR progress is kept in DIR/.chunkdump/".into(),
        )),
        _ => Err(DumpError::InvalidRequest(
            "give --out DIR, or --store s3://… (progress in a local file, or --progress dynamodb://… to share it)".into(),
        )),
    }
}

/// The object store at `url` (checked first): with `R2_*` set, R2's endpoint and key
/// pair, and no AWS lookup at all unless `uses_aws` (DynamoDB progress); otherwise the
/// standard AWS environment. Also returns the AWS configuration when one was loaded.
pub(super) async fn object_store(
    url: &str,
    uses_aws: bool,
) -> Result<(crate::cloud::S3Store, Option<aws_config::SdkConfig>), DumpError> {
    crate::cloud::S3Store::check_url(url)?;
    let r2 = r2_access_from_env()?;
    Ok(match r2 {
        Some(r2) if !uses_aws => {
            let config = crate::cloud::r2_only_config().await;
            (
                crate::cloud::S3Store::with_access(&config, url, Some(&r2))?,
                None,
            )
        }
        Some(r2) => {
            let config = crate::cloud::load_aws_config().await;
            (
                crate::cloud::S3Store::with_access(&config, url, Some(&r2))?,
                Some(config),
            )
        }
        None => {
            let config = crate::cloud::load_aws_config().await;
            (crate::cloud::S3Store::new(&config, url)?, Some(config))
        }
    })
}

/// Where a remote store's progress is kept.
enum ProgressPlace {
    /// `dynamodb://TABLE`: shared between machines.
    Dynamo(String),
    /// A local SQLite file: `--progress PATH` or `sqlite:PATH`, else one per store in the
    /// user's state directory.
    File(PathBuf),
}

impl ProgressPlace {
    fn parse(progress: Option<&str>, store: &str) -> Result<Self, DumpError> {
        match progress {
            Some(url) if url.starts_with("dynamodb://") => {
                crate::cloud::DynamoProgress::check_url(url)?;
                Ok(ProgressPlace::Dynamo(url.to_string()))
            }
            Some(url) if url.contains("://") => Err(DumpError::InvalidRequest(format!(
                "--progress {url}: use dynamodb://TABLE, or a local file (PATH or sqlite:PATH)"
            ))),
            Some(path) => Ok(ProgressPlace::File(PathBuf::from(
                path.strip_prefix("sqlite:").unwrap_or(path),
            ))),
            None => Ok(ProgressPlace::File(
                state_dir()?.join(format!("{}.progress.sqlite3", safe_lock_name(store))),
            )),
        }
    }
}

/// The user's state directory for chunkdump (see [`crate::config::state_dir`]).
pub(super) fn state_dir() -> Result<PathBuf, DumpError> {
    crate::config::state_dir(&crate::config::Env::process())
        .map_err(|e| DumpError::InvalidRequest(e.to_string()))
}

/// The local progress file at `path` (created for commands that make dumps; for any
/// other command a file that does not exist is an error naming `what`).
fn open_local_progress(
    path: &std::path::Path,
    access: Access,
    what: &str,
) -> Result<Arc<SqliteProgress>, DumpError> {
    if access != Access::ReadWrite && !path.is_file() {
        return Err(DumpError::InvalidRequest(format!(
            "{what} holds no chunkdump dumps known here (no {})",
            path.display()
        )));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            DumpError::InvalidRequest(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    Ok(Arc::new(SqliteProgress::open(path)?))
}

/// R2's endpoint and API token from the `R2_*` variables (all three, or none; see
/// [`crate::config::r2_keys`]).
pub(super) fn r2_access_from_env() -> Result<Option<crate::cloud::R2Access>, DumpError> {
    crate::config::r2_keys(&crate::config::Env::process())
        .map_err(|e| DumpError::InvalidRequest(e.to_string()))
}

impl Stores {
    /// Whether dump `job` is interrupted: paused by a fault (its record says so), or not
    /// ended and its runner gone (no process on this machine holds its run lock; only
    /// known with local progress).
    pub(super) fn is_interrupted(&self, job: &crate::model::JobRecord) -> bool {
        use crate::ports::RunState;
        let run = if crate::local::run_lock::held_elsewhere(&self.lock_dir, &job.id) {
            RunState::Running
        } else if self.runs_here {
            // Runs of this progress hold their locks here: none held, none alive.
            RunState::Ended("no run lock held".into())
        } else {
            RunState::Unknown
        };
        crate::lifecycle::is_interrupted(job, &run)
    }
}

/// The command that resumes dump `id` in the store `location` names.
pub(super) fn resume_command(id: &str, location: &Location) -> String {
    let mut cmd = format!("chunkdump resume {id}");
    if let Some(out) = &location.out {
        cmd.push_str(&format!(" --out {}", out.display()));
    }
    if let Some(store) = &location.store {
        cmd.push_str(&format!(" --store {store}"));
    }
    if let Some(progress) = &location.progress {
        cmd.push_str(&format!(" --progress {progress}"));
    }
    cmd
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
