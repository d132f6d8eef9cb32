//! What a chunk reports: its progress while it runs, and its outcome (why it stopped,
//! where the dump stands, the tail to carry, the digests), built the same way for every
//! format.

use std::sync::Arc;

use super::consistency::change_token;
use super::digest::DigestState;
use super::output::{OutputSink, Tail};
use super::plan::Plan;
use crate::error::DumpError;
use crate::model::{Cursor, DumpSpec};

/// Progress of a chunk, reported after every slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkProgress {
    /// Rows written (by this chunk, or in total once the runner adds the job's count).
    pub rows: u64,
    /// Output bytes produced (after compression), same convention.
    pub bytes: u64,
    /// Rows to dump, when known.
    pub total_rows: Option<u64>,
}

/// Progress callback, called from the export thread.
pub type ProgressFn = Arc<dyn Fn(ChunkProgress) + Send + Sync>;

/// Why a chunk stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEnd {
    /// Every object is finished.
    Done,
    /// The time budget is spent.
    Budget,
    /// A writer held the database locked past the busy timeout.
    Busy,
    /// The schema changed mid-chunk; the next chunk re-plans and checks the fingerprint.
    SchemaMoved,
}

/// What a chunk of export achieved.
#[derive(Debug)]
pub struct ExportOutcome {
    pub cursor: Cursor,
    pub rows: u64,
    pub end: ChunkEnd,
    pub tail: Option<Tail>,
    /// Output bytes produced in this chunk (after compression).
    pub produced: u64,
    pub fingerprint: String,
    pub total_rows: Option<u64>,
    /// Per-table corner cases of the plan (see [`Plan::warnings`]).
    pub warnings: Vec<String>,
    /// The change token this chunk started from (the dump's, for the first chunk).
    pub change_token: String,
    /// The database changed since the dump started (seen by this chunk).
    pub changed: bool,
    pub digests: DigestState,
}

/// What a chunk's loop leaves, for its outcome.
pub(super) struct Ran {
    pub cursor: Cursor,
    pub rows: u64,
    pub end: ChunkEnd,
    pub sink: OutputSink,
    pub warnings: Vec<String>,
    pub digests: DigestState,
}

impl Ran {
    /// The chunk's outcome: the unfinished object's tail, the lines counted, the schema
    /// objects (when the dump is done), and whether the database changed since
    /// `first_change_token` (the dump's, `None` for its first chunk) or during the chunk.
    pub(super) fn outcome(
        self,
        plan: &Plan,
        spec: &DumpSpec,
        first_change_token: Option<String>,
        start_token: String,
        total_rows: Option<u64>,
    ) -> Result<ExportOutcome, DumpError> {
        let Ran {
            cursor,
            rows,
            end,
            sink,
            warnings,
            mut digests,
        } = self;
        if digests.lines.is_some() {
            digests.lines = Some(sink.lines);
        }
        if end == ChunkEnd::Done {
            digests.schema_objects = Some(plan.schema_objects.clone());
            digests.schema_statements = Some(plan.schema_statements.clone());
        }
        let (tail, produced) = sink
            .suspend()
            .map_err(|e| DumpError::Internal(format!("writing output: {e}")))?;
        let first_token = first_change_token.unwrap_or_else(|| start_token.clone());
        let changed = first_token != start_token || change_token(&spec.database) != start_token;
        Ok(ExportOutcome {
            cursor,
            rows,
            end,
            tail,
            produced,
            fingerprint: plan.fingerprint.clone(),
            total_rows,
            warnings,
            change_token: first_token,
            changed,
            digests,
        })
    }
}
