//! The local runner interprets the shipped `statemachine.json` with the real task
//! handlers: a many-chunk dump goes through the breathing Wait, continue-as-new, a
//! Retry, and the Catch path, and the output is the same as a one-chunk dump.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chunkdump::asl::{Outcome, Step};
use chunkdump::chunk::ChunkOptions;
use chunkdump::lifecycle::create_dump;
use chunkdump::local::{DirStore, SqliteProgress};
use chunkdump::model::{Compression, DumpSpec, Format, JobStatus};
use chunkdump::ports::{ObjectReader, ObjectStore, ProgressStore};
use chunkdump::runner::LocalRunner;
use chunkdump::tasks::Tasks;
use common::lib_dump::{lib_dump, FaultyStore};

struct Run {
    outcome: Outcome,
    steps: Vec<Step>,
    job: chunkdump::model::JobRecord,
    file: Option<Vec<u8>>,
}

/// A SQL dump of `db` in 500-row slices and 5 MiB parts.
fn sql_spec(db: &Path, snapshot: bool) -> DumpSpec {
    DumpSpec {
        database: db.display().to_string(),
        format: Format::Sql,
        compression: Compression::None,
        tables: None,
        include_schema: true,
        slice_rows: chunkdump::model::SliceRows::new(500).unwrap(),
        part_size: 5 << 20,
        snapshot,
        snapshot_max_block_ms: None,
        frame_size: None,
        shown_as: None,
        drill: false,
        recipients: Vec::new(),
    }
}

/// The embedded stores under `out`: a directory and its progress file.
fn local_stores(out: &Path) -> (Arc<dyn ObjectStore>, Arc<dyn ProgressStore>) {
    (
        Arc::new(DirStore::open(out).unwrap()),
        Arc::new(SqliteProgress::open(&out.join(".chunkdump/progress.sqlite3")).unwrap()),
    )
}

/// Dumps `db` into `dir` through the shipped state machine, with every `every`-th store
/// call failing (transiently or permanently), in one-slice chunks.
async fn run(db: &Path, dir: &Path, every: u32, permanent: bool) -> Run {
    let objects = Arc::new(FaultyStore::new(
        DirStore::open(dir).unwrap(),
        every,
        permanent,
    ));
    run_with(db, dir, objects, Duration::ZERO, 4).await
}

/// Dumps `db` through `objects` with the given chunk budget and upload concurrency.
async fn run_with(
    db: &Path,
    dir: &Path,
    objects: Arc<FaultyStore<DirStore>>,
    budget: Duration,
    upload_concurrency: usize,
) -> Run {
    let progress: Arc<dyn ProgressStore> =
        Arc::new(SqliteProgress::open(&dir.join(".chunkdump/progress.sqlite3")).unwrap());
    let spec = sql_spec(db, false);
    let job = create_dump(progress.as_ref(), spec, None).await.unwrap();
    let tasks = Tasks {
        objects: objects.clone(),
        progress: progress.clone(),
        notifier: None,
        chunk: ChunkOptions {
            budget,
            upload_concurrency,
            ..Default::default()
        },
        breathe: Duration::from_millis(5),
        whole_seconds: false,
        chunks_per_execution: 4,
        drills: None,
        drill_metrics: None,
    };
    let runner = LocalRunner::new(tasks).unwrap();
    let mut steps = Vec::new();
    let outcome = runner
        .run(&job.id, job.version, &mut |s| steps.push(s))
        .await;
    let job = progress.get(&job.id).await.unwrap().unwrap();
    let file = match job.files.first() {
        // Read past the fault injection: the test checks the file, not the store.
        Some(f) => objects.inner.get(&f.key).await.unwrap(),
        None => None,
    };
    Run {
        outcome,
        steps,
        job,
        file,
    }
}

/// Checks a run that a permanent fault on store call `call` failed: the job is failed
/// with that error, no file exists and no upload is left open.
fn assert_failed_cleanly(r: Run, out: &Path, call: u32) {
    assert_eq!(r.job.status, JobStatus::Failed);
    let message = r.job.error.unwrap().message;
    assert!(
        message.contains(&format!("injected fault on call {call}")),
        "{message}"
    );
    assert!(r.job.files.is_empty() && r.file.is_none());
    assert_eq!(open_uploads(out), 0, "the upload was aborted");
}

/// Multipart uploads still open in the directory store at `out`.
fn open_uploads(out: &Path) -> usize {
    std::fs::read_dir(out.join(".chunkdump/uploads"))
        .unwrap()
        .count()
}

