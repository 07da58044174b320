//! The reconciler: nothing stays pending forever. A run untouched for `capture.reconcile_after`
//! is looked up in the capture API with `GET /v1/capture/{job_id}`:
//! - finished (completed or failed): the result document is stored as if its webhook had come
//!   (keyed `job:<id>`, so the real webhook, should it still arrive, is a duplicate) and the
//!   processor judges it;
//! - queued or running: left alone (touched, so it is looked at again later);
//! - unknown to the API, or never submitted (a crash between recording and submitting): the
//!   capture is submitted again.
//!
//! A run still pending `capture.run_deadline` after it started is failed instead, whatever
//! held it (a full disk, a result that cannot be fetched or stored): `storage_full` or
//! `storage_error` when the disk was in trouble since the run started, `run_deadline_exceeded`
//! otherwise; its failure alert is queued the usual way. So no run stays pending for ever and
//! none holds up its monitor's schedule.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::runs::Runs;
use crate::alert::run_alerts::RunAlerts;
use crate::config::LiveMonitors;
use crate::disk::DiskHealth;
use crate::queue::backoff::Exponential;
use crate::queue::{self, Next, Pacing, QueueWorker, WorkError};
use crate::store::{Run, RunOutcome, RunStatus, Store, Verdict};
use crate::time::Timestamp;

pub struct Reconciler {
    pub store: Arc<dyn Store>,
    pub runs: Arc<Runs>,
    /// `capture.reconcile_after`.
    pub after: Duration,
    /// The monitors in force; replaced on reload.
    pub monitors: LiveMonitors,
    /// Wakes the processor.
    pub webhook_received: Arc<Notify>,
    /// `capture.run_deadline`.
    pub deadline: Duration,
    /// Whether the disk was in trouble while a run was pending (the code of its failure).
    pub disk: DiskHealth,
    /// Queues the failure alert of a run past its deadline.
    pub alerts: RunAlerts,
}

/// Stale runs looked at per pass.
const BATCH: i64 = 50;

impl Reconciler {
    /// Runs until `stop`: a pass over the stale pending runs, often enough to act soon after
    /// `reconcile_after`, rarely enough to cost nothing.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let every = (self.after / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        // One run that keeps failing holds up the pass it is in: back off, but not for long.
        let trouble = Exponential::new(every, Duration::from_secs(60).max(every));
        queue::run(self, Pacing::new(every, trouble), None, stop).await
    }
}

#[async_trait::async_trait]
impl QueueWorker for Reconciler {
    type Item = Vec<Run>;
    const NAME: &'static str = "reconciler";

    async fn claim(&self) -> Result<Option<Vec<Run>>, WorkError> {
        let before = Timestamp::now().minus(self.after);
        let runs = self.store.stale_pending_runs(before, BATCH).await?;
        Ok((!runs.is_empty()).then_some(runs))
    }

    /// Each run of the pass; a run that cannot be reconciled now stays stale and comes back in
    /// a later pass, after the backoff.
    async fn work(&self, runs: Vec<Run>) -> Result<Next, WorkError> {
        let mut failed = 0;
        for run in runs {
            if let Err(e) = self.reconcile(&run).await {
                tracing::warn!(run = %run.id, error = %e, "cannot reconcile the run; will try again");
                failed += 1;
            }
        }
        match failed {
            0 => Ok(Next::Wait),
            n => Err(format!("{n} runs not reconciled").into()),
        }
    }
}

