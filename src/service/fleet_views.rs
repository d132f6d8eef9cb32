//! The answers of the fleet routes as types (their OpenAPI schemas are generated from
//! these, as the dump routes' are).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The answer to an accepted `POST /export/fleet` (202).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetAccepted {
    pub fleet_id: String,
    /// How many databases it names.
    pub databases: usize,
    pub status_url: String,
}

/// `GET /export/fleet/{id}`: the fleet, its databases counted by status, and a page of
/// them with their dumps.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    pub fleet_id: String,
    /// `running`, then `completed` when every database's dump has ended.
    pub status: FleetState,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// How many databases it names.
    pub databases: usize,
    /// Databases by status (`waiting`, `running`, `completed`, `failed`, …).
    pub counts: std::collections::BTreeMap<String, usize>,
    /// For a fleet started with `"drill": true`: its completed dumps by their drill's
    /// outcome (`passed`, `failed`, `skipped`, or `pending` until drilled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drills: Option<std::collections::BTreeMap<String, usize>>,
    /// This page's databases, in the fleet's order.
    pub items: Vec<FleetItem>,
    /// Where the next page starts (a database index); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<usize>,
}

/// One database of a fleet and its dump.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetItem {
    /// Its path under the root.
    pub database: String,
    pub dump_id: Option<String>,
    /// `waiting`; `running` or its dump's status; or `notStarted` (see `error`).
    pub status: String,
    /// Why its dump was not started, or failed to start: `code` and `message`.
    pub error: Option<serde_json::Value>,
}

/// Where a fleet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FleetState {
    Running,
    /// Every database's dump has ended (or was never started); counted, called back.
    Completed,
}
