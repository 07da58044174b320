//! Cron → runs. Each monitor fires on its schedule (tokio-cron-scheduler); a fire starts one run
//! per viewport through [`Runs::fire`], keyed by the tick (to the second), so every replica
//! fires the same tick and only one run results.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use uuid::Uuid;

use crate::config::{LiveMonitors, Monitor, MonitorName};
use crate::pipeline::runs::Runs;
use crate::queue::backoff::Exponential;
use crate::store::Trigger;
use crate::time::Timestamp;

/// The cron side: one tokio-cron-scheduler job per enabled monitor. A job looks its monitor up
/// by name when it fires, so reloaded settings apply at the next tick; [`Scheduler::apply`]
/// adds, removes and re-times jobs when monitors are added, removed, disabled or rescheduled.
pub struct Scheduler {
    cron: JobScheduler,
    runs: Arc<Runs>,
    monitors: LiveMonitors,
    /// Monitor → (its job, the schedule and zone the job was made with).
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
    pub async fn start(monitors: LiveMonitors, runs: Arc<Runs>) -> Result<Arc<Self>, JobSchedulerError> {
        let scheduler = Scheduler {
            cron: JobScheduler::new().await?,
            runs,
            monitors: monitors.clone(),
            jobs: Default::default(),
        };
        scheduler.apply().await?;
        for monitor in monitors.current().iter().filter(|m| m.enabled) {
            tokio::spawn(catch_up(Arc::new(monitor.clone()), scheduler.runs.clone()));
        }
        scheduler.cron.start().await?;
        let scheduler = Arc::new(scheduler);
        tokio::spawn(follow_offsets(Arc::downgrade(&scheduler)));
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
            .filter(|(name, (_, schedule))| wanted.get(name).is_none_or(|m| &job_key(m) != schedule))
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
            jobs.insert(name.clone(), (id, job_key(monitor)));
            if !retimed.contains(name) {
                summary.added += 1;
            }
        }
        Ok(summary)
    }

    fn job(&self, monitor: &Monitor) -> Result<Job, JobSchedulerError> {
        let (name, monitors, runs) = (monitor.name.clone(), self.monitors.clone(), self.runs.clone());
        // Fired in the monitor's `timezone`: a daily 09:00 stays 09:00 local across DST.
        Job::new_async_tz(monitor.schedule.six_fields.as_str(), monitor.schedule.tz, move |_, _| {
            let (name, monitors, runs) = (name.clone(), monitors.clone(), runs.clone());
            Box::pin(async move {
                // The monitor as it is now (a reload may have changed its settings).
                let Some(monitor) = monitors.find(&name).filter(|m| m.enabled) else { return };
                // The tick this fire belongs to: the schedule's own instant, whenever the fire
                // came, and the same on every replica and in a catch-up after a restart.
                let now = Utc::now();
                let tick = monitor
                    .schedule
                    .previous_fire(now)
                    .unwrap_or_else(|| now.duration_trunc(TimeDelta::seconds(1)).unwrap_or(now));
                if !monitor.jitter.is_zero() {
                    tokio::time::sleep(monitor.jitter.mul_f64(rand::random::<f64>())).await;
                }
                fire_tick(&runs, &monitor, Timestamp::from_datetime(tick)).await;
            })
        })
    }

    pub async fn shutdown(&self) {
        let _ = self.cron.clone().shutdown().await;
    }
}

/// What a monitor's job is made for: its schedule, its zone, and the zone's UTC offset now —
/// tokio-cron-scheduler fixes a job's offset when it makes the job, so a job must be made again
/// when daylight saving time begins or ends.
fn job_key(monitor: &Monitor) -> String {
    job_key_at(monitor, Utc::now())
}

fn job_key_at(monitor: &Monitor, now: chrono::DateTime<Utc>) -> String {
    use chrono::{Offset, TimeZone};
    let offset = monitor.schedule.tz.offset_from_utc_datetime(&now.naive_utc()).fix();
    format!("{} {}", monitor.schedule.key(), offset.local_minus_utc())
}

/// Re-times the jobs whose zone changed its offset (a daylight saving change), each minute for
/// as long as the scheduler lives.
async fn follow_offsets(scheduler: std::sync::Weak<Scheduler>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(scheduler) = scheduler.upgrade() else { return };
        match scheduler.apply().await {
            Ok(r) if r.retimed > 0 => {
                tracing::info!(retimed = r.retimed, "the UTC offset of a schedule's zone changed; re-timed");
                // A tick due in the moment between the change and the re-timing runs now.
                for monitor in scheduler.monitors.current().iter().filter(|m| m.enabled) {
                    tokio::spawn(catch_up(Arc::new(monitor.clone()), scheduler.runs.clone()));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "cannot re-time the schedules"),
        }
    }
}

async fn catch_up(monitor: Arc<Monitor>, runs: Arc<Runs>) {
    let Some(tick) = monitor.schedule.previous_fire(Utc::now()) else { return };
    let tick = Timestamp::from_datetime(tick);
    let last = match runs.store.list_runs(&monitor.name, None, 1).await {
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
    fire_tick(&runs, &monitor, tick).await;
}

/// Attempts at recording a tick while the database cannot: 1 s, 2 s … 32 s apart (about a
/// minute in all), so a short outage does not cost the tick.
const TICK_ATTEMPTS: u32 = 7;
const TICK_RETRY: Exponential = Exponential::new(Duration::from_secs(1), Duration::from_secs(32));

/// Fires a scheduled tick, trying again while the database cannot record it.
async fn fire_tick(runs: &Runs, monitor: &Monitor, tick: Timestamp) {
    let mut failures = 0;
    loop {
        match runs.fire(monitor, tick, Trigger::Schedule).await {
            Ok(_) => return,
            Err(e) if failures + 1 < TICK_ATTEMPTS => {
                failures += 1;
                let wait = TICK_RETRY.delay(failures);
                tracing::warn!(monitor = %monitor.name, error = ?e, retry_in = ?wait, "cannot record the tick; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::error!(monitor = %monitor.name, error = ?e, "cannot record the tick; skipped");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job made before a daylight saving change is made again after it (its key changes), so
    /// that tokio-cron-scheduler's fixed offset is the zone's offset again.
    #[test]
    fn a_zones_dst_change_re_times_its_jobs() {
        let yaml = "monitors:\n  - name: a\n    url: https://example.com/\n    schedule: \"0 9 * * *\"\n    timezone: Europe/Berlin\n  - name: b\n    url: https://example.com/\n";
        let config = crate::config::parse(yaml, "m.yaml", &|_| None).unwrap();
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let (berlin, utc) = (&config.monitors[0], &config.monitors[1]);
        let (winter, summer) = (at("2026-03-28T12:00:00Z"), at("2026-03-30T12:00:00Z"));
        assert_eq!(job_key_at(berlin, winter), "0 9 * * * (Europe/Berlin) 3600");
        assert_eq!(job_key_at(berlin, summer), "0 9 * * * (Europe/Berlin) 7200");
        assert_eq!(job_key_at(utc, winter), job_key_at(utc, summer));
    }
}
