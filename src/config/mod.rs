//! Settings, read in one place: every environment variable chunkdump reads is read
//! through [`Env`], and every bad value is a [`ConfigError`] naming the variable (never a
//! panic, a silent default or an HTTP-400 idea).
//!
//! | variable | used by | meaning |
//! | --- | --- | --- |
//! | `DUMP_CHUNK_SIZE`, `DUMP_BREATHING_INTERVAL`, `MAX_EXECUTION_TIME`, `DUMP_SNAPSHOT` | all | the original request's dump settings ([`Config`]) |
//! | `CHUNKDUMP_CHUNKS_PER_EXECUTION`, `CHUNKDUMP_SNAPSHOT_DIR`, `CHUNKDUMP_UPLOAD_CONCURRENCY`, `CHUNKDUMP_DOWNLOAD_CONCURRENCY`, `CHUNKDUMP_MAX_STATEMENT_BYTES` | all | more dump tuning ([`Config`]) |
//! | `CHUNKDUMP_API_TOKEN`, `CHUNKDUMP_API_READ_TOKEN` | API | bearer tokens ([`Secrets`]; in AWS from the deployment secret) |
//! | `CHUNKDUMP_RATE_LIMIT_STARTS`, `CHUNKDUMP_RATE_LIMIT_WINDOW_SECONDS`, `CHUNKDUMP_PART_SIZE` | API | [`ApiConfig`] |
//! | `CHUNKDUMP_CALLBACK_SECRET` | API, chunk | callback signing secret ([`Secrets`]) |
//! | `CHUNKDUMP_CALLBACK_ALLOW_HOSTS`, `CHUNKDUMP_PUBLIC_URL`, `CHUNKDUMP_CALLBACK_CA_FILE` | API, chunk | [`CallbackConfig`] |
//! | `CHUNKDUMP_STORE`, `CHUNKDUMP_PROGRESS`, `CHUNKDUMP_SECRET_ARN`, `CHUNKDUMP_DATABASE`, `CHUNKDUMP_STATE_MACHINE_ARN` | Lambda | [`Deployment`] |
//! | `R2_ENDPOINT`, `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY` | Lambda, CLI | R2 access without a deployment secret ([`Secrets`], [`r2_keys`]) |
//! | `CHUNKDUMP_SIGNING_KEY`, `CHUNKDUMP_SIGNING_KEY_FILE` | all | the manifests' signing key ([`SigningKey`]) |
//! | `XDG_STATE_HOME`, `HOME` | CLI | where the CLI keeps progress files ([`state_dir`]) |
//! | `RUST_LOG` | CLI | the log filter ([`log_filter`]) |
//!
//! Naming: the original request's names (`DUMP_*`, `MAX_EXECUTION_TIME`) stay as they
//! are; chunkdump's own settings are `CHUNKDUMP_*`; R2's credentials are `R2_*`, as in
//! Cloudflare's documentation.

mod deployment;
mod local;
mod signing;

use std::time::Duration;

use thiserror::Error;

use crate::model::SliceRows;

pub use deployment::{ApiConfig, CallbackConfig, Deployment, ListenerConfig, Secrets};
pub use local::{log_filter, r2_keys, state_dir, R2Keys};
pub use signing::SigningKey;

/// A setting that is missing or has a bad value.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A variable's value is not acceptable.
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    /// A required variable is not set.
    #[error("{name} is not set: {needed_for}")]
    Missing {
        name: &'static str,
        needed_for: &'static str,
    },
    /// A setting from elsewhere (the deployment secret, a file it names) is unusable;
    /// the message never contains a secret value.
    #[error("{what}: {reason}")]
    Unusable { what: String, reason: String },
}

impl ConfigError {
    /// The variable (or setting) at fault.
    pub fn name(&self) -> &str {
        match self {
            ConfigError::Invalid { name, .. } | ConfigError::Missing { name, .. } => name,
            ConfigError::Unusable { what, .. } => what,
        }
    }
}

/// Where settings are looked up: the process environment, or a function in tests. The
/// one place chunkdump reads its environment; empty values count as unset.
pub struct Env<'a> {
    lookup: Box<Lookup<'a>>,
}

/// A source of settings: the value of a variable, if set.
type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

impl Env<'static> {
    /// The process environment.
    pub fn process() -> Self {
        Env::from_fn(|name| std::env::var(name).ok())
    }
}

