//! `chunkdump dump DB…`: several databases into one store, each named after its database
//! (`<database>/dump_…`), a few at a time.
//!
//! Every database is dumped even when others fail: one stdout line per finished database
//! (`<id>\t<database>\t<path>`), a summary on stderr, and exit 1 if any failed. At most
//! `--parallel` dumps run at once, so memory grows with that, not with the number of
//! databases.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;

use crate::config::Config;
use crate::error::DumpError;
use crate::lifecycle::{create_dump_as, NewDump};
use crate::model::database_name;

use super::one_dump::{dump_spec, lock_run, print_warnings, run_to_end, source_database};
use super::progress_bar::Reporter;
use super::stores::{open_stores, Access, Stores};
use super::DumpArgs;

/// Whether `path` is a pattern for the command to expand (a shell leaves a quoted one, or
/// one that matched nothing, as it is): it has `*`, `?` or `[` and names no file.
pub(super) fn is_pattern(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.contains(['*', '?', '[']) && !path.exists()
}

/// One database to dump: its path as given, and its name or why it cannot be dumped.
struct Source {
    given: PathBuf,
    found: Result<(PathBuf, String), String>,
}

/// Dumps every database of `args` (see the module doc).
pub(super) async fn dump_many(args: DumpArgs, cfg: &Config) -> anyhow::Result<()> {
    if args.id.is_some() {
        return Err(DumpError::InvalidRequest(
            "--id names one dump: it cannot be given with several databases or --database-root"
                .into(),
        )
        .into());
    }
    let sources = name_sources(&expand(&args.databases)?, args.database_root.as_deref())?;
    let stores = open_stores(&args.location, Access::ReadWrite).await?;
    let total = sources.len();
    let outcomes: Vec<(String, Result<(), String>)> =
        futures_util::stream::iter(sources.into_iter().map(|source| {
            let (stores, args) = (&stores, &args);
            async move {
                let label = match &source.found {
                    Ok((_, name)) => name.clone(),
                    Err(_) => source.given.display().to_string(),
                };
                let result = match source.found {
                    Ok((path, name)) => dump_one(stores, args, cfg, &path, &name)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(message) => Err(message),
                };
                (label, result)
            }
        }))
        .buffer_unordered(args.parallel as usize)
        .collect()
        .await;
    let failed: Vec<_> = outcomes.iter().filter(|(_, r)| r.is_err()).collect();
    eprintln!(
        "{} of {total} databases dumped, {} failed",
        total - failed.len(),
        failed.len()
    );
    for (label, result) in &failed {
        if let Err(message) = result {
            eprintln!("failed: {label}: {message}");
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        let names: Vec<&str> = failed.iter().map(|(label, _)| label.as_str()).collect();
        anyhow::bail!(
            "{} of {total} databases failed: {}",
            failed.len(),
            names.join(", ")
        )
    }
}

/// Dumps one database as `<name>/dump_…` and prints its line.
async fn dump_one(
    stores: &Stores,
    args: &DumpArgs,
    cfg: &Config,
    database: &Path,
    name: &str,
) -> anyhow::Result<()> {
    let spec = dump_spec(args, database, cfg)?;
    let new = NewDump {
        database_name: Some(name.to_string()),
        custody: crate::lifecycle::KeyCustody::for_runner(
            cfg.signing_key.as_ref(),
            stores.runs_here,
        ),
        ..NewDump::default()
    };
    let job = create_dump_as(stores.progress.as_ref(), spec, new).await?;
    let _running = lock_run(&stores.lock_dir, &job.id)?;
    let reporter = Reporter::quiet(&job.id);
    let (job, path) = run_to_end(stores, &args.location, &job, &args.tuning, cfg, reporter).await?;
    print_warnings(&job, &format!("{name}: "));
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}\t{name}\t{path}", job.id)?;
    stdout.flush()?;
    super::one_dump::drill_outcome(&job, &format!("{name}: "))
}

/// The paths given, patterns expanded (sorted), each path once.
fn expand(given: &[PathBuf]) -> Result<Vec<PathBuf>, DumpError> {
    let mut paths = Vec::new();
    for path in given {
        if !is_pattern(path) {
            paths.push(path.clone());
            continue;
        }
        let pattern = path.to_string_lossy();
        let bad = |e: String| DumpError::InvalidRequest(format!("pattern {pattern}: {e}"));
        let mut matched: Vec<PathBuf> = glob::glob(&pattern)
            .map_err(|e| bad(e.to_string()))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        if matched.is_empty() {
            return Err(bad("matches no file".into()));
        }
        matched.sort();
        paths.extend(matched);
    }
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    Ok(paths)
}

/// Each database's canonical path and name: relative to `root` if given, else its file
/// name. A database that cannot be opened or is outside the root fails alone; two
/// databases with one name are refused before anything is dumped.
fn name_sources(paths: &[PathBuf], root: Option<&Path>) -> Result<Vec<Source>, DumpError> {
    let root = match root {
        Some(root) => Some(std::fs::canonicalize(root).map_err(|e| {
            DumpError::InvalidRequest(format!("--database-root {}: {e}", root.display()))
        })?),
        None => None,
    };
    let mut sources = Vec::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for given in paths {
        let found = (|| {
            let path = source_database(given).map_err(|e| e.to_string())?;
            let relative = match &root {
                Some(root) => path.strip_prefix(root).map_err(|_| {
                    format!(
                        "{} is not under --database-root {}",
                        path.display(),
                        root.display()
                    )
                })?,
                None => Path::new(path.file_name().unwrap_or_default()),
            };
            let name = database_name(relative).map_err(|e| e.message)?;
            Ok((path, name))
        })();
        if let Ok((path, name)) = &found {
            if let Some(other) = names.insert(name.clone(), path.clone()) {
                return Err(DumpError::InvalidRequest(format!(
                    "{} and {} would both be named {name}; give --database-root to name \
                     databases by their paths",
                    other.display(),
                    path.display()
                )));
            }
        }
        sources.push(Source {
            given: given.clone(),
            found,
        });
    }
    Ok(sources)
}
