//! The delivery state of a dump's completion callback, kept in its job record.

use serde::{Deserialize, Serialize};

/// Where a callback's delivery stands.
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackStatus {
    /// Not delivered yet (the dump runs, or delivery is under way).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; `last_error` says why.
    Failed,
    /// Not sent, and never will be: the dump was cancelled (by a caller, who knows).
    Skipped,
}

/// Delivery state of a dump's callback, shown in its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackState {
    pub url: String,
    pub status: CallbackStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl CallbackState {
    /// A callback to `url` that has not been attempted.
    pub fn pending(url: String) -> Self {
        CallbackState {
            url,
            status: CallbackStatus::Pending,
            attempts: 0,
            last_error: None,
        }
    }
}
