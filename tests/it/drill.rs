//! `chunkdump drill`: a good dump of every format passes and keeps its report beside the
//! dump; a flipped byte, a cut or missing file, rows swapped behind a fixed-up manifest
//! and an index taken out of the dump each fail it, naming what is wrong; `list` and
//! status show the outcome.

use crate::common;
use crate::hostile::{manifest_in, tamper, tamper_file};

use std::path::Path;

use common::*;
use rusqlite::Connection;
use serde_json::Value;

/// The edge-case database with a view, a foreign key, an FTS5 and an R*Tree table.
fn rich_db(path: &Path) {
    build_edge_db(path);
    Connection::open(path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE parent(id INTEGER PRIMARY KEY);
             CREATE TABLE child(id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id));
             INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (10, 1), (11, 2);
             CREATE VIEW children AS SELECT child.id, parent.id AS parent FROM child JOIN parent ON p = parent.id;
             CREATE VIRTUAL TABLE notes USING fts5(body);
             INSERT INTO notes VALUES ('alpha beta'), ('gamma delta');
             CREATE VIRTUAL TABLE boxes USING rtree(id, x0, x1);
             INSERT INTO boxes VALUES (1, 0.5, 2.5);",
        )
        .unwrap();
}

fn drill(out: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["drill", "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

fn report_of(out: &Path, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(out.join(format!("{id}.drill.json"))).unwrap()).unwrap()
}

fn listed(out: &Path) -> Value {
    let o = run(&["list", "--out", out.to_str().unwrap(), "--json"]);
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_drill_of_a_good_dump_passes_in_every_format_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("rich.db");
    rich_db(&src);
    for (format, compression) in [("sql", "none"), ("csv", "gzip"), ("json", "zstd")] {
        let out = dir.path().join(format!("out-{format}"));
        let (id, _) = dump_ok(
            &src,
            &out,
            &["--format", format, "--compression", compression],
        );
        let o = drill(&out, &[&id]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{format}: {stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            stdout.contains(&format!("drill of {id}: passed")),
            "{stdout}"
        );
        let report = report_of(&out, &id);
        assert_eq!(report["reportVersion"], 1);
        assert_eq!(report["passed"], true, "{report}");
        assert_eq!(report["integrityCheck"], "ok");
        assert_eq!(report["foreignKeyViolations"], 0);
        assert_eq!(report["schemaMatches"], true, "{format}: {report}");
        assert!(report["viewsChecked"].as_u64().unwrap() >= 1, "{report}");
        // The edge database's FTS tables and ours, and the R*Tree.
        assert!(
            report["virtualTablesChecked"].as_u64().unwrap() >= 3,
            "{report}"
        );
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(manifest_in(&out, &id, format)).unwrap())
                .unwrap();
        // Every table of the manifest, with its row count and digest (CSV's census aside).
        let of = |tables: &Value| -> Vec<(Value, Value, Value)> {
            tables
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["table"].clone(),
                        t["rows"].clone(),
                        t["contentHash"].clone(),
                    )
                })
                .collect()
        };
        assert_eq!(of(&report["tables"]), of(&manifest["tables"]));
        let list = listed(&out);
        assert_eq!(list[0]["lastDrill"]["passed"], true, "{list}");
        let status = run(&["status", &id, "--out", out.to_str().unwrap()]);
        let status: Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(status["lastDrill"]["passed"], true, "{status}");
    }
    // Real SQLite files nobody here wrote.
    if skip_without_fixtures() {
        return;
    }
    for file in fixture_files() {
        let out = dir.path().join("fixtures");
        let (id, _) = dump_ok(&file, &out, &["--format", "sql"]);
        let o = drill(&out, &[&id]);
        assert!(
            o.status.success(),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let history = drill(&dir.path().join("fixtures"), &["--history"]);
    let history = String::from_utf8_lossy(&history.stdout);
    assert_eq!(history.lines().count(), fixture_files().len(), "{history}");
    assert!(history.lines().all(|l| l.contains("passed")), "{history}");
}

#[test]
fn a_drill_fails_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 2000);
    type Damage = fn(&Path, &Path);
    let cases: [(&str, Damage, &str); 5] = [
        (
            "flipped",
            |file, _| {
                let mut b = std::fs::read(file).unwrap();
                let at = b.len() / 2;
                b[at] ^= 1;
                std::fs::write(file, b).unwrap();
            },
            ".sql",
        ),
        (
            "truncated",
            |file, _| {
                let b = std::fs::read(file).unwrap();
                std::fs::write(file, &b[..b.len() / 2]).unwrap();
            },
            ".sql",
        ),
        (
            "missing",
            |file, _| std::fs::remove_file(file).unwrap(),
            ".sql",
        ),
        // Other valid rows, with the file's size and SHA-256 fixed up in the manifest:
        // only the table's content digest can tell.
        (
            "swapped",
            |file, manifest| {
                let sql = std::fs::read_to_string(file).unwrap();
                assert!(sql.contains("'item 17'"));
                tamper(manifest, sql.replace("'item 17'", "'item 71'").as_bytes());
            },
            "\"items\"",
        ),
        // An index taken out of the dump (manifest fixed up): the rows are all there,
        // the schema is not the one dumped.
        (
            "no index",
            |file, manifest| {
                let sql = std::fs::read_to_string(file).unwrap();
                let line = sql
                    .lines()
                    .find(|l| l.starts_with("CREATE INDEX"))
                    .unwrap()
                    .to_string();
                tamper(manifest, sql.replace(&format!("{line}\n"), "").as_bytes());
            },
            "index \"items_name\" is in the dump's manifest but the dump does not create it",
        ),
    ];
    for (name, damage, named) in cases {
        let out = dir.path().join(name.replace(' ', "-"));
        let (id, file) = dump_ok(&src, &out, &["--format", "sql"]);
        damage(&file, &manifest_in(&out, &id, "sql"));
        let o = drill(&out, &[&id]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(o.status.code(), Some(1), "{name}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("drill of {id}: FAILED")),
            "{name}: {stdout}"
        );
        let problem = stdout
            .lines()
            .find(|l| l.contains("problem:"))
            .unwrap_or_default();
        assert!(
            problem.contains(named),
            "{name}: the problem names {named}: {stdout}"
        );
        assert!(stderr.contains("failed"), "{name}: {stderr}");
        let report = report_of(&out, &id);
        assert_eq!(report["passed"], false, "{name}");
        assert!(!report["problems"].as_array().unwrap().is_empty());
        assert_eq!(listed(&out)[0]["lastDrill"]["passed"], false, "{name}");
    }
}

