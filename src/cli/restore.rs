//! `chunkdump restore`: finds a completed dump's manifest (by id, by path or URL, or
//! the newest in a store), restores it with [`crate::restore`] and reports what it did.
//! Only the object store is read: no progress store is needed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;

use crate::config::SigningKey;
use crate::encryption::Identities;
use crate::error::DumpError;
use crate::manifest::{signature_key, Manifest};
use crate::model::{manifest_key, validate_dump_id, Format};
use crate::ports::ObjectReader;
use crate::readback::stream::{DirSource, RangeSource, StoreSource};
use crate::restore::{restore, RestoreOptions};
use crate::verify::{check_manifest_signature, Signature};
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The dump's id (with --out DIR or --store s3://…).
    #[arg(required_unless_present_any = ["manifest", "latest"], conflicts_with = "latest")]
    pub id: Option<String>,
    /// The local directory the dump was written to.
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    pub out: Option<PathBuf>,
    /// The S3/R2 bucket and prefix the dump was written to.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub store: Option<String>,
    /// Accepted for symmetry with the other commands; a restore needs only the files.
    #[arg(long, value_name = "dynamodb://TABLE", hide = true)]
    pub progress: Option<String>,
    /// Restore from a manifest file or object (the dump's files beside it).
    #[arg(long, value_name = "PATH|s3://…", conflicts_with_all = ["id", "out", "store", "latest"])]
    pub manifest: Option<String>,
    /// Restore the newest completed dump in the store.
    #[arg(long)]
    pub latest: bool,
    /// With --latest: the newest dump of this database (its path when it was dumped).
    /// Refused without --latest.
    #[arg(long, value_name = "DB")]
    pub database: Option<PathBuf>,
    /// The database file to create (refused if it exists, unless --force).
    #[arg(long, value_name = "NEW.db")]
    pub into: PathBuf,
    /// Restore only these tables (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "a,b")]
    pub tables: Option<Vec<String>>,
    /// Replace --into if it exists, once the restore is verified.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub identity: super::location::IdentityArg,
}

/// Where the dump's files are read from.
enum Place {
    Dir(PathBuf),
    #[cfg(feature = "aws")]
    Store(crate::cloud::S3Store),
}

impl Place {
    async fn open_store(url: &str) -> Result<Self, DumpError> {
        #[cfg(feature = "aws")]
        {
            let (store, _) = super::stores::object_store(url, false).await?;
            Ok(Place::Store(store))
        }
        #[cfg(not(feature = "aws"))]
        Err(DumpError::InvalidRequest(format!(
            "{url}: this build has no S3 support"
        )))
    }

