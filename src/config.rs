//! Typed configuration from the environment (the seed's settings), shared by the CLI and
//! the Lambda functions. Bad values are errors, never panics or silent defaults.

use std::time::Duration;

use thiserror::Error;

/// A configuration variable with a bad value.
#[derive(Debug, Error)]
#[error("{name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// Default part size: 8 MiB.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// R2/S3 minimum part size: 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// R2/S3 maximum part size: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// Dump tuning from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `DUMP_CHUNK_SIZE`: rows per read slice (default 1000, 1..=100000).
    pub chunk_size: u32,
    /// `DUMP_BREATHING_INTERVAL`: pause between chunks (ms, default 5000, at most 1 h).
    pub breathing: Duration,
    /// `MAX_EXECUTION_TIME`: time budget of a chunk (ms, default 25000, at most 15 min).
    pub max_execution: Duration,
    /// `CHUNKDUMP_CHUNKS_PER_EXECUTION`: chunks before the state machine continues as a
    /// new execution (default 1000, 1..=2000; see `tasks::DEFAULT_CHUNKS_PER_EXECUTION`).
    pub chunks_per_execution: u32,
    /// `DUMP_SNAPSHOT`: dump a point-in-time copy by default (`true`/`false`, default false).
    pub snapshot: bool,
    /// `CHUNKDUMP_SNAPSHOT_DIR`: where snapshot copies go (default: beside the local
    /// output; required in AWS, a directory on the EFS mount).
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// `CHUNKDUMP_UPLOAD_CONCURRENCY`: part uploads in flight at once (default 4, 1..=32).
    /// Memory grows by one part size per extra upload.
    pub upload_concurrency: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            chunk_size: 1000,
            breathing: Duration::from_millis(5000),
            max_execution: Duration::from_millis(25000),
            chunks_per_execution: 1000,
            snapshot: false,
            snapshot_dir: None,
            upload_concurrency: crate::uploader::DEFAULT_UPLOAD_CONCURRENCY as u32,
        }
    }
}

fn boolean(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<bool, ConfigError> {
    match lookup(name).as_deref().map(str::trim) {
        None => Ok(false),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(ConfigError {
            name,
            value: other.to_string(),
            reason: "expected true or false".into(),
        }),
    }
}

fn number(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(raw) = lookup(name) else {
        return Ok(default);
    };
    let err = |reason: String| ConfigError {
        name,
        value: raw.clone(),
        reason,
    };
    let v: u64 = raw
        .trim()
        .parse()
        .map_err(|_| err("not a whole number".into()))?;
    if !range.contains(&v) {
        return Err(err(format!(
            "must be between {} and {}",
            range.start(),
            range.end()
        )));
    }
    Ok(v)
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads variables through `lookup` (for tests and other sources).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Config {
            chunk_size: number(lookup, "DUMP_CHUNK_SIZE", 1000, 1..=100_000)? as u32,
            breathing: Duration::from_millis(number(
                lookup,
                "DUMP_BREATHING_INTERVAL",
                5000,
                0..=3_600_000,
            )?),
            max_execution: Duration::from_millis(number(
                lookup,
                "MAX_EXECUTION_TIME",
                25000,
                0..=900_000,
            )?),
            chunks_per_execution: number(lookup, "CHUNKDUMP_CHUNKS_PER_EXECUTION", 1000, 1..=2000)?
                as u32,
            snapshot: boolean(lookup, "DUMP_SNAPSHOT")?,
            snapshot_dir: lookup("CHUNKDUMP_SNAPSHOT_DIR").map(std::path::PathBuf::from),
            upload_concurrency: number(
                lookup,
                "CHUNKDUMP_UPLOAD_CONCURRENCY",
                crate::uploader::DEFAULT_UPLOAD_CONCURRENCY as u64,
                1..=32,
            )? as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        assert_eq!(Config::from_lookup(&|_| None).unwrap(), Config::default());
        let c =
            Config::from_lookup(&|n| (n == "DUMP_CHUNK_SIZE").then(|| "50".to_string())).unwrap();
        assert_eq!(c.chunk_size, 50);
        let e = Config::from_lookup(&|n| (n == "MAX_EXECUTION_TIME").then(|| "soon".to_string()))
            .unwrap_err();
        assert_eq!(e.name, "MAX_EXECUTION_TIME");
        let e = Config::from_lookup(&|n| (n == "DUMP_CHUNK_SIZE").then(|| "0".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("between 1 and 100000"), "{e}");
    }
}
