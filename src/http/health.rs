//! `/healthz` (the process answers) and `/readyz` (its database takes a write, no volume it
//! writes is low on space, read-only or failing: see [`crate::disk`], and its blob store — an
//! S3 bucket — answers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::disk::DiskHealth;
use crate::store::Store;
use crate::store::blobs::BlobStore;
use crate::time::Timestamp;

#[derive(Clone)]
struct Ready {
    store: Arc<dyn Store>,
    disk: DiskHealth,
    agreement: crate::config::Agreement,
    /// The last write check and its outcome: `/readyz` needs no token, so a client polling it
    /// must not turn into a database write per request.
    written: Arc<tokio::sync::Mutex<Option<WriteCheck>>>,
    blobs: BlobStore,
    /// The last look at the blob store, and whether it answered: at most one request to the
    /// bucket per [`BLOB_CHECK_EVERY`], however often `/readyz` is polled.
    blobs_checked: Arc<tokio::sync::Mutex<Option<(Instant, bool)>>>,
}

/// How long a look at the blob store stands, and how long it may take.
const BLOB_CHECK_EVERY: Duration = Duration::from_secs(15);
const BLOB_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// When the database last took (`None`) or refused (its error code) a write.
type WriteCheck = (Instant, Option<&'static str>);

/// How long a write check's outcome stands.
const WRITE_CHECK_EVERY: Duration = Duration::from_secs(5);

pub fn router(
    store: Arc<dyn Store>,
    disk: DiskHealth,
    agreement: crate::config::Agreement,
    blobs: BlobStore,
) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(Ready {
        store,
        disk,
        agreement,
        written: Default::default(),
        blobs,
        blobs_checked: Default::default(),
    })
}

impl Ready {
    /// Whether the blob store answers (a directory always does here: the disk checks judge it).
    async fn blobs_answer(&self) -> bool {
        let mut last = self.blobs_checked.lock().await;
        if let Some((at, ok)) = *last
            && at.elapsed() < BLOB_CHECK_EVERY
        {
            return ok;
        }
        let ok = match tokio::time::timeout(BLOB_CHECK_TIMEOUT, self.blobs.check()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(blobs = %self.blobs.location(), error = %e.detail(), "readiness check: the blob store refuses");
                false
            }
            Err(_) => {
                tracing::warn!(blobs = %self.blobs.location(), timeout = ?BLOB_CHECK_TIMEOUT, "readiness check: the blob store does not answer");
                false
            }
        };
        *last = Some((Instant::now(), ok));
        ok
    }

    /// The database's error code, if it cannot be read now (asked every time) or written
    /// (asked at most every [`WRITE_CHECK_EVERY`]).
    async fn database(&self) -> Option<&'static str> {
        if let Err(e) = self.store.ping().await {
            tracing::warn!(error = ?e, "readiness check: database unreachable");
            return Some(e.code());
        }
        let mut last = self.written.lock().await;
        if let Some((at, outcome)) = *last
            && at.elapsed() < WRITE_CHECK_EVERY
        {
            return outcome;
        }
        let outcome = match self.store.check_writable(Timestamp::now()).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = ?e, "readiness check: the database does not take writes");
                Some(e.code())
            }
        };
        *last = Some((Instant::now(), outcome));
        outcome
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(ready): State<Ready>) -> (StatusCode, Json<Value>) {
    let database = ready.database().await;
    let disk = ready.disk.current();
    let storage = match disk.trouble() {
        None => json!({ "status": "ok", "volumes": disk.volumes }),
        Some(v) => json!({ "status": v.condition.code(), "message": v.describe(), "volumes": disk.volumes }),
    };
    let blobs_ok = ready.blobs_answer().await;
    // Unauthenticated: the bucket's name and the store's answer are in the log, not here.
    let blobs = match blobs_ok {
        true => json!({ "status": "ok" }),
        false => {
            json!({ "status": "unreachable", "message": "the blob store does not answer; the log says why" })
        }
    };
    let ready_now = database.is_none() && disk.trouble().is_none() && blobs_ok;
    // A replica whose monitors differ from the others' still serves; it leaves those monitors'
    // runs to the replicas that agree, and says so here.
    let disagreeing = ready.agreement.disagreeing();
    let config = match disagreeing.is_empty() {
        true => json!({ "status": "ok" }),
        false => json!({
            "status": "disagrees",
            "message": "these monitors are defined differently here than in the database (another replica's config); their runs are left to the replicas that agree",
            "monitors": disagreeing,
        }),
    };
    let body = json!({
        "status": if ready_now { "ready" } else { "unavailable" },
        "database": database.unwrap_or("ok"),
        "storage": storage,
        "blobs": blobs,
        "config": config,
    });
    match ready_now {
        true => (StatusCode::OK, Json(body)),
        false => (StatusCode::SERVICE_UNAVAILABLE, Json(body)),
    }
}
