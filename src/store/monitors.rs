//! The `monitors` table: the monitors of the config, kept in step with it (their history stays
//! when one is removed).

use async_trait::async_trait;

use super::pool::{Dialect, on_pool};
use super::*;

/// The advisory lock key of [`MonitorStore::sync_monitors`] on PostgreSQL ("vigil:monitors").
const SYNC_MONITORS_LOCK: i64 = 0x7669_6769_6c3a_6d6f;

#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// Makes the table match the config: inserts new monitors, updates changed ones, marks the
    /// missing ones removed (their history stays).
    async fn sync_monitors(&self, monitors: &[MonitorUpsert], now: Timestamp) -> Result<SyncSummary>;

    /// The definition of `name` as the database has it (the `config` column that
    /// [`MonitorUpsert`] writes): what the replicas compare theirs with.
    async fn monitor_config(&self, name: &MonitorName) -> Result<Option<String>>;

    /// Mutes a monitor's alerts until `mute.until` (replacing an earlier mute).
    async fn mute(&self, mute: &Mute) -> Result<()>;

    /// Ends a mute; whether there was one.
    async fn unmute(&self, monitor: &MonitorName) -> Result<bool>;

    /// The monitor's mute in force at `now`, if any.
    async fn mute_of(&self, monitor: &MonitorName, now: Timestamp) -> Result<Option<Mute>>;

    /// Every mute in force at `now` (for lists of monitors).
    async fn active_mutes(&self, now: Timestamp) -> Result<Vec<Mute>>;
}

#[async_trait]
impl MonitorStore for SqlStore {
    async fn sync_monitors(&self, monitors: &[MonitorUpsert], now: Timestamp) -> Result<SyncSummary> {
        on_pool!(self, |p| {
            // Replicas starting together on a fresh database would each read "no monitors" and
            // insert the same rows (issue 14): one sync at a time.
            let mut tx = p.exclusive_tx(SYNC_MONITORS_LOCK).await?;
            let mut summary = SyncSummary::default();
            let names: Vec<&str> = monitors.iter().map(|m| m.name.as_str()).collect();
            let existing: Vec<MonitorRecord> =
                sqlx::query_as("SELECT * FROM monitors").fetch_all(&mut *tx).await?;
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
                    Some(e)
                        if e.url != m.url
                            || e.config != m.config
                            || e.enabled != m.enabled
                            || e.removed_at.is_some() =>
                    {
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
                    .bind(&e.name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                summary.removed += 1;
            }
            tx.commit().await?;
            Ok(summary)
        })
    }

    async fn mute(&self, m: &Mute) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO mutes (monitor, until, muted_by, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (monitor) DO UPDATE SET until = $2, muted_by = $3, created_at = $4",
            )
            .bind(m.monitor.as_str())
            .bind(m.until)
            .bind(&m.muted_by)
            .bind(m.created_at)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    async fn unmute(&self, monitor: &MonitorName) -> Result<bool> {
        on_pool!(self, |p| {
            let r =
                sqlx::query("DELETE FROM mutes WHERE monitor = $1").bind(monitor.as_str()).execute(p).await?;
            Ok(r.rows_affected() > 0)
        })
    }

    async fn active_mutes(&self, now: Timestamp) -> Result<Vec<Mute>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM mutes WHERE until > $1 ORDER BY monitor")
                .bind(now)
                .fetch_all(p)
                .await?)
        })
    }

    async fn mute_of(&self, monitor: &MonitorName, now: Timestamp) -> Result<Option<Mute>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as("SELECT * FROM mutes WHERE monitor = $1 AND until > $2")
                .bind(monitor.as_str())
                .bind(now)
                .fetch_optional(p)
                .await?)
        })
    }

    async fn monitor_config(&self, name: &MonitorName) -> Result<Option<String>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_scalar("SELECT config FROM monitors WHERE name = $1 AND removed_at IS NULL")
                .bind(name.as_str())
                .fetch_optional(p)
                .await?)
        })
    }
}
