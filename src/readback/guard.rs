//! The second of two guards on a dump read back (the first is [`super::allowed`]):
//! SQLite's own limits on every connection that runs a dump's statements (the database
//! a restore writes, and the in-memory scratch databases of `verify`), so that whatever
//! gets past the first guard can act on that database only, and not for long.
//!
//! * An authorizer that denies `ATTACH`/`DETACH`, any database but `main`, recursive
//!   queries, the functions that touch files or load code, and pragmas that set anything
//!   but what a dump or the restore itself sets.
//! * `SQLITE_DBCONFIG_DEFENSIVE` (no writable schema, no shadow-table writes outside
//!   their module), `trusted_schema=OFF` (no side-effecting functions in triggers and
//!   views), `SQLITE_LIMIT_ATTACHED` 0 (`VACUUM INTO` needs an attached database).
//! * A progress handler that stops a statement once it has run past its time bound
//!   ([`Deadline`]): a dump's statements are all cheap, except the index builds after
//!   the rows, whose bound grows with the rows loaded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::Connection;

/// Functions no statement of a dump calls: they read or write files, load code, or
/// reach past SQL (most are not even compiled into the bundled SQLite; denied by name in
/// case a build has them).
const DENIED_FUNCTIONS: [&str; 9] = [
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
    "fsdir",
    "lsdir",
    "zipfile",
    "sqlite_dbpage",
];

/// Pragmas that may be given an argument: a dump's own settings, the restore's
/// bulk-load settings, and the schema reads that take a table or index name.
const SETTABLE_PRAGMAS: [&str; 20] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "encoding",
    "foreign_keys",
    "user_version",
    "application_id",
    "page_size",
    "auto_vacuum",
    "journal_mode",
    "synchronous",
    "locking_mode",
    "cache_size",
    "query_only",
];

/// Whether the authorizer lets `ctx` through.
fn authorize(ctx: &AuthContext<'_>) -> Authorization {
    let other_database = ctx.database_name.is_some_and(|d| d != "main");
    let allowed = match ctx.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } | AuthAction::Recursive => false,
        AuthAction::Function { function_name } => !DENIED_FUNCTIONS
            .iter()
            .any(|f| f.eq_ignore_ascii_case(function_name)),
        AuthAction::Pragma {
            pragma_name,
            pragma_value: Some(_),
        } => SETTABLE_PRAGMAS
            .iter()
            .any(|p| p.eq_ignore_ascii_case(pragma_name)),
        AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => false,
        _ => true,
    };
    if allowed && !other_database {
        Authorization::Allow
    } else {
        Authorization::Deny
    }
}

/// Whether `table` is a shadow table of `conn`'s main database (`PRAGMA table_list` says
/// so: the tables FTS3/4/5 keep their index in, made by the module with its table).
pub(crate) fn is_shadow(conn: &Connection, table: &str) -> bool {
    conn.query_row(
        "SELECT type = 'shadow' FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
        [table],
        |r| r.get::<_, bool>(0),
    )
    .unwrap_or(false)
}

/// Shadow-table writes allowed on a guarded connection while this lives.
///
/// `SQLITE_DBCONFIG_DEFENSIVE` makes shadow tables read-only to SQL, but a contentless
/// FTS table (FTS4 or FTS5 with `content=''`) has no content to rebuild its index from:
/// its dump is its shadow tables' rows, written back as they were, as SQLite's own shell
/// writes them. The guard is lowered for exactly those statements (already checked to be
/// `DELETE FROM` or a row `INSERT` into that one shadow table) and raised again when this
/// is dropped, on every path; no FTS code reads the index while a dump is read back (a
/// restore checks those rows as plain rows; verify hashes them).
pub(crate) struct ShadowWrites<'c>(&'c Connection);

impl<'c> ShadowWrites<'c> {
    pub(crate) fn allow(conn: &'c Connection) -> Result<Self, String> {
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, false)
            .map_err(|e| e.to_string())?;
        Ok(ShadowWrites(conn))
    }
}

impl Drop for ShadowWrites<'_> {
    fn drop(&mut self) {
        // Raising a guard cannot fail for a valid option; if it did, the next statement
        // would still have the authorizer and the first guard.
        let _ = self
            .0
            .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true);
    }
}

