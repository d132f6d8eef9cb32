//! `chunkdump verify`: re-reads a completed dump from its store and checks it against its
//! manifest, in bounded memory.
//!
//! 1. Every file is read back in part-size ranges: its size and its SHA-256 of part
//!    digests must match the manifest (a flipped byte, a truncated or missing file fail).
//! 2. Its content is parsed and every table's row count and content hash recomputed:
//!    * SQL: restored, statement by statement, into a scratch SQLite database with the
//!      bundled library, then read with the same engine that dumped it;
//!    * JSON: parsed strictly row by row (one row object per line) back into typed values;
//!    * CSV: parsed strictly (RFC 4180); CSV carries no types, so only row counts are
//!      compared.
//! 3. With `against`, the same table digests are computed from a database (a snapshot
//!    copy, or a source nobody wrote since) and compared too.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;

use crate::engine::digest::{row_hash, DigestState, TableDigest};
use crate::engine::{run_export, ExportInput};
use crate::error::DumpError;
use crate::manifest::{manifest_key, Manifest};
use crate::model::{Compression, Cursor, DumpSpec, Format, JobRecord};
use crate::ports::ObjectStore;
use sha2::{Digest, Sha256};

/// What verify found: empty when the dump matches its manifest.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub files: usize,
    pub tables: usize,
}

/// Where verify reads a dump's bytes from, in ranges.
#[async_trait::async_trait]
trait RangeSource: Send + Sync {
    /// Up to `len` bytes of `key` from `offset`; `None` if the file does not exist.
    async fn range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, DumpError>;
}

struct Store<'a>(&'a dyn ObjectStore);

#[async_trait::async_trait]
impl RangeSource for Store<'_> {
    async fn range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, DumpError> {
        Ok(self.0.get_range(key, offset, len).await?)
    }
}

/// A dump copied to a local directory (read only: verify writes nothing there).
struct Files(std::path::PathBuf);

#[async_trait::async_trait]
impl RangeSource for Files {
    async fn range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, DumpError> {
        use std::io::{Read, Seek};
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(DumpError::InvalidRequest(format!(
                "manifest lists an unsafe file name {key:?}"
            )));
        }
        let path = self.0.join(key);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(DumpError::InvalidRequest(format!(
                    "{}: {e}",
                    path.display()
                )))
            }
        };
        let mut buf = Vec::new();
        f.seek(std::io::SeekFrom::Start(offset))
            .and_then(|_| f.take(len).read_to_end(&mut buf))
            .map_err(|e| DumpError::InvalidRequest(format!("{}: {e}", path.display())))?;
        Ok(Some(buf))
    }
}

