//! Encrypted dumps (`--recipient`), checked with the real `age` tool: keys from
//! `age-keygen`, every object decrypted by `age -d` to exactly the bytes of the same dump
//! unencrypted, nothing of the database readable in any object, restores with
//! `--identity` exact, and refused without the right identity.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// Names and a value a bucket must never show.
const TABLE: &str = "patients_confidential";
const COLUMN: &str = "diagnosis_code";
const VALUE: &str = "XYZZY-PLUGH-9431";

pub(crate) fn have_age() -> bool {
    !skip_without(
        "age",
        Command::new("age").arg("--version").output().is_ok(),
        "scripts/setup-test-deps installs Debian's age",
    )
}

/// A key pair from `age-keygen`: (identity file, recipient).
pub(crate) fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let o = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_string();
    (path, recipient)
}

/// A database with the bulk tables, and one whose names and a value the test looks for.
fn source(dir: &Path) -> PathBuf {
    let db = dir.join("src.db");
    build_bulk_db(&db, 20_000);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE {TABLE}(id INTEGER PRIMARY KEY, {COLUMN} TEXT, amount REAL, scan BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO {TABLE} SELECT i, '{VALUE}-' || i, i * 0.01, randomblob(i % 50) FROM n;
         INSERT INTO {TABLE} VALUES (0, NULL, -0.0, x'');"
    ))
    .unwrap();
    db
}

/// `age -d -i identity file`: the plaintext.
fn age_decrypt(identity: &Path, file: &Path) -> Vec<u8> {
    let o = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "age -d {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Every file under `dir` that a bucket would hold: the dump's objects, staging objects
/// and open uploads, not the progress store (which lives beside the database, in its
/// trust domain) or the run locks.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("progress.sqlite3") || name == "locks" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// No object in `dir` holds the table's name, the column's, or the value.
fn assert_nothing_readable(dir: &Path) {
    let files = files_under(dir);
    assert!(!files.is_empty());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for needle in [TABLE, COLUMN, VALUE, "items", "CREATE TABLE"] {
            assert!(
                memchr::memmem::find(&bytes, needle.as_bytes()).is_none(),
                "{} shows {needle:?}",
                file.display()
            );
        }
        let name = file.to_string_lossy();
        assert!(!name.contains(TABLE) && !name.contains("items"), "{name}");
    }
}

/// `chunkdump restore ID --out OUT --into INTO --identity IDENTITY` succeeds, and gives
/// the database `src`.
fn restore_exactly(src: &Path, id: &str, out: &Path, into: &Path, identity: &Path) {
    let o = chunkdump()
        .args(["restore", id, "--out"])
        .arg(out)
        .arg("--into")
        .arg(into)
        .arg("--identity")
        .arg(identity)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "restore {id}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same_db(src, into);
}

/// The dump's data files (not the manifest), each decoded by `decode`, sorted.
fn contents(dir: &Path, decode: impl Fn(&Path) -> Vec<u8>) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = files_under(dir)
        .iter()
        .filter(|p| !p.to_string_lossy().contains("manifest.json"))
        .filter(|p| !p.to_string_lossy().contains("/.chunkdump/"))
        .map(|p| decode(p))
        .collect();
    all.sort();
    all
}

/// One-slice chunks with no budget: the dump spans many chunks (and, compressed, small
/// frames so a chunk can end often).
const MANY_CHUNKS: [&str; 8] = [
    "--chunk-size",
    "500",
    "--budget-ms",
    "0",
    "--frame-size",
    "65536",
    "--part-size",
    "5242880",
];

