//! Scheduled dumps: what EventBridge Scheduler (in AWS) or `chunkdump serve --schedule`
//! (locally) runs at each tick. A tick prunes by the schedule's retention policy, then
//! starts a dump through `start_dump`, the same path as `POST /export/dump` (job record,
//! one active dump per database, callback), and records the outcome where
//! `GET /export/dump` shows it.
//!
//! The payload is the same in both places (see `events/schedule.json`):
//! `{"chunkdumpSchedule": {"name": "nightly", "request": {…POST body…},
//!   "retention": {"keepLast": 7, "keepDays": 14}}}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{ErrorKind, ServiceError};
use super::start::{start_dump, StartRequest};
use super::Service;
use crate::error::StoreError;
use crate::model::JobStatus;
use crate::retention::{prune, PruneScope, RetentionPolicy};

/// The key of the payload that marks a scheduled start (as opposed to an HTTP event).
pub const PAYLOAD_KEY: &str = "chunkdumpSchedule";

/// Where the recent scheduled runs are recorded, one object each.
const RUNS_PREFIX: &str = ".chunkdump/schedule-runs/";
/// Where earlier versions recorded all runs in one file; still read.
const LEGACY_RUNS_KEY: &str = ".chunkdump/schedule-runs.json";
/// How many runs are kept.
const RUNS_KEPT: usize = 20;

/// One tick of a schedule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduledStart {
    /// The schedule's name, shown with its runs (`[A-Za-z0-9_-]`, at most 64).
    pub name: String,
    /// What to dump: the body of `POST /export/dump` (without `database` for a fleet).
    pub request: StartRequest,
    /// With a database root: the databases each tick dumps as one fleet (a pattern such
    /// as `"tenants/*.db"`, or a list of paths), each kept by the retention on its own.
    #[serde(default)]
    pub databases: Option<serde_json::Value>,
    /// Completed dumps of this database to keep; none: keep all.
    #[serde(default)]
    pub retention: Option<Retention>,
    /// Drill each dump this schedule starts once it completes (the request's `drill`,
    /// see `chunkdump drill`; a failed drill calls the dump's callback URL back with
    /// `"event": "drill.failed"`).
    #[serde(default)]
    pub drill: bool,
    /// At each tick, first drill the latest completed dump of each database this
    /// schedule dumps whose last drill is this many hours old or more (or that was never
    /// drilled). `chunkdump serve --schedule` does it in the tick; in AWS the template's
    /// drill schedule (`DrillLatestEveryHours`) does it on the drill function, whose
    /// storage is sized for it, so the API function's tick does not.
    #[serde(default)]
    pub drill_latest_every_hours: Option<f64>,
}

impl ScheduledStart {
    /// How often the latest dumps are drilled (`drillLatestEveryHours`; 0 or none: never).
    pub fn drill_latest_every(&self) -> Option<std::time::Duration> {
        self.drill_latest_every_hours
            .and_then(crate::model::drill_interval)
    }
}

/// A schedule's retention policy.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_days: Option<f64>,
}

impl Retention {
    /// The policy; `None` keeps everything. A 0 (the template's "unset") is no rule.
    fn policy(&self) -> Result<Option<RetentionPolicy>, String> {
        let keep_last = self.keep_last.filter(|n| *n > 0);
        let keep_days = self.keep_days.filter(|d| *d != 0.0);
        if keep_last.is_none() && keep_days.is_none() {
            return Ok(None);
        }
        RetentionPolicy::from_rules(keep_last, keep_days, "keepDays").map(Some)
    }
}

/// How a tick ended.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TickOutcome {
    /// A dump was started (its own status tells how it ended).
    Started,
    /// Refused like an API start would be: a dump of the database is running (409).
    Refused,
    /// The start failed (bad schedule, store or orchestrator error).
    Failed,
}

/// A recorded tick.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledRun {
    pub schedule: String,
    pub at: DateTime<Utc>,
    pub outcome: TickOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_id: Option<String>,
    /// The fleet started (a schedule of several databases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_id: Option<String>,
    /// The error of a refused or failed start: `code` and `message`, as the API gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    /// Dumps deleted by the retention policy at this tick.
    #[serde(default)]
    pub pruned: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_error: Option<String>,
    /// The started dump's current status (filled in when listed, never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_status: Option<DumpNow>,
}

