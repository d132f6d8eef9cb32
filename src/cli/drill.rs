//! `chunkdump drill`: restores a completed dump into a scratch database and checks it
//! (see [`crate::drill`]), keeps the report beside the dump (`<id>.drill.json`) and the
//! outcome in its job record, and prints a one-screen summary; `--history` lists the
//! last drill of each dump.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::stores::{open_stores, Access, Stores};
use super::{Location, UsageError};
use crate::drill::{drill_job, drill_stored, report_key, DrillReport, DrillSettings};
use crate::error::DumpError;
use crate::model::{Format, JobRecord, JobStatus};

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The completed dump to drill.
    #[arg(required_unless_present_any = ["latest", "history"], conflicts_with_all = ["latest", "history"])]
    pub id: Option<String>,
    #[command(flatten)]
    pub location: Location,
    /// Drill the newest completed dump (of --database, if given).
    #[arg(long, conflicts_with = "history")]
    pub latest: bool,
    /// List the last drill of each completed dump (of --database, if given), newest first.
    #[arg(long)]
    pub history: bool,
    /// With --latest or --history: only dumps of this database (its file, or its name as
    /// `dump` printed it).
    #[arg(long, value_name = "DB")]
    pub database: Option<PathBuf>,
    /// Where the scratch database is made (a private directory inside, removed after)
    /// [default: CHUNKDUMP_DRILL_DIR, else the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// Print the report (or the history) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Drills a dump, or prints the history; an error (exit 1) if the drill failed.
pub async fn run(args: DrillArgs) -> anyhow::Result<()> {
    if args.database.is_some() && args.id.is_some() {
        return Err(
            UsageError("--database goes with --latest or --history, not an id".into()).into(),
        );
    }
    let bucket_only = args.id.is_some() && args.location.store.is_some();
    let stores = match open_stores(&args.location, Access::Existing).await {
        Ok(stores) => stores,
        // A bucket this machine keeps no progress of: the dump's files are enough, as
        // for `restore`.
        Err(DumpError::InvalidRequest(_)) if bucket_only && args.location.progress.is_none() => {
            let url = args.location.store.as_deref().unwrap_or_default();
            let (objects, _) = super::stores::object_store(url, false).await?;
            let id = args.id.as_deref().unwrap_or_default();
            return drill_files_only(&objects, id, &args).await;
        }
        Err(e) => return Err(e.into()),
    };
    // A drill by id needs no listing of every dump.
    let completed = match args.id {
        Some(_) => Vec::new(),
        None => completed_dumps(&stores, &args).await?,
    };
    if args.history {
        return history(&completed, args.json);
    }
    let job =
        match &args.id {
            Some(id) => stores.progress.get(id).await?,
            None => Some(completed.into_iter().next().ok_or_else(|| {
                DumpError::InvalidRequest("no completed dump to drill here".into())
            })?),
        };
    let Some(job) = job else {
        // No record of it here: the dump's files alone, as `restore` reads them.
        let id = args.id.as_deref().unwrap_or_default();
        return drill_files_only(stores.objects.as_ref(), id, &args).await;
    };
    let settings = settings(&args)?;
    let report = drill_job(
        stores.objects.as_ref(),
        stores.progress.as_ref(),
        &job,
        &settings,
    )
    .await?;
    finish(&job.id, &report, &args)
}

/// Drills dump `id` from its files alone (no job record of it here); the report beside
/// the dump is the only record.
async fn drill_files_only(
    objects: &dyn crate::ports::ObjectStore,
    id: &str,
    args: &DrillArgs,
) -> anyhow::Result<()> {
    let id = &*crate::model::DumpId::parse(id).map_err(|e| DumpError::InvalidRequest(e.message))?;
    let formats = [Format::Sql, Format::Csv];
    let report = drill_stored(objects, id, &formats, &settings(args)?)
        .await?
        .ok_or_else(|| {
            DumpError::InvalidRequest(format!("no completed dump {id} there (it has no manifest)"))
        })?;
    finish(id, &report, args)
}