fn entered(steps: &[Step], state: &str) -> usize {
    steps
        .iter()
        .filter(|s| **s == Step::Entered(state.into()))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_many_chunk_dump_breathes_continues_as_new_retries_and_matches_a_one_chunk_dump() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    common::build_bulk_db(&src, 6000);
    let reference = {
        let src = src.clone();
        tokio::task::spawn_blocking(move || {
            lib_dump(
                &src,
                Format::Sql,
                Compression::None,
                100_000,
                Duration::from_secs(60),
                5 << 20,
            )
        })
        .await
        .unwrap()
    };
    let r = run(&src, &dir.path().join("out"), 13, false).await;
    assert!(
        matches!(r.outcome, Outcome::Succeeded(_)),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.job.status, JobStatus::Completed);
    assert!(r.job.chunks >= 12, "chunks: {}", r.job.chunks);
    assert!(entered(&r.steps, "Breathe") >= 8, "{:?}", r.steps);
    assert!(
        entered(&r.steps, "ContinueAsNew") >= 2,
        "executions are cut every 4 chunks: {:?}",
        r.steps
    );
    assert!(r.steps.iter().any(|s| matches!(s, Step::Retried { state, error, .. } if state == "ExportChunk" && error == "Retryable")), "{:?}", r.steps);
    assert_eq!(entered(&r.steps, "Notify"), 1);
    assert_eq!(entered(&r.steps, "MarkFailed"), 0);
    assert_eq!(
        r.file.unwrap(),
        reference.files[0].1,
        "the state machine's dump differs from a one-chunk dump"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_fault_goes_through_catch_and_leaves_a_failed_job_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    common::build_bulk_db(&src, 6000);
    let out = dir.path().join("out");
    let r = run(&src, &out, 4, true).await;
    assert_eq!(
        r.outcome,
        Outcome::Failed {
            error: "DumpFailed".into(),
            cause: "The dump failed; its status and error are in the progress store (GET /export/dump/status/{id}).".into()
        }
    );
    assert!(
        r.steps.iter().any(|s| matches!(s, Step::Caught { state, error, next, .. } if state == "ExportChunk" && error == "Fatal" && next == "MarkFailed")),
        "{:?}",
        r.steps
    );
    assert!(
        !r.steps.iter().any(|s| matches!(s, Step::Retried { .. })),
        "a Fatal error is not retried"
    );
    assert_failed_cleanly(r, &out, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_chunk_task_finds_its_work_done() {
    use chunkdump::tasks::{ChunkState, TaskInput};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    common::build_bulk_db(&src, 3000);
    let out = dir.path().join("out");
    let (objects, progress) = local_stores(&out);
    let spec = sql_spec(&src, false);
    let job = create_dump(progress.as_ref(), spec, None).await.unwrap();
    let tasks = Tasks {
        objects,
        progress: progress.clone(),
        notifier: None,
        chunk: ChunkOptions {
            budget: Duration::ZERO,
            ..Default::default()
        },
        breathe: Duration::from_millis(1500),
        whole_seconds: true,
        chunks_per_execution: 1000,
        drills: None,
        drill_metrics: None,
    };
    let input = || -> TaskInput {
        serde_json::from_value(serde_json::json!({"dumpId": job.id, "version": job.version}))
            .unwrap()
    };
    let first: ChunkState =
        serde_json::from_value(tasks.handle(input(), None).await.unwrap()).unwrap();
    // One version for the start (`processing` from the first chunk's start), one for
    // the chunk's commit.
    assert!(first.rows > 0 && first.version == job.version + 2 && !first.done);
    assert_eq!(
        first.breath_seconds,
        serde_json::Number::from(2),
        "1.5 s rounds up to whole seconds for Step Functions"
    );
    // The same input again, as a Step Functions retry after a lost answer would send it.
    let again: ChunkState =
        serde_json::from_value(tasks.handle(input(), None).await.unwrap()).unwrap();
    assert_eq!(
        (again.version, again.rows, again.done),
        (first.version, 0, false),
        "the committed chunk is reported, not redone"
    );
    assert_eq!(
        progress.get(&job.id).await.unwrap().unwrap().processed_rows,
        first.rows
    );
}

/// Parallel part uploads: parts finish out of order (every third is slow) and some
/// uploads fail mid-chunk; the object is still byte-identical to a one-chunk dump, with
/// one part at a time or four.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_part_uploads_survive_faults_and_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    common::build_bulk_db(&src, 200_000);
    let reference = {
        let src = src.clone();
        tokio::task::spawn_blocking(move || {
            lib_dump(
                &src,
                Format::Sql,
                Compression::None,
                100_000,
                Duration::from_secs(60),
                5 << 20,
            )
        })
        .await
        .unwrap()
    };
    assert!(
        reference.files[0].1.len() > 4 * (5 << 20),
        "the dump must span at least five parts"
    );
    for concurrency in [1, 4] {
        let out = dir.path().join(format!("out-{concurrency}"));
        // Two transient faults (one a part upload while others are in flight), then none.
        let objects =
            Arc::new(FaultyStore::new(DirStore::open(&out).unwrap(), 3, false).at_most(2));
        let r = run_with(
            &src,
            &out,
            objects.clone(),
            Duration::from_secs(60),
            concurrency,
        )
        .await;
        assert!(
            matches!(r.outcome, Outcome::Succeeded(_)),
            "{concurrency}: {:?}",
            r.outcome
        );
        assert!(
            r.steps.iter().any(|s| matches!(s, Step::Retried { .. })),
            "the faults were retried: {:?}",
            r.steps
        );
        assert_eq!(
            r.file.unwrap(),
            reference.files[0].1,
            "concurrency {concurrency}: the dump differs"
        );
        let most = objects
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst);
        if concurrency == 1 {
            assert_eq!(most, 1, "one part at a time");
        } else {
            assert!(
                (2..=concurrency as u32).contains(&most),
                "{most} parts were in flight at once"
            );
        }
        assert_eq!(open_uploads(&out), 0, "aborted attempts leave no upload");
    }
}

/// A permanent fault while several parts are in flight fails the dump cleanly: the
/// upload is aborted and no file appears.
#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_fault_among_parallel_parts_aborts_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    common::build_bulk_db(&src, 200_000);
    for concurrency in [1, 4] {
        let out = dir.path().join(format!("out-{concurrency}"));
        let objects = Arc::new(FaultyStore::new(DirStore::open(&out).unwrap(), 5, true));
        let r = run_with(&src, &out, objects, Duration::from_secs(60), concurrency).await;
        assert!(
            matches!(r.outcome, Outcome::Failed { .. }),
            "{:?}",
            r.outcome
        );
        assert_failed_cleanly(r, &out, 5);
    }
}

