//! `/healthz` (the process answers) and `/readyz` (its database answers and no volume it writes
//! is low on space, read-only or failing: see [`crate::disk`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::disk::DiskHealth;
use crate::store::Store;

#[derive(Clone)]
struct Ready {
    store: Arc<dyn Store>,
    disk: DiskHealth,
}

pub fn router(store: Arc<dyn Store>, disk: DiskHealth) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Ready { store, disk })
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(ready): State<Ready>) -> (StatusCode, Json<Value>) {
    let database = match ready.store.ping().await {
        Ok(()) => None,
        Err(e) => {
            tracing::warn!(error = ?e, "readiness check: database unreachable");
            Some(e.code())
        }
    };
    let disk = ready.disk.current();
    let storage = match disk.trouble() {
        None => json!({ "status": "ok", "volumes": disk.volumes }),
        Some(v) => json!({ "status": v.condition.code(), "message": v.describe(), "volumes": disk.volumes }),
    };
    let ready_now = database.is_none() && disk.trouble().is_none();
    let body = json!({
        "status": if ready_now { "ready" } else { "unavailable" },
        "database": database.unwrap_or("ok"),
        "storage": storage,
    });
    match ready_now {
        true => (StatusCode::OK, Json(body)),
        false => (StatusCode::SERVICE_UNAVAILABLE, Json(body)),
    }
}
