//! Parquet dumps read by readers nobody here wrote: pyarrow and DuckDB (installed from
//! PyPI by scripts/setup-loaders) read every file, and `scripts/read-parquet.py` compares
//! every value with the source by storage class and DuckDB's `count(*)` and `sum(col)`
//! with SQLite's. Restores are exact; a kill and a resume leave no stray file; a table
//! that changes class under a dump fails it, naming the column.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use rusqlite::Connection;

/// The Python of the Parquet readers' venv, if installed.
fn readers() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/loaders/parquet/bin/python");
    let present = python.exists();
    (!skip_without(
        "pyarrow and DuckDB",
        present,
        "run scripts/setup-loaders (scripts/test does)",
    ))
    .then_some(python)
}

/// What `scripts/read-parquet.py` finds comparing the dump in `dump` with `src`: the
/// report, or the first difference.
fn read_back(python: &Path, src: &Path, dump: &Path) -> Result<serde_json::Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/read-parquet.py");
    let o = Command::new(python)
        .arg(script)
        .arg(src)
        .arg(dump)
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&o.stdout).unwrap())
}

/// Dumps `src` as Parquet into `out` with `extra` arguments; (id, directory, stderr).
fn dump_parquet(src: &Path, out: &Path, extra: &[&str]) -> (String, PathBuf, String) {
    let mut args = vec![
        "dump",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "parquet",
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "dump failed: {stderr}");
    let stdout = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    (
        lines[0].to_string(),
        PathBuf::from(lines[lines.len() - 1]),
        stderr,
    )
}

