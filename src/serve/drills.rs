//! Scheduled restore drills (`"drill": true` in `serve --schedule`'s tick): at each tick,
//! every completed dump the schedule started that was never drilled is drilled (see
//! [`crate::drill`]); a failed drill calls the dump's callback URL back, signed, with
//! `"event": "drill.failed"`.

use std::path::PathBuf;

use crate::api::AppState;
use crate::config::SigningKey;
use crate::drill::{drill_job, report_key, DrillReport};
use crate::model::{JobRecord, JobStatus};
use crate::ports::CallbackSender;

/// What a scheduled drill needs besides the server's state.
#[derive(Clone)]
pub struct DrillSettings {
    /// The key manifests are signed with (`CHUNKDUMP_SIGNING_KEY`), if any.
    pub signing: Option<SigningKey>,
    /// Where scratch databases are made.
    pub scratch_dir: PathBuf,
    /// Ranges read at once from a remote store.
    pub ahead: usize,
}

/// Drills every completed, never drilled dump schedule `name` started; the reports, in
/// the order drilled.
pub async fn drill_scheduled(
    state: &AppState,
    name: &str,
    settings: &DrillSettings,
) -> Vec<DrillReport> {
    let jobs = match state.progress.list_recent(1000).await {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!(schedule = %name, error = %e, "cannot list dumps to drill");
            return Vec::new();
        }
    };
    let due = jobs.into_iter().filter(|j| {
        j.status == JobStatus::Completed
            && j.schedule.as_deref() == Some(name)
            && j.last_drill.is_none()
    });
    let mut reports = Vec::new();
    for job in due {
        match drill_job(
            state.objects.as_ref(),
            state.progress.as_ref(),
            &job,
            settings.signing.as_ref(),
            &settings.scratch_dir,
            settings.ahead,
        )
        .await
        {
            Ok(report) => {
                tracing::info!(schedule = %name, dump_id = %job.id, passed = report.passed, "scheduled drill");
                if !report.passed {
                    call_back_failed(state, &job, &report).await;
                }
                reports.push(report);
            }
            Err(e) => {
                tracing::warn!(schedule = %name, dump_id = %job.id, error = %e, "scheduled drill could not run")
            }
        }
    }
    reports
}

/// Tells the dump's callback URL (if it has one) that its drill failed, signed as every
/// callback is, with the notifier's retries.
async fn call_back_failed(state: &AppState, job: &JobRecord, report: &DrillReport) {
    let (Some(notifier), Some(callback)) = (&state.settings.notifier, &job.callback) else {
        return;
    };
    let body = serde_json::json!({
        "event": "drill.failed",
        "dumpId": job.id,
        "problems": report.problems,
        "report": report_key(&job.id),
        "drilledAt": report.drilled_at,
    });
    let body = serde_json::to_vec(&body).expect("serializable");
    let delays =
        std::iter::once(std::time::Duration::ZERO).chain(notifier.retry_delays().iter().copied());
    for delay in delays {
        tokio::time::sleep(delay).await;
        match notifier.send(&callback.url, &body).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(dump_id = %job.id, error = %e, "drill.failed callback attempt failed")
            }
        }
    }
}