/// What became of a scheduled run's dump: its status, or `"deleted"` once it is gone
/// (pruned, or deleted by hand).
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DumpNow {
    Exists(JobStatus),
    Gone(Gone),
}

/// The one state of a dump that no longer exists.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gone {
    #[serde(rename = "deleted")]
    Deleted,
}

/// A fleet tick: the schedule's request over its `databases`.
async fn start_fleet_tick(
    state: &Service,
    request: &StartRequest,
    databases: serde_json::Value,
    schedule: &str,
) -> Result<String, ServiceError> {
    let serde_json::Value::Object(mut body) = serde_json::to_value(request)
        .map_err(|e| ServiceError::bad_field("request", e.to_string()))?
    else {
        return Err(ServiceError::bad_field("request", "not an object"));
    };
    body.insert("databases".into(), databases);
    super::fleet::start_fleet(state, body, Some(schedule))
        .await
        .map(|(fleet_id, _)| fleet_id)
}

fn error_body(e: &ServiceError) -> serde_json::Value {
    serde_json::json!({"status": e.kind.http_status(), "code": e.code, "message": e.message})
}

/// Runs one tick and records it. Its retention policy prunes only the completed dumps
/// this schedule started, of this database. Never panics on bad input: a bad schedule is a failed
/// tick, recorded and logged at error level so alarms see it.
pub async fn run_tick(state: &Service, tick: ScheduledStart) -> ScheduledRun {
    let mut run = ScheduledRun {
        schedule: tick.name.clone(),
        at: Utc::now(),
        outcome: TickOutcome::Failed,
        dump_id: None,
        fleet_id: None,
        error: None,
        pruned: Vec::new(),
        prune_error: None,
        dump_status: None,
    };
    let name_ok = !tick.name.is_empty()
        && tick.name.len() <= 64
        && tick
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        run.error = Some(
            serde_json::json!({"code": "invalid_request", "message": format!("schedule name {:?}: 1 to 64 of [A-Za-z0-9_-]", tick.name)}),
        );
    } else {
        // The policy applies to this schedule's dumps of this database, not to dumps
        // started by hand or by another schedule.
        // (A database the request cannot name is not pruned; the start below says why.)
        // A fleet's schedule keeps each of its databases' dumps by the policy on its own.
        let database = match &tick.databases {
            Some(_) => Ok(None),
            None => {
                super::start::target(state, tick.request.database.as_deref()).map(|t| Some(t.path))
            }
        };
        let scope = PruneScope {
            database: database
                .as_ref()
                .ok()
                .cloned()
                .flatten()
                .map(crate::model::DatabaseFilter::path),
            schedule: Some(tick.name.clone()),
        };
        if let (Some(retention), Ok(_)) = (tick.retention, &database) {
            match retention.policy() {
                Ok(None) => {}
                Ok(Some(policy)) => match prune(
                    state.objects.as_ref(),
                    state.progress.as_ref(),
                    &policy,
                    &scope,
                    false,
                )
                .await
                {
                    Ok(report) => {
                        run.pruned = report.deleted.into_iter().map(|d| d.dump_id).collect()
                    }
                    Err(e) => run.prune_error = Some(e.to_string()),
                },
                Err(e) => run.prune_error = Some(e),
            }
        }
        let mut request = tick.request;
        if tick.drill {
            request.drill = Some(true);
        }
        // The template passes "" when the schedule has no callback.
        if request.callback_url.as_deref().is_some_and(str::is_empty) {
            request.callback_url = None;
        }
        let started = match tick.databases {
            Some(databases) => start_fleet_tick(state, &request, databases, &tick.name)
                .await
                .map(|fleet_id| run.fleet_id = Some(fleet_id)),
            None => start_dump(state, request, Some(&tick.name))
                .await
                .map(|job| run.dump_id = Some(job.id)),
        };
        match started {
            Ok(()) => run.outcome = TickOutcome::Started,
            Err(e) => {
                run.outcome = if e.kind == ErrorKind::Conflict {
                    TickOutcome::Refused
                } else {
                    TickOutcome::Failed
                };
                run.error = Some(error_body(&e));
            }
        }
    }
    match run.outcome {
        TickOutcome::Started => {
            tracing::info!(schedule = %run.schedule, dump_id = ?run.dump_id, pruned = run.pruned.len(), "scheduled dump started")
        }
        _ => {
            tracing::error!(schedule = %run.schedule, outcome = ?run.outcome, error = ?run.error, "scheduled dump not started")
        }
    }
    if let Some(e) = &run.prune_error {
        tracing::error!(schedule = %run.schedule, error = %e, "scheduled prune failed");
    }
    if let Err(e) = record(state, &run).await {
        tracing::error!(schedule = %run.schedule, error = %e, "could not record the scheduled run");
    }
    run
}

