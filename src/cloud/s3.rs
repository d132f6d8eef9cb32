//! `ObjectReader` on S3-compatible storage (Cloudflare R2 through its S3 endpoint): the
//! store, its setup and reads; its writes (multipart uploads, puts, deletes) are `s3_write`.
//!
//! Path-style addressing, checksums only when an operation requires them (R2 rejected
//! the SDK's default CRC headers), fixed-size parts checked before R2 would refuse them.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::Client;

use super::{parse_url, sdk_failure};
use crate::error::StoreError;
use crate::ports::{check_key, Download, DownloadLinks, ObjectReader};

/// A bucket (and key prefix) on an S3-compatible service.
#[derive(Clone, Debug)]
pub struct S3Store {
    pub(super) client: Client,
    pub(super) bucket: String,
    prefix: String,
    /// Where requests go, for error messages: the endpoint URL, or AWS S3's region.
    endpoint: String,
}

impl S3Store {
    /// `prefix` under the store's own prefix, and how many bytes of a listed key to strip
    /// to get back the store's key.
    pub(super) fn scoped(&self, prefix: &str) -> (String, usize) {
        if self.prefix.is_empty() {
            (prefix.to_string(), 0)
        } else {
            (format!("{}/{prefix}", self.prefix), self.prefix.len() + 1)
        }
    }

    /// Checks `s3://BUCKET[/PREFIX]` without any AWS setup.
    pub fn check_url(url: &str) -> Result<(), StoreError> {
        parse_url(url, "s3").map(|_| ())
    }

    /// Builds the store for `s3://BUCKET[/PREFIX]` from a loaded AWS configuration.
    pub fn new(config: &aws_config::SdkConfig, url: &str) -> Result<Self, StoreError> {
        Self::with_access(config, url, None)
    }

    /// Like [`S3Store::new`], with R2's own endpoint and API token instead of the AWS
    /// credentials (in Lambda, the role's credentials are for DynamoDB and Step
    /// Functions; R2 has its own).
    pub fn with_access(
        config: &aws_config::SdkConfig,
        url: &str,
        access: Option<&super::R2Access>,
    ) -> Result<Self, StoreError> {
        let (bucket, prefix) = parse_url(url, "s3")?;
        let mut conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        let mut endpoint = match config.endpoint_url() {
            Some(url) => url.to_string(),
            None => format!(
                "AWS S3 in {}",
                config.region().map_or("no region", |r| r.as_ref())
            ),
        };
        if let Some(access) = access {
            endpoint.clone_from(&access.endpoint);
            let credentials = aws_sdk_s3::config::Credentials::new(
                &access.access_key_id,
                &access.secret_access_key,
                None,
                None,
                "r2-api-token",
            );
            conf = conf
                .credentials_provider(credentials)
                .endpoint_url(&access.endpoint)
                .region(aws_sdk_s3::config::Region::new("auto"));
        }
        Ok(S3Store {
            client: Client::from_conf(conf.build()),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint,
        })
    }

    /// `sdk_failure` with the endpoint named after `context`.
    pub(super) fn failure<E>(
        &self,
        context: &str,
        err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> super::Failure
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        sdk_failure(&format!("{context} at {}", self.endpoint), err)
    }

    /// `sdk_error` with the endpoint named after `context`.
    pub(super) fn error<E>(
        &self,
        context: &str,
        err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.failure(context, err).error
    }

