//! chunkdump: dump SQLite databases of any size to object storage in resumable,
//! time-boxed chunks.
//!
//! Modules in code spans are private (internals); linked ones are public, for the
//! binaries and tests.
//!
//! Layers: every module imports only modules of lower layers (the map in
//! docs/architecture.md, kept true by `scripts/check-architecture`):
//!
//! 0. [`model`] (the job record and what it holds), [`encryption`] (age, client side),
//!    `alloc`, [`execution`] (execution
//!    names).
//! 1. [`config`] (every setting, in the model's types), [`error`] (the error type of
//!    each boundary), `views` (status and callback bodies).
//! 2. [`ports`] (`ObjectReader`, `DownloadLinks`, `ObjectStore`, `ProgressReader`, `ProgressStore`, `StartGuard`,
//!    `RateCounter`, `CallbackSender`, `Orchestrator`),
//!    [`engine`] (the pure export engine: rusqlite, no storage types), [`asl`] (the
//!    state machine interpreter).
//! 3. Adapters and building blocks: [`local`] (directory, SQLite file, run locks),
//!    [`cloud`] (S3/R2, DynamoDB, Step Functions, the secret), `uploader`,
//!    `manifest`, [`callback`] (signed HTTPS callbacks).
//! 4. to 7. The application: [`lifecycle`] (every write to a job record),
//!    `readback`, [`rekey`] (new recipients for an encrypted dump); [`chunk`] (one time-boxed chunk), `verify`, `retention`; [`drill`]
//!    (restore drills), [`service`] (the application service: every use case the
//!    drivers run); [`tasks`] (the state machine's tasks).
//! 7. to 10. Drivers: [`api`] (the HTTP API); [`runner`] (the in-process runner of
//!    `statemachine.json`), [`lambda`]; [`serve`]; [`cli`].
//!
//! Cargo features choose the surfaces: `aws` (S3/R2, DynamoDB, Secrets Manager: `cloud`,
//! `lambda`), `sfn` (the Step Functions orchestrator), `api` (the axum router, all of
//! [`api`]) and `cli` (the command line and `serve`; needs the others). The default is
//! everything; both Lambda functions build with `aws`, `sfn` and `api`.

#[cfg(any(feature = "cli", feature = "aws"))]
mod alloc;
#[cfg(feature = "api")]
pub mod api;
pub mod asl;
pub mod callback;
pub mod chunk;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "aws")]
pub mod cloud;
pub mod config;
pub mod drill;
pub mod encryption;
pub mod engine;
pub mod error;
pub mod execution;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod lifecycle;
pub mod local;
pub mod logging;
mod manifest;
pub mod model;
pub mod ports;
mod readback;
pub mod rekey;
mod restore;
mod retention;
pub mod runner;
#[cfg(feature = "cli")]
pub mod serve;
#[cfg(feature = "api")]
pub mod service;
pub mod tasks;
mod uploader;
mod verify;
mod views;

pub use error::{DumpError, StoreError};
