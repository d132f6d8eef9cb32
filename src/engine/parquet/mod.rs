//! Parquet dumps: per table, files of typed columns that DuckDB, Polars and pyarrow query
//! where they lie, and that restore exactly. [`layout`] types each column by the storage
//! classes it holds, [`writer`] gathers rows into row groups, [`chunk`] runs one chunk.

pub mod chunk;
pub mod file_thread;
pub mod layout;
pub mod writer;

pub use chunk::ParquetChunk;
pub use layout::{ColumnLayout, TableLayout, METADATA_KEY};
