//! AWS Lambda function: the chunkdump HTTP API, the same axum Router that
//! `chunkdump serve` hosts locally, with Step Functions starting and stopping dumps.
//! Served behind an API Gateway HTTP API or a function URL (HTTPS only); also the target
//! of the optional EventBridge Scheduler schedule (see `dispatch`).

mod dispatch;

use chunkdump::lambda::{api_state, common_from_env, init_tracing};
use lambda_http::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    // Clients, secrets and tokens once per cold start.
    let state = api_state(&common_from_env().await?)?;
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        dispatch::handle(state.clone(), event)
    }))
    .await
}
