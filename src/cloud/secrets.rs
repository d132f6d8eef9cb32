//! The deployment's secrets: R2's endpoint and API token, the API bearer tokens and the
//! callback signing secret. In AWS they live in one Secrets Manager secret (a JSON
//! object) read once at cold start; locally the same names come from the environment.

use super::{sdk_error, R2Access};
pub use crate::config::Secrets;
use crate::config::{ConfigError, Env};

impl Secrets {
    /// R2 access, if the endpoint and both key halves are set (an error if only some are).
    pub fn r2(&self) -> Result<Option<R2Access>, ConfigError> {
        match (
            &self.r2_endpoint,
            &self.r2_access_key_id,
            &self.r2_secret_access_key,
        ) {
            (Some(endpoint), Some(id), Some(key)) => {
                if !endpoint.starts_with("https://") && !endpoint.starts_with("http://127.0.0.1") {
                    return Err(ConfigError::Unusable {
                        what: "r2Endpoint".into(),
                        reason: format!("{endpoint:?} must be an https:// URL"),
                    });
                }
                Ok(Some(R2Access {
                    endpoint: endpoint.clone(),
                    access_key_id: id.clone(),
                    secret_access_key: key.clone(),
                }))
            }
            (None, None, None) => Ok(None),
            _ => Err(ConfigError::Unusable {
                what: "R2 access".into(),
                reason: "R2 needs all of r2Endpoint, r2AccessKeyId and r2SecretAccessKey".into(),
            }),
        }
    }
}

/// Reads the secret `secret_id` (an ARN or name) when given, else the environment.
pub async fn load_secrets(
    config: &aws_config::SdkConfig,
    secret_id: Option<&str>,
) -> Result<Secrets, ConfigError> {
    let Some(id) = secret_id else {
        return Ok(Secrets::read(&Env::process()));
    };
    let unusable = |reason: String| ConfigError::Unusable {
        what: format!("secret {id}"),
        reason,
    };
    let out = aws_sdk_secretsmanager::Client::new(config)
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| unusable(sdk_error("read the deployment secret", e).to_string()))?;
    let text = out
        .secret_string()
        .ok_or_else(|| unusable("it has no string value".into()))?;
    // Name an unknown field (a key, not a value), never echo the secret's content.
    serde_json::from_str(text).map_err(|e| {
        let detail = e.to_string();
        let detail = if detail.starts_with("unknown field") { detail } else { format!("line {}, column {}", e.line(), e.column()) };
        unusable(format!(
            "must be a JSON object of r2Endpoint, r2AccessKeyId, r2SecretAccessKey, apiToken, apiReadToken, callbackSecret ({detail})"
        ))
    })
}
