//! Hot reload (docs/architecture.md §3): on SIGHUP, and when the config file's content changes, the file is
//! read and validated again. A valid file puts its monitors in force at once — added ones are
//! scheduled, removed ones stop, changed ones run with their new settings from their next tick —
//! without a restart. An invalid file changes nothing: every error is logged and the running
//! configuration stays. Sections other than `monitors`/`defaults` (listen address, database,
//! workers, secrets…) take effect at the next restart, and the log says which changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::config::{Config, LiveMonitors};
use crate::http::Metrics;
use crate::scheduler::Scheduler;
use crate::store::Store;
use crate::time::Timestamp;

/// How often the file is checked for a change of content.
const POLL: Duration = Duration::from_secs(1);

pub struct Reloader {
    pub path: PathBuf,
    /// The configuration as loaded from the file at start (before the daemon's own additions).
    pub at_start: Config,
    pub monitors: LiveMonitors,
    pub scheduler: Option<Arc<Scheduler>>,
    /// Where the monitors are recorded; `None` in a capture-only process.
    pub store: Option<Arc<dyn Store>>,
    pub metrics: Arc<Metrics>,
    /// Reloads by outcome (`applied`, `rejected`).
    pub outcomes: Family<Vec<(String, String)>, Counter>,
    #[cfg(unix)]
    pub hangup: Option<tokio::signal::unix::Signal>,
}

/// Installs the SIGHUP handler. Do it before serving: a SIGHUP that arrives before the handler
/// exists terminates the process (its default action).
#[cfg(unix)]
pub fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler; the config file is still watched");
            None
        }
    }
}

fn fingerprint(path: &std::path::Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|bytes| Sha256::digest(bytes).into())
}

impl Reloader {
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut last = fingerprint(&self.path);
        loop {
            let reason = tokio::select! {
                _ = stop.changed() => return,
                _ = hangup(&mut self) => "SIGHUP",
                _ = tokio::time::sleep(POLL) => {
                    let now = fingerprint(&self.path);
                    // A file being replaced (editors, config maps) may be missing for a moment.
                    if now.is_none() || now == last {
                        continue;
                    }
                    "file changed"
                }
            };
            last = fingerprint(&self.path);
            self.reload(reason).await;
        }
    }

    async fn reload(&self, reason: &str) {
        let config = match crate::config::load(&self.path) {
            Ok(c) => c,
            Err(errors) => {
                for line in errors.to_string().lines() {
                    tracing::error!(path = %self.path.display(), "{line}");
                }
                tracing::error!(%reason, "configuration not reloaded; the running one stays");
                self.outcomes.get_or_create(&vec![("outcome".into(), "rejected".into())]).inc();
                return;
            }
        };
        for (section, before, after) in [
            ("server", format!("{:?}", self.at_start.server), format!("{:?}", config.server)),
            ("storage", format!("{:?}", self.at_start.storage), format!("{:?}", config.storage)),
            ("capture", format!("{:?}", self.at_start.capture), format!("{:?}", config.capture)),
            ("webhook", format!("{:?}", self.at_start.webhook), format!("{:?}", config.webhook)),
            ("slack", format!("{:?}", self.at_start.slack), format!("{:?}", config.slack)),
            // (Compared, never logged: a changed secret counts too.)
            ("alerts", alerts_text(&self.at_start.alerts), alerts_text(&config.alerts)),
            ("auth", format!("{:?}", self.at_start.auth), format!("{:?}", config.auth)),
        ] {
            if before != after {
                tracing::warn!(section, "changed; takes effect at the next restart");
            }
        }
        let count = config.monitors.len();
        let rows = crate::store::MonitorUpsert::from_monitors(&config.monitors);
        let before = self.monitors.replace(config.monitors);
        let changes = changed_names(&before, &self.monitors.current());
        self.metrics.monitors.set(count as i64);
        let synced = match &self.store {
            None => Default::default(),
            Some(store) => match store.sync_monitors(&rows, Timestamp::now()).await {
                Ok(s) => s,
                Err(e) => {
                    // The monitors are in force, but the processor judges only monitors defined
                    // as the database has them (replicas must agree): record them as soon as
                    // the database takes it, unless a newer reload does first.
                    tracing::warn!(error = ?e, "cannot record the reloaded monitors in the database; retrying");
                    tokio::spawn(record_later(store.clone(), self.monitors.clone()));
                    Default::default()
                }
            },
        };
        let rescheduled = match &self.scheduler {
            Some(s) => match s.apply().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot reschedule the reloaded monitors");
                    Default::default()
                }
            },
            None => Default::default(),
        };
        tracing::info!(
            %reason,
            monitors = count,
            added = synced.added,
            updated = synced.updated,
            removed = synced.removed,
            scheduled = rescheduled.added,
            unscheduled = rescheduled.removed,
            retimed = rescheduled.retimed,
            added_monitors = %changes.0,
            updated_monitors = %changes.1,
            removed_monitors = %changes.2,
            "configuration reloaded"
        );
        self.outcomes.get_or_create(&vec![("outcome".into(), "applied".into())]).inc();
    }
}

