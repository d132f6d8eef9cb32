//! Point-in-time copies of a database, made with SQLite's online backup API.
//!
//! A snapshot dump copies the database, then dumps the copy in chunks as usual. How the
//! copy is made depends on the journal mode, so that writers barely feel it:
//! * WAL: in one read transaction. Readers never block writers, and the transaction
//!   pins a consistent view while writers keep committing to the WAL.
//! * rollback journal (the only safe mode on EFS/NFS), where a reader's lock holds every
//!   writer's commit off: first **in steps**, each holding the read lock for about a
//!   millisecond ([`STEPPED_PAGES`]); SQLite restarts such a copy whenever another
//!   connection changes the database, so a copy that completes is one moment's database,
//!   of any size, and a quiet database is copied without ever holding writers off. If
//!   writers keep changing it ([`RESTARTS_BEFORE_LOCKING`] restarts), the copy is made in
//!   one read transaction instead, but only if it is projected from the rate measured so
//!   far to hold writers off no longer than `max_block`; it also aborts, cleanly, as soon
//!   as it has run longer.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;

use super::export::open_pinned;
use crate::error::DumpError;

/// Default bound on how long a rollback-mode snapshot may hold writers off.
pub const DEFAULT_MAX_BLOCK: Duration = Duration::from_millis(2000);

/// Pages copied per backup step inside one read transaction (between clock checks).
const PAGES_PER_STEP: i32 = 64;

/// Pages copied per step of a stepped copy: each step holds the read lock for itself
/// only, about a millisecond for 1 MiB of 4 KiB pages read from the page cache.
const STEPPED_PAGES: i32 = 256;

/// Restarts of a stepped copy (the database changed under it) before it is made in one
/// read transaction instead.
pub const RESTARTS_BEFORE_LOCKING: u32 = 3;

/// What a snapshot took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    pub bytes: u64,
    pub millis: u64,
    /// `PRAGMA journal_mode` of the source.
    pub journal_mode: String,
}

/// Free bytes for an unprivileged writer in the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
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
    let result = copy_with(
        &src,
        source,
        dest,
        &journal_mode,
        max_block,
        size,
        &mut || {},
    );
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

/// Copies `src` to `dest` (see the module doc), calling `between_steps` between the
/// steps of a stepped copy (tests change the database there, as a writer would).
fn copy_with(
    src: &Connection,
    source: &str,
    dest: &Path,
    journal_mode: &str,
    max_block: Duration,
    size: u64,
    between_steps: &mut dyn FnMut(),
) -> Result<(), DumpError> {
    let db = |e| DumpError::from_sqlite(source, e);
    let mut dst = Connection::open(dest)
        .map_err(|e| DumpError::Internal(format!("creating snapshot {}: {e}", dest.display())))?;
    if journal_mode.eq_ignore_ascii_case("wal") {
        locked_copy(src, &mut dst, None).map_err(|e| e.into_dump_error(db, size, max_block))?;
    } else if let Some(pages_per_ms) = stepped_copy(src, &mut dst, between_steps).map_err(db)? {
        // The database kept changing: one read transaction, if it is short enough.
        let pages: i64 = src
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(db)?;
        let projected = Duration::from_secs_f64(pages as f64 / pages_per_ms.max(1e-3) / 1000.0);
        if projected > max_block {
            return Err(too_slow(size, max_block, projected));
        }
        tracing::info!(
            restarts = RESTARTS_BEFORE_LOCKING,
            projected_ms = projected.as_millis() as u64,
            "the database kept changing during a stepped snapshot; copying it in one read transaction"
        );
        locked_copy(src, &mut dst, Some(max_block))
            .map_err(|e| e.into_dump_error(db, size, max_block))?;
    }
    // The copy is private: keep it in rollback mode, so that reading it touches no
    // -wal/-shm files (and its change token stays put).
    dst.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get::<_, String>(0))
        .map_err(|e| DumpError::Internal(format!("snapshot {}: {e}", dest.display())))?;
    Ok(())
}

fn too_slow(size: u64, max_block: Duration, projected: Duration) -> DumpError {
    DumpError::SnapshotTooSlow {
        size_mb: size.div_ceil(1_000_000),
        max_block_ms: max_block.as_millis() as u64,
        projected_ms: projected.as_millis() as u64,
    }
}

