//! `ObjectStore` on S3-compatible storage: multipart uploads with fixed-size parts
//! checked before R2 would refuse them, small objects, deletes.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::S3Store;
use crate::error::StoreError;
use crate::model::{PartReceipt, PendingUpload, UploadHandle};
use crate::ports::{check_parts, ObjectStore};

#[async_trait]
impl ObjectStore for S3Store {
    fn links(&self) -> Option<&dyn crate::ports::DownloadLinks> {
        Some(self)
    }

    async fn create_upload(&self, key: &str, part_size: u64) -> Result<UploadHandle, StoreError> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.error(&format!("create upload of s3://{}/{full}", self.bucket), e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| StoreError::Permanent("store returned no upload id".into()))?;
        Ok(UploadHandle {
            upload_id: upload_id.to_string(),
            part_size,
        })
    }
    async fn upload_part(
        &self,
        key: &str,
        upload: &UploadHandle,
        number: u32,
        bytes: Bytes,
    ) -> Result<PartReceipt, StoreError> {
        let full = self.full_key(key)?;
        if !(1..=10_000).contains(&number) {
            return Err(StoreError::Invalid(format!(
                "part number {number} outside 1..=10000"
            )));
        }
        let size = bytes.len() as u64;
        if size > upload.part_size {
            return Err(StoreError::Invalid(format!(
                "part {number} has {size} bytes, more than the part size {}",
                upload.part_size
            )));
        }
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(&upload.upload_id)
            .part_number(number as i32)
            .content_length(size as i64)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| {
                self.error(
                    &format!("upload part {number} of s3://{}/{full}", self.bucket),
                    e,
                )
            })?;
        let etag = out
            .e_tag()
            .ok_or_else(|| StoreError::Permanent(format!("no ETag for part {number}")))?;
        Ok(PartReceipt {
            number,
            etag: etag.to_string(),
            size,
            sha256: String::new(),
        })
    }
    async fn copy_part(
        &self,
        key: &str,
        upload: &UploadHandle,
        number: u32,
        (start, end): (u64, u64),
    ) -> Result<PartReceipt, StoreError> {
        let full = self.full_key(key)?;
        if !(1..=10_000).contains(&number) || end <= start || end - start > upload.part_size {
            return Err(StoreError::Invalid(format!(
                "part {number} copies bytes {start}..{end}: not a part of size at most {}",
                upload.part_size
            )));
        }
        // The source is `bucket/key`, URL-encoded (a key's `/` kept).
        let source: Vec<String> = full.split('/').map(crate::model::path_segment).collect();
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(&upload.upload_id)
            .part_number(number as i32)
            .copy_source(format!("{}/{}", self.bucket, source.join("/")))
            .copy_source_range(format!("bytes={start}-{}", end - 1))
            .send()
            .await
            .map_err(|e| {
                self.error(
                    &format!("copy part {number} of s3://{}/{full}", self.bucket),
                    e,
                )
            })?;
        let etag = out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .ok_or_else(|| StoreError::Permanent(format!("no ETag for copied part {number}")))?;
        Ok(PartReceipt {
            number,
            etag: etag.to_string(),
            size: end - start,
            sha256: String::new(),
        })
    }
    async fn complete_upload(
        &self,
        key: &str,
        upload: &UploadHandle,
        parts: &[PartReceipt],
    ) -> Result<u64, StoreError> {
        let full = self.full_key(key)?;
        let total = check_parts(parts, upload.part_size)?;
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(&upload.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                self.error(
                    &format!("complete upload of s3://{}/{full}", self.bucket),
                    e,
                )
            })?;
        Ok(total)
    }
    async fn abort_upload(&self, key: &str, upload: &UploadHandle) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(&upload.upload_id)
            .send()
            .await;
        match result
            .map_err(|e| self.error(&format!("abort upload of s3://{}/{full}", self.bucket), e))
        {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
    async fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let (full, strip) = self.scoped(prefix);
        let (mut found, mut key_marker, mut id_marker) =
            (Vec::new(), None::<String>, None::<String>);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| {
                    self.error(
                        &format!("list uploads under s3://{}/{full}", self.bucket),
                        e,
                    )
                })?;
            for u in out.uploads() {
                if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                    if key.len() >= strip {
                        found.push(PendingUpload {
                            key: key[strip..].to_string(),
                            handle: UploadHandle {
                                upload_id: id.to_string(),
                                part_size: 0,
                            },
                        });
                    }
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(found);
            }
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(found);
            }
        }
    }
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.error(&format!("put s3://{}/{full}", self.bucket), e))?;
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.error(&format!("delete s3://{}/{full}", self.bucket), e) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }
}
