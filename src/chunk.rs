//! One chunk of a dump: load its state, export within the time budget, upload, commit.
//! The loop between chunks is the state machine's (see `orchestrator`); the job's
//! status changes are `lifecycle`'s.
//!
//! A chunk is idempotent: it starts from a committed job version, writes deterministic
//! part numbers and a staging object keyed by the version it commits, and commits with
//! a conditional version bump, so a retried chunk either redoes the same work or finds it
//! already done.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::encryption::{Recipients, Sealing, StreamKey};
use crate::engine::{run_export, ChunkEnd, ChunkProgress, ExportInput, ProgressFn, Tail};
use crate::error::DumpError;
use crate::lifecycle::{
    fail_job, read_staged, record_chunk, record_snapshot, record_started, refuse_failed,
    tidy_completed, CommitKeys,
};
use crate::model::{JobRecord, JobStatus};
use crate::ports::{ObjectStore, ProgressStore};
use crate::uploader::{OpenUpload, UploadSummary, Uploader};

/// Limits and hooks for one chunk.
#[derive(Clone)]
pub struct ChunkOptions {
    /// Time budget of the chunk (the original request's `MAX_EXECUTION_TIME`).
    pub budget: Duration,
    /// Overrides the job's rows-per-slice (does not change the output bytes).
    pub slice_rows: Option<crate::model::SliceRows>,
    /// Progress callback with totals for the whole dump, called from the export thread.
    pub progress: Option<ProgressFn>,
    /// Where snapshot dumps put their point-in-time copy (`CHUNKDUMP_SNAPSHOT_DIR`).
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// Part uploads in flight at once (`CHUNKDUMP_UPLOAD_CONCURRENCY`; does not change
    /// the output bytes).
    pub upload_concurrency: usize,
    /// The key the manifest is signed with when the dump completes
    /// (`CHUNKDUMP_SIGNING_KEY`).
    pub signing_key: Option<crate::config::SigningKey>,
}

impl ChunkOptions {
    /// The limits a deployment's settings give every chunk (`MAX_EXECUTION_TIME`,
    /// `CHUNKDUMP_SNAPSHOT_DIR`, `CHUNKDUMP_UPLOAD_CONCURRENCY`): the one place the
    /// Lambda functions, `serve` and the CLI get them from.
    pub fn from_config(config: &crate::config::Config) -> Self {
        ChunkOptions {
            budget: config.budget,
            snapshot_dir: config.snapshot_dir.clone(),
            upload_concurrency: config.upload_concurrency as usize,
            signing_key: config.signing_key.clone(),
            ..Default::default()
        }
    }
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            budget: Duration::ZERO,
            slice_rows: None,
            progress: None,
            snapshot_dir: None,
            upload_concurrency: crate::config::DEFAULT_UPLOAD_CONCURRENCY,
            signing_key: None,
        }
    }
}

/// The result of one chunk, as returned to the state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkReport {
    pub dump_id: String,
    pub version: u64,
    pub done: bool,
    pub status: JobStatus,
    /// Rows written by this chunk.
    pub rows: u64,
    /// The dump completed and was started with `"drill": true`: the next step drills it.
    pub drill: bool,
}

impl ChunkReport {
    fn of(job: &JobRecord, rows: u64) -> Self {
        ChunkReport {
            dump_id: job.id.clone(),
            version: job.version,
            done: job.status.is_terminal(),
            status: job.status,
            rows,
            drill: job.status == JobStatus::Completed && job.spec.drill,
        }
    }
}

