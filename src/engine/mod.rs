//! The pure export engine: rusqlite and the output channel, no storage or cloud types.
//!
//! [`plan`] turns the schema into objects and steps, [`render`] encodes values,
//! [`output`] cuts bytes into fixed-size parts (in `buffers` a pool lends), [`export`]
//! runs one chunk, reading slices of rows (`slice`) on one thread and rendering them on
//! another (`pipe`, the reader's end; `worker`, the renderer); `count` totals the rows.

mod buffers;
pub mod census;
pub mod consistency;
mod count;
pub mod digest;
mod encoder;
pub mod export;
mod generated;
pub mod large;
pub mod outcome;
pub mod output;
pub mod parquet;
pub mod pinned;
mod pipe;
pub mod plan;
pub mod plan_cache;
pub mod real;
pub mod render;
mod schema;
pub(crate) use schema::has_integer_key;
mod slice;
pub mod snapshot;
mod source;
pub mod table;
mod worker;

pub use export::{
    open_database, open_pinned, run_export, validate, ChunkEnd, ChunkProgress, ExportInput,
    ExportOutcome, ProgressFn,
};
pub use output::{AgeTail, BufferPool, PartBuf, Tail, UploadEvent, FRAME_BYTES};
pub use render::quote_ident;
pub use source::JSON_ROWID;
