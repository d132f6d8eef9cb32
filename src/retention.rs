//! Retention: which completed dumps to keep, and deleting the others whole (files,
//! manifest, staging leftovers, job record).
//!
//! Rules, in order of precedence:
//! - only completed dumps are ever deleted: a pending or running dump is never touched,
//!   and failed or cancelled ones hold no files (their records stay, for the history);
//! - the policy applies to each database on its own (a store may hold several): the
//!   newest completed dump of each is always kept, whatever the policy says;
//! - a completed dump is kept if it is among its database's newest `keep_last`, or younger than
//!   `keep_for`; it is deleted only when no rule given keeps it;
//! - a prune considers only the dumps in its scope: one database, one schedule's dumps
//!   (a schedule's policy never deletes a dump started by hand).
//!
//! Files go before the record, so a prune interrupted half way leaves a record whose
//! files are (partly) gone, which the next prune finishes, never files without a record.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::StoreError;
use crate::model::{JobRecord, JobStatus};
use crate::ports::{ObjectStore, ProgressStore};

/// How many completed dumps to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Keep the newest N completed dumps.
    pub keep_last: Option<u32>,
    /// Keep completed dumps younger than this.
    pub keep_for: Option<Duration>,
}

impl RetentionPolicy {
    /// A policy from its rules as people give them (`keep_days` in days, fractions
    /// allowed); `what_days` names the days setting in the error.
    pub fn from_rules(
        keep_last: Option<u32>,
        keep_days: Option<f64>,
        what_days: &str,
    ) -> Result<Self, String> {
        let keep_for = match keep_days {
            Some(d) if !(d.is_finite() && d > 0.0) => {
                return Err(format!(
                    "{what_days} {d}: must be a positive number of days"
                ))
            }
            Some(d) => Some(Duration::from_secs_f64(d * 86_400.0)),
            None => None,
        };
        let policy = RetentionPolicy {
            keep_last,
            keep_for,
        };
        policy.check()?;
        Ok(policy)
    }

    /// A policy needs at least one rule: an empty one would delete everything but the
    /// newest dump, which nobody asks for by omission.
    pub fn check(&self) -> Result<(), String> {
        match (self.keep_last, self.keep_for) {
            (None, None) => Err("a retention policy needs keep-last and/or keep-days".into()),
            (Some(0), _) => Err("keep-last must be at least 1".into()),
            _ => Ok(()),
        }
    }
}

/// Which dumps a prune considers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneScope {
    /// Only dumps of this database.
    pub database: Option<crate::model::DatabaseFilter>,
    /// Only dumps started by this schedule.
    pub schedule: Option<String>,
}

impl PruneScope {
    fn includes(&self, job: &JobRecord) -> bool {
        self.database
            .as_ref()
            .is_none_or(|db| db.matches(&job.spec.database, &job.id))
            && self
                .schedule
                .as_ref()
                .is_none_or(|s| job.schedule.as_ref() == Some(s))
    }
}

/// One dump a prune deleted (or would delete, in a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrunedDump {
    pub dump_id: String,
    pub database: String,
    pub completed_at: Option<DateTime<Utc>>,
    pub files: usize,
    pub bytes: u64,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub deleted: Vec<PrunedDump>,
    /// Completed dumps kept.
    pub kept: usize,
}

/// The completed dumps in `scope` the policy deletes (`jobs` in any order), and how many
/// completed ones it keeps.
pub fn select_for_deletion<'a>(
    jobs: &'a [JobRecord],
    policy: &RetentionPolicy,
    scope: &PruneScope,
    now: DateTime<Utc>,
) -> (Vec<&'a JobRecord>, usize) {
    let mut completed: Vec<&JobRecord> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Completed && scope.includes(j))
        .collect();
    // Per database, newest first, by completion time (then creation, then id, for a
    // stable order): each database keeps its own newest dumps, however many others the
    // store holds.
    completed.sort_by(|a, b| {
        (&a.spec.database, b.completed_at, b.created_at, &b.id).cmp(&(
            &b.spec.database,
            a.completed_at,
            a.created_at,
            &a.id,
        ))
    });
    let mut delete = Vec::new();
    let mut rank = 0;
    for (at, job) in completed.iter().enumerate() {
        rank = match at
            .checked_sub(1)
            .map(|before| &completed[before].spec.database)
        {
            Some(database) if *database == job.spec.database => rank + 1,
            _ => 0,
        };
        let by_count = policy.keep_last.is_some_and(|n| rank < n as usize);
        let age = now
            .signed_duration_since(job.completed_at.unwrap_or(job.created_at))
            .to_std()
            .unwrap_or_default();
        let by_age = policy.keep_for.is_some_and(|d| age < d);
        if rank > 0 && !by_count && !by_age {
            delete.push(*job);
        }
    }
    let kept = completed.len() - delete.len();
    (delete, kept)
}

