//! Cron → runs. Each monitor fires on its schedule (tokio-cron-scheduler); a fire inserts one run
//! per viewport with the unique key (monitor, viewport, scheduled_for) — a second insert of the
//! same tick, say by another replica, is a no-op — and then submits the capture over HTTP to the
//! capture API, with vigil's own receiver as the webhook. A viewport whose previous run is still
//! pending is skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use uuid::Uuid;

use crate::config::{LiveMonitors, Monitor, MonitorName, Viewport};
use crate::ids::{JobId, RunId};
use crate::store::{NewRun, Run, Store, Trigger};
use crate::time::Timestamp;

/// What a fire needs, shared by every monitor's job.
pub struct Submitter {
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    /// `…/v1/capture` of the capture API.
    pub capture_url: String,
    pub token: String,
    /// `server.public_url` + `hooks/capture`.
    pub webhook_url: String,
    /// Wakes the processor when a result is stored here (a failed submission).
    pub results: Arc<tokio::sync::Notify>,
}

impl Submitter {
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
        for viewport in &monitor.viewports {
            let key = viewport.key();
            match self.store.pending_run_exists(&monitor.name, &key).await {
                Ok(true) => {
                    tracing::info!(monitor = %monitor.name, viewport = %key, "previous run still pending; tick skipped");
                    continue;
                }
                Ok(false) => {}
                Err(e) => return Err(e),
            }
            let run = NewRun {
                id: RunId::new(),
                monitor: monitor.name.clone(),
                viewport: key.clone(),
                scheduled_for,
                trigger,
                now: Timestamp::now(),
            };
            match self.store.insert_run(&run).await {
                Ok(Some(_)) => {}
                Ok(None) => continue, // this tick was taken already (another replica)
                Err(e) => return Err(e),
            }
            let request = crate::pipeline::capture_request(monitor, viewport, &run.id, &self.webhook_url);
            // Keyed by the run: a retried submission cannot create a second job.
            match self.submit(&request, Some(run.id.as_str())).await {
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
        let request = crate::pipeline::capture_request(monitor, viewport, &run.id, &self.webhook_url);
        let key = format!("{}/{}", run.id, run.attempt + 1);
        let job = self.submit(&request, Some(&key)).await?;
        self.store.recapture_run(&run.id, &job, Timestamp::now()).await.map_err(|e| e.to_string())?;
        Ok(job)
    }

    /// The reconciler: a pending run whose job never existed (or was lost) gets a new one.
    pub async fn resubmit(&self, monitor: &Monitor, viewport: &Viewport, run: &Run) -> Result<JobId, String> {
        let request = crate::pipeline::capture_request(monitor, viewport, &run.id, &self.webhook_url);
        // Never submitted (a crash in between): keyed by the run, as the first submission was, so
        // a submission that did reach the API is not made twice. Lost jobs get a fresh key.
        let key = match &run.job_id {
            None => Some(run.id.to_string()),
            Some(job) => Some(format!("{}/resubmit/{job}", run.id)),
        };
        let job = self.submit(&request, key.as_deref()).await?;
        self.store.set_run_job(&run.id, &job, Timestamp::now()).await.map_err(|e| e.to_string())?;
        Ok(job)
    }

    /// `GET /v1/capture/{id}` of the capture API: the job's result document, `None` if the API
    /// does not know the job.
    pub async fn lookup(&self, job: &JobId) -> Result<Option<serde_json::Value>, String> {
        let url = format!("{}/{job}", self.capture_url.trim_end_matches('/'));
        let r = self.client.get(url).bearer_auth(&self.token).send().await.map_err(|e| e.to_string())?;
        match r.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => r.json().await.map(Some).map_err(|e| e.to_string()),
            s => Err(format!("HTTP {s}")),
        }
    }

    async fn submit(
        &self,
        request: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> Result<JobId, String> {
        let mut r = self.client.post(&self.capture_url).bearer_auth(&self.token).json(request);
        if let Some(key) = idempotency_key {
            r = r.header("idempotency-key", key);
        }
        let r = r.send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(format!("HTTP {status}: {body}"));
        }
        body["job_id"].as_str().and_then(|j| j.parse().ok()).ok_or_else(|| format!("no job_id in {body}"))
    }
}

/// The cron side: one tokio-cron-scheduler job per enabled monitor. A job looks its monitor up
/// by name when it fires, so reloaded settings apply at the next tick; [`Scheduler::apply`]
/// adds, removes and re-times jobs when monitors are added, removed, disabled or rescheduled.
pub struct Scheduler {
    cron: JobScheduler,
    submitter: Arc<Submitter>,
    monitors: LiveMonitors,
    /// Monitor → (its job, the schedule the job was made with).
    jobs: tokio::sync::Mutex<HashMap<MonitorName, (Uuid, String)>>,
}

