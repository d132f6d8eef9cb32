//! HTTP errors: `{"error":{"code","message","field"?}}` with the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::DumpError;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_string()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = field.into();
        }
        (self.status, Json(serde_json::json!({ "error": error }))).into_response()
    }
}

impl From<DumpError> for ApiError {
    fn from(e: DumpError) -> Self {
        let message = e.to_string();
        match &e {
            DumpError::InvalidField { field, .. } => ApiError::bad_field(field, message),
            DumpError::InvalidRequest(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, e.code(), message)
            }
            DumpError::UnknownDump(_) => ApiError::new(StatusCode::NOT_FOUND, e.code(), message),
            DumpError::WrongState { .. } | DumpError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, e.code(), message)
            }
            _ if e.is_retryable() => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), message)
            }
            _ => {
                tracing::error!(error = %e, "request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), message)
            }
        }
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
