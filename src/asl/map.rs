//! The `Map` state: runs its `ItemProcessor` once per item of `ItemsPath`, at most
//! `MaxConcurrency` (or `MaxConcurrencyPath`) at a time, and fails only when more than
//! `ToleratedFailurePercentage` of the items failed.
//!
//! Locally every item runs in this process, in order of the items, as a state machine of
//! its own (Step Functions runs a distributed map's items as child executions: each
//! keeps its own history, which is what lets a fleet of 10,000 databases fit). `$$.Map.Item.Index`
//! and `$$.Map.Item.Value` are set for `ItemSelector`.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::path::{self, PathError};
use super::task::{Outcome, TaskHandler};
use super::{DefinitionError, State, StateMachine};

/// Runs one item's states to their end (the interpreter's own loop, given by it: the
/// map's items run the same states any execution runs).
pub(super) type RunItem =
    for<'a> fn(
        &'a StateMachine,
        &'a dyn TaskHandler,
        Value,
        Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>;

fn runtime(e: PathError) -> Outcome {
    Outcome::Failed {
        error: "States.Runtime".into(),
        cause: e.0,
    }
}

/// A `Map` state (the fields chunkdump's fleet definition uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct MapState {
    #[serde(default)]
    pub comment: Option<String>,
    pub items_path: Option<String>,
    pub item_selector: Option<Value>,
    pub item_processor: ItemProcessor,
    pub max_concurrency: Option<u32>,
    pub max_concurrency_path: Option<String>,
    pub tolerated_failure_percentage: Option<f64>,
    /// A distributed map's run label in AWS; nothing locally.
    pub label: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub result_path: Option<Option<String>>,
    pub next: Option<String>,
    #[serde(default)]
    pub end: bool,
    pub input_path: Option<String>,
    pub output_path: Option<String>,
}

/// What runs for each item.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ItemProcessor {
    #[serde(default)]
    pub comment: Option<String>,
    /// `{"Mode": "INLINE"}` or `{"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}`.
    pub processor_config: Option<Value>,
    pub start_at: String,
    pub states: BTreeMap<String, State>,
}

impl MapState {
    /// The item processor as a state machine of its own.
    fn processor(&self) -> StateMachine {
        StateMachine {
            comment: self.item_processor.comment.clone(),
            start_at: self.item_processor.start_at.clone(),
            states: self.item_processor.states.clone(),
        }
    }

    /// Checks the processor (its states and transitions) and the paths and templates.
    pub(super) fn check(&self, name: &str) -> Result<(), DefinitionError> {
        let inside = |e: DefinitionError| DefinitionError(format!("map {name:?}: {}", e.0));
        self.processor().check().map_err(inside)?;
        for p in [&self.items_path, &self.max_concurrency_path]
            .into_iter()
            .flatten()
        {
            path::check(p).map_err(|e| DefinitionError(format!("map {name:?}: {e}")))?;
        }
        if let Some(selector) = &self.item_selector {
            path::check_template(selector)
                .map_err(|e| DefinitionError(format!("map {name:?}: {e}")))?;
        }
        if self
            .tolerated_failure_percentage
            .is_some_and(|p| !(0.0..=100.0).contains(&p))
        {
            return Err(DefinitionError(format!(
                "map {name:?}: ToleratedFailurePercentage must be 0 to 100"
            )));
        }
        Ok(())
    }
}

/// Runs a Map state on `input`: its next state and output.
pub(super) async fn run_map(
    m: &MapState,
    name: &str,
    handler: &dyn TaskHandler,
    input: &Value,
    context: &Value,
    run_item: RunItem,
) -> Result<(Option<String>, Value), Outcome> {
    let flow = m.flow();
    let effective = flow
        .input_path
        .map_or(Ok(input.clone()), |p| path::get(p, input, context))
        .map_err(runtime)?;
    let items = match &m.items_path {
        Some(p) => path::get(p, &effective, context).map_err(runtime)?,
        None => effective.clone(),
    };
    let Value::Array(items) = items else {
        return Err(Outcome::Failed {
            error: "States.Runtime".into(),
            cause: format!("map {name:?}: ItemsPath does not point at an array"),
        });
    };
    let concurrency = match &m.max_concurrency_path {
        Some(p) => path::get(p, &effective, context)
            .map_err(runtime)?
            .as_u64()
            .ok_or_else(|| Outcome::Failed {
                error: "States.Runtime".into(),
                cause: format!("map {name:?}: MaxConcurrencyPath does not point at a whole number"),
            })?,
        None => m.max_concurrency.map_or(0, u64::from),
    };
    // 0 means no limit, as in Step Functions.
    let concurrency = if concurrency == 0 {
        items.len().max(1)
    } else {
        concurrency as usize
    };
    let processor = m.processor();
    let mut inputs = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let mut item_context = context.clone();
        item_context["Map"] = json!({"Item": {"Index": index, "Value": item}});
        let item_input = match &m.item_selector {
            Some(selector) => {
                path::template(selector, &effective, &item_context).map_err(runtime)?
            }
            None => item,
        };
        inputs.push((item_input, item_context));
    }
    let total = inputs.len();
    let outcomes: Vec<Outcome> =
        futures_util::stream::iter(inputs.into_iter().map(|(item_input, item_context)| {
            // Boxed by `run_item`: a map's items run states that may hold maps themselves.
            run_item(&processor, handler, item_input, item_context)
        }))
        .buffered(concurrency)
        .collect()
        .await;
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Failed { .. }))
        .count();
    let tolerated = m.tolerated_failure_percentage.unwrap_or(0.0);
    if failed > 0 && (failed as f64) * 100.0 > tolerated * total as f64 {
        return Err(Outcome::Failed {
            error: "States.ExceedToleratedFailureThreshold".into(),
            cause: format!("map {name:?}: {failed} of {total} items failed"),
        });
    }
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Succeeded(v) => v,
            Outcome::Failed { error, cause } => json!({"Error": error, "Cause": cause}),
        })
        .collect();
    let merged = path::merge(
        m.result_path.clone().unwrap_or(Some("$".into())).as_deref(),
        input.clone(),
        Value::Array(results),
    )
    .map_err(runtime)?;
    let output = flow
        .output_path
        .map_or(Ok(merged.clone()), |p| path::get(p, &merged, context))
        .map_err(runtime)?;
    Ok((flow.next.map(str::to_string), output))
}

