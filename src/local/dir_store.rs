//! `ObjectStore` on a local directory.
//!
//! Objects live at `<root>/<key>`. A multipart upload writes its parts at their offsets
//! into one data file under `<root>/.chunkdump/uploads/<id>/` (plus a size marker per
//! part), and completion renames that file into place: a reader never sees a
//! half-written dump. Small objects are written to a temporary file and renamed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::blocking;
use crate::error::StoreError;
use crate::model::{PartReceipt, PendingUpload, UploadHandle};
use crate::ports::{check_key, check_parts, Download, DownloadLinks, ObjectReader, ObjectStore};

/// A directory used as an object store.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    /// Held (shared) by every file operation while it runs on a blocking thread, which
    /// goes on even when its caller is dropped; [`ObjectStore::settle`] takes it whole.
    in_flight: std::sync::Arc<tokio::sync::RwLock<()>>,
}

impl DirStore {
    /// Uses `root` (created if missing) as the store.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(root.join(".chunkdump/uploads"))
            .map_err(|e| StoreError::from_io(&root.display().to_string(), e))?;
        fs::create_dir_all(root.join(".chunkdump/tmp"))
            .map_err(|e| StoreError::from_io(&root.display().to_string(), e))?;
        Ok(DirStore {
            root,
            in_flight: Default::default(),
        })
    }

    /// Runs file work off the async threads, counted as in flight until it is done.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let running = self.in_flight.clone().read_owned().await;
        // Errors name files by their place in the store, not by this machine's path to
        // it: a job's error is read by API callers, who have no business knowing it.
        let root = format!("{}/", self.root.display());
        blocking(move || {
            let _running = running;
            f()
        })
        .await
        .map_err(|e| e.map_message(|m| m.replace(&root, "")))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn upload_dir(&self, upload: &UploadHandle) -> Result<PathBuf, StoreError> {
        if upload.upload_id.is_empty() || !upload.upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Invalid(format!(
                "invalid upload id {:?}",
                upload.upload_id
            )));
        }
        Ok(self.root.join(".chunkdump/uploads").join(&upload.upload_id))
    }
}

fn io(context: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::from_io(&context.display().to_string(), e)
}

fn random_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Writes `bytes` to `dest` atomically (temporary file in `tmp_dir`, fsync, rename).
fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = tmp_dir.join(random_id());
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io(dest))
}

