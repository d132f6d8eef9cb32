//! The application layer: every write to a dump's job record is made here.
//!
//! ```text
//! create_dump ──> pending ──first chunk starts──> processing ──last chunk──> completed
//!                    │                              │  ▲
//!                    │            interrupt_dump    ▼  │ resume_dump
//!                    │                          interrupted
//!                    └── fail_job / fail_dump / cancel_dump ──> failed | cancelled
//! ```
//!
//! [`create`](create_dump) writes the first record (with its callback and schedule);
//! [`record_started`] the first chunk's start (`processing`, `startedAt`), before any
//! work; [`record_snapshot`] the snapshot copy's path; [`record_drill`] a completed
//! dump's last restore drill; a chunk commits through
//! `record_chunk` (its staging object, the record one version up, then the old staging
//! objects); [`deliver_callback`] the callback's state after each attempt; a dump that
//! ends early (failed or cancelled) ends through one function,
//! which commits the end and then removes everything the dump wrote, so no partial dump
//! is left looking complete; a dump paused by a fault outside its data keeps all it
//! wrote ([`interrupt_dump`], [`resume_dump`]).

use crate::error::DumpError;

mod create;
mod ending;
mod notify;
mod pause;
mod staging;

pub use create::{
    create_dump, create_dump_as, record_drill, record_snapshot, record_started, KeyCustody, NewDump,
};
pub use ending::{
    abort_abandoned_uploads, cancel_dump, delete_completed, fail_dump, fail_job, refuse_failed,
    remove_after_end, remove_snapshot, tidy_completed,
};
pub use notify::{deliver_callback, send_with_retries};
pub use pause::{interrupt_dump, is_interrupted, resume_dump};
pub(crate) use staging::{read_staged, record_chunk, CommitKeys};

/// Commits `next`, one version up from `job`: a lost race (someone committed first) is
/// [`DumpError::Conflict`].
async fn commit_next(
    progress: &dyn crate::ports::ProgressStore,
    job: &crate::model::JobRecord,
    next: &crate::model::JobRecord,
) -> Result<(), DumpError> {
    progress
        .commit(next, job.version)
        .await
        .map_err(|e| match e {
            crate::error::StoreError::Conflict { .. } => DumpError::Conflict(job.id.clone()),
            other => other.into(),
        })
}
