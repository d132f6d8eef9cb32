//! The embedded defaults' stores: a local directory as the object store, a SQLite file
//! as the progress store, and the run locks that tell a live local run from a lost one.
//! No server, no cloud account. (The in-process runner is [`crate::runner`].) And a
//! directory of databases a server may dump ([`DatabaseRoot`]).

mod database_root;
mod dir_store;
pub mod permissions;
pub mod run_lock;
mod sqlite_progress;

pub use database_root::{DatabaseRoot, RootDatabase, RootError};
pub use dir_store::DirStore;
pub use sqlite_progress::SqliteProgress;

/// Runs blocking file or SQLite work off the async runtime's worker threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::error::StoreError> + Send + 'static,
) -> Result<T, crate::error::StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::StoreError::Permanent(format!("blocking task failed: {e}")))?
}