fn restore_exact(id: &str, out: &Path, src: &Path, extra: &[&str]) {
    let into = out.join(format!("{id}-restored.db"));
    let mut args = vec![
        "restore",
        id,
        "--out",
        out.to_str().unwrap(),
        "--into",
        into.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(
        o.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same_db(src, &into);
    let mut args = vec!["verify", id, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let v = run(&args);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

/// Data the way real tables hold it: decimal coordinates and money (REAL), counts and
/// ids (INTEGER, to the extremes), text in many scripts, blobs; a column of mixed
/// classes, TEXT that is not UTF-8, an all-NULL column, a WITHOUT ROWID table, a rowid
/// table with no column for its rowid; and one table past the row group size.
fn realistic_db(path: &Path, big_rows: u64) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE places(id INTEGER PRIMARY KEY, lat REAL, lon REAL, name TEXT, price NUMERIC, visits INTEGER);
         CREATE TABLE kv(k TEXT PRIMARY KEY, v ANY, note TEXT) WITHOUT ROWID;
         CREATE TABLE odd(t TEXT, b BLOB, born DATE, flag BOOLEAN);
         CREATE TABLE big(id INTEGER PRIMARY KEY, payload TEXT, amount REAL);",
    )
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(38);
    let names = [
        "Zürich",
        "東京",
        "São Paulo",
        "Reykjavík",
        "New York",
        "Киев",
        "",
        "O'Hare",
    ];
    let tx = c.unchecked_transaction().unwrap();
    for id in 1..=3000i64 {
        let lat = format!("{:.6}", rng.f64() * 180.0 - 90.0)
            .parse::<f64>()
            .unwrap();
        let lon = format!("{:.6}", rng.f64() * 360.0 - 180.0)
            .parse::<f64>()
            .unwrap();
        let price = f64::from(rng.u32(0..1_000_000)) / 100.0;
        let visits: Option<i64> = match id % 50 {
            0 => None,
            1 => Some(i64::MAX),
            2 => Some(i64::MIN),
            _ => Some(rng.i64(-1000..1_000_000)),
        };
        tx.execute(
            "INSERT INTO places VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
            (
                id,
                lat,
                lon,
                names[id as usize % names.len()],
                price,
                visits,
            ),
        )
        .unwrap();
    }
    tx.execute_batch(
        "INSERT INTO kv VALUES ('int', 42, 'n'), ('real', 0.1, NULL), ('text', 'forty-two', 'x'),
            ('blob', x'00ff10', NULL), ('null', NULL, NULL), ('neg', -0.0, NULL),
            ('inf', 9e999, NULL), ('tiny', 5e-324, NULL), ('big', 9223372036854775807, NULL),
            ('numeric text', '42', NULL);
         INSERT INTO odd VALUES (CAST(x'ff41' AS TEXT), x'', NULL, 1), ('plain', zeroblob(3), NULL, 0),
            ('', randomblob(40), NULL, NULL), (NULL, NULL, NULL, 1);",
    )
    .unwrap();
    tx.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO big SELECT i, printf('%.*c', 500 + i % 700, char(97 + i % 26)), i * 0.01 FROM n",
        [big_rows],
    )
    .unwrap();
    tx.commit().unwrap();
}

#[test]
fn realistic_data_reads_in_pyarrow_and_duckdb_exactly_as_the_source() {
    let Some(python) = readers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("real.db");
    // About 33 MB of `big`: three row groups in one file.
    realistic_db(&src, 40_000);
    // Many chunks: a file per table per chunk.
    let out = dir.path().join("many");
    let (id, dump, stderr) = dump_parquet(
        &src,
        &out,
        &[
            "--tables",
            "places,kv,odd",
            "--chunk-size",
            "100",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "0",
        ],
    );
    assert!(
        stderr.contains("table \"kv\", column \"v\": its values mix storage classes (integer, real, text, blob)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("table \"odd\", column \"t\": it holds TEXT that is not valid UTF-8"),
        "{stderr}"
    );
    let report = read_back(&python, &src, &dump).unwrap();
    assert_eq!(report["tables"]["places"], 3000, "{report}");
    assert_eq!(report["tables"]["kv"], 10, "{report}");
    assert_eq!(report["tables"]["odd"], 4, "{report}");
    let files = report["files"].as_u64().unwrap();
    assert!(files >= 30, "expected a file per chunk, got {files}");
    // The comparison is no formality: one changed bit in the source is found.
    let changed = dir.path().join("changed.db");
    std::fs::copy(&src, &changed).unwrap();
    Connection::open(&changed)
        .unwrap()
        .execute_batch("UPDATE places SET lat = lat + 1e-12 WHERE id = 1234")
        .unwrap();
    let e = read_back(&python, &changed, &dump).unwrap_err();
    assert!(e.contains("table 'places': a row differs"), "{e}");
    // The declared types are kept in the schema file, never used to convert.
    let schema = std::fs::read_to_string(dump.join("schema.sql")).unwrap();
    assert!(schema.contains("born DATE, flag BOOLEAN"), "{schema}");
    let v = run(&["verify", &id, "--out", out.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));

    // One chunk: `big` is past the row group size, so its file has several.
    let whole = dir.path().join("whole");
    let (id, dump, _) = dump_parquet(&src, &whole, &["--compression", "gzip"]);
    let report = read_back(&python, &src, &dump).unwrap();
    assert_eq!(report["tables"]["big"], 40_000, "{report}");
    let groups = Command::new(&python)
        .arg("-c")
        .arg("import pyarrow.parquet as pq, sys; print(pq.ParquetFile(sys.argv[1]).metadata.num_row_groups)")
        .arg(dump.join("big/part-00001.parquet"))
        .output()
        .unwrap();
    let groups: u32 = String::from_utf8_lossy(&groups.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(groups >= 2, "{groups} row groups");
    restore_exact(&id, &whole, &src, &[]);
}

/// A Parquet dump of `src` reads in pyarrow and DuckDB with every table's row count.
fn reads_in_pyarrow_and_duckdb(src: &Path) {
    let Some(python) = readers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (_, dump, _) = dump_parquet(
        src,
        &out,
        &[
            "--chunk-size",
            "2000",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "0",
        ],
    );
    let report =
        read_back(&python, src, &dump).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dump.join("manifest.json")).unwrap()).unwrap();
    for t in manifest["tables"].as_array().unwrap() {
        assert_eq!(
            report["tables"][t["table"].as_str().unwrap()],
            t["rows"],
            "{}: {report}",
            src.display()
        );
    }
}

#[test]
fn the_fixture_database_reads_in_pyarrow_and_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let edge = dir.path().join("edge.db");
    build_edge_db(&edge);
    reads_in_pyarrow_and_duckdb(&edge);
}