/// The names of the monitors added, changed and removed, each comma-separated (for the log).
fn changed_names(
    before: &[crate::config::Monitor],
    after: &[crate::config::Monitor],
) -> (String, String, String) {
    let find = |list: &'_ [crate::config::Monitor], m: &crate::config::Monitor| {
        list.iter().find(|o| o.name == m.name).map(|o| format!("{o:?}"))
    };
    let names = |list: &[crate::config::Monitor], keep: &dyn Fn(&crate::config::Monitor) -> bool| {
        list.iter().filter(|m| keep(m)).map(|m| m.name.to_string()).collect::<Vec<_>>().join(",")
    };
    let added = names(after, &|m| find(before, m).is_none());
    let updated = names(after, &|m| find(before, m).is_some_and(|b| b != format!("{m:?}")));
    let removed = names(before, &|m| find(after, m).is_none());
    (added, updated, removed)
}

#[cfg(unix)]
async fn hangup(r: &mut Reloader) {
    match &mut r.hangup {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn hangup(_: &mut Reloader) {
    std::future::pending().await
}

/// Records the monitors in force once the database takes it: 1 s, 2 s … 30 s apart, until it
/// has them. If a newer reload came meanwhile, it is the newer monitors that are recorded last.
async fn record_later(store: Arc<dyn Store>, monitors: LiveMonitors) {
    const RETRY: crate::queue::backoff::Exponential =
        crate::queue::backoff::Exponential::new(Duration::from_secs(1), Duration::from_secs(30));
    for attempt in 1.. {
        tokio::time::sleep(RETRY.delay(attempt)).await;
        let in_force = monitors.current();
        let rows = crate::store::MonitorUpsert::from_monitors(&in_force);
        match store.sync_monitors(&rows, Timestamp::now()).await {
            // Recorded what is still in force: done (a newer reload records its own, and this
            // one cannot have overwritten it).
            Ok(_) if Arc::ptr_eq(&monitors.current(), &in_force) => {
                tracing::info!("the reloaded monitors are recorded in the database");
                return;
            }
            Ok(_) => continue,
            Err(e) => tracing::warn!(error = ?e, attempt, "cannot record the reloaded monitors yet"),
        }
    }
}

/// The `alerts:` section as text to compare, secrets included.
fn alerts_text(alerts: &[crate::config::AlertDestination]) -> String {
    use crate::config::Target;
    let secret = |t: &Target| match t {
        Target::Webhook { secret, .. } => secret.expose().to_owned(),
        Target::Email(m) => m.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default(),
        // (Their secret is the URL, which the Debug text has.)
        Target::Discord(_) | Target::Teams(_) => String::new(),
    };
    alerts.iter().map(|d| format!("{d:?}{}", secret(&d.target))).collect()
}
