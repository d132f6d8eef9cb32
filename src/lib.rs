//! chunkdump: dump SQLite databases of any size to object storage in resumable,
//! time-boxed chunks.
//!
//! Layers, each depending only on those above it:
//!
//! * [`model`]: the job record and what it holds (statuses, cursor, upload handles,
//!   receipts, callback state); depends on nothing else of the project's. [`error`]:
//!   the error type of each boundary.
//! * [`ports`]: the interfaces to what a dump runs on (`ObjectStore`, `ProgressStore`,
//!   `StartGuard`, `Orchestrator`). [`engine`]: the pure export engine (rusqlite, no
//!   storage types).
//! * [`lifecycle`] (every status change of a job), [`chunk`] (one time-boxed chunk),
//!   [`uploader`], [`manifest`], [`tasks`] (the state machine's tasks) and
//!   [`execution`] (execution names), [`retention`], [`verify`].
//! * Adapters: [`local`] (directory, SQLite file, the in-process runner of
//!   `statemachine.json` with [`asl`]) and [`cloud`] (S3/R2, DynamoDB, Step Functions).
//! * Surfaces: [`api`] (the HTTP API, its answers and callbacks), [`serve`], [`lambda`]
//!   and [`cli`], configured by [`config`].
//!
//! Cargo features choose the surfaces, so each Lambda function builds only what it runs:
//! `aws` (S3/R2, DynamoDB, Secrets Manager: `cloud`, `lambda`), `sfn` (the Step
//! Functions orchestrator), `api` (the axum router) and `cli` (the command line and
//! `serve`; needs the others). The default is everything; `functions/chunk` uses `aws`
//! alone, `functions/api` `aws`, `sfn` and `api`.

pub mod alloc;
pub mod api;
pub mod asl;
pub mod chunk;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "aws")]
pub mod cloud;
pub mod config;
pub mod engine;
pub mod error;
pub mod execution;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod lifecycle;
pub mod local;
pub mod manifest;
pub mod model;
pub mod ports;
pub mod readback;
pub mod retention;
#[cfg(feature = "cli")]
pub mod serve;
pub mod tasks;
pub mod uploader;
pub mod verify;

pub use error::{DumpError, StoreError};
