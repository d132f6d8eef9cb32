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
    /// Where an encrypted dump's stream key may be kept.
    pub custody: KeyCustody,
}

/// Where an encrypted dump's stream key (what lets a later chunk continue its age
/// streams) may be kept between chunks: never in the clear outside the trust domain of
/// the database.
#[derive(Clone, Default)]
pub enum KeyCustody {
    /// Nowhere: encrypted dumps are refused (a shared progress store, and no key to wrap
    /// the stream key with).
    #[default]
    Refuse,
    /// In the clear, in a progress store beside the database with its permissions.
    Local,
    /// Wrapped with this secret (the deployment's signing key), which every chunk holds.
    Wrapped(crate::config::SigningKey),
}

impl std::fmt::Debug for KeyCustody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyCustody::Refuse => "Refuse",
            KeyCustody::Local => "Local",
            KeyCustody::Wrapped(_) => "Wrapped(…)",
        })
    }
}

impl KeyCustody {
    /// The custody a runner with `signing` (its signing key) and a progress store that is
    /// (`local`) or is not beside the database gives: wrapped whenever there is a key.
    pub fn for_runner(signing: Option<&crate::config::SigningKey>, local: bool) -> Self {
        match (signing, local) {
            (Some(key), _) => KeyCustody::Wrapped(key.clone()),
            (None, true) => KeyCustody::Local,
            (None, false) => KeyCustody::Refuse,
        }
    }

    /// A new stream key for an encrypted dump of `spec` (its recipients checked and put
    /// in canonical form), in the form its record keeps; `None` for a dump not encrypted.
    fn stream_key_for(&self, spec: &mut DumpSpec) -> Result<Option<String>, DumpError> {
        if !spec.encrypted() {
            return Ok(None);
        }
        let bad = |field: &'static str, message: String| DumpError::InvalidField { field, message };
        let recipients = crate::encryption::Recipients::parse(&spec.recipients)
            .map_err(|e| bad("recipients", e.to_string()))?;
        spec.recipients = recipients.to_strings();
        if spec.drill {
            return Err(bad(
                "drill",
                "an encrypted dump is drilled with its identity, which a dump's runner never holds: run `chunkdump drill ID --identity FILE` where the identity is".into(),
            ));
        }
        let key = crate::encryption::StreamKey::random();
        match self {
            KeyCustody::Refuse => Err(bad(
                "recipients",
                "an encrypted dump keeps its stream key between chunks wrapped with the deployment's signing key, and none is set: set CHUNKDUMP_SIGNING_KEY (or the secret's signingKey)".into(),
            )),
            KeyCustody::Local => Ok(Some(key.store(None))),
            KeyCustody::Wrapped(secret) => Ok(Some(key.store(Some(secret.bytes())))),
        }
    }
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
    let mut spec = spec;
    let stream_key = new.custody.stream_key_for(&mut spec)?;
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
        job.stream_key.clone_from(&stream_key);
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
