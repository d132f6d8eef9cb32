//! A directory of SQLite databases (a file per tenant): resolving a name a caller gives
//! to a file that stays inside it, and listing the databases it holds.
//!
//! A caller names a database by its path relative to the root. Nothing outside the root
//! is ever opened: absolute paths and `..` are refused before the file system is asked,
//! and a symlink is followed only if where it ends is still inside the root.

use std::path::{Path, PathBuf};

use crate::model::database_name;

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Why a requested database cannot be dumped; the message names the problem, never a
/// path outside the root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RootError {
    pub message: String,
}

fn refuse(message: String) -> RootError {
    RootError { message }
}

/// A database found under the root.
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootDatabase {
    /// Its path relative to the root, as callers name it (`tenants/acme.db`).
    pub database: String,
    /// Its name in the store: dumps of it are `<name>/dump_…`.
    pub name: String,
    /// Its canonical path on this machine (not shown to callers).
    #[serde(skip)]
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// The directory whose SQLite files a server may dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRoot {
    root: PathBuf,
}

impl DatabaseRoot {
    /// The root at `dir` (canonicalized: every check compares canonical paths).
    pub fn open(dir: &Path) -> Result<Self, RootError> {
        let root = std::fs::canonicalize(dir)
            .map_err(|e| refuse(format!("database root {}: {e}", dir.display())))?;
        if !root.is_dir() {
            return Err(refuse(format!(
                "database root {}: not a directory",
                dir.display()
            )));
        }
        Ok(DatabaseRoot { root })
    }

    /// The root's canonical path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The database a caller names by `relative`: a SQLite file inside the root.
    pub fn resolve(&self, relative: &str) -> Result<RootDatabase, RootError> {
        // Absolute paths and `..` are refused by the name itself, before any lookup.
        database_name(Path::new(relative)).map_err(|e| refuse(e.message))?;
        let joined = self.root.join(relative);
        let path = std::fs::canonicalize(&joined)
            .map_err(|_| refuse(format!("{relative}: no such database under the root")))?;
        let Ok(inside) = path.strip_prefix(&self.root) else {
            return Err(refuse(format!(
                "{relative}: a symlink that leads outside the database root"
            )));
        };
        let meta =
            std::fs::metadata(&path).map_err(|e| refuse(format!("{relative}: {}", e.kind())))?;
        if meta.is_dir() {
            return Err(refuse(format!(
                "{relative}: a directory, not a database file"
            )));
        }
        if !meta.is_file() {
            return Err(refuse(format!("{relative}: not a regular file")));
        }
        if !has_sqlite_header(&path) {
            return Err(refuse(format!("{relative}: not a SQLite database")));
        }
        let name = database_name(inside).map_err(|e| refuse(e.message))?;
        if let Some(other) = namesake(&path, inside, &name) {
            return Err(refuse(format!(
                "{relative}: {other} is a database named {name} too (a dump's name drops the extension); rename one of them"
            )));
        }
        Ok(RootDatabase {
            database: inside.display().to_string(),
            name,
            path,
            size: meta.len(),
        })
    }

    /// The SQLite databases under the root, sorted by relative path, after `after` (a
    /// previous page's last `database`), at most `limit`; and whether more follow.
    /// Hidden files and directories (`.chunkdump`, `-journal` files aside) are skipped,
    /// and so are symlinks (a database is listed once, at its own path).
    pub fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<RootDatabase>, bool), RootError> {
        let mut found = Vec::new();
        let mut pending = vec![self.root.clone()];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| refuse(format!("cannot read the database root: {}", e.kind())))?;
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let path = entry.path();
                if kind.is_dir() {
                    pending.push(path);
                } else if kind.is_file() {
                    let relative = path
                        .strip_prefix(&self.root)
                        .expect("walked from the root")
                        .display()
                        .to_string();
                    if after.is_none_or(|after| relative.as_str() > after) {
                        found.push((relative, path));
                    }
                }
            }
        }
        found.sort();
        let mut page = Vec::new();
        let mut rest = found.into_iter();
        for (relative, path) in rest.by_ref() {
            if !has_sqlite_header(&path) {
                continue;
            }
            let Ok(name) = database_name(Path::new(&relative)) else {
                continue;
            };
            if page.len() == limit {
                return Ok((page, true));
            }
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            page.push(RootDatabase {
                database: relative,
                name,
                path,
                size,
            });
        }
        Ok((page, false))
    }
}

