//! The monitors and runs API (docs/architecture.md §8): list monitors with their latest verdicts, a monitor's
//! recent runs, "run now", one run with its verdict, and the run's three images.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::runs::Runs;
use crate::config::{LiveMonitors, Monitor};
use crate::http::{ApiError, Auth, Authenticated};
use crate::ids::RunId;
use crate::review::RunView;
use crate::store::blobs::{BlobError, BlobStore};
use crate::store::{Mute, Run, Store, Trigger};
use crate::time::Timestamp;

/// Runs shown per page of a monitor's history.
const DEFAULT_RUNS: i64 = 20;
const MAX_RUNS: i64 = 200;
/// The longest mute: one further is cut to this.
const MAX_MUTE: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

/// What the monitors and runs API reaches.
#[derive(Clone)]
pub struct MonitorsApi {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    /// The monitors in force; replaced on reload.
    pub monitors: LiveMonitors,
    /// Starts runs ("run now").
    pub runs: Arc<Runs>,
    pub auth: Auth,
}

impl FromRef<MonitorsApi> for Auth {
    fn from_ref(state: &MonitorsApi) -> Auth {
        state.auth.clone()
    }
}

pub fn router(state: MonitorsApi) -> Router {
    Router::new()
        .route("/api/monitors", get(list_monitors))
        .route("/api/monitors/{name}", get(show_monitor))
        .route("/api/monitors/{name}/runs", post(run_now))
        .route("/api/monitors/{name}/mute", post(mute).delete(unmute))
        .route("/api/runs/{id}", get(show_run))
        .route("/api/runs/{id}/{image}", get(run_image))
        .with_state(state)
}

fn monitor_view(m: &Monitor, mute: Option<&Mute>) -> Value {
    json!({
        "name": m.name,
        "url": m.url,
        "enabled": m.enabled,
        "schedule": m.schedule.source,
        "timezone": m.schedule.tz.name(),
        "quiet_until": m.quiet_at(chrono::Utc::now()).map(|(end, _)| Timestamp::from_datetime(end)),
        "viewports": m.viewports.iter().map(|v| v.key()).collect::<Vec<_>>(),
        "threshold": m.threshold,
        "muted_until": mute.map(|m| m.until),
        "muted_by": mute.map(|m| &m.muted_by),
    })
}

fn find(state: &MonitorsApi, name: &str) -> Result<Monitor, ApiError> {
    state.monitors.find_str(name).ok_or(ApiError::NotFound("no such monitor"))
}

async fn list_monitors(_: Authenticated, State(state): State<MonitorsApi>) -> Result<Json<Value>, ApiError> {
    let monitors = state.monitors.current();
    let mutes = state.store.active_mutes(Timestamp::now()).await?;
    let mut out = Vec::with_capacity(monitors.len());
    for m in monitors.iter() {
        let mut view = monitor_view(m, mutes.iter().find(|x| x.monitor == m.name));
        let latest = state.store.list_runs(&m.name, None, m.viewports.len() as i64).await?;
        view["latest"] = json!(latest.iter().map(RunView::new).collect::<Vec<_>>());
        out.push(view);
    }
    Ok(Json(json!({ "monitors": out })))
}

#[derive(Deserialize)]
struct Page {
    /// Runs created before this run's creation (the cursor is the last id of the previous page).
    before: Option<RunId>,
    limit: Option<i64>,
}

async fn show_monitor(
    _: Authenticated,
    State(state): State<MonitorsApi>,
    Path(name): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let m = find(&state, &name)?;
    let before = match &page.before {
        Some(id) => Some(state.store.get_run(id).await?.ok_or(ApiError::NotFound("no such run"))?.created_at),
        None => None,
    };
    let limit = page.limit.unwrap_or(DEFAULT_RUNS).clamp(1, MAX_RUNS);
    let runs = state.store.list_runs(&m.name, before, limit).await?;
    let mute = state.store.mute_of(&m.name, Timestamp::now()).await?;
    let mut view = monitor_view(&m, mute.as_ref());
    view["runs"] = json!(runs.iter().map(RunView::new).collect::<Vec<_>>());
    Ok(Json(view))
}