mod real_sqlite_files_read_in_pyarrow_and_duckdb {
    crate::common::fixtures::each_real_sqlite_file!(super::reads_in_pyarrow_and_duckdb);
}

/// Every file in `dump` (but the manifest) is one the manifest lists.
fn only_listed_files(dump: &Path) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dump.join("manifest.json")).unwrap()).unwrap();
    let root = dump.parent().unwrap();
    let mut listed: Vec<PathBuf> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| root.join(f["key"].as_str().unwrap()))
        .collect();
    listed.sort();
    let mut found: Vec<PathBuf> = walk(dump)
        .into_iter()
        .filter(|p| !p.ends_with("manifest.json"))
        .collect();
    found.sort();
    assert_eq!(found, listed);
}

/// Starts a Parquet dump of `src` in one-slice chunks with a long pause between them.
fn spawn_slow_dump(src: &Path, out: &Path, extra: &[&str]) -> std::process::Child {
    chunkdump()
        .args([
            "dump",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--format", "parquet", "--id", "d1", "--budget-ms", "0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_killed_parquet_dump_resumes_to_the_same_rows_and_no_stray_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 60_000);
    for kill_after in [3u64, 9] {
        let out = dir.path().join(format!("out-{kill_after}"));
        let mut child = spawn_slow_dump(&src, &out, &["--chunk-size", "2000", "--breathe-ms", "5"]);
        wait_for_chunks(&mut child, "d1", &out, kill_after);
        child.kill().unwrap(); // SIGKILL, wherever the chunk is
        child.wait().unwrap();
        let o = run(&[
            "resume",
            "d1",
            "--out",
            out.to_str().unwrap(),
            "--breathe-ms",
            "0",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let dump = out.join("d1");
        only_listed_files(&dump);
        restore_exact("d1", &out, &src, &[]);
        if let Some(python) = readers() {
            let report = read_back(&python, &src, &dump).unwrap();
            assert_eq!(report["tables"]["items"], 60_000, "{report}");
        }
    }
}

#[test]
fn a_column_that_changes_class_under_the_dump_fails_it_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("t.db");
    let c = Connection::open(&src).unwrap();
    c.execute_batch(
        "CREATE TABLE a(id INTEGER PRIMARY KEY, n INTEGER, s TEXT);
         INSERT INTO a VALUES (1, 10, 'x'), (2, 20, 'y');
         CREATE TABLE b(v);
         INSERT INTO b VALUES (1);",
    )
    .unwrap();
    let out = dir.path().join("out");
    // The first chunk takes `a`'s census and stops (its budget is spent); the pause
    // holds the next one off while the table changes.
    let mut child = spawn_slow_dump(&src, &out, &["--breathe-ms", "600000"]);
    wait_for_chunks(&mut child, "d1", &out, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    c.execute_batch("INSERT INTO a VALUES (3, 2.5, 'z')")
        .unwrap();
    let o = run(&[
        "resume",
        "d1",
        "--out",
        out.to_str().unwrap(),
        "--breathe-ms",
        "0",
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("table \"a\", column \"n\": a REAL value was written after this dump fixed"),
        "{e}"
    );
    let s = try_status("d1", &out).unwrap();
    assert_eq!(s["status"], "failed", "{s}");
}

#[test]
fn an_encrypted_parquet_dump_decrypts_with_age_to_files_pyarrow_reads() {
    if !crate::encryption::have_age() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("real.db");
    realistic_db(&src, 100);
    let (identity, recipient) = crate::encryption::keygen(dir.path(), "key.txt");
    let out = dir.path().join("out");
    let (id, dump, _) = dump_parquet(
        &src,
        &out,
        &[
            "--recipient",
            &recipient,
            "--chunk-size",
            "500",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "0",
        ],
    );
    // Names by position, never by table; every object an age file.
    let clear = dir.path().join("clear").join(&id);
    let mut decrypted = 0;
    for file in walk(&dump) {
        let name = file
            .strip_prefix(&dump)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        if name == "manifest.json" {
            continue;
        }
        assert!(name.ends_with(".age"), "{name}");
        assert!(!name.contains("places") && !name.contains("big"), "{name}");
        let target = clear.join(name.trim_end_matches(".age"));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let o = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&identity)
            .arg("-o")
            .arg(&target)
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        decrypted += 1;
    }
    assert!(decrypted > 5, "{decrypted}");
    if let Some(python) = readers() {
        let report = read_back(&python, &src, &clear).unwrap();
        assert_eq!(report["tables"]["places"], 3000, "{report}");
    }
    restore_exact(&id, &out, &src, &["--identity", identity.to_str().unwrap()]);
}

/// Values larger than a row group (each its own, written before the next is read) come
/// back whole: in pyarrow, and through restore.
#[test]
fn values_larger_than_a_row_group_come_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("large.db");
    Connection::open(&src)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB, s TEXT);
             INSERT INTO t VALUES (1, randomblob(20000000), 'small'), (2, x'00', printf('%.*c', 18000000, 'z')),
                 (3, randomblob(17000000), NULL), (4, NULL, 'after');",
        )
        .unwrap();
    let out = dir.path().join("out");
    let (id, dump, _) = dump_parquet(&src, &out, &["--breathe-ms", "0"]);
    if let Some(python) = readers() {
        let report = read_back(&python, &src, &dump).unwrap();
        assert_eq!(report["tables"]["t"], 4, "{report}");
    }
    restore_exact(&id, &out, &src, &[]);
}

