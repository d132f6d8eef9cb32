//! `chunkdump rekey`: an encrypted dump given a new recipient set without re-encrypting
//! it. Each object's age header (a fixed 4096 bytes with its nonce, see
//! `encryption::PREFIX_BYTES`) is rewritten to wrap the same file key for the new
//! recipients; the rest of the object is copied by the store itself (S3's
//! UploadPartCopy, in parts of the dump's part size, so R2's equal parts hold). The
//! manifest's digests leave the header out, so they still hold; its sealed part is
//! sealed again for the new recipients, and signed again. Old identities no longer open
//! the rekeyed objects.
//!
//! Order and crash safety: objects first, the manifest last. A rekey killed half way
//! leaves the manifest sealed for the old recipients; run again with the same identity,
//! it rewrites the objects that still open with it and passes over those that no longer
//! do (rekeyed by the first run), then seals the manifest. An object that opens with
//! neither the old identity nor the new recipients' fails its restore loudly: never
//! silently.

use std::sync::Arc;

use crate::config::SigningKey;
use crate::encryption::{rekey_header, EncryptionError, Identities, Recipients, PREFIX_BYTES};
use crate::error::{DumpError, StoreError};
use crate::manifest::{check_signature, signature_key, store_manifest};
use crate::model::PartReceipt;
use crate::ports::ObjectStore;

/// What a rekey did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RekeyReport {
    pub dump_id: String,
    /// Objects whose header was rewritten now.
    pub rekeyed: usize,
    /// Objects that no longer opened with the old identity (rekeyed by an earlier run).
    pub already: usize,
    /// Bytes read from and written to the store through this machine (the rest was
    /// copied by the store).
    pub bytes_moved: u64,
    /// Bytes of the dump's objects.
    pub dump_bytes: u64,
}

/// Gives the encrypted dump whose manifest is at `manifest_key` the recipients
/// `recipients`, opening it with `identities` (the old ones). With `signing`, the
/// manifest's signature is checked first and written again after.
pub async fn rekey(
    objects: &dyn ObjectStore,
    manifest_key: &str,
    identities: &Arc<Identities>,
    recipients: &Recipients,
    signing: Option<&SigningKey>,
) -> Result<RekeyReport, DumpError> {
    let raw = objects.get(manifest_key).await?.ok_or_else(|| {
        DumpError::InvalidRequest(format!(
            "no manifest at {manifest_key}: is the dump completed?"
        ))
    })?;
    if let Some(key) = signing {
        let signature = objects.get(&signature_key(manifest_key)).await?;
        check_signature(key, &raw, signature.as_deref()).map_err(|e| {
            DumpError::InvalidRequest(format!("manifest {manifest_key} {e}; refused"))
        })?;
    }
    let mut manifest = crate::manifest::parse(manifest_key, &raw, Some(identities))?;
    if !manifest.encoding().encrypted {
        return Err(DumpError::InvalidRequest(format!(
            "dump {} is not encrypted: there is nothing to rekey",
            manifest.dump_id
        )));
    }
    let mut report = RekeyReport {
        dump_id: manifest.dump_id.clone(),
        rekeyed: 0,
        already: 0,
        bytes_moved: 0,
        dump_bytes: manifest.files.iter().map(|f| f.size).sum(),
    };
    for file in &manifest.files {
        let prefix = objects
            .get_range(&file.key, 0, PREFIX_BYTES)
            .await?
            .ok_or_else(|| {
                DumpError::InvalidRequest(format!("{}: missing from the store", file.key))
            })?;
        report.bytes_moved += prefix.len() as u64;
        let (header, old_len) = match rekey_header(&prefix, identities, recipients) {
            Ok(rewritten) => rewritten,
            Err(EncryptionError::NoMatchingIdentity(_)) => {
                tracing::warn!(key = %file.key, "does not open with the old identity: taken as rekeyed by an earlier run");
                report.already += 1;
                continue;
            }
            Err(e) => return Err(DumpError::InvalidRequest(format!("{}: {e}", file.key))),
        };
        if old_len != header.len() || prefix.len() as u64 != PREFIX_BYTES {
            return Err(DumpError::InvalidRequest(format!(
                "{}: its age header is not of the fixed size this version writes; it cannot be rekeyed in place",
                file.key
            )));
        }
        let mut new_prefix = header;
        new_prefix.extend_from_slice(&prefix[old_len..]);
        report.bytes_moved += replace_prefix(
            objects,
            &file.key,
            new_prefix,
            file.size,
            manifest.part_size,
        )
        .await?;
        report.rekeyed += 1;
    }
    if let Some(spec) = manifest.spec.as_mut() {
        spec.recipients = recipients.to_strings();
    }
    store_manifest(objects, &manifest, signing).await?;
    Ok(report)
}

/// Replaces the first `prefix.len()` bytes of object `key` (`size` bytes) with `prefix`,
/// keeping the rest: the first part is read, changed and uploaded; every other part is
/// copied by the store. Returns the bytes that passed through this machine.
async fn replace_prefix(
    objects: &dyn ObjectStore,
    key: &str,
    prefix: Vec<u8>,
    size: u64,
    part_size: u64,
) -> Result<u64, DumpError> {
    let first_len = size.min(part_size);
    let mut first = objects
        .get_range(key, 0, first_len)
        .await?
        .filter(|b| b.len() as u64 == first_len && b.len() >= prefix.len())
        .ok_or_else(|| {
            DumpError::InvalidRequest(format!("{key}: shorter than the manifest says"))
        })?;
    first[..prefix.len()].copy_from_slice(&prefix);
    if size <= part_size {
        objects.put(key, first).await?;
        return Ok(2 * first_len);
    }
    let upload = objects.create_upload(key, part_size).await?;
    let result: Result<Vec<PartReceipt>, StoreError> = async {
        let mut receipts = vec![objects.upload_part(key, &upload, 1, first.into()).await?];
        let mut number = 2;
        let mut start = part_size;
        while start < size {
            let end = (start + part_size).min(size);
            receipts.push(
                objects
                    .copy_part(key, &upload, number, (start, end))
                    .await?,
            );
            number += 1;
            start = end;
        }
        Ok(receipts)
    }
    .await;
    let completed = match result {
        Ok(receipts) => objects.complete_upload(key, &upload, &receipts).await,
        Err(e) => Err(e),
    };
    match completed {
        Ok(stored) if stored == size => Ok(2 * first_len),
        Ok(stored) => Err(DumpError::Store(StoreError::Permanent(format!(
            "{key}: {stored} bytes after the rekey, {size} before"
        )))),
        Err(e) => {
            let _ = objects.abort_upload(key, &upload).await;
            Err(e.into())
        }
    }
}
