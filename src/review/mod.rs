//! The review step (DESIGN §6–§8): a person approves a run's capture as the new baseline of its
//! monitor and viewport, rejects a change, or reverts the last approval. The same rules serve
//! the API, the Slack button and the CLI.
//!
//! The database is the record: an approval is one transaction (new baseline version + the run
//! marked approved); the file `baselines/<monitor>/<viewport>.png` is then rewritten atomically
//! from the blob, and [`sync_files`] repairs the files at start should a crash come in between.

pub mod api;
pub mod slack;

use std::sync::Arc;

use crate::config::MonitorName;
use crate::store::blobs::{BaselineFiles, BlobError, BlobStore};
use crate::store::{Baseline, BaselineSource, NewBaseline, Run, RunStatus, Store, StoreError, Verdict};
use crate::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no such run")]
    NoSuchRun,
    #[error("no such viewport")]
    NoSuchViewport,
    #[error("the run is still pending; wait for its verdict")]
    Pending,
    #[error("the run has no capture to approve (verdict: {0})")]
    NothingToApprove(String),
    #[error("only a changed run can be rejected (verdict: {0})")]
    NotAChange(String),
    #[error("the run's capture has been pruned (storage.retention)")]
    Pruned,
    #[error("there is no earlier baseline to go back to")]
    NothingToRevert,
    #[error("storage")]
    Store(#[from] StoreError),
    #[error("baseline file: {0}")]
    File(#[from] BlobError),
}

impl ReviewError {
    pub fn code(&self) -> &'static str {
        match self {
            ReviewError::NoSuchRun | ReviewError::NoSuchViewport => "not_found",
            ReviewError::Pending => "run_pending",
            ReviewError::NothingToApprove(_) => "nothing_to_approve",
            ReviewError::NotAChange(_) => "not_a_change",
            ReviewError::Pruned => "capture_pruned",
            ReviewError::NothingToRevert => "nothing_to_revert",
            ReviewError::Store(e) => e.code(),
            ReviewError::File(_) => "baseline_file",
        }
    }
}

/// What an approval did.
#[derive(Debug)]
pub struct Approval {
    pub run: Run,
    pub baseline: Baseline,
    /// The capture was the baseline already (a second approval, or an unchanged run): nothing
    /// new was recorded.
    pub already: bool,
    /// A newer run of the same monitor and viewport exists; the older capture is the baseline now.
    pub older_than_latest: bool,
}

#[derive(Clone)]
pub struct Reviewer {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub baselines: BaselineFiles,
}

impl crate::http::AppState {
    /// The review rules over this daemon's database and files.
    pub fn reviewer(&self) -> Reviewer {
        Reviewer { store: self.store.clone(), blobs: self.blobs.clone(), baselines: self.baselines.clone() }
    }
}

impl Reviewer {
    /// Makes the run's capture the baseline of its monitor and viewport. Approving twice is a
    /// no-op; approving an older run than the latest is allowed (the result says so).
    pub async fn approve(
        &self,
        id: &crate::ids::RunId,
        by: &str,
        source: BaselineSource,
    ) -> Result<Approval, ReviewError> {
        let run = self.store.get_run(id).await?.ok_or(ReviewError::NoSuchRun)?;
        if run.status == RunStatus::Pending {
            return Err(ReviewError::Pending);
        }
        let Some(sha) = run.current_sha256.clone() else {
            return Err(ReviewError::NothingToApprove(run.verdict.map_or("none".into(), |v| v.to_string())));
        };
        let latest = self.store.latest_captured_run(&run.monitor, &run.viewport).await?;
        let older_than_latest = latest.is_some_and(|l| l.id != run.id);
        let current = self.store.current_baseline(&run.monitor, &run.viewport).await?;
        if let Some(current) = current.filter(|c| c.sha256 == sha) {
            // Already the baseline: record the decision on a change, add no history.
            if matches!(run.verdict, Some(Verdict::Changed | Verdict::Rejected)) {
                self.store.review_run(&run.id, Verdict::Approved, by, Timestamp::now()).await?;
            }
            let run = self.store.get_run(id).await?.ok_or(ReviewError::NoSuchRun)?;
            return Ok(Approval { run, baseline: current, already: true, older_than_latest });
        }
        let blobs = self.blobs.clone();
        let png = {
            let sha = sha.clone();
            tokio::task::spawn_blocking(move || blobs.get(&sha)).await.expect("blob reads do not panic")
        };
        let png = match png {
            Ok(p) => p,
            Err(BlobError::NotFound(_)) => return Err(ReviewError::Pruned),
            Err(e) => return Err(e.into()),
        };
        let baseline = self
            .store
            .approve_run(
                &run.id,
                &NewBaseline {
                    monitor: run.monitor.clone(),
                    viewport: run.viewport.clone(),
                    sha256: sha,
                    run_id: Some(run.id.clone()),
                    source,
                    approved_by: by.to_owned(),
                    now: Timestamp::now(),
                },
            )
            .await?;
        self.write_file(&run.monitor, &run.viewport, png).await?;
        tracing::info!(run = %run.id, monitor = %run.monitor, viewport = %run.viewport, %by, older_than_latest, "approved as baseline");
        let run = self.store.get_run(id).await?.ok_or(ReviewError::NoSuchRun)?;
        Ok(Approval { run, baseline, already: false, older_than_latest })
    }