impl<'a> Env<'a> {
    /// Settings from `lookup` (tests, other sources).
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Env {
            lookup: Box::new(lookup),
        }
    }

    /// The value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.is_empty())
    }

    /// The value of `name`, which must be set (`needed_for` says why).
    pub fn required(
        &self,
        name: &'static str,
        needed_for: &'static str,
    ) -> Result<String, ConfigError> {
        self.get(name)
            .ok_or(ConfigError::Missing { name, needed_for })
    }

    /// `true`/`1` or `false`/`0`; false when unset.
    pub fn boolean(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).as_deref().map(str::trim) {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ConfigError::Invalid {
                name,
                value: other.to_string(),
                reason: "expected true or false".into(),
            }),
        }
    }

    /// A whole number in `range`; `default` when unset.
    pub fn number(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        let err = |reason: String| ConfigError::Invalid {
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
}

/// Chunks per execution before continuing as a new one. Each chunk adds about 9 history
/// events (Task 5, Choice 2, Wait 2) and each retry about 3, so 1,000 chunks stay far
/// below Step Functions' 25,000-event limit even with many retries.
pub const DEFAULT_CHUNKS_PER_EXECUTION: u32 = 1000;

/// Default number of part uploads in flight (`CHUNKDUMP_UPLOAD_CONCURRENCY`): enough to
/// hide a distant store's round trips, while memory stays under 64 MiB with 8 MiB parts.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;
/// Default number of 1 MiB ranges a restore (and verify) fetches at once
/// (`CHUNKDUMP_DOWNLOAD_CONCURRENCY`).
pub const DEFAULT_DOWNLOAD_CONCURRENCY: usize = 4;
/// Default part size: 8 MiB.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// R2/S3 minimum part size: 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// R2/S3 maximum part size: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// The default of [`Config::max_statement_bytes`]: 192 MiB, so that a restore or verify
/// of a tampered dump, which may hold one statement this long before refusing it, stays
/// under 256 MiB of memory with everything else it holds (256 MiB was itself 282 MB).
pub const DEFAULT_MAX_STATEMENT_BYTES: u64 = 192 << 20;

/// Dump tuning from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `DUMP_CHUNK_SIZE`: rows per read slice (default 1000, 1..=100000).
    pub slice_rows: SliceRows,
    /// `DUMP_BREATHING_INTERVAL`: pause between chunks (ms, default 5000, at most 1 h).
    pub breathing: Duration,
    /// `MAX_EXECUTION_TIME`: time budget of a chunk (ms, default 25000, at most 15 min).
    pub budget: Duration,
    /// `CHUNKDUMP_CHUNKS_PER_EXECUTION`: chunks before the state machine continues as a
    /// new execution (default 1000, 1..=2000; see [`DEFAULT_CHUNKS_PER_EXECUTION`]).
    pub chunks_per_execution: u32,
    /// `DUMP_SNAPSHOT`: dump a point-in-time copy by default (`true`/`false`, default false).
    pub snapshot: bool,
    /// `CHUNKDUMP_SNAPSHOT_DIR`: where snapshot copies go (default: beside the local
    /// output; required in AWS, a directory on the EFS mount).
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// `CHUNKDUMP_UPLOAD_CONCURRENCY`: part uploads in flight at once (default 4, 1..=32).
    /// Memory grows by one part size per extra upload.
    pub upload_concurrency: u32,
    /// `CHUNKDUMP_DOWNLOAD_CONCURRENCY`: 1 MiB ranges `restore` fetches at once from
    /// S3/R2 (default 4, 1..=32). Memory grows by 1 MiB per extra range.
    pub download_concurrency: u32,
    /// `CHUNKDUMP_MAX_STATEMENT_BYTES`: the longest statement (one row of an SQL dump) a
    /// restore or verify holds in memory (default 192 MiB, 1 MiB..=4 GiB); a longer one
    /// is refused, so a tampered or decompression-bomb dump cannot exhaust memory.
    pub max_statement_bytes: u64,
    /// `CHUNKDUMP_SIGNING_KEY` (or the file `CHUNKDUMP_SIGNING_KEY_FILE` names): the key
    /// every manifest is signed with when written, and checked with when read.
    pub signing_key: Option<SigningKey>,
    /// `CHUNKDUMP_DRILL_DIR`: where restore drills make their scratch databases (default:
    /// the system's temporary directory, `/tmp` in Lambda, whose ephemeral storage the
    /// template sizes for drills).
    pub drill_dir: std::path::PathBuf,
    /// `CHUNKDUMP_RECIPIENTS`: age public keys (`age1…`, separated by commas or spaces)
    /// every dump is encrypted to unless a command names its own (see
    /// `crate::encryption`); empty: dumps are not encrypted. Public keys, not secrets.
    pub recipients: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            slice_rows: SliceRows::DEFAULT,
            breathing: Duration::from_millis(5000),
            budget: Duration::from_millis(25000),
            chunks_per_execution: DEFAULT_CHUNKS_PER_EXECUTION,
            snapshot: false,
            snapshot_dir: None,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY as u32,
            download_concurrency: DEFAULT_DOWNLOAD_CONCURRENCY as u32,
            max_statement_bytes: DEFAULT_MAX_STATEMENT_BYTES,
            signing_key: None,
            drill_dir: std::env::temp_dir(),
            recipients: Vec::new(),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&Env::process())
    }

    /// Reads variables through `lookup` (for tests and other sources).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(&Env::from_fn(lookup))
    }

    /// Reads the dump settings from `env`.
    pub fn read(env: &Env) -> Result<Self, ConfigError> {
        Ok(Config {
            slice_rows: {
                let n = env.number(
                    "DUMP_CHUNK_SIZE",
                    u64::from(SliceRows::DEFAULT.get()),
                    1..=u64::from(SliceRows::MAX),
                )?;
                SliceRows::new(n as u32).map_err(|e| ConfigError::Invalid {
                    name: "DUMP_CHUNK_SIZE",
                    value: n.to_string(),
                    reason: e.message,
                })?
            },
            breathing: Duration::from_millis(env.number(
                "DUMP_BREATHING_INTERVAL",
                5000,
                0..=3_600_000,
            )?),
            budget: Duration::from_millis(env.number("MAX_EXECUTION_TIME", 25000, 0..=900_000)?),
            chunks_per_execution: env.number(
                "CHUNKDUMP_CHUNKS_PER_EXECUTION",
                u64::from(DEFAULT_CHUNKS_PER_EXECUTION),
                1..=2000,
            )? as u32,
            snapshot: env.boolean("DUMP_SNAPSHOT")?,
            snapshot_dir: env
                .get("CHUNKDUMP_SNAPSHOT_DIR")
                .map(std::path::PathBuf::from),
            upload_concurrency: env.number(
                "CHUNKDUMP_UPLOAD_CONCURRENCY",
                DEFAULT_UPLOAD_CONCURRENCY as u64,
                1..=32,
            )? as u32,
            max_statement_bytes: env.number(
                "CHUNKDUMP_MAX_STATEMENT_BYTES",
                DEFAULT_MAX_STATEMENT_BYTES,
                1 << 20..=4 << 30,
            )?,
            signing_key: SigningKey::read(env)?,
            download_concurrency: env.number(
                "CHUNKDUMP_DOWNLOAD_CONCURRENCY",
                DEFAULT_DOWNLOAD_CONCURRENCY as u64,
                1..=32,
            )? as u32,
            drill_dir: env
                .get("CHUNKDUMP_DRILL_DIR")
                .map_or_else(std::env::temp_dir, std::path::PathBuf::from),
            recipients: read_recipients(env)?,
        })
    }
}

