//! The `ignores` table: changes a person said to ignore, by monitor and fingerprint, until a
//! time; each counts the runs it spared.

use async_trait::async_trait;

use super::pool::{Dialect, on_pool};
use super::*;
use crate::ids::IgnoreId;

#[async_trait]
pub trait IgnoreStore: Send + Sync {
    /// Ignores the change `fingerprint` of `ignore.monitor` until `ignore.until`, and marks the
    /// run `ignored` (if it still awaits review), in one transaction. Ignoring a change ignored
    /// already moves its end and says who, keeping its count. Returns the ignore as stored.
    async fn ignore_change(&self, ignore: &Ignore) -> Result<Ignore>;

    /// The ignore in force at `now` for this change of `monitor`, if any.
    async fn active_ignore(
        &self,
        monitor: &MonitorName,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<Option<Ignore>>;

    /// Counts a run that `id` spared.
    async fn count_ignored(&self, id: &IgnoreId, now: Timestamp) -> Result<()>;

    /// Every ignore, in force or ended after `since`, newest first.
    async fn list_ignores(&self, since: Timestamp) -> Result<Vec<Ignore>>;

    /// Stops ignoring; `false` when there was no such ignore.
    async fn remove_ignore(&self, id: &IgnoreId) -> Result<bool>;
}

#[async_trait]
impl IgnoreStore for SqlStore {
    async fn ignore_change(&self, i: &Ignore) -> Result<Ignore> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let stored = sqlx::query_as(
                "INSERT INTO ignores (id, monitor, fingerprint, description, until, created_by, created_at, run_id, matched)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)
                 ON CONFLICT (monitor, fingerprint) DO UPDATE SET until = $5, created_by = $6, description = $4
                 RETURNING *",
            )
            .bind(&i.id)
            .bind(&i.monitor)
            .bind(&i.fingerprint)
            .bind(&i.description)
            .bind(i.until)
            .bind(&i.created_by)
            .bind(i.created_at)
            .bind(&i.run_id)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE runs SET verdict = 'ignored', reviewed_by = $2, updated_at = $3
                 WHERE id = $1 AND status = 'done' AND verdict IN ('changed', 'unstable', 'rejected')",
            )
            .bind(&i.run_id)
            .bind(&i.created_by)
            .bind(i.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(stored)
        })
    }

    async fn active_ignore(
        &self,
        monitor: &MonitorName,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<Option<Ignore>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM ignores WHERE monitor = $1 AND fingerprint = $2 AND until > $3")
                .bind(monitor)
                .bind(fingerprint)
                .bind(now)
                .fetch_optional(p)
                .await?)
        })
    }

    async fn count_ignored(&self, id: &IgnoreId, now: Timestamp) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query("UPDATE ignores SET matched = matched + 1, last_matched_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    async fn list_ignores(&self, since: Timestamp) -> Result<Vec<Ignore>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM ignores WHERE until > $1 ORDER BY created_at DESC, id DESC LIMIT 1000",
            )
            .bind(since)
            .fetch_all(p)
            .await?)
        })
    }

    async fn remove_ignore(&self, id: &IgnoreId) -> Result<bool> {
        on_pool!(self, |p| {
            Ok(sqlx::query("DELETE FROM ignores WHERE id = $1").bind(id).execute(p).await?.rows_affected()
                > 0)
        })
    }
}