/// Where the chunk function mounts the database read-only (the template), it cannot
/// remove a snapshot dump's copy when the last chunk commits: the state machine's end
/// step (`notify`, on the snapshot function) removes it.
#[tokio::test(flavor = "multi_thread")]
async fn the_notify_step_removes_a_snapshot_copy_the_last_chunk_left() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    common::build_bulk_db(&src, 2000);
    let out = dir.path().join("out");
    let copies = dir.path().join("snapshots");
    let (objects, progress) = local_stores(&out);
    let spec = sql_spec(&src, true);
    let job = create_dump(progress.as_ref(), spec, None).await.unwrap();
    let tasks = Tasks {
        objects,
        progress: progress.clone(),
        notifier: None,
        chunk: ChunkOptions {
            snapshot_dir: Some(copies.clone()),
            ..Default::default()
        },
        breathe: Duration::ZERO,
        whole_seconds: false,
        chunks_per_execution: 1000,
        drills: None,
        drill_metrics: None,
    };
    let runner = LocalRunner::new(tasks.clone()).unwrap();
    let outcome = runner.run(&job.id, job.version, &mut |_| {}).await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    let done = progress.get(&job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    let copy = done
        .snapshot_path
        .clone()
        .expect("a snapshot dump records its copy");
    assert!(
        !Path::new(&copy).exists(),
        "removed where the chunk may write"
    );
    // As a read-only chunk leaves it:
    std::fs::copy(&src, &copy).unwrap();
    let notify: chunkdump::tasks::TaskInput =
        serde_json::from_value(serde_json::json!({"action": "notify", "dumpId": job.id})).unwrap();
    tasks.handle(notify, None).await.unwrap();
    assert!(
        !Path::new(&copy).exists(),
        "the notify step removes the copy"
    );
}

