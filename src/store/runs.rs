//! The `runs` table: one row per (monitor, viewport, tick), from `pending` to its verdict, and
//! the reads the API, the UI and the alerts need.

use async_trait::async_trait;

use super::pool::on_pool;
use super::*;

#[async_trait]
pub trait RunStore: Send + Sync {
    /// `None` when a run for the same (monitor, viewport, scheduled_for) exists already.
    async fn insert_run(&self, run: &NewRun) -> Result<Option<Run>>;

    /// A tick recorded as `skipped` (done, never captured; `error` says why), in one statement:
    /// no pending run is left behind when the database then fails. `None` when the tick has its
    /// run already, as [`RunStore::insert_run`].
    async fn insert_skipped_run(&self, run: &NewRun, error: &str) -> Result<Option<Run>>;

    async fn get_run(&self, id: &RunId) -> Result<Option<Run>>;

    async fn run_for_job(&self, job: &JobId) -> Result<Option<Run>>;

    async fn set_run_job(&self, id: &RunId, job: &JobId, now: Timestamp) -> Result<bool>;

    /// Starts a re-capture of a pending run (`retries_on_diff`): new job, attempt + 1.
    async fn recapture_run(&self, id: &RunId, job: &JobId, now: Timestamp) -> Result<bool>;

    /// Records the verdict of a pending run; `false` if it was not pending (already processed).
    async fn complete_run(&self, id: &RunId, outcome: &RunOutcome, now: Timestamp) -> Result<bool>;

    /// A person's decision on a change (`approved` / `rejected`): only a run that is `changed`,
    /// `rejected`, `unstable` or `ignored` now; `false` otherwise (say, approved meanwhile by someone else).
    async fn review_run(&self, id: &RunId, verdict: Verdict, by: &str, now: Timestamp) -> Result<bool>;

    async fn pending_run_exists(&self, monitor: &MonitorName, viewport: &str) -> Result<bool>;

    /// The verdict of the latest finished run of (monitor, viewport) created before `before`
    /// (failure streaks: alert when one starts and when it ends).
    async fn previous_verdict(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        before: Timestamp,
    ) -> Result<Option<Verdict>> {
        Ok(self.previous_verdicts(monitor, viewport, before, 1).await?.into_iter().next())
    }

    /// The verdicts of the runs of (monitor, viewport) before `before`, newest first, at most
    /// `limit`, skipped runs left out.
    async fn previous_verdicts(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        before: Timestamp,
        limit: i64,
    ) -> Result<Vec<Verdict>>;

    /// Pending runs not touched since `before`, oldest first (for the reconciler).
    async fn stale_pending_runs(&self, before: Timestamp, limit: i64) -> Result<Vec<Run>>;

