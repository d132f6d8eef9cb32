//! SQL round trips through the real `sqlite3` shell, and output that does not depend on
//! where chunks are cut.

use crate::common;

use std::io::Read;
use std::path::Path;

use common::*;

/// Chunks of one 3-row slice each (small frames, since a compressed chunk runs on to
/// the end of its frame).
fn tiny_chunks() -> Vec<&'static str> {
    vec![
        "--chunk-size",
        "3",
        "--budget-ms",
        "0",
        "--breathe-ms",
        "0",
        "--frame-size",
        "4096",
    ]
}

#[test]
fn every_edge_case_round_trips_through_the_sqlite3_shell() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let before = std::fs::read(&src).unwrap();
    let mut args = vec!["--format", "sql"];
    args.extend(tiny_chunks());
    let (_, sql) = dump_ok(&src, &dir.path().join("out"), &args);
    assert_restores_everywhere(&src, &sql, dir.path());
    let back = dir.path().join("back.db");
    load_with_shell(&sql, &back);
    // The source was opened read-only and never written.
    assert_eq!(before, std::fs::read(&src).unwrap());
    // Virtual tables were rebuilt with working indexes, not copied as shadow tables.
    let c = rusqlite::Connection::open(&back).unwrap();
    let hit: i64 = c
        .query_row("SELECT rowid FROM fts WHERE fts MATCH 'epsilon'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(hit, 10);
    let ext: i64 = c
        .query_row(
            "SELECT rowid FROM fts_ext WHERE fts_ext MATCH 'searchable'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ext, 7);
    let old: i64 = c
        .query_row(
            "SELECT docid FROM old_fts WHERE old_fts MATCH 'mail'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 2);
    let inside: i64 = c
        .query_row(
            "SELECT id FROM places WHERE minx >= 99 AND maxx <= 201",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(inside, 9);
    let text = std::fs::read_to_string(&sql).unwrap();
    assert!(
        text.starts_with("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n")
            && text.ends_with("COMMIT;\n")
    );
    assert!(
        !text.contains("INSERT INTO \"fts_data\""),
        "shadow tables must not be copied"
    );
}

#[test]
fn output_is_identical_however_chunks_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    for format in ["sql", "json", "csv"] {
        let one = dir.path().join(format!("one-{format}"));
        let many = dir.path().join(format!("many-{format}"));
        let (_, a) = dump_ok(
            &src,
            &one,
            &[
                "--format",
                format,
                "--id",
                "same",
                "--budget-ms",
                "60000",
                "--chunk-size",
                "100000",
            ],
        );
        let mut args = vec!["--format", format, "--id", "same", "--chunk-size", "1"];
        args.extend(&tiny_chunks()[2..]);
        let (_, b) = dump_ok(&src, &many, &args);
        assert_eq!(
            tree_bytes(&a),
            tree_bytes(&b),
            "{format} output changed with chunking"
        );
    }
}

/// Compressed dumps are a pure function of the rows too: gzip members and zstd frames end
/// at row ends the content fixes, not where a chunk's budget ran out, so one chunk and
/// dozens of zero-budget chunks give the same compressed bytes.
#[test]
fn compressed_output_is_identical_however_chunks_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 40_000);
    for (format, compression) in [
        ("sql", "zstd"),
        ("sql", "gzip"),
        ("csv", "gzip"),
        ("csv", "zstd"),
        ("json", "zstd"),
    ] {
        let dump = |name: &str, chunking: &[&str]| {
            let mut args = vec![
                "--format",
                format,
                "--compression",
                compression,
                "--id",
                "same",
                "--frame-size",
                "262144",
            ];
            args.extend_from_slice(chunking);
            let out = dir.path().join(format!("{name}-{format}-{compression}"));
            let (_, path) = dump_ok(&src, &out, &args);
            (out, tree_bytes(&path))
        };
        let (_, one) = dump("one", &["--budget-ms", "60000", "--chunk-size", "100000"]);
        let (out, many) = dump(
            "many",
            &[
                "--chunk-size",
                "300",
                "--budget-ms",
                "0",
                "--breathe-ms",
                "0",
            ],
        );
        let status = run(&["status", "same", "--out", out.to_str().unwrap()]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert!(
            status["chunks"].as_u64().unwrap() >= 10,
            "{format}: the dump must be cut into many chunks: {status}"
        );
        for ((name, a), (_, b)) in one.iter().zip(&many) {
            let same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            eprintln!(
                "{format} {compression} {name}: {} vs {} bytes, same for {same}",
                a.len(),
                b.len()
            );
        }
        assert!(
            one == many,
            "{format} {compression}: compressed bytes changed with chunking"
        );
    }
}

/// All files under a dump path (a file, or a CSV directory), by relative name.
fn tree_bytes(path: &Path) -> Vec<(String, Vec<u8>)> {
    if path.is_file() {
        return vec![(String::new(), std::fs::read(path).unwrap())];
    }
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        // The manifest records times and chunk counts; its digests are checked in verify's tests.
        .filter(|(name, _)| name != "manifest.json")
        .collect();
    files.sort();
    files
}

#[test]
fn gzip_output_is_one_valid_stream_of_the_plain_dump() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    // Enough rows for many 4 KiB frames.
    build_bulk_db(&src, 2000);
    let (_, plain) = dump_ok(
        &src,
        &dir.path().join("plain"),
        &["--format", "sql", "--id", "d"],
    );
    let mut args = vec!["--format", "sql", "--id", "d", "--compression", "gzip"];
    args.extend(tiny_chunks());
    let (_, gz) = dump_ok(&src, &dir.path().join("gz"), &args);
    assert!(
        gz.to_string_lossy().ends_with("d.sql.gz"),
        "{}",
        gz.display()
    );
    let raw = std::fs::read(&gz).unwrap();
    let mut decoded = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, std::fs::read(&plain).unwrap());
    // Many chunks mean many gzip members; the real gunzip must accept them as one file.
    assert!(raw.windows(3).filter(|w| w == &[0x1f, 0x8b, 0x08]).count() > 3);
    let out = std::process::Command::new("gunzip")
        .arg("-c")
        .arg(&gz)
        .output()
        .expect("gunzip");
    assert!(out.status.success());
    assert_eq!(out.stdout, decoded);
}