    /// Marks a change as not accepted; the baseline stays. Rejecting twice is a no-op.
    pub async fn reject(&self, id: &crate::ids::RunId, by: &str) -> Result<Run, ReviewError> {
        let run = self.store.get_run(id).await?.ok_or(ReviewError::NoSuchRun)?;
        match run.verdict {
            Some(Verdict::Rejected) => return Ok(run),
            Some(Verdict::Changed) => {}
            None => return Err(ReviewError::Pending),
            Some(other) => return Err(ReviewError::NotAChange(other.to_string())),
        }
        if !self.store.review_run(&run.id, Verdict::Rejected, by, Timestamp::now()).await? {
            // Decided meanwhile (approved from Slack while this page was open, say).
            let now = self.store.get_run(id).await?.ok_or(ReviewError::NoSuchRun)?;
            if now.verdict != Some(Verdict::Rejected) {
                return Err(ReviewError::NotAChange(now.verdict.map_or("none".into(), |v| v.to_string())));
            }
        }
        tracing::info!(run = %run.id, monitor = %run.monitor, %by, "change rejected");
        self.store.get_run(id).await?.ok_or(ReviewError::NoSuchRun)
    }

    /// Undo: the version before the active baseline comes back (as a new history entry).
    pub async fn revert(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        by: &str,
    ) -> Result<Baseline, ReviewError> {
        if !crate::store::blobs::valid_viewport(viewport) {
            return Err(ReviewError::NoSuchViewport);
        }
        let baseline = self
            .store
            .revert_baseline(monitor, viewport, by, Timestamp::now())
            .await?
            .ok_or(ReviewError::NothingToRevert)?;
        let blobs = self.blobs.clone();
        let sha = baseline.sha256.clone();
        let png = tokio::task::spawn_blocking(move || blobs.get(&sha)).await.expect("no panic")?;
        self.write_file(monitor, viewport, png).await?;
        tracing::info!(%monitor, %viewport, %by, "baseline reverted");
        Ok(baseline)
    }

    async fn write_file(
        &self,
        monitor: &MonitorName,
        viewport: &str,
        png: Vec<u8>,
    ) -> Result<(), ReviewError> {
        let files = self.baselines.clone();
        let (monitor, viewport) = (monitor.clone(), viewport.to_owned());
        tokio::task::spawn_blocking(move || files.write(&monitor, &viewport, &png))
            .await
            .expect("no panic")?;
        Ok(())
    }
}

/// Baselines checked against their files at start: the newest versions, the only ones a crash
/// between an approval's commit and its file write can concern. (Checking every file would
/// read and hash every baseline PNG at each start.)
pub const SYNC_AT_START: i64 = 50;

/// Rewrites the files of the `limit` newest active baselines that do not match the database.
pub async fn sync_files(reviewer: &Reviewer, limit: i64) -> Result<usize, ReviewError> {
    let mut fixed = 0;
    for active in reviewer.store.recent_baselines(limit).await? {
        let (monitor, viewport) = (active.monitor.clone(), active.viewport.clone());
        let files = reviewer.baselines.clone();
        let (m, v) = (monitor.clone(), viewport.clone());
        let on_disk = tokio::task::spawn_blocking(move || files.read(&m, &v)).await.expect("no panic")?;
        if on_disk.as_deref().map(crate::store::blobs::sha256_hex).as_deref() == Some(active.sha256.as_str())
        {
            continue;
        }
        let blobs = reviewer.blobs.clone();
        let sha = active.sha256.clone();
        match tokio::task::spawn_blocking(move || blobs.get(&sha)).await.expect("no panic") {
            Ok(png) => {
                reviewer.write_file(&monitor, &viewport, png).await?;
                tracing::warn!(%monitor, %viewport, "baseline file did not match the database; rewritten");
                fixed += 1;
            }
            Err(e) => {
                tracing::error!(%monitor, %viewport, error = %e, "the active baseline's blob is missing")
            }
        }
    }
    Ok(fixed)
}
