//! Wiring of the two Lambda functions from their environment, kept in the library so
//! the binaries stay thin and the wiring is tested.
//!
//! | variable | used by | meaning |
//! | --- | --- | --- |
//! | `CHUNKDUMP_STORE` | both | `s3://BUCKET/PREFIX` (R2 through its S3 endpoint) |
//! | `CHUNKDUMP_PROGRESS` | both | `dynamodb://TABLE` |
//! | `CHUNKDUMP_SECRET_ARN` | both | Secrets Manager secret (see [`crate::cloud::Secrets`]); without it the same names come from the environment |
//! | `CHUNKDUMP_DATABASE` | api | the SQLite file on the EFS mount, e.g. `/mnt/data/app.db` |
//! | `CHUNKDUMP_STATE_MACHINE_ARN` | api | the dump state machine |
//! | `CHUNKDUMP_PART_SIZE` | api | multipart part size in bytes (default 8 MiB) |
//! | `DUMP_CHUNK_SIZE`, `DUMP_BREATHING_INTERVAL`, `MAX_EXECUTION_TIME`, `CHUNKDUMP_CHUNKS_PER_EXECUTION` | both | the seed's settings ([`Config`]) |

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::api::AppState;
use crate::chunk::ChunkOptions;
use crate::cloud::{
    load_aws_config, load_secrets, DynamoProgress, S3Store, Secrets, SfnOrchestrator,
};
use crate::config::{Config, DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::error::DumpError;
use crate::tasks::Tasks;

/// Time the chunk function keeps for itself after its export stops: uploading the last
/// part, writing the staging object and committing the job.
pub const COMMIT_MARGIN: Duration = Duration::from_secs(5);

fn required(name: &str) -> Result<String, DumpError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| DumpError::InvalidRequest(format!("{name} is not set")))
}

/// The shared pieces both functions build once per cold start.
pub struct Common {
    pub aws: aws_config::SdkConfig,
    pub secrets: Secrets,
    pub objects: Arc<S3Store>,
    pub progress: Arc<DynamoProgress>,
    pub config: Config,
    pub notifier: Option<crate::api::callback::Notifier>,
}

/// Loads configuration, secrets and clients (once, in `main`).
pub async fn common_from_env() -> Result<Common, DumpError> {
    let config = Config::from_env().map_err(|e| DumpError::InvalidRequest(e.to_string()))?;
    let aws = load_aws_config().await;
    let secrets = load_secrets(
        &aws,
        std::env::var("CHUNKDUMP_SECRET_ARN")
            .ok()
            .filter(|v| !v.is_empty())
            .as_deref(),
    )
    .await?;
    let objects =
        S3Store::with_access(&aws, &required("CHUNKDUMP_STORE")?, secrets.r2()?.as_ref())?;
    let progress = DynamoProgress::new(&aws, &required("CHUNKDUMP_PROGRESS")?)?;
    let notifier = crate::api::callback::Notifier::from_env_with(secrets.callback_secret.clone())
        .map_err(DumpError::InvalidRequest)?;
    Ok(Common {
        aws,
        secrets,
        objects: Arc::new(objects),
        progress: Arc::new(progress),
        config,
        notifier,
    })
}

/// The chunk function's task handlers: whole-second breaths for the `Wait` state.
pub fn chunk_tasks(common: &Common) -> Tasks {
    Tasks {
        objects: common.objects.clone(),
        progress: common.progress.clone(),
        notifier: common.notifier.clone(),
        chunk: ChunkOptions {
            budget: common.config.max_execution,
            snapshot_dir: common.config.snapshot_dir.clone(),
            upload_concurrency: common.config.upload_concurrency as usize,
            ..Default::default()
        },
        breathe: common.config.breathing,
        whole_seconds: true,
        chunks_per_execution: common.config.chunks_per_execution,
    }
}

/// The API function's state: the same Router as `chunkdump serve`, with Step Functions
/// as the orchestrator.
pub fn api_state(common: &Common) -> Result<AppState, DumpError> {
    let part_size = match std::env::var("CHUNKDUMP_PART_SIZE")
        .ok()
        .filter(|v| !v.is_empty())
    {
        None => DEFAULT_PART_SIZE,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (MIN_PART_SIZE..=MAX_PART_SIZE).contains(n))
            .ok_or_else(|| {
                DumpError::InvalidRequest(format!(
                    "CHUNKDUMP_PART_SIZE={v:?}: give bytes between 5 MiB and 5 GiB"
                ))
            })?,
    };
    let orchestrator =
        SfnOrchestrator::new(&common.aws, &required("CHUNKDUMP_STATE_MACHINE_ARN")?)?;
    let tokens = crate::serve::tokens_from(
        common.secrets.api_token.clone(),
        common.secrets.api_read_token.clone(),
    )?;
    let settings = crate::serve::api_settings(
        required("CHUNKDUMP_DATABASE")?,
        &common.config,
        part_size,
        common.notifier.clone(),
    )?;
    Ok(AppState {
        objects: common.objects.clone(),
        progress: common.progress.clone(),
        guard: common.progress.clone(),
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
