//! The keys a process signs with: the webhook secret (from the config, or generated on first
//! start and kept in `data_dir`), and the web UI's session key, which is always its own (the
//! webhook secret may be shared with capture providers).

use std::path::PathBuf;

use crate::config::Config;
use crate::signing::SigningKey;
use crate::store::blobs::{BlobError, write_atomic};

#[derive(Debug, thiserror::Error)]
#[error("cannot read or create the key file {path}")]
pub struct KeyError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The key that signs outgoing webhooks: `webhook.secret`, or one generated on first start and
/// kept in `data_dir/webhook-secret` (enough while sender and receiver are this one process).
pub fn webhook_key(config: &Config) -> Result<SigningKey, KeyError> {
    match &config.webhook.secret {
        Some(secret) => Ok(SigningKey::from_secret(secret.expose()).expect("validated with the config")),
        None => stored_key(config, "webhook-secret"),
    }
}

/// Every key that verifies incoming capture webhooks: the current one first, then
/// `webhook.previous_secrets` (a rotation).
pub fn webhook_keys(config: &Config, current: &SigningKey) -> Vec<SigningKey> {
    let previous = config.webhook.previous_secrets.iter();
    let previous = previous.map(|s| SigningKey::from_secret(s.expose()).expect("validated with the config"));
    std::iter::once(current.clone()).chain(previous).collect()
}

/// Signs web UI session cookies and CSRF tokens.
pub fn session_key(config: &Config) -> Result<SigningKey, KeyError> {
    stored_key(config, "ui-secret")
}

/// A key kept in `data_dir/<name>`, generated on first start.
fn stored_key(config: &Config, name: &str) -> Result<SigningKey, KeyError> {
    let path = config.storage.data_dir.join(name);
    let error = |source| KeyError { path: path.clone(), source };
    let secret = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = SigningKey::generate_secret();
            write_atomic(&path, s.as_bytes()).map_err(|e| match e {
                BlobError::Io { source, .. } => error(source),
                other => error(std::io::Error::other(other.to_string())),
            })?;
            s
        }
        Err(e) => return Err(error(e)),
    };
    SigningKey::from_secret(&secret).map_err(|_| error(std::io::Error::other("invalid secret in the file")))
}
