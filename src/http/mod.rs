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

/// The OpenAPI 3.1 description of every route of every role (kept equal to the routes by the
/// test below).
async fn openapi() -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("openapi.json")).into_response()
}

/// The features' routes with health, metrics and the API's description (served by every role), and the request metrics
/// layer over all of them.
/// Layers, innermost first: the request body's deadline, the one error shape, the metrics (so
/// the 408s and 413s are counted too).
pub fn router(
    features: Router,
    store: Arc<dyn Store>,
    disk: DiskHealth,
    agreement: crate::config::Agreement,
    blobs: crate::store::blobs::BlobStore,
    metrics: Arc<Metrics>,
    body_timeout: std::time::Duration,
) -> Router {
    features
        .merge(health::router(store, disk, agreement, blobs))
        .merge(metrics::router(metrics.clone()))
        .route("/openapi.json", axum::routing::get(openapi))
        .layer(axum::middleware::from_fn_with_state(body_timeout, server::body_deadline))
        .layer(axum::middleware::from_fn(error::uniform))
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Every `.route("path", get(…).post(…))` in the source, as (METHOD, path).
    fn routes_in_code(dir: &Path, found: &mut BTreeSet<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                routes_in_code(&path, found);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices(".route(\"") {
                let rest = &text[at + 8..];
                let route = &rest[..rest.find('"').unwrap()];
                if !route.starts_with('/') {
                    continue; // this very comment
                }
                // The method router: up to the parenthesis that closes `.route(`.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .unwrap()
                    .0;
                let methods = &rest[route.len() + 1..end];
                for method in ["get", "post", "put", "patch", "delete"] {
                    let called = methods.match_indices(&format!("{method}(")).any(|(i, _)| {
                        i == 0
                            || !methods.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && methods.as_bytes()[i - 1] != b'_'
                    });
                    if called {
                        found.insert((method.to_uppercase(), route.to_owned()));
                    }
                }
            }
        }
    }

    /// The OpenAPI document describes exactly the routes the code serves: a route added without
    /// its description, or a description left behind by a removed route, fails here.
    #[test]
    fn the_openapi_document_describes_every_route_and_only_those() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut code = BTreeSet::new();
        routes_in_code(&root.join("src"), &mut code);
        assert!(code.len() > 20, "the route scan found too little: {code:?}");
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let undocumented: Vec<_> = code.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&code).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "undocumented: {undocumented:?}; documented but not served: {stale:?}"
        );
    }
}
