//! `chunkdump restore`: a completed dump back into a new SQLite database, proved equal
//! to the source as the manifest describes it.
//!
//! 1. Every file is streamed from its store in ranges ([`crate::readback::stream`]),
//!    decompressed and loaded as it arrives (bounded memory); its size and SHA-256 must
//!    equal the manifest's.
//! 2. Rows go in through prepared statements into a temporary file beside `--into`
//!    with bulk-load settings (`target`). A CSV or JSON dump's schema file runs in two
//!    parts around the rows: tables first; sequences, indexes, triggers and FTS rebuilds
//!    after them, as an SQL dump orders them.
//! 3. The restored file is read by the same engine that wrote the manifest and every
//!    table's row count and content hash compared (CSV: counts must match; a content
//!    hash that differs is a warning naming the table, as CSV carries no storage
//!    classes). Only then is it synced and renamed to `--into`.

mod insert;
mod load;
mod target;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use crate::engine::digest::TableDigest;
use crate::engine::plan::ROWS_MARKER;
use crate::error::DumpError;
use crate::manifest::Manifest;
use crate::model::{schema_key, Compression, DumpSpec, Format};
use crate::readback::stream::{stream_file, Fetched, FileSource, PieceReader, RangeSource};
use load::Loader;
use target::Target;

/// What to restore where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The database file to create.
    pub into: std::path::PathBuf,
    /// Replace `into` if it exists (only once the restore is verified).
    pub force: bool,
    /// Restore only these tables (their indexes and triggers with them).
    pub tables: Option<Vec<String>>,
}

/// What a restore did.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub dump_id: String,
    pub into: String,
    pub format: Format,
    pub tables: usize,
    pub rows: u64,
    /// Bytes read from the store (compressed, as stored).
    pub bytes: u64,
    pub seconds: f64,
    /// Tables that did not come back exactly (CSV), each naming its table.
    pub warnings: Vec<String>,
}

