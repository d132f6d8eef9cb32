//! End to end on real servers: dumps to S3 (moto, s3s-fs) with progress in DynamoDB
//! (moto) are byte-identical to local dumps, in equal parts, survive SIGKILL, and meet
//! store faults with an identical dump or a clean failure.

use crate::common;
use chunkdump::ports::ProgressReader as _;

use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chunkdump::chunk::ChunkOptions;
use chunkdump::cloud::{DynamoProgress, S3Store};
use chunkdump::lifecycle::create_dump;
use chunkdump::model::{Compression, DumpSpec, Format, JobStatus};
use chunkdump::ports::ObjectReader;
use common::cloud::{cli_env, sdk_config, servers, unique};
use common::lib_dump::{lib_dump, lib_dump_to, run_local, FaultyStore, SpyStore};
use common::*;

const PART: u64 = 5 << 20;

async fn cloud_stores(
    endpoint: &str,
    key: &str,
    secret: &str,
    moto: &str,
) -> (S3Store, DynamoProgress) {
    let s3 = S3Store::new(
        &sdk_config(endpoint, key, secret).await,
        &format!("s3://{}/dumps", unique("e2e")),
    )
    .unwrap();
    s3.ensure_bucket().await.unwrap();
    let dynamo = DynamoProgress::new(
        &sdk_config(moto, "moto", "moto").await,
        &format!("dynamodb://{}", unique("jobs")),
    )
    .unwrap();
    dynamo.ensure_table().await.unwrap();
    (s3, dynamo)
}

/// The API's state on S3 and DynamoDB (token `admin-token`), dumps and fleets run by the
/// local interpreter.
fn api_on(
    s3: S3Store,
    dynamo: DynamoProgress,
    settings: chunkdump::api::ApiSettings,
) -> chunkdump::api::AppState {
    use std::sync::Arc;
    let (objects, progress) = (Arc::new(s3), Arc::new(dynamo));
    let tasks = chunkdump::tasks::Tasks {
        objects: objects.clone(),
        progress: progress.clone(),
        notifier: None,
        chunk: ChunkOptions {
            budget: Duration::from_secs(25),
            ..Default::default()
        },
        breathe: Duration::ZERO,
        whole_seconds: false,
        chunks_per_execution: 1000,
        drills: None,
        drill_metrics: None,
    };
    let runner = Arc::new(chunkdump::runner::LocalRunner::new(tasks).unwrap());
    let state = chunkdump::api::AppState {
        objects,
        progress: progress.clone(),
        guard: progress.clone(),
        rates: progress,
        orchestrator: runner.clone(),
        tokens: chunkdump::api::Tokens::new("admin-token", None).unwrap(),
        settings,
    };
    runner.run_fleets_with(Arc::new(chunkdump::service::fleet_tasks::FleetTasks {
        service: state.service(),
    }));
    state
}

fn many_chunk_dump_matches_local(endpoint: &str, key: &str, secret: &str) {
    let sv = servers();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 100_000);
    let local = lib_dump(
        &src,
        Format::Sql,
        Compression::None,
        1000,
        Duration::from_secs(60),
        PART,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cloud = rt.block_on(async {
        let (s3, dynamo) = cloud_stores(endpoint, key, secret, &sv.moto).await;
        let spy = std::sync::Arc::new(SpyStore {
            inner: s3,
            completed: Mutex::new(Vec::new()),
        });
        lib_dump_to(
            &spy,
            std::sync::Arc::new(dynamo),
            &src,
            Format::Sql,
            Compression::None,
            2000,
            Duration::ZERO,
            PART,
        )
        .await
    });
    assert!(
        cloud.chunks > 20,
        "expected many chunks, got {}",
        cloud.chunks
    );
    assert_eq!(
        cloud.files, local.files,
        "the S3 object differs from the local dump"
    );
    let (_, sizes) = &cloud.uploads[0];
    assert!(
        sizes.len() >= 2 && sizes[..sizes.len() - 1].iter().all(|&s| s == PART),
        "parts {sizes:?}"
    );
}

#[test]
fn many_chunk_dump_to_moto_matches_the_local_dump_in_equal_parts() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    many_chunk_dump_matches_local(&sv.moto, "moto", "moto");
}

#[test]
fn many_chunk_dump_to_s3s_fs_matches_the_local_dump_in_equal_parts() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    many_chunk_dump_matches_local(&sv.s3s, &sv.s3s_key, &sv.s3s_secret);
}

