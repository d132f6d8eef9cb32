//! The application service: every use case the drivers run, knowing nothing of HTTP,
//! clap or Lambda events. Start a dump (validate, claim the database's one-dump slot,
//! create the job, start its run, fail the job if the run cannot start, hand the slot
//! over: [`start`]), resume an interrupted one ([`runs`]), fleets and their state
//! machine's tasks ([`fleet`], [`fleet_tasks`]) and a schedule's tick ([`schedule`]).
//! It takes the ports it needs and returns [`ServiceError`]; the HTTP API
//! (`crate::api`), `serve`, the CLI and both Lambda functions call it.
//!
//! The whole module needs the `api` feature (its request types carry JSON Schemas for
//! the API's OpenAPI document).

use std::sync::Arc;
use std::time::Duration;

use crate::callback::Notifier;
use crate::local::DatabaseRoot;
use crate::ports::{ObjectStore, Orchestrator, ProgressStore, StartGuard};

pub mod claims;
pub mod error;
pub mod fleet;
pub mod fleet_tasks;
pub mod fleet_views;
pub mod runs;
pub mod schedule;
pub mod start;

pub use error::{ErrorKind, ServiceError};

/// What the use cases run on: the ports, and the deployment's settings.
#[derive(Clone)]
pub struct Service {
    pub objects: Arc<dyn ObjectStore>,
    pub progress: Arc<dyn ProgressStore>,
    /// The one-dump-per-database slots.
    pub guard: Arc<dyn StartGuard>,
    pub orchestrator: Arc<dyn Orchestrator>,
    pub settings: ServiceSettings,
}

/// The settings the use cases read.
#[derive(Clone)]
pub struct ServiceSettings {
    /// The database a start dumps when it names none (`CHUNKDUMP_DATABASE`, `--db`).
    pub database: Option<String>,
    /// The directory of databases a start may name (`CHUNKDUMP_DATABASE_ROOT`,
    /// `--database-root`); dumps of them are named `<database>/dump_…`.
    pub database_root: Option<DatabaseRoot>,
    /// Default rows per slice (`DUMP_CHUNK_SIZE`).
    pub slice_rows: crate::model::SliceRows,
    /// Default of a request's `snapshot` (`DUMP_SNAPSHOT`).
    pub snapshot: bool,
    pub part_size: u64,
    /// Checks and signs callbacks; `None` refuses `callbackUrl`.
    pub notifier: Option<Notifier>,
    /// A fleet's dumps running at once (`CHUNKDUMP_FLEET_CONCURRENCY`).
    pub fleet_concurrency: u32,
    /// How often a fleet looks at a running dump (`CHUNKDUMP_FLEET_POLL_MS`).
    pub fleet_poll: Duration,
    /// The age public keys every dump it starts is encrypted to (`CHUNKDUMP_RECIPIENTS`).
    pub recipients: Vec<String>,
    /// Where an encrypted dump's stream key may be kept.
    pub custody: crate::lifecycle::KeyCustody,
}
