//! What a dump writes locally is never more readable than the database it came from.
//!
//! A 0600 database holds data only its owner may read; a dump of it (files, staging
//! objects, snapshot copies, progress) must not be 0644. The process's umask is narrowed
//! to the database's own bits (a readable class keeps `x` on directories, so they stay
//! usable), so every file and directory created from then on, by this code or by SQLite,
//! is at most as readable as the source. A stricter umask the user set is kept.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The umask bits that keep new files within `mode`'s permission bits.
pub fn umask_for(mode: u32) -> u32 {
    let files = mode & 0o666;
    // A class that may read the files may also enter the directories holding them.
    let dirs = (mode & 0o444) >> 2;
    !(files | dirs) & 0o777
}

/// Narrows the process umask to `database`'s permission bits (see the module doc).
pub fn limit_new_files_to(database: &Path) -> std::io::Result<()> {
    let mode = std::fs::metadata(database)?.permissions().mode();
    let mask = umask_for(mode) as libc::mode_t;
    // SAFETY: umask only swaps the process's file creation mask; reading it needs a set,
    // which is undone at once (with the narrowed value).
    unsafe {
        let old = libc::umask(mask);
        libc::umask(old | mask);
    }
    Ok(())
}

/// Narrows the process umask to its owner alone: for a server that dumps databases of
/// any permissions (a database root), whose dumps must each be no more readable than
/// its own database, and one process has one umask.
pub fn limit_new_files_to_owner() {
    // SAFETY: as in `limit_new_files_to`.
    unsafe {
        let old = libc::umask(0o077);
        libc::umask(old | 0o077);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_keep_the_sources_bits_and_directories_stay_usable() {
        // (source mode, umask): files get 0o666 & !umask, directories 0o777 & !umask.
        assert_eq!(umask_for(0o600), 0o077);
        assert_eq!(umask_for(0o644), 0o022);
        assert_eq!(umask_for(0o640), 0o027);
        assert_eq!(umask_for(0o664), 0o002);
        assert_eq!(0o777 & !umask_for(0o400), 0o500);
    }
}
