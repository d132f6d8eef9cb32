//! A dump's status as the API answers it (an interrupted dump says so, with the call
//! that resumes it), and `POST /export/dump/{id}/resume`. Whether a run is alive, and
//! resuming, are the service's (`crate::service::runs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::AppState;
use crate::model::JobRecord;
use crate::service::runs::{is_interrupted, resume_call};
use crate::views::StatusView;

/// A dump's status as the API answers it: interrupted dumps say so and how to resume.
pub async fn status_view(state: &AppState, job: &JobRecord) -> Result<Response, ApiError> {
    let mut view = StatusView::new(job, chrono::Utc::now()).with_urls(job);
    if is_interrupted(&state.service(), job).await? {
        view = view.interrupted(resume_call(&job.id));
    }
    Ok(Json(view).into_response())
}

/// `POST /export/dump/{id}/resume` (admin): starts a new run of an interrupted dump from
/// its last committed chunk; 202 with its status. 409 for a dump that is running or has
/// ended.
pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = crate::model::DumpId::parse(id)?;
    let job = crate::service::runs::resume(&state.service(), &id).await?;
    let view = StatusView::new(&job, chrono::Utc::now()).with_urls(&job);
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}
