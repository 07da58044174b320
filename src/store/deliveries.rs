//! Webhooks in both directions: the `webhook_deliveries` outbox (capture results sent to
//! clients, with retries and dead letters) and the `received_webhooks` inbox (results stored by
//! the receiver, deduplicated, processed later).

use async_trait::async_trait;

use super::outbox::{claim_outbox_sql, outbox_update};
use super::pool::{Dialect, on_pool};
use super::*;

#[async_trait]
pub trait DeliveryStore: Send + Sync {
    async fn enqueue_delivery(&self, delivery: &NewDelivery) -> Result<()>;

    /// Leases the next due pending delivery until `now + lease`.
    /// Only rows whose `sender` is one of `senders` (`""` for capture results): a process
    /// sends what it holds the secret and the network position for. Also an event row of any
    /// other sender untouched since `orphaned_before`: one no process can send (its destination
    /// left every config), for the caller to dead-letter.
    async fn claim_delivery(
        &self,
        now: Timestamp,
        lease: Duration,
        senders: &[String],
        orphaned_before: Timestamp,
    ) -> Result<Option<Delivery>>;

    async fn record_delivery_attempt(&self, id: &MessageId, attempt: &Attempt, now: Timestamp) -> Result<()>;

    async fn list_deliveries(&self, status: OutboxStatus, limit: i64) -> Result<Vec<Delivery>>;

    /// Puts a dead delivery back in the queue, due now.
    async fn replay_delivery(&self, id: &MessageId, now: Timestamp) -> Result<bool>;

    /// Stores a verified webhook; `false` if its webhook id or job id was seen before.
    async fn record_received_webhook(
        &self,
        webhook_id: &str,
        job_id: &str,
        payload: &str,
        now: Timestamp,
    ) -> Result<bool>;

    /// The unprocessed results that are due at `now` (not waiting out a backoff), oldest first.
    async fn unprocessed_webhooks(&self, limit: i64, now: Timestamp) -> Result<Vec<ReceivedWebhook>>;