/// Applies `policy` to the dumps in `scope` (of the newest 100,000 in `progress`),
/// deleting the others' files and records unless `dry_run`.
pub async fn prune(
    objects: &dyn ObjectStore,
    progress: &dyn ProgressStore,
    policy: &RetentionPolicy,
    scope: &PruneScope,
    dry_run: bool,
) -> Result<PruneReport, StoreError> {
    policy.check().map_err(StoreError::Invalid)?;
    let jobs = progress.list_recent(100_000).await?;
    let (doomed, kept) = select_for_deletion(&jobs, policy, scope, Utc::now());
    let mut report = PruneReport {
        deleted: Vec::new(),
        kept,
    };
    for job in doomed {
        if !dry_run {
            crate::lifecycle::delete_completed(objects, progress, job).await?;
            tracing::info!(dump_id = %job.id, files = job.files.len(), "pruned a completed dump");
        }
        report.deleted.push(PrunedDump {
            dump_id: job.id.clone(),
            database: job.spec.database.clone(),
            completed_at: job.completed_at,
            files: job.files.len(),
            bytes: job.files.iter().map(|f| f.size).sum(),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DumpSpec;

    fn done(id: &str, db: &str, days_ago: i64, now: DateTime<Utc>) -> JobRecord {
        let spec = DumpSpec {
            database: db.into(),
            format: crate::model::Format::Sql,
            compression: crate::model::Compression::None,
            tables: None,
            include_schema: true,
            slice_rows: crate::model::SliceRows::new(1000).unwrap(),
            part_size: 8 << 20,
            snapshot: false,
            snapshot_max_block_ms: None,
            frame_size: None,
            shown_as: None,
            drill: false,
            recipients: Vec::new(),
        };
        let mut j = JobRecord::new(id.into(), spec, now - chrono::Duration::days(days_ago));
        j.status = JobStatus::Completed;
        j.completed_at = Some(now - chrono::Duration::days(days_ago));
        j
    }

    fn ids(v: &[&JobRecord]) -> Vec<String> {
        v.iter().map(|j| j.id.clone()).collect()
    }

    #[test]
    fn keeps_the_newest_n_and_the_young_and_never_the_running_or_the_newest() {
        let now = Utc::now();
        let mut jobs: Vec<JobRecord> = (0..6)
            .map(|i| done(&format!("d{i}"), "/a.db", i, now))
            .collect();
        let mut running = done("run", "/a.db", 30, now);
        running.status = JobStatus::Processing;
        jobs.push(running);
        jobs.push(done("other", "/b.db", 40, now));
        let keep2 = RetentionPolicy {
            keep_last: Some(2),
            keep_for: None,
        };
        let a = PruneScope {
            database: Some(crate::model::DatabaseFilter::path("/a.db")),
            schedule: None,
        };
        let (del, kept) = select_for_deletion(&jobs, &keep2, &a, now);
        assert_eq!(ids(&del), ["d2", "d3", "d4", "d5"]);
        assert_eq!(kept, 2);
        // Either rule keeps a dump: the newest 2, or younger than 3.5 days (d0..d3).
        let both = RetentionPolicy {
            keep_last: Some(2),
            keep_for: Some(Duration::from_secs(84 * 3600)),
        };
        assert_eq!(
            ids(&select_for_deletion(&jobs, &both, &a, now).0),
            ["d4", "d5"]
        );
        // Without a database filter, each database keeps its own newest dumps: /b.db's
        // one old dump stays however many newer ones /a.db has.
        assert_eq!(
            ids(&select_for_deletion(&jobs, &keep2, &PruneScope::default(), now).0),
            ["d2", "d3", "d4", "d5"]
        );
        let mut fleet = jobs.clone();
        fleet.extend((0..3).map(|i| done(&format!("b{i}"), "/b.db", 50 + i, now)));
        assert_eq!(
            ids(&select_for_deletion(&fleet, &keep2, &PruneScope::default(), now).0),
            ["d2", "d3", "d4", "d5", "b1", "b2"]
        );
        // A schedule's policy sees only the dumps it started.
        for j in jobs
            .iter_mut()
            .filter(|j| ["d1", "d3", "d5"].contains(&j.id.as_str()))
        {
            j.schedule = Some("nightly".into());
        }
        let nightly = PruneScope {
            database: None,
            schedule: Some("nightly".into()),
        };
        assert_eq!(
            ids(&select_for_deletion(
                &jobs,
                &RetentionPolicy {
                    keep_last: Some(1),
                    keep_for: None
                },
                &nightly,
                now
            )
            .0),
            ["d3", "d5"]
        );
        // An age rule alone still keeps the newest dump, however old.
        let old = vec![done("x", "/a.db", 100, now), done("y", "/a.db", 200, now)];
        let week = RetentionPolicy {
            keep_last: None,
            keep_for: Some(Duration::from_secs(7 * 86400)),
        };
        assert_eq!(
            ids(&select_for_deletion(&old, &week, &PruneScope::default(), now).0),
            ["y"]
        );
        assert!(RetentionPolicy::default().check().is_err());
        assert!(RetentionPolicy {
            keep_last: Some(0),
            keep_for: None
        }
        .check()
        .is_err());
    }
}
