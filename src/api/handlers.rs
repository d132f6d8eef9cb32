//! Route handlers: validate, call the runner and stores, answer JSON.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::error::ApiError;
use super::views::{DumpSummary, StartAccepted, StatusView};
use super::AppState;
use crate::lifecycle::{cancel_dump, create_dump};
use crate::model::{
    validate_dump_id, CallbackState, Compression, DumpSpec, Format, JobRecord, JobStatus,
};
use crate::ports::Download;

/// Body of `POST /export/dump` (and the `request` of a scheduled start). Unknown fields
/// are refused, naming the field.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartRequest {
    format: Format,
    pub(crate) callback_url: Option<String>,
    chunk_size: Option<u32>,
    include_schema: Option<bool>,
    tables: Option<Vec<String>>,
    compression: Option<Compression>,
    snapshot: Option<bool>,
    snapshot_max_block_ms: Option<u64>,
}

/// Turns axum's JSON rejections into our errors, naming the offending field.
fn json_error(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    let field = text
        .split("unknown field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string)
        .or_else(|| {
            let detail = text.rsplit("target type: ").next().unwrap_or("");
            detail
                .split_once(": ")
                .map(|(path, _)| path.to_string())
                .filter(|p| p.chars().all(|c| c.is_alphanumeric() || c == '.'))
        });
    let status = match rejection {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError {
        status,
        code: "invalid_request",
        message: text,
        field,
    }
}

/// `POST /export/dump`: validate, create the job, start its run; 202.
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<super::limits::Caller>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<Response, Response> {
    let Json(req) = body.map_err(|e| json_error(e).into_response())?;
    let counted = super::limits::count_start(&state, &caller).await?;
    match start_dump(&state, req, None).await {
        Ok(job) => Ok((StatusCode::ACCEPTED, Json(StartAccepted::new(&job.id))).into_response()),
        Err(e) => {
            // Only accepted starts count against the limit.
            counted.give_back(&state).await;
            Err(e.into_response())
        }
    }
}

/// Validates a start, creates the job (one active dump per database) and starts its
/// run: the one path by which API requests and schedules start dumps (`schedule`: the
/// name of the schedule starting it).
pub(crate) async fn start_dump(
    state: &AppState,
    req: StartRequest,
    schedule: Option<&str>,
) -> Result<JobRecord, ApiError> {
    let chunk_size = req.chunk_size.unwrap_or(state.settings.chunk_size);
    if !(1..=100_000).contains(&chunk_size) {
        return Err(ApiError::bad_field(
            "chunkSize",
            "chunkSize must be between 1 and 100000",
        ));
    }
    if let Some(url) = &req.callback_url {
        let Some(notifier) = &state.settings.notifier else {
            return Err(ApiError::bad_field("callbackUrl", "this server has no callback signing secret (CHUNKDUMP_CALLBACK_SECRET), so it sends no callbacks"));
        };
        notifier
            .check_url(url)
            .await
            .map_err(|e| ApiError::bad_field("callbackUrl", e.to_string()))?;
    }
    if req
        .snapshot_max_block_ms
        .is_some_and(|ms| !(1..=600_000).contains(&ms))
    {
        return Err(ApiError::bad_field(
            "snapshotMaxBlockMs",
            "snapshotMaxBlockMs must be between 1 and 600000",
        ));
    }
    if req
        .tables
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.iter().any(|name| name.is_empty()))
    {
        return Err(ApiError::bad_field(
            "tables",
            "tables must be a non-empty list of table names",
        ));
    }
    let spec = DumpSpec {
        database: state.settings.database.clone(),
        format: req.format,
        compression: req.compression.unwrap_or_default(),
        tables: req.tables,
        include_schema: req.include_schema.unwrap_or(true),
        chunk_size,
        part_size: state.settings.part_size,
        snapshot: req.snapshot.unwrap_or(state.settings.snapshot),
        snapshot_max_block_ms: req.snapshot_max_block_ms,
    };
    let claim = super::limits::claim_database(state).await?;
    let mut job = match create_dump(state.progress.as_ref(), spec, None).await {
        Ok(job) => job,
        Err(e) => {
            // Released now, so the next start (a corrected request) finds it free.
            claim.release().await;
            return Err(e.into());
        }
    };
    if req.callback_url.is_some() || schedule.is_some() {
        // Recorded before the run starts, so nothing else writes the job meanwhile.
        let mut annotated = job.clone();
        annotated.version += 1;
        annotated.callback = req.callback_url.map(CallbackState::pending);
        annotated.schedule = schedule.map(str::to_string);
        state.progress.commit(&annotated, job.version).await?;
        job = annotated;
    }
    if let Err(e) = state.orchestrator.start(&job.id, job.version).await {
        // A job that never runs must not hold the database's one-dump slot.
        let _ = crate::lifecycle::fail_job(
            state.objects.as_ref(),
            state.progress.as_ref(),
            &job,
            &e,
            Vec::new(),
        )
        .await;
        return Err(e.into());
    }
    // The run is started before the slot names the dump: whoever finds the dump holding
    // the slot finds its run (see `limits::holder_is_active`).
    claim.hand_over(&job.id).await?;
    tracing::info!(dump_id = %job.id, format = ?job.spec.format, "dump accepted");
    Ok(job)
}

async fn load(state: &AppState, id: &str) -> Result<JobRecord, ApiError> {
    validate_dump_id(id)?;
    Ok(state.progress.require(id).await?)
}

/// A dump's status as the API answers it.
fn view(job: &JobRecord) -> Response {
    Json(StatusView::new(job, chrono::Utc::now()).with_urls(job)).into_response()
}

/// `GET /export/dump/status/{id}`: the job record alone, fast whatever the size.
pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(view(&load(&state, &id).await?))
}

