//! Rate limits, enforced through the progress store so they hold across processes and
//! Lambda instances: a number of accepted starts per token per window (429 with
//! `Retry-After`; a refused start gives its count back), and one active dump per database
//! (409 naming the running or interrupted dump; a start that fails releases the database
//! at once).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::AppState;
use crate::model::JobRecord;

/// Starts allowed per token per window.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub starts: u64,
    pub window: Duration,
}

/// Who is calling: a digest of the token (the token itself is never stored).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// A 429 with `Retry-After`.
pub struct TooManyRequests {
    retry_after: u64,
    error: ApiError,
}

impl IntoResponse for TooManyRequests {
    fn into_response(self) -> Response {
        let mut res = self.error.into_response();
        if let Ok(v) = HeaderValue::from_str(&self.retry_after.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// A start counted against its caller's window, until it is given back.
pub struct CountedStart {
    key: String,
}

impl CountedStart {
    /// Gives the count back: the start was refused, so it does not use up the limit.
    pub async fn give_back(self, state: &AppState) {
        let window = state.settings.rate_limit.window;
        if let Err(e) = state.rates.count_in_window(&self.key, window, -1).await {
            tracing::warn!(error = %e, "could not give back a refused start's count");
        }
    }
}

/// Counts this start against the caller's window (429 past the limit).
pub async fn count_start(state: &AppState, caller: &Caller) -> Result<CountedStart, Response> {
    let limit = state.settings.rate_limit;
    let key = format!("starts:{}", caller.0);
    let (count, retry_after) = state
        .rates
        .count_in_window(&key, limit.window, 1)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    if count > limit.starts {
        // Over the limit: this start is refused, so it is not counted either.
        CountedStart { key }.give_back(state).await;
        let message = format!(
            "at most {} dumps may be started per {} s with this token; retry in {retry_after} s",
            limit.starts,
            limit.window.as_secs()
        );
        return Err(TooManyRequests {
            retry_after,
            error: ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message),
        }
        .into_response());
    }
    Ok(CountedStart { key })
}

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
    pub async fn hand_over(mut self, dump_id: &str) -> Result<(), ApiError> {
        self.settled = true;
        match self
            .guard
            .claim(&self.slot, dump_id, Some(&self.holder))
            .await?
        {
            None => Ok(()),
            Some(other) => Err(ApiError::new(
                StatusCode::CONFLICT,
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
pub async fn claim_database(state: &AppState, database: &str) -> Result<DatabaseClaim, ApiError> {
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
        return Err(ApiError::new(StatusCode::CONFLICT, "dump_running", message));
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
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

async fn holder_state(state: &AppState, holder: &Holder) -> Result<HolderState, ApiError> {
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
