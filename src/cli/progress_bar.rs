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
            // No length until the first chunk has counted the rows: a spinner, not a
            // bar drawn full at 0/0.
            let bar = ProgressBar::no_length();
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} rows {rate} ETA {eta}",
                )
                .expect("valid template")
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        // Whole rows per second: "6,179 rows/s", not "6,178.7706/s".
                        let _ = write!(w, "{} rows/s", thousands(state.per_sec() as u64));
                    },
                )
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
                if let Some(total) = p.total_rows {
                    bar.set_length(total.max(p.rows));
                }
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

/// `n` with a comma every three digits.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_grouped() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(6178), "6,178");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }
}
