//! AWS Lambda function: the chunkdump HTTP API, the same axum Router that
//! `chunkdump serve` hosts locally, with Step Functions starting and stopping dumps.
//! Served behind an API Gateway HTTP API or a function URL (HTTPS only).

use chunkdump::lambda::{api_state, common_from_env, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    // Clients, secrets and tokens once per cold start.
    let state = api_state(&common_from_env().await?)?;
    lambda_http::run(chunkdump::api::router(state)).await
}
