//! One function, three kinds of event: HTTP requests (function URL or API Gateway), served
//! by the axum Router exactly as `lambda_http::run` would; scheduled starts from
//! EventBridge Scheduler (`{"chunkdumpSchedule": …}`), run through the same start path;
//! and the fleet state machine's tasks (`{"chunkdumpFleet": …}`).
//!
//! A scheduled start that is refused or fails returns an error, so the invocation counts
//! in the function's `Errors` metric (and its alarm) as well as being recorded.

use chunkdump::api::schedule::{run_tick, tick_from_payload, TickOutcome};
use chunkdump::api::{router, AppState};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Error, LambdaEvent, Service};
use serde_json::Value;

/// Handles one invocation.
pub async fn handle(state: AppState, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let LambdaEvent { payload, context } = event;
    if let Some(tick) = tick_from_payload(&payload) {
        let run = run_tick(&state, tick.map_err(Error::from)?).await;
        return match run.outcome {
            TickOutcome::Started => Ok(serde_json::to_value(run)?),
            _ => Err(format!(
                "scheduled dump not started: {}",
                serde_json::to_string(&run)?
            )
            .into()),
        };
    }
    // A task of the fleet state machine (`{"chunkdumpFleet": …}`).
    if let Some(task) = chunkdump::api::fleet_tasks::task_from_payload(&payload) {
        let out = chunkdump::api::fleet_tasks::run_task(&state, task.map_err(Error::from)?)
            .await
            .map_err(|e| Error::from(format!("{}: {}", e.code, e.message)))?;
        return Ok(out);
    }
    let request: LambdaRequest = serde_json::from_value(payload)?;
    let mut http = Adapter::from(router(state));
    let response = http.call(LambdaEvent::new(request, context)).await?;
    Ok(serde_json::to_value(response)?)
}
