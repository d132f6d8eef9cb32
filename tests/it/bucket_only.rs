//! A bucket is enough: the CLI against an S3 server (s3s-fs, which checks signatures)
//! with only `R2_*` set — no AWS variable at all — and progress in a local SQLite file
//! in the state directory: dump, status, list, verify, resume, restore.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::cloud::{servers, skip_without_servers, unique};
use common::*;

/// `chunkdump` with a clean environment: `R2_*`, a state directory and HOME only.
pub(crate) fn bucket_cli(state: &Path, r2: &[(&str, &str)]) -> impl Fn(&[&str]) -> Output {
    let r2: Vec<(String, String)> = r2
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let state = state.to_path_buf();
    move |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chunkdump"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", state.join("home"))
            .env("XDG_STATE_HOME", &state)
            .envs(r2.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args)
            .output()
            .unwrap()
    }
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn r2_credentials_and_a_local_progress_file_are_enough() {
    if skip_without_servers() {
        return;
    }
    let sv = servers();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("edge.db");
    build_edge_db(&src);
    let bucket = unique("r2only");
    let state = work.path().join("state");
    let cli = bucket_cli(
        &state,
        &[
            ("R2_ENDPOINT", &sv.s3s),
            ("R2_ACCESS_KEY_ID", &sv.s3s_key),
            ("R2_SECRET_ACCESS_KEY", &sv.s3s_secret),
        ],
    );
    // `setup` with the bucket alone creates it; progress needs no setup.
    let ready = ok(&cli(&["setup", "--store", &format!("s3://{bucket}")]));
    assert!(ready.contains("local file"), "{ready}");
    let store = format!("s3://{bucket}/backups");
    // Nothing is known before the first dump, and asking creates nothing.
    let o = cli(&["list", "--store", &store]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        !state.join("chunkdump").exists()
            || std::fs::read_dir(state.join("chunkdump"))
                .unwrap()
                .next()
                .is_none()
    );

    let out = ok(&cli(&[
        "dump",
        src.to_str().unwrap(),
        "--store",
        &store,
        "--format",
        "json",
        "--compression",
        "zstd",
    ]));
    let id = out.lines().next().unwrap().to_string();
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with(&format!("{store}/{id}")),
        "{out}"
    );
    let progress_files: Vec<_> = std::fs::read_dir(state.join("chunkdump"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(progress_files.len(), 1, "{progress_files:?}");

    let status: serde_json::Value =
        serde_json::from_str(&ok(&cli(&["status", &id, "--store", &store]))).unwrap();
    assert_eq!(status["status"], "completed");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&cli(&["list", "--store", &store, "--json"]))).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["format"], "json");
    assert_eq!(listed[0]["compression"], "zstd");
    assert!(listed[0]["bytes"].as_u64().unwrap() > 0);
    ok(&cli(&["verify", &id, "--store", &store]));
    // resume of a completed dump prints its path.
    let resumed = ok(&cli(&["resume", &id, "--store", &store]));
    assert!(resumed.contains(&id), "{resumed}");
    let into = work.path().join("back.db");
    ok(&cli(&[
        "restore",
        &id,
        "--store",
        &store,
        "--into",
        into.to_str().unwrap(),
    ]));
    assert_same_db(&src, &into);
    // A drill, with the progress file (recorded for `list`) and, like `restore`, from
    // the bucket alone on a machine that keeps no progress of it.
    let drilled = ok(&cli(&["drill", &id, "--store", &store]));
    assert!(drilled.contains("passed"), "{drilled}");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&cli(&["list", "--store", &store, "--json"]))).unwrap();
    assert_eq!(listed[0]["lastDrill"]["passed"], true, "{listed}");
    let elsewhere = bucket_cli(
        &work.path().join("elsewhere"),
        &[
            ("R2_ENDPOINT", &sv.s3s),
            ("R2_ACCESS_KEY_ID", &sv.s3s_key),
            ("R2_SECRET_ACCESS_KEY", &sv.s3s_secret),
        ],
    );
    let drilled = ok(&elsewhere(&["drill", &id, "--store", &store]));
    assert!(drilled.contains("passed"), "{drilled}");
    let o = elsewhere(&["drill", "dump_19990101-000000", "--store", &store]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no completed dump dump_19990101-000000"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Half the R2 variables is an error naming the missing ones, before any request.
    let half = bucket_cli(&state, &[("R2_ENDPOINT", &sv.s3s)]);
    let o = half(&["list", "--store", &store]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("R2_ACCESS_KEY_ID") && stderr.contains("R2_SECRET_ACCESS_KEY"),
        "{stderr}"
    );
    // A bad URL is refused before any AWS setup.
    let o = cli(&["list", "--store", "s3:/nobucket"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("s3://"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An s3s-fs of this test's own, on `port`, serving `root` (its objects are files there,
/// so they outlive the process).
pub(crate) fn start_s3s(port: u16, root: &Path, key: &str, secret: &str) -> std::process::Child {
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/tools/bin/s3s-fs");
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", key, "--secret-key", secret])
        .arg(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("s3s-fs is installed by scripts/test-servers install");
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "s3s-fs did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

/// A store that refuses every request for a while (its server stopped) past the
/// retries pauses the dump: exit 75, `interrupted` with the resume command, everything
/// committed kept. Once the server is back, `resume` completes the dump byte-identical
/// to an uninterrupted one.
#[test]
fn a_store_down_past_its_retries_pauses_the_dump_until_resumed() {
    if skip_without_servers() {
        return;
    }
    let (key, secret) = ("AKIDDOWNTEST", "down-test-secret");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("bulk.db");
    build_bulk_db(&src, 60_000);
    let root = work.path().join("s3s-root");
    std::fs::create_dir_all(root.join("down")).unwrap(); // the bucket
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = start_s3s(port, &root, key, secret);
    let endpoint = format!("http://127.0.0.1:{port}");
    let cli = bucket_cli(
        &work.path().join("state"),
        &[
            ("R2_ENDPOINT", &endpoint),
            ("R2_ACCESS_KEY_ID", key),
            ("R2_SECRET_ACCESS_KEY", secret),
        ],
    );
    let flags = [
        "--format",
        "sql",
        "--id",
        "d1",
        "--chunk-size",
        "500",
        "--budget-ms",
        "1",
    ];
    let reference_flags = [&flags[..], &["--breathe-ms", "0"]].concat();
    let (_, reference) = dump_ok(&src, &work.path().join("ref"), &reference_flags);
    let store = "s3://down/backups";
    // Many small chunks a second apart: the dump is far from done when the store stops.
    let dump = Command::new(env!("CARGO_BIN_EXE_chunkdump"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", work.path().join("state/home"))
        .env("XDG_STATE_HOME", work.path().join("state"))
        .env("R2_ENDPOINT", &endpoint)
        .env("R2_ACCESS_KEY_ID", key)
        .env("R2_SECRET_ACCESS_KEY", secret)
        .args([
            "dump",
            src.to_str().unwrap(),
            "--store",
            store,
            "--breathe-ms",
            "1000",
        ])
        .args(flags)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let o = cli(&["status", "d1", "--store", store]);
        let chunks = serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v["chunks"].as_u64())
            .unwrap_or(0);
        if chunks > 0 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no chunk committed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    // The chunks after it fail on the store, are retried (the SDK's retries, then the
    // state machine's, about two minutes in all) and then pause the dump.
    let paused = dump.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&paused.stderr);
    assert_eq!(paused.status.code(), Some(75), "{err}");
    let resume = format!("chunkdump resume d1 --store {store}");
    assert!(err.contains(&format!("resume it with: {resume}")), "{err}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&cli(&["status", "d1", "--store", store]))).unwrap();
    assert_eq!(status["status"], "interrupted", "{status}");
    assert_eq!(status["resumeWith"], resume.as_str(), "{status}");
    assert!(status["chunks"].as_u64().unwrap() > 0, "{status}");
    let listed = ok(&cli(&["list", "--store", store, "--json"]));
    assert!(listed.contains("\"interrupted\""), "{listed}");

    let mut server = start_s3s(port, &root, key, secret);
    let out = ok(&cli(&[
        "resume",
        "d1",
        "--store",
        store,
        "--breathe-ms",
        "0",
    ]));
    assert!(
        out.trim_end().ends_with("s3://down/backups/d1.sql"),
        "{out}"
    );
    ok(&cli(&["verify", "d1", "--store", store]));
    let dumped = std::fs::read(root.join("down/backups/d1.sql")).unwrap();
    server.kill().unwrap();
    let _ = server.wait();
    assert!(
        dumped == std::fs::read(&reference).unwrap(),
        "the resumed dump differs from the uninterrupted one"
    );
}

/// A bucket that does not exist is a mistake to fix, not a pause: `dump` exits 1 naming
/// the bucket and `chunkdump setup`, and leaves no job behind (after `setup`, the same
/// command's `list` shows no dump of the failed attempt).
#[test]
fn a_missing_bucket_is_an_error_that_names_setup_and_leaves_no_job() {
    if skip_without_servers() {
        return;
    }
    let sv = servers();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("bulk.db");
    build_bulk_db(&src, 20);
    let bucket = unique("missing");
    let state = work.path().join("state");
    let cli = bucket_cli(
        &state,
        &[
            ("R2_ENDPOINT", &sv.s3s),
            ("R2_ACCESS_KEY_ID", &sv.s3s_key),
            ("R2_SECRET_ACCESS_KEY", &sv.s3s_secret),
        ],
    );
    let store = format!("s3://{bucket}/prod");
    let o = cli(&[
        "dump",
        src.to_str().unwrap(),
        "--store",
        &store,
        "--format",
        "sql",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("bucket \"{bucket}\" does not exist"))
            && err.contains(&format!("chunkdump setup --store s3://{bucket}")),
        "{err}"
    );
    ok(&cli(&["setup", "--store", &format!("s3://{bucket}")]));
    let o = cli(&["list", "--store", &store, "--json"]);
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(!listed.contains("dump_"), "a job was left behind: {listed}");
}
