//! `statemachine.json` executed by a second, independent interpreter: moto's Step
//! Functions. Its Lambda tasks reach a Lambda Invoke API emulator here that runs the real
//! chunk handler (the code `functions/chunk` runs) against moto's S3 and DynamoDB, and
//! forwards every other call (the continue-as-new `startExecution`) back to moto.
//! The dumps are started and stopped through the Step Functions `Orchestrator` adapter.
//!
//! Not covered here: the continue-as-new step. moto 5.2.5 does not translate the
//! `states:startExecution` integration's parameters to its SDK call (a `KeyError:
//! 'StateMachineArn'` inside moto, for the optimized and the `aws-sdk:sfn` integration
//! alike), so that step is tested with the local interpreter (`tests/local_runner.rs`).

use crate::common;
use chunkdump::ports::ProgressReader as _;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::HistoryEventType;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chunkdump::chunk::ChunkOptions;
use chunkdump::cloud::{DynamoProgress, S3Store, SfnOrchestrator};
use chunkdump::lifecycle::create_dump;
use chunkdump::model::{Compression, DumpSpec, Format, JobStatus};
use chunkdump::ports::Orchestrator;
use chunkdump::ports::RunState;
use chunkdump::ports::{ObjectReader, ObjectStore};
use chunkdump::tasks::{error_document, Tasks};
use common::cloud::{sdk_config, servers, unique};
use common::lib_dump::lib_dump;

const CHUNK_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:chunkdump-chunk";
const SNAPSHOT_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:chunkdump-snapshot";
const PART: u64 = 5 << 20;

/// The Lambda Invoke API, answering with the real task handlers.
struct Emulator {
    tasks: Mutex<Tasks>,
    invocations: AtomicU32,
    /// Invocation numbers (1-based) that fail with a `fault` error.
    fail_on: Mutex<Vec<u32>>,
    /// The error type of the injected faults (`Retryable` unless a test says otherwise).
    fault: Mutex<&'static str>,
    moto_sfn: String,
    http: reqwest::Client,
}

async fn invoke(State(emu): State<Arc<Emulator>>, body: Bytes) -> Response {
    let n = emu.invocations.fetch_add(1, Ordering::SeqCst) + 1;
    let function_error = |doc: serde_json::Value| {
        ([("X-Amz-Function-Error", "Unhandled")], axum::Json(doc)).into_response()
    };
    if emu.fail_on.lock().unwrap().contains(&n) {
        let fault = *emu.fault.lock().unwrap();
        return function_error(
            serde_json::json!({"errorType": fault, "errorMessage": format!("injected fault on invocation {n}")}),
        );
    }
    // As the Lambda binary reads it: a task, or the drill schedule's payload.
    let input: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(input) => input,
        Err(e) => {
            return function_error(
                serde_json::json!({"errorType": "Runtime.UnmarshalError", "errorMessage": e.to_string()}),
            )
        }
    };
    let tasks = emu.tasks.lock().unwrap().clone();
    match tasks.handle_event(input, None).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => function_error(error_document(&e)),
    }
}

