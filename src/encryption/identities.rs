//! The keys: recipients (`age1…`, public, in a dump's spec) and identities
//! (`AGE-SECRET-KEY-1…`, secret, given only to what reads a dump back), in the files
//! `age-keygen` writes, and the reader that decrypts an age file with them.

use std::io::{BufRead, Read};
use std::str::FromStr;

use age_core::format::{FileKey, Stanza};

use super::EncryptionError;

/// The public keys a dump is encrypted to: X25519 recipients, as `age -r` takes them.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
}

/// The most recipients a dump may have (each adds a stanza to every object's header).
pub const MAX_RECIPIENTS: usize = 20;

impl Recipients {
    /// Parses `age1…` keys; refuses an empty list, a key that does not parse (naming
    /// it), and more than [`MAX_RECIPIENTS`].
    pub fn parse(keys: &[String]) -> Result<Self, EncryptionError> {
        if keys.is_empty() {
            return Err(EncryptionError::Unusable("no recipient given".into()));
        }
        if keys.len() > MAX_RECIPIENTS {
            return Err(EncryptionError::Unusable(format!(
                "{} recipients: at most {MAX_RECIPIENTS}",
                keys.len()
            )));
        }
        let keys = keys
            .iter()
            .map(|k| {
                age::x25519::Recipient::from_str(k.trim()).map_err(|e| {
                    EncryptionError::Unusable(format!(
                        "recipient {k:?} is not an age public key (age1…): {e}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Recipients { keys })
    }

    /// The recipients of a recipients file (one `age1…` per line; `#` comments and
    /// blank lines skipped), as `age -R` reads it.
    pub fn lines_of(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    /// Each key in its canonical `age1…` form.
    pub fn to_strings(&self) -> Vec<String> {
        self.keys.iter().map(ToString::to_string).collect()
    }

    pub(super) fn keys(&self) -> &[age::x25519::Recipient] {
        &self.keys
    }

    /// The keys as the age crate's encryptor takes them.
    pub fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.keys.iter().map(|k| k as &dyn age::Recipient)
    }
}

/// Secret keys that open dumps: X25519 identities, as `age -i` takes them.
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} keys)", self.keys.len())
    }
}

impl Identities {
    /// The identities of an identity file's text (what `age-keygen` writes: `#`
    /// comments and `AGE-SECRET-KEY-1…` lines). `what` names the file in errors, never
    /// its contents.
    pub fn parse(text: &str, what: &str) -> Result<Self, EncryptionError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = age::x25519::Identity::from_str(line).map_err(|_| {
                EncryptionError::Unusable(format!(
                    "{what}, line {}: not an age identity (AGE-SECRET-KEY-1…); only X25519 identities are supported",
                    n + 1
                ))
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(EncryptionError::Unusable(format!(
                "{what} holds no identity"
            )));
        }
        Ok(Identities { keys })
    }

    /// The identities in the file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Self, EncryptionError> {
        let what = format!("identity file {}", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| EncryptionError::Unusable(format!("{what}: {e}")))?;
        Self::parse(&text, &what)
    }

    /// These keys.
    pub fn from_keys(keys: Vec<age::x25519::Identity>) -> Self {
        Identities { keys }
    }

    fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k as &dyn age::Identity)
    }

    /// The file key one of the `stanzas` wraps for one of these identities.
    pub(super) fn unwrap(&self, stanzas: &[Stanza]) -> Result<FileKey, EncryptionError> {
        for key in &self.keys {
            match age::Identity::unwrap_stanzas(key, stanzas) {
                Some(Ok(file_key)) => return Ok(file_key),
                Some(Err(e)) => {
                    return Err(EncryptionError::Corrupt(format!("the age header: {e}")))
                }
                None => {}
            }
        }
        Err(no_identity())
    }
}

fn no_identity() -> EncryptionError {
    EncryptionError::NoMatchingIdentity(
        "none of the given identities can decrypt it (encrypted to other recipients, or rekeyed since)".into(),
    )
}

/// The plaintext of the age file `input` reads, decrypted with `identities` (age's own
/// reader: it checks the header's MAC and every chunk's tag, and refuses a truncated
/// file).
pub fn decrypt_reader<R: BufRead + Send + 'static>(
    input: R,
    identities: &Identities,
) -> Result<Box<dyn Read + Send>, EncryptionError> {
    let decryptor = age::Decryptor::new_buffered(input)
        .map_err(|e| EncryptionError::Corrupt(format!("not an age file: {e}")))?;
    match decryptor.decrypt(identities.as_dyn()) {
        Ok(reader) => Ok(Box::new(reader)),
        Err(age::DecryptError::NoMatchingKeys) => Err(no_identity()),
        Err(e) => Err(EncryptionError::Corrupt(format!("cannot decrypt: {e}"))),
    }
}