    /// The dump's bytes, `ahead` ranges at a time from a remote store.
    fn ranges(&self, ahead: usize) -> Box<dyn RangeSource + '_> {
        match self {
            Place::Dir(dir) => Box::new(DirSource(dir.clone())),
            #[cfg(feature = "aws")]
            Place::Store(s3) => Box::new(StoreSource { objects: s3, ahead }),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, DumpError> {
        match self {
            Place::Dir(dir) => match std::fs::read(dir.join(key)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(DumpError::InvalidRequest(format!(
                    "{}: {e}",
                    dir.join(key).display()
                ))),
            },
            #[cfg(feature = "aws")]
            Place::Store(s3) => Ok(s3.get(key).await?),
        }
    }

    /// Keys that may be manifests (SQL/JSON beside their file, CSV inside its directory),
    /// at any depth: a store of several databases keeps each one's dumps under its name.
    /// A caller checks each against the dump it describes ([`is_manifest_of_its_dump`]).
    /// With each, when the store last wrote it (ms since the epoch), if it says.
    async fn manifest_keys(&self) -> Result<Vec<(String, Option<i64>)>, DumpError> {
        let keys: Vec<(String, Option<i64>)> = match self {
            Place::Dir(dir) => {
                if !dir.is_dir() {
                    return Err(DumpError::InvalidRequest(format!(
                        "{}: not a directory",
                        dir.display()
                    )));
                }
                let mut keys = Vec::new();
                let mut pending = vec![(String::new(), dir.clone())];
                while let Some((prefix, path)) = pending.pop() {
                    let entries = std::fs::read_dir(&path).map_err(|e| {
                        DumpError::InvalidRequest(format!("{}: {e}", path.display()))
                    })?;
                    for entry in entries.flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        // The store's own files (progress, staging) hold no dumps.
                        if prefix.is_empty() && name == ".chunkdump" {
                            continue;
                        }
                        let key = format!("{prefix}{name}");
                        match entry.file_type() {
                            Ok(t) if t.is_dir() => pending.push((format!("{key}/"), entry.path())),
                            // Only a manifest's time is wanted (one stat each).
                            Ok(t) if t.is_file() && key.ends_with("manifest.json") => {
                                keys.push((key, modified_ms(&entry)))
                            }
                            _ => {}
                        }
                    }
                }
                keys
            }
            #[cfg(feature = "aws")]
            Place::Store(s3) => s3.list_modified("").await?,
        };
        Ok(keys
            .into_iter()
            .filter(|(k, _)| {
                k.ends_with("/manifest.json")
                    || k.ends_with(".manifest.json")
                    || k == "manifest.json"
            })
            .collect())
    }

    /// The manifest at `key`, its signature checked with `signing` (an error if missing or
    /// wrong) before anything of it is used.
    async fn manifest(
        &self,
        key: &str,
        signing: Option<&SigningKey>,
        keys: Option<&Arc<Identities>>,
    ) -> Result<Option<(Manifest, Signature)>, DumpError> {
        let Some((raw, sig)) = self.signed_bytes(key).await? else {
            return Ok(None);
        };
        let signature = check_manifest_signature(key, &raw, sig.as_deref(), signing)?;
        Ok(Some((crate::manifest::parse(key, &raw, keys)?, signature)))
    }

    /// The bytes of the manifest at `key`, with the signature object beside it if any.
    async fn signed_bytes(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, DumpError> {
        let Some(raw) = self.get(key).await? else {
            return Ok(None);
        };
        Ok(Some((raw, self.get(&signature_key(key)).await?)))
    }
}

/// When the file of `entry` was last written, in ms since the epoch.
fn modified_ms(entry: &std::fs::DirEntry) -> Option<i64> {
    let modified = entry.metadata().ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// Runs the restore and prints its closing line (or the JSON report).
pub async fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let config = crate::config::Config::from_env()?;
    let signing = config.signing_key.as_ref();
    let keys = args.identity.read()?;
    // clap's `requires = "latest"` is met by the flag's implicit `false`, so it is checked
    // here: a dump id or a manifest names one dump, and --database would be ignored.
    if let (Some(database), false) = (&args.database, args.latest) {
        return Err(super::UsageError(format!(
            "--database {} picks the newest dump of a database and needs --latest; a dump id \
             or --manifest already names one dump (drop --database, or give --latest)",
            database.display()
        ))
        .into());
    }
    let (place, (manifest, signature)) = find(&args, signing, keys.as_ref()).await?;
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    let progress = Progress::new(&manifest.dump_id, total);
    let options = RestoreOptions {
        into: args.into.clone(),
        force: args.force,
        tables: args.tables.clone(),
    };
    let report = restore(
        place.ranges(config.download_concurrency as usize).as_ref(),
        &manifest,
        &options,
        &|n| progress.tick(n),
    )
    .await;
    progress.done();
    let report = report?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            stdout,
            "restored {} into {}: {} tables, {} rows, {:.1} MB read in {:.1} s, verified against the manifest{}",
            report.dump_id,
            report.into,
            report.tables,
            report.rows,
            report.bytes as f64 / 1e6,
            report.seconds,
            super::verify::signature_note(signature)
        )?;
    }
    Ok(())
}

