//! The application service's error: what kind of failure it is (the caller's request,
//! something missing, a conflict with the state of things, a passing fault, a defect),
//! a stable code, a message naming the problem, the request field at fault, and how a
//! state machine should treat a task failing with it. Drivers map it: the HTTP API to a
//! status and a JSON body, the Lambda functions to an error type, the CLI to a message.

use crate::error::DumpError;

/// What kind of failure a [`ServiceError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (a field, a combination); the caller's to fix.
    Invalid,
    /// What the request names does not exist (or is not served here).
    NotFound,
    /// The request is fine but the state of things refuses it now (a dump of the
    /// database is running; the dump has ended).
    Conflict,
    /// A fault outside the request (the store, the orchestrator): try again.
    Unavailable,
    /// A defect.
    Internal,
}

impl ErrorKind {
    /// The HTTP status the API answers it with (also what a scheduled run records).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// A use case that could not be done.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub kind: ErrorKind,
    /// Stable, machine-readable (`invalid_request`, `not_found`, `dump_running`, …).
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, where one is.
    pub field: Option<String>,
    /// How a state machine treats a task failing with it: the `error_type` of the
    /// [`DumpError`] it came from (`Retryable`, `StorageFault`, `Fatal`), else `Fatal`.
    pub error_type: &'static str,
    /// The dump error it came from, if any (boxed: the error stays small).
    #[source]
    pub source: Option<Box<DumpError>>,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        ServiceError {
            kind,
            code,
            message: message.into(),
            field: None,
            error_type: "Fatal",
            source: None,
        }
    }

    /// The request's `field` is wrong: `message` says how.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        ServiceError {
            field: Some(field.to_string()),
            ..ServiceError::new(ErrorKind::Invalid, "invalid_request", message)
        }
    }

    /// Whether a task failing with it should be tried again (a passing fault).
    pub fn is_retryable(&self) -> bool {
        self.error_type == "Retryable"
    }
}

impl From<DumpError> for ServiceError {
    fn from(e: DumpError) -> Self {
        let message = match &e {
            DumpError::Interrupted { .. } => e.to_string(),
            _ => e.public_message(),
        };
        let mut field = None;
        let kind = match &e {
            DumpError::InvalidField { field: f, .. } => {
                field = Some(f.to_string());
                ErrorKind::Invalid
            }
            // The database the request names cannot be dumped (not SQLite, corrupt,
            // unreadable): the caller's to fix, naming the field.
            DumpError::Database { .. } => {
                field = Some("database".into());
                ErrorKind::Invalid
            }
            DumpError::InvalidRequest(_) => ErrorKind::Invalid,
            DumpError::UnknownDump(_) => ErrorKind::NotFound,
            DumpError::WrongState { .. }
            | DumpError::Conflict(_)
            | DumpError::Interrupted { .. } => ErrorKind::Conflict,
            _ if e.is_retryable() || e.pauses_dump() => ErrorKind::Unavailable,
            _ => {
                tracing::error!(error = %e, "request failed");
                ErrorKind::Internal
            }
        };
        let code = match (&e, field.as_deref()) {
            // A bad field is an invalid request, whatever the dump error's own code.
            (_, Some(_)) => "invalid_request",
            _ => e.code(),
        };
        ServiceError {
            kind,
            code,
            message,
            field,
            error_type: e.error_type(),
            source: Some(Box::new(e)),
        }
    }
}

impl From<crate::error::StoreError> for ServiceError {
    fn from(e: crate::error::StoreError) -> Self {
        DumpError::from(e).into()
    }
}

impl From<crate::model::InvalidValue> for ServiceError {
    fn from(e: crate::model::InvalidValue) -> Self {
        ServiceError::bad_field(e.field, e.message)
    }
}

/// Blocking work (file system walks) that panicked or was cancelled: a defect.
impl From<tokio::task::JoinError> for ServiceError {
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "blocking work of a request failed");
        ServiceError::new(ErrorKind::Internal, "internal_error", e.to_string())
    }
}
