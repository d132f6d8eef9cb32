//! The fleet routes: `POST /export/fleet` (a fleet counts as one start against its
//! caller's rate limit) and `GET /export/fleet/{id}`. What a fleet is and does is the
//! service's (`crate::service::fleet`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::AppState;
use crate::service::fleet::{fleet_status, start_fleet};
use crate::service::fleet_views::{FleetAccepted, FleetStatus};

/// `POST /export/fleet`: resolves the databases, records the fleet, starts its run; 202.
/// A fleet counts as one start against the caller's rate limit (its dumps are started by
/// the fleet's run, not by callers): a refused fleet gives its count back.
pub async fn start(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<super::limits::Caller>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Response> {
    let Json(body) = body.map_err(|e| {
        let status = e.status();
        ApiError::new(status, super::error::code_of(status), e.body_text()).into_response()
    })?;
    let Value::Object(request) = body else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be a JSON object",
        )
        .into_response());
    };
    // A bad body is a 400 before it costs a start.
    crate::service::fleet::check_dump_request(&request)
        .map_err(|e| ApiError::from(e).into_response())?;
    let counted = super::limits::count_start(&state, &caller).await?;
    match start_fleet(&state.service(), request, None).await {
        Ok((fleet_id, databases)) => Ok((
            StatusCode::ACCEPTED,
            Json(FleetAccepted {
                status_url: format!("/export/fleet/{fleet_id}"),
                fleet_id,
                databases,
            }),
        )
            .into_response()),
        Err(e) => {
            counted.give_back(&state).await;
            Err(ApiError::from(e).into_response())
        }
    }
}

/// Query of `GET /export/fleet/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetQuery {
    /// The first database index of the page (the previous page's `nextCursor`).
    cursor: Option<usize>,
    /// Databases per page, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// `GET /export/fleet/{id}`: the fleet's status, its databases counted by status, and a
/// page of its databases with their dump ids and statuses.
pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<FleetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FleetStatus>, ApiError> {
    let Query(query) = query.map_err(ApiError::bad_query)?;
    let limit = super::databases::page_limit(query.limit)?;
    let status = fleet_status(&state.service(), &id, query.cursor.unwrap_or(0), limit).await?;
    Ok(Json(status))
}
