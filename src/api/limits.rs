//! Rate limits, enforced through the progress store so they hold across processes and
//! Lambda instances: a number of starts per token per window (429 with `Retry-After`),
//! and one active dump per database (409 naming the running dump).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::AppState;
use crate::model::JobRecord;

/// Starts allowed per token per window.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub starts: u64,
    pub window: Duration,
}

/// Who is calling: a digest of the token (the token itself is never stored).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// A 429 with `Retry-After`.
pub struct TooManyRequests {
    retry_after: u64,
    error: ApiError,
}

impl IntoResponse for TooManyRequests {
    fn into_response(self) -> Response {
        let mut res = self.error.into_response();
        if let Ok(v) = HeaderValue::from_str(&self.retry_after.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// Counts this start against the caller's window.
pub async fn count_start(state: &AppState, caller: &Caller) -> Result<(), Response> {
    let limit = state.settings.rate_limit;
    let (count, retry_after) = state
        .guard
        .count_in_window(&format!("starts:{}", caller.0), limit.window)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    if count > limit.starts {
        let message = format!(
            "at most {} dumps may be started per {} s with this token; retry in {retry_after} s",
            limit.starts,
            limit.window.as_secs()
        );
        return Err(TooManyRequests {
            retry_after,
            error: ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message),
        }
        .into_response());
    }
    Ok(())
}

fn slot_of(database: &str) -> String {
    let digest = Sha256::digest(database.as_bytes());
    format!("db:{}", hex::encode(&digest[..12]))
}

/// Holders that are requests still creating their job (not yet a dump id).
const STARTING: &str = "starting-";

/// Claims the database for a new dump: 409 if another dump of it is pending or running.
/// Returns the provisional holder to hand over with [`hand_over`].
pub async fn claim_database(state: &AppState) -> Result<String, ApiError> {
    let slot = slot_of(&state.settings.database);
    let me = format!(
        "{STARTING}{}-{:x}",
        chrono::Utc::now().timestamp(),
        fastrand::u64(..)
    );
    let mut replacing: Option<String> = None;
    for _ in 0..5 {
        let Some(holder) = state.guard.claim(&slot, &me, replacing.as_deref()).await? else {
            return Ok(me);
        };
        if !holder_is_active(state, &holder).await? {
            replacing = Some(holder); // finished, failed or crashed: take over
            continue;
        }
        let running = if holder.starts_with(STARTING) {
            "another dump that is starting".to_string()
        } else {
            format!("dump {holder}")
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "dump_running",
            format!("{running} is already running on this database; wait for it or cancel it"),
        ));
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "dump_running",
        "the database is being claimed concurrently; retry",
    ))
}

async fn holder_is_active(state: &AppState, holder: &str) -> Result<bool, ApiError> {
    if let Some(rest) = holder.strip_prefix(STARTING) {
        // A request that crashed between claiming and creating its job stops counting
        // after a minute.
        let since: i64 = rest
            .split('-')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        return Ok(chrono::Utc::now().timestamp() - since < 60);
    }
    if holder.is_empty() {
        return Ok(false);
    }
    let Some(job): Option<JobRecord> = state.progress.get(holder).await? else {
        return Ok(false);
    };
    if job.status.is_terminal() {
        return Ok(false);
    }
    // An unfinished dump whose run is gone (its execution failed or was stopped outside
    // chunkdump, or the local server restarted) would hold the database forever: fail it
    // cleanly and take over. A young job may not have started its run yet.
    let quiet = chrono::Utc::now() - job.updated_at;
    if quiet < chrono::Duration::seconds(60) {
        return Ok(true);
    }
    let status = state.orchestrator.describe(&job.id).await?;
    if status == crate::ports::RunState::Running {
        return Ok(true);
    }
    let lost = crate::error::DumpError::RunFailed {
        error: "RunLost".into(),
        message: format!("the dump's run ended without finishing it ({status})"),
    };
    tracing::warn!(dump_id = %job.id, run = %status, "unfinished dump without a run: marking it failed");
    let _ = crate::lifecycle::fail_job(
        state.objects.as_ref(),
        state.progress.as_ref(),
        &job,
        &lost,
        Vec::new(),
    )
    .await;
    Ok(false)
}

/// Hands the database slot from the provisional holder to the created dump.
pub async fn hand_over(state: &AppState, provisional: &str, dump_id: &str) -> Result<(), ApiError> {
    let slot = slot_of(&state.settings.database);
    match state.guard.claim(&slot, dump_id, Some(provisional)).await? {
        None => Ok(()),
        Some(other) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "dump_running",
            format!("the database was claimed by {other} meanwhile"),
        )),
    }
}
