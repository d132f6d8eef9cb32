//! Point-in-time copies of a database, made in one read transaction.
//!
//! A snapshot dump copies the database with SQLite's online backup API while holding one
//! read transaction, then dumps the copy in chunks as usual. What writers feel depends on
//! the journal mode:
//! * WAL: nothing — readers never block writers, and the read transaction pins a
//!   consistent view while writers keep committing to the WAL.
//! * rollback journal (the only safe mode on EFS/NFS): the read lock holds writers' commits
//!   off for as long as the copy takes. The copy therefore aborts, cleanly, as soon as it
//!   has run — or is projected from its measured rate to run — longer than `max_block`.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;

use super::export::open_pinned;
use crate::error::DumpError;

/// Default bound on how long a rollback-mode snapshot may hold writers off.
pub const DEFAULT_MAX_BLOCK: Duration = Duration::from_millis(2000);

/// Pages copied per backup step (between clock checks).
const PAGES_PER_STEP: i32 = 64;

/// What a snapshot took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    pub bytes: u64,
    pub millis: u64,
    /// `PRAGMA journal_mode` of the source.
    pub journal_mode: String,
}

/// Free bytes for an unprivileged writer in the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `stat` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Copies `source` to `dest` (replaced if present) as of one moment; the file opened
/// must be inode `pinned`, when given (the one the dump was created on).
pub fn take_snapshot(
    source: &str,
    dest: &Path,
    max_block: Duration,
    pinned: Option<u64>,
) -> Result<SnapshotReport, DumpError> {
    let started = Instant::now();
    let (src, _) = open_pinned(source, pinned)?;
    let db = |e| DumpError::from_sqlite(source, e);
    let journal_mode: String = src
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(db)?;
    let size = std::fs::metadata(source).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(format!("{source}-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    let dir = dest.parent().ok_or_else(|| {
        DumpError::InvalidRequest(format!("snapshot path {} has no directory", dest.display()))
    })?;
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            // Snapshot copies hold the whole database: only their owner may list or read.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|e| {
            DumpError::InvalidRequest(format!(
                "cannot create the private snapshot directory {}: {e}",
                dir.display()
            ))
        })?;
    if let Some(free) = free_bytes(dir) {
        if free < size {
            return Err(DumpError::InvalidRequest(format!(
                "the snapshot directory {} has {} MB free, less than the database's {} MB; free space or set CHUNKDUMP_SNAPSHOT_DIR elsewhere",
                dir.display(),
                free / 1_000_000,
                size.div_ceil(1_000_000)
            )));
        }
    }
    let _ = std::fs::remove_file(dest);
    let result = copy(&src, source, dest, &journal_mode, max_block, size);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result?;
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(SnapshotReport {
        bytes,
        millis: started.elapsed().as_millis() as u64,
        journal_mode,
    })
}

fn copy(
    src: &Connection,
    source: &str,
    dest: &Path,
    journal_mode: &str,
    max_block: Duration,
    size: u64,
) -> Result<(), DumpError> {
    let db = |e| DumpError::from_sqlite(source, e);
    let mut dst = Connection::open(dest)
        .map_err(|e| DumpError::Internal(format!("creating snapshot {}: {e}", dest.display())))?;
    // One read transaction for the whole copy: every page comes from the same moment.
    src.execute_batch("BEGIN").map_err(db)?;
    let locked_at = Instant::now();
    src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(db)?;
    let blocks_writers = !journal_mode.eq_ignore_ascii_case("wal");
    let outcome = (|| {
        let backup = Backup::new(src, &mut dst).map_err(db)?;
        loop {
            match backup.step(PAGES_PER_STEP).map_err(db)? {
                StepResult::Done => return Ok(()),
                StepResult::More | StepResult::Busy | StepResult::Locked => {}
                _ => {}
            }
            if blocks_writers {
                let p = backup.progress();
                let (done, total) = (
                    (p.pagecount - p.remaining).max(1) as f64,
                    p.pagecount.max(1) as f64,
                );
                let held = locked_at.elapsed();
                let projected = held.mul_f64(total / done);
                if held > max_block || projected > max_block {
                    return Err(DumpError::SnapshotTooSlow {
                        size_mb: size.div_ceil(1_000_000),
                        max_block_ms: max_block.as_millis() as u64,
                        projected_ms: projected.as_millis() as u64,
                    });
                }
            }
        }
    })();
    let _ = src.execute_batch("COMMIT");
    outcome?;
    // The copy is private: keep it in rollback mode, so that reading it touches no
    // -wal/-shm files (and its change token stays put).
    dst.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get::<_, String>(0))
        .map_err(|e| DumpError::Internal(format!("snapshot {}: {e}", dest.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_the_database_as_of_one_moment() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("s.db");
        let c = Connection::open(&src).unwrap();
        c.execute_batch(
            "CREATE TABLE t(a); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000) INSERT INTO t SELECT randomblob(100) FROM n;",
        )
        .unwrap();
        let dest = dir.path().join("snaps/copy.db");
        let r = take_snapshot(src.to_str().unwrap(), &dest, Duration::from_secs(60), None).unwrap();
        assert_eq!(r.journal_mode, "delete");
        let n: i64 = Connection::open(&dest)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |x| x.get(0))
            .unwrap();
        assert_eq!(n, 5000);
        // A rollback-mode copy that would hold writers off too long is refused, and leaves nothing.
        let e = take_snapshot(src.to_str().unwrap(), &dest, Duration::ZERO, None).unwrap_err();
        assert!(e.to_string().contains("snapshotMaxBlockMs"), "{e}");
        assert!(!dest.exists());
    }
}
