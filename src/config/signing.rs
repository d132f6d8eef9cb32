//! The key manifests are signed with: `CHUNKDUMP_SIGNING_KEY` (the key itself) or
//! `CHUNKDUMP_SIGNING_KEY_FILE` (a file holding it), at least 32 bytes either way. With a
//! key, every manifest chunkdump writes gets an HMAC-SHA256 signature beside it, and
//! `restore`, `verify` and `restore --latest` refuse a manifest whose signature is missing
//! or wrong (see `crate::manifest`).

use super::{ConfigError, Env};

/// A secret key for HMAC-SHA256; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

/// The shortest key accepted: HMAC-SHA256's own strength.
const MIN_KEY_BYTES: usize = 32;

impl SigningKey {
    /// A key of these bytes (at least 32).
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "a signing key needs at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(SigningKey(bytes))
    }

    /// The key's bytes, for the MAC.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key from `CHUNKDUMP_SIGNING_KEY` or `CHUNKDUMP_SIGNING_KEY_FILE` (not both);
    /// `None` when neither is set. Surrounding white space (a file's last newline) is
    /// not part of the key.
    pub fn read(env: &Env) -> Result<Option<Self>, ConfigError> {
        let (inline, file) = (
            env.get("CHUNKDUMP_SIGNING_KEY"),
            env.get("CHUNKDUMP_SIGNING_KEY_FILE"),
        );
        let raw = match (inline, file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(ConfigError::Unusable {
                    what: "CHUNKDUMP_SIGNING_KEY".into(),
                    reason: "set it or CHUNKDUMP_SIGNING_KEY_FILE, not both".into(),
                })
            }
            (Some(key), None) => key.into_bytes(),
            (None, Some(path)) => std::fs::read(&path).map_err(|e| ConfigError::Unusable {
                what: "CHUNKDUMP_SIGNING_KEY_FILE".into(),
                reason: format!("cannot read {path}: {e}"),
            })?,
        };
        SigningKey::new(raw.trim_ascii().to_vec())
            .map(Some)
            .map_err(|reason| ConfigError::Unusable {
                what: "CHUNKDUMP_SIGNING_KEY".into(),
                reason,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_variable_or_a_file_and_are_long_enough() {
        let none = Env::from_fn(|_| None);
        assert_eq!(SigningKey::read(&none).unwrap(), None);
        let key = "k".repeat(40);
        let inline = Env::from_fn(|n| (n == "CHUNKDUMP_SIGNING_KEY").then(|| format!("{key}\n")));
        let read = SigningKey::read(&inline).unwrap().unwrap();
        assert_eq!(read.bytes(), key.as_bytes());
        assert_eq!(format!("{read:?}"), "SigningKey(…)");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{key}\n")).unwrap();
        let p = path.display().to_string();
        let file = Env::from_fn(|n| (n == "CHUNKDUMP_SIGNING_KEY_FILE").then(|| p.clone()));
        assert_eq!(SigningKey::read(&file).unwrap().unwrap(), read);
        let short = Env::from_fn(|n| (n == "CHUNKDUMP_SIGNING_KEY").then(|| "short".to_string()));
        let e = SigningKey::read(&short).unwrap_err().to_string();
        assert!(e.contains("at least 32 bytes"), "{e}");
        let both = Env::from_fn(|_| Some(key.clone()));
        assert!(SigningKey::read(&both).is_err());
    }
}
