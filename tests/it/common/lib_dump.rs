//! Dumps through the library (no CLI), with a spy object store that checks every
//! upload against R2's multipart rules.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chunkdump::chunk::ChunkOptions;
use chunkdump::lifecycle::create_dump;
use chunkdump::local::{DirStore, SqliteProgress};
use chunkdump::model::JobRecord;
use chunkdump::model::{Compression, DumpSpec, Format};
use chunkdump::model::{PartReceipt, UploadHandle};
use chunkdump::ports::ProgressStore;
use chunkdump::ports::{check_parts, ObjectReader, ObjectStore};
use chunkdump::runner::LocalRunner;
use chunkdump::tasks::Tasks;
use chunkdump::DumpError;
use chunkdump::StoreError;

/// Delegates to another store and records every completed upload's part sizes.
pub struct SpyStore<S> {
    pub inner: S,
    pub completed: Mutex<Vec<(String, Vec<u64>)>>,
}

#[async_trait]
impl<S: ObjectStore> ObjectReader for SpyStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_range(key, offset, len).await
    }
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_keys(prefix).await
    }
    fn locate(&self, key: &str) -> String {
        self.inner.locate(key)
    }
}

#[async_trait]
#[async_trait]
impl<S: ObjectStore> ObjectStore for SpyStore<S> {
    fn links(&self) -> Option<&dyn chunkdump::ports::DownloadLinks> {
        self.inner.links()
    }

    async fn create_upload(&self, key: &str, part_size: u64) -> Result<UploadHandle, StoreError> {
        self.inner.create_upload(key, part_size).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload: &UploadHandle,
        number: u32,
        bytes: bytes::Bytes,
    ) -> Result<PartReceipt, StoreError> {
        self.inner.upload_part(key, upload, number, bytes).await
    }
    async fn complete_upload(
        &self,
        key: &str,
        upload: &UploadHandle,
        parts: &[PartReceipt],
    ) -> Result<u64, StoreError> {
        // R2 refuses unequal parts at completion: so must we, independently of the adapter.
        check_parts(parts, upload.part_size).expect("R2 multipart rules hold");
        self.completed
            .lock()
            .unwrap()
            .push((key.to_string(), parts.iter().map(|p| p.size).collect()));
        self.inner.complete_upload(key, upload, parts).await
    }
    async fn abort_upload(&self, key: &str, upload: &UploadHandle) -> Result<(), StoreError> {
        self.inner.abort_upload(key, upload).await
    }
    async fn pending_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<chunkdump::model::PendingUpload>, StoreError> {
        self.inner.pending_uploads(prefix).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.inner.put(key, bytes).await
    }
    async fn settle(&self) {
        self.inner.settle().await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

/// Fails or delays some calls of the wrapped store, and records how many part uploads
/// were in flight at once.
pub struct FaultyStore<S> {
    pub inner: S,
    calls: AtomicU32,
    /// Every n-th call fails with this error (transient or permanent).
    every: u32,
    permanent: bool,
    /// At most this many faults are injected.
    max_faults: u32,
    faults: AtomicU32,
    in_flight: AtomicU32,
    /// The most part uploads seen running at the same time.
    pub max_in_flight: AtomicU32,
}

impl<S> FaultyStore<S> {
    /// Every `every`-th call (of those that can fail) fails, transiently or not.
    pub fn new(inner: S, every: u32, permanent: bool) -> Self {
        FaultyStore {
            inner,
            calls: AtomicU32::new(0),
            every,
            permanent,
            max_faults: u32::MAX,
            faults: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            max_in_flight: AtomicU32::new(0),
        }
    }

    /// Injects at most `n` faults (so a long chunk can get through after its retries).
    pub fn at_most(mut self, n: u32) -> Self {
        self.max_faults = n;
        self
    }

    fn fault(&self, op: &str) -> Result<(), StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if !n.is_multiple_of(self.every)
            || self.faults.fetch_add(1, Ordering::SeqCst) >= self.max_faults
        {
            return Ok(());
        }
        let msg = format!("injected fault on call {n} ({op})");
        Err(if self.permanent {
            StoreError::Permanent(msg)
        } else {
            StoreError::Transient(msg)
        })
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectReader for FaultyStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.fault("get")?;
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.fault("get")?;
        self.inner.get_range(key, offset, len).await
    }
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_keys(prefix).await
    }
    fn locate(&self, key: &str) -> String {
        self.inner.locate(key)
    }
}