/// Runs one chunk of dump `id`. With `expected_version`, a job already past that
/// version is reported as it is (the chunk was done by an earlier attempt). The export
/// stops at the budget or at `deadline` (the Lambda context's, less a margin for the
/// commit), whichever comes first: the one way a deadline reaches a chunk.
pub async fn run_chunk(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    id: &str,
    expected_version: Option<u64>,
    opts: &ChunkOptions,
    deadline: Option<Instant>,
) -> Result<ChunkReport, DumpError> {
    let job = progress.require(id).await?;
    if expected_version.is_some_and(|v| v != job.version)
        || matches!(job.status, JobStatus::Completed | JobStatus::Cancelled)
    {
        tidy_completed(objects, &job).await;
        return Ok(ChunkReport::of(&job, 0));
    }
    refuse_failed(&job)?;
    let job = if job.status == JobStatus::Pending {
        record_started(progress, &job).await?
    } else {
        job
    };
    let job = if job.spec.snapshot && job.snapshot_path.is_none() {
        ensure_snapshot(objects, progress, job, opts).await?
    } else {
        job
    };
    let sealing = sealing_of(&job, opts)?;
    let stream = sealing.as_ref().map(|s| s.key());
    let (staged, bytes) = read_staged(objects, &job, stream).await?;
    let age = staged.age_tail()?;
    let (receipts, tail) = match &job.open_object {
        None => (Vec::new(), None),
        Some(open) => (
            staged.receipts,
            Some(Tail {
                object: open.object,
                key: open.key.clone(),
                bytes,
                next_part: open.next_part,
                size: open.bytes,
                age,
            }),
        ),
    };
    let started = Instant::now();
    let deadline = deadline.map_or(started + opts.budget, |d| d.min(started + opts.budget));
    let mut spec = job.spec.clone();
    if let Some(n) = opts.slice_rows {
        spec.slice_rows = n;
    }
    // A snapshot dump reads its copy; the copy was checked against the pinned file.
    let database_inode = match &job.snapshot_path {
        Some(copy) => {
            spec.database = copy.clone();
            None
        }
        None => job.database_inode,
    };
    let mut input = ExportInput {
        spec,
        dump_id: job.id.clone(),
        cursor: job.cursor.clone(),
        tail,
        fingerprint: job.schema_fingerprint.clone(),
        first_change_token: job.change_token.clone(),
        count_rows: job.total_rows.is_none(),
        deadline,
        progress: opts.progress.clone().map(|hook| {
            let (rows, bytes, total) = (job.processed_rows, job.bytes_written, job.total_rows);
            let absolute: ProgressFn = std::sync::Arc::new(move |p: ChunkProgress| {
                hook(ChunkProgress {
                    rows: rows + p.rows,
                    bytes: bytes + p.bytes,
                    total_rows: p.total_rows.or(total),
                })
            });
            absolute
        }),
        pool: Default::default(),
        digests: staged.digests,
        digest_only: false,
        database_inode,
        sealing: sealing.clone(),
    };
    let open = job.open_object.as_ref().map(|o| OpenUpload {
        object: o.object,
        key: o.key.clone(),
        handle: o.upload.clone(),
        receipts,
    });
    let mut uploader = Uploader::new(objects, job.spec.part_size, opts.upload_concurrency, open)
        .digest_from(crate::encryption::digest_skip(job.spec.encrypted()));
    input.pool = uploader.pool();
    let (tx, rx) = mpsc::channel(1);
    let engine = tokio::task::spawn_blocking(move || run_export(input, tx));
    let uploaded = uploader.run(rx).await;
    let exported = engine
        .await
        .map_err(|e| DumpError::Internal(format!("export thread: {e}")))?;
    let result = match (exported, uploaded) {
        (_, Err(store)) => Err(DumpError::Store(store)),
        (Err(e), Ok(())) => Err(e),
        (Ok(outcome), Ok(())) => {
            commit_chunk(
                objects,
                progress,
                &job,
                outcome,
                &uploader.summary(),
                started,
                CommitKeys {
                    signing: opts.signing_key.as_ref(),
                    stream: sealing.as_ref().map(|s| s.key()),
                },
            )
            .await
        }
    };
    match result {
        Ok((report, ChunkEnd::Busy)) => {
            tracing::warn!(dump_id = %job.id, rows = report.rows, "database busy: chunk ended early, progress saved");
            Err(DumpError::DatabaseBusy)
        }
        Ok((report, _)) => Ok(report),
        Err(e) => {
            uploader.abort_created().await;
            if matches!(e, DumpError::Conflict(_)) {
                // Cancelled or failed while this chunk ran: what it wrote must go too.
                if let Some(status) =
                    crate::lifecycle::remove_after_end(objects, progress, &job.id).await
                {
                    return Err(DumpError::WrongState {
                        id: job.id.clone(),
                        status,
                        message: "it ended while a chunk ran; what the chunk wrote was removed"
                            .into(),
                    });
                }
            }
            // A fault outside the data pauses the dump instead: the state machine's catch
            // path marks it interrupted, and everything committed stays for a resume.
            if !e.is_retryable() && !e.pauses_dump() {
                let finished = uploader
                    .summary()
                    .finished
                    .into_iter()
                    .map(|f| f.key)
                    .collect();
                // Best effort: if recording fails, the state machine's catch path retries it.
                let _ = fail_job(objects, progress, &job, &e, finished).await;
            }
            Err(e)
        }
    }
}

