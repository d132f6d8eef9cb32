//! Multipart uploads as the job record and the stores see them: handles and receipts.

use serde::{Deserialize, Serialize};

/// A started multipart upload. The part size travels with the handle so every adapter
/// can enforce R2's rule (every part but the last exactly `part_size` bytes) itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadHandle {
    pub upload_id: String,
    pub part_size: u64,
}

/// Proof of one uploaded part, needed to complete the upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartReceipt {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    /// SHA-256 of the part's bytes (hex), filled in by the uploader for the manifest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}

/// An unfinished multipart upload found by listing a store's pending uploads (its
/// handle's part size is unknown and 0: it is only good for aborting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub handle: UploadHandle,
}
