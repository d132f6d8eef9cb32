//! Wiring of the two Lambda functions from their settings (see [`crate::config`] for
//! every variable), kept in the library so the binaries stay thin and the wiring is
//! tested.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

#[cfg(all(feature = "api", feature = "sfn"))]
use crate::api::{ApiSettings, AppState, Tokens};
use crate::callback::Notifier;
#[cfg(all(feature = "api", feature = "sfn"))]
use crate::cloud::SfnOrchestrator;
use crate::cloud::{load_aws_config, load_secrets, DynamoProgress, S3Store, Secrets};
use crate::config::{ApiConfig, CallbackConfig, Config, ConfigError, Deployment, Env};
use crate::error::StoreError;
use crate::tasks::Tasks;

/// Time the chunk function keeps for itself after its export stops: uploading the last
/// part, writing the staging object and committing the job.
pub const COMMIT_MARGIN: Duration = Duration::from_secs(5);

/// Why a function could not start (its cold start fails, and Lambda reports it).
#[derive(Debug, Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot set up a store: {0}")]
    Store(#[from] StoreError),
}

/// The shared pieces both functions build once per cold start.
pub struct Common {
    pub aws: aws_config::SdkConfig,
    pub secrets: Secrets,
    pub objects: Arc<S3Store>,
    pub progress: Arc<DynamoProgress>,
    pub config: Config,
    pub deployment: Deployment,
    pub api: ApiConfig,
    pub notifier: Option<Notifier>,
}

/// Loads settings, secrets and clients (once, in `main`).
pub async fn common_from_env() -> Result<Common, StartupError> {
    let env = Env::process();
    let config = Config::read(&env)?;
    let deployment = Deployment::read(&env)?;
    let api = ApiConfig::read(&env)?;
    let callbacks = CallbackConfig::read(&env);
    let aws = load_aws_config().await;
    let secrets = load_secrets(&aws, deployment.secret_arn.as_deref()).await?;
    let objects = S3Store::with_access(&aws, &deployment.store, secrets.r2()?.as_ref())?;
    let progress = DynamoProgress::new(&aws, &deployment.progress)?;
    let notifier = Notifier::from_config(secrets.callback_secret.as_deref(), &callbacks)?;
    Ok(Common {
        aws,
        secrets,
        objects: Arc::new(objects),
        progress: Arc::new(progress),
        config,
        deployment,
        api,
        notifier,
    })
}

/// Tunes the allocator as the CLI does, so a chunk's part buffers go back to the OS when
/// freed (see `alloc`). Call first in `main`, before any thread starts.
pub fn tune_allocator() {
    crate::alloc::keep_large_buffers_off_the_heap();
}

/// The chunk function's task handlers: whole-second breaths for the `Wait` state.
pub fn chunk_tasks(common: &Common) -> Tasks {
    Tasks {
        whole_seconds: true,
        ..Tasks::from_config(
            common.objects.clone(),
            common.progress.clone(),
            common.notifier.clone(),
            &common.config,
        )
    }
}

/// The API function's state: the same Router as `chunkdump serve`, with Step Functions
/// as the orchestrator.
#[cfg(all(feature = "api", feature = "sfn"))]
pub fn api_state(common: &Common) -> Result<AppState, StartupError> {
    let orchestrator = SfnOrchestrator::new(&common.aws, common.deployment.state_machine_arn()?)?;
    let tokens = Tokens::from_secrets(&common.secrets)?;
    let settings = ApiSettings::new(
        common.deployment.database()?.to_string(),
        &common.config,
        &common.api,
        common.notifier.clone(),
    );
    Ok(AppState {
        objects: common.objects.clone(),
        progress: common.progress.clone(),
        guard: common.progress.clone(),
        rates: common.progress.clone(),
        orchestrator: Arc::new(orchestrator),
        tokens,
        settings,
    })
}

/// The instant to stop exporting, from the Lambda context's deadline (epoch ms).
pub fn export_deadline(deadline_epoch_ms: u64) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    let remaining = Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms));
    Some(Instant::now() + remaining.saturating_sub(COMMIT_MARGIN))
}

/// Logs for CloudWatch: no colours, level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .without_time() // CloudWatch stamps every line
        .init();
}
