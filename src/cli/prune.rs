//! `chunkdump prune`: applies a retention policy to the completed dumps in a store
//! (see [`crate::retention`]) and reports what it deleted.

use std::path::PathBuf;

use clap::Args;

use super::stores::{open_stores, Access};
use super::Location;
use crate::retention::{prune, PruneScope, RetentionPolicy};

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub location: Location,
    /// Keep the newest N completed dumps.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,
    /// Keep completed dumps younger than D days (fractions allowed).
    #[arg(long, value_name = "D")]
    pub keep_days: Option<f64>,
    /// Only dumps of this database (default: every database in the store).
    #[arg(long, value_name = "DB")]
    pub database: Option<PathBuf>,
    /// Only dumps started by this schedule (default: however they were started).
    #[arg(long, value_name = "NAME")]
    pub schedule: Option<String>,
    /// Print what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the prune and prints one line per deleted dump, then a summary.
pub async fn run(args: PruneArgs) -> anyhow::Result<()> {
    let policy = RetentionPolicy::from_rules(args.keep_last, args.keep_days, "--keep-days")
        .map_err(super::UsageError)?;
    let database = args.database.as_deref().map(super::database_filter);
    let access = if args.dry_run {
        Access::ReadOnly
    } else {
        Access::Existing
    };
    let stores = open_stores(&args.location, access).await?;
    let scope = PruneScope {
        database,
        schedule: args.schedule.clone(),
    };
    let report = prune(
        stores.objects.as_ref(),
        stores.progress.as_ref(),
        &policy,
        &scope,
        args.dry_run,
    )
    .await?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    if let Some(db) = &args.database {
        if report.deleted.is_empty() && report.kept == 0 {
            // A typo in a cron job must fail, not "succeed" forever with nothing to do.
            return Err(crate::error::DumpError::InvalidRequest(format!(
                "no completed dump of database {} here (give its file, or its name as dump printed it)",
                db.display()
            ))
            .into());
        }
    }
    for d in &report.deleted {
        let when = d.completed_at.map_or_else(
            || "-".to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        println!(
            "{verb} {} ({}, {} bytes, completed {when}, {})",
            d.dump_id,
            super::count(d.files, "file"),
            d.bytes,
            d.database
        );
    }
    println!(
        "{verb} {}, kept {}",
        super::count(report.deleted.len(), "completed dump"),
        report.kept
    );
    Ok(())
}
