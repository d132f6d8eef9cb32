//! `chunkdump verify`: re-reads a completed dump from its store and checks it against its
//! manifest, in bounded memory.
//!
//! 1. Every file is streamed back in part-size ranges ([`crate::readback::stream`]): its
//!    size and its SHA-256 of part digests must match the manifest (a flipped byte, a
//!    truncated or missing file fail).
//! 2. While it streams, its content is parsed and every table's row count and content
//!    hash recomputed ([`crate::readback`]):
//!    * SQL: every row statement's values parsed as SQLite reads them, every other
//!      statement run in a scratch database;
//!    * JSON: parsed strictly row by row (one row object per line) into typed values;
//!    * CSV: parsed strictly (RFC 4180); CSV carries no types, so only row counts are
//!      compared.
//! 3. With `against`, the same table digests are computed from a database (a snapshot
//!    copy, or a source nobody wrote since) and compared too.

// The Lambda functions use only the manifest signature check of this module.
#![cfg_attr(not(feature = "cli"), allow(dead_code, unused_imports))]

use std::collections::HashSet;
use std::path::Path;

use crate::encryption::Identities;
use crate::engine::digest::TableDigest;
use crate::error::DumpError;
use crate::manifest::{manifest_key, Manifest};
use crate::model::{schema_key, Compression, DumpSpec, Format, JobRecord};
use crate::ports::ObjectReader;
use crate::readback::stream::{stream_file, DirSource, PieceReader, RangeSource, StoreSource};
use std::sync::Arc;

/// What verify found: empty when the dump matches its manifest.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub files: usize,
    pub tables: usize,
    /// What is known of the manifest's signature.
    pub signature: Signature,
    /// How many of `problems` (the last ones) are the `--against` database's: it differs
    /// from the manifest, whatever the dump does.
    pub against_problems: usize,
}

/// A manifest's signature, as a read found it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// Checked with the signing key, and right.
    Checked,
    /// There is one, but no key to check it with.
    NotChecked,
    /// There is none (and no key asks for one).
    #[default]
    Unsigned,
}

/// Checks manifest bytes `raw` (at `what`) against its signature object `signature`:
/// with a key, a missing or wrong signature is an error naming which; without one, the
/// answer says whether there is a signature at all.
pub fn check_manifest_signature(
    what: &str,
    raw: &[u8],
    signature: Option<&[u8]>,
    key: Option<&crate::config::SigningKey>,
) -> Result<Signature, DumpError> {
    match key {
        Some(key) => crate::manifest::check_signature(key, raw, signature)
            .map(|()| Signature::Checked)
            .map_err(|e| DumpError::InvalidRequest(format!("manifest {what} {e}; refused"))),
        None if signature.is_some() => Ok(Signature::NotChecked),
        None => Ok(Signature::Unsigned),
    }
}

/// What a verify checks, and with which keys.
#[derive(Default)]
pub struct VerifyOptions<'a> {
    /// Also compare the tables with this database.
    pub against: Option<&'a Path>,
    /// The key the manifest's signature is checked with.
    pub signing: Option<&'a crate::config::SigningKey>,
    /// What opens an encrypted dump.
    pub keys: Option<&'a Arc<Identities>>,
    /// Only the files' sizes and digests (what the manifest shows without an identity),
    /// not their contents.
    pub files_only: bool,
}

