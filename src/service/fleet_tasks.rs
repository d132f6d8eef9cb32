//! The fleet state machine's tasks (`{"chunkdumpFleet": {"action": …}}`), run by the API
//! function in AWS and in-process by `serve`: the next page of databases, one
//! database's start, a look at its dump, and the fleet's end (counts and callback).
//!
//! Each task is safe to repeat (Step Functions retries them): a start that finds its
//! database already started returns that dump, and the end recounts from the store.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ServiceError;
use super::fleet::{
    databases_key, fleet_key, read_json, started_entries, started_key, write_json, FleetRecord,
    ItemState, StartedEntry,
};
use super::fleet_views::FleetState;
use super::Service;
use crate::asl::{TaskError, TaskHandler};
use crate::ports::CallbackSender;

/// The key of a fleet task's payload.
pub const PAYLOAD_KEY: &str = "chunkdumpFleet";

/// Databases per page of the fleet's map (each page's list stays far below Step
/// Functions' 256 KB state limit).
pub const PAGE: usize = 1000;

/// The failed databases a fleet's callback names (the rest are counted).
const CALLBACK_FAILURES: usize = 100;

/// One fleet task.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase", deny_unknown_fields)]
pub enum FleetTask {
    /// The databases of page `page`, and the next page's number if there is one.
    #[serde(rename_all = "camelCase")]
    Page { fleet_id: String, page: usize },
    /// Starts the dump of database `index`.
    #[serde(rename_all = "camelCase")]
    Start {
        fleet_id: String,
        index: usize,
        database: String,
    },
    /// Looks at the dump of database `index`.
    #[serde(rename_all = "camelCase")]
    Check {
        fleet_id: String,
        index: usize,
        database: String,
        dump_id: String,
    },
    /// Counts, marks the fleet completed and sends its callback.
    #[serde(rename_all = "camelCase")]
    Finish { fleet_id: String },
}

/// The fleet task in a Lambda payload, if it is one.
pub fn task_from_payload(payload: &Value) -> Option<Result<FleetTask, String>> {
    payload
        .get(PAYLOAD_KEY)
        .map(|task| serde_json::from_value(task.clone()).map_err(|e| format!("fleet task: {e}")))
}

/// Runs fleet tasks against the API's state.
#[derive(Clone)]
pub struct FleetTasks {
    pub service: Service,
}

#[async_trait]
impl TaskHandler for FleetTasks {
    async fn invoke(&self, _resource: &str, input: Value) -> Result<Value, TaskError> {
        let task = task_from_payload(&input)
            .unwrap_or_else(|| Err(format!("a fleet task needs {PAYLOAD_KEY}")))
            .map_err(|cause| TaskError {
                error: "Fatal".into(),
                cause,
            })?;
        // The error's own kind, as the Lambda function reports it: the fleet state
        // machine retries `Retryable` only.
        run_task(&self.service, task).await.map_err(|e| TaskError {
            error: e.error_type.into(),
            cause: e.message,
        })
    }
}