/// The API's dump status shows a dump's last drill, as `list` does.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_status_shows_the_last_drill() {
    use common::api_server::{start_server, READER};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 500);
    let server = start_server(
        &src,
        std::time::Duration::from_secs(25),
        std::time::Duration::ZERO,
        None,
    )
    .await;
    let id = server.start(serde_json::json!({"format": "sql"})).await;
    let done = server.wait_for(&id, "completed").await;
    assert!(done.get("lastDrill").is_none(), "never drilled: {done}");
    let out = server.out.clone();
    let o = tokio::task::spawn_blocking(move || drill(&out, &[&id.clone()]))
        .await
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = done["dumpId"].as_str().unwrap();
    let path = format!("/export/dump/status/{}", id);
    let (_, status) = server
        .json(reqwest::Method::GET, &path, Some(READER), None)
        .await;
    assert_eq!(status["lastDrill"]["passed"], true, "{status}");
    assert!(status["lastDrill"]["at"].is_string(), "{status}");
}

/// In a CSV dump the schema file is not part of the schema's fingerprint: an index taken
/// out of it (the manifest fixed up) is still caught, by the manifest's list of objects.
#[test]
fn an_index_cut_from_a_csv_dumps_schema_file_fails_the_drill() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 500);
    let out = dir.path().join("out");
    let (id, _) = dump_ok(&src, &out, &["--format", "csv"]);
    let manifest = manifest_in(&out, &id, "csv");
    let schema = std::fs::read_to_string(out.join(&id).join("schema.sql")).unwrap();
    let line = schema
        .lines()
        .find(|l| l.starts_with("CREATE INDEX"))
        .unwrap()
        .to_string();
    let cut = schema.replace(&format!("{line}\n"), "");
    tamper_file(
        &manifest,
        &|key| key.ends_with("schema.sql"),
        cut.as_bytes(),
    );
    let o = drill(&out, &[&id]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "index \"items_name\" is in the dump's manifest but the dump does not create it"
        ),
        "{stdout}"
    );
}

