//! The model: what a dump is and how far it got, as plain data.
//!
//! The job record and everything it holds (spec, statuses, cursor, upload handles and
//! part receipts, callback state). Every other layer depends on this one; it depends on
//! nothing else of the project's, so ports, adapters, the engine's callers, the API and
//! the Lambda functions can all share it without cycles.

mod callback;
mod drill;
mod file_names;
mod job;
mod names;
mod spec;
mod upload;

pub use callback::{CallbackState, CallbackStatus};
pub use drill::{drill_interval, DrillSummary};
pub use file_names::*;
pub use job::*;
pub use names::*;
pub use spec::*;
pub use upload::{PartReceipt, PendingUpload, UploadHandle};
