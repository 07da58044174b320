//! The `alerts` outbox: one row per (run, kind), claimed with a lease, retried, dead-lettered;
//! the Slack message's channel and `ts` are recorded as soon as they are known.

use async_trait::async_trait;

use super::outbox::{claim_outbox_sql, outbox_update};
use super::pool::{Dialect, on_pool};
use super::*;

/// Builds a change group's message and events from its leader and members:
/// (the leader's new payload, the events).
pub type GroupBuilder<'a> = dyn Fn(&Alert, &[Alert]) -> (String, Vec<NewDelivery>) + Send + Sync + 'a;

/// What [`AlertStore::form_alert_group`] did.
#[derive(Debug)]
pub enum GroupForming {
    /// An older alert of the same change is queued: it will gather this one.
    Wait,
    /// This alert went out in another's group (or is gone): nothing more to send.
    Absorbed,
    /// The group is formed: the leader as it is now.
    Formed(Box<Alert>),
}

/// The longest a judged run goes without its alert but for a crash (then it is queued again
/// when its result is processed again, minutes later, and may go out alone).
const VERDICT_TO_ALERT: Duration = Duration::from_secs(2);

/// Mixed into a fingerprint's advisory lock, apart from other locks.
const GROUP_LOCK: i64 = 0x7669_6769_6c3a_6770;

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

    /// Puts a claimed alert back until `at` without counting an attempt: a change alert waiting
    /// for the other runs of its tick to be judged.
    async fn defer_alert(&self, id: &AlertId, at: Timestamp, now: Timestamp) -> Result<()>;

    /// How many runs created between `since` and `until` may still queue a change alert:
    /// pending, or judged `changed` in the last seconds with no alert queued yet (the verdict
    /// and its alert are two writes, milliseconds apart; a change whose monitor was muted then
    /// never gets one); runs of monitors muted at `now` left out.
    async fn runs_awaiting_alert_since(
        &self,
        since: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<i64>;

    /// Forms the group of the change alert `leader` (one with a fingerprint), in one
    /// transaction that no other process runs for the same fingerprint at the same time: every
    /// other queued alert with its fingerprint that has not begun posting, of another monitor
    /// or viewport (the same page's next change is another alert), is marked sent,
    /// `grouped_into` the leader (whoever holds it: its own attempt then finds it
    /// [`GroupForming::Absorbed`]); `build(leader, members)` gives the leader's new payload and
    /// the group's events, which are written with it; the leader's fingerprint is cleared.
    /// With `defer_to_older`, nothing is done while an older alert of the fingerprint is queued:
    /// that one gathers this.
    async fn form_alert_group(
        &self,
        leader: &Alert,
        now: Timestamp,
        defer_to_older: bool,
        build: &GroupBuilder<'_>,
    ) -> Result<GroupForming>;

    /// The group an alert belongs to: its leader first, then the alerts grouped into it, oldest
    /// first; just the alert when it has no group; empty when there is no such alert.
    async fn alert_group(&self, id: &AlertId) -> Result<Vec<Alert>>;
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
                 WHERE id = $1 AND grouped_into IS NULL",
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

    async fn defer_alert(&self, id: &AlertId, at: Timestamp, now: Timestamp) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE alerts SET next_attempt_at = $2, lease_expires_at = NULL, updated_at = $3
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(at)
            .bind(now)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    async fn runs_awaiting_alert_since(
        &self,
        since: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<i64> {
        on_pool!(self, |p| {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM runs r WHERE r.created_at >= $1 AND r.created_at <= $2
                   AND (r.status = 'pending'
                        OR (r.verdict = 'changed' AND r.completed_at >= $4
                            AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.run_id = r.id)))
                   AND NOT EXISTS (SELECT 1 FROM mutes m WHERE m.monitor = r.monitor AND m.until > $3)",
            )
            .bind(since)
            .bind(until)
            .bind(now)
            .bind(now.minus(VERDICT_TO_ALERT))
            .fetch_one(p)
            .await?)
        })
    }

    async fn form_alert_group(
        &self,
        leader: &Alert,
        now: Timestamp,
        defer_to_older: bool,
        build: &GroupBuilder<'_>,
    ) -> Result<GroupForming> {
        let Some(fingerprint) = &leader.fingerprint else {
            return Ok(GroupForming::Formed(Box::new(leader.clone())));
        };
        let lock = i64::from_str_radix(&format!("{:0<15}", &fingerprint[..fingerprint.len().min(15)]), 16)
            .unwrap_or(GROUP_LOCK);
        on_pool!(self, |p| {
            let mut tx = p.exclusive_tx(lock ^ GROUP_LOCK).await?;
            let current: Option<Alert> = sqlx::query_as("SELECT * FROM alerts WHERE id = $1")
                .bind(&leader.id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(current) = current else {
                tx.rollback().await?;
                return Ok(GroupForming::Absorbed);
            };
            if current.grouped_into.is_some() || current.status != OutboxStatus::Pending {
                tx.rollback().await?;
                return Ok(GroupForming::Absorbed);
            }
            if current.fingerprint.is_none() {
                // Formed by an attempt whose answer this one did not see.
                tx.rollback().await?;
                return Ok(GroupForming::Formed(Box::new(current)));
            }
            let older: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM alerts
                 WHERE fingerprint = $1 AND status = 'pending' AND grouped_into IS NULL AND slack_channel IS NULL
                   AND (created_at < $2 OR (created_at = $2 AND id < $3))
                   AND NOT EXISTS (SELECT 1 FROM runs r, runs l WHERE r.id = alerts.run_id AND l.id = $4
                                   AND r.monitor = l.monitor AND r.viewport = l.viewport)",
            )
            .bind(fingerprint)
            .bind(current.created_at)
            .bind(&current.id)
            .bind(&current.run_id)
            .fetch_one(&mut *tx)
            .await?;
            if defer_to_older && older > 0 {
                tx.rollback().await?;
                return Ok(GroupForming::Wait);
            }
            sqlx::query(
                "UPDATE alerts SET status = 'sent', grouped_into = $1, sent_at = $3, updated_at = $3,
                     next_attempt_at = $3, lease_expires_at = NULL
                 WHERE fingerprint = $2 AND id <> $1 AND status = 'pending' AND grouped_into IS NULL
                   AND slack_channel IS NULL
                   AND NOT EXISTS (SELECT 1 FROM runs r, runs l WHERE r.id = alerts.run_id AND l.id = $4
                                   AND r.monitor = l.monitor AND r.viewport = l.viewport)",
            )
            .bind(&current.id)
            .bind(fingerprint)
            .bind(now)
            .bind(&current.run_id)
            .execute(&mut *tx)
            .await?;
            let members: Vec<Alert> =
                sqlx::query_as("SELECT * FROM alerts WHERE grouped_into = $1 ORDER BY created_at, id")
                    .bind(&current.id)
                    .fetch_all(&mut *tx)
                    .await?;
            let (payload, events) = build(&current, &members);
            sqlx::query("UPDATE alerts SET payload = $2, fingerprint = NULL, updated_at = $3 WHERE id = $1")
                .bind(&current.id)
                .bind(&payload)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            for event in &events {
                super::deliveries::insert_delivery(&mut tx, event).await?;
            }
            tx.commit().await?;
            Ok(GroupForming::Formed(Box::new(Alert {
                payload,
                fingerprint: None,
                updated_at: now,
                ..current
            })))
        })
    }

    async fn alert_group(&self, id: &AlertId) -> Result<Vec<Alert>> {
        on_pool!(self, |p| {
            let Some(alert): Option<Alert> =
                sqlx::query_as("SELECT * FROM alerts WHERE id = $1").bind(id).fetch_optional(p).await?
            else {
                return Ok(Vec::new());
            };
            let leader = alert.grouped_into.clone().unwrap_or_else(|| alert.id.clone());
            Ok(sqlx::query_as(
                "SELECT * FROM alerts WHERE id = $1 OR grouped_into = $1
                 ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END, created_at, id",
            )
            .bind(&leader)
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
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Timestamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    let inserted: Option<String> = sqlx::query_scalar(
        "INSERT INTO alerts (id, run_id, monitor, kind, payload, status, attempts, next_attempt_at,
             created_at, updated_at, fingerprint)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6, $7)
         ON CONFLICT (run_id, kind) DO NOTHING
         RETURNING id",
    )
    .bind(&a.id)
    .bind(&a.run_id)
    .bind(&a.monitor)
    .bind(a.kind)
    .bind(&a.payload)
    .bind(a.now)
    .bind(&a.fingerprint)
    .fetch_optional(&mut **tx)
    .await?;
    // The events go in whether or not the alert was there: their ids are derived from the run,
    // so a second queuing (after a crash between the verdict and its alert) adds none twice.
    for event in &a.events {
        super::deliveries::insert_delivery(tx, event).await?;
    }
    Ok(inserted.is_some())
}
