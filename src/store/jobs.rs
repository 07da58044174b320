//! The capture API's queue: `capture_jobs` (claimed with a lease, retried with backoff) and the
//! `assets` they produce. Completing or failing a job queues its webhook in the same
//! transaction, so a finished job cannot lose its webhook.

use async_trait::async_trait;

use super::deliveries::insert_delivery;
use super::pool::{Dialect, on_pool};
use super::*;

/// What follows a failed capture attempt.
#[derive(Debug, Clone, Copy)]
pub enum JobFailure<'a> {
    /// Queued again for then.
    RetryAt(Timestamp),
    /// Failed for good: the picture of its page as the failure left it, if kept, becomes the
    /// job's asset, and its webhook (if any) is queued in the same transaction.
    Final { failing_state: Option<&'a AssetId>, delivery: Option<&'a NewDelivery> },
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Inserts a queued job; with an idempotency key already used since `key_since`, returns
    /// the earlier job instead.
    async fn insert_job(&self, job: &NewJob, key_since: Timestamp) -> Result<JobInsert>;

    async fn get_job(&self, id: &JobId) -> Result<Option<CaptureJob>>;

    /// Takes the next ready job (queued and due, or running with an expired lease and attempts
    /// left) and leases it to `worker` until `now + lease`.
    async fn claim_job(&self, worker: &str, now: Timestamp, lease: Duration) -> Result<Option<CaptureJob>>;

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

    /// Records a failed attempt: the job is queued again, or fails for good ([`JobFailure`]).
    async fn fail_job(
        &self,
        id: &JobId,
        worker: &str,
        error: &str,
        then: JobFailure<'_>,
        now: Timestamp,
    ) -> Result<bool>;

    /// A job its client gave up on (`run --once` interrupted): failed, with `error`, unless it
    /// already finished; no webhook is sent, and a worker holding it finds its lease gone.
    /// Whether it was still queued or running.
    async fn cancel_job(&self, id: &JobId, error: &str, now: Timestamp) -> Result<bool>;

    /// How many jobs are in each state (for metrics).
    async fn count_jobs(&self) -> Result<Vec<(JobStatus, i64)>>;

    /// Jobs queued or running: the capture API's backlog, read on every submission (an index
    /// range, not a pass over the finished jobs the table keeps).
    async fn waiting_jobs(&self) -> Result<i64>;

    /// Running jobs whose lease expired with no attempts left: marked failed and returned.
    async fn fail_abandoned_jobs(&self, now: Timestamp, error: &str) -> Result<Vec<CaptureJob>>;

    async fn insert_asset(&self, asset: &Asset) -> Result<()>;

    async fn get_asset(&self, id: &AssetId) -> Result<Option<Asset>>;
}