#[async_trait]
impl ObjectReader for DirStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        self.blocking(move || match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        })
        .await
    }
    async fn get_range(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        use std::io::{Read, Seek};
        let path = self.path(key)?;
        self.blocking(move || {
            let mut f = match fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io(&path)(e)),
            };
            f.seek(std::io::SeekFrom::Start(offset))
                .map_err(io(&path))?;
            let mut buf = Vec::new();
            f.take(len).read_to_end(&mut buf).map_err(io(&path))?;
            Ok(Some(buf))
        })
        .await
    }
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let listed = self.list_modified(prefix).await?;
        Ok(listed.into_iter().map(|(key, _)| key).collect())
    }
    async fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        self.blocking(move || {
            // Only the directory the prefix names is read, then what matches, whole.
            let (dir, name_start) = match prefix.rfind('/') {
                Some(at) => (&prefix[..=at], &prefix[at + 1..]),
                None => ("", prefix.as_str()),
            };
            let start = root.join(dir);
            let entries = match fs::read_dir(&start) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io(&start)(e)),
            };
            let mut pending = Vec::new();
            for entry in entries {
                let entry = entry.map_err(io(&start))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // The store's own files (uploads, staging, progress) are not objects.
                if (dir.is_empty() && name == ".chunkdump") || !name.starts_with(name_start) {
                    continue;
                }
                pending.push((format!("{dir}{name}"), entry.path()));
            }
            let mut keys = Vec::new();
            while let Some((key, path)) = pending.pop() {
                let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
                if meta.is_dir() {
                    for entry in fs::read_dir(&path).map_err(io(&path))? {
                        let entry = entry.map_err(io(&path))?;
                        let name = entry.file_name().to_string_lossy().into_owned();
                        pending.push((format!("{key}/{name}"), entry.path()));
                    }
                } else if meta.is_file() {
                    let modified = meta.modified().ok().and_then(|t| {
                        let since = t.duration_since(std::time::UNIX_EPOCH).ok()?;
                        i64::try_from(since.as_millis()).ok()
                    });
                    keys.push((key, modified));
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }
    fn locate(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

#[async_trait]
impl DownloadLinks for DirStore {
    async fn download(
        &self,
        key: &str,
        _expires_in: std::time::Duration,
    ) -> Result<Download, StoreError> {
        Ok(Download::LocalFile(self.path(key)?))
    }
}

#[async_trait]
impl ObjectStore for DirStore {
    fn links(&self) -> Option<&dyn DownloadLinks> {
        Some(self)
    }

    async fn create_upload(&self, key: &str, part_size: u64) -> Result<UploadHandle, StoreError> {
        self.path(key)?;
        if part_size == 0 {
            return Err(StoreError::Invalid("part size must be positive".into()));
        }
        let handle = UploadHandle {
            upload_id: random_id(),
            part_size,
        };
        let dir = self.upload_dir(&handle)?;
        let key = key.to_string();
        self.blocking(move || {
            fs::create_dir_all(&dir).map_err(io(&dir))?;
            fs::write(dir.join("key"), key.as_bytes()).map_err(io(&dir))?;
            Ok(handle)
        })
        .await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload: &UploadHandle,
        number: u32,
        bytes: Bytes,
    ) -> Result<PartReceipt, StoreError> {
        self.path(key)?;
        if !(1..=10_000).contains(&number) {
            return Err(StoreError::Invalid(format!(
                "part number {number} outside 1..=10000"
            )));
        }
        if bytes.len() as u64 > upload.part_size {
            return Err(StoreError::Invalid(format!(
                "part {number} has {} bytes, more than the part size {}",
                bytes.len(),
                upload.part_size
            )));
        }
        let dir = self.upload_dir(upload)?;
        let offset = u64::from(number - 1) * upload.part_size;
        self.blocking(move || {
            if !dir.is_dir() {
                return Err(StoreError::NotFound(format!("upload {}", dir.display())));
            }
            let data = dir.join("data");
            let f = fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&data)
                .map_err(io(&data))?;
            f.write_all_at(&bytes, offset).map_err(io(&data))?;
            // Sync each part now, on the uploader's thread while the export continues,
            // rather than the whole file in one stall at completion.
            f.sync_data().map_err(io(&data))?;
            let size = bytes.len() as u64;
            fs::write(dir.join(format!("part-{number:05}")), size.to_string()).map_err(io(&dir))?;
            Ok(PartReceipt {
                number,
                etag: format!("\"{number}-{size}\""),
                size,
                sha256: String::new(),
            })
        })
        .await
    }
    async fn complete_upload(
        &self,
        key: &str,
        upload: &UploadHandle,
        parts: &[PartReceipt],
    ) -> Result<u64, StoreError> {
        let dest = self.path(key)?;
        let dir = self.upload_dir(upload)?;
        let total = check_parts(parts, upload.part_size)?;
        let parts = parts.to_vec();
        self.blocking(move || {
            if !dir.is_dir() {
                return Err(StoreError::NotFound(format!("upload {}", dir.display())));
            }
            // Trust the markers written with the data, not the caller's receipts.
            for p in &parts {
                let marker = dir.join(format!("part-{:05}", p.number));
                let stored = fs::read_to_string(&marker).map_err(|_| {
                    StoreError::Invalid(format!("part {} was never uploaded", p.number))
                })?;
                if stored.trim() != p.size.to_string() {
                    return Err(StoreError::Invalid(format!(
                        "part {} has {} bytes stored, {} listed",
                        p.number,
                        stored.trim(),
                        p.size
                    )));
                }
            }
            let data = dir.join("data");
            let f = fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&data)
                .map_err(io(&data))?;
            // Drop bytes of parts past the listed ones (left by an abandoned attempt).
            f.set_len(total).map_err(io(&data))?;
            f.sync_all().map_err(io(&data))?;
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io(parent))?;
            }
            fs::rename(&data, &dest).map_err(io(&dest))?;
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
            Ok(total)
        })
        .await
    }
    async fn abort_upload(&self, key: &str, upload: &UploadHandle) -> Result<(), StoreError> {
        self.path(key)?;
        let dir = self.upload_dir(upload)?;
        self.blocking(move || match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(e)),
            _ => Ok(()),
        })
        .await
    }
    async fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let uploads = self.root.join(".chunkdump/uploads");
        let prefix = prefix.to_string();
        self.blocking(move || {
            let mut found = Vec::new();
            for entry in fs::read_dir(&uploads).map_err(io(&uploads))? {
                let dir = entry.map_err(io(&uploads))?.path();
                // An upload directory without its key file is being created right now.
                let Ok(key) = fs::read_to_string(dir.join("key")) else {
                    continue;
                };
                let Some(id) = dir.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if key.starts_with(&prefix) {
                    found.push(PendingUpload {
                        key,
                        handle: UploadHandle {
                            upload_id: id.to_string(),
                            part_size: 0,
                        },
                    });
                }
            }
            found.sort_by(|a, b| (&a.key, &a.handle.upload_id).cmp(&(&b.key, &b.handle.upload_id)));
            Ok(found)
        })
        .await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let dest = self.path(key)?;
        let tmp = self.root.join(".chunkdump/tmp");
        self.blocking(move || write_atomic(&tmp, &dest, &bytes))
            .await
    }
    async fn settle(&self) {
        drop(self.in_flight.write().await);
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let root = self.root.clone();
        self.blocking(move || {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(e)),
                _ => {}
            }
            // Directories exist only for their objects (a CSV dump's directory): remove
            // the ones this delete emptied, as an object store has no empty folders.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != root && d.starts_with(&root)) {
                if fs::remove_dir(d).is_err() {
                    break; // not empty (or already gone)
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
    }
}
