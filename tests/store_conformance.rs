//! One conformance suite per port, written against the trait and run against every
//! adapter (litestream's pattern). Cloud adapters join by adding a backend below.

use std::time::Duration;

use chunkdump::job::{Compression, DumpSpec, Format, JobRecord, JobStatus};
use chunkdump::local::{DirStore, SqliteProgress};
use chunkdump::ports::{ObjectStore, PartReceipt, ProgressStore};
use chunkdump::StoreError;
use bytes::Bytes;

async fn object_store_suite(store: &dyn ObjectStore) {
    // Small objects: put, get, overwrite, delete, missing.
    store.put("a/b/small.txt", b"one".to_vec()).await.unwrap();
    assert_eq!(store.get("a/b/small.txt").await.unwrap().as_deref(), Some(&b"one"[..]));
    store.put("a/b/small.txt", b"two".to_vec()).await.unwrap();
    assert_eq!(store.get("a/b/small.txt").await.unwrap().as_deref(), Some(&b"two"[..]));
    store.delete("a/b/small.txt").await.unwrap();
    assert_eq!(store.get("a/b/small.txt").await.unwrap(), None);
    store.delete("a/b/small.txt").await.unwrap();
    assert_eq!(store.get("never/was").await.unwrap(), None);
    for bad in ["../escape", "/abs", "a//b", "a/./b", ""] {
        assert!(matches!(store.put(bad, vec![]).await, Err(StoreError::Invalid(_))), "key {bad:?} accepted");
    }

    // Multipart: equal parts, a retried part replaces the first attempt.
    let up = store.create_upload("dump/m.bin", 4).await.unwrap();
    store.upload_part("dump/m.bin", &up, 1, Bytes::from_static(b"xxxx")).await.unwrap();
    let p1 = store.upload_part("dump/m.bin", &up, 1, Bytes::from_static(b"AAAA")).await.unwrap();
    let p2 = store.upload_part("dump/m.bin", &up, 2, Bytes::from_static(b"BBBB")).await.unwrap();
    let p3 = store.upload_part("dump/m.bin", &up, 3, Bytes::from_static(b"C")).await.unwrap();
    assert!(store.get("dump/m.bin").await.unwrap().is_none(), "an upload is invisible before completion");
    assert!(matches!(store.upload_part("dump/m.bin", &up, 4, Bytes::from_static(b"toolong")).await, Err(StoreError::Invalid(_))));
    // Unequal parts are refused before the store would accept them.
    let short_middle = [p1.clone(), PartReceipt { size: 3, ..p2.clone() }, p3.clone()];
    assert!(matches!(store.complete_upload("dump/m.bin", &up, &short_middle).await, Err(StoreError::Invalid(_))));
    let gap = [p1.clone(), p3.clone()];
    assert!(matches!(store.complete_upload("dump/m.bin", &up, &gap).await, Err(StoreError::Invalid(_))));
    let size = store.complete_upload("dump/m.bin", &up, &[p1, p2, p3]).await.unwrap();
    assert_eq!(size, 9);
    assert_eq!(store.get("dump/m.bin").await.unwrap().as_deref(), Some(&b"AAAABBBBC"[..]));

    // Parts uploaded past the listed ones are dropped at completion.
    let up = store.create_upload("dump/n.bin", 2).await.unwrap();
    let q1 = store.upload_part("dump/n.bin", &up, 1, Bytes::from_static(b"ab")).await.unwrap();
    let q2 = store.upload_part("dump/n.bin", &up, 2, Bytes::from_static(b"c")).await.unwrap();
    store.upload_part("dump/n.bin", &up, 3, Bytes::from_static(b"zz")).await.unwrap();
    assert_eq!(store.complete_upload("dump/n.bin", &up, &[q1, q2]).await.unwrap(), 3);
    assert_eq!(store.get("dump/n.bin").await.unwrap().as_deref(), Some(&b"abc"[..]));

    // Abort discards; the upload is gone afterwards; aborting twice is fine.
    let up = store.create_upload("dump/gone.bin", 4).await.unwrap();
    let r = store.upload_part("dump/gone.bin", &up, 1, Bytes::from_static(b"data")).await.unwrap();
    store.abort_upload("dump/gone.bin", &up).await.unwrap();
    store.abort_upload("dump/gone.bin", &up).await.unwrap();
    assert!(store.complete_upload("dump/gone.bin", &up, &[r]).await.is_err());
    assert!(store.get("dump/gone.bin").await.unwrap().is_none());
}

fn job(id: &str) -> JobRecord {
    let spec = DumpSpec {
        database: "/tmp/x.db".into(),
        format: Format::Sql,
        compression: Compression::None,
        tables: None,
        include_schema: true,
        chunk_size: 1000,
        part_size: 8 << 20,
    };
    JobRecord::new(id.into(), spec, chrono::Utc::now())
}

async fn progress_store_suite(store: &dyn ProgressStore, expiring: &dyn ProgressStore) {
    let j = job("dump_1");
    store.create(&j).await.unwrap();
    assert!(matches!(store.create(&j).await, Err(StoreError::AlreadyExists(_))));
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
    assert!(matches!(store.commit(&stale, 1).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.get("dump_1").await.unwrap().unwrap().processed_rows, 10);
    assert!(matches!(store.commit(&job("never_created"), 0).await, Err(StoreError::Conflict { .. })));

    // Recent dumps, newest first.
    let mut later = job("dump_2");
    later.created_at = j.created_at + chrono::Duration::seconds(5);
    store.create(&later).await.unwrap();
    let ids: Vec<String> = store.list_recent(10).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["dump_2", "dump_1"]);
    assert_eq!(store.list_recent(1).await.unwrap().len(), 1);

    // Expired records are invisible to readers even before they are deleted.
    expiring.create(&job("short_lived")).await.unwrap();
    assert!(expiring.get("short_lived").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(expiring.get("short_lived").await.unwrap(), None);
    assert!(expiring.list_recent(10).await.unwrap().iter().all(|r| r.id != "short_lived"));
    // ...and its id can be reused.
    expiring.create(&job("short_lived")).await.unwrap();
}

#[tokio::test]
async fn local_directory_object_store() {
    let dir = tempfile::tempdir().unwrap();
    object_store_suite(&DirStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn local_sqlite_progress_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteProgress::open(&dir.path().join("p.sqlite3")).unwrap();
    let expiring = SqliteProgress::open(&dir.path().join("e.sqlite3")).unwrap().with_ttl(Duration::from_secs(1));
    progress_store_suite(&store, &expiring).await;
}

#[tokio::test]
async fn missing_or_unwritable_locations_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let err = DirStore::open(file.join("sub")).unwrap_err();
    assert!(err.to_string().contains("plain-file"), "{err}");
    let err = SqliteProgress::open(&file.join("p.sqlite3")).err().expect("cannot open under a file");
    assert!(!err.is_retryable(), "{err}");
}
