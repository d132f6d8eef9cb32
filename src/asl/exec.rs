//! Executes a [`StateMachine`]: moves from state to state, applies paths and templates,
//! dispatches tasks, waits, retries and catches as Step Functions does.

use std::time::Duration;

use serde_json::{json, Value};

use super::path::{self, PathError};
use super::task::{Execution, Outcome, Step, TaskError, TaskHandler};
use super::{
    ChoiceRule, ChoiceState, EndState, FailState, PassState, State, StateMachine, TaskState,
    WaitState,
};

/// Where a state leads: the next state (none: the execution ends), its output, and a
/// pause before moving on (Wait states).
struct Move {
    next: Option<String>,
    output: Value,
    pause: f64,
}

fn runtime(e: PathError) -> Outcome {
    Outcome::Failed {
        error: "States.Runtime".into(),
        cause: e.0,
    }
}

fn matches(names: &[String], error: &str) -> bool {
    names.iter().any(|n| {
        n == error || n == "States.ALL" || (n == "States.TaskFailed" && error != "States.Timeout")
    })
}

/// Runs `machine` from `StartAt` until a terminal state, calling `on_step` as it goes.
pub async fn execute(
    machine: &StateMachine,
    handler: &dyn TaskHandler,
    execution: &Execution,
    on_step: &mut (dyn FnMut(Step) + Send),
) -> Outcome {
    let context = json!({
        "Execution": { "Id": crate::execution::execution_arn(&execution.state_machine_id, &execution.name),
                       "Name": execution.name, "Input": execution.input },
        "StateMachine": { "Id": execution.state_machine_id },
    });
    run_states(machine, handler, execution.input.clone(), context, on_step).await
}

/// Runs `machine`'s states from `StartAt` on `input`, with `context` as `$$` (an
/// execution's, or a Map item's).
async fn run_states(
    machine: &StateMachine,
    handler: &dyn TaskHandler,
    input: Value,
    context: Value,
    on_step: &mut (dyn FnMut(Step) + Send),
) -> Outcome {
    let mut current = machine.start_at.clone();
    let mut input = input;
    loop {
        on_step(Step::Entered(current.clone()));
        let scope = Scope {
            input: &input,
            context: &context,
        };
        let step: Result<Move, Outcome> = match &machine.states[&current] {
            State::Succeed(s) => return run_succeed(s, &scope),
            State::Fail(f) => return run_fail(f),
            State::Pass(p) => run_pass(p, &scope).map_err(runtime),
            State::Wait(w) => run_wait(w, &scope).map_err(runtime),
            State::Choice(c) => run_choice(c, &current, &scope),
            State::Task(t) => run_task(t, &current, handler, &input, &context, on_step).await,
            State::Map(m) => super::map::run_map(m, &current, handler, &input, &context, run_item)
                .await
                .map(|(next, output)| Move {
                    next,
                    output,
                    pause: 0.0,
                }),
        };
        let Move {
            next,
            output,
            pause,
        } = match step {
            Ok(step) => step,
            Err(outcome) => return outcome,
        };
        if pause > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(pause)).await;
        }
        match next {
            Some(next) => {
                current = next;
                input = output;
            }
            None => return Outcome::Succeeded(output),
        }
    }
}

/// One Map item's states, run to their end (boxed: an item may hold a map itself).
fn run_item<'a>(
    machine: &'a StateMachine,
    handler: &'a dyn TaskHandler,
    input: Value,
    context: Value,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>> {
    Box::pin(async move {
        let mut quiet = |_: Step| {};
        run_states(machine, handler, input, context, &mut quiet).await
    })
}

/// A state's raw input and the execution's context object (`$$`).
struct Scope<'a> {
    input: &'a Value,
    context: &'a Value,
}

impl Scope<'_> {
    /// The state's effective input: `InputPath` applied to its raw input.
    fn input_path(&self, path: Option<&str>) -> Result<Value, PathError> {
        path.map_or(Ok(self.input.clone()), |p| {
            path::get(p, self.input, self.context)
        })
    }

    /// `OutputPath` applied to a state's output.
    fn output_path(&self, path: Option<&str>, output: Value) -> Result<Value, PathError> {
        match path {
            None => Ok(output),
            Some(p) => path::get(p, &output, self.context),
        }
    }
}

