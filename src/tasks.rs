//! The work behind the state machine's `Task` states, shared by the chunk Lambda
//! function and the local runner: `snapshot` (a snapshot dump's point-in-time copy, before
//! the loop), `chunk` (one time-boxed chunk), `fail` (mark the job
//! failed, clean up, send the failure callback), `interrupt` (pause the job after a fault
//! outside its data, keeping all it wrote) and `notify` (the completion callback).
//!
//! Input and output are the small JSON documents the state machine carries: ids,
//! version and counters, never data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chunk::{run_chunk, ChunkOptions};
use crate::error::DumpError;
use crate::execution::execution_name;
use crate::lifecycle::{deliver_callback, fail_dump};
use crate::model::{validate_dump_id, JobStatus};
use crate::ports::{CallbackSender, ObjectStore, ProgressStore};

/// What a task is asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskAction {
    #[default]
    Chunk,
    /// Make a snapshot dump's point-in-time copy (a no-op for live dumps).
    Snapshot,
    Fail,
    /// Pause the job after a fault outside its data (storage, a busy database): status
    /// `interrupted`, everything committed kept for a resume.
    Interrupt,
    Notify,
}

/// A task's input, as the state machine's `Parameters` build it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskInput {
    #[serde(default)]
    pub action: TaskAction,
    pub dump_id: String,
    /// The job version the previous chunk committed (absent or null: the current one).
    #[serde(default)]
    pub version: Option<u64>,
    /// Which execution of the dump's chain this is (0 for the first).
    #[serde(default)]
    pub generation: u32,
    /// Chunks run so far in this execution.
    #[serde(default)]
    pub chunks_in_execution: u32,
    /// For `fail` and `interrupt`: the error name and cause Step Functions caught.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

/// The chunk task's answer: the state the loop carries to the next chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkState {
    pub dump_id: String,
    pub version: u64,
    pub done: bool,
    pub status: JobStatus,
    /// Rows this chunk wrote.
    pub rows: u64,
    /// The breathing pause before the next chunk (whole seconds in AWS).
    pub breath_seconds: serde_json::Number,
    pub generation: u32,
    pub chunks_in_execution: u32,
    /// Start a new execution (named `next_execution_name`) instead of breathing here.
    pub continue_as_new: bool,
    pub next_execution_name: Option<String>,
}

/// Everything the tasks need, built once per process.
#[derive(Clone)]
pub struct Tasks {
    pub objects: Arc<dyn ObjectStore>,
    pub progress: Arc<dyn ProgressStore>,
    /// Sends completion callbacks (the adapter: `crate::callback::Notifier`).
    pub notifier: Option<Arc<dyn CallbackSender>>,
    /// Budget, slice size and progress hook of each chunk.
    pub chunk: ChunkOptions,
    /// The breathing pause (`DUMP_BREATHING_INTERVAL`).
    pub breathe: Duration,
    /// Round the pause up to whole seconds (Step Functions' `Wait` needs them).
    pub whole_seconds: bool,
    pub chunks_per_execution: u32,
}

impl Tasks {
    /// The tasks as a deployment's settings configure them (see
    /// [`ChunkOptions::from_config`]; the breath is `DUMP_BREATHING_INTERVAL`). Drivers
    /// change what they own: the Lambda function rounds breaths to whole seconds, the
    /// CLI adds its progress bar and flags.
    pub fn from_config(
        objects: Arc<dyn ObjectStore>,
        progress: Arc<dyn ProgressStore>,
        notifier: Option<Arc<dyn CallbackSender>>,
        config: &crate::config::Config,
    ) -> Self {
        Tasks {
            objects,
            progress,
            notifier,
            chunk: ChunkOptions::from_config(config),
            breathe: config.breathing,
            whole_seconds: false,
            chunks_per_execution: config.chunks_per_execution,
        }
    }