/// What [`Scheduler::apply`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rescheduled {
    pub added: usize,
    pub removed: usize,
    pub retimed: usize,
}

impl Scheduler {
    /// Schedules every enabled monitor and starts the clock. A monitor that has run before and
    /// whose latest tick passed while vigil was down runs once now (one catch-up, however many
    /// ticks were missed).
    pub async fn start(monitors: LiveMonitors, submitter: Arc<Submitter>) -> Result<Self, JobSchedulerError> {
        let scheduler = Scheduler {
            cron: JobScheduler::new().await?,
            submitter,
            monitors: monitors.clone(),
            jobs: Default::default(),
        };
        scheduler.apply().await?;
        for monitor in monitors.current().iter().filter(|m| m.enabled) {
            tokio::spawn(catch_up(Arc::new(monitor.clone()), scheduler.submitter.clone()));
        }
        scheduler.cron.start().await?;
        Ok(scheduler)
    }

    /// Makes the jobs match the monitors in force.
    pub async fn apply(&self) -> Result<Rescheduled, JobSchedulerError> {
        let monitors = self.monitors.current();
        let mut jobs = self.jobs.lock().await;
        let mut summary = Rescheduled::default();
        let wanted: HashMap<&MonitorName, &Monitor> =
            monitors.iter().filter(|m| m.enabled).map(|m| (&m.name, m)).collect();
        let stale: Vec<MonitorName> = jobs
            .iter()
            .filter(|(name, (_, schedule))| wanted.get(name).is_none_or(|m| &m.schedule.source != schedule))
            .map(|(name, _)| name.clone())
            .collect();
        let mut retimed = Vec::new();
        for name in stale {
            let (id, _) = jobs.remove(&name).expect("listed above");
            self.cron.remove(&id).await?;
            if wanted.contains_key(&name) {
                summary.retimed += 1;
                retimed.push(name);
            } else {
                summary.removed += 1;
            }
        }
        for (name, monitor) in wanted {
            if jobs.contains_key(name) {
                continue;
            }
            let id = self.cron.add(self.job(monitor)?).await?;
            jobs.insert(name.clone(), (id, monitor.schedule.source.clone()));
            if !retimed.contains(name) {
                summary.added += 1;
            }
        }
        Ok(summary)
    }

    fn job(&self, monitor: &Monitor) -> Result<Job, JobSchedulerError> {
        let (name, monitors, submitter) =
            (monitor.name.clone(), self.monitors.clone(), self.submitter.clone());
        Job::new_async(monitor.schedule.six_fields.as_str(), move |_, _| {
            let (name, monitors, submitter) = (name.clone(), monitors.clone(), submitter.clone());
            Box::pin(async move {
                // The tick this fire belongs to, to the second: the same on every replica.
                let tick = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap_or_else(|_| Utc::now());
                // The monitor as it is now (a reload may have changed its settings).
                let Some(monitor) = monitors.find(&name).filter(|m| m.enabled) else { return };
                if !monitor.jitter.is_zero() {
                    tokio::time::sleep(monitor.jitter.mul_f64(rand::random::<f64>())).await;
                }
                fire_tick(&submitter, &monitor, Timestamp::from_datetime(tick)).await;
            })
        })
    }

    pub async fn shutdown(&self) {
        let _ = self.cron.clone().shutdown().await;
    }
}

async fn catch_up(monitor: Arc<Monitor>, submitter: Arc<Submitter>) {
    let Some(tick) = monitor.schedule.previous_fire(Utc::now()) else { return };
    let tick = Timestamp::from_datetime(tick);
    let last = match submitter.store.list_runs(&monitor.name, None, 1).await {
        Ok(runs) => runs.into_iter().next(),
        Err(e) => {
            tracing::warn!(monitor = %monitor.name, error = ?e, "cannot read the last run; no catch-up");
            return;
        }
    };
    // Never run before: it starts with its next tick. Ran at or after the latest tick: nothing missed.
    let Some(last) = last else { return };
    if last.scheduled_for >= tick || last.created_at >= tick {
        return;
    }
    tracing::info!(monitor = %monitor.name, missed = %tick, "a tick passed while vigil was down; running it now");
    fire_tick(&submitter, &monitor, tick).await;
}

/// Fires a scheduled tick, trying again while the database cannot record it (for about a
/// minute), so a short outage does not cost the tick.
async fn fire_tick(submitter: &Submitter, monitor: &Monitor, tick: Timestamp) {
    let mut wait = Duration::from_secs(1);
    loop {
        match submitter.fire(monitor, tick, Trigger::Schedule).await {
            Ok(_) => return,
            Err(e) if wait <= Duration::from_secs(32) => {
                tracing::warn!(monitor = %monitor.name, error = ?e, retry_in = ?wait, "cannot record the tick; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                tracing::error!(monitor = %monitor.name, error = ?e, "cannot record the tick; skipped");
                return;
            }
        }
    }
}
