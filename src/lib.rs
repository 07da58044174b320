//! vigil: a self-hosted visual regression monitoring daemon.
//!
//! [`run`] is the composition root: it takes a validated [`config::Config`], a bound listener and
//! a shutdown signal, so tests start the whole daemon on port 0 with nothing global.

#![forbid(unsafe_code)]

pub mod commands;
pub mod config;
pub mod diff;
pub mod http;
pub mod ids;
pub mod store;
pub mod time;

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
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Opens the database named in the config (running migrations) and syncs the monitors into it.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let store = store::connect(
        config.storage.database_url.expose(),
        config.storage.max_connections,
    )
    .await?;
    let summary = store
        .sync_monitors(&monitor_rows(config), Timestamp::now())
        .await?;
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

fn monitor_rows(config: &Config) -> Vec<MonitorUpsert> {
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

/// Runs the daemon until `shutdown` resolves, then stops accepting connections and lets
/// in-flight requests finish (up to `server.shutdown_timeout`).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    for dir in [&config.storage.data_dir, &config.storage.baselines_dir] {
        std::fs::create_dir_all(dir).map_err(|source| RunError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let store = open_store(&config).await?;
    let metrics = http::Metrics::new();
    metrics.monitors.set(config.monitors.len() as i64);
    let state = http::AppState {
        blobs: BlobStore::new(&config.storage.data_dir),
        baselines: BaselineFiles::new(&config.storage.baselines_dir),
        config: Arc::new(config),
        store: store.clone(),
        metrics,
    };
    let grace = state.config.server.shutdown_timeout;
    let app = http::router(state);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = stop_rx.await;
    });
    let mut server = tokio::spawn(async move { server.await });
    let result = tokio::select! {
        r = &mut server => r,
        () = shutdown => {
            tracing::info!(grace = ?grace, "shutting down: no new connections, finishing requests in flight");
            let _ = stop_tx.send(());
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
    store.close().await;
    match result {
        Ok(r) => r.map_err(RunError::Serve),
        Err(join) => Err(RunError::Serve(std::io::Error::other(join))),
    }
}
