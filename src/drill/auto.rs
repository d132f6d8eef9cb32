//! Drills nobody runs by hand: a dump started with `"drill": true` is drilled once it
//! completes (the state machine's `Drill` step, locally and in AWS), and a schedule can
//! drill the latest dump of each database every N hours ([`drill_latest`]). A failed
//! drill calls the dump's callback URL back, signed like every callback, with
//! `"event": "drill.failed"`; in AWS each outcome is also a CloudWatch metric
//! ([`metric_line`]), which the template's alarm can watch.

use std::time::Duration;

use chrono::Utc;

use super::{drill_job, report_key, DrillReport, DrillSettings};
use crate::error::DumpError;
use crate::model::{JobRecord, JobStatus};
use crate::ports::{CallbackSender, ObjectStore, ProgressStore};

/// The ports an automatic drill uses.
#[derive(Clone, Copy)]
pub struct DrillPorts<'a> {
    pub objects: &'a dyn ObjectStore,
    pub progress: &'a dyn ProgressStore,
    /// Sends the `drill.failed` callback (none: no callbacks are set up).
    pub callbacks: Option<&'a dyn CallbackSender>,
}

/// Drills completed dump `id` once: `None` if it was drilled already (a retried step
/// drills and calls back no second time). A failed drill calls back.
pub async fn drill_completed(
    ports: DrillPorts<'_>,
    id: &str,
    settings: &DrillSettings,
) -> Result<Option<DrillReport>, DumpError> {
    let job = ports.progress.require(id).await?;
    if job.last_drill.is_some() {
        return Ok(None);
    }
    drill_and_tell(ports, &job, settings).await.map(Some)
}

/// Which dumps [`drill_latest`] looks at.
#[derive(Debug, Clone, Default)]
pub struct LatestScope {
    /// Only dumps this schedule started (none: every dump).
    pub schedule: Option<String>,
}

/// How many of the most recent dumps [`drill_latest`] looks through.
const RECENT_DUMPS: usize = 1000;

