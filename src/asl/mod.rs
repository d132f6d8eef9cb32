//! A small interpreter of Amazon States Language, so that local runs execute the very
//! `statemachine.json` that Step Functions runs in AWS.
//!
//! It supports what chunkdump's definitions use, and refuses anything else at load time
//! (unknown fields are errors, not silently ignored): the `Task`, `Choice`, `Wait`,
//! `Pass`, `Succeed` and `Fail` states, and `Map` (inline or distributed: each item's
//! processor runs in-process, `MaxConcurrency` at a time, see [`map`]); `InputPath`, `Parameters`, `ResultSelector`,
//! `ResultPath`, `OutputPath`; `Retry` (with `BackoffRate`, `MaxDelaySeconds`) and
//! `Catch`; `$.a.b` and `$$.Context` paths. Tasks are dispatched to a [`TaskHandler`]
//! by their `Resource` string after `DefinitionSubstitutions`.
//!
//! One extension: a `Wait` state's `SecondsPath` may hold a fractional number locally
//! (AWS needs whole seconds), so local runs can breathe for milliseconds.

mod exec;
pub mod map;
pub mod path;
mod task;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

pub use exec::execute;
pub use task::{Execution, Outcome, Step, TaskError, TaskHandler};

/// The state machine definition chunkdump deploys, embedded so local runs use it.
pub const DEFINITION: &str = include_str!("../../statemachine.json");

/// The fleet state machine's definition (many databases, one map item each).
pub const FLEET_DEFINITION: &str = include_str!("../../fleet-statemachine.json");

/// A definition that cannot be interpreted.
#[derive(Debug, thiserror::Error)]
#[error("state machine definition: {0}")]
pub struct DefinitionError(pub String);

/// A parsed and checked state machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StateMachine {
    #[serde(default)]
    pub comment: Option<String>,
    pub start_at: String,
    pub states: BTreeMap<String, State>,
}

/// One state.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "Type")]
pub enum State {
    Task(Box<TaskState>),
    Choice(ChoiceState),
    Wait(WaitState),
    Pass(PassState),
    Succeed(EndState),
    Fail(FailState),
    Map(Box<map::MapState>),
}

/// Fields shared by the states that move on: where to go and how input becomes output.
#[derive(Debug, Clone, Copy)]
pub struct Flow<'a> {
    pub next: Option<&'a str>,
    pub end: bool,
    pub input_path: Option<&'a str>,
    pub output_path: Option<&'a str>,
}

