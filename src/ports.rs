//! Ports: the small interfaces between the dump's logic and what it runs on, each for
//! one use: reading objects ([`ObjectReader`]), links to them for HTTP clients
//! ([`DownloadLinks`]) and writing them ([`ObjectStore`]), job
//! records ([`ProgressStore`]), the API's one-dump-per-database slots ([`StartGuard`])
//! and rate counters ([`RateCounter`]), completion callbacks ([`CallbackSender`]), and
//! the orchestrator that runs chunks ([`Orchestrator`]).
//!
//! Adapters (local directory and SQLite file here; S3/R2 and DynamoDB elsewhere) implement
//! them and return the project's own types, never SDK types. Object keys are relative,
//! `/`-separated paths without `..`; every adapter checks them with [`check_key`].

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{DumpError, StoreError};
use crate::model::{JobRecord, PartReceipt, PendingUpload, UploadHandle};

/// Reading what a store holds: what verify, retention's listing and restore need, and
/// the downloads the API serves. Every [`ObjectStore`] is one.
#[async_trait]
pub trait ObjectReader: Send + Sync {
    /// Reads a small object whole; `None` if it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Reads up to `len` bytes of an object from `offset` (fewer at its end; empty past
    /// it); `None` if it does not exist. How large objects are read back in bounded memory.
    async fn get_range(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// Keys of the stored objects beginning with `prefix`, sorted: how everything a dump
    /// wrote is found, recorded in its job or not (a chunk still running when it ended).
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// [`Self::list_keys`] with when the store last wrote each object, by the store's own
    /// clock (ms since the epoch; `None` where the store does not say): what a reader can
    /// order dumps by without trusting what their manifests claim.
    async fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        let keys = self.list_keys(prefix).await?;
        Ok(keys.into_iter().map(|k| (k, None)).collect())
    }
    /// A human-readable location of `key` (a file path, an `s3://` URL).
    fn locate(&self, key: &str) -> String;
}

/// Links to finished objects for HTTP clients: what the API's download route serves.
/// Only the API asks for it; readers (verify, restore) and retention do not.
#[async_trait]
pub trait DownloadLinks: Send + Sync {
    /// How an HTTP client gets the finished object `key`: a presigned URL valid for
    /// `expires_in` (Lambda cannot return large bodies), or a local file to stream.
    async fn download(
        &self,
        key: &str,
        expires_in: std::time::Duration,
    ) -> Result<Download, StoreError>;
}

/// Writing to where dump files (and the small staging objects between chunks) are
/// stored: multipart uploads, small objects, deletes. Everything that writes also reads;
/// linking to what it wrote is a capability of its own ([`ObjectStore::links`]), which a
/// store may not have.
#[async_trait]
pub trait ObjectStore: ObjectReader {
    /// How HTTP clients download from this store, if it can serve them (a bucket's
    /// presigned URLs, a directory's files); `None` for one that cannot (a test's
    /// wrapper, a store seen only through a driver that serves nothing).
    fn links(&self) -> Option<&dyn DownloadLinks> {
        None
    }
    /// Starts a multipart upload of `key` whose parts (but the last) are `part_size` bytes.
    async fn create_upload(&self, key: &str, part_size: u64) -> Result<UploadHandle, StoreError>;
    /// Uploads part `number` (1-based). Re-uploading a number replaces it. A part larger
    /// than the part size is refused. Adapters drop `bytes` when done with it, so the
    /// caller can reclaim the buffer.
    async fn upload_part(
        &self,
        key: &str,
        upload: &UploadHandle,
        number: u32,
        bytes: Bytes,
    ) -> Result<PartReceipt, StoreError>;
    /// Makes the object visible atomically from exactly the listed parts, which must be
    /// numbered 1..=n with every part but the last of the part size. Returns its size.
    async fn complete_upload(
        &self,
        key: &str,
        upload: &UploadHandle,
        parts: &[PartReceipt],
    ) -> Result<u64, StoreError>;
    /// Discards an upload and its parts. Aborting an unknown upload is not an error.
    async fn abort_upload(&self, key: &str, upload: &UploadHandle) -> Result<(), StoreError>;
    /// Multipart uploads started and neither completed nor aborted, for keys beginning
    /// with `prefix`: how uploads of chunks killed before they committed are found.
    async fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError>;
    /// Waits until writes this process started have landed or failed, even those whose
    /// callers were dropped (a local store finishes them on blocking threads); after it,
    /// [`ObjectReader::list_keys`] sees everything a stopped run wrote. Remote stores
    /// have nothing to wait for.
    async fn settle(&self) {}
    /// Uploads part `number` of `upload` as the bytes `from.0..from.1` of the existing
    /// object `key` (S3's UploadPartCopy: the store copies them, nothing passes through
    /// this machine). This default reads the range and uploads it.
    async fn copy_part(
        &self,
        key: &str,
        upload: &UploadHandle,
        number: u32,
        from: (u64, u64),
    ) -> Result<PartReceipt, StoreError> {
        let bytes = self
            .get_range(key, from.0, from.1 - from.0)
            .await?
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        self.upload_part(key, upload, number, Bytes::from(bytes))
            .await
    }
    /// Writes a small object whole.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Sends a finished dump's completion callback, one attempt at a time (the adapter:
/// `crate::callback::Notifier`, signed HTTPS POSTs). When to retry and what the job
/// records of it is the application's ([`crate::lifecycle::deliver_callback`]).
#[async_trait]
pub trait CallbackSender: Send + Sync {
    /// The body posted for `job`.
    fn body(&self, job: &JobRecord) -> Vec<u8>;
    /// One delivery attempt of `body` to `url`; the error is what the job's
    /// `callback.lastError` shows (never the URL's path or query).
    async fn send(&self, url: &str, body: &[u8]) -> Result<(), crate::error::CallbackError>;
    /// The pauses before the 2nd, 3rd, … attempt.
    fn retry_delays(&self) -> &[std::time::Duration];
    /// How long one attempt may take.
    fn attempt_timeout(&self) -> std::time::Duration;
}

/// Where a download is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Download {
    /// Redirect the client to this (presigned) URL.
    Redirect(String),
    /// Stream this local file.
    LocalFile(std::path::PathBuf),
}

