//! Cloud adapters: S3-compatible object storage (Cloudflare R2, AWS S3, MinIO, …) and
//! DynamoDB for progress. Configured from the standard AWS environment
//! (`AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL_DYNAMODB`, credentials,
//! `AWS_REGION`, default `auto` as R2 wants), and Step Functions as the orchestrator.

mod dynamo;
mod dynamo_slots;
mod s3;
mod s3_write;
#[cfg(feature = "sfn")]
mod sfn;

pub use dynamo::DynamoProgress;
pub use s3::S3Store;
#[cfg(feature = "sfn")]
pub use sfn::SfnOrchestrator;

mod secrets;
pub use secrets::{load_secrets, Secrets};

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::error::StoreError;

/// R2's S3 endpoint and API token (from the deployment's secret, or the `R2_*`
/// variables): one type with the settings' own, whose `Debug` never prints the secret.
pub use crate::config::R2Keys as R2Access;

/// The HTTPS client every AWS SDK client here uses: hyper with rustls on ring.
pub fn https_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Loads the shared AWS configuration once: region (default `auto`), the SDK's standard
/// retry mode with 5 attempts (jittered exponential backoff; no hand-made loops), and
/// timeouts so a stalled connection fails and is retried instead of hanging a chunk.
pub async fn load_aws_config() -> SdkConfig {
    // The SDK's own region chain (environment, profile, instance metadata over the client
    // below), then R2's `auto`.
    let config = standard_loader().load().await;
    if config.region().is_some() {
        return config;
    }
    config.into_builder().region(Region::new("auto")).build()
}

/// The configuration for R2 alone (no DynamoDB): region `auto`, no AWS credentials
/// (the store brings R2's own), the same client, retries and timeouts as
/// [`load_aws_config`]; so no region or credential chain (environment, profile,
/// instance metadata) is consulted.
pub async fn r2_only_config() -> SdkConfig {
    standard_loader()
        .region(Region::new("auto"))
        .no_credentials()
        .load()
        .await
}

/// The client, retries and timeouts every configuration here shares.
fn standard_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(RetryConfig::standard().with_max_attempts(5))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(120))
                .build(),
        )
}

/// Classifies a service error by its code and HTTP status.
fn classify(what: String, code: Option<&str>, status: Option<u16>) -> StoreError {
    match (code, status) {
        (Some("NoSuchKey" | "NoSuchUpload" | "NotFound"), _) | (None, Some(404)) => {
            StoreError::NotFound(what)
        }
        (Some("ConditionalCheckFailedException"), _) => StoreError::Conflict {
            id: what,
            expected: 0,
        },
        (
            Some(
                "SlowDown"
                | "RequestTimeout"
                | "InternalError"
                | "ServiceUnavailable"
                | "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "TransactionConflictException",
            ),
            _,
        ) => StoreError::Transient(what),
        (_, Some(s)) if s >= 500 || s == 429 => StoreError::Transient(what),
        // The store refuses this account (credentials changed or revoked, bucket gone,
        // account suspended): nothing the dump's data did; it pauses until fixed.
        (
            Some(
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "NoSuchBucket"
                | "AccountProblem"
                | "UnrecognizedClientException",
            ),
            _,
        )
        | (None, Some(401 | 403)) => StoreError::Unavailable(what),
        (
            Some(
                "InvalidPart"
                | "InvalidPartOrder"
                | "EntityTooSmall"
                | "EntityTooLarge"
                | "ValidationException"
                | "InvalidArgument",
            ),
            _,
        ) => StoreError::Invalid(what),
        _ => StoreError::Permanent(what),
    }
}

/// A failed SDK call: the project's error, and what the service said when it answered
/// (its error code, message and HTTP status, read from the SDK's error metadata), for the
/// callers that expect one particular refusal. Never decided from flattened message text,
/// which also holds the object key or table name.
struct Failure {
    error: StoreError,
    code: Option<String>,
    message: Option<String>,
    status: Option<u16>,
}

impl Failure {
    /// Whether the service answered with error code `code`.
    fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// Maps an SDK error to the project's error, keeping the service's code and message.
/// (S3 and DynamoDB share the smithy runtime, so one mapper serves both.)
fn sdk_error<E>(
    context: &str,
    err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    sdk_failure(context, err).error
}

/// [`sdk_error`], with the service's answer kept apart for the caller to match on.
fn sdk_failure<E>(
    context: &str,
    err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Failure
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_s3::error::SdkError;
    match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code();
            let status = se.raw().status().as_u16();
            let detail = e.message().map_or_else(String::new, |m| format!(": {m}"));
            let what = format!("{context}: {}{detail}", code.unwrap_or("error"));
            Failure {
                error: classify(what, code, Some(status)),
                code: code.map(str::to_string),
                message: e.message().map(str::to_string),
                status: Some(status),
            }
        }
        // No credentials anywhere: a configuration to fix, not a fault to wait out.
        SdkError::DispatchFailure(_)
            if ["loading credentials", "no credentials found"]
                .iter()
                .any(|m| cause_chain(&err).contains(m)) =>
        {
            Failure::unanswered(StoreError::Permanent(format!(
                "{context}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            )))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::unanswered(StoreError::Transient(format!(
                "{context}: {}",
                unanswered_cause(&err)
            )))
        }
        _ => Failure::unanswered(StoreError::Permanent(format!(
            "{context}: {}",
            cause_chain(&err)
        ))),
    }
}

/// Why a call got no answer, in one line: what failed first (DNS lookup, TLS, connection
/// refused or reset, timed out), then the cause chain. (The SDK's own rendering ends in
/// a debug dump of its error types.)
fn unanswered_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let chain = cause_chain(err);
    let io_kind = std::iter::successors(Some(err), |e| e.source())
        .find_map(|e| e.downcast_ref::<std::io::Error>().map(std::io::Error::kind));
    let lower = chain.to_ascii_lowercase();
    let what = match io_kind {
        _ if lower.contains("dns error") || lower.contains("lookup address") => "DNS lookup failed",
        _ if lower.contains("certificate") || lower.contains("tls") => "TLS failed",
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused",
        Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted) => {
            "connection reset"
        }
        Some(std::io::ErrorKind::TimedOut) => "timed out",
        _ if lower.contains("timeout") || lower.contains("timed out") => "timed out",
        _ => "no answer",
    };
    format!("{what} ({chain})")
}

/// An error and its sources, joined by `: `, each message once (a message that its
/// source's repeats is left out).
fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in std::iter::successors(Some(err), |e| e.source()) {
        let message = e.to_string();
        if !message.is_empty() && !parts.last().is_some_and(|p| p.contains(&message)) {
            parts.push(message);
        }
    }
    parts.join(": ")
}

impl Failure {
    /// A call the service never answered (timeouts, connection failures, SDK errors).
    fn unanswered(error: StoreError) -> Self {
        Failure {
            error,
            code: None,
            message: None,
            status: None,
        }
    }
}

/// Splits `scheme://name/rest` into (name, rest) for `scheme`.
fn parse_url<'a>(url: &'a str, scheme: &str) -> Result<(&'a str, &'a str), StoreError> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| StoreError::Invalid(format!("{url:?} is not a {scheme}:// URL")))?;
    let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
    if name.is_empty() {
        return Err(StoreError::Invalid(format!(
            "{url:?} names no bucket or table"
        )));
    }
    Ok((name, path.trim_matches('/')))
}
