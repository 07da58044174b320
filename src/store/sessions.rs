//! The `revoked_sessions` table: web UI sessions ended by signing out before they expire; and
//! `shared_secrets`: the keys every replica signs and checks with alike.

use async_trait::async_trait;

use super::pool::{Dialect, on_pool};
use super::*;

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Ends the session `id` (valid until `expires`, Unix seconds) for every replica; forgets
    /// the sessions revoked earlier that have expired by `now`, so the table stays small.
    async fn revoke_session(&self, id: &str, expires: i64, now: i64) -> Result<()>;

    /// Whether the session `id` was signed out.
    async fn session_revoked(&self, id: &str) -> Result<bool>;

    /// The secret stored under `name`; `candidate` is stored (and returned) when none is, so the
    /// first process to ask decides and every later one gets the same.
    async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String>;
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn revoke_session(&self, id: &str, expires: i64, now: i64) -> Result<()> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            sqlx::query("DELETE FROM revoked_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO revoked_sessions (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO shared_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(candidate)
            .execute(p)
            .await?;
            Ok(sqlx::query_scalar("SELECT value FROM shared_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(p)
                .await?)
        })
    }

    async fn session_revoked(&self, id: &str) -> Result<bool> {
        on_pool!(self, |p| {
            let found: Option<String> = sqlx::query_scalar("SELECT id FROM revoked_sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?;
            Ok(found.is_some())
        })
    }
}
