//! A bucket is enough: the CLI against an S3 server (s3s-fs, which checks signatures)
//! with only `R2_*` set — no AWS variable at all — and progress in a local SQLite file
//! in the state directory: dump, status, list, verify, resume, restore.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::cloud::{sdk_config, servers, skip_without_servers, unique};
use common::*;

/// `chunkdump` with a clean environment: `R2_*`, a state directory and HOME only.
fn bucket_cli(state: &Path, r2: &[(&str, &str)]) -> impl Fn(&[&str]) -> Output {
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
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = sdk_config(&sv.s3s, &sv.s3s_key, &sv.s3s_secret).await;
        let s3 = chunkdump::cloud::S3Store::new(&config, &format!("s3://{bucket}")).unwrap();
        s3.ensure_bucket().await.unwrap();
    });
    let state = work.path().join("state");
    let cli = bucket_cli(
        &state,
        &[
            ("R2_ENDPOINT", &sv.s3s),
            ("R2_ACCESS_KEY_ID", &sv.s3s_key),
            ("R2_SECRET_ACCESS_KEY", &sv.s3s_secret),
        ],
    );
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
