//! Storage: one contract ([`Store`]), two implementations (SQLite, the embedded default, and
//! PostgreSQL for several replicas), chosen by the database URL. Queries are checked at run time
//! so building needs no database; one conformance story (tests/it/store.rs) runs on both.
//!
//! Blobs (captures, diffs) and baseline files live on disk, see [`blobs`].

pub mod blobs;
mod postgres;
mod records;
pub mod retention;
mod sql;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use records::*;

use crate::config::MonitorName;
use crate::ids::{AlertId, AssetId, JobId, MessageId, RunId};
use crate::time::Timestamp;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL (expected sqlite://… or postgres://…)")]
    UnsupportedUrl,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether trying again later may succeed (the database is busy, restarting, unreachable).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(e) => match e {
                // A connection cut mid-conversation surfaces as I/O, TLS or protocol trouble.
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => {
                    // SQLite: 5 = SQLITE_BUSY, 6 = SQLITE_LOCKED; PostgreSQL: serialization,
                    // deadlock, admin shutdown and connection classes.
                    let code = db.code().unwrap_or_default();
                    matches!(code.as_ref(), "5" | "6" | "40001" | "40P01" | "57P01" | "57P03")
                        || code.starts_with("08")
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Stable machine-readable code for logs and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::UnsupportedUrl => "unsupported_database_url",
            StoreError::Migrate(_) => "migration_failed",
            StoreError::Database(_) if self.is_retryable() => "database_unavailable",
            StoreError::Database(_) => "database_error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Connects to `url` (`sqlite://path`, `postgres://…`) and runs pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url, max_connections).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url, max_connections).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Everything vigil keeps in its database. Every method is one transaction. Times are passed in,
/// never read from the database's clock, so replicas and tests agree on "now".
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// A trivial query: is the database reachable?
    async fn ping(&self) -> Result<()>;
    async fn close(&self);

    // Monitors.
    /// Makes the table match the config: inserts new monitors, updates changed ones, marks the
    /// missing ones removed (their history stays).
    async fn sync_monitors(&self, monitors: &[MonitorUpsert], now: Timestamp) -> Result<SyncSummary>;
    /// Monitors currently in the config, by name.
    async fn list_monitors(&self) -> Result<Vec<MonitorRecord>>;
    async fn get_monitor(&self, name: &MonitorName) -> Result<Option<MonitorRecord>>;

    // Runs.
    /// `None` when a run for the same (monitor, viewport, scheduled_for) exists already.
    async fn insert_run(&self, run: &NewRun) -> Result<Option<Run>>;
    async fn get_run(&self, id: &RunId) -> Result<Option<Run>>;
    async fn run_for_job(&self, job: &JobId) -> Result<Option<Run>>;
    async fn set_run_job(&self, id: &RunId, job: &JobId, now: Timestamp) -> Result<bool>;
    /// Starts a re-capture of a pending run (`retries_on_diff`): new job, attempt + 1.
    async fn recapture_run(&self, id: &RunId, job: &JobId, now: Timestamp) -> Result<bool>;
    /// Records the verdict of a pending run; `false` if it was not pending (already processed).
    async fn complete_run(&self, id: &RunId, outcome: &RunOutcome, now: Timestamp) -> Result<bool>;
    /// A person's decision on a change (`approved` / `rejected`): only a run that is `changed`
    /// or `rejected` now; `false` otherwise (say, approved meanwhile by someone else).
    async fn review_run(&self, id: &RunId, verdict: Verdict, by: &str, now: Timestamp) -> Result<bool>;
    async fn pending_run_exists(&self, monitor: &MonitorName, viewport: &str) -> Result<bool>;
    /// The verdict of the latest finished run of (monitor, viewport) created before `before`
    /// (failure streaks: alert when one starts and when it ends).
    async fn previous_verdict(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        before: Timestamp,
    ) -> Result<Option<Verdict>>;
    /// Pending runs not touched since `before`, oldest first (for the reconciler).
    async fn stale_pending_runs(&self, before: Timestamp, limit: i64) -> Result<Vec<Run>>;
    /// A monitor's runs, newest first, optionally only those created before `before`.
    async fn list_runs(
        &self,
        monitor: &MonitorName,
        before: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<Run>>;

    // Capture jobs.
    /// Inserts a queued job; with an idempotency key already used since `key_since`, returns
    /// the earlier job instead.
    async fn insert_job(&self, job: &NewJob, key_since: Timestamp) -> Result<JobInsert>;
    async fn get_job(&self, id: &JobId) -> Result<Option<CaptureJob>>;
    /// Takes the next ready job (queued and due, or running with an expired lease and attempts
    /// left) and leases it to `worker` until `now + lease`.
    async fn claim_job(&self, worker: &str, now: Timestamp, lease: Duration) -> Result<Option<CaptureJob>>;
    async fn extend_job_lease(&self, id: &JobId, worker: &str, until: Timestamp) -> Result<bool>;
    /// Marks the job completed and, in the same transaction, queues its webhook (if any), so a
    /// crash cannot leave a finished job whose webhook is never sent.
    async fn complete_job(
        &self,
        id: &JobId,
        worker: &str,
        result: &str,
        asset: Option<&AssetId>,
        delivery: Option<&NewDelivery>,
        now: Timestamp,
    ) -> Result<bool>;
    /// With `retry_at`, the job is queued again for then; without, it fails for good and its
    /// webhook (if any) is queued in the same transaction.
    async fn fail_job(
        &self,
        id: &JobId,
        worker: &str,
        error: &str,
        retry_at: Option<Timestamp>,
        delivery: Option<&NewDelivery>,
        now: Timestamp,
    ) -> Result<bool>;
    /// How many jobs are in each state (for metrics).
    async fn count_jobs(&self) -> Result<Vec<(JobStatus, i64)>>;
    /// Running jobs whose lease expired with no attempts left: marked failed and returned.
    async fn fail_abandoned_jobs(&self, now: Timestamp, error: &str) -> Result<Vec<CaptureJob>>;

    // Assets.
    async fn insert_asset(&self, asset: &Asset) -> Result<()>;
    async fn get_asset(&self, id: &AssetId) -> Result<Option<Asset>>;

    // Outgoing webhooks.
    async fn enqueue_delivery(&self, delivery: &NewDelivery) -> Result<()>;
    /// Leases the next due pending delivery until `now + lease`.
    async fn claim_delivery(&self, now: Timestamp, lease: Duration) -> Result<Option<Delivery>>;
    async fn record_delivery_attempt(&self, id: &MessageId, attempt: &Attempt, now: Timestamp) -> Result<()>;
    async fn get_delivery(&self, id: &MessageId) -> Result<Option<Delivery>>;
    async fn list_deliveries(&self, status: OutboxStatus, limit: i64) -> Result<Vec<Delivery>>;
    /// Puts a dead delivery back in the queue, due now.
    async fn replay_delivery(&self, id: &MessageId, now: Timestamp) -> Result<bool>;

    // Incoming webhooks.
    /// Stores a verified webhook; `false` if its webhook id or job id was seen before.
    async fn record_received_webhook(
        &self,
        webhook_id: &str,
        job_id: &str,
        payload: &str,
        now: Timestamp,
    ) -> Result<bool>;
    async fn unprocessed_webhooks(&self, limit: i64) -> Result<Vec<ReceivedWebhook>>;
    async fn get_received_webhook(&self, webhook_id: &str) -> Result<Option<ReceivedWebhook>>;
    async fn mark_webhook_processed(&self, webhook_id: &str, now: Timestamp) -> Result<()>;
    /// Puts the processed result of `job_id` back in the queue; whether there was one.
    async fn requeue_webhook_of_job(&self, job_id: &str) -> Result<bool>;

    // Baselines.
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
    async fn approve_run(&self, run: &RunId, baseline: &NewBaseline) -> Result<Baseline>;
    /// Runs judged `changed` and not reviewed yet, newest first; optionally of one monitor, and
    /// created before `before` (pagination).
    async fn list_changes(
        &self,
        monitor: Option<&MonitorName>,
        before: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<Run>>;
    /// The newest run of every monitor and viewport (one query, for the dashboard).
    async fn latest_runs(&self) -> Result<Vec<Run>>;
    /// How many changes await review, per monitor.
    async fn changes_by_monitor(&self) -> Result<Vec<(MonitorName, i64)>>;
    /// The newest finished run of (monitor, viewport) that has a capture.
    async fn latest_captured_run(&self, monitor: &MonitorName, viewport: &str) -> Result<Option<Run>>;
    /// The `limit` most recently made active baselines, newest first.
    async fn recent_baselines(&self, limit: i64) -> Result<Vec<Baseline>>;
    /// Every version, newest first.
    async fn baseline_history(&self, monitor: &MonitorName, viewport: &str) -> Result<Vec<Baseline>>;

    /// Work waiting in each queue (for metrics): pending runs, unprocessed received webhooks,
    /// pending and dead webhook deliveries, pending and dead alerts.
    async fn queue_depths(&self) -> Result<Vec<(&'static str, i64)>>;

    // Retention.
    /// Blobs referenced only by runs and assets created before `cutoff` — never by a baseline
    /// version, a newer run or a newer asset — at most `limit` of them.
    async fn expired_blobs(&self, cutoff: Timestamp, limit: i64) -> Result<Vec<String>>;
    /// Removes the references to an expired blob from runs and assets created before `cutoff`
    /// (the runs keep their verdict and figures, the old asset rows go), in one transaction that
    /// first checks again that nothing newer and no baseline uses it. `false` (nothing changed)
    /// when something does by now; the caller deletes the file only on `true`.
    async fn forget_blob(&self, sha256: &str, cutoff: Timestamp) -> Result<bool>;
    /// Whether any row (baseline version, run, asset) refers to the blob at all.
    async fn blob_referenced(&self, sha256: &str) -> Result<bool>;

    // Alerts.
    /// `false` when this run already has an alert of this kind (never alert twice).
    async fn enqueue_alert(&self, alert: &NewAlert) -> Result<bool>;
    async fn claim_alert(&self, now: Timestamp, lease: Duration) -> Result<Option<Alert>>;
    async fn record_alert_attempt(&self, id: &AlertId, attempt: &Attempt, now: Timestamp) -> Result<()>;
    async fn get_alert(&self, id: &AlertId) -> Result<Option<Alert>>;
    /// Records that the alert's message is posted (`channel`, `ts`), before its images go into
    /// the thread, so a retry does not post the message again.
    async fn mark_alert_posted(&self, id: &AlertId, channel: &str, ts: &str, now: Timestamp) -> Result<()>;
    /// Records that the alert's message is about to be posted to `channel`: if the attempt then
    /// dies before [`Store::mark_alert_posted`], the next one looks in that channel first.
    async fn mark_alert_posting(&self, id: &AlertId, channel: &str, now: Timestamp) -> Result<()>;
    /// Alerts of a run, oldest first.
    async fn alerts_for_run(&self, run: &RunId) -> Result<Vec<Alert>>;
}
