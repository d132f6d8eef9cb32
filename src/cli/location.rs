//! Where a command finds dumps: the `--out`, `--store` and `--progress` flags every
//! command that reads or writes dumps shares (their own module, so each command's
//! arguments can use them without importing the command list).

use std::path::PathBuf;

use clap::Args;

/// Where dump files and progress live: a local directory (the embedded default), or an
/// S3-compatible bucket plus a DynamoDB table.
#[derive(Debug, Args)]
pub struct Location {
    /// Directory for dump files (progress is kept in DIR/.chunkdump/).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "store",
        conflicts_with = "store"
    )]
    pub out: Option<PathBuf>,
    /// S3-compatible store for dump files, e.g. s3://bucket/prefix (R2: set R2_ENDPOINT,
    /// R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY).
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub store: Option<String>,
    /// Where --store's progress is kept: dynamodb://TABLE (shared between machines), or a
    /// local file PATH or sqlite:PATH [default: a file per store in
    /// $XDG_STATE_HOME/chunkdump or ~/.local/state/chunkdump].
    #[arg(long, value_name = "dynamodb://TABLE|PATH", requires = "store")]
    pub progress: Option<String>,
}

/// `--identity FILE`: what opens an encrypted dump.
#[derive(Debug, Clone, Default, Args)]
pub struct IdentityArg {
    /// The age identity file (`age-keygen`'s output: `AGE-SECRET-KEY-1…` lines) that
    /// opens an encrypted dump. Needed for encrypted dumps only; never stored or sent.
    #[arg(
        long = "identity",
        value_name = "FILE",
        env = "CHUNKDUMP_IDENTITY_FILE"
    )]
    pub path: Option<PathBuf>,
}

impl IdentityArg {
    /// The identities in the file, if one was given.
    pub fn read(
        &self,
    ) -> Result<Option<std::sync::Arc<crate::encryption::Identities>>, crate::error::DumpError>
    {
        self.path
            .as_deref()
            .map(|p| crate::encryption::Identities::read(p).map(std::sync::Arc::new))
            .transpose()
            .map_err(Into::into)
    }
}

/// `--recipient age1…` (repeatable) and `--recipients-file FILE`: age public keys.
#[derive(Debug, Clone, Default, Args)]
pub struct RecipientArgs {
    /// An age public key (`age1…`, from `age-keygen`) to encrypt to; repeatable.
    #[arg(long, value_name = "AGE1…")]
    pub recipient: Vec<String>,
    /// A file of age public keys, one per line (`#` comments), as `age -R` reads it.
    #[arg(long, value_name = "FILE")]
    pub recipients_file: Option<PathBuf>,
}

impl RecipientArgs {
    /// The keys given (unchecked: the encryption module checks them), the file's too; an
    /// error for a file that cannot be read or holds none.
    pub(crate) fn keys(&self) -> Result<Vec<String>, super::UsageError> {
        let mut keys = self.recipient.clone();
        if let Some(file) = &self.recipients_file {
            let what = format!("--recipients-file {}", file.display());
            let text = std::fs::read_to_string(file)
                .map_err(|e| super::UsageError(format!("{what}: {e}")))?;
            let found = crate::encryption::Recipients::lines_of(&text);
            if found.is_empty() {
                return Err(super::UsageError(format!(
                    "{what}: no age public key in it"
                )));
            }
            keys.extend(found);
        }
        Ok(keys)
    }
}
