//! Dumps as an attacker who can write to the bucket would leave them: a real dump with
//! one file rewritten and the manifest's size and SHA-256 fixed to match, so that only
//! the guards on reading a dump back stand in the way. Whatever such a dump says,
//! `restore` and `verify` must fail with one clear error, having touched nothing outside
//! the restore's own temporary file (which is gone), within bounded memory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::common;
use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A completed dump of a small database in `dir/out`: its id and its manifest's path.
fn dump(dir: &Path, compression: &str) -> (String, PathBuf) {
    dump_as(dir, "sql", compression)
}

/// [`dump`] in `format`.
pub(crate) fn dump_as(dir: &Path, format: &str, compression: &str) -> (String, PathBuf) {
    let src = dir.join("app.db");
    build_bulk_db(&src, 50);
    let out = dir.join("out");
    let (id, _) = dump_ok(
        &src,
        &out,
        &["--format", format, "--compression", compression],
    );
    let manifest = manifest_in(&out, &id, format);
    assert!(manifest.is_file(), "no manifest at {}", manifest.display());
    (id, manifest)
}

/// Where dump `id` in `format` keeps its manifest in the store directory `out`.
pub(crate) fn manifest_in(out: &Path, id: &str, format: &str) -> PathBuf {
    match format {
        "csv" | "parquet" => out.join(id).join("manifest.json"),
        _ => out.join(format!("{id}.manifest.json")),
    }
}

/// The store directory of the dump whose manifest is at `manifest_path`.
fn store_root(manifest_path: &Path) -> PathBuf {
    let dir = manifest_path.parent().unwrap();
    if manifest_path.ends_with("manifest.json")
        && !manifest_path.to_string_lossy().ends_with(".manifest.json")
    {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Replaces the dump's (first) data file with `bytes` and fixes the manifest to match.
pub(crate) fn tamper(manifest_path: &Path, bytes: &[u8]) {
    tamper_file(manifest_path, &|key| !key.contains("schema.sql"), bytes)
}

/// Replaces the dump's first file whose key `pick` chooses with `bytes` and fixes the
/// manifest to match.
pub(crate) fn tamper_file(manifest_path: &Path, pick: &dyn Fn(&str) -> bool, bytes: &[u8]) {
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    let part = manifest["partSize"].as_u64().unwrap() as usize;
    let root = store_root(manifest_path);
    let at = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .position(|f| pick(f["key"].as_str().unwrap()))
        .unwrap();
    let file = &mut manifest["files"][at];
    std::fs::write(root.join(file["key"].as_str().unwrap()), bytes).unwrap();
    // SHA-256 over the SHA-256 of each part, as the manifest defines it.
    let mut outer = Sha256::new();
    if bytes.is_empty() {
        outer.update(Sha256::digest(b""));
    }
    for piece in bytes.chunks(part) {
        outer.update(Sha256::digest(piece));
    }
    file["size"] = bytes.len().into();
    file["sha256"] = hex::encode(outer.finalize()).into();
    std::fs::write(manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

/// The uncompressed SQL of the dump's data file.
fn sql_of(manifest_path: &Path) -> String {
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    let key = manifest["files"][0]["key"].as_str().unwrap();
    std::fs::read_to_string(manifest_path.parent().unwrap().join(key)).unwrap()
}

/// Runs chunkdump with `args` (and `env`): its exit code, stdout and stderr (verify
/// names problems on stdout, the error on stderr), and peak RSS in KiB (of that process
/// alone, from `wait4`).
// The child is reaped by `wait4` (for its own peak RSS), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, i64) {
    let mut child = chunkdump()
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let other = std::thread::spawn(move || {
            stdout.read_to_string(&mut out).unwrap();
            out
        });
        stderr.read_to_string(&mut err).unwrap();
        format!("{}{err}", other.join().unwrap())
    });
    let mut status = 0;
    // SAFETY: plain libc calls on zeroed out-parameters; the pid is our own child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, reader.join().unwrap(), usage.ru_maxrss)
}

/// Restore and verify of the dump both fail, naming `expect`; nothing of the restore is
/// left and none of `untouched` exists.
pub(crate) fn both_refuse(dir: &Path, id: &str, expect: &str, untouched: &[&Path]) {
    let out = dir.join("out");
    let into = dir.join("restored.db");
    let (o, i) = (out.to_str().unwrap(), into.to_str().unwrap());
    for args in [
        vec!["restore", id, "--out", o, "--into", i],
        vec!["verify", id, "--out", o],
    ] {
        let (code, err, _) = run_measured(&args, &[]);
        assert_ne!(code, Some(0), "{args:?} succeeded: {err}");
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in: {err}"
        );
        let error_lines = err.lines().filter(|l| l.starts_with("error")).count();
        assert_eq!(error_lines, 1, "{args:?}: one error line expected: {err}");
        for path in untouched {
            assert!(!path.exists(), "{args:?} created {}", path.display());
        }
        assert!(!into.exists(), "{args:?} left {}", into.display());
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains("chunkdump-restore")
            })
            .collect();
        assert!(leftovers.is_empty(), "{args:?} left {leftovers:?}");
    }
}

