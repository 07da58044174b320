//! The drawn-masks API: list a monitor's drawn masks (with their YAML), draw one, remove one.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{LiveMonitors, MonitorName};
use crate::http::{ApiError, Auth, Authenticated};
use crate::ids::MaskId;
use crate::store::{DrawnMask, Store};
use crate::time::Timestamp;

#[derive(Clone)]
pub struct MasksApi {
    pub store: Arc<dyn Store>,
    pub monitors: LiveMonitors,
    pub auth: Auth,
}

impl FromRef<MasksApi> for Auth {
    fn from_ref(state: &MasksApi) -> Auth {
        state.auth.clone()
    }
}

pub fn router(state: MasksApi) -> Router {
    Router::new()
        .route("/api/monitors/{name}/masks", get(list).post(draw))
        .route("/api/monitors/{name}/masks/{id}", delete(remove))
        .with_state(state)
}

pub fn view(m: &DrawnMask) -> Value {
    json!({
        "id": m.id, "monitor": m.monitor, "viewport": m.viewport, "x": m.x, "y": m.y, "width": m.width,
        "height": m.height, "created_by": m.created_by, "created_at": m.created_at.to_string(),
    })
}

/// The monitor, if it is configured now.
fn monitor(state: &MasksApi, name: &str) -> Result<MonitorName, ApiError> {
    state.monitors.find_str(name).map(|m| m.name).ok_or(ApiError::NotFound("no such monitor"))
}

async fn list(
    _: Authenticated,
    State(state): State<MasksApi>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let name = monitor(&state, &name)?;
    let masks = state.store.masks_of(&name, None).await?;
    Ok(Json(json!({"masks": masks.iter().map(view).collect::<Vec<_>>(), "yaml": super::yaml(&masks)})))
}

#[derive(Deserialize)]
struct Draw {
    viewport: String,
    x: i64,
    y: i64,
    width: i64,
    height: i64,
    by: Option<String>,
}

/// Adds a mask for `viewport`, one of the monitor's viewports now.
pub async fn add(
    store: &dyn Store,
    monitors: &LiveMonitors,
    name: &MonitorName,
    viewport: &str,
    (x, y, width, height): (i64, i64, i64, i64),
    by: &str,
) -> Result<DrawnMask, ApiError> {
    let invalid =
        |field: &str, message: &str| ApiError::Invalid { field: field.into(), message: message.into() };
    let known = monitors.find(name).is_some_and(|m| m.viewports.iter().any(|v| v.key() == viewport));
    if !known {
        return Err(invalid("viewport", "not one of the monitor's viewports"));
    }
    if let Some(why) = super::invalid(x, y, width, height) {
        return Err(invalid("x", why));
    }
    let mask = DrawnMask {
        id: MaskId::new(),
        monitor: name.clone(),
        viewport: viewport.to_owned(),
        x,
        y,
        width,
        height,
        created_by: by.to_owned(),
        created_at: Timestamp::now(),
    };
    store.add_mask(&mask).await?;
    tracing::info!(monitor = %name, %viewport, x, y, width, height, %by, "mask drawn");
    Ok(mask)
}

async fn draw(
    auth: Authenticated,
    State(state): State<MasksApi>,
    Path(name): Path<String>,
    Json(body): Json<Draw>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = monitor(&state, &name)?;
    let by = state.auth.actor(auth.index, body.by.as_deref());
    let rect = (body.x, body.y, body.width, body.height);
    let mask = add(&*state.store, &state.monitors, &name, &body.viewport, rect, &by).await?;
    Ok((StatusCode::CREATED, Json(json!({"mask": view(&mask)}))))
}

async fn remove(
    _: Authenticated,
    State(state): State<MasksApi>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = monitor(&state, &name)?;
    let id: MaskId = id.parse().map_err(|_| ApiError::NotFound("no such mask"))?;
    match state.store.remove_mask(&name, &id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound("no such mask")),
    }
}
