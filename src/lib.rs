//! vigil: a self-hosted visual regression monitoring daemon.
//!
//! [`run`] is the composition root: it takes a validated [`config::Config`], a bound listener and
//! a shutdown signal, so tests start the whole daemon on port 0 with nothing global.

#![forbid(unsafe_code)]

pub mod alert;
pub mod capture;
pub mod commands;
pub mod config;
pub mod diff;
pub mod http;
pub mod ids;
pub mod pipeline;
pub mod reload;
pub mod review;
pub mod scheduler;
pub mod store;
pub mod time;
pub mod ui;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use config::Config;
use store::blobs::{BaselineFiles, BlobStore};
use store::{MonitorUpsert, Store, StoreError};
use time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot open the database")]
    Store(#[from] StoreError),
    #[error("cannot create directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the scheduler")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// reqwest and sqlx both use rustls: choose its crypto provider (ring) once for the process.
/// Call before building any HTTP client; calling again is harmless.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Opens the database named in the config (running migrations) and syncs the monitors into it.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let store = store::connect(config.storage.database_url.expose(), config.storage.max_connections).await?;
    let summary = store.sync_monitors(&monitor_rows(config), Timestamp::now()).await?;
    tracing::info!(
        backend = ?store.backend(),
        monitors = config.monitors.len(),
        added = summary.added,
        updated = summary.updated,
        removed = summary.removed,
        "database ready"
    );
    Ok(store)
}

pub(crate) fn monitor_rows(config: &Config) -> Vec<MonitorUpsert> {
    config
        .monitors
        .iter()
        .map(|m| MonitorUpsert {
            name: m.name.clone(),
            url: m.url.to_string(),
            config: serde_json::to_string(m).expect("a monitor serialises"),
            enabled: m.enabled,
        })
        .collect()
}

/// The key that signs outgoing webhooks: `webhook.secret`, or one generated on first start and
/// kept in `data_dir/webhook-secret` (enough while sender and receiver are this one process).
fn signing_key(config: &Config) -> Result<webhook::signing::SigningKey, RunError> {
    use webhook::signing::SigningKey;
    if let Some(secret) = &config.webhook.secret {
        return Ok(SigningKey::from_secret(secret.expose()).expect("validated with the config"));
    }
    stored_key(config, "webhook-secret")
}

/// A key kept in `data_dir/<name>`, generated on first start.
fn stored_key(config: &Config, name: &str) -> Result<webhook::signing::SigningKey, RunError> {
    use webhook::signing::SigningKey;
    let path = config.storage.data_dir.join(name);
    let io = |source| RunError::DataDir { path: path.clone(), source };
    let secret = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = SigningKey::generate_secret();
            store::blobs::write_atomic(&path, s.as_bytes()).map_err(|e| match e {
                store::blobs::BlobError::Io { source, .. } => io(source),
                other => io(std::io::Error::other(other.to_string())),
            })?;
            s
        }
        Err(e) => return Err(io(e)),
    };
    SigningKey::from_secret(&secret).map_err(|_| io(std::io::Error::other("invalid secret in the file")))
}

/// Runs the daemon until `shutdown` resolves, then stops accepting connections and lets
/// in-flight requests finish (up to `server.shutdown_timeout`).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with(config, listener, shutdown, RunOptions::default()).await
}

/// How [`run_with`] differs from the daemon.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Fire monitors on their cron (off for `vigil run --once`, which starts the runs itself).
    pub schedule: bool,
    /// The file the config came from: reloaded on SIGHUP and when its content changes.
    pub config_path: Option<std::path::PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { schedule: true, config_path: None }
    }
}

