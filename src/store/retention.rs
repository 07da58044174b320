//! What retention may delete: blobs that only old runs and assets refer to, and never one a
//! baseline version or anything newer uses.

use async_trait::async_trait;

use super::pool::{Dialect, on_pool};
use super::*;

#[async_trait]
pub trait RetentionStore: Send + Sync {
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
}

#[async_trait]
impl RetentionStore for SqlStore {
    async fn expired_blobs(&self, cutoff: Timestamp, limit: i64) -> Result<Vec<String>> {
        on_pool!(self, |p| {
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
            .bind(cutoff).bind(limit).fetch_all(p).await?)
        })
    }

    async fn forget_blob(&self, sha: &str, cutoff: Timestamp) -> Result<bool> {
        on_pool!(self, |p| {
            let mut tx = p.write_tx().await?;
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
            sqlx::query(
                "UPDATE runs SET current_sha256 = NULL WHERE current_sha256 = $1 AND created_at < $2",
            )
            .bind(sha)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE runs SET diff_sha256 = NULL WHERE diff_sha256 = $1 AND created_at < $2")
                .bind(sha)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM assets WHERE sha256 = $1 AND created_at < $2")
                .bind(sha)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn blob_referenced(&self, sha: &str) -> Result<bool> {
        on_pool!(self, |p| {
            Ok(sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM baselines WHERE sha256 = $1)
                     OR EXISTS (SELECT 1 FROM runs WHERE current_sha256 = $1 OR diff_sha256 = $1 OR baseline_sha256 = $1)
                     OR EXISTS (SELECT 1 FROM assets WHERE sha256 = $1)",
            )
            .bind(sha).fetch_one(p).await?)
        })
    }
}
