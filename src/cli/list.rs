//! `chunkdump list`: the dumps a store knows, newest first, one line each (or JSON).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::stores::{open_stores, Access};

use super::Location;
use crate::model::JobRecord;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub location: Location,
    /// Only dumps of this database.
    #[arg(long, value_name = "DB")]
    pub database: Option<PathBuf>,
    /// At most N dumps, newest first.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: usize,
    /// One JSON array on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One dump as `list` shows it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    id: String,
    database: String,
    status: &'static str,
    format: String,
    compression: String,
    bytes: u64,
    started_at: Option<String>,
    completed_at: Option<String>,
    /// The last restore drill (`chunkdump drill`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_drill: Option<crate::model::DrillSummary>,
}

impl Listed {
    fn of(job: &JobRecord) -> Self {
        let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        };
        Listed {
            id: job.id.clone(),
            database: job.spec.database.clone(),
            status: job.status.as_str(),
            format: wire_name(&job.spec.format),
            compression: wire_name(&job.spec.compression),
            bytes: job
                .files
                .iter()
                .map(|f| f.size)
                .sum::<u64>()
                .max(job.bytes_written),
            started_at: ts(job.started_at.or(Some(job.created_at))),
            completed_at: ts(job.completed_at),
            last_drill: job.last_drill.clone(),
        }
    }
}

/// The name a value has on the wire (`"sql"`, `"zstd"`).
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Prints the dumps.
pub async fn run(args: ListArgs) -> anyhow::Result<()> {
    let stores = open_stores(&args.location, Access::ReadOnly).await?;
    let database = args.database.as_deref().map(super::database_filter);
    let jobs = stores.progress.list_recent(args.limit).await?;
    let listed: Vec<Listed> = jobs
        .iter()
        .filter(|j| {
            database
                .as_ref()
                .is_none_or(|d| d.matches(&j.spec.database, &j.id))
        })
        .map(|job| {
            let mut listed = Listed::of(job);
            if stores.is_interrupted(job) {
                listed.status = "interrupted";
            }
            listed
        })
        .collect();
    if let (Some(db), true) = (&database, listed.is_empty()) {
        // A typo must not look like a database without dumps.
        return Err(crate::error::DumpError::InvalidRequest(format!(
            "no dump of database {} among the newest {} here (give its file, or its name as dump printed it)",
            db.describe(),
            args.limit
        ))
        .into());
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&listed)?)?;
        return Ok(());
    }
    // Columns as wide as their widest cell (long ids, `interrupted`), so they line up.
    let rows: Vec<[String; 9]> = listed
        .iter()
        .map(|l| {
            [
                l.id.clone(),
                l.status.to_string(),
                l.format.to_string(),
                l.compression.to_string(),
                l.bytes.to_string(),
                l.started_at.clone().unwrap_or_else(|| "-".into()),
                l.completed_at.clone().unwrap_or_else(|| "-".into()),
                match &l.last_drill {
                    Some(d) => d.outcome().into(),
                    None if l.status == "completed" => "never".into(),
                    None => "-".into(),
                },
                l.database.to_string(),
            ]
        })
        .collect();
    let header = [
        "ID", "STATUS", "FMT", "COMP", "BYTES", "STARTED", "FINISHED", "DRILL", "DATABASE",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            match i {
                8 => line.push_str(cell),
                // Bytes right-aligned.
                4 => line.push_str(&format!("{}{cell}  ", " ".repeat(pad))),
                _ => line.push_str(&format!("{cell}{}  ", " ".repeat(pad))),
            }
        }
        writeln!(stdout, "{}", line.trim_end())?;
    }
    Ok(())
}