/// A Succeed state: the execution ends with its (path-filtered) input.
fn run_succeed(s: &EndState, scope: &Scope) -> Outcome {
    match scope
        .input_path(s.input_path.as_deref())
        .and_then(|v| scope.output_path(s.output_path.as_deref(), v))
    {
        Ok(out) => Outcome::Succeeded(out),
        Err(e) => runtime(e),
    }
}

/// A Fail state: the execution fails with its error and cause.
fn run_fail(f: &FailState) -> Outcome {
    Outcome::Failed {
        error: f.error.clone().unwrap_or_default(),
        cause: f.cause.clone().unwrap_or_default(),
    }
}

/// A Pass state: `Result` or `Parameters` (or the input), merged at `ResultPath`.
fn run_pass(p: &PassState, scope: &Scope) -> Result<Move, PathError> {
    let flow = p.flow();
    let effective = scope.input_path(flow.input_path)?;
    let result = match (&p.result, &p.parameters) {
        (Some(r), _) => r.clone(),
        (None, Some(t)) => path::template(t, &effective, scope.context)?,
        (None, None) => effective,
    };
    let merged = path::merge(
        p.result_path.clone().unwrap_or(Some("$".into())).as_deref(),
        scope.input.clone(),
        result,
    )?;
    Ok(Move {
        next: flow.next.map(str::to_string),
        output: scope.output_path(flow.output_path, merged)?,
        pause: 0.0,
    })
}

/// A Wait state: `Seconds` or `SecondsPath` of pause, input passed on.
fn run_wait(w: &WaitState, scope: &Scope) -> Result<Move, PathError> {
    let flow = w.flow();
    let effective = scope.input_path(flow.input_path)?;
    let seconds = match (&w.seconds, &w.seconds_path) {
        (Some(s), _) => *s,
        (None, Some(p)) => path::get(p, &effective, scope.context)?
            .as_f64()
            .filter(|s| *s >= 0.0 && s.is_finite())
            .ok_or_else(|| {
                PathError(format!(
                    "SecondsPath {p:?} must point at a non-negative number"
                ))
            })?,
        (None, None) => 0.0,
    };
    Ok(Move {
        next: flow.next.map(str::to_string),
        output: scope.output_path(flow.output_path, effective)?,
        pause: seconds,
    })
}

/// A Choice state: the first matching rule's `Next`, else `Default`, else
/// `States.NoChoiceMatched`.
fn run_choice(c: &ChoiceState, name: &str, scope: &Scope) -> Result<Move, Outcome> {
    let effective = scope.input_path(c.input_path.as_deref()).map_err(runtime)?;
    let mut chosen = c.default.clone();
    for rule in &c.choices {
        if evaluate(rule, &effective).map_err(runtime)? {
            chosen = rule.next.clone();
            break;
        }
    }
    let next = chosen.ok_or_else(|| Outcome::Failed {
        error: "States.NoChoiceMatched".into(),
        cause: format!("no choice of state {name:?} matched and it has no Default"),
    })?;
    Ok(Move {
        next: Some(next),
        output: scope
            .output_path(c.output_path.as_deref(), effective)
            .map_err(runtime)?,
        pause: 0.0,
    })
}