/// Run now: one run per viewport, submitted at once. Viewports with a run still pending are
/// skipped; if all are, 409.
async fn run_now(
    _: Authenticated,
    State(state): State<MonitorsApi>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let m = find(&state, &name)?;
    if let Some((condition, why)) = state.runs.disk.refusal() {
        return Err(ApiError::Unavailable {
            code: condition.code(),
            message: format!("no capture starts now: {why}"),
        });
    }
    let run_ids = state.runs.fire(&m, Timestamp::now(), Trigger::Manual).await?;
    if run_ids.is_empty() {
        return Err(ApiError::Conflict {
            code: "run_pending",
            message: format!("{name} has a run pending for every viewport; wait for it to finish"),
        });
    }
    Ok((axum::http::StatusCode::ACCEPTED, Json(json!({ "run_ids": run_ids }))).into_response())
}

#[derive(Deserialize)]
struct MuteRequest {
    /// RFC 3339.
    until: String,
    by: Option<String>,
}

/// Mutes the monitor's alerts (Slack, events) until `until`; its runs go on.
async fn mute(
    auth: Authenticated,
    State(state): State<MonitorsApi>,
    Path(name): Path<String>,
    Json(body): Json<MuteRequest>,
) -> Result<Json<Value>, ApiError> {
    let m = find(&state, &name)?;
    let until = chrono::DateTime::parse_from_rfc3339(body.until.trim())
        .ok()
        .map(|t| Timestamp::from_datetime(t.to_utc()))
        .ok_or_else(|| ApiError::Invalid {
            field: "until".into(),
            message: "expected an RFC 3339 time, e.g. 2026-12-02T09:00:00Z".into(),
        })?;
    // A time already past ends the mute; one further than a year is a year.
    let now = Timestamp::now();
    let until = until.min(now.plus(MAX_MUTE));
    if until <= now {
        state.store.unmute(&m.name).await?;
        let by = state.auth.actor(auth.index, body.by.as_deref());
        return Ok(Json(json!({"monitor": m.name, "muted_until": now, "muted_by": by})));
    }
    let mute = Mute {
        monitor: m.name.clone(),
        until,
        muted_by: state.auth.actor(auth.index, body.by.as_deref()),
        created_at: Timestamp::now(),
    };
    state.store.mute(&mute).await?;
    tracing::info!(monitor = %m.name, %until, by = %mute.muted_by, "monitor muted");
    Ok(Json(json!({"monitor": m.name, "muted_until": until, "muted_by": mute.muted_by})))
}

/// Ends a mute at once.
async fn unmute(
    _: Authenticated,
    State(state): State<MonitorsApi>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = find(&state, &name)?;
    let was_muted = state.store.mute_of(&m.name, Timestamp::now()).await?.is_some();
    state.store.unmute(&m.name).await?;
    Ok(Json(json!({"monitor": m.name, "was_muted": was_muted})))
}

async fn show_run(
    _: Authenticated,
    State(state): State<MonitorsApi>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let run = load_run(&state, &id).await?;
    let mut view = RunView::new(&run);
    let alerts = state.store.alerts_for_run(&run.id).await?;
    if let Some(change) = alerts.iter().find(|a| a.kind == crate::store::AlertKind::Changed) {
        let group = state.store.alert_group(&change.id).await?;
        if group.len() > 1 {
            view.group = Some(group.into_iter().map(|a| a.run_id.to_string()).collect());
        }
    }
    Ok(Json(view))
}

async fn load_run(state: &MonitorsApi, id: &str) -> Result<Run, ApiError> {
    let id: RunId = id.parse().map_err(|_| ApiError::NotFound("no such run"))?;
    state.store.get_run(&id).await?.ok_or(ApiError::NotFound("no such run"))
}

/// `baseline.png`, `current.png` or `diff.png` of a run: the images as they were when it was
/// judged (the baseline it was compared with, not today's).
async fn run_image(
    _: Authenticated,
    State(state): State<MonitorsApi>,
    Path((id, image)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let run = load_run(&state, &id).await?;
    let sha = match image.as_str() {
        "baseline.png" => run.baseline_sha256,
        "current.png" => run.current_sha256,
        "diff.png" => run.diff_sha256,
        _ => return Err(ApiError::NotFound("no such image (baseline.png, current.png, diff.png)")),
    }
    .ok_or(ApiError::NotFound("this run has no such image"))?;
    let bytes = state.blobs.get(&sha).await.map_err(|e| match e {
        BlobError::NotFound(_) | BlobError::InvalidDigest => ApiError::NotFound("the image has been pruned"),
        e => {
            tracing::error!(error = ?e, "run image unreadable");
            ApiError::Unavailable {
                code: "storage_error",
                message: "the image store cannot be read now".into(),
            }
        }
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            // Content-addressed: a run's image never changes.
            (header::CACHE_CONTROL, "private, max-age=86400, immutable"),
        ],
        bytes,
    )
        .into_response())
}
