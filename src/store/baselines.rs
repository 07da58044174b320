//! The `baselines` table: every version of every baseline, one of them active per (monitor,
//! viewport). Only [`crate::baseline::Baselines`] writes it, keeping the files in step.

use async_trait::async_trait;

use super::pool::{Dialect, on_pool};
use super::*;

#[async_trait]
pub trait BaselineStore: Send + Sync {
    async fn current_baseline(&self, monitor: &MonitorName, viewport: &str) -> Result<Option<Baseline>>;

    /// Makes a new version the active baseline of (monitor, viewport).
    async fn set_baseline(&self, baseline: &NewBaseline) -> Result<Baseline>;

    /// Undo: the active version is marked reverted and the one before it becomes active again
    /// (as a new `revert` history entry). `None` when there is nothing to go back to.
    async fn revert_baseline(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<Option<Baseline>>;

    /// Approval: the run's capture becomes the active baseline (a new history row) and the run
    /// is marked `approved` by `baseline.approved_by`, in one transaction.
    /// `events` (for `alerts:` destinations) are queued in the same transaction.
    async fn approve_run(
        &self,
        run: &RunId,
        baseline: &NewBaseline,
        events: &[NewDelivery],
    ) -> Result<Baseline>;

    /// The `limit` most recently made active baselines, newest first.
    async fn recent_baselines(&self, limit: i64) -> Result<Vec<Baseline>>;

    /// Every version, newest first.
    async fn baseline_history(&self, monitor: &MonitorName, viewport: &str) -> Result<Vec<Baseline>>;
}

#[async_trait]
impl BaselineStore for SqlStore {
    async fn current_baseline(&self, monitor: &MonitorName, viewport: &str) -> Result<Option<Baseline>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM baselines WHERE monitor = $1 AND viewport = $2 AND active")
                .bind(monitor)
                .bind(viewport)
                .fetch_optional(p)
                .await?)
        })
    }

    async fn set_baseline(&self, b: &NewBaseline) -> Result<Baseline> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let row = activate(&mut tx, b).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    async fn revert_baseline(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<Option<Baseline>> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let current: Option<Baseline> = sqlx::query_as(
                "UPDATE baselines SET active = FALSE, reverted_at = $3
                 WHERE monitor = $1 AND viewport = $2 AND active RETURNING *",
            )
            .bind(monitor)
            .bind(viewport)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(current) = current else { return Ok(None) };
            let previous: Option<Baseline> = sqlx::query_as(
                "SELECT * FROM baselines WHERE monitor = $1 AND viewport = $2 AND reverted_at IS NULL
                   AND id <> $3 AND created_at <= $4
                 ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(monitor)
            .bind(viewport)
            .bind(&current.id)
            .bind(current.created_at)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(previous) = previous else {
                // Nothing older: leave everything as it was.
                tx.rollback().await?;
                return Ok(None);
            };
            let restored = NewBaseline {
                monitor: monitor.clone(),
                viewport: viewport.to_owned(),
                sha256: previous.sha256,
                run_id: previous.run_id,
                source: BaselineSource::Revert,
                approved_by: by.to_owned(),
                now,
            };
            let row = activate(&mut tx, &restored).await?;
            tx.commit().await?;
            Ok(Some(row))
        })
    }

    async fn approve_run(&self, run: &RunId, b: &NewBaseline, events: &[NewDelivery]) -> Result<Baseline> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let row = activate(&mut tx, b).await?;
            sqlx::query(
                "UPDATE runs SET verdict = 'approved', reviewed_by = $2, updated_at = $3 WHERE id = $1 AND status = 'done'",
            )
            .bind(run).bind(&b.approved_by).bind(b.now).execute(&mut *tx).await?;
            for event in events {
                super::deliveries::insert_delivery(&mut tx, event).await?;
            }
            tx.commit().await?;
            Ok(row)
        })
    }

    async fn recent_baselines(&self, limit: i64) -> Result<Vec<Baseline>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM baselines WHERE active ORDER BY created_at DESC, id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(p)
            .await?)
        })
    }

    async fn baseline_history(&self, monitor: &MonitorName, viewport: &str) -> Result<Vec<Baseline>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM baselines WHERE monitor = $1 AND viewport = $2 ORDER BY created_at DESC, id DESC",
            )
            .bind(monitor).bind(viewport).fetch_all(p).await?)
        })
    }
}

/// Makes a new version the active one (the previous active version, if any, is deactivated),
/// in the caller's transaction, on either backend.
async fn activate<DB>(tx: &mut sqlx::Transaction<'_, DB>, b: &NewBaseline) -> Result<Baseline>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> Baseline: sqlx::FromRow<'r, DB::Row>,
    for<'q> BaselineId: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> MonitorName: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<RunId>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> BaselineSource: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Timestamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query("UPDATE baselines SET active = FALSE WHERE monitor = $1 AND viewport = $2 AND active")
        .bind(&b.monitor)
        .bind(&b.viewport)
        .execute(&mut **tx)
        .await?;
    Ok(sqlx::query_as(
        "INSERT INTO baselines (id, monitor, viewport, sha256, run_id, source, approved_by, active, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE, $8)
         RETURNING *",
    )
    .bind(BaselineId::new())
    .bind(&b.monitor)
    .bind(&b.viewport)
    .bind(&b.sha256)
    .bind(&b.run_id)
    .bind(b.source)
    .bind(&b.approved_by)
    .bind(b.now)
    .fetch_one(&mut **tx)
    .await?)
}