#[test]
fn statements_a_dump_never_holds_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (id, manifest) = dump(dir.path(), "none");
    let original = sql_of(&manifest);
    let outside = dir.path().join("outside.db");
    let victim = dir.path().join("victim.db");
    let o = outside.display().to_string();
    let v = victim.display().to_string();
    let cases = [
        (format!("ATTACH DATABASE '{o}' AS x;\nCREATE TABLE x.t(a);\n"), "ATTACH DATABASE"),
        (format!("ATTACH '{v}' AS v;\nDELETE FROM v.precious;\n"), "ATTACH"),
        (format!("VACUUM INTO '{o}';\n"), "VACUUM INTO"),
        ("SELECT load_extension('/nonexistent/evil.so');\n".into(), "SELECT"),
        ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c;\n".into(), "WITH RECURSIVE"),
        ("PRAGMA writable_schema=ON;\n".into(), "PRAGMA writable_schema"),
        ("CREATE TEMP TABLE t(a);\n".into(), "CREATE TEMP"),
    ];
    for (hostile, kind) in cases {
        // The victim: a database the statements name, which must stay as it is.
        let _ = std::fs::remove_file(&victim);
        rusqlite::Connection::open(&victim)
            .unwrap()
            .execute_batch("CREATE TABLE precious(a); INSERT INTO precious VALUES(1);")
            .unwrap();
        tamper(&manifest, format!("{hostile}{original}").as_bytes());
        both_refuse(dir.path(), &id, kind, &[&outside]);
        let left: i64 = rusqlite::Connection::open(&victim)
            .unwrap()
            .query_row("SELECT count(*) FROM precious", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1, "{kind}: the victim database changed");
    }
    // A statement of another kind between the rows is refused at its place.
    tamper(
        &manifest,
        before_rows(&original, "UPDATE items SET price = 0;").as_bytes(),
    );
    both_refuse(dir.path(), &id, "UPDATE", &[]);
    // The untouched dump still restores.
    tamper(&manifest, original.as_bytes());
    let (code, err, _) = restore(dir.path(), &id);
    assert_eq!(code, Some(0), "{err}");
}

/// The dump's SQL with `statement` put before its first row.
fn before_rows(sql: &str, statement: &str) -> String {
    let at = sql.find("INSERT INTO").unwrap();
    format!("{}{statement}\n{}", &sql[..at], &sql[at..])
}

/// `chunkdump restore ID --out dir/out --into dir/restored.db`, measured.
fn restore(dir: &Path, id: &str) -> (Option<i32>, String, i64) {
    let (out, into) = (dir.join("out"), dir.join("restored.db"));
    run_measured(
        &[
            "restore",
            id,
            "--out",
            out.to_str().unwrap(),
            "--into",
            into.to_str().unwrap(),
        ],
        &[],
    )
}

