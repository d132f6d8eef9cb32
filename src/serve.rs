//! `chunkdump serve`: the HTTP API on a local socket, with dumps run in-process by the
//! local runner, configured by the same environment as the Lambda functions.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{router, ApiSettings, AppState, Tokens};
use crate::chunk::ChunkOptions;
use crate::config::Config;
use crate::error::DumpError;
use crate::local::LocalRunner;
use crate::ports::{ObjectStore, ProgressStore, StartGuard};
use crate::tasks::Tasks;

/// Everything `serve` needs besides the stores.
pub struct ServeOptions {
    pub database: String,
    pub listen: String,
    pub config: Config,
    pub part_size: u64,
    /// A schedule to run in-process (`--schedule`), with the tick it runs.
    pub schedule: Option<(
        crate::local::scheduler::ScheduleExpr,
        crate::api::schedule::ScheduledStart,
    )>,
}

/// Reads `CHUNKDUMP_API_TOKEN` (required) and `CHUNKDUMP_API_READ_TOKEN` (optional).
pub fn tokens_from_env() -> Result<Tokens, DumpError> {
    let var = |name: &str| std::env::var(name).ok().filter(|t| !t.is_empty());
    tokens_from(var("CHUNKDUMP_API_TOKEN"), var("CHUNKDUMP_API_READ_TOKEN"))
}

/// The API tokens; without an admin token the API refuses to start.
pub fn tokens_from(admin: Option<String>, read: Option<String>) -> Result<Tokens, DumpError> {
    let admin = admin.filter(|t| !t.is_empty()).ok_or_else(|| {
        DumpError::InvalidRequest("CHUNKDUMP_API_TOKEN is not set (nor the deployment secret's apiToken): refusing to serve the API unauthenticated".into())
    })?;
    Tokens::new(&admin, read.as_deref()).map_err(DumpError::InvalidRequest)
}

/// The API's settings from the environment (rate limits) and the given parts.
pub fn api_settings(
    database: String,
    config: &Config,
    part_size: u64,
    notifier: Option<crate::api::callback::Notifier>,
) -> Result<ApiSettings, DumpError> {
    Ok(ApiSettings {
        database,
        chunk_size: config.chunk_size,
        snapshot: config.snapshot,
        part_size,
        download_expiry: Duration::from_secs(15 * 60),
        notifier,
        rate_limit: crate::api::RateLimit {
            starts: env_number("CHUNKDUMP_RATE_LIMIT_STARTS", 20)?,
            window: Duration::from_secs(env_number("CHUNKDUMP_RATE_LIMIT_WINDOW_SECONDS", 3600)?),
        },
    })
}

fn env_number(name: &str, default: u64) -> Result<u64, DumpError> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| DumpError::InvalidRequest(format!("{name}={v:?} is not a whole number"))),
        _ => Ok(default),
    }
}

/// Serves until Ctrl-C. Prints `listening on http://ADDR` first.
pub async fn serve(
    objects: Arc<dyn ObjectStore>,
    progress: Arc<dyn ProgressStore>,
    guard: Arc<dyn StartGuard>,
    tokens: Tokens,
    opts: ServeOptions,
) -> anyhow::Result<()> {
    // Fail at start-up, not at the first request, if the database is unusable.
    let check = opts.database.clone();
    tokio::task::spawn_blocking(move || crate::engine::open_database(&check).map(drop)).await??;
    let chunk = ChunkOptions {
        budget: opts.config.max_execution,
        snapshot_dir: opts.config.snapshot_dir.clone(),
        upload_concurrency: opts.config.upload_concurrency as usize,
        ..Default::default()
    };
    let notifier = crate::api::callback::Notifier::from_env().map_err(DumpError::InvalidRequest)?;
    let tasks = Tasks {
        objects: objects.clone(),
        progress: progress.clone(),
        notifier: notifier.clone(),
        chunk,
        breathe: opts.config.breathing,
        whole_seconds: false,
        chunks_per_execution: opts.config.chunks_per_execution,
    };
    let runner = LocalRunner::new(tasks)?;
    let settings = api_settings(opts.database, &opts.config, opts.part_size, notifier)?;
    let state = AppState {
        objects,
        progress,
        guard,
        orchestrator: Arc::new(runner),
        tokens,
        settings,
    };
    if let Some((expr, tick)) = opts.schedule {
        tokio::spawn(crate::local::scheduler::run_schedule(
            state.clone(),
            expr,
            tick,
        ));
    }
    let listener = tokio::net::TcpListener::bind(&opts.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
