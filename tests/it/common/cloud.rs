//! Access to the real S3/DynamoDB servers started by `scripts/test-servers`.
#![allow(dead_code)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;

/// Endpoints and keys of the running test servers.
pub struct Servers {
    pub moto: String,
    pub s3s: String,
    pub s3s_key: String,
    pub s3s_secret: String,
}

/// Whether a test that needs the servers should skip: outside CI, `cargo test` without
/// `scripts/test` (which starts them) skips those tests, saying so; in CI they must run.
pub fn skip_without_servers() -> bool {
    super::skip_without(
        "the S3/DynamoDB/Step Functions servers (CHUNKDUMP_TEST_MOTO)",
        std::env::var("CHUNKDUMP_TEST_MOTO").is_ok(),
        "run scripts/test, which starts moto and s3s-fs",
    )
}

/// The servers from the environment; these tests need them (`scripts/test` starts them).
pub fn servers() -> Servers {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run the tests with scripts/test, which starts moto and s3s-fs"
            )
        })
    };
    Servers {
        moto: var("CHUNKDUMP_TEST_MOTO"),
        s3s: var("CHUNKDUMP_TEST_S3S"),
        s3s_key: var("CHUNKDUMP_TEST_S3S_KEY"),
        s3s_secret: var("CHUNKDUMP_TEST_S3S_SECRET"),
    }
}

/// An AWS configuration pointing at `endpoint` with the given keys.
pub async fn sdk_config(endpoint: &str, key: &str, secret: &str) -> SdkConfig {
    chunkdump_config(aws_config::defaults(BehaviorVersion::latest()))
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(key, secret, None, None, "chunkdump-tests"))
        .load()
        .await
}

fn chunkdump_config(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader
        .http_client(chunkdump::cloud::https_client())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
}

/// A fresh bucket or table name.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:x}", fastrand::u64(..))
}

/// Environment for a `chunkdump` child process using S3 at `s3` and DynamoDB at `dynamo`.
pub fn cli_env(s3: &str, dynamo: &str, key: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_S3", s3.to_string()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamo.to_string()),
        ("AWS_ACCESS_KEY_ID", key.to_string()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}
