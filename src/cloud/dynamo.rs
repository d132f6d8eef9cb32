//! `ProgressStore` on DynamoDB (the start guard's slots and the rate counters, in the
//! same table, are `dynamo_slots`).
//!
//! One item per dump, keyed by `id`: the job record as JSON in `body` (kept small by
//! design), `version` for conditional writes, `expires_at` (epoch seconds) as the TTL
//! attribute, and `kind`/`created_at` for the `by_created` index that lists recent dumps
//! without a scan. TTL deletion is lazy, so readers ignore expired items themselves.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use super::{parse_url, sdk_error, sdk_failure};
use crate::error::StoreError;
use crate::model::JobRecord;
use crate::ports::{ProgressReader, ProgressStore};

const INDEX: &str = "by_created";
const KIND: &str = "dump";

/// Job records in a DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoProgress {
    pub(super) client: Client,
    pub(super) table: String,
    ttl: Option<Duration>,
    /// Where requests go, for error messages: the endpoint URL, or AWS's region.
    endpoint: String,
}

pub(super) fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<Option<JobRecord>, StoreError> {
    let expired = item
        .get("expires_at")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|t| t <= now_secs());
    if expired {
        return Ok(None);
    }
    let body = item
        .get("body")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Permanent("job item without a body".into()))?;
    serde_json::from_str(body)
        .map(Some)
        .map_err(|e| StoreError::Permanent(format!("corrupt job record: {e}")))
}

impl DynamoProgress {
    /// Builds the store for `dynamodb://TABLE` from a loaded AWS configuration.
    /// Checks `dynamodb://TABLE` without any AWS setup; the table's name.
    pub fn check_url(url: &str) -> Result<&str, StoreError> {
        let (table, rest) = parse_url(url, "dynamodb")?;
        if !rest.is_empty() {
            return Err(StoreError::Invalid(format!(
                "{url:?}: a dynamodb:// URL names only a table"
            )));
        }
        Ok(table)
    }

    pub fn new(config: &aws_config::SdkConfig, url: &str) -> Result<Self, StoreError> {
        let table = Self::check_url(url)?;
        let client = Client::new(config);
        // The SDK resolves AWS_ENDPOINT_URL_DYNAMODB itself and does not say where to.
        let named = crate::config::Env::process()
            .get("AWS_ENDPOINT_URL_DYNAMODB")
            .or_else(|| config.endpoint_url().map(str::to_string));
        let endpoint = match named {
            Some(url) => url,
            // "auto" is R2's region, the fallback when none is set: not one of AWS's.
            None => match config.region().map(|r| r.as_ref()) {
                Some(region) if region != "auto" => format!("AWS DynamoDB in {region}"),
                _ => "AWS DynamoDB (no AWS_REGION set)".to_string(),
            },
        };
        Ok(DynamoProgress {
            client,
            table: table.to_string(),
            ttl: Some(Duration::from_secs(30 * 24 * 3600)),
            endpoint,
        })
    }

    /// Records expire `ttl` after their last write (`None`: never). Default 30 days.
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    fn item(&self, job: &JobRecord) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let body = serde_json::to_string(job)
            .map_err(|e| StoreError::Invalid(format!("encoding job: {e}")))?;
        let mut item = HashMap::from([
            ("id".to_string(), s(&job.id)),
            ("version".to_string(), n(job.version as i64)),
            ("kind".to_string(), s(KIND)),
            (
                "created_at".to_string(),
                s(job
                    .created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            ),
            ("body".to_string(), s(body)),
        ]);
        if let Some(ttl) = self.ttl {
            item.insert("expires_at".into(), n(now_secs() + ttl.as_secs() as i64));
        }
        Ok(item)
    }

