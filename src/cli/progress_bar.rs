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
                .with_key(
                    "eta",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let eta = state
                            .len()
                            .and_then(|len| eta(state.elapsed(), state.pos(), len));
                        let _ = write!(w, "{}", eta.map_or("…".to_string(), short_duration));
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

/// The time left at the average rate so far, once there is a rate worth extrapolating:
/// at least 2 s and 1% in. indicatif's own estimate follows the last few ticks, and a
/// dump's first chunk (which counts the rows) is slower than the rest, so it showed
/// "ETA 13m" for a 7 s dump in its first second.
fn eta(elapsed: Duration, done: u64, total: u64) -> Option<Duration> {
    if elapsed < Duration::from_secs(2) || done == 0 || done.saturating_mul(100) < total {
        return None;
    }
    let left = total.saturating_sub(done) as f64;
    Some(Duration::from_secs_f64(
        elapsed.as_secs_f64() * left / done as f64,
    ))
}

/// `7s`, `2m05s`, `1h03m`.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
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
    use std::time::Duration;

    #[test]
    fn no_eta_until_there_is_a_rate_then_the_average_one() {
        let secs = Duration::from_secs;
        // The first second, however little is done: no guess.
        assert_eq!(super::eta(Duration::from_millis(900), 1, 1_000_000), None);
        assert_eq!(
            super::eta(Duration::from_millis(900), 500_000, 1_000_000),
            None
        );
        // Under 1% done: no guess either.
        assert_eq!(super::eta(secs(5), 9_999, 1_000_000), None);
        assert_eq!(super::eta(secs(5), 0, 1_000_000), None);
        // A quarter in after 2 s: 6 s to go.
        assert_eq!(super::eta(secs(2), 250, 1_000), Some(secs(6)));
        assert_eq!(super::eta(secs(9), 1_000, 1_000), Some(secs(0)));
        assert_eq!(super::short_duration(secs(7)), "7s");
        assert_eq!(super::short_duration(secs(125)), "2m05s");
        assert_eq!(super::short_duration(secs(3_780)), "1h03m");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(6178), "6,178");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }
}