#[test]
fn a_trigger_planted_before_the_rows_fails_the_restore_and_touches_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (id, manifest) = dump(dir.path(), "none");
    let original = sql_of(&manifest);
    // A trigger that fires on every row the restore loads (a form dumps do contain).
    let planted = before_rows(
        &original,
        "CREATE TRIGGER planted AFTER INSERT ON items BEGIN DELETE FROM items; END;",
    );
    tamper(&manifest, planted.as_bytes());
    let into = dir.path().join("restored.db");
    let (code, err, _) = restore(dir.path(), &id);
    assert_ne!(code, Some(0), "{err}");
    // Refused before it runs: the manifest lists no such trigger.
    assert!(
        err.contains("trigger \"planted\" is not in the dump's manifest"),
        "{err}"
    );
    assert!(!into.exists());
}

/// `n` bytes of `a` inside one never-ending value of a `format` file, compressed by
/// `compress`.
fn bomb(format: &str, n: usize, compress: impl FnOnce(&mut dyn Read) -> Vec<u8>) -> Vec<u8> {
    // Each opens a value the way a real file of its format would, then never ends it.
    let head: &[u8] = match format {
        "json" => b"{\"tables\":{\n\"items\":[\n{\"id\":1,\"name\":\"",
        "csv" => b"id,name\r\n1,\"",
        _ => b"INSERT INTO items VALUES(1,'",
    };
    let mut body = head.chain(std::io::repeat(b'a').take(n as u64));
    compress(&mut body)
}

#[test]
fn decompression_bombs_are_refused_in_bounded_memory() {
    for (format, compression) in [
        ("sql", "zstd"),
        ("sql", "gzip"),
        ("json", "zstd"),
        ("csv", "gzip"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (id, manifest) = dump_as(dir.path(), format, compression);
        // 1 GiB of one line, a few hundred KB stored.
        let packed = bomb(format, 1 << 30, |r| match compression {
            "zstd" => zstd::stream::encode_all(r, 3).unwrap(),
            _ => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                std::io::copy(r, &mut gz).unwrap();
                gz.finish().unwrap()
            }
        });
        assert!(
            packed.len() < 8 << 20,
            "{compression}: {} bytes",
            packed.len()
        );
        tamper(&manifest, &packed);
        let out = dir.path().join("out");
        let into = dir.path().join("restored.db");
        let limit = [("CHUNKDUMP_MAX_STATEMENT_BYTES", "16777216")];
        // The manifest's own declared longest line stops the bomb first; without one (a
        // manifest of an older version) the configured cap does.
        let declared = longest_line_declared(&manifest);
        for (expect, strip) in [
            (
                format!("longer than {declared} bytes, the longest the dump's manifest declares"),
                false,
            ),
            (
                "longer than 16777216 bytes, the most a restore holds".to_string(),
                true,
            ),
        ] {
            if strip {
                let mut m: Value =
                    serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
                m.as_object_mut().unwrap().remove("longestLine");
                std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
            }
            for args in [
                vec![
                    "restore",
                    &id,
                    "--out",
                    out.to_str().unwrap(),
                    "--into",
                    into.to_str().unwrap(),
                ],
                vec!["verify", &id, "--out", out.to_str().unwrap()],
            ] {
                let (code, err, peak_kib) = run_measured(&args, &limit);
                assert_ne!(code, Some(0), "{format} {compression} {args:?}: {err}");
                assert!(
                    err.contains(&expect),
                    "{format} {compression} {args:?}: {err}"
                );
                assert!(
                    peak_kib < 256 * 1024,
                    "{format} {compression} {args:?}: peak RSS {peak_kib} KiB"
                );
                assert!(!into.exists());
            }
        }
    }
}

