//! The ignore API (docs/review.md, *Ignoring a change*): ignore a run's change, list the
//! ignores with their counts, stop one.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DEFAULT_DAYS, IgnoreError};
use crate::http::{ApiError, Auth, Authenticated};
use crate::ids::{IgnoreId, RunId};
use crate::store::{Ignore, Store};
use crate::time::Timestamp;

#[derive(Clone)]
pub struct IgnoreApi {
    pub store: Arc<dyn Store>,
    pub auth: Auth,
}

impl FromRef<IgnoreApi> for Auth {
    fn from_ref(state: &IgnoreApi) -> Auth {
        state.auth.clone()
    }
}

pub fn router(state: IgnoreApi) -> Router {
    Router::new()
        .route("/api/runs/{id}/ignore", post(ignore))
        .route("/api/ignores", get(list))
        .route("/api/ignores/{id}", delete(remove))
        .with_state(state)
}

impl From<IgnoreError> for ApiError {
    fn from(e: IgnoreError) -> Self {
        match e {
            IgnoreError::NoSuchRun => ApiError::NotFound("no such run"),
            IgnoreError::Store(s) => ApiError::Store(s),
            IgnoreError::Days => ApiError::Invalid { field: "days".into(), message: e.to_string() },
            other => ApiError::Conflict { code: other.code(), message: other.to_string() },
        }
    }
}

/// An ignore as the API shows it.
pub fn view(i: &Ignore, now: Timestamp) -> Value {
    json!({
        "id": i.id, "monitor": i.monitor, "viewport": i.viewport, "description": i.description,
        "fingerprint": i.fingerprint, "diff_pixels": i.diff_pixels,
        "until": i.until.to_string(), "active": i.until.millis() > now.millis(), "created_by": i.created_by,
        "created_at": i.created_at.to_string(), "run_id": i.run_id, "matched": i.matched,
        "last_matched_at": i.last_matched_at.map(|t| t.to_string()),
    })
}

#[derive(Deserialize, Default)]
struct IgnoreBody {
    days: Option<u32>,
    by: Option<String>,
}

async fn ignore(
    auth: Authenticated,
    State(state): State<IgnoreApi>,
    Path(id): Path<String>,
    body: Option<Json<IgnoreBody>>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let by = state.auth.actor(auth.index, body.by.as_deref());
    let run: RunId = id.parse().map_err(|_| ApiError::NotFound("no such run"))?;
    let ignore = super::ignore_run(&*state.store, &run, body.days.unwrap_or(DEFAULT_DAYS), &by).await?;
    Ok(Json(json!({ "ignore": view(&ignore, Timestamp::now()) })))
}

async fn list(_: Authenticated, State(state): State<IgnoreApi>) -> Result<Json<Value>, ApiError> {
    let now = Timestamp::now();
    let ignores = super::listed(&*state.store, now).await?;
    Ok(Json(json!({ "ignores": ignores.iter().map(|i| view(i, now)).collect::<Vec<_>>() })))
}

async fn remove(
    _: Authenticated,
    State(state): State<IgnoreApi>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: IgnoreId = id.parse().map_err(|_| ApiError::NotFound("no such ignore"))?;
    match state.store.remove_ignore(&id, Timestamp::now()).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound("no such ignore")),
    }
}
