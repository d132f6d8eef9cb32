//! The local orchestrator: runs dumps in this process by interpreting
//! `statemachine.json` with the task handlers of [`crate::tasks`] (`chunkdump dump`,
//! `resume` and `serve`). In AWS, Step Functions does this
//! (`cloud::SfnOrchestrator`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::asl::{
    execute, Execution, Outcome, StateMachine, Step, TaskError, TaskHandler, DEFINITION,
    FLEET_DEFINITION,
};
use crate::error::DumpError;
use crate::execution::{execution_arn, execution_name, first_input};
use crate::model::{JobRecord, JobStatus};
use crate::ports::{Orchestrator, RunState};
use crate::tasks::{error_document, TaskInput, Tasks};

/// The chunk function's ARN in local runs (`DefinitionSubstitutions`' `ChunkFunctionArn`).
pub const LOCAL_CHUNK_FUNCTION: &str = "arn:aws:lambda:local:000000000000:function:chunkdump-chunk";
/// The state machine's ARN in local runs.
pub const LOCAL_STATE_MACHINE: &str = "arn:aws:states:local:000000000000:stateMachine:chunkdump";
/// The fleet tasks' function in local runs (`FleetFunctionArn`).
pub const LOCAL_FLEET_FUNCTION: &str = "arn:aws:lambda:local:000000000000:function:chunkdump-api";
/// The fleet state machine's ARN in local runs.
pub const LOCAL_FLEET_STATE_MACHINE: &str =
    "arn:aws:states:local:000000000000:stateMachine:chunkdump-fleet";
/// The optimized integration the definition uses to continue as a new execution.
pub const START_EXECUTION: &str = "arn:aws:states:::states:startExecution";

/// Runs dumps in this process by interpreting `statemachine.json`, one task per dump.
pub struct LocalRunner {
    tasks: Arc<Tasks>,
    machine: Arc<StateMachine>,
    running: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Where runs hold their run locks (see [`crate::local::run_lock`]), so other
    /// processes on the same store see them; `None` for a store of this process alone.
    lock_dir: Option<std::path::PathBuf>,
    /// The fleet state machine, and what runs its tasks once a server gives it
    /// ([`LocalRunner::run_fleets_with`]); without one, fleets are refused.
    fleet_machine: Arc<StateMachine>,
    fleet_tasks: Mutex<Option<Arc<dyn TaskHandler>>>,
}

impl LocalRunner {
    /// A runner of the shipped definition.
    pub fn new(tasks: Tasks) -> Result<Self, DumpError> {
        Self::with_definition(tasks, DEFINITION)
    }

    /// A runner of another definition (for tests of the interpreter).
    pub fn with_definition(tasks: Tasks, definition: &str) -> Result<Self, DumpError> {
        let machine = StateMachine::parse(
            definition,
            &[
                ("ChunkFunctionArn", LOCAL_CHUNK_FUNCTION),
                ("SnapshotFunctionArn", LOCAL_CHUNK_FUNCTION),
                ("DrillFunctionArn", LOCAL_CHUNK_FUNCTION),
            ],
        )
        .map_err(|e| DumpError::Internal(e.to_string()))?;
        let fleet_machine = StateMachine::parse(
            FLEET_DEFINITION,
            &[("FleetFunctionArn", LOCAL_FLEET_FUNCTION)],
        )
        .map_err(|e| DumpError::Internal(e.to_string()))?;
        Ok(LocalRunner {
            tasks: Arc::new(tasks),
            machine: Arc::new(machine),
            running: Mutex::new(HashMap::new()),
            lock_dir: None,
            fleet_machine: Arc::new(fleet_machine),
            fleet_tasks: Mutex::new(None),
        })
    }

    /// Runs fleets (`fleet-statemachine.json`) with `handler` for their tasks (the API's
    /// fleet tasks, which start dumps through this runner); replaces an earlier one.
    pub fn run_fleets_with(&self, handler: Arc<dyn TaskHandler>) {
        *self.fleet_tasks.lock().expect("not poisoned") = Some(handler);
    }

    /// Runs hold run locks in `dir` (the store's), which `describe` asks for runs of
    /// other processes.
    pub fn with_run_locks(mut self, dir: std::path::PathBuf) -> Self {
        self.lock_dir = Some(dir);
        self
    }

    /// Runs dump `id` through its executions (following continue-as-new) to the end.
    pub async fn run(
        &self,
        id: &str,
        version: u64,
        on_step: &mut (dyn FnMut(Step) + Send),
    ) -> Outcome {
        run_chain(&self.machine, &self.tasks, id, version, on_step).await
    }