/// Verifies the completed dump `job` in its store.
pub async fn verify(
    objects: &dyn ObjectStore,
    job: &JobRecord,
    against: Option<&Path>,
    progress: &dyn Fn(u64),
) -> Result<Report, DumpError> {
    let key = manifest_key(&job.id, job.spec.format);
    let raw = objects.get(&key).await?.ok_or_else(|| {
        DumpError::InvalidRequest(format!(
            "dump {} has no manifest ({key}); is it completed?",
            job.id
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&raw)
        .map_err(|e| DumpError::InvalidRequest(format!("{key} is not a valid manifest: {e}")))?;
    let mut report = check(&Store(objects), &manifest, &job.spec, against, progress).await?;
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
    against: Option<&Path>,
    progress: &dyn Fn(u64),
) -> Result<Report, DumpError> {
    let raw = std::fs::read(path)
        .map_err(|e| DumpError::InvalidRequest(format!("{}: {e}", path.display())))?;
    let manifest: Manifest = serde_json::from_slice(&raw).map_err(|e| {
        DumpError::InvalidRequest(format!("{} is not a valid manifest: {e}", path.display()))
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    // A CSV dump's manifest sits inside its directory, whose name starts the keys.
    let root = if manifest.format == Format::Csv {
        dir.parent().unwrap_or(Path::new("."))
    } else {
        dir
    };
    let spec = manifest.spec.clone().unwrap_or(DumpSpec {
        database: manifest.source.path.clone(),
        format: manifest.format,
        compression: manifest.compression,
        tables: None,
        include_schema: true,
        chunk_size: 1000,
        part_size: manifest.part_size,
        snapshot: manifest.consistency.snapshot,
        snapshot_max_block_ms: None,
    });
    check(
        &Files(root.to_path_buf()),
        &manifest,
        &spec,
        against,
        progress,
    )
    .await
}

async fn check(
    source: &dyn RangeSource,
    manifest: &Manifest,
    spec: &DumpSpec,
    against: Option<&Path>,
    progress: &dyn Fn(u64),
) -> Result<Report, DumpError> {
    let mut report = Report::default();
    let scratch =
        tempfile::tempdir().map_err(|e| DumpError::Internal(format!("scratch directory: {e}")))?;
    let mut parsed: Vec<TableDigest> = Vec::new();
    let mut read = 0u64;
    for file in &manifest.files {
        report.files += 1;
        let local = scratch.path().join(format!("file{}", report.files));
        let (size, digest) =
            match download(source, &file.key, manifest.part_size, &local, &mut |n| {
                read += n;
                progress(read)
            })
            .await?
            {
                Some(found) => found,
                None => {
                    report
                        .problems
                        .push(format!("{}: missing from the store", file.key));
                    continue;
                }
            };
        if size != file.size {
            report.problems.push(format!(
                "{}: {size} bytes stored, the manifest says {}",
                file.key, file.size
            ));
        }
        if Some(&digest) != file.sha256.as_ref() {
            report.problems.push(format!(
                "{}: SHA-256 {digest} differs from the manifest's {}",
                file.key,
                file.sha256.as_deref().unwrap_or("(none)")
            ));
        }
        let (format, compression, spec) = (manifest.format, manifest.compression, spec.clone());
        let work = scratch.path().to_path_buf();
        let name = file.key.clone();
        let result = tokio::task::spawn_blocking(move || {
            parse(&local, &name, format, compression, &spec, &work)
        })
        .await
        .map_err(|e| DumpError::Internal(e.to_string()))?;
        match result {
            Ok(tables) => parsed.extend(tables),
            Err(e) => report
                .problems
                .push(format!("{}: does not parse: {e}", file.key)),
        }
    }
    report.tables = manifest.tables.len();
    compare(
        &mut report.problems,
        "the dump",
        &manifest.tables,
        &parsed,
        manifest.format == Format::Csv,
    );
    if let Some(db) = against {
        let spec = DumpSpec {
            database: db.display().to_string(),
            ..spec.clone()
        };
        let tables = tokio::task::spawn_blocking(move || digests_of(&spec))
            .await
            .map_err(|e| DumpError::Internal(e.to_string()))??;
        compare(
            &mut report.problems,
            &format!("database {}", db.display()),
            &manifest.tables,
            &tables,
            false,
        );
    }
    Ok(report)
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

/// Copies an object to `local` in part-size ranges; returns its size and SHA-256 of
/// part digests, or `None` if it does not exist.
async fn download(
    source: &dyn RangeSource,
    key: &str,
    part_size: u64,
    local: &Path,
    on_read: &mut dyn FnMut(u64),
) -> Result<Option<(u64, String)>, DumpError> {
    let io = |e: std::io::Error| DumpError::Internal(format!("scratch file: {e}"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(local).map_err(io)?);
    let (mut offset, mut parts) = (0u64, Vec::new());
    loop {
        let Some(piece) = source.range(key, offset, part_size).await? else {
            return Ok(None);
        };
        if piece.is_empty() && offset > 0 {
            break;
        }
        parts.push(hex::encode(Sha256::digest(&piece)));
        out.write_all(&piece).map_err(io)?;
        on_read(piece.len() as u64);
        offset += piece.len() as u64;
        if (piece.len() as u64) < part_size {
            break;
        }
    }
    out.flush().map_err(io)?;
    Ok(Some((offset, crate::uploader::file_digest(&parts))))
}

fn open_plain(path: &Path, compression: Compression) -> std::io::Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path)?;
    Ok(match compression {
        Compression::None => Box::new(std::io::BufReader::new(file)),
        Compression::Gzip => Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
            std::io::BufReader::new(file),
        ))),
        // The decoder reads concatenated frames (one per chunk) as one stream.
        Compression::Zstd => Box::new(std::io::BufReader::new(zstd::stream::read::Decoder::new(
            file,
        )?)),
    })
}

/// Parses one downloaded file and recomputes the digests of the tables it holds.
fn parse(
    path: &Path,
    key: &str,
    format: Format,
    compression: Compression,
    spec: &DumpSpec,
    work: &Path,
) -> Result<Vec<TableDigest>, String> {
    let reader = open_plain(path, compression).map_err(|e| e.to_string())?;
    match format {
        Format::Sql => {
            let db = work.join("restored.db");
            let _ = std::fs::remove_file(&db);
            restore(reader, &db)?;
            digests_of(&DumpSpec {
                database: db.display().to_string(),
                ..spec.clone()
            })
            .map_err(|e| e.to_string())
        }
        Format::Json => json_digests(reader),
        Format::Csv => {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(false)
                .from_reader(reader);
            let rows = csv
                .byte_records()
                .try_fold(0u64, |n, r| r.map(|_| n + 1))
                .map_err(|e| e.to_string())?;
            let stem = key
                .rsplit('/')
                .next()
                .unwrap_or(key)
                .trim_end_matches(".gz")
                .trim_end_matches(".csv");
            Ok(vec![TableDigest {
                table: percent_decode(stem),
                rows,
                content_hash: String::new(),
            }])
        }
    }
}

fn percent_decode(s: &str) -> String {
    if s == "%00" {
        return String::new(); // the empty table name
    }
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            s.get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs an SQL dump into a new database one complete statement at a time.
fn restore(reader: Box<dyn BufRead>, db: &Path) -> Result<(), String> {
    let conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    let mut pending = String::new();
    for line in reader.lines() {
        let line = line.map_err(|e| e.to_string())?;
        pending.push_str(&line);
        pending.push('\n');
        if line.ends_with(';') && complete(&pending) {
            conn.execute_batch(&pending).map_err(|e| {
                format!("{e} in: {}", pending.chars().take(200).collect::<String>())
            })?;
            pending.clear();
        }
    }
    if !pending.trim().is_empty() {
        return Err(format!(
            "the dump ends inside a statement: {}",
            pending.chars().take(200).collect::<String>()
        ));
    }
    Ok(())
}

fn complete(sql: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(sql) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated string.
    unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 }
}

/// Table digests of a database, read by the engine exactly as a dump of `spec` reads it.
pub fn digests_of(spec: &DumpSpec) -> Result<Vec<TableDigest>, DumpError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let drain = std::thread::spawn(move || while rx.blocking_recv().is_some() {});
    let input = ExportInput {
        spec: DumpSpec {
            chunk_size: 10_000,
            part_size: 1 << 20,
            compression: Compression::None,
            ..spec.clone()
        },
        dump_id: "verify".into(),
        cursor: Cursor::default(),
        tail: None,
        fingerprint: None,
        first_change_token: None,
        count_rows: false,
        deadline: Instant::now() + Duration::from_secs(365 * 24 * 3600),
        progress: None,
        pool: Default::default(),
        digests: DigestState::default(),
    };
    let outcome = run_export(input, tx);
    let _ = drain.join();
    Ok(outcome?.digests.done)
}

/// A JSON row object with its keys in document order.
struct OrderedRow(Vec<serde_json::Value>);

impl<'de> serde::Deserialize<'de> for OrderedRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedRow;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a row object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<OrderedRow, A::Error> {
                let mut values = Vec::new();
                while let Some((_, v)) = m.next_entry::<String, serde_json::Value>()? {
                    values.push(v);
                }
                Ok(OrderedRow(values))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads the JSON layout chunkdump writes (`{"tables":{`, then per table a `"name":[`
/// line, one row object per line, `]`), strictly, and digests every table.
fn json_digests(reader: Box<dyn BufRead>) -> Result<Vec<TableDigest>, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out: Vec<TableDigest> = Vec::new();
    let mut lines = reader.lines();
    let first = lines
        .next()
        .ok_or("empty document")?
        .map_err(|e| e.to_string())?;
    if first != "{\"tables\":{" {
        return Err(format!("unexpected start {first:?}"));
    }
    for line in lines {
        let line = line.map_err(|e| e.to_string())?;
        let row = line.trim_end_matches(',');
        if let Some(name) = row.strip_suffix(":[") {
            let name: String =
                serde_json::from_str(name).map_err(|e| format!("table name {name:?}: {e}"))?;
            out.push(TableDigest::new(&name));
        } else if row == "]" || row == "}}" {
        } else {
            let OrderedRow(values) = serde_json::from_str(row)
                .map_err(|e| format!("row {:?}: {e}", row.chars().take(80).collect::<String>()))?;
            let mut owned: Vec<Owned> = Vec::with_capacity(values.len());
            for v in values {
                owned.push(match v {
                    serde_json::Value::Null => Owned::Null,
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) => Owned::Int(i),
                        None => Owned::Real(n.as_f64().ok_or("a number out of range")?),
                    },
                    serde_json::Value::String(s) => Owned::Text(s.into_bytes()),
                    serde_json::Value::Object(o) => {
                        match (o.get("$base64"), o.get("$textBase64"), o.get("$real")) {
                            (Some(serde_json::Value::String(s)), _, _) => {
                                Owned::Blob(b64.decode(s).map_err(|e| e.to_string())?)
                            }
                            (_, Some(serde_json::Value::String(s)), _) => {
                                Owned::Text(b64.decode(s).map_err(|e| e.to_string())?)
                            }
                            (_, _, Some(serde_json::Value::String(s))) => {
                                Owned::Real(if s == "Infinity" {
                                    f64::INFINITY
                                } else {
                                    f64::NEG_INFINITY
                                })
                            }
                            _ => return Err(format!("unknown tagged value {o:?}")),
                        }
                    }
                    other => return Err(format!("unexpected value {other}")),
                });
            }
            let table = out.last_mut().ok_or("a row before any table")?;
            table.add(1, row_hash(owned.iter().map(Owned::as_ref)));
        }
    }
    Ok(out)
}

enum Owned {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Owned {
    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Owned::Null => ValueRef::Null,
            Owned::Int(i) => ValueRef::Integer(*i),
            Owned::Real(f) => ValueRef::Real(*f),
            Owned::Text(t) => ValueRef::Text(t),
            Owned::Blob(b) => ValueRef::Blob(b),
        }
    }
}
