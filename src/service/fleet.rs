//! Fleets: one request dumps many databases under the root (`POST /export/fleet` in the
//! API), run by the fleet state machine (`fleet-statemachine.json`: a map item per database, see
//! [`super::fleet_tasks`]), watched with `GET /export/fleet/{id}`, and told of its end by
//! one signed callback.
//!
//! A fleet's state lives in the store beside the dumps, under `.chunkdump/fleets/<id>/`:
//! `fleet.json` (the request, counts when it ends), `databases.json` (the databases it
//! names, fixed when it starts) and `started/<index>.json` (what became of each
//! database's start, and its dump's end). Each database's dump is an ordinary dump
//! (`<database>/dump_…`), with its own job record.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use std::collections::BTreeMap;

use super::error::{ErrorKind, ServiceError};
use super::fleet_views::{FleetItem, FleetState, FleetStatus};
use super::Service;
use crate::error::StoreError;

/// What became of one database of a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ItemState {
    /// Its dump was started and has not ended.
    Running,
    Completed,
    Failed,
    Cancelled,
    /// Its dump paused, or lost its run (resumable; the fleet does not wait for it).
    Interrupted,
    /// Its dump could not be started (see the entry's `error`).
    NotStarted,
}

impl ItemState {
    /// As the record and the status name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Running => "running",
            ItemState::Completed => "completed",
            ItemState::Failed => "failed",
            ItemState::Cancelled => "cancelled",
            ItemState::Interrupted => "interrupted",
            ItemState::NotStarted => "notStarted",
        }
    }

    /// A dump's status as a fleet item's state.
    pub fn of(status: crate::model::JobStatus) -> Self {
        use crate::model::JobStatus;
        match status {
            JobStatus::Pending | JobStatus::Processing => ItemState::Running,
            JobStatus::Interrupted => ItemState::Interrupted,
            JobStatus::Completed => ItemState::Completed,
            JobStatus::Failed => ItemState::Failed,
            JobStatus::Cancelled => ItemState::Cancelled,
        }
    }
}

/// The most databases one fleet may name.
pub const MAX_FLEET: usize = 100_000;

/// A fleet, as `fleet.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetRecord {
    pub fleet_id: String,
    pub created_at: DateTime<Utc>,
    /// `running`, then `completed` when every database's dump has ended.
    pub status: FleetState,
    /// The start request each database's dump is started with (without `database`).
    pub request: serde_json::Map<String, Value>,
    pub callback_url: Option<String>,
    /// The schedule that started it (its dumps carry the name, for its retention).
    #[serde(default)]
    pub schedule: Option<String>,
    /// How many databases it names.
    pub databases: usize,
    pub ended_at: Option<DateTime<Utc>>,
    /// Databases by how their dumps ended (when the fleet has ended).
    #[serde(default)]
    pub counts: std::collections::BTreeMap<String, usize>,
}

/// What became of one database of a fleet (`started/<index>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedEntry {
    pub database: String,
    pub dump_id: Option<String>,
    /// `running`; or how its dump ended (`completed`, `failed`, `cancelled`,
    /// `interrupted`); or `notStarted` (see `error`).
    pub status: ItemState,
    pub error: Option<Value>,
}

/// Where fleets keep their records.
const FLEETS_PREFIX: &str = ".chunkdump/fleets/";

pub(crate) fn fleet_key(id: &str) -> String {
    format!("{FLEETS_PREFIX}{id}/fleet.json")
}
pub(crate) fn databases_key(id: &str) -> String {
    format!(".chunkdump/fleets/{id}/databases.json")
}
pub(crate) fn started_prefix(id: &str) -> String {
    format!(".chunkdump/fleets/{id}/started/")
}
pub(crate) fn started_key(id: &str, index: usize) -> String {
    format!("{}{index:06}.json", started_prefix(id))
}

/// Reads JSON object `key`; `None` if it does not exist.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    state: &Service,
    key: &str,
) -> Result<Option<T>, ServiceError> {
    match state.objects.get(key).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ServiceError::from(StoreError::Invalid(format!(
                "{key} is not what chunkdump wrote: {e}"
            )))
        }),
    }
}