/// Another SQLite file beside `path` (inside the root at `inside`) whose dumps would be
/// named `name` too (`acme.db` and `acme.sqlite`): its path relative to the root. Two
/// databases must never share a name, or their dumps, `--latest` and retention mix.
fn namesake(path: &Path, inside: &Path, name: &str) -> Option<String> {
    let dir = path.parent()?;
    let stem = path.file_stem()?;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let other = entry.path();
        if other == path
            || other.file_stem() != Some(stem)
            || !entry.file_type().is_ok_and(|t| t.is_file())
            || !has_sqlite_header(&other)
        {
            continue;
        }
        let relative = inside.with_file_name(entry.file_name());
        if database_name(&relative).is_ok_and(|n| n == name) {
            return Some(relative.display().to_string());
        }
    }
    None
}

/// Whether the file at `path` begins as a SQLite database does.
fn has_sqlite_header(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok()
        && &header == SQLITE_HEADER
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }

    #[test]
    fn names_resolve_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root_dir = dir.path().join("root");
        database(&root_dir.join("tenants/acme corp.db"));
        database(&dir.path().join("outside.db"));
        std::fs::write(root_dir.join("notes.txt"), "not a database at all").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.db"), root_dir.join("escape.db"))
            .unwrap();
        std::os::unix::fs::symlink(
            root_dir.join("tenants/acme corp.db"),
            root_dir.join("alias.db"),
        )
        .unwrap();
        let root = DatabaseRoot::open(&root_dir).unwrap();
        let acme = root.resolve("tenants/acme corp.db").unwrap();
        assert_eq!(
            (acme.database.as_str(), acme.name.as_str()),
            ("tenants/acme corp.db", "tenants/acme%20corp")
        );
        // A symlink inside the root is the database it leads to.
        assert_eq!(
            root.resolve("alias.db").unwrap().name,
            "tenants/acme%20corp"
        );
        let refused = |rel: &str| root.resolve(rel).unwrap_err().message;
        assert!(refused("escape.db").contains("outside the database root"));
        assert!(refused("../outside.db").contains(".."));
        assert!(refused(&dir.path().join("outside.db").display().to_string()).contains("absolute"));
        assert!(refused("tenants").contains("directory"));
        assert!(refused("notes.txt").contains("not a SQLite database"));
        assert!(refused("missing.db").contains("no such database"));
        // Two databases whose dumps would share a name: neither is dumped.
        database(&root_dir.join("tenants/twin.db"));
        database(&root_dir.join("tenants/twin.sqlite"));
        assert!(refused("tenants/twin.db")
            .contains("tenants/twin.sqlite is a database named tenants/twin too"));
        assert!(refused("tenants/twin.sqlite").contains("tenants/twin.db"));
        // No message names the machine's paths.
        for rel in ["escape.db", "tenants", "missing.db"] {
            assert!(
                !refused(rel).contains(&*dir.path().to_string_lossy()),
                "{rel}"
            );
        }
    }

    #[test]
    fn listing_is_sorted_paged_and_skips_what_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "b.db",
            "a/x.db",
            "a/y.sqlite",
            "c.db",
            ".chunkdump/progress.sqlite3",
        ] {
            database(&dir.path().join(rel));
        }
        std::fs::write(dir.path().join("a/readme.md"), "hello").unwrap();
        std::os::unix::fs::symlink(dir.path().join("b.db"), dir.path().join("link.db")).unwrap();
        let root = DatabaseRoot::open(dir.path()).unwrap();
        let (all, more) = root.list(None, 100).unwrap();
        let names: Vec<_> = all.iter().map(|d| d.database.as_str()).collect();
        assert_eq!(names, ["a/x.db", "a/y.sqlite", "b.db", "c.db"]);
        assert!(!more);
        let (first, more) = root.list(None, 2).unwrap();
        assert_eq!(first.len(), 2);
        assert!(more);
        let (second, more) = root.list(Some(&first[1].database), 2).unwrap();
        assert_eq!(
            second
                .iter()
                .map(|d| d.database.as_str())
                .collect::<Vec<_>>(),
            ["b.db", "c.db"]
        );
        assert!(!more);
    }
}