#[test]
fn zstd_output_is_one_valid_stream_of_the_plain_dump() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    // Enough rows for many 4 KiB frames.
    build_bulk_db(&src, 2000);
    let (_, plain) = dump_ok(
        &src,
        &dir.path().join("plain"),
        &["--format", "sql", "--id", "d"],
    );
    let mut args = vec!["--format", "sql", "--id", "d", "--compression", "zstd"];
    args.extend(tiny_chunks());
    let (_, zst) = dump_ok(&src, &dir.path().join("zst"), &args);
    assert!(
        zst.to_string_lossy().ends_with("d.sql.zst"),
        "{}",
        zst.display()
    );
    let raw = std::fs::read(&zst).unwrap();
    // Many chunks mean many frames (magic 28 B5 2F FD); the real zstd must read them as
    // one file, checksums included.
    assert!(
        raw.windows(4)
            .filter(|w| w == &[0x28, 0xb5, 0x2f, 0xfd])
            .count()
            > 3
    );
    let out = std::process::Command::new("zstd")
        .args(["-d", "-c"])
        .arg(&zst)
        .output()
        .expect("zstd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, std::fs::read(&plain).unwrap());
}

/// Each real SQLite file from a registry package, dumped to SQL in many chunks, loads
/// into every SQLite of the loader matrix as the same database.
fn round_trips_through_every_loader(src: &Path) {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    // Many chunks, but few enough that the large files stay quick.
    let slice_rows = if std::fs::metadata(src).unwrap().len() > 2 << 20 {
        "2000"
    } else {
        "25"
    };
    let (_, sql) = dump_ok(
        src,
        &out,
        &[
            "--format",
            "sql",
            "--chunk-size",
            slice_rows,
            "--budget-ms",
            "0",
            "--breathe-ms",
            "0",
        ],
    );
    assert_restores_everywhere(src, &sql, work.path());
}

mod real_sqlite_files_from_registry_packages_round_trip {
    crate::common::fixtures::each_real_sqlite_file!(super::round_trips_through_every_loader);
}

#[test]
fn no_schema_writes_data_only() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 500);
    let (id, sql) = dump_ok(
        &src,
        &dir.path().join("out"),
        &[
            "--format",
            "sql",
            "--no-schema",
            "--chunk-size",
            "50",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "0",
        ],
    );
    let text = std::fs::read_to_string(&sql).unwrap();
    assert!(
        !text.contains("CREATE"),
        "data-only dump has schema statements"
    );
    // Load into a database that already has the schema.
    let back = dir.path().join("back.db");
    let c = rusqlite::Connection::open(&back).unwrap();
    let schema: Vec<String> = rusqlite::Connection::open(&src)
        .unwrap()
        .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for s in schema {
        c.execute_batch(&s).unwrap();
    }
    drop(c);
    load_with_shell(&sql, &back);
    assert_same_db(&src, &back);
    // `restore` makes the tables from the dump, so it says why it cannot.
    let into = dir.path().join("restored.db");
    let out = dir.path().join("out");
    let o = run(&[
        "restore",
        &id,
        "--out",
        out.to_str().unwrap(),
        "--into",
        into.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("was made with --no-schema"),
        "{err}"
    );
    assert!(!into.exists());
}

#[test]
fn tables_flag_selects_tables_and_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let (_, sql) = dump_ok(
        &src,
        &dir.path().join("out"),
        &["--format", "sql", "--tables", "texts,seq"],
    );
    let back = dir.path().join("back.db");
    load_with_shell(&sql, &back);
    let c = rusqlite::Connection::open(&back).unwrap();
    let names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(names, ["seq", "sqlite_sequence", "texts", "texts_t"]);
    let src_conn = rusqlite::Connection::open(&src).unwrap();
    for t in ["texts", "seq", "sqlite_sequence"] {
        assert_eq!(table_rows(&src_conn, t), table_rows(&c, t), "{t}");
    }
}
