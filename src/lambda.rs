//! Wiring of the Lambda functions (the chunk, snapshot, API and authorizer roles) from their settings (see [`crate::config`] for
//! every variable), kept in the library so the binaries stay thin and the wiring is
//! tested.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

#[cfg(feature = "api")]
use crate::api::Tokens;
#[cfg(all(feature = "api", feature = "sfn"))]
use crate::api::{ApiSettings, AppState};
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
    let mut config = Config::read(&env)?;
    let deployment = Deployment::read(&env)?;
    let api = ApiConfig::read(&env)?;
    let callbacks = CallbackConfig::read(&env);
    let aws = load_aws_config().await;
    let secrets = load_secrets(&aws, &deployment.secret_arns).await?;
    // The manifests' signing key: the variable, else the deployment's secret.
    if config.signing_key.is_none() {
        if let Some(key) = &secrets.signing_key {
            config.signing_key = Some(
                crate::config::SigningKey::new(key.as_bytes().to_vec()).map_err(|reason| {
                    ConfigError::Unusable {
                        what: "signingKey".into(),
                        reason,
                    }
                })?,
            );
        }
    }
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

/// The chunk function's task handlers (the chunk, snapshot and drill functions run the
/// same binary): whole-second breaths for the `Wait` state; drills in `/tmp` (the
/// function's ephemeral storage, or `CHUNKDUMP_DRILL_DIR`), a database too large for it
/// reported as skipped, and each outcome printed as a CloudWatch metric.
pub fn chunk_tasks(common: &Common) -> Tasks {
    let tasks = Tasks::from_config(
        common.objects.clone(),
        common.progress.clone(),
        common
            .notifier
            .clone()
            .map(|n| Arc::new(n) as Arc<dyn crate::ports::CallbackSender>),
        &common.config,
    );
    let function = Env::process()
        .get("AWS_LAMBDA_FUNCTION_NAME")
        .unwrap_or_else(|| "chunkdump".into());
    Tasks {
        whole_seconds: true,
        drills: tasks.drills.clone().map(|d| crate::drill::DrillSettings {
            skip_too_large_for: Some("a Lambda drill".into()),
            ..d
        }),
        drill_metrics: Some(function),
        ..tasks
    }
}

/// The API function's state: the same Router as `chunkdump serve`, with Step Functions
/// as the orchestrator.
#[cfg(all(feature = "api", feature = "sfn"))]
pub fn api_state(common: &Common) -> Result<AppState, StartupError> {
    let mut orchestrator =
        SfnOrchestrator::new(&common.aws, common.deployment.state_machine_arn()?)?;
    if let Some(fleets) = &common.deployment.fleet_state_machine_arn {
        orchestrator = orchestrator.with_fleets(fleets)?;
    }
    let tokens = refreshing_tokens(
        Tokens::from_secrets(&common.secrets)?,
        &common.aws,
        common.deployment.secret_arns.clone(),
    );
    let (database, root) = common.deployment.databases()?;
    let database_root = match root {
        Some(dir) => Some(
            crate::local::DatabaseRoot::open(std::path::Path::new(dir)).map_err(|e| {
                ConfigError::Invalid {
                    name: "CHUNKDUMP_DATABASE_ROOT",
                    value: dir.to_string(),
                    reason: e.message,
                }
            })?,
        ),
        None => None,
    };
    let settings = ApiSettings::new(
        database.map(str::to_string),
        database_root,
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

/// Whether this API binary runs as the API Gateway authorizer in front of the API
/// (`CHUNKDUMP_ROLE=authorizer`; the template sets it) rather than as the API.
pub fn runs_as_authorizer() -> bool {
    Env::process().get("CHUNKDUMP_ROLE").as_deref() == Some("authorizer")
}

/// The authorizer's only state: the API tokens, from its own secret (the API secret; it
/// reads no store key) or the environment; read again from the secret every
/// [`crate::api::TOKEN_TTL`] (the caller calls [`Tokens::refresh_if_due`] per request).
#[cfg(feature = "api")]
pub async fn authorizer_tokens() -> Result<Tokens, StartupError> {
    let ids = Deployment::secret_ids(&Env::process());
    let aws = load_aws_config().await;
    let secrets = load_secrets(&aws, &ids).await?;
    Ok(refreshing_tokens(
        Tokens::from_secrets(&secrets)?,
        &aws,
        ids,
    ))
}

/// `tokens`, read again from the secrets `ids` once [`crate::api::TOKEN_TTL`] has passed,
/// so a rotated-out token stops working on warm instances too (tokens from the
/// environment change only with a new deployment, which starts new instances).
#[cfg(feature = "api")]
fn refreshing_tokens(tokens: Tokens, aws: &aws_config::SdkConfig, ids: Vec<String>) -> Tokens {
    if ids.is_empty() {
        return tokens;
    }
    let aws = aws.clone();
    let loader: crate::api::TokenLoader = Arc::new(move || {
        let (aws, ids) = (aws.clone(), ids.clone());
        Box::pin(async move { Tokens::from_secrets(&load_secrets(&aws, &ids).await?) })
    });
    tokens.refreshing(crate::api::TOKEN_TTL, loader)
}

/// The answer of the HTTP API's Lambda authorizer (payload format 2.0, simple responses)
/// to one request: `{"isAuthorized": true}` only with a valid bearer token. API Gateway
/// refuses requests without an `Authorization` header before invoking anything, and
/// caches each answer for the header's value.
#[cfg(feature = "api")]
pub fn authorize(tokens: &Tokens, event: &serde_json::Value) -> serde_json::Value {
    let header = event["headers"]["authorization"]
        .as_str()
        .or_else(|| event["identitySource"][0].as_str());
    serde_json::json!({ "isAuthorized": crate::api::admits(tokens, header) })
}

/// Logs for CloudWatch: no colours, level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .without_time() // CloudWatch stamps every line
        .with_writer(crate::logging::OneLine(std::io::stdout))
        .init();
}

#[cfg(all(test, feature = "api"))]
mod tests {
    use super::*;

    /// An HTTP API authorizer event (payload format 2.0), as API Gateway sends it.
    fn event(authorization: Option<&str>) -> serde_json::Value {
        let mut e = serde_json::json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef123/$default/POST/export/dump",
            "routeKey": "ANY /{proxy+}",
            "rawPath": "/export/dump",
            "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": "POST", "path": "/export/dump"}}
        });
        if let Some(value) = authorization {
            e["identitySource"] = serde_json::json!([value]);
            e["headers"]["authorization"] = value.into();
        }
        e
    }

    #[test]
    fn the_authorizer_admits_only_the_api_tokens() {
        let tokens = Tokens::new("admin-0123456789abcdef", Some("read-0123456789abcdef")).unwrap();
        let admitted =
            |header: Option<&str>| authorize(&tokens, &event(header))["isAuthorized"] == true;
        assert!(admitted(Some("Bearer admin-0123456789abcdef")));
        assert!(
            admitted(Some("bearer read-0123456789abcdef")),
            "read tokens pass; the API tells them apart"
        );
        for refused in [
            None,
            Some(""),
            Some("Bearer "),
            Some("Bearer admin-0123456789abcdeX"),
            Some("Basic YWRtaW46eA=="),
            Some("admin-0123456789abcdef"),
        ] {
            assert!(!admitted(refused), "{refused:?} was admitted");
        }
        // Only the identity source, as API Gateway may send it without the headers.
        let mut bare = event(Some("Bearer admin-0123456789abcdef"));
        bare["headers"] = serde_json::json!({});
        assert_eq!(authorize(&tokens, &bare)["isAuthorized"], true);
    }
}
