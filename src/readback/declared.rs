//! The schema a manifest declares, held against what a dump read back creates: a restore
//! or verify creates the tables, indexes, views and triggers the manifest lists, each
//! with the SQL it lists (by SHA-256), and nothing else.
//!
//! The allow-list ([`super::allowed`]) admits `CREATE TRIGGER` and `CREATE VIEW` as
//! forms; what they carry is the source's own schema text, so only the manifest can say
//! whether a given one belongs. Whoever can write to the bucket can plant a trigger that
//! empties a table at the application's first insert, or a view that never ends; with
//! the manifest signed (`CHUNKDUMP_SIGNING_KEY`), its list is the dumper's word.
//!
//! The check is on `sqlite_schema` as SQLite wrote it after running a statement (its
//! own canonical text, not a parse of ours): [`DeclaredSchema::check_new`] looks at the
//! rows added since the last look. A restore runs each `CREATE` in a rehearsal database
//! with no rows first ([`Rehearsal`]), so a planted statement is refused before the
//! restored database runs it (an index over an expression is evaluated at creation),
//! and checks the restored database whole before it is put in place.

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;

use crate::engine::digest::SchemaStatement;
use crate::manifest::Manifest;

/// The schema objects a manifest declares, and those found created so far.
#[derive(Debug, Clone)]
pub struct DeclaredSchema {
    /// (type, name) → the declared entry.
    expected: HashMap<(String, String), SchemaStatement>,
    created: HashSet<(String, String)>,
}

impl DeclaredSchema {
    /// The schema `manifest` declares; `None` for a manifest of a version that lists no
    /// schema statements (nothing to hold a dump of it against).
    pub fn of(manifest: &Manifest) -> Option<Self> {
        manifest.schema_statements.as_deref().map(Self::new)
    }

    /// The schema of `declared`, none created yet.
    pub fn new(declared: &[SchemaStatement]) -> Self {
        DeclaredSchema {
            expected: declared
                .iter()
                .map(|s| ((s.kind.clone(), s.name.clone()), s.clone()))
                .collect(),
            created: HashSet::new(),
        }
    }

    /// The same declaration with nothing seen: for a second database's whole schema.
    pub fn fresh(&self) -> Self {
        DeclaredSchema {
            expected: self.expected.clone(),
            created: HashSet::new(),
        }
    }

    /// Checks each object `conn` gained since the last call against the declaration:
    /// an error naming the first that is not declared, or whose table or SQL differs.
    /// SQLite's own objects (`sqlite_…`: autoindexes, `sqlite_sequence`, statistics)
    /// and a virtual table's shadow tables (created by its module) are not the dump's.
    pub fn check_new(&mut self, conn: &Connection) -> Result<(), String> {
        // The whole schema each time (its rowids are not an order of creation to rely
        // on); what was checked already is passed over.
        let rows: Vec<(String, String, String, Option<String>)> = conn
            .prepare_cached("SELECT type, name, tbl_name, sql FROM sqlite_schema")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect()
            })
            .map_err(|e| format!("reading the schema: {e}"))?;
        let virtual_tables: Vec<&str> = rows
            .iter()
            .filter(|r| r.3.as_deref().is_some_and(is_virtual_table))
            .map(|r| r.1.as_str())
            .collect();
        for (kind, name, tbl_name, sql) in &rows {
            if self.created.contains(&(kind.clone(), name.clone())) {
                continue;
            }
            let Some(sql) = sql else { continue };
            let shadow = kind == "table"
                && !is_virtual_table(sql)
                && virtual_tables.iter().any(|v| is_shadow_of(name, v));
            if name.starts_with("sqlite_") || shadow {
                continue;
            }
            let key = (kind.clone(), name.clone());
            let Some(declared) = self.expected.get(&key) else {
                return Err(format!(
                    "{kind} {name:?} is not in the dump's manifest: a dump creates only the schema objects its manifest lists (a planted {kind}?); the dump is refused"
                ));
            };
            let found = SchemaStatement::of(kind, name, tbl_name, sql);
            if declared.tbl_name != found.tbl_name || declared.sha256 != found.sha256 {
                return Err(format!(
                    "{kind} {name:?}: its SQL is not the one the dump's manifest lists (a rewritten {kind}?); the dump is refused"
                ));
            }
            self.created.insert(key);
        }
        Ok(())
    }

    /// Names the first declared object not created (in the manifest, not in the dump).
    pub fn finish(&self) -> Result<(), String> {
        let mut missing: Vec<&(String, String)> = self
            .expected
            .keys()
            .filter(|k| !self.created.contains(*k))
            .collect();
        missing.sort();
        match missing.first() {
            None => Ok(()),
            Some((kind, name)) => Err(format!(
                "{kind} {name:?} is in the dump's manifest but the dump does not create it ({} missing); the dump is refused",
                missing.len()
            )),
        }
    }
}

/// Whether `name` is one of the shadow tables the FTS3/4/5 and R*Tree modules create
/// for virtual table `vtab`.
fn is_shadow_of(name: &str, vtab: &str) -> bool {
    const SUFFIXES: [&str; 11] = [
        "data", "idx", "content", "docsize", "config", "segments", "segdir", "stat", "node",
        "rowid", "parent",
    ];
    name.strip_prefix(vtab)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|suffix| SUFFIXES.contains(&suffix))
}

/// Whether `sql` creates a virtual table.
fn is_virtual_table(sql: &str) -> bool {
    sql.get(..20)
        .is_some_and(|head| head.eq_ignore_ascii_case("CREATE VIRTUAL TABLE"))
}

