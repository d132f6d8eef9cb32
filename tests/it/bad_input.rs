//! Bad input gets a clear error and a non-zero exit, and never leaves a partial file
//! that looks like a dump.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Visible dump files in an output directory (anything but the `.chunkdump` state).
fn dump_files(out: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return vec![];
    };
    entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".chunkdump")
        .collect()
}

fn fails_with(args: &[&str], code: i32, needle: &str) {
    let o = run(args);
    let err = stderr_of(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code} for {args:?}, stderr: {err}"
    );
    assert!(
        err.contains(needle),
        "stderr for {args:?} should mention {needle:?}: {err}"
    );
    // Runtime errors: one `error:` line (plus at most the structured log line); clap's
    // usage errors add the possible values and a help hint.
    let max_lines = if code == 1 { 2 } else { 8 };
    assert!(
        err.lines().count() <= max_lines,
        "error should be short: {err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}

#[test]
fn unreadable_databases_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    fails_with(
        &["dump", "/nonexistent/x.db", "--format", "sql", "--out", o],
        1,
        "cannot open",
    );
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "this is not a database, just some text that is long enough to have a header....",
    )
    .unwrap();
    fails_with(
        &[
            "dump",
            text.to_str().unwrap(),
            "--format",
            "sql",
            "--out",
            o,
        ],
        1,
        "not a database",
    );
    fails_with(
        &[
            "dump",
            dir.path().to_str().unwrap(),
            "--format",
            "sql",
            "--out",
            o,
        ],
        1,
        "not a regular file",
    );
    // A command that finds nothing to dump creates nothing: not even the store's state.
    assert!(!out.exists(), "{} was created", out.display());
}

#[test]
fn a_corrupt_database_fails_the_dump_without_a_dump_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 20_000);
    // Overwrite pages in the middle of the table b-tree with garbage.
    let mut bytes = std::fs::read(&src).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 2..len / 2 + 16384] {
        *b = 0xa5;
    }
    std::fs::write(&src, &bytes).unwrap();
    let out = dir.path().join("out");
    fails_with(
        &[
            "dump",
            src.to_str().unwrap(),
            "--format",
            "sql",
            "--out",
            out.to_str().unwrap(),
            "--id",
            "bad",
            "--breathe-ms",
            "0",
        ],
        1,
        "malformed",
    );
    assert!(
        dump_files(&out).is_empty(),
        "partial dump left: {:?}",
        dump_files(&out)
    );
    let s = run(&["status", "bad", "--out", out.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["status"], "failed");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("malformed"));
}

#[test]
fn bad_flags_and_settings_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let (s, o) = (src.to_str().unwrap(), dir.path().join("out"));
    let o = o.to_str().unwrap();
    fails_with(&["dump", s, "--format", "xml", "--out", o], 2, "xml");
    // A CSV or JSON dump without its schema file could never be restored.
    for format in ["csv", "json"] {
        fails_with(
            &["dump", s, "--format", format, "--no-schema", "--out", o],
            2,
            "--no-schema is for SQL dumps",
        );
    }
    assert!(
        !dir.path().join("out").exists(),
        "a refused dump created its --out"
    );
    fails_with(
        &[
            "dump",
            s,
            "--format",
            "sql",
            "--out",
            o,
            "--chunk-size",
            "0",
        ],
        2,
        "chunk-size",
    );
    fails_with(
        &[
            "dump",
            s,
            "--format",
            "sql",
            "--out",
            o,
            "--part-size",
            "1000",
        ],
        2,
        "part-size",
    );
    fails_with(
        &[
            "dump",
            s,
            "--format",
            "sql",
            "--out",
            o,
            "--budget-ms",
            "999999999",
        ],
        2,
        "budget-ms",
    );
    fails_with(
        &[
            "dump",
            s,
            "--format",
            "sql",
            "--out",
            o,
            "--compression",
            "zip",
        ],
        2,
        "zip",
    );
    fails_with(
        &[
            "dump",
            s,
            "--format",
            "sql",
            "--out",
            o,
            "--tables",
            "texts,nope",
        ],
        1,
        "unknown table \"nope\"",
    );
    fails_with(
        &["dump", s, "--format", "sql", "--out", o, "--id", "../evil"],
        1,
        "invalid dump id",
    );
    fails_with(
        &["resume", "dump_19990101-000000", "--out", o],
        1,
        "no dump with id",
    );
    fails_with(
        &["status", "dump_19990101-000000", "--out", o],
        1,
        "no dump with id",
    );
    let bad_env = chunkdump()
        .env("DUMP_CHUNK_SIZE", "lots")
        .args(["dump", s, "--format", "sql", "--out", o])
        .output()
        .unwrap();
    assert_eq!(bad_env.status.code(), Some(1));
    assert!(
        stderr_of(&bad_env).contains("DUMP_CHUNK_SIZE"),
        "{}",
        stderr_of(&bad_env)
    );
    assert!(dump_files(Path::new(o)).is_empty());
    // An explicit id that exists is refused, not overwritten.
    dump_ok(
        &src,
        Path::new(o),
        &["--format", "sql", "--id", "taken", "--tables", "texts"],
    );
    fails_with(
        &["dump", s, "--format", "sql", "--out", o, "--id", "taken"],
        1,
        "already exists",
    );
}