/// `CHUNKDUMP_RECIPIENTS`, each key checked (in canonical form).
fn read_recipients(env: &Env) -> Result<Vec<String>, ConfigError> {
    let Some(value) = env.get("CHUNKDUMP_RECIPIENTS") else {
        return Ok(Vec::new());
    };
    let keys: Vec<String> = value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    if keys.is_empty() {
        return Ok(keys);
    }
    crate::encryption::Recipients::parse(&keys)
        .map(|r| r.to_strings())
        .map_err(|e| ConfigError::Invalid {
            name: "CHUNKDUMP_RECIPIENTS",
            value,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        assert_eq!(Config::from_lookup(&|_| None).unwrap(), Config::default());
        let c =
            Config::from_lookup(&|n| (n == "DUMP_CHUNK_SIZE").then(|| "50".to_string())).unwrap();
        assert_eq!(c.slice_rows.get(), 50);
        let e = Config::from_lookup(&|n| (n == "MAX_EXECUTION_TIME").then(|| "soon".to_string()))
            .unwrap_err();
        assert_eq!(e.name(), "MAX_EXECUTION_TIME");
        let e = Config::from_lookup(&|n| (n == "DUMP_CHUNK_SIZE").then(|| "0".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("between 1 and 100000"), "{e}");
    }
}