/// The manifest the arguments name, and where its files are.
async fn find(
    args: &RestoreArgs,
    signing: Option<&SigningKey>,
    keys: Option<&Arc<Identities>>,
) -> Result<(Place, (Manifest, Signature)), DumpError> {
    if let Some(path) = &args.manifest {
        let (place, key) = if path.starts_with("s3://") {
            let (root, key) = split_manifest_url(path)?;
            let place = Place::open_store(&root).await?;
            // Read only to find where the store starts; the read below checks it.
            let (manifest, _) = place
                .manifest(&key, None, keys)
                .await?
                .ok_or_else(|| DumpError::InvalidRequest(format!("{path}: no such manifest")))?;
            // In a store of several databases the keys start above the database's name.
            let own = manifest_key(&manifest.dump_id, manifest.format);
            match path.strip_suffix(&own).and_then(|r| r.strip_suffix('/')) {
                Some(store) if store != root => (Place::open_store(store).await?, own),
                _ => (place, key),
            }
        } else {
            let path = PathBuf::from(path);
            let raw = std::fs::read(&path)
                .map_err(|e| DumpError::InvalidRequest(format!("{}: {e}", path.display())))?;
            let manifest = crate::manifest::parse(&path.display().to_string(), &raw, keys)?;
            // The keys start where the manifest's own key does.
            let key = manifest_key(&manifest.dump_id, manifest.format);
            (Place::Dir(manifest.store_root_of(&path)), key)
        };
        let manifest = place
            .manifest(&key, signing, keys)
            .await?
            .ok_or_else(|| DumpError::InvalidRequest(format!("{path}: no such manifest")))?;
        return Ok((place, manifest));
    }
    let place = match (&args.out, &args.store) {
        (Some(out), None) => {
            if !out.is_dir() {
                return Err(DumpError::InvalidRequest(format!(
                    "{}: no such directory",
                    out.display()
                )));
            }
            Place::Dir(out.clone())
        }
        (None, Some(store)) => Place::open_store(store).await?,
        _ => {
            return Err(DumpError::InvalidRequest(
                "give --out DIR or --store s3://BUCKET/PREFIX".into(),
            ))
        }
    };
    let manifest = match &args.id {
        Some(id) => {
            validate_dump_id(id).map_err(|e| DumpError::InvalidRequest(e.message))?;
            let mut found = None;
            for format in [Format::Sql, Format::Csv] {
                if let Some(m) = place
                    .manifest(&manifest_key(id, format), signing, keys)
                    .await?
                {
                    found = Some(m);
                    break;
                }
            }
            let manifest = found.ok_or_else(|| {
                DumpError::InvalidRequest(format!(
                    "no completed dump {id} there (it has no manifest)"
                ))
            })?;
            if manifest.0.dump_id != *id {
                return Err(DumpError::InvalidRequest(format!(
                    "the manifest of {id} describes dump {}; it was copied or edited",
                    manifest.0.dump_id
                )));
            }
            manifest
        }
        None => newest(&place, args.database.as_deref(), signing, keys).await?,
    };
    Ok((place, manifest))
}

