//! Client-side encryption of dumps with age (<https://age-encryption.org/v1>): every
//! object a dump writes (data files, schema files, the manifest's contents, the staging
//! objects between chunks) is encrypted before it leaves this machine, so the bucket's
//! provider, and anyone holding only its keys, reads nothing of the database.
//!
//! * The recipients (`age1…` public keys) are in the dump's spec; the identities (secret
//!   keys) are only ever given to the commands that read a dump back.
//! * Each object is a standard age file: the `age` tool decrypts it to exactly the bytes
//!   an unencrypted dump would have (compressed first, then encrypted).
//! * A dump's objects are written over several chunks, possibly on several machines, so
//!   the age stream of an unfinished object must be continued later. age's own writer
//!   cannot be resumed, so [`stream`] writes the payload (ChaCha20-Poly1305 over 64 KiB
//!   chunks, age's STREAM) with a counter a later chunk picks up, and [`header`] writes
//!   the header with the age crate's recipient wrapping.
//! * What lets a later chunk continue: a random [`StreamKey`] per dump, kept in the job
//!   record (the trust domain of the database, see [`StreamKey::store`]) and erased when
//!   the dump ends. Each object's age file key is derived from it and the object's key.

mod header;
mod identities;
pub mod stream;

use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

pub use header::{digest_skip, header, rekey_header, FileHeader, PREFIX_BYTES};
pub use identities::MAX_RECIPIENTS;
pub use identities::{decrypt_reader, Identities, Recipients};
pub use stream::{AgeStream, CHUNK_BYTES};

/// What can go wrong with keys and encrypted files.
#[derive(Debug, Error)]
pub enum EncryptionError {
    /// A recipient, recipients file or identity file that cannot be used.
    #[error("{0}")]
    Unusable(String),
    /// None of the identities opens the file.
    #[error("{0}")]
    NoMatchingIdentity(String),
    /// The file is not an age file, or was altered.
    #[error("{0}")]
    Corrupt(String),
}

/// The 32 random bytes per dump that each object's age file key is derived from.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey([u8; 32]);

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(…)")
    }
}

/// How a stored stream key begins when it is wrapped, and when it is not.
const SEALED_PREFIX: &str = "sealed:v1:";
const CLEAR_PREFIX: &str = "clear:v1:";

impl StreamKey {
    /// A new random key.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random source");
        StreamKey(bytes)
    }

    /// The form kept in the job record: wrapped (ChaCha20-Poly1305 under a key derived
    /// from `wrap`, the deployment's signing key) when there is a wrapping key, clear
    /// otherwise. Clear is for the local progress store only: it lives beside the
    /// database with the database's permissions, so whoever can read it can read the
    /// database itself.
    pub fn store(&self, wrap: Option<&[u8]>) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        match wrap {
            None => format!("{CLEAR_PREFIX}{}", b64.encode(self.0)),
            Some(secret) => {
                let mut nonce = [0u8; 12];
                SystemRandom::new()
                    .fill(&mut nonce)
                    .expect("the system's random source");
                let mut sealed = self.0.to_vec();
                wrapping_key(secret)
                    .seal_in_place_append_tag(
                        ring::aead::Nonce::assume_unique_for_key(nonce),
                        ring::aead::Aad::from(SEALED_PREFIX.as_bytes()),
                        &mut sealed,
                    )
                    .expect("32 bytes seal");
                let mut out = nonce.to_vec();
                out.extend_from_slice(&sealed);
                format!("{SEALED_PREFIX}{}", b64.encode(out))
            }
        }
    }

    /// The key `stored` holds ([`StreamKey::store`]'s form), unwrapped with `wrap`.
    pub fn open(stored: &str, wrap: Option<&[u8]>) -> Result<Self, EncryptionError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let bad = |why: &str| EncryptionError::Unusable(format!("the dump's stream key {why}"));
        if let Some(clear) = stored.strip_prefix(CLEAR_PREFIX) {
            let bytes = b64.decode(clear).map_err(|_| bad("is not base64"))?;
            return bytes
                .try_into()
                .map(StreamKey)
                .map_err(|_| bad("has the wrong length"));
        }
        let sealed = stored
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| bad("is in an unknown form"))?;
        let secret = wrap.ok_or_else(|| {
            bad("is wrapped with the deployment's signing key, and this process has none (CHUNKDUMP_SIGNING_KEY or the secret's signingKey)")
        })?;
        let mut bytes = b64.decode(sealed).map_err(|_| bad("is not base64"))?;
        if bytes.len() < 12 + 16 {
            return Err(bad("is too short"));
        }
        let nonce: [u8; 12] = bytes[..12].try_into().expect("12 bytes");
        let opened = wrapping_key(secret)
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(SEALED_PREFIX.as_bytes()),
                &mut bytes[12..],
            )
            .map_err(|_| {
                bad("does not open with this signing key: it was rotated since the dump started, or the record was altered")
            })?;
        opened
            .try_into()
            .map(StreamKey)
            .map_err(|_| bad("has the wrong length"))
    }

    /// 32 bytes for `purpose` and `object` (HKDF-SHA256 with labels of this project).
    fn derive(&self, purpose: &str, object: &str) -> [u8; 32] {
        let label = format!("chunkdump/v1/{purpose}\0{object}");
        age_core::primitives::hkdf(b"", label.as_bytes(), &self.0)
    }

    /// The age file key of object `key`: derived, so every chunk of the dump, on any
    /// machine, continues the object's stream with the key its header wraps.
    pub fn file_key(&self, key: &str) -> age_core::format::FileKey {
        let derived = self.derive("file-key", key);
        age_core::format::FileKey::init_with_mut(|k| k.copy_from_slice(&derived[..16]))
    }

    /// The 16-byte payload nonce of object `key` (age's per-file nonce; unique because
    /// the file key is).
    pub fn payload_nonce(&self, key: &str) -> [u8; 16] {
        self.derive("payload-nonce", key)[..16]
            .try_into()
            .expect("16 bytes")
    }

    /// The key staging objects (between chunks) are encrypted under.
    pub fn staging_key(&self) -> [u8; 32] {
        self.derive("staging", "")
    }
}