/// Copies in steps that each hold the read lock only while they run. `None` once the
/// copy is complete; the rate it copied at (pages per ms) when the database changed
/// under it [`RESTARTS_BEFORE_LOCKING`] times.
fn stepped_copy(
    src: &Connection,
    dst: &mut Connection,
    between_steps: &mut dyn FnMut(),
) -> rusqlite::Result<Option<f64>> {
    let backup = Backup::new(src, dst)?;
    let started = Instant::now();
    let (mut copied, mut restarts, mut last_remaining) = (0u64, 0u32, i32::MAX);
    loop {
        match backup.step(STEPPED_PAGES)? {
            StepResult::Done => return Ok(None),
            // A writer holds the lock (it is committing): let it finish.
            StepResult::Busy | StepResult::Locked => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            _ => {}
        }
        let p = backup.progress();
        // A step that went on copies fewer pages remain; a restart began again at page 1.
        if p.remaining >= last_remaining {
            restarts += 1;
            if restarts >= RESTARTS_BEFORE_LOCKING {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                return Ok(Some(copied as f64 / ms.max(1e-3)));
            }
        }
        copied += STEPPED_PAGES as u64;
        last_remaining = p.remaining;
        between_steps();
    }
}

/// Why a copy in one read transaction stopped.
enum LockedCopyError {
    Db(rusqlite::Error),
    /// It held, or would have held, writers off longer than allowed.
    TooSlow(Duration),
}

impl LockedCopyError {
    fn into_dump_error(
        self,
        db: impl Fn(rusqlite::Error) -> DumpError,
        size: u64,
        max_block: Duration,
    ) -> DumpError {
        match self {
            LockedCopyError::Db(e) => db(e),
            LockedCopyError::TooSlow(projected) => too_slow(size, max_block, projected),
        }
    }
}

/// Copies in one read transaction: every page from the same moment. With `max_block`,
/// aborts as soon as the copy has run, or is projected to run, longer.
fn locked_copy(
    src: &Connection,
    dst: &mut Connection,
    max_block: Option<Duration>,
) -> Result<(), LockedCopyError> {
    src.execute_batch("BEGIN").map_err(LockedCopyError::Db)?;
    let locked_at = Instant::now();
    let outcome = (|| {
        src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(LockedCopyError::Db)?;
        let backup = Backup::new(src, dst).map_err(LockedCopyError::Db)?;
        loop {
            if backup.step(PAGES_PER_STEP).map_err(LockedCopyError::Db)? == StepResult::Done {
                return Ok(());
            }
            let Some(max_block) = max_block else {
                continue;
            };
            let p = backup.progress();
            let (done, total) = (
                (p.pagecount - p.remaining).max(1) as f64,
                p.pagecount.max(1) as f64,
            );
            let held = locked_at.elapsed();
            let projected = held.mul_f64(total / done);
            if held > max_block || projected > max_block {
                return Err(LockedCopyError::TooSlow(projected));
            }
        }
    })();
    let _ = src.execute_batch("COMMIT");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rollback-journal database of about 5 MB (20 steps of a stepped copy).
    fn rollback_db(path: &Path) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(
            "CREATE TABLE t(a); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000) INSERT INTO t SELECT randomblob(1000) FROM n;",
        )
        .unwrap();
    }

    fn rows(db: &Path) -> i64 {
        Connection::open(db)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |x| x.get(0))
            .unwrap()
    }

    /// A quiet rollback-mode database is copied in steps, never holding writers off for
    /// the whole copy: even a bound of zero is met (the documented cron backup of a
    /// database of any size).
    #[test]
    fn a_quiet_rollback_database_is_copied_in_steps_whatever_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("s.db");
        rollback_db(&src);
        let dest = dir.path().join("snaps/copy.db");
        let r = take_snapshot(src.to_str().unwrap(), &dest, Duration::ZERO, None).unwrap();
        assert_eq!(r.journal_mode, "delete");
        assert_eq!(rows(&dest), 5000);
    }

    /// A database that changes between every two steps restarts the stepped copy; after
    /// a few restarts the copy is made in one read transaction if that fits the bound,
    /// and refused cleanly (nothing left) if it does not.
    #[test]
    fn a_changing_rollback_database_is_copied_locked_within_the_bound_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("s.db");
        rollback_db(&src);
        let writer = Connection::open(&src).unwrap();
        let added = std::cell::Cell::new(0u32);
        let mut write = || {
            writer
                .execute("INSERT INTO t VALUES (randomblob(10))", [])
                .unwrap();
            added.set(added.get() + 1);
        };
        let source = src.to_str().unwrap();
        let dest = dir.path().join("copy.db");
        let (reader, _) = open_pinned(source, None).unwrap();
        let copied = copy_with(
            &reader,
            source,
            &dest,
            "delete",
            Duration::from_secs(60),
            0,
            &mut write,
        );
        copied.unwrap();
        assert!(
            added.get() >= RESTARTS_BEFORE_LOCKING,
            "the writer changed it between steps"
        );
        // The copy is one moment's database: every row the writer had committed.
        assert_eq!(rows(&dest), rows(&src));
        let _ = std::fs::remove_file(&dest);
        let e = copy_with(
            &reader,
            source,
            &dest,
            "delete",
            Duration::ZERO,
            0,
            &mut write,
        )
        .unwrap_err();
        assert!(e.to_string().contains("snapshotMaxBlockMs"), "{e}");
    }
}