pub(crate) async fn write_json<T: Serialize>(
    state: &Service,
    key: &str,
    value: &T,
) -> Result<(), ServiceError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| ServiceError::from(StoreError::Invalid(e.to_string())))?;
    Ok(state.objects.put(key, bytes).await?)
}

pub fn check_fleet_id(id: &str) -> Result<(), ServiceError> {
    let ok = id.starts_with("fleet_")
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::bad_field(
            "id",
            format!("invalid fleet id {id:?}"),
        ))
    }
}

/// Checks a fleet body's dump request (every field but `databases` and `callbackUrl`,
/// which [`start_fleet`] resolves) as each of its dumps' starts will: a 400 naming the
/// field, before the fleet costs a start (the API calls it first).
pub fn check_dump_request(request: &serde_json::Map<String, Value>) -> Result<(), ServiceError> {
    let mut probe = request.clone();
    probe.retain(|k, v| !v.is_null() && k != "databases" && k != "callbackUrl");
    probe.insert("database".into(), Value::String("probe".into()));
    let parsed = serde_json::from_value::<super::start::StartRequest>(Value::Object(probe))
        .map_err(|e| {
            let text = e.to_string();
            let field = text.split('`').nth(1).unwrap_or("format").to_string();
            ServiceError::bad_field(&field, text)
        })?;
    parsed.validate()
}

/// Starts a fleet from `request` (a fleet request's body; `schedule`: the schedule
/// starting it, recorded in each of its dumps): its id and how many databases it names.
pub(crate) async fn start_fleet(
    state: &Service,
    mut request: serde_json::Map<String, Value>,
    schedule: Option<&str>,
) -> Result<(String, usize), ServiceError> {
    // An absent field and a null one are the same request.
    request.retain(|_, v| !v.is_null());
    let Some(root) = state.settings.database_root.clone() else {
        return Err(ServiceError::new(
            ErrorKind::NotFound,
            "not_found",
            "this server dumps one database; fleets need a database root (CHUNKDUMP_DATABASE_ROOT)",
        ));
    };
    let selection = request.remove("databases").ok_or_else(|| {
        ServiceError::bad_field(
            "databases",
            "name the databases: a pattern (\"tenants/*.db\") or a list of paths under the root",
        )
    })?;
    if request.contains_key("database") {
        return Err(ServiceError::bad_field(
            "database",
            "a fleet names its databases in `databases`",
        ));
    }
    let callback_url = match request.remove("callbackUrl") {
        None => None,
        Some(Value::String(url)) if url.is_empty() => None,
        Some(Value::String(url)) => Some(url),
        Some(_) => {
            return Err(ServiceError::bad_field(
                "callbackUrl",
                "callbackUrl must be a string",
            ))
        }
    };
    if let Some(url) = &callback_url {
        super::start::check_callback_url(state, url).await?;
    }
    // Kept sealed in the fleet's record (in the bucket): a URL's query often holds a token.
    let callback_url = callback_url
        .as_deref()
        .zip(state.settings.notifier.as_ref())
        .map(|(url, notifier)| notifier.seal(url));
    // Every database's dump is started with this request: check it now, once.
    check_dump_request(&request)?;
    let databases = tokio::task::spawn_blocking(move || select(&root, &selection)).await??;
    let fleet_id = format!(
        "fleet_{}-{:04x}",
        Utc::now().format("%Y%m%d-%H%M%S"),
        fastrand::u16(..)
    );
    let record = FleetRecord {
        fleet_id: fleet_id.clone(),
        // Whole seconds, as every other time the API gives.
        created_at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 0),
        status: FleetState::Running,
        request,
        callback_url,
        schedule: schedule.map(str::to_string),
        databases: databases.len(),
        ended_at: None,
        counts: Default::default(),
    };
    write_json(state, &databases_key(&fleet_id), &databases).await?;
    write_json(state, &fleet_key(&fleet_id), &record).await?;
    let input =
        json!({"fleetId": fleet_id, "page": 0, "concurrency": state.settings.fleet_concurrency});
    state.orchestrator.start_fleet(&fleet_id, input).await?;
    tracing::info!(fleet_id = %fleet_id, databases = databases.len(), "fleet accepted");
    Ok((fleet_id, databases.len()))
}

