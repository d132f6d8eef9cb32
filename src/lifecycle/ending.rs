//! How a dump ends early (failed, cancelled) and what is removed when it does: every
//! object it wrote, its uploads, staging objects and snapshot copy.

use chrono::Utc;

use crate::error::{DumpError, StoreError};

use crate::model::{manifest_key, CallbackStatus, JobError, JobRecord, JobStatus};
use crate::ports::{staging_key, ObjectStore, ProgressStore};

/// Marks `job` failed, if it is still at `job.version` (a run that moved it on decides
/// for itself), and removes everything it wrote plus `extra_files` (finished by a chunk
/// that never committed). For failures found by whoever holds that version: a chunk, a
/// start the orchestrator refused, a run found gone.
pub async fn fail_job(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    job: &JobRecord,
    error: &DumpError,
    extra_files: Vec<String>,
) -> Result<(), DumpError> {
    let ended = end_early(
        objects,
        progress,
        &job.id,
        Some(job.version),
        failure(error),
        extra_files,
    )
    .await;
    log_failure(&job.id, error, ended)
}

/// Marks dump `id` failed at whatever version it is (unless it already ended) and
/// removes what it wrote: the state machine's catch path, after its run gave up.
pub async fn fail_dump(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    id: &str,
    error: &DumpError,
) -> Result<(), DumpError> {
    let ended = end_early(objects, progress, id, None, failure(error), Vec::new()).await;
    log_failure(id, error, ended)
}

fn failure(error: &DumpError) -> (JobStatus, Option<JobError>) {
    let error = JobError {
        code: error.code().to_string(),
        message: error.public_message(),
    };
    (JobStatus::Failed, Some(error))
}