/// Everything else goes back to moto (Step Functions' own API).
async fn forward(
    State(emu): State<Arc<Emulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!(
        "{}{}",
        emu.moto_sfn,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut req = emu.http.request(method, url).body(body);
    for (name, value) in headers
        .iter()
        .filter(|(n, _)| *n != "host" && *n != "content-length")
    {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(res) => {
            let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
            let headers = res.headers().clone();
            let bytes = res.bytes().await.unwrap_or_default();
            let mut out = (status, bytes).into_response();
            for (name, value) in headers
                .iter()
                .filter(|(n, _)| *n != "content-length" && *n != "transfer-encoding")
            {
                out.headers_mut().insert(name, value.clone());
            }
            out
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

struct Rig {
    emu: Arc<Emulator>,
    sfn: aws_sdk_sfn::Client,
    orchestrator: SfnOrchestrator,
    s3: S3Store,
    dynamo: Arc<DynamoProgress>,
    machine_arn: String,
}

async fn rig() -> Rig {
    let sv = servers();
    let moto_sfn = std::env::var("CHUNKDUMP_TEST_MOTO_SFN")
        .expect("CHUNKDUMP_TEST_MOTO_SFN is not set: run the tests with scripts/test");
    let lambda_port = std::env::var("CHUNKDUMP_TEST_SFN_LAMBDA_PORT").unwrap();
    let http = reqwest::Client::new();
    // moto only runs the states of an execution when asked to.
    let enabled = http
        .post(format!("{moto_sfn}/moto-api/config"))
        .json(&serde_json::json!({"stepfunctions": {"execute_state_machine": true}}))
        .send()
        .await
        .unwrap();
    assert!(enabled.status().is_success());
    let store_config = sdk_config(&sv.moto, "moto", "moto").await;
    let s3 = S3Store::new(&store_config, &format!("s3://{}", unique("sfn"))).unwrap();
    s3.ensure_bucket().await.unwrap();
    let dynamo =
        DynamoProgress::new(&store_config, &format!("dynamodb://{}", unique("sfn"))).unwrap();
    dynamo.ensure_table().await.unwrap();
    let (objects, dynamo): (Arc<dyn ObjectStore>, Arc<DynamoProgress>) =
        (Arc::new(s3.clone()), Arc::new(dynamo));
    let tasks = Tasks {
        objects,
        progress: dynamo.clone(),
        notifier: None,
        chunk: ChunkOptions {
            budget: Duration::ZERO,
            snapshot_dir: Some(std::env::temp_dir().join(unique("sfn-snapshots"))),
            ..Default::default()
        },
        breathe: Duration::from_secs(1),
        whole_seconds: true,
        chunks_per_execution: 1000,
        drills: crate::common::test_drills(),
        drill_metrics: None,
    };
    let emu = Arc::new(Emulator {
        tasks: Mutex::new(tasks),
        invocations: AtomicU32::new(0),
        fail_on: Mutex::new(Vec::new()),
        fault: Mutex::new("Retryable"),
        moto_sfn: moto_sfn.clone(),
        http,
    });
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            axum::routing::post(invoke),
        )
        .fallback(forward)
        .with_state(emu.clone());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{lambda_port}"))
        .await
        .expect("the Lambda emulator port is free");
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let sfn_config = sdk_config(&moto_sfn, "moto", "moto").await;
    let sfn = aws_sdk_sfn::Client::new(&sfn_config);
    let definition =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/statemachine.json"))
            .unwrap()
            .replace("${ChunkFunctionArn}", CHUNK_ARN)
            .replace("${SnapshotFunctionArn}", SNAPSHOT_ARN)
            .replace("${DrillFunctionArn}", CHUNK_ARN);
    let created = sfn
        .create_state_machine()
        .name(unique("chunkdump"))
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/chunkdump-states")
        .send()
        .await
        .unwrap();
    let orchestrator = SfnOrchestrator::new(&sfn_config, created.state_machine_arn()).unwrap();
    Rig {
        emu,
        sfn,
        orchestrator,
        s3,
        dynamo,
        machine_arn: created.state_machine_arn().to_string(),
    }
}

fn spec(db: &std::path::Path) -> DumpSpec {
    DumpSpec {
        database: db.display().to_string(),
        format: Format::Sql,
        compression: Compression::None,
        tables: None,
        include_schema: true,
        slice_rows: chunkdump::model::SliceRows::new(1000).unwrap(),
        part_size: PART,
        snapshot: false,
        snapshot_max_block_ms: None,
        frame_size: None,
        shown_as: None,
        drill: false,
        recipients: Vec::new(),
    }
}

/// Waits until the dump's newest execution is no longer running.
async fn settle(rig: &Rig, id: &str) -> String {
    let start = Instant::now();
    loop {
        let status = rig.orchestrator.describe(id).await.unwrap();
        match status {
            RunState::Running | RunState::None if start.elapsed() < Duration::from_secs(120) => {
                tokio::time::sleep(Duration::from_millis(300)).await
            }
            RunState::Ended(how) => return how,
            other => return other.to_string(),
        }
    }
}

async fn history(rig: &Rig, execution_arn: &str) -> Vec<(HistoryEventType, Option<String>)> {
    let out = rig
        .sfn
        .get_execution_history()
        .execution_arn(execution_arn)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    out.events()
        .iter()
        .map(|e| {
            (
                e.r#type().clone(),
                e.state_entered_event_details()
                    .map(|d| d.name().to_string()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_runs_the_definition_through_loop_breath_retry_catch_and_stop() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let rig = rig().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    common::build_bulk_db(&src, 5000);
    let reference = tokio::task::spawn_blocking({
        let src = src.clone();
        move || {
            lib_dump(
                &src,
                Format::Sql,
                Compression::None,
                1000,
                Duration::from_secs(60),
                PART,
            )
        }
    })
    .await
    .unwrap();

    // 1. Many chunks, a breathing Wait between them, an injected Retryable failure on
    //    the second invocation.
    let job = create_dump(rig.dynamo.as_ref(), spec(&src), None)
        .await
        .unwrap();
    *rig.emu.fail_on.lock().unwrap() = vec![2];
    rig.orchestrator.start(&job.id, job.version).await.unwrap();
    rig.orchestrator
        .start(&job.id, job.version)
        .await
        .expect("a second start of the same dump is a no-op");
    let status = settle(&rig, &job.id).await;
    let first = chunkdump::execution::execution_arn(&rig.machine_arn, &job.id);
    assert_eq!(
        status,
        "SUCCEEDED",
        "{:#?}",
        rig.sfn
            .get_execution_history()
            .execution_arn(&first)
            .send()
            .await
            .unwrap()
            .events()
    );
    let done = rig.dynamo.get(&job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert!(
        done.chunks >= 6,
        "expected many chunks, got {}",
        done.chunks
    );
    let object = rig.s3.get(&done.files[0].key).await.unwrap().unwrap();
    assert_eq!(
        object, reference.files[0].1,
        "the dump run by moto's interpreter differs from the local dump"
    );

    let events = history(&rig, &first).await;
    let entered = |state: &str| {
        events
            .iter()
            .filter(|(_, name)| name.as_deref() == Some(state))
            .count()
    };
    assert!(
        entered("Breathe") >= 5,
        "a breathing Wait between chunks: {events:?}"
    );
    assert_eq!(entered("Notify"), 1);
    assert_eq!(entered("Drill"), 0, "a dump not asked to be drilled is not");
    let failed = events
        .iter()
        .filter(|(t, _)| {
            *t == HistoryEventType::LambdaFunctionFailed || *t == HistoryEventType::TaskFailed
        })
        .count();
    assert!(
        failed >= 1,
        "the injected failure should show and be retried: {events:?}"
    );
    assert_eq!(entered("MarkFailed"), 0);

    // 1b. A snapshot dump: the Snapshot state copies the database before the loop, the
    //     chunks read the copy, and the copy is deleted at the end. Started with
    //     `drill`, it is drilled by the Drill state once it completes.
    let job = create_dump(
        rig.dynamo.as_ref(),
        DumpSpec {
            snapshot: true,
            drill: true,
            ..spec(&src)
        },
        None,
    )
    .await
    .unwrap();
    rig.orchestrator.start(&job.id, job.version).await.unwrap();
    assert_eq!(settle(&rig, &job.id).await, "SUCCEEDED");
    let done = rig.dynamo.get(&job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert!(
        done.consistency.snapshot && !done.consistency.changed_during_dump,
        "{:?}",
        done.consistency
    );
    let copy = done
        .snapshot_path
        .clone()
        .expect("the snapshot path is recorded");
    assert!(
        !std::path::Path::new(&copy).exists(),
        "the copy is deleted when the dump completes"
    );
    assert_eq!(
        rig.s3.get(&done.files[0].key).await.unwrap().unwrap(),
        reference.files[0].1
    );
    let events = history(
        &rig,
        &chunkdump::execution::execution_arn(&rig.machine_arn, &job.id),
    )
    .await;
    assert!(
        events.iter().any(|(_, n)| n.as_deref() == Some("Drill")),
        "{events:?}"
    );
    let drill = done
        .last_drill
        .as_ref()
        .expect("the Drill state recorded its outcome");
    assert!(drill.passed && !drill.skipped, "{drill:?}");
    let report = rig
        .s3
        .get(&format!("{}.drill.json", job.id))
        .await
        .unwrap()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(
        (report["passed"].as_bool(), report["dumpId"].as_str()),
        (Some(true), Some(job.id.as_str()))
    );
    assert!(
        events.iter().any(|(_, n)| n.as_deref() == Some("Snapshot")),
        "{events:?}"
    );

    // 2. A fatal error (the database is gone) goes through Catch to MarkFailed and Fail.
    let gone = dir.path().join("gone.db");
    std::fs::copy(&src, &gone).unwrap();
    let job = create_dump(rig.dynamo.as_ref(), spec(&gone), None)
        .await
        .unwrap();
    std::fs::remove_file(&gone).unwrap();
    rig.orchestrator.start(&job.id, job.version).await.unwrap();
    assert_eq!(settle(&rig, &job.id).await, "FAILED");
    let failed_job = rig.dynamo.get(&job.id).await.unwrap().unwrap();
    assert_eq!(failed_job.status, JobStatus::Failed);
    assert_eq!(failed_job.error.unwrap().code, "database_error");
    let arn = chunkdump::execution::execution_arn(&rig.machine_arn, &job.id);
    let events = history(&rig, &arn).await;
    assert!(
        events
            .iter()
            .any(|(_, n)| n.as_deref() == Some("MarkFailed")),
        "{events:?}"
    );

    // 3. Stop: a long breath, then the orchestrator stops the execution.
    rig.emu.tasks.lock().unwrap().breathe = Duration::from_secs(60);
    let job = create_dump(rig.dynamo.as_ref(), spec(&src), None)
        .await
        .unwrap();
    rig.orchestrator.start(&job.id, job.version).await.unwrap();
    let start = Instant::now();
    while rig.dynamo.get(&job.id).await.unwrap().unwrap().chunks == 0
        && start.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rig.orchestrator.stop(&job.id).await.unwrap();
    assert_eq!(settle(&rig, &job.id).await, "ABORTED");

    // 3b. Through the API, the stopped execution's dump is interrupted, with the call
    //     that resumes it; resuming starts the next execution of its chain (`ID.g1`),
    //     which completes it byte-identical to an uninterrupted dump.
    rig.emu.tasks.lock().unwrap().breathe = Duration::from_secs(1);
    let api = Api::serve(&rig, &src).await;
    let resumed = api.resume_interrupted(&job.id).await;
    assert!(resumed["error"].is_null(), "{resumed}");
    assert_eq!(settle(&rig, &job.id).await, "SUCCEEDED");
    let done = rig.dynamo.get(&job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert_eq!(
        rig.s3.get(&done.files[0].key).await.unwrap().unwrap(),
        reference.files[0].1
    );
    let next = chunkdump::execution::execution_name(&job.id, 1);
    let events = history(
        &rig,
        &chunkdump::execution::execution_arn(&rig.machine_arn, &next),
    )
    .await;
    assert!(
        events
            .iter()
            .any(|(_, n)| n.as_deref() == Some("ExportChunk")),
        "{events:?}"
    );

    // 4. A storage fault (not retried) goes through Catch to MarkInterrupted: the dump
    //    pauses with its error and everything it committed, the execution fails as
    //    `DumpInterrupted`; resumed through the API, it completes byte-identical.
    let job = create_dump(rig.dynamo.as_ref(), spec(&src), None)
        .await
        .unwrap();
    let n = rig.emu.invocations.load(Ordering::SeqCst);
    *rig.emu.fault.lock().unwrap() = "StorageFault";
    // Invocation n+1 is the Snapshot task, n+2 the first chunk, n+3 the second.
    *rig.emu.fail_on.lock().unwrap() = vec![n + 3];
    rig.orchestrator.start(&job.id, job.version).await.unwrap();
    assert_eq!(settle(&rig, &job.id).await, "FAILED");
    let paused = rig.dynamo.get(&job.id).await.unwrap().unwrap();
    assert_eq!(paused.status, JobStatus::Interrupted, "{:?}", paused.error);
    assert_eq!(paused.chunks, 1, "the first chunk's commit is kept");
    let error = paused.error.clone().unwrap();
    assert!(error.message.contains("injected fault"), "{error:?}");
    let arn = chunkdump::execution::execution_arn(&rig.machine_arn, &job.id);
    let events = history(&rig, &arn).await;
    assert!(
        events
            .iter()
            .any(|(_, n)| n.as_deref() == Some("MarkInterrupted")),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|(_, n)| n.as_deref() == Some("MarkFailed")),
        "{events:?}"
    );
    api.resume_interrupted(&job.id).await;
    assert_eq!(settle(&rig, &job.id).await, "SUCCEEDED");
    let done = rig.dynamo.get(&job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert!(done.error.is_none());
    assert_eq!(
        rig.s3.get(&done.files[0].key).await.unwrap().unwrap(),
        reference.files[0].1
    );
}

/// The HTTP API over the rig's stores and Step Functions, on a real socket.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn serve(rig: &Rig, db: &std::path::Path) -> Api {
        let state = chunkdump::api::AppState {
            objects: Arc::new(rig.s3.clone()),
            progress: rig.dynamo.clone(),
            guard: rig.dynamo.clone(),
            rates: rig.dynamo.clone(),
            orchestrator: Arc::new(rig.orchestrator.clone()),
            tokens: chunkdump::api::Tokens::new("admin-token", None).unwrap(),
            settings: common::api_server::settings(db, PART),
        };
        Api {
            base: common::api_server::serve(state).await,
            client: reqwest::Client::new(),
        }
    }

    /// Checks that dump `id` shows as interrupted with the call that resumes it, makes
    /// that call (202) and returns its answer.
    async fn resume_interrupted(&self, id: &str) -> serde_json::Value {
        let status: serde_json::Value = self
            .client
            .get(format!("{}/export/dump/status/{id}", self.base))
            .bearer_auth("admin-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let call = format!("POST /export/dump/{id}/resume");
        assert_eq!(status["status"], "interrupted", "{status}");
        assert_eq!(status["resumeWith"], call.as_str(), "{status}");
        let res = self
            .client
            .post(format!("{}/export/dump/{id}/resume", self.base))
            .bearer_auth("admin-token")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 202);
        res.json().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_cannot_start_fails_its_dump_and_frees_the_database() {
    if common::cloud::skip_without_servers() {
        return;
    }
    use chunkdump::api::{AppState, Tokens};
    let sv = servers();
    let moto_sfn =
        std::env::var("CHUNKDUMP_TEST_MOTO_SFN").expect("run the tests with scripts/test");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    common::build_bulk_db(&src, 100);
    let config = sdk_config(&sv.moto, "moto", "moto").await;
    let s3 = S3Store::new(&config, &format!("s3://{}", unique("nostart"))).unwrap();
    s3.ensure_bucket().await.unwrap();
    let dynamo =
        DynamoProgress::new(&config, &format!("dynamodb://{}", unique("nostart"))).unwrap();
    dynamo.ensure_table().await.unwrap();
    let progress = Arc::new(dynamo);
    // A state machine that does not exist: every start is refused by Step Functions.
    let missing = "arn:aws:states:us-east-1:123456789012:stateMachine:does-not-exist";
    let orchestrator =
        SfnOrchestrator::new(&sdk_config(&moto_sfn, "moto", "moto").await, missing).unwrap();
    let state = AppState {
        objects: Arc::new(s3),
        progress: progress.clone(),
        guard: progress.clone(),
        rates: progress.clone(),
        orchestrator: Arc::new(orchestrator),
        tokens: Tokens::new("admin-token", None).unwrap(),
        settings: common::api_server::settings(&src, PART),
    };
    let base = common::api_server::serve(state).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let res = client
            .post(format!("{base}/export/dump"))
            .bearer_auth("admin-token")
            .json(&serde_json::json!({"format": "sql"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status().as_u16(),
            500,
            "a refused start is a server-side failure, and not a 409 for the second try"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "storage_error", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("start execution"),
            "{body}"
        );
    }
    let listed: serde_json::Value = client
        .get(format!("{base}/export/dump"))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dumps = listed["dumps"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(dumps.len(), 2);
    assert!(dumps.iter().all(|d| d["status"] == "failed"), "{listed}");
}
