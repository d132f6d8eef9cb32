//! Running one dump to its end from the command line: its spec from `dump`'s options,
//! its run lock, the in-process runner, and what is printed when it ends. Shared by
//! `dump`, `resume` and the several-database dump ([`super::many`]).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::chunk::ChunkOptions;
use crate::config::Config;
use crate::error::DumpError;
use crate::model::{Compression, DumpSpec, Format, JobRecord, JobStatus};
use crate::runner::LocalRunner;
use crate::tasks::Tasks;

use super::progress_bar::Reporter;
use super::stores::*;
use super::*;

pub(super) fn chunk_options(
    t: &Tuning,
    cfg: &Config,
    reporter: &Reporter,
    stores: &Stores,
) -> (ChunkOptions, Duration) {
    let mut opts = ChunkOptions::from_config(cfg);
    if let Some(ms) = t.budget_ms {
        opts.budget = Duration::from_millis(ms);
    }
    opts.slice_rows = t.slice_rows;
    opts.progress = Some(reporter.hook());
    opts.snapshot_dir = Some(
        cfg.snapshot_dir
            .clone()
            .unwrap_or_else(|| stores.snapshot_dir.clone()),
    );
    if let Some(n) = t.upload_concurrency {
        opts.upload_concurrency = n as usize;
    }
    (
        opts,
        t.breathe_ms.map_or(cfg.breathing, Duration::from_millis),
    )
}

/// The database a command dumps, as an absolute path; files made from here on are at most
/// as readable as it is.
pub(super) fn source_database(path: &Path) -> Result<std::path::PathBuf, DumpError> {
    let database = std::fs::canonicalize(path).map_err(|e| DumpError::Database {
        path: path.display().to_string(),
        message: format!("cannot open: {e}"),
    })?;
    limit_new_files_to(&database)?;
    Ok(database)
}

/// Narrows the umask to `database`'s permission bits (see [`crate::local::permissions`]).
pub(super) fn limit_new_files_to(database: &Path) -> Result<(), DumpError> {
    crate::local::permissions::limit_new_files_to(database).map_err(|e| DumpError::Database {
        path: database.display().to_string(),
        message: format!("cannot read its permissions: {e}"),
    })
}

/// What `dump`'s options ask of a dump of `database`.
pub(super) fn dump_spec(
    args: &DumpArgs,
    database: &Path,
    cfg: &Config,
) -> Result<DumpSpec, super::UsageError> {
    // A command's own recipients replace the configured ones (`CHUNKDUMP_RECIPIENTS`).
    let mut recipients = args.recipients.keys()?;
    if recipients.is_empty() {
        recipients.clone_from(&cfg.recipients);
    }
    let format = match args.format {
        FormatArg::Sql => Format::Sql,
        FormatArg::Csv => Format::Csv,
        FormatArg::Json => Format::Json,
        FormatArg::Parquet => Format::Parquet,
    };
    Ok(DumpSpec {
        database: database.display().to_string(),
        format,
        compression: match args.compression {
            None => Compression::default_for(format),
            Some(CompressionArg::None) => Compression::None,
            Some(CompressionArg::Gzip) => Compression::Gzip,
            Some(CompressionArg::Zstd) => Compression::Zstd,
        },
        tables: args.tables.clone(),
        include_schema: !args.no_schema,
        slice_rows: args.tuning.slice_rows.unwrap_or(cfg.slice_rows),
        part_size: args.part_size,
        snapshot: args.snapshot || cfg.snapshot,
        snapshot_max_block_ms: Some(args.snapshot_max_block_ms),
        frame_size: args.frame_size,
        shown_as: None,
        drill: args.drill,
        recipients,
    })
}

/// Takes the dump's run lock: one process at a time may run a dump. (Two runners of one
/// gzip dump could otherwise overwrite each other's committed parts with differently cut
/// gzip members.) The OS releases the lock when the process dies, even by SIGKILL, so a
/// killed dump can be resumed at once.
pub(super) fn lock_run(dir: &Path, id: &str) -> anyhow::Result<crate::local::run_lock::HeldLock> {
    match crate::local::run_lock::try_lock_run(dir, id)? {
        crate::local::run_lock::RunLock::Taken(held) => Ok(held),
        crate::local::run_lock::RunLock::Held => Err(DumpError::WrongState {
            id: id.into(),
            status: JobStatus::Processing,
            message: "another process is running this dump".into(),
        }
        .into()),
    }
}

