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

pub mod alloc;
pub mod api;
pub mod asl;
pub mod chunk;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod engine;
pub mod error;
pub mod execution;
pub mod lambda;
pub mod lifecycle;
pub mod local;
pub mod manifest;
pub mod model;
pub mod ports;
pub mod retention;
pub mod serve;
pub mod tasks;
pub mod uploader;
pub mod verify;

pub use error::{DumpError, StoreError};
