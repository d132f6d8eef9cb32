//! The async side of a chunk: receives parts from the engine and writes them to the
//! object store, several at once (bounded by the upload concurrency), completing each
//! object once all of its parts are stored.
//!
//! Why bounded parallelism: against a remote store a part upload is mostly waiting (round
//! trips, a per-connection bandwidth cap), so one upload at a time leaves the link idle.
//! The bound keeps memory at `concurrency + 2` parts (in flight, queued, being filled).
//! Parts keep their numbers and sizes, so the object's bytes do not depend on the order
//! uploads finish in; receipts are sorted by part number before completion.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use crate::engine::{BufferPool, PartBuf, UploadEvent};
use crate::error::StoreError;
use crate::model::FileEntry;
use crate::model::{PartReceipt, UploadHandle};
use crate::ports::ObjectStore;
use sha2::{Digest, Sha256};

/// A file's digest from its parts' SHA-256 digests (hex, in part order): SHA-256 over
/// the concatenated binary digests. An empty file is one empty part.
pub fn file_digest(part_digests: &[String]) -> String {
    if part_digests.is_empty() {
        return file_digest(&[hex::encode(Sha256::digest(b""))]);
    }
    let mut h = Sha256::new();
    for d in part_digests {
        h.update(hex::decode(d).unwrap_or_default());
    }
    hex::encode(h.finalize())
}

/// The upload of the object currently being written.
#[derive(Debug)]
pub struct OpenUpload {
    pub object: u32,
    pub key: String,
    pub handle: Option<UploadHandle>,
    pub receipts: Vec<PartReceipt>,
}

/// What the uploader did in one chunk, for the commit.
#[derive(Debug, Default)]
pub struct UploadSummary {
    /// The object still open at the end of the chunk (its receipts sorted by number).
    pub open: Option<OpenUpload>,
    /// Objects completed in this chunk.
    pub finished: Vec<FileEntry>,
}

type PartUpload<'a> = Pin<Box<dyn Future<Output = Result<PartReceipt, StoreError>> + Send + 'a>>;

/// Uploads the engine's parts, up to `concurrency` at a time.
pub struct Uploader<'a> {
    store: &'a dyn ObjectStore,
    part_size: u64,
    concurrency: usize,
    open: Option<OpenUpload>,
    finished: Vec<FileEntry>,
    /// Uploads this chunk created (aborted if the chunk fails before committing).
    created: Vec<(String, UploadHandle)>,
    in_flight: FuturesUnordered<PartUpload<'a>>,
    /// Part buffers go back to the engine through this pool.
    pool: BufferPool,
    /// Leading bytes of every object its digest leaves out: an encrypted object's age
    /// header, which `rekey` may rewrite (see [`Uploader::digest_from`]).
    digest_skip: usize,
}

impl<'a> Uploader<'a> {
    /// An uploader continuing `open` (the object a previous chunk left unfinished).
    pub fn new(
        store: &'a dyn ObjectStore,
        part_size: u64,
        concurrency: usize,
        open: Option<OpenUpload>,
    ) -> Self {
        Uploader {
            store,
            part_size,
            concurrency: concurrency.max(1),
            open,
            finished: Vec::new(),
            created: Vec::new(),
            in_flight: FuturesUnordered::new(),
            // One buffer being filled, the rest in flight (or waiting for a slot).
            pool: BufferPool::new(concurrency.max(1) + 1, concurrency.clamp(1, 4)),
            digest_skip: 0,
        }
    }

    /// Digests from byte `skip` of each object on: an encrypted dump's objects are hashed
    /// after their age header and nonce (`encryption::PREFIX_BYTES`), which a new
    /// recipient set rewrites; the header has its own MAC.
    pub fn digest_from(mut self, skip: u64) -> Self {
        self.digest_skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self
    }

    /// The pool the engine takes part buffers from.
    pub fn pool(&self) -> BufferPool {
        self.pool.clone()
    }

    /// The open object and the finished ones (call after `run`).
    pub fn summary(&self) -> UploadSummary {
        let open = self.open.as_ref().map(|o| OpenUpload {
            object: o.object,
            key: o.key.clone(),
            handle: o.handle.clone(),
            receipts: o.receipts.clone(),
        });
        UploadSummary {
            open,
            finished: self.finished.clone(),
        }
    }

    fn open_for(&mut self, object: u32, key: &str) -> &mut OpenUpload {
        if self.open.as_ref().is_none_or(|o| o.object != object) {
            self.open = Some(OpenUpload {
                object,
                key: key.to_string(),
                handle: None,
                receipts: Vec::new(),
            });
        }
        self.open.as_mut().expect("just set")
    }