#[async_trait]
impl JobStore for SqlStore {
    async fn insert_job(&self, job: &NewJob, key_since: Timestamp) -> Result<JobInsert> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            if let Some(key) = &job.idempotency_key {
                let earlier: Option<CaptureJob> =
                    sqlx::query_as("SELECT * FROM capture_jobs WHERE idempotency_key = $1")
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                match earlier {
                    Some(e) if e.created_at >= key_since => return Ok(JobInsert::Existing(e)),
                    // Expired key: free it for this request.
                    Some(e) => {
                        sqlx::query("UPDATE capture_jobs SET idempotency_key = NULL WHERE id = $1")
                            .bind(&e.id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    None => {}
                }
            }
            // A request with the same key committed meanwhile (a client's retry racing its
            // original, on another replica): that one is the job.
            let created: Option<CaptureJob> = sqlx::query_as(
                "INSERT INTO capture_jobs (id, request, status, attempts, max_attempts, next_attempt_at,
                     idempotency_key, created_at, updated_at)
                 VALUES ($1, $2, 'queued', 0, $3, $4, $5, $4, $4)
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING *",
            )
            .bind(&job.id)
            .bind(&job.request)
            .bind(job.max_attempts)
            .bind(job.now)
            .bind(&job.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
            let inserted = match created {
                Some(created) => JobInsert::Created(created),
                None => JobInsert::Existing(
                    sqlx::query_as("SELECT * FROM capture_jobs WHERE idempotency_key = $1")
                        .bind(&job.idempotency_key)
                        .fetch_one(&mut *tx)
                        .await?,
                ),
            };
            tx.commit().await?;
            Ok(inserted)
        })
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<CaptureJob>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM capture_jobs WHERE id = $1").bind(id).fetch_optional(p).await?)
        })
    }

    async fn claim_job(&self, worker: &str, now: Timestamp, lease: Duration) -> Result<Option<CaptureJob>> {
        on_pool!(self, |p| {
            let sql = format!(
                "UPDATE capture_jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2,
                     attempts = attempts + 1, updated_at = $3
                 WHERE id = (
                     SELECT id FROM capture_jobs
                     WHERE (status = 'queued' AND next_attempt_at <= $3)
                        OR (status = 'running' AND lease_expires_at <= $3 AND attempts < max_attempts)
                     ORDER BY next_attempt_at, id LIMIT 1 {}
                 )
                 RETURNING *",
                p.skip_locked()
            );
            Ok(sqlx::query_as(&sql).bind(worker).bind(now.plus(lease)).bind(now).fetch_optional(p).await?)
        })
    }

    async fn complete_job(
        &self,
        id: &JobId,
        worker: &str,
        result: &str,
        asset: Option<&AssetId>,
        delivery: Option<&NewDelivery>,
        now: Timestamp,
    ) -> Result<bool> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let r = sqlx::query(
                "UPDATE capture_jobs SET status = 'completed', result = $3, asset_id = $4, lease_expires_at = NULL,
                     updated_at = $5, completed_at = $5
                 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
            )
            .bind(id).bind(worker).bind(result).bind(asset).bind(now).execute(&mut *tx).await?;
            if r.rows_affected() != 1 {
                return Ok(false);
            }
            if let Some(d) = delivery {
                insert_delivery(&mut tx, d).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn cancel_job(&self, id: &JobId, error: &str, now: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "UPDATE capture_jobs SET status = 'failed', error = $2, lease_owner = NULL, lease_expires_at = NULL,
                     updated_at = $3, completed_at = $3
                 WHERE id = $1 AND status IN ('queued', 'running')",
            )
            .bind(id).bind(error).bind(now).execute(p).await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn fail_job(
        &self,
        id: &JobId,
        worker: &str,
        error: &str,
        then: JobFailure<'_>,
        now: Timestamp,
    ) -> Result<bool> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let r = match then {
                JobFailure::RetryAt(at) => sqlx::query(
                    "UPDATE capture_jobs SET status = 'queued', error = $3, next_attempt_at = $4, lease_owner = NULL,
                         lease_expires_at = NULL, updated_at = $5
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id).bind(worker).bind(error).bind(at).bind(now).execute(&mut *tx).await?,
                JobFailure::Final { failing_state, .. } => sqlx::query(
                    "UPDATE capture_jobs SET status = 'failed', error = $3, lease_expires_at = NULL,
                         updated_at = $4, completed_at = $4, asset_id = $5
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id).bind(worker).bind(error).bind(now).bind(failing_state).execute(&mut *tx).await?,
            };
            if r.rows_affected() != 1 {
                return Ok(false);
            }
            if let JobFailure::Final { delivery: Some(d), .. } = then {
                insert_delivery(&mut tx, d).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn count_jobs(&self) -> Result<Vec<(JobStatus, i64)>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT status, COUNT(*) FROM capture_jobs GROUP BY status ORDER BY status")
                .fetch_all(p)
                .await?)
        })
    }

    async fn waiting_jobs(&self) -> Result<i64> {
        on_pool!(self, |p| {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM capture_jobs WHERE status IN ('queued', 'running')")
                .fetch_one(p)
                .await?)
        })
    }

    async fn fail_abandoned_jobs(&self, now: Timestamp, error: &str) -> Result<Vec<CaptureJob>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "UPDATE capture_jobs SET status = 'failed', error = $2, lease_expires_at = NULL,
                     updated_at = $1, completed_at = $1
                 WHERE status = 'running' AND lease_expires_at <= $1 AND attempts >= max_attempts
                 RETURNING *",
            )
            .bind(now)
            .bind(error)
            .fetch_all(p)
            .await?)
        })
    }

    async fn insert_asset(&self, a: &Asset) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO assets (id, job_id, sha256, content_type, width, height, size, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&a.id)
            .bind(&a.job_id)
            .bind(&a.sha256)
            .bind(&a.content_type)
            .bind(a.width)
            .bind(a.height)
            .bind(a.size)
            .bind(a.created_at)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    async fn get_asset(&self, id: &AssetId) -> Result<Option<Asset>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM assets WHERE id = $1").bind(id).fetch_optional(p).await?)
        })
    }
}