impl Reconciler {
    async fn reconcile(&self, run: &Run) -> Result<(), String> {
        let monitor = self.monitors.find(&run.monitor);
        let monitor = monitor.as_ref();
        let viewport = monitor.and_then(|m| m.viewports.iter().find(|v| v.key() == run.viewport));
        let (Some(monitor), Some(viewport)) = (monitor, viewport) else {
            // Removed from the config while in flight: close it instead of capturing it again.
            return self
                .fail(run, "monitor_removed", "the monitor or viewport is no longer configured")
                .await;
        };
        if run.created_at < Timestamp::now().minus(self.deadline) {
            let deadline = humantime::format_duration(self.deadline);
            let (code, message) = match self.disk.troubled_since(run.created_at) {
                Some(condition) => (
                    condition.run_code(),
                    format!(
                        "not finished within capture.run_deadline ({deadline}): the disk was {}",
                        condition.code()
                    ),
                ),
                None => (
                    "run_deadline_exceeded",
                    format!("not finished within capture.run_deadline ({deadline})"),
                ),
            };
            tracing::warn!(run = %run.id, monitor = %run.monitor, code, "{message}; the run is failed");
            return self.fail_alerting(run, code, &message).await;
        }
        let Some(job) = &run.job_id else {
            let job = self.runs.resubmit(monitor, viewport, run).await?;
            tracing::info!(run = %run.id, %job, "run was never submitted; submitted now");
            return Ok(());
        };
        match self.runs.capture.lookup(job).await? {
            None => {
                let new = self.runs.resubmit(monitor, viewport, run).await?;
                tracing::info!(run = %run.id, old = %job, job = %new, "capture API does not know the job; submitted again");
            }
            Some(doc) => match doc["status"].as_str() {
                Some("completed" | "failed") => {
                    let payload = doc.to_string();
                    let fresh = self
                        .store
                        .record_received_webhook(
                            &format!("job:{job}"),
                            job.as_str(),
                            &payload,
                            Timestamp::now(),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    tracing::info!(run = %run.id, %job, fresh, "finished job had no webhook processed; processing it now");
                    if !fresh {
                        // Its result is stored. Processed, with the run still pending on it: it
                        // was set aside as superseded while the run still pointed at an older
                        // job (a crash between a re-capture's submission and its record), and is
                        // the run's result now. Otherwise it is waiting: look again later.
                        // The run points at the job first: a processor that picks the requeued
                        // result up at once must not find it superseded again.
                        self.store
                            .set_run_job(&run.id, job, Timestamp::now())
                            .await
                            .map_err(|e| e.to_string())?;
                        let requeued = self
                            .store
                            .requeue_webhook_of_job(job.as_str())
                            .await
                            .map_err(|e| e.to_string())?;
                        if requeued {
                            tracing::info!(run = %run.id, %job, "a result set aside earlier is the run's own; processing it again");
                        }
                    }
                    self.webhook_received.notify_one();
                }
                _ => {
                    // Still queued or running: look again after another `reconcile_after`.
                    self.store
                        .set_run_job(&run.id, job, Timestamp::now())
                        .await
                        .map_err(|e| e.to_string())?;
                }
            },
        }
        Ok(())
    }

    /// Fails the run and queues its failure alert together (see `fail_run_alerting`).
    async fn fail_alerting(&self, run: &Run, code: &str, message: &str) -> Result<(), String> {
        let now = Timestamp::now();
        let error = serde_json::json!({"code": code, "message": message, "retryable": true}).to_string();
        let failed = Run {
            status: RunStatus::Done,
            verdict: Some(Verdict::Failed),
            error: Some(error.clone()),
            updated_at: now,
            completed_at: Some(now),
            ..run.clone()
        };
        let alert = self.alerts.alert_for(&failed).await.map_err(|e| e.to_string())?;
        let done = self
            .store
            .fail_run_alerting(&run.id, &error, now, alert.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        if done && let Some(alert) = &alert {
            self.alerts.ready.notify_one();
            if !alert.events.is_empty() {
                self.alerts.deliveries.notify_one();
            }
        }
        Ok(())
    }

    async fn fail(&self, run: &Run, code: &str, message: &str) -> Result<(), String> {
        let outcome = RunOutcome {
            verdict: Some(Verdict::Failed),
            error: Some(
                serde_json::json!({"code": code, "message": message, "retryable": false}).to_string(),
            ),
            ..Default::default()
        };
        self.store.complete_run(&run.id, &outcome, Timestamp::now()).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}
