//! One conformance suite per port, written against the trait and run against every
//! adapter (litestream's pattern): the local directory, S3 on moto and on s3s-fs
//! (which checks signatures) for `ObjectStore`; the local SQLite file and DynamoDB on
//! moto for `ProgressStore`.

use crate::common;
use chunkdump::ports::ProgressReader as _;

use std::time::Duration;

use chunkdump::cloud::{DynamoProgress, S3Store};
use common::cloud::{sdk_config, servers, unique};

use bytes::Bytes;
use chunkdump::local::{DirStore, SqliteProgress};
use chunkdump::model::PartReceipt;
use chunkdump::model::{Compression, DumpSpec, Format, JobRecord, JobStatus};
use chunkdump::ports::{ObjectReader, ObjectStore, ProgressStore, RateCounter, StartGuard};
use chunkdump::StoreError;

/// Known deviations of a backend from S3's behaviour.
#[derive(Default)]
struct Quirks {
    /// s3s-fs answers a second abort of the same upload with AccessDenied (S3 and R2
    /// answer NoSuchUpload, which the adapter treats as done).
    second_abort_denied: bool,
    /// s3s-fs does not implement ListMultipartUploads (S3, R2 and moto do).
    no_upload_listing: bool,
}

async fn object_store_suite(store: &dyn ObjectStore, quirks: Quirks) {
    // Small objects: put, get, overwrite, delete, missing.
    store.put("a/b/small.txt", b"one".to_vec()).await.unwrap();
    assert_eq!(
        store.get("a/b/small.txt").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    store.put("a/b/small.txt", b"two".to_vec()).await.unwrap();
    // Ranged reads: how verify reads large objects back in bounded memory.
    let data: Vec<u8> = (0..100u8).collect();
    store.put("a/range.bin", data.clone()).await.unwrap();
    assert_eq!(
        store
            .get_range("a/range.bin", 10, 20)
            .await
            .unwrap()
            .unwrap(),
        data[10..30]
    );
    assert_eq!(
        store
            .get_range("a/range.bin", 90, 50)
            .await
            .unwrap()
            .unwrap(),
        data[90..],
        "a range past the end is cut"
    );
    assert_eq!(
        store
            .get_range("a/range.bin", 0, 100)
            .await
            .unwrap()
            .unwrap(),
        data
    );
    assert_eq!(store.get_range("a/missing.bin", 0, 10).await.unwrap(), None);
    // When each object was written, by the store's clock (what --latest orders by when
    // manifests are unsigned): the same keys as the plain listing, each dated about now.
    let listed = store.list_modified("a/").await.unwrap();
    let keys: Vec<String> = listed.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, store.list_keys("a/").await.unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (key, modified) in &listed {
        let modified = modified.unwrap_or_else(|| panic!("{key}: no time"));
        assert!(
            (now - modified).abs() < 10 * 60_000,
            "{key}: {modified} vs {now}"
        );
    }
    assert_eq!(
        store.get("a/b/small.txt").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    store.delete("a/b/small.txt").await.unwrap();
    assert_eq!(store.get("a/b/small.txt").await.unwrap(), None);
    store.delete("a/b/small.txt").await.unwrap();
    assert_eq!(store.get("never/was").await.unwrap(), None);
    for bad in ["../escape", "/abs", "a//b", "a/./b", ""] {
        assert!(
            matches!(store.put(bad, vec![]).await, Err(StoreError::Invalid(_))),
            "key {bad:?} accepted"
        );
    }

    // Multipart: equal parts (5 MiB, the S3/R2 minimum), a retried part replaces the
    // first attempt, nothing is visible before completion.
    const P: usize = 5 << 20;
    let part = |byte: u8, len: usize| Bytes::from(vec![byte; len]);
    let up = store.create_upload("dump/m.bin", P as u64).await.unwrap();
    store
        .upload_part("dump/m.bin", &up, 1, part(b'x', P))
        .await
        .unwrap();
    let p1 = store
        .upload_part("dump/m.bin", &up, 1, part(b'A', P))
        .await
        .unwrap();
    let p2 = store
        .upload_part("dump/m.bin", &up, 2, part(b'B', P))
        .await
        .unwrap();
    let p3 = store
        .upload_part("dump/m.bin", &up, 3, part(b'C', 1))
        .await
        .unwrap();
    assert!(
        store.get("dump/m.bin").await.unwrap().is_none(),
        "an upload is invisible before completion"
    );
    assert!(matches!(
        store
            .upload_part("dump/m.bin", &up, 4, part(b'D', P + 1))
            .await,
        Err(StoreError::Invalid(_))
    ));
    // Unequal parts are refused before the store would see them.
    let short_middle = [
        p1.clone(),
        PartReceipt {
            size: P as u64 - 1,
            ..p2.clone()
        },
        p3.clone(),
    ];
    assert!(matches!(
        store
            .complete_upload("dump/m.bin", &up, &short_middle)
            .await,
        Err(StoreError::Invalid(_))
    ));
    let gap = [p1.clone(), p3.clone()];
    assert!(matches!(
        store.complete_upload("dump/m.bin", &up, &gap).await,
        Err(StoreError::Invalid(_))
    ));
    let size = store
        .complete_upload("dump/m.bin", &up, &[p1, p2, p3])
        .await
        .unwrap();
    assert_eq!(size, 2 * P as u64 + 1);
    let got = store.get("dump/m.bin").await.unwrap().unwrap();
    assert_eq!(got.len(), 2 * P + 1);
    assert!(
        got[..P].iter().all(|&b| b == b'A')
            && got[P..2 * P].iter().all(|&b| b == b'B')
            && got[2 * P] == b'C'
    );

    // Parts uploaded past the listed ones (an abandoned attempt) are dropped.
    let up = store.create_upload("dump/n.bin", P as u64).await.unwrap();
    let q1 = store
        .upload_part("dump/n.bin", &up, 1, part(b'a', P))
        .await
        .unwrap();
    let q2 = store
        .upload_part("dump/n.bin", &up, 2, part(b'b', 3))
        .await
        .unwrap();
    store
        .upload_part("dump/n.bin", &up, 3, part(b'z', 7))
        .await
        .unwrap();
    assert_eq!(
        store
            .complete_upload("dump/n.bin", &up, &[q1, q2])
            .await
            .unwrap(),
        P as u64 + 3
    );
    assert_eq!(store.get("dump/n.bin").await.unwrap().unwrap().len(), P + 3);

    // Abort discards; the upload is gone afterwards; aborting twice is fine.
    let up = store
        .create_upload("dump/gone.bin", P as u64)
        .await
        .unwrap();
    let r = store
        .upload_part("dump/gone.bin", &up, 1, part(b'g', 10))
        .await
        .unwrap();
    store.abort_upload("dump/gone.bin", &up).await.unwrap();
    if !quirks.second_abort_denied {
        store.abort_upload("dump/gone.bin", &up).await.unwrap();
    }
    assert!(store
        .complete_upload("dump/gone.bin", &up, &[r])
        .await
        .is_err());
    assert!(store.get("dump/gone.bin").await.unwrap().is_none());

    // Pending uploads are listed by key prefix (how uploads of killed chunks are found),
    // not completed or aborted ones, and go away when aborted.
    if quirks.no_upload_listing {
        let err = store.pending_uploads("left/").await.unwrap_err();
        assert!(err.to_string().contains("NotImplemented"), "{err}");
        return;
    }
    let a1 = store.create_upload("left/a.sql", P as u64).await.unwrap();
    let a2 = store.create_upload("left/a.sql", P as u64).await.unwrap();
    store
        .upload_part("left/a.sql", &a2, 1, part(b'p', 10))
        .await
        .unwrap();
    let other = store.create_upload("right/b.sql", P as u64).await.unwrap();
    let mut pending = store.pending_uploads("left/").await.unwrap();
    pending.sort_by(|a, b| a.handle.upload_id.cmp(&b.handle.upload_id));
    let mut expected = vec![a1.upload_id.clone(), a2.upload_id.clone()];
    expected.sort();
    assert_eq!(
        pending
            .iter()
            .map(|p| p.handle.upload_id.clone())
            .collect::<Vec<_>>(),
        expected
    );
    assert!(pending.iter().all(|p| p.key == "left/a.sql"), "{pending:?}");
    for p in &pending {
        store.abort_upload(&p.key, &p.handle).await.unwrap();
    }
    assert!(store.pending_uploads("left/").await.unwrap().is_empty());
    assert_eq!(store.pending_uploads("right/").await.unwrap().len(), 1);
    store.abort_upload("right/b.sql", &other).await.unwrap();
}

fn job(id: &str) -> JobRecord {
    let spec = DumpSpec {
        database: "/tmp/x.db".into(),
        format: Format::Sql,
        compression: Compression::None,
        tables: None,
        include_schema: true,
        slice_rows: chunkdump::model::SliceRows::new(1000).unwrap(),
        part_size: 8 << 20,
        snapshot: false,
        snapshot_max_block_ms: None,
        frame_size: None,
        shown_as: None,
        drill: false,
        recipients: Vec::new(),
    };
    JobRecord::new(id.into(), spec, chrono::Utc::now())
}

/// Seconds the `expiring` stores keep a record: long enough that a record read right
/// after its write is still there on a loaded machine (1 s was not: a write at x.999 s
/// expired at the next whole second).
const EXPIRING_TTL: u64 = 3;

async fn progress_store_suite(store: &dyn ProgressStore, expiring: &dyn ProgressStore) {
    // Deletion is conditional on the version, like commits; a missing record is fine.
    let d = job("dump_del");
    store.create(&d).await.unwrap();
    assert!(matches!(
        store.delete("dump_del", 7).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        store.get("dump_del").await.unwrap().is_some(),
        "a conflicting delete keeps the record"
    );
    store.delete("dump_del", 1).await.unwrap();
    assert_eq!(store.get("dump_del").await.unwrap(), None);
    store.delete("dump_del", 1).await.unwrap();
    let j = job("dump_1");
    store.create(&j).await.unwrap();
    assert!(matches!(
        store.create(&j).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.get("dump_1").await.unwrap().unwrap(), j);
    assert_eq!(store.get("missing").await.unwrap(), None);

    // Conditional commits: the right version wins once, a stale writer gets a conflict.
    let mut next = j.clone();
    next.version = 2;
    next.status = JobStatus::Processing;
    next.processed_rows = 10;
    store.commit(&next, 1).await.unwrap();
    let mut stale = j.clone();
    stale.version = 2;
    stale.processed_rows = 99;
    assert!(matches!(
        store.commit(&stale, 1).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get("dump_1").await.unwrap().unwrap().processed_rows,
        10
    );
    assert!(matches!(
        store.commit(&job("never_created"), 0).await,
        Err(StoreError::Conflict { .. })
    ));

    // Recent dumps, newest first.
    let mut later = job("dump_2");
    later.created_at = j.created_at + chrono::Duration::seconds(5);
    store.create(&later).await.unwrap();
    let ids: Vec<String> = store
        .list_recent(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["dump_2", "dump_1"]);
    assert_eq!(store.list_recent(1).await.unwrap().len(), 1);

    // update: one version up, with the closure's change; None commits nothing.
    let moved = store
        .update("dump_1", &mut |j| {
            let mut next = j.clone();
            next.processed_rows += 5;
            Ok(Some(next))
        })
        .await
        .unwrap()
        .expect("committed");
    assert_eq!((moved.before.version, moved.after.version), (2, 3));
    let stored = store.get("dump_1").await.unwrap().unwrap();
    assert_eq!((stored.version, stored.processed_rows), (3, 15));
    assert!(store
        .update("dump_1", &mut |_| Ok(None))
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.get("dump_1").await.unwrap().unwrap().version, 3);
    assert!(matches!(
        store.update("missing", &mut |j| Ok(Some(j.clone()))).await,
        Err(chunkdump::DumpError::UnknownDump(_))
    ));

    // Expired records are invisible to readers even before they are deleted. Expiry is
    // in whole seconds (`now + ttl`, the second truncated): a record is visible for at
    // least TTL - 1 s, and gone once TTL + 1 s have passed.
    expiring.create(&job("short_lived")).await.unwrap();
    assert!(expiring.get("short_lived").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(EXPIRING_TTL * 1000 + 1100)).await;
    assert_eq!(expiring.get("short_lived").await.unwrap(), None);
    assert!(expiring
        .list_recent(10)
        .await
        .unwrap()
        .iter()
        .all(|r| r.id != "short_lived"));
    // ...and its id can be reused.
    expiring.create(&job("short_lived")).await.unwrap();
}

/// The API's start guard (one holder per slot) and rate counters (fixed windows).
async fn start_guard_suite<S: StartGuard + RateCounter>(store: &S) {
    // Slots: one holder at a time; the holder may re-claim; a named holder can be replaced.
    assert_eq!(store.claim("db:a", "dump_1", None).await.unwrap(), None);
    assert_eq!(store.claim("db:a", "dump_1", None).await.unwrap(), None);
    assert_eq!(
        store
            .claim("db:a", "dump_2", None)
            .await
            .unwrap()
            .as_deref(),
        Some("dump_1")
    );
    assert_eq!(
        store
            .claim("db:a", "dump_2", Some("dump_9"))
            .await
            .unwrap()
            .as_deref(),
        Some("dump_1")
    );
    assert_eq!(
        store.claim("db:a", "dump_2", Some("dump_1")).await.unwrap(),
        None
    );
    assert_eq!(
        store.claim("db:b", "dump_1", None).await.unwrap(),
        None,
        "slots are independent"
    );
    // Fixed-window counters.
    // A century: fixed windows are aligned to the epoch, so this one does not end while
    // the test counts (an hour's could, between two calls).
    let window = Duration::from_secs(100 * 365 * 24 * 3600);
    let (first, left) = store.count_in_window("starts:t1", window, 1).await.unwrap();
    assert!(left > 0 && left <= window.as_secs());
    assert_eq!(
        store
            .count_in_window("starts:t1", window, 1)
            .await
            .unwrap()
            .0,
        first + 1
    );
    assert_eq!(
        store
            .count_in_window("starts:t2", window, 1)
            .await
            .unwrap()
            .0,
        1,
        "counters are per key"
    );
    // A refused start gives its count back; a counter never goes below zero.
    assert_eq!(
        store
            .count_in_window("starts:t1", window, -1)
            .await
            .unwrap()
            .0,
        first
    );
    assert_eq!(
        store
            .count_in_window("starts:t3", window, -1)
            .await
            .unwrap()
            .0,
        0
    );
    assert_eq!(
        store
            .count_in_window("starts:t3", window, 1)
            .await
            .unwrap()
            .0,
        1
    );
}

#[tokio::test]
async fn local_directory_object_store() {
    let dir = tempfile::tempdir().unwrap();
    object_store_suite(&DirStore::open(dir.path()).unwrap(), Quirks::default()).await;
}

#[tokio::test]
async fn local_sqlite_progress_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteProgress::open(&dir.path().join("p.sqlite3")).unwrap();
    let expiring = SqliteProgress::open(&dir.path().join("e.sqlite3"))
        .unwrap()
        .with_ttl(Duration::from_secs(EXPIRING_TTL));
    progress_store_suite(&store, &expiring).await;
    start_guard_suite(&store).await;
}

#[tokio::test]
async fn missing_or_unwritable_locations_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let err = DirStore::open(file.join("sub")).unwrap_err();
    assert!(err.to_string().contains("plain-file"), "{err}");
    let err = SqliteProgress::open(&file.join("p.sqlite3"))
        .err()
        .expect("cannot open under a file");
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn s3_object_store_on_moto() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let config = sdk_config(&sv.moto, "moto", "moto").await;
    let store = S3Store::new(&config, &format!("s3://{}/some/prefix", unique("conf"))).unwrap();
    store.ensure_bucket().await.unwrap();
    store.ensure_bucket().await.unwrap(); // idempotent
    object_store_suite(&store, Quirks::default()).await;
    assert!(
        store.locate("a/b").starts_with("s3://conf-")
            && store.locate("a/b").ends_with("/some/prefix/a/b")
    );
}

#[tokio::test]
async fn s3_object_store_on_s3s_fs_with_signature_checks() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let config = sdk_config(&sv.s3s, &sv.s3s_key, &sv.s3s_secret).await;
    let store = S3Store::new(&config, &format!("s3://{}", unique("conf"))).unwrap();
    store.ensure_bucket().await.unwrap();
    object_store_suite(
        &store,
        Quirks {
            second_abort_denied: true,
            no_upload_listing: true,
        },
    )
    .await;
}

#[tokio::test]
async fn dynamodb_progress_store_on_moto() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let config = sdk_config(&sv.moto, "moto", "moto").await;
    let table = unique("jobs");
    let store = DynamoProgress::new(&config, &format!("dynamodb://{table}"))
        .unwrap()
        .with_ttl(None);
    store.ensure_table().await.unwrap();
    store.ensure_table().await.unwrap(); // idempotent
                                         // moto never deletes expired items: readers must ignore them by themselves.
    let expiring = DynamoProgress::new(&config, &format!("dynamodb://{table}"))
        .unwrap()
        .with_ttl(Some(Duration::from_secs(EXPIRING_TTL)));
    progress_store_suite(&store, &expiring).await;
    start_guard_suite(&store).await;
}

#[tokio::test]
async fn cloud_misconfiguration_gives_clear_errors() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let moto = sdk_config(&sv.moto, "moto", "moto").await;
    let missing = S3Store::new(&moto, "s3://no-such-bucket-here").unwrap();
    let err = missing.put("x", b"1".to_vec()).await.unwrap_err();
    assert!(
        err.to_string().contains("NoSuchBucket") && !err.is_retryable(),
        "{err}"
    );
    let table = DynamoProgress::new(&moto, "dynamodb://no_such_table").unwrap();
    let err = table.get("dump_1").await.unwrap_err();
    assert!(
        err.to_string().contains("does not exist") && !err.is_retryable(),
        "{err}"
    );
    let wrong = sdk_config(&sv.s3s, &sv.s3s_key, "not-the-secret").await;
    let store = S3Store::new(&wrong, &format!("s3://{}", unique("conf"))).unwrap();
    let err = store.ensure_bucket().await.unwrap_err();
    assert!(
        err.to_string().contains("SignatureDoesNotMatch") && !err.is_retryable(),
        "{err}"
    );
    // A refused ranged read is an error, never "past the end": the refusal's message
    // holds the key, and a key with "416" in it once read as HTTP 416.
    let refused = store.get_range("dump_20260416-000000.sql", 0, 10).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("SignatureDoesNotMatch")),
        "a refused ranged read must fail: {refused:?}"
    );
    assert!(S3Store::new(&moto, "http://bucket").is_err());
    assert!(DynamoProgress::new(&moto, "dynamodb://").is_err());
}
