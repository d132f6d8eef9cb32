//! The `Orchestrator` port: starts and stops the run of a dump. Adapters: the local
//! runner here (chunks in-process, breathing between them); Step Functions in AWS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::DumpError;
use crate::ports::{ObjectStore, ProgressStore};
use crate::runner::{run_to_completion, ChunkOptions};

/// Starts and stops dump runs.
#[async_trait]
pub trait Orchestrator: Send + Sync {
    /// Starts running dump `id` (idempotent: starting a running dump does nothing).
    async fn start(&self, id: &str) -> Result<(), DumpError>;
    /// Stops the run of dump `id`, if any.
    async fn stop(&self, id: &str) -> Result<(), DumpError>;
}

/// Runs dumps in this process: one task per dump, chunks separated by the breathing
/// pause, retryable failures retried with backoff.
pub struct LocalRunner {
    objects: Arc<dyn ObjectStore>,
    progress: Arc<dyn ProgressStore>,
    options: ChunkOptions,
    breathe: Duration,
    notifier: Option<crate::callback::Notifier>,
    running: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl LocalRunner {
    pub fn new(objects: Arc<dyn ObjectStore>, progress: Arc<dyn ProgressStore>, options: ChunkOptions, breathe: Duration) -> Self {
        LocalRunner { objects, progress, options, breathe, notifier: None, running: Mutex::new(HashMap::new()) }
    }

    /// Sends completion callbacks when runs end.
    pub fn with_notifier(mut self, notifier: Option<crate::callback::Notifier>) -> Self {
        self.notifier = notifier;
        self
    }
}

#[async_trait]
impl Orchestrator for LocalRunner {
    async fn start(&self, id: &str) -> Result<(), DumpError> {
        let mut running = self.running.lock().map_err(|_| DumpError::Internal("runner lock poisoned".into()))?;
        running.retain(|_, handle| !handle.is_finished());
        if running.contains_key(id) {
            return Ok(());
        }
        let (objects, progress, options, breathe, dump_id, notifier) =
            (self.objects.clone(), self.progress.clone(), self.options.clone(), self.breathe, id.to_string(), self.notifier.clone());
        let handle = tokio::spawn(async move {
            match run_to_completion(objects.as_ref(), progress.as_ref(), &dump_id, &options, breathe, 5).await {
                Ok(job) => tracing::info!(dump_id = %dump_id, bytes = job.bytes_written, "dump completed"),
                Err(e) => tracing::warn!(dump_id = %dump_id, error = %e, "dump run ended"),
            }
            // Completed or failed (not cancelled: cancelling stops this task first).
            if let Some(notifier) = notifier {
                notifier.notify(progress.as_ref(), &dump_id).await;
            }
        });
        running.insert(id.to_string(), handle);
        Ok(())
    }

    async fn stop(&self, id: &str) -> Result<(), DumpError> {
        let handle = self.running.lock().map_err(|_| DumpError::Internal("runner lock poisoned".into()))?.remove(id);
        if let Some(handle) = handle {
            // Dropping the chunk's futures closes its upload channel; the export thread
            // stops at its next part.
            handle.abort();
        }
        Ok(())
    }
}
