//! Route handlers: validate, call the runner and stores, answer JSON.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::error::ApiError;
use super::AppState;
use crate::model::{DumpId, Format, JobRecord, JobStatus};
use crate::ports::Download;
use crate::service::runs::{is_interrupted, resume_call};
use crate::service::start::{start_dump, StartRequest};
use crate::views::{DumpSummary, StartAccepted, StatusView};

/// Turns axum's JSON rejections into our errors, naming the offending field.
fn json_error(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    let field = super::error::field_named_in(&text);
    let status = match rejection {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError {
        field,
        ..ApiError::new(status, super::error::code_of(status), text)
    }
}

/// `POST /export/dump`: validate, create the job, start its run; 202.
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<super::limits::Caller>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<Response, Response> {
    let Json(req) = body.map_err(|e| json_error(e).into_response())?;
    // A bad body is a 400 before it costs a start or meets a running dump.
    req.validate()
        .map_err(|e| ApiError::from(e).into_response())?;
    let counted = super::limits::count_start(&state, &caller).await?;
    match start_dump(&state.service(), req, None).await {
        Ok(job) => Ok((StatusCode::ACCEPTED, Json(StartAccepted::new(&job.id))).into_response()),
        Err(e) => {
            // Only accepted starts count against the limit.
            counted.give_back(&state).await;
            Err(ApiError::from(e).into_response())
        }
    }
}

async fn load(state: &AppState, id: &str) -> Result<JobRecord, ApiError> {
    let id = DumpId::parse(id)?;
    Ok(state.progress.require(&id).await?)
}

/// A dump's status as the API answers it.
fn view(job: &JobRecord) -> Response {
    Json(StatusView::new(job, chrono::Utc::now()).with_urls(job)).into_response()
}

/// `GET /export/dump/status/{id}`: the job record (and, for an unfinished dump, whether
/// its run is alive), fast whatever the size.
pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    super::runs::status_view(&state, &load(&state, &id).await?).await
}

/// The answer of `GET /export/dump`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DumpList<'a> {
    /// The 50 newest dumps.
    pub dumps: Vec<DumpSummary<'a>>,
    /// Recent ticks of the schedules.
    pub scheduled_runs: Vec<crate::service::schedule::ScheduledRun>,
    /// Records of scheduled runs that could not be read (corrupt or not chunkdump's),
    /// each named; absent when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable_scheduled_runs: Option<Vec<String>>,
}

/// `GET /export/dump`: the 50 most recent dumps.
pub async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let jobs = state.progress.list_recent(50).await?;
    let mut dumps: Vec<DumpSummary> = jobs.iter().map(DumpSummary::from).collect();
    for (dump, job) in dumps.iter_mut().zip(&jobs) {
        if is_interrupted(&state.service(), job).await? {
            dump.status = JobStatus::Interrupted;
        }
    }
    let (scheduled_runs, unreadable_scheduled_runs) =
        crate::service::schedule::recent_runs(&state.service()).await?;
    Ok(Json(DumpList {
        dumps,
        scheduled_runs,
        unreadable_scheduled_runs: (!unreadable_scheduled_runs.is_empty())
            .then_some(unreadable_scheduled_runs),
    })
    .into_response())
}

/// `DELETE /export/dump/{id}`: stop the run, abort the upload, status `cancelled`.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = crate::service::runs::cancel(&state.service(), &DumpId::parse(id)?).await?;
    Ok(view(&job))
}

fn content_type(name: &str) -> &'static str {
    // An encrypted file is an age file, whatever it holds (age has no media type).
    if name.ends_with(".age") {
        "application/octet-stream"
    } else if name.ends_with(".gz") {
        "application/gzip"
    } else if name.ends_with(".zst") {
        "application/zstd"
    } else if name.ends_with(".parquet") {
        "application/vnd.apache.parquet"
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
        // Say what the status route says: a dump whose run is gone is interrupted,
        // whatever its record last said.
        let message = if is_interrupted(&state.service(), job).await? {
            format!(
                "dump {} is interrupted: resume it ({}) or cancel it",
                job.id,
                resume_call(&job.id)
            )
        } else {
            format!("dump {} is {}", job.id, job.status.as_str())
        };
        return Err(ApiError::new(StatusCode::CONFLICT, "not_ready", message));
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
    let Some(links) = state.objects.links() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "this server's store cannot serve downloads",
        ));
    };
    match links.download(key, state.settings.download_expiry).await? {
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
    match job.spec.format {
        Format::Csv => {
            return Err(ApiError::bad_field(
                "file",
                format!("CSV dumps are one file per table: /export/dump/download/{id}/<table>.csv"),
            ))
        }
        Format::Parquet => {
            return Err(ApiError::bad_field(
                "file",
                format!("Parquet dumps are files per table: their URLs are the status's downloadUrl (/export/dump/download/{id}/<table>%2Fpart-00001.parquet)"),
            ))
        }
        Format::Sql | Format::Json => {}
    }
    // A JSON dump's schema file (beside it) is part of it: a restore needs it.
    let schema = (job.spec.format == Format::Json).then(|| {
        crate::model::schema_key(
            &job.id,
            job.spec.format,
            crate::model::Encoding::of(&job.spec),
        )
    });
    if file != job.output_name() && Some(&file) != schema.as_ref() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("dump {id} has no file {file}"),
        ));
    }
    serve(&state, &job, &file, req).await
}

/// `GET /export/dump/download/{id}/{table}.csv`: one table of a CSV dump; or
/// `…/{id}/{table}%2Fpart-00001.parquet`, one file of a Parquet dump.
pub async fn download_csv(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let job = load(&state, &id).await?;
    let key = format!("{id}/{file}");
    // A Parquet table's file is `<table>/part-….parquet`: one of the files the dump lists.
    let listed = job.spec.format == Format::Parquet && job.files.iter().any(|f| f.key == key);
    if !listed && (file.contains('/') || file.starts_with('.')) {
        return Err(ApiError::bad_field("file", "invalid file name"));
    }
    serve(&state, &job, &key, req).await
}

/// Unknown routes: a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
