//! age's header (<https://age-encryption.org/v1>): the version line, one stanza per
//! recipient wrapping the file key (made by the age crate's recipients), and an
//! HMAC-SHA256 of all that under a key derived from the file key. Written here because
//! the age crate writes a header only together with a payload it starts itself; read
//! here for `rekey`, which swaps a header for one wrapping the same file key to other
//! recipients and leaves the payload as it is.

use age::Recipient as _;
use age_core::format::{FileKey, Stanza};
use age_core::secrecy::ExposeSecret;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{EncryptionError, Identities, Recipients};

const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";
/// Bytes every object's age header and payload nonce take together: the header is
/// padded to `PREFIX_BYTES - 16` with a stanza no identity claims (age ignores stanzas it
/// does not know), so a new recipient set never moves the payload. `rekey` then rewrites
/// these bytes and copies the rest of the object as it is, and the manifest's digests,
/// which leave them out, still hold. 20 recipients take about 2 KB.
pub const PREFIX_BYTES: u64 = 4096;
/// Where a file's digest starts: after an encrypted file's header and nonce (which a
/// new recipient set rewrites; the header has its own MAC), at 0 otherwise. The one
/// rule the uploader and every reader of a dump follow.
pub fn digest_skip(encrypted: bool) -> u64 {
    if encrypted {
        PREFIX_BYTES
    } else {
        0
    }
}

/// The padding stanza's tag.
const PADDING_TAG: &str = "chunkdump-padding";
/// The most bytes a header of this project's files may take before its MAC line (a
/// stanza is about 100 bytes; 20 recipients fit many times over).
const MAX_HEADER: usize = 64 * 1024;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// The header of a file with `file_key`, wrapped for each of `recipients`, padded to
/// `PREFIX_BYTES - 16` bytes.
pub fn header(file_key: &FileKey, recipients: &Recipients) -> Result<Vec<u8>, EncryptionError> {
    let mut out = VERSION_LINE.to_vec();
    for recipient in recipients.keys() {
        let (stanzas, _labels) = recipient
            .wrap_file_key(file_key)
            .map_err(|e| EncryptionError::Unusable(format!("wrapping a file key: {e}")))?;
        for stanza in &stanzas {
            write_stanza(&mut out, stanza);
        }
    }
    // What is left after the MAC line ("--- " + 43 base64 characters + "\n").
    let target = (PREFIX_BYTES - 16) as usize - 48;
    let padding = padding_stanza(target.checked_sub(out.len()).ok_or_else(|| {
        EncryptionError::Unusable("too many recipients for the header's fixed size".into())
    })?)?;
    write_stanza(&mut out, &padding);
    debug_assert_eq!(out.len(), target);
    out.extend_from_slice(b"---");
    let mac = header_mac(file_key, &out);
    out.push(b' ');
    out.extend_from_slice(B64.encode(mac).as_bytes());
    out.push(b'\n');
    Ok(out)
}

/// `-> tag args…` then the body in base64 lines of 64 columns, the last one shorter
/// (empty when the body fills its lines exactly).
fn write_stanza(out: &mut Vec<u8>, stanza: &Stanza) {
    out.extend_from_slice(b"-> ");
    out.extend_from_slice(stanza.tag.as_bytes());
    for arg in &stanza.args {
        out.push(b' ');
        out.extend_from_slice(arg.as_bytes());
    }
    out.push(b'\n');
    let body = B64.encode(&stanza.body);
    for line in body.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    if body.len().is_multiple_of(64) {
        out.push(b'\n');
    }
}

/// A stanza of exactly `bytes` bytes as [`write_stanza`] writes it: a zero body whose
/// base64 lines fill most of it, and an argument of `a`s for the rest.
fn padding_stanza(bytes: usize) -> Result<Stanza, EncryptionError> {
    let written = |body: usize, arg: usize| {
        let b64 = (body * 4).div_ceil(3);
        "-> ".len() + PADDING_TAG.len() + 1 + arg + 1 + b64 + b64 / 64 + 1
    };
    for body in (0..bytes).rev() {
        let base = written(body, 0);
        if base < bytes {
            let arg = bytes - base;
            // An argument of 1 to 8 characters: the body's length settles the rest.
            if (1..=8).contains(&arg) {
                return Ok(Stanza {
                    tag: PADDING_TAG.into(),
                    args: vec!["a".repeat(arg)],
                    body: vec![0; body],
                });
            }
        }
    }
    Err(EncryptionError::Unusable(
        "too many recipients for the header's fixed size".into(),
    ))
}

