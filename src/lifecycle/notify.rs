//! A finished dump's completion callback: attempts through the [`CallbackSender`] port,
//! the pauses between them, and the callback's state recorded in the job after every
//! attempt.

use std::time::{Duration, Instant};

use crate::model::{CallbackState, CallbackStatus, JobStatus};
use crate::ports::{CallbackSender, ProgressStore};

/// Time kept back, before the function's deadline, to record the outcome.
const RECORD_MARGIN: Duration = Duration::from_secs(5);

/// Delivers the callback of finished dump `id` (if it has one), retrying with the
/// sender's pauses, and records the state in the job after every attempt. Before
/// `deadline` (the end of the function running it) it stops retrying in time to record
/// the outcome: a pause is only taken if another attempt still fits.
pub async fn deliver_callback(
    sender: &dyn CallbackSender,
    progress: &dyn ProgressStore,
    id: &str,
    deadline: Option<Instant>,
) {
    let Ok(Some(job)) = progress.get(id).await else {
        return;
    };
    let Some(mut state) = job.callback.clone() else {
        return;
    };
    if state.status == CallbackStatus::Delivered
        || !matches!(job.status, JobStatus::Completed | JobStatus::Failed)
    {
        return;
    }
    let body = sender.body(&job);
    let mut delays = sender.retry_delays().iter();
    loop {
        state.attempts += 1;
        match sender.send(&state.url, &body).await {
            Ok(()) => {
                state.status = CallbackStatus::Delivered;
                state.last_error = None;
                break;
            }
            Err(e) => {
                tracing::warn!(dump_id = %id, attempt = state.attempts, error = %e, "callback failed");
                state.last_error = Some(e.to_string());
                let fits = |d: Duration| {
                    deadline.is_none_or(|end| {
                        Instant::now() + d + sender.attempt_timeout() + RECORD_MARGIN <= end
                    })
                };
                match delays.next() {
                    Some(d) if fits(*d) => {
                        record(progress, id, &state).await;
                        tokio::time::sleep(*d).await
                    }
                    Some(_) => {
                        state.status = CallbackStatus::Failed;
                        state.last_error = Some(format!(
                            "{e} (no time left in this run for another attempt)"
                        ));
                        break;
                    }
                    None => {
                        state.status = CallbackStatus::Failed;
                        break;
                    }
                }
            }
        }
    }
    tracing::info!(dump_id = %id, status = ?state.status, attempts = state.attempts, "callback finished");
    record(progress, id, &state).await;
}

/// Sends `body` to `url` with the sender's retries (the first attempt at once), for a
/// callback no job record tracks (a fleet's end, a failed drill); `what` names it in
/// the log. The last attempt's error if none got through.
pub async fn send_with_retries(
    sender: &dyn CallbackSender,
    url: &str,
    body: &[u8],
    what: &str,
) -> Result<(), crate::error::CallbackError> {
    let mut delays = sender.retry_delays().iter();
    loop {
        match sender.send(url, body).await {
            Ok(()) => return Ok(()),
            Err(e) => match delays.next() {
                Some(delay) => {
                    tracing::warn!(callback = what, error = %e, "callback attempt failed; retrying");
                    tokio::time::sleep(*delay).await;
                }
                None => {
                    tracing::error!(callback = what, error = %e, "callback not delivered");
                    return Err(e);
                }
            },
        }
    }
}

/// Records a callback's state in its job (a finished job changes no more, but the update
/// retries on a conflict anyway).
async fn record(progress: &dyn ProgressStore, id: &str, state: &CallbackState) {
    let recorded = progress
        .update(id, &mut |job| {
            let mut next = job.clone();
            next.callback = Some(state.clone());
            Ok(Some(next))
        })
        .await;
    if let Err(e) = recorded {
        tracing::warn!(dump_id = %id, error = %e, "could not record the callback's state");
    }
}