    /// Runs one task. `deadline` is when the caller must have answered (the Lambda
    /// context's deadline, minus a margin for the commit), if any.
    pub async fn handle(
        &self,
        input: TaskInput,
        deadline: Option<Instant>,
    ) -> Result<Value, DumpError> {
        validate_dump_id(&input.dump_id)?;
        let answer = match input.action {
            TaskAction::Chunk => serde_json::to_value(self.chunk(&input, deadline).await?),
            TaskAction::Snapshot => {
                let job = self.progress.require(&input.dump_id).await?;
                let job = crate::chunk::ensure_snapshot(
                    self.objects.as_ref(),
                    self.progress.as_ref(),
                    job,
                    &self.chunk,
                )
                .await?;
                Ok(serde_json::json!({
                    "dumpId": job.id, "version": job.version, "generation": input.generation, "chunksInExecution": input.chunks_in_execution,
                }))
            }
            TaskAction::Fail => serde_json::to_value(self.fail(&input, deadline).await?),
            TaskAction::Interrupt => {
                let reason = DumpError::Interrupted {
                    id: input.dump_id.clone(),
                    message: caught_message(input.cause.as_deref()),
                };
                crate::lifecycle::interrupt_dump(self.progress.as_ref(), &input.dump_id, &reason)
                    .await?;
                let job = self.progress.require(&input.dump_id).await?;
                Ok(serde_json::json!({"dumpId": job.id, "status": job.status}))
            }
            TaskAction::Notify => {
                self.callback(&input.dump_id, deadline).await;
                let job = self.progress.require(&input.dump_id).await?;
                // The last chunk could not remove the copy where it reads read-only.
                if job.status.is_terminal() {
                    crate::lifecycle::remove_snapshot(&job);
                }
                Ok(
                    serde_json::json!({"dumpId": job.id, "status": job.status, "callback": job.callback.map(|c| c.status)}),
                )
            }
        };
        answer.map_err(|e| DumpError::Internal(e.to_string()))
    }

    /// Sends the dump's callback, if callbacks are set up, recording each attempt.
    async fn callback(&self, dump_id: &str, deadline: Option<Instant>) {
        if let Some(notifier) = &self.notifier {
            deliver_callback(notifier.as_ref(), self.progress.as_ref(), dump_id, deadline).await;
        }
    }

    async fn chunk(
        &self,
        input: &TaskInput,
        deadline: Option<Instant>,
    ) -> Result<ChunkState, DumpError> {
        let report = run_chunk(
            self.objects.as_ref(),
            self.progress.as_ref(),
            &input.dump_id,
            input.version,
            &self.chunk,
            deadline,
        )
        .await?;
        let chunks = input.chunks_in_execution + 1;
        let continue_as_new = !report.done && chunks >= self.chunks_per_execution;
        let generation = if continue_as_new {
            input.generation + 1
        } else {
            input.generation
        };
        let seconds = self.breathe.as_secs_f64();
        let breath_seconds = if self.whole_seconds || seconds.fract() == 0.0 {
            serde_json::Number::from(self.breathe.as_millis().div_ceil(1000) as u64)
        } else {
            serde_json::Number::from_f64(seconds).unwrap_or_else(|| 0.into())
        };
        Ok(ChunkState {
            dump_id: report.dump_id,
            version: report.version,
            done: report.done,
            status: report.status,
            rows: report.rows,
            breath_seconds,
            generation,
            chunks_in_execution: if continue_as_new { 0 } else { chunks },
            continue_as_new,
            next_execution_name: continue_as_new
                .then(|| execution_name(&input.dump_id, generation)),
        })
    }

    /// Marks the job failed (unless it already ended), aborts its upload, removes its
    /// partial files and sends the failure callback. Idempotent.
    async fn fail(&self, input: &TaskInput, deadline: Option<Instant>) -> Result<Value, DumpError> {
        let reason = DumpError::RunFailed {
            error: input.error.clone().unwrap_or_else(|| "Unknown".into()),
            message: caught_message(input.cause.as_deref()),
        };
        fail_dump(
            self.objects.as_ref(),
            self.progress.as_ref(),
            &input.dump_id,
            &reason,
        )
        .await?;
        self.callback(&input.dump_id, deadline).await;
        let job = self.progress.require(&input.dump_id).await?;
        Ok(serde_json::json!({"dumpId": job.id, "status": job.status}))
    }
}

/// The message of an error Step Functions caught: a Lambda function's cause is its
/// error document as a JSON string (`{"errorType","errorMessage"}`), other causes
/// (`States.Timeout`, ...) are plain text.
fn caught_message(cause: Option<&str>) -> String {
    let Some(cause) = cause else {
        return String::new();
    };
    serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| v.get("errorMessage")?.as_str().map(str::to_string))
        .unwrap_or_else(|| cause.to_string())
}

/// A Lambda-style error document for a failed task: `{"errorType","errorMessage"}`.
pub fn error_document(e: &DumpError) -> Value {
    serde_json::json!({"errorType": e.error_type(), "errorMessage": e.to_string()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_messages_come_out_of_lambda_error_documents() {
        let lambda = r#"{"errorType":"Fatal","errorMessage":"database gone"}"#;
        assert_eq!(caught_message(Some(lambda)), "database gone");
        assert_eq!(caught_message(Some("Task timed out")), "Task timed out");
        assert_eq!(caught_message(None), "");
    }
}
