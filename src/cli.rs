//! The `chunkdump` command line: `dump`, `resume` and `status` on the embedded default
//! (a local directory for dump files, a SQLite file beside them for progress).
//!
//! Contract for scripts: the first stdout line of `dump`/`resume` is the dump id, the
//! last is the path of the finished dump; progress goes to stderr; exit 0 on success,
//! 1 on failure with a one-line `error:` message, 2 on a usage error.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Config, DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::engine::{ChunkProgress, ProgressFn};
use crate::error::DumpError;
use crate::job::{Compression, DumpSpec, Format, JobRecord, JobStatus};
use crate::local::{DirStore, SqliteProgress};
use crate::ports::{ObjectStore, ProgressStore};
use crate::runner::{create_dump, run_to_completion, ChunkOptions};

#[derive(Debug, Parser)]
#[command(name = "chunkdump", version, about = "Dump SQLite databases in resumable, time-boxed chunks")]
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
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The SQLite database to dump (opened read-only).
    pub db: PathBuf,
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// Directory for dump files (progress is kept in DIR/.chunkdump/).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
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
    /// Dump id (default dump_YYYYMMDD-HHMMSS).
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    pub id: String,
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub tuning: Tuning,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub id: String,
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Parses arguments, runs the command, maps errors to exit codes.
pub fn main() -> std::process::ExitCode {
    crate::alloc::keep_large_buffers_off_the_heap();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
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

struct LocalStores {
    objects: DirStore,
    progress: SqliteProgress,
}

fn local_stores(out: &Path) -> Result<LocalStores, DumpError> {
    let objects = DirStore::open(out)?;
    let progress = SqliteProgress::open(&out.join(".chunkdump/progress.sqlite3"))?;
    Ok(LocalStores { objects, progress })
}

fn chunk_options(t: &Tuning, cfg: &Config, reporter: &Reporter) -> (ChunkOptions, Duration) {
    let opts = ChunkOptions {
        budget: t.budget_ms.map_or(cfg.max_execution, Duration::from_millis),
        deadline: None,
        chunk_size: t.chunk_size,
        progress: Some(reporter.hook()),
    };
    (opts, t.breathe_ms.map_or(cfg.breathing, Duration::from_millis))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::from_env()?;
    match cli.command {
        Command::Dump(args) => {
            let database = std::fs::canonicalize(&args.db)
                .map_err(|e| DumpError::Database { path: args.db.display().to_string(), message: format!("cannot open: {e}") })?;
            let stores = local_stores(&args.out)?;
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
                },
                tables: args.tables.clone(),
                include_schema: !args.no_schema,
                chunk_size: args.tuning.chunk_size.unwrap_or(cfg.chunk_size),
                part_size: args.part_size,
            };
            let job = create_dump(&stores.progress, spec, args.id.clone()).await?;
            finish(&stores, &job, &args.tuning, &cfg).await
        }
        Command::Resume(args) => {
            let stores = local_stores(&args.out)?;
            let job = stores.progress.get(&args.id).await?.ok_or_else(|| DumpError::UnknownDump(args.id.clone()))?;
            finish(&stores, &job, &args.tuning, &cfg).await
        }
        Command::Status(args) => {
            let stores = local_stores(&args.out)?;
            let job = stores.progress.get(&args.id).await?.ok_or_else(|| DumpError::UnknownDump(args.id.clone()))?;
            println!("{}", serde_json::to_string_pretty(&job.status_view(chrono::Utc::now()))?);
            Ok(())
        }
    }
}

/// Takes the dump's run lock: one process at a time may run a dump. (Two runners of one
/// gzip dump could otherwise overwrite each other's committed parts with differently cut
/// gzip members.) The OS releases the lock when the process dies, even by SIGKILL, so a
/// killed dump can be resumed at once.
fn lock_run(out: &Path, id: &str) -> anyhow::Result<std::fs::File> {
    let dir = out.join(".chunkdump/locks");
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(dir.join(format!("{id}.lock")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(DumpError::WrongState { id: id.into(), status: "running".into(), message: "another process is running this dump".into() }.into())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Prints the id, runs the dump to completion, prints the path.
async fn finish(stores: &LocalStores, job: &JobRecord, tuning: &Tuning, cfg: &Config) -> anyhow::Result<()> {
    let _running = lock_run(stores.objects.root(), &job.id)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", job.id)?;
    stdout.flush()?;
    let job = if job.status == JobStatus::Completed {
        job.clone()
    } else {
        let reporter = Reporter::new(&job.id);
        let (opts, breathe) = chunk_options(tuning, cfg, &reporter);
        let result = run_to_completion(&stores.objects, &stores.progress, &job.id, &opts, breathe, 5).await;
        reporter.done();
        result?
    };
    writeln!(stdout, "{}", stores.objects.locate(&job.output_name()))?;
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
                ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} rows {per_sec} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(id.to_string());
            bar
        });
        Reporter { bar, id: id.to_string(), last_line: Arc::new(Mutex::new(Instant::now())) }
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
                    eprintln!("{id}: {}/{total} rows, {:.1} MB", p.rows, p.bytes as f64 / 1e6);
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
