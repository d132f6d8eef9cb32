//! The pure export engine: rusqlite and the output channel, no storage or cloud types.
//!
//! [`plan`] turns the schema into objects and steps, [`render`] encodes values,
//! [`output`] cuts bytes into fixed-size parts, [`export`] runs one chunk.

pub mod consistency;
pub mod digest;
pub mod export;
pub mod large;
pub mod output;
pub mod plan;
pub mod plan_cache;
pub mod real;
pub mod render;
mod slice;
pub mod snapshot;
pub mod table;

pub use export::{
    open_database, run_export, validate, ChunkEnd, ChunkProgress, ExportInput, ExportOutcome,
    ProgressFn,
};
pub use output::{BufferPool, PartBuf, Tail, UploadEvent};
