//! The SQL both backends share. SQLite and PostgreSQL accept the same statements here (`$n`
//! parameters, `ON CONFLICT`, `RETURNING`, partial indexes); the one difference — row locking
//! when claiming queue work — comes in as `$lock` (`FOR UPDATE SKIP LOCKED` on PostgreSQL,
//! nothing on SQLite, whose single writer already makes the claim atomic) — and how a write
//! transaction begins: SQLite's must be `BEGIN IMMEDIATE`, because a deferred transaction that
//! reads and then writes fails at once with `SQLITE_BUSY` (no busy wait) when another connection
//! committed in between; taking the write lock up front makes it wait on the busy timeout instead.

macro_rules! impl_store {
    ($ty:ty, $backend:expr, $lock:expr, $begin:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $ty {
            fn backend(&self) -> $crate::store::Backend {
                $backend
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn close(&self) {
                self.pool.close().await;
            }

            async fn sync_monitors(&self, monitors: &[MonitorUpsert], now: Timestamp) -> Result<SyncSummary> {
                let mut tx = self.pool.begin_with($begin).await?;
                let mut summary = SyncSummary::default();
                let names: Vec<&str> = monitors.iter().map(|m| m.name.as_str()).collect();
                let existing: Vec<MonitorRecord> = sqlx::query_as("SELECT * FROM monitors").fetch_all(&mut *tx).await?;
                for m in monitors {
                    match existing.iter().find(|e| e.name == m.name) {
                        None => {
                            sqlx::query(
                                "INSERT INTO monitors (name, url, config, enabled, removed_at, created_at, updated_at)
                                 VALUES ($1, $2, $3, $4, NULL, $5, $5)",
                            )
                            .bind(&m.name).bind(&m.url).bind(&m.config).bind(m.enabled).bind(now)
                            .execute(&mut *tx).await?;
                            summary.added += 1;
                        }
                        Some(e) if e.url != m.url || e.config != m.config || e.enabled != m.enabled || e.removed_at.is_some() => {
                            sqlx::query(
                                "UPDATE monitors SET url = $2, config = $3, enabled = $4, removed_at = NULL, updated_at = $5
                                 WHERE name = $1",
                            )
                            .bind(&m.name).bind(&m.url).bind(&m.config).bind(m.enabled).bind(now)
                            .execute(&mut *tx).await?;
                            summary.updated += 1;
                        }
                        Some(_) => {}
                    }
                }
                for e in existing.iter().filter(|e| e.removed_at.is_none() && !names.contains(&e.name.as_str())) {
                    sqlx::query("UPDATE monitors SET removed_at = $2, updated_at = $2 WHERE name = $1")
                        .bind(&e.name).bind(now).execute(&mut *tx).await?;
                    summary.removed += 1;
                }
                tx.commit().await?;
                Ok(summary)
            }

            async fn list_monitors(&self) -> Result<Vec<MonitorRecord>> {
                Ok(sqlx::query_as("SELECT * FROM monitors WHERE removed_at IS NULL ORDER BY name")
                    .fetch_all(&self.pool).await?)
            }

            async fn get_monitor(&self, name: &MonitorName) -> Result<Option<MonitorRecord>> {
                Ok(sqlx::query_as("SELECT * FROM monitors WHERE name = $1").bind(name).fetch_optional(&self.pool).await?)
            }

            async fn insert_run(&self, run: &NewRun) -> Result<Option<Run>> {
                Ok(sqlx::query_as(
                    "INSERT INTO runs (id, monitor, viewport, scheduled_for, trigger, status, attempt, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)
                     ON CONFLICT (monitor, viewport, scheduled_for) DO NOTHING
                     RETURNING *",
                )
                .bind(&run.id).bind(&run.monitor).bind(&run.viewport).bind(run.scheduled_for).bind(run.trigger).bind(run.now)
                .fetch_optional(&self.pool).await?)
            }

            async fn get_run(&self, id: &RunId) -> Result<Option<Run>> {
                Ok(sqlx::query_as("SELECT * FROM runs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn run_for_job(&self, job: &JobId) -> Result<Option<Run>> {
                Ok(sqlx::query_as("SELECT * FROM runs WHERE job_id = $1").bind(job).fetch_optional(&self.pool).await?)
            }

            async fn set_run_job(&self, id: &RunId, job: &JobId, now: Timestamp) -> Result<bool> {
                let r = sqlx::query("UPDATE runs SET job_id = $2, updated_at = $3 WHERE id = $1 AND status = 'pending'")
                    .bind(id).bind(job).bind(now).execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn recapture_run(&self, id: &RunId, job: &JobId, now: Timestamp) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE runs SET job_id = $2, attempt = attempt + 1, updated_at = $3 WHERE id = $1 AND status = 'pending'",
                )
                .bind(id).bind(job).bind(now).execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn complete_run(&self, id: &RunId, o: &RunOutcome, now: Timestamp) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE runs SET status = 'done', verdict = $2, current_sha256 = $3, baseline_sha256 = $4,
                         diff_sha256 = $5, diff_pixels = $6, total_pixels = $7, diff_ratio = $8, size_changed = $9,
                         regions = $10, error = $11, updated_at = $12, completed_at = $12
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(id).bind(o.verdict).bind(&o.current_sha256).bind(&o.baseline_sha256).bind(&o.diff_sha256)
                .bind(o.diff_pixels).bind(o.total_pixels).bind(o.diff_ratio).bind(o.size_changed)
                .bind(&o.regions).bind(&o.error).bind(now)
                .execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn review_run(&self, id: &RunId, verdict: Verdict, by: &str, now: Timestamp) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE runs SET verdict = $2, reviewed_by = $3, updated_at = $4
                     WHERE id = $1 AND status = 'done' AND verdict IN ('changed', 'rejected')",
                )
                .bind(id).bind(verdict).bind(by).bind(now).execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn previous_verdict(
                &self,
                monitor: &MonitorName,
                viewport: &str,
                before: Timestamp,
            ) -> Result<Option<Verdict>> {
                Ok(sqlx::query_scalar(
                    "SELECT verdict FROM runs
                     WHERE monitor = $1 AND viewport = $2 AND created_at < $3 AND verdict IS NOT NULL
                     ORDER BY created_at DESC, id DESC LIMIT 1",
                )
                .bind(monitor).bind(viewport).bind(before).fetch_optional(&self.pool).await?)
            }

            async fn pending_run_exists(&self, monitor: &MonitorName, viewport: &str) -> Result<bool> {
                let row: Option<(i32,)> = sqlx::query_as(
                    "SELECT 1 FROM runs WHERE monitor = $1 AND viewport = $2 AND status = 'pending' LIMIT 1",
                )
                .bind(monitor).bind(viewport).fetch_optional(&self.pool).await?;
                Ok(row.is_some())
            }

            async fn stale_pending_runs(&self, before: Timestamp, limit: i64) -> Result<Vec<Run>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM runs WHERE status = 'pending' AND updated_at < $1 ORDER BY updated_at, id LIMIT $2",
                )
                .bind(before).bind(limit).fetch_all(&self.pool).await?)
            }

            async fn list_runs(&self, monitor: &MonitorName, before: Option<Timestamp>, limit: i64) -> Result<Vec<Run>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM runs WHERE monitor = $1 AND ($2 IS NULL OR created_at < $2)
                     ORDER BY created_at DESC, id DESC LIMIT $3",
                )
                .bind(monitor).bind(before).bind(limit).fetch_all(&self.pool).await?)
            }

            async fn insert_job(&self, job: &NewJob, key_since: Timestamp) -> Result<JobInsert> {
                let mut tx = self.pool.begin_with($begin).await?;
                if let Some(key) = &job.idempotency_key {
                    let earlier: Option<CaptureJob> = sqlx::query_as("SELECT * FROM capture_jobs WHERE idempotency_key = $1")
                        .bind(key).fetch_optional(&mut *tx).await?;
                    match earlier {
                        Some(e) if e.created_at >= key_since => return Ok(JobInsert::Existing(e)),
                        // Expired key: free it for this request.
                        Some(e) => {
                            sqlx::query("UPDATE capture_jobs SET idempotency_key = NULL WHERE id = $1")
                                .bind(&e.id).execute(&mut *tx).await?;
                        }
                        None => {}
                    }
                }
                let created: CaptureJob = sqlx::query_as(
                    "INSERT INTO capture_jobs (id, request, status, attempts, max_attempts, next_attempt_at,
                         idempotency_key, created_at, updated_at)
                     VALUES ($1, $2, 'queued', 0, $3, $4, $5, $4, $4)
                     RETURNING *",
                )
                .bind(&job.id).bind(&job.request).bind(job.max_attempts).bind(job.now).bind(&job.idempotency_key)
                .fetch_one(&mut *tx).await?;
                tx.commit().await?;
                Ok(JobInsert::Created(created))
            }

            async fn get_job(&self, id: &JobId) -> Result<Option<CaptureJob>> {
                Ok(sqlx::query_as("SELECT * FROM capture_jobs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn claim_job(&self, worker: &str, now: Timestamp, lease: Duration) -> Result<Option<CaptureJob>> {
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
                    $lock
                );
                Ok(sqlx::query_as(&sql)
                    .bind(worker).bind(now.plus(lease)).bind(now)
                    .fetch_optional(&self.pool).await?)
            }

            async fn extend_job_lease(&self, id: &JobId, worker: &str, until: Timestamp) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE capture_jobs SET lease_expires_at = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id).bind(worker).bind(until).execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
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
                let mut tx = self.pool.begin_with($begin).await?;
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
            }

            async fn fail_job(
                &self,
                id: &JobId,
                worker: &str,
                error: &str,
                retry_at: Option<Timestamp>,
                delivery: Option<&NewDelivery>,
                now: Timestamp,
            ) -> Result<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                let r = match retry_at {
                    Some(at) => sqlx::query(
                        "UPDATE capture_jobs SET status = 'queued', error = $3, next_attempt_at = $4, lease_owner = NULL,
                             lease_expires_at = NULL, updated_at = $5
                         WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                    )
                    .bind(id).bind(worker).bind(error).bind(at).bind(now).execute(&mut *tx).await?,
                    None => sqlx::query(
                        "UPDATE capture_jobs SET status = 'failed', error = $3, lease_expires_at = NULL,
                             updated_at = $4, completed_at = $4
                         WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                    )
                    .bind(id).bind(worker).bind(error).bind(now).execute(&mut *tx).await?,
                };
                if r.rows_affected() != 1 {
                    return Ok(false);
                }
                if let (None, Some(d)) = (retry_at, delivery) {
                    insert_delivery(&mut tx, d).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn count_jobs(&self) -> Result<Vec<(JobStatus, i64)>> {
                Ok(sqlx::query_as("SELECT status, COUNT(*) FROM capture_jobs GROUP BY status ORDER BY status")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn fail_abandoned_jobs(&self, now: Timestamp, error: &str) -> Result<Vec<CaptureJob>> {
                Ok(sqlx::query_as(
                    "UPDATE capture_jobs SET status = 'failed', error = $2, lease_expires_at = NULL,
                         updated_at = $1, completed_at = $1
                     WHERE status = 'running' AND lease_expires_at <= $1 AND attempts >= max_attempts
                     RETURNING *",
                )
                .bind(now).bind(error).fetch_all(&self.pool).await?)
            }

            async fn insert_asset(&self, a: &Asset) -> Result<()> {
                sqlx::query(
                    "INSERT INTO assets (id, job_id, sha256, content_type, width, height, size, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&a.id).bind(&a.job_id).bind(&a.sha256).bind(&a.content_type).bind(a.width).bind(a.height)
                .bind(a.size).bind(a.created_at)
                .execute(&self.pool).await?;
                Ok(())
            }

            async fn get_asset(&self, id: &AssetId) -> Result<Option<Asset>> {
                Ok(sqlx::query_as("SELECT * FROM assets WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn enqueue_delivery(&self, d: &NewDelivery) -> Result<()> {
                let mut tx = self.pool.begin_with($begin).await?;
                insert_delivery(&mut tx, d).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn claim_delivery(&self, now: Timestamp, lease: Duration) -> Result<Option<Delivery>> {
                let sql = $crate::store::sql::claim_outbox_sql("webhook_deliveries", $lock);
                Ok(sqlx::query_as(&sql).bind(now).bind(now.plus(lease)).fetch_optional(&self.pool).await?)
            }

            async fn record_delivery_attempt(&self, id: &MessageId, attempt: &Attempt, now: Timestamp) -> Result<()> {
                let (status, next, code, error, done) = outbox_update(attempt, now);
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, next_attempt_at = $3,
                         lease_expires_at = NULL, last_status = $4, last_error = $5, updated_at = $6, delivered_at = $7
                     WHERE id = $1",
                )
                .bind(id).bind(status).bind(next).bind(code).bind(error).bind(now).bind(done)
                .execute(&self.pool).await?;
                Ok(())
            }

            async fn get_delivery(&self, id: &MessageId) -> Result<Option<Delivery>> {
                Ok(sqlx::query_as("SELECT * FROM webhook_deliveries WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_deliveries(&self, status: OutboxStatus, limit: i64) -> Result<Vec<Delivery>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM webhook_deliveries WHERE status = $1 ORDER BY created_at, id LIMIT $2",
                )
                .bind(status).bind(limit).fetch_all(&self.pool).await?)
            }

            async fn replay_delivery(&self, id: &MessageId, now: Timestamp) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2,
                         lease_expires_at = NULL, updated_at = $2
                     WHERE id = $1 AND status = 'dead'",
                )
                .bind(id).bind(now).execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn record_received_webhook(&self, webhook_id: &str, job_id: &str, payload: &str, now: Timestamp) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO received_webhooks (webhook_id, job_id, payload, received_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(webhook_id).bind(job_id).bind(payload).bind(now).execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn unprocessed_webhooks(&self, limit: i64) -> Result<Vec<ReceivedWebhook>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM received_webhooks WHERE processed_at IS NULL ORDER BY received_at, webhook_id LIMIT $1",
                )
                .bind(limit).fetch_all(&self.pool).await?)
            }

            async fn get_received_webhook(&self, webhook_id: &str) -> Result<Option<ReceivedWebhook>> {
                Ok(sqlx::query_as("SELECT * FROM received_webhooks WHERE webhook_id = $1")
                    .bind(webhook_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn mark_webhook_processed(&self, webhook_id: &str, now: Timestamp) -> Result<()> {
                sqlx::query("UPDATE received_webhooks SET processed_at = $2 WHERE webhook_id = $1")
                    .bind(webhook_id).bind(now).execute(&self.pool).await?;
                Ok(())
            }

            async fn requeue_webhook_of_job(&self, job_id: &str) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE received_webhooks SET processed_at = NULL WHERE job_id = $1 AND processed_at IS NOT NULL",
                )
                .bind(job_id).execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn current_baseline(&self, monitor: &MonitorName, viewport: &str) -> Result<Option<Baseline>> {
                Ok(sqlx::query_as("SELECT * FROM baselines WHERE monitor = $1 AND viewport = $2 AND active")
                    .bind(monitor).bind(viewport).fetch_optional(&self.pool).await?)
            }

            async fn set_baseline(&self, b: &NewBaseline) -> Result<Baseline> {
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query("UPDATE baselines SET active = FALSE WHERE monitor = $1 AND viewport = $2 AND active")
                    .bind(&b.monitor).bind(&b.viewport).execute(&mut *tx).await?;
                let row = insert_baseline(&mut tx, b).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn approve_run(&self, run: &RunId, b: &NewBaseline) -> Result<Baseline> {
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query("UPDATE baselines SET active = FALSE WHERE monitor = $1 AND viewport = $2 AND active")
                    .bind(&b.monitor).bind(&b.viewport).execute(&mut *tx).await?;
                let row = insert_baseline(&mut tx, b).await?;
                sqlx::query(
                    "UPDATE runs SET verdict = 'approved', reviewed_by = $2, updated_at = $3 WHERE id = $1 AND status = 'done'",
                )
                .bind(run).bind(&b.approved_by).bind(b.now).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn list_changes(
                &self,
                monitor: Option<&MonitorName>,
                before: Option<Timestamp>,
                limit: i64,
            ) -> Result<Vec<Run>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM runs WHERE verdict = 'changed'
                       AND ($1 IS NULL OR monitor = $1) AND ($2 IS NULL OR created_at < $2)
                     ORDER BY created_at DESC, id DESC LIMIT $3",
                )
                .bind(monitor).bind(before).bind(limit).fetch_all(&self.pool).await?)
            }

            async fn latest_runs(&self) -> Result<Vec<Run>> {
                Ok(sqlx::query_as(
                    "SELECT r.* FROM runs r
                     JOIN (SELECT monitor, viewport, MAX(created_at) AS newest FROM runs GROUP BY monitor, viewport) l
                       ON r.monitor = l.monitor AND r.viewport = l.viewport AND r.created_at = l.newest
                     ORDER BY r.monitor, r.viewport, r.id DESC",
                )
                .fetch_all(&self.pool).await?)
            }

            async fn changes_by_monitor(&self) -> Result<Vec<(MonitorName, i64)>> {
                Ok(sqlx::query_as("SELECT monitor, COUNT(*) FROM runs WHERE verdict = 'changed' GROUP BY monitor")
                    .fetch_all(&self.pool).await?)
            }

            async fn latest_captured_run(&self, monitor: &MonitorName, viewport: &str) -> Result<Option<Run>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM runs WHERE monitor = $1 AND viewport = $2 AND status = 'done'
                       AND current_sha256 IS NOT NULL
                     ORDER BY created_at DESC, id DESC LIMIT 1",
                )
                .bind(monitor).bind(viewport).fetch_optional(&self.pool).await?)
            }

            async fn revert_baseline(&self, monitor: &MonitorName, viewport: &str, by: &str, now: Timestamp) -> Result<Option<Baseline>> {
                let mut tx = self.pool.begin_with($begin).await?;
                let current: Option<Baseline> = sqlx::query_as(
                    "UPDATE baselines SET active = FALSE, reverted_at = $3
                     WHERE monitor = $1 AND viewport = $2 AND active RETURNING *",
                )
                .bind(monitor).bind(viewport).bind(now).fetch_optional(&mut *tx).await?;
                let Some(current) = current else { return Ok(None) };
                let previous: Option<Baseline> = sqlx::query_as(
                    "SELECT * FROM baselines WHERE monitor = $1 AND viewport = $2 AND reverted_at IS NULL
                       AND id <> $3 AND created_at <= $4
                     ORDER BY created_at DESC, id DESC LIMIT 1",
                )
                .bind(monitor).bind(viewport).bind(&current.id).bind(current.created_at)
                .fetch_optional(&mut *tx).await?;
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
                let row = insert_baseline(&mut tx, &restored).await?;
                tx.commit().await?;
                Ok(Some(row))
            }

            async fn recent_baselines(&self, limit: i64) -> Result<Vec<Baseline>> {
                Ok(sqlx::query_as("SELECT * FROM baselines WHERE active ORDER BY created_at DESC, id DESC LIMIT $1")
                    .bind(limit).fetch_all(&self.pool).await?)
            }

            async fn baseline_history(&self, monitor: &MonitorName, viewport: &str) -> Result<Vec<Baseline>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM baselines WHERE monitor = $1 AND viewport = $2 ORDER BY created_at DESC, id DESC",
                )
                .bind(monitor).bind(viewport).fetch_all(&self.pool).await?)
            }

            async fn queue_depths(&self) -> Result<Vec<(&'static str, i64)>> {
                let row: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
                    "SELECT
                         (SELECT COUNT(*) FROM runs WHERE status = 'pending'),
                         (SELECT COUNT(*) FROM received_webhooks WHERE processed_at IS NULL),
                         (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'),
                         (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'dead'),
                         (SELECT COUNT(*) FROM alerts WHERE status = 'pending'),
                         (SELECT COUNT(*) FROM alerts WHERE status = 'dead')",
                )
                .fetch_one(&self.pool).await?;
                Ok(vec![
                    ("runs_pending", row.0),
                    ("webhooks_unprocessed", row.1),
                    ("deliveries_pending", row.2),
                    ("deliveries_dead", row.3),
                    ("alerts_pending", row.4),
                    ("alerts_dead", row.5),
                ])
            }

            async fn expired_blobs(&self, cutoff: Timestamp, limit: i64) -> Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT sha FROM (
                         SELECT current_sha256 AS sha FROM runs WHERE created_at < $1 AND current_sha256 IS NOT NULL
                         UNION SELECT diff_sha256 FROM runs WHERE created_at < $1 AND diff_sha256 IS NOT NULL
                         UNION SELECT sha256 FROM assets WHERE created_at < $1
                     ) old
                     WHERE sha NOT IN (SELECT sha256 FROM baselines)
                       AND sha NOT IN (SELECT current_sha256 FROM runs WHERE created_at >= $1 AND current_sha256 IS NOT NULL)
                       AND sha NOT IN (SELECT diff_sha256 FROM runs WHERE created_at >= $1 AND diff_sha256 IS NOT NULL)
                       AND sha NOT IN (SELECT baseline_sha256 FROM runs WHERE baseline_sha256 IS NOT NULL)
                       AND sha NOT IN (SELECT sha256 FROM assets WHERE created_at >= $1)
                     LIMIT $2",
                )
                .bind(cutoff).bind(limit).fetch_all(&self.pool).await?)
            }

            async fn blob_referenced(&self, sha: &str) -> Result<bool> {
                Ok(sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM baselines WHERE sha256 = $1)
                         OR EXISTS (SELECT 1 FROM runs WHERE current_sha256 = $1 OR diff_sha256 = $1 OR baseline_sha256 = $1)
                         OR EXISTS (SELECT 1 FROM assets WHERE sha256 = $1)",
                )
                .bind(sha).fetch_one(&self.pool).await?)
            }

            async fn forget_blob(&self, sha: &str, cutoff: Timestamp) -> Result<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                // Approved or captured again since it was listed: it stays.
                let in_use: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM baselines WHERE sha256 = $1)
                         OR EXISTS (SELECT 1 FROM runs WHERE baseline_sha256 = $1)
                         OR EXISTS (SELECT 1 FROM runs WHERE created_at >= $2 AND (current_sha256 = $1 OR diff_sha256 = $1))
                         OR EXISTS (SELECT 1 FROM assets WHERE created_at >= $2 AND sha256 = $1)",
                )
                .bind(sha).bind(cutoff).fetch_one(&mut *tx).await?;
                if in_use {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query("UPDATE runs SET current_sha256 = NULL WHERE current_sha256 = $1 AND created_at < $2")
                    .bind(sha).bind(cutoff).execute(&mut *tx).await?;
                sqlx::query("UPDATE runs SET diff_sha256 = NULL WHERE diff_sha256 = $1 AND created_at < $2")
                    .bind(sha).bind(cutoff).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM assets WHERE sha256 = $1 AND created_at < $2")
                    .bind(sha).bind(cutoff).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn enqueue_alert(&self, a: &NewAlert) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO alerts (id, run_id, monitor, kind, payload, status, attempts, next_attempt_at,
                         created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)
                     ON CONFLICT (run_id, kind) DO NOTHING",
                )
                .bind(&a.id).bind(&a.run_id).bind(&a.monitor).bind(a.kind).bind(&a.payload).bind(a.now)
                .execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn claim_alert(&self, now: Timestamp, lease: Duration) -> Result<Option<Alert>> {
                let sql = $crate::store::sql::claim_outbox_sql("alerts", $lock);
                Ok(sqlx::query_as(&sql).bind(now).bind(now.plus(lease)).fetch_optional(&self.pool).await?)
            }

            async fn record_alert_attempt(&self, id: &AlertId, attempt: &Attempt, now: Timestamp) -> Result<()> {
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
                .execute(&self.pool).await?;
                Ok(())
            }

            async fn get_alert(&self, id: &AlertId) -> Result<Option<Alert>> {
                Ok(sqlx::query_as("SELECT * FROM alerts WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn mark_alert_posted(&self, id: &AlertId, channel: &str, ts: &str, now: Timestamp) -> Result<()> {
                sqlx::query("UPDATE alerts SET slack_channel = $2, slack_ts = $3, updated_at = $4 WHERE id = $1")
                    .bind(id).bind(channel).bind(ts).bind(now).execute(&self.pool).await?;
                Ok(())
            }

            async fn mark_alert_posting(&self, id: &AlertId, channel: &str, now: Timestamp) -> Result<()> {
                sqlx::query("UPDATE alerts SET slack_channel = $2, updated_at = $3 WHERE id = $1 AND slack_ts IS NULL")
                    .bind(id).bind(channel).bind(now).execute(&self.pool).await?;
                Ok(())
            }

            async fn alerts_for_run(&self, run: &RunId) -> Result<Vec<Alert>> {
                Ok(sqlx::query_as("SELECT * FROM alerts WHERE run_id = $1 ORDER BY created_at, id")
                    .bind(run).fetch_all(&self.pool).await?)
            }
        }

        async fn insert_delivery(
            tx: &mut sqlx::Transaction<'_, <$ty as $crate::store::sql::HasDb>::Db>,
            d: &NewDelivery,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, job_id, url, payload, status, attempts, next_attempt_at,
                     created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)",
            )
            .bind(&d.id).bind(&d.job_id).bind(&d.url).bind(&d.payload).bind(d.now)
            .execute(&mut **tx).await?;
            Ok(())
        }

        async fn insert_baseline(
            tx: &mut sqlx::Transaction<'_, <$ty as $crate::store::sql::HasDb>::Db>,
            b: &NewBaseline,
        ) -> Result<Baseline> {
            Ok(sqlx::query_as(
                "INSERT INTO baselines (id, monitor, viewport, sha256, run_id, source, approved_by, active, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE, $8)
                 RETURNING *",
            )
            .bind(BaselineId::new()).bind(&b.monitor).bind(&b.viewport).bind(&b.sha256).bind(&b.run_id)
            .bind(b.source).bind(&b.approved_by).bind(b.now)
            .fetch_one(&mut **tx).await?)
        }
    };
}

