//! The manifest and `chunkdump verify`: digests that match the bytes read back, whatever
//! the chunking, and a verify that passes on good dumps and names every kind of damage.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use sha2::{Digest, Sha256};

fn verify(out: &Path, id: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["verify", id, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&args);
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn manifest(out: &Path, id: &str, csv: bool) -> (PathBuf, serde_json::Value) {
    let path = if csv {
        out.join(id).join("manifest.json")
    } else {
        out.join(format!("{id}.manifest.json"))
    };
    let v = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (path, v)
}

/// SHA-256 over the SHA-256 digests of the file's part-size pieces, computed here
/// independently of chunkdump.
fn digest_of_parts(bytes: &[u8], part: usize) -> String {
    let mut outer = Sha256::new();
    if bytes.is_empty() {
        outer.update(Sha256::digest(b""));
    }
    for piece in bytes.chunks(part) {
        outer.update(Sha256::digest(piece));
    }
    hex::encode(outer.finalize())
}

#[test]
fn manifests_match_the_bytes_and_verify_passes_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let cases: [(&str, &[&str]); 8] = [
        ("sql", &["--format", "sql"]),
        (
            "sql-many",
            &["--format", "sql", "--chunk-size", "2", "--budget-ms", "0"],
        ),
        (
            "sqlgz",
            &[
                "--format",
                "sql",
                "--compression",
                "gzip",
                "--chunk-size",
                "3",
                "--budget-ms",
                "0",
            ],
        ),
        (
            "sqlzst",
            &[
                "--format",
                "sql",
                "--compression",
                "zstd",
                "--chunk-size",
                "3",
                "--budget-ms",
                "0",
            ],
        ),
        (
            "json",
            &["--format", "json", "--chunk-size", "2", "--budget-ms", "0"],
        ),
        (
            "csv",
            &["--format", "csv", "--chunk-size", "2", "--budget-ms", "0"],
        ),
        // Compressed CSV: its files end in `.csv.zst` / `.csv.gz`.
        ("csvzst", &["--format", "csv", "--compression", "zstd"]),
        ("csvgz", &["--format", "csv", "--compression", "gzip"]),
    ];
    let mut table_hashes: Vec<serde_json::Value> = Vec::new();
    for (name, args) in cases {
        let out = dir.path().join(name);
        let mut all = vec!["--id", name, "--breathe-ms", "0"];
        all.extend_from_slice(args);
        dump_ok(&src, &out, &all);
        let (_, m) = manifest(&out, name, name.starts_with("csv"));
        for f in m["files"].as_array().unwrap() {
            let bytes = std::fs::read(out.join(f["key"].as_str().unwrap())).unwrap();
            assert_eq!(f["size"].as_u64().unwrap(), bytes.len() as u64);
            assert_eq!(
                f["sha256"].as_str().unwrap(),
                digest_of_parts(&bytes, m["partSize"].as_u64().unwrap() as usize),
                "{name}: {}",
                f["key"]
            );
        }
        assert_eq!(m["source"]["textEncoding"], "UTF-8");
        assert_eq!(m["consistency"]["snapshot"], false);
        assert!(m["tables"].as_array().unwrap().len() > 10, "{m}");
        if name.starts_with("sql") {
            table_hashes.push(m["tables"].clone());
        }
        let (ok, text) = verify(&out, name, &[]);
        assert!(ok && text.starts_with("ok: "), "{name}: {text}");
        let (ok, text) = verify(&out, name, &["--against", src.to_str().unwrap()]);
        assert!(ok, "{name} against its source: {text}");
    }
    // One chunk or many, compressed or not: the same table digests.
    assert!(
        table_hashes.windows(2).all(|w| w[0] == w[1]),
        "{table_hashes:?}"
    );
}