fn header_mac(file_key: &FileKey, up_to_dashes: &[u8]) -> [u8; 32] {
    let key = age_core::primitives::hkdf(&[], b"header", file_key.expose_secret());
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key");
    mac.update(up_to_dashes);
    mac.finalize().into_bytes().into()
}

/// A parsed header: its stanzas and where the payload begins.
pub struct FileHeader {
    pub stanzas: Vec<Stanza>,
    /// Bytes of the header, MAC line included (the payload's nonce follows).
    pub len: usize,
    mac: Vec<u8>,
    /// Bytes up to and including `---`, which the MAC covers.
    covered: Vec<u8>,
}

impl FileHeader {
    /// Parses the header at the start of `bytes` (which must hold all of it).
    pub fn parse(bytes: &[u8]) -> Result<Self, EncryptionError> {
        let corrupt = |why: &str| EncryptionError::Corrupt(format!("not an age file: {why}"));
        let mut rest = bytes
            .strip_prefix(VERSION_LINE)
            .ok_or_else(|| corrupt("no age-encryption.org/v1 line"))?;
        let mut stanzas = Vec::new();
        while rest.starts_with(b"-> ") {
            let (after, stanza) = age_core::format::read::age_stanza(rest)
                .map_err(|_| corrupt("a recipient stanza does not parse"))?;
            stanzas.push(Stanza::from(stanza));
            rest = after;
        }
        let covered_len = bytes.len() - rest.len() + 3;
        if !rest.starts_with(b"--- ") || covered_len > MAX_HEADER {
            return Err(corrupt("no MAC line"));
        }
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| corrupt("the MAC line does not end"))?;
        let mac = B64
            .decode(&rest[4..line_end])
            .map_err(|_| corrupt("the MAC is not base64"))?;
        Ok(FileHeader {
            stanzas,
            len: bytes.len() - rest.len() + line_end + 1,
            mac,
            covered: bytes[..covered_len].to_vec(),
        })
    }

    /// The file key, unwrapped with one of `identities` and checked against the MAC.
    pub fn file_key(&self, identities: &Identities) -> Result<FileKey, EncryptionError> {
        let file_key = identities.unwrap(&self.stanzas)?;
        let mac = header_mac(&file_key, &self.covered);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&mac[..], &self.mac[..])) {
            return Err(EncryptionError::Corrupt(
                "the age header's MAC does not match: the header was altered".into(),
            ));
        }
        Ok(file_key)
    }
}

/// The header of the age file that begins with `prefix`, rewritten for `recipients`:
/// the new header's bytes and the old header's length (what it replaces). The file key,
/// and so the payload, stay as they are.
pub fn rekey_header(
    prefix: &[u8],
    identities: &Identities,
    recipients: &Recipients,
) -> Result<(Vec<u8>, usize), EncryptionError> {
    let old = FileHeader::parse(prefix)?;
    let file_key = old.file_key(identities)?;
    Ok((header(&file_key, recipients)?, old.len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_parses_back_and_unwraps_with_the_identity_only() {
        let one = age::x25519::Identity::generate();
        let two = age::x25519::Identity::generate();
        let recipients = Recipients::parse(&[one.to_public().to_string()]).unwrap();
        let file_key = FileKey::init_with_mut(|k| k.fill(5));
        let bytes = header(&file_key, &recipients).unwrap();
        assert_eq!(bytes.len() as u64, PREFIX_BYTES - 16);
        let parsed = FileHeader::parse(&[&bytes[..], b"payload"].concat()).unwrap();
        assert_eq!(parsed.len, bytes.len());
        let got = parsed.file_key(&Identities::from_keys(vec![one])).unwrap();
        assert_eq!(got.expose_secret(), file_key.expose_secret());
        assert!(parsed.file_key(&Identities::from_keys(vec![two])).is_err());
    }

    #[test]
    fn headers_take_the_same_bytes_for_one_to_twenty_recipients() {
        let file_key = FileKey::init_with_mut(|k| k.fill(1));
        for n in 1..=crate::encryption::MAX_RECIPIENTS {
            let keys: Vec<String> = (0..n)
                .map(|_| age::x25519::Identity::generate().to_public().to_string())
                .collect();
            let bytes = header(&file_key, &Recipients::parse(&keys).unwrap()).unwrap();
            assert_eq!(bytes.len() as u64, PREFIX_BYTES - 16, "{n} recipients");
            assert_eq!(FileHeader::parse(&bytes).unwrap().len, bytes.len());
        }
    }
}
