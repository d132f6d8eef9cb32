//! A chunk's commit: the staging object (receipts of the open object's parts, table
//! digests so far, the tail bytes) keyed by the version it commits, or the manifest for
//! the last chunk; then the job record one version up; then the staging objects no
//! longer needed. The staging format, its keys and their cleanup live here alone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::commit_next;
use super::ending::{abort_abandoned_uploads, remove_snapshot};
use crate::encryption::{open_bytes, seal_bytes, StreamKey};
use crate::engine::digest::DigestState;
use crate::engine::{AgeTail, ChunkEnd, ExportOutcome, Tail};
use crate::error::DumpError;
use crate::model::{JobRecord, JobStatus, OpenObject, PartReceipt};
use crate::ports::{staging_key, ObjectStore, ProgressStore};
use crate::uploader::UploadSummary;

/// The staging object every unfinished chunk commits with (keyed by the version it
/// commits): receipts of the open object's uploaded parts and the table digests so far
/// (as a JSON line), then the tail bytes. It keeps the job record small whatever the
/// number of tables. An encrypted dump's staging object is sealed as a whole under its
/// stream key (it names tables, and holds the plaintext of the open object's unfinished
/// age chunk).
#[derive(Serialize, Deserialize)]
pub(crate) struct StagingHeader {
    pub(crate) receipts: Vec<PartReceipt>,
    #[serde(default)]
    pub(crate) digests: DigestState,
    /// An encrypted open object's age stream: chunks written, and the unfinished
    /// chunk's plaintext (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) age: Option<StagedAge>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StagedAge {
    counter: u64,
    pending: String,
}

impl StagingHeader {
    /// The open object's age stream as the engine continues it.
    pub(crate) fn age_tail(&self) -> Result<Option<AgeTail>, DumpError> {
        use base64::Engine as _;
        self.age
            .as_ref()
            .map(|a| {
                let pending = base64::engine::general_purpose::STANDARD
                    .decode(&a.pending)
                    .map_err(|_| DumpError::Internal("corrupt staging object".into()))?;
                Ok(AgeTail {
                    counter: a.counter,
                    pending,
                })
            })
            .transpose()
    }
}

fn encode_staging(receipts: &[PartReceipt], digests: &DigestState, tail: Option<&Tail>) -> Vec<u8> {
    use base64::Engine as _;
    let age = tail.and_then(|t| t.age.as_ref()).map(|a| StagedAge {
        counter: a.counter,
        pending: base64::engine::general_purpose::STANDARD.encode(&a.pending),
    });
    let mut out = serde_json::to_vec(&StagingHeader {
        receipts: receipts.to_vec(),
        digests: digests.clone(),
        age,
    })
    .expect("serializable");
    out.push(b'\n');
    out.extend_from_slice(tail.map_or(&[][..], |t| &t.bytes));
    out
}

fn decode_staging(raw: &[u8]) -> Result<(StagingHeader, Vec<u8>), DumpError> {
    let nl = raw
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| DumpError::Internal("corrupt staging object".into()))?;
    let header: StagingHeader = serde_json::from_slice(&raw[..nl])
        .map_err(|e| DumpError::Internal(format!("corrupt staging object: {e}")))?;
    Ok((header, raw[nl + 1..].to_vec()))
}

/// What the last committed chunk staged for the next one: nothing before the first.
/// `stream` opens an encrypted dump's staging object.
pub(crate) async fn read_staged(
    objects: &dyn ObjectStore,
    job: &JobRecord,
    stream: Option<&StreamKey>,
) -> Result<(StagingHeader, Vec<u8>), DumpError> {
    if job.chunks == 0 {
        return Ok((
            StagingHeader {
                receipts: Vec::new(),
                digests: DigestState::default(),
                age: None,
            },
            Vec::new(),
        ));
    }
    let key = staging_key(&job.id, job.staging_version());
    let raw = objects.get(&key).await?.ok_or_else(|| {
        DumpError::Internal(format!(
            "staging object for version {} is missing",
            job.staging_version()
        ))
    })?;
    let raw = match stream {
        Some(stream) => open_bytes(&stream.staging_key(), &key, raw)?,
        None => raw,
    };
    decode_staging(&raw)
}

/// The keys a chunk's commit uses: the manifest's signing key, and an encrypted dump's
/// stream key (its staging objects are sealed under it).
#[derive(Clone, Copy, Default)]
pub(crate) struct CommitKeys<'a> {
    pub(crate) signing: Option<&'a crate::config::SigningKey>,
    pub(crate) stream: Option<&'a StreamKey>,
}

