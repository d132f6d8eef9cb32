//! An in-process cache of dump plans, so that a chunk's fixed cost does not grow with the
//! number of tables.
//!
//! Building a plan introspects every table (a few pragmas each, ~20 µs): with 3,000 tables
//! and a short budget, re-planning in every chunk made a dump cost O(tables²). A plan is a
//! pure function of the schema and the dump's spec, and SQLite's schema cookie
//! (`PRAGMA schema_version`) changes with every schema change made by any connection on
//! any host, so a plan built at the same cookie of the same file is still exact. Chunks
//! that run in one process (the CLI, `chunkdump serve`, a warm Lambda) reuse it; a new
//! process builds it once. The schema-change check is kept: a chunk that sees another
//! cookie re-plans and compares fingerprints, and every slice re-reads the cookie.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::plan::{build_plan, Plan};
use crate::error::DumpError;
use crate::model::DumpSpec;

/// Plans kept at once (a server may run a few dumps side by side).
const CAPACITY: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanKey {
    /// The database file's identity, so a file replaced under the same path misses.
    path: String,
    file_id: (u64, u64),
    schema_version: i64,
    dump_id: String,
    spec: String,
}

static CACHE: Mutex<VecDeque<(PlanKey, Arc<Plan>)>> = Mutex::new(VecDeque::new());

fn file_id(path: &str) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or((0, 0))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        (0, 0)
    }
}

/// The plan for `spec` at schema cookie `schema_version`, built once per process.
pub fn cached_plan(
    conn: &Connection,
    spec: &DumpSpec,
    dump_id: &str,
    schema_version: i64,
) -> Result<Arc<Plan>, DumpError> {
    // slice_rows does not shape the plan, and a chunk may override it: one value for all.
    let shape = DumpSpec {
        slice_rows: crate::model::SliceRows::DEFAULT,
        ..spec.clone()
    };
    let key = PlanKey {
        path: spec.database.clone(),
        file_id: file_id(&spec.database),
        schema_version,
        dump_id: dump_id.to_string(),
        spec: serde_json::to_string(&shape).expect("a spec serializes"),
    };
    if let Some((_, plan)) = CACHE
        .lock()
        .expect("plan cache lock")
        .iter()
        .find(|(k, _)| *k == key)
    {
        return Ok(plan.clone());
    }
    let plan = Arc::new(build_plan(conn, spec, dump_id)?);
    let mut cache = CACHE.lock().expect("plan cache lock");
    cache.retain(|(k, _)| !(k.dump_id == key.dump_id && k.path == key.path));
    if cache.len() >= CAPACITY {
        cache.pop_front();
    }
    cache.push_back((key, plan.clone()));
    Ok(plan)
}