/// Drills the latest completed dump of each database in `scope` whose last drill is
/// older than `every` (or that was never drilled); the reports, in the order drilled.
/// A dump that cannot be drilled (its files unreadable, the store down) is logged and
/// the others are still drilled; the first such error is returned after them.
pub async fn drill_latest(
    ports: DrillPorts<'_>,
    scope: &LatestScope,
    every: Duration,
    settings: &DrillSettings,
) -> Result<Vec<DrillReport>, DumpError> {
    let jobs = ports.progress.list_recent(RECENT_DUMPS).await?;
    let due = latest_due(jobs, scope, every, Utc::now());
    let mut reports = Vec::new();
    let mut first_error = None;
    for job in due {
        match drill_and_tell(ports, &job, settings).await {
            Ok(report) => reports.push(report),
            Err(e) => {
                tracing::warn!(dump_id = %job.id, error = %e, "the latest dump could not be drilled");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if reports.is_empty() => Err(e),
        _ => Ok(reports),
    }
}

/// The latest completed dump of each database, among `jobs`, whose drill is due.
fn latest_due(
    jobs: Vec<JobRecord>,
    scope: &LatestScope,
    every: Duration,
    now: chrono::DateTime<Utc>,
) -> Vec<JobRecord> {
    let mut latest = std::collections::BTreeMap::<String, JobRecord>::new();
    for job in jobs {
        // An encrypted dump is never drilled (its report would name tables in the bucket).
        let in_scope = job.status == JobStatus::Completed
            && !job.spec.encrypted()
            && scope
                .schedule
                .as_ref()
                .is_none_or(|s| job.schedule.as_ref() == Some(s));
        if !in_scope {
            continue;
        }
        let ended = |j: &JobRecord| j.completed_at.unwrap_or(j.updated_at);
        match latest.get(&job.spec.database) {
            Some(kept) if ended(kept) >= ended(&job) => {}
            _ => {
                latest.insert(job.spec.database.clone(), job);
            }
        }
    }
    let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
    latest
        .into_values()
        .filter(|job| job.last_drill.as_ref().is_none_or(|d| now - d.at >= every))
        .collect()
}

/// Drills `job`, logs the outcome and calls back if it failed.
async fn drill_and_tell(
    ports: DrillPorts<'_>,
    job: &JobRecord,
    settings: &DrillSettings,
) -> Result<DrillReport, DumpError> {
    let report = drill_job(ports.objects, ports.progress, job, settings).await?;
    let outcome = report.summary(Utc::now()).outcome();
    tracing::info!(dump_id = %job.id, outcome, problems = report.problems.len(), "drill");
    if !report.passed && report.skipped.is_none() {
        if let Some(sender) = ports.callbacks {
            call_back_failed(sender, job, &report).await;
        }
    }
    Ok(report)
}

/// Tells the dump's callback URL (if it has one) that its drill failed, with the
/// sender's retries.
async fn call_back_failed(sender: &dyn CallbackSender, job: &JobRecord, report: &DrillReport) {
    let Some(callback) = &job.callback else {
        return;
    };
    let body = serde_json::json!({
        "event": "drill.failed",
        "dumpId": job.id,
        "problems": report.problems,
        "report": report_key(&job.id),
        "drilledAt": report.drilled_at,
    });
    let body = serde_json::to_vec(&body).expect("a JSON value serializes");
    let _ = crate::lifecycle::send_with_retries(sender, &callback.url, &body, "drill.failed").await;
}

/// The CloudWatch namespace of the drill metrics.
pub const METRIC_NAMESPACE: &str = "chunkdump";

/// One log line in CloudWatch's embedded metric format: printed by a Lambda function,
/// CloudWatch Logs turns it into the metrics `DrillsPassed`, `DrillsFailed` and
/// `DrillsSkipped` (namespace [`METRIC_NAMESPACE`], dimension `FunctionName`, so each
/// deployment's alarm watches its own; one of them is 1), with no API call and no extra
/// permission.
pub fn metric_line(report: &DrillReport, function: &str, at: chrono::DateTime<Utc>) -> String {
    let outcome = report.summary(at).outcome();
    let count = |o: &str| u8::from(outcome == o);
    serde_json::json!({
        "_aws": {
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": [
                    {"Name": "DrillsPassed", "Unit": "Count"},
                    {"Name": "DrillsFailed", "Unit": "Count"},
                    {"Name": "DrillsSkipped", "Unit": "Count"},
                ],
            }],
        },
        "DrillsPassed": count("passed"),
        "DrillsFailed": count("failed"),
        "DrillsSkipped": count("skipped"),
        "FunctionName": function,
        "dumpId": report.dump_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DrillSummary, JobRecord};

    fn job(
        id: &str,
        database: &str,
        completed_hours_ago: i64,
        drilled_hours_ago: Option<i64>,
    ) -> JobRecord {
        let now = Utc::now();
        let spec: crate::model::DumpSpec = serde_json::from_value(serde_json::json!({
            "database": database, "format": "sql", "includeSchema": true,
            "chunkSize": 1000, "partSize": 8 << 20
        }))
        .unwrap();
        let mut job = JobRecord::new(id.into(), spec, now);
        job.status = JobStatus::Completed;
        job.completed_at = Some(now - chrono::Duration::hours(completed_hours_ago));
        job.last_drill = drilled_hours_ago.map(|h| DrillSummary {
            at: now - chrono::Duration::hours(h),
            passed: true,
            skipped: false,
            problem: None,
        });
        job
    }

    #[test]
    fn only_each_databases_latest_dump_is_due_and_only_once_its_drill_is_old() {
        let day = Duration::from_secs(24 * 3600);
        let jobs = vec![
            job("a-old", "a.db", 30, None),
            job("a-new", "a.db", 2, None),
            job("b-new", "b.db", 1, Some(1)),
            job("b-old", "b.db", 50, None),
            job("c-new", "c.db", 40, Some(25)),
        ];
        let due: Vec<String> = latest_due(jobs.clone(), &LatestScope::default(), day, Utc::now())
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(
            due,
            ["a-new", "c-new"],
            "b's latest was drilled an hour ago"
        );
        let mut running = job("a-newest", "a.db", 0, None);
        running.status = JobStatus::Processing;
        let mut scheduled = jobs;
        scheduled.push(running);
        for j in scheduled.iter_mut().filter(|j| j.id.starts_with("a-")) {
            j.schedule = Some("nightly".into());
        }
        let scope = LatestScope {
            schedule: Some("nightly".into()),
        };
        let due: Vec<String> = latest_due(scheduled, &scope, day, Utc::now())
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(
            due,
            ["a-new"],
            "the schedule's databases; a running dump is not drilled"
        );
    }

    #[test]
    fn the_metric_line_is_an_embedded_metric_document_with_one_outcome_counted() {
        let report: DrillReport = serde_json::from_value(serde_json::json!({
            "reportVersion": 1, "dumpId": "dump_x", "drilledAt": "2026-12-07T00:00:00Z",
            "passed": false, "problems": ["table \"t\": 1 foreign key violation(s)"],
            "warnings": [], "chunkdumpVersion": "0", "sqliteVersion": "3", "format": "sql",
            "compression": "none", "tables": [], "integrityCheck": "ok",
            "foreignKeyViolations": 1, "viewsChecked": 0, "virtualTablesChecked": 0,
            "schemaMatches": null, "bytesRead": 0, "restoreSeconds": 0.0, "checkSeconds": 0.0,
            "peakMemoryBytes": null
        }))
        .unwrap();
        let at = Utc::now();
        let line: serde_json::Value =
            serde_json::from_str(&metric_line(&report, "stack-drill", at)).unwrap();
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], METRIC_NAMESPACE);
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["FunctionName"]])
        );
        assert_eq!(line["_aws"]["Timestamp"], at.timestamp_millis());
        // Every metric the directive names is a number at the top level.
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(line[metric["Name"].as_str().unwrap()].is_number(), "{line}");
        }
        assert_eq!(
            (
                &line["DrillsFailed"],
                &line["DrillsPassed"],
                &line["DrillsSkipped"]
            ),
            (&1.into(), &0.into(), &0.into())
        );
        assert_eq!(line["FunctionName"], "stack-drill");
    }
}
