//! Run locks: the liveness of a local run comes from the runner itself. The process
//! running a dump holds an exclusive lock on `<dir>/<flat id>.lock` for as long as it runs;
//! the kernel releases it when the process ends, however it ends. Another process (a
//! second `serve` or `resume` on the same store) asks the lock, never the age of the
//! job's record, whether the dump is still being run.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// What trying a dump's run lock found.
#[derive(Debug)]
pub enum RunLock {
    /// This process now runs the dump; the lock is held until the file is dropped.
    Taken(File),
    /// Another process runs the dump.
    Held,
}

/// The lock file of dump `id`: one flat file name per id, whatever database it is of.
fn lock_path(dir: &Path, id: &str) -> std::path::PathBuf {
    dir.join(format!("{}.lock", crate::execution::flat_id(id)))
}

/// Tries to take the run lock of dump `id` in `dir` (created if missing).
pub fn try_lock_run(dir: &Path, id: &str) -> std::io::Result<RunLock> {
    std::fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(lock_path(dir, id))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock::Taken(file)),
        Err(TryLockError::WouldBlock) => Ok(RunLock::Held),
        Err(TryLockError::Error(e)) => Err(e),
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
    }
}
