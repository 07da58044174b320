//! HTTP plumbing: the shared state, the merge of the feature routers, and the layers every route
//! gets. Features own their routes; this module only assembles them.

pub mod auth;
pub mod error;
mod health;
pub mod metrics;
pub mod rate_limit;

use std::sync::Arc;

use axum::Router;

pub use error::ApiError;
pub use metrics::Metrics;

use crate::config::Config;
use crate::store::Store;
use crate::store::blobs::{BaselineFiles, BlobStore};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub baselines: BaselineFiles,
    pub metrics: Arc<Metrics>,
    pub capture: Arc<crate::capture::CaptureService>,
    /// Keys that verify incoming capture webhooks: the current secret first, then previous ones.
    pub webhook_keys: Arc<Vec<crate::webhook::signing::SigningKey>>,
    /// Woken when a new capture webhook is stored, for the processor.
    pub webhook_received: Arc<tokio::sync::Notify>,
    /// The monitors in force; replaced on reload (`config.monitors` is the list at start).
    pub monitors: crate::config::LiveMonitors,
    /// `webhook.rate_limit` for `POST /hooks/capture`; `None` when off.
    pub webhook_limiter: Option<Arc<rate_limit::RateLimiter>>,
    /// `POST /hooks/slack` (needs `slack.signing_secret`).
    pub slack_hooks: Option<Arc<crate::review::slack::SlackHooks>>,
    /// Signs web UI session cookies and CSRF tokens.
    pub ui_key: crate::webhook::signing::SigningKey,
    /// Submits captures for runs ("run now").
    pub submitter: Arc<crate::scheduler::Submitter>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(crate::capture::router())
        .merge(crate::webhook::receiver::router())
        .merge(crate::pipeline::api::router())
        .merge(crate::review::api::router())
        .merge(crate::review::slack::router())
        .merge(crate::ui::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}
