//! The review step (docs/architecture.md §6–§8): a person approves a run's capture as the new baseline of its
//! monitor and viewport, rejects a change, or reverts the last approval. The same rules serve
//! the API, the Slack button and the CLI.
//!
//! Baselines are written through [`crate::baseline::Baselines`], their one owner.

pub mod api;
mod view;

use std::sync::Arc;

pub use view::RunView;

use crate::baseline::{BaselineError, Baselines};
use crate::config::MonitorName;
use crate::store::blobs::BlobError;
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
    #[error("the database refused ({})", .0.code())]
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
            ReviewError::File(f) => f.storage_fault().unwrap_or("baseline_file"),
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

impl From<BaselineError> for ReviewError {
    fn from(e: BaselineError) -> Self {
        match e {
            BaselineError::Store(e) => ReviewError::Store(e),
            BaselineError::File(e) => ReviewError::File(e),
        }
    }
}

/// What [`Reviewer::approve_group`] did.
#[derive(Debug)]
pub struct GroupApproval {
    /// Runs in the group.
    pub runs: usize,
    pub approved: usize,
    /// Runs not approved, and why.
    pub skipped: Vec<(crate::ids::RunId, String)>,
}

/// The messages an approval sends to other systems (`alert::events` builds them), queued with it.
pub trait ApprovalEvents: Send + Sync {
    fn for_approval(&self, run: &Run, baseline: &NewBaseline) -> Vec<crate::store::NewDelivery>;
}

/// The review rules over this daemon's database and baselines.
#[derive(Clone)]
pub struct Reviewer {
    pub store: Arc<dyn Store>,
    pub baselines: Baselines,
    /// `baseline.approved` for the `alerts:` destinations.
    pub events: Arc<dyn ApprovalEvents>,
    /// Wakes the webhook deliverer when an approval queued events.
    pub deliveries: Arc<tokio::sync::Notify>,
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
        // A failed run's picture is of the page a step or a sign-in left: never a baseline.
        let sha = match (run.verdict, &run.current_sha256) {
            (Some(Verdict::Failed), _) | (_, None) => {
                return Err(ReviewError::NothingToApprove(
                    run.verdict.map_or("none".into(), |v| v.to_string()),
                ));
            }
            (_, Some(sha)) => sha.clone(),
        };
        let latest = self.store.latest_captured_run(&run.monitor, &run.viewport).await?;
        let older_than_latest = latest.is_some_and(|l| l.id != run.id);
        let current = self.store.current_baseline(&run.monitor, &run.viewport).await?;
        if let Some(current) = current.filter(|c| c.sha256 == sha) {
            // Already the baseline: record the decision on a change, add no history.
            if matches!(
                run.verdict,
                Some(Verdict::Changed | Verdict::Rejected | Verdict::Unstable | Verdict::Ignored)
            ) {
                self.store.review_run(&run.id, Verdict::Approved, by, Timestamp::now()).await?;
            }
            let run = self.store.get_run(id).await?.ok_or(ReviewError::NoSuchRun)?;
            return Ok(Approval { run, baseline: current, already: true, older_than_latest });
        }
        let png = match self.baselines.blob(&sha).await {
            Ok(p) => p,
            Err(BlobError::NotFound(_)) => return Err(ReviewError::Pruned),
            Err(e) => return Err(e.into()),
        };
        let new = NewBaseline {
            monitor: run.monitor.clone(),
            viewport: run.viewport.clone(),
            sha256: sha,
            run_id: Some(run.id.clone()),
            source,
            approved_by: by.to_owned(),
            now: Timestamp::now(),
        };
        let events = self.events.for_approval(&run, &new);
        let baseline = self.baselines.approve(&run.id, &new, png, &events).await?;
        if !events.is_empty() {
            self.deliveries.notify_one();
        }
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

    /// The runs that went out in one alert with `run`'s change (the same change on several
    /// pages in one tick), `run`'s group's first run first; just `run` when its change alert
    /// stood alone; empty when it had none.
    pub async fn alert_group_runs(
        &self,
        run: &crate::ids::RunId,
    ) -> Result<Vec<crate::ids::RunId>, ReviewError> {
        let alerts = self.store.alerts_for_run(run).await?;
        let Some(alert) = alerts.iter().find(|a| a.kind == crate::store::AlertKind::Changed) else {
            return Ok(Vec::new());
        };
        Ok(self.store.alert_group(&alert.id).await?.into_iter().map(|a| a.run_id).collect())
    }

    /// *Approve all* of a change group (`run` is any of its runs; a run alerted alone is a
    /// group of one): each run still awaiting review whose capture is its page's latest is
    /// approved; the others are skipped, with why — decided since, or a newer capture exists
    /// (approving it would take that page back), or refused by [`Reviewer::approve`].
    pub async fn approve_group(
        &self,
        run: &crate::ids::RunId,
        by: &str,
        source: BaselineSource,
    ) -> Result<GroupApproval, ReviewError> {
        let mut runs = self.alert_group_runs(run).await?;
        if runs.is_empty() {
            runs.push(run.clone());
        }
        let mut done = GroupApproval { runs: runs.len(), approved: 0, skipped: Vec::new() };
        for id in runs {
            let Some(r) = self.store.get_run(&id).await? else {
                done.skipped.push((id, "no such run".into()));
                continue;
            };
            if !matches!(r.verdict, Some(Verdict::Changed | Verdict::Unstable | Verdict::Ignored)) {
                let verdict = r.verdict.map_or("pending".into(), |v| v.to_string());
                done.skipped.push((id, format!("decided already ({verdict})")));
                continue;
            }
            let latest = self.store.latest_captured_run(&r.monitor, &r.viewport).await?;
            if latest.is_some_and(|l| l.id != r.id) {
                done.skipped.push((id, "a newer capture of its page exists".into()));
                continue;
            }
            match self.approve(&id, by, source).await {
                Ok(_) => done.approved += 1,
                Err(ReviewError::Store(e)) => return Err(e.into()),
                Err(e) => done.skipped.push((id, e.to_string())),
            }
        }
        Ok(done)
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
        let baseline =
            self.baselines.revert(monitor, viewport, by).await?.ok_or(ReviewError::NothingToRevert)?;
        tracing::info!(%monitor, %viewport, %by, "baseline reverted");
        Ok(baseline)
    }
}
