//! The one owner of baseline writes. A baseline is two things kept in step: the active version
//! in the database (with its history: who approved what, when, from which run) and the plain file
//! `baselines/<monitor>/<viewport>.png`. The database is the record: an approval or a revert is
//! committed first and the file then rewritten atomically from the blob store, and
//! [`Baselines::repair_files`] mends the files at start should a crash (or a full disk) come in
//! between. A first capture writes its file first (see [`Baselines::create`]).
//!
//! The processor (a first capture), the review step (approve, revert) and start-up all go
//! through here.

use std::sync::Arc;

use crate::config::MonitorName;
use crate::ids::RunId;
use crate::store::blobs::{BaselineFiles, BlobError, BlobStore, sha256_hex};
use crate::store::{Baseline, NewBaseline, NewDelivery, Store, StoreError};
use crate::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("storage")]
    Store(#[from] StoreError),
    #[error("baseline file or blob: {0}")]
    File(#[from] BlobError),
}

/// Baselines checked against their files at start: the newest versions, the only ones a crash
/// between a commit and its file write can concern. (Checking every file would read and hash
/// every baseline PNG at each start.)
pub const REPAIR_AT_START: i64 = 50;

#[derive(Clone)]
pub struct Baselines {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub files: BaselineFiles,
}

impl Baselines {
    /// A first capture becomes the baseline: `png` (stored as blob `baseline.sha256`), as a new
    /// version. The file goes first here: should it fail (a full disk), no version is recorded
    /// and the capture is judged again as the first one, rather than as unchanged against a
    /// baseline whose file is missing.
    pub async fn create(&self, baseline: &NewBaseline, png: Vec<u8>) -> Result<Baseline, BaselineError> {
        self.write_file(&baseline.monitor, &baseline.viewport, png).await?;
        Ok(self.store.set_baseline(baseline).await?)
    }

    /// Approval: the run's capture (`png`, blob `baseline.sha256`) becomes the active baseline
    /// and the run is marked approved, with `events` queued, in one transaction; then the file
    /// follows.
    pub async fn approve(
        &self,
        run: &RunId,
        baseline: &NewBaseline,
        png: Vec<u8>,
        events: &[NewDelivery],
    ) -> Result<Baseline, BaselineError> {
        let row = self.store.approve_run(run, baseline, events).await?;
        self.write_file(&baseline.monitor, &baseline.viewport, png).await?;
        Ok(row)
    }

    /// Undo: the version before the active one comes back (as a new history entry). `None`
    /// when there is nothing to go back to.
    pub async fn revert(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        by: &str,
    ) -> Result<Option<Baseline>, BaselineError> {
        let Some(baseline) = self.store.revert_baseline(monitor, viewport, by, Timestamp::now()).await?
        else {
            return Ok(None);
        };
        let png = self.blob(&baseline.sha256).await?;
        self.write_file(monitor, viewport, png).await?;
        Ok(Some(baseline))
    }

    /// A blob's bytes, read off the async threads.
    pub async fn blob(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        self.blobs.get(sha256).await
    }

    /// Rewrites the files of the `limit` newest active baselines that do not match the
    /// database, and stores again the image of one whose file matches but whose blob is gone
    /// (images moved to a bucket without the old ones, a lost object); how many were mended.
    pub async fn repair_files(&self, limit: i64) -> Result<usize, BaselineError> {
        let mut fixed = 0;
        for active in self.store.recent_baselines(limit).await? {
            let (monitor, viewport) = (active.monitor.clone(), active.viewport.clone());
            let files = self.files.clone();
            let (m, v) = (monitor.clone(), viewport.clone());
            let on_disk = tokio::task::spawn_blocking(move || files.read(&m, &v)).await.expect("no panic")?;
            if let Some(png) = on_disk.filter(|f| sha256_hex(f) == active.sha256) {
                if !self.blobs.exists(&active.sha256).await? {
                    self.blobs.put(png).await?;
                    tracing::warn!(%monitor, %viewport, blobs = %self.blobs.location(), "the active baseline's image was not in the blob store; stored again from its file");
                    fixed += 1;
                }
                continue;
            }
            match self.blob(&active.sha256).await {
                Ok(png) => {
                    self.write_file(&monitor, &viewport, png).await?;
                    tracing::warn!(%monitor, %viewport, "baseline file did not match the database; rewritten");
                    fixed += 1;
                }
                Err(e) => {
                    tracing::error!(%monitor, %viewport, blobs = %self.blobs.location(), error = %e.detail(), "cannot read the active baseline's image; its runs wait until it is back (copy the old data_dir/blobs into the store, docs/operations.md)")
                }
            }
        }
        Ok(fixed)
    }

    async fn write_file(&self, monitor: &MonitorName, viewport: &str, png: Vec<u8>) -> Result<(), BlobError> {
        let files = self.files.clone();
        let (monitor, viewport) = (monitor.clone(), viewport.to_owned());
        tokio::task::spawn_blocking(move || files.write(&monitor, &viewport, &png))
            .await
            .expect("no panic")?;
        Ok(())
    }
}
