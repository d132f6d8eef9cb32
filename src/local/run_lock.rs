//! Run locks: the liveness of a local run comes from the runner itself. The process
//! running a dump holds an exclusive lock on `<dir>/<flat id>.lock` for as long as it runs;
//! the kernel releases it when the process ends, however it ends. Another process (a
//! second `serve` or `resume` on the same store) asks the lock, never the age of the
//! job's record, whether the dump is still being run.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What trying a dump's run lock found.
#[derive(Debug)]
pub enum RunLock {
    /// This process now runs the dump; the lock is held until it is dropped.
    Taken(HeldLock),
    /// Another process runs the dump.
    Held,
}

/// A run lock this process holds. Dropping it removes the lock file, then releases the
/// lock: lock files do not pile up, one per dump ever run.
#[derive(Debug)]
pub struct HeldLock {
    /// Holds the lock (released when it is closed, after the drop removes the file).
    _file: File,
    path: PathBuf,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Removed while still locked: a process that opened this file meanwhile finds,
        // once it gets the lock, that it is no longer the file at the path, and retries
        // (see `try_lock_run`).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The longest lock file name: file systems take 255 bytes.
const MAX_NAME: usize = 200;

/// The lock file of dump `id`: one flat file name per id, whatever database it is of,
/// short enough for any file system (a long id keeps its start and a hash of the whole).
fn lock_path(dir: &Path, id: &str) -> PathBuf {
    let flat = crate::execution::flat_id(id);
    let name = if flat.len() <= MAX_NAME {
        flat
    } else {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(&Sha256::digest(id.as_bytes())[..12]);
        // flat_id is ASCII: any byte index is a character boundary.
        format!("{}-{digest}", &flat[..MAX_NAME - 25])
    };
    dir.join(format!("{name}.lock"))
}

/// Tries to take the run lock of dump `id` in `dir` (created if missing).
pub fn try_lock_run(dir: &Path, id: &str) -> std::io::Result<RunLock> {
    std::fs::create_dir_all(dir)?;
    let path = lock_path(dir, id);
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(RunLock::Held),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        // The lock is ours only if the file is still the one at the path: its last holder
        // may have removed it between our open and our lock.
        let ours = file.metadata()?;
        match std::fs::metadata(&path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                return Ok(RunLock::Taken(HeldLock { _file: file, path }))
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Whether another process holds the run lock of dump `id` in `dir` (looked at without
/// creating anything: no lock file, no run).
pub fn held_elsewhere(dir: &Path, id: &str) -> bool {
    let Ok(file) = File::open(lock_path(dir, id)) else {
        return false;
    };
    // A shared lock fails only while someone holds the exclusive one.
    match file.try_lock_shared() {
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_seen_and_released_with_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!held_elsewhere(dir.path(), "d1"));
        let RunLock::Taken(file) = try_lock_run(dir.path(), "d1").unwrap() else {
            panic!("free lock not taken");
        };
        // Another open file description (another process, as far as locks go) sees it.
        assert!(held_elsewhere(dir.path(), "d1"));
        assert!(matches!(
            try_lock_run(dir.path(), "d1").unwrap(),
            RunLock::Held
        ));
        drop(file);
        assert!(!held_elsewhere(dir.path(), "d1"));
        // Released: its file is gone, and the lock can be taken again.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(matches!(
            try_lock_run(dir.path(), "d1").unwrap(),
            RunLock::Taken(_)
        ));
    }

    #[test]
    fn any_id_gets_a_lock_file_name_a_file_system_takes() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!(
            "{}/{}/dump_20261207-010101",
            "a".repeat(150),
            "b".repeat(150)
        );
        let other = format!(
            "{}/{}/dump_20261207-010101",
            "a".repeat(150),
            "c".repeat(150)
        );
        let RunLock::Taken(held) = try_lock_run(dir.path(), &long).unwrap() else {
            panic!("free lock not taken");
        };
        assert!(held.path.file_name().unwrap().len() <= 255);
        assert!(held_elsewhere(dir.path(), &long));
        assert!(
            !held_elsewhere(dir.path(), &other),
            "ids that share a start differ"
        );
    }
}
