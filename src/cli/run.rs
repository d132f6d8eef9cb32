//! Each command, run: dump, resume, status, verify, prune, setup, serve and schedule ticks.

use std::path::Path;

use crate::config::Config;
use crate::error::DumpError;
use crate::lifecycle::{create_dump_as, KeyCustody, NewDump};

use super::one_dump::*;
use super::stores::*;
use super::*;

pub(super) async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::from_env()?;
    // The longest statement a restore or verify of this process holds.
    crate::readback::set_max_statement(cfg.max_statement_bytes);
    // A process that runs a dump's statements (the guards of `readback::guard` bound
    // each value; this bounds what SQLite holds in all): see `bound_sqlite_heap`.
    if matches!(
        cli.command,
        Command::Verify(_) | Command::Restore(_) | Command::Drill(_)
    ) {
        crate::readback::bound_sqlite_heap();
    }
    match cli.command {
        Command::Dump(args) => dump(args, &cfg).await,
        Command::Resume(args) => resume(args, &cfg).await,
        Command::Status(args) => status(args).await,
        Command::Serve(args) => serve(args, cfg).await,
        Command::Verify(args) => super::verify::run(args).await,
        Command::Prune(args) => prune::run(args).await,
        Command::Restore(args) => restore::run(args).await,
        Command::Drill(args) => super::drill::run(args).await,
        Command::Rekey(args) => super::rekey::run(args).await,
        Command::List(args) => list::run(args).await,
        Command::Setup(args) => super::setup::run(args).await,
    }
}

/// `chunkdump dump`: a new dump of the database, run to its end (or of several, see
/// [`super::many`]).
async fn dump(args: DumpArgs, cfg: &Config) -> anyhow::Result<()> {
    if args.no_schema && !matches!(args.format, FormatArg::Sql) {
        return Err(super::UsageError(
            "--no-schema is for SQL dumps: a CSV, JSON or Parquet dump's schema file is what creates its tables on restore".into(),
        )
        .into());
    }
    if args.databases.len() > 1
        || args.database_root.is_some()
        || args.databases.iter().any(|p| super::many::is_pattern(p))
    {
        return super::many::dump_many(args, cfg).await;
    }
    let database = source_database(&args.databases[0])?;
    // A file that is no database is refused before the store is touched: a failed
    // command leaves no `--out/.chunkdump` behind.
    let path = database.display().to_string();
    tokio::task::spawn_blocking(move || crate::engine::open_database(&path).map(drop))
        .await
        .map_err(|e| DumpError::Internal(e.to_string()))??;
    let stores = open_stores(&args.location, Access::ReadWrite).await?;
    let spec = dump_spec(&args, &database, cfg)?;
    let new = NewDump {
        id: args.id.clone(),
        custody: KeyCustody::for_runner(cfg.signing_key.as_ref(), stores.runs_here),
        ..NewDump::default()
    };
    let job = create_dump_as(stores.progress.as_ref(), spec, new).await?;
    finish(&stores, &args.location, &job, &args.tuning, cfg).await
}

/// `chunkdump resume`: an unfinished dump, run on from its last committed chunk.
async fn resume(args: ResumeArgs, cfg: &Config) -> anyhow::Result<()> {
    let stores = open_stores(&args.location, Access::ReadWrite).await?;
    let job = stores.progress.require(&args.id).await?;
    // Files made from here on are at most as readable as the database (if it is
    // gone, the resumed chunk fails on it anyway).
    let _ = limit_new_files_to(Path::new(&job.spec.database));
    finish(&stores, &args.location, &job, &args.tuning, cfg).await
}

/// `chunkdump status`: a dump's status, as the API shows it.
async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let stores = open_stores(&args.location, Access::ReadOnly).await?;
    let job = stores.progress.require(&args.id).await?;
    let mut view = crate::views::StatusView::new(&job, chrono::Utc::now());
    if stores.is_interrupted(&job) {
        // Paused, or its runner is gone: say so, and how to go on, instead of
        // `processing` with an estimated completion that will not come.
        view = view.interrupted(resume_command(&job.id, &args.location));
    }
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(())
}

/// `chunkdump serve`: the HTTP API on a local socket, with the local runner (and schedule).
async fn serve(args: ServeArgs, cfg: Config) -> anyhow::Result<()> {
    let env = crate::config::Env::process();
    let secrets = crate::config::Secrets::read(&env);
    let tokens = crate::api::Tokens::from_secrets(&secrets)?;
    let database = match &args.db {
        Some(db) => Some(source_database(db)?.display().to_string()),
        None => None,
    };
    let database_root = match &args.database_root {
        Some(dir) => {
            // Its databases' permissions differ, and are not known yet: owner only.
            crate::local::permissions::limit_new_files_to_owner();
            Some(
                crate::local::DatabaseRoot::open(dir)
                    .map_err(|e| DumpError::InvalidRequest(format!("--database-root: {e}")))?,
            )
        }
        None => None,
    };
    let stores = open_stores(&args.location, Access::ReadWrite).await?;
    let mut cfg = cfg;
    cfg.snapshot_dir.get_or_insert(stores.snapshot_dir.clone());
    let schedule = match &args.schedule {
        Some(expr) => Some(schedule_of(expr, args.schedule_input.as_deref())?),
        None => None,
    };
    let opts = crate::serve::ServeOptions {
        database,
        database_root,
        listen: args.listen,
        config: cfg,
        api: crate::config::ApiConfig {
            part_size: args.part_size,
            ..crate::config::ApiConfig::read(&env)?
        },
        callbacks: crate::config::CallbackConfig::read(&env),
        callback_secret: secrets.callback_secret.clone(),
        listener: crate::config::ListenerConfig::read(&env)?,
        lock_dir: Some(stores.lock_dir.clone()),
        local_progress: stores.runs_here,
        schedule,
    };
    crate::serve::serve(
        stores.objects,
        stores.progress,
        stores.guard,
        stores.rates,
        tokens,
        opts,
    )
    .await
}

/// Parses `--schedule` and `--schedule-input` (errors name the flag).
pub(super) fn schedule_of(
    expr: &str,
    input: Option<&str>,
) -> Result<
    (
        crate::serve::scheduler::ScheduleExpr,
        crate::service::schedule::ScheduledStart,
    ),
    DumpError,
> {
    let expr = expr
        .parse()
        .map_err(|e| DumpError::InvalidRequest(format!("--schedule {e}")))?;
    let text = match input {
        Some(file) if file.starts_with('@') => std::fs::read_to_string(&file[1..])
            .map_err(|e| DumpError::InvalidRequest(format!("--schedule-input {file}: {e}")))?,
        Some(json) => json.to_string(),
        None => r#"{"name": "default", "request": {"format": "sql"}}"#.to_string(),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| DumpError::InvalidRequest(format!("--schedule-input: {e}")))?;
    // Accept the whole Lambda payload ({"chunkdumpSchedule": …}) or just its inside.
    let tick = crate::service::schedule::tick_from_payload(&value)
        .unwrap_or_else(|| serde_json::from_value(value).map_err(|e| e.to_string()))
        .map_err(|e| DumpError::InvalidRequest(format!("--schedule-input: {e}")))?;
    Ok((expr, tick))
}
