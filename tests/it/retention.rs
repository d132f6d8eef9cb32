//! `chunkdump prune` against the local directory store and against S3 + DynamoDB on
//! moto: after N+3 completed dumps, exactly the newest N remain (files, manifests and
//! job records), the others are gone whole, and a running dump survives.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cloud::{cli_env, servers, unique};
use common::{build_bulk_db, chunkdump};

const KEEP: usize = 2;

/// The `chunkdump` command with the backend's environment.
fn cmd(env: &[(&'static str, String)]) -> Command {
    let mut c = chunkdump();
    c.envs(env.iter().cloned());
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn status(env: &[(&'static str, String)], loc: &[String], id: &str) -> Option<serde_json::Value> {
    let o = cmd(env).args(["status", id]).args(loc).output().unwrap();
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).unwrap())
}

/// Runs the scenario against one backend (`loc`: its location arguments).
fn prune_keeps_the_newest(env: &[(&'static str, String)], loc: &[String], formats: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 3000);
    let ids: Vec<String> = (0..KEEP + 3).map(|i| format!("nightly-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let format = formats[i % formats.len()];
        ok(cmd(env)
            .args([
                "dump",
                src.to_str().unwrap(),
                "--format",
                format,
                "--id",
                id,
                "--breathe-ms",
                "0",
            ])
            .args(loc));
        std::thread::sleep(Duration::from_millis(20)); // distinct completion times
    }
    // A running dump: one-row slices with a long breath, stopped after its first chunk.
    let mut running = cmd(env)
        .args([
            "dump",
            src.to_str().unwrap(),
            "--format",
            "sql",
            "--id",
            "running",
            "--chunk-size",
            "1",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "60000",
        ])
        .args(loc)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while status(env, loc, "running").is_none_or(|s| s["chunks"].as_u64().unwrap_or(0) < 1) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the running dump never committed a chunk"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    running.kill().unwrap();
    running.wait().unwrap();

    let dry = ok(cmd(env)
        .args(["prune", "--keep-last", &KEEP.to_string(), "--dry-run"])
        .args(loc));
    assert!(dry.contains("would delete 3 completed dumps"), "{dry}");
    assert!(
        status(env, loc, &ids[0]).is_some(),
        "a dry run deletes nothing"
    );

    let out = ok(cmd(env)
        .args(["prune", "--keep-last", &KEEP.to_string()])
        .args(loc));
    let deleted: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("deleted nightly"))
        .collect();
    assert_eq!(deleted.len(), 3, "{out}");
    for id in &ids[..3] {
        assert!(
            deleted
                .iter()
                .any(|l| l.starts_with(&format!("deleted {id} "))),
            "{id} not reported: {out}"
        );
        assert!(status(env, loc, id).is_none(), "{id}'s record is gone");
    }
    assert!(out.lines().last().unwrap().contains("kept 2"), "{out}");
    // The newest N remain whole: verify re-reads every file against its manifest.
    for id in &ids[3..] {
        assert_eq!(status(env, loc, id).unwrap()["status"], "completed");
        let v = ok(cmd(env).args(["verify", id]).args(loc));
        assert!(v.starts_with("ok:"), "{id}: {v}");
    }
    // (Killed, so `interrupted` where its runner is known to be gone: local progress.)
    let s = status(env, loc, "running").expect("a running dump survives a prune");
    let local = loc.iter().any(|a| a == "--out");
    assert_eq!(
        s["status"],
        if local { "interrupted" } else { "processing" }
    );
    // A policy is required, and bad values are refused without deleting anything.
    for bad in [
        &["prune"][..],
        &["prune", "--keep-last", "0"],
        &["prune", "--keep-days", "-1"],
    ] {
        let o = cmd(env).args(bad).args(loc).output().unwrap();
        // Usage errors, as cli.md says: exit 2.
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {o:?}");
    }
    assert!(status(env, loc, &ids[3]).is_some());
}

#[test]
fn prune_on_the_local_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let loc = vec!["--out".to_string(), out.display().to_string()];
    prune_keeps_the_newest(&[], &loc, &["sql", "csv", "json"]);
    // The deleted dumps' files and manifests are gone from the directory.
    for i in 0..3 {
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(&format!("nightly-{i}")))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    assert!(
        Path::new(&out).join("nightly-4.json").exists()
            || Path::new(&out).join("nightly-4.sql").exists()
            || out.join("nightly-4").is_dir()
    );
}

#[test]
fn prune_on_s3_and_dynamodb() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let env = cli_env(&sv.moto, &sv.moto, "moto", "moto");
    let (bucket, table) = (unique("prune"), unique("prunejobs"));
    let (store, progress) = (
        format!("s3://{bucket}/dumps"),
        format!("dynamodb://{table}"),
    );
    ok(cmd(&env).args(["setup", "--store", &store, "--progress", &progress]));
    let loc = vec![
        "--store".to_string(),
        store.clone(),
        "--progress".to_string(),
        progress,
    ];
    prune_keeps_the_newest(&env, &loc, &["sql", "csv"]);
    // Nothing of the deleted dumps is left in the bucket.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let keys: Vec<String> = rt.block_on(async {
        let client =
            aws_sdk_s3::Client::new(&common::cloud::sdk_config(&sv.moto, "moto", "moto").await);
        let out = client
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    });
    for i in 0..3 {
        assert!(
            !keys.iter().any(|k| k.contains(&format!("nightly-{i}"))),
            "left behind: {keys:?}"
        );
    }
    assert!(keys.iter().any(|k| k.contains("nightly-4")), "{keys:?}");
}
