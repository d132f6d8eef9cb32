//! How the state machine's executions are named and started: shared by Step Functions
//! (`cloud::SfnOrchestrator`), the local runner and the chunk task (which names
//! the execution a dump continues in).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The execution name of generation `generation` of dump `id`: the id itself first,
/// then `ID.gN`; shortened with a hash to Step Functions' 80-character limit.
pub fn execution_name(id: &str, generation: u32) -> String {
    let suffix = if generation == 0 {
        String::new()
    } else {
        format!(".g{generation}")
    };
    if id.len() + suffix.len() <= 80 {
        return format!("{id}{suffix}");
    }
    let hash = hex::encode(&Sha256::digest(id.as_bytes())[..8]);
    format!("{}-{hash}{suffix}", &id[..80 - 17 - suffix.len()])
}

/// The ARN of execution `name` of state machine `state_machine_arn`.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// The input of a dump's first execution.
pub fn first_input(id: &str, version: u64) -> Value {
    json!({"dumpId": id, "version": version, "generation": 0, "chunksInExecution": 0})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_names_fit_step_functions() {
        assert_eq!(
            execution_name("dump_20260101-000000", 0),
            "dump_20260101-000000"
        );
        assert_eq!(
            execution_name("dump_20260101-000000-2", 3),
            "dump_20260101-000000-2.g3"
        );
        let long = "x".repeat(100);
        let (a, b) = (execution_name(&long, 0), execution_name(&long, 12));
        assert!(
            a.len() <= 80 && b.len() <= 80 && a != b && b.ends_with(".g12"),
            "{a} {b}"
        );
        assert_ne!(
            execution_name(&format!("{long}y"), 0),
            execution_name(&format!("{long}z"), 0)
        );
    }
}