    pub(super) fn full_key(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    /// Whether the store says the bucket does not exist (HeadBucket: 404 or
    /// `NoSuchBucket`). Any other answer is no proof either way (a token may use a bucket
    /// it may not look at, a passing fault): `false`, and the commands go on to meet it.
    pub async fn bucket_is_missing(&self) -> bool {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => false,
            Err(e) => {
                let failure = self.failure(&format!("look at bucket {}", self.bucket), e);
                failure.is("NoSuchBucket") || failure.is("NotFound") || failure.status == Some(404)
            }
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket unless it exists (local development and tests; in AWS the
    /// SAM template or the R2 dashboard creates it).
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        // Look first, create only what is missing: a CreateBucket on a bucket that exists
        // fails on R2 (IllegalLocationConstraintException with a region set) rather than
        // answering "already yours", and a token may use a bucket it cannot create (R2's
        // object read/write tokens): a bucket that answers is enough.
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        let region = self
            .client
            .config()
            .region()
            .map(|r| r.as_ref().to_string())
            .unwrap_or_default();
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        if !matches!(region.as_str(), "" | "auto" | "us-east-1") {
            let location = aws_sdk_s3::types::BucketLocationConstraint::from(region.as_str());
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(location)
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let failure = self.failure(&format!("create bucket {}", self.bucket), e);
                // Created meanwhile by someone else: there now, which is what was asked.
                if failure.is("BucketAlreadyOwnedByYou") || failure.is("BucketAlreadyExists") {
                    return Ok(());
                }
                // With no region configured the client uses R2's `auto`, which a store
                // with real regions (AWS S3, MinIO, Ceph) cannot place a bucket in.
                if failure.is("IllegalLocationConstraintException")
                    && matches!(region.as_str(), "" | "auto")
                {
                    return Err(StoreError::Invalid(format!(
                        "create bucket {} at {}: {} says the bucket needs a region, and none is \
                         set (R2's \"auto\" is the default): set AWS_REGION to the store's region",
                        self.bucket,
                        self.endpoint,
                        failure.code.as_deref().unwrap_or_default()
                    )));
                }
                Err(failure.error)
            }
        }
    }

    /// A URL that lets anyone holding it GET `key` until it expires (R2 allows 1 s to
    /// 7 days).
    pub async fn presign_get(&self, key: &str, expires_in: Duration) -> Result<String, StoreError> {
        if expires_in < Duration::from_secs(1) || expires_in > Duration::from_secs(7 * 24 * 3600) {
            return Err(StoreError::Invalid(format!(
                "presigned URL expiry {expires_in:?} outside 1 s..7 days"
            )));
        }
        let full = self.full_key(key)?;
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .presigned(config)
            .await
            .map_err(|e| self.error(&format!("presign {full}"), e))?;
        Ok(req.uri().to_string())
    }
}

#[async_trait]
impl ObjectReader for S3Store {
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let listed = self.list_modified(prefix).await?;
        Ok(listed.into_iter().map(|(key, _)| key).collect())
    }
    async fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        let (full, strip) = self.scoped(prefix);
        let (mut keys, mut token) = (Vec::new(), None::<String>);
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    self.error(
                        &format!("list objects under s3://{}/{full}", self.bucket),
                        e,
                    )
                })?;
            keys.extend(out.contents().iter().filter_map(|o| {
                let key = o.key().filter(|k| k.len() >= strip)?;
                let modified = o.last_modified().and_then(|t| t.to_millis().ok());
                Some((key[strip..].to_string(), modified))
            }));
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.full_key(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return match self.error(&format!("get s3://{}/{full}", self.bucket), e) {
                    StoreError::NotFound(_) => Ok(None),
                    other => Err(other),
                }
            }
        };
        let body = out.body.collect().await.map_err(|e| {
            StoreError::Transient(format!("reading s3://{}/{full}: {e}", self.bucket))
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }
    async fn get_range(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        let full = self.full_key(key)?;
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .range(range)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let failure = self.failure(&format!("get s3://{}/{full}", self.bucket), e);
                return match failure.error {
                    StoreError::NotFound(_) => Ok(None),
                    // A range past the end of the object (by the service's status and
                    // code: the message text holds the key, which may contain "416").
                    _ if failure.status == Some(416) || failure.is("InvalidRange") => {
                        Ok(Some(Vec::new()))
                    }
                    other => Err(other),
                };
            }
        };
        let body = out.body.collect().await.map_err(|e| {
            StoreError::Transient(format!("reading s3://{}/{full}: {e}", self.bucket))
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }
    fn locate(&self, key: &str) -> String {
        match self.full_key(key) {
            Ok(full) => format!("s3://{}/{full}", self.bucket),
            Err(_) => format!("s3://{}/{key}", self.bucket),
        }
    }
}

#[async_trait]
impl DownloadLinks for S3Store {
    async fn download(&self, key: &str, expires_in: Duration) -> Result<Download, StoreError> {
        Ok(Download::Redirect(self.presign_get(key, expires_in).await?))
    }
}
