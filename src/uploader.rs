//! The async side of a chunk: receives parts from the engine and writes them to the
//! object store, completing each object when the engine finishes it.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::engine::{BufferPool, UploadEvent};
use crate::error::StoreError;
use crate::job::FileEntry;
use crate::ports::{ObjectStore, PartReceipt, UploadHandle};
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

/// Uploads the engine's parts in order.
pub struct Uploader<'a> {
    store: &'a dyn ObjectStore,
    part_size: u64,
    /// The object in progress (carried over from the previous chunk, or started here).
    pub open: Option<OpenUpload>,
    /// Objects completed in this chunk.
    pub finished: Vec<FileEntry>,
    /// Uploads this chunk created (aborted if the chunk fails before committing).
    created: Vec<(String, UploadHandle)>,
    /// Part buffers go back to the engine through this pool.
    pub pool: BufferPool,
}

impl<'a> Uploader<'a> {
    pub fn new(store: &'a dyn ObjectStore, part_size: u64, open: Option<OpenUpload>) -> Self {
        Uploader { store, part_size, open, finished: Vec::new(), created: Vec::new(), pool: BufferPool::default() }
    }

    fn open_for(&mut self, object: u32, key: &str) -> &mut OpenUpload {
        if self.open.as_ref().is_none_or(|o| o.object != object) {
            self.open = Some(OpenUpload { object, key: key.to_string(), handle: None, receipts: Vec::new() });
        }
        self.open.as_mut().expect("just set")
    }

    async fn upload(&mut self, object: u32, key: &str, number: u32, bytes: Vec<u8>) -> Result<(), StoreError> {
        let (store, part_size) = (self.store, self.part_size);
        let open = self.open_for(object, key);
        let handle = match &open.handle {
            Some(h) => h.clone(),
            None => {
                let h = store.create_upload(key, part_size).await?;
                open.handle = Some(h.clone());
                self.created.push((key.to_string(), h.clone()));
                h
            }
        };
        let digest = hex::encode(Sha256::digest(&bytes));
        let bytes = Bytes::from(bytes);
        let mut receipt = store.upload_part(key, &handle, number, bytes.clone()).await?;
        receipt.sha256 = digest;
        // The store has dropped its reference: reclaim the buffer for the next part.
        if let Ok(buf) = bytes.try_into_mut() {
            self.pool.give_back(buf.into());
        }
        let open = self.open.as_mut().expect("open");
        open.receipts.retain(|r| r.number < number);
        open.receipts.push(receipt);
        Ok(())
    }

    /// Consumes events until the engine closes the channel.
    pub async fn run(&mut self, mut rx: mpsc::Receiver<UploadEvent>) -> Result<(), StoreError> {
        while let Some(event) = rx.recv().await {
            match event {
                UploadEvent::Part { object, key, number, bytes } => {
                    tracing::debug!(%key, number, size = bytes.len(), "uploading part");
                    self.upload(object, &key, number, bytes).await?;
                }
                UploadEvent::Finish { object, key, last, size } => {
                    let single = self.open.as_ref().is_none_or(|o| o.object != object || o.handle.is_none());
                    // A one-part object needs no multipart upload at all.
                    let single_part = match last {
                        Some((1, bytes)) if single => {
                            let digest = hex::encode(Sha256::digest(&bytes));
                            self.store.put(&key, bytes).await?;
                            Some(digest)
                        }
                        Some((number, bytes)) => {
                            self.upload(object, &key, number, bytes).await?;
                            None
                        }
                        None => None,
                    };
                    let parts: Vec<String> = match single_part {
                        Some(digest) => vec![digest],
                        None => self.open.as_ref().filter(|o| o.object == object).map_or(Vec::new(), |o| o.receipts.iter().map(|r| r.sha256.clone()).collect()),
                    };
                    if let Some(open) = self.open.take().filter(|o| o.object == object && o.handle.is_some()) {
                        let handle = open.handle.expect("checked");
                        let stored = self.store.complete_upload(&key, &handle, &open.receipts).await?;
                        if stored != size {
                            return Err(StoreError::Permanent(format!("{key}: store holds {stored} bytes, {size} were written")));
                        }
                    }
                    tracing::info!(%key, size, "object complete");
                    self.finished.push(FileEntry { key: key.to_string(), size, sha256: Some(file_digest(&parts)) });
                }
            }
        }
        Ok(())
    }

    /// Aborts the uploads this chunk created and did not complete (best effort).
    pub async fn abort_created(&mut self) {
        let live: Vec<(String, UploadHandle)> =
            std::mem::take(&mut self.created).into_iter().filter(|(_, h)| self.open.as_ref().and_then(|o| o.handle.as_ref()) == Some(h)).collect();
        for (key, handle) in live {
            if let Err(e) = self.store.abort_upload(&key, &handle).await {
                tracing::warn!(%key, error = %e, "could not abort upload");
            }
        }
    }
}
