//! `chunkdump setup`: creates the bucket (and, with `--progress`, the DynamoDB table) a
//! deployment's stores need, or checks they are there.

use super::SetupArgs;

/// Sets the stores up and says what is ready.
pub(super) async fn run(args: SetupArgs) -> anyhow::Result<()> {
    // Both URLs are checked before any AWS setup.
    if let Some(progress) = &args.progress {
        crate::cloud::DynamoProgress::check_url(progress)?;
    }
    let (store, aws) = super::stores::object_store(&args.store, args.progress.is_some()).await?;
    store.ensure_bucket().await?;
    match &args.progress {
        Some(progress) => {
            let config = match aws {
                Some(config) => config,
                None => crate::cloud::load_aws_config().await,
            };
            crate::cloud::DynamoProgress::new(&config, progress)?
                .ensure_table()
                .await?;
            println!("ready: {} and {progress}", args.store);
        }
        None => println!(
            "ready: {} (progress stays in a local file; nothing to set up for it)",
            args.store
        ),
    }
    Ok(())
}
