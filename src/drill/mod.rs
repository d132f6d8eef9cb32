//! Restore drills: the proof that a dump restores. A drill restores a completed dump into
//! a scratch database in a private temporary directory (which checks every file's
//! SHA-256 and every table's row count and content digest against the manifest), then
//! checks the database as SQLite sees it: `PRAGMA integrity_check` (every table and
//! index), `PRAGMA foreign_key_check`, a query through every view, the module's own
//! check of every FTS and R*Tree table, every index, view and trigger the manifest lists
//! (so one left out of the dump is caught, by name), and the schema's fingerprint
//! against the manifest's. It deletes
//! the scratch database (and, before it starts, the scratch directories of drills that
//! were killed: `scratch`) and returns a [`DrillReport`]: the evidence, kept beside the
//! dump as `<id>.drill.json` ([`report_key`]).

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::config::SigningKey;
use crate::error::DumpError;
use crate::manifest::{signature_key, Manifest};
use crate::model::{manifest_key, Compression, DrillSummary, Format, JobRecord, JobStatus};
use crate::ports::{ObjectStore, ProgressStore};
use crate::readback::stream::{RangeSource, StoreSource};
use crate::restore::{restore, RestoreOptions};
use crate::verify::check_manifest_signature;

pub mod auto;
mod checks;
mod scratch;

/// The version of [`DrillReport`]'s shape (docs/formats.md describes it).
pub const REPORT_VERSION: u32 = 1;

/// The object a drill of dump `id` writes its report to, beside the dump's files.
pub fn report_key(id: &str) -> String {
    format!("{id}.drill.json")
}

/// Where and how drills run.
#[derive(Clone)]
pub struct DrillSettings {
    /// The key manifests are signed with (`CHUNKDUMP_SIGNING_KEY`), if any: a drill
    /// checks the manifest's signature before it reads anything else.
    pub signing: Option<SigningKey>,
    /// Where scratch databases are made.
    pub scratch_dir: PathBuf,
    /// Ranges read at once from a remote store.
    pub ahead: usize,
    /// A database larger than the scratch directory's free space: `None` refuses the
    /// drill with an error (a drill a person asked for); `Some(place)` reports it as
    /// skipped, "too large for {place}" with both sizes (automatic drills), never as
    /// passed.
    pub skip_too_large_for: Option<String>,
}

impl DrillSettings {
    /// The deployment's settings: its signing key, `CHUNKDUMP_DRILL_DIR`, and its
    /// download concurrency as the ranges read ahead. `skip_too_large_for`: see the
    /// field.
    pub fn from_config(config: &crate::config::Config, skip_too_large_for: Option<&str>) -> Self {
        DrillSettings {
            signing: config.signing_key.clone(),
            scratch_dir: config.drill_dir.clone(),
            ahead: config.download_concurrency as usize,
            skip_too_large_for: skip_too_large_for.map(str::to_string),
        }
    }
}

/// What a drill found: the evidence that a dump restores (or why it does not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    pub report_version: u32,
    pub dump_id: String,
    /// When the drill ran (its start).
    pub drilled_at: String,
    pub passed: bool,
    /// Why the drill did not run (the database is too large for its scratch space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Why it failed, each naming the table, file or object; empty when it passed.
    pub problems: Vec<String>,
    /// What the dump could not keep exactly, as it warned (CSV), each naming its table
    /// and column: known limits of the format, not failures.
    pub warnings: Vec<String>,
    /// The chunkdump and SQLite that ran the drill.
    pub chunkdump_version: String,
    pub sqlite_version: String,
    pub format: Format,
    pub compression: Compression,
    /// The tables restored and checked against the manifest (all of them, if the
    /// restore went through).
    pub tables: Vec<TableChecked>,
    /// `ok`, or the problems `PRAGMA integrity_check` reported.
    pub integrity_check: Option<String>,
    /// Rows `PRAGMA foreign_key_check` reported.
    pub foreign_key_violations: Option<u64>,
    /// Views queried, and FTS or R*Tree tables checked by their module.
    pub views_checked: usize,
    pub virtual_tables_checked: usize,
    /// Whether the restored schema is the one dumped (the manifest's fingerprint).
    pub schema_matches: Option<bool>,
    /// Bytes read from the store, and how long the restore and the checks took.
    pub bytes_read: u64,
    pub restore_seconds: f64,
    pub check_seconds: f64,
    /// The drilling process's peak resident memory, in bytes (Linux).
    pub peak_memory_bytes: Option<u64>,
}

