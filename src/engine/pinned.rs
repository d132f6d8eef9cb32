//! Which file a connection really opened, so a dump reads one database from its first
//! chunk to its last.
//!
//! A dump reopens its database by path in every chunk. Between chunks the path can come
//! to name another file: a symlink swapped in under a database root (another tenant's
//! database), a file renamed over it. Checking the path before or after opening proves
//! nothing (it can be swapped back and forth between the checks), so the inode is read
//! from the file descriptor SQLite itself holds, and compared with the one the dump
//! began with. The device is not compared: machines that mount the same share (Lambda
//! functions on EFS) number it differently.

use std::ffi::{c_int, c_void, CStr};

use rusqlite::{ffi, Connection};

/// The start of SQLite's `unixFile` (os_unix.c), the `sqlite3_file` of every unix VFS:
/// the file descriptor is its fourth field. The layout is that of the SQLite bundled
/// with this build; [`opened_inode`] checks the `pVfs` field against the VFS SQLite
/// names for the file before it trusts the descriptor, and the tests compare the result
/// with the file's own inode.
#[repr(C)]
struct UnixFileHead {
    methods: *const ffi::sqlite3_io_methods,
    vfs: *mut ffi::sqlite3_vfs,
    inode: *mut c_void,
    fd: c_int,
}

/// The inode of the main database file `conn` has open (read from its descriptor).
pub fn opened_inode(conn: &Connection) -> Result<u64, String> {
    let main = c"main";
    let mut vfs: *mut ffi::sqlite3_vfs = std::ptr::null_mut();
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the handle is a live connection; each file control writes one pointer into
    // the out-parameter given; the pointers are read only while the connection lives and
    // only after the checks below (non-null, a unix VFS, the layout's pVfs matching).
    unsafe {
        let db = conn.handle();
        let out = &mut vfs as *mut _ as *mut c_void;
        if ffi::sqlite3_file_control(db, main.as_ptr(), ffi::SQLITE_FCNTL_VFS_POINTER, out)
            != ffi::SQLITE_OK
            || vfs.is_null()
        {
            return Err("SQLite did not say which VFS opened the database".into());
        }
        let name = CStr::from_ptr((*vfs).zName).to_bytes();
        if !name.starts_with(b"unix") {
            return Err(format!(
                "the database was opened by VFS {:?}, not a unix one",
                String::from_utf8_lossy(name)
            ));
        }
        let out = &mut file as *mut _ as *mut c_void;
        if ffi::sqlite3_file_control(db, main.as_ptr(), ffi::SQLITE_FCNTL_FILE_POINTER, out)
            != ffi::SQLITE_OK
            || file.is_null()
            || (*file).pMethods.is_null()
        {
            return Err("the database file is not open".into());
        }
        let head = &*(file as *const UnixFileHead);
        if head.vfs != vfs {
            return Err("SQLite's file structure is not the one this build expects".into());
        }
        let mut stat: libc::stat = std::mem::zeroed();
        if libc::fstat(head.fd, &mut stat) != 0 {
            return Err(format!(
                "fstat of the database's descriptor: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(stat.st_ino as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_inode_is_that_of_the_file_sqlite_opened_not_of_what_the_path_names_now() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
        for (path, n) in [(&a, 1), (&b, 2)] {
            let c = Connection::open(path).unwrap();
            c.execute_batch(&format!("CREATE TABLE t(x); INSERT INTO t VALUES({n});"))
                .unwrap();
        }
        let ino_a = std::fs::metadata(&a).unwrap().ino();
        let conn = Connection::open(&a).unwrap();
        conn.query_row("SELECT x FROM t", [], |_| Ok(())).unwrap();
        assert_eq!(opened_inode(&conn).unwrap(), ino_a);
        // The path now names b's file; the connection still has a's open.
        std::fs::rename(&b, &a).unwrap();
        assert_ne!(std::fs::metadata(&a).unwrap().ino(), ino_a);
        assert_eq!(opened_inode(&conn).unwrap(), ino_a);
        let reopened = Connection::open(&a).unwrap();
        reopened
            .query_row("SELECT x FROM t", [], |_| Ok(()))
            .unwrap();
        assert_ne!(opened_inode(&reopened).unwrap(), ino_a);
    }
}