/// The time bound of the statement running on a guarded connection, shared with its
/// progress handler. A statement that runs past it is interrupted ("interrupted" is the
/// error SQLite returns; [`Deadline::explain`] says why).
#[derive(Clone)]
pub struct Deadline {
    /// Milliseconds after `base` at which the running statement is stopped.
    at_ms: Arc<AtomicU64>,
    /// Milliseconds after `base` at which the whole run ends, whatever its statements
    /// (see [`Deadline::bound_run`]); `u64::MAX` until bounded.
    run_end_ms: Arc<AtomicU64>,
    base: Instant,
}

impl Deadline {
    /// Bounds the statements that start from now to `limit` each (and to the run's end).
    pub fn arm(&self, limit: Duration) {
        let at = millis(self.base.elapsed() + limit).min(self.run_end_ms.load(Ordering::Relaxed));
        self.at_ms.store(at, Ordering::Relaxed);
    }

    /// Bounds the whole run, from now, to `total`: a bound per statement alone lets a
    /// dump of many cheap-looking statements (each row firing a costly trigger, or
    /// millions of empty statements) run for hours.
    pub fn bound_run(&self, total: Duration) {
        self.run_end_ms
            .store(millis(self.base.elapsed() + total), Ordering::Relaxed);
    }

    /// An error once the run's bound has passed: checked between statements, where no
    /// SQLite progress handler runs (an empty statement takes no VM step).
    pub fn check_run(&self) -> Result<(), String> {
        let end = self.run_end_ms.load(Ordering::Relaxed);
        if millis(self.base.elapsed()) > end {
            return Err(format!(
                "the run passed its time bound ({} s, from the rows and bytes the manifest declares); not a dump chunkdump wrote",
                end / 1000
            ));
        }
        Ok(())
    }

    fn passed(&self) -> bool {
        millis(self.base.elapsed()) > self.at_ms.load(Ordering::Relaxed)
    }