#[test]
fn a_line_bomb_stays_under_256_mib_with_the_default_cap() {
    // The attacker also fixes `longestLine` to the bomb's 1 GiB, so the only bound left
    // is the configured cap at its default; the process must stay under 256 MiB, the
    // cap's own buffer included.
    for (format, compression) in [("sql", "zstd"), ("json", "zstd")] {
        let dir = tempfile::tempdir().unwrap();
        let (id, manifest) = dump_as(dir.path(), format, compression);
        let packed = bomb(format, 1 << 30, |r| zstd::stream::encode_all(r, 3).unwrap());
        tamper(&manifest, &packed);
        let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        m["longestLine"] = (1u64 << 30).into();
        std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
        let out = dir.path().join("out");
        let into = dir.path().join("restored.db");
        for args in [
            vec![
                "restore",
                &id,
                "--out",
                out.to_str().unwrap(),
                "--into",
                into.to_str().unwrap(),
            ],
            vec!["verify", &id, "--out", out.to_str().unwrap()],
        ] {
            let (code, err, peak_kib) = run_measured(&args, &[]);
            assert_ne!(code, Some(0), "{format} {args:?}: {err}");
            assert!(
                err.contains("the most a restore holds"),
                "{format} {args:?}: {err}"
            );
            assert!(
                peak_kib < 256 * 1024,
                "{format} {args:?}: peak RSS {peak_kib} KiB with the default cap"
            );
            assert!(!into.exists());
        }
    }
}

/// The `longestLine` the manifest at `path` declares.
fn longest_line_declared(path: &Path) -> u64 {
    let manifest: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    manifest["longestLine"]
        .as_u64()
        .unwrap_or_else(|| panic!("no longestLine in {manifest}"))
}

/// The plain bytes of a dump file stored with `compression`.
fn plain(stored: &[u8], compression: &str) -> Vec<u8> {
    match compression {
        "zstd" => zstd::stream::decode_all(stored).unwrap(),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(stored)
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        _ => stored.to_vec(),
    }
}

#[test]
fn the_manifest_declares_the_longest_line_of_its_files_across_chunks() {
    for format in ["sql", "json", "csv"] {
        for compression in ["none", "gzip", "zstd"] {
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("app.db");
            build_bulk_db(&src, 6000);
            // One long value (with newlines, which CSV keeps raw) in the middle of the
            // rows, so the longest line is cut by no chunk boundary of its own making.
            let c = rusqlite::Connection::open(&src).unwrap();
            c.execute(
                "UPDATE items SET note = printf('%.*c', 70000, 'y') || char(10) || 'z' WHERE id = 1500",
                [],
            )
            .unwrap();
            drop(c);
            let out = dir.path().join("out");
            let (id, _) = dump_ok(
                &src,
                &out,
                &[
                    "--format",
                    format,
                    "--compression",
                    compression,
                    "--chunk-size",
                    "200",
                    "--budget-ms",
                    "0",
                    "--breathe-ms",
                    "0",
                    // Small frames: a compressed chunk stops only where one ends.
                    "--frame-size",
                    "65536",
                ],
            );
            let manifest_path = manifest_in(&out, &id, format);
            let manifest: Value =
                serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
            assert!(manifest["chunks"].as_u64().unwrap() > 5, "{manifest}");
            let root = store_root(&manifest_path);
            let longest = manifest["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let stored = std::fs::read(root.join(f["key"].as_str().unwrap())).unwrap();
                    plain(&stored, compression)
                        .split(|&b| b == b'\n')
                        .map(|line| line.len() as u64)
                        .max()
                        .unwrap()
                })
                .max()
                .unwrap();
            assert!(longest > 70_000, "{format} {compression}: {longest}");
            assert_eq!(
                longest_line_declared(&manifest_path),
                longest,
                "{format} {compression}"
            );
        }
    }
}

