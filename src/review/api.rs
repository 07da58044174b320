//! The review API (docs/architecture.md §8): approve, reject, bulk approve, revert, and the changes awaiting
//! review.

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ReviewError, Reviewer, RunView};
use crate::config::MonitorName;
use crate::http::{ApiError, Auth, Authenticated};
use crate::ids::RunId;
use crate::store::{Baseline, BaselineSource};

const MAX_BULK: usize = 1000;

/// What the review API reaches.
#[derive(Clone)]
pub struct ReviewApi {
    pub reviewer: Reviewer,
    pub auth: Auth,
}

impl FromRef<ReviewApi> for Auth {
    fn from_ref(state: &ReviewApi) -> Auth {
        state.auth.clone()
    }
}

pub fn router(state: ReviewApi) -> Router {
    Router::new()
        .route("/api/runs/{id}/approve", post(approve))
        .route("/api/runs/{id}/reject", post(reject))
        .route("/api/runs/approve", post(approve_many))
        .route("/api/baselines/{monitor}/{viewport}/revert", post(revert))
        .route("/api/changes", get(changes))
        .with_state(state)
}

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::NoSuchRun => ApiError::NotFound("no such run"),
            ReviewError::NoSuchViewport => ApiError::NotFound("no such viewport"),
            ReviewError::Store(s) => ApiError::Store(s),
            ReviewError::File(f) => match f.storage_fault() {
                // The disk is full or failing. An approval is recorded before its file is written;
                // the file is rewritten from the database when the disk recovers (and at start).
                Some(code) => {
                    tracing::warn!(error = %crate::http::client::error_chain(&f), "cannot write the baseline file");
                    ApiError::Unavailable {
                        code,
                        message: format!(
                            "cannot read or write the baseline image ({code}); if the run shows approved, its baseline file is rewritten once the disk recovers"
                        ),
                    }
                }
                None => {
                    tracing::error!(error = %f, "cannot write the baseline file");
                    ApiError::Internal
                }
            },
            other => ApiError::Conflict { code: other.code(), message: other.to_string() },
        }
    }
}

/// Who acted: the token's name (`auth.api_tokens: [{name, token}]`), else the token by
/// fingerprint (never the token itself); with the optional `by` of the body in front, which the
/// token's holder says and vigil cannot check.
fn actor(state: &ReviewApi, auth: Authenticated, by: Option<&str>) -> String {
    state.auth.actor(auth.index, by)
}

#[derive(Deserialize, Default)]
struct Who {
    by: Option<String>,
}

fn baseline_view(b: &Baseline) -> Value {
    json!({
        "id": b.id, "monitor": b.monitor, "viewport": b.viewport, "sha256": b.sha256, "run_id": b.run_id,
        "source": b.source, "approved_by": b.approved_by, "created_at": b.created_at.to_string(),
    })
}

fn parse_run(id: &str) -> Result<RunId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound("no such run"))
}

async fn approve(
    auth: Authenticated,
    State(state): State<ReviewApi>,
    Path(id): Path<String>,
    body: Option<Json<Who>>,
) -> Result<Json<Value>, ApiError> {
    let by = actor(&state, auth, body.as_ref().and_then(|b| b.by.as_deref()));
    let a = state.reviewer.approve(&parse_run(&id)?, &by, BaselineSource::Api).await?;
    let message = match (a.already, a.older_than_latest) {
        (true, _) => "this capture is the baseline already",
        (false, true) => "approved; note that a newer run exists — this older capture is the baseline now",
        (false, false) => "approved as the new baseline",
    };
    Ok(Json(json!({
        "run": RunView::new(&a.run),
        "baseline": baseline_view(&a.baseline),
        "already_approved": a.already,
        "older_than_latest": a.older_than_latest,
        "message": message,
    })))
}

async fn reject(
    auth: Authenticated,
    State(state): State<ReviewApi>,
    Path(id): Path<String>,
    body: Option<Json<Who>>,
) -> Result<Json<Value>, ApiError> {
    let by = actor(&state, auth, body.as_ref().and_then(|b| b.by.as_deref()));
    let run = state.reviewer.reject(&parse_run(&id)?, &by).await?;
    Ok(Json(json!({ "run": RunView::new(&run) })))
}

#[derive(Deserialize)]
struct Many {
    run_ids: Vec<String>,
    by: Option<String>,
}

/// Approves each run in order; one failing does not stop the others. Answers which were
/// approved and why the others were not.
async fn approve_many(
    auth: Authenticated,
    State(state): State<ReviewApi>,
    Json(body): Json<Many>,
) -> Result<Json<Value>, ApiError> {
    if body.run_ids.len() > MAX_BULK {
        return Err(ApiError::Invalid {
            field: "run_ids".into(),
            message: format!("at most {MAX_BULK} runs per request"),
        });
    }
    let by = actor(&state, auth, body.by.as_deref());
    let reviewer = &state.reviewer;
    let (mut approved, mut errors) = (Vec::new(), Vec::new());
    for id in &body.run_ids {
        let result = match id.parse::<RunId>() {
            Ok(run) => reviewer.approve(&run, &by, BaselineSource::Api).await,
            Err(_) => Err(ReviewError::NoSuchRun),
        };
        match result {
            Ok(a) => approved.push(
                json!({"id": id, "already_approved": a.already, "older_than_latest": a.older_than_latest}),
            ),
            Err(ReviewError::Store(e)) => return Err(ApiError::Store(e)),
            Err(e) => errors.push(json!({"id": id, "code": e.code(), "message": e.to_string()})),
        }
    }
    Ok(Json(json!({ "approved": approved, "errors": errors })))
}

async fn revert(
    auth: Authenticated,
    State(state): State<ReviewApi>,
    Path((monitor, viewport)): Path<(String, String)>,
    body: Option<Json<Who>>,
) -> Result<Json<Value>, ApiError> {
    let monitor: MonitorName = monitor.parse().map_err(|_| ApiError::NotFound("no such monitor"))?;
    let by = actor(&state, auth, body.as_ref().and_then(|b| b.by.as_deref()));
    let baseline = state.reviewer.revert(&monitor, &viewport, &by).await?;
    Ok(Json(json!({ "baseline": baseline_view(&baseline) })))
}

#[derive(Deserialize)]
struct ChangesQuery {
    monitor: Option<String>,
    /// Changes created before this run (the last id of the previous page).
    before: Option<RunId>,
    limit: Option<i64>,
}

async fn changes(
    _: Authenticated,
    State(state): State<ReviewApi>,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<Value>, ApiError> {
    let monitor = match &q.monitor {
        Some(m) => Some(m.parse::<MonitorName>().map_err(|_| ApiError::NotFound("no such monitor"))?),
        None => None,
    };
    let before = match &q.before {
        Some(id) => {
            Some(state.reviewer.store.get_run(id).await?.ok_or(ApiError::NotFound("no such run"))?.created_at)
        }
        None => None,
    };
    let runs = state
        .reviewer
        .store
        .list_changes(monitor.as_ref(), before, q.limit.unwrap_or(50).clamp(1, 500))
        .await?;
    Ok(Json(json!({ "changes": runs.iter().map(RunView::new).collect::<Vec<_>>() })))
}