#[async_trait]
#[async_trait]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    fn links(&self) -> Option<&dyn chunkdump::ports::DownloadLinks> {
        self.inner.links()
    }

    async fn create_upload(&self, key: &str, part_size: u64) -> Result<UploadHandle, StoreError> {
        self.fault("create_upload")?;
        self.inner.create_upload(key, part_size).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload: &UploadHandle,
        number: u32,
        bytes: bytes::Bytes,
    ) -> Result<PartReceipt, StoreError> {
        self.fault("upload_part")?;
        // Counted by a guard: a failed chunk drops its other uploads at an `.await`, and
        // a decrement after that `.await` would never run (the count would leak into the
        // retried chunk's).
        let _counted = InFlight::enter(&self.in_flight, &self.max_in_flight);
        // A slow answer now and then, so later parts finish first.
        if number.is_multiple_of(3) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.inner.upload_part(key, upload, number, bytes).await
    }
    async fn complete_upload(
        &self,
        key: &str,
        upload: &UploadHandle,
        parts: &[PartReceipt],
    ) -> Result<u64, StoreError> {
        self.fault("complete_upload")?;
        self.inner.complete_upload(key, upload, parts).await
    }
    async fn abort_upload(&self, key: &str, upload: &UploadHandle) -> Result<(), StoreError> {
        self.inner.abort_upload(key, upload).await
    }
    async fn pending_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<chunkdump::model::PendingUpload>, StoreError> {
        self.inner.pending_uploads(prefix).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.fault("put")?;
        self.inner.put(key, bytes).await
    }
    async fn settle(&self) {
        self.inner.settle().await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

/// One part upload counted as in flight until it is dropped, finished or not.
struct InFlight<'a>(&'a AtomicU32);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicU32, most: &AtomicU32) -> Self {
        let now = count.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Result of a library dump: the output files (relative key, bytes) and upload shapes.
pub struct LibDump {
    pub files: Vec<(String, Vec<u8>)>,
    pub uploads: Vec<(String, Vec<u64>)>,
    pub chunks: u64,
}

/// Dumps `db` with the given slice size, chunk budget and part size, locally.
pub fn lib_dump(
    db: &Path,
    format: Format,
    compression: Compression,
    slice_rows: u32,
    budget: Duration,
    part_size: u64,
) -> LibDump {
    let work = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Arc::new(SpyStore {
            inner: DirStore::open(work.path()).unwrap(),
            completed: Mutex::new(Vec::new()),
        });
        let progress = Arc::new(
            SqliteProgress::open(&work.path().join(".chunkdump/progress.sqlite3")).unwrap(),
        );
        lib_dump_to(
            &store,
            progress,
            db,
            format,
            compression,
            slice_rows,
            budget,
            part_size,
        )
        .await
    })
}

/// Dumps `db` into the given stores (the object store wrapped in a spy by the caller).
#[allow(clippy::too_many_arguments)]
pub async fn lib_dump_to<S: ObjectStore + 'static>(
    store: &Arc<SpyStore<S>>,
    progress: Arc<dyn ProgressStore>,
    db: &Path,
    format: Format,
    compression: Compression,
    slice_rows: u32,
    budget: Duration,
    part_size: u64,
) -> LibDump {
    {
        let spec = DumpSpec {
            database: db.display().to_string(),
            format,
            compression,
            tables: None,
            include_schema: true,
            slice_rows: chunkdump::model::SliceRows::new(slice_rows).unwrap(),
            part_size,
            snapshot: false,
            snapshot_max_block_ms: None,
            frame_size: None,
            shown_as: None,
            drill: false,
            recipients: Vec::new(),
        };
        let job = create_dump(progress.as_ref(), spec, Some("d".into()))
            .await
            .unwrap();
        let opts = ChunkOptions {
            budget,
            ..Default::default()
        };
        // A continue-as-new every 5 chunks: cutting executions must not change the output.
        let done = run_local(store.clone(), progress, &job.id, opts, Duration::ZERO, 5)
            .await
            .unwrap();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for f in &done.files {
            files.push((
                f.key.clone(),
                store
                    .get(&f.key)
                    .await
                    .unwrap()
                    .expect("completed file exists"),
            ));
        }
        files.sort();
        for (key, bytes) in &files {
            let size = done.files.iter().find(|f| &f.key == key).unwrap().size;
            assert_eq!(bytes.len() as u64, size, "recorded size of {key}");
        }
        let uploads = store.completed.lock().unwrap().clone();
        LibDump {
            files,
            uploads,
            chunks: done.chunks,
        }
    }
}

/// Runs dump `id` to the end through the local runner (the shipped state machine).
pub async fn run_local(
    objects: Arc<dyn ObjectStore>,
    progress: Arc<dyn ProgressStore>,
    id: &str,
    chunk: ChunkOptions,
    breathe: Duration,
    chunks_per_execution: u32,
) -> Result<JobRecord, DumpError> {
    let tasks = Tasks {
        objects,
        progress,
        notifier: None,
        chunk,
        breathe,
        whole_seconds: false,
        chunks_per_execution,
        drills: crate::common::test_drills(),
        drill_metrics: None,
    };
    LocalRunner::new(tasks).unwrap().run_to_end(id).await
}
