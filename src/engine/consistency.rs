//! Whether a database changed while it was being dumped.
//!
//! A live dump reads the database in many short read transactions, so it is not a
//! point-in-time copy when others write meanwhile. To say so honestly, every chunk reads a
//! token of the database's committed state that any writer's commit changes, on every
//! host that shares the file, without taking a lock:
//!
//! * the database header's file change counter (bytes 24..28), bumped by every commit in
//!   rollback-journal mode, and its schema cookie (40..44);
//! * in WAL mode, where commits go to the `-wal` file instead: the WAL header (checkpoint
//!   sequence and salts, which change when the WAL restarts) and the first wal-index
//!   header in `-shm` (`iChange`, `mxFrame`, `nPage`, salts), which every commit updates.
//!
//! Readers never write these bytes, so a database nobody writes keeps its token.

use std::io::Read;

/// The change token of the database at `path` (hex), or `"missing"` if it cannot be read.
pub fn change_token(path: &str) -> String {
    let mut token = Vec::with_capacity(64);
    let head = read_prefix(path, 100);
    token.extend_from_slice(head.get(24..28).unwrap_or_default());
    token.extend_from_slice(head.get(40..44).unwrap_or_default());
    token.push(b'|');
    let wal = read_prefix(&format!("{path}-wal"), 32);
    token.extend_from_slice(wal.get(12..24).unwrap_or_default());
    token.push(b'|');
    let shm = read_prefix(&format!("{path}-shm"), 48);
    for range in [8..12, 16..24, 32..40] {
        token.extend_from_slice(shm.get(range).unwrap_or_default());
    }
    if head.is_empty() && wal.is_empty() {
        return "missing".into();
    }
    let mut out = Vec::new();
    super::render::push_hex(&mut out, &token);
    String::from_utf8(out).expect("hex is ASCII")
}

fn read_prefix(path: &str, n: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(n);
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(n as u64).read_to_end(&mut buf);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_change_the_token_and_reads_do_not() {
        for wal in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let p = path.to_str().unwrap();
            let w = rusqlite::Connection::open(&path).unwrap();
            if wal {
                w.execute_batch("PRAGMA journal_mode=WAL").unwrap();
            }
            w.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1)")
                .unwrap();
            let before = change_token(p);
            let r = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let _: i64 = r
                .query_row("SELECT count(*) FROM t", [], |x| x.get(0))
                .unwrap();
            assert_eq!(
                change_token(p),
                before,
                "a read changed the token (wal={wal})"
            );
            w.execute_batch("INSERT INTO t VALUES (2)").unwrap();
            assert_ne!(
                change_token(p),
                before,
                "a commit kept the token (wal={wal})"
            );
        }
    }
}