#[test]
fn a_schema_change_between_chunks_fails_the_dump_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 50_000);
    let out = dir.path().join("out");
    let mut child = chunkdump()
        .args([
            "dump",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            "csv",
            "--id",
            "moving",
        ])
        .args([
            "--chunk-size",
            "500",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "50",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Change the schema once the dump has planned and committed a chunk (a fixed pause
    // would race with a slow start, and the dump would plan the new schema).
    wait_for_chunks(&mut child, "moving", &out, 1);
    let c = rusqlite::Connection::open(&src).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute_batch("ALTER TABLE items ADD COLUMN extra TEXT")
        .unwrap();
    let result = child.wait_with_output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    let err = stderr_of(&result);
    assert!(err.contains("schema changed"), "{err}");
    // Not a terminal: plain text, and the failure said once, on one `error:` line.
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escapes on a non-terminal: {err:?}"
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("schema changed")).count(),
        1,
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: ") && l.contains("schema changed")),
        "{err}"
    );
    assert!(
        dump_files(&out).is_empty(),
        "partial dump left: {:?}",
        walk_names(&out)
    );
    let staging = out.join(".chunkdump/staging/moving");
    assert!(
        std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0) == 0,
        "staging left behind"
    );
    assert!(
        std::fs::read_dir(out.join(".chunkdump/uploads"))
            .unwrap()
            .count()
            == 0,
        "upload left behind"
    );
}

fn walk_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path().display().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_database_locked_by_a_writer_pauses_the_dump_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 30_000);
    let (_, reference) = dump_ok(
        &src,
        &dir.path().join("ref"),
        &["--format", "sql", "--id", "l", "--breathe-ms", "0"],
    );
    // Hold an exclusive lock longer than the 5 s busy timeout while the dump runs.
    let locker = rusqlite::Connection::open(&src).unwrap();
    let out = dir.path().join("out");
    let mut child = chunkdump()
        .args([
            "dump",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            "sql",
            "--id",
            "l",
        ])
        .args([
            "--chunk-size",
            "500",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "50",
        ])
        .env("RUST_LOG", "chunkdump=warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Lock once the dump is under way (at least 50 chunks with their pauses are left).
    wait_for_chunks(&mut child, "l", &out, 1);
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    std::thread::sleep(Duration::from_millis(6500));
    locker.execute_batch("COMMIT").unwrap();
    let result = child.wait_with_output().unwrap();
    assert!(result.status.success(), "{}", stderr_of(&result));
    assert!(
        stderr_of(&result).contains("busy"),
        "the busy pause should be logged: {}",
        stderr_of(&result)
    );
    let path = String::from_utf8(result.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read(path).unwrap(),
        std::fs::read(reference).unwrap()
    );
}