#[test]
fn a_line_longer_than_the_manifest_declares_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (id, manifest) = dump(dir.path(), "none");
    let declared = longest_line_declared(&manifest);
    let mut sql = sql_of(&manifest);
    let at = sql.find("INSERT INTO").unwrap();
    let long = format!(
        "INSERT INTO items VALUES(9999,'{}',1.0,NULL,NULL);\n",
        "a".repeat(declared as usize)
    );
    sql.insert_str(at, &long);
    tamper(&manifest, sql.as_bytes());
    both_refuse(
        dir.path(),
        &id,
        &format!("longer than {declared} bytes, the longest the dump's manifest declares"),
        &[],
    );
}

#[test]
fn a_manifest_with_tiny_parts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (id, manifest_path) = dump(dir.path(), "none");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["partSize"] = 1.into();
    let mut f = std::fs::File::create(&manifest_path).unwrap();
    f.write_all(&serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    drop(f);
    both_refuse(dir.path(), &id, "part size 1 is outside 64 KiB..5 GiB", &[]);
}

/// Plants, in the store directory `out`, a copy of SQL dump `id` under a later id whose
/// unsigned manifest claims a completion in 2999; returns the planted id.
fn plant(out: &Path, id: &str) -> &'static str {
    let planted_id = "dump_29991231-000000";
    std::fs::copy(
        out.join(format!("{id}.sql")),
        out.join(format!("{planted_id}.sql")),
    )
    .unwrap();
    let original = std::fs::read(out.join(format!("{id}.manifest.json"))).unwrap();
    let mut planted: Value = serde_json::from_slice(&original).unwrap();
    planted["dumpId"] = planted_id.into();
    planted["completedAt"] = "2999-12-31T00:00:00Z".into();
    planted["files"][0]["key"] = format!("{planted_id}.sql").into();
    std::fs::write(
        out.join(format!("{planted_id}.manifest.json")),
        serde_json::to_vec(&planted).unwrap(),
    )
    .unwrap();
    planted_id
}

#[test]
fn without_a_key_latest_goes_by_when_the_store_wrote_a_manifest_not_by_its_claims() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = dump(dir.path(), "none");
    let out = dir.path().join("out");
    let planted = plant(&out, &first);
    // A dump made after the plant is the latest, whatever the planted manifest claims.
    let (newer, _) = dump_ok(&dir.path().join("app.db"), &out, &["--format", "sql"]);
    assert!(newer.as_str() < planted, "{newer} sorts after {planted}");
    let (o, i) = (out.to_str().unwrap(), dir.path().join("restored.db"));
    let (code, printed, _) = run_measured(
        &[
            "restore",
            "--latest",
            "--out",
            o,
            "--into",
            i.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{printed}");
    assert!(
        printed.contains(&format!("restored {newer} into")),
        "{printed}"
    );
}

#[test]
fn signed_manifests_are_checked_and_a_planted_one_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let key = [(
        "CHUNKDUMP_SIGNING_KEY",
        "0123456789abcdef0123456789abcdef-test-key",
    )];
    let src = dir.path().join("app.db");
    build_bulk_db(&src, 50);
    let out = dir.path().join("out");
    let o = out.to_str().unwrap().to_string();
    let (code, printed, _) = run_measured(
        &[
            "dump",
            src.to_str().unwrap(),
            "--out",
            &o,
            "--format",
            "sql",
        ],
        &key,
    );
    assert_eq!(code, Some(0), "{printed}");
    let id = printed.lines().next().unwrap().to_string();
    let manifest = out.join(format!("{id}.manifest.json"));
    let sig = out.join(format!("{id}.manifest.json.sig"));
    assert!(sig.is_file(), "no signature beside the manifest");
    let into = dir.path().join("restored.db");
    let i = into.to_str().unwrap().to_string();
    let restore = ["restore", id.as_str(), "--out", &o, "--into", &i, "--force"];
    let verify = ["verify", id.as_str(), "--out", &o];
    for (args, with_key, says) in [
        (&restore[..], true, "signed with the signing key"),
        (&verify[..], true, "signed with the signing key"),
        (&restore[..], false, "signed; not checked"),
    ] {
        let env: &[(&str, &str)] = if with_key { &key } else { &[] };
        let (code, printed, _) = run_measured(args, env);
        assert_eq!(code, Some(0), "{args:?}: {printed}");
        assert!(printed.contains(says), "{args:?}: {printed}");
    }
    // A planted dump: a copy with a later id and completion, unsigned. With the key,
    // --latest passes it over (naming it) and restores the signed one.
    let original = std::fs::read_to_string(&manifest).unwrap();
    let planted_id = plant(&out, &id);
    let latest = ["restore", "--latest", "--out", &o, "--into", &i, "--force"];
    let (code, printed, _) = run_measured(&latest, &key);
    assert_eq!(code, Some(0), "{printed}");
    assert!(
        printed.contains(&format!("restored {id} into")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "warning: manifest {planted_id}.manifest.json has no signature"
        )),
        "{printed}"
    );
    std::fs::remove_file(out.join(format!("{planted_id}.manifest.json"))).unwrap();
    // The manifest changed (a row count), or its signature gone: refused, saying which.
    let changed = original.replacen("\"rows\": 50", "\"rows\": 49", 1);
    assert_ne!(changed, original);
    std::fs::write(&manifest, &changed).unwrap();
    for args in [&restore[..], &verify[..]] {
        let (code, printed, _) = run_measured(args, &key);
        assert_ne!(code, Some(0), "{args:?}: {printed}");
        assert!(
            printed.contains("signature does not match"),
            "{args:?}: {printed}"
        );
    }
    std::fs::write(&manifest, &original).unwrap();
    std::fs::remove_file(&sig).unwrap();
    let (code, printed, _) = run_measured(&restore, &key);
    assert_ne!(code, Some(0), "{printed}");
    assert!(printed.contains("has no signature"), "{printed}");
    // Without a key, an unsigned dump restores and says so.
    let (code, printed, _) = run_measured(&restore, &[]);
    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("unsigned"), "{printed}");
}

