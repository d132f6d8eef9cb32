//! Shared test helpers: databases with every hard case, an exact comparator, and
//! runners for the `chunkdump` binary and the real `sqlite3` shell.
#![allow(dead_code)]

pub mod api_server;
pub mod cloud;
pub mod fixtures;
pub mod lib_dump;

pub use fixtures::{fixture_files, skip_without_fixtures};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// Whether CI runs the tests (`CI=true`): there, everything `scripts/test` installs and
/// starts must be present, and a test that would skip fails instead.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether a test (or a part of one) that needs `what` should skip because it is missing:
/// outside CI, plain `cargo test` on a fresh machine says "skipped" and goes on; under
/// `CI=true` a missing part is a failure (`scripts/test` installs and starts everything).
pub fn skip_without(what: &str, present: bool, how: &str) -> bool {
    if present {
        return false;
    }
    assert!(!in_ci(), "{what} missing in CI: {how}");
    eprintln!("skipped: this test needs {what}; {how}");
    true
}

/// Every file under `dir`, in subdirectories too (none if `dir` does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .flat_map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p)
            } else {
                vec![p]
            }
        })
        .collect()
}

/// Path of the built `chunkdump` binary.
pub fn chunkdump() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chunkdump"));
    c.env_remove("DUMP_CHUNK_SIZE")
        .env_remove("DUMP_BREATHING_INTERVAL")
        .env_remove("MAX_EXECUTION_TIME");
    c
}

/// Runs chunkdump with `args`, returning its output.
pub fn run(args: &[&str]) -> Output {
    chunkdump().args(args).output().expect("run chunkdump")
}

/// Runs a dump that must succeed; returns (id, path of the result).
pub fn dump_ok(db: &Path, out: &Path, extra: &[&str]) -> (String, PathBuf) {
    let mut args = vec!["dump", db.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "dump failed: {}\nstdout: {stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 2, "expected id and path, got {stdout:?}");
    (lines[0].to_string(), PathBuf::from(lines[lines.len() - 1]))
}

/// Dump `id`'s status (`chunkdump status --out`) as JSON; `None` while it does not exist.
pub fn try_status(id: &str, out: &Path) -> Option<serde_json::Value> {
    let o = run(&["status", id, "--out", out.to_str().unwrap()]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).unwrap())
}

/// Waits until dump `id` in `out`, run by `child`, has committed `chunks` chunks, so a
/// test acts on a dump known to be under way (not one that has not started yet). Panics
/// if the child ends first, or after 120 s.
pub fn wait_for_chunks(child: &mut std::process::Child, id: &str, out: &Path, chunks: u64) {
    wait_for_chunks_by(child, id, chunks, || try_status(id, out));
}

/// [`wait_for_chunks`] with the dump's status read by `status` (`None` while it does not
/// exist): a dump in a bucket, or with progress in DynamoDB.
pub fn wait_for_chunks_by(
    child: &mut std::process::Child,
    id: &str,
    chunks: u64,
    status: impl Fn() -> Option<serde_json::Value>,
) {
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "dump {id} never reached {chunks} chunks"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dump {id} ended ({status}) before reaching {chunks} chunks");
        }
        if status().is_some_and(|s| s["chunks"].as_u64().unwrap_or(0) >= chunks) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Loads an SQL dump into a new database with the real `sqlite3` shell.