    /// Turns SQLite's "interrupted" into the reason, if the deadline stopped it.
    pub fn explain(&self, error: String) -> String {
        if let (true, Err(why)) = (error.contains("interrupt"), self.check_run()) {
            format!("{error}: {why}")
        } else if self.passed() && error.contains("interrupt") {
            format!("{error}: the statement ran past its time bound (a dump's statements are cheap; this one is not one chunkdump writes)")
        } else {
            error
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The bound of a whole restore or verify of a dump that declares `rows` rows in
/// `stored_bytes` of files: 2 minutes, 1 s per 5,000 rows and 1 s per MB stored. Real
/// restores run at 100,000s of rows and tens of MB per second (docs/performance.md), so
/// only a dump doing work its manifest does not account for comes near it.
pub fn run_bound(rows: u64, stored_bytes: u64) -> Duration {
    Duration::from_secs(120)
        + Duration::from_millis(rows / 5)
        + Duration::from_millis(stored_bytes / 1_000)
}

/// The bound of a statement other than a row: a dump's schema statements are cheap, and
/// the index builds after the rows grow with them (a generous 1 s per 10,000 rows).
pub fn statement_bound(rows_loaded: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(rows_loaded / 10)
}

/// The most SQLite may allocate in all, in a process that reads dumps back: room for the
/// restore's page cache and two copies of the largest value a dump may hold (the bound
/// one, and the record SQLite builds of it), and no more. Process-wide (SQLite's heap
/// limit is), so only the one-shot commands set it (restore, verify, drill), never
/// `serve`, whose other work it would starve.
pub fn heap_limit() -> i64 {
    let value = i64::try_from(super::max_statement()).unwrap_or(i64::MAX);
    value.saturating_mul(2).saturating_add(128 << 20)
}

/// Sets [`heap_limit`] as SQLite's hard heap limit: an allocation past it fails with
/// "out of memory" (the statement, and so the restore, fails) instead of growing.
pub fn bound_sqlite_heap() {
    // SAFETY: a plain call into SQLite's configuration, with no pointer arguments; safe
    // at any time (SQLite takes its own mutex).
    unsafe {
        rusqlite::ffi::sqlite3_hard_heap_limit64(heap_limit());
    }
}

/// Puts the guards on `conn`, which is about to run a dump's statements; returns the
/// deadline its statements run under (armed for [`statement_bound`] of no rows).
pub fn guard(conn: &Connection) -> rusqlite::Result<Deadline> {
    use rusqlite::config::DbConfig;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    // No value longer than the longest statement a restore holds: every value a dump
    // writes is inside one statement or line (in Parquet, bounded alike). So an
    // expression in a CREATE (`DEFAULT (randomblob(900000000))`, a CHECK with printf, a
    // generated `zeroblob(…)`) fails at once with "string or blob too big".
    let longest = i32::try_from(super::max_statement()).unwrap_or(i32::MAX);
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, longest)?;
    conn.authorizer(Some(|ctx: AuthContext<'_>| authorize(&ctx)));
    let deadline = Deadline {
        at_ms: Arc::new(AtomicU64::new(0)),
        run_end_ms: Arc::new(AtomicU64::new(u64::MAX)),
        base: Instant::now(),
    };
    deadline.arm(statement_bound(0));
    let watch = deadline.clone();
    // About every 100,000 VM steps: well under a millisecond apart.
    conn.progress_handler(100_000, Some(move || watch.passed()));
    Ok(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded() -> (Connection, Deadline, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("restored.db")).unwrap();
        let deadline = guard(&conn).unwrap();
        (conn, deadline, dir)
    }

    #[test]
    fn the_run_bound_stops_the_run_between_and_inside_statements() {
        let (conn, deadline, _dir) = guarded();
        conn.execute_batch("CREATE TABLE t(a);").unwrap();
        let mut insert = conn.prepare("INSERT INTO t VALUES(?1)").unwrap();
        for i in 0..2_000 {
            insert.execute([i]).unwrap();
        }
        assert!(deadline.check_run().is_ok(), "unbounded until bounded");
        deadline.bound_run(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        let between = deadline.check_run().unwrap_err();
        assert!(between.contains("time bound"), "{between}");
        // A statement armed for its own 60 s still ends at the run's end.
        deadline.arm(statement_bound(0));
        let inside = conn
            .query_row("SELECT count(*) FROM t a, t b, t c", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_err();
        let why = deadline.explain(inside.to_string());
        assert!(
            why.contains("the rows and bytes the manifest declares"),
            "{why}"
        );
    }

    /// The second guard alone (the first never sees these): each is refused by SQLite,
    /// and no file appears where the statement pointed.
    #[test]
    fn sqlite_refuses_what_acts_outside_the_database() {
        let (conn, _, dir) = guarded();
        let victim = dir.path().join("victim.db");
        Connection::open(&victim)
            .unwrap()
            .execute_batch("CREATE TABLE precious(a); INSERT INTO precious VALUES(1);")
            .unwrap();
        let outside = dir.path().join("outside.db");
        let o = outside.display();
        let v = victim.display();
        for sql in [
            format!("ATTACH DATABASE '{o}' AS x; CREATE TABLE x.t(a);"),
            format!("ATTACH '{v}' AS v; DELETE FROM v.precious;"),
            format!("VACUUM INTO '{o}';"),
            "SELECT load_extension('/nonexistent/evil.so');".into(),
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c;"
                .into(),
            "CREATE TEMP TABLE t(a);".into(),
            "PRAGMA trusted_schema=ON;".into(),
            "PRAGMA writable_schema=ON;".into(),
            format!("PRAGMA temp_store_directory='{}';", dir.path().display()),
        ] {
            let e = conn.execute_batch(&sql).expect_err(&sql).to_string();
            assert!(
                e.contains("not authorized")
                    || e.contains("authorization denied")
                    || e.contains("too many attached"),
                "{sql}: {e}"
            );
        }
        assert!(!outside.exists(), "a file was written outside the database");
        let left: i64 = Connection::open(&victim)
            .unwrap()
            .query_row("SELECT count(*) FROM precious", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
        // What a dump does still works.
        conn.execute_batch(
            "PRAGMA foreign_keys=OFF; BEGIN TRANSACTION; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
             INSERT INTO t VALUES(1, CAST(X'6100' AS TEXT)); CREATE INDEX i ON t(b);
             CREATE VIRTUAL TABLE f USING fts5(body); INSERT INTO f VALUES('x');
             ANALYZE sqlite_schema; PRAGMA user_version=3; COMMIT;",
        )
        .unwrap();
    }

    #[test]
    fn a_statement_past_its_bound_is_interrupted_and_says_why() {
        let (conn, deadline, _dir) = guarded();
        conn.execute_batch(
            "CREATE TABLE t(a); INSERT INTO t SELECT value FROM generate_series(1, 3000);",
        )
        .or_else(|_| {
            // No generate_series in this build: the rows one by one.
            (1..=3000).try_for_each(|i| conn.execute("INSERT INTO t VALUES(?1)", [i]).map(|_| ()))
        })
        .unwrap();
        deadline.arm(Duration::from_millis(50));
        let e = conn
            .query_row("SELECT count(*) FROM t a, t b, t c", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_err()
            .to_string();
        assert!(deadline.explain(e.clone()).contains("time bound"), "{e}");
    }
}