/// [`run`], with options.
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: RunOptions,
) -> Result<(), RunError> {
    #[cfg(unix)]
    let hangup = options.config_path.as_ref().and_then(|_| reload::hangup_signal());
    let at_start = config.clone();
    let mut config = config;
    // Listening on port 0 (tests): the default public URL names the port actually bound.
    if config.server.public_url.port() == Some(0)
        && let Ok(addr) = listener.local_addr()
    {
        config.server.public_url = config::default_public_url(addr);
    }
    for dir in [&config.storage.data_dir, &config.storage.baselines_dir] {
        std::fs::create_dir_all(dir).map_err(|source| RunError::DataDir { path: dir.clone(), source })?;
    }
    init_tls();
    let store = open_store(&config).await?;
    let metrics = http::Metrics::new();
    metrics.monitors.set(config.monitors.len() as i64);
    let key = signing_key(&config)?;
    // Its own secret: the webhook secret may be shared with capture providers.
    let ui_key = stored_key(&config, "ui-secret")?;
    let mut webhook_keys = vec![key.clone()];
    for previous in &config.webhook.previous_secrets {
        webhook_keys.push(
            webhook::signing::SigningKey::from_secret(previous.expose()).expect("validated with the config"),
        );
    }
    let asset_urls = capture::AssetUrls {
        base: config.server.public_url.clone(),
        key: key.derive("vigil asset urls"),
        ttl: config.capture.asset_ttl,
    };
    let pool = capture::browser::BrowserPool::new(capture::browser::BrowserSettings {
        chromium_path: config.capture.chromium_path.clone(),
        profile_root: config.storage.data_dir.clone(),
        recycle_after: config.capture.recycle_after,
    });
    let capture_metrics = capture::CaptureMetrics::new(&metrics, &pool);
    let service = capture::CaptureService::new(asset_urls, pool, capture_metrics);
    let blobs = BlobStore::new(&config.storage.data_dir);
    let baselines = BaselineFiles::new(&config.storage.baselines_dir);
    let reviewer =
        review::Reviewer { store: store.clone(), blobs: blobs.clone(), baselines: baselines.clone() };
    match review::sync_files(&reviewer, review::SYNC_AT_START).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(files = n, "baseline files repaired from the database"),
        Err(e) => tracing::error!(error = %e, "cannot check the baseline files"),
    }
    // The scheduler calls the capture API like any client; it gets a token of its own.
    let internal_token = format!("vigil-internal-{}", hex::encode(rand::random::<[u8; 24]>()));
    config.auth.api_tokens.push(config::Secret::new(internal_token.clone()));
    let webhook_rate_limit = config.webhook.rate_limit;
    let config = Arc::new(config);
    let monitors = config::LiveMonitors::new(config.monitors.clone());
    let delivery_ready = Arc::new(tokio::sync::Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut background = tokio::task::JoinSet::new();
    let worker_settings = Arc::new(capture::worker::WorkerSettings {
        config: config.clone(),
        monitors: monitors.clone(),
        poll: std::time::Duration::from_millis(500),
        delivery_ready: delivery_ready.clone(),
    });
    if config.capture.provider.is_none() {
        for i in 0..config.capture.workers {
            let worker = capture::worker::Worker {
                id: format!("{}-{}-{i}", hostname(), std::process::id()),
                store: store.clone(),
                blobs: blobs.clone(),
                service: service.clone(),
                settings: worker_settings.clone(),
            };
            background.spawn(worker.run(stop_rx.clone()));
        }
    }
    let outcomes = prometheus_client::metrics::family::Family::default();
    metrics.register("webhook_deliveries", "Webhook delivery attempts by outcome", outcomes.clone());
    let deliverer = webhook::delivery::Deliverer {
        store: store.clone(),
        key,
        client: webhook::delivery::client(config.webhook.timeout),
        schedule: config.webhook.retry_schedule.clone(),
        timeout: config.webhook.timeout,
        ready: delivery_ready,
        outcomes,
    };
    background.spawn(deliverer.run(stop_rx.clone()));
    let webhook_received = Arc::new(tokio::sync::Notify::new());
    let submitter = Arc::new(scheduler::Submitter {
        store: store.clone(),
        results: webhook_received.clone(),
        client: webhook::delivery::client(std::time::Duration::from_secs(15)),
        capture_url: match &config.capture.provider {
            Some(p) => p.url.join("v1/capture").expect("valid URL").to_string(),
            None => config.server.public_url.join("v1/capture").expect("valid URL").to_string(),
        },
        token: match &config.capture.provider {
            Some(p) => p.api_key.expose().to_owned(),
            None => internal_token,
        },
        webhook_url: config.server.public_url.join("hooks/capture").expect("valid URL").to_string(),
    });
    let alert_ready = Arc::new(tokio::sync::Notify::new());
    let verdicts = prometheus_client::metrics::family::Family::default();
    metrics.register("runs_judged", "Runs judged, by verdict", verdicts.clone());
    let processor = pipeline::Processor {
        store: store.clone(),
        blobs: blobs.clone(),
        baselines: baselines.clone(),
        config: config.clone(),
        monitors: monitors.clone(),
        client: webhook::delivery::client(std::time::Duration::from_secs(30)),
        ready: webhook_received.clone(),
        submitter: submitter.clone(),
        alert_ready: alert_ready.clone(),
        verdicts,
    };
    background.spawn(processor.run(stop_rx.clone()));
    let reconciler = pipeline::Reconciler {
        store: store.clone(),
        submitter: submitter.clone(),
        config: config.clone(),
        monitors: monitors.clone(),
        webhook_received: webhook_received.clone(),
    };
    background.spawn(reconciler.run(stop_rx.clone()));
    let pruner = store::retention::Pruner {
        store: store.clone(),
        blobs: blobs.clone(),
        retention: config.storage.retention,
    };
    background.spawn(pruner.run(stop_rx.clone()));
    let alert_outcomes = prometheus_client::metrics::family::Family::default();
    metrics.register("alerts", "Alert send attempts by outcome", alert_outcomes.clone());
    let slack_sender = config
        .slack
        .as_ref()
        .map(|s| Arc::new(alert::SlackSender::new(s, webhook::delivery::client(s.timeout))));
    let slack_hooks = config
        .slack
        .as_ref()
        .and_then(|s| review::slack::SlackHooks::new(s, slack_sender.clone()))
        .map(Arc::new);
    let alerter = alert::Alerter {
        store: store.clone(),
        blobs: blobs.clone(),
        slack: slack_sender,
        ready: alert_ready,
        outcomes: alert_outcomes,
    };
    background.spawn(alerter.run(stop_rx.clone()));
    let state = http::AppState {
        blobs,
        baselines,
        config,
        store: store.clone(),
        metrics,
        capture: service.clone(),
        webhook_keys: Arc::new(webhook_keys),
        webhook_received,
        monitors: monitors.clone(),
        submitter: submitter.clone(),
        webhook_limiter: http::rate_limit::RateLimiter::new(webhook_rate_limit).map(Arc::new),
        slack_hooks,
        ui_key,
    };
    let cron = match options.schedule {
        true => Some(Arc::new(scheduler::Scheduler::start(monitors.clone(), submitter).await?)),
        false => None,
    };
    if let Some(path) = options.config_path.clone() {
        let outcomes = prometheus_client::metrics::family::Family::default();
        state.metrics.register("config_reloads", "Configuration reloads by outcome", outcomes.clone());
        let reloader = reload::Reloader {
            outcomes,
            path,
            at_start,
            monitors,
            scheduler: cron.clone(),
            store: store.clone(),
            metrics: state.metrics.clone(),
            #[cfg(unix)]
            hangup,
        };
        background.spawn(reloader.run(stop_rx.clone()));
    }
    let grace = state.config.server.shutdown_timeout;
    let app = http::router(state);

    let (server_stop_tx, server_stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The peer address, for the receiver's per-address rate limit.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = server_stop_rx.await;
    });
    let mut server = tokio::spawn(async move { server.await });
    let result = tokio::select! {
        r = &mut server => r,
        () = shutdown => {
            tracing::info!(grace = ?grace, "shutting down: no new connections, finishing requests in flight");
            let _ = server_stop_tx.send(());
            let _ = stop_tx.send(true);
            match tokio::time::timeout(grace, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("requests still in flight after the shutdown timeout; closing them");
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    if let Some(cron) = &cron {
        cron.shutdown().await;
    }
    let _ = stop_tx.send(true);
    // Workers finish the capture in hand (bounded by the grace period); a job cut short is
    // picked up again after its lease once the daemon is back.
    if tokio::time::timeout(grace, async { while background.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!("background work still running after the shutdown timeout; stopping it");
        background.shutdown().await;
    }
    // Neither may hold the exit up: a browser or a database connection that stopped answering
    // is abandoned after the grace period (the process exit closes it).
    if tokio::time::timeout(grace, service.pool.shutdown()).await.is_err() {
        tracing::warn!("the browser did not close within the shutdown timeout; leaving it");
    }
    if tokio::time::timeout(grace, store.close()).await.is_err() {
        tracing::warn!("database connections did not close within the shutdown timeout; leaving them");
    }
    match result {
        Ok(r) => r.map_err(RunError::Serve),
        Err(join) => Err(RunError::Serve(std::io::Error::other(join))),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "vigil".into())
}