#[cfg(test)]
mod tests {
    use super::super::exec::execute;
    use super::super::task::{Execution, TaskError};
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Doubles `n`, fails on 13; counts how many run at once.
    struct Doubler {
        running: AtomicUsize,
        most: AtomicUsize,
        seen: Mutex<Vec<Value>>,
    }

    #[async_trait::async_trait]
    impl TaskHandler for Doubler {
        async fn invoke(&self, _resource: &str, input: Value) -> Result<Value, TaskError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            self.seen.lock().unwrap().push(input.clone());
            // Every item waits here, so items that may run together do.
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            let n = input["n"].as_i64().unwrap();
            if n == 13 {
                return Err(TaskError {
                    error: "Unlucky".into(),
                    cause: "13".into(),
                });
            }
            Ok(json!({"n": n * 2, "tag": input["tag"]}))
        }
    }

    const FLEET: &str = r#"{"StartAt": "Each", "States": {
        "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrencyPath": "$.at_once",
                 "ToleratedFailurePercentage": 50,
                 "ItemSelector": {"n.$": "$$.Map.Item.Value", "tag.$": "$.tag", "index.$": "$$.Map.Item.Index"},
                 "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Double", "States": {"Double": {"Type": "Task", "Resource": "test:double", "End": true}}},
                 "ResultPath": "$.doubled", "Next": "Done"},
        "Done": {"Type": "Succeed"}}}"#;

    async fn run(items: Value, at_once: u64) -> (Outcome, usize, Vec<Value>) {
        let machine = StateMachine::parse(FLEET, &[]).unwrap();
        let handler = Doubler {
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        };
        let execution = Execution {
            name: "x".into(),
            state_machine_id: "arn:aws:states:local:0:stateMachine:t".into(),
            input: json!({"items": items, "at_once": at_once, "tag": "t"}),
        };
        let outcome = execute(&machine, &handler, &execution, &mut |_| {}).await;
        let seen = handler.seen.lock().unwrap().clone();
        (outcome, handler.most.load(Ordering::SeqCst), seen)
    }

    #[tokio::test]
    async fn every_item_runs_with_its_selector_at_most_max_concurrency_at_a_time() {
        let (outcome, most, seen) = run(json!([1, 2, 3, 4, 5, 6, 7]), 3).await;
        let Outcome::Succeeded(out) = outcome else {
            panic!("{outcome:?}")
        };
        let doubled: Vec<i64> = out["doubled"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["n"].as_i64().unwrap())
            .collect();
        assert_eq!(doubled, [2, 4, 6, 8, 10, 12, 14]);
        assert!(out["doubled"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["tag"] == "t"));
        assert_eq!(most, 3, "three at a time, never more");
        let mut indices: Vec<i64> = seen.iter().map(|v| v["index"].as_i64().unwrap()).collect();
        indices.sort();
        assert_eq!(indices, (0..7).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn failures_up_to_the_tolerated_share_do_not_stop_the_others() {
        // One of two failed: 50 % is tolerated; every other item still ran.
        let (outcome, _, seen) = run(json!([13, 5]), 1).await;
        let Outcome::Succeeded(out) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(out["doubled"][0]["Error"], "Unlucky");
        assert_eq!(out["doubled"][1]["n"], 10);
        assert_eq!(seen.len(), 2);
        // Two of three failed: more than tolerated.
        let (outcome, _, seen) = run(json!([13, 13, 1]), 2).await;
        assert!(
            matches!(&outcome, Outcome::Failed { error, .. } if error == "States.ExceedToleratedFailureThreshold"),
            "{outcome:?}"
        );
        assert_eq!(seen.len(), 3, "every item runs before the map fails");
        // A processor with a dangling state is refused when the definition loads.
        let bad = FLEET.replace(r#""End": true"#, r#""Next": "Nowhere""#);
        assert!(StateMachine::parse(&bad, &[])
            .unwrap_err()
            .to_string()
            .contains("Nowhere"));
    }
}
