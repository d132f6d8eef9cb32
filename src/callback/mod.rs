//! Completion callbacks: a signed POST to the caller's HTTPS URL when a dump completes
//! or fails.
//!
//! Guarded against server-side request forgery: HTTPS only, no credentials in the URL,
//! the host is resolved and refused if any address is internal (loopback, private,
//! link-local, the cloud metadata address, CGNAT, ULA, …) unless the host is explicitly
//! allowed (local development, tests); the connection is pinned to the addresses that
//! were checked (no DNS rebinding), no proxy is used (a proxy would connect to whatever
//! the name resolves to then) and redirects are not followed.
//!
//! A callback URL's path and query often carry a secret: logs and `lastError` name its
//! origin (`https://host:port`) only.
//!
//! Signature: `X-Chunkdump-Timestamp: <unix seconds>` and
//! `X-Chunkdump-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.

pub mod sealed;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{CallbackConfig, ConfigError};
use crate::error::CallbackError;
use crate::model::JobRecord;
use crate::ports::CallbackSender;
use crate::views::CallbackBody;

/// Why a callback URL is refused (a 400 naming `callbackUrl` at start, a failed attempt
/// at delivery: the host may have moved to an internal address since).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RefusedUrl(pub String);

/// Why one delivery attempt failed (recorded as the callback's `lastError`).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Refused(#[from] RefusedUrl),
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("request to {origin} failed: {cause}")]
    Request { origin: String, cause: String },
    #[error("{origin} answered {status}")]
    Answered {
        origin: String,
        status: reqwest::StatusCode,
    },
}

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// `https://host[:port]` of a URL: what may be logged or shown of it (never its path or
/// query, which often hold a token).
pub fn origin_of(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(url) => url.origin().ascii_serialization(),
        Err(_) => "(an invalid URL)".into(),
    }
}

/// A request error with its causes (DNS, TLS, refused, …), without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// How callbacks are checked, signed and delivered.
#[derive(Clone)]
pub struct Notifier {
    secret: Vec<u8>,
    allow_hosts: Vec<String>,
    public_url: Option<String>,
    extra_root: Option<reqwest::Certificate>,
    /// Pauses before the 2nd, 3rd, … attempt.
    pub retry_delays: Vec<Duration>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("allow_hosts", &self.allow_hosts)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// Whether an address must never receive a callback.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, ..] = a.octets();
            a.is_loopback() || a.is_private() || a.is_link_local() || a.is_unspecified() || a.is_broadcast() || a.is_multicast()
                || a.is_documentation() || o0 == 0 || o0 >= 240
                || (o0 == 100 && (o1 & 0xc0) == 64) // carrier-grade NAT
                || (o0 == 198 && (o1 & 0xfe) == 18) // benchmarking
                || (o0 == 192 && o1 == 0) // IETF protocol assignments
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            let internal_v4 = |ip: Ipv4Addr| is_internal(IpAddr::V4(ip));
            a.is_loopback() || a.is_unspecified() || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, includes fd00:ec2::254
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || a.to_ipv4_mapped().is_some_and(internal_v4)
                || (s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible
                // IPv4-translated (SIIT, ::ffff:0:a.b.c.d): translators reach the IPv4
                // address; never a public destination of its own.
                || (s[..6] == [0, 0, 0, 0, 0xffff, 0])
                // NAT64 (well-known prefix) reaches the IPv4 address in its last 32 bits;
                // the local-use prefix 64:ff9b:1::/48 is internal by definition.
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && internal_v4(v4(s[6], s[7])))
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                // 6to4 carries its IPv4 address in bits 16..48.
                || (s[0] == 0x2002 && internal_v4(v4(s[1], s[2])))
                // Teredo: the server's IPv4 address, and the client's (inverted).
                || (s[0] == 0x2001 && s[1] == 0
                    && (internal_v4(v4(s[2], s[3])) || internal_v4(v4(!s[6], !s[7]))))
        }
    }
}

impl Notifier {
    /// The public base URL the server's routes are under (no trailing `/`), if set:
    /// what makes the URLs a callback carries absolute.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// `secret` signs every callback; `allow_hosts` may be internal (development);
    /// `public_url` makes `downloadUrl` absolute; `extra_root_pem` trusts a private CA.
    pub fn new(
        secret: &str,
        allow_hosts: Vec<String>,
        public_url: Option<String>,
        extra_root_pem: Option<&[u8]>,
    ) -> Result<Self, ConfigError> {
        if secret.len() < 16 {
            return Err(ConfigError::Unusable {
                what: "CHUNKDUMP_CALLBACK_SECRET".into(),
                reason: "the callback signing secret must have at least 16 characters".into(),
            });
        }
        let extra_root = extra_root_pem
            .map(reqwest::Certificate::from_pem)
            .transpose()
            .map_err(|e| ConfigError::Unusable {
                what: "CHUNKDUMP_CALLBACK_CA_FILE".into(),
                reason: format!("not a PEM certificate: {e}"),
            })?;
        Ok(Notifier {
            secret: secret.as_bytes().to_vec(),
            allow_hosts,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
            extra_root,
            retry_delays: vec![
                Duration::from_secs(2),
                Duration::from_secs(10),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ],
        })
    }