    /// Runs dump `id` to the end and returns its completed job, or the reason it is not.
    pub async fn run_to_end(&self, id: &str) -> Result<JobRecord, DumpError> {
        let job = self.tasks.progress.require(id).await?;
        crate::lifecycle::refuse_failed(&job)?;
        // The first failure the run caught: what to say if it ends paused without having
        // recorded why (the progress store on the full disk that paused it).
        let mut first_caught: Option<String> = None;
        let outcome = self
            .run(id, job.version, &mut |step| {
                if let Step::Caught { cause, .. } = step {
                    // A task's cause is its error payload (`{"errorMessage": …}`), as
                    // Lambda's; the message is what a person reads.
                    let message = serde_json::from_str::<serde_json::Value>(&cause)
                        .ok()
                        .and_then(|v| v["errorMessage"].as_str().map(str::to_string))
                        .unwrap_or(cause);
                    first_caught.get_or_insert(message);
                }
            })
            .await;
        let job = self.tasks.progress.require(id).await?;
        match (job.status, outcome) {
            (JobStatus::Completed, _) => Ok(job),
            (JobStatus::Failed, _) => Err(DumpError::RunFailed {
                error: job
                    .error
                    .as_ref()
                    .map_or("failed".into(), |e| e.code.clone()),
                message: job
                    .error
                    .as_ref()
                    .map_or(String::new(), |e| e.message.clone()),
            }),
            (JobStatus::Interrupted, _) => Err(DumpError::Interrupted {
                id: id.into(),
                message: job
                    .error
                    .as_ref()
                    .map_or(String::new(), |e| e.message.clone()),
            }),
            // The run ended in the Interrupted state, but marking the job failed (the
            // fault may be the progress store itself: a full disk holds it too). It is
            // paused all the same: its record still says where to resume from.
            (_, Outcome::Failed { error, cause }) if error == INTERRUPTED_ERROR => {
                Err(DumpError::Interrupted {
                    id: id.into(),
                    message: first_caught.unwrap_or(cause),
                })
            }
            (status, Outcome::Failed { error, cause }) => Err(DumpError::RunFailed {
                error,
                message: format!("{cause} (the dump is {})", status.as_str()),
            }),
            (status, Outcome::Succeeded(_)) => Err(DumpError::WrongState {
                id: id.into(),
                status,
                message: "the dump did not complete".into(),
            }),
        }
    }
}

/// The error of `statemachine.json`'s `Interrupted` Fail state: the run paused the dump.
const INTERRUPTED_ERROR: &str = "DumpInterrupted";

async fn run_chain(
    machine: &StateMachine,
    tasks: &Tasks,
    id: &str,
    version: u64,
    on_step: &mut (dyn FnMut(Step) + Send),
) -> Outcome {
    let mut execution = Execution {
        name: execution_name(id, 0),
        state_machine_id: LOCAL_STATE_MACHINE.into(),
        input: first_input(id, version),
    };
    loop {
        let handler = LocalTasks {
            tasks,
            continuation: Mutex::new(None),
        };
        tracing::debug!(dump_id = %id, execution = %execution.name, "execution started");
        let outcome = execute(machine, &handler, &execution, on_step).await;
        let next = handler.continuation.lock().expect("not poisoned").take();
        match (next, &outcome) {
            (Some(next), Outcome::Succeeded(_)) => execution = next,
            _ => return outcome,
        }
    }
}

/// Maps the definition's task resources to the in-process handlers.
struct LocalTasks<'a> {
    tasks: &'a Tasks,
    /// The execution a `startExecution` task asked for, started when this one ends.
    continuation: Mutex<Option<Execution>>,
}

#[async_trait]
impl TaskHandler for LocalTasks<'_> {
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskError> {
        match resource {
            LOCAL_CHUNK_FUNCTION => {
                let input: TaskInput = serde_json::from_value(input).map_err(|e| TaskError {
                    error: "Fatal".into(),
                    cause: error_document(&DumpError::InvalidRequest(format!("task input: {e}")))
                        .to_string(),
                })?;
                self.tasks.handle(input, None).await.map_err(|e| TaskError {
                    error: e.error_type().into(),
                    cause: error_document(&e).to_string(),
                })
            }
            START_EXECUTION => {
                let name = input["Name"].as_str().unwrap_or_default().to_string();
                let state_machine_id = input["StateMachineArn"]
                    .as_str()
                    .unwrap_or(LOCAL_STATE_MACHINE)
                    .to_string();
                let arn = execution_arn(&state_machine_id, &name);
                *self.continuation.lock().expect("not poisoned") = Some(Execution {
                    name,
                    state_machine_id,
                    input: input["Input"].clone(),
                });
                Ok(json!({"ExecutionArn": arn, "StartDate": chrono::Utc::now().to_rfc3339()}))
            }
            other => Err(TaskError {
                error: "States.Runtime".into(),
                cause: format!("the local runner has no handler for resource {other:?}"),
            }),
        }
    }
}

