//! The command line's arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::location::Location;
use crate::config::{DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};

/// `chunkdump`: its subcommand.
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
    Verify(super::verify::VerifyArgs),
    /// Create the bucket (and the DynamoDB progress table, if given) if missing.
    Setup(SetupArgs),
    /// Serve the HTTP API (needs CHUNKDUMP_API_TOKEN), running dumps in-process.
    Serve(ServeArgs),
    /// Delete completed dumps a retention policy does not keep (files, manifest, record).
    Prune(super::prune::PruneArgs),
    /// List the dumps a store knows, newest first.
    List(super::list::ListArgs),
    /// Restore a completed dump (any format) into a new SQLite database, verified
    /// against its manifest before it is put in place.
    Restore(super::restore::RestoreArgs),
    /// Prove a completed dump restores: restore it into a scratch database, check it
    /// (integrity, foreign keys, views, FTS and R*Tree, schema) and keep the report
    /// beside the dump.
    Drill(super::drill::DrillArgs),
    /// Give an encrypted dump new recipients (age), rewriting only each file's header:
    /// the store copies the rest, and the old identity no longer opens it.
    Rekey(super::rekey::RekeyArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The SQLite database the API dumps (when a request names none).
    #[arg(long, required_unless_present = "database_root")]
    pub db: Option<PathBuf>,
    /// A directory of databases: a request names one by its path under DIR
    /// (`"database": "tenants/acme.db"`), and its dumps are `tenants/acme/dump_…`.
    #[arg(long, value_name = "DIR")]
    pub database_root: Option<PathBuf>,
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
    /// Per table, typed Parquet files (DuckDB, Polars, pyarrow read them as they are).
    Parquet,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    /// zstd: several times faster than gzip at a better ratio.
    Zstd,
}

/// `--chunk-size`: 1 to `SliceRows::MAX` rows.
fn slice_rows(text: &str) -> Result<crate::model::SliceRows, String> {
    let n: u32 = text
        .parse()
        .map_err(|e| format!("{e}: a whole number of rows"))?;
    crate::model::SliceRows::new(n).map_err(|e| e.message.replace("chunkSize", "it"))
}

/// Tuning that does not change the output bytes.
#[derive(Debug, Args)]
pub struct Tuning {
    /// Rows per slice, one short read transaction [env: DUMP_CHUNK_SIZE, default 1000].
    #[arg(long = "chunk-size", value_parser = slice_rows)]
    pub slice_rows: Option<crate::model::SliceRows>,
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

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The SQLite databases to dump (opened read-only); a quoted pattern (`'tenants/*.db'`)
    /// is expanded. With several, each dump is named `<database>/dump_…` and one line per
    /// finished database is printed: `<id>\t<database>\t<path>`.
    #[arg(value_name = "DB", required = true, num_args = 1..)]
    pub databases: Vec<PathBuf>,
    /// Dumps run at once when several databases are given (memory grows with this, not
    /// with the number of databases).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
    /// Name each dump after its database's path relative to DIR (with `--database-root
    /// tenants`, `tenants/acme.db` gives `acme/dump_…`; with `--database-root .`,
    /// `tenants/acme/dump_…`) [default with several databases: the file name without its
    /// extension].
    #[arg(long, value_name = "DIR")]
    pub database_root: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub format: FormatArg,
    #[command(flatten)]
    pub location: Location,
    #[command(flatten)]
    pub tuning: Tuning,
    /// Size of every upload part but the last, in bytes (5 MiB to 5 GiB).
    #[arg(long, default_value_t = DEFAULT_PART_SIZE, value_parser = clap::value_parser!(u64).range(MIN_PART_SIZE..=MAX_PART_SIZE))]
    pub part_size: u64,
    /// [default: none; zstd for Parquet, inside its files]
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,
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
    /// Output bytes per gzip member or zstd frame (4 KiB to 1 GiB) [default: 32 MiB].
    /// Frames end at row ends the content fixes, so reruns and resumes give the same
    /// bytes; a chunk past its budget runs on to the end of its frame.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(4096..=1 << 30))]
    pub frame_size: Option<u64>,
    /// Drill the dump once it completes (`chunkdump drill`: restore it into a scratch
    /// database in CHUNKDUMP_DRILL_DIR and check it); a failed drill exits 1.
    #[arg(long)]
    pub drill: bool,
    /// Encrypt every file of the dump before it leaves this machine (age): only a
    /// matching identity reads it back (`age -d -i KEY`, `chunkdump restore --identity
    /// KEY`). Replaces CHUNKDUMP_RECIPIENTS.
    #[command(flatten)]
    pub recipients: super::location::RecipientArgs,
    /// Dump id (default dump_YYYYMMDD-HHMMSS; only with one database).
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
pub struct SetupArgs {
    /// The bucket dumps go to (checked for access; created on S3 if missing).
    #[arg(long, value_name = "s3://BUCKET")]
    pub store: String,
    /// The DynamoDB table for progress shared between machines (created with TTL if
    /// missing). Without it, progress stays in a local file, which needs no setup, and
    /// `R2_*` alone configure the bucket (no AWS variable needed).
    #[arg(long, value_name = "dynamodb://TABLE")]
    pub progress: Option<String>,
}
