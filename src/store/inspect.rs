//! Reads the daemon itself does not need: for tests, tools and debugging. Kept out of
//! [`super::Store`], so the production contract is only what production uses.

use async_trait::async_trait;

use super::pool::on_pool;
use super::*;

#[async_trait]
pub trait Inspect: Send + Sync {
    /// Monitors currently in the config, by name.
    async fn list_monitors(&self) -> Result<Vec<MonitorRecord>>;

    async fn get_monitor(&self, name: &MonitorName) -> Result<Option<MonitorRecord>>;

    async fn extend_job_lease(&self, id: &JobId, worker: &str, until: Timestamp) -> Result<bool>;

    async fn get_delivery(&self, id: &MessageId) -> Result<Option<Delivery>>;

    async fn get_received_webhook(&self, webhook_id: &str) -> Result<Option<ReceivedWebhook>>;

    async fn get_alert(&self, id: &AlertId) -> Result<Option<Alert>>;
}

#[async_trait]
impl Inspect for SqlStore {
    async fn list_monitors(&self) -> Result<Vec<MonitorRecord>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM monitors WHERE removed_at IS NULL ORDER BY name")
                .fetch_all(p)
                .await?)
        })
    }

    async fn get_monitor(&self, name: &MonitorName) -> Result<Option<MonitorRecord>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM monitors WHERE name = $1").bind(name).fetch_optional(p).await?)
        })
    }

    async fn extend_job_lease(&self, id: &JobId, worker: &str, until: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "UPDATE capture_jobs SET lease_expires_at = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
            )
            .bind(id).bind(worker).bind(until).execute(p).await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn get_delivery(&self, id: &MessageId) -> Result<Option<Delivery>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM webhook_deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?)
        })
    }

    async fn get_received_webhook(&self, webhook_id: &str) -> Result<Option<ReceivedWebhook>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM received_webhooks WHERE webhook_id = $1")
                .bind(webhook_id)
                .fetch_optional(p)
                .await?)
        })
    }

    async fn get_alert(&self, id: &AlertId) -> Result<Option<Alert>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM alerts WHERE id = $1").bind(id).fetch_optional(p).await?)
        })
    }
}
