//! `chunkdump restore`: every format and compression back to a database equal to the
//! source (compared value by value, bits and storage classes), from a directory and from
//! S3 (moto, s3s-fs); faults (a flipped byte, a cut or missing file, another dump's
//! manifest, an unknown id, a kill) end with a clear error and nothing at `--into`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::cloud::{cli_env, servers, unique};
use common::*;
use rusqlite::Connection;

/// Restores dump `id` from `out` into `into` with `extra` arguments.
fn restore(id: &str, out: &Path, into: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "restore",
        id,
        "--out",
        out.to_str().unwrap(),
        "--into",
        into.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn error_of(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected a failed restore: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{stderr}"
    );
    stderr
}

/// The user tables of a database with their row counts.
fn counts(db: &Path) -> Vec<(String, i64)> {
    let c = Connection::open(db).unwrap();
    let names: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type IN ('table','virtual') AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    names
        .into_iter()
        .map(|n| {
            let count = c
                .query_row(
                    &format!("SELECT count(*) FROM \"{}\"", n.replace('"', "\"\"")),
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(-1);
            (n, count)
        })
        .collect()
}

fn no_files_at(into: &Path) {
    assert!(
        !into.exists(),
        "{} exists after a failed restore",
        into.display()
    );
    let dir = into.parent().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("chunkdump-restore"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// Dumps `src` in `format`/`compression` in many chunks and restores it; SQL, JSON and
/// Parquet must give the source back exactly, CSV its schema and row counts.
fn round_trip(
    src: &Path,
    work: &Path,
    format: &str,
    compression: &str,
    slice_rows: &str,
) -> PathBuf {
    let out = work.join(format!("out-{format}-{compression}"));
    let (id, _) = dump_ok(
        src,
        &out,
        &[
            "--format",
            format,
            "--compression",
            compression,
            "--chunk-size",
            slice_rows,
            "--budget-ms",
            "0",
            "--breathe-ms",
            "0",
        ],
    );
    let into = work.join(format!("restored-{format}-{compression}.db"));
    let stdout = ok(&restore(&id, &out, &into, &[]));
    assert!(stdout.contains("verified against the manifest"), "{stdout}");
    if format == "csv" {
        assert_eq!(counts(&into), counts(src), "{format}/{compression}");
    } else {
        assert_same_db(src, &into);
    }
    into
}

/// What a loader of the matrix (the sqlite3 shell, apsw's bundled SQLite 3.39 to 3.54)
/// sees in `db`: its integrity check and every table's row count (not `sqlite_stat4`'s:
/// its rows are left to `ANALYZE`, see docs/formats.md).
fn seen_by(loader: &Loader, db: &Path) -> String {
    let script = "import apsw, sys\n\
        c = apsw.Connection(sys.argv[1], flags=apsw.SQLITE_OPEN_READONLY)\n\
        print(list(c.execute('PRAGMA integrity_check')))\n\
        for (t,) in list(c.execute(\"SELECT name FROM sqlite_schema WHERE type = 'table' AND name <> 'sqlite_stat4' ORDER BY name\")):\n\
        \x20   print(t, list(c.execute('SELECT count(*) FROM \"%s\"' % t.replace('\"', '\"\"'))))\n";
    let o = match &loader.python {
        Some(py) => std::process::Command::new(py).arg("-c").arg(script).arg(db).output().unwrap(),
        None => {
            std::process::Command::new("sqlite3")
                .arg("-readonly")
                .arg(db)
                .arg("PRAGMA integrity_check; SELECT name FROM sqlite_schema WHERE type = 'table' AND name <> 'sqlite_stat4' ORDER BY name;")
                .output()
                .unwrap()
        }
    };
    assert!(
        o.status.success(),
        "{}: {}",
        loader.name,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_format_and_compression_restores_the_hard_cases() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("edge.db");
    build_edge_db(&src);
    let loaders = loaders();
    for format in ["sql", "json", "csv", "parquet"] {
        for compression in ["none", "gzip", "zstd"] {
            let restored = round_trip(&src, work.path(), format, compression, "3");
            // Every SQLite of the matrix opens the restored file and finds it as sound
            // and as full as the source (SQL and JSON restore every table).
            if format != "csv" && compression == "zstd" {
                for loader in &loaders {
                    assert_eq!(
                        seen_by(loader, &restored),
                        seen_by(loader, &src),
                        "{} on the {format} restore",
                        loader.name
                    );
                }
            }
        }
    }
}

/// Each real SQLite file restores from a dump in every format as the same database.
fn restores_in_every_format(src: &Path) {
    let work = tempfile::tempdir().unwrap();
    // SQL restores of the large files add time, not cases: the loader matrix already
    // loads their SQL dumps (roundtrip.rs), and the small ones restore here.
    let large = std::fs::metadata(src).unwrap().len() > 2 << 20;
    let formats: &[&str] = if large {
        &["json", "csv", "parquet"]
    } else {
        &["sql", "json", "csv", "parquet"]
    };
    for format in formats {
        round_trip(src, work.path(), format, "zstd", "2000");
    }
}

mod real_sqlite_files_restore_in_every_format {
    crate::common::fixtures::each_real_sqlite_file!(super::restores_in_every_format);
}

#[test]
fn a_restore_from_a_manifest_and_the_latest_and_of_some_tables() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("edge.db");
    build_edge_db(&src);
    let out = work.path().join("out");
    let (old, _) = dump_ok(&src, &out, &["--format", "json"]);
    let (newest, _) = dump_ok(&src, &out, &["--format", "csv"]);
    assert_ne!(old, newest);
    // --manifest: the files beside it (a CSV dump's manifest inside its directory).
    let by_manifest = work.path().join("m.db");
    let manifest = out.join(format!("{old}.manifest.json"));
    ok(&run(&[
        "restore",
        "--manifest",
        manifest.to_str().unwrap(),
        "--into",
        by_manifest.to_str().unwrap(),
    ]));
    assert_same_db(&src, &by_manifest);
    let latest = work.path().join("latest.db");
    let o = run(&[
        "restore",
        "--latest",
        "--out",
        out.to_str().unwrap(),
        "--into",
        latest.to_str().unwrap(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(report["dumpId"], newest.as_str());
    assert_eq!(report["format"], "csv");
    // --database: the newest dump of that database; none of another.
    let other = work.path().join("other.db");
    build_edge_db(&other);
    let (of_other, _) = dump_ok(&other, &out, &["--format", "sql"]);
    let o = run(&[
        "restore",
        "--latest",
        "--database",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--into",
        work.path().join("l2.db").to_str().unwrap(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(report["dumpId"], newest.as_str());
    let o = run(&[
        "restore",
        "--latest",
        "--out",
        out.to_str().unwrap(),
        "--into",
        work.path().join("l3.db").to_str().unwrap(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(report["dumpId"], of_other.as_str());
    let e = error_of(&run(&[
        "restore",
        "--latest",
        "--database",
        "/nowhere.db",
        "--out",
        out.to_str().unwrap(),
        "--into",
        work.path().join("l4.db").to_str().unwrap(),
    ]));
    assert!(e.contains("/nowhere.db"), "{e}");
    // --database with a dump id (or a manifest) would be ignored: refused, nothing written.
    let ignored = work.path().join("l5.db");
    let usage_error = |o: Output| {
        assert_eq!(o.status.code(), Some(2), "a usage error");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = usage_error(restore(
        &of_other,
        &out,
        &ignored,
        &["--database", src.to_str().unwrap()],
    ));
    assert!(e.contains("--database") && e.contains("--latest"), "{e}");
    assert!(!ignored.exists());
    let e = usage_error(run(&[
        "restore",
        "--manifest",
        manifest.to_str().unwrap(),
        "--database",
        src.to_str().unwrap(),
        "--into",
        ignored.to_str().unwrap(),
    ]));
    assert!(e.contains("--latest"), "{e}");
    assert!(!ignored.exists());
    // --tables: those tables only, with their rows.
    let some = work.path().join("some.db");
    ok(&restore(&old, &out, &some, &["--tables", "nums"]));
    let tables: Vec<String> = counts(&some).into_iter().map(|(n, _)| n).collect();
    assert_eq!(tables, vec!["nums".to_string()]);
    assert_eq!(
        counts(&some),
        counts(&src)
            .into_iter()
            .filter(|(n, _)| n == "nums")
            .collect::<Vec<_>>()
    );
    let e = error_of(&restore(
        &old,
        &out,
        &work.path().join("x.db"),
        &["--tables", "nope"],
    ));
    assert!(e.contains("\"nope\""), "{e}");
}

#[test]
fn an_existing_target_is_kept_unless_forced() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("edge.db");
    build_edge_db(&src);
    let out = work.path().join("out");
    let (id, _) = dump_ok(&src, &out, &["--format", "sql"]);
    let into = work.path().join("target.db");
    std::fs::write(&into, b"precious").unwrap();
    let e = error_of(&restore(&id, &out, &into, &[]));
    assert!(e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(&into).unwrap(), b"precious");
    ok(&restore(&id, &out, &into, &["--force"]));
    assert_same_db(&src, &into);
}

#[test]
fn damaged_or_mismatched_dumps_fail_cleanly() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("edge.db");
    build_edge_db(&src);
    for format in ["sql", "json", "csv"] {
        let out = work.path().join(format!("out-{format}"));
        let (id, path) = dump_ok(&src, &out, &["--format", format]);
        let (other, _) = dump_ok(&src, &out, &["--format", format]);
        // The file each damage goes to: the dump's file, or one CSV table's.
        let file = if format == "csv" {
            path.join("nums.csv")
        } else {
            path.clone()
        };
        let original = std::fs::read(&file).unwrap();
        let into = work.path().join(format!("into-{format}.db"));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();

        let mut flipped = original.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        std::fs::write(&file, &flipped).unwrap();
        let e = error_of(&restore(&id, &out, &into, &[]));
        assert!(e.contains(&name), "{format} flipped: {e}");
        no_files_at(&into);

        std::fs::write(&file, &original[..original.len() - 7]).unwrap();
        let e = error_of(&restore(&id, &out, &into, &[]));
        assert!(e.contains(&name), "{format} truncated: {e}");
        no_files_at(&into);

        std::fs::remove_file(&file).unwrap();
        let e = error_of(&restore(&id, &out, &into, &[]));
        assert!(
            e.contains(&name) && e.contains("missing"),
            "{format} missing: {e}"
        );
        no_files_at(&into);
        std::fs::write(&file, &original).unwrap();
        ok(&restore(&id, &out, &into, &[]));
        std::fs::remove_file(&into).unwrap();

        // Another dump's manifest in this one's place.
        let key = |id: &str| {
            if format == "csv" {
                out.join(id).join("manifest.json")
            } else {
                out.join(format!("{id}.manifest.json"))
            }
        };
        let mine = std::fs::read(key(&id)).unwrap();
        std::fs::copy(key(&other), key(&id)).unwrap();
        let e = error_of(&restore(&id, &out, &into, &[]));
        assert!(e.contains(&other), "{format} other manifest: {e}");
        no_files_at(&into);
        std::fs::write(key(&id), mine).unwrap();
    }
    let e = error_of(&restore(
        "dump_20000101-000000",
        &work.path().join("out-sql"),
        &work.path().join("u.db"),
        &[],
    ));
    assert!(e.contains("dump_20000101-000000"), "{e}");
}

#[test]
fn a_killed_restore_leaves_nothing_and_the_next_one_cleans_up() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("bulk.db");
    build_bulk_db(&src, 300_000);
    let out = work.path().join("out");
    let (id, _) = dump_ok(&src, &out, &["--format", "json"]);
    let into = work.path().join("killed.db");
    let temp = work.path().join(".killed.db.chunkdump-restore");
    let mut child = chunkdump()
        .args([
            "restore",
            &id,
            "--out",
            out.to_str().unwrap(),
            "--into",
            into.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    // Killed before it is put in place: the temporary file holds rows (written as the
    // cache spills or at the commit; the whole verification still lies ahead).
    let started = std::time::Instant::now();
    while std::fs::metadata(&temp).map(|m| m.len()).unwrap_or(0) < 1 << 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before it could be killed"
        );
        assert!(started.elapsed().as_secs() < 120);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!into.exists());
    ok(&restore(&id, &out, &into, &[]));
    assert!(!temp.exists());
    assert_same_db(&src, &into);
}

#[test]
fn restores_from_s3_equal_the_restore_from_a_directory() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("edge.db");
    build_edge_db(&src);
    for (endpoint, key, secret) in [
        (&sv.moto, "moto", "moto"),
        (&sv.s3s, sv.s3s_key.as_str(), sv.s3s_secret.as_str()),
    ] {
        let env = cli_env(endpoint, &sv.moto, key, secret);
        let (bucket, table) = (unique("restore"), unique("jobs"));
        let (store, progress) = (format!("s3://{bucket}/p"), format!("dynamodb://{table}"));
        let cli = |args: &[&str]| chunkdump().envs(env.clone()).args(args).output().unwrap();
        ok(&cli(&["setup", "--store", &store, "--progress", &progress]));
        for format in ["sql", "json", "csv"] {
            let o = cli(&[
                "dump",
                src.to_str().unwrap(),
                "--store",
                &store,
                "--progress",
                &progress,
                "--format",
                format,
                "--compression",
                "zstd",
                "--chunk-size",
                "500",
            ]);
            let id = ok(&o).lines().next().unwrap().to_string();
            let from_store = work.path().join(format!("s3-{bucket}-{format}.db"));
            ok(&cli(&[
                "restore",
                &id,
                "--store",
                &store,
                "--into",
                from_store.to_str().unwrap(),
            ]));
            assert_same_db_or_counts(&src, &from_store, format);
            // One range at a time: the same database, byte for byte.
            let one_by_one = work.path().join(format!("s3-1-{bucket}-{format}.db"));
            let o = chunkdump()
                .envs(env.clone())
                .env("CHUNKDUMP_DOWNLOAD_CONCURRENCY", "1")
                .args([
                    "restore",
                    &id,
                    "--store",
                    &store,
                    "--into",
                    one_by_one.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            ok(&o);
            assert_eq!(
                std::fs::read(&from_store).unwrap(),
                std::fs::read(&one_by_one).unwrap()
            );
            // The manifest's URL is enough.
            let manifest = if format == "csv" {
                format!("{store}/{id}/manifest.json")
            } else {
                format!("{store}/{id}.manifest.json")
            };
            let by_url = work.path().join(format!("url-{bucket}-{format}.db"));
            ok(&cli(&[
                "restore",
                "--manifest",
                &manifest,
                "--into",
                by_url.to_str().unwrap(),
            ]));
            // The same dump from a directory: the same database, byte for byte.
            let local = round_trip(
                &src,
                &work.path().join(format!("local-{bucket}")).tap_mkdir(),
                format,
                "zstd",
                "500",
            );
            assert_same_db_or_counts(&local, &from_store, format);
            assert_eq!(
                std::fs::read(&from_store).unwrap(),
                std::fs::read(&by_url).unwrap()
            );
        }
    }
}

fn assert_same_db_or_counts(a: &Path, b: &Path, format: &str) {
    if format == "csv" {
        assert_eq!(counts(a), counts(b));
    } else {
        assert_same_db(a, b);
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn page_size_and_auto_vacuum_come_back() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("paged.db");
    let c = Connection::open(&src).unwrap();
    c.execute_batch("PRAGMA page_size=8192; PRAGMA auto_vacuum=2; CREATE TABLE t(a); INSERT INTO t VALUES (1), ('x');")
        .unwrap();
    drop(c);
    for format in ["sql", "json", "csv"] {
        let out = work.path().join(format!("out-{format}"));
        let (id, _) = dump_ok(&src, &out, &["--format", format]);
        let into = work.path().join(format!("{format}.db"));
        ok(&restore(&id, &out, &into, &[]));
        let c = Connection::open(&into).unwrap();
        let pragma = |p: &str| {
            c.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(
            (pragma("page_size"), pragma("auto_vacuum")),
            (8192, 2),
            "{format}"
        );
    }
}

/// Full-text tables in every content mode restore from SQL dumps in every compression:
/// a contentless table's index is its shadow tables' rows, written back under SQLite's
/// defensive guard lowered for exactly those rows; what comes back answers the same
/// queries and passes FTS's own integrity checks where the module has one.
#[test]
fn fts_tables_in_every_content_mode_restore_from_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("fts.db");
    let c = Connection::open(&src).unwrap();
    c.execute_batch(
        "CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT);
         CREATE VIRTUAL TABLE plain5 USING fts5(body);
         CREATE VIRTUAL TABLE bare5 USING fts5(a, b, content='');
         CREATE VIRTUAL TABLE ext5 USING fts5(body, content='docs', content_rowid='id');
         CREATE VIRTUAL TABLE plain4 USING fts4(body);
         CREATE VIRTUAL TABLE bare4 USING fts4(body, content='');
         CREATE VIRTUAL TABLE old3 USING fts3(body);",
    )
    .unwrap();
    let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];
    for i in 1..=300i64 {
        let text = format!(
            "{} {} {}",
            words[i as usize % 6],
            words[(i as usize * 7) % 6],
            i
        );
        c.execute("INSERT INTO docs VALUES(?1, ?2)", (i, &text))
            .unwrap();
        for table in ["plain5", "plain4", "old3", "bare4"] {
            c.execute(
                &format!("INSERT INTO {table}(rowid, body) VALUES(?1, ?2)"),
                (i, &text),
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO bare5(rowid, a, b) VALUES(?1, ?2, 'x')",
            (i, &text),
        )
        .unwrap();
    }
    c.execute_batch("INSERT INTO ext5(ext5) VALUES('rebuild');")
        .unwrap();
    drop(c);
    let queries = [
        "SELECT rowid FROM plain5 WHERE plain5 MATCH 'gamma' ORDER BY rowid",
        "SELECT rowid FROM bare5 WHERE bare5 MATCH 'delta' ORDER BY rowid",
        "SELECT rowid FROM ext5 WHERE ext5 MATCH 'beta' ORDER BY rowid",
        "SELECT rowid FROM plain4 WHERE plain4 MATCH 'zeta' ORDER BY rowid",
        "SELECT docid FROM bare4 WHERE bare4 MATCH 'alpha' ORDER BY docid",
        "SELECT rowid FROM old3 WHERE old3 MATCH 'epsilon' ORDER BY rowid",
    ];
    let answers = |db: &Path| -> Vec<Vec<i64>> {
        let c = Connection::open(db).unwrap();
        queries
            .iter()
            .map(|q| {
                let mut s = c.prepare(q).unwrap();
                s.query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            })
            .collect()
    };
    let want = answers(&src);
    assert!(want.iter().all(|a| !a.is_empty()), "{want:?}");
    for compression in ["none", "gzip", "zstd"] {
        let out = dir.path().join(format!("out-{compression}"));
        let (id, _) = dump_ok(
            &src,
            &out,
            &["--format", "sql", "--compression", compression],
        );
        let into = dir.path().join(format!("back-{compression}.db"));
        ok(&restore(&id, &out, &into, &[]));
        assert_same_db(&src, &into);
        ok(&run(&["verify", &id, "--out", out.to_str().unwrap()]));
        assert_eq!(answers(&into), want, "{compression}");
        let c = Connection::open(&into).unwrap();
        for check in [
            "INSERT INTO plain5(plain5) VALUES('integrity-check')",
            "INSERT INTO bare5(bare5) VALUES('integrity-check')",
            "INSERT INTO ext5(ext5) VALUES('integrity-check')",
            "INSERT INTO plain4(plain4) VALUES('integrity-check')",
        ] {
            c.execute_batch(check)
                .unwrap_or_else(|e| panic!("{compression}: {check}: {e}"));
        }
        // SQLite cannot validate a contentless FTS4 index (it says so for the source
        // too): the restored database answers exactly as the source does.
        let integrity = |c: &Connection| -> Vec<String> {
            let mut s = c.prepare("PRAGMA integrity_check").unwrap();
            s.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(
            integrity(&c),
            integrity(&Connection::open(&src).unwrap()),
            "{compression}"
        );
    }
    // JSON keeps what SQL keeps: the contentless tables' index as their shadow tables.
    let out = dir.path().join("out-json");
    let (id, _) = dump_ok(&src, &out, &["--format", "json", "--compression", "zstd"]);
    let into = dir.path().join("back-json.db");
    ok(&restore(&id, &out, &into, &[]));
    assert_same_db(&src, &into);
    assert_eq!(answers(&into), want, "json");
    ok(&run(&["verify", &id, "--out", out.to_str().unwrap()]));
    // CSV has no place for an index: the contentless tables come back empty, and the
    // restore says so, naming each; the rest answers as the source does.
    let out = dir.path().join("out-csv");
    let (id, _) = dump_ok(&src, &out, &["--format", "csv"]);
    let into = dir.path().join("back-csv.db");
    let said = ok(&restore(&id, &out, &into, &["--json"]));
    let report: serde_json::Value = serde_json::from_str(&said).unwrap();
    let warnings = report["warnings"].to_string();
    for table in ["bare5", "bare4"] {
        assert!(
            warnings.contains(&format!("table \\\"{table}\\\": a contentless FTS index")),
            "{warnings}"
        );
    }
    let got = answers(&into);
    for (i, q) in queries.iter().enumerate() {
        if q.contains("bare") {
            assert!(got[i].is_empty(), "{q}: {:?}", got[i]);
        } else {
            assert_eq!(got[i], want[i], "{q}");
        }
    }
}

/// Where CSV cannot keep a column exactly, the restore warns naming the column as the
/// dump did (`column "b"`), not by its position.
#[test]
fn a_lossy_csv_column_is_named_alike_by_dump_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mixed.db");
    let c = Connection::open(&src).unwrap();
    c.execute_batch(
        "CREATE TABLE t(a INTEGER PRIMARY KEY, b);
         INSERT INTO t(b) VALUES (5), ('5'), ('x');",
    )
    .unwrap();
    drop(c);
    let out = dir.path().join("out");
    let o = run(&[
        "dump",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "csv",
        "--id",
        "mixed",
    ]);
    let dumped = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{dumped}");
    assert!(dumped.contains("table \"t\", column \"b\""), "{dumped}");
    let into = dir.path().join("back.db");
    let restored = restore("mixed", &out, &into, &[]);
    ok(&restored);
    let said = String::from_utf8_lossy(&restored.stderr);
    assert!(
        said.contains("table \"t\", column \"b\": restored as CSV carries it"),
        "{said}"
    );
}