pub fn load_with_shell(sql: &Path, db: &Path) {
    let input = std::fs::File::open(sql).unwrap();
    let o = Command::new("sqlite3")
        .arg("-bail")
        .arg(db)
        .stdin(input)
        .output()
        .expect("sqlite3 shell is installed");
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "sqlite3 failed loading {}: {}",
        sql.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// One SQLite that restores dumps in the test matrix: the `sqlite3` shell, or the SQLite
/// bundled in one apsw wheel (a venv under `.cache/loaders`, made by `scripts/setup-loaders`).
#[derive(Debug, Clone)]
pub struct Loader {
    pub name: String,
    pub python: Option<PathBuf>,
}

/// Every loader of the matrix: the shell, then the apsw venvs (only the shell, with a
/// "skipped" line, when they are missing outside CI).
pub fn loaders() -> Vec<Loader> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/loaders");
    let mut apsw: Vec<Loader> = std::fs::read_dir(&root)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("bin/python").exists())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("apsw-"))
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .map(|p| Loader {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            python: Some(p.join("bin/python")),
        })
        .collect();
    apsw.sort_by(|a, b| a.name.cmp(&b.name));
    // Without the apsw venvs (plain `cargo test` on a fresh machine) the matrix is the
    // shell alone, and says so; CI must have all of them.
    if skip_without(
        &format!("the apsw loaders in {}", root.display()),
        apsw.len() >= 3,
        "run scripts/setup-loaders (scripts/test does); loading with the sqlite3 shell only",
    ) {
        apsw.clear();
    }
    let mut all = vec![Loader {
        name: "sqlite3-shell".into(),
        python: None,
    }];
    all.extend(apsw);
    all
}

impl Loader {
    /// Loads `sql` into the new database `db`; Err carries the loader's message.
    pub fn load(&self, sql: &Path, db: &Path) -> Result<(), String> {
        let _ = std::fs::remove_file(db);
        let o = match &self.python {
            None => Command::new("sqlite3")
                .arg("-bail")
                .arg(db)
                .stdin(std::fs::File::open(sql).unwrap())
                .output()
                .expect("sqlite3 shell is installed"),
            Some(py) => {
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/load-with-apsw.py");
                Command::new(py)
                    .arg(script)
                    .arg(sql)
                    .arg(db)
                    .output()
                    .expect("apsw loader runs")
            }
        };
        if o.status.success() && o.stderr.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} failed loading {}: {}",
                self.name,
                sql.display(),
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    }
}

/// Loads `sql` with every loader of the matrix and asserts each restored database is
/// identical to `src` (schema, bit-exact rows, pragmas, encoding).
pub fn assert_restores_everywhere(src: &Path, sql: &Path, work: &Path) {
    for loader in loaders() {
        let back = work.join(format!("restored-{}.db", loader.name));
        loader.load(sql, &back).unwrap_or_else(|e| panic!("{e}"));
        let result = std::panic::catch_unwind(|| assert_same_db(src, &back));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("restored by {} ({}): {msg}", loader.name, src.display());
        }
    }
}

