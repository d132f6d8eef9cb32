//! Error types, one per boundary.
//!
//! * [`StoreError`]: what an `ObjectStore` or `ProgressStore` adapter reports.
//! * [`CallbackError`]: why one delivery of a callback failed (a `CallbackSender`).
//! * [`DumpError`]: what the engine and the chunk runner report to their callers (CLI,
//!   HTTP API, Lambda). Every variant knows whether a retry can help
//!   ([`DumpError::is_retryable`]) and has a stable [`DumpError::error_type`] that the
//!   state machine's `Retry`/`Catch` clauses match on.

use thiserror::Error;

/// Why one delivery attempt of a callback failed. Its text is what a job's
/// `callback.lastError` shows: the receiver's origin at most, never the URL's path or
/// query (which often hold a token).
#[derive(Debug, Error)]
pub enum CallbackError {
    /// The stored URL cannot be opened (sealed under another secret, or altered).
    #[error("{0}")]
    Sealed(String),
    /// The URL is not one callbacks may go to (not HTTPS, an internal address, …).
    #[error("{0}")]
    Refused(String),
    /// No HTTP client could be built (the extra CA, the TLS setup).
    #[error("HTTP client: {0}")]
    Client(String),
    /// The request did not get an answer (DNS, connection, TLS, timeout).
    #[error("request to {origin} failed: {cause}")]
    Unreachable { origin: String, cause: String },
    /// The receiver answered, but not with a 2xx.
    #[error("{origin} answered {status}")]
    Answered { origin: String, status: u16 },
}

/// A failure reported by a storage adapter (object store or progress store).
#[derive(Debug, Error)]
pub enum StoreError {
    /// The object, upload or record does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A record with this key already exists (create-only writes).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A conditional write lost: someone else committed first.
    #[error("version conflict on {id}: expected version {expected}")]
    Conflict { id: String, expected: u64 },
    /// The caller broke a store rule (part sizes, key syntax, ...). Never retryable.
    #[error("invalid request to store: {0}")]
    Invalid(String),
    /// A transient failure (timeouts, throttling, 5xx): retrying may succeed.
    #[error("store temporarily unavailable: {0}")]
    Transient(String),
    /// The store cannot take writes now for a reason outside the dump's data (no space
    /// left, a read-only or over-quota file system): retrying at once will not help,
    /// but the dump can pause and resume once the cause is fixed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A permanent failure (permissions, missing bucket, corrupt record, ...).
    #[error("store failure: {0}")]
    Permanent(String),
}

impl StoreError {
    /// The same error with its message passed through `f`.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            StoreError::NotFound(m) => StoreError::NotFound(f(m)),
            StoreError::AlreadyExists(m) => StoreError::AlreadyExists(f(m)),
            StoreError::Invalid(m) => StoreError::Invalid(f(m)),
            StoreError::Transient(m) => StoreError::Transient(f(m)),
            StoreError::Unavailable(m) => StoreError::Unavailable(f(m)),
            StoreError::Permanent(m) => StoreError::Permanent(f(m)),
            conflict @ StoreError::Conflict { .. } => conflict,
        }
    }

    /// Whether a later retry of the same operation can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }

    /// Whether the dump should pause (not fail) when this error outlasts its retries:
    /// the store is down, slow or full, which says nothing about the dump's data.
    pub fn pauses_dump(&self) -> bool {
        matches!(self, StoreError::Transient(_) | StoreError::Unavailable(_))
    }

    /// Classifies a local I/O error: interrupted/timed-out I/O is transient; any other
    /// failure of the store's directory (full, over quota, read-only, permissions, a
    /// directory replaced by a file) makes the store unavailable: it says nothing about
    /// the dump's data, so the dump pauses and resumes once the directory is fixed.
    pub fn from_io(context: &str, err: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match err.kind() {
            NotFound => StoreError::NotFound(format!("{context}: {err}")),
            Interrupted | TimedOut | WouldBlock => {
                StoreError::Transient(format!("{context}: {err}"))
            }
            _ => StoreError::Unavailable(format!("{context}: {err}")),
        }
    }
}

