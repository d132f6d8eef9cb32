//! The API's answers as types: a dump's status, a line of the dump list, the start
//! acknowledgement and the completion callback's body.
//!
//! Built from the model only (no handler or store in here), so the CLI's `status`, the
//! HTTP handlers and the notifier all print the same shapes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::model::{
    CallbackStatus, Compression, Consistency, DownloadUrl, DrillSummary, FileEntry, Format,
    JobError, JobRecord, JobStatus,
};

/// Timestamps in answers: RFC 3339, whole seconds, `Z`.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A dump's status (`GET /export/dump/status/{id}`, `DELETE …`, `chunkdump status`).
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView<'a> {
    pub dump_id: &'a str,
    pub status: JobStatus,
    pub format: Format,
    pub compression: Compression,
    /// The age public keys the dump's files are encrypted to (absent when they are not):
    /// its files open with a matching identity only.
    #[serde(default, skip_serializing_if = "<[String]>::is_empty")]
    pub recipients: &'a [String],
    pub progress: ProgressView,
    pub bytes_written: u64,
    pub chunks: u64,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub files: &'a [FileEntry],
    pub warnings: &'a [String],
    pub consistency: Consistency,
    /// The manifest's object name, once the dump completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<DownloadUrl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a JobError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackView<'a>>,
    /// How to resume an interrupted dump (a command, or the API call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_with: Option<String>,
    /// The last restore drill of a completed dump (`chunkdump drill`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<&'a DrillSummary>,
}

/// Rows done and expected, and when the dump should end at the measured rate.
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressView {
    pub total_rows: Option<u64>,
    pub processed_rows: u64,
    pub percent_complete: u8,
    pub started_at: Option<String>,
    pub estimated_completion: Option<String>,
}

/// How the completion callback's delivery went.
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackView<'a> {
    pub status: CallbackStatus,
    pub attempts: u32,
    pub last_error: Option<&'a str>,
}

impl<'a> StatusView<'a> {
    /// The status of `job` at `now` (which dates the estimated completion).
    pub fn new(job: &'a JobRecord, now: DateTime<Utc>) -> Self {
        let completed = job.status == JobStatus::Completed;
        StatusView {
            dump_id: &job.id,
            status: job.status,
            format: job.spec.format,
            compression: job.spec.compression,
            progress: ProgressView {
                total_rows: job.total_rows,
                processed_rows: job.processed_rows,
                percent_complete: job.percent_complete(),
                started_at: job.started_at.map(timestamp),
                estimated_completion: job.estimated_completion(now).map(timestamp),
            },
            bytes_written: job.bytes_written,
            chunks: job.chunks,
            recipients: &job.spec.recipients,
            created_at: timestamp(job.created_at),
            // An ended dump (failed, cancelled) ended when its record last changed: the
            // same time its callback gives.
            completed_at: job
                .completed_at
                .or_else(|| job.status.is_terminal().then_some(job.updated_at))
                .map(timestamp),
            files: &job.files,
            warnings: &job.warnings,
            consistency: job.consistency,
            manifest: completed.then(|| crate::model::manifest_key(&job.id, job.spec.format)),
            manifest_url: None,
            download_url: None,
            error: job.error.as_ref(),
            callback: job.callback.as_ref().map(|cb| CallbackView {
                status: cb.status,
                attempts: cb.attempts,
                last_error: cb.last_error.as_deref(),
            }),
            resume_with: None,
            last_drill: job.last_drill.as_ref(),
        }
    }

    /// The view of a dump found interrupted (its runner gone, or paused by a fault):
    /// status `interrupted`, no estimated completion that will not come, and how to go
    /// on.
    pub fn interrupted(mut self, resume_with: String) -> Self {
        self.status = JobStatus::Interrupted;
        self.progress.estimated_completion = None;
        self.resume_with = Some(resume_with);
        self
    }

    /// Adds where the API serves a completed dump and its manifest (relative URLs).
    pub fn with_urls(mut self, job: &JobRecord) -> Self {
        if job.status == JobStatus::Completed {
            self.manifest_url = Some(job.manifest_url(""));
            self.download_url = Some(job.download_url(""));
        }
        self
    }
}

/// One line of `GET /export/dump`.
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DumpSummary<'a> {
    pub dump_id: &'a str,
    pub status: JobStatus,
    pub format: Format,
    pub created_at: String,
    pub bytes_written: u64,
}

impl<'a> From<&'a JobRecord> for DumpSummary<'a> {
    fn from(job: &'a JobRecord) -> Self {
        DumpSummary {
            dump_id: &job.id,
            status: job.status,
            format: job.spec.format,
            created_at: timestamp(job.created_at),
            bytes_written: job.bytes_written,
        }
    }
}

