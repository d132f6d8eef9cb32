//! `chunkdump rekey`: an encrypted dump's objects given a new recipient set, in place
//! (see `crate::rekey`).

use std::io::Write;
use std::sync::Arc;

use clap::Args;

use crate::error::DumpError;
use crate::model::{manifest_key, validate_dump_id, Format};
use crate::ports::ObjectStore;

#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// The encrypted dump.
    pub id: String,
    #[command(flatten)]
    pub location: super::location::Location,
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
    // The dump's record, where this machine keeps one, learns its new recipients; a
    // bucket alone is enough to rekey (as to restore).
    let (objects, progress): (Arc<dyn ObjectStore>, _) =
        match super::stores::open_stores(&args.location, super::stores::Access::Existing).await {
            Ok(stores) => (stores.objects, Some(stores.progress)),
            Err(DumpError::InvalidRequest(_))
                if args.location.store.is_some() && args.location.progress.is_none() =>
            {
                let url = args.location.store.as_deref().unwrap_or_default();
                (
                    Arc::new(super::stores::object_store(url, false).await?.0),
                    None,
                )
            }
            Err(e) => return Err(e.into()),
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
    if let Some(progress) = progress {
        let canonical = recipients.to_strings();
        let mut change = |job: &crate::model::JobRecord| {
            let mut next = job.clone();
            next.spec.recipients.clone_from(&canonical);
            Ok((next.spec != job.spec).then_some(next))
        };
        if let Err(e) = progress.update(&args.id, &mut change).await {
            tracing::warn!(dump_id = %args.id, error = %e, "the dump's record keeps its old recipients");
        }
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            stdout,
            "rekeyed {}: {} ({} already), {:.1} MB through this machine of {:.1} MB; only the new recipients open it now",
            report.dump_id,
            super::count(report.rekeyed + report.already, "object"),
            report.already,
            report.bytes_moved as f64 / 1e6,
            report.dump_bytes as f64 / 1e6,
        )?;
    }
    Ok(())
}
