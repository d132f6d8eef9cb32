//! One function, three kinds of event: HTTP requests (function URL or API Gateway), served
//! by the axum Router exactly as `lambda_http::run` would; scheduled starts from
//! EventBridge Scheduler (`{"chunkdumpSchedule": …}`), run through the same start path;
//! and the fleet state machine's tasks (`{"chunkdumpFleet": …}`).
//!
//! A scheduled start that is refused or fails returns an error, so the invocation counts
//! in the function's `Errors` metric (and its alarm) as well as being recorded. A fleet
//! task's error keeps its kind as the error type (`Retryable`, `StorageFault`, `Fatal`),
//! which `fleet-statemachine.json` retries or not.

use chunkdump::api::{router, AppState};
use chunkdump::service::fleet_tasks::{run_task, task_from_payload};
use chunkdump::service::schedule::{run_tick, tick_from_payload, TickOutcome};
use lambda_http::lambda_runtime::Diagnostic;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, LambdaEvent, Service};
use serde_json::Value;

/// Handles one invocation.
pub async fn handle(state: AppState, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let LambdaEvent { payload, context } = event;
    if let Some(tick) = tick_from_payload(&payload) {
        let run = run_tick(&state.service(), tick.map_err(|e| failed("Fatal", e))?).await;
        let body = serde_json::to_value(&run).map_err(|e| failed("Fatal", e))?;
        return match run.outcome {
            TickOutcome::Started => Ok(body),
            _ => Err(failed(
                "ScheduledStartFailed",
                format!("scheduled dump not started: {body}"),
            )),
        };
    }
    // A task of the fleet state machine (`{"chunkdumpFleet": …}`).
    if let Some(task) = task_from_payload(&payload) {
        let task = task.map_err(|e| failed("Fatal", e))?;
        return run_task(&state.service(), task)
            .await
            .map_err(|e| failed(e.error_type, format!("{}: {}", e.code, e.message)));
    }
    let request: LambdaRequest = serde_json::from_value(payload).map_err(|e| failed("Fatal", e))?;
    let mut http = Adapter::from(router(state));
    let response = http
        .call(LambdaEvent::new(request, context))
        .await
        .map_err(|e| failed("Fatal", e))?;
    serde_json::to_value(response).map_err(|e| failed("Fatal", e))
}

/// A failed invocation, with the error type a state machine's `Retry` matches.
fn failed(error_type: &str, message: impl std::fmt::Display) -> Diagnostic {
    Diagnostic {
        error_type: error_type.into(),
        error_message: message.to_string(),
    }
}
