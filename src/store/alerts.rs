//! The `alerts` outbox: one row per (run, kind), claimed with a lease, retried, dead-lettered;
//! the Slack message's channel and `ts` are recorded as soon as they are known.

use async_trait::async_trait;

use super::outbox::{claim_outbox_sql, outbox_update};
use super::pool::{Dialect, on_pool};
use super::*;

#[async_trait]
pub trait AlertStore: Send + Sync {
    /// `false` when this run already has an alert of this kind (never alert twice).
    async fn enqueue_alert(&self, alert: &NewAlert) -> Result<bool>;

    /// Fails a pending run (`error`: the JSON `{code, message, retryable}`) and queues its
    /// alert, in one transaction: either both are recorded or neither, so the alert cannot be
    /// lost between them. `false` when the run was no longer pending (nothing written).
    async fn fail_run_alerting(
        &self,
        run: &RunId,
        error: &str,
        now: Timestamp,
        alert: Option<&NewAlert>,
    ) -> Result<bool>;

    async fn claim_alert(&self, now: Timestamp, lease: Duration) -> Result<Option<Alert>>;

    async fn record_alert_attempt(&self, id: &AlertId, attempt: &Attempt, now: Timestamp) -> Result<()>;

    /// Records that the alert's message is posted (`channel`, `ts`), before its images go into
    /// the thread, so a retry does not post the message again.
    async fn mark_alert_posted(&self, id: &AlertId, channel: &str, ts: &str, now: Timestamp) -> Result<()>;

    /// Records that the alert's message is about to be posted to `channel`: if the attempt then
    /// dies before [`Store::mark_alert_posted`], the next one looks in that channel first.
    async fn mark_alert_posting(&self, id: &AlertId, channel: &str, now: Timestamp) -> Result<()>;

    /// Alerts of a run, oldest first.
    async fn alerts_for_run(&self, run: &RunId) -> Result<Vec<Alert>>;
}

#[async_trait]
impl AlertStore for SqlStore {
    async fn enqueue_alert(&self, a: &NewAlert) -> Result<bool> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let queued = insert_alert(&mut tx, a).await?;
            tx.commit().await?;
            Ok(queued)
        })
    }

    async fn fail_run_alerting(
        &self,
        run: &RunId,
        error: &str,
        now: Timestamp,
        alert: Option<&NewAlert>,
    ) -> Result<bool> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let failed = sqlx::query(
                "UPDATE runs SET status = 'done', verdict = 'failed', error = $2, updated_at = $3, completed_at = $3
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(run)
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if failed.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            if let Some(a) = alert {
                insert_alert(&mut tx, a).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn claim_alert(&self, now: Timestamp, lease: Duration) -> Result<Option<Alert>> {
        on_pool!(self, |p| {
            let sql = claim_outbox_sql("alerts", p.skip_locked(), None, "");
            Ok(sqlx::query_as(&sql).bind(now).bind(now.plus(lease)).fetch_optional(p).await?)
        })
    }

    async fn record_alert_attempt(&self, id: &AlertId, attempt: &Attempt, now: Timestamp) -> Result<()> {
        on_pool!(self, |p| {
            let (status, next, _code, error, done) = outbox_update(attempt, now);
            let reference = match attempt {
                Attempt::Sent { reference, .. } => reference.clone(),
                _ => None,
            };
            sqlx::query(
                "UPDATE alerts SET status = $2, attempts = attempts + 1, next_attempt_at = $3, lease_expires_at = NULL,
                     last_error = $4, slack_ts = COALESCE($5, slack_ts), updated_at = $6, sent_at = $7
                 WHERE id = $1",
            )
            .bind(id).bind(status).bind(next).bind(error).bind(reference).bind(now).bind(done)
            .execute(p).await?;
            Ok(())
        })
    }

    async fn mark_alert_posted(&self, id: &AlertId, channel: &str, ts: &str, now: Timestamp) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query("UPDATE alerts SET slack_channel = $2, slack_ts = $3, updated_at = $4 WHERE id = $1")
                .bind(id)
                .bind(channel)
                .bind(ts)
                .bind(now)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    async fn mark_alert_posting(&self, id: &AlertId, channel: &str, now: Timestamp) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE alerts SET slack_channel = $2, updated_at = $3 WHERE id = $1 AND slack_ts IS NULL",
            )
            .bind(id)
            .bind(channel)
            .bind(now)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    async fn alerts_for_run(&self, run: &RunId) -> Result<Vec<Alert>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM alerts WHERE run_id = $1 ORDER BY created_at, id")
                .bind(run)
                .fetch_all(p)
                .await?)
        })
    }
}

/// Queues an alert in a transaction of either backend; `false` when the run has its alert of
/// that kind already.
async fn insert_alert<DB>(tx: &mut sqlx::Transaction<'_, DB>, a: &NewAlert) -> Result<bool>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> AlertId: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> MessageId: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> RunId: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> MonitorName: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> AlertKind: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Timestamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    let inserted: Option<String> = sqlx::query_scalar(
        "INSERT INTO alerts (id, run_id, monitor, kind, payload, status, attempts, next_attempt_at,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)
         ON CONFLICT (run_id, kind) DO NOTHING
         RETURNING id",
    )
    .bind(&a.id)
    .bind(&a.run_id)
    .bind(&a.monitor)
    .bind(a.kind)
    .bind(&a.payload)
    .bind(a.now)
    .fetch_optional(&mut **tx)
    .await?;
    // The events go in whether or not the alert was there: their ids are derived from the run,
    // so a second queuing (after a crash between the verdict and its alert) adds none twice.
    for event in &a.events {
        super::deliveries::insert_delivery(tx, event).await?;
    }
    Ok(inserted.is_some())
}
