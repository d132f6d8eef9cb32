//! One active dump per database, enforced through the progress store's start guard so
//! it holds across processes and Lambda instances: a start claims the database's slot
//! (409 naming the running or interrupted dump), hands it to the dump it created, or
//! releases it at once when it fails.

use sha2::{Digest, Sha256};

use super::error::{ErrorKind, ServiceError};
use super::Service;
use crate::model::JobRecord;

fn slot_of(database: &str) -> String {
    let digest = Sha256::digest(database.as_bytes());
    format!("db:{}", hex::encode(&digest[..12]))
}

/// Who holds a database's slot. Stored in the guard as text ([`Holder::encode`]); read
/// back in one place ([`Holder::parse`]) so no caller inspects the text itself.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Holder {
    /// Nobody: a released slot (an empty holder).
    Free,
    /// A start request still creating its dump, since `since` (epoch seconds).
    Starting { since: i64, nonce: u64 },
    /// The dump with this id.
    Dump(String),
}

/// How a start request's holder text begins (a dump id never does).
const STARTING: &str = "starting-";

impl Holder {
    fn encode(&self) -> String {
        match self {
            Holder::Free => String::new(),
            Holder::Starting { since, nonce } => format!("{STARTING}{since}-{nonce:x}"),
            Holder::Dump(id) => id.clone(),
        }
    }

    fn parse(text: &str) -> Holder {
        if text.is_empty() {
            return Holder::Free;
        }
        match text
            .strip_prefix(STARTING)
            .and_then(|rest| rest.split_once('-'))
        {
            Some((since, nonce)) => Holder::Starting {
                // Unreadable: long stale, so it stops counting at once.
                since: since.parse().unwrap_or(0),
                nonce: u64::from_str_radix(nonce, 16).unwrap_or(0),
            },
            None => Holder::Dump(text.to_string()),
        }
    }
}

/// The database's one-dump slot, held by a start still creating its dump. Dropped
/// without [`DatabaseClaim::hand_over`] (the start failed, the request was dropped) it
/// releases the slot, so a refused start never holds the database.
pub struct DatabaseClaim {
    guard: std::sync::Arc<dyn crate::ports::StartGuard>,
    slot: String,
    holder: String,
    settled: bool,
}

impl DatabaseClaim {
    /// Hands the slot from this start to the dump it created.
    pub async fn hand_over(mut self, dump_id: &str) -> Result<(), ServiceError> {
        self.settled = true;
        match self
            .guard
            .claim(&self.slot, dump_id, Some(&self.holder))
            .await?
        {
            None => Ok(()),
            Some(other) => Err(ServiceError::new(
                ErrorKind::Conflict,
                "dump_running",
                format!("the database was claimed by {other} meanwhile"),
            )),
        }
    }

    /// Releases the slot now (what dropping does, awaited).
    pub async fn release(mut self) {
        self.settled = true;
        release(self.guard.clone(), &self.slot, &self.holder).await;
    }
}

async fn release(guard: std::sync::Arc<dyn crate::ports::StartGuard>, slot: &str, holder: &str) {
    if let Err(e) = guard
        .claim(slot, &Holder::Free.encode(), Some(holder))
        .await
    {
        tracing::warn!(error = %e, "could not release the database after a failed start");
    }
}

impl Drop for DatabaseClaim {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (guard, slot, holder) = (
                self.guard.clone(),
                std::mem::take(&mut self.slot),
                std::mem::take(&mut self.holder),
            );
            runtime.spawn(async move { release(guard, &slot, &holder).await });
        }
    }
}

/// Claims `database` (its path) for a new dump: 409 if another dump of it is pending or running.
pub async fn claim_database(
    state: &Service,
    database: &str,
) -> Result<DatabaseClaim, ServiceError> {
    let slot = slot_of(database);
    let me = Holder::Starting {
        since: chrono::Utc::now().timestamp(),
        nonce: fastrand::u64(..),
    }
    .encode();
    let mut replacing: Option<String> = None;
    for _ in 0..5 {
        let Some(holder) = state.guard.claim(&slot, &me, replacing.as_deref()).await? else {
            return Ok(DatabaseClaim {
                guard: state.guard.clone(),
                slot,
                holder: me,
                settled: false,
            });
        };
        let held = Holder::parse(&holder);
        let message = match holder_state(state, &held).await? {
            HolderState::Gone => {
                replacing = Some(holder); // finished, failed or cancelled: take over
                continue;
            }
            // No dump exists yet to name: another request is creating it right now.
            HolderState::Starting => {
                "another request is starting a dump of this database right now; \
                 retry in a moment (GET /export/dump lists it once it has started)"
                    .to_string()
            }
            HolderState::Running(id) => {
                format!("dump {id} is already running on this database; wait for it or cancel it")
            }
            HolderState::Interrupted(id) => format!(
                "dump {id} of this database is interrupted; resume it ({}) or cancel it \
                 (DELETE /export/dump/{}) before starting another",
                super::runs::resume_call(&id),
                crate::model::path_segment(&id)
            ),
        };
        return Err(ServiceError::new(
            ErrorKind::Conflict,
            "dump_running",
            message,
        ));
    }
    Err(ServiceError::new(
        ErrorKind::Conflict,
        "dump_running",
        "the database is being claimed concurrently; retry",
    ))
}

/// What holds a database's slot.
enum HolderState {
    /// Nobody any more: the dump ended, or its start crashed more than a minute ago.
    Gone,
    /// A start between claiming the slot and creating its dump.
    Starting,
    Running(String),
    /// An unfinished dump whose run is gone or paused: it keeps the slot (and all it
    /// wrote) until it is resumed or cancelled; nothing takes over silently.
    Interrupted(String),
}

async fn holder_state(state: &Service, holder: &Holder) -> Result<HolderState, ServiceError> {
    let id = match holder {
        Holder::Free => return Ok(HolderState::Gone),
        // A request that crashed between claiming and creating its job stops counting
        // after a minute.
        Holder::Starting { since, .. } => {
            let fresh = chrono::Utc::now().timestamp() - since < 60;
            return Ok(if fresh {
                HolderState::Starting
            } else {
                HolderState::Gone
            });
        }
        Holder::Dump(id) => id,
    };
    let Some(job): Option<JobRecord> = state.progress.get(id).await? else {
        return Ok(HolderState::Gone);
    };
    if job.status.is_terminal() {
        return Ok(HolderState::Gone);
    }
    // Whether its run is alive is the runner's to say (a Step Functions execution;
    // locally, the run lock its process holds), however long the dump has been quiet (a
    // long breath, a long chunk). A start hands the slot to its dump only once the run
    // has started, so a dump holding the slot always had one.
    Ok(
        if state.orchestrator.describe(&job.id).await? == crate::ports::RunState::Running {
            HolderState::Running(job.id)
        } else {
            HolderState::Interrupted(job.id)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::Holder;

    #[test]
    fn holders_read_back_as_written() {
        for holder in [
            Holder::Free,
            Holder::Starting {
                since: 1_796_000_000,
                nonce: 0xdead_beef,
            },
            Holder::Dump("dump_20261130-030000".into()),
            Holder::Dump("dump_20261130-030000-starting-1".into()),
        ] {
            assert_eq!(Holder::parse(&holder.encode()), holder);
        }
    }
}
