//! The API's start path: validates a start request, finds and claims the database, creates the
//! job and starts its run. Used by `POST /export/dump` and by scheduled starts.

use serde::Deserialize;

use super::error::ServiceError;
use super::Service;
use crate::lifecycle::{create_dump_as, NewDump};
use crate::model::{Compression, DumpSpec, Format, JobRecord};

/// Body of `POST /export/dump` (and the `request` of a scheduled start). Unknown fields
/// are refused, naming the field.
#[derive(schemars::JsonSchema, Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartRequest {
    format: Format,
    /// With a database root: the database to dump, its path under the root (its dumps
    /// are named `<database>/dump_…`).
    pub(crate) database: Option<String>,
    /// Told once, when the dump has ended: an https URL of a public host.
    #[schemars(url, regex(pattern = "^https://"))]
    pub(crate) callback_url: Option<String>,
    /// Rows per slice (one short read transaction).
    #[serde(rename = "chunkSize")]
    #[schemars(range(min = 1, max = "crate::model::SliceRows::MAX"))]
    slice_rows: Option<u32>,
    /// false: rows only, for SQL dumps (400 with field includeSchema for csv and json,
    /// whose schema file is what restores their tables).
    include_schema: Option<bool>,
    /// Tables to dump (default: all).
    #[schemars(length(min = 1))]
    tables: Option<Vec<String>>,
    compression: Option<Compression>,
    /// Dump a point-in-time copy (default `DUMP_SNAPSHOT`).
    snapshot: Option<bool>,
    /// Longest a rollback-journal snapshot copied in one read transaction may hold
    /// writers off.
    #[schemars(range(min = 1, max = 600_000))]
    snapshot_max_block_ms: Option<u64>,
    /// Drill the dump once it completes (`chunkdump drill`: restore it into a scratch
    /// database and check it); the outcome shows as `lastDrill`, and a failed drill
    /// calls `callbackUrl` back with `"event": "drill.failed"`.
    pub(crate) drill: Option<bool>,
    /// age public keys (`age1…`) to encrypt this dump to, instead of the deployment's
    /// `CHUNKDUMP_RECIPIENTS` (public keys, not secrets): its files then open only with
    /// a matching identity, which this server never holds.
    #[schemars(length(min = 1, max = 20))]
    recipients: Option<Vec<String>>,
}

impl StartRequest {
    /// The checks of the body alone (no store, no database, no callback host), which the
    /// API runs before it counts the start against a rate limit or looks for a dump
    /// already running: a 400 naming the field.
    pub fn validate(&self) -> Result<(), ServiceError> {
        if let Some(n) = self.slice_rows {
            crate::model::SliceRows::new(n)?;
        }
        if self
            .snapshot_max_block_ms
            .is_some_and(|ms| !(1..=600_000).contains(&ms))
        {
            return Err(ServiceError::bad_field(
                "snapshotMaxBlockMs",
                "snapshotMaxBlockMs must be between 1 and 600000",
            ));
        }
        if self
            .tables
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.iter().any(|name| name.is_empty()))
        {
            return Err(ServiceError::bad_field(
                "tables",
                "tables must be a non-empty list of table names",
            ));
        }
        if self.include_schema == Some(false) && self.format != Format::Sql {
            return Err(ServiceError::bad_field(
                "includeSchema",
                "includeSchema false is for SQL dumps: a CSV, JSON or Parquet dump's schema file is what creates its tables on restore",
            ));
        }
        // A request's keys replace the deployment's, never remove encryption: an empty
        // list would be a plaintext dump on a deployment that encrypts every dump.
        if let Some(keys) = &self.recipients {
            crate::encryption::Recipients::parse(keys).map_err(|e| {
                ServiceError::bad_field(
                    "recipients",
                    format!("recipients must be 1 to 20 age public keys (age1…): {e}"),
                )
            })?;
        }
        Ok(())
    }
}

/// Checks a callback URL as every start does: this server must sign callbacks, and the
/// URL must be HTTPS to a public host (the SSRF guard).
pub async fn check_callback_url(state: &Service, url: &str) -> Result<(), ServiceError> {
    let Some(notifier) = &state.settings.notifier else {
        return Err(ServiceError::bad_field("callbackUrl", "this server has no callback signing secret (CHUNKDUMP_CALLBACK_SECRET), so it sends no callbacks"));
    };
    notifier
        .check_url(url)
        .await
        .map(drop)
        .map_err(|e| ServiceError::bad_field("callbackUrl", e.to_string()))
}

