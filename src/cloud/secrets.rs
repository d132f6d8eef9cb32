//! The deployment's secrets: R2's endpoint and API token, the API bearer tokens and the
//! callback signing secret. In AWS they live in Secrets Manager (JSON objects, one per
//! use so each function reads only what it needs) read once at cold start; locally the
//! same names come from the environment.

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

/// Reads the deployment's secrets: from each of `secret_ids` (ARNs or names; a
/// deployment may split its secret so each function reads only what it uses), merged,
/// or from the environment when there are none. A field set in two secrets is an error.
pub async fn load_secrets(
    config: &aws_config::SdkConfig,
    secret_ids: &[String],
) -> Result<Secrets, ConfigError> {
    if secret_ids.is_empty() {
        return Ok(Secrets::read(&Env::process()));
    }
    let client = aws_sdk_secretsmanager::Client::new(config);
    let mut merged = Secrets::default();
    let mut first_source: Vec<(&'static str, &str)> = Vec::new();
    for id in secret_ids {
        let part = read_one(&client, id).await?;
        for field in merged.merge(part) {
            if let Some((_, other)) = first_source.iter().find(|(f, _)| *f == field) {
                return Err(ConfigError::Unusable {
                    what: format!("secret {id}"),
                    reason: format!(
                        "{field} is set in secret {other} too; set each field in one secret"
                    ),
                });
            }
            first_source.push((field, id));
        }
    }
    Ok(merged)
}

/// Reads and parses one secret.
async fn read_one(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<Secrets, ConfigError> {
    let unusable = |reason: String| ConfigError::Unusable {
        what: format!("secret {id}"),
        reason,
    };
    let out = client
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
            "must be a JSON object of r2Endpoint, r2AccessKeyId, r2SecretAccessKey, apiToken, apiReadToken, callbackSecret, signingKey ({detail})"
        ))
    })
}
