//! AWS Lambda function: one task of the chunkdump state machine (an export chunk, the
//! snapshot, the failure step, the completion callback or the restore drill) or the drill
//! schedule's run, with the R2/S3 and DynamoDB adapters. The chunk, snapshot and drill
//! functions of the template all run this binary.
//! Failures carry the stable `error_type` `Retryable` or `Fatal`, which
//! `statemachine.json` retries or catches.

use chunkdump::lambda::{
    chunk_tasks, common_from_env, export_deadline, init_tracing, tune_allocator,
};
use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};

fn main() -> Result<(), Error> {
    // Before the runtime starts its threads: part buffers return to the OS when freed.
    tune_allocator();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> Result<(), Error> {
    init_tracing();
    // Clients and secrets once per cold start, shared by every invocation.
    let tasks = chunk_tasks(&common_from_env().await?);
    let tasks = &tasks;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Stop exporting early enough to commit before Lambda's own deadline.
            let deadline = export_deadline(event.context.deadline);
            tasks
                .handle_event(event.payload, deadline)
                .await
                .map_err(|e| Diagnostic {
                    error_type: e.error_type().into(),
                    error_message: e.to_string(),
                })
        },
    ))
    .await
}
