//! `ProgressStore` in a local SQLite file (WAL, `synchronous=FULL`: a committed chunk
//! survives a power cut, and several processes may read while one writes).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::blocking;
use crate::error::StoreError;
use crate::model::JobRecord;
use crate::ports::{ProgressReader, ProgressStore, RateCounter, StartGuard};

/// Job records in a SQLite file.
#[derive(Clone)]
pub struct SqliteProgress {
    conn: Arc<Mutex<Connection>>,
    /// Records expire this long after their last write (`None`: never).
    ttl: Option<Duration>,
}

fn db(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy => {
            StoreError::Transient(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::AlreadyExists(e.to_string())
        }
        // No space, a read-only or failing disk: the store is unavailable, the dump pauses.
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::CannotOpen
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Permanent(e.to_string()),
    }
}

/// Switches the file to WAL unless it already is. The switch needs an exclusive lock
/// and does not wait on the busy handler, so two processes opening a new file at once
/// (a dump starting while `status` polls) retry instead of failing.
fn enable_wal(conn: &Connection) -> Result<(), StoreError> {
    for attempt in 0..200 {
        let mode = conn.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0));
        let result = match mode {
            Ok(m) if m.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) => conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)),
            Err(e) => Err(e),
        };
        match result.map_err(db) {
            Ok(m) if m.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) | Err(StoreError::Transient(_)) if attempt < 199 => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(m) => {
                return Err(StoreError::Permanent(format!(
                    "cannot switch progress store to WAL (mode {m})"
                )))
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl SqliteProgress {
    /// Opens (creating if needed) the progress file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::from_io(&parent.display().to_string(), e))?;
        }
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
        enable_wal(&conn)?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS jobs (
                 id TEXT PRIMARY KEY,
                 version INTEGER NOT NULL,
                 created_at TEXT NOT NULL,
                 expires_at INTEGER,
                 body TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs(created_at);
             CREATE TABLE IF NOT EXISTS slots (slot TEXT PRIMARY KEY, holder TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, window_start INTEGER NOT NULL, count INTEGER NOT NULL);",
        )
        .map_err(db)?;
        Ok(SqliteProgress {
            conn: Arc::new(Mutex::new(conn)),
            ttl: None,
        })
    }

    /// Makes records expire `ttl` after their last write; readers then ignore them.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    fn expires_at(&self) -> Option<i64> {
        self.ttl.map(|t| now_secs() + t.as_secs() as i64)
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| StoreError::Permanent("progress store lock poisoned".into()))?;
            f(&guard)
        })
        .await
    }
}

fn encode(job: &JobRecord) -> Result<String, StoreError> {
    serde_json::to_string(job).map_err(|e| StoreError::Invalid(format!("encoding job: {e}")))
}

fn decode(body: &str) -> Result<JobRecord, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Permanent(format!("corrupt job record: {e}")))
}

#[async_trait]
impl ProgressReader for SqliteProgress {
    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            let body: Option<String> = c
                .query_row("SELECT body FROM jobs WHERE id = ?1 AND (expires_at IS NULL OR expires_at > ?2)", params![id, now_secs()], |r| r.get(0))
                .optional()
                .map_err(db)?;
            body.map(|b| decode(&b)).transpose()
        })
        .await
    }
    async fn list_recent(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt =
                c.prepare("SELECT body FROM jobs WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY created_at DESC, id DESC LIMIT ?2").map_err(db)?;
            let bodies: Vec<String> = stmt.query_map(params![now_secs(), limit as i64], |r| r.get(0)).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
            bodies.iter().map(|b| decode(b)).collect()
        })
        .await
    }
}

#[async_trait]
impl ProgressStore for SqliteProgress {
    async fn create(&self, job: &JobRecord) -> Result<(), StoreError> {
        let (id, version, created, body, expires) = (
            job.id.clone(),
            job.version as i64,
            job.created_at.to_rfc3339(),
            encode(job)?,
            self.expires_at(),
        );
        self.with_conn(move |c| {
            // An expired record no longer holds its id.
            c.execute("DELETE FROM jobs WHERE id = ?1 AND expires_at <= ?2", params![id, now_secs()]).map_err(db)?;
            match c.execute(
                "INSERT INTO jobs (id, version, created_at, expires_at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, version, created, expires, body],
            ) {
                Err(e) => Err(match db(e) {
                    StoreError::AlreadyExists(_) => StoreError::AlreadyExists(id),
                    other => other,
                }),
                Ok(_) => Ok(()),
            }
        })
        .await
    }

    async fn commit(&self, job: &JobRecord, expected_version: u64) -> Result<(), StoreError> {
        let (id, version, body, expires) = (
            job.id.clone(),
            job.version as i64,
            encode(job)?,
            self.expires_at(),
        );
        self.with_conn(move |c| {
            let changed = c
                .execute(
                    "UPDATE jobs SET version = ?2, body = ?3, expires_at = ?4 WHERE id = ?1 AND version = ?5 AND (expires_at IS NULL OR expires_at > ?6)",
                    params![id, version, body, expires, expected_version as i64, now_secs()],
                )
                .map_err(db)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict { id, expected: expected_version })
            }
        })
        .await
    }

    async fn delete(&self, id: &str, expected_version: u64) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            let deleted = c
                .execute(
                    "DELETE FROM jobs WHERE id = ?1 AND version = ?2",
                    params![id, expected_version as i64],
                )
                .map_err(db)?;
            let remains: Option<i64> = c
                .query_row("SELECT version FROM jobs WHERE id = ?1", params![id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db)?;
            match (deleted, remains) {
                (0, Some(_)) => Err(StoreError::Conflict {
                    id,
                    expected: expected_version,
                }),
                _ => Ok(()),
            }
        })
        .await
    }
}

#[async_trait]
impl StartGuard for SqliteProgress {
    async fn claim(
        &self,
        slot: &str,
        holder: &str,
        replacing: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let (slot, holder, replacing) = (
            slot.to_string(),
            holder.to_string(),
            replacing.map(str::to_string),
        );
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO slots (slot, holder) VALUES (?1, ?2)
                 ON CONFLICT(slot) DO UPDATE SET holder = excluded.holder WHERE slots.holder = ?3 OR slots.holder = ?2",
                params![slot, holder, replacing],
            )
            .map_err(db)?;
            let current: String = c.query_row("SELECT holder FROM slots WHERE slot = ?1", [&slot], |r| r.get(0)).map_err(db)?;
            Ok((current != holder).then_some(current))
        })
        .await
    }
}

#[async_trait]
impl RateCounter for SqliteProgress {
    async fn count_in_window(
        &self,
        key: &str,
        window: Duration,
        delta: i64,
    ) -> Result<(u64, u64), StoreError> {
        let key = key.to_string();
        let now = now_secs();
        let (start, end) = crate::ports::window_bounds(now, window);
        self.with_conn(move |c| {
            let count: i64 = c
                .query_row(
                    "INSERT INTO counters (key, window_start, count) VALUES (?1, ?2, max(?3, 0))
                     ON CONFLICT(key) DO UPDATE SET
                         count = CASE WHEN counters.window_start = excluded.window_start
                                      THEN max(counters.count + ?3, 0) ELSE max(?3, 0) END,
                         window_start = excluded.window_start
                     RETURNING count",
                    params![key, start, delta],
                    |r| r.get(0),
                )
                .map_err(db)?;
            Ok((count.max(0) as u64, (end - now) as u64))
        })
        .await
    }
}