/// Restores the dump `manifest` describes, reading its files from `source`.
pub async fn restore(
    source: &dyn RangeSource,
    manifest: &Manifest,
    options: &RestoreOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<RestoreReport, DumpError> {
    let started = Instant::now();
    if manifest.spec.as_ref().is_some_and(|s| !s.include_schema) {
        return Err(DumpError::InvalidRequest(format!(
            "dump {} was made with --no-schema: it holds rows only, and a restore creates the tables from the dump; load it into a database that has them (sqlite3 DB < FILE), or dump again with the schema",
            manifest.dump_id
        )));
    }
    let selected = selected_tables(manifest, options)?;
    let target = Target::prepare(&options.into, options.force)?;
    let spool = target.spool.clone();
    let conn = target.open(manifest.source.page_size, manifest.source.auto_vacuum)?;
    let declared = crate::readback::declared::DeclaredSchema::of(manifest);
    let mut loader = Loader::new(conn, selected.clone(), declared).map_err(DumpError::Internal)?;
    loader.bound_by(manifest);
    let mut bytes = 0u64;
    let mut tick = |n: u64| {
        bytes += n;
        progress(bytes);
    };
    let failed = |key: &str, e: String| DumpError::InvalidRequest(format!("{key}: {e}"));
    let schema = (manifest.format != Format::Sql)
        .then(|| schema_key(&manifest.dump_id, manifest.format, manifest.encoding()));
    // The schema file first (tables before rows), whatever its place in the manifest.
    let mut after_rows = String::new();
    if let Some(key) = &schema {
        let (compression, longest) = (manifest.compression, manifest.longest_line);
        let keys = manifest.keys.clone();
        let (text, back) = fetch(source, manifest, key, &spool, &mut tick, loader, move |bytes, l| {
            // Held whole, so bounded like a statement (a decompression bomb stops here).
            let limit = crate::readback::max_statement() as u64;
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(decompress(bytes, compression, longest, &keys)?, limit + 1),
                &mut text,
            )
            .map_err(|e| e.to_string())?;
            if text.len() as u64 > limit {
                return Err(format!(
                    "the schema file is longer than {limit} bytes, the most a restore holds (CHUNKDUMP_MAX_STATEMENT_BYTES)"
                ));
            }
            Ok((text, l))
        })
        .await?;
        loader = back;
        let (before, after) = text
            .split_once(ROWS_MARKER)
            .ok_or_else(|| failed(key, "not a chunkdump schema file (no rows marker)".into()))?;
        loader.run(before).map_err(|e| failed(key, e))?;
        after_rows = after.to_string();
    }
    let row_tables: HashSet<String> = manifest.tables.iter().map(|t| t.table.clone()).collect();
    for file in manifest
        .files
        .iter()
        .filter(|f| Some(&f.key) != schema.as_ref())
    {
        let (format, compression) = (manifest.format, manifest.compression);
        let longest = manifest.longest_line;
        let keys = manifest.keys.clone();
        let file_table = manifest.table_of(&file.key);
        let census = file_table
            .as_ref()
            .and_then(|t| manifest.tables.iter().find(|d| &d.table == t))
            .map(|d| d.census.clone())
            .unwrap_or_default();
        if format.is_directory() && file_table.is_none() {
            return Err(failed(
                &file.key,
                "no table of the manifest is stored under this name".into(),
            ));
        }
        let tables = row_tables.clone();
        let spool_dir = spool.parent().map(Path::to_path_buf);
        let declared_size = file.size;
        let ((), back) = fetch(
            source,
            manifest,
            &file.key,
            &spool,
            &mut tick,
            loader,
            move |bytes, mut l| {
                if format == Format::Parquet {
                    let reader = decompress(bytes, compression, None, &keys)?;
                    let table = file_table.as_deref().unwrap_or_default();
                    l.load_parquet(reader, table, declared_size, spool_dir.as_deref())?;
                    return Ok(((), l));
                }
                let reader = decompress(bytes, compression, longest, &keys)?;
                match format {
                    Format::Sql => l.load_sql(reader, tables)?,
                    Format::Json => l.load_json(reader)?,
                    Format::Csv => {
                        l.load_csv(reader, file_table.as_deref().unwrap_or_default(), &census)?
                    }
                    Format::Parquet => unreachable!("read above"),
                }
                Ok(((), l))
            },
        )
        .await?;
        loader = back;
    }
    if let Some(key) = &schema {
        loader.run(&after_rows).map_err(|e| failed(key, e))?;
    }
    loader
        .check_schema()
        .map_err(|e| DumpError::InvalidRequest(format!("dump {}: {e}", manifest.dump_id)))?;
    let rows = loader.rows;
    let conn = loader.finish();
    if let Some(keep) = &selected {
        drop_unselected(&conn, manifest, keep)?;
    }
    let wanted: Vec<&TableDigest> = manifest
        .tables
        .iter()
        .filter(|t| selected.as_ref().is_none_or(|s| s.contains(&t.table)))
        .collect();
    // What the dump could not keep exactly (each names its table) is what the restored
    // database lacks too: said again, not left in the manifest.
    let mut warnings = manifest.warnings.clone();
    if manifest.format == Format::Csv {
        let names: Vec<String> = wanted.iter().map(|t| t.table.clone()).collect();
        warnings.extend(insert::csv_rowid_warnings(&conn, &names).map_err(DumpError::Internal)?);
    }
    conn.close()
        .map_err(|(_, e)| DumpError::from_sqlite(&target.temp.display().to_string(), e))?;
    crate::alloc::release_freed_memory();
    let mut report = RestoreReport {
        dump_id: manifest.dump_id.clone(),
        into: options.into.display().to_string(),
        format: manifest.format,
        tables: 0,
        rows,
        bytes,
        seconds: 0.0,
        warnings,
    };
    report.tables = wanted.len();
    compare_restored(manifest, &target.temp, &wanted, &mut report.warnings).await?;
    let mut seen = HashSet::new();
    report.warnings.retain(|w| seen.insert(w.clone()));
    target.commit()?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The tables `--tables` names, each checked against the manifest.
fn selected_tables(
    manifest: &Manifest,
    options: &RestoreOptions,
) -> Result<Option<HashSet<String>>, DumpError> {
    let Some(names) = &options.tables else {
        return Ok(None);
    };
    for name in names {
        if !manifest.tables.iter().any(|t| &t.table == name) {
            return Err(DumpError::InvalidRequest(format!(
                "table {name:?} is not in dump {}",
                manifest.dump_id
            )));
        }
    }
    Ok(Some(names.iter().cloned().collect()))
}

/// Streams file `key` of the dump to `load` (on a blocking thread, with the loader),
/// once its size and SHA-256 are known to match the manifest: no byte of a file reaches
/// SQLite before that. A local file is hashed where it is first (one more read at disk
/// speed); a remote one is copied into the private `spool` file while it is hashed, and
/// loaded from there (no second download; disk for one file at a time).
async fn fetch<T: Send + 'static>(
    source: &dyn RangeSource,
    manifest: &Manifest,
    key: &str,
    spool: &Path,
    tick: &mut (dyn FnMut(u64) + Send),
    loader: Loader,
    load: impl FnOnce(PieceReader, Loader) -> Result<(T, Loader), String> + Send + 'static,
) -> Result<(T, Loader), DumpError> {
    let failed = |e: String| DumpError::InvalidRequest(format!("{key}: {e}"));
    let entry = manifest
        .files
        .iter()
        .find(|f| f.key == key)
        .ok_or_else(|| failed("not listed in the manifest; the dump has no schema file (dumped before format 2, or with --no-schema)".into()))?;
    let spooled = FileSource(spool.to_path_buf());
    let (checked, mut load_tick): (&dyn RangeSource, Box<dyn FnMut(u64) + Send + '_>) = if source
        .is_local()
    {
        let copied = stream_file(
            source,
            key,
            manifest.digesting(),
            &mut |_| {},
            |mut bytes| std::io::copy(&mut bytes, &mut std::io::sink()).map_err(|e| e.to_string()),
        )
        .await?;
        matches_entry(copied, entry).map_err(failed)?;
        (source, Box::new(&mut *tick))
    } else {
        let target = spool.to_path_buf();
        let copied = stream_file(source, key, manifest.digesting(), tick, move |mut bytes| {
            // A new file, never one already there: a symlink planted at the spool's name
            // (in a directory others may write) would otherwise have the remote bytes
            // written through it. A spool a killed restore left is ours to replace.
            match std::fs::remove_file(&target) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.to_string()),
                _ => {}
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&target).map_err(|e| e.to_string())?;
            std::io::copy(&mut bytes, &mut file).map_err(|e| e.to_string())
        })
        .await?;
        matches_entry(copied, entry).map_err(failed)?;
        (&spooled, Box::new(|_| {}))
    };
    let streamed = stream_file(
        checked,
        key,
        manifest.digesting(),
        &mut *load_tick,
        move |bytes| load(bytes, loader),
    )
    .await;
    let _ = std::fs::remove_file(spool);
    let streamed = streamed?;
    let Some((fetched, loaded)) = streamed else {
        return Err(failed("missing from the store".into()));
    };
    let loaded = loaded.map_err(|e| failed(format!("does not load: {e}")))?;
    // The bytes loaded are the bytes checked (a local file could change in between).
    matches_entry(Some((fetched, Ok(0))), entry).map_err(failed)?;
    Ok(loaded)
}