    /// Starts uploading a part (creating the multipart upload first if needed), after
    /// waiting for a free slot.
    async fn dispatch(
        &mut self,
        object: u32,
        key: &str,
        number: u32,
        bytes: PartBuf,
    ) -> Result<(), StoreError> {
        while self.in_flight.len() >= self.concurrency {
            self.settle_one().await?;
        }
        let (store, part_size) = (self.store, self.part_size);
        let open = self.open_for(object, key);
        // Receipts at or past this number are from a chunk that did not commit: this
        // upload replaces them.
        open.receipts.retain(|r| r.number < number);
        let handle = match &open.handle {
            Some(h) => h.clone(),
            None => {
                let h = store.create_upload(key, part_size).await?;
                let open = self.open.as_mut().expect("open");
                open.handle = Some(h.clone());
                self.created.push((key.to_string(), h.clone()));
                h
            }
        };
        let key = key.to_string();
        let skip = if number == 1 { self.digest_skip } else { 0 };
        self.in_flight.push(Box::pin(async move {
            // The buffer returns to the pool when the store drops the last reference.
            let bytes = Bytes::from_owner(bytes);
            // Hashing 8 MiB takes tens of milliseconds: off the async thread, in parallel
            // with the upload itself.
            let to_hash = bytes.clone();
            let digest = tokio::task::spawn_blocking(move || {
                hex::encode(Sha256::digest(&to_hash[skip.min(to_hash.len())..]))
            });
            let mut receipt = store.upload_part(&key, &handle, number, bytes).await?;
            receipt.sha256 = digest
                .await
                .map_err(|e| StoreError::Permanent(format!("hashing part {number}: {e}")))?;
            Ok(receipt)
        }));
        Ok(())
    }

    /// Waits for one upload in flight and records its receipt.
    async fn settle_one(&mut self) -> Result<(), StoreError> {
        match self.in_flight.next().await {
            Some(done) => self.record(done),
            None => Ok(()),
        }
    }

    /// Records a settled upload's receipt, in part order.
    fn record(&mut self, done: Result<PartReceipt, StoreError>) -> Result<(), StoreError> {
        let receipt = done?;
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| StoreError::Permanent("part stored with no object open".into()))?;
        let at = open.receipts.partition_point(|r| r.number < receipt.number);
        open.receipts.insert(at, receipt);
        Ok(())
    }

    async fn settle_all(&mut self) -> Result<(), StoreError> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Consumes events until the engine closes the channel and every upload has settled.
    pub async fn run(&mut self, rx: mpsc::Receiver<UploadEvent>) -> Result<(), StoreError> {
        let result = self.consume(rx).await;
        // An export waiting for a buffer must not wait for an uploader that has stopped.
        self.pool.close();
        result
    }

    async fn consume(&mut self, mut rx: mpsc::Receiver<UploadEvent>) -> Result<(), StoreError> {
        loop {
            // Record finished uploads while waiting for the engine, so buffers return to
            // the pool (and failures surface) as soon as they happen.
            let event = tokio::select! {
                biased;
                Some(done) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.record(done)?;
                    continue;
                }
                event = rx.recv() => event,
            };
            let Some(event) = event else { break };
            match event {
                UploadEvent::Part {
                    object,
                    key,
                    number,
                    bytes,
                } => {
                    tracing::debug!(%key, number, size = bytes.len(), "uploading part");
                    self.dispatch(object, &key, number, bytes).await?;
                }
                UploadEvent::Finish {
                    object,
                    key,
                    last,
                    size,
                } => self.finish(object, &key, last, size).await?,
            }
        }
        self.settle_all().await
    }

    async fn finish(
        &mut self,
        object: u32,
        key: &str,
        last: Option<(u32, PartBuf)>,
        size: u64,
    ) -> Result<(), StoreError> {
        let single = self
            .open
            .as_ref()
            .is_none_or(|o| o.object != object || o.handle.is_none());
        // A one-part object needs no multipart upload at all.
        let single_part = match last {
            Some((1, bytes)) if single => {
                let digest =
                    hex::encode(Sha256::digest(&bytes[self.digest_skip.min(bytes.len())..]));
                self.store.put(key, bytes.into_vec()).await?;
                Some(digest)
            }
            Some((number, bytes)) => {
                self.dispatch(object, key, number, bytes).await?;
                None
            }
            None => None,
        };
        self.settle_all().await?;
        let parts: Vec<String> = match single_part {
            Some(digest) => vec![digest],
            None => self
                .open
                .as_ref()
                .filter(|o| o.object == object)
                .map_or(Vec::new(), |o| {
                    o.receipts.iter().map(|r| r.sha256.clone()).collect()
                }),
        };
        if let Some(open) = self
            .open
            .take()
            .filter(|o| o.object == object && o.handle.is_some())
        {
            let handle = open.handle.expect("checked");
            let stored = self
                .store
                .complete_upload(key, &handle, &open.receipts)
                .await?;
            if stored != size {
                return Err(StoreError::Permanent(format!(
                    "{key}: store holds {stored} bytes, {size} were written"
                )));
            }
        }
        tracing::info!(%key, size, "object complete");
        self.finished.push(FileEntry {
            key: key.to_string(),
            size,
            sha256: Some(file_digest(&parts)),
        });
        Ok(())
    }

    /// Cancels uploads in flight and aborts the uploads this chunk created and did not
    /// complete (best effort).
    pub async fn abort_created(&mut self) {
        // Dropping the futures cancels their requests before the abort is sent.
        self.in_flight.clear();
        let live: Vec<(String, UploadHandle)> = std::mem::take(&mut self.created)
            .into_iter()
            .filter(|(_, h)| self.open.as_ref().and_then(|o| o.handle.as_ref()) == Some(h))
            .collect();
        for (key, handle) in live {
            if let Err(e) = self.store.abort_upload(&key, &handle).await {
                tracing::warn!(%key, error = %e, "could not abort upload");
            }
        }
    }
}

impl Drop for Uploader<'_> {
    fn drop(&mut self) {
        self.pool.close();
    }
}
