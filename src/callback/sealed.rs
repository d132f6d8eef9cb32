//! Callback URLs sealed before they are stored.
//!
//! A callback URL often carries a token in its query (`?token=…`), and it must be kept
//! until the dump ends, in the job record (DynamoDB, or the local progress file) and in
//! a fleet's record (in the bucket). It is stored sealed: ChaCha20-Poly1305 under a key
//! derived from the callback signing secret, which both functions already hold, with a
//! random nonce. Whoever reads the records without that secret learns the URL's length
//! only. A record sealed under a secret since rotated cannot be opened: its callback
//! fails saying so (nothing else depends on it).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha256;

/// How a sealed URL begins (a URL never does).
const PREFIX: &str = "sealed:v1:";

/// The sealing key: HMAC-SHA256 of a fixed label under the callback secret, so the
/// secret itself is used for one thing (signing) and the key for another.
fn key(secret: &[u8]) -> LessSafeKey {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(b"chunkdump callback URL sealing key v1");
    let bytes = mac.finalize().into_bytes();
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("a 32-byte key"))
}

/// `url`, sealed under `secret`.
pub fn seal(secret: &[u8], url: &str) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system's random source");
    let mut sealed = url.as_bytes().to_vec();
    key(secret)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(PREFIX.as_bytes()),
            &mut sealed,
        )
        .expect("sealing fits in memory");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    )
}

/// The URL `stored` holds: opened if sealed, as it is otherwise (records written before
/// URLs were sealed).
pub fn open(secret: &[u8], stored: &str) -> Result<String, String> {
    let Some(sealed) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_string());
    };
    let cannot = || {
        "the callback URL was sealed under another callback secret (rotated since the dump started), or its record was altered".to_string()
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| cannot())?;
    if bytes.len() < NONCE_LEN {
        return Err(cannot());
    }
    let (nonce, body) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| cannot())?;
    let mut body = body.to_vec();
    let url = key(secret)
        .open_in_place(nonce, Aad::from(PREFIX.as_bytes()), &mut body)
        .map_err(|_| cannot())?;
    String::from_utf8(url.to_vec()).map_err(|_| cannot())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_url_opens_with_its_secret_only_and_shows_nothing() {
        let url = "https://hooks.example.com/notify?token=s3cr3t-value";
        let sealed = seal(b"callback-secret-0123456789", url);
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.contains("s3cr3t") && !sealed.contains("example"));
        assert_eq!(open(b"callback-secret-0123456789", &sealed).unwrap(), url);
        assert_ne!(
            sealed,
            seal(b"callback-secret-0123456789", url),
            "a fresh nonce"
        );
        let rotated = open(b"another-secret-0123456789", &sealed).unwrap_err();
        assert!(rotated.contains("another callback secret"), "{rotated}");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(open(
            b"callback-secret-0123456789",
            std::str::from_utf8(&altered).unwrap()
        )
        .is_err());
        // Records from before sealing keep working.
        assert_eq!(open(b"x", url).unwrap(), url);
    }
}
