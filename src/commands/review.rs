//! `vigil approve`, `vigil status` and `vigil mute`: the review step from a shell on the daemon's machine
//! (same database and directories as the daemon, read from the same config).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::baseline::Baselines;
use crate::config::{Config, MonitorName};
use crate::queue::backoff::Exponential;
use crate::review::{ReviewError, Reviewer};
use crate::store::blobs::{BaselineFiles, BlobStore};
use crate::store::{BaselineSource, Store};

fn with_store<F, Fut>(path: &Path, f: F) -> ExitCode
where
    F: FnOnce(Config, std::sync::Arc<dyn Store>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let config = match crate::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("async runtime");
    let result = runtime.block_on(async {
        let store = super::open_store(&config).await?;
        f(config, store).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Who approves from the command line.
fn actor() -> String {
    let user =
        std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// `vigil approve RUN_ID` or `vigil approve MONITOR[/VIEWPORT]` (the latest change of each of
/// the monitor's viewports, or of that one).
pub fn approve(path: &Path, target: &str) -> ExitCode {
    let target = target.to_owned();
    with_store(path, |config, store| async move {
        let baselines = Baselines {
            store: store.clone(),
            blobs: BlobStore::open(&config.storage.blobs)?,
            files: BaselineFiles::new(&config.storage.baselines_dir),
        };
        // Events are queued; a running daemon sends them.
        let monitors = crate::config::LiveMonitors::new(config.monitors.clone());
        let events =
            crate::alert::events::Events::new(&config.alerts, monitors, config.server.public_url.clone());
        let reviewer = Reviewer {
            store: store.clone(),
            baselines,
            events: Arc::new(events),
            deliveries: Default::default(),
        };
        let runs = if target.starts_with("run_") {
            vec![target.parse().map_err(|e| format!("{target}: {e}"))?]
        } else {
            let (monitor, viewport) = match target.split_once('/') {
                Some((m, v)) => (m, Some(v)),
                None => (target.as_str(), None),
            };
            let name: MonitorName = monitor.parse().map_err(|e| format!("{monitor}: {e}"))?;
            let changes = store.list_changes(Some(&name), None, 500).await.map_err(|e| e.to_string())?;
            let mut latest = Vec::new();
            for run in changes {
                // Newest first: the first change seen for a viewport is its latest.
                if viewport.is_none_or(|v| v == run.viewport)
                    && !latest.iter().any(|(vp, _)| vp == &run.viewport)
                {
                    latest.push((run.viewport.clone(), run.id));
                }
            }
            if latest.is_empty() && !config.monitors.iter().any(|m| m.name == name) {
                return Err(format!("no monitor {monitor} in the config"));
            }
            if latest.is_empty() {
                return Err(format!("{target} has no change awaiting review"));
            }
            latest.into_iter().map(|(_, id)| id).collect()
        };
        let by = actor();
        for id in runs {
            let a = approve_retrying(&reviewer, &id, &by).await.map_err(|e| format!("{id}: {e}"))?;
            let note = match (a.already, a.older_than_latest) {
                (true, _) => " (it was the baseline already)",
                (false, true) => " (note: a newer run exists)",
                _ => "",
            };
            println!(
                "{} {} approved as baseline from {}{note}; file: {}",
                a.run.monitor,
                a.run.viewport,
                a.run.id,
                reviewer
                    .baselines
                    .files
                    .path(&a.run.monitor, &a.run.viewport)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
        }
        Ok(())
    })
}

/// Approves `id`, trying again (0.25 s, 0.5 s … 4 s, six tries) while the database is busy: the
/// daemon writes to the same database, and SQLite's lock can be held past its busy timeout on
/// a loaded machine. An approval is idempotent, so trying again is safe.
async fn approve_retrying(
    reviewer: &Reviewer,
    id: &crate::ids::RunId,
    by: &str,
) -> Result<crate::review::Approval, ReviewError> {
    let store_busy = |e: &ReviewError| match e {
        ReviewError::Store(e) => busy(e),
        _ => None,
    };
    busy_retrying(&id.to_string(), || reviewer.approve(id, by, BaselineSource::Cli), store_busy).await
}

/// The code of a store error worth trying again (the database busy or unreachable for now).
fn busy(e: &crate::store::StoreError) -> Option<&'static str> {
    e.is_retryable().then(|| e.code())
}

/// `f`, tried again (0.25 s, 0.5 s … 4 s, six tries) while `busy` finds its error is the
/// database being busy; `f` must be safe to repeat.
async fn busy_retrying<T, E, Fut>(
    what: &str,
    f: impl Fn() -> Fut,
    busy: impl Fn(&E) -> Option<&'static str>,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    const BUSY: Exponential = Exponential::new(Duration::from_millis(250), Duration::from_secs(4));
    let mut tries = 0;
    loop {
        match f().await {
            Err(e) if tries < 5 && busy(&e).is_some() => {
                tries += 1;
                let wait = BUSY.delay(tries);
                let code = busy(&e).unwrap_or_default();
                eprintln!("{what}: the database is busy ({code}); trying again in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// `vigil status`: every monitor and viewport with its latest verdict and changes awaiting review.
pub fn status(path: &Path) -> ExitCode {
    with_store(path, |config, store| async move {
        let mut rows = Vec::new();
        let mut pending_total = 0;
        for m in &config.monitors {
            let changes = store.list_changes(Some(&m.name), None, 500).await.map_err(|e| e.to_string())?;
            let runs = store.list_runs(&m.name, None, 50).await.map_err(|e| e.to_string())?;
            for vp in &m.viewports {
                let key = vp.key();
                let latest = runs.iter().find(|r| r.viewport == key);
                let waiting = changes.iter().filter(|r| r.viewport == key).count();
                pending_total += waiting;
                rows.push(vec![
                    m.name.to_string(),
                    key,
                    if m.enabled { String::new() } else { "disabled".into() },
                    latest.map_or("never".into(), |r| r.created_at.to_string()),
                    latest.map_or("-".into(), |r| r.verdict.map_or("pending".into(), |v| v.to_string())),
                    latest.and_then(|r| r.diff_ratio).map(crate::alert::message::percent).unwrap_or_default(),
                    waiting.to_string(),
                ]);
            }
        }
        print!(
            "{}",
            crate::config::report::render(
                &["MONITOR", "VIEWPORT", "", "LAST RUN (UTC)", "VERDICT", "DIFF", "TO REVIEW"],
                &rows
            )
        );
        println!("{} change{} awaiting review", pending_total, if pending_total == 1 { "" } else { "s" });
        Ok(())
    })
}

/// `vigil mute MONITOR DURATION` (e.g. `2h`, `1d`) or `vigil mute MONITOR off`: the monitor's
/// alerts stop until then (its runs go on), or come back now.
pub fn mute(path: &Path, monitor: &str, duration: &str) -> ExitCode {
    let (monitor, duration) = (monitor.to_owned(), duration.trim().to_owned());
    with_store(path, |config, store| async move {
        let name: MonitorName = monitor.parse().map_err(|e| format!("{monitor}: {e}"))?;
        if !config.monitors.iter().any(|m| m.name == name) {
            return Err(format!("no monitor {monitor} in the config"));
        }
        let failed = |e: crate::store::StoreError| crate::http::client::error_chain(&e);
        if duration == "off" {
            let was = busy_retrying(&monitor, || store.unmute(&name), busy).await.map_err(failed)?;
            println!("{monitor}: {}", if was { "unmuted; alerts are sent again" } else { "was not muted" });
            return Ok(());
        }
        let length = humantime::parse_duration(&duration)
            .ok()
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(366 * 86_400))
            .ok_or_else(|| {
                format!("{duration}: expected a duration up to a year (30m, 2h, 1d) or \"off\"")
            })?;
        let now = crate::time::Timestamp::now();
        let mute =
            crate::store::Mute { monitor: name, until: now.plus(length), muted_by: actor(), created_at: now };
        busy_retrying(&monitor, || store.mute(&mute), busy).await.map_err(failed)?;
        println!("{monitor}: muted until {} (UTC); runs go on, their alerts are not sent", mute.until);
        Ok(())
    })
}
