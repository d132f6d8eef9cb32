//! What the command line reads from its environment besides the dump settings: where it
//! keeps its state, R2's access without a deployment secret, and the log filter. Read
//! here so that [`Env`] stays the one reader of the environment.

use std::path::PathBuf;

use super::{ConfigError, Env};

/// R2's endpoint and API token (`R2_ENDPOINT`, `R2_ACCESS_KEY_ID` and
/// `R2_SECRET_ACCESS_KEY`, or the deployment's secret): the object store's own
/// credentials, apart from the AWS ones DynamoDB uses. The secret never appears in
/// `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct R2Keys {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for R2Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("R2Keys")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The variables of [`R2Keys`], in order.
const R2_VARIABLES: [&str; 3] = ["R2_ENDPOINT", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"];

/// R2's access for the command line: all three `R2_*` variables, or none (`None`); some
/// but not all, or an endpoint that is not an http(s) URL, is an error naming them. (Plain
/// http is allowed here, for an S3 server on loopback; the deployment's secret wants
/// https.)
pub fn r2_keys(env: &Env) -> Result<Option<R2Keys>, ConfigError> {
    let values = R2_VARIABLES.map(|name| env.get(name));
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let missing: Vec<&str> = R2_VARIABLES
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(ConfigError::Unusable {
            what: "R2 access".into(),
            reason: format!(
                "R2 needs R2_ENDPOINT, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY together; missing: {}",
                missing.join(", ")
            ),
        });
    }
    let [endpoint, access_key_id, secret_access_key] = values.map(Option::unwrap_or_default);
    if !endpoint.starts_with("https://") && !endpoint.starts_with("http://") {
        return Err(ConfigError::Invalid {
            name: "R2_ENDPOINT",
            value: endpoint,
            reason: "not an http(s) URL".into(),
        });
    }
    Ok(Some(R2Keys {
        endpoint,
        access_key_id,
        secret_access_key,
    }))
}

/// The user's state directory for chunkdump: `$XDG_STATE_HOME/chunkdump`, else
/// `$HOME/.local/state/chunkdump`; an error when neither is set.
pub fn state_dir(env: &Env) -> Result<PathBuf, ConfigError> {
    let base = match env.get("XDG_STATE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env.required(
            "HOME",
            "neither XDG_STATE_HOME nor HOME is set: give --progress PATH for the progress file",
        )?)
        .join(".local/state"),
    };
    Ok(base.join("chunkdump"))
}

/// `RUST_LOG`: the log filter the user asked for, if any.
pub fn log_filter(env: &Env) -> Option<String> {
    env.get("RUST_LOG")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> Env<'static> {
        Env::from_fn(move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn r2_keys_are_all_or_none() {
        assert_eq!(r2_keys(&env(&[])).unwrap(), None);
        let all = env(&[
            ("R2_ENDPOINT", "https://acct.r2.cloudflarestorage.com"),
            ("R2_ACCESS_KEY_ID", "id"),
            ("R2_SECRET_ACCESS_KEY", "s3cret"),
        ]);
        let keys = r2_keys(&all).unwrap().unwrap();
        assert_eq!(keys.access_key_id, "id");
        assert!(!format!("{keys:?}").contains("s3cret"));
        let some = env(&[("R2_ENDPOINT", "https://x"), ("R2_SECRET_ACCESS_KEY", "s")]);
        let e = r2_keys(&some).unwrap_err().to_string();
        assert!(e.contains("missing: R2_ACCESS_KEY_ID"), "{e}");
        let ftp = env(&[
            ("R2_ENDPOINT", "ftp://x"),
            ("R2_ACCESS_KEY_ID", "id"),
            ("R2_SECRET_ACCESS_KEY", "s"),
        ]);
        let e = r2_keys(&ftp).unwrap_err();
        assert_eq!(e.name(), "R2_ENDPOINT");
    }

    #[test]
    fn the_state_dir_follows_xdg_then_home() {
        let xdg = env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(state_dir(&xdg).unwrap(), PathBuf::from("/x/chunkdump"));
        let home = env(&[("XDG_STATE_HOME", ""), ("HOME", "/h")]);
        assert_eq!(
            state_dir(&home).unwrap(),
            PathBuf::from("/h/.local/state/chunkdump")
        );
        let e = state_dir(&env(&[])).unwrap_err();
        assert!(e.to_string().contains("give --progress PATH"), "{e}");
    }
}
