//! The API's state: what every handler shares (the ports, the tokens and the settings),
//! and the application service over it.

use std::sync::Arc;
use std::time::Duration;

use super::auth::Tokens;
use crate::callback;
use crate::ports::{ObjectStore, Orchestrator, ProgressStore, RateCounter, StartGuard};
use crate::service::{Service, ServiceSettings};

/// Server-side settings of the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The database a start dumps when it names none (`CHUNKDUMP_DATABASE`, `--db`).
    pub database: Option<String>,
    /// The directory of databases a start may name (`CHUNKDUMP_DATABASE_ROOT`,
    /// `--database-root`); dumps of them are named `<database>/dump_…`.
    pub database_root: Option<crate::local::DatabaseRoot>,
    /// Default rows per slice (`DUMP_CHUNK_SIZE`).
    pub slice_rows: crate::model::SliceRows,
    /// Default of a request's `snapshot` (`DUMP_SNAPSHOT`).
    pub snapshot: bool,
    pub part_size: u64,
    /// Lifetime of presigned download URLs.
    pub download_expiry: Duration,
    /// Checks and signs completion callbacks; `None` refuses `callbackUrl`.
    pub notifier: Option<callback::Notifier>,
    /// Starts allowed per token per window.
    pub rate_limit: RateLimit,
    /// A fleet's dumps running at once (`CHUNKDUMP_FLEET_CONCURRENCY`).
    pub fleet_concurrency: u32,
    /// How often a fleet looks at a running dump (`CHUNKDUMP_FLEET_POLL_MS`).
    pub fleet_poll: Duration,
    /// The age public keys every dump is encrypted to (`CHUNKDUMP_RECIPIENTS`).
    pub recipients: Vec<String>,
    /// Where an encrypted dump's stream key may be kept.
    pub custody: crate::lifecycle::KeyCustody,
}

impl ApiSettings {
    /// The settings of an API that dumps `database` (and those under `database_root`):
    /// request defaults from the dump settings, limits and part size from the API's own.
    pub fn new(
        database: Option<String>,
        database_root: Option<crate::local::DatabaseRoot>,
        dump: &crate::config::Config,
        api: &crate::config::ApiConfig,
        notifier: Option<callback::Notifier>,
    ) -> Self {
        ApiSettings {
            database,
            database_root,
            slice_rows: dump.slice_rows,
            snapshot: dump.snapshot,
            part_size: api.part_size,
            download_expiry: api.download_expiry,
            notifier,
            rate_limit: RateLimit {
                starts: api.rate_limit_starts,
                window: api.rate_limit_window,
            },
            fleet_concurrency: api.fleet_concurrency,
            fleet_poll: api.fleet_poll,
            recipients: dump.recipients.clone(),
            // Progress shared with other machines (DynamoDB) unless the host says its
            // progress store is local: the stream key only ever wrapped.
            custody: crate::lifecycle::KeyCustody::for_runner(dump.signing_key.as_ref(), false),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub objects: Arc<dyn ObjectStore>,
    pub progress: Arc<dyn ProgressStore>,
    pub guard: Arc<dyn StartGuard>,
    pub rates: Arc<dyn RateCounter>,
    pub orchestrator: Arc<dyn Orchestrator>,
    pub tokens: Tokens,
    pub settings: ApiSettings,
}

impl AppState {
    /// The application service over this state's ports and settings (cheap: shared
    /// handles), which every route's use case runs on.
    pub fn service(&self) -> Service {
        let s = &self.settings;
        Service {
            objects: self.objects.clone(),
            progress: self.progress.clone(),
            guard: self.guard.clone(),
            orchestrator: self.orchestrator.clone(),
            settings: ServiceSettings {
                database: s.database.clone(),
                database_root: s.database_root.clone(),
                slice_rows: s.slice_rows,
                snapshot: s.snapshot,
                part_size: s.part_size,
                notifier: s.notifier.clone(),
                fleet_concurrency: s.fleet_concurrency,
                fleet_poll: s.fleet_poll,
                recipients: s.recipients.clone(),
                custody: s.custody.clone(),
            },
        }
    }
}

/// Starts allowed per token per window.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub starts: u64,
    pub window: Duration,
}