/// Reading job records: all that a driver showing dumps needs (the list, a status).
#[async_trait]
pub trait ProgressReader: Send + Sync {
    /// Reads a job; `None` if missing or expired.
    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Reads a job that must exist: [`DumpError::UnknownDump`] if it does not.
    async fn require(&self, id: &str) -> Result<JobRecord, DumpError> {
        self.get(id)
            .await?
            .ok_or_else(|| DumpError::UnknownDump(id.to_string()))
    }
    /// The most recently created jobs, newest first.
    async fn list_recent(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError>;
}

/// Where job records live, with optimistic concurrency: the reader, and the writes,
/// which are the application's (`lifecycle`, the chunk, the tasks, the service).
#[async_trait]
pub trait ProgressStore: ProgressReader {
    /// Stores a new job; [`StoreError::AlreadyExists`] if the id is taken.
    async fn create(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// Replaces the job if its stored version is still `expected_version`
    /// (`job.version` is the new version); [`StoreError::Conflict`] otherwise.
    async fn commit(&self, job: &JobRecord, expected_version: u64) -> Result<(), StoreError>;
    /// Deletes a job record if its stored version is still `expected_version`
    /// ([`StoreError::Conflict`] otherwise); deleting a missing record is not an error.
    async fn delete(&self, id: &str, expected_version: u64) -> Result<(), StoreError>;

    /// Reads job `id`, lets `change` turn it into its next state, and commits that one
    /// version up. On a version conflict (a chunk committed meanwhile) it reads the new
    /// version and asks `change` again, up to five times; `change` returns `None` to
    /// leave the job as it is. The one read-modify-write loop for job records.
    async fn update(
        &self,
        id: &str,
        change: &mut (dyn for<'j> FnMut(&'j JobRecord) -> Result<Option<JobRecord>, DumpError>
                  + Send),
    ) -> Result<Option<Transition>, DumpError> {
        for _ in 0..5 {
            let before = self.require(id).await?;
            let Some(mut after) = change(&before)? else {
                return Ok(None);
            };
            after.version = before.version + 1;
            match self.commit(&after, before.version).await {
                Ok(()) => return Ok(Some(Transition { before, after })),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DumpError::Conflict(id.to_string()))
    }
}

/// A committed change of a job record: the version it replaced and the new one.
#[derive(Debug, Clone)]
pub struct Transition {
    pub before: JobRecord,
    pub after: JobRecord,
}

/// The API's guard on starts: one running dump per database. Implemented by the same
/// adapters as [`ProgressStore`], in the same table.
#[async_trait]
pub trait StartGuard: Send + Sync {
    /// Atomically gives `slot` to `holder` if it is free or held by `replacing`; returns
    /// `None` when claimed, or `Some(current holder)` when someone else holds it.
    async fn claim(
        &self,
        slot: &str,
        holder: &str,
        replacing: Option<&str>,
    ) -> Result<Option<String>, StoreError>;
}

/// The API's rate limit per caller: counters in fixed windows. Implemented by the same
/// adapters as [`ProgressStore`], in the same table.
#[async_trait]
pub trait RateCounter: Send + Sync {
    /// Adds `delta` events (1 to count one, -1 to give one back) under `key` in the
    /// current fixed window of length `window`; returns the count so far in this window
    /// (never below 0) and the seconds until it ends.
    async fn count_in_window(
        &self,
        key: &str,
        window: std::time::Duration,
        delta: i64,
    ) -> Result<(u64, u64), StoreError>;
}

/// Start and end (epoch seconds) of the fixed window of length `window` holding `now`.
pub fn window_bounds(now: i64, window: std::time::Duration) -> (i64, i64) {
    let len = window.as_secs().max(1) as i64;
    let start = now - now.rem_euclid(len);
    (start, start + len)
}

/// Checks an object key: non-empty, relative, `/`-separated, no empty, `.` or `..`
/// segments, no backslashes or control characters.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = key.is_empty()
        || key.len() > 1024
        || key.starts_with('/')
        || key.contains('\\')
        || key.chars().any(|c| c.is_control())
        || key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        Err(StoreError::Invalid(format!("invalid object key {key:?}")))
    } else {
        Ok(())
    }
}

