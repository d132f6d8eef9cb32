//! How the state machine's executions are named and started: shared by Step Functions
//! (`cloud::SfnOrchestrator`), the local runner and the chunk task (which names
//! the execution a dump continues in), and the flat form of a dump id for names that take
//! no `/` (execution names, run lock files).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Dump `id` in one flat piece of `[A-Za-z0-9_-]`, for lock files and Step Functions
/// execution names, which take no `/`: an id of a single database is itself; another
/// has its other bytes replaced by `_` and 16 hex digits of its SHA-256 added, so two
/// ids never share a flat name.
pub fn flat_id(id: &str) -> String {
    if id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return id.to_string();
    }
    let digest = hex::encode(&Sha256::digest(id.as_bytes())[..8]);
    let flat: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{flat}-{digest}")
}

/// The execution name of generation `generation` of dump `id`: the id itself first,
/// then `ID.gN`; shortened with a hash to Step Functions' 80-character limit.
pub fn execution_name(id: &str, generation: u32) -> String {
    let suffix = if generation == 0 {
        String::new()
    } else {
        format!(".g{generation}")
    };
    let id = &flat_id(id);
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
    generation_input(id, version, 0)
}

/// The input of execution `generation` of dump `id`, starting at job version `version`.
pub fn generation_input(id: &str, version: u64, generation: u32) -> Value {
    json!({"dumpId": id, "version": version, "generation": generation, "chunksInExecution": 0})
}

/// The generation of execution `name` if it belongs to dump `id`.
pub fn generation_of(id: &str, name: &str) -> Option<u32> {
    if name == execution_name(id, 0) {
        return Some(0);
    }
    let generation = name.rsplit_once(".g")?.1.parse::<u32>().ok()?;
    (name == execution_name(id, generation)).then_some(generation)
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
        for generation in [0, 1, 12] {
            assert_eq!(
                generation_of(&long, &execution_name(&long, generation)),
                Some(generation)
            );
            let id = "dump_20260101-000000";
            assert_eq!(
                generation_of(id, &execution_name(id, generation)),
                Some(generation)
            );
        }
        assert_eq!(
            generation_of("dump_20260101-000000", "dump_20260101-000000-2.g3"),
            None
        );
    }

    #[test]
    fn flat_ids_are_safe_and_apart() {
        assert_eq!(flat_id("dump_20260101-000000"), "dump_20260101-000000");
        let (a, b) = (flat_id("a/b/dump_1"), flat_id("a_b/dump_1"));
        assert_ne!(a, b);
        for flat in [a, b, flat_id("x%20y/dump_1")] {
            assert!(
                flat.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{flat}"
            );
        }
    }
}