/// Parquet files as an attacker who can write to the bucket would leave them (the
/// manifest's sizes and digests fixed to match): garbage, another table's file, a file
/// without chunkdump's layout, one whose layout lies about its schema. `restore` and
/// `verify` each fail with one clear error and leave nothing behind.
#[test]
fn hostile_parquet_files_fail_restore_and_verify_cleanly() {
    use crate::hostile::{both_refuse, dump_as, tamper_file};
    fn is_items(key: &str) -> bool {
        key.contains("/items/part-")
    }
    // Each case: the error expected, and the planted file's bytes (from the store
    // directory and the work directory; `None` without pyarrow).
    type Plant<'a> = Box<dyn Fn(&Path, &Path) -> Option<Vec<u8>> + 'a>;
    let cases: Vec<(&str, Plant<'_>)> = vec![
        (
            "not a readable Parquet file",
            Box::new(|_, _| Some(b"PAR1 but not really".to_vec())),
        ),
        (
            "the file holds table \"tags\"",
            Box::new(|out, _| {
                let tags = walk(out)
                    .into_iter()
                    .find(|p| p.to_string_lossy().contains("/tags/part-"))?;
                Some(std::fs::read(tags).unwrap())
            }),
        ),
        (
            "no \"chunkdump\" metadata",
            Box::new(|_, dir| pyarrow_file(dir, "import pyarrow as pa; t = pa.table({'id': [1]})")),
        ),
        (
            "not the one its layout declares",
            Box::new(|out, dir| {
                let items = walk(out)
                    .into_iter()
                    .find(|p| is_items(&p.to_string_lossy()))?;
                let script = format!(
                    "import pyarrow as pa, pyarrow.parquet as pq; m = pq.read_schema({:?}).metadata; \
                     t = pa.table({{'id': ['not an integer']}}).replace_schema_metadata(m)",
                    items.to_str().unwrap()
                );
                pyarrow_file(dir, &script)
            }),
        ),
    ];
    let mut ran = 0;
    for (expect, make) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (id, manifest) = dump_as(dir.path(), "parquet", "zstd");
        let Some(bytes) = make(&dir.path().join("out"), dir.path()) else {
            continue; // needs pyarrow, which is not installed here (CI has it)
        };
        tamper_file(&manifest, &|key| is_items(key), &bytes);
        both_refuse(dir.path(), &id, expect, &[]);
        ran += 1;
    }
    assert!(ran == 4 || !in_ci(), "{ran} of 4 cases ran");
}

/// The bytes of a Parquet file pyarrow writes from table `t` made by `script`, or
/// `None` without pyarrow.
fn pyarrow_file(dir: &Path, script: &str) -> Option<Vec<u8>> {
    let python = readers()?;
    let path = dir.join("planted.parquet");
    let o = Command::new(python)
        .arg("-c")
        .arg(format!(
            "{script}\nimport pyarrow.parquet as pq, sys; pq.write_table(t, sys.argv[1])"
        ))
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(std::fs::read(path).unwrap())
}
