//! `chunkdump serve`: the HTTP API on a local socket, with dumps run in-process by the
//! local runner, configured by the same environment as the Lambda functions, and the
//! clock that runs a schedule in-process ([`scheduler`]).

pub mod listener;
pub mod scheduler;

use std::sync::Arc;

use crate::api::{router, ApiSettings, AppState, Tokens};
use crate::callback::Notifier;
use crate::config::{ApiConfig, CallbackConfig, Config};
use crate::ports::{ObjectStore, ProgressStore, RateCounter, StartGuard};
use crate::runner::LocalRunner;
use crate::tasks::Tasks;

/// Everything `serve` needs besides the stores.
pub struct ServeOptions {
    /// The database a start dumps when it names none.
    pub database: Option<String>,
    /// The directory of databases a start may name.
    pub database_root: Option<crate::local::DatabaseRoot>,
    pub listen: String,
    pub config: Config,
    /// Rate limits and part size (the CLI's `--part-size` sets the part size).
    pub api: ApiConfig,
    /// Callback delivery, and its signing secret (`CHUNKDUMP_CALLBACK_SECRET`).
    pub callbacks: CallbackConfig,
    pub callback_secret: Option<String>,
    /// Where runs hold their run locks (the store's), so a second server on the same
    /// store sees this one's runs alive however quiet they are.
    pub lock_dir: Option<std::path::PathBuf>,
    /// Whether the progress store is a local file beside the dumps (an encrypted dump's
    /// stream key may then be kept there unwrapped; see `crate::encryption`).
    pub local_progress: bool,
    /// Header and request timeouts, and the connection cap, of the HTTP listener.
    pub listener: crate::config::ListenerConfig,
    /// A schedule to run in-process (`--schedule`), with the tick it runs.
    pub schedule: Option<(
        crate::serve::scheduler::ScheduleExpr,
        crate::service::schedule::ScheduledStart,
    )>,
}

/// Serves until Ctrl-C. Prints `listening on http://ADDR` first.
pub async fn serve(
    objects: Arc<dyn ObjectStore>,
    progress: Arc<dyn ProgressStore>,
    guard: Arc<dyn StartGuard>,
    rates: Arc<dyn RateCounter>,
    tokens: Tokens,
    opts: ServeOptions,
) -> anyhow::Result<()> {
    // Fail at start-up, not at the first request, if the database is unusable.
    if let Some(check) = opts.database.clone() {
        tokio::task::spawn_blocking(move || crate::engine::open_database(&check).map(drop))
            .await??;
    }
    let notifier = Notifier::from_config(opts.callback_secret.as_deref(), &opts.callbacks)?;
    let tasks = Tasks::from_config(
        objects.clone(),
        progress.clone(),
        notifier
            .clone()
            .map(|n| Arc::new(n) as Arc<dyn crate::ports::CallbackSender>),
        &opts.config,
    );
    let mut runner = LocalRunner::new(tasks)?;
    if let Some(dir) = opts.lock_dir {
        runner = runner.with_run_locks(dir);
    }
    let mut settings = ApiSettings::new(
        opts.database,
        opts.database_root,
        &opts.config,
        &opts.api,
        notifier,
    );
    settings.custody = crate::lifecycle::KeyCustody::for_runner(
        opts.config.signing_key.as_ref(),
        opts.local_progress,
    );
    let runner = Arc::new(runner);
    let state = AppState {
        objects,
        progress,
        guard,
        rates,
        orchestrator: runner.clone(),
        tokens,
        settings,
    };
    // Fleets run in-process too: their tasks start dumps through this same state.
    let service = state.service();
    runner.run_fleets_with(Arc::new(crate::service::fleet_tasks::FleetTasks {
        service: service.clone(),
    }));
    // A fleet that was running when an earlier server stopped goes on (and ends).
    if service.settings.database_root.is_some() {
        match crate::service::fleet::resume_running_fleets(&service).await {
            Ok(resumed) if !resumed.is_empty() => {
                tracing::info!(fleets = ?resumed, "fleets resumed")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot resume running fleets"),
        }
    }
    if let Some((expr, tick)) = opts.schedule {
        let drills = crate::drill::DrillSettings::from_config(&opts.config, Some("a drill here"));
        tokio::spawn(crate::serve::scheduler::run_schedule(
            service.clone(),
            expr,
            tick,
            drills,
        ));
    }
    let listener = tokio::net::TcpListener::bind(&opts.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    listener::serve_with_limits(listener, router(state), opts.listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