/// A drill a person asked for: a scratch directory too small is an error, not a skip.
fn settings(args: &DrillArgs) -> anyhow::Result<DrillSettings> {
    let settings = DrillSettings::from_config(&crate::config::Config::from_env()?, None);
    Ok(DrillSettings {
        scratch_dir: args
            .scratch_dir
            .clone()
            .unwrap_or(settings.scratch_dir.clone()),
        ..settings
    })
}

/// Prints the report (summary or JSON) and the warnings; an error if the drill failed.
fn finish(id: &str, report: &DrillReport, args: &DrillArgs) -> anyhow::Result<()> {
    let key = report_key(id);
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(report)?)?;
    } else {
        print_summary(&mut stdout, report, &key)?;
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if report.passed {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "the drill of {id} failed ({}); the report is {key}",
            super::count(report.problems.len(), "problem")
        ))
    }
}

/// The completed dumps (of `--database`, if given), newest first.
async fn completed_dumps(stores: &Stores, args: &DrillArgs) -> Result<Vec<JobRecord>, DumpError> {
    let database = args.database.as_deref().map(super::database_filter);
    let jobs = stores.progress.list_recent(10_000).await?;
    let completed: Vec<JobRecord> = jobs
        .into_iter()
        .filter(|j| j.status == JobStatus::Completed)
        .filter(|j| {
            database
                .as_ref()
                .is_none_or(|d| d.matches(&j.spec.database, &j.id))
        })
        .collect();
    if let (Some(db), true) = (&database, completed.is_empty()) {
        return Err(DumpError::InvalidRequest(format!(
            "no completed dump of database {} here",
            db.describe()
        )));
    }
    Ok(completed)
}

fn print_summary(out: &mut impl Write, r: &DrillReport, key: &str) -> std::io::Result<()> {
    let verdict = if r.passed { "passed" } else { "FAILED" };
    writeln!(out, "drill of {}: {verdict}", r.dump_id)?;
    // No integrity check: the restore itself failed (its problem says why).
    if let Some(integrity) = &r.integrity_check {
        let rows: u64 = r.tables.iter().map(|t| t.rows).sum();
        writeln!(
            out,
            "  restored {} and {} rows ({:.1} MB read) in {:.1} s, checked in {:.1} s",
            super::count(r.tables.len(), "table"),
            rows,
            r.bytes_read as f64 / 1e6,
            r.restore_seconds,
            r.check_seconds
        )?;
        let schema = match r.schema_matches {
            Some(true) => "; schema as dumped",
            Some(false) => "; schema differs",
            None => "",
        };
        writeln!(
            out,
            "  integrity_check {integrity}; {}; {} and {} checked{schema}",
            super::count(
                r.foreign_key_violations.unwrap_or(0) as usize,
                "foreign key violation"
            ),
            super::count(r.views_checked, "view"),
            super::count(r.virtual_tables_checked, "virtual table"),
        )?;
    }
    for p in &r.problems {
        writeln!(out, "  problem: {p}")?;
    }
    writeln!(out, "  report: {key}")
}

/// One line per completed dump: its last drill (or `never`).
fn history(completed: &[JobRecord], json: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if json {
        let rows: Vec<serde_json::Value> = completed
            .iter()
            .map(|j| serde_json::json!({"id": j.id, "lastDrill": j.last_drill}))
            .collect();
        writeln!(stdout, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let width = completed.iter().map(|j| j.id.len()).max().unwrap_or(2);
    for j in completed {
        let (outcome, at, problem) = match &j.last_drill {
            None => ("never", String::from("-"), String::new()),
            Some(d) => (
                if d.passed { "passed" } else { "failed" },
                d.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                d.problem.clone().unwrap_or_default(),
            ),
        };
        writeln!(stdout, "{:width$}  {outcome:6}  {at:20}  {problem}", j.id)?;
    }
    Ok(())
}
