//! The start guard's slots and the start rate counters on DynamoDB, as items of the
//! progress table that the `by_created` index never sees (no `kind`/`created_at`).

use std::time::Duration;

use async_trait::async_trait;

use super::dynamo::{n, now_secs, s};
use super::sdk_error;
use super::DynamoProgress;
use crate::error::StoreError;
use crate::ports::{RateCounter, StartGuard};

#[async_trait]
impl StartGuard for DynamoProgress {
    async fn claim(
        &self,
        slot: &str,
        holder: &str,
        replacing: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        // Slot items have no `kind`/`created_at`, so the by_created index never sees them.
        let id = format!("slot#{slot}");
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(&id))
            .item("holder", s(holder))
            .condition_expression(
                "attribute_not_exists(id) OR holder = :replacing OR holder = :holder",
            )
            .expression_attribute_values(":replacing", s(replacing.unwrap_or("")))
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        match result.map_err(|e| self.table_error(&id, e)) {
            Ok(_) => Ok(None),
            Err(StoreError::Conflict { .. }) => {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("id", s(&id))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| sdk_error(&id, e))?;
                let current = out
                    .item()
                    .and_then(|i| i.get("holder"))
                    .and_then(|v| v.as_s().ok())
                    .cloned();
                // Released between the two calls: report it as held by nobody we know.
                Ok(Some(current.unwrap_or_default()))
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl RateCounter for DynamoProgress {
    async fn count_in_window(
        &self,
        key: &str,
        window: Duration,
        delta: i64,
    ) -> Result<(u64, u64), StoreError> {
        let now = now_secs();
        let (start, end) = crate::ports::window_bounds(now, window);
        let id = format!("rate#{key}#{start}");
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(&id))
            .update_expression("ADD hits :delta SET expires_at = :expires")
            .expression_attribute_values(":delta", n(delta))
            .expression_attribute_values(":expires", n(end + 60))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew);
        if delta < 0 {
            // Giving back never takes a counter below zero.
            update = update
                .condition_expression("hits >= :need")
                .expression_attribute_values(":need", n(-delta));
        }
        let out = match update.send().await.map_err(|e| self.table_error(&id, e)) {
            Ok(out) => out,
            Err(StoreError::Conflict { .. }) => return Ok((0, (end - now) as u64)),
            Err(e) => return Err(e),
        };
        let count: i64 = out
            .attributes()
            .and_then(|a| a.get("hits"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(delta);
        Ok((count.max(0) as u64, (end - now) as u64))
    }
}
