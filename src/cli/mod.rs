//! The `chunkdump` command line: `dump`, `resume` and `status` on the embedded default
//! (a local directory for dump files, a SQLite file beside them for progress).
//!
//! Contract for scripts: the first stdout line of `dump`/`resume` is the dump id, the
//! last is the path of the finished dump; progress goes to stderr; exit 0 on success,
//! 1 on failure with a one-line `error:` message, 2 on a usage error.

mod prune;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::chunk::ChunkOptions;
use crate::config::{Config, DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::engine::{ChunkProgress, ProgressFn};
use crate::error::DumpError;
use crate::lifecycle::create_dump;
use crate::local::{DirStore, SqliteProgress};
use crate::model::{Compression, DumpSpec, Format, JobRecord, JobStatus};
use crate::ports::{ObjectStore, ProgressStore, StartGuard};
use crate::runner::LocalRunner;
use crate::tasks::Tasks;

#[derive(Debug, Parser)]
#[command(
    name = "chunkdump",
    version,
    about = "Dump SQLite databases in resumable, time-boxed chunks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a dump and run it to completion.
    Dump(DumpArgs),
    /// Continue an interrupted dump from its last committed chunk.
    Resume(ResumeArgs),
    /// Print a dump's status as JSON.
    Status(StatusArgs),
    /// Re-read a completed dump from its store and check it against its manifest.
    Verify(VerifyArgs),
    /// Create the bucket and the progress table (with TTL) if missing.
    Setup(SetupArgs),
    /// Serve the HTTP API (needs CHUNKDUMP_API_TOKEN), running dumps in-process.
    Serve(ServeArgs),
    /// Delete completed dumps a retention policy does not keep (files, manifest, record).
    Prune(prune::PruneArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The SQLite database the API dumps.
    #[arg(long)]
    pub db: PathBuf,
    #[command(flatten)]
    pub location: Location,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[arg(long, default_value_t = DEFAULT_PART_SIZE, value_parser = clap::value_parser!(u64).range(MIN_PART_SIZE..=MAX_PART_SIZE))]
    pub part_size: u64,
    /// Start dumps on a schedule, as EventBridge Scheduler would (UTC):
    /// `rate(1 day)`, `cron(15 3 * * ? *)`.
    #[arg(long, value_name = "EXPR")]
    pub schedule: Option<String>,
    /// What each scheduled tick does: the `chunkdumpSchedule` JSON of events/schedule.json
    /// (name, request, retention), inline or as @FILE [default: a SQL dump, no retention].
    #[arg(long, value_name = "JSON|@FILE", requires = "schedule")]
    pub schedule_input: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Sql,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    /// zstd: several times faster than gzip at a better ratio.
    Zstd,
}

/// Tuning that does not change the output bytes.
#[derive(Debug, Args)]
pub struct Tuning {
    /// Rows per short read transaction [env: DUMP_CHUNK_SIZE, default 1000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub chunk_size: Option<u32>,
    /// Time budget of one chunk in ms [env: MAX_EXECUTION_TIME, default 25000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=900_000))]
    pub budget_ms: Option<u64>,
    /// Breathing pause between chunks in ms [env: DUMP_BREATHING_INTERVAL, default 5000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub breathe_ms: Option<u64>,
    /// Part uploads in flight at once [env: CHUNKDUMP_UPLOAD_CONCURRENCY, default 4].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub upload_concurrency: Option<u32>,
}

/// Where dump files and progress live: a local directory (the embedded default), or an
/// S3-compatible bucket plus a DynamoDB table.
#[derive(Debug, Args)]
pub struct Location {
    /// Directory for dump files (progress is kept in DIR/.chunkdump/).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "store",
        conflicts_with = "store"
    )]
    pub out: Option<PathBuf>,
    /// S3-compatible store for dump files, e.g. s3://bucket/prefix (R2: set
    /// AWS_ENDPOINT_URL_S3 to https://<account>.r2.cloudflarestorage.com).
    #[arg(long, value_name = "s3://BUCKET/PREFIX", requires = "progress")]
    pub store: Option<String>,
    /// DynamoDB table for progress, e.g. dynamodb://chunkdump-jobs.
    #[arg(long, value_name = "dynamodb://TABLE", requires = "store")]
    pub progress: Option<String>,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The SQLite database to dump (opened read-only).
    pub db: PathBuf,
    #[arg(long, value_enum)]
    pub format: FormatArg,
    #[command(flatten)]
    pub location: Location,
    #[command(flatten)]
    pub tuning: Tuning,
    /// Size of every upload part but the last, in bytes (5 MiB to 5 GiB).
    #[arg(long, default_value_t = DEFAULT_PART_SIZE, value_parser = clap::value_parser!(u64).range(MIN_PART_SIZE..=MAX_PART_SIZE))]
    pub part_size: u64,
    #[arg(long, value_enum, default_value = "none")]
    pub compression: CompressionArg,
    /// Comma-separated tables to dump (default: all).
    #[arg(long, value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
    /// Data only: no CREATE statements, indexes, triggers or views (SQL).
    #[arg(long)]
    pub no_schema: bool,
    /// Dump a point-in-time copy made in one read transaction (default: DUMP_SNAPSHOT).
    #[arg(long)]
    pub snapshot: bool,
    /// Longest a snapshot may hold writers off in rollback-journal mode.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub snapshot_max_block_ms: u64,
    /// Dump id (default dump_YYYYMMDD-HHMMSS).
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    pub id: String,
    #[command(flatten)]
    pub location: Location,
    #[command(flatten)]
    pub tuning: Tuning,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub id: String,
    #[command(flatten)]
    pub location: Location,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The dump's id (with --out DIR, or --store and --progress).
    #[arg(required_unless_present = "manifest")]
    pub id: Option<String>,
    /// The local directory the dump was written to.
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    pub out: Option<PathBuf>,
    /// The S3/R2 bucket and prefix the dump was written to.
    #[arg(long, value_name = "s3://BUCKET/PREFIX", requires = "progress")]
    pub store: Option<String>,
    /// The DynamoDB table holding the dump's progress (with --store).
    #[arg(long, value_name = "dynamodb://TABLE", requires = "store")]
    pub progress: Option<String>,
    /// Verify a dump copied elsewhere from its manifest file alone (its files beside it).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["id", "out", "store", "progress"])]
    pub manifest: Option<PathBuf>,
    /// Also compare the tables with this database (a snapshot copy, or a source nobody
    /// wrote since the dump).
    #[arg(long, value_name = "DB")]
    pub against: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The bucket dumps go to (checked for access; created on S3 if missing).
    #[arg(long, value_name = "s3://BUCKET")]
    pub store: String,
    /// The DynamoDB table for progress (created with TTL if missing).
    #[arg(long, value_name = "dynamodb://TABLE")]
    pub progress: String,
}