/// Commits a chunk that exported `outcome` and uploaded `uploaded` in `busy_ms`: the
/// staging object for the next chunk (or, when the export is done, the manifest, signed
/// with `signing` if there is a key, so its
/// URL works as soon as the job says completed), then the job one version up, then the
/// staging objects no longer needed. A lost race is [`DumpError::Conflict`].
pub(crate) async fn record_chunk(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    job: &JobRecord,
    outcome: &ExportOutcome,
    uploaded: &UploadSummary,
    busy_ms: u64,
    keys: CommitKeys<'_>,
) -> Result<JobRecord, DumpError> {
    let CommitKeys { signing, stream } = keys;
    let next = after_chunk(job, outcome, uploaded, busy_ms, Utc::now());
    if next.status == JobStatus::Completed {
        crate::manifest::write_manifest(objects, &next, &outcome.digests, signing).await?;
    } else {
        let receipts: &[PartReceipt] = match &outcome.tail {
            Some(tail) => uploaded
                .open
                .as_ref()
                .filter(|o| o.object == tail.object)
                .map_or(&[][..], |o| &o.receipts[..]),
            None => &[],
        };
        let key = staging_key(&job.id, next.version);
        let staged = encode_staging(receipts, &outcome.digests, outcome.tail.as_ref());
        let staged = match stream {
            Some(stream) => seal_bytes(&stream.staging_key(), &key, &staged),
            None => staged,
        };
        objects.put(&key, staged).await?;
    }
    commit_next(progress, job, &next).await?;
    if next.status == JobStatus::Completed {
        remove_snapshot(&next);
        abort_abandoned_uploads(objects, &next.id).await;
        // A killed earlier attempt of this last chunk may have staged for this version.
        let _ = objects.delete(&staging_key(&job.id, next.version)).await;
    }
    if job.chunks > 0 {
        let staged = job.staging_version();
        if let Err(e) = objects.delete(&staging_key(&job.id, staged)).await {
            tracing::warn!(dump_id = %job.id, error = %e, "could not delete old staging object");
        }
        // A run killed between its commit and this delete left the version before.
        let _ = objects.delete(&staging_key(&job.id, staged - 1)).await;
    }
    Ok(next)
}

/// The job after a chunk that exported `outcome` and uploaded `uploaded` in `busy_ms`:
/// one version up, `processing`, or `completed` when the export is done. Pure; the
/// chunk writes its staging object (or the manifest) and commits this.
pub(crate) fn after_chunk(
    job: &JobRecord,
    outcome: &ExportOutcome,
    uploaded: &UploadSummary,
    busy_ms: u64,
    now: DateTime<Utc>,
) -> JobRecord {
    let mut next = job.clone();
    next.version += 1;
    // This chunk stages for the new version; a resumed dump's pause is over.
    next.staged_version = None;
    if job.status == JobStatus::Interrupted {
        next.error = None;
    }
    next.cursor = outcome.cursor.clone();
    next.processed_rows += outcome.rows;
    next.chunks += 1;
    next.busy_ms += busy_ms;
    next.updated_at = now;
    // The dump started when its first chunk did, not when that chunk committed.
    next.started_at
        .get_or_insert_with(|| now - chrono::Duration::milliseconds(busy_ms as i64));
    next.schema_fingerprint
        .get_or_insert_with(|| outcome.fingerprint.clone());
    next.change_token
        .get_or_insert_with(|| outcome.change_token.clone());
    if outcome.changed && !next.consistency.changed_during_dump {
        tracing::info!(dump_id = %job.id, "the database changed during this live dump");
        next.consistency.changed_during_dump = true;
    }
    for w in &outcome.warnings {
        if !next.warnings.contains(w) {
            tracing::info!(dump_id = %job.id, warning = %w, "dumped with a warning");
            next.warnings.push(w.clone());
        }
    }
    if outcome.total_rows.is_some() {
        next.total_rows = outcome.total_rows;
    }
    next.files.extend(uploaded.finished.iter().cloned());
    next.open_object = outcome.tail.as_ref().map(|t| OpenObject {
        object: t.object,
        key: t.key.clone(),
        upload: uploaded
            .open
            .as_ref()
            .filter(|o| o.object == t.object)
            .and_then(|o| o.handle.clone()),
        next_part: t.next_part,
        bytes: t.size,
    });
    next.bytes_written = next.files.iter().map(|f| f.size).sum::<u64>()
        + next.open_object.as_ref().map_or(0, |o| o.bytes);
    if outcome.end == ChunkEnd::Done {
        next.status = JobStatus::Completed;
        next.completed_at = Some(now);
        // Nothing is left to encrypt: only the recipients' identities open the dump now.
        next.stream_key = None;
    } else {
        next.status = JobStatus::Processing;
    }
    next
}