    /// The notifier of a deployment: callbacks are off without a signing `secret`
    /// (`CHUNKDUMP_CALLBACK_SECRET`, or the deployment secret's `callbackSecret`).
    pub fn from_config(
        secret: Option<&str>,
        config: &CallbackConfig,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let ca = config.ca_pem()?;
        Notifier::new(
            secret,
            config.allow_hosts.clone(),
            config.public_url.clone(),
            ca.as_deref(),
        )
        .map(Some)
    }

    /// Checks a callback URL and returns the addresses a delivery may connect to.
    pub async fn check_url(&self, raw: &str) -> Result<(String, Vec<SocketAddr>), RefusedUrl> {
        let refused = |why: String| RefusedUrl(why);
        let url = reqwest::Url::parse(raw).map_err(|e| refused(format!("not a valid URL: {e}")))?;
        if url.scheme() != "https" {
            return Err(refused("callback URLs must use https".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused("callback URLs must not carry credentials".into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| refused("callback URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| refused(format!("cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(refused(format!("{host} has no addresses")));
        }
        if !self.allow_hosts.contains(&host) {
            if let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
                return Err(refused(format!("{host} resolves to an internal address ({}); callbacks may only go to public hosts", bad.ip())));
            }
        }
        Ok((host, addrs))
    }

    /// `url` sealed for keeping in a record (see [`sealed`]); [`CallbackSender::send`]
    /// opens it.
    pub fn seal(&self, url: &str) -> String {
        sealed::seal(&self.secret, url)
    }

    /// The callback body for a finished job (URLs under the public URL, if set).
    pub fn payload<'a>(&self, job: &'a JobRecord) -> CallbackBody<'a> {
        CallbackBody::new(job, self.public_url.as_deref().unwrap_or(""))
    }

    /// `sha256=<hex>` over `"<timestamp>.<body>"`.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    async fn attempt(&self, url: &str, body: &[u8]) -> Result<(), DeliveryError> {
        let (host, addrs) = self.check_url(url).await?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(ATTEMPT_TIMEOUT)
            .resolve_to_addrs(&host, &addrs);
        if let Some(root) = &self.extra_root {
            builder = builder.add_root_certificate(root.clone());
        }
        let client = builder
            .build()
            .map_err(|e| DeliveryError::Client(e.to_string()))?;
        let timestamp = chrono::Utc::now().timestamp();
        let res = client
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "chunkdump-callback/1")
            .header("x-chunkdump-timestamp", timestamp.to_string())
            .header("x-chunkdump-signature", self.sign(timestamp, body))
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| DeliveryError::Request {
                origin: origin_of(url),
                cause: describe(e),
            })?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Answered {
                origin: origin_of(url),
                status: res.status(),
            })
        }
    }
}

#[async_trait::async_trait]
impl CallbackSender for Notifier {
    fn body(&self, job: &JobRecord) -> Vec<u8> {
        serde_json::to_vec(&self.payload(job)).expect("serializable")
    }

    async fn send(&self, url: &str, body: &[u8]) -> Result<(), CallbackError> {
        let url = sealed::open(&self.secret, url).map_err(CallbackError::Sealed)?;
        self.attempt(&url, body).await.map_err(|e| match e {
            DeliveryError::Refused(refused) => CallbackError::Refused(refused.to_string()),
            DeliveryError::Client(cause) => CallbackError::Client(cause),
            DeliveryError::Request { origin, cause } => {
                CallbackError::Unreachable { origin, cause }
            }
            DeliveryError::Answered { origin, status } => CallbackError::Answered {
                origin,
                status: status.as_u16(),
            },
        })
    }

    fn retry_delays(&self) -> &[Duration] {
        &self.retry_delays
    }

    fn attempt_timeout(&self) -> Duration {
        ATTEMPT_TIMEOUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "fec0::1",
            "64:ff9b::a00:1",            // NAT64 of 10.0.0.1
            "64:ff9b::a9fe:a9fe",        // NAT64 of the metadata address
            "64:ff9b:1::808:808",        // local-use NAT64
            "2002:7f00:1::1",            // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::",          // 6to4 of 169.254.169.254
            "2001:0:a00:1::",            // Teredo, server 10.0.0.1
            "2001:0:808:808::80ff:fffe", // Teredo, client 127.0.0.1
            "::ffff:0:127.0.0.1",        // IPv4-translated
            "::ffff:0:169.254.169.254",
            "::ffff:0:8.8.8.8",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:0:808:808::f7f7:f7f7",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn only_the_origin_of_a_callback_url_is_shown() {
        assert_eq!(
            origin_of("https://hooks.example.com:8443/notify/abc?token=s3cret#x"),
            "https://hooks.example.com:8443"
        );
        assert_eq!(origin_of("https://h.example/p?q=1"), "https://h.example");
        assert!(!origin_of("not a url?token=s3cret").contains("s3cret"));
    }

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let n = Notifier::new("0123456789abcdef", vec![], None, None).unwrap();
        let a = n.sign(1, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, n.sign(2, b"{}"));
        assert_ne!(a, n.sign(1, b"{ }"));
    }
}
