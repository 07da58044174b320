//! The composition root: builds the services once ([`services::Services`]), starts the roles
//! the process runs ([`Roles`]), serves their routes, and shuts everything down in order. It
//! takes a validated config, a bound listener and a shutdown signal, so tests start the whole
//! daemon on port 0 with nothing global.

mod keys;
mod roles;
mod services;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use keys::KeyError;
pub use roles::Roles;
use services::{Background, Services};

use crate::capture::CaptureService;
use crate::capture::error::CaptureError;
use crate::config::Config;
use crate::scheduler::Scheduler;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot open the database {location}")]
    OpenStore {
        location: String,
        #[source]
        source: StoreError,
    },
    #[error("database error")]
    Store(#[from] StoreError),
    #[error("cannot create directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot use the blob store: {0}")]
    Blobs(String),
    #[error("{0}")]
    Roles(String),
    #[error(transparent)]
    NoChromium(CaptureError),
    #[error("cannot start the scheduler")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Installs the SIGTERM and SIGINT handlers now, and returns a future that resolves on either.
/// Installing them before the work begins matters: a signal that arrives before the handlers
/// exist kills the process at once, its Chromium left running, instead of shutting it down.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut signals = signal_count()?;
    Ok(async move {
        let _ = signals.wait_for(|n| *n > 0).await;
    })
}

/// Installs the SIGTERM and SIGINT handlers now, and counts the signals from then on: for a
/// command that stops cleanly on the first and at once on a second (`run --once`).
pub fn signal_count() -> anyhow::Result<tokio::sync::watch::Receiver<u32>> {
    let (count, signals) = tokio::sync::watch::channel(0);
    #[cfg(unix)]
    {
        use anyhow::Context;
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    got = term.recv() => got,
                    got = int.recv() => got,
                };
                if got.is_none() {
                    return;
                }
                count.send_modify(|n| *n += 1);
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            count.send_modify(|n| *n += 1);
        }
    });
    Ok(signals)
}

/// reqwest and sqlx both use rustls: choose its crypto provider (ring) once for the process.
/// Call before building any HTTP client; calling again is harmless.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How [`run_with`] differs from the daemon.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Fire monitors on their cron (off for `vigil run --once`, which starts the runs itself).
    pub schedule: bool,
    /// The file the config came from: reloaded on SIGHUP and when its content changes.
    pub config_path: Option<PathBuf>,
    /// The roles to run; `None`: [`Roles::default_for`] the config.
    pub roles: Option<Roles>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { schedule: true, config_path: None, roles: None }
    }
}

/// The token `monitors.example.yaml` falls back to; a daemon that accepts it says so at start.
pub const EXAMPLE_TOKEN: &str = "change-me-to-a-long-random-token";

/// Runs the daemon with every role until `shutdown` resolves, then stops accepting connections
/// and lets in-flight requests finish (up to `server.shutdown_timeout`).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with(config, listener, shutdown, RunOptions::default()).await
}

/// What the roles started and shutdown must stop.
struct Started {
    background: JoinSet<()>,
    stop: tokio::sync::watch::Sender<bool>,
    capture: Option<Arc<CaptureService>>,
    cron: Option<Arc<Scheduler>>,
}

/// [`run`], with options.
pub async fn run_with(
    mut config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: RunOptions,
) -> Result<(), RunError> {
    #[cfg(unix)]
    let hangup = options.config_path.as_ref().and_then(|_| crate::reload::hangup_signal());
    let roles = options.roles.unwrap_or_else(|| Roles::default_for(&config));
    roles.check(&config).map_err(RunError::Roles)?;
    if roles.api && !roles.capture && config.capture.provider.is_none() {
        tracing::warn!(
            "the api role without the capture role or capture.provider: \"run now\" has no capture API to call"
        );
    }
    if roles.ui && !roles.api {
        tracing::warn!(
            "the ui role without the api role: its images come from /api/runs/…, served by the api role"
        );
    }
    if roles.capture {
        // Said at start, in one line, rather than at the first capture.
        crate::capture::browser::find_chromium(config.capture.chromium_path.as_deref())
            .map_err(RunError::NoChromium)?;
    }
    let at_start = config.clone();
    // Listening on port 0 (tests): the default public URL names the port actually bound.
    if config.server.public_url.port() == Some(0)
        && let Ok(addr) = listener.local_addr()
    {
        config.server.public_url = crate::config::default_public_url(addr);
    }
    // (And the SQLite file's directory: SQLite creates the file, not the directories above it.)
    let database_dir = crate::store::sqlite_file(config.storage.database_url.expose())
        .and_then(|f| f.parent().filter(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf));
    for dir in [&config.storage.data_dir, &config.storage.baselines_dir].into_iter().chain(&database_dir) {
        std::fs::create_dir_all(dir).map_err(|source| RunError::DataDir { path: dir.clone(), source })?;
    }
    init_tls();
    let services = Services::build(config, roles).await?;
    // Said once the database is open: an error opening it is not preceded by "listening".
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%address, public_url = %services.config.server.public_url, %roles, "vigil listening");
    if services.config.auth.api_tokens.iter().any(|t| t.expose() == EXAMPLE_TOKEN) {
        tracing::warn!(
            "auth.api_tokens holds the example's token, which anyone who read the README knows: set VIGIL_API_TOKEN or replace it before other machines can reach this daemon"
        );
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut bg = Background { tasks: JoinSet::new(), stop: stop_rx };
    let (routes, started) = start_roles(&services, roles, options.schedule, &mut bg).await?;
    // Registered without a file to reload too: the family is there, at zero, for every daemon.
    let outcomes = prometheus_client::metrics::family::Family::default();
    services.metrics.register("config_reloads", "Configuration reloads by outcome", outcomes.clone());
    crate::http::Metrics::seed(&outcomes, "outcome", &["applied", "rejected"]);
    if let Some(path) = options.config_path {
        let reloader = crate::reload::Reloader {
            outcomes,
            path,
            at_start,
            monitors: services.monitors.clone(),
            scheduler: started.1.clone(),
            store: roles.records_monitors().then(|| services.store.clone()),
            metrics: services.metrics.clone(),
            #[cfg(unix)]
            hangup,
        };
        bg.tasks.spawn(reloader.run(bg.stop.clone()));
    }
    let app = crate::http::router(
        routes,
        services.store.clone(),
        services.disk.clone(),
        services.agreement.clone(),
        services.blobs.clone(),
        services.metrics.clone(),
        services.config.server.limits.body_timeout,
    );
    let started = Started { background: bg.tasks, stop, capture: started.0, cron: started.1 };
    serve(listener, app, shutdown, services.config.server.shutdown_timeout, started, &services).await
}

