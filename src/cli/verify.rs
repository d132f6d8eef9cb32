//! `chunkdump verify`: a completed dump (or a manifest file) against its manifest, and
//! optionally against the database it came from.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::stores::{open_stores, Access};
use super::Location;
use crate::error::DumpError;
use crate::model::JobStatus;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The dump's id (with --out DIR, or --store and --progress).
    #[arg(required_unless_present = "manifest")]
    pub id: Option<String>,
    /// The local directory the dump was written to.
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    pub out: Option<PathBuf>,
    /// The S3/R2 bucket and prefix the dump was written to.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub store: Option<String>,
    /// Where --store's progress is kept (see `dump --help`).
    #[arg(long, value_name = "dynamodb://TABLE|PATH", requires = "store")]
    pub progress: Option<String>,
    /// Verify a dump copied elsewhere from its manifest file alone (its files beside it).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["id", "out", "store", "progress"])]
    pub manifest: Option<PathBuf>,
    /// Also compare the tables with this database (a snapshot copy, or a source nobody
    /// wrote since the dump).
    #[arg(long, value_name = "DB")]
    pub against: Option<PathBuf>,
    #[command(flatten)]
    pub identity: super::location::IdentityArg,
    /// Check only that every file is there with the size and SHA-256 the manifest lists
    /// (no parsing): what an encrypted dump's manifest lets anyone check without its
    /// identity.
    #[arg(long, conflicts_with = "against")]
    pub files_only: bool,
}

/// Verifies, printing one line per problem; an error if there is any.
pub(super) async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("verify {decimal_bytes} {decimal_bytes_per_sec}")
                .expect("valid template"),
        );
        bar
    });
    let tick = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n)
        }
    };
    let signing = crate::config::Config::from_env()?.signing_key;
    let keys = args.identity.read()?;
    let opts = crate::verify::VerifyOptions {
        against: args.against.as_deref(),
        signing: signing.as_ref(),
        keys: keys.as_ref(),
        files_only: args.files_only,
    };
    let (what, report) = match (&args.manifest, &args.id) {
        (Some(path), _) => (
            path.display().to_string(),
            crate::verify::verify_manifest_file(path, &opts, &tick).await?,
        ),
        (None, Some(id)) => {
            let location = Location {
                out: args.out.clone(),
                store: args.store.clone(),
                progress: args.progress.clone(),
            };
            let stores = open_stores(&location, Access::ReadOnly).await?;
            let job = stores.progress.require(id).await?;
            if job.status != JobStatus::Completed {
                let message = "only a completed dump can be verified".into();
                return Err(DumpError::WrongState {
                    id: job.id.clone(),
                    status: job.status,
                    message,
                }
                .into());
            }
            (
                job.id.clone(),
                crate::verify::verify(stores.objects.as_ref(), &job, &opts, &tick).await?,
            )
        }
        (None, None) => {
            return Err(
                DumpError::InvalidRequest("give a dump id, or --manifest PATH".into()).into(),
            )
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if report.problems.is_empty() && args.files_only {
        println!(
            "ok: {} {} the sizes and SHA-256 digests in the manifest of {what} (their contents not read){}",
            super::count(report.files, "file"),
            if report.files == 1 { "matches" } else { "match" },
            signature_note(report.signature)
        );
        Ok(())
    } else if report.problems.is_empty() {
        println!(
            "ok: {} and {} match the manifest of {what}{}",
            super::count(report.files, "file"),
            super::count(report.tables, "table"),
            signature_note(report.signature)
        );
        Ok(())
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        // Say which side differs: the dump, the database it is checked against, or both.
        let of_dump = report.problems.len() - report.against_problems;
        let against = args
            .against
            .as_ref()
            .map(|db| format!("database {}", db.display()))
            .unwrap_or_default();
        Err(anyhow::anyhow!(match (of_dump, report.against_problems) {
            (n, 0) => format!("{what} does not match its manifest ({})", problems(n)),
            (0, m) => format!(
                "{what} matches its manifest; {against} differs from it ({})",
                problems(m)
            ),
            (n, m) => format!(
                "{what} does not match its manifest ({}), and {against} differs from it ({})",
                problems(n),
                problems(m)
            ),
        }))
    }
}

/// How the closing line of `verify` and `restore` describes the manifest's signature.
pub(super) fn signature_note(signature: crate::verify::Signature) -> &'static str {
    match signature {
        crate::verify::Signature::Checked => ", signed with the signing key",
        crate::verify::Signature::NotChecked => {
            " (signed; not checked: no CHUNKDUMP_SIGNING_KEY here)"
        }
        crate::verify::Signature::Unsigned => {
            " (unsigned: set CHUNKDUMP_SIGNING_KEY to sign dumps and check them)"
        }
    }
}

/// `1 problem`, `3 problems`.
fn problems(n: usize) -> String {
    super::count(n, "problem")
}