macro_rules! flow_of {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// Where this state goes, and its input and output paths.
            pub fn flow(&self) -> Flow<'_> {
                Flow { next: self.next.as_deref(), end: self.end, input_path: self.input_path.as_deref(), output_path: self.output_path.as_deref() }
            }
        }
    )*};
}
flow_of!(TaskState, WaitState, PassState, map::MapState);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TaskState {
    pub resource: String,
    #[serde(default)]
    pub comment: Option<String>,
    pub parameters: Option<Value>,
    pub result_selector: Option<Value>,
    /// Outer `None`: absent (`$`); inner `None`: JSON `null` (discard the result).
    #[serde(default, deserialize_with = "nullable")]
    pub result_path: Option<Option<String>>,
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub retry: Vec<Retrier>,
    #[serde(default)]
    pub catch: Vec<Catcher>,
    pub next: Option<String>,
    #[serde(default)]
    pub end: bool,
    pub input_path: Option<String>,
    pub output_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    #[serde(default = "one")]
    pub interval_seconds: f64,
    #[serde(default = "three")]
    pub max_attempts: u32,
    #[serde(default = "two")]
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    #[serde(default, deserialize_with = "nullable")]
    pub result_path: Option<Option<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ChoiceState {
    #[serde(default)]
    pub comment: Option<String>,
    pub choices: Vec<ChoiceRule>,
    pub default: Option<String>,
    pub input_path: Option<String>,
    pub output_path: Option<String>,
}

/// A choice rule: a comparison (or `And`/`Or`/`Not` of them); top-level rules have `Next`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ChoiceRule {
    pub next: Option<String>,
    pub variable: Option<String>,
    pub boolean_equals: Option<bool>,
    pub string_equals: Option<String>,
    pub numeric_equals: Option<f64>,
    pub numeric_greater_than_equals: Option<f64>,
    pub numeric_less_than: Option<f64>,
    pub is_present: Option<bool>,
    pub and: Option<Vec<ChoiceRule>>,
    pub or: Option<Vec<ChoiceRule>>,
    pub not: Option<Box<ChoiceRule>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct WaitState {
    #[serde(default)]
    pub comment: Option<String>,
    pub seconds: Option<f64>,
    pub seconds_path: Option<String>,
    pub next: Option<String>,
    #[serde(default)]
    pub end: bool,
    pub input_path: Option<String>,
    pub output_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PassState {
    #[serde(default)]
    pub comment: Option<String>,
    pub result: Option<Value>,
    pub parameters: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    pub result_path: Option<Option<String>>,
    pub next: Option<String>,
    #[serde(default)]
    pub end: bool,
    pub input_path: Option<String>,
    pub output_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EndState {
    #[serde(default)]
    pub comment: Option<String>,
    pub input_path: Option<String>,
    pub output_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FailState {
    #[serde(default)]
    pub comment: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

pub(crate) fn nullable<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?))
}
fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}
fn three() -> u32 {
    3
}

impl StateMachine {
    /// Parses `json` after replacing each `${Name}` of `substitutions`, and checks that
    /// every transition leads to a state and every path is in the supported subset.
    pub fn parse(json: &str, substitutions: &[(&str, &str)]) -> Result<Self, DefinitionError> {
        let mut text = json.to_string();
        for (name, value) in substitutions {
            text = text.replace(&format!("${{{name}}}"), value);
        }
        if let Some(at) = text.find("${") {
            let name: String = text[at..].chars().take_while(|c| *c != '}').collect();
            return Err(DefinitionError(format!(
                "no substitution given for {name}}}"
            )));
        }
        let machine: StateMachine =
            serde_json::from_str(&text).map_err(|e| DefinitionError(e.to_string()))?;
        machine.check()?;
        Ok(machine)
    }

    pub(crate) fn check(&self) -> Result<(), DefinitionError> {
        let known = |target: &str, from: &str| {
            if self.states.contains_key(target) {
                Ok(())
            } else {
                Err(DefinitionError(format!(
                    "state {from:?} goes to unknown state {target:?}"
                )))
            }
        };
        let paths = |list: &[Option<&str>], from: &str| {
            list.iter().flatten().try_for_each(|p| {
                path::check(p).map_err(|e| DefinitionError(format!("state {from:?}: {e}")))
            })
        };
        known(&self.start_at, "StartAt")?;
        for (name, state) in &self.states {
            let flow = |flow: Flow| match (flow.next, flow.end) {
                (Some(next), false) => known(next, name),
                (None, true) => Ok(()),
                _ => Err(DefinitionError(format!(
                    "state {name:?} needs exactly one of Next and End"
                ))),
            };
            match state {
                State::Task(t) => {
                    flow(t.flow())?;
                    paths(
                        &[
                            t.input_path.as_deref(),
                            t.output_path.as_deref(),
                            t.result_path.clone().flatten().as_deref(),
                        ],
                        name,
                    )?;
                    for template in [&t.parameters, &t.result_selector].into_iter().flatten() {
                        path::check_template(template)
                            .map_err(|e| DefinitionError(format!("state {name:?}: {e}")))?;
                    }
                    for c in &t.catch {
                        known(&c.next, name)?;
                        paths(&[c.result_path.clone().flatten().as_deref()], name)?;
                    }
                }
                State::Choice(c) => {
                    for rule in &c.choices {
                        known(
                            rule.next.as_deref().ok_or_else(|| {
                                DefinitionError(format!("a choice of {name:?} has no Next"))
                            })?,
                            name,
                        )?;
                    }
                    if let Some(d) = &c.default {
                        known(d, name)?;
                    }
                }
                State::Wait(w) => {
                    flow(w.flow())?;
                    if w.seconds.is_some() == w.seconds_path.is_some() {
                        return Err(DefinitionError(format!(
                            "wait state {name:?} needs exactly one of Seconds and SecondsPath"
                        )));
                    }
                    paths(&[w.seconds_path.as_deref()], name)?;
                }
                State::Pass(p) => flow(p.flow())?,
                State::Map(m) => {
                    flow(m.flow())?;
                    m.check(name)?;
                }
                State::Succeed(_) | State::Fail(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_definition_parses_and_bad_ones_are_refused() {
        let m = StateMachine::parse(
            DEFINITION,
            &[
                ("ChunkFunctionArn", "local:chunk"),
                ("SnapshotFunctionArn", "local:chunk"),
                ("DrillFunctionArn", "local:chunk"),
            ],
        )
        .unwrap();
        assert!(matches!(m.states[&m.start_at], State::Task(_)));
        assert!(StateMachine::parse(DEFINITION, &[])
            .unwrap_err()
            .to_string()
            .contains("FunctionArn"));
        let unknown_field = r#"{"StartAt":"A","States":{"A":{"Type":"Succeed","Color":"red"}}}"#;
        assert!(StateMachine::parse(unknown_field, &[]).is_err());
        let dangling = r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"}}}"#;
        assert!(StateMachine::parse(dangling, &[])
            .unwrap_err()
            .to_string()
            .contains("unknown state \"B\""));
        let bad_path =
            r#"{"StartAt":"A","States":{"A":{"Type":"Wait","SecondsPath":"$.a[0]","End":true}}}"#;
        assert!(StateMachine::parse(bad_path, &[]).is_err());
    }

    /// Fails its first fleet task with `error`, then answers every task: an empty page,
    /// an ended fleet.
    struct FailsFirst {
        error: &'static str,
        calls: std::sync::atomic::AtomicU32,
    }

    #[async_trait::async_trait]
    impl TaskHandler for FailsFirst {
        async fn invoke(&self, _resource: &str, input: Value) -> Result<Value, TaskError> {
            if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return Err(TaskError {
                    error: self.error.into(),
                    cause: "injected".into(),
                });
            }
            Ok(match input["chunkdumpFleet"]["action"].as_str() {
                Some("page") => serde_json::json!({"databases": []}),
                _ => serde_json::json!({"status": "completed"}),
            })
        }
    }

    /// The fleet machine retries a task only on a passing fault (`Retryable`): a
    /// `StorageFault` or `Fatal` error ends it at once instead of six retries.
    #[tokio::test]
    async fn the_fleet_machine_retries_only_retryable_errors() {
        let machine =
            StateMachine::parse(FLEET_DEFINITION, &[("FleetFunctionArn", "local:fleet")]).unwrap();
        for (error, calls, succeeded) in [
            ("Retryable", 3, true),
            ("StorageFault", 1, false),
            ("Fatal", 1, false),
        ] {
            let handler = FailsFirst {
                error,
                calls: std::sync::atomic::AtomicU32::new(0),
            };
            let execution = Execution {
                name: "f".into(),
                state_machine_id: "arn:aws:states:local:0:stateMachine:f".into(),
                input: serde_json::json!({"fleetId": "fleet_x", "page": 0, "concurrency": 1}),
            };
            let outcome = execute(&machine, &handler, &execution, &mut |_| {}).await;
            assert_eq!(
                matches!(outcome, Outcome::Succeeded(_)),
                succeeded,
                "{error}: {outcome:?}"
            );
            // NextPage (retried or not), then FinishFleet when it goes on.
            let made = handler.calls.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(made, calls, "{error}");
        }
    }
}
