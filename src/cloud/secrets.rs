//! The deployment's secrets: R2's endpoint and API token, the API bearer tokens and the
//! callback signing secret. In AWS they live in one Secrets Manager secret (a JSON
//! object) read once at cold start; locally the same names come from the environment.

use serde::Deserialize;

use super::{sdk_error, R2Access};
use crate::error::DumpError;

/// The secret's JSON document. Every field is optional: a deployment without R2 uses
/// the role's S3, one without callbacks leaves `callbackSecret` out.
#[derive(Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secrets {
    pub r2_endpoint: Option<String>,
    pub r2_access_key_id: Option<String>,
    pub r2_secret_access_key: Option<String>,
    pub api_token: Option<String>,
    pub api_read_token: Option<String>,
    pub callback_secret: Option<String>,
}

impl std::fmt::Debug for Secrets {
    // Never print a secret value, only which ones are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("r2_endpoint", &self.r2_endpoint)
            .field("r2_access_key_id", &self.r2_access_key_id.is_some())
            .field("api_token", &self.api_token.is_some())
            .field("callback_secret", &self.callback_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// From the environment: `R2_ENDPOINT`, `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY`,
    /// `CHUNKDUMP_API_TOKEN`, `CHUNKDUMP_API_READ_TOKEN`, `CHUNKDUMP_CALLBACK_SECRET`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Secrets {
            r2_endpoint: var("R2_ENDPOINT"),
            r2_access_key_id: var("R2_ACCESS_KEY_ID"),
            r2_secret_access_key: var("R2_SECRET_ACCESS_KEY"),
            api_token: var("CHUNKDUMP_API_TOKEN"),
            api_read_token: var("CHUNKDUMP_API_READ_TOKEN"),
            callback_secret: var("CHUNKDUMP_CALLBACK_SECRET"),
        }
    }

    /// R2 access, if the endpoint and both key halves are set (an error if only some are).
    pub fn r2(&self) -> Result<Option<R2Access>, DumpError> {
        match (
            &self.r2_endpoint,
            &self.r2_access_key_id,
            &self.r2_secret_access_key,
        ) {
            (Some(endpoint), Some(id), Some(key)) => {
                if !endpoint.starts_with("https://") && !endpoint.starts_with("http://127.0.0.1") {
                    return Err(DumpError::InvalidRequest(format!(
                        "r2Endpoint {endpoint:?} must be an https:// URL"
                    )));
                }
                Ok(Some(R2Access {
                    endpoint: endpoint.clone(),
                    access_key_id: id.clone(),
                    secret_access_key: key.clone(),
                }))
            }
            (None, None, None) => Ok(None),
            _ => Err(DumpError::InvalidRequest(
                "R2 needs all of r2Endpoint, r2AccessKeyId and r2SecretAccessKey".into(),
            )),
        }
    }
}

/// Reads the secret `secret_id` (an ARN or name) when given, else the environment.
pub async fn load_secrets(
    config: &aws_config::SdkConfig,
    secret_id: Option<&str>,
) -> Result<Secrets, DumpError> {
    let Some(id) = secret_id else {
        return Ok(Secrets::from_env());
    };
    let out = aws_sdk_secretsmanager::Client::new(config)
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| DumpError::Store(sdk_error("read the deployment secret", e)))?;
    let text = out
        .secret_string()
        .ok_or_else(|| DumpError::InvalidRequest(format!("secret {id} has no string value")))?;
    // Name an unknown field (a key, not a value), never echo the secret's content.
    serde_json::from_str(text).map_err(|e| {
        let detail = e.to_string();
        let detail = if detail.starts_with("unknown field") { detail } else { format!("line {}, column {}", e.line(), e.column()) };
        DumpError::InvalidRequest(format!(
            "secret {id} must be a JSON object of r2Endpoint, r2AccessKeyId, r2SecretAccessKey, apiToken, apiReadToken, callbackSecret ({detail})"
        ))
    })
}