/// A scratch directory too small for the database is refused before anything is read
/// (a tmpfs of 1 MiB in a private mount namespace): an error naming it, not a failed
/// drill, and no report.
#[test]
fn a_scratch_directory_too_small_is_refused_without_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 20_000);
    let out = dir.path().join("out");
    let (id, _) = dump_ok(&src, &out, &["--format", "sql"]);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let script = r#"mount -t tmpfs -o size=1m chunkdump-test "$SCRATCH" || exit 90
"$BIN" drill "$ID" --out "$OUT" --scratch-dir "$SCRATCH""#;
    let o = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", script])
        .env("BIN", env!("CARGO_BIN_EXE_chunkdump"))
        .env("ID", &id)
        .env("OUT", &out)
        .env("SCRATCH", &scratch)
        .output()
        .expect("unshare (util-linux) runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("scratch directory") && stderr.contains("MB free"),
        "{stderr}"
    );
    assert!(!out.join(format!("{id}.drill.json")).exists());
    assert!(listed(&out)[0].get("lastDrill").is_none());
}

/// A dump read back is untrusted: a view whose first row never comes (an endless
/// recursive query, sorted) fails the drill naming the view, in bounded time.
#[test]
fn a_view_that_never_answers_fails_the_drill_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("v.db");
    Connection::open(&src)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t(a); INSERT INTO t VALUES (1);
             CREATE VIEW endless AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
               SELECT x FROM c ORDER BY x DESC;",
        )
        .unwrap();
    let out = dir.path().join("out");
    let (id, _) = dump_ok(&src, &out, &["--format", "sql"]);
    let started = std::time::Instant::now();
    let o = drill(&out, &[&id]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("problem: view \"endless\": no first row within 5 s"),
        "{stdout}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// An automatic drill (the state machine's `Drill` step, the drill schedule) of a dump
/// whose database is larger than the scratch space is reported as skipped with both
/// sizes, never as passed: in the answer, the report, the job record and `list`.
#[tokio::test(flavor = "multi_thread")]
async fn an_automatic_drill_too_large_for_its_scratch_space_is_skipped_not_passed() {
    use chunkdump::local::{DirStore, SqliteProgress};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("rich.db");
    rich_db(&src);
    let out = dir.path().join("out");
    let (id, _) = {
        let (src, out) = (src.clone(), out.clone());
        tokio::task::spawn_blocking(move || dump_ok(&src, &out, &["--format", "sql"]))
            .await
            .unwrap()
    };
    // The manifest now claims a database of 10^18 bytes (no scratch space has that).
    let manifest = crate::hostile::manifest_in(&out, &id, "sql");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["source"]["bytes"] = 1_000_000_000_000_000_000u64.into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let progress =
        Arc::new(SqliteProgress::open(&out.join(".chunkdump/progress.sqlite3")).unwrap());
    let tasks = chunkdump::tasks::Tasks {
        drills: Some(chunkdump::drill::DrillSettings {
            signing: None,
            scratch_dir: dir.path().to_path_buf(),
            ahead: 4,
            skip_too_large_for: Some("a Lambda drill".into()),
        }),
        ..chunkdump::tasks::Tasks::from_config(
            Arc::new(DirStore::open(&out).unwrap()),
            progress.clone(),
            None,
            &chunkdump::config::Config::default(),
        )
    };
    let answer = tasks
        .handle_event(serde_json::json!({"action": "drill", "dumpId": id}), None)
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "skipped", "{answer}");
    let report = report_of(&out, &id);
    assert_eq!(report["passed"], false);
    let reason = report["skipped"].as_str().unwrap();
    assert!(
        reason.starts_with("too large for a Lambda drill: the database and its largest dump file take 100000000000")
            && reason.ends_with("MB free"),
        "{reason}"
    );
    let job = chunkdump::ports::ProgressReader::require(progress.as_ref(), &id)
        .await
        .unwrap();
    let last = job.last_drill.unwrap();
    assert!(!last.passed && last.skipped && last.problem.as_deref() == Some(reason));
    let table = run(&["list", "--out", out.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains(&id) && l.contains(" skipped ")),
        "{table}"
    );
    // Drilled (skipped) once: a retried step does not drill again.
    let again = tasks
        .handle_event(serde_json::json!({"action": "drill", "dumpId": id}), None)
        .await
        .unwrap();
    assert_eq!(again["outcome"], "drilled already");
}

