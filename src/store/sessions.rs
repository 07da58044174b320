//! The `revoked_sessions` table: web UI sessions ended by signing out before they expire;
//! `shared_secrets`: the keys every replica signs and checks with alike; and `login_states`:
//! the sealed state of the login sessions monitors sign in through (`sessions:`), and their
//! refused sign-ins in a row.

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

    /// The sealed state kept for the login session `name`, and until when it may be used.
    async fn login_state(&self, name: &str) -> Result<Option<(Vec<u8>, Timestamp)>>;

    /// Keeps `state` for `name` until `expires_at`; a streak of failures ends.
    async fn keep_login_state(
        &self,
        name: &str,
        state: &[u8],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()>;

    /// A sign-in through `name` was refused (the capture side, on every refusal): one more in a
    /// row, at `now`; its kept state is dropped.
    async fn note_refused_sign_in(&self, name: &str, now: Timestamp) -> Result<()>;

    /// The sign-ins through `name` refused in a row since the last that worked, and when the
    /// last was; `None` when none was.
    async fn refused_sign_ins(&self, name: &str) -> Result<Option<(u32, Timestamp)>>;

    /// Takes the one sign-in through `name` that the wait after its refusals allows: true for the
    /// one caller that moves its last refusal's time from `last` to `now` (the next waits again
    /// from then), false for every other replica and worker.
    async fn claim_sign_in(&self, name: &str, last: Timestamp, now: Timestamp) -> Result<bool>;

    /// Signing in through `name` failed: its kept state is dropped. True when this begins a
    /// streak of failures (the failure that alerts), false when one since the last sign-in did.
    async fn note_login_failure(&self, name: &str, now: Timestamp) -> Result<bool>;
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

    async fn login_state(&self, name: &str) -> Result<Option<(Vec<u8>, Timestamp)>> {
        on_pool!(self, |p| {
            let row: Option<(Option<Vec<u8>>, Timestamp)> =
                sqlx::query_as("SELECT state, expires_at FROM login_states WHERE name = $1")
                    .bind(name)
                    .fetch_optional(p)
                    .await?;
            Ok(row.and_then(|(state, expires)| state.map(|s| (s, expires))))
        })
    }

    async fn keep_login_state(
        &self,
        name: &str,
        state: &[u8],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO login_states (name, state, expires_at, failed_since, updated_at)
                 VALUES ($1, $2, $3, NULL, $4)
                 ON CONFLICT (name) DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at,
                     failed_since = NULL, sign_in_failures = 0, last_sign_in_failure = NULL,
                     updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(state)
            .bind(expires_at)
            .bind(now)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    async fn note_refused_sign_in(&self, name: &str, now: Timestamp) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO login_states (name, state, expires_at, updated_at, sign_in_failures, last_sign_in_failure)
                 VALUES ($1, NULL, 0, $2, 1, $2)
                 ON CONFLICT (name) DO UPDATE SET state = NULL, expires_at = 0,
                     sign_in_failures = login_states.sign_in_failures + 1,
                     last_sign_in_failure = excluded.last_sign_in_failure, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(now)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    async fn refused_sign_ins(&self, name: &str) -> Result<Option<(u32, Timestamp)>> {
        on_pool!(self, |p| {
            let row: Option<(i32, Option<Timestamp>)> = sqlx::query_as(
                "SELECT sign_in_failures, last_sign_in_failure FROM login_states WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(p)
            .await?;
            Ok(row.and_then(|(n, last)| Some((u32::try_from(n).ok().filter(|n| *n > 0)?, last?))))
        })
    }

    async fn claim_sign_in(&self, name: &str, last: Timestamp, now: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "UPDATE login_states SET last_sign_in_failure = $3 WHERE name = $1 AND last_sign_in_failure = $2",
            )
            .bind(name)
            .bind(last)
            .bind(now)
            .execute(p)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn note_login_failure(&self, name: &str, now: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let since: Timestamp = sqlx::query_scalar(
                "INSERT INTO login_states (name, state, expires_at, failed_since, updated_at)
                 VALUES ($1, NULL, 0, $2, $2)
                 ON CONFLICT (name) DO UPDATE SET state = NULL, expires_at = 0,
                     failed_since = COALESCE(login_states.failed_since, excluded.failed_since),
                     updated_at = excluded.updated_at
                 RETURNING failed_since",
            )
            .bind(name)
            .bind(now)
            .fetch_one(p)
            .await?;
            Ok(since == now)
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
