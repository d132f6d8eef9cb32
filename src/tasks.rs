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
use crate::drill::auto::{drill_completed, drill_latest, metric_line, DrillPorts, LatestScope};
use crate::drill::DrillSettings;
use crate::error::DumpError;
use crate::execution::execution_name;
use crate::lifecycle::{deliver_callback, fail_dump};
use crate::model::{DumpId, JobStatus};
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
    /// Drill the completed dump (`"drill": true` at its start): restore it into a
    /// scratch database and check it (see [`crate::drill`]).
    Drill,
}

/// A task's input, as the state machine's `Parameters` build it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskInput {
    #[serde(default)]
    pub action: TaskAction,
    /// Checked as the input is read: a malformed id never reaches a store.
    pub dump_id: DumpId,
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

/// The key of the drill schedule's payload (the template's `DrillLatestSchedule`):
/// `{"chunkdumpDrillLatest": {"everyHours": 24}}` drills the latest completed dump of
/// each database whose last drill is that old or more.
pub const DRILL_LATEST_KEY: &str = "chunkdumpDrillLatest";

/// The drill schedule's payload.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrillLatest {
    /// Drill a database's latest dump when its last drill is this many hours old.
    pub every_hours: f64,
    /// Only dumps this schedule started (default: every dump).
    #[serde(default)]
    pub schedule: Option<String>,
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
    /// The dump completed and asked to be drilled: the state machine's `Drill?` choice.
    pub drill: bool,
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
    /// Where and how the `drill` task drills (none: this runner cannot, and says so).
    pub drills: Option<DrillSettings>,
    /// Print each drill's outcome as a CloudWatch embedded-metric line with this
    /// function name as its dimension (in Lambda).
    pub drill_metrics: Option<String>,
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
            drills: Some(DrillSettings::from_config(config, Some("a drill here"))),
            drill_metrics: None,
        }
    }

    /// Runs one invocation of the function: the drill schedule's payload
    /// ([`DRILL_LATEST_KEY`]) or a state machine task ([`TaskInput`]).
    pub async fn handle_event(
        &self,
        event: Value,
        deadline: Option<Instant>,
    ) -> Result<Value, DumpError> {
        if let Some(inner) = event.get(DRILL_LATEST_KEY) {
            let latest: DrillLatest = serde_json::from_value(inner.clone())
                .map_err(|e| DumpError::InvalidRequest(format!("{DRILL_LATEST_KEY}: {e}")))?;
            return self.drill_latest(&latest).await;
        }
        let input: TaskInput = serde_json::from_value(event)
            .map_err(|e| DumpError::InvalidRequest(format!("task input: {e}")))?;
        self.handle(input, deadline).await
    }

    /// Runs one task. `deadline` is when the caller must have answered (the Lambda
    /// context's deadline, minus a margin for the commit), if any.
    pub async fn handle(
        &self,
        input: TaskInput,
        deadline: Option<Instant>,
    ) -> Result<Value, DumpError> {
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
                    id: input.dump_id.to_string(),
                    message: caught_message(input.cause.as_deref()),
                };
                crate::lifecycle::interrupt_dump(self.progress.as_ref(), &input.dump_id, &reason)
                    .await?;
                let job = self.progress.require(&input.dump_id).await?;
                Ok(serde_json::json!({"dumpId": job.id, "status": job.status}))
            }
            TaskAction::Drill => return self.drill(&input.dump_id).await,
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

    /// Drills the latest dump of each database if its drill is due (the drill
    /// schedule); answers with how many passed, failed and were skipped.
    async fn drill_latest(&self, latest: &DrillLatest) -> Result<Value, DumpError> {
        let every = crate::model::drill_interval(latest.every_hours).ok_or_else(|| {
            DumpError::InvalidRequest(format!(
                "{DRILL_LATEST_KEY}.everyHours must be a positive number of hours, not {}",
                latest.every_hours
            ))
        })?;
        let settings = self.drill_settings()?;
        let scope = LatestScope {
            schedule: latest.schedule.clone(),
        };
        let reports = drill_latest(self.drill_ports(), &scope, every, settings).await?;
        let at = chrono::Utc::now();
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for report in &reports {
            *counts.entry(report.summary(at).outcome()).or_default() += 1;
            self.emit_metric(report, at);
        }
        Ok(serde_json::json!({"drilled": reports.len(), "outcomes": counts}))
    }

    fn drill_settings(&self) -> Result<&DrillSettings, DumpError> {
        self.drills.as_ref().ok_or_else(|| {
            DumpError::InvalidRequest("this runner has no scratch directory for drills".into())
        })
    }

    fn drill_ports(&self) -> DrillPorts<'_> {
        DrillPorts {
            objects: self.objects.as_ref(),
            progress: self.progress.as_ref(),
            callbacks: self.notifier.as_deref(),
        }
    }

    /// Prints a drill's outcome as a CloudWatch metric, where that is asked for.
    fn emit_metric(&self, report: &crate::drill::DrillReport, at: chrono::DateTime<chrono::Utc>) {
        if let Some(function) = &self.drill_metrics {
            // Stdout, not the log: CloudWatch reads a metric from a line that is exactly
            // this JSON document.
            println!("{}", metric_line(report, function, at));
        }
    }

    /// Drills completed dump `id` once (a retried step does not drill it again). A
    /// drill that ran answers with its outcome whether it passed or not: the dump itself
    /// is complete, and its record and report say how the drill went.
    async fn drill(&self, id: &str) -> Result<Value, DumpError> {
        let settings = self.drill_settings()?;
        let Some(report) = drill_completed(self.drill_ports(), id, settings).await? else {
            return Ok(serde_json::json!({"dumpId": id, "outcome": "drilled already"}));
        };
        let at = chrono::Utc::now();
        self.emit_metric(&report, at);
        Ok(serde_json::json!({
            "dumpId": id,
            "outcome": report.summary(at).outcome(),
            "problems": report.problems,
        }))
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
            drill: report.drill,
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
