//! The `masks` table: rectangles reviewers drew, per monitor and viewport.

use async_trait::async_trait;

use super::pool::on_pool;
use super::*;
use crate::ids::MaskId;

#[async_trait]
pub trait MaskStore: Send + Sync {
    async fn add_mask(&self, mask: &DrawnMask) -> Result<()>;

    /// A monitor's drawn masks (of one viewport, if given), oldest first.
    async fn masks_of(&self, monitor: &MonitorName, viewport: Option<&str>) -> Result<Vec<DrawnMask>>;

    /// `false` when the monitor has no such mask.
    async fn remove_mask(&self, monitor: &MonitorName, id: &MaskId) -> Result<bool>;
}

#[async_trait]
impl MaskStore for SqlStore {
    async fn add_mask(&self, m: &DrawnMask) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO masks (id, monitor, viewport, x, y, width, height, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&m.id)
            .bind(&m.monitor)
            .bind(&m.viewport)
            .bind(m.x)
            .bind(m.y)
            .bind(m.width)
            .bind(m.height)
            .bind(&m.created_by)
            .bind(m.created_at)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    async fn masks_of(&self, monitor: &MonitorName, viewport: Option<&str>) -> Result<Vec<DrawnMask>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM masks WHERE monitor = $1 AND ($2 IS NULL OR viewport = $2)
                 ORDER BY created_at, id LIMIT 500",
            )
            .bind(monitor)
            .bind(viewport)
            .fetch_all(p)
            .await?)
        })
    }

    async fn remove_mask(&self, monitor: &MonitorName, id: &MaskId) -> Result<bool> {
        on_pool!(self, |p| {
            let removed = sqlx::query("DELETE FROM masks WHERE id = $1 AND monitor = $2")
                .bind(id)
                .bind(monitor)
                .execute(p)
                .await?;
            Ok(removed.rows_affected() > 0)
        })
    }
}