#[async_trait]
impl Orchestrator for LocalRunner {
    async fn start_fleet(&self, fleet_id: &str, input: Value) -> Result<(), DumpError> {
        let handler = self.fleet_tasks.lock().expect("not poisoned").clone();
        let Some(handler) = handler else {
            return Err(DumpError::InvalidRequest(
                "this server runs no fleets (it has no database root)".into(),
            ));
        };
        let key = format!("fleet:{fleet_id}");
        let mut running = self
            .running
            .lock()
            .map_err(|_| DumpError::Internal("runner lock poisoned".into()))?;
        if running.get(&key).is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        let execution = Execution {
            name: execution_name(fleet_id, 0),
            state_machine_id: LOCAL_FLEET_STATE_MACHINE.into(),
            input,
        };
        let (machine, fleet_id) = (self.fleet_machine.clone(), fleet_id.to_string());
        let handle = tokio::spawn(async move {
            match execute(&machine, handler.as_ref(), &execution, &mut |_| {}).await {
                Outcome::Succeeded(_) => {
                    tracing::info!(fleet_id = %fleet_id, "fleet run succeeded")
                }
                Outcome::Failed { error, cause } => {
                    tracing::warn!(fleet_id = %fleet_id, %error, %cause, "fleet run failed")
                }
            }
        });
        running.insert(key, handle);
        Ok(())
    }

    async fn start(&self, id: &str, version: u64) -> Result<(), DumpError> {
        let mut running = self
            .running
            .lock()
            .map_err(|_| DumpError::Internal("runner lock poisoned".into()))?;
        running.retain(|_, handle| !handle.is_finished());
        if running.contains_key(id) {
            return Ok(());
        }
        let lock = match &self.lock_dir {
            Some(dir) => match crate::local::run_lock::try_lock_run(dir, id) {
                Ok(crate::local::run_lock::RunLock::Taken(held)) => Some(held),
                // Another process runs it already: one run per dump.
                Ok(crate::local::run_lock::RunLock::Held) => return Ok(()),
                Err(e) => {
                    return Err(DumpError::Internal(format!(
                        "run lock of {id} in {}: {e}",
                        dir.display()
                    )))
                }
            },
            None => None,
        };
        let (machine, tasks, dump_id) = (self.machine.clone(), self.tasks.clone(), id.to_string());
        let handle = tokio::spawn(async move {
            // Held until the run ends (or the task is aborted, which drops it).
            let _lock = lock;
            match run_chain(&machine, &tasks, &dump_id, version, &mut |_| {}).await {
                Outcome::Succeeded(_) => tracing::info!(dump_id = %dump_id, "run succeeded"),
                Outcome::Failed { error, cause } => {
                    tracing::warn!(dump_id = %dump_id, %error, %cause, "run failed")
                }
            }
        });
        running.insert(id.to_string(), handle);
        Ok(())
    }

    async fn resume(&self, id: &str, version: u64) -> Result<(), DumpError> {
        // Runs here are not named by Step Functions: a new run is a new start.
        self.start(id, version).await
    }

    async fn stop(&self, id: &str) -> Result<(), DumpError> {
        let handle = self
            .running
            .lock()
            .map_err(|_| DumpError::Internal("runner lock poisoned".into()))?
            .remove(id);
        if let Some(handle) = handle {
            // Dropping the chunk's futures closes its upload channel; the export thread
            // stops at its next part. Waiting for the task to be gone means nothing of
            // it starts a write after this returns (writes already running are waited
            // for by the store's `settle`).
            handle.abort();
            let _ = handle.await;
        }
        Ok(())
    }

    async fn describe(&self, id: &str) -> Result<RunState, DumpError> {
        let running = self
            .running
            .lock()
            .map_err(|_| DumpError::Internal("runner lock poisoned".into()))?;
        let elsewhere = || {
            self.lock_dir
                .as_deref()
                .is_some_and(|dir| crate::local::run_lock::held_elsewhere(dir, id))
        };
        Ok(match running.get(id) {
            Some(h) if !h.is_finished() => RunState::Running,
            _ if elsewhere() => RunState::Running,
            Some(_) => RunState::Ended("ENDED".into()),
            None => RunState::None,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_interrupted_error_is_the_state_machines() {
        let machine: serde_json::Value = serde_json::from_str(crate::asl::DEFINITION).unwrap();
        assert_eq!(
            machine["States"]["Interrupted"]["Error"],
            super::INTERRUPTED_ERROR
        );
    }
}