/// A table whose row count and content digest the restore checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableChecked {
    pub table: String,
    pub rows: u64,
    pub content_hash: String,
}

/// Drills completed `job`: reads its manifest from `objects` (the signature checked
/// with `signing` first), drills it in a scratch database under `scratch_dir`, writes
/// the report beside the dump ([`report_key`]) and records the outcome in the job
/// record. `ahead`: ranges read at once from a remote store.
pub async fn drill_job(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    job: &JobRecord,
    settings: &DrillSettings,
) -> Result<DrillReport, DumpError> {
    if job.status != JobStatus::Completed {
        return Err(DumpError::WrongState {
            id: job.id.clone(),
            status: job.status,
            message: "only a completed dump can be drilled".into(),
        });
    }
    let at = Utc::now();
    let report = drill_stored(objects, &job.id, &[job.spec.format], settings)
        .await?
        .ok_or_else(|| DumpError::InvalidRequest(format!("dump {} has no manifest", job.id)))?;
    crate::lifecycle::record_drill(progress, job, report.summary(at)).await?;
    Ok(report)
}

/// Drills dump `id` from its files alone (no job record: a bucket without its progress
/// store), as [`drill_job`] does but recording nothing besides the report beside the
/// dump. Its manifest is looked for as each of `formats` would name it; `None` if there
/// is none.
pub async fn drill_stored(
    objects: &dyn ObjectStore,
    id: &str,
    formats: &[Format],
    settings: &DrillSettings,
) -> Result<Option<DrillReport>, DumpError> {
    let mut found = None;
    for format in formats {
        let key = manifest_key(id, *format);
        if let Some(raw) = objects.get(&key).await? {
            found = Some((key, raw));
            break;
        }
    }
    let Some((key, raw)) = found else {
        return Ok(None);
    };
    let signature = objects.get(&signature_key(&key)).await?;
    check_manifest_signature(&key, &raw, signature.as_deref(), settings.signing.as_ref())?;
    let manifest = crate::manifest::parse(&key, &raw, None).map_err(|e| match e {
        DumpError::Encryption(_) => DumpError::InvalidRequest(format!(
            "dump {id} is encrypted: a drill's report is kept in the bucket and names tables, so encrypted dumps are not drilled; check one with `chunkdump restore --identity FILE` (which verifies every table) and `chunkdump verify --identity FILE`"
        )),
        other => other,
    })?;
    if manifest.dump_id != id {
        return Err(DumpError::InvalidRequest(format!(
            "the manifest of {id} describes dump {}; it was copied or edited",
            manifest.dump_id
        )));
    }
    let source = StoreSource {
        objects,
        ahead: settings.ahead,
    };
    let report = drill(&source, &manifest, settings).await?;
    let body =
        serde_json::to_vec_pretty(&report).map_err(|e| DumpError::Internal(e.to_string()))?;
    objects.put(&report_key(id), body).await?;
    Ok(Some(report))
}

