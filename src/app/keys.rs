//! The keys a process signs with: the webhook secret (from the config, or generated), the web
//! UI's session key (always vigil's own: the webhook secret may be shared with capture
//! providers), and the monitor role's token for the capture API. The generated ones are kept in
//! the database (`shared_secrets`), so every replica on it holds the same: a webhook signed, a
//! capture link or a session cookie issued by one is accepted by any other. A copy of the
//! webhook secret and the UI key is written to `data_dir/<name>` (mode 0600), for the operator
//! who must hand the webhook secret to a capture provider; a key file from before the database
//! held them is carried over.

use std::path::PathBuf;

use crate::config::Config;
use crate::signing::SigningKey;
use crate::store::blobs::{BlobError, write_atomic};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write the key file {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or store the shared keys in the database")]
    Store(#[from] StoreError),
    #[error("the database holds an invalid {0}")]
    Invalid(&'static str),
}

/// The key that signs outgoing webhooks: `webhook.secret`, or the generated one every replica
/// shares.
pub async fn webhook_key(config: &Config, store: &dyn Store) -> Result<SigningKey, KeyError> {
    match &config.webhook.secret {
        Some(secret) => Ok(SigningKey::from_secret(secret.expose()).expect("validated with the config")),
        None => shared_key(config, store, "webhook-secret").await,
    }
}

/// Every key that verifies incoming capture webhooks: the current one first, then
/// `webhook.previous_secrets` (a rotation).
pub fn webhook_keys(config: &Config, current: &SigningKey) -> Vec<SigningKey> {
    let previous = config.webhook.previous_secrets.iter();
    let previous = previous.map(|s| SigningKey::from_secret(s.expose()).expect("validated with the config"));
    std::iter::once(current.clone()).chain(previous).collect()
}

/// Seals the kept state of login sessions: `capture.session_key`, or the key in
/// `data_dir/session-key` (32 random bytes, hex; made on first use, mode 0600). It stays out of
/// the database on purpose: a copy of the database alone does not open the cookies. Replicas that
/// capture for the same sessions need the same key (set `capture.session_key`); one that cannot
/// open another's state signs in again.
pub fn login_sealer(config: &Config) -> Result<crate::capture::login::Sealer, KeyError> {
    if let Some(key) = &config.capture.session_key {
        return Ok(crate::capture::login::Sealer::new(key.expose().as_bytes()));
    }
    let path = config.storage.data_dir.join("session-key");
    let error = |source| KeyError::File { path: path.clone(), source };
    let key = match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => s.trim().to_owned(),
        Ok(_) => return Err(KeyError::Invalid("session key file (fewer than 32 characters)")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = hex::encode(rand::random::<[u8; 32]>());
            write_atomic(&path, key.as_bytes()).map_err(|e| match e {
                BlobError::Io { source, .. } => error(source),
                other => error(std::io::Error::other(other.to_string())),
            })?;
            key
        }
        Err(e) => return Err(error(e)),
    };
    Ok(crate::capture::login::Sealer::new(key.as_bytes()))
}

/// Signs web UI session cookies and CSRF tokens.
pub async fn session_key(config: &Config, store: &dyn Store) -> Result<SigningKey, KeyError> {
    shared_key(config, store, "ui-secret").await
}

/// The token the monitor role calls the built-in capture API with, on whichever replica the
/// load balancer sends it to.
pub async fn internal_token(store: &dyn Store) -> Result<String, KeyError> {
    let candidate = format!("vigil-internal-{}", hex::encode(rand::random::<[u8; 24]>()));
    let token = store.shared_secret("internal-token", &candidate).await?;
    if token.len() < 32 {
        return Err(KeyError::Invalid("internal token"));
    }
    Ok(token)
}

/// The key stored in the database under `name`: this process's key file's (from a version
/// that kept it only there) or a new one when the database has none yet.
async fn shared_key(config: &Config, store: &dyn Store, name: &'static str) -> Result<SigningKey, KeyError> {
    let path = config.storage.data_dir.join(name);
    let error = |source| KeyError::File { path: path.clone(), source };
    let on_disk = match std::fs::read_to_string(&path) {
        Ok(s) => Some(s.trim().to_owned()).filter(|s| SigningKey::from_secret(s).is_ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(error(e)),
    };
    let candidate = on_disk.clone().unwrap_or_else(SigningKey::generate_secret);
    let secret = store.shared_secret(name, &candidate).await?;
    let key = SigningKey::from_secret(&secret).map_err(|_| KeyError::Invalid(name))?;
    if on_disk.as_deref() != Some(secret.as_str()) {
        if on_disk.is_some() {
            // Another replica's key came first: whoever was given this file's key (a capture
            // provider, for the webhook secret) must be given the new one.
            tracing::warn!(path = %path.display(), "the key file differs from the key the replicas share; replaced with the shared key");
        }
        write_atomic(&path, secret.as_bytes()).map_err(|e| match e {
            BlobError::Io { source, .. } => error(source),
            other => error(std::io::Error::other(other.to_string())),
        })?;
    }
    Ok(key)
}
