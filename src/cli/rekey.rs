//! `chunkdump rekey`: an encrypted dump's objects given a new recipient set, in place
//! (see `crate::rekey`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::error::DumpError;
use crate::model::{manifest_key, validate_dump_id, Format};
use crate::ports::ObjectStore;

#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// The encrypted dump.
    pub id: String,
    /// The local directory the dump was written to.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "store",
        required_unless_present = "store"
    )]
    pub out: Option<PathBuf>,
    /// The S3/R2 bucket and prefix the dump was written to.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub store: Option<String>,
    /// The new recipients: they alone open the dump afterwards.
    #[command(flatten)]
    pub recipients: super::location::RecipientArgs,
    /// An identity that opens the dump now (the old one).
    #[command(flatten)]
    pub identity: super::location::IdentityArg,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Rekeys the dump and prints what moved.
pub async fn run(args: RekeyArgs) -> anyhow::Result<()> {
    validate_dump_id(&args.id).map_err(|e| DumpError::InvalidRequest(e.message))?;
    let identities = args.identity.read()?.ok_or_else(|| {
        super::UsageError(
            "rekey needs the identity that opens the dump now: --identity FILE".into(),
        )
    })?;
    let keys = args.recipients.keys()?;
    if keys.is_empty() {
        return Err(super::UsageError(
            "give the new recipients: --recipient age1… or --recipients-file FILE".into(),
        )
        .into());
    }
    let recipients = crate::encryption::Recipients::parse(&keys)?;
    let objects: Arc<dyn ObjectStore> = match (&args.out, &args.store) {
        (Some(out), _) => {
            if !out.is_dir() {
                return Err(DumpError::InvalidRequest(format!(
                    "{}: no such directory",
                    out.display()
                ))
                .into());
            }
            Arc::new(crate::local::DirStore::open(out)?)
        }
        (None, Some(url)) => Arc::new(super::stores::object_store(url, false).await?.0),
        (None, None) => unreachable!("clap requires one"),
    };
    let config = crate::config::Config::from_env()?;
    // A SQL or JSON dump's manifest is `<id>.manifest.json`, a CSV dump's `<id>/manifest.json`.
    let mut key = manifest_key(&args.id, Format::Sql);
    if objects.get_range(&key, 0, 1).await?.is_none() {
        key = manifest_key(&args.id, Format::Csv);
    }
    let report = crate::rekey::rekey(
        objects.as_ref(),
        &key,
        &identities,
        &recipients,
        config.signing_key.as_ref(),
    )
    .await?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            stdout,
            "rekeyed {}: {} objects ({} already), {:.1} MB through this machine of {:.1} MB; only the new recipients open it now",
            report.dump_id,
            report.rekeyed + report.already,
            report.already,
            report.bytes_moved as f64 / 1e6,
            report.dump_bytes as f64 / 1e6,
        )?;
    }
    Ok(())
}
