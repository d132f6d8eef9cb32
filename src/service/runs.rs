//! Whether a dump's run is alive, as the orchestrator tells it, and resuming one.
//!
//! A dump is **interrupted** when it paused after a fault outside its data (its record
//! says `interrupted`), or when it is unfinished and its run is gone: in AWS its
//! execution ended without finishing it (stopped, timed out, failed outside the catch
//! path); locally, no process holds its run lock (the server that ran it stopped). The
//! status views say so, with the call that resumes it; an interrupted dump keeps its
//! database's slot until it is resumed or cancelled, so nothing it wrote is lost.

use super::error::{ErrorKind, ServiceError};
use super::Service;
use crate::model::{DumpId, JobRecord};

/// The API call that resumes dump `id`.
pub fn resume_call(id: &str) -> String {
    // The id as one path segment (`tenants%2Facme%2Fdump_…`), so the call can be made
    // as written.
    format!(
        "POST /export/dump/{}/resume",
        crate::model::path_segment(id)
    )
}

/// Whether `job` is interrupted (see the module doc and
/// [`crate::lifecycle::is_interrupted`]). Asks the orchestrator only for unfinished
/// dumps.
pub async fn is_interrupted(state: &Service, job: &JobRecord) -> Result<bool, ServiceError> {
    if job.status.is_terminal() {
        return Ok(false);
    }
    let run = state.orchestrator.describe(&job.id).await?;
    Ok(crate::lifecycle::is_interrupted(job, &run))
}

/// Cancels dump `id`: stops its run, aborts its upload, removes its partial files;
/// status `cancelled`. The job as cancelled.
pub async fn cancel(state: &Service, id: &DumpId) -> Result<JobRecord, ServiceError> {
    state.orchestrator.stop(id).await?;
    let job =
        crate::lifecycle::cancel_dump(state.objects.as_ref(), state.progress.as_ref(), id).await?;
    tracing::info!(dump_id = %id, "dump cancelled");
    Ok(job)
}

/// Starts a new run of interrupted dump `id` from its last committed chunk; the job as
/// resumed. A conflict for a dump that is running or has ended.
pub async fn resume(state: &Service, id: &DumpId) -> Result<JobRecord, ServiceError> {
    let job = state.progress.require(id).await?;
    if job.status.is_terminal() {
        return Err(ServiceError::new(
            ErrorKind::Conflict,
            "wrong_state",
            format!(
                "dump {id} is {}: only an interrupted dump can be resumed",
                job.status
            ),
        ));
    }
    if !is_interrupted(state, &job).await? {
        return Err(ServiceError::new(
            ErrorKind::Conflict,
            "wrong_state",
            format!(
                "dump {id} is {} and its run is alive: nothing to resume",
                job.status
            ),
        ));
    }
    let job = crate::lifecycle::resume_dump(state.progress.as_ref(), id).await?;
    state.orchestrator.resume(id, job.version).await?;
    tracing::info!(dump_id = %id, version = job.version, "dump resumed");
    Ok(job)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_resume_call_names_the_id_as_one_path_segment() {
        assert_eq!(
            super::resume_call("tenants/acme/dump_20261207-010101"),
            "POST /export/dump/tenants%2Facme%2Fdump_20261207-010101/resume"
        );
    }
}
