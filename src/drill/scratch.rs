//! A drill's private scratch directory, and the removal of those earlier drills left.
//!
//! A drill killed mid-restore (kill -9, an OOM, a Lambda timeout on a reused /tmp) leaves
//! its `chunkdump-drill-*` directory behind, with a restored database as large as the
//! source in it; nothing else would ever remove it. Every drill holds an exclusive lock
//! on a `.lock` file inside its own directory for as long as it runs, and the kernel drops
//! the lock when the process dies, however it dies. So before a drill makes its directory,
//! it removes every other one whose lock it can take: their drills are gone. A directory
//! whose lock is held belongs to a drill still running (in this process or another) and
//! is left alone.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The prefix of every drill's scratch directory.
const PREFIX: &str = "chunkdump-drill-";
/// The lock file a running drill holds, inside its directory.
const LOCK: &str = ".lock";
/// A scratch directory with no lock file at all is one made by a version before locks,
/// or by a drill killed between making the directory and locking it: removed once it is
/// this old (a drill just starting gets its lock within microseconds).
const UNLOCKED_AGE: Duration = Duration::from_secs(3600);

/// A running drill's scratch directory: removed when dropped; its lock held until then.
pub(super) struct Scratch {
    dir: tempfile::TempDir,
    _lock: File,
}

impl Scratch {
    /// Removes what killed drills left in `parent`, then makes this drill's directory
    /// (private: 0700) and locks it.
    pub(super) fn claim(parent: &Path) -> std::io::Result<Scratch> {
        remove_abandoned(parent);
        let dir = tempfile::Builder::new().prefix(PREFIX).tempdir_in(parent)?;
        // Locked under a name the cleaner never opens, then renamed into place: a
        // `.lock` file is always held by a live drill or by none (the lock follows the
        // file through the rename).
        let pending = dir.path().join(".lock.pending");
        let lock = File::create(&pending)?;
        lock.try_lock().map_err(std::io::Error::other)?;
        std::fs::rename(&pending, dir.path().join(LOCK))?;
        Ok(Scratch { dir, _lock: lock })
    }

    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes every scratch directory in `parent` whose drill is no longer running. Best
/// effort: a directory that cannot be read or removed is left (and the drill goes on).
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_scratch = name.to_str().is_some_and(|n| n.starts_with(PREFIX));
        // Never follow a symlink out of the scratch directory.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_scratch || !is_dir {
            continue;
        }
        let dir = entry.path();
        if !abandoned(&dir) {
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), "removed a killed drill's scratch directory")
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a killed drill's scratch directory")
            }
        }
    }
}

/// Whether the drill that made `dir` is gone: its lock can be taken, or it has no lock
/// file and is old.
fn abandoned(dir: &Path) -> bool {
    match File::open(dir.join(LOCK)) {
        // Taken here only to test it; dropped (released) at once.
        Ok(lock) => lock.try_lock().is_ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|made| SystemTime::now().duration_since(made).ok())
            .is_some_and(|age| age >= UNLOCKED_AGE),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_drills_directory_goes_and_a_live_ones_stays() {
        let parent = tempfile::tempdir().unwrap();
        // A live drill: its lock is held (by this process, as another drill would hold it).
        let live = Scratch::claim(parent.path()).unwrap();
        std::fs::write(live.path().join("drill.db"), b"in use").unwrap();
        // A killed drill: a directory with a lock file nobody holds, and its database.
        let dead = parent.path().join(format!("{PREFIX}killed"));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(dead.join("drill.db"), vec![0u8; 4096]).unwrap();
        // A directory just being made (no lock file yet), and one that is not a drill's.
        let starting = parent.path().join(format!("{PREFIX}starting"));
        std::fs::create_dir(&starting).unwrap();
        let other = parent.path().join("keep-me");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join(LOCK), b"").unwrap();

        let next = Scratch::claim(parent.path()).unwrap();
        assert!(!dead.exists(), "the killed drill's directory is removed");
        assert!(
            live.path().join("drill.db").exists(),
            "a running drill's is kept"
        );
        assert!(
            starting.exists(),
            "a new directory without a lock yet is kept"
        );
        assert!(other.exists(), "only drills' directories are touched");
        assert!(next.path().join(LOCK).exists());
        let (live_path, next_path) = (live.path().to_path_buf(), next.path().to_path_buf());
        drop(live);
        drop(next);
        assert!(
            !live_path.exists() && !next_path.exists(),
            "each drill removes its own"
        );
    }
}
