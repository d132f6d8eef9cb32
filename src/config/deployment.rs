//! Settings of a deployment (the API, callbacks, the Lambda functions) and its secrets.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Env, DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};

/// The deployment's secrets: R2's endpoint and API token, the API bearer tokens and the
/// callback signing secret. In AWS they are one Secrets Manager secret (this JSON
/// object, see `cloud::load_secrets`); locally the same values come from the
/// environment. Every field is optional: a deployment without R2 uses the role's S3,
/// one without callbacks leaves `callbackSecret` out.
#[derive(Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secrets {
    pub r2_endpoint: Option<String>,
    pub r2_access_key_id: Option<String>,
    pub r2_secret_access_key: Option<String>,
    pub api_token: Option<String>,
    pub api_read_token: Option<String>,
    pub callback_secret: Option<String>,
    /// The key manifests are signed with (`signingKey`), for a deployment that keeps it
    /// in its secret rather than in `CHUNKDUMP_SIGNING_KEY` (see [`super::SigningKey`]).
    pub signing_key: Option<String>,
}

impl std::fmt::Debug for Secrets {
    // Never print a secret value, only which ones are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("r2_endpoint", &self.r2_endpoint)
            .field("r2_access_key_id", &self.r2_access_key_id.is_some())
            .field("api_token", &self.api_token.is_some())
            .field("callback_secret", &self.callback_secret.is_some())
            .field("signing_key", &self.signing_key.is_some())
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Takes every field `other` sets; returns the wire names of those fields, so a
    /// caller merging several secrets can refuse a field set twice.
    pub fn merge(&mut self, other: Secrets) -> Vec<&'static str> {
        let mut taken = Vec::new();
        let mut take = |mine: &mut Option<String>, theirs: Option<String>, name: &'static str| {
            if theirs.is_some() {
                *mine = theirs;
                taken.push(name);
            }
        };
        take(&mut self.r2_endpoint, other.r2_endpoint, "r2Endpoint");
        take(
            &mut self.r2_access_key_id,
            other.r2_access_key_id,
            "r2AccessKeyId",
        );
        take(
            &mut self.r2_secret_access_key,
            other.r2_secret_access_key,
            "r2SecretAccessKey",
        );
        take(&mut self.api_token, other.api_token, "apiToken");
        take(
            &mut self.api_read_token,
            other.api_read_token,
            "apiReadToken",
        );
        take(
            &mut self.callback_secret,
            other.callback_secret,
            "callbackSecret",
        );
        take(&mut self.signing_key, other.signing_key, "signingKey");
        taken
    }

    /// From `R2_ENDPOINT`, `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY`,
    /// `CHUNKDUMP_API_TOKEN`, `CHUNKDUMP_API_READ_TOKEN` and `CHUNKDUMP_CALLBACK_SECRET`.
    pub fn read(env: &Env) -> Self {
        Secrets {
            r2_endpoint: env.get("R2_ENDPOINT"),
            r2_access_key_id: env.get("R2_ACCESS_KEY_ID"),
            r2_secret_access_key: env.get("R2_SECRET_ACCESS_KEY"),
            api_token: env.get("CHUNKDUMP_API_TOKEN"),
            api_read_token: env.get("CHUNKDUMP_API_READ_TOKEN"),
            callback_secret: env.get("CHUNKDUMP_CALLBACK_SECRET"),
            // `CHUNKDUMP_SIGNING_KEY` is read with the dump settings (`Config`).
            signing_key: None,
        }
    }
}

/// The HTTP API's settings besides its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `CHUNKDUMP_PART_SIZE`: multipart part size of the dumps it starts (bytes, default
    /// 8 MiB, 5 MiB..=5 GiB).
    pub part_size: u64,
    /// `CHUNKDUMP_RATE_LIMIT_STARTS`: starts allowed per token per window (default 20).
    pub rate_limit_starts: u64,
    /// `CHUNKDUMP_RATE_LIMIT_WINDOW_SECONDS`: the window (default 3600 s).
    pub rate_limit_window: Duration,
    /// Lifetime of presigned download URLs (15 minutes).
    pub download_expiry: Duration,
    /// `CHUNKDUMP_FLEET_CONCURRENCY`: a fleet's dumps running at once (default 10).
    pub fleet_concurrency: u32,
    /// `CHUNKDUMP_FLEET_POLL_MS`: how often a fleet looks at a running dump (default
    /// 10,000 ms; each look is three state transitions in AWS).
    pub fleet_poll: Duration,
}

