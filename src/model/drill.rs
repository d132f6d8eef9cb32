//! What a job record keeps of its dump's last restore drill (see `drill`): enough for
//! `list` and status to show it; the whole report is an object beside the dump.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The outcome of a dump's last drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DrillSummary {
    /// When the drill ran.
    pub at: DateTime<Utc>,
    pub passed: bool,
    /// The drill did not run (the dump is too large for the machine that was to drill
    /// it); `problem` says why. Never counted as passed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// The first problem of a failed drill, or why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl DrillSummary {
    /// `passed`, `failed` or `skipped`: how `list` and the fleet counts name it.
    pub fn outcome(&self) -> &'static str {
        match (self.passed, self.skipped) {
            (true, _) => "passed",
            (false, true) => "skipped",
            (false, false) => "failed",
        }
    }
}

/// A drill interval given in hours (a schedule's `drillLatestEveryHours`, the drill
/// schedule's `everyHours`): `None` for 0, a negative or a non-finite number of hours, or
/// one too large to be a duration.
pub fn drill_interval(hours: f64) -> Option<std::time::Duration> {
    Some(hours)
        .filter(|h| h.is_finite() && *h > 0.0)
        .and_then(|h| std::time::Duration::try_from_secs_f64(h * 3600.0).ok())
}
