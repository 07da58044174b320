//! The `ignores` table: changes a person said to ignore, per monitor and viewport, until a
//! time; each counts the runs it spared.

use async_trait::async_trait;

use super::pool::{Dialect, on_pool};
use super::*;
use crate::ids::IgnoreId;

#[async_trait]
pub trait IgnoreStore: Send + Sync {
    /// Ignores a run's change and marks the run `ignored`, in one transaction: a new ignore, or
    /// with `extend`, that ignore in force until `ignore.until`, by `ignore.created_by`.
    /// `None` (nothing written) when the run is no longer a change (decided meanwhile).
    async fn ignore_change(&self, ignore: &Ignore, extend: Option<&IgnoreId>) -> Result<Option<Ignore>>;

    /// The ignores in force at `now` for changes of `monitor` at `viewport` whose words are
    /// `fingerprint`.
    async fn active_ignores(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<Vec<Ignore>>;

    /// Counts a run that `id` spared.
    async fn count_ignored(&self, id: &IgnoreId, now: Timestamp) -> Result<()>;

    /// Every ignore, in force or ended after `since`, newest first (at most 1,000).
    async fn list_ignores(&self, since: Timestamp) -> Result<Vec<Ignore>>;

    /// Stops ignoring, and the run it was made from, if still `ignored`, awaits review again;
    /// `false` when there was no such ignore.
    async fn remove_ignore(&self, id: &IgnoreId, now: Timestamp) -> Result<bool>;
}

#[async_trait]
impl IgnoreStore for SqlStore {
    async fn ignore_change(&self, i: &Ignore, extend: Option<&IgnoreId>) -> Result<Option<Ignore>> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let marked = sqlx::query(
                "UPDATE runs SET verdict = 'ignored', reviewed_by = $2, updated_at = $3
                 WHERE id = $1 AND status = 'done' AND verdict IN ('changed', 'unstable', 'rejected', 'ignored')",
            )
            .bind(&i.run_id)
            .bind(&i.created_by)
            .bind(i.created_at)
            .execute(&mut *tx)
            .await?;
            if marked.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
            let stored = match extend {
                Some(id) => {
                    sqlx::query_as("UPDATE ignores SET until = $2, created_by = $3 WHERE id = $1 RETURNING *")
                        .bind(id)
                        .bind(i.until)
                        .bind(&i.created_by)
                        .fetch_optional(&mut *tx)
                        .await?
                }
                None => None,
            };
            let stored = match stored {
                Some(s) => s,
                None => sqlx::query_as(
                    "INSERT INTO ignores (id, monitor, viewport, fingerprint, regions, diff_pixels, description,
                         until, created_by, created_at, run_id, matched)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0)
                     RETURNING *",
                )
                .bind(&i.id)
                .bind(&i.monitor)
                .bind(&i.viewport)
                .bind(&i.fingerprint)
                .bind(&i.regions)
                .bind(i.diff_pixels)
                .bind(&i.description)
                .bind(i.until)
                .bind(&i.created_by)
                .bind(i.created_at)
                .bind(&i.run_id)
                .fetch_one(&mut *tx)
                .await?,
            };
            tx.commit().await?;
            Ok(Some(stored))
        })
    }

    async fn active_ignores(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<Vec<Ignore>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM ignores WHERE monitor = $1 AND viewport = $2 AND fingerprint = $3 AND until > $4
                 ORDER BY created_at, id",
            )
            .bind(monitor)
            .bind(viewport)
            .bind(fingerprint)
            .bind(now)
            .fetch_all(p)
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

    async fn remove_ignore(&self, id: &IgnoreId, now: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let run: Option<String> =
                sqlx::query_scalar("DELETE FROM ignores WHERE id = $1 RETURNING run_id")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(run) = &run {
                sqlx::query(
                    "UPDATE runs SET verdict = 'changed', reviewed_by = NULL, updated_at = $2
                     WHERE id = $1 AND verdict = 'ignored'",
                )
                .bind(run)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(run.is_some())
        })
    }
}