impl ApiConfig {
    /// Reads the API's settings from `env`.
    pub fn read(env: &Env) -> Result<Self, ConfigError> {
        Ok(ApiConfig {
            part_size: env.number(
                "CHUNKDUMP_PART_SIZE",
                DEFAULT_PART_SIZE,
                MIN_PART_SIZE..=MAX_PART_SIZE,
            )?,
            rate_limit_starts: env.number(
                "CHUNKDUMP_RATE_LIMIT_STARTS",
                20,
                1..=u32::MAX as u64,
            )?,
            rate_limit_window: Duration::from_secs(env.number(
                "CHUNKDUMP_RATE_LIMIT_WINDOW_SECONDS",
                3600,
                1..=31 * 24 * 3600,
            )?),
            download_expiry: Duration::from_secs(15 * 60),
            fleet_concurrency: env.number("CHUNKDUMP_FLEET_CONCURRENCY", 10, 1..=10_000)? as u32,
            fleet_poll: Duration::from_millis(env.number(
                "CHUNKDUMP_FLEET_POLL_MS",
                10_000,
                1..=3_600_000,
            )?),
        })
    }
}

/// Limits of `chunkdump serve`'s HTTP listener, against slow or many idle clients
/// (slowloris). In AWS, API Gateway stands in front of the API function instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerConfig {
    /// `CHUNKDUMP_HTTP_HEADER_TIMEOUT_SECONDS`: a connection must send a request's
    /// headers within this time (default 10 s), or it is closed.
    pub header_timeout: Duration,
    /// `CHUNKDUMP_HTTP_REQUEST_TIMEOUT_SECONDS`: a request (body included) is answered
    /// within this time or gets a 408 (default 30 s).
    pub request_timeout: Duration,
    /// `CHUNKDUMP_HTTP_MAX_CONNECTIONS`: connections open at once (default 256); more are
    /// closed as they arrive.
    pub max_connections: usize,
    /// `CHUNKDUMP_HTTP_MAX_CONNECTIONS_PER_CLIENT`: connections open at once from one
    /// client address (an IPv6 /64 counts as one; default 16), so one client's idle
    /// sockets cannot fill the total and keep the others out.
    pub max_connections_per_client: usize,
}

impl ListenerConfig {
    /// Reads the listener's limits from `env`.
    pub fn read(env: &Env) -> Result<Self, ConfigError> {
        Ok(ListenerConfig {
            header_timeout: Duration::from_secs(env.number(
                "CHUNKDUMP_HTTP_HEADER_TIMEOUT_SECONDS",
                10,
                1..=3600,
            )?),
            request_timeout: Duration::from_secs(env.number(
                "CHUNKDUMP_HTTP_REQUEST_TIMEOUT_SECONDS",
                30,
                1..=3600,
            )?),
            max_connections: env.number("CHUNKDUMP_HTTP_MAX_CONNECTIONS", 256, 1..=100_000)?
                as usize,
            max_connections_per_client: env.number(
                "CHUNKDUMP_HTTP_MAX_CONNECTIONS_PER_CLIENT",
                16,
                1..=100_000,
            )? as usize,
        })
    }
}

/// How completion callbacks are delivered (their signing secret is in [`Secrets`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackConfig {
    /// `CHUNKDUMP_CALLBACK_ALLOW_HOSTS`: hosts that may resolve to internal addresses
    /// (comma-separated; local development and tests).
    pub allow_hosts: Vec<String>,
    /// `CHUNKDUMP_PUBLIC_URL`: makes a callback's `downloadUrl` absolute.
    pub public_url: Option<String>,
    /// `CHUNKDUMP_CALLBACK_CA_FILE`: a PEM certificate to trust besides the public roots.
    pub ca_file: Option<PathBuf>,
}

impl CallbackConfig {
    /// Reads the callback settings from `env`.
    pub fn read(env: &Env) -> Self {
        CallbackConfig {
            allow_hosts: env
                .get("CHUNKDUMP_CALLBACK_ALLOW_HOSTS")
                .unwrap_or_default()
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            public_url: env.get("CHUNKDUMP_PUBLIC_URL"),
            ca_file: env.get("CHUNKDUMP_CALLBACK_CA_FILE").map(PathBuf::from),
        }
    }

    /// The extra CA certificate's PEM, if one is configured.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        self.ca_file
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|e| ConfigError::Unusable {
                    what: format!("CHUNKDUMP_CALLBACK_CA_FILE {}", path.display()),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }
}

/// Where the Lambda functions find their stores, secret, database and state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// `CHUNKDUMP_STORE`: `s3://BUCKET/PREFIX` (R2 through its S3 endpoint).
    pub store: String,
    /// `CHUNKDUMP_PROGRESS`: `dynamodb://TABLE`.
    pub progress: String,
    /// `CHUNKDUMP_SECRET_ARN`: the deployment's secrets, comma-separated (the template
    /// gives each function only the ones it uses); without any, [`Secrets`] come from
    /// the environment.
    pub secret_arns: Vec<String>,
    /// `CHUNKDUMP_DATABASE`: the SQLite file on the EFS mount (the API function).
    pub database: Option<String>,
    /// `CHUNKDUMP_DATABASE_ROOT`: a directory of databases on the EFS mount, which a
    /// start may name (the API function).
    pub database_root: Option<String>,
    /// `CHUNKDUMP_STATE_MACHINE_ARN`: the dump state machine (the API function).
    pub state_machine_arn: Option<String>,
    /// `CHUNKDUMP_FLEET_STATE_MACHINE_ARN`: the fleet state machine (the API function,
    /// with a database root).
    pub fleet_state_machine_arn: Option<String>,
}

