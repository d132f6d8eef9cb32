//! the original request's test plan (`npm run test:dump small | breathing`), as suites:
//! `scripts/test-dump small` and `scripts/test-dump breathing` run these.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn small_database_completes_in_its_first_chunk_without_breathing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("small.db");
    build_bulk_db(&src, 50_000);
    assert!(std::fs::metadata(&src).unwrap().len() < 100 << 20);
    let out = dir.path().join("out");
    // The original request's defaults: 25 s budget, 5 s breathing.
    let (id, _) = dump_ok(&src, &out, &["--format", "sql"]);
    let o = run(&["status", &id, "--out", out.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["status"], "completed");
    assert_eq!(
        status["chunks"], 1,
        "a small dump needs one chunk and so never breathes: {status}"
    );
    assert_eq!(
        status["progress"]["processedRows"],
        status["progress"]["totalRows"]
    );
}

/// Writes (an insert and an update) every 2 ms with a 5 s busy timeout until stopped;
/// returns the latency of every write transaction and the number of failed writes.
fn writer(
    db: std::path::PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<Duration>, u64)> {
    std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        let (mut latencies, mut failed) = (Vec::new(), 0u64);
        let mut i = 0i64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let t = Instant::now();
            let result = c.execute_batch(&format!(
                "BEGIN IMMEDIATE; INSERT INTO writes(v) VALUES ('w{i}'); UPDATE items SET price = price + 1 WHERE id = {}; COMMIT;",
                1 + i % 1000
            ));
            match result {
                Ok(()) => latencies.push(t.elapsed()),
                Err(_) => {
                    failed += 1;
                    let _ = c.execute_batch("ROLLBACK");
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (latencies, failed)
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn writers_never_fail_during_a_dump(journal_mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("busy.db");
    build_bulk_db(&src, 200_000);
    let c = rusqlite::Connection::open(&src).unwrap();
    let mode: String = c
        .query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(mode, journal_mode);
    c.execute_batch("CREATE TABLE writes(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    drop(c);
    let stop = Arc::new(AtomicBool::new(false));
    let handle = writer(src.clone(), stop.clone());
    // No breathing: the dump itself is under test. Dump until enough writes overlapped.
    let started = Instant::now();
    let mut dumps = 0;
    while dumps < 3 || started.elapsed() < Duration::from_secs(2) {
        let out = dir.path().join(format!("out{dumps}"));
        dump_ok(&src, &out, &["--format", "sql", "--breathe-ms", "0"]);
        dumps += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, failed) = handle.join().unwrap();
    assert_eq!(
        failed, 0,
        "a writer failed while the database was dumped ({journal_mode})"
    );
    latencies.sort();
    eprintln!(
        "{journal_mode}: {dumps} dumps, {} writes, {failed} failed, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
    assert!(
        latencies.len() > 100,
        "the writer barely ran: {} writes",
        latencies.len()
    );
}

#[test]
fn breathing_writers_never_fail_during_a_dump_in_rollback_journal_mode() {
    writers_never_fail_during_a_dump("delete");
}

#[test]
fn breathing_writers_never_fail_during_a_dump_in_wal_mode() {
    writers_never_fail_during_a_dump("wal");
}
