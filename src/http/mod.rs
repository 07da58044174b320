//! HTTP plumbing, and nothing of the features: the outgoing client, one API error type, the
//! authentication extractors, health and metrics, and the layers every route gets. Each feature
//! owns its routes and its state; the composition root ([`crate::app`]) merges the routers of the
//! roles it runs and hands them to [`router`].

pub mod auth;
pub mod client;
pub mod error;
mod health;
pub mod metrics;
pub mod rate_limit;
pub mod server;
pub mod session;

use std::sync::Arc;

use axum::Router;

pub use auth::{Auth, Authenticated};
pub use error::ApiError;
pub use metrics::Metrics;

use crate::disk::DiskHealth;
use crate::store::Store;

/// The features' routes with health and metrics (served by every role), and the request metrics
/// layer over all of them.
pub fn router(features: Router, store: Arc<dyn Store>, disk: DiskHealth, metrics: Arc<Metrics>) -> Router {
    features
        .merge(health::router(store, disk))
        .merge(metrics::router(metrics.clone()))
        .layer(axum::middleware::from_fn(error::uniform))
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
}