/// A failure of a dump, as seen by the CLI, the API and the Lambda functions.
#[derive(Debug, Error)]
pub enum DumpError {
    /// The request itself is wrong (bad flag, unknown table, bad id). Maps to HTTP 4xx.
    #[error("{0}")]
    InvalidRequest(String),
    /// One field of the request is wrong (`tables` names a missing table, `id` is not a
    /// dump id, ...). Maps to HTTP 400 naming the field.
    #[error("{message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    /// The dump id does not exist.
    #[error("no dump with id {0:?}")]
    UnknownDump(String),
    /// The database cannot be opened or read (missing, not SQLite, corrupt, ...).
    #[error("database {path}: {message}")]
    Database { path: String, message: String },
    /// The database was locked by a writer for longer than the busy timeout. A chunk's
    /// work is committed up to the last slice, so the chunk is retried after a pause; a
    /// dump refused at its start was never created.
    #[error(
        "the database stayed locked by a writer for longer than the busy timeout; try again later"
    )]
    DatabaseBusy,
    /// The schema of the dumped objects changed after the dump started.
    #[error("the database schema changed while the dump was running ({0}); start a new dump")]
    SchemaChanged(String),
    /// Another run committed this dump's progress first.
    #[error("dump {0} was advanced concurrently by another run")]
    Conflict(String),
    /// The dump is not in a state that allows the operation (e.g. resume a failed dump).
    #[error("dump {id} is {status}: {message}")]
    WrongState {
        id: String,
        status: crate::model::JobStatus,
        message: String,
    },
    /// The run of the dump gave up (retries exhausted, the function crashed or timed
    /// out): `error` is the error name the orchestrator caught.
    #[error("the dump run failed ({error}): {message}")]
    RunFailed { error: String, message: String },
    /// An object or progress store failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A rollback-journal database kept changing while it was copied in steps, and a copy
    /// in one read transaction would hold writers off longer than allowed.
    #[error(
        "this {size_mb} MB rollback-journal database kept changing while it was copied in steps, \
         and a snapshot in one read transaction would hold writers off for about {projected_ms} ms, \
         more than snapshotMaxBlockMs={max_block_ms}; take the snapshot when writes pause, raise snapshotMaxBlockMs \
         (--snapshot-max-block-ms), dump live without a snapshot, or switch the database to WAL mode, \
         where a snapshot never blocks writers"
    )]
    SnapshotTooSlow {
        size_mb: u64,
        max_block_ms: u64,
        projected_ms: u64,
    },
    /// The dump paused after a fault outside its data (see [`DumpError::pauses_dump`]);
    /// `resume` continues it from its last committed chunk.
    #[error("dump {id} is interrupted: {message}")]
    Interrupted { id: String, message: String },
    /// An age key or encrypted object that cannot be used: no identity given, the wrong
    /// one, a key that does not parse, an altered file.
    #[error("{0}")]
    Encryption(#[from] crate::encryption::EncryptionError),
    /// A bug or an unexpected condition.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DumpError {
    /// Whether retrying the same chunk later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DumpError::DatabaseBusy | DumpError::Conflict(_) => true,
            DumpError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether the dump pauses (status `interrupted`, everything committed kept) rather
    /// than fails when this error outlasts its retries: a fault outside the data (the
    /// store down, slow or full; the database locked by a writer). Faults of the data
    /// itself (a corrupt database, a changed schema) fail the dump.
    pub fn pauses_dump(&self) -> bool {
        match self {
            DumpError::DatabaseBusy => true,
            // A chunk that cannot open its stream key (the signing key missing or
            // rotated): the dump is whole; it goes on once the key is back.
            DumpError::Encryption(crate::encryption::EncryptionError::Unusable(_)) => true,
            DumpError::Store(e) => e.pauses_dump(),
            _ => false,
        }
    }

    /// Stable error name for Step Functions `Retry`/`Catch`: `Retryable` (retried; the
    /// dump pauses if it outlasts the retries), `StorageFault` (not retried; the dump
    /// pauses at once) or `Fatal` (the dump fails).
    pub fn error_type(&self) -> &'static str {
        if self.is_retryable() {
            "Retryable"
        } else if self.pauses_dump() {
            "StorageFault"
        } else {
            "Fatal"
        }
    }

    /// The message as callers of the API and readers of a job record see it: a database
    /// is named by its file name, never by its path on the server (which is the server's
    /// business). The command line prints [`std::fmt::Display`]'s full path itself.
    pub fn public_message(&self) -> String {
        match self {
            DumpError::Database { path, message } => {
                let name = std::path::Path::new(path)
                    .file_name()
                    .map_or_else(|| "(unnamed)".into(), |n| n.to_string_lossy().into_owned());
                format!("database {name}: {}", message.replace(path.as_str(), &name))
            }
            DumpError::Interrupted { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Short machine-readable code, used in job records and HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            DumpError::InvalidRequest(_) | DumpError::InvalidField { .. } => "invalid_request",
            DumpError::UnknownDump(_) => "not_found",
            DumpError::Database { .. } => "database_error",
            DumpError::DatabaseBusy => "database_busy",
            DumpError::SchemaChanged(_) => "schema_changed",
            DumpError::Conflict(_) => "conflict",
            DumpError::WrongState { .. } => "wrong_state",
            DumpError::RunFailed { .. } => "run_failed",
            DumpError::Store(_) => "storage_error",
            DumpError::SnapshotTooSlow { .. } => "snapshot_too_slow",
            DumpError::Interrupted { .. } => "interrupted",
            DumpError::Encryption(crate::encryption::EncryptionError::Unusable(_)) => {
                "invalid_request"
            }
            DumpError::Encryption(_) => "encryption_error",
            DumpError::Internal(_) => "internal_error",
        }
    }

    /// Wraps a rusqlite error for the database at `path`, recognising "busy".
    pub fn from_sqlite(path: &str, err: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(e, _) = &err {
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) {
                return DumpError::DatabaseBusy;
            }
            // No space for a snapshot copy or SQLite's temporary files: nothing wrong
            // with the data; the dump pauses until there is space.
            if e.code == rusqlite::ErrorCode::DiskFull {
                return DumpError::Store(StoreError::Unavailable(format!("{path}: {err}")));
            }
        }
        DumpError::Database {
            path: path.to_string(),
            message: err.to_string(),
        }
    }
}

impl From<crate::model::InvalidValue> for DumpError {
    fn from(e: crate::model::InvalidValue) -> Self {
        DumpError::InvalidField {
            field: e.field,
            message: e.message,
        }
    }
}
