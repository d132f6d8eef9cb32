//! chunkdump: dump SQLite databases of any size to object storage in resumable,
//! time-boxed chunks.
//!
//! * [`engine`]: the pure export engine (rusqlite, no storage types).
//! * [`ports`]: the `ObjectStore` and `ProgressStore` interfaces; [`local`] holds their
//!   embedded adapters (a directory and a SQLite file).
//! * [`runner`]: creating jobs, running chunks.
//! * [`tasks`]: the state machine's tasks; [`asl`] interprets `statemachine.json` locally
//!   and [`orchestrator`] runs dumps through it (or through Step Functions).
//! * [`cli`]: the `chunkdump` command line.

pub mod alloc;
pub mod api;
pub mod asl;
pub mod callback;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod engine;
pub mod error;
pub mod job;
pub mod lambda;
pub mod local;
pub mod manifest;
pub mod orchestrator;
pub mod ports;
pub mod retention;
pub mod runner;
pub mod serve;
pub mod tasks;
pub mod uploader;
pub mod verify;

pub use error::{DumpError, StoreError};