    /// Creates the table with its index and TTL unless it exists (local development and
    /// tests; in AWS the SAM template creates it).
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Invalid(e.to_string());
        let index = GlobalSecondaryIndex::builder()
            .index_name(INDEX)
            .key_schema(key("kind", KeyType::Hash).map_err(invalid)?)
            .key_schema(key("created_at", KeyType::Range).map_err(invalid)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(invalid)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr("id").map_err(invalid)?)
            .attribute_definitions(attr("kind").map_err(invalid)?)
            .attribute_definitions(attr("created_at").map_err(invalid)?)
            .key_schema(key("id", KeyType::Hash).map_err(invalid)?)
            .global_secondary_indexes(index)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        if let Err(e) = created {
            let failure = sdk_failure(&format!("create table {}", self.table), e);
            if !failure.is("ResourceInUseException") {
                return Err(failure.error);
            }
        }
        for _ in 0..60 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| sdk_error("describe table", e))?;
            if described
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| *s == TableStatus::Active)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("expires_at")
            .build()
            .map_err(invalid)?;
        match self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                // DynamoDB answers a repeated enable with a ValidationException whose own
                // message (not the table name) says so; it has no code of its own.
                let failure = sdk_failure("enable TTL", e);
                let already = failure.is("ValidationException")
                    && failure
                        .message
                        .as_deref()
                        .is_some_and(|m| m.contains("already enabled"));
                if already {
                    Ok(())
                } else {
                    Err(failure.error)
                }
            }
        }
    }

    /// Maps a failed call on the table; a missing table says how to create it.
    pub(super) fn table_error<E>(
        &self,
        context: &str,
        err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        // The table and the endpoint named in every message (several stores may be in use).
        let context = format!(
            "DynamoDB table {} at {}: {context}",
            self.table, self.endpoint
        );
        let failure = sdk_failure(&context, err);
        if failure.is("ResourceNotFoundException") {
            return StoreError::Permanent(format!(
                "DynamoDB table {:?} does not exist (create it with `chunkdump setup`): {}",
                self.table, failure.error
            ));
        }
        failure.error
    }
}

#[async_trait]
impl ProgressReader for DynamoProgress {
    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.table_error(&format!("get {id}"), e))?;
        out.item().map(decode).transpose().map(Option::flatten)
    }
    async fn list_recent(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        let mut jobs = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(INDEX)
                .key_condition_expression("kind = :kind")
                .expression_attribute_values(":kind", s(KIND))
                .scan_index_forward(false)
                .limit(limit.clamp(1, 100) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.table_error("list recent dumps", e))?;
            for item in out.items() {
                if let Some(job) = decode(item)? {
                    jobs.push(job);
                }
            }
            start = out.last_evaluated_key().cloned();
            if jobs.len() >= limit || start.is_none() {
                break;
            }
        }
        jobs.truncate(limit);
        Ok(jobs)
    }
}

#[async_trait]
impl ProgressStore for DynamoProgress {
    async fn create(&self, job: &JobRecord) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(job)?))
            // An expired item no longer holds its id.
            .condition_expression("attribute_not_exists(id) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now_secs()))
            .send()
            .await;
        match result.map_err(|e| self.table_error(&job.id, e)) {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(StoreError::AlreadyExists(job.id.clone())),
            Err(e) => Err(e),
        }
    }

    async fn commit(&self, job: &JobRecord, expected_version: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(job)?))
            .condition_expression(
                "version = :expected AND (attribute_not_exists(expires_at) OR expires_at > :now)",
            )
            .expression_attribute_values(":expected", n(expected_version as i64))
            .expression_attribute_values(":now", n(now_secs()))
            .send()
            .await;
        match result.map_err(|e| self.table_error(&job.id, e)) {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(StoreError::Conflict {
                id: job.id.clone(),
                expected: expected_version,
            }),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, id: &str, expected_version: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(id))
            .condition_expression("attribute_not_exists(id) OR version = :expected")
            .expression_attribute_values(":expected", n(expected_version as i64))
            .send()
            .await;
        match result.map_err(|e| self.table_error(id, e)) {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(StoreError::Conflict {
                id: id.to_string(),
                expected: expected_version,
            }),
            Err(e) => Err(e),
        }
    }
}
