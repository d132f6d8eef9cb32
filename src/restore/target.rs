//! Where a restore writes: a temporary file beside `--into`, renamed into place only
//! after the restored database is verified, so `--into` is either the whole verified
//! database or untouched.
//!
//! The temporary file's name is fixed (`.<name>.chunkdump-restore`), so a restore that
//! was killed leaves one file that the next restore into the same place removes first;
//! so is the spool a remote file is checked in (`.<name>.chunkdump-spool`).

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::DumpError;

/// The target of one restore.
pub(super) struct Target {
    pub(super) into: PathBuf,
    pub(super) temp: PathBuf,
    /// Where a remote file is copied to be checked before use (one at a time; private,
    /// removed after each file and whenever the restore ends).
    pub(super) spool: PathBuf,
    done: bool,
}

/// SQLite's page cache during a restore (KiB, as `PRAGMA cache_size` takes it negated).
/// The sorter that builds each index after the rows may use as much again, so peak RSS
/// is about twice this plus a few MiB; larger caches measured no faster (the rows go in
/// in key order). Sorter spills go to temporary files, not memory (no `temp_store`).
pub(super) const CACHE_KIB: i64 = 32 * 1024;

impl Target {
    /// Checks `into` (refused if it exists, unless `force`) and removes a temporary file
    /// an earlier, killed restore left.
    pub(super) fn prepare(into: &Path, force: bool) -> Result<Self, DumpError> {
        let bad = |m: String| DumpError::InvalidRequest(format!("{}: {m}", into.display()));
        let name = into
            .file_name()
            .ok_or_else(|| bad("--into must name a file".into()))?;
        if into.is_dir() {
            return Err(bad(
                "is a directory; --into names the database file to create".into(),
            ));
        }
        if into.exists() && !force {
            return Err(bad(
                "exists; give --force to replace it (only after the restore is verified)".into(),
            ));
        }
        let dir = match into.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(bad(format!(
                "its directory {} does not exist",
                dir.display()
            )));
        }
        let temp = dir.join(format!(".{}.chunkdump-restore", name.to_string_lossy()));
        let spool = dir.join(format!(".{}.chunkdump-spool", name.to_string_lossy()));
        remove_temp(&temp);
        let _ = std::fs::remove_file(&spool);
        Ok(Target {
            into: into.to_path_buf(),
            temp,
            spool,
            done: false,
        })
    }

    /// Opens the temporary database for bulk loading: no journal, no syncs until the end,
    /// a large page cache, one connection, and the source's page size and auto_vacuum. Created 0600: a
    /// restored database is as private as a backup should be.
    pub(super) fn open(
        &self,
        page_size: Option<i64>,
        auto_vacuum: Option<i64>,
    ) -> Result<Connection, DumpError> {
        let err = |e: rusqlite::Error| DumpError::from_sqlite(&self.temp.display().to_string(), e);
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(&self.temp).map_err(|e| {
                DumpError::InvalidRequest(format!("cannot create {}: {e}", self.temp.display()))
            })?;
        }
        let conn = Connection::open(&self.temp).map_err(err)?;
        if let Some(size) = page_size.filter(|s| (512..=65536).contains(s) && s.count_ones() == 1) {
            conn.execute_batch(&format!("PRAGMA page_size={size};"))
                .map_err(err)?;
        }
        if let Some(mode) = auto_vacuum.filter(|m| (0..=2).contains(m)) {
            conn.execute_batch(&format!("PRAGMA auto_vacuum={mode};"))
                .map_err(err)?;
        }
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA locking_mode=EXCLUSIVE;
             PRAGMA cache_size=-{CACHE_KIB};"
        ))
        .map_err(err)?;
        Ok(conn)
    }

    /// Makes the verified temporary file durable and renames it to `into`.
    pub(super) fn commit(mut self) -> Result<(), DumpError> {
        let io = |what: &str, e: std::io::Error| {
            DumpError::InvalidRequest(format!("{what} {}: {e}", self.into.display()))
        };
        File::open(&self.temp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("cannot sync the restore of", e))?;
        std::fs::rename(&self.temp, &self.into).map_err(|e| io("cannot rename into", e))?;
        if let Some(dir) = self.into.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The rename itself survives a crash only once the directory is synced.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for Target {
    /// A restore that did not commit leaves nothing behind.
    fn drop(&mut self) {
        if !self.done {
            remove_temp(&self.temp);
        }
        let _ = std::fs::remove_file(&self.spool);
    }
}

fn remove_temp(temp: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut path = temp.as_os_str().to_owned();
        path.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(path));
    }
}