#[test]
fn a_changed_file_is_refused_before_any_of_its_statements_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (id, manifest) = dump(dir.path(), "none");
    let original = sql_of(&manifest);
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let file = dir
        .path()
        .join("out")
        .join(m["files"][0]["key"].as_str().unwrap());
    // The manifest left alone: only the file's SHA-256 stands in the way, and it must
    // be checked first (the statement's own refusal would come first otherwise).
    // The same size (so the SHA-256 is what differs): the first pragma becomes an ATTACH.
    let pragma = "PRAGMA foreign_keys=OFF;";
    let attach = format!("{:<w$};", "ATTACH 'x.db' AS x", w = pragma.len() - 1);
    assert!(original.contains(pragma) && attach.len() == pragma.len());
    std::fs::write(&file, original.replacen(pragma, &attach, 1)).unwrap();
    let (code, err, _) = restore(dir.path(), &id);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("differs from the manifest's"), "{err}");
    assert!(
        !err.contains("ATTACH"),
        "a statement ran before the check: {err}"
    );
    assert!(!dir.path().join("restored.db").exists());
    // verify too: a statement of the kind chunkdump writes, which SQLite alone refuses
    // (the table exists), must not reach SQLite in a file whose SHA-256 is wrong.
    let twice = before_rows(&original, "CREATE TABLE items(x);");
    std::fs::write(&file, twice).unwrap();
    let out = dir.path().join("out");
    let (code, printed, _) = run_measured(&["verify", &id, "--out", out.to_str().unwrap()], &[]);
    assert_ne!(code, Some(0), "{printed}");
    assert!(printed.contains("differs from the manifest's"), "{printed}");
    assert!(
        !printed.contains("already exists"),
        "a statement reached SQLite before the check: {printed}"
    );
}