/// Validates a start, creates the job (one active dump per database) and starts its
/// run: the one path by which API requests and schedules start dumps (`schedule`: the
/// name of the schedule starting it).
pub async fn start_dump(
    state: &Service,
    req: StartRequest,
    schedule: Option<&str>,
) -> Result<JobRecord, ServiceError> {
    req.validate()?;
    let slice_rows = match req.slice_rows {
        Some(n) => crate::model::SliceRows::new(n)?,
        None => state.settings.slice_rows,
    };
    if let Some(url) = &req.callback_url {
        check_callback_url(state, url).await?;
    }
    let target = target(state, req.database.as_deref())?;
    let spec = DumpSpec {
        database: target.path.clone(),
        format: req.format,
        compression: req
            .compression
            .unwrap_or(crate::model::Compression::default_for(req.format)),
        tables: req.tables,
        include_schema: req.include_schema.unwrap_or(true),
        slice_rows,
        part_size: state.settings.part_size,
        snapshot: req.snapshot.unwrap_or(state.settings.snapshot),
        snapshot_max_block_ms: req.snapshot_max_block_ms,
        frame_size: None,
        shown_as: Some(target.shown_as.clone()),
        drill: req.drill.unwrap_or(false),
        recipients: req
            .recipients
            .unwrap_or_else(|| state.settings.recipients.clone()),
    };
    let claim = super::claims::claim_database(state, &target.path).await?;
    let new = NewDump {
        id: None,
        // Kept sealed in the job record: a URL's query often holds a token.
        callback_url: req
            .callback_url
            .as_deref()
            .zip(state.settings.notifier.as_ref())
            .map(|(url, notifier)| notifier.seal(url)),
        schedule: schedule.map(str::to_string),
        database_name: target.name,
        custody: state.settings.custody.clone(),
    };
    let job = match create_dump_as(state.progress.as_ref(), spec, new).await {
        Ok(job) => job,
        Err(e) => {
            // Released now, so the next start (a corrected request) finds it free.
            claim.release().await;
            return Err(e.into());
        }
    };
    if let Err(e) = state.orchestrator.start(&job.id, job.version).await {
        // A job that never runs must not hold the database's one-dump slot.
        let _ = crate::lifecycle::fail_job(
            state.objects.as_ref(),
            state.progress.as_ref(),
            &job,
            &e,
            Vec::new(),
        )
        .await;
        return Err(e.into());
    }
    // The run is started before the slot names the dump: whoever finds the dump holding
    // the slot finds its run (see `limits::holder_is_active`).
    claim.hand_over(&job.id).await?;
    tracing::info!(dump_id = %job.id, format = ?job.spec.format, "dump accepted");
    Ok(job)
}

/// The database a start dumps: its path on this machine, and its name in the store when
/// the server has a root (dumps of it are `<name>/dump_…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: String,
    pub name: Option<String>,
    /// The database as callers see it (never the server's path): the path under the root
    /// they named, or the file name of the server's one database.
    pub shown_as: String,
}

/// Resolves a start's `database` (a path relative to the root): 400 naming the problem
/// when it is not a SQLite file inside the root, or when the server has no root.
pub fn target(state: &Service, requested: Option<&str>) -> Result<Target, ServiceError> {
    let settings = &state.settings;
    match (requested, &settings.database_root, &settings.database) {
        (Some(relative), Some(root), _) => {
            let found = root
                .resolve(relative)
                .map_err(|e| ServiceError::bad_field("database", e.message))?;
            Ok(Target {
                path: found.path.display().to_string(),
                name: Some(found.name),
                shown_as: found.database,
            })
        }
        (Some(_), None, _) => Err(ServiceError::bad_field(
            "database",
            "this server dumps one database and takes no `database`; \
             a server with a database root (CHUNKDUMP_DATABASE_ROOT) does",
        )),
        (None, _, Some(database)) => Ok(Target {
            path: database.clone(),
            name: None,
            shown_as: std::path::Path::new(database)
                .file_name()
                .map_or_else(|| "database".into(), |n| n.to_string_lossy().into_owned()),
        }),
        (None, _, None) => Err(ServiceError::bad_field(
            "database",
            "name the database to dump: a path under the database root \
             (GET /export/databases lists them)",
        )),
    }
}