/// Runs one fleet task.
pub async fn run_task(state: &Service, task: FleetTask) -> Result<Value, ServiceError> {
    let poll = state.settings.fleet_poll.as_secs_f64();
    match task {
        FleetTask::Page { fleet_id, page } => {
            let databases: Vec<String> = read_json(state, &databases_key(&fleet_id))
                .await?
                .unwrap_or_default();
            let from = (page * PAGE).min(databases.len());
            let to = (from + PAGE).min(databases.len());
            let items: Vec<Value> = (from..to)
                .map(|index| json!({"index": index, "database": databases[index]}))
                .collect();
            let mut out = json!({"databases": items});
            if to < databases.len() {
                out["nextPage"] = json!(page + 1);
            }
            Ok(out)
        }
        FleetTask::Start {
            fleet_id,
            index,
            database,
        } => {
            let key = started_key(&fleet_id, index);
            if let Some(entry) = read_json::<StartedEntry>(state, &key).await? {
                return Ok(
                    json!({"status": entry.status.as_str(), "dumpId": entry.dump_id, "pollSeconds": poll}),
                );
            }
            let Some(fleet) = read_json::<FleetRecord>(state, &fleet_key(&fleet_id)).await? else {
                return Err(ServiceError::bad_field(
                    "fleetId",
                    format!("no fleet {fleet_id}"),
                ));
            };
            let mut request = fleet.request.clone();
            request.insert("database".into(), Value::String(database.clone()));
            let started = match serde_json::from_value(Value::Object(request)) {
                Ok(request) => {
                    super::start::start_dump(state, request, fleet.schedule.as_deref()).await
                }
                Err(e) => Err(ServiceError::bad_field("request", e.to_string())),
            };
            let entry = match started {
                Ok(job) => StartedEntry {
                    database,
                    dump_id: Some(job.id),
                    status: ItemState::Running,
                    error: None,
                },
                // A fault of the store or the orchestrator is the fleet's (retried by the
                // state machine when it passes); anything else is this database's own
                // problem, recorded.
                Err(e) if e.error_type != "Fatal" => return Err(e),
                Err(e) => {
                    tracing::warn!(fleet_id = %fleet_id, database = %database, error = %e.message, "fleet database not started");
                    StartedEntry {
                        database,
                        dump_id: None,
                        status: ItemState::NotStarted,
                        error: Some(json!({"code": e.code, "message": e.message})),
                    }
                }
            };
            write_json(state, &key, &entry).await?;
            Ok(
                json!({"status": entry.status.as_str(), "dumpId": entry.dump_id, "pollSeconds": poll}),
            )
        }
        FleetTask::Check {
            fleet_id,
            index,
            database,
            dump_id,
        } => {
            let job = state.progress.get(&dump_id).await?;
            let status = match &job {
                None => ItemState::Cancelled,
                // A dump whose run is gone (the server that ran it was killed) will not
                // end by itself: it is interrupted (resumable), and this item ends.
                Some(job) if super::runs::is_interrupted(state, job).await? => {
                    ItemState::Interrupted
                }
                Some(job) => ItemState::of(job.status),
            };
            if status == ItemState::Running {
                return Ok(json!({"status": "running", "dumpId": dump_id, "pollSeconds": poll}));
            }
            let error = job
                .as_ref()
                .and_then(|j| j.error.as_ref())
                .map(|e| json!({"code": e.code, "message": e.message}));
            let entry = StartedEntry {
                database,
                dump_id: Some(dump_id.clone()),
                status,
                error,
            };
            write_json(state, &started_key(&fleet_id, index), &entry).await?;
            Ok(json!({"status": status.as_str(), "dumpId": dump_id}))
        }
        FleetTask::Finish { fleet_id } => finish(state, &fleet_id).await,
    }
}

/// The fleet's end: counts by status, `completed`, and its one signed callback.
async fn finish(state: &Service, fleet_id: &str) -> Result<Value, ServiceError> {
    let Some(mut fleet) = read_json::<FleetRecord>(state, &fleet_key(fleet_id)).await? else {
        return Err(ServiceError::bad_field(
            "fleetId",
            format!("no fleet {fleet_id}"),
        ));
    };
    let started = started_entries(state, fleet_id).await?;
    let mut counts = BTreeMap::<String, usize>::new();
    for index in 0..fleet.databases {
        let status = started
            .get(&index)
            .map_or(ItemState::NotStarted, |e| e.status)
            .as_str();
        *counts.entry(status.to_string()).or_default() += 1;
    }
    let failed: Vec<Value> = started
        .values()
        .filter(|e| e.status != ItemState::Completed)
        .take(CALLBACK_FAILURES)
        .map(|e| json!({"database": e.database, "dumpId": e.dump_id, "status": e.status.as_str(), "error": e.error}))
        .collect();
    let first_end = fleet.status != FleetState::Completed;
    fleet.status = FleetState::Completed;
    fleet
        .ended_at
        .get_or_insert_with(|| chrono::SubsecRound::trunc_subsecs(Utc::now(), 0));
    fleet.counts = counts.clone();
    write_json(state, &fleet_key(fleet_id), &fleet).await?;
    // Absolute under the public URL when one is set, as a dump's callback URLs are.
    let base = state
        .settings
        .notifier
        .as_ref()
        .and_then(|n| n.public_url())
        .unwrap_or("");
    let summary = json!({
        "fleetId": fleet_id, "status": "completed", "databases": fleet.databases, "counts": counts,
        "notCompleted": failed, "endedAt": fleet.ended_at, "statusUrl": format!("{base}/export/fleet/{fleet_id}"),
    });
    tracing::info!(fleet_id = %fleet_id, counts = ?counts, "fleet ended");
    if let (Some(url), Some(notifier), true) =
        (&fleet.callback_url, &state.settings.notifier, first_end)
    {
        send_callback(notifier, url, &summary).await;
    }
    Ok(summary)
}

/// Sends the fleet's callback, with the notifier's retries; a callback that cannot be
/// delivered is logged, and does not fail the fleet.
async fn send_callback(sender: &dyn CallbackSender, url: &str, summary: &Value) {
    let body = summary.to_string().into_bytes();
    let _ = crate::lifecycle::send_with_retries(sender, url, &body, "fleet").await;
}