/// Drills the dump `manifest` describes, reading its files from `source`, in a scratch
/// database under the settings' scratch directory (created private; removed, whatever
/// happens).
pub async fn drill(
    source: &dyn RangeSource,
    manifest: &Manifest,
    settings: &DrillSettings,
) -> Result<DrillReport, DumpError> {
    let started = Utc::now();
    let scratch_dir = settings.scratch_dir.as_path();
    let mut report = DrillReport {
        report_version: REPORT_VERSION,
        dump_id: manifest.dump_id.clone(),
        drilled_at: started.to_rfc3339_opts(SecondsFormat::Secs, true),
        passed: false,
        skipped: None,
        problems: Vec::new(),
        warnings: Vec::new(),
        chunkdump_version: env!("CARGO_PKG_VERSION").to_string(),
        sqlite_version: rusqlite::version().to_string(),
        format: manifest.format,
        compression: manifest.compression,
        tables: Vec::new(),
        integrity_check: None,
        foreign_key_violations: None,
        views_checked: 0,
        virtual_tables_checked: 0,
        schema_matches: None,
        bytes_read: 0,
        restore_seconds: 0.0,
        check_seconds: 0.0,
        peak_memory_bytes: None,
    };
    // A scratch directory too small is the drilling machine's problem, not the dump's:
    // found before anything is read, and no report says the dump failed. It holds the
    // restored database and, from a remote store, one dump file at a time (spooled).
    let spooled = manifest.files.iter().map(|f| f.size).max().unwrap_or(0);
    let need = manifest.source.bytes.unwrap_or(0) + spooled;
    if let Some(free) = crate::engine::snapshot::free_bytes(scratch_dir) {
        if free < need {
            let (free_mb, need_mb) = (free / 1_000_000, need.div_ceil(1_000_000));
            let Some(place) = &settings.skip_too_large_for else {
                return Err(DumpError::InvalidRequest(format!(
                    "the scratch directory {} has {free_mb} MB free, less than the {need_mb} MB the database and its largest dump file take; give --scratch-dir elsewhere",
                    scratch_dir.display(),
                )));
            };
            report.skipped = Some(format!(
                "too large for {place}: the database and its largest dump file take {need_mb} MB, the scratch directory {} has {free_mb} MB free",
                scratch_dir.display()
            ));
            return Ok(report);
        }
    }
    let scratch = scratch::Scratch::claim(scratch_dir).map_err(|e| {
        DumpError::InvalidRequest(format!(
            "cannot make a scratch directory in {}: {e}",
            scratch_dir.display()
        ))
    })?;
    let db = scratch.path().join("drill.db");
    let options = RestoreOptions {
        into: db.clone(),
        force: false,
        tables: None,
    };
    let clock = Instant::now();
    match restore(source, manifest, &options, &|_| {}).await {
        Ok(restored) => {
            report.bytes_read = restored.bytes;
            report.warnings = restored.warnings;
            report.tables = manifest
                .tables
                .iter()
                .map(|t| TableChecked {
                    table: t.table.clone(),
                    rows: t.rows,
                    content_hash: t.content_hash.clone(),
                })
                .collect();
            report.restore_seconds = clock.elapsed().as_secs_f64();
            let clock = Instant::now();
            let spec = manifest
                .spec
                .clone()
                .unwrap_or_else(|| crate::readback::spec_of(manifest));
            let fingerprint = manifest.schema_fingerprint.clone();
            let objects = manifest.schema_objects.clone();
            let db = db.clone();
            let found = tokio::task::spawn_blocking(move || {
                let mut r = Checks::default();
                checks::check_objects(&db, objects.as_deref(), &mut r)?;
                checks::check(&db, spec, fingerprint.as_deref(), &mut r).map(|()| r)
            })
            .await
            .map_err(|e| DumpError::Internal(e.to_string()))??;
            found.into_report(&mut report);
            report.check_seconds = clock.elapsed().as_secs_f64();
        }
        Err(e) => {
            report.restore_seconds = clock.elapsed().as_secs_f64();
            report
                .problems
                .push(format!("the restore failed: {}", e.public_message()));
        }
    }
    report.passed = report.problems.is_empty() && report.integrity_check.as_deref() == Some("ok");
    report.peak_memory_bytes = peak_memory_bytes();
    drop(scratch);
    Ok(report)
}

/// What the checks of a restored database found.
#[derive(Default)]
struct Checks {
    problems: Vec<String>,
    integrity: String,
    foreign_keys: u64,
    views: usize,
    virtual_tables: usize,
    /// `None` for a manifest without a schema fingerprint.
    schema_matches: Option<bool>,
}

impl Checks {
    fn into_report(self, report: &mut DrillReport) {
        report.problems.extend(self.problems);
        report.integrity_check = Some(self.integrity);
        report.foreign_key_violations = Some(self.foreign_keys);
        report.views_checked = self.views;
        report.virtual_tables_checked = self.virtual_tables;
        report.schema_matches = self.schema_matches;
    }
}

/// The peak resident memory of this process (Linux: `VmHWM` of /proc/self/status).
fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl DrillReport {
    /// What the dump's job record keeps of this drill, which ran at `at`.
    pub fn summary(&self, at: DateTime<Utc>) -> DrillSummary {
        DrillSummary {
            at,
            passed: self.passed,
            skipped: self.skipped.is_some(),
            problem: match &self.skipped {
                Some(reason) => Some(reason.clone()),
                None => (!self.passed)
                    .then(|| self.problems.first().cloned())
                    .flatten(),
            },
        }
    }
}