    /// A monitor's runs, newest first, optionally only those created before `before`.
    async fn list_runs(
        &self,
        monitor: &MonitorName,
        before: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<Run>>;

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
}

#[async_trait]
impl RunStore for SqlStore {
    async fn insert_run(&self, run: &NewRun) -> Result<Option<Run>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "INSERT INTO runs (id, monitor, viewport, scheduled_for, trigger, status, attempt, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)
                 ON CONFLICT (monitor, viewport, scheduled_for) DO NOTHING
                 RETURNING *",
            )
            .bind(&run.id).bind(&run.monitor).bind(&run.viewport).bind(run.scheduled_for).bind(run.trigger).bind(run.now)
            .fetch_optional(p).await?)
        })
    }

    async fn insert_skipped_run(&self, run: &NewRun, error: &str) -> Result<Option<Run>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "INSERT INTO runs (id, monitor, viewport, scheduled_for, trigger, status, verdict, attempt, error,
                                   created_at, updated_at, completed_at)
                 VALUES ($1, $2, $3, $4, $5, 'done', 'skipped', 0, $7, $6, $6, $6)
                 ON CONFLICT (monitor, viewport, scheduled_for) DO NOTHING
                 RETURNING *",
            )
            .bind(&run.id).bind(&run.monitor).bind(&run.viewport).bind(run.scheduled_for).bind(run.trigger).bind(run.now)
            .bind(error)
            .fetch_optional(p).await?)
        })
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<Run>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM runs WHERE id = $1").bind(id).fetch_optional(p).await?)
        })
    }

    async fn run_for_job(&self, job: &JobId) -> Result<Option<Run>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM runs WHERE job_id = $1").bind(job).fetch_optional(p).await?)
        })
    }

    async fn set_run_job(&self, id: &RunId, job: &JobId, now: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "UPDATE runs SET job_id = $2, updated_at = $3 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(job)
            .bind(now)
            .execute(p)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn recapture_run(&self, id: &RunId, job: &JobId, now: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "UPDATE runs SET job_id = $2, attempt = attempt + 1, updated_at = $3 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id).bind(job).bind(now).execute(p).await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn complete_run(&self, id: &RunId, o: &RunOutcome, now: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "UPDATE runs SET status = 'done', verdict = $2, current_sha256 = $3, baseline_sha256 = $4,
                     diff_sha256 = $5, diff_pixels = $6, total_pixels = $7, diff_ratio = $8, size_changed = $9,
                     regions = $10, error = $11, updated_at = $12, completed_at = $12, text_changes = $13,
                     stable = $14, clipped = $15, pages = $16
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id).bind(o.verdict).bind(&o.current_sha256).bind(&o.baseline_sha256).bind(&o.diff_sha256)
            .bind(o.diff_pixels).bind(o.total_pixels).bind(o.diff_ratio).bind(o.size_changed)
            .bind(&o.regions).bind(&o.error).bind(now).bind(&o.text_changes).bind(o.stable).bind(o.clipped)
            .bind(&o.pages).execute(p).await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn review_run(&self, id: &RunId, verdict: Verdict, by: &str, now: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "UPDATE runs SET verdict = $2, reviewed_by = $3, updated_at = $4
                 WHERE id = $1 AND status = 'done' AND verdict IN ('changed', 'rejected', 'unstable', 'ignored')",
            )
            .bind(id)
            .bind(verdict)
            .bind(by)
            .bind(now)
            .execute(p)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    async fn pending_run_exists(&self, monitor: &MonitorName, viewport: &str) -> Result<bool> {
        on_pool!(self, |p| {
            let row: Option<(i32,)> = sqlx::query_as(
                "SELECT 1 FROM runs WHERE monitor = $1 AND viewport = $2 AND status = 'pending' LIMIT 1",
            )
            .bind(monitor)
            .bind(viewport)
            .fetch_optional(p)
            .await?;
            Ok(row.is_some())
        })
    }

    async fn previous_verdicts(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        before: Timestamp,
        limit: i64,
    ) -> Result<Vec<Verdict>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_scalar(
                "SELECT verdict FROM runs
                 WHERE monitor = $1 AND viewport = $2 AND created_at < $3 AND verdict IS NOT NULL
                   AND verdict <> 'skipped'
                 ORDER BY created_at DESC, id DESC LIMIT $4",
            )
            .bind(monitor)
            .bind(viewport)
            .bind(before)
            .bind(limit)
            .fetch_all(p)
            .await?)
        })
    }

    async fn stale_pending_runs(&self, before: Timestamp, limit: i64) -> Result<Vec<Run>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM runs WHERE status = 'pending' AND updated_at < $1 ORDER BY updated_at, id LIMIT $2",
            )
            .bind(before).bind(limit).fetch_all(p).await?)
        })
    }

    async fn list_runs(
        &self,
        monitor: &MonitorName,
        before: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<Run>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM runs WHERE monitor = $1 AND ($2 IS NULL OR created_at < $2)
                 ORDER BY created_at DESC, id DESC LIMIT $3",
            )
            .bind(monitor)
            .bind(before)
            .bind(limit)
            .fetch_all(p)
            .await?)
        })
    }

    async fn list_changes(
        &self,
        monitor: Option<&MonitorName>,
        before: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<Run>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM runs WHERE verdict = 'changed'
                   AND ($1 IS NULL OR monitor = $1) AND ($2 IS NULL OR created_at < $2)
                 ORDER BY created_at DESC, id DESC LIMIT $3",
            )
            .bind(monitor)
            .bind(before)
            .bind(limit)
            .fetch_all(p)
            .await?)
        })
    }

    async fn latest_runs(&self) -> Result<Vec<Run>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT r.* FROM runs r
                 JOIN (SELECT monitor, viewport, MAX(created_at) AS newest FROM runs GROUP BY monitor, viewport) l
                   ON r.monitor = l.monitor AND r.viewport = l.viewport AND r.created_at = l.newest
                 ORDER BY r.monitor, r.viewport, r.id DESC",
            )
            .fetch_all(p).await?)
        })
    }

    async fn changes_by_monitor(&self) -> Result<Vec<(MonitorName, i64)>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT monitor, COUNT(*) FROM runs WHERE verdict = 'changed' GROUP BY monitor",
            )
            .fetch_all(p)
            .await?)
        })
    }

    async fn latest_captured_run(&self, monitor: &MonitorName, viewport: &str) -> Result<Option<Run>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM runs WHERE monitor = $1 AND viewport = $2 AND status = 'done'
                   AND current_sha256 IS NOT NULL AND (verdict IS NULL OR verdict <> 'failed')
                 ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(monitor)
            .bind(viewport)
            .fetch_optional(p)
            .await?)
        })
    }
}