#[test]
fn cli_dump_to_s3_and_dynamodb_survives_sigkill() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 100_000);
    let (_, reference) = dump_ok(
        &src,
        &dir.path().join("ref"),
        &["--format", "sql", "--id", "k", "--breathe-ms", "0"],
    );
    let env = cli_env(&sv.s3s, &sv.moto, &sv.s3s_key, &sv.s3s_secret);
    let (bucket, table) = (unique("cli"), unique("jobs"));
    let (store, progress) = (format!("s3://{bucket}/p"), format!("dynamodb://{table}"));
    let setup = chunkdump()
        .envs(env.clone())
        .args(["setup", "--store", &store, "--progress", &progress])
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let loc = ["--store", store.as_str(), "--progress", progress.as_str()];
    let status = |id: &str| -> Option<serde_json::Value> {
        let o = chunkdump()
            .envs(env.clone())
            .args(["status", id])
            .args(loc)
            .output()
            .unwrap();
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).unwrap())
    };
    let mut child = chunkdump()
        .envs(env.clone())
        .args([
            "dump",
            src.to_str().unwrap(),
            "--format",
            "sql",
            "--id",
            "k",
            "--part-size",
            "5242880",
        ])
        .args(loc)
        .args([
            "--chunk-size",
            "1000",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "10",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while status("k").is_none_or(|s| s["chunks"].as_u64().unwrap() < 30) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "dump too slow to reach 30 chunks"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "dump ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status("k").unwrap()["status"], "processing");
    let resumed = chunkdump()
        .envs(env.clone())
        .args(["resume", "k", "--breathe-ms", "0"])
        .args(loc)
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let stdout = String::from_utf8(resumed.stdout).unwrap();
    assert_eq!(
        stdout.lines().last().unwrap(),
        format!("s3://{bucket}/p/k.sql")
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let got = rt.block_on(async {
        let s3 = S3Store::new(
            &sdk_config(&sv.s3s, &sv.s3s_key, &sv.s3s_secret).await,
            &store,
        )
        .unwrap();
        s3.get("k.sql").await.unwrap().unwrap()
    });
    assert_eq!(got, std::fs::read(Path::new(&reference)).unwrap());
    // The manifest written on S3 proves the dump killed and resumed across many chunks:
    // its file digest equals one computed here from the bytes read back.
    let manifest: serde_json::Value = rt.block_on(async {
        let s3 = S3Store::new(
            &sdk_config(&sv.s3s, &sv.s3s_key, &sv.s3s_secret).await,
            &store,
        )
        .unwrap();
        serde_json::from_slice(&s3.get("k.manifest.json").await.unwrap().unwrap()).unwrap()
    });
    let mut outer = <sha2::Sha256 as sha2::Digest>::new();
    for piece in got.chunks(5 << 20) {
        sha2::Digest::update(&mut outer, <sha2::Sha256 as sha2::Digest>::digest(piece));
    }
    assert_eq!(
        manifest["files"][0]["sha256"],
        hex::encode(sha2::Digest::finalize(outer))
    );
    let verified = chunkdump()
        .envs(env.clone())
        .args(["verify", "k", "--against", src.to_str().unwrap()])
        .args(loc)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "verify on S3: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
}

async fn faulty_dump(
    src: &Path,
    every: u32,
    permanent: bool,
) -> (
    Result<(), chunkdump::DumpError>,
    S3Store,
    DynamoProgress,
    String,
) {
    let sv = servers();
    let (s3, dynamo) = cloud_stores(&sv.moto, "moto", "moto", &sv.moto).await;
    let faulty = std::sync::Arc::new(FaultyStore::new(s3.clone(), every, permanent));
    let spec = DumpSpec {
        database: src.display().to_string(),
        format: Format::Sql,
        compression: Compression::Gzip,
        tables: None,
        include_schema: true,
        slice_rows: chunkdump::model::SliceRows::new(2000).unwrap(),
        part_size: PART,
        snapshot: false,
        snapshot_max_block_ms: None,
        // Small frames, so zero-budget chunks stay many (a chunk ends where one does).
        frame_size: Some(256 << 10),
        shown_as: None,
        drill: false,
        recipients: Vec::new(),
    };
    let job = create_dump(&dynamo, spec, None).await.unwrap();
    let opts = ChunkOptions {
        budget: Duration::ZERO,
        ..Default::default()
    };
    // Through the state machine: its Retry on `Retryable` and its Catch on `Fatal`.
    let result = run_local(
        faulty,
        std::sync::Arc::new(dynamo.clone()),
        &job.id,
        opts,
        Duration::ZERO,
        1000,
    )
    .await
    .map(|_| ());
    (result, s3, dynamo, job.id)
}

#[test]
fn transient_store_faults_still_give_an_identical_dump() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 100_000);
    let local = lib_dump(
        &src,
        Format::Sql,
        Compression::None,
        1000,
        Duration::from_secs(60),
        PART,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (result, s3, dynamo, id) = faulty_dump(&src, 4, false).await;
        result.expect("transient faults are retried");
        let job = dynamo.get(&id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Completed);
        let gz = s3.get(&job.files[0].key).await.unwrap().unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut plain)
            .unwrap();
        assert_eq!(
            plain, local.files[0].1,
            "the dump differs after retried faults"
        );
    });
}