/// Runs a task state: template, invoke (with timeout), retry, catch, result paths.
async fn run_task(
    t: &TaskState,
    name: &str,
    handler: &dyn TaskHandler,
    input: &Value,
    context: &Value,
    on_step: &mut (dyn FnMut(Step) + Send),
) -> Result<Move, Outcome> {
    let flow = t.flow();
    let effective = flow
        .input_path
        .map_or(Ok(input.clone()), |p| path::get(p, input, context))
        .map_err(runtime)?;
    let parameters = t
        .parameters
        .as_ref()
        .map_or(Ok(effective.clone()), |p| {
            path::template(p, &effective, context)
        })
        .map_err(runtime)?;
    let mut attempts = vec![0u32; t.retry.len()];
    let failure = loop {
        let call = handler.invoke(&t.resource, parameters.clone());
        let result = match t.timeout_seconds {
            Some(limit) => tokio::time::timeout(Duration::from_secs(limit), call)
                .await
                .unwrap_or_else(|_| {
                    Err(TaskError {
                        error: "States.Timeout".into(),
                        cause: format!("the task ran longer than {limit} s"),
                    })
                }),
            None => call.await,
        };
        match result {
            Ok(result) => {
                let selected = t
                    .result_selector
                    .as_ref()
                    .map_or(Ok(result.clone()), |s| path::template(s, &result, context))
                    .map_err(runtime)?;
                let merged = path::merge(
                    t.result_path.clone().unwrap_or(Some("$".into())).as_deref(),
                    input.clone(),
                    selected,
                )
                .map_err(runtime)?;
                let output = flow
                    .output_path
                    .map_or(Ok(merged.clone()), |p| path::get(p, &merged, context))
                    .map_err(runtime)?;
                return Ok(Move {
                    next: flow.next.map(str::to_string),
                    output,
                    pause: 0.0,
                });
            }
            Err(e) => {
                let Some(i) = t
                    .retry
                    .iter()
                    .position(|r| matches(&r.error_equals, &e.error))
                else {
                    break e;
                };
                let retrier = &t.retry[i];
                if attempts[i] >= retrier.max_attempts {
                    break e;
                }
                attempts[i] += 1;
                let mut delay =
                    retrier.interval_seconds * retrier.backoff_rate.powi(attempts[i] as i32 - 1);
                if let Some(max) = retrier.max_delay_seconds {
                    delay = delay.min(max);
                }
                tracing::warn!(state = name, error = %e.error, cause = %e.cause, attempt = attempts[i], delay_s = delay, "task failed; retrying");
                on_step(Step::Retried {
                    state: name.to_string(),
                    error: e.error.clone(),
                    attempt: attempts[i],
                });
                tokio::time::sleep(Duration::from_secs_f64(delay)).await;
            }
        }
    };
    let Some(catcher) = t
        .catch
        .iter()
        .find(|c| matches(&c.error_equals, &failure.error))
    else {
        return Err(Outcome::Failed {
            error: failure.error,
            cause: failure.cause,
        });
    };
    on_step(Step::Caught {
        state: name.to_string(),
        error: failure.error.clone(),
        cause: failure.cause.clone(),
        next: catcher.next.clone(),
    });
    let error_output = json!({"Error": failure.error, "Cause": failure.cause});
    let merged = path::merge(
        catcher
            .result_path
            .clone()
            .unwrap_or(Some("$".into()))
            .as_deref(),
        input.clone(),
        error_output,
    )
    .map_err(runtime)?;
    Ok(Move {
        next: Some(catcher.next.clone()),
        output: merged,
        pause: 0.0,
    })
}

