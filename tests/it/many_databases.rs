//! Many databases in one store: the CLI dumping several (one broken), names per
//! database, retention and `restore --latest` per database, and the API naming a
//! database under its root over a real socket (with every refusal).

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::api_server::{start_server, ADMIN, READER};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// `(id, database, path)` of each stdout line of a several-database dump.
fn finished(stdout: &[u8]) -> Vec<(String, String, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 3, "not `id<TAB>database<TAB>path`: {line:?}");
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

fn list(out: &Path) -> Vec<Value> {
    let o = run(&["list", "--out", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<Value>(&o.stdout).unwrap()["dumps"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| serde_json::from_slice::<Vec<Value>>(&o.stdout).unwrap())
}

#[test]
fn several_databases_are_dumped_and_a_broken_one_fails_alone() {
    if skip_without_fixtures() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dbs = dir.path().join("dbs");
    std::fs::create_dir_all(&dbs).unwrap();
    build_edge_db(&dbs.join("edge.db"));
    build_bulk_db(&dbs.join("bulk.db"), 3000);
    std::fs::copy(&fixture_files()[0], dbs.join("real.sqlite3")).unwrap();
    std::fs::write(dbs.join("broken.db"), vec![b'x'; 4096]).unwrap();
    let out = dir.path().join("out");
    let o = chunkdump()
        .args(["dump", "--format", "sql", "--parallel", "2", "--out"])
        .arg(&out)
        .arg(dbs.join("*.db")) // expanded by chunkdump (a quoted pattern)
        .arg(dbs.join("real.sqlite3"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "one database failed: {stderr}");
    assert!(
        stderr.contains("3 of 4 databases dumped, 1 failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed: broken.db") || stderr.contains("failed: broken"),
        "{stderr}"
    );
    let mut lines = finished(&o.stdout);
    lines.sort_by(|a, b| a.1.cmp(&b.1));
    let names: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    assert_eq!(names, ["bulk", "edge", "real"]);
    for (id, name, path) in &lines {
        assert!(id.starts_with(&format!("{name}/dump_")), "{id}");
        assert_eq!(Path::new(path), out.join(format!("{id}.sql")));
        // Each dump is its own database's, loaded back by the real sqlite3 shell.
        let source = if name == "real" {
            dbs.join("real.sqlite3")
        } else {
            dbs.join(format!("{name}.db"))
        };
        let back = dir.path().join(format!("{name}-back.db"));
        load_with_shell(Path::new(path), &back);
        assert_same_db(&source, &back);
        let v = run(&["verify", id, "--out", out.to_str().unwrap()]);
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    }
    // The broken database started no dump.
    let dumps = list(&out);
    assert_eq!(dumps.len(), 3, "{dumps:?}");
}

#[test]
fn databases_are_named_by_their_path_under_the_root_and_kept_per_database() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let (x, y) = (root.join("x/t.db"), root.join("y/t.db"));
    for (db, rows) in [(&x, 500), (&y, 800)] {
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        build_bulk_db(db, rows);
    }
    let out = dir.path().join("out");
    // Two files named t.db: without a root their names would clash, and nothing runs.
    let clash = chunkdump()
        .args(["dump", "--format", "csv", "--out"])
        .arg(&out)
        .args([&x, &y])
        .output()
        .unwrap();
    assert_eq!(clash.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&clash.stderr).contains("would both be named t"));
    assert!(!out.join(".chunkdump").exists() || list(&out).is_empty());
    let dump_both = |format: &str| {
        let o = chunkdump()
            .args([
                "dump",
                "--format",
                format,
                "--parallel",
                "4",
                "--database-root",
            ])
            .arg(&root)
            .arg("--out")
            .arg(&out)
            .arg(root.join("*/t.db"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut lines = finished(&o.stdout);
        lines.sort_by(|a, b| a.1.cmp(&b.1));
        lines
    };
    let first = dump_both("csv");
    assert_eq!(
        first.iter().map(|l| l.1.as_str()).collect::<Vec<_>>(),
        ["x/t", "y/t"]
    );
    assert!(
        Path::new(&first[0].2).join("items.csv").is_file(),
        "{first:?}"
    );
    // Dumps a second apart get new ids.
    std::thread::sleep(Duration::from_millis(1100));
    let second = dump_both("sql");
    std::thread::sleep(Duration::from_millis(1100));
    // A third of x alone.
    let third = chunkdump()
        .args(["dump", "--format", "sql", "--database-root"])
        .arg(&root)
        .arg("--out")
        .arg(&out)
        .arg(&x)
        .output()
        .unwrap();
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    let third = finished(&third.stdout);
    assert_eq!(third[0].1, "x/t");
    // Keep the newest one: per database, so y keeps its second dump and x its third.
    let o = run(&["prune", "--out", out.to_str().unwrap(), "--keep-last", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut kept: Vec<String> = list(&out)
        .iter()
        .map(|d| {
            d["id"]
                .as_str()
                .or(d["dumpId"].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    kept.sort();
    assert_eq!(kept, [third[0].0.clone(), second[1].0.clone()]);
    assert!(!out.join(&first[0].0).exists() && !out.join(&first[1].0).exists());
    // The newest dump of one database, found among the others, restores it exactly.
    let into = dir.path().join("y-restored.db");
    let o = chunkdump()
        .args(["restore", "--latest", "--database"])
        .arg(&y)
        .arg("--out")
        .arg(&out)
        .arg("--into")
        .arg(&into)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&second[1].0));
    assert_same_db(&y, &into);
    // So does its manifest file alone, found below the database's directory.
    let manifest = out.join(format!("{}.manifest.json", third[0].0));
    let into = dir.path().join("x-restored.db");
    let o = chunkdump()
        .args(["restore", "--manifest"])
        .arg(&manifest)
        .arg("--into")
        .arg(&into)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_db(&x, &into);
}

/// `--database` in `list`, `prune` and `restore --latest` takes a database's name as
/// `dump` printed it (`acme%20corp`) or its path under the root, as well as its file; a
/// name that matches nothing is an error, never an empty success.
#[test]
fn database_options_take_the_names_dump_prints() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("tenants")).unwrap();
    let acme = root.join("tenants/acme corp.db");
    build_bulk_db(&acme, 300);
    build_edge_db(&root.join("tenants/beta.db"));
    let out = dir.path().join("out");
    let dump_all = || {
        let o = chunkdump()
            .args(["dump", "--format", "sql", "--database-root"])
            .arg(&root)
            .arg("--out")
            .arg(&out)
            .arg(root.join("tenants/*.db"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    dump_all();
    std::thread::sleep(Duration::from_millis(1100));
    dump_all();
    let o = out.to_str().unwrap();
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["list", "--out", o, "--json"];
        all.extend_from_slice(args);
        let listed = run(&all);
        assert!(
            listed.status.success(),
            "{}",
            String::from_utf8_lossy(&listed.stderr)
        );
        let v: Value = serde_json::from_slice(&listed.stdout).unwrap();
        let rows = v["dumps"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| v.as_array().unwrap().clone());
        rows.iter()
            .map(|d| {
                d["id"]
                    .as_str()
                    .or(d["dumpId"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let by_file = ids(&["--database", acme.to_str().unwrap()]);
    assert_eq!(by_file.len(), 2, "{by_file:?}");
    assert!(
        by_file
            .iter()
            .all(|id| id.starts_with("tenants/acme%20corp/")),
        "{by_file:?}"
    );
    for name in ["tenants/acme%20corp", "tenants/acme corp.db"] {
        assert_eq!(ids(&["--database", name]), by_file, "{name}");
    }
    // Unknown: an error naming it, from list and prune alike.
    for args in [
        vec!["list", "--out", o, "--database", "tenants/acme"],
        vec![
            "prune",
            "--out",
            o,
            "--database",
            "tenants/acme",
            "--keep-last",
            "1",
        ],
    ] {
        let r = run(&args);
        assert_eq!(r.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&r.stderr).contains("tenants/acme"),
            "{args:?}"
        );
    }
    // Prune by name keeps that database's newest; restore --latest by name finds it.
    let r = run(&[
        "prune",
        "--out",
        o,
        "--database",
        "tenants/acme%20corp",
        "--keep-last",
        "1",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(ids(&["--database", "tenants/acme%20corp"]).len(), 1);
    assert_eq!(
        ids(&["--database", "tenants/beta"]).len(),
        2,
        "beta untouched"
    );
    let into = dir.path().join("acme-back.db");
    let r = run(&[
        "restore",
        "--latest",
        "--database",
        "tenants/acme%20corp",
        "--out",
        o,
        "--into",
        into.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_same_db(&acme, &into);
}

/// A root of tenant databases, with the things a caller must not reach.
fn tenant_root(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("tenants/empty-dir")).unwrap();
    build_bulk_db(&root.join("tenants/acme corp.db"), 1500);
    build_edge_db(&root.join("tenants/beta.db"));
    build_bulk_db(&dir.join("outside.db"), 10);
    std::fs::write(root.join("notes.txt"), "not a database").unwrap();
    std::os::unix::fs::symlink(dir.join("outside.db"), root.join("tenants/escape.db")).unwrap();
    root
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_dumps_a_database_named_under_its_root_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = tenant_root(dir.path());
    let single = start_server(
        &dir.path().join("outside.db"),
        Duration::from_secs(25),
        Duration::ZERO,
        None,
    )
    .await;
    // A server of one database takes no `database`, and lists none.
    let (status, v) = single
        .json(
            Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"format": "sql", "database": "tenants/beta.db"})),
        )
        .await;
    assert_eq!(
        (status, &v["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("database")),
        "{v}"
    );
    let (status, _) = single
        .json(Method::GET, "/export/databases", Some(READER), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let server = single.over_root(&root).await;
    // Listed by path, paged, without the symlink, the text file or the directory.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/export/databases?limit=1&cursor={}", urlencode(c)),
            None => "/export/databases?limit=1".to_string(),
        };
        let (status, page) = server.json(Method::GET, &path, Some(READER), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for d in page["databases"].as_array().unwrap() {
            seen.push((
                d["database"].as_str().unwrap().to_string(),
                d["name"].as_str().unwrap().to_string(),
            ));
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            (
                "tenants/acme corp.db".to_string(),
                "tenants/acme%20corp".to_string()
            ),
            ("tenants/beta.db".to_string(), "tenants/beta".to_string())
        ]
    );
    // Every way out of the root, and what is not a database, is refused naming it.
    for (database, says) in [
        (
            dir.path().join("outside.db").display().to_string(),
            "absolute",
        ),
        ("../outside.db".to_string(), ".."),
        ("tenants/../../outside.db".to_string(), ".."),
        ("tenants/escape.db".to_string(), "outside the database root"),
        ("tenants/empty-dir".to_string(), "directory"),
        ("notes.txt".to_string(), "not a SQLite database"),
        ("tenants/nobody.db".to_string(), "no such database"),
    ] {
        let (status, v) = server
            .json(
                Method::POST,
                "/export/dump",
                Some(ADMIN),
                Some(json!({"format": "sql", "database": database})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{database}: {v}");
        assert_eq!(v["error"]["field"], "database", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{database}: {message}");
        assert!(
            !message.contains(&*dir.path().to_string_lossy()) || says == "absolute",
            "{message}"
        );
    }
    let (status, v) = server
        .json(
            Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"format": "sql"})),
        )
        .await;
    assert_eq!(
        (status, &v["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("database")),
        "{v}"
    );
    // A named database is dumped under its name, and downloads back exactly.
    let acme = server
        .start(json!({"format": "sql", "database": "tenants/acme corp.db"}))
        .await;
    assert!(acme.starts_with("tenants/acme%20corp/dump_"), "{acme}");
    let beta = server
        .start(json!({"format": "csv", "database": "tenants/beta.db"}))
        .await;
    assert!(beta.starts_with("tenants/beta/dump_"), "{beta}");
    let done = server.wait_for(&acme, "completed").await;
    let url = done["downloadUrl"].as_str().unwrap();
    let (status, _, body) = server.call(Method::GET, url, Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{url}");
    let sql = dir.path().join("acme.sql");
    std::fs::write(&sql, body).unwrap();
    let back = dir.path().join("acme-back.db");
    load_with_shell(&sql, &back);
    assert_same_db(&root.join("tenants/acme corp.db"), &back);
    let done = server.wait_for(&beta, "completed").await;
    for url in done["downloadUrl"].as_array().unwrap() {
        let (status, _, _) = server
            .call(Method::GET, url.as_str().unwrap(), Some(READER), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{url}");
    }
    let (status, manifest) = server
        .json(
            Method::GET,
            done["manifestUrl"].as_str().unwrap(),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(manifest["dumpId"], beta);
    assert!(server.out.join(format!("{beta}/manifest.json")).is_file());
    // The manifest (a read-only token reads it) names the database as the caller did,
    // never by the server's path; so do status and list.
    assert_eq!(manifest["source"]["path"], "tenants/beta.db", "{manifest}");
    assert_eq!(
        manifest["spec"]["database"], "tenants/beta.db",
        "{manifest}"
    );
    let server_path = root.display().to_string();
    assert!(!manifest.to_string().contains(&server_path), "{manifest}");
    assert!(!done.to_string().contains(&server_path), "{done}");
}

fn urlencode(s: &str) -> String {
    chunkdump::model::path_segment(s)
}