#[test]
fn a_permanent_store_fault_fails_cleanly_with_the_upload_aborted() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 100_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (result, s3, dynamo, id) = faulty_dump(&src, 9, true).await;
        let err = result.expect_err("a permanent fault fails the dump");
        assert!(err.to_string().contains("injected fault"), "{err}");
        let job = dynamo.get(&id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        assert!(job.error.unwrap().message.contains("injected fault"));
        assert!(
            s3.get(&format!("{id}.sql.gz")).await.unwrap().is_none(),
            "no object may look like a dump"
        );
        // No multipart upload and no staging object is left behind.
        let client = aws_sdk_s3::Client::new(&sdk_config(&sv.moto, "moto", "moto").await);
        let bucket = s3
            .locate("x")
            .trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let uploads = client
            .list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        assert!(
            uploads.uploads().is_empty(),
            "uploads left: {:?}",
            uploads.uploads()
        );
        let objects = client
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        assert!(
            objects.contents().is_empty(),
            "objects left: {:?}",
            objects.contents()
        );
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn api_on_s3_redirects_downloads_to_working_presigned_urls() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let (s3, dynamo) = cloud_stores(&sv.moto, "moto", "moto", &sv.moto).await;
    let base =
        common::api_server::serve(api_on(s3, dynamo, common::api_server::settings(&src, PART)))
            .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let started: serde_json::Value = client
        .post(format!("{base}/export/dump"))
        .bearer_auth("admin-token")
        .json(&serde_json::json!({"format": "json"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["progressKey"].as_str().unwrap().to_string();
    let begun = Instant::now();
    let status = loop {
        let v: serde_json::Value = client
            .get(format!("{base}/export/dump/status/{id}"))
            .bearer_auth("admin-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "completed" {
            break v;
        }
        assert!(begun.elapsed() < Duration::from_secs(60), "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A JSON dump's files: its rows, and the schema.sql a restore needs.
    let urls = status["downloadUrl"].as_array().unwrap();
    assert_eq!(urls.len(), 2, "{status}");
    let rows_url = urls
        .iter()
        .map(|u| u.as_str().unwrap())
        .find(|u| u.ends_with(".json"))
        .unwrap();
    let res = client
        .get(format!("{base}{rows_url}"))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("X-Amz-Signature=") && location.contains("X-Amz-Expires=300"),
        "{location}"
    );
    // The presigned URL works without our token.
    let body = reqwest::get(&location).await.unwrap();
    assert_eq!(body.status(), reqwest::StatusCode::OK);
    let local = tokio::task::spawn_blocking(move || {
        lib_dump(
            &src,
            Format::Json,
            Compression::None,
            1000,
            Duration::from_secs(60),
            PART,
        )
    })
    .await
    .unwrap();
    assert_eq!(body.bytes().await.unwrap().to_vec(), local.files[0].1);
}

/// A fleet through the local interpreter of `fleet-statemachine.json`, its dumps in S3
/// and their records in DynamoDB (both on moto): every database matching the pattern is
/// dumped under its own name, and each restores exactly from the bucket.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_on_s3_and_dynamodb_dumps_each_database_under_its_name() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("archive")).unwrap();
    build_edge_db(&root.join("edge.db"));
    build_bulk_db(&root.join("bulk.db"), 1200);
    build_bulk_db(&root.join("archive/old.db"), 10); // not matched: `*` stays in its directory
    let url = format!("s3://{}/dumps", unique("fleet"));
    let s3 = S3Store::new(&sdk_config(&sv.moto, "moto", "moto").await, &url).unwrap();
    s3.ensure_bucket().await.unwrap();
    let table = unique("jobs");
    let dynamo = DynamoProgress::new(
        &sdk_config(&sv.moto, "moto", "moto").await,
        &format!("dynamodb://{table}"),
    )
    .unwrap();
    dynamo.ensure_table().await.unwrap();
    let mut settings = common::api_server::settings(&root.join("edge.db"), PART);
    settings.database = None;
    settings.database_root = Some(chunkdump::local::DatabaseRoot::open(&root).unwrap());
    let state = api_on(s3, dynamo, settings);
    let base = common::api_server::serve(state).await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<serde_json::Value>| {
        let mut req = client
            .request(method, format!("{base}{path}"))
            .bearer_auth("admin-token");
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let started = call(
        reqwest::Method::POST,
        "/export/fleet".into(),
        Some(serde_json::json!({"databases": "*.db", "format": "sql", "compression": "zstd"})),
    )
    .await;
    assert_eq!(started["databases"], 2, "{started}");
    let fleet = started["fleetId"].as_str().unwrap();
    let begun = Instant::now();
    let done = loop {
        let v = call(reqwest::Method::GET, format!("/export/fleet/{fleet}"), None).await;
        if v["status"] == "completed" {
            break v;
        }
        assert!(begun.elapsed() < Duration::from_secs(90), "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        done["counts"],
        serde_json::json!({"completed": 2}),
        "{done}"
    );
    for item in done["items"].as_array().unwrap() {
        let (database, id) = (
            item["database"].as_str().unwrap(),
            item["dumpId"].as_str().unwrap(),
        );
        assert!(
            id.starts_with(&format!("{}/dump_", database.trim_end_matches(".db"))),
            "{id}"
        );
        let into = dir.path().join(format!("restored-{database}"));
        let o = chunkdump()
            .envs(cli_env(&sv.moto, &sv.moto, "moto", "moto"))
            .args(["restore", id, "--store", &url, "--into"])
            .arg(&into)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_same_db(&root.join(database), &into);
    }
}
