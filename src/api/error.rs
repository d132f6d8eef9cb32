//! HTTP errors: `{"error":{"code","message","field"?}}` with the right status, for every
//! error the API answers, also those axum makes itself (405, a path that is not UTF-8, a
//! request timeout): [`json_error_bodies`] rewrites any other error body.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::DumpError;
use crate::service::error::ServiceError;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// How a state machine should treat it when a task (a fleet task, a scheduled
    /// start) fails with it: the `error_type` of the [`DumpError`] it came from
    /// (`Retryable`, `StorageFault`, `Fatal`), else `Fatal`: a request's own fault is not
    /// retried.
    pub error_type: &'static str,
}

/// The error code of a status whose answer names no more particular one: the same
/// code whichever layer (the router, a body extractor, a handler) answers it.
pub(super) fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::RANGE_NOT_SATISFIABLE => "range_not_satisfiable",
        s if s.is_server_error() => "internal_error",
        _ => "invalid_request",
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            error_type: "Fatal",
        }
    }

    /// Whether a task failing with it should be tried again (a passing fault).
    pub fn is_retryable(&self) -> bool {
        self.error_type == "Retryable"
    }

    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_string()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }

    /// A query string that does not parse (`?limit=abc`): 400 naming the parameter.
    pub fn bad_query(rejection: axum::extract::rejection::QueryRejection) -> Self {
        let text = rejection.body_text();
        ApiError {
            field: field_named_in(&text),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", text)
        }
    }
}

/// The field serde's message about a request names, if any: `unknown field `x``,
/// `missing field `x``, or the path before the error (`limit: invalid digit …`).
pub(crate) fn field_named_in(text: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = text.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    let detail = text
        .rsplit("target type: ")
        .next()
        .unwrap_or("")
        .rsplit("query string: ")
        .next()
        .unwrap_or("");
    detail
        .split_once(": ")
        .map(|(path, _)| path.to_string())
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '.'))
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`invalid_request`, `not_found`, `conflict`, …).
    pub code: String,
    pub message: String,
    /// The request field at fault, where one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field.map(|f| f.to_string()),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Gives every error answer the JSON error body: axum's own (405 with no body, a path
/// rejection in plain text, a 408 from the timeout layer) are rewritten, keeping their
/// status, their `Allow` header and their text as the message.
pub async fn json_error_bodies(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let code = code_of(status);
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut rewritten = ApiError::new(status, code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::CONTENT_RANGE] {
        if let Some(v) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, v.clone());
        }
    }
    rewritten
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError {
            status: StatusCode::from_u16(e.kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: e.code,
            message: e.message,
            field: e.field,
            error_type: e.error_type,
        }
    }
}

impl From<DumpError> for ApiError {
    fn from(e: DumpError) -> Self {
        ServiceError::from(e).into()
    }
}

/// Blocking work (file system walks) that panicked or was cancelled: a server error.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "blocking work of a request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )
    }
}

impl From<crate::error::StoreError> for ApiError {
    fn from(e: crate::error::StoreError) -> Self {
        DumpError::from(e).into()
    }
}

impl From<crate::model::InvalidValue> for ApiError {
    fn from(e: crate::model::InvalidValue) -> Self {
        ApiError::bad_field(e.field, e.message)
    }
}