/// Prints the id, runs the dump to completion, prints the path.
pub(super) async fn finish(
    stores: &Stores,
    location: &Location,
    job: &JobRecord,
    tuning: &Tuning,
    cfg: &Config,
) -> anyhow::Result<()> {
    let _running = lock_run(&stores.lock_dir, &job.id)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", job.id)?;
    stdout.flush()?;
    let (job, path) =
        run_to_end(stores, location, job, tuning, cfg, Reporter::new(&job.id)).await?;
    print_warnings(&job, "");
    writeln!(stdout, "{path}")?;
    drill_outcome(&job, "")
}

/// With `--drill`: says how the dump's drill went (on stderr, after `label`); an error
/// if it failed, naming its first problem and the report.
pub(super) fn drill_outcome(job: &JobRecord, label: &str) -> anyhow::Result<()> {
    let Some(drill) = job.last_drill.as_ref().filter(|_| job.spec.drill) else {
        return Ok(());
    };
    let report = crate::drill::report_key(&job.id);
    match drill.outcome() {
        "passed" => eprintln!("{label}drill passed (report: {report})"),
        "skipped" => eprintln!(
            "warning: {label}drill skipped: {}",
            drill.problem.as_deref().unwrap_or_default()
        ),
        _ => anyhow::bail!(
            "{label}the dump completed, but its drill failed: {} (report: {report})",
            drill.problem.as_deref().unwrap_or_default()
        ),
    }
    Ok(())
}

/// Runs dump `job` (its run lock already taken) to its end; returns its last record and
/// where its output is.
pub(super) async fn run_to_end(
    stores: &Stores,
    location: &Location,
    job: &JobRecord,
    tuning: &Tuning,
    cfg: &Config,
    reporter: Reporter,
) -> anyhow::Result<(JobRecord, String)> {
    let job = if job.status == JobStatus::Completed {
        crate::lifecycle::tidy_completed(stores.objects.as_ref(), job).await;
        job.clone()
    } else {
        let (opts, breathe) = chunk_options(tuning, cfg, &reporter, stores);
        let tasks = Tasks {
            chunk: opts,
            breathe,
            ..Tasks::from_config(stores.objects.clone(), stores.progress.clone(), None, cfg)
        };
        // The same state machine definition as in AWS, interpreted in-process.
        if job.status == JobStatus::Interrupted {
            crate::lifecycle::resume_dump(stores.progress.as_ref(), &job.id).await?;
        }
        let runner = LocalRunner::new(tasks)?;
        let result = tokio::select! {
            result = runner.run_to_end(&job.id) => result,
            // Ctrl-C: what is committed stays (as after any kill); say so, and how to go
            // on, instead of ending without a word.
            _ = tokio::signal::ctrl_c() => {
                reporter.done();
                eprintln!(
                    "interrupted: dump {} stopped by Ctrl-C; its committed chunks are kept\nresume it with: {}",
                    job.id,
                    resume_command(&job.id, location)
                );
                // At once, as SIGINT would (a chunk's export thread is not waited for):
                // the run lock goes with the process.
                std::process::exit(130);
            }
        };
        reporter.done();
        match result {
            // Paused by a fault outside the data: say how to go on.
            Err(DumpError::Interrupted { id, message }) => {
                let resume = resume_command(&id, location);
                return Err(DumpError::Interrupted {
                    id,
                    message: format!("{message}\nresume it with: {resume}"),
                }
                .into());
            }
            other => other?,
        }
    };
    let path = stores.objects.locate(&job.output_name());
    if job.spec.format == crate::model::Format::Csv && job.files.is_empty() && !path.contains("://")
    {
        // A database without tables gives an empty CSV directory; the printed path exists.
        std::fs::create_dir_all(&path)?;
    }
    Ok((job, path))
}

/// Prints a finished dump's warnings on stderr, each after `label` (a database's name
/// and `: ` when several are dumped).
pub(super) fn print_warnings(job: &JobRecord, label: &str) {
    for w in &job.warnings {
        eprintln!("warning: {label}{w}");
    }
    if job.consistency.changed_during_dump {
        eprintln!("warning: {label}the database changed while this live dump ran, so it is not a point-in-time copy; use --snapshot for one");
    }
}