/// Verifies the completed dump `job` in its store.
pub async fn verify(
    objects: &dyn ObjectReader,
    job: &JobRecord,
    opts: &VerifyOptions<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, DumpError> {
    let VerifyOptions {
        against,
        signing,
        keys,
        ..
    } = *opts;
    let key = manifest_key(&job.id, job.spec.format);
    let raw = objects.get(&key).await?.ok_or_else(|| {
        DumpError::InvalidRequest(format!(
            "dump {} has no manifest ({key}); is it completed?",
            job.id
        ))
    })?;
    let sig = objects.get(&crate::manifest::signature_key(&key)).await?;
    let signature = check_manifest_signature(&key, &raw, sig.as_deref(), signing)?;
    if opts.files_only {
        let files = crate::manifest::clear_files(&key, &raw)?;
        let mut report = check_files(&StoreSource::new(objects), &files, progress).await?;
        report.signature = signature;
        return Ok(report);
    }
    let manifest = crate::manifest::parse(&key, &raw, keys)?;
    let mut report = check(
        &StoreSource::new(objects),
        &manifest,
        &job.spec,
        against,
        progress,
    )
    .await?;
    report.signature = signature;
    if manifest.dump_id != job.id || manifest.files.len() != job.files.len() {
        report.problems.insert(
            0,
            format!(
                "the manifest does not describe dump {} ({} files listed, the job has {})",
                job.id,
                manifest.files.len(),
                job.files.len()
            ),
        );
    }
    Ok(report)
}

/// Verifies a dump copied to a local directory, from its manifest file alone (no
/// progress store): the files are looked up beside it as the manifest names them.
pub async fn verify_manifest_file(
    path: &Path,
    opts: &VerifyOptions<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, DumpError> {
    let VerifyOptions {
        against,
        signing,
        keys,
        ..
    } = *opts;
    let raw = std::fs::read(path)
        .map_err(|e| DumpError::InvalidRequest(format!("{}: {e}", path.display())))?;
    let mut sig_path = path.as_os_str().to_owned();
    sig_path.push(".sig");
    let sig = std::fs::read(sig_path).ok();
    let signature =
        check_manifest_signature(&path.display().to_string(), &raw, sig.as_deref(), signing)?;
    if opts.files_only {
        let files = crate::manifest::clear_files(&path.display().to_string(), &raw)?;
        // The files are found where the manifest's own key says the store starts (a CSV
        // dump's manifest is `<id>/manifest.json`).
        let format = if path.ends_with("manifest.json") {
            Format::Csv
        } else {
            Format::Sql
        };
        let root = crate::manifest::store_root(&manifest_key(&files.dump_id, format), path);
        let mut report = check_files(&DirSource(root), &files, progress).await?;
        report.signature = signature;
        return Ok(report);
    }
    let manifest = crate::manifest::parse(&path.display().to_string(), &raw, keys)?;
    let root = manifest.store_root_of(path);
    let spec = manifest
        .spec
        .clone()
        .unwrap_or_else(|| crate::readback::spec_of(&manifest));
    let mut report = check(&DirSource(root), &manifest, &spec, against, progress).await?;
    report.signature = signature;
    Ok(report)
}

/// Checks that every file the manifest lists is there with its size and digest (no
/// parsing, no identity).
async fn check_files(
    source: &dyn RangeSource,
    files: &crate::manifest::ClearFiles,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, DumpError> {
    let mut report = Report::default();
    let mut read = 0u64;
    for file in &files.files {
        report.files += 1;
        let streamed = stream_file(
            source,
            &file.key,
            (files.part_size, files.skip),
            &mut |n| {
                read += n;
                progress(read)
            },
            |mut bytes| std::io::copy(&mut bytes, &mut std::io::sink()).map(drop),
        )
        .await?;
        match streamed {
            None => report
                .problems
                .push(format!("{}: missing from the store", file.key)),
            Some((fetched, _)) => {
                compare_fetched(&mut report.problems, file, &fetched);
            }
        }
    }
    Ok(report)
}

/// Whether `fetched` has the size and digest `file` says; a problem for each that differs.
fn compare_fetched(
    problems: &mut Vec<String>,
    file: &crate::model::FileEntry,
    fetched: &crate::readback::stream::Fetched,
) -> bool {
    let mut intact = true;
    if fetched.size != file.size {
        intact = false;
        problems.push(format!(
            "{}: {} bytes stored, the manifest says {}",
            file.key, fetched.size, file.size
        ));
    }
    if Some(&fetched.sha256) != file.sha256.as_ref() {
        intact = false;
        problems.push(format!(
            "{}: SHA-256 {} differs from the manifest's {}",
            file.key,
            fetched.sha256,
            file.sha256.as_deref().unwrap_or("(none)")
        ));
    }
    intact
}

async fn check(
    source: &dyn RangeSource,
    manifest: &Manifest,
    spec: &DumpSpec,
    against: Option<&Path>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, DumpError> {
    // The database's digests are read beside the files (another core), not after them.
    let against_digests = against.map(|db| {
        let spec = DumpSpec {
            database: db.display().to_string(),
            ..spec.clone()
        };
        tokio::task::spawn_blocking(move || crate::readback::digests_of(&spec))
    });
    let mut report = Report::default();
    let mut parsed: Vec<TableDigest> = Vec::new();
    let mut unreadable = false;
    let mut read = 0u64;
    let tables: HashSet<String> = manifest.tables.iter().map(|t| t.table.clone()).collect();
    for file in &manifest.files {
        report.files += 1;
        let is_schema = file.key
            == schema_key(&manifest.dump_id, manifest.format, manifest.encoding())
            && manifest.format != Format::Sql;
        let reader = FileReader {
            // A CSV or JSON dump's schema file is SQL without rows.
            format: if is_schema {
                Format::Sql
            } else {
                manifest.format
            },
            compression: manifest.compression,
            keys: manifest.keys.clone(),
            longest_line: manifest.longest_line,
            tables: tables.clone(),
            with_schema: spec.include_schema,
            table: manifest.table_of(&file.key),
            size: file.size,
            declared: (is_schema || manifest.format == Format::Sql)
                .then(|| crate::readback::declared::DeclaredSchema::of(manifest))
                .flatten(),
        };
        let reader = if is_schema {
            FileReader {
                tables: HashSet::new(),
                with_schema: true,
                ..reader
            }
        } else {
            reader
        };
        let streamed = stream_file(
            source,
            &file.key,
            manifest.digesting(),
            &mut |n| {
                read += n;
                progress(read)
            },
            move |bytes| reader.digests(bytes),
        )
        .await?;
        let Some((fetched, result)) = streamed else {
            report
                .problems
                .push(format!("{}: missing from the store", file.key));
            continue;
        };
        let intact = compare_fetched(&mut report.problems, file, &fetched);
        // What only SQLite can check runs once the bytes are known to be the manifest's:
        // a changed file's statements never reach it (its tables go unread, the change
        // reported above).
        if !intact {
            unreadable = true;
            if let Err(e) = result {
                report
                    .problems
                    .push(format!("{}: does not parse: {e}", file.key));
            }
            continue;
        }
        let result = match result {
            Ok(file) => tokio::task::spawn_blocking(move || file.finish())
                .await
                .map_err(|e| DumpError::Internal(e.to_string()))?,
            Err(e) => Err(e),
        };
        match result {
            Ok(tables) => parsed.extend(tables),
            Err(e) => {
                unreadable = true;
                report
                    .problems
                    .push(format!("{}: does not parse: {e}", file.key))
            }
        }
    }
    report.tables = manifest.tables.len();
    // A Parquet table's rows are in several files.
    let parsed = crate::engine::digest::merge_by_table(parsed);
    // A file that does not parse says what is wrong; its tables, unread, would only
    // repeat it once per table.
    if !unreadable {
        compare(
            &mut report.problems,
            "the dump",
            &manifest.tables,
            &parsed,
            manifest.format == Format::Csv,
        );
    }
    if let (Some(db), Some(digests)) = (against, against_digests) {
        let tables = digests
            .await
            .map_err(|e| DumpError::Internal(e.to_string()))??;
        let before = report.problems.len();
        compare(
            &mut report.problems,
            &format!("database {}", db.display()),
            &manifest.tables,
            &tables,
            false,
        );
        report.against_problems = report.problems.len() - before;
    }
    Ok(report)
}

/// How one file of a dump is parsed back into table digests.
struct FileReader {
    format: Format,
    compression: Compression,
    /// The identities an encrypted dump's files are decrypted with.
    keys: crate::manifest::OpenedWith,
    /// The longest line the manifest declares.
    longest_line: Option<u64>,
    /// The manifest's tables (the SQL statements that are their rows).
    tables: HashSet<String>,
    with_schema: bool,
    /// The table a CSV or Parquet file holds.
    table: Option<String>,
    /// The file's size in the manifest (a Parquet file is copied to read it: no more).
    size: u64,
    /// The schema the manifest lists, for the file of SQL statements.
    declared: Option<crate::readback::declared::DeclaredSchema>,
}

/// A file parsed: its digests, or an SQL file's with what only SQLite checks still held.
enum ParsedFile {
    Digests(Vec<TableDigest>),
    Sql(crate::readback::sql::PendingSql),
}

impl ParsedFile {
    /// The file's digests, running what was held (call only once its bytes matched).
    fn finish(self) -> Result<Vec<TableDigest>, String> {
        match self {
            ParsedFile::Digests(digests) => Ok(digests),
            ParsedFile::Sql(pending) => pending.finish(),
        }
    }
}

impl FileReader {
    fn digests(self, bytes: PieceReader) -> Result<ParsedFile, String> {
        // Parquet is binary, read from a bounded copy: lines mean nothing in it.
        let longest = (self.format != Format::Parquet)
            .then_some(self.longest_line)
            .flatten();
        let reader = crate::readback::decompress(bytes, self.compression, longest, &self.keys)
            .map_err(|e| e.to_string())?;
        match self.format {
            Format::Sql => crate::readback::sql::sql_digests(
                reader,
                &self.tables,
                self.with_schema,
                self.declared,
            )
            .map(ParsedFile::Sql),
            Format::Json => crate::readback::json::json_digests(reader).map(ParsedFile::Digests),
            Format::Parquet => {
                let table = self
                    .table
                    .ok_or("a file no table of the manifest is named by")?;
                let mut digest = TableDigest::new(&table);
                let mut scratch = Vec::new();
                crate::readback::parquet::read_file(
                    reader,
                    None,
                    self.size,
                    &table,
                    |_, values| {
                        let hash = crate::engine::digest::row_hash_with(
                            values.iter().copied(),
                            &mut scratch,
                        );
                        digest.add(1, hash);
                        Ok(())
                    },
                )?;
                Ok(ParsedFile::Digests(vec![digest]))
            }
            Format::Csv => {
                let table = self
                    .table
                    .ok_or("a file no table of the manifest is named by")?;
                let rows = crate::readback::csv::csv_rows(reader)?;
                let mut digest = TableDigest::new(&table);
                digest.add(rows, 0);
                Ok(ParsedFile::Digests(vec![digest]))
            }
        }
    }
}

/// Compares the manifest's tables with recomputed ones (`rows_only` for CSV).
fn compare(
    problems: &mut Vec<String>,
    what: &str,
    manifest: &[TableDigest],
    found: &[TableDigest],
    rows_only: bool,
) {
    for want in manifest {
        match found.iter().find(|t| t.table == want.table) {
            None => problems.push(format!(
                "table {:?}: in the manifest, not in {what}",
                want.table
            )),
            Some(got) if got.rows != want.rows => problems.push(format!(
                "table {:?}: {} rows in {what}, the manifest says {}",
                want.table, got.rows, want.rows
            )),
            Some(got) if !rows_only && got.content_hash != want.content_hash => {
                problems.push(format!(
                    "table {:?}: content hash {} in {what}, the manifest says {}",
                    want.table, got.content_hash, want.content_hash
                ))
            }
            Some(_) => {}
        }
    }
    for got in found
        .iter()
        .filter(|t| !manifest.iter().any(|m| m.table == t.table))
    {
        problems.push(format!(
            "table {:?}: in {what}, not in the manifest",
            got.table
        ));
    }
}