pub(crate) use impl_store;

use super::{Attempt, OutboxStatus};
use crate::time::Timestamp;

/// Names the sqlx database type of a backend, for helper signatures inside the macro.
pub(crate) trait HasDb {
    type Db: sqlx::Database;
}

/// Leases the next due row of an outbox table (`$1` = now, `$2` = lease end).
pub(crate) fn claim_outbox_sql(table: &str, lock: &str) -> String {
    format!(
        "UPDATE {table} SET lease_expires_at = $2, updated_at = $1
         WHERE id = (
             SELECT id FROM {table}
             WHERE status = 'pending' AND next_attempt_at <= $1
               AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
             ORDER BY next_attempt_at, id LIMIT 1 {lock}
         )
         RETURNING *"
    )
}

/// Column values for an outbox row after an attempt:
/// (status, next_attempt_at, last_status, last_error, sent/delivered at).
pub(crate) fn outbox_update(
    attempt: &Attempt,
    now: Timestamp,
) -> (OutboxStatus, Timestamp, Option<i32>, Option<String>, Option<Timestamp>) {
    match attempt {
        Attempt::Sent { status, .. } => (OutboxStatus::Sent, now, *status, None, Some(now)),
        Attempt::Retry { at, status, error } => {
            (OutboxStatus::Pending, *at, *status, Some(error.clone()), None)
        }
        Attempt::Dead { status, error } => (OutboxStatus::Dead, now, *status, Some(error.clone()), None),
    }
}