/// Starts again the run of every fleet whose record says `running` (`serve` at start:
/// its in-process runs died with the process that ran them). Its tasks are idempotent:
/// a database already started is not started again, a dump whose run is gone counts as
/// interrupted, and the fleet ends with its counts recomputed from its dumps and its
/// callback sent once. Returns the fleets resumed.
pub async fn resume_running_fleets(state: &Service) -> Result<Vec<String>, ServiceError> {
    let keys = state.objects.list_keys(FLEETS_PREFIX).await?;
    let mut resumed = Vec::new();
    for key in keys.iter().filter(|k| k.ends_with("/fleet.json")) {
        let Some(record) = read_json::<FleetRecord>(state, key).await? else {
            continue;
        };
        if record.status != FleetState::Running {
            continue;
        }
        let input = json!({"fleetId": record.fleet_id, "page": 0, "concurrency": state.settings.fleet_concurrency});
        state
            .orchestrator
            .start_fleet(&record.fleet_id, input)
            .await?;
        tracing::info!(fleet_id = %record.fleet_id, "fleet resumed");
        resumed.push(record.fleet_id);
    }
    Ok(resumed)
}

/// The databases a fleet's `databases` names: a pattern matched against every database
/// under the root (`*` stays within a directory, `**` crosses them), or a list of paths,
/// each checked as a start would check it. Sorted, each once.
fn select(
    root: &crate::local::DatabaseRoot,
    selection: &Value,
) -> Result<Vec<String>, ServiceError> {
    let mut found: Vec<String> = match selection {
        Value::String(pattern) => {
            let matcher = glob::Pattern::new(pattern).map_err(|e| {
                ServiceError::bad_field("databases", format!("pattern {pattern:?}: {e}"))
            })?;
            let options = glob::MatchOptions {
                require_literal_separator: true,
                ..Default::default()
            };
            // One walk of the root, not one per page: a listing walks the whole tree
            // whatever page it returns.
            let (all, _) = root
                .list(None, usize::MAX)
                .map_err(|e| ServiceError::new(ErrorKind::Internal, "internal_error", e.message))?;
            let matched: Vec<String> = all
                .into_iter()
                .map(|d| d.database)
                .filter(|d| matcher.matches_with(d, options))
                .collect();
            matched
        }
        Value::Array(names) => {
            let mut resolved = Vec::new();
            for name in names {
                let name = name.as_str().ok_or_else(|| {
                    ServiceError::bad_field("databases", "databases must be strings")
                })?;
                let database = root
                    .resolve(name)
                    .map_err(|e| ServiceError::bad_field("databases", e.message))?;
                resolved.push(database.database);
            }
            resolved
        }
        _ => {
            return Err(ServiceError::bad_field(
                "databases",
                "databases must be a pattern or a list of paths under the root",
            ))
        }
    };
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Err(ServiceError::bad_field(
            "databases",
            "no database under the root matches",
        ));
    }
    if found.len() > MAX_FLEET {
        return Err(ServiceError::bad_field(
            "databases",
            format!(
                "{} databases: a fleet names at most {MAX_FLEET}",
                found.len()
            ),
        ));
    }
    Ok(found)
}

