//! The `masks` table: rectangles reviewers drew, per monitor and viewport.

use async_trait::async_trait;

use super::pool::{Dialect, on_pool};
use super::*;
use crate::ids::MaskId;

/// The most masks one monitor and viewport may have.
pub const MAX_MASKS: i64 = 100;

/// What [`MaskStore::add_mask`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskAdded {
    Added,
    /// The same rectangle is drawn there already.
    Duplicate,
    /// The viewport has [`MAX_MASKS`] already: nothing added.
    Full,
}

#[async_trait]
pub trait MaskStore: Send + Sync {
    async fn add_mask(&self, mask: &DrawnMask) -> Result<MaskAdded>;

    /// A monitor's drawn masks (of one viewport, if given), by viewport, oldest first: at most
    /// [`MAX_MASKS`] a viewport.
    async fn masks_of(&self, monitor: &MonitorName, viewport: Option<&str>) -> Result<Vec<DrawnMask>>;

    /// `false` when the monitor has no such mask.
    async fn remove_mask(&self, monitor: &MonitorName, id: &MaskId) -> Result<bool>;
}

#[async_trait]
impl MaskStore for SqlStore {
    async fn add_mask(&self, m: &DrawnMask) -> Result<MaskAdded> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM masks WHERE monitor = $1 AND viewport = $2")
                    .bind(&m.monitor)
                    .bind(&m.viewport)
                    .fetch_one(&mut *tx)
                    .await?;
            if count >= MAX_MASKS {
                tx.rollback().await?;
                return Ok(MaskAdded::Full);
            }
            let added = sqlx::query(
                "INSERT INTO masks (id, monitor, viewport, x, y, width, height, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (monitor, viewport, x, y, width, height) DO NOTHING",
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
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(if added.rows_affected() == 0 { MaskAdded::Duplicate } else { MaskAdded::Added })
        })
    }

    async fn masks_of(&self, monitor: &MonitorName, viewport: Option<&str>) -> Result<Vec<DrawnMask>> {
        on_pool!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT * FROM masks WHERE monitor = $1 AND ($2 IS NULL OR viewport = $2)
                 ORDER BY viewport, created_at, id",
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