/// Whether a file streamed whole (`None`: it does not exist) has the manifest's size
/// and SHA-256; else what differs.
fn matches_entry(
    streamed: Option<(Fetched, Result<u64, String>)>,
    entry: &crate::model::FileEntry,
) -> Result<(), String> {
    let Some((fetched, read)) = streamed else {
        return Err("missing from the store".into());
    };
    read.map_err(|e| format!("cannot be read: {e}"))?;
    if fetched.size != entry.size {
        return Err(format!(
            "{} bytes stored, the manifest says {}",
            fetched.size, entry.size
        ));
    }
    if Some(&fetched.sha256) != entry.sha256.as_ref() {
        return Err(format!(
            "SHA-256 {} differs from the manifest's {}",
            fetched.sha256,
            entry.sha256.as_deref().unwrap_or("(none)")
        ));
    }
    Ok(())
}

fn decompress(
    bytes: PieceReader,
    compression: Compression,
    longest_line: Option<u64>,
    keys: &crate::manifest::OpenedWith,
) -> Result<Box<dyn std::io::BufRead>, String> {
    crate::readback::decompress(bytes, compression, longest_line, keys).map_err(|e| e.to_string())
}

/// Drops the tables `--tables` left out (their indexes and triggers go with them; so do
/// views, which may read them).
fn drop_unselected(
    conn: &rusqlite::Connection,
    manifest: &Manifest,
    keep: &HashSet<String>,
) -> Result<(), DumpError> {
    let err = |e: rusqlite::Error| DumpError::Internal(format!("dropping left-out tables: {e}"));
    let views: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'view'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(err)?;
    for view in views {
        conn.execute_batch(&format!("DROP VIEW {};", crate::engine::quote_ident(&view)))
            .map_err(err)?;
    }
    for table in manifest.tables.iter().filter(|t| !keep.contains(&t.table)) {
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {};",
            crate::engine::quote_ident(&table.table)
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Where a CSV table's census says CSV could not keep its values (one line per column,
/// named by `names`, the table's dumped columns in census order, as the dump named it).
fn csv_lossy(table: &TableDigest, names: &[String]) -> Vec<String> {
    table
        .census
        .iter()
        .enumerate()
        .filter_map(|(i, &c)| crate::engine::census::lossy(c).map(|why| (i, why)))
        .map(|(i, why)| {
            let name = names
                .get(i)
                .map_or_else(|| format!("#{}", i + 1), |n| format!("{n:?}"));
            format!(
                "table {:?}, column {name}: restored as CSV carries it, not exactly ({why}); dump it as SQL or JSON for an exact copy",
                table.table,
            )
        })
        .collect()
}

/// The columns a dump of `spec` reads from `table`, in order (its CSV header's).
fn dumped_columns(spec: &DumpSpec, table: &str) -> Vec<String> {
    let plan = crate::engine::open_database(&spec.database)
        .and_then(|conn| crate::engine::plan::build_plan(&conn, spec, "restore"));
    let Ok(plan) = plan else {
        return Vec::new();
    };
    plan.objects
        .iter()
        .flat_map(|o| &o.steps)
        .find_map(|s| match s {
            crate::engine::plan::Step::Rows(t) if t.name == table => Some(t.column_names.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The shadow tables of the database at `path` (`PRAGMA table_list` says which), each
/// with the virtual table it belongs to (the longest virtual table name it extends with
/// `_`, as FTS names its shadows `<table>_<suffix>`).
fn shadow_owners(path: &Path) -> Result<HashMap<String, String>, DumpError> {
    let db = |e| DumpError::from_sqlite(&path.display().to_string(), e);
    let conn = crate::engine::open_database(&path.display().to_string())?;
    let mut stmt = conn
        .prepare("SELECT name, type FROM pragma_table_list WHERE schema = 'main' AND type IN ('shadow', 'virtual')")
        .map_err(db)?;
    let listed = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    let virtuals: Vec<&str> = listed
        .iter()
        .filter(|(_, kind)| kind == "virtual")
        .map(|(name, _)| name.as_str())
        .collect();
    Ok(listed
        .iter()
        .filter(|(_, kind)| kind == "shadow")
        .filter_map(|(shadow, _)| {
            let owner = virtuals
                .iter()
                .filter(|v| shadow.len() > v.len() + 1 && shadow.starts_with(&format!("{v}_")))
                .max_by_key(|v| v.len())?;
            Some((shadow.clone(), owner.to_string()))
        })
        .collect())
}

/// Reads the restored database as the dump read its source and compares every table's
/// row count and content hash with the manifest's.
async fn compare_restored(
    manifest: &Manifest,
    restored: &Path,
    wanted: &[&TableDigest],
    warnings: &mut Vec<String>,
) -> Result<(), DumpError> {
    let spec = DumpSpec {
        database: restored.display().to_string(),
        tables: Some(wanted.iter().map(|t| t.table.clone()).collect()),
        ..manifest
            .spec
            .clone()
            .unwrap_or_else(|| crate::readback::spec_of(manifest))
    };
    let read_spec = spec.clone();
    let found = tokio::task::spawn_blocking(move || {
        let mut spec = spec;
        // A virtual table's shadow tables (a contentless FTS table's index) are dumped
        // with it, not asked for by name: asking for the virtual table reads them.
        let owners = shadow_owners(std::path::Path::new(&spec.database))?;
        if let Some(tables) = &mut spec.tables {
            for t in tables.iter_mut() {
                if let Some(owner) = owners.get(t) {
                    t.clone_from(owner);
                }
            }
            tables.sort();
            tables.dedup();
        }
        crate::readback::digests_of(&spec)
    })
    .await
    .map_err(|e| DumpError::Internal(e.to_string()))??;
    for want in wanted {
        let problem = match found.iter().find(|t| t.table == want.table) {
            None => Some(format!(
                "table {:?}: in the manifest, not in the restored database",
                want.table
            )),
            Some(got) if got.rows != want.rows => Some(format!(
                "table {:?}: {} rows restored, the manifest says {}",
                want.table, got.rows, want.rows
            )),
            // The dump warned about these columns; the restore says it again.
            Some(got)
                if got.content_hash != want.content_hash && !csv_lossy(want, &[]).is_empty() =>
            {
                let spec = read_spec.clone();
                let table = want.table.clone();
                let names = tokio::task::spawn_blocking(move || dumped_columns(&spec, &table))
                    .await
                    .unwrap_or_default();
                warnings.extend(csv_lossy(want, &names));
                None
            }
            Some(got) if got.content_hash != want.content_hash => Some(format!(
                "table {:?}: content hash {} restored, the manifest says {}",
                want.table, got.content_hash, want.content_hash
            )),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            return Err(DumpError::InvalidRequest(format!(
                "the restore does not match the manifest: {problem}; nothing was written to --into"
            )));
        }
    }
    Ok(())
}