/// Parses arguments, runs the command, maps errors to exit codes.
pub fn main() -> std::process::ExitCode {
    crate::alloc::keep_large_buffers_off_the_heap();
    let cli = Cli::parse();
    // The one-shot commands print the dump's warnings and one `error:` line themselves
    // (the runner logs those at info, for servers and Lambda); warnings about the run
    // itself (a busy database) are logged. Plain text unless stderr is a terminal.
    let default_filter = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn,chunkdump::failure=off"
    };
    let filter = match log_filter(std::env::var("RUST_LOG").ok(), default_filter) {
        Ok(filter) => filter,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if !matches!(cli.command, Command::Serve(_)) {
        // A one-shot command piped into `head` ends quietly when the reader goes away,
        // as other command-line tools do, instead of panicking on a closed stdout. (A
        // server keeps Rust's default, so a closed socket is an error, not a signal.)
        // SAFETY: setting a signal's disposition to its default before any thread that
        // could depend on it starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The log filter: `RUST_LOG` when set (an invalid one is an error, not ignored), else
/// `default`.
fn log_filter(
    rust_log: Option<String>,
    default: &str,
) -> Result<tracing_subscriber::EnvFilter, String> {
    match rust_log.filter(|v| !v.trim().is_empty()) {
        Some(v) => tracing_subscriber::EnvFilter::builder()
            .parse(&v)
            .map_err(|e| format!("RUST_LOG={v:?} is not a valid log filter: {e}")),
        None => Ok(tracing_subscriber::EnvFilter::new(default)),
    }
}

/// The opened stores, and where the per-dump run locks live.
struct Stores {
    objects: Arc<dyn ObjectStore>,
    progress: Arc<dyn ProgressStore>,
    /// The API's start guard (`serve`), in the same table as the job records.
    guard: Arc<dyn StartGuard>,
    lock_dir: PathBuf,
    /// Default place for snapshot copies (CHUNKDUMP_SNAPSHOT_DIR overrides it).
    snapshot_dir: PathBuf,
}

/// Whether a command may create the store it names (a read-only one never does: a
/// mistyped `--out` is an error, not a new empty store).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

async fn open_stores(loc: &Location, access: Access) -> Result<Stores, DumpError> {
    match (&loc.out, &loc.store, &loc.progress) {
        (Some(out), None, None) => {
            let progress_file = out.join(".chunkdump/progress.sqlite3");
            if access == Access::ReadOnly && !progress_file.is_file() {
                return Err(DumpError::InvalidRequest(format!(
                    "{} holds no chunkdump dumps (no {} there)",
                    out.display(),
                    ".chunkdump/progress.sqlite3"
                )));
            }
            let progress = Arc::new(SqliteProgress::open(
                &out.join(".chunkdump/progress.sqlite3"),
            )?);
            Ok(Stores {
                objects: Arc::new(DirStore::open(out)?),
                progress: progress.clone(),
                guard: progress,
                lock_dir: out.join(".chunkdump/locks"),
                snapshot_dir: out.join(".chunkdump/snapshots"),
            })
        }
        (None, Some(store), Some(progress)) => {
            let config = crate::cloud::load_aws_config().await;
            let objects = crate::cloud::S3Store::new(&config, store)?;
            let progress = Arc::new(crate::cloud::DynamoProgress::new(&config, progress)?);
            // A host-local lock: in AWS, Step Functions runs one execution per dump.
            let lock_dir = std::env::temp_dir()
                .join("chunkdump-locks")
                .join(safe_lock_name(store));
            let snapshot_dir = std::env::temp_dir().join("chunkdump-snapshots");
            Ok(Stores {
                objects: Arc::new(objects),
                progress: progress.clone(),
                guard: progress,
                lock_dir,
                snapshot_dir,
            })
        }
        _ => Err(DumpError::InvalidRequest(
            "give --out DIR, or both --store s3://… and --progress dynamodb://…".into(),
        )),
    }
}

fn safe_lock_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn chunk_options(
    t: &Tuning,
    cfg: &Config,
    reporter: &Reporter,
    stores: &Stores,
) -> (ChunkOptions, Duration) {
    let mut opts = ChunkOptions::from_config(cfg);
    if let Some(ms) = t.budget_ms {
        opts.budget = Duration::from_millis(ms);
    }
    opts.chunk_size = t.chunk_size;
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

/// Narrows the umask to `database`'s permission bits (see [`crate::local::permissions`]).
fn limit_new_files_to(database: &Path) -> Result<(), DumpError> {
    crate::local::permissions::limit_new_files_to(database).map_err(|e| DumpError::Database {
        path: database.display().to_string(),
        message: format!("cannot read its permissions: {e}"),
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::from_env()?;
    match cli.command {
        Command::Dump(args) => {
            let database = std::fs::canonicalize(&args.db).map_err(|e| DumpError::Database {
                path: args.db.display().to_string(),
                message: format!("cannot open: {e}"),
            })?;
            limit_new_files_to(&database)?;
            let stores = open_stores(&args.location, Access::ReadWrite).await?;
            let spec = DumpSpec {
                database: database.display().to_string(),
                format: match args.format {
                    FormatArg::Sql => Format::Sql,
                    FormatArg::Csv => Format::Csv,
                    FormatArg::Json => Format::Json,
                },
                compression: match args.compression {
                    CompressionArg::None => Compression::None,
                    CompressionArg::Gzip => Compression::Gzip,
                    CompressionArg::Zstd => Compression::Zstd,
                },
                tables: args.tables.clone(),
                include_schema: !args.no_schema,
                chunk_size: args.tuning.chunk_size.unwrap_or(cfg.chunk_size),
                part_size: args.part_size,
                snapshot: args.snapshot || cfg.snapshot,
                snapshot_max_block_ms: Some(args.snapshot_max_block_ms),
            };
            let job = create_dump(stores.progress.as_ref(), spec, args.id.clone()).await?;
            finish(&stores, &job, &args.tuning, &cfg).await
        }
        Command::Resume(args) => {
            let stores = open_stores(&args.location, Access::ReadWrite).await?;
            let job = stores.progress.require(&args.id).await?;
            // Files made from here on are at most as readable as the database (if it is
            // gone, the resumed chunk fails on it anyway).
            let _ = limit_new_files_to(Path::new(&job.spec.database));
            finish(&stores, &job, &args.tuning, &cfg).await
        }
        Command::Status(args) => {
            let stores = open_stores(&args.location, Access::ReadOnly).await?;
            let job = stores.progress.require(&args.id).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::views::StatusView::new(
                    &job,
                    chrono::Utc::now()
                ))?
            );
            Ok(())
        }
        Command::Serve(args) => {
            let env = crate::config::Env::process();
            let secrets = crate::config::Secrets::read(&env);
            let tokens = crate::api::Tokens::from_secrets(&secrets)?;
            let database = std::fs::canonicalize(&args.db).map_err(|e| DumpError::Database {
                path: args.db.display().to_string(),
                message: format!("cannot open: {e}"),
            })?;
            limit_new_files_to(&database)?;
            let stores = open_stores(&args.location, Access::ReadWrite).await?;
            let mut cfg = cfg;
            cfg.snapshot_dir.get_or_insert(stores.snapshot_dir.clone());
            let schedule = match &args.schedule {
                Some(expr) => Some(schedule_of(expr, args.schedule_input.as_deref())?),
                None => None,
            };
            let opts = crate::serve::ServeOptions {
                database: database.display().to_string(),
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
                schedule,
            };
            crate::serve::serve(stores.objects, stores.progress, stores.guard, tokens, opts).await
        }
        Command::Verify(args) => {
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = ProgressBar::new(0);
                bar.set_style(
                    ProgressStyle::with_template("verify {bytes} {bytes_per_sec}")
                        .expect("valid template"),
                );
                bar
            });
            let tick = |n: u64| {
                if let Some(b) = &bar {
                    b.set_position(n)
                }
            };
            let (what, report) = match (&args.manifest, &args.id) {
                (Some(path), _) => (
                    path.display().to_string(),
                    crate::verify::verify_manifest_file(path, args.against.as_deref(), &tick)
                        .await?,
                ),
                (None, Some(id)) => {
                    let location = Location {
                        out: args.out.clone(),
                        store: args.store.clone(),
                        progress: args.progress.clone(),
                    };
                    let stores = open_stores(&location, Access::ReadOnly).await?;
                    let job = stores.progress.require(id).await?;
                    if job.status != JobStatus::Completed {
                        let message = "only a completed dump can be verified".into();
                        return Err(DumpError::WrongState {
                            id: job.id.clone(),
                            status: job.status,
                            message,
                        }
                        .into());
                    }
                    (
                        job.id.clone(),
                        crate::verify::verify(
                            stores.objects.as_ref(),
                            &job,
                            args.against.as_deref(),
                            &tick,
                        )
                        .await?,
                    )
                }
                (None, None) => {
                    return Err(DumpError::InvalidRequest(
                        "give a dump id, or --manifest PATH".into(),
                    )
                    .into())
                }
            };
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            if report.problems.is_empty() {
                println!(
                    "ok: {} files and {} tables match the manifest of {what}",
                    report.files, report.tables
                );
                Ok(())
            } else {
                for p in &report.problems {
                    println!("{p}");
                }
                Err(anyhow::anyhow!(
                    "{what} does not match its manifest ({} problems)",
                    report.problems.len()
                ))
            }
        }
        Command::Prune(args) => prune::run(args).await,
        Command::Setup(args) => {
            let config = crate::cloud::load_aws_config().await;
            crate::cloud::S3Store::new(&config, &args.store)?
                .ensure_bucket()
                .await?;
            crate::cloud::DynamoProgress::new(&config, &args.progress)?
                .ensure_table()
                .await?;
            println!("ready: {} and {}", args.store, args.progress);
            Ok(())
        }
    }
}

/// Parses `--schedule` and `--schedule-input` (errors name the flag).
fn schedule_of(
    expr: &str,
    input: Option<&str>,
) -> Result<
    (
        crate::serve::scheduler::ScheduleExpr,
        crate::api::schedule::ScheduledStart,
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
    let tick = crate::api::schedule::tick_from_payload(&value)
        .unwrap_or_else(|| serde_json::from_value(value).map_err(|e| e.to_string()))
        .map_err(|e| DumpError::InvalidRequest(format!("--schedule-input: {e}")))?;
    Ok((expr, tick))
}

/// Takes the dump's run lock: one process at a time may run a dump. (Two runners of one
/// gzip dump could otherwise overwrite each other's committed parts with differently cut
/// gzip members.) The OS releases the lock when the process dies, even by SIGKILL, so a
/// killed dump can be resumed at once.
fn lock_run(dir: &Path, id: &str) -> anyhow::Result<std::fs::File> {
    match crate::local::run_lock::try_lock_run(dir, id)? {
        crate::local::run_lock::RunLock::Taken(file) => Ok(file),
        crate::local::run_lock::RunLock::Held => Err(DumpError::WrongState {
            id: id.into(),
            status: JobStatus::Processing,
            message: "another process is running this dump".into(),
        }
        .into()),
    }
}

/// Prints the id, runs the dump to completion, prints the path.
async fn finish(
    stores: &Stores,
    job: &JobRecord,
    tuning: &Tuning,
    cfg: &Config,
) -> anyhow::Result<()> {
    let _running = lock_run(&stores.lock_dir, &job.id)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", job.id)?;
    stdout.flush()?;
    let job = if job.status == JobStatus::Completed {
        crate::lifecycle::tidy_completed(stores.objects.as_ref(), job).await;
        job.clone()
    } else {
        let reporter = Reporter::new(&job.id);
        let (opts, breathe) = chunk_options(tuning, cfg, &reporter, stores);
        let tasks = Tasks {
            chunk: opts,
            breathe,
            ..Tasks::from_config(stores.objects.clone(), stores.progress.clone(), None, cfg)
        };
        // The same state machine definition as in AWS, interpreted in-process.
        let result = LocalRunner::new(tasks)?.run_to_end(&job.id).await;
        reporter.done();
        result?
    };
    for w in &job.warnings {
        eprintln!("warning: {w}");
    }
    if job.consistency.changed_during_dump {
        eprintln!("warning: the database changed while this live dump ran, so it is not a point-in-time copy; use --snapshot for one");
    }
    let location = stores.objects.locate(&job.output_name());
    if job.spec.format == crate::model::Format::Csv
        && job.files.is_empty()
        && !location.contains("://")
    {
        // A database without tables gives an empty CSV directory; the printed path exists.
        std::fs::create_dir_all(&location)?;
    }
    writeln!(stdout, "{location}")?;
    Ok(())
}

/// Progress on stderr: a bar on a terminal, a plain line every few seconds otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    id: String,
    last_line: Arc<Mutex<Instant>>,
}

impl Reporter {
    fn new(id: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} rows {per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(id.to_string());
            bar
        });
        Reporter {
            bar,
            id: id.to_string(),
            last_line: Arc::new(Mutex::new(Instant::now())),
        }
    }

    fn hook(&self) -> ProgressFn {
        let (bar, id, last_line) = (self.bar.clone(), self.id.clone(), self.last_line.clone());
        Arc::new(move |p: ChunkProgress| {
            if let Some(bar) = &bar {
                bar.set_length(p.total_rows.unwrap_or(0).max(p.rows));
                bar.set_position(p.rows);
                bar.set_message(format!("{id} {:.1} MB", p.bytes as f64 / 1e6));
            } else if let Ok(mut last) = last_line.lock() {
                if last.elapsed() >= Duration::from_secs(2) {
                    *last = Instant::now();
                    let total = p.total_rows.map_or("?".to_string(), |t| t.to_string());
                    eprintln!(
                        "{id}: {}/{total} rows, {:.1} MB",
                        p.rows,
                        p.bytes as f64 / 1e6
                    );
                }
            }
        })
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