/// The answer to an accepted `POST /export/dump` (202).
#[cfg_attr(feature = "api", derive(schemars::JsonSchema))]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartAccepted<'a> {
    /// Always `accepted`.
    pub status: &'static str,
    /// The dump id.
    pub progress_key: &'a str,
    pub message: &'static str,
    pub status_url: String,
}

impl<'a> StartAccepted<'a> {
    /// The acknowledgement of dump `id`.
    pub fn new(id: &'a str) -> Self {
        StartAccepted {
            status: "accepted",
            progress_key: id,
            message: "Dump process started",
            status_url: format!("/export/dump/status/{}", crate::model::path_segment(id)),
        }
    }
}

/// The body of the completion callback (signed and POSTed by the notifier).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackBody<'a> {
    pub status: JobStatus,
    pub dump_id: &'a str,
    /// `null` unless the dump completed.
    pub download_url: Option<DownloadUrl>,
    pub format: Format,
    /// Bytes written (after compression).
    pub size: u64,
    pub completed_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a JobError>,
    pub warnings: &'a [String],
    pub consistency: Consistency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_url: Option<String>,
}

impl<'a> CallbackBody<'a> {
    /// The callback of finished `job`, with URLs under `base` (the public URL, or empty).
    pub fn new(job: &'a JobRecord, base: &str) -> Self {
        let completed = job.status == JobStatus::Completed;
        CallbackBody {
            status: job.status,
            dump_id: &job.id,
            download_url: completed.then(|| job.download_url(base)),
            format: job.spec.format,
            size: job.bytes_written,
            completed_at: timestamp(job.completed_at.unwrap_or(job.updated_at)),
            error: job.error.as_ref(),
            warnings: &job.warnings,
            consistency: job.consistency,
            manifest_url: completed.then(|| job.manifest_url(base)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CallbackState, DumpSpec};

    fn job(format: Format) -> JobRecord {
        let spec = DumpSpec {
            database: "/a.db".into(),
            format,
            compression: Compression::Gzip,
            tables: None,
            include_schema: true,
            slice_rows: crate::model::SliceRows::new(10).unwrap(),
            part_size: 8 << 20,
            snapshot: false,
            snapshot_max_block_ms: None,
            frame_size: None,
            shown_as: None,
            drill: false,
            recipients: Vec::new(),
        };
        JobRecord::new("d1".into(), spec, Utc::now())
    }

    #[test]
    fn status_names_the_manifest_and_urls_only_when_completed() {
        let mut j = job(Format::Sql);
        j.callback = Some(CallbackState::pending("https://example.com/h".into()));
        let v = serde_json::to_value(StatusView::new(&j, Utc::now()).with_urls(&j)).unwrap();
        assert_eq!(v["status"], "pending");
        assert_eq!(v["callback"]["status"], "pending");
        assert!(v["progress"]["totalRows"].is_null() && v["completedAt"].is_null());
        assert!(v.get("manifest").is_none() && v.get("downloadUrl").is_none());
        j.status = JobStatus::Completed;
        j.completed_at = Some(Utc::now());
        let v = serde_json::to_value(StatusView::new(&j, Utc::now()).with_urls(&j)).unwrap();
        assert_eq!(v["manifest"], "d1.manifest.json");
        assert_eq!(v["downloadUrl"], "/export/dump/download/d1.sql.gz");
        assert_eq!(v["manifestUrl"], "/export/dump/manifest/d1");
        assert_eq!(v["progress"]["percentComplete"], 100);
    }

    #[test]
    fn callback_body_has_urls_only_for_completed_dumps() {
        let mut j = job(Format::Csv);
        j.status = JobStatus::Failed;
        j.error = Some(JobError {
            code: "database_error".into(),
            message: "gone".into(),
        });
        let v = serde_json::to_value(CallbackBody::new(&j, "https://api.example")).unwrap();
        assert!(v["downloadUrl"].is_null() && v.get("manifestUrl").is_none());
        assert_eq!(v["error"]["code"], "database_error");
        assert_eq!(v["status"], "failed");
        j.status = JobStatus::Completed;
        j.error = None;
        j.files.push(FileEntry {
            key: "d1/t.csv.gz".into(),
            size: 3,
            sha256: None,
        });
        let v = serde_json::to_value(CallbackBody::new(&j, "https://api.example")).unwrap();
        assert_eq!(
            v["downloadUrl"],
            serde_json::json!(["https://api.example/export/dump/download/d1/t.csv.gz"])
        );
        assert_eq!(
            v["manifestUrl"],
            "https://api.example/export/dump/manifest/d1"
        );
        assert!(v.get("error").is_none());
    }
}