#[test]
fn every_object_decrypts_with_age_to_the_unencrypted_dump_and_restores_exactly() {
    if !have_age() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    for (format, compression) in [
        ("sql", "none"),
        ("sql", "zstd"),
        ("csv", "none"),
        ("csv", "gzip"),
        ("json", "none"),
        ("json", "zstd"),
    ] {
        let case = format!("{format}-{compression}");
        let plain_out = dir.path().join(format!("plain-{case}"));
        let sealed_out = dir.path().join(format!("sealed-{case}"));
        let common = [
            "--format",
            format,
            "--compression",
            compression,
            "--id",
            "d",
            "--breathe-ms",
            "0",
        ];
        dump_ok(&src, &plain_out, &[&common[..], &MANY_CHUNKS[..]].concat());
        let (_, path) = dump_ok(
            &src,
            &sealed_out,
            &[&common[..], &MANY_CHUNKS[..], &["--recipient", &recipient]].concat(),
        );
        let status = try_status("d", &sealed_out).unwrap();
        assert!(status["chunks"].as_u64().unwrap() > 3, "{case}: {status}");
        assert!(
            path.to_string_lossy().ends_with(".age") || format == "csv",
            "{path:?}"
        );

        assert_nothing_readable(&sealed_out);
        // age itself opens every object, to the very bytes of the unencrypted dump.
        let decrypted = contents(&sealed_out, |p| age_decrypt(&identity, p));
        let plain = contents(&plain_out, |p| std::fs::read(p).unwrap());
        assert!(
            decrypted == plain,
            "{case}: decrypted objects differ from the plain dump"
        );

        // The real sqlite3 shell loads the decrypted SQL dump to the source's values.
        if (format, compression) == ("sql", "none") {
            let sql = dir.path().join("decrypted.sql");
            std::fs::write(&sql, age_decrypt(&identity, &path)).unwrap();
            let loaded = dir.path().join("loaded-by-shell.db");
            load_with_shell(&sql, &loaded);
            assert_same_db(&src, &loaded);
        }
        // chunkdump restores it exactly with the identity (and checks every table).
        let restored = dir.path().join(format!("restored-{case}.db"));
        restore_exactly(&src, "d", &sealed_out, &restored, &identity);
        let o = chunkdump()
            .args(["verify", "d", "--out"])
            .arg(&sealed_out)
            .env("CHUNKDUMP_IDENTITY_FILE", &identity)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn without_the_right_identity_restore_and_verify_fail_in_one_line_and_leave_nothing() {
    if !have_age() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let (_, recipient) = keygen(dir.path(), "key.txt");
    let (other, _) = keygen(dir.path(), "other.txt");
    let out = dir.path().join("out");
    dump_ok(
        &src,
        &out,
        &["--format", "json", "--id", "d", "--recipient", &recipient],
    );
    let into = dir.path().join("never.db");
    for (identity, says) in [
        (None, "dump d is encrypted: give its identity"),
        (Some(&other), "none of the given identities can decrypt it"),
    ] {
        for command in ["restore", "verify"] {
            let mut c = chunkdump();
            c.args([command, "d", "--out"]).arg(&out);
            if command == "restore" {
                c.arg("--into").arg(&into);
            }
            if let Some(identity) = identity {
                c.arg("--identity").arg(identity);
            }
            let o = c.output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{command}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{command}: {err}");
            assert!(err.contains(says), "{command}: {err}");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("never"))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    // Without an identity, what the clear manifest lists can still be checked: every
    // file's size and digest, by id and from the manifest file alone.
    let by_id = [
        "verify",
        "d",
        "--out",
        out.to_str().unwrap(),
        "--files-only",
    ];
    let manifest = out.join("d.manifest.json");
    let by_file = [
        "verify",
        "--manifest",
        manifest.to_str().unwrap(),
        "--files-only",
    ];
    for args in [&by_id[..], &by_file[..]] {
        let o = run(args);
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && said.contains("2 files match the sizes"),
            "{said}{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let data = out.join("d.json.age");
    let mut bytes = std::fs::read(&data).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    std::fs::write(&data, &bytes).unwrap();
    for args in [&by_id[..], &by_file[..]] {
        let o = run(args);
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(
            !o.status.success() && said.contains("d.json.age: SHA-256"),
            "{said}"
        );
    }
    bytes[at] ^= 1;
    std::fs::write(&data, &bytes).unwrap();
    // `--latest` cannot rank a dump whose completion time is sealed: it says so.
    let o = run(&[
        "restore",
        "--latest",
        "--out",
        out.to_str().unwrap(),
        "--into",
        into.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("1 encrypted dump passed over"),
        "{err}"
    );
    // A recipient that is no age key is refused before anything is written.
    let bad = run(&[
        "dump",
        src.to_str().unwrap(),
        "--out",
        dir.path().join("bad").to_str().unwrap(),
        "--format",
        "sql",
        "--recipient",
        "age1notakey",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("age1notakey"),
        "{err}"
    );
    assert!(!dir.path().join("bad").join("dump_").exists());
}

#[test]
fn a_killed_encrypted_dump_resumes_to_an_exact_restore() {
    if !have_age() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    for compression in ["none", "zstd"] {
        let out = dir.path().join(format!("out-{compression}"));
        let plain_out = dir.path().join(format!("plain-{compression}"));
        let args = ["--format", "sql", "--compression", compression, "--id", "d"];
        dump_ok(
            &src,
            &plain_out,
            &[&args[..], &MANY_CHUNKS[..], &["--breathe-ms", "0"]].concat(),
        );
        let mut child = chunkdump()
            .args([
                "dump",
                src.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .args(args)
            .args(MANY_CHUNKS)
            .args(["--recipient", &recipient, "--breathe-ms", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_chunks(&mut child, "d", &out, 3);
        child.kill().unwrap(); // SIGKILL, mid-object: its age stream is open
        child.wait().unwrap();
        // What is staged between chunks (tail bytes, the unfinished age chunk's
        // plaintext, table digests) is sealed too.
        assert_nothing_readable(&out);
        let o = run(&[
            "resume",
            "d",
            "--out",
            out.to_str().unwrap(),
            "--breathe-ms",
            "0",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let decrypted = contents(&out, |p| age_decrypt(&identity, p));
        let plain = contents(&plain_out, |p| std::fs::read(p).unwrap());
        assert!(
            decrypted == plain,
            "{compression}: the resumed dump decrypts to other bytes"
        );
        let restored = dir.path().join(format!("restored-{compression}.db"));
        restore_exactly(&src, "d", &out, &restored, &identity);
    }
}

/// A deployment with recipients (`CHUNKDUMP_RECIPIENTS`): every dump the API starts is
/// encrypted; the API serves the ciphertext (which `age -d` opens); a start asking for a
/// drill is refused naming the field; without a place to keep the stream key (shared
/// progress, no signing key) a start is refused naming the setting.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_encrypts_to_the_deployments_recipients_and_serves_ciphertext() {
    use common::api_server::*;
    if !have_age() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let server = start_server(
        &src,
        std::time::Duration::from_millis(50),
        std::time::Duration::ZERO,
        None,
    )
    .await
    .with_settings(|s| s.recipients = vec![recipient.clone()])
    .await;
    let id = server
        .start(serde_json::json!({"format": "sql", "compression": "zstd"}))
        .await;
    let status = server.wait_for(&id, "completed").await;
    let file = status["files"][0]["key"].as_str().unwrap().to_string();
    assert!(file.ends_with(".sql.zst.age"), "{status}");
    let url = status["downloadUrl"].as_str().unwrap().to_string();
    let (code, headers, body) = server
        .call(reqwest::Method::GET, &url, Some(READER), None)
        .await;
    assert_eq!(code, reqwest::StatusCode::OK);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert!(memchr::memmem::find(&body, TABLE.as_bytes()).is_none());
    let downloaded = dir.path().join("downloaded.age");
    std::fs::write(&downloaded, &body).unwrap();
    let plain = zstd::decode_all(&age_decrypt(&identity, &downloaded)[..]).unwrap();
    assert!(memchr::memmem::find(&plain, format!("CREATE TABLE {TABLE}").as_bytes()).is_some());
    assert_nothing_readable(&server.out);
    let restored = dir.path().join("restored.db");
    restore_exactly(&src, &id, &server.out, &restored, &identity);

    // A request's own recipients replace the deployment's; a key that is not one is a
    // 400 naming the field.
    let (other_identity, other) = keygen(dir.path(), "other.txt");
    let id = server
        .start(serde_json::json!({"format": "json", "recipients": [other]}))
        .await;
    let status = server.wait_for(&id, "completed").await;
    assert_eq!(status["recipients"], serde_json::json!([other]), "{status}");
    let restored_other = dir.path().join("restored-other.db");
    restore_exactly(&src, &id, &server.out, &restored_other, &other_identity);
    let (code, v) = server
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(serde_json::json!({"format": "sql", "recipients": ["age1nope"]})),
        )
        .await;
    assert_eq!(code, reqwest::StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "recipients", "{v}");
    let (code, v) = server
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(serde_json::json!({"format": "sql", "drill": true})),
        )
        .await;
    assert_eq!(code, reqwest::StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "drill", "{v}");
    let server = server
        .with_settings(|s| s.custody = chunkdump::lifecycle::KeyCustody::Refuse)
        .await;
    let (code, v) = server
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(serde_json::json!({"format": "sql"})),
        )
        .await;
    assert_eq!(code, reqwest::StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "recipients", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("CHUNKDUMP_SIGNING_KEY"), "{v}");
}

/// To S3 (an s3s-fs of the test's own, which checks signatures and keeps each object as a
/// file): a multipart encrypted dump in many chunks, killed and resumed, holds nothing
/// readable in the bucket (staging objects included) while it runs or after; every
/// object decrypts with `age`; restore with the identity reads it from the bucket.
#[test]
fn an_encrypted_dump_to_s3_in_parts_and_chunks_restores_from_the_bucket() {
    use crate::bucket_only::{bucket_cli, start_s3s};
    if !have_age() || common::cloud::skip_without_servers() {
        return;
    }
    let (key, secret) = ("AKIDAGETEST", "age-test-secret");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src.db");
    build_bulk_db(&src, 120_000);
    let c = rusqlite::Connection::open(&src).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE {TABLE}({COLUMN} TEXT); INSERT INTO {TABLE} VALUES ('{VALUE}');"
    ))
    .unwrap();
    drop(c);
    let (identity, recipient) = keygen(work.path(), "key.txt");
    let root = work.path().join("s3s-root");
    std::fs::create_dir_all(root.join("sealed")).unwrap(); // the bucket
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = start_s3s(port, &root, key, secret);
    let endpoint = format!("http://127.0.0.1:{port}");
    let state = work.path().join("state");
    let cli = bucket_cli(
        &state,
        &[
            ("R2_ENDPOINT", &endpoint),
            ("R2_ACCESS_KEY_ID", key),
            ("R2_SECRET_ACCESS_KEY", secret),
        ],
    );
    let store = "s3://sealed/backups";
    let mut child = Command::new(env!("CARGO_BIN_EXE_chunkdump"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", state.join("home"))
        .env("XDG_STATE_HOME", &state)
        .env("R2_ENDPOINT", &endpoint)
        .env("R2_ACCESS_KEY_ID", key)
        .env("R2_SECRET_ACCESS_KEY", secret)
        .args([
            "dump",
            src.to_str().unwrap(),
            "--store",
            store,
            "--format",
            "sql",
            "--id",
            "d",
        ])
        .args([
            "--recipient",
            &recipient,
            "--chunk-size",
            "2000",
            "--budget-ms",
            "0",
        ])
        .args(["--breathe-ms", "30", "--part-size", "5242880"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once a part is uploaded and the age stream runs on in the staging object.
    wait_for_chunks_by(&mut child, "d", 12, || {
        let o = cli(&["status", "d", "--store", store]);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).unwrap())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_nothing_readable(&root);
    let o = cli(&["resume", "d", "--store", store, "--breathe-ms", "0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_nothing_readable(&root);
    let object = root.join("sealed/backups/d.sql.age");
    assert!(
        std::fs::metadata(&object).unwrap().len() > 2 * 5_242_880,
        "several parts"
    );
    let sql = work.path().join("d.sql");
    std::fs::write(&sql, age_decrypt(&identity, &object)).unwrap();
    let loaded = work.path().join("loaded.db");
    load_with_shell(&sql, &loaded);
    assert_same_db(&src, &loaded);
    let into = work.path().join("restored.db");
    let o = cli(&[
        "restore",
        "d",
        "--store",
        store,
        "--into",
        into.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_db(&src, &into);

    // `rekey` through a proxy that counts every byte to and from the server: the new
    // recipient's identity opens the dump, the old one no longer does, and fewer bytes
    // moved than the dump holds (the store copied the parts after the first).
    let (new_identity, new_recipient) = keygen(work.path(), "new-key.txt");
    let (proxy, moved) = counting_proxy(port);
    let via_proxy = bucket_cli(
        &state,
        &[
            ("R2_ENDPOINT", &proxy),
            ("R2_ACCESS_KEY_ID", key),
            ("R2_SECRET_ACCESS_KEY", secret),
        ],
    );
    let o = via_proxy(&[
        "rekey",
        "d",
        "--store",
        store,
        "--identity",
        identity.to_str().unwrap(),
        "--recipient",
        &new_recipient,
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let size = std::fs::metadata(&object).unwrap().len();
    let at_server = moved.settled();
    assert_eq!(report["rekeyed"], 1, "{report}");
    // The first part read and written again (R2 wants every part but the last of one
    // size), the manifest, and HTTP: whatever the dump's size.
    assert!(
        at_server < size && at_server < 2 * 5_242_880 + (256 << 10),
        "{at_server} bytes moved to rekey a {size}-byte dump: {report}"
    );
    std::fs::write(&sql, age_decrypt(&new_identity, &object)).unwrap();
    let loaded = work.path().join("loaded-after-rekey.db");
    load_with_shell(&sql, &loaded);
    assert_same_db(&src, &loaded);
    let into = work.path().join("restored-after-rekey.db");
    let restore = |identity: &Path| {
        cli(&[
            "restore",
            "d",
            "--store",
            store,
            "--into",
            into.to_str().unwrap(),
            "--force",
            "--identity",
            identity.to_str().unwrap(),
        ])
    };
    let o = restore(&new_identity);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_db(&src, &into);
    let o = restore(&identity);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("none of the given identities"),
        "{err}"
    );
    let o = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(&object)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "the old identity still opens the object"
    );
    assert_nothing_readable(&root);
    server.kill().unwrap();
    server.wait().unwrap();
}

/// A TCP proxy on a free port of 127.0.0.1 to `port`: its URL, and a count of the bytes
/// it passed either way that waits, when read, for every connection to have closed.
fn counting_proxy(port: u16) -> (String, Counted) {
    use std::sync::atomic::Ordering;
    let moved = Counted::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counter = moved.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (mut inbound, _) = listener.accept().await.unwrap();
                let counter = counter.clone();
                counter.open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap();
                    if let Ok((up, down)) =
                        tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await
                    {
                        counter.bytes.fetch_add(up + down, Ordering::SeqCst);
                    }
                    counter.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    });
    (url, moved)
}

/// Bytes a [`counting_proxy`] passed, and its connections still open.
#[derive(Clone, Default)]
struct Counted {
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    open: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Counted {
    /// The bytes passed, once every connection has closed (its client has exited).
    fn settled(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let started = std::time::Instant::now();
        while self.open.load(Ordering::SeqCst) > 0 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "connections never closed"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.bytes.load(Ordering::SeqCst)
    }
}

/// `rekey` of a CSV dump (several objects) in a directory: two new recipients each open
/// every object (with `age`), the old identity none; a rekey killed after its objects and
/// before its manifest (the old manifest put back) is finished by running it again.
#[test]
fn rekey_gives_new_recipients_and_a_rerun_finishes_a_killed_one() {
    if !have_age() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let (old, old_recipient) = keygen(dir.path(), "old.txt");
    let (one, one_recipient) = keygen(dir.path(), "one.txt");
    let (two, two_recipient) = keygen(dir.path(), "two.txt");
    let out = dir.path().join("out");
    dump_ok(
        &src,
        &out,
        &[
            "--format",
            "csv",
            "--compression",
            "zstd",
            "--id",
            "d",
            "--recipient",
            &old_recipient,
        ],
    );
    let plain = contents(&out, |p| age_decrypt(&old, p));
    let manifest = out.join("d/manifest.json");
    let before = std::fs::read(&manifest).unwrap();
    let rekey = |identity: &Path| {
        run(&[
            "rekey",
            "d",
            "--out",
            out.to_str().unwrap(),
            "--identity",
            identity.to_str().unwrap(),
            "--recipient",
            &one_recipient,
            "--recipient",
            &two_recipient,
            "--json",
        ])
    };
    let o = rekey(&old);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (report["rekeyed"].as_u64(), report["already"].as_u64()),
        (Some(4), Some(0)),
        "{report}"
    );
    for identity in [&one, &two] {
        assert!(contents(&out, |p| age_decrypt(identity, p)) == plain);
    }
    // The dump's record says who can open it now.
    let status = try_status("d", &out).unwrap();
    assert_eq!(
        status["recipients"],
        serde_json::json!([one_recipient, two_recipient]),
        "{status}"
    );
    for object in files_under(&out)
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".age"))
    {
        let o = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&old)
            .arg(object)
            .output()
            .unwrap();
        assert!(
            !o.status.success(),
            "{} still opens with the old identity",
            object.display()
        );
    }
    // Killed before the manifest: its objects rekeyed, the manifest still the old one.
    std::fs::write(&manifest, &before).unwrap();
    let o = rekey(&old);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (report["rekeyed"].as_u64(), report["already"].as_u64()),
        (Some(0), Some(4)),
        "{report}"
    );
    let restored = dir.path().join("restored.db");
    restore_exactly(&src, "d", &out, &restored, &two);
    // Done: the old identity opens nothing, not even the manifest.
    let o = rekey(&old);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("none of the given identities"),
        "{err}"
    );
}

/// With progress in DynamoDB (moto) and files on S3 (s3s-fs), as in AWS: an encrypted
/// dump needs the signing key (refused without, naming it), keeps its stream key
/// wrapped in the job record, pauses when a chunk has another signing key (saying it was
/// rotated), goes on with the right one, and forgets the stream key when it completes.
#[tokio::test(flavor = "multi_thread")]
async fn with_shared_progress_the_stream_key_is_wrapped_with_the_signing_key() {
    use chunkdump::ports::ProgressReader;
    use common::cloud::{cli_env, sdk_config, servers, skip_without_servers, unique};
    if !have_age() || skip_without_servers() {
        return;
    }
    let sv = servers();
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let env = cli_env(&sv.s3s, &sv.moto, &sv.s3s_key, &sv.s3s_secret);
    let (store, progress) = (
        format!("s3://{}/p", unique("age")),
        format!("dynamodb://{}", unique("jobs")),
    );
    let loc = ["--store", store.as_str(), "--progress", progress.as_str()];
    let cli = |signing: Option<&str>, args: &[&str]| {
        let mut c = chunkdump();
        c.envs(env.clone()).args(args).args(loc);
        if let Some(key) = signing {
            c.env("CHUNKDUMP_SIGNING_KEY", key);
        }
        c
    };
    let o = cli(None, &["setup"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dump = [
        "dump",
        src.to_str().unwrap(),
        "--format",
        "sql",
        "--id",
        "e",
        "--recipient",
        &recipient,
    ];
    let o = cli(None, &dump).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("CHUNKDUMP_SIGNING_KEY"),
        "{err}"
    );
    assert!(
        !cli(None, &["status", "e"])
            .output()
            .unwrap()
            .status
            .success(),
        "nothing is created"
    );

    let (key_a, key_b) = ("a".repeat(40), "b".repeat(40));
    let mut child = cli(Some(&key_a), &dump)
        .args([
            "--chunk-size",
            "500",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "10",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_chunks_by(&mut child, "e", 5, || {
        let o = cli(None, &["status", "e"]).output().unwrap();
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).unwrap())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let dynamo = chunkdump::cloud::DynamoProgress::new(
        &sdk_config(&sv.moto, "moto", "moto").await,
        &progress,
    )
    .unwrap();
    let job = dynamo.get("e").await.unwrap().unwrap();
    let stored = job.stream_key.clone().unwrap();
    assert!(
        stored.starts_with("sealed:v1:"),
        "the record holds the stream key unwrapped"
    );

    let o = cli(Some(&key_b), &["resume", "e", "--breathe-ms", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("rotated"), "{err}");
    assert_ne!(
        dynamo.get("e").await.unwrap().unwrap().status,
        chunkdump::model::JobStatus::Failed
    );
    let o = cli(Some(&key_a), &["resume", "e", "--breathe-ms", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let job = dynamo.get("e").await.unwrap().unwrap();
    assert_eq!(job.status, chunkdump::model::JobStatus::Completed);
    assert!(
        job.stream_key.is_none(),
        "a completed dump keeps no stream key"
    );

    let into = dir.path().join("restored.db");
    let o = chunkdump()
        .envs(env.clone())
        .env("CHUNKDUMP_SIGNING_KEY", &key_a)
        .args([
            "restore",
            "e",
            "--store",
            &store,
            "--into",
            into.to_str().unwrap(),
        ])
        .arg("--identity")
        .arg(&identity)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_db(&src, &into);
}

/// A fleet's `recipients` encrypt every database's dump to them; each restores with the
/// identity, and nothing of any database is readable in the store.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_with_recipients_encrypts_every_databases_dump() {
    use common::api_server::*;
    if !have_age() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    for name in ["a", "b"] {
        let made = source(dir.path());
        std::fs::rename(&made, root.join(format!("{name}.db"))).unwrap();
    }
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let server = start_server(
        &root.join("a.db"),
        std::time::Duration::from_secs(25),
        std::time::Duration::ZERO,
        None,
    )
    .await
    .over_root(&root)
    .await;
    let (code, accepted) = server
        .json(
            reqwest::Method::POST,
            "/export/fleet",
            Some(ADMIN),
            Some(serde_json::json!({"databases": "*.db", "format": "csv", "compression": "zstd", "recipients": [recipient]})),
        )
        .await;
    assert_eq!(code, reqwest::StatusCode::ACCEPTED, "{accepted}");
    let path = format!("/export/fleet/{}", accepted["fleetId"].as_str().unwrap());
    let started = std::time::Instant::now();
    let fleet = loop {
        let (_, fleet) = server
            .json(reqwest::Method::GET, &path, Some(ADMIN), None)
            .await;
        if fleet["status"] == "completed" {
            break fleet;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{fleet}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        fleet["counts"],
        serde_json::json!({"completed": 2}),
        "{fleet}"
    );
    for item in fleet["items"].as_array().unwrap() {
        let id = item["dumpId"].as_str().unwrap();
        let database = root.join(item["database"].as_str().unwrap());
        let restored = dir
            .path()
            .join(format!("{}.restored.db", id.replace('/', "_")));
        restore_exactly(&database, id, &server.out, &restored, &identity);
    }
    // The fleet's own record (its request) is in the store too: names of databases, no
    // table, column or value.
    assert_nothing_readable(&server.out);
}

/// A manifest whose clear file list was rewritten (to match files someone replaced) no
/// longer agrees with its sealed part: restore and verify refuse it and write nothing.
#[test]
fn a_clear_file_list_that_differs_from_the_sealed_one_is_refused() {
    if !have_age() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let out = dir.path().join("out");
    dump_ok(
        &src,
        &out,
        &["--format", "sql", "--id", "d", "--recipient", &recipient],
    );
    let manifest = out.join("d.manifest.json");
    let mut clear: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    clear["files"][0]["sha256"] = serde_json::json!("00".repeat(32));
    std::fs::write(&manifest, serde_json::to_vec(&clear).unwrap()).unwrap();
    let into = dir.path().join("never.db");
    for command in ["restore", "verify"] {
        let mut c = chunkdump();
        c.args([command, "d", "--out"])
            .arg(&out)
            .arg("--identity")
            .arg(&identity);
        if command == "restore" {
            c.arg("--into").arg(&into);
        }
        let o = c.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{command}: {err}");
        assert!(
            err.contains("differ from those its sealed part lists"),
            "{command}: {err}"
        );
    }
    assert!(!into.exists());
}

/// No request weakens a deployment's encryption: `recipients: []` (which would be a
/// plaintext dump where `CHUNKDUMP_RECIPIENTS` encrypts every one) is a 400 naming the
/// field for a start and for a fleet, and starts nothing. A bad body is a 400 before the
/// rate limit and the one-dump-per-database check: with the caller's one start used and
/// a dump of the database running, 21 recipients still answer 400 `recipients`.
#[tokio::test(flavor = "multi_thread")]
async fn no_request_switches_a_deployments_encryption_off() {
    use common::api_server::*;
    if !have_age() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let made = source(dir.path());
    std::fs::rename(&made, root.join("a.db")).unwrap();
    let (_, recipient) = keygen(dir.path(), "key.txt");
    // A slow dump (one slice a chunk, a long pause) that stays running.
    let server = start_server(
        &root.join("a.db"),
        std::time::Duration::from_millis(1),
        std::time::Duration::from_secs(30),
        None,
    )
    .await
    .over_root(&root)
    .await
    .with_settings(|s| {
        s.recipients = vec![recipient.clone()];
        s.rate_limit.starts = 1;
        s.slice_rows = chunkdump::model::SliceRows::new(1).unwrap();
    })
    .await;
    for (path, body) in [
        (
            "/export/dump",
            serde_json::json!({"format": "sql", "database": "a.db", "recipients": []}),
        ),
        (
            "/export/fleet",
            serde_json::json!({"format": "sql", "databases": "*.db", "recipients": []}),
        ),
    ] {
        let (code, v) = server
            .json(reqwest::Method::POST, path, Some(ADMIN), Some(body))
            .await;
        assert_eq!(code, reqwest::StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"]["field"], "recipients", "{path}: {v}");
    }
    let (_, list) = server
        .json(reqwest::Method::GET, "/export/dump", Some(ADMIN), None)
        .await;
    assert_eq!(list["dumps"], serde_json::json!([]), "{list}");
    // The one start this caller has, running.
    let id = server
        .start(serde_json::json!({"format": "sql", "database": "a.db"}))
        .await;
    let status = server.wait_for(&id, "processing").await;
    assert_eq!(
        status["recipients"],
        serde_json::json!([recipient]),
        "{status}"
    );
    let many: Vec<String> = (0..21).map(|_| recipient.clone()).collect();
    for (path, body) in [
        (
            "/export/dump",
            serde_json::json!({"format": "sql", "database": "a.db", "recipients": many}),
        ),
        (
            "/export/fleet",
            serde_json::json!({"format": "sql", "databases": "*.db", "recipients": many}),
        ),
    ] {
        let (code, v) = server
            .json(reqwest::Method::POST, path, Some(ADMIN), Some(body))
            .await;
        assert_eq!(code, reqwest::StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"]["field"], "recipients", "{path}: {v}");
    }
    // And a good body meets the limit.
    let (code, v) = server
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(serde_json::json!({"format": "sql", "database": "a.db"})),
        )
        .await;
    assert_eq!(code, reqwest::StatusCode::TOO_MANY_REQUESTS, "{v}");
}
