//! The `chunkdump` command line: `dump`, `resume` and `status` on the embedded default
//! (a local directory for dump files, a SQLite file beside them for progress).
//!
//! Contract for scripts: the first stdout line of `dump`/`resume` is the dump id, the
//! last is the path of the finished dump; progress goes to stderr; exit 0 on success,
//! 1 on failure with a one-line `error:` message, 2 on a usage error.

mod args;
mod drill;
mod list;
mod location;
mod many;
mod one_dump;
mod progress_bar;
mod prune;
mod rekey;
mod restore;
mod run;
mod setup;
mod stores;
mod verify;

pub use args::*;
pub use location::Location;

use std::io::IsTerminal;

use clap::Parser;

use run::run;

/// A command line that asks for something no run can give (options that do not go
/// together, a missing rule): exit 2, as clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

/// Parses arguments, runs the command, maps errors to exit codes.
pub fn main() -> std::process::ExitCode {
    crate::alloc::keep_large_buffers_off_the_heap();
    let cli = Cli::parse();
    // The one-shot commands print the dump's warnings and one `error:` line themselves
    // (the runner logs those at info, for servers and Lambda); warnings about the run
    // itself (a busy database) are logged. Plain text unless stderr is a terminal.
    // The AWS SDK's own warnings (a credential provider that found nothing, with a
    // debug dump of its errors) are left out: the one `error:` line says what failed.
    let default_filter = if matches!(cli.command, Command::Serve(_)) {
        "info,aws_config=error"
    } else {
        "warn,chunkdump::failure=off,aws_config=error"
    };
    let filter = match log_filter(
        crate::config::log_filter(&crate::config::Env::process()),
        default_filter,
    ) {
        Ok(filter) => filter,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(crate::logging::OneLine(std::io::stderr))
        .init();
    if !matches!(cli.command, Command::Serve(_)) {
        // A one-shot command piped into `head` ends quietly when the reader goes away,
        // as other command-line tools do, instead of panicking on a closed stdout. (A
        // server keeps Rust's default, so a closed socket is an error, not a signal.)
        // SAFETY: setting a signal's disposition to its default before any thread that
        // could depend on it starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // No instance-metadata lookups (169.254.169.254) unless asked for: on a laptop or a
    // server outside EC2 they only delay and muddle a missing-credentials error. On EC2
    // with an instance role, set AWS_EC2_METADATA_DISABLED=false.
    if std::env::var_os("AWS_EC2_METADATA_DISABLED").is_none() {
        // Before any thread starts (the runtime below): nothing reads the environment
        // concurrently.
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // 75 (EX_TEMPFAIL): the dump paused after a fault outside its data; a later
            // `resume` continues it. Scripts can tell that from a failure.
            if e.downcast_ref::<UsageError>().is_some() {
                return std::process::ExitCode::from(2);
            }
            match e.downcast_ref::<crate::error::DumpError>() {
                // A database a writer held locked past the retries when the dump was to
                // start: nothing was created, and a later run may well succeed, which is
                // what 75 tells a cron job or a script.
                Some(
                    crate::error::DumpError::Interrupted { .. }
                    | crate::error::DumpError::DatabaseBusy,
                ) => std::process::ExitCode::from(75),
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// The log filter: `RUST_LOG` when set (an invalid one is an error, not ignored), else
/// `default`.
fn log_filter(
    rust_log: Option<String>,
    default: &str,
) -> Result<tracing_subscriber::EnvFilter, String> {
    match rust_log.filter(|v| !v.trim().is_empty()) {
        Some(v) => tracing_subscriber::EnvFilter::builder()
            .parse(&v)
            .map_err(|e| format!("RUST_LOG={v:?} is not a valid log filter: {e}")),
        None => Ok(tracing_subscriber::EnvFilter::new(default)),
    }
}

/// `n` and `noun`, plural unless `n` is 1 ("1 file", "3 files").
pub(crate) fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// What `--database X` means: the file `X` (dumps record its canonical path) or the
/// database named `X` in the store (see [`crate::model::DatabaseFilter`]).
pub(crate) fn database_filter(given: &std::path::Path) -> crate::model::DatabaseFilter {
    let path = std::fs::canonicalize(given).unwrap_or_else(|_| given.to_path_buf());
    crate::model::DatabaseFilter::given(&given.to_string_lossy(), path.display().to_string())
}
