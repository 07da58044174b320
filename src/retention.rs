//! Retention (`storage.retention`, default 30 days): captures and diff images older than that
//! are deleted, hourly. A blob goes only when nothing newer and no baseline version refers to it
//! (blobs are content-addressed: an unchanged page's capture *is* its baseline's blob). The
//! database forgets the blob first, then the file is deleted, so a crash in between leaves an
//! unreferenced file, never a reference to a missing one. Runs keep their verdict and figures;
//! their images answer 404 "pruned".
//!
//! A second pass sweeps the files themselves: a blob file older than the retention that no row
//! refers to (left by such a crash, or a capture replaced by `retries_on_diff` before it was
//! recorded) and temporary files of interrupted writes are deleted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::queue::backoff::Exponential;
use crate::queue::{self, Next, Pacing, QueueWorker, WorkError};
use crate::store::Store;
use crate::store::blobs::BlobStore;
use crate::time::Timestamp;

const EVERY: Duration = Duration::from_secs(3600);
/// A pass that failed is tried again after 1 min, 2 min … an hour.
const TROUBLE: Exponential = Exponential::new(Duration::from_secs(60), EVERY);
/// Blobs handled per query, so one pass never holds a long transaction.
const BATCH: i64 = 500;
/// How old a file no row refers to must be before the emergency prune deletes it (a capture
/// is written a moment before its row).
const ORPHAN_GRACE: Duration = Duration::from_secs(3600);
/// Old files the sweep looks at per pass (the rest wait for the next hour).
const SWEEP: usize = 10_000;

pub struct Pruner {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub retention: Duration,
}

impl Pruner {
    /// Runs until `stop`: a pass at start, then hourly.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        queue::run(self, Pacing::new(EVERY, TROUBLE), None, stop).await
    }
}

#[async_trait::async_trait]
impl QueueWorker for Pruner {
    /// The cutoff of this pass.
    type Item = Timestamp;
    const NAME: &'static str = "retention";

    /// A pass is always due when the loop asks: it asks hourly.
    async fn claim(&self) -> Result<Option<Timestamp>, WorkError> {
        Ok(Some(Timestamp::now().minus(self.retention)))
    }

    async fn work(&self, cutoff: Timestamp) -> Result<Next, WorkError> {
        let n = self.prune_once(cutoff).await?;
        if n > 0 {
            tracing::info!(blobs = n, retention = ?self.retention, "old captures and diffs pruned");
        }
        Ok(Next::Wait)
    }
}

impl Pruner {
    /// Deletes every blob that expired before `cutoff`, then the files older than that no row
    /// refers to; returns how many files went.
    pub async fn prune_once(&self, cutoff: Timestamp) -> Result<usize, String> {
        let pruned = self.prune_expired(cutoff).await?;
        Ok(pruned + self.sweep_orphans(cutoff).await?)
    }

    async fn sweep_orphans(&self, cutoff: Timestamp) -> Result<usize, String> {
        let before = std::time::UNIX_EPOCH + Duration::from_millis(cutoff.millis().max(0) as u64);
        let (digests, temps) = self.blobs.written_before(before, SWEEP).await.map_err(|e| e.detail())?;
        let mut removed = 0;
        for path in temps {
            removed += usize::from(std::fs::remove_file(&path).is_ok());
        }
        for sha in digests {
            if self.store.blob_referenced(&sha).await.map_err(|e| format!("{e:?}"))? {
                continue;
            }
            // Stored again since it was listed (put renews the time): it stays.
            let gone = self.blobs.remove_if_written_before(&sha, before).await.map_err(|e| e.detail())?;
            removed += usize::from(gone);
        }
        Ok(removed)
    }

    async fn prune_expired(&self, cutoff: Timestamp) -> Result<usize, String> {
        let before = std::time::UNIX_EPOCH + Duration::from_millis(cutoff.millis().max(0) as u64);
        let mut pruned = 0;
        loop {
            let batch = self.store.expired_blobs(cutoff, BATCH).await.map_err(|e| format!("{e:?}"))?;
            if batch.is_empty() {
                return Ok(pruned);
            }
            let mut forgotten_any = false;
            for sha in batch {
                if !self.store.forget_blob(&sha, cutoff).await.map_err(|e| format!("{e:?}"))? {
                    continue;
                }
                forgotten_any = true;
                // Unless stored again since (another replica's capture of the same bytes): a
                // new write renews its time.
                let removed =
                    self.blobs.remove_if_written_before(&sha, before).await.map_err(|e| e.detail())?;
                pruned += usize::from(removed);
            }
            if !forgotten_any {
                // Everything listed is in use again; the next pass looks anew.
                return Ok(pruned);
            }
        }
    }
}

/// While a volume is low on space: a pass now instead of at the next hour, and the sweep of
/// files no row refers to with an hour's grace instead of the whole retention (such files are
/// never needed). Only what is past retention goes among the captures: never a baseline
/// version's image, never a capture younger than the retention.
#[async_trait::async_trait]
impl crate::disk::OnTrouble for Pruner {
    async fn emergency_prune(&self) -> Option<String> {
        let expired = self.prune_expired(Timestamp::now().minus(self.retention)).await;
        let orphans = self.sweep_orphans(Timestamp::now().minus(ORPHAN_GRACE)).await;
        match (expired, orphans) {
            (Ok(0), Ok(0)) => Some(format!(
                "nothing to delete (no capture or diff older than storage.retention, {}, and no stray file)",
                humantime::format_duration(self.retention)
            )),
            (Ok(n), Ok(m)) => Some(format!(
                "{n} captures and diff images older than storage.retention and {m} stray files deleted"
            )),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "emergency prune failed");
                Some(format!("the prune failed ({e})"))
            }
        }
    }
}