fn log_failure(
    id: &str,
    error: &DumpError,
    ended: Result<Option<JobRecord>, DumpError>,
) -> Result<(), DumpError> {
    match ended {
        Ok(Some(_)) => {
            // Own target, so the CLI (which prints one `error:` line itself) can leave it out.
            tracing::error!(target: "chunkdump::failure", dump_id = %id, error = %error, "dump failed");
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => {
            tracing::warn!(dump_id = %id, error = %e, "could not record the failure");
            Err(e)
        }
    }
}

/// Refuses to run a failed dump: [`DumpError::WrongState`] with the failure's message.
pub fn refuse_failed(job: &JobRecord) -> Result<(), DumpError> {
    if job.status != JobStatus::Failed {
        return Ok(());
    }
    Err(DumpError::WrongState {
        id: job.id.clone(),
        status: JobStatus::Failed,
        message: job
            .error
            .as_ref()
            .map_or("failed".into(), |e| e.message.clone()),
    })
}

/// Cancels a dump that is not finished: status `cancelled`, upload aborted, staging and
/// finished files removed. Stop its run first (the orchestrator), so no chunk is in flight.
pub async fn cancel_dump(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    id: &str,
) -> Result<JobRecord, DumpError> {
    match end_early(
        objects,
        progress,
        id,
        None,
        (JobStatus::Cancelled, None),
        Vec::new(),
    )
    .await?
    {
        Some(cancelled) => Ok(cancelled),
        None => Err(DumpError::WrongState {
            id: id.into(),
            status: progress.require(id).await?.status,
            message: "it can no longer be cancelled".into(),
        }),
    }
}

/// Ends dump `id` early with `status` and `error` (only at version `at_version`, if
/// given), then removes what it wrote. `None` if it had already ended (or moved on).
async fn end_early(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    id: &str,
    at_version: Option<u64>,
    (status, error): (JobStatus, Option<JobError>),
    extra_files: Vec<String>,
) -> Result<Option<JobRecord>, DumpError> {
    let mut change = |job: &JobRecord| -> Result<Option<JobRecord>, DumpError> {
        if job.status.is_terminal() || at_version.is_some_and(|v| v != job.version) {
            return Ok(None);
        }
        let mut ended = job.clone();
        ended.status = status;
        ended.error = error.clone();
        ended.updated_at = Utc::now();
        ended.open_object = None;
        ended.files.clear();
        ended.bytes_written = 0;
        // What it wrote is removed: nothing is left to continue or decrypt.
        ended.stream_key = None;
        // A cancelled dump's callback is never sent: say so, instead of `pending` forever.
        if status == JobStatus::Cancelled {
            if let Some(callback) = ended
                .callback
                .as_mut()
                .filter(|c| c.status == CallbackStatus::Pending)
            {
                callback.status = CallbackStatus::Skipped;
                callback.last_error = Some("not sent: the dump was cancelled".into());
            }
        }
        Ok(Some(ended))
    };
    let Some(transition) = progress.update(id, &mut change).await? else {
        return Ok(None);
    };
    clean_up(objects, &transition.before, extra_files).await;
    Ok(Some(transition.after))
}

/// Removes what dump `job` (its last version before ending) wrote: snapshot copy, open
/// upload, staging objects, finished files, and any other object of the dump (a chunk
/// stopped mid-way may have finished files it never recorded). Best effort: R2 aborts
/// forgotten uploads after 7 days, and a chunk still running elsewhere removes what it
/// writes when its commit finds the dump ended ([`remove_after_end`]).
async fn clean_up(objects: &dyn ObjectStore, job: &JobRecord, extra_files: Vec<String>) {
    // Writes of a stopped local run still finishing on blocking threads land first.
    objects.settle().await;
    remove_snapshot(job);
    if let Some(open) = &job.open_object {
        if let Some(upload) = &open.upload {
            let _ = objects.abort_upload(&open.key, upload).await;
        }
    }
    // The staged version's object, and one a killed attempt of the next chunk may have
    // left.
    for version in [job.staging_version(), job.version, job.version + 1] {
        let _ = objects.delete(&staging_key(&job.id, version)).await;
    }
    for key in job.files.iter().map(|f| f.key.clone()).chain(extra_files) {
        let _ = objects.delete(&key).await;
    }
    remove_all_of(objects, &job.id).await;
}

/// Deletes every object and aborts every upload of dump `id` (found by listing, not
/// from its record), its staging objects included.
async fn remove_all_of(objects: &dyn ObjectStore, id: &str) {
    abort_abandoned_uploads(objects, id).await;
    let staging = staging_key(id, 0);
    let staging_dir = &staging[..=staging.rfind('/').unwrap_or(0)];
    for prefix in [id, staging_dir] {
        match objects.list_keys(prefix).await {
            Ok(keys) => {
                for key in keys
                    .iter()
                    .filter(|k| prefix != id || crate::model::key_belongs_to(k, id))
                {
                    if let Err(e) = objects.delete(key).await {
                        tracing::warn!(dump_id = %id, %key, error = %e, "could not delete");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(dump_id = %id, error = %e, "could not list the dump's objects")
            }
        }
    }
}

/// After a chunk's commit lost to an early end (the dump was cancelled or failed while
/// the chunk ran): removes everything of the dump again, what this chunk wrote after the
/// end's own clean-up included. Returns the status it ended with, or `None` if the dump
/// did not end early (the conflict was another run's progress: nothing is removed).
pub async fn remove_after_end(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    id: &str,
) -> Option<JobStatus> {
    let job = progress.get(id).await.ok()??;
    if !matches!(job.status, JobStatus::Cancelled | JobStatus::Failed) {
        return None;
    }
    tracing::info!(dump_id = %id, status = %job.status.as_str(), "the dump ended while a chunk ran: removing what it wrote");
    remove_snapshot(&job);
    remove_all_of(objects, id).await;
    Some(job.status)
}

/// Aborts the multipart uploads of dump `id` still pending once it has ended: those of
/// chunks killed (or timed out) after starting an upload and before committing it. Their
/// retries started new uploads, so nothing else refers to them. Best effort: R2 also
/// aborts incomplete uploads after 7 days by default.
pub async fn abort_abandoned_uploads(objects: &dyn ObjectStore, id: &str) {
    let pending = match objects.pending_uploads(id).await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!(dump_id = %id, error = %e, "could not list abandoned uploads");
            return;
        }
    };
    // Keys of this dump are `<id>.<ext>` or `<id>/…`; not those of a dump named `<id>x`.
    for upload in pending
        .iter()
        .filter(|u| crate::model::key_belongs_to(&u.key, id))
    {
        match objects.abort_upload(&upload.key, &upload.handle).await {
            Ok(()) => {
                tracing::info!(dump_id = %id, key = %upload.key, "aborted an upload abandoned by a killed chunk")
            }
            Err(e) => {
                tracing::warn!(dump_id = %id, key = %upload.key, error = %e, "could not abort an abandoned upload")
            }
        }
    }
}

/// Removes what a run killed right after committing a dump's last chunk may have left
/// (the staging object of the version before). Best effort; called on a completed dump.
pub async fn tidy_completed(objects: &dyn ObjectStore, job: &JobRecord) {
    if job.status == JobStatus::Completed && job.version > 1 {
        let _ = objects.delete(&staging_key(&job.id, job.version - 1)).await;
    }
}

/// Deletes the dump's snapshot copy, if it has one (best effort). Where the database is
/// mounted read-only (the template's chunk and API functions), the copy is left to the
/// snapshot function: its end steps remove it, and its next snapshot sweeps any left.
pub fn remove_snapshot(job: &JobRecord) {
    if let Some(path) = &job.snapshot_path {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                tracing::debug!(dump_id = %job.id, error = %e, "the snapshot copy is left for the snapshot function");
            }
            Err(e) => {
                tracing::warn!(dump_id = %job.id, error = %e, "could not delete the snapshot copy")
            }
        }
    }
}

/// Deletes one completed dump whole (retention's prune): its files, its manifest, any
/// staging leftovers, then its record (only if unchanged since it was read).
pub async fn delete_completed(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    job: &JobRecord,
) -> Result<(), StoreError> {
    for f in &job.files {
        objects.delete(&f.key).await?;
    }
    let manifest = manifest_key(&job.id, job.spec.format);
    objects
        .delete(&crate::manifest::signature_key(&manifest))
        .await?;
    objects.delete(&manifest).await?;
    for version in job.version.saturating_sub(1)..=job.version {
        objects.delete(&staging_key(&job.id, version)).await?;
    }
    progress.delete(&job.id, job.version).await?;
    Ok(())
}