/// Schema objects the manifest does not list, planted where a rows check cannot see
/// them (after the rows: a trigger that empties a table at the application's first
/// insert; a view that never ends), and an index whose SQL was rewritten, fail restore
/// and verify in every format, naming the object; nothing is put in place. The SQL
/// dump's own file carries the schema, the others' `schema.sql` does.
#[test]
fn planted_or_rewritten_schema_objects_fail_restore_and_verify() {
    let planted = [
        (
            "CREATE TRIGGER t_wipe AFTER INSERT ON items BEGIN DELETE FROM items; END;",
            "trigger \"t_wipe\" is not in the dump's manifest",
        ),
        (
            "CREATE VIEW forever AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n;",
            "view \"forever\" is not in the dump's manifest",
        ),
    ];
    for format in ["sql", "csv", "json", "parquet"] {
        let cases = planted
            .iter()
            .map(|(statement, named)| (Some(*statement), *named))
            .chain([(None, "index \"items_name\": its SQL is not the one")]);
        for (plant, named) in cases {
            let dir = tempfile::tempdir().unwrap();
            let (id, manifest) = dump_as(dir.path(), format, "none");
            let is_sql_file = |key: &str| {
                if format == "sql" {
                    !key.contains("schema.sql")
                } else {
                    key.contains("schema.sql")
                }
            };
            let m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
            let key = m["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["key"].as_str().unwrap())
                .find(|k| is_sql_file(k))
                .unwrap()
                .to_string();
            let text = std::fs::read_to_string(store_root(&manifest).join(&key)).unwrap();
            let changed = match plant {
                Some(statement) => {
                    let at = text.rfind("COMMIT;").unwrap();
                    format!("{}{statement}\n{}", &text[..at], &text[at..])
                }
                None => {
                    let index = "CREATE INDEX items_name ON items(name);";
                    assert!(text.contains(index), "{text}");
                    text.replacen(index, "CREATE INDEX items_name ON items(name, note);", 1)
                }
            };
            tamper_file(&manifest, &is_sql_file, changed.as_bytes());
            let out = dir.path().join("out");
            let into = dir.path().join("restored.db");
            for args in [
                vec![
                    "restore",
                    &id,
                    "--out",
                    out.to_str().unwrap(),
                    "--into",
                    into.to_str().unwrap(),
                ],
                vec!["verify", &id, "--out", out.to_str().unwrap()],
            ] {
                let (code, printed, _) = run_measured(&args, &[]);
                assert_ne!(code, Some(0), "{format} {args:?}: {printed}");
                assert!(printed.contains(named), "{format} {args:?}: {printed}");
                assert!(
                    !into.exists(),
                    "{format}: a refused restore was put in place"
                );
            }
        }
    }
}

#[test]
fn a_table_with_more_rows_than_its_manifest_declares_stops_the_restore() {
    // The attacker swaps in the `items` file of a dump of 20,000 rows under a manifest
    // that declares 50 (its size and SHA-256 fixed to match). The restore stops at the
    // 51st row, naming the table, instead of loading all of them first.
    for format in ["sql", "csv", "json", "parquet"] {
        let dir = tempfile::tempdir().unwrap();
        let (id, manifest) = dump_as(dir.path(), format, "none");
        let big_dir = dir.path().join("big");
        std::fs::create_dir(&big_dir).unwrap();
        let big_db = big_dir.join("app.db");
        build_bulk_db(&big_db, 20_000);
        let (big_id, _) = dump_ok(&big_db, &big_dir.join("out"), &["--format", format]);
        let big_manifest = manifest_in(&big_dir.join("out"), &big_id, format);
        let is_items = |key: &str| match format {
            "sql" | "json" => !key.contains("schema.sql"),
            _ => key.contains("items"),
        };
        let m: Value = serde_json::from_slice(&std::fs::read(&big_manifest).unwrap()).unwrap();
        let big_key = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap())
            .find(|k| is_items(k))
            .unwrap()
            .to_string();
        let mut bytes = std::fs::read(store_root(&big_manifest).join(&big_key)).unwrap();
        if format == "sql" || format == "json" {
            // One file holds the whole dump: its id is the small dump's in what it says.
            bytes = String::from_utf8(bytes)
                .unwrap()
                .replace(&big_id, &id)
                .into_bytes();
        }
        tamper_file(&manifest, &is_items, &bytes);
        // The attacker fixes the declared longest line too.
        let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        m["longestLine"] = (1u64 << 20).into();
        std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
        let into = dir.path().join("restored.db");
        let (code, printed, _) = restore(dir.path(), &id);
        assert_ne!(code, Some(0), "{format}: {printed}");
        assert!(
            printed.contains("table \"items\" has more rows than the 50 its manifest declares"),
            "{format}: {printed}"
        );
        assert!(
            !into.exists(),
            "{format}: a refused restore was put in place"
        );
    }
}