/// Whether `statement` (of a dump read back) is a `CREATE` statement: its first word,
/// past white space and comments.
pub fn is_create(statement: &[u8]) -> bool {
    let mut rest = statement;
    loop {
        rest = rest.trim_ascii_start();
        if let Some(after) = rest.strip_prefix(b"--") {
            rest = memchr::memchr(b'\n', after).map_or(&[][..], |at| &after[at + 1..]);
        } else if let Some(after) = rest.strip_prefix(b"/*") {
            rest = memchr::memmem::find(after, b"*/").map_or(&[][..], |at| &after[at + 2..]);
        } else {
            break;
        }
    }
    rest.get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"CREATE"))
        && rest
            .get(6)
            .is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'_')
}

/// An in-memory database with no rows where a restore runs each `CREATE` statement
/// before the restored database does, under SQLite's guards, and checks what it created
/// against the declaration.
pub struct Rehearsal {
    conn: Connection,
    deadline: super::guard::Deadline,
    declared: DeclaredSchema,
}

impl Rehearsal {
    pub fn new(declared: DeclaredSchema) -> Result<Self, String> {
        let conn = Connection::open_in_memory().map_err(|e| e.to_string())?;
        let deadline = super::guard::guard(&conn).map_err(|e| e.to_string())?;
        Ok(Rehearsal {
            conn,
            deadline,
            declared,
        })
    }

    /// Runs `statement` (a `CREATE`) here, then checks what it created.
    pub fn create(&mut self, statement: &str) -> Result<(), String> {
        self.deadline.arm(super::guard::statement_bound(0));
        self.conn
            .execute_batch(statement)
            .map_err(|e| self.deadline.explain(e.to_string()))?;
        self.declared.check_new(&self.conn)
    }

    /// Checks the restored database `conn` whole against the declaration (whatever made
    /// its objects), and that it has every declared one.
    pub fn check_restored(&self, conn: &Connection) -> Result<(), String> {
        let mut whole = self.declared.fresh();
        whole.check_new(conn)?;
        whole.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared_of(sql: &str) -> DeclaredSchema {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(sql).unwrap();
        let list: Vec<SchemaStatement> = conn
            .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite%' AND name NOT LIKE 'f\\_%' ESCAPE '\\'")
            .unwrap()
            .query_map([], |r| {
                Ok(SchemaStatement::of(
                    &r.get::<_, String>(0)?,
                    &r.get::<_, String>(1)?,
                    &r.get::<_, String>(2)?,
                    &r.get::<_, String>(3)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        DeclaredSchema::new(&list)
    }

    const STATEMENTS: [&str; 5] = [
        "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT UNIQUE)",
        "CREATE VIRTUAL TABLE f USING fts5(body)",
        "CREATE INDEX t_a ON t(a)",
        "CREATE VIEW v AS SELECT * FROM t",
        "CREATE TRIGGER t_log AFTER INSERT ON t BEGIN SELECT 1; END",
    ];
    const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT UNIQUE);
        CREATE VIRTUAL TABLE f USING fts5(body);
        CREATE INDEX t_a ON t(a);
        CREATE VIEW v AS SELECT * FROM t;
        CREATE TRIGGER t_log AFTER INSERT ON t BEGIN SELECT 1; END;";

    #[test]
    fn the_declared_schema_passes_and_anything_else_is_named() {
        let declared = declared_of(SCHEMA);
        let mut rehearsal = Rehearsal::new(declared.clone()).unwrap();
        for statement in STATEMENTS {
            rehearsal.create(statement).unwrap();
        }
        let restored = Connection::open_in_memory().unwrap();
        restored.execute_batch(SCHEMA).unwrap();
        rehearsal.check_restored(&restored).unwrap();

        // A planted trigger; a rewritten view; a missing index.
        let planted = rehearsal
            .create("CREATE TRIGGER t_wipe AFTER INSERT ON t BEGIN DELETE FROM t; END;")
            .unwrap_err();
        assert!(
            planted.contains("trigger \"t_wipe\" is not in the dump's manifest"),
            "{planted}"
        );
        let mut other = Rehearsal::new(declared.clone()).unwrap();
        other
            .create("CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT UNIQUE)")
            .unwrap();
        let rewritten = other
            .create("CREATE VIEW v AS SELECT * FROM t, t, t")
            .unwrap_err();
        assert!(
            rewritten.contains("view \"v\": its SQL is not the one"),
            "{rewritten}"
        );
        let short = Connection::open_in_memory().unwrap();
        short.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT UNIQUE); CREATE VIRTUAL TABLE f USING fts5(body); CREATE VIEW v AS SELECT * FROM t; CREATE TRIGGER t_log AFTER INSERT ON t BEGIN SELECT 1; END;").unwrap();
        let missing = rehearsal.check_restored(&short).unwrap_err();
        assert!(
            missing.contains("index \"t_a\" is in the dump's manifest"),
            "{missing}"
        );
    }

    #[test]
    fn create_statements_are_told_past_comments() {
        assert!(is_create(b"\n-- chunkdump: rows\n  create table t(a)"));
        assert!(is_create(b"/* x */CREATE\tINDEX i ON t(a)"));
        assert!(!is_create(b"INSERT INTO t VALUES(1)"));
        assert!(!is_create(b"CREATED"));
        assert!(!is_create(b"-- CREATE TABLE t(a)\nDELETE FROM t"));
    }
}