/// Checks a completion list against R2's multipart rules: parts numbered 1..=n in
/// order, at most 10,000, every part but the last exactly `part_size`, the last at most
/// `part_size` and non-empty unless it is the only part.
pub fn check_parts(parts: &[PartReceipt], part_size: u64) -> Result<u64, StoreError> {
    if parts.is_empty() {
        return Err(StoreError::Invalid(
            "an upload needs at least one part".into(),
        ));
    }
    if parts.len() > 10_000 {
        return Err(StoreError::Invalid(format!(
            "{} parts: at most 10,000 are allowed",
            parts.len()
        )));
    }
    let mut total = 0u64;
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if p.number as usize != i + 1 {
            return Err(StoreError::Invalid(format!(
                "part {} listed at position {}",
                p.number,
                i + 1
            )));
        }
        if (!last && p.size != part_size) || p.size > part_size || (last && p.size == 0 && i > 0) {
            return Err(StoreError::Invalid(format!(
                "part {} has {} bytes: every part but the last must be exactly {part_size} bytes",
                p.number, p.size
            )));
        }
        total += p.size;
    }
    Ok(total)
}

/// Key of the staging object that carries a dump's unfinished tail into the chunk that
/// starts at `version`. Deterministic, so a retried chunk finds the tail it started from.
pub fn staging_key(dump_id: &str, version: u64) -> String {
    format!(".chunkdump/staging/{dump_id}/v{version:012}")
}

/// Starts, stops and describes dump runs.
#[async_trait]
pub trait Orchestrator: Send + Sync {
    /// Starts running dump `id` from job version `version` (idempotent: starting a
    /// running dump does nothing).
    async fn start(&self, id: &str, version: u64) -> Result<(), DumpError>;
    /// Starts a new run of dump `id` from job version `version` after its last run
    /// ended without finishing it (a resume). Its executions are named on from the
    /// last one's, so names never repeat.
    async fn resume(&self, id: &str, version: u64) -> Result<(), DumpError>;
    /// Stops the run of dump `id`, if any.
    async fn stop(&self, id: &str) -> Result<(), DumpError>;
    /// The state of the dump's latest run; [`RunState::None`] if it never had one.
    async fn describe(&self, id: &str) -> Result<RunState, DumpError>;
    /// Starts fleet `fleet_id`'s run (the fleet state machine) with `input`; a repeated
    /// start of a running fleet does nothing. An orchestrator without a fleet state
    /// machine refuses.
    async fn start_fleet(&self, fleet_id: &str, input: serde_json::Value) -> Result<(), DumpError> {
        let _ = input;
        Err(DumpError::InvalidRequest(format!(
            "fleet {fleet_id}: this deployment has no fleet state machine"
        )))
    }
}

/// What an orchestrator knows of a dump's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// A run is in progress.
    Running,
    /// The latest run has ended, as the orchestrator tells it (e.g. Step Functions'
    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`; the local runner's `ENDED`).
    Ended(String),
    /// No run is known.
    None,
    /// Nobody here can tell: the command line looking at a store shared with other
    /// machines, where a run elsewhere holds no lock it could see.
    Unknown,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunState::Running => f.write_str("running"),
            RunState::Ended(how) => write!(f, "ended: {how}"),
            RunState::None => f.write_str("no run"),
            RunState::Unknown => f.write_str("unknown"),
        }
    }
}
