//! The checks of a restored scratch database, as SQLite sees it: `PRAGMA
//! integrity_check`, `PRAGMA foreign_key_check`, a first row through every view (within a
//! time budget: a dump read back is untrusted), the module's own check of every FTS and
//! R*Tree table, the manifest's list of indexes, views and triggers, and the schema's
//! fingerprint.

use std::path::Path;
use std::time::Instant;

use rusqlite::Connection;

use super::Checks;
use crate::engine::digest::SchemaObject;
use crate::engine::quote_ident;
use crate::error::DumpError;
use crate::model::DumpSpec;

/// Checks the restored database at `path` as SQLite sees it.
pub(super) fn check(
    path: &Path,
    mut spec: DumpSpec,
    fingerprint: Option<&str>,
    found: &mut Checks,
) -> Result<(), DumpError> {
    let name = path.display().to_string();
    let db = |e| DumpError::from_sqlite(&name, e);
    let conn = Connection::open(path).map_err(db)?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(db)?;
    found.integrity = problems.join("; ");
    if found.integrity != "ok" {
        found
            .problems
            .push(format!("PRAGMA integrity_check: {}", found.integrity));
    }
    let violations: Vec<(String, String)> = conn
        .prepare("SELECT \"table\", parent FROM pragma_foreign_key_check")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(db)?;
    found.foreign_keys = violations.len() as u64;
    if let Some((table, parent)) = violations.first() {
        found.problems.push(format!(
            "table {table:?}: {} foreign key violation(s), the first against {parent:?}",
            violations.len()
        ));
    }
    let objects: Vec<(String, String, String)> = conn
        .prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_schema WHERE type IN ('view', 'table') ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(db)?;
    for (kind, name, sql) in &objects {
        let quoted = quote_ident(name);
        let result = match (kind.as_str(), virtual_module(sql).as_deref()) {
            ("view", _) => first_row_within(&conn, &quoted, VIEW_BUDGET),
            ("table", Some("fts3" | "fts4" | "fts5")) => conn
                .execute(
                    &format!("INSERT INTO {quoted}({quoted}) VALUES('integrity-check')"),
                    [],
                )
                .map(drop)
                .map_err(|e| e.to_string()),
            ("table", Some("rtree" | "rtree_i32")) => conn
                .query_row("SELECT rtreecheck(?1)", [name], |r| r.get::<_, String>(0))
                .map_err(|e| e.to_string())
                .and_then(|s| if s == "ok" { Ok(()) } else { Err(s) }),
            _ => continue,
        };
        if kind == "view" {
            found.views += 1;
        } else {
            found.virtual_tables += 1;
        }
        if let Err(e) = result {
            found.problems.push(format!("{kind} {name:?}: {e}"));
        }
    }
    // The schema as the dump would read it now, against the one it read.
    spec.database = name.clone();
    let Some(fingerprint) = fingerprint else {
        return Ok(());
    };
    let plan = crate::engine::plan::build_plan(&conn, &spec, "drill")?;
    found.schema_matches = Some(plan.fingerprint == fingerprint);
    if found.schema_matches == Some(false) {
        found.problems.push(
            "the restored schema (tables, indexes, views, triggers) is not the one dumped: its fingerprint differs from the manifest's".into(),
        );
    }
    Ok(())
}

/// Names each index, view and trigger the manifest lists that the restored database at
/// `path` lacks, and each it has that the manifest does not list (nothing for a
/// manifest of a version that lists none).
pub(super) fn check_objects(
    path: &Path,
    expected: Option<&[SchemaObject]>,
    found: &mut Checks,
) -> Result<(), DumpError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let name = path.display().to_string();
    let db = |e| DumpError::from_sqlite(&name, e);
    let conn = Connection::open(path).map_err(db)?;
    let restored: Vec<SchemaObject> = conn
        .prepare(
            "SELECT type, name FROM sqlite_schema WHERE type IN ('index', 'view', 'trigger') \
             AND sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(SchemaObject {
                    kind: r.get(0)?,
                    name: r.get(1)?,
                })
            })?
            .collect()
        })
        .map_err(db)?;
    for o in expected.iter().filter(|o| !restored.contains(o)) {
        found.problems.push(format!(
            "{} {:?}: in the manifest, not in the restored database",
            o.kind, o.name
        ));
    }
    for o in restored.iter().filter(|o| !expected.contains(o)) {
        found.problems.push(format!(
            "{} {:?}: in the restored database, not in the manifest",
            o.kind, o.name
        ));
    }
    Ok(())
}

/// Longest a view's first row may take: a dump read back is untrusted, and a view over
/// an endless recursive query must fail the drill, not hold it forever.
const VIEW_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the first row of view `quoted`, stopped (an error) after `budget`.
fn first_row_within(
    conn: &Connection,
    quoted: &str,
    budget: std::time::Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + budget;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
    let result = conn.query_row(
        &format!("SELECT count(*) FROM (SELECT * FROM {quoted} LIMIT 1)"),
        [],
        |r| r.get::<_, i64>(0),
    );
    conn.progress_handler(0, None::<fn() -> bool>);
    match result {
        Ok(_) => Ok(()),
        Err(_) if Instant::now() > deadline => Err(format!(
            "no first row within {} s; the drill stopped it",
            budget.as_secs()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The module of a `CREATE VIRTUAL TABLE … USING module(…)` statement, lowercased.
fn virtual_module(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    if !lower.trim_start().starts_with("create virtual table") {
        return None;
    }
    let after = &lower[lower.find(" using ")? + 7..];
    let module: String = after
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    Some(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_of_a_virtual_table_is_read_from_its_sql() {
        assert_eq!(
            virtual_module("CREATE VIRTUAL TABLE \"d\" USING fts5(a, content='')").as_deref(),
            Some("fts5")
        );
        assert_eq!(
            virtual_module("create virtual table r using  rtree(id, x0, x1)").as_deref(),
            Some("rtree")
        );
        assert_eq!(virtual_module("CREATE TABLE t(using_x)"), None);
    }
}
