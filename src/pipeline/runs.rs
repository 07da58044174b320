//! Starting runs: one tick of one monitor becomes a run per viewport (unique per monitor,
//! viewport and tick — a second insert of the same tick, say by another replica, is a no-op),
//! each submitted to the capture API with vigil's own receiver as the webhook. Also the
//! re-capture of `retries_on_diff` and the reconciler's resubmission. A viewport whose previous
//! run is still pending is skipped; while a volume is low or failing ([`crate::disk`]) the
//! runs are recorded `skipped` instead of captured.

use std::sync::Arc;

use crate::capture::client::CaptureClient;
use crate::config::{Monitor, Viewport};
use crate::disk::DiskHealth;
use crate::ids::{JobId, RunId};
use crate::store::{NewRun, Run, Store, Trigger};
use crate::time::Timestamp;

/// Starts runs and (re)submits their captures.
pub struct Runs {
    pub store: Arc<dyn Store>,
    pub capture: CaptureClient,
    /// Wakes the processor when a result is stored here (a failed submission).
    pub results: Arc<tokio::sync::Notify>,
    /// No capture starts while a volume is in trouble.
    pub disk: DiskHealth,
}

impl Runs {
    /// One tick of one monitor: a run per viewport, each submitted for capture. The runs
    /// started (none when each viewport has one pending); an error when the database cannot
    /// record them (firing the same tick again is safe: runs are unique per tick).
    pub async fn fire(
        &self,
        monitor: &Monitor,
        scheduled_for: Timestamp,
        trigger: Trigger,
    ) -> crate::store::Result<Vec<RunId>> {
        let mut started = Vec::new();
        let refusal = self.disk.refusal();
        for viewport in &monitor.viewports {
            let key = viewport.key();
            let run = NewRun {
                id: RunId::new(),
                monitor: monitor.name.clone(),
                viewport: key.clone(),
                scheduled_for,
                trigger,
                now: Timestamp::now(),
            };
            if self.store.pending_run_exists(&monitor.name, &key).await? {
                // "Run now" is refused instead (409, when every viewport has one pending): a
                // double click writes nothing.
                if trigger == Trigger::Manual {
                    continue;
                }
                // Recorded, so that every tick has its row and the history says why it has no
                // capture (a slow page, a replica's work being taken over); but not while a
                // volume is in trouble, where every write counts (the run in flight must still
                // be recorded) and a fast schedule would write a row a second.
                if refusal.is_some() {
                    tracing::info!(monitor = %monitor.name, viewport = %key, "previous run still pending; tick skipped");
                    continue;
                }
                let error = serde_json::json!({
                    "code": "previous_run_pending",
                    "message": "the previous run of this viewport had not finished",
                    "retryable": true,
                });
                if self.store.insert_skipped_run(&run, &error.to_string()).await?.is_some() {
                    tracing::info!(monitor = %monitor.name, viewport = %key, run = %run.id, "previous run still pending; tick skipped");
                }
                continue;
            }
            if let Some((condition, why)) = &refusal {
                if self.disk.current().nearly_full() {
                    // The last bytes (the released ballast) are kept for recording the runs in
                    // flight: a fast schedule's skipped ticks would eat them a row at a time.
                    tracing::warn!(monitor = %monitor.name, viewport = %key, reason = condition.code(), "tick skipped, not recorded (the volume is nearly full): {why}");
                    continue;
                }
                let error = serde_json::json!({"code": condition.code(), "message": why, "retryable": true});
                if self.store.insert_skipped_run(&run, &error.to_string()).await?.is_some() {
                    tracing::warn!(monitor = %monitor.name, viewport = %key, run = %run.id, reason = condition.code(), "tick skipped: {why}");
                    started.push(run.id);
                }
                continue;
            }
            match self.store.insert_run(&run).await {
                Ok(Some(_)) => {}
                Ok(None) => continue, // this tick was taken already (another replica)
                Err(e) => return Err(e),
            }
            // Keyed by the run: a retried submission cannot create a second job.
            match self.capture.submit(monitor, viewport, &run.id, run.id.as_str()).await {
                Ok(job) => {
                    let _ = self.store.set_run_job(&run.id, &job, Timestamp::now()).await;
                    tracing::info!(monitor = %monitor.name, viewport = %key, run = %run.id, job = %job, "capture submitted");
                }
                Err(message) => {
                    // Nothing will come back for it: hand the processor a failed result now, so the
                    // run gets its `failed` verdict (and the failure alert) the usual way.
                    tracing::warn!(monitor = %monitor.name, viewport = %key, %message, "capture submission failed");
                    let key = format!("submit:{}", run.id);
                    let result = serde_json::json!({
                        "job_id": key,
                        "status": "failed",
                        "error": {"code": "submit_failed", "message": message, "retryable": true},
                        "metadata": {"monitor": monitor.name, "viewport": run.viewport, "run_id": run.id},
                    });
                    let stored = self
                        .store
                        .record_received_webhook(&key, &key, &result.to_string(), Timestamp::now())
                        .await;
                    match stored {
                        Ok(_) => self.results.notify_one(),
                        Err(e) => {
                            // The reconciler submits it again later.
                            tracing::warn!(run = %run.id, error = ?e, "cannot record the failed submission");
                        }
                    }
                }
            }
            started.push(run.id);
        }
        Ok(started)
    }

    /// `retries_on_diff`: captures the run's page again; the run stays pending with the new job
    /// and one more attempt.
    pub async fn recapture(
        &self,
        monitor: &Monitor,
        viewport: &Viewport,
        run: &Run,
    ) -> Result<JobId, String> {
        self.refuse_while_disk_in_trouble()?;
        let key = format!("{}/{}", run.id, run.attempt + 1);
        let job = self.capture.submit(monitor, viewport, &run.id, &key).await?;
        self.store.recapture_run(&run.id, &job, Timestamp::now()).await.map_err(|e| e.to_string())?;
        Ok(job)
    }

    /// The reconciler: a pending run whose job never existed (or was lost) gets a new one.
    pub async fn resubmit(&self, monitor: &Monitor, viewport: &Viewport, run: &Run) -> Result<JobId, String> {
        self.refuse_while_disk_in_trouble()?;
        // Never submitted (a crash in between): keyed by the run, as the first submission was, so
        // a submission that did reach the API is not made twice. Lost jobs get a fresh key.
        let key = match &run.job_id {
            None => run.id.to_string(),
            Some(job) => format!("{}/resubmit/{job}", run.id),
        };
        let job = self.capture.submit(monitor, viewport, &run.id, &key).await?;
        self.store.set_run_job(&run.id, &job, Timestamp::now()).await.map_err(|e| e.to_string())?;
        Ok(job)
    }

    /// No capture starts while a volume is in trouble: the run waits (for the space, or for
    /// its deadline).
    fn refuse_while_disk_in_trouble(&self) -> Result<(), String> {
        match self.disk.refusal() {
            Some((condition, why)) => Err(format!("no capture starts now ({}): {why}", condition.code())),
            None => Ok(()),
        }
    }
}
