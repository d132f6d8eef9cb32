//! Progress on stderr while a dump runs: a bar on a terminal, quiet otherwise.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::{ChunkProgress, ProgressFn};

/// Progress on stderr: a bar on a terminal, a plain line every few seconds otherwise.
pub(super) struct Reporter {
    pub(super) bar: Option<ProgressBar>,
    pub(super) id: String,
    pub(super) last_line: Arc<Mutex<Instant>>,
    /// No bar and no lines: one dump of many, whose end alone is reported.
    pub(super) quiet: bool,
}

impl Reporter {
    pub(super) fn new(id: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} rows {per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(id.to_string());
            bar
        });
        Reporter {
            bar,
            id: id.to_string(),
            last_line: Arc::new(Mutex::new(Instant::now())),
            quiet: false,
        }
    }

    /// A reporter that shows nothing (one of several dumps run at once).
    pub(super) fn quiet(id: &str) -> Self {
        Reporter {
            bar: None,
            id: id.to_string(),
            last_line: Arc::new(Mutex::new(Instant::now())),
            quiet: true,
        }
    }

    pub(super) fn hook(&self) -> ProgressFn {
        let (bar, id, last_line) = (self.bar.clone(), self.id.clone(), self.last_line.clone());
        if self.quiet {
            return Arc::new(|_: ChunkProgress| {});
        }
        Arc::new(move |p: ChunkProgress| {
            if let Some(bar) = &bar {
                bar.set_length(p.total_rows.unwrap_or(0).max(p.rows));
                bar.set_position(p.rows);
                bar.set_message(format!("{id} {:.1} MB", p.bytes as f64 / 1e6));
            } else if let Ok(mut last) = last_line.lock() {
                if last.elapsed() >= Duration::from_secs(2) {
                    *last = Instant::now();
                    let total = p.total_rows.map_or("?".to_string(), |t| t.to_string());
                    eprintln!(
                        "{id}: {}/{total} rows, {:.1} MB",
                        p.rows,
                        p.bytes as f64 / 1e6
                    );
                }
            }
        })
    }

    pub(super) fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