/// A write that fails as on a full disk (a file-size limit: EFBIG) pauses the dump
/// instead of failing it: exit 75 with the error and the resume command, status
/// `interrupted`, everything committed kept; without the limit, `resume` completes it
/// and the dump loads into the database it came from.
#[test]
fn a_write_failure_like_a_full_disk_pauses_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 60_000);
    let out = dir.path().join("out");
    // Writes past 3 MB fail with EFBIG (SIGXFSZ ignored), as writes to a full disk fail.
    let result = std::process::Command::new("bash")
        .args([
            "-c",
            r#"trap "" XFSZ; ulimit -f 3000; exec "$0" "$@""#,
            env!("CARGO_BIN_EXE_chunkdump"),
        ])
        .args([
            "dump",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            "sql",
            "--id",
            "full",
            "--breathe-ms",
            "0",
        ])
        .output()
        .unwrap();
    let stderr = stderr_of(&result);
    assert_eq!(result.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    let resume = format!("chunkdump resume full --out {}", out.display());
    assert!(
        stderr.contains(&format!("resume it with: {resume}")),
        "{stderr}"
    );
    let s = run(&["status", "full", "--out", out.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["status"], "interrupted", "{v}");
    assert_eq!(v["resumeWith"], resume.as_str(), "{v}");
    let o = run(&[
        "resume",
        "full",
        "--out",
        out.to_str().unwrap(),
        "--breathe-ms",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let dumped = out.join("full.sql");
    let restored = dir.path().join("restored.db");
    load_with_shell(&dumped, &restored);
    assert_same_db(&src, &restored);
}

/// A fault in the store that is not the dump's data (its staging directory replaced by
/// a file, as a cleanup script gone wrong might leave it) pauses the dump instead of
/// failing it: exit 75 naming the path, everything committed kept, and once the
/// directory is back, `resume` completes the dump exactly.
#[test]
fn a_broken_store_directory_pauses_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 20_000);
    let out = dir.path().join("out");
    let mut child = chunkdump()
        .args([
            "dump",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--format", "sql", "--id", "broken", "--chunk-size", "500"])
        .args([
            "--budget-ms",
            "0",
            "--breathe-ms",
            "300",
            "--part-size",
            "5242880",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_chunks(&mut child, "broken", &out, 1);
    let uploads = out.join(".chunkdump/staging");
    std::fs::rename(&uploads, dir.path().join("staging-aside")).unwrap();
    std::fs::write(&uploads, "not a directory").unwrap();
    let o = child.wait_with_output().unwrap();
    let stderr = stderr_of(&o);
    assert_eq!(o.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains(".chunkdump/staging"), "{stderr}");
    let s = run(&["status", "broken", "--out", out.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["status"], "interrupted", "{v}");
    assert!(v["chunks"].as_u64().unwrap() >= 1, "{v}");
    // The job's error (an API caller would read it) names the file by its place in the
    // store, not by this machine's path.
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(".chunkdump/staging"), "{message}");
    assert!(
        !message.contains(&*dir.path().to_string_lossy()),
        "{message}"
    );
    std::fs::remove_file(&uploads).unwrap();
    std::fs::rename(dir.path().join("staging-aside"), &uploads).unwrap();
    let r = run(&[
        "resume",
        "broken",
        "--out",
        out.to_str().unwrap(),
        "--breathe-ms",
        "0",
    ]);
    assert!(r.status.success(), "{}", stderr_of(&r));
    let restored = dir.path().join("restored.db");
    load_with_shell(&out.join("broken.sql"), &restored);
    assert_same_db(&src, &restored);
}

/// Commands that make no dumps never create a store: a mistyped `--out` is an error
/// naming it, and the directory still does not exist afterwards (a cron `prune` with a
/// typo fails instead of "succeeding" forever).
#[test]
fn read_only_commands_do_not_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("mistyped");
    let t = typo.to_str().unwrap();
    for args in [
        vec!["status", "dump_x", "--out", t],
        vec!["verify", "dump_x", "--out", t],
        vec!["prune", "--keep-last", "1", "--dry-run", "--out", t],
        vec!["prune", "--keep-last", "1", "--out", t],
    ] {
        fails_with(&args, 1, "holds no chunkdump dumps");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
}

/// An invalid `RUST_LOG` is refused, not silently replaced by the default.
#[test]
fn an_invalid_log_filter_is_an_error() {
    let o = chunkdump()
        .args(["status", "x", "--out", "/nonexistent"])
        .env("RUST_LOG", "bogus===")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("RUST_LOG"), "{}", stderr_of(&o));
}

/// `chunkdump status … | head -1`: a reader that went away ends the command quietly (by
/// SIGPIPE, as other tools end), never with a panic and its backtrace.
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let out = dir.path().join("out");
    dump_ok(&src, &out, &["--format", "sql", "--id", "d1"]);
    // The read end is closed before the command starts: its first write fails for sure.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = chunkdump()
        .args(["status", "d1", "--out", out.to_str().unwrap()])
        .stdout(writer)
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {err}",
        o.status
    );
}

/// Every file and directory a dump creates (dump files, manifest, staging, progress,
/// the snapshot directory) is at most as readable as a 0600 database: its owner's alone.
#[test]
fn dump_files_are_no_more_readable_than_the_database() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("private.db");
    build_edge_db(&src);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = dir.path().join("out");
    dump_ok(&src, &out, &["--format", "sql", "--snapshot", "--id", "s"]);
    dump_ok(
        &src,
        &out,
        &["--format", "csv", "--compression", "gzip", "--id", "c"],
    );
    let mut seen = 0;
    let mut pending = vec![out.clone()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        seen += 1;
    }
    assert!(seen > 8, "only {seen} entries checked");
    assert!(
        out.join(".chunkdump/snapshots").is_dir(),
        "the snapshot directory was checked"
    );
}

/// The same through `chunkdump serve --database-root`, which dumps many databases of any
/// permissions: a 0600 database's dump is its owner's alone too.
#[tokio::test(flavor = "multi_thread")]
async fn dumps_served_from_a_database_root_are_no_more_readable_than_the_database() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let src = root.join("private.db");
    build_edge_db(&src);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = dir.path().join("out");
    let token = "serve-root-permissions-token";
    let mut child = chunkdump()
        .env("CHUNKDUMP_API_TOKEN", token)
        .args([
            "serve",
            "--database-root",
            root.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string();
    let client = reqwest::Client::new();
    let started: serde_json::Value = client
        .post(format!("{base}/export/dump"))
        .bearer_auth(token)
        .json(&serde_json::json!({"database": "private.db", "format": "sql"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status_url = started["statusUrl"].as_str();
    let path = format!(
        "{base}{}",
        status_url.unwrap_or_else(|| panic!("{started}"))
    );
    let mut status = serde_json::Value::Null;
    for _ in 0..600 {
        status = client
            .get(&path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status["status"], "completed", "{status}");
    let mut seen = 0;
    let mut pending = vec![out.clone()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        seen += 1;
    }
    assert!(seen > 4, "only {seen} entries checked");
}

/// A database a writer holds locked when a dump starts: the error says what is true
/// (nothing was created, nothing saved), and no dump id is printed.
#[test]
fn a_database_locked_at_start_is_refused_truthfully() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 1000);
    let locker = rusqlite::Connection::open(&src).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = dir.path().join("out");
    let o = run(&[
        "dump",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "sql",
    ]);
    locker.execute_batch("COMMIT").unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(75), "a temporary failure: {err}");
    assert!(err.contains("locked by a writer"), "{err}");
    assert!(!err.contains("saved"), "{err}");
    assert!(
        o.stdout.is_empty(),
        "an id was printed: {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// A store that cannot be reached gives one line naming the endpoint and the cause
/// (connection refused, DNS lookup, TLS), with no debug dump of the SDK's error types.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_stores_are_named_in_one_line_with_their_cause() {
    // A TLS server whose certificate nobody trusts.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.cert.pem().into_bytes(),
        cert.key_pair.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let handle = axum_server::Handle::new();
    let server =
        axum_server::bind_rustls("127.0.0.1:0".parse().unwrap(), config).handle(handle.clone());
    tokio::spawn(async move { server.serve(axum::Router::new().into_make_service()).await });
    let tls = handle.listening().await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("x.db");
    for (endpoint, cause) in [
        (
            format!("http://127.0.0.1:{closed_port}"),
            "connection refused",
        ),
        (
            "https://chunkdump-test.invalid".to_string(),
            "DNS lookup failed",
        ),
        (format!("https://localhost:{}", tls.port()), "TLS failed"),
    ] {
        let o = tokio::task::spawn_blocking({
            let (endpoint, into) = (endpoint.clone(), into.clone());
            move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_chunkdump"))
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("R2_ENDPOINT", &endpoint)
                    .env("R2_ACCESS_KEY_ID", "key")
                    .env("R2_SECRET_ACCESS_KEY", "secret")
                    .args(["restore", "--latest", "--store", "s3://bucket/p", "--into"])
                    .arg(&into)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(
            lines[0].contains(&format!("at {endpoint}: {cause} (")),
            "{stderr}"
        );
        for debug in ["DispatchFailure(", "ConnectorError {", "source:"] {
            assert!(!lines[0].contains(debug), "a debug dump: {stderr}");
        }
    }
}

/// No AWS credentials anywhere: one `error:` line naming the service, the table, where
/// it is and what is missing; no SDK warnings, no instance-metadata lookups.
#[test]
fn missing_credentials_are_one_line_naming_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = chunkdump();
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("R2_") {
            cmd.env_remove(name);
        }
    }
    let o = cmd
        .env("HOME", dir.path())
        .args([
            "list",
            "--store",
            "s3://bucket/p",
            "--progress",
            "dynamodb://jobs",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for part in [
        "DynamoDB table jobs",
        "no AWS credentials",
        "no AWS_REGION set",
    ] {
        assert!(err.contains(part), "{part:?} in {err}");
    }
    assert!(!err.contains("IMDS") && !err.contains("WARN"), "{err}");
}