/// A value with its storage class and exact bits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exact {
    Null,
    Int(i64),
    Real(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

pub fn exact(v: ValueRef<'_>) -> Exact {
    match v {
        ValueRef::Null => Exact::Null,
        ValueRef::Integer(i) => Exact::Int(i),
        ValueRef::Real(f) => Exact::Real(f.to_bits()),
        ValueRef::Text(t) => Exact::Text(t.to_vec()),
        ValueRef::Blob(b) => Exact::Blob(b.to_vec()),
    }
}

/// Every row of a table (with its rowid when it has one), sorted. A table wider than a
/// result set is read in column groups; a contentless FTS table (whose columns cannot be
/// read) by its rowids and the rows of its shadow tables, which hold its index.
pub fn table_rows(conn: &Connection, table: &str) -> Vec<Vec<Exact>> {
    let (kind, wr): (String, bool) = conn
        .query_row(
            "SELECT type, wr FROM pragma_table_list WHERE name = ?1 AND schema = 'main'",
            [table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let cols: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_xinfo(?1)")
        .unwrap()
        .query_map([table], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let alias = ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|a| !cols.iter().any(|c| c.eq_ignore_ascii_case(a)));
    let q = quote(table);
    let key = match (kind.as_str(), wr, alias) {
        ("virtual", _, _) => Some("rowid"),
        (_, false, Some(a)) => Some(a),
        _ => None,
    };
    let query = |sql: &str| -> rusqlite::Result<Vec<Vec<Exact>>> {
        let mut stmt = conn.prepare(sql)?;
        let n = stmt.column_count();
        let rows = stmt.query_map([], |r| (0..n).map(|i| Ok(exact(r.get_ref(i)?))).collect())?;
        rows.collect()
    };
    let mut rows = match key {
        Some(k) if cols.len() >= 1999 => {
            // Column groups in key order, joined row by row.
            let mut joined: Vec<Vec<Exact>> = Vec::new();
            for group in cols.chunks(1000) {
                let list: Vec<String> = group.iter().map(|c| quote(c)).collect();
                let part = query(&format!(
                    "SELECT {k}, {} FROM {q} ORDER BY {k}",
                    list.join(", ")
                ))
                .unwrap();
                if joined.is_empty() {
                    joined = part;
                } else {
                    for (row, more) in joined.iter_mut().zip(part) {
                        row.extend(more.into_iter().skip(1));
                    }
                }
            }
            joined
        }
        Some(k) => match query(&format!("SELECT {k}, * FROM {q}")) {
            Ok(rows) => rows,
            Err(_) if kind == "virtual" => {
                let mut rows = query(&format!("SELECT rowid FROM {q}")).unwrap_or_default();
                let shadows: Vec<String> = conn
                    .prepare(
                        "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow' AND name LIKE ?1 || '\\_%' ESCAPE '\\' ORDER BY name",
                    )
                    .unwrap()
                    .query_map([table], |r| r.get(0))
                    .unwrap()
                    .map(|r| r.unwrap())
                    .collect();
                assert!(
                    !shadows.is_empty(),
                    "{table}: unreadable virtual table without shadow tables"
                );
                for s in shadows {
                    rows.push(vec![Exact::Text(s.clone().into_bytes())]);
                    rows.extend(query(&format!("SELECT * FROM {}", quote(&s))).unwrap());
                }
                rows
            }
            Err(e) => panic!("{table}: {e}"),
        },
        None => query(&format!("SELECT * FROM {q}")).unwrap(),
    };
    rows.sort();
    rows
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Asserts two databases hold the same schema, rows (bit-exact), and header pragmas.
pub fn assert_same_db(a: &Path, b: &Path) {
    let ca = Connection::open(a).unwrap();
    let cb = Connection::open(b).unwrap();
    // sqlite_stat4 is written only by SQLITE_ENABLE_STAT4 builds, and its rows are left to
    // ANALYZE; a source without it must not gain one in a loader built with STAT4.
    let source_stat4: bool = ca
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_stat4'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let skip = if source_stat4 { "sqlite_stat4" } else { "" };
    // A virtual table's shadow tables are made by the loader's version of its module,
    // whose CREATE text may differ from an old writer's (rtree: `data BLOB` -> `data`):
    // they must exist, their SQL is the module's.
    let schema = |c: &Connection| -> Vec<(String, String, String, Option<String>)> {
        let mut s = c
            .prepare(&format!(
                "SELECT s.type, s.name, s.tbl_name, iif(t.type = 'shadow', NULL, s.sql) FROM sqlite_schema s
                 LEFT JOIN pragma_table_list t ON t.schema = 'main' AND t.name = s.name WHERE s.name <> '{skip}' ORDER BY s.type, s.name"
            ))
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(schema(&ca), schema(&cb), "schemas differ");
    let tables: Vec<String> = ca
        .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'virtual') AND name NOT IN ('sqlite_schema', 'sqlite_temp_schema', 'sqlite_stat4')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(!tables.is_empty());
    for t in &tables {
        assert_eq!(
            table_rows(&ca, t),
            table_rows(&cb, t),
            "rows of table {t:?} differ"
        );
    }
    for pragma in ["user_version", "application_id", "encoding"] {
        let get = |c: &Connection| {
            c.query_row(&format!("PRAGMA {pragma}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .unwrap()
        };
        assert_eq!(get(&ca), get(&cb), "{pragma} differs");
    }
    // As sound as the source (this SQLite cannot validate some FTS4 variants it reads).
    let check = |c: &Connection| -> String {
        c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(check(&cb), check(&ca), "integrity_check differs");
}

/// Builds a database covering every case the SQL format must reproduce.
pub fn build_edge_db(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        r#"
        PRAGMA user_version = 42;
        PRAGMA application_id = 1234567;
        CREATE TABLE nums(id INTEGER PRIMARY KEY, v, r REAL, i INTEGER);
        CREATE TABLE texts(t TEXT, b BLOB);
        CREATE TABLE "weird ""name"" / with, chars"("col ""1""" TEXT, [select] INT, `x y` BLOB);
        CREATE TABLE seq(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
        CREATE TABLE wr(a TEXT, b INT, c, PRIMARY KEY(a, b DESC)) WITHOUT ROWID;
        CREATE TABLE gen(a INT, b INT GENERATED ALWAYS AS (a * 2) VIRTUAL, c INT GENERATED ALWAYS AS (a + 1) STORED, d TEXT);
        CREATE TABLE strict_t(id INTEGER PRIMARY KEY, n INT, t TEXT, r REAL, b BLOB, x ANY) STRICT;
        CREATE TABLE shadowed(rowid TEXT, oid_ INT);
        CREATE TABLE desc_pk(id INTEGER PRIMARY KEY DESC, v TEXT);
        CREATE TABLE empty_t(a, b);
        CREATE TABLE docs(id INTEGER PRIMARY KEY, title TEXT, body TEXT);
        CREATE VIRTUAL TABLE fts USING fts5(title, body);
        CREATE VIRTUAL TABLE fts_ext USING fts5(title, body, content='docs', content_rowid='id');
        CREATE VIRTUAL TABLE old_fts USING fts4(subject, content);
        CREATE VIRTUAL TABLE places USING rtree(id, minx, maxx, miny, maxy);
        CREATE INDEX texts_t ON texts(t);
        CREATE INDEX nums_partial ON nums(i) WHERE i > 0;
        CREATE VIEW v_docs AS SELECT id, upper(title) AS t FROM docs;
        CREATE TRIGGER docs_ai AFTER INSERT ON docs BEGIN
            INSERT INTO fts_ext(rowid, title, body) VALUES (new.id, new.title, new.body);
        END;
        "#,
    )
    .unwrap();
    // Written as SQLite prints them (a subnormal with all its digits among them).
    #[allow(clippy::excessive_precision)]
    let reals = [
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.1,
        1.0 / 3.0,
        5e-324,
        -5e-324,
        2.2250738585072014e-308,
        2.225073858507201e-308,
        1e-300,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e20,
        123456789.125,
        9007199254740993.0,
        1e-7,
        4.9406564584124654e-320,
    ];
    {
        let mut ins = c
            .prepare("INSERT INTO nums(id, v, r, i) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for (k, f) in reals.iter().enumerate() {
            ins.execute(rusqlite::params![k as i64 * 3 + 1, f, f, k as i64])
                .unwrap();
        }
        for (k, i) in [i64::MIN, i64::MAX, 0, -1, 1 << 53].iter().enumerate() {
            ins.execute(rusqlite::params![100 + k as i64, i, *i as f64, i])
                .unwrap();
        }
        ins.execute(rusqlite::params![
            i64::MAX,
            "text in untyped",
            rusqlite::types::Null,
            "12abc"
        ])
        .unwrap();
        ins.execute(rusqlite::params![
            i64::MIN,
            vec![0u8, 1, 2],
            3,
            rusqlite::types::Null
        ])
        .unwrap();
    }
    let texts: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"plain".to_vec(),
        b"it's \"quoted\"".to_vec(),
        b"nul\0inside".to_vec(),
        b"\0".to_vec(),
        b"line1\nline2".to_vec(),
        b"cr\rlf\r\n".to_vec(),
        b"tab\there".to_vec(),
        "emoji 😀 RTL עברית e\u{301}".as_bytes().to_vec(),
        b"\x01\x1f\x7f controls".to_vec(),
        vec![0xff, 0xfe, b'x'],
        b"-- not a comment".to_vec(),
        b".dot at start".to_vec(),
        b"\n.quit\n".to_vec(),
        b"back\\slash".to_vec(),
        b"X'00'".to_vec(),
    ];
    {
        let mut ins = c
            .prepare("INSERT INTO texts(rowid, t, b) VALUES (?1, CAST(?2 AS TEXT), ?3)")
            .unwrap();
        for (k, t) in texts.iter().enumerate() {
            ins.execute(rusqlite::params![k as i64 * 1000 - 3000, t, t])
                .unwrap();
        }
        ins.execute(rusqlite::params![
            99999,
            rusqlite::types::Null,
            Vec::<u8>::new()
        ])
        .unwrap();
    }
    c.execute_batch(
        r#"
        INSERT INTO "weird ""name"" / with, chars" VALUES ('a,b', 1, x'00ff'), (NULL, NULL, NULL), ('', 0, x'');
        INSERT INTO seq(v) VALUES ('a'), ('b'), ('c'), ('d');
        DELETE FROM seq WHERE id >= 3;
        INSERT INTO wr VALUES ('x', 1, 1.5), ('x', 2, 'two'), ('a', 9, NULL), ('', -1, x'01'), ('é', 0, 0);
        INSERT INTO gen(a, d) VALUES (1, 'one'), (NULL, 'null'), (21, 'x');
        INSERT INTO strict_t VALUES (1, 5, 't', 2.5, x'0102', 'any'), (2, NULL, NULL, NULL, NULL, 3.25);
        INSERT INTO shadowed(rowid, oid_) VALUES ('r1', 1), ('r2', 2);
        INSERT INTO desc_pk VALUES (5, 'five'), (-2, 'minus two');
        INSERT INTO docs(id, title, body) VALUES (1, 'Hello world', 'first body'), (7, 'Second', 'searchable text here');
        INSERT INTO fts(rowid, title, body) VALUES (3, 'alpha beta', 'gamma'), (10, 'delta', 'epsilon zeta');
        INSERT INTO old_fts(docid, subject, content) VALUES (2, 'mail subject', 'mail content'), (5, 'other', 'words');
        INSERT INTO places VALUES (1, 0.5, 1.25, -3.0, 4.0), (9, 100.0, 200.0, 1e-3, 2.0);
        ANALYZE;
        "#,
    )
    .unwrap();
}

/// A database of `rows` rows (about 120 bytes each) in a few tables, for larger tests.
pub fn build_bulk_db(path: &Path, rows: u64) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB, note TEXT);
         CREATE TABLE tags(item INTEGER, tag TEXT, PRIMARY KEY(item, tag)) WITHOUT ROWID;
         CREATE INDEX items_name ON items(name);",
    )
    .unwrap();
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO items SELECT i, 'item ' || i, i * 1.25, zeroblob(16), printf('%.*c', 40 + i % 40, 'x') FROM n",
        [rows],
    )
    .unwrap();
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO tags SELECT i, 'tag' || (i % 7) FROM n",
        [rows / 4],
    )
    .unwrap();
}

/// Drill settings for tests: scratch databases in the system's temporary directory, no
/// signing key; a database too large is reported skipped (as automatic drills do).
pub fn test_drills() -> Option<chunkdump::drill::DrillSettings> {
    Some(chunkdump::drill::DrillSettings {
        signing: None,
        scratch_dir: std::env::temp_dir(),
        ahead: 4,
        skip_too_large_for: Some("a test drill".into()),
    })
}