/// A database root's file swapped for a symlink to another tenant's database between
/// two chunks (and, for a snapshot dump, before its copy): the dump fails naming the
/// swap, never reads the other file under this dump's name.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_swapped_during_a_dump_fails_it_instead_of_dumping_another_database() {
    for snapshot in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("tenants")).unwrap();
        let (a, b) = (root.join("tenants/a.db"), root.join("tenants/b.db"));
        common::build_bulk_db(&a, 3000);
        common::build_bulk_db(&b, 5000);
        let resolved = chunkdump::local::DatabaseRoot::open(&root)
            .unwrap()
            .resolve("tenants/a.db")
            .unwrap();
        let (objects, progress) = local_stores(&dir.path().join("out"));
        let mut spec = sql_spec(&resolved.path, snapshot);
        spec.slice_rows = chunkdump::model::SliceRows::new(100).unwrap();
        let job = create_dump(progress.as_ref(), spec, None).await.unwrap();
        let opts = ChunkOptions {
            budget: Duration::ZERO,
            snapshot_dir: Some(dir.path().join("snapshots")),
            ..Default::default()
        };
        let run = |version| {
            let (objects, progress, opts, id) = (
                objects.clone(),
                progress.clone(),
                opts.clone(),
                job.id.clone(),
            );
            async move {
                chunkdump::chunk::run_chunk(
                    objects.as_ref(),
                    progress.as_ref(),
                    &id,
                    Some(version),
                    &opts,
                    None,
                )
                .await
            }
        };
        if !snapshot {
            let first = run(job.version).await.unwrap();
            assert!(!first.done, "one slice per chunk: not done yet");
        }
        // a.db becomes a symlink to b.db (atomically, as an attacker would swap it).
        let link = root.join("tenants/.a.db.link");
        std::os::unix::fs::symlink("b.db", &link).unwrap();
        std::fs::rename(&link, &a).unwrap();
        let version = progress.get(&job.id).await.unwrap().unwrap().version;
        let err = run(version).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("not the file this dump began with"),
            "snapshot {snapshot}: {err}"
        );
        let failed = progress.get(&job.id).await.unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed, "snapshot {snapshot}");
        assert!(
            failed.files.is_empty(),
            "snapshot {snapshot}: {:?}",
            failed.files
        );
    }
}

/// While its first chunk runs, a dump is `processing` with a `startedAt` no later than
/// that chunk's start, not `pending` with none until the chunk commits (up to the whole
/// budget later). The chunk's progress hook holds the export while the test reads the
/// record, so nothing depends on timing.
#[tokio::test(flavor = "multi_thread")]
async fn a_dump_is_processing_from_its_first_chunks_start() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    common::build_bulk_db(&src, 3000);
    let out = dir.path().join("out");
    let (objects, progress) = local_stores(&out);
    let job = create_dump(progress.as_ref(), sql_spec(&src, false), None)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Pending);
    let (reached, wait_reached) = std::sync::mpsc::channel::<()>();
    let (go_on, wait_go_on) = std::sync::mpsc::channel::<()>();
    let wait_go_on = std::sync::Mutex::new(Some(wait_go_on));
    let opts = ChunkOptions {
        budget: Duration::from_secs(60),
        progress: Some(Arc::new(move |_| {
            // Only the first call waits: the test looks at the record meanwhile.
            if let Some(wait) = wait_go_on.lock().unwrap().take() {
                reached.send(()).unwrap();
                wait.recv().unwrap();
            }
        })),
        ..Default::default()
    };
    let before = chrono::Utc::now();
    let chunk = {
        let (objects, progress, id) = (objects.clone(), progress.clone(), job.id.clone());
        tokio::spawn(async move {
            chunkdump::chunk::run_chunk(
                objects.as_ref(),
                progress.as_ref(),
                &id,
                Some(job.version),
                &opts,
                None,
            )
            .await
        })
    };
    tokio::task::spawn_blocking(move || wait_reached.recv().unwrap())
        .await
        .unwrap();
    let during = progress.get(&job.id).await.unwrap().unwrap();
    assert_eq!(during.status, JobStatus::Processing);
    let started = during
        .started_at
        .expect("startedAt while the first chunk runs");
    assert!(
        started >= before - chrono::Duration::seconds(1),
        "{started}"
    );
    assert_eq!(during.chunks, 0, "the chunk has not committed yet");
    go_on.send(()).unwrap();
    let report = chunk.await.unwrap().unwrap();
    assert!(report.done, "one chunk does it all");
    let done = progress.get(&job.id).await.unwrap().unwrap();
    assert_eq!(
        done.started_at,
        Some(started),
        "kept from the first chunk's start"
    );
    assert!(done.completed_at.unwrap() >= started);
}