/// The runs recorded, newest first (at most [`RUNS_KEPT`]), and the records that could
/// not be read, each named (a corrupt record is reported, never silently dropped or
/// overwritten). Each run is an object of its own, so two ticks at once cannot lose
/// each other's run; the single file of earlier versions is still read.
async fn load_runs(state: &Service) -> Result<(Vec<ScheduledRun>, Vec<String>), StoreError> {
    let mut keys = state.objects.list_keys(RUNS_PREFIX).await?;
    keys.sort_unstable_by(|a, b| b.cmp(a));
    keys.truncate(RUNS_KEPT);
    let mut runs = Vec::new();
    let mut unreadable = Vec::new();
    let mut read = |key: &str, bytes: Vec<u8>, one: bool| {
        let parsed = if one {
            serde_json::from_slice::<ScheduledRun>(&bytes).map(|r| vec![r])
        } else {
            serde_json::from_slice::<Vec<ScheduledRun>>(&bytes)
        };
        match parsed {
            Ok(more) => runs.extend(more),
            Err(e) => {
                tracing::error!(key, error = %e, "a scheduled run's record is not what chunkdump wrote");
                unreadable.push(format!("{key} is not a scheduled run chunkdump wrote: {e}"));
            }
        }
    };
    for key in &keys {
        if let Some(bytes) = state.objects.get(key).await? {
            read(key, bytes, true);
        }
    }
    if let Some(bytes) = state.objects.get(LEGACY_RUNS_KEY).await? {
        read(LEGACY_RUNS_KEY, bytes, false);
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.at));
    runs.truncate(RUNS_KEPT);
    Ok((runs, unreadable))
}

/// Records `run` as an object of its own (named by its time, so keys sort by age), then
/// deletes the records beyond the newest [`RUNS_KEPT`].
async fn record(state: &Service, run: &ScheduledRun) -> Result<(), StoreError> {
    let key = format!(
        "{RUNS_PREFIX}{}-{}-{:04x}.json",
        run.at.format("%Y%m%dT%H%M%S%.6fZ"),
        run.schedule,
        fastrand::u16(..)
    );
    let body = serde_json::to_vec_pretty(run).map_err(|e| StoreError::Permanent(e.to_string()))?;
    state.objects.put(&key, body).await?;
    let mut keys = state.objects.list_keys(RUNS_PREFIX).await?;
    keys.sort_unstable_by(|a, b| b.cmp(a));
    for old in keys.iter().skip(RUNS_KEPT) {
        state.objects.delete(old).await?;
    }
    Ok(())
}

/// The recorded runs, newest first, the latest five with their dump's current status;
/// and the records that could not be read, each named.
pub async fn recent_runs(state: &Service) -> Result<(Vec<ScheduledRun>, Vec<String>), StoreError> {
    let (mut runs, unreadable) = load_runs(state).await?;
    for run in runs.iter_mut().take(5) {
        if let Some(id) = &run.dump_id {
            run.dump_status = Some(match state.progress.get(id).await? {
                Some(job) => DumpNow::Exists(job.status),
                None => DumpNow::Gone(Gone::Deleted),
            });
        }
    }
    Ok((runs, unreadable))
}

/// Reads a tick from a Lambda payload: `Some` if it is one (`{"chunkdumpSchedule": …}`),
/// with an error naming the problem if it is malformed.
pub fn tick_from_payload(payload: &serde_json::Value) -> Option<Result<ScheduledStart, String>> {
    let inner = payload.get(PAYLOAD_KEY)?;
    let tick: Result<ScheduledStart, String> =
        serde_json::from_value(inner.clone()).map_err(|e| format!("{PAYLOAD_KEY}: {e}"));
    if let Ok(t) = &tick {
        if t.drill_latest_every().is_some() {
            tracing::warn!(schedule = %t.name, "\"drillLatestEveryHours\" is done by the template's drill schedule (DrillLatestEveryHours) on the drill function; this tick drills nothing");
        }
    }
    Some(tick)
}