/// Starts the roles' background work; their routes, the capture service and the scheduler.
async fn start_roles(
    services: &Services,
    roles: Roles,
    schedule: bool,
    bg: &mut Background,
) -> Result<(axum::Router, (Option<Arc<CaptureService>>, Option<Arc<Scheduler>>)), RunError> {
    services.watch_queues();
    services.watch_disk(bg, roles);
    if roles.api || roles.ui || roles.monitor {
        services.repair_baseline_files().await;
    }
    let judges = roles.api || roles.ui || roles.monitor;
    let events = judges && !services.config.alerts.is_empty();
    if roles.capture || events {
        services.start_deliveries(bg, roles.capture, events);
    }
    let mut routes = axum::Router::new();
    let mut capture = None;
    if roles.capture {
        let (r, service) = services.start_capture(bg);
        routes = routes.merge(r);
        capture = Some(service);
    }
    let mut cron = None;
    if roles.monitor {
        let (r, scheduler) = services.start_monitor(bg, schedule).await?;
        routes = routes.merge(r);
        cron = scheduler;
    }
    if roles.api {
        routes = routes.merge(services.api_routes());
    }
    if roles.ui {
        routes = routes.merge(services.ui_routes());
    }
    Ok((routes, (capture, cron)))
}

/// Serves until `shutdown`, then stops in order: no new connections, requests in flight
/// finish, the scheduler and the loops stop, the browser and the database close — each bounded
/// by `grace`.
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    mut started: Started,
    services: &Services,
) -> Result<(), RunError> {
    let (server_stop_tx, server_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = services.config.server.limits;
    let server = crate::http::server::serve(listener, app, limits, async {
        let _ = server_stop_rx.await;
    });
    let mut server = tokio::spawn(server);
    let result = tokio::select! {
        r = &mut server => r,
        () = shutdown => {
            tracing::info!(grace = ?grace, "shutting down: no new connections, finishing requests in flight");
            let _ = server_stop_tx.send(());
            let _ = started.stop.send(true);
            match tokio::time::timeout(grace, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("requests still in flight after the shutdown timeout; closing them");
                    server.abort();
                    Ok(())
                }
            }
        }
    };
    if let Some(cron) = &started.cron {
        cron.shutdown().await;
    }
    let _ = started.stop.send(true);
    // Workers finish the capture in hand (bounded by the grace period); a job cut short is
    // picked up again after its lease once the daemon is back.
    let background = &mut started.background;
    if tokio::time::timeout(grace, async { while background.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!("background work still running after the shutdown timeout; stopping it");
        background.shutdown().await;
    }
    // Neither may hold the exit up: a browser or a database connection that stopped answering
    // is abandoned after the grace period (the process exit closes it).
    if let Some(capture) = &started.capture
        && tokio::time::timeout(grace, capture.pool.shutdown()).await.is_err()
    {
        tracing::warn!("the browser did not close within the shutdown timeout; leaving it");
    }
    if tokio::time::timeout(grace, services.store.close()).await.is_err() {
        tracing::warn!("database connections did not close within the shutdown timeout; leaving them");
    }
    // The server itself cannot fail (accept errors are waited out); only its task can panic.
    result.map_err(|join| RunError::Serve(std::io::Error::other(join)))
}