/// The newest completed dump in the store (of `database`, if given). With a signing key,
/// only correctly signed manifests count (a planted one is passed over, with a warning
/// naming it), and their signed completion times order them. Without one, what a
/// manifest claims is not trusted to order it: the store's own last-modified time does
/// (so a manifest claiming a completion in the future does not win over every dump made
/// after it), then the completion time where the store does not say.
async fn newest(
    place: &Place,
    database: Option<&std::path::Path>,
    signing: Option<&SigningKey>,
    keys: Option<&Arc<Identities>>,
) -> Result<(Manifest, Signature), DumpError> {
    let database = database.map(super::database_filter);
    type Rank = (Option<i64>, Option<String>, String);
    let mut best: Option<(Rank, Manifest, Signature)> = None;
    let mut sealed = 0usize;
    for (key, modified) in place.manifest_keys().await? {
        // A key that only looks like a manifest (a file inside a dump, a copy) is skipped.
        let Ok(Some((raw, sig))) = place.signed_bytes(&key).await else {
            continue;
        };
        let signature = match check_manifest_signature(&key, &raw, sig.as_deref(), signing) {
            Ok(signature) => signature,
            Err(e) => {
                eprintln!("warning: {e}");
                continue;
            }
        };
        // An encrypted dump without its identity cannot be ranked (its completion time
        // is sealed): it is passed over, like a manifest that does not parse, and counted.
        let m = match crate::manifest::parse(&key, &raw, keys) {
            Ok(m) => m,
            Err(DumpError::Encryption(_)) => {
                sealed += 1;
                continue;
            }
            Err(_) => continue,
        };
        if !is_manifest_of_its_dump(&key, &m)
            || database
                .as_ref()
                .is_some_and(|db| !db.matches(&m.source.path, &m.dump_id))
        {
            continue;
        }
        let stored = if signing.is_some() { None } else { modified };
        // Ties go to the later id, so the choice never depends on listing order.
        let rank = (stored, m.completed_at.clone(), m.dump_id.clone());
        if best.as_ref().is_none_or(|(b, _, _)| &rank > b) {
            best = Some((rank, m, signature));
        }
    }
    best.map(|(_, m, signature)| (m, signature)).ok_or_else(|| {
        let passed_over = match sealed {
            0 => String::new(),
            n => format!(
                " ({n} encrypted {} passed over: give the identity that opens {}, --identity FILE)",
                if n == 1 { "dump" } else { "dumps" },
                if n == 1 { "it" } else { "them" }
            ),
        };
        match &database {
            Some(db) => DumpError::InvalidRequest(format!(
                "no completed dump of {} there{passed_over}",
                db.describe()
            )),
            None => DumpError::InvalidRequest(format!("no completed dump there{passed_over}")),
        }
    })
}

/// Whether `key` is where dump `m.dump_id`'s manifest belongs.
fn is_manifest_of_its_dump(key: &str, m: &Manifest) -> bool {
    validate_dump_id(&m.dump_id).is_ok() && manifest_key(&m.dump_id, m.format) == key
}

/// `s3://bucket/prefix/ID.manifest.json` (or `…/ID/manifest.json`): the store's URL and
/// the manifest's key in it.
fn split_manifest_url(url: &str) -> Result<(String, String), DumpError> {
    let bad = || DumpError::InvalidRequest(format!("{url}: not the URL of a chunkdump manifest"));
    let (dir, name) = url.rsplit_once('/').ok_or_else(bad)?;
    if name == "manifest.json" {
        let (root, id) = dir.rsplit_once('/').ok_or_else(bad)?;
        (root.len() > "s3:/".len()).then_some(()).ok_or_else(bad)?;
        Ok((root.to_string(), format!("{id}/manifest.json")))
    } else if name.ends_with(".manifest.json") && dir.len() > "s3:/".len() {
        Ok((dir.to_string(), name.to_string()))
    } else {
        Err(bad())
    }
}

/// Progress on stderr: a bar on a terminal, a plain line every 2 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    id: String,
    total: u64,
    last_line: Mutex<Instant>,
}

impl Progress {
    fn new(id: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "restore {msg} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(id.to_string());
            bar
        });
        Progress {
            bar,
            id: id.to_string(),
            total,
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn tick(&self, read: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(read);
        } else if let Ok(mut last) = self.last_line.lock() {
            if last.elapsed() >= Duration::from_secs(2) {
                *last = Instant::now();
                eprintln!(
                    "{}: restored {:.1}/{:.1} MB",
                    self.id,
                    read as f64 / 1e6,
                    self.total as f64 / 1e6
                );
            }
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
