//! AWS Lambda function: the chunkdump HTTP API, the same axum Router that
//! `chunkdump serve` hosts locally, with Step Functions starting and stopping dumps.
//! Served behind an API Gateway HTTP API or a function URL (HTTPS only); also the target
//! of the optional EventBridge Scheduler schedule (see `dispatch`). Deployed a second
//! time with `CHUNKDUMP_ROLE=authorizer` as the HTTP API's Lambda authorizer, which
//! holds only the API tokens and refuses requests without a valid one.

mod dispatch;

use chunkdump::lambda::{api_state, authorize, authorizer_tokens, common_from_env};
use chunkdump::lambda::{init_tracing, runs_as_authorizer};
use lambda_http::{lambda_runtime, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    if runs_as_authorizer() {
        let tokens = authorizer_tokens().await?;
        return lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
            let tokens = tokens.clone();
            async move {
                tokens.refresh_if_due().await;
                Ok::<_, Error>(authorize(&tokens, &event.payload))
            }
        }))
        .await;
    }
    // Clients, secrets and tokens once per cold start.
    let state = api_state(&common_from_env().await?)?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        dispatch::handle(state.clone(), event)
    }))
    .await
}
