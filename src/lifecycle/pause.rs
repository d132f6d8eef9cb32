//! Pausing a dump and resuming it: a fault outside the dump's data (the store down or
//! full past its retries, the database locked by a writer) or the end of its runner (a
//! killed process, a stopped execution) leaves the dump `interrupted` with everything
//! committed kept (files, open upload, staging object); a resume continues it from its
//! last committed chunk, so it ends byte-identical to a run that was never interrupted.
//!
//! Both changes move the record one version up without a chunk, so the record keeps the
//! version whose staging object the next chunk reads (`staged_version`).

use chrono::Utc;

use crate::error::DumpError;
use crate::model::{JobError, JobRecord, JobStatus};
use crate::ports::{ProgressStore, RunState};

/// Whether dump `job` is interrupted, given what is known of its run: paused by a fault
/// (its record says `interrupted`), or unfinished with its run gone (in AWS its
/// execution ended without finishing it; locally no process holds its run lock). The
/// one rule the API, `serve`, fleets and the command line apply.
pub fn is_interrupted(job: &JobRecord, run: &RunState) -> bool {
    if job.status.is_terminal() {
        return false;
    }
    match run {
        RunState::Running => false,
        _ if job.status == JobStatus::Interrupted => true,
        RunState::Ended(_) => true,
        // No run was ever seen: a pending dump may be starting right now; a processing
        // one had a run, now gone.
        RunState::None => job.status == JobStatus::Processing,
        RunState::Unknown => false,
    }
}

/// Marks dump `id` interrupted by `error` (unless it already ended or is interrupted):
/// nothing it wrote is removed. `None` when there was nothing to change.
pub async fn interrupt_dump(
    progress: &dyn ProgressStore,
    id: &str,
    error: &DumpError,
) -> Result<Option<JobRecord>, DumpError> {
    let cause = JobError {
        code: error.code().to_string(),
        message: error.public_message(),
    };
    let mut change = |job: &JobRecord| -> Result<Option<JobRecord>, DumpError> {
        if job.status.is_terminal() || job.status == JobStatus::Interrupted {
            return Ok(None);
        }
        let mut paused = job.clone();
        paused.status = JobStatus::Interrupted;
        paused.staged_version = Some(job.staging_version());
        paused.error = Some(cause.clone());
        paused.updated_at = Utc::now();
        Ok(Some(paused))
    };
    let paused = progress.update(id, &mut change).await?.map(|t| t.after);
    if paused.is_some() {
        // The failure target, like a failed dump: the CLI prints its own `error:` line.
        tracing::warn!(target: "chunkdump::failure", dump_id = %id, error = %error, "dump interrupted; it resumes from its last committed chunk");
    }
    Ok(paused)
}

/// Makes dump `id` ready to run again: an interrupted dump goes back to `processing`
/// (`pending` if no chunk committed yet) with its error cleared; a pending or
/// processing one is returned as it is (its runner was lost without recording it). A
/// dump that ended is refused ([`DumpError::WrongState`]).
pub async fn resume_dump(progress: &dyn ProgressStore, id: &str) -> Result<JobRecord, DumpError> {
    let mut change = |job: &JobRecord| -> Result<Option<JobRecord>, DumpError> {
        if job.status.is_terminal() {
            return Err(DumpError::WrongState {
                id: job.id.clone(),
                status: job.status,
                message: "only an unfinished dump can be resumed".into(),
            });
        }
        if job.status != JobStatus::Interrupted {
            return Ok(None);
        }
        let mut resumed = job.clone();
        resumed.status = if job.chunks == 0 {
            JobStatus::Pending
        } else {
            JobStatus::Processing
        };
        resumed.staged_version = Some(job.staging_version());
        resumed.error = None;
        resumed.updated_at = Utc::now();
        Ok(Some(resumed))
    };
    match progress.update(id, &mut change).await? {
        Some(t) => Ok(t.after),
        None => progress.require(id).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_says_when_a_dump_is_interrupted() {
        let spec: crate::model::DumpSpec = serde_json::from_value(serde_json::json!({
            "database": "/a.db", "format": "sql", "includeSchema": true,
            "chunkSize": 1000, "partSize": 8 << 20
        }))
        .unwrap();
        let job = |status| {
            let mut j = JobRecord::new("d".into(), spec.clone(), Utc::now());
            j.status = status;
            j
        };
        let ended = RunState::Ended("ENDED".into());
        use JobStatus::*;
        for (status, run, want) in [
            (Processing, RunState::Running, false),
            (Processing, ended.clone(), true),
            (Processing, RunState::None, true),
            (Pending, RunState::None, false), // a start may be under way
            (Interrupted, RunState::None, true),
            (Interrupted, RunState::Unknown, true),
            (Interrupted, RunState::Running, false), // resumed elsewhere
            (Processing, RunState::Unknown, false),  // nobody here can tell
            (Completed, ended.clone(), false),
            (Failed, RunState::None, false),
        ] {
            assert_eq!(is_interrupted(&job(status), &run), want, "{status:?} {run}");
        }
    }
}
