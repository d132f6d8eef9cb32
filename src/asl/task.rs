//! What an execution is made of, as both the executor (`exec`) and the Map state
//! (`map`) see it: a task's handler and its failure, an execution, how it ended, and
//! the steps it took.

use async_trait::async_trait;
use serde_json::Value;

/// A task failure as Step Functions sees it: an error name (a Lambda `errorType`, or a
/// `States.*` name) and a cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    pub error: String,
    pub cause: String,
}

/// Runs the work behind a `Task` state's `Resource`.
#[async_trait]
pub trait TaskHandler: Send + Sync {
    /// Runs `resource` with `input` (the evaluated `Parameters`).
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskError>;
}

/// One execution: its name (unique per state machine) and input.
#[derive(Debug, Clone)]
pub struct Execution {
    pub name: String,
    pub state_machine_id: String,
    pub input: Value,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Value),
    Failed { error: String, cause: String },
}

/// What happened, in order, for tests and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Entered(String),
    Retried {
        state: String,
        error: String,
        attempt: u32,
    },
    Caught {
        state: String,
        error: String,
        /// The failure's cause (the task's error message).
        cause: String,
        next: String,
    },
}