#[test]
fn verify_names_every_kind_of_damage() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 60_000);
    let dump = |id: &str, format: &str| {
        let out = dir.path().join(id);
        dump_ok(
            &src,
            &out,
            &[
                "--id",
                id,
                "--format",
                format,
                "--breathe-ms",
                "0",
                "--part-size",
                "5242880",
            ],
        );
        out
    };
    // Multi-part files (the SQL dump is over 5 MiB).
    let out = dump("flip", "sql");
    let file = out.join("flip.sql");
    let (_, m) = manifest(&out, "flip", false);
    assert!(
        m["files"][0]["size"].as_u64().unwrap() > 5 << 20,
        "more than one part"
    );
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2 + 17;
    bytes[at] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let (ok, text) = verify(&out, "flip", &[]);
    assert!(!ok && text.contains("SHA-256"), "a flipped byte: {text}");

    let out = dump("trunc", "json");
    let file = out.join("trunc.json");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    let (ok, text) = verify(&out, "trunc", &[]);
    assert!(
        !ok && text.contains("bytes stored") && text.contains("does not parse"),
        "a truncated file: {text}"
    );

    let out = dump("gone", "csv");
    std::fs::remove_file(out.join("gone/tags.csv")).unwrap();
    let (ok, text) = verify(&out, "gone", &[]);
    assert!(
        !ok && text.contains("tags.csv: missing"),
        "a missing file: {text}"
    );

    // The dump is intact but the manifest was altered.
    let out = dump("lie", "sql");
    let (path, mut m) = manifest(&out, "lie", false);
    m["tables"][0]["contentHash"] = serde_json::json!(format!("{:032x}", 7));
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let (ok, text) = verify(&out, "lie", &[]);
    assert!(
        !ok && text.contains("content hash"),
        "a manifest that does not match: {text}"
    );

    // A missing row, found by comparing with a database.
    let out = dump("row", "sql");
    let fewer = dir.path().join("fewer.db");
    std::fs::copy(&src, &fewer).unwrap();
    rusqlite::Connection::open(&fewer)
        .unwrap()
        .execute("DELETE FROM items WHERE id = 777", [])
        .unwrap();
    let (ok, text) = verify(&out, "row", &["--against", fewer.to_str().unwrap()]);
    assert!(
        !ok && text.contains("table \"items\": 59999 rows in database"),
        "a missing row: {text}"
    );
    // The dump is sound: the closing line blames the database, not the dump.
    assert!(
        text.contains(&format!(
            "row matches its manifest; database {} differs from it (1 problem)",
            fewer.display()
        )),
        "{text}"
    );
    let (ok, text) = verify(&out, "row", &["--against", src.to_str().unwrap()]);
    assert!(ok, "{text}");
}

#[test]
fn a_copied_dump_verifies_from_its_manifest_alone() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    for (id, format) in [("c-sql", "sql"), ("c-csv", "csv"), ("c-json", "json")] {
        let out = dir.path().join(format!("store-{id}"));
        dump_ok(
            &src,
            &out,
            &[
                "--id",
                id,
                "--format",
                format,
                "--breathe-ms",
                "0",
                "--chunk-size",
                "3",
                "--budget-ms",
                "0",
            ],
        );
        // Copied elsewhere, as after a download: the files and the manifest only.
        let copy = dir.path().join(format!("copy-{id}"));
        std::fs::create_dir_all(&copy).unwrap();
        let manifest = if format == "csv" {
            std::fs::create_dir_all(copy.join(id)).unwrap();
            for e in std::fs::read_dir(out.join(id)).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), copy.join(id).join(e.file_name())).unwrap();
            }
            copy.join(id).join("manifest.json")
        } else {
            // The dump's files (JSON: the document and its schema file) and its manifest.
            for name in [
                format!("{id}.{format}"),
                format!("{id}.manifest.json"),
                format!("{id}.schema.sql"),
            ] {
                if format == "json" || !name.ends_with(".schema.sql") {
                    std::fs::copy(out.join(&name), copy.join(&name)).unwrap();
                }
            }
            copy.join(format!("{id}.manifest.json"))
        };
        let o = run(&[
            "verify",
            "--manifest",
            manifest.to_str().unwrap(),
            "--against",
            src.to_str().unwrap(),
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success() && text.starts_with("ok: "),
            "{id}: {text}"
        );
        assert!(
            !copy.join(".chunkdump").exists(),
            "verify wrote into the copy"
        );
        // Damage in the copy is found.
        let victim = if format == "csv" {
            copy.join(id).join("texts.csv")
        } else {
            copy.join(format!("{id}.{format}"))
        };
        let mut bytes = std::fs::read(&victim).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(&victim, &bytes).unwrap();
        let o = run(&["verify", "--manifest", manifest.to_str().unwrap()]);
        assert!(
            !o.status.success() && String::from_utf8_lossy(&o.stdout).contains("SHA-256"),
            "{id}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

/// Table names of any length: a CSV dump of tables whose names are far longer than a
/// file name may be (and alike in their first 200 bytes) completes and verifies.
#[test]
fn tables_with_names_longer_than_a_file_name_dump_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("long.db");
    let long = "é".repeat(50);
    let c = rusqlite::Connection::open(&src).unwrap();
    for suffix in ["a", "b"] {
        c.execute_batch(&format!(
            "CREATE TABLE \"{long}{suffix}\"(x); INSERT INTO \"{long}{suffix}\" VALUES('{suffix}');"
        ))
        .unwrap();
    }
    drop(c);
    for compression in ["none", "zstd"] {
        let out = dir.path().join(format!("out-{compression}"));
        dump_ok(
            &src,
            &out,
            &["--format", "csv", "--compression", compression, "--id", "d"],
        );
        let (_, m) = manifest(&out, "d", true);
        let keys: Vec<&str> = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap())
            .collect();
        // Two table files and the schema file.
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert_ne!(keys[0], keys[1]);
        let (ok, text) = verify(&out, "d", &[]);
        assert!(ok, "{compression}: {text}");
    }
}