#[test]
fn expressions_in_a_declared_schema_cannot_take_the_memory() {
    // The attacker rewrites an unsigned manifest as well, so the planted objects are
    // "declared": only SQLite's own bounds on values stand in the way now.
    let planted = [
        (
            "trigger",
            "t_big",
            "CREATE TRIGGER t_big AFTER INSERT ON items BEGIN SELECT randomblob(900000000); END",
        ),
        (
            "trigger",
            "t_printf",
            "CREATE TRIGGER t_printf AFTER INSERT ON items BEGIN SELECT length(printf('%.*c', 900000000, 'x')); END",
        ),
        (
            "view",
            "v_zero",
            "CREATE VIEW v_zero AS SELECT zeroblob(900000000) AS z",
        ),
    ];
    for (kind, name, statement) in planted {
        let dir = tempfile::tempdir().unwrap();
        let (id, manifest) = dump(dir.path(), "none");
        let mut changed = before_rows(&sql_of(&manifest), &format!("{statement};"));
        if kind == "view" {
            // Something must evaluate the view: a trigger of the dump's own kind would be
            // declared too; a row statement that reads it is refused by the allow-list,
            // so the view is read by the trigger below.
            let reader =
                "CREATE TRIGGER t_read AFTER INSERT ON items BEGIN SELECT z FROM v_zero; END";
            changed = before_rows(&changed, &format!("{reader};"));
            declare(&manifest, "trigger", "t_read", reader);
        }
        tamper(&manifest, changed.as_bytes());
        declare(&manifest, kind, name, statement);
        let into = dir.path().join("restored.db");
        let (code, err, peak_kib) = restore(dir.path(), &id);
        assert!(peak_kib < 256 * 1024, "{name}: peak RSS {peak_kib} KiB");
        if name == "t_printf" {
            // SQLite's printf stops at the length limit and yields no value: bounded,
            // and the SELECT changes nothing, so the restore may complete.
            continue;
        }
        assert_ne!(code, Some(0), "{name}: {err}");
        assert!(err.contains("too big"), "{name}: {err}");
        assert!(!into.exists(), "{name}");
    }
}

/// Adds `statement` (an object of `kind` named `name`, on table `items`) to the
/// manifest's schema statements, as a rewritten manifest would list it.
fn declare(manifest: &Path, kind: &str, name: &str, statement: &str) {
    // Its sqlite_schema.sql as SQLite stores it, from a database that has the table.
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB, note TEXT); CREATE VIEW v_zero AS SELECT zeroblob(900000000) AS z;")
        .unwrap();
    if name != "v_zero" {
        c.execute_batch(statement).unwrap();
    }
    let sql: String = c
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap();
    let mut m: Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    m["schemaStatements"]
        .as_array_mut()
        .expect("the manifest lists its schema statements")
        .push(serde_json::json!({
            "type": kind,
            "name": name,
            "tblName": if kind == "view" { name } else { "items" },
            "sha256": hex::encode(Sha256::digest(sql.as_bytes())),
        }));
    std::fs::write(manifest, serde_json::to_vec(&m).unwrap()).unwrap();
}
