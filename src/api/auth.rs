//! Bearer tokens: the accepted ones (refreshed from the deployment's secret), and how a
//! given token is checked. Tokens are compared in constant time (over SHA-256 digests,
//! so lengths leak nothing either) and never logged. The router's middleware
//! (`app::require_token`) checks every request with them.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use crate::config::{ConfigError, Secrets};

/// The digests of the accepted tokens.
#[derive(Clone, Copy)]
struct Digests {
    admin: [u8; 32],
    read_only: Option<[u8; 32]>,
}

/// Fresh tokens on demand (the deployment secret, read again).
pub type TokenLoader =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Tokens, ConfigError>> + Send + Sync>;

/// How often, at most, a refreshing [`Tokens`] reads its source again.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// The accepted tokens: an admin token (everything) and an optional read-only token
/// (status, list, download). Where they come from a secret that can be rotated, they are
/// read again once [`TOKEN_TTL`] has passed ([`Tokens::refreshing`]), so a rotated-out
/// token stops working within a minute on a warm Lambda instance too.
#[derive(Clone)]
pub struct Tokens {
    current: Arc<RwLock<Digests>>,
    refresh: Option<Arc<Refresh>>,
}

struct Refresh {
    loader: TokenLoader,
    ttl: Duration,
    /// When to read the source again (one reader at a time).
    due: tokio::sync::Mutex<Instant>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

pub(super) fn digest(token: &str) -> [u8; 32] {
    // (also names the caller for rate limits, so the token itself is never stored)
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// The tokens of a deployment's secrets (`CHUNKDUMP_API_TOKEN` and
    /// `CHUNKDUMP_API_READ_TOKEN` locally); without an admin token the API refuses to start.
    pub fn from_secrets(secrets: &Secrets) -> Result<Self, ConfigError> {
        let admin = secrets.api_token.as_deref().ok_or(ConfigError::Missing {
            name: "CHUNKDUMP_API_TOKEN",
            needed_for: "nor is the deployment secret's apiToken; refusing to serve the API unauthenticated",
        })?;
        Tokens::new(admin, secrets.api_read_token.as_deref())
    }

    /// Refuses empty tokens: the API never runs unauthenticated.
    pub fn new(admin: &str, read_only: Option<&str>) -> Result<Self, ConfigError> {
        if admin.trim().is_empty() || read_only.is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::Unusable {
                what: "API tokens".into(),
                reason: "they must not be empty".into(),
            });
        }
        Ok(Tokens {
            current: Arc::new(RwLock::new(Digests {
                admin: digest(admin),
                read_only: read_only.map(digest),
            })),
            refresh: None,
        })
    }

    /// These tokens, read again from `loader` once `ttl` has passed since the last read
    /// (see [`Tokens::refresh_if_due`]).
    pub fn refreshing(mut self, ttl: Duration, loader: TokenLoader) -> Self {
        self.refresh = Some(Arc::new(Refresh {
            loader,
            ttl,
            due: tokio::sync::Mutex::new(Instant::now() + ttl),
        }));
        self
    }

    /// Reads the tokens again if their time is up. A failed read keeps the current tokens
    /// (a Secrets Manager hiccup must not lock every caller out) and is logged, without
    /// any token, to be tried again after the next `ttl`.
    pub async fn refresh_if_due(&self) {
        let Some(refresh) = &self.refresh else {
            return;
        };
        let mut due = refresh.due.lock().await;
        if Instant::now() < *due {
            return;
        }
        match (refresh.loader)().await {
            Ok(fresh) => {
                let digests = fresh.digests();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = digests;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the API tokens again; keeping the current ones")
            }
        }
        *due = Instant::now() + refresh.ttl;
    }

    fn digests(&self) -> Digests {
        *self.current.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The token of an `Authorization: Bearer …` header value. The scheme's name is
/// case-insensitive (RFC 7235 §2.1: `BEARER`, `bearer` and `Bearer` are one scheme),
/// followed by one or more spaces.
pub(super) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether an `Authorization` header value carries an accepted token (admin or read-only),
/// compared as the API compares it. The API Gateway authorizer answers with this, so a
/// request without a valid token never reaches the API function; the API still checks
/// every request itself (and tells read-only tokens from admin ones).
pub fn admits(tokens: &Tokens, authorization: Option<&str>) -> bool {
    authorization
        .and_then(bearer)
        .is_some_and(|given| check(tokens, given).is_some())
}

pub(super) enum Access {
    Admin,
    ReadOnly,
}

pub(super) fn check(tokens: &Tokens, given: &str) -> Option<Access> {
    let tokens = tokens.digests();
    let d = digest(given);
    let admin = bool::from(d.ct_eq(&tokens.admin));
    let read = tokens.read_only.is_some_and(|r| bool::from(d.ct_eq(&r)));
    if admin {
        Some(Access::Admin)
    } else if read {
        Some(Access::ReadOnly)
    } else {
        None
    }
}