/// `GET /export/dump`: the 50 most recent dumps.
pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let jobs = state.progress.list_recent(50).await?;
    let dumps: Vec<DumpSummary> = jobs.iter().map(DumpSummary::from).collect();
    let scheduled = super::schedule::recent_runs(&state).await?;
    Ok(Json(
        serde_json::json!({ "dumps": dumps, "scheduledRuns": scheduled }),
    ))
}

/// `DELETE /export/dump/{id}`: stop the run, abort the upload, status `cancelled`.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    validate_dump_id(&id)?;
    state.orchestrator.stop(&id).await?;
    let job = cancel_dump(state.objects.as_ref(), state.progress.as_ref(), &id).await?;
    tracing::info!(dump_id = %id, "dump cancelled");
    Ok(view(&job))
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".gz") {
        "application/gzip"
    } else if name.ends_with(".zst") {
        "application/zstd"
    } else if name.ends_with(".csv") {
        "text/csv; charset=utf-8"
    } else if name.ends_with(".json") {
        "application/json"
    } else {
        "application/sql"
    }
}

/// `GET /export/dump/manifest/{id}`: the completed dump's manifest.
pub async fn manifest(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let job = load(&state, &id).await?;
    serve(
        &state,
        &job,
        &crate::manifest::manifest_key(&job.id, job.spec.format),
        req,
    )
    .await
}

async fn serve(
    state: &AppState,
    job: &JobRecord,
    key: &str,
    req: Request,
) -> Result<Response, ApiError> {
    if job.status != JobStatus::Completed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!("dump {} is {}", job.id, job.status.as_str()),
        ));
    }
    if !job.files.iter().any(|f| f.key == key)
        && key != crate::manifest::manifest_key(&job.id, job.spec.format)
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("dump {} has no file {key}", job.id),
        ));
    }
    match state
        .objects
        .download(key, state.settings.download_expiry)
        .await?
    {
        Download::Redirect(url) => Ok(Redirect::temporary(&url).into_response()),
        Download::LocalFile(path) => {
            let res = ServeFile::new(path).oneshot(req).await.map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "io_error", e.to_string())
            })?;
            let mut res = res.map(axum::body::Body::new);
            let name = key.rsplit('/').next().unwrap_or(key);
            let headers = res.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(name)),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(res)
        }
    }
}

/// `GET /export/dump/download/{id}.{ext}`: the SQL or JSON file.
pub async fn download(
    State(state): State<AppState>,
    Path(file): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let id = file.split('.').next().unwrap_or_default();
    let job = load(&state, id).await?;
    if job.spec.format == Format::Csv {
        return Err(ApiError::bad_field(
            "file",
            format!("CSV dumps are one file per table: /export/dump/download/{id}/<table>.csv"),
        ));
    }
    if file != job.output_name() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("dump {id} has no file {file}"),
        ));
    }
    serve(&state, &job, &file, req).await
}

/// `GET /export/dump/download/{id}/{table}.csv`: one table of a CSV dump.
pub async fn download_csv(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let job = load(&state, &id).await?;
    if file.contains('/') || file.starts_with('.') {
        return Err(ApiError::bad_field("file", "invalid file name"));
    }
    serve(&state, &job, &format!("{id}/{file}"), req).await
}

/// Unknown routes: a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