fn evaluate(rule: &ChoiceRule, input: &Value) -> Result<bool, PathError> {
    if let Some(all) = &rule.and {
        return all
            .iter()
            .try_fold(true, |acc, r| Ok(acc && evaluate(r, input)?));
    }
    if let Some(any) = &rule.or {
        return any
            .iter()
            .try_fold(false, |acc, r| Ok(acc || evaluate(r, input)?));
    }
    if let Some(inner) = &rule.not {
        return Ok(!evaluate(inner, input)?);
    }
    let variable = rule
        .variable
        .as_deref()
        .ok_or_else(|| PathError("a choice rule has no Variable".into()))?;
    if let Some(want) = rule.is_present {
        return Ok(path::present(variable, input) == want);
    }
    let value = path::get(variable, input, &Value::Null)?;
    let number = || {
        value
            .as_f64()
            .ok_or_else(|| PathError(format!("{variable} is not a number: {value}")))
    };
    Ok(if let Some(b) = rule.boolean_equals {
        value
            .as_bool()
            .ok_or_else(|| PathError(format!("{variable} is not a boolean: {value}")))?
            == b
    } else if let Some(s) = &rule.string_equals {
        value.as_str() == Some(s.as_str())
    } else if let Some(n) = rule.numeric_equals {
        number()? == n
    } else if let Some(n) = rule.numeric_greater_than_equals {
        number()? >= n
    } else if let Some(n) = rule.numeric_less_than {
        number()? < n
    } else {
        return Err(PathError(format!(
            "the choice rule on {variable} has no supported comparison"
        )));
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `failures` calls with `error`, then doubles `$.n`.
    struct Flaky {
        failures: u32,
        error: &'static str,
        calls: AtomicU32,
    }

    #[async_trait::async_trait]
    impl TaskHandler for Flaky {
        async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskError> {
            assert_eq!(resource, "test:double");
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err(TaskError {
                    error: self.error.into(),
                    cause: "flaky".into(),
                });
            }
            Ok(json!({"n": input["n"].as_f64().unwrap() * 2.0}))
        }
    }

    const LOOP: &str = r#"{
      "StartAt": "Double",
      "States": {
        "Double": {"Type": "Task", "Resource": "test:double", "Parameters": {"n.$": "$.n"}, "ResultPath": "$.r",
                   "Retry": [{"ErrorEquals": ["Retryable"], "IntervalSeconds": 0.01, "MaxAttempts": 2, "BackoffRate": 1.5}],
                   "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Failed"}],
                   "Next": "Copy"},
        "Copy": {"Type": "Pass", "Parameters": {"n.$": "$.r.n", "label": "x"}, "Next": "Big?"},
        "Big?": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThanEquals": 16, "Next": "Done"}], "Default": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 0, "Next": "Double"},
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail", "Error": "Gave up", "Cause": "see $.failure"}
      }
    }"#;

    async fn run(handler: &Flaky) -> (Outcome, Vec<Step>) {
        let machine = StateMachine::parse(LOOP, &[]).unwrap();
        let mut steps = Vec::new();
        let execution = Execution {
            name: "t".into(),
            state_machine_id: "arn:aws:states:local:0:stateMachine:t".into(),
            input: json!({"n": 1}),
        };
        let outcome = execute(&machine, handler, &execution, &mut |s| steps.push(s)).await;
        (outcome, steps)
    }

    #[tokio::test]
    async fn loops_until_the_choice_ends_it() {
        let (outcome, steps) = run(&Flaky {
            failures: 0,
            error: "",
            calls: AtomicU32::new(0),
        })
        .await;
        assert_eq!(
            outcome,
            Outcome::Succeeded(json!({"n": 16.0, "label": "x"}))
        );
        assert_eq!(
            steps
                .iter()
                .filter(|s| **s == Step::Entered("Double".into()))
                .count(),
            4
        );
        assert_eq!(
            steps
                .iter()
                .filter(|s| **s == Step::Entered("Pause".into()))
                .count(),
            3
        );
    }

    #[tokio::test]
    async fn retries_matching_errors_up_to_max_attempts_then_catches() {
        let retried = Flaky {
            failures: 2,
            error: "Retryable",
            calls: AtomicU32::new(0),
        };
        let (outcome, steps) = run(&retried).await;
        assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::Retried { .. }))
                .count(),
            2
        );

        let exhausted = Flaky {
            failures: 3,
            error: "Retryable",
            calls: AtomicU32::new(0),
        };
        let (outcome, steps) = run(&exhausted).await;
        assert_eq!(
            outcome,
            Outcome::Failed {
                error: "Gave up".into(),
                cause: "see $.failure".into()
            }
        );
        assert!(steps
            .iter()
            .any(|s| matches!(s, Step::Caught { state, error, next, .. }
            if state == "Double" && error == "Retryable" && next == "Failed")));
        assert_eq!(
            exhausted.calls.load(Ordering::SeqCst),
            3,
            "one call and two retries"
        );

        let fatal = Flaky {
            failures: 1,
            error: "Fatal",
            calls: AtomicU32::new(0),
        };
        let (outcome, steps) = run(&fatal).await;
        assert!(matches!(outcome, Outcome::Failed { .. }));
        assert!(
            !steps.iter().any(|s| matches!(s, Step::Retried { .. })),
            "Fatal is not retried"
        );
        assert_eq!(fatal.calls.load(Ordering::SeqCst), 1);
    }
}