impl Deployment {
    /// Reads the deployment's locations from `env`; the store and the progress table
    /// are required.
    pub fn read(env: &Env) -> Result<Self, ConfigError> {
        Ok(Deployment {
            store: env.required(
                "CHUNKDUMP_STORE",
                "where dump files go (s3://BUCKET/PREFIX)",
            )?,
            progress: env.required(
                "CHUNKDUMP_PROGRESS",
                "where job records go (dynamodb://TABLE)",
            )?,
            secret_arns: Self::secret_ids(env),
            database: env.get("CHUNKDUMP_DATABASE"),
            database_root: env.get("CHUNKDUMP_DATABASE_ROOT"),
            state_machine_arn: env.get("CHUNKDUMP_STATE_MACHINE_ARN"),
            fleet_state_machine_arn: env.get("CHUNKDUMP_FLEET_STATE_MACHINE_ARN"),
        })
    }

    /// `CHUNKDUMP_SECRET_ARN`'s secrets (comma-separated ARNs or names).
    pub fn secret_ids(env: &Env) -> Vec<String> {
        env.get("CHUNKDUMP_SECRET_ARN")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the API function dumps: the one database, the root of several, or both; one
    /// of them is required.
    pub fn databases(&self) -> Result<(Option<&str>, Option<&str>), ConfigError> {
        match (self.database.as_deref(), self.database_root.as_deref()) {
            (None, None) => Err(ConfigError::Missing {
                name: "CHUNKDUMP_DATABASE",
                needed_for: "the API function dumps this SQLite file (or set CHUNKDUMP_DATABASE_ROOT, a directory of databases)",
            }),
            found => Ok(found),
        }
    }

    /// The state machine the API function starts (`CHUNKDUMP_STATE_MACHINE_ARN`).
    pub fn state_machine_arn(&self) -> Result<&str, ConfigError> {
        self.state_machine_arn
            .as_deref()
            .ok_or(ConfigError::Missing {
                name: "CHUNKDUMP_STATE_MACHINE_ARN",
                needed_for: "the API function starts dumps on this state machine",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> Env<'a> {
        Env::from_fn(move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn api_settings_have_defaults_and_name_bad_values() {
        let api = ApiConfig::read(&env(&[])).unwrap();
        assert_eq!(
            (api.part_size, api.rate_limit_starts),
            (DEFAULT_PART_SIZE, 20)
        );
        let e = ApiConfig::read(&env(&[("CHUNKDUMP_PART_SIZE", "1024")])).unwrap_err();
        assert_eq!(e.name(), "CHUNKDUMP_PART_SIZE");
        let e = ApiConfig::read(&env(&[("CHUNKDUMP_RATE_LIMIT_STARTS", "many")])).unwrap_err();
        assert!(e.to_string().contains("not a whole number"), "{e}");
    }

    #[test]
    fn deployments_need_a_store_and_a_progress_table() {
        let e = Deployment::read(&env(&[("CHUNKDUMP_STORE", "s3://b")])).unwrap_err();
        assert_eq!(e.name(), "CHUNKDUMP_PROGRESS");
        let d = Deployment::read(&env(&[
            ("CHUNKDUMP_STORE", "s3://b"),
            ("CHUNKDUMP_PROGRESS", "dynamodb://t"),
            ("CHUNKDUMP_SECRET_ARN", ""),
        ]))
        .unwrap();
        assert!(d.secret_arns.is_empty(), "empty counts as unset");
        let d = Deployment::read(&env(&[
            ("CHUNKDUMP_STORE", "s3://b"),
            ("CHUNKDUMP_PROGRESS", "dynamodb://t"),
            ("CHUNKDUMP_SECRET_ARN", "arn:a, arn:b,"),
        ]))
        .unwrap();
        assert_eq!(d.secret_arns, ["arn:a", "arn:b"]);
        assert_eq!(d.databases().unwrap_err().name(), "CHUNKDUMP_DATABASE");
    }

    #[test]
    fn callback_hosts_are_a_trimmed_lowercase_list() {
        let c = CallbackConfig::read(&env(&[(
            "CHUNKDUMP_CALLBACK_ALLOW_HOSTS",
            " LocalHost, ,hooks.internal ",
        )]));
        assert_eq!(c.allow_hosts, ["localhost", "hooks.internal"]);
        let missing = CallbackConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(missing
            .ca_pem()
            .unwrap_err()
            .to_string()
            .contains("CHUNKDUMP_CALLBACK_CA_FILE"));
    }
}
