//! An encrypted dump's manifest: what the bucket shows of it (each file's key, size and
//! digest) and the whole manifest sealed for the dump's recipients, and the one parser
//! every reader of a manifest goes through.

use serde::{Deserialize, Serialize};

use super::{Manifest, OpenedWith};
use crate::error::DumpError;
use crate::model::{Compression, FileEntry, Format};

/// The manifest of an encrypted dump as the bucket holds it: what anyone may check
/// without an identity (each file's key, size and SHA-256, over its encrypted bytes),
/// and the whole manifest ([`Manifest`]: tables, row counts, digests, the source, the
/// spec) as an age file that only the dump's identities open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedManifest {
    pub manifest_version: u32,
    pub dump_id: String,
    pub format: Format,
    pub compression: Compression,
    pub part_size: u64,
    /// `age`.
    pub encryption: String,
    pub files: Vec<FileEntry>,
    pub completed_at: Option<String>,
    /// The [`Manifest`] as JSON in an age file, base64.
    pub sealed: String,
}

/// A manifest's bytes as read: an encrypted dump's (opened with `identities`, which it
/// needs) or a plain one. `what` names it in errors. An encrypted dump's inner manifest
/// must list exactly the files the outer one does.
pub fn parse(
    what: &str,
    raw: &[u8],
    identities: Option<&std::sync::Arc<crate::encryption::Identities>>,
) -> Result<Manifest, DumpError> {
    let invalid = |e: &dyn std::fmt::Display| {
        DumpError::InvalidRequest(format!("{what} is not a valid manifest: {e}"))
    };
    let value: serde_json::Value = serde_json::from_slice(raw).map_err(|e| invalid(&e))?;
    if value.get("sealed").is_none() {
        return serde_json::from_value(value).map_err(|e| invalid(&e));
    }
    let outer: SealedManifest = serde_json::from_value(value).map_err(|e| invalid(&e))?;
    let identities = identities.ok_or_else(|| {
        crate::encryption::EncryptionError::Unusable(format!(
            "dump {} is encrypted: give its identity (--identity FILE, or CHUNKDUMP_IDENTITY_FILE)",
            outer.dump_id
        ))
    })?;
    use base64::Engine as _;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&outer.sealed)
        .map_err(|e| invalid(&e))?;
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut crate::encryption::decrypt_reader(std::io::Cursor::new(sealed), identities)?,
        &mut plain,
    )
    .map_err(|e| {
        crate::encryption::EncryptionError::Corrupt(format!("{what}: its sealed part: {e}"))
    })?;
    let mut inner: Manifest = serde_json::from_slice(&plain).map_err(|e| invalid(&e))?;
    inner.keys = OpenedWith(Some(identities.clone()));
    if inner.dump_id != outer.dump_id || inner.files != outer.files {
        return Err(DumpError::InvalidRequest(format!(
            "{what}: the files it lists in the clear differ from those its sealed part lists; refused"
        )));
    }
    Ok(inner)
}

/// The manifest of an encrypted dump as stored: `manifest`'s JSON sealed for the dump's
/// recipients, beside the files it lists in the clear.
pub(super) fn seal(manifest: &Manifest, body: &[u8]) -> Result<Vec<u8>, DumpError> {
    let keys = manifest
        .spec
        .as_ref()
        .map(|s| &s.recipients[..])
        .unwrap_or_default();
    let recipients = crate::encryption::Recipients::parse(keys)?;
    let encryptor = age::Encryptor::with_recipients(recipients.as_dyn())
        .map_err(|e| DumpError::Internal(format!("sealing the manifest: {e}")))?;
    let mut sealed = Vec::new();
    let mut writer = encryptor
        .wrap_output(&mut sealed)
        .map_err(|e| DumpError::Internal(e.to_string()))?;
    std::io::Write::write_all(&mut writer, body).map_err(|e| DumpError::Internal(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| DumpError::Internal(e.to_string()))?;
    use base64::Engine as _;
    let outer = SealedManifest {
        manifest_version: manifest.manifest_version,
        dump_id: manifest.dump_id.clone(),
        format: manifest.format,
        compression: manifest.compression,
        part_size: manifest.part_size,
        encryption: "age".into(),
        files: manifest.files.clone(),
        completed_at: manifest.completed_at.clone(),
        sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
    };
    serde_json::to_vec_pretty(&outer).map_err(|e| DumpError::Internal(e.to_string()))
}

/// What any manifest shows without an identity: each file's key, size and digest, and
/// how the digests were taken (`part_size` pieces, the first `skip` bytes left out).
#[derive(Debug, Clone, PartialEq)]
pub struct ClearFiles {
    pub dump_id: String,
    pub part_size: u64,
    pub skip: u64,
    pub files: Vec<FileEntry>,
}

/// The files a manifest's bytes list, sealed or not (no identity needed).
pub fn clear_files(what: &str, raw: &[u8]) -> Result<ClearFiles, DumpError> {
    let invalid = |e: &dyn std::fmt::Display| {
        DumpError::InvalidRequest(format!("{what} is not a valid manifest: {e}"))
    };
    let value: serde_json::Value = serde_json::from_slice(raw).map_err(|e| invalid(&e))?;
    if value.get("sealed").is_some() {
        let outer: SealedManifest = serde_json::from_value(value).map_err(|e| invalid(&e))?;
        return Ok(ClearFiles {
            dump_id: outer.dump_id,
            part_size: outer.part_size,
            skip: crate::encryption::digest_skip(true),
            files: outer.files,
        });
    }
    let manifest: Manifest = serde_json::from_value(value).map_err(|e| invalid(&e))?;
    let (part_size, skip) = manifest.digesting();
    Ok(ClearFiles {
        dump_id: manifest.dump_id,
        part_size,
        skip,
        files: manifest.files,
    })
}