    /// Leases up to `limit` due results (unprocessed, past their backoff, not leased by a live
    /// processor) for `lease`, oldest first: with several replicas, one judges each. Marking a
    /// result processed or deferring it ends its lease.
    async fn claim_webhooks(
        &self,
        limit: i64,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<ReceivedWebhook>>;

    /// Gives a claimed result back for another processor, due again at `retry_at`, without
    /// counting an attempt.
    async fn release_webhook(&self, webhook_id: &str, retry_at: Timestamp) -> Result<()>;

    /// A result that could not be processed: one more failed attempt (and one more failed
    /// download of its capture when `download`), and not before `retry_at`.
    async fn defer_webhook(&self, webhook_id: &str, retry_at: Timestamp, download: bool) -> Result<()>;

    async fn mark_webhook_processed(&self, webhook_id: &str, now: Timestamp) -> Result<()>;

    /// Puts the processed result of `job_id` back in the queue; whether there was one.
    async fn requeue_webhook_of_job(&self, job_id: &str) -> Result<bool>;

    /// Work waiting in each queue (for metrics): pending runs, unprocessed received webhooks,
    /// pending and dead webhook deliveries, pending and dead alerts.
    async fn queue_depths(&self) -> Result<Vec<(&'static str, i64)>>;
}

#[async_trait]
impl DeliveryStore for SqlStore {
    async fn enqueue_delivery(&self, d: &NewDelivery) -> Result<()> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            insert_delivery(&mut tx, d).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn claim_delivery(
        &self,
        now: Timestamp,
        lease: Duration,
        senders: &[String],
        orphaned_before: Timestamp,
    ) -> Result<Option<Delivery>> {
        if senders.is_empty() {
            return Ok(None);
        }
        let list: Vec<String> = (0..senders.len()).map(|i| format!("${}", i + 3)).collect();
        let orphan = senders.len() + 3;
        let only =
            format!("AND (sender IN ({}) OR (sender <> '' AND updated_at < ${orphan}))", list.join(", "));
        on_pool!(self, |p| {
            let sql = claim_outbox_sql(
                "webhook_deliveries",
                p.skip_locked(),
                Some("COALESCE(NULLIF(destination, ''), url)"),
                &only,
            );
            let mut query = sqlx::query_as(&sql).bind(now).bind(now.plus(lease));
            for sender in senders {
                query = query.bind(sender);
            }
            Ok(query.bind(orphaned_before).fetch_optional(p).await?)
        })
    }

    async fn record_delivery_attempt(&self, id: &MessageId, attempt: &Attempt, now: Timestamp) -> Result<()> {
        on_pool!(self, |p| {
            let (status, next, code, error, done) = outbox_update(attempt, now);
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, next_attempt_at = $3,
                     lease_expires_at = NULL, last_status = $4, last_error = $5, updated_at = $6, delivered_at = $7
                 WHERE id = $1",
            )
            .bind(id).bind(status).bind(next).bind(code).bind(error).bind(now).bind(done)
            .execute(p).await?;
            Ok(())
        })
    }

    async fn list_deliveries(&self, status: OutboxStatus, limit: i64) -> Result<Vec<Delivery>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM webhook_deliveries WHERE status = $1 ORDER BY created_at, id LIMIT $2",
            )
            .bind(status)
            .bind(limit)
            .fetch_all(p)
            .await?)
        })
    }

    async fn replay_delivery(&self, id: &MessageId, now: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2,
                     lease_expires_at = NULL, updated_at = $2
                 WHERE id = $1 AND status = 'dead'",
            )
            .bind(id)
            .bind(now)
            .execute(p)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn record_received_webhook(
        &self,
        webhook_id: &str,
        job_id: &str,
        payload: &str,
        now: Timestamp,
    ) -> Result<bool> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "INSERT INTO received_webhooks (webhook_id, job_id, payload, received_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(webhook_id)
            .bind(job_id)
            .bind(payload)
            .bind(now)
            .execute(p)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn unprocessed_webhooks(&self, limit: i64, now: Timestamp) -> Result<Vec<ReceivedWebhook>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM received_webhooks WHERE processed_at IS NULL AND (retry_at IS NULL OR retry_at <= $2) \
                 ORDER BY received_at, webhook_id LIMIT $1",
            )
            .bind(limit).bind(now).fetch_all(p).await?)
        })
    }

    async fn claim_webhooks(
        &self,
        limit: i64,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<ReceivedWebhook>> {
        on_pool!(self, |p| {
            let sql = format!(
                "UPDATE received_webhooks SET lease_expires_at = $3 WHERE webhook_id IN (
                     SELECT webhook_id FROM received_webhooks
                     WHERE processed_at IS NULL AND (retry_at IS NULL OR retry_at <= $2)
                       AND (lease_expires_at IS NULL OR lease_expires_at <= $2)
                     ORDER BY received_at, webhook_id LIMIT $1 {}
                 )
                 RETURNING *",
                p.skip_locked()
            );
            let mut claimed: Vec<ReceivedWebhook> =
                sqlx::query_as(&sql).bind(limit).bind(now).bind(now.plus(lease)).fetch_all(p).await?;
            claimed.sort_by(|a, b| (a.received_at, &a.webhook_id).cmp(&(b.received_at, &b.webhook_id)));
            Ok(claimed)
        })
    }

    async fn release_webhook(&self, webhook_id: &str, retry_at: Timestamp) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE received_webhooks SET lease_expires_at = NULL, retry_at = $2 WHERE webhook_id = $1",
            )
            .bind(webhook_id)
            .bind(retry_at)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    async fn defer_webhook(&self, webhook_id: &str, retry_at: Timestamp, download: bool) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE received_webhooks SET attempts = attempts + 1, fetch_failures = fetch_failures + $3, \
                 retry_at = $2, lease_expires_at = NULL WHERE webhook_id = $1 AND processed_at IS NULL",
            )
            .bind(webhook_id)
            .bind(retry_at)
            .bind(i32::from(download))
            .execute(p)
            .await?;
            Ok(())
        })
    }

    async fn mark_webhook_processed(&self, webhook_id: &str, now: Timestamp) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query("UPDATE received_webhooks SET processed_at = $2, lease_expires_at = NULL WHERE webhook_id = $1")
                .bind(webhook_id)
                .bind(now)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    async fn requeue_webhook_of_job(&self, job_id: &str) -> Result<bool> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "UPDATE received_webhooks SET processed_at = NULL, attempts = 0, fetch_failures = 0, retry_at = NULL, \
                 lease_expires_at = NULL WHERE job_id = $1 AND processed_at IS NOT NULL",
            )
            .bind(job_id)
            .execute(p)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn queue_depths(&self) -> Result<Vec<(&'static str, i64)>> {
        on_pool!(self, |p| {
            let row: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
                "SELECT
                     (SELECT COUNT(*) FROM runs WHERE status = 'pending'),
                     (SELECT COUNT(*) FROM received_webhooks WHERE processed_at IS NULL),
                     (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'),
                     (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'dead'),
                     (SELECT COUNT(*) FROM alerts WHERE status = 'pending'),
                     (SELECT COUNT(*) FROM alerts WHERE status = 'dead')",
            )
            .fetch_one(p)
            .await?;
            Ok(vec![
                ("runs_pending", row.0),
                ("webhooks_unprocessed", row.1),
                ("deliveries_pending", row.2),
                ("deliveries_dead", row.3),
                ("alerts_pending", row.4),
                ("alerts_dead", row.5),
            ])
        })
    }
}

/// A delivery's origin (`https://host:port`), the unit of fairness; the URL itself when it has
/// none.
fn destination(url: &str) -> String {
    match url::Url::parse(url).map(|u| u.origin()) {
        Ok(origin @ url::Origin::Tuple(..)) => origin.ascii_serialization(),
        _ => url.to_owned(),
    }
}

/// The row lock and the statements that insert in a transaction are the same SQL on both
/// backends; these helpers take either backend's transaction.
pub(super) async fn insert_delivery<DB>(tx: &mut sqlx::Transaction<'_, DB>, d: &NewDelivery) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> MessageId: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Timestamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, job_id, url, destination, payload, status, attempts,
             next_attempt_at, created_at, updated_at, sender)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6, $7)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&d.id)
    .bind(&d.subject)
    .bind(&d.url)
    .bind(destination(&d.url))
    .bind(&d.payload)
    .bind(d.now)
    .bind(&d.sender)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