async fn commit_chunk(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    job: &JobRecord,
    outcome: crate::engine::ExportOutcome,
    uploaded: &UploadSummary,
    started: Instant,
    keys: CommitKeys<'_>,
) -> Result<(ChunkReport, ChunkEnd), DumpError> {
    let busy_ms = started.elapsed().as_millis() as u64;
    let next = record_chunk(objects, progress, job, &outcome, uploaded, busy_ms, keys).await?;
    tracing::info!(dump_id = %job.id, version = next.version, rows = outcome.rows, total = next.processed_rows,
        bytes = next.bytes_written, ms = started.elapsed().as_millis() as u64, end = ?outcome.end, "chunk committed");
    Ok((ChunkReport::of(&next, outcome.rows), outcome.end))
}

/// An encrypted dump's recipients and stream key (unwrapped with the signing key when
/// the record holds it wrapped); `None` for a dump that is not encrypted.
fn sealing_of(
    job: &JobRecord,
    opts: &ChunkOptions,
) -> Result<Option<std::sync::Arc<Sealing>>, DumpError> {
    let Some(stored) = &job.stream_key else {
        if job.spec.encrypted() {
            return Err(DumpError::Internal(
                "an encrypted dump without its stream key (it ended, or its record was altered)"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let key = StreamKey::open(stored, opts.signing_key.as_ref().map(|k| k.bytes()))?;
    let recipients = Recipients::parse(&job.spec.recipients)?;
    Ok(Some(std::sync::Arc::new(Sealing::new(recipients, key))))
}

/// The snapshot copy of dump `id` in `dir`.
fn snapshot_file(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    dir.join(format!("{id}.snapshot.db"))
}

/// Makes the point-in-time copy a snapshot dump reads, once: copies the database in one
/// read transaction and commits the copy's path with the job. A failure that retrying
/// cannot fix (too slow in rollback mode) fails the job; no space for the copy pauses it.
pub async fn ensure_snapshot(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    job: JobRecord,
    opts: &ChunkOptions,
) -> Result<JobRecord, DumpError> {
    if !job.spec.snapshot || job.snapshot_path.is_some() || job.status.is_terminal() {
        return Ok(job);
    }
    let result = async {
        let dir = opts
            .snapshot_dir
            .clone()
            .ok_or_else(|| DumpError::InvalidRequest("snapshot dumps need CHUNKDUMP_SNAPSHOT_DIR, a writable directory for the copy".into()))?;
        sweep_snapshots(progress, &dir, &job.id).await;
        let (source, dest) = (job.spec.database.clone(), snapshot_file(&dir, &job.id));
        let max_block = job.spec.snapshot_max_block_ms.map_or(crate::engine::snapshot::DEFAULT_MAX_BLOCK, Duration::from_millis);
        let (copy, pinned) = (dest.clone(), job.database_inode);
        let report = tokio::task::spawn_blocking(move || crate::engine::snapshot::take_snapshot(&source, &copy, max_block, pinned))
            .await
            .map_err(|e| DumpError::Internal(format!("snapshot thread: {e}")))??;
        tracing::info!(dump_id = %job.id, bytes = report.bytes, ms = report.millis, journal_mode = %report.journal_mode, "snapshot taken");
        record_snapshot(progress, &job, &dest).await.inspect_err(|_| {
            let _ = std::fs::remove_file(&dest);
        })
    }
    .await;
    if let Err(e) = &result {
        if !e.is_retryable() && !e.pauses_dump() {
            let _ = fail_job(objects, progress, &job, e, Vec::new()).await;
        }
    }
    result
}

/// Removes snapshot copies left in `dir` by dumps that ended or no longer exist (a run
/// killed between its copy and its end), so copies never leak.
async fn sweep_snapshots(progress: &dyn ProgressStore, dir: &std::path::Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".snapshot.db") else {
            continue;
        };
        if id == current {
            continue;
        }
        let ended = match progress.get(id).await {
            Ok(Some(job)) => job.status.is_terminal(),
            Ok(None) => true,
            Err(_) => false,
        };
        if ended {
            tracing::info!(dump_id = %id, "removing a snapshot left by an ended dump");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