/// Fleet `id`'s status: the fleet, its databases counted by status (and its drills,
/// when it drills), and the page of `limit` databases from index `cursor`, with their
/// dump ids and statuses.
pub async fn fleet_status(
    state: &Service,
    id: &str,
    cursor: usize,
    limit: usize,
) -> Result<FleetStatus, ServiceError> {
    check_fleet_id(id)?;
    let Some(record) = read_json::<FleetRecord>(state, &fleet_key(id)).await? else {
        return Err(ServiceError::new(
            ErrorKind::NotFound,
            "not_found",
            format!("no fleet {id}"),
        ));
    };
    let databases: Vec<String> = read_json(state, &databases_key(id))
        .await?
        .unwrap_or_default();
    let started = started_entries(state, id).await?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for index in 0..databases.len() {
        let status = started.get(&index).map_or("waiting", |e| e.status.as_str());
        *counts.entry(status.to_string()).or_default() += 1;
    }
    let drills = if record.request.get("drill") == Some(&Value::Bool(true)) {
        let completed: Vec<String> = started
            .values()
            .filter(|e| e.status == ItemState::Completed)
            .filter_map(|e| e.dump_id.clone())
            .collect();
        Some(drill_counts(state.progress.as_ref(), completed).await?)
    } else {
        None
    };
    let from = cursor.min(databases.len());
    let to = (from + limit).min(databases.len());
    let mut items = Vec::new();
    for (index, database) in databases.iter().enumerate().take(to).skip(from) {
        let entry = started.get(&index);
        let dump_id = entry.and_then(|e| e.dump_id.clone());
        // A running dump's status is its job record's, as it is now.
        let mut status = entry.map_or("waiting", |e| e.status.as_str()).to_string();
        if let (Some(dump), "running") = (&dump_id, status.as_str()) {
            if let Some(job) = state.progress.get(dump).await? {
                status = job.status.as_str().to_string();
            }
        }
        items.push(FleetItem {
            database: database.clone(),
            dump_id,
            status,
            error: entry.and_then(|e| e.error.clone()),
        });
    }
    Ok(FleetStatus {
        fleet_id: record.fleet_id,
        status: record.status,
        created_at: record.created_at,
        ended_at: record.ended_at,
        databases: databases.len(),
        counts,
        drills,
        items,
        next_cursor: (to < databases.len()).then_some(to),
    })
}

/// What became of each database of fleet `id` that has been started, by index.
pub(crate) async fn started_entries(
    state: &Service,
    id: &str,
) -> Result<BTreeMap<usize, StartedEntry>, ServiceError> {
    let prefix = started_prefix(id);
    let keys = state.objects.list_keys(&prefix).await?;
    let read: Vec<Result<Option<(usize, StartedEntry)>, ServiceError>> =
        futures_util::stream::iter(keys.into_iter().map(|key| {
            let prefix = &prefix;
            async move {
                let Some(index) = key
                    .strip_prefix(prefix.as_str())
                    .and_then(|k| k.strip_suffix(".json"))
                    .and_then(|k| k.parse::<usize>().ok())
                else {
                    return Ok(None);
                };
                Ok(read_json::<StartedEntry>(state, &key)
                    .await?
                    .map(|e| (index, e)))
            }
        }))
        // One small object per database: many at once, so 10,000 take seconds, not minutes.
        .buffer_unordered(64)
        .collect()
        .await;
    let mut entries = BTreeMap::new();
    for r in read {
        if let Some((index, entry)) = r? {
            entries.insert(index, entry);
        }
    }
    Ok(entries)
}

/// The completed dumps among `dump_ids` by their drill's outcome, or `pending` (each job
/// record read, many at once).
pub(crate) async fn drill_counts(
    progress: &dyn crate::ports::ProgressReader,
    dump_ids: Vec<String>,
) -> Result<std::collections::BTreeMap<String, usize>, crate::error::StoreError> {
    use futures_util::StreamExt;
    let outcomes: Vec<Result<Option<&'static str>, crate::error::StoreError>> =
        futures_util::stream::iter(dump_ids.into_iter().map(|id| async move {
            Ok(progress.get(&id).await?.map(|job| {
                job.last_drill
                    .as_ref()
                    .map_or("pending", crate::model::DrillSummary::outcome)
            }))
        }))
        .buffer_unordered(64)
        .collect()
        .await;
    let mut counts = std::collections::BTreeMap::new();
    for outcome in outcomes {
        if let Some(outcome) = outcome? {
            *counts.entry(outcome.to_string()).or_default() += 1;
        }
    }
    Ok(counts)
}