/// What an encrypted dump's chunks encrypt with: its recipients and stream key.
pub struct Sealing {
    recipients: Recipients,
    key: StreamKey,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealing({} recipients)", self.recipients.keys().len())
    }
}

impl Sealing {
    pub fn new(recipients: Recipients, key: StreamKey) -> Self {
        Sealing { recipients, key }
    }

    /// The dump's stream key.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// The first bytes of object `key`: its age header and payload nonce.
    pub fn start(&self, key: &str) -> Result<Vec<u8>, EncryptionError> {
        let mut out = header(&self.key.file_key(key), &self.recipients)?;
        out.extend_from_slice(&self.key.payload_nonce(key));
        Ok(out)
    }

    /// Object `key`'s payload stream, `counter` chunks in with `pending` bytes of the next.
    pub fn stream(&self, key: &str, counter: u64, pending: Vec<u8>) -> AgeStream {
        AgeStream::new(
            &self.key.file_key(key),
            &self.key.payload_nonce(key),
            counter,
            pending,
        )
    }
}

/// The key a stream key is wrapped under: HMAC-SHA256 of a label under the signing key,
/// so the signing key itself signs and only a key derived from it wraps.
fn wrapping_key(secret: &[u8]) -> ring::aead::LessSafeKey {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(b"chunkdump stream key wrapping key v1");
    let bytes = mac.finalize().into_bytes();
    ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &bytes).expect("32 bytes"),
    )
}

/// `plain` encrypted under `key` with a random nonce, bound to `context` (a staging
/// object's key, so one cannot stand in for another): nonce ‖ ciphertext ‖ tag.
pub fn seal_bytes(key: &[u8; 32], context: &str, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system's random source");
    let aead = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, key).expect("32 bytes"),
    );
    let mut out = Vec::with_capacity(12 + plain.len() + 16);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = aead
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(context.as_bytes()),
            &mut out[12..],
        )
        .expect("fits in memory");
    out.extend_from_slice(tag.as_ref());
    out
}

/// The plain bytes of [`seal_bytes`]'s output, or an error if they were altered or moved.
pub fn open_bytes(
    key: &[u8; 32],
    context: &str,
    mut sealed: Vec<u8>,
) -> Result<Vec<u8>, EncryptionError> {
    if sealed.len() < 12 + 16 {
        return Err(EncryptionError::Corrupt(format!(
            "{context}: too short to be sealed"
        )));
    }
    let nonce: [u8; 12] = sealed[..12].try_into().expect("12 bytes");
    let aead = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, key).expect("32 bytes"),
    );
    let len = aead
        .open_in_place(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(context.as_bytes()),
            &mut sealed[12..],
        )
        .map_err(|_| {
            EncryptionError::Corrupt(format!(
                "{context}: does not open with this dump's key (altered, or from another dump)"
            ))
        })?
        .len();
    sealed.drain(..12);
    sealed.truncate(len);
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_key_opens_only_with_the_key_it_was_wrapped_with() {
        let key = StreamKey::random();
        let clear = key.store(None);
        assert!(clear.starts_with(CLEAR_PREFIX));
        assert_eq!(StreamKey::open(&clear, None).unwrap(), key);
        let sealed = key.store(Some(b"deployment secret one"));
        assert!(!sealed.contains(&clear[CLEAR_PREFIX.len()..]));
        assert_eq!(
            StreamKey::open(&sealed, Some(b"deployment secret one")).unwrap(),
            key
        );
        let e = StreamKey::open(&sealed, Some(b"another secret")).unwrap_err();
        assert!(e.to_string().contains("rotated"), "{e}");
        let e = StreamKey::open(&sealed, None).unwrap_err();
        assert!(e.to_string().contains("signing key"), "{e}");
    }

    #[test]
    fn sealed_bytes_are_bound_to_their_context() {
        let key = [9u8; 32];
        let sealed = seal_bytes(&key, "a", b"tail bytes");
        assert_eq!(
            open_bytes(&key, "a", sealed.clone()).unwrap(),
            b"tail bytes"
        );
        assert!(open_bytes(&key, "b", sealed.clone()).is_err());
        assert!(open_bytes(&[8u8; 32], "a", sealed).is_err());
    }
}
