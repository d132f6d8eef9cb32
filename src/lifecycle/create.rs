//! A dump's first record, and the snapshot copy's path once it is taken.

use chrono::Utc;

use super::commit_next;
use crate::engine::validate;
use crate::error::{DumpError, StoreError};
use crate::model::{dump_id_of, validate_dump_id, CallbackState, DumpSpec, JobRecord, JobStatus};
use crate::ports::ProgressStore;

/// What a new dump records beside its spec: an id chosen by the caller, the callback to
/// send when it ends, the schedule that started it. Written with the job in its first
/// write, so nothing else writes the job before its run starts.
#[derive(Debug, Clone, Default)]
pub struct NewDump {
    /// The dump id; without one it is `[<database>/]dump_YYYYMMDD-HHMMSS`, suffixed `-2`,
    /// `-3`, … if taken.
    pub id: Option<String>,
    /// The HTTPS URL told of the dump's end (already checked by the caller).
    pub callback_url: Option<String>,
    /// The name of the schedule starting it.
    pub schedule: Option<String>,
    /// In a store of several databases, the database's name ([`crate::model::database_name`]):
    /// a generated id is then `<database>/dump_YYYYMMDD-HHMMSS`.
    pub database_name: Option<String>,
}

/// Validates the request and creates a pending job. Without an explicit id the id is
/// `dump_YYYYMMDD-HHMMSS`, suffixed `-2`, `-3`, … if taken.
pub async fn create_dump(
    progress: &dyn ProgressStore,
    spec: DumpSpec,
    id: Option<String>,
) -> Result<JobRecord, DumpError> {
    create_dump_as(
        progress,
        spec,
        NewDump {
            id,
            ..NewDump::default()
        },
    )
    .await
}

/// [`create_dump`] with the callback and schedule recorded in the same first write.
pub async fn create_dump_as(
    progress: &dyn ProgressStore,
    spec: DumpSpec,
    new: NewDump,
) -> Result<JobRecord, DumpError> {
    let id = new.id;
    if spec.part_size == 0 {
        return Err(DumpError::InvalidRequest(
            "the part size must be positive".into(),
        ));
    }
    let now = Utc::now();
    let base = id
        .clone()
        .unwrap_or_else(|| dump_id_of(new.database_name.as_deref(), now));
    validate_dump_id(&base)?;
    let (check, check_id) = (spec.clone(), base.clone());
    let (_, inode) = tokio::task::spawn_blocking(move || validate(&check, &check_id))
        .await
        .map_err(|e| DumpError::Internal(e.to_string()))??;
    for attempt in 1..=100 {
        let candidate = if attempt == 1 {
            base.clone()
        } else {
            format!("{base}-{attempt}")
        };
        let mut job = JobRecord::new(candidate.clone(), spec.clone(), now);
        job.callback = new.callback_url.clone().map(CallbackState::pending);
        job.schedule = new.schedule.clone();
        job.database_inode = Some(inode);
        match progress.create(&job).await {
            Ok(()) => {
                return progress
                    .get(&candidate)
                    .await?
                    .ok_or_else(|| DumpError::Internal("created job vanished".into()))
            }
            Err(StoreError::AlreadyExists(_)) if id.is_none() => continue,
            Err(StoreError::AlreadyExists(_)) => {
                return Err(DumpError::InvalidRequest(format!(
                    "dump id {base:?} already exists"
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(DumpError::InvalidRequest(format!(
        "too many dumps started as {base}"
    )))
}

/// Marks `job` (still `pending`) as started: `processing` from its first chunk's start,
/// with that start's time, so status tells the truth while the first chunk runs (up to
/// the whole budget) rather than after it commits.
pub async fn record_started(
    progress: &dyn ProgressStore,
    job: &JobRecord,
) -> Result<JobRecord, DumpError> {
    let mut next = job.clone();
    next.version += 1;
    let now = Utc::now();
    next.updated_at = now;
    next.started_at.get_or_insert(now);
    next.status = JobStatus::Processing;
    commit_next(progress, job, &next).await?;
    Ok(next)
}

/// Records the outcome of a restore drill of completed `job`: one version up. A dump
/// deleted or changed meanwhile gets a conflict (the report object stays the evidence).
pub async fn record_drill(
    progress: &dyn ProgressStore,
    job: &JobRecord,
    drill: crate::model::DrillSummary,
) -> Result<JobRecord, DumpError> {
    let mut next = job.clone();
    next.version += 1;
    // The chunk that completed the dump staged nothing at the new version.
    next.staged_version = Some(job.staging_version());
    next.updated_at = Utc::now();
    next.last_drill = Some(drill);
    commit_next(progress, job, &next).await?;
    Ok(next)
}

/// Records the point-in-time copy a snapshot dump reads (`path`): one version up.
pub async fn record_snapshot(
    progress: &dyn ProgressStore,
    job: &JobRecord,
    path: &std::path::Path,
) -> Result<JobRecord, DumpError> {
    let mut next = job.clone();
    next.version += 1;
    next.updated_at = Utc::now();
    next.snapshot_path = Some(path.display().to_string());
    commit_next(progress, job, &next).await?;
    Ok(next)
}