/// A fleet started with `"drill": true` drills each database's dump once it completes,
/// and its status counts the drills by outcome.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_with_drill_counts_its_drills_by_outcome() {
    use common::api_server::{start_server, ADMIN};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    build_edge_db(&root.join("a.db"));
    rich_db(&root.join("b.db"));
    // c.db breaks a foreign key (written with enforcement off): its drill fails.
    build_edge_db(&root.join("c.db"));
    Connection::open(root.join("c.db"))
        .unwrap()
        .execute_batch(
            "PRAGMA foreign_keys = OFF; CREATE TABLE o(x INTEGER REFERENCES items(id)); INSERT INTO o VALUES (-1);",
        )
        .unwrap();
    let server = start_server(
        &root.join("a.db"),
        Duration::from_secs(25),
        Duration::ZERO,
        None,
    )
    .await
    .over_root(&root)
    .await;
    let (status, accepted) = server
        .json(
            reqwest::Method::POST,
            "/export/fleet",
            Some(ADMIN),
            Some(serde_json::json!({"databases": "*.db", "format": "sql", "drill": true})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{accepted}");
    let path = format!("/export/fleet/{}", accepted["fleetId"].as_str().unwrap());
    let started = Instant::now();
    let fleet = loop {
        let (_, fleet) = server
            .json(reqwest::Method::GET, &path, Some(ADMIN), None)
            .await;
        if fleet["status"] == "completed" && fleet["drills"]["pending"].is_null() {
            break fleet;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{fleet}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        fleet["counts"],
        serde_json::json!({"completed": 3}),
        "{fleet}"
    );
    assert_eq!(
        fleet["drills"],
        serde_json::json!({"passed": 2, "failed": 1}),
        "{fleet}"
    );
}

/// `dump --drill`: the dump is drilled once it completes (the state machine's `Drill`
/// step, in-process); a passed drill is said on stderr, a failed one exits 1 naming the
/// problem, after the dump's id and path (the dump itself is complete).
#[test]
fn dump_with_drill_drills_and_a_failure_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("rich.db");
    rich_db(&src);
    let out = dir.path().join("out");
    let o = run(&[
        "dump",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "sql",
        "--drill",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("drill passed (report: "), "{stderr}");
    let id = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(report_of(&out, &id)["passed"], true);
    Connection::open(&src)
        .unwrap()
        .execute_batch("PRAGMA foreign_keys = OFF; INSERT INTO child VALUES (12, 99);")
        .unwrap();
    let o = run(&[
        "dump",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "sql",
        "--drill",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the dump completed, but its drill failed: table \"child\": 1 foreign key violation"
        ),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let id = stdout.lines().next().unwrap();
    assert_eq!(
        listed(&out)
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap()["status"],
        "completed",
        "{stdout}"
    );
}
