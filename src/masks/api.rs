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
use crate::store::{DrawnMask, MAX_MASKS, MaskAdded, Store};
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

/// A mask as the API shows it: the row as it is.
pub fn view(m: &DrawnMask) -> Value {
    serde_json::to_value(m).expect("serialises")
}

/// A monitor name: configured now, or one whose drawn masks outlived it (to list and remove them).
fn monitor(name: &str) -> Result<MonitorName, ApiError> {
    name.parse().map_err(|_| ApiError::NotFound("no such monitor"))
}

async fn list(
    _: Authenticated,
    State(state): State<MasksApi>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let name = monitor(&name)?;
    let masks = state.store.masks_of(&name, None).await?;
    if masks.is_empty() && state.monitors.find(&name).is_none() {
        return Err(ApiError::NotFound("no such monitor"));
    }
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

/// Adds a mask for `viewport`, one of the monitor's viewports now; drawing the same rectangle
/// again gives the one drawn before.
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
    let Some(configured) = monitors.find(name) else {
        return Err(ApiError::NotFound("no such monitor"));
    };
    let Some(vp) = configured.viewports.iter().find(|v| v.key() == viewport) else {
        return Err(invalid("viewport", "not one of the monitor's viewports"));
    };
    if let Some((field, why)) = super::invalid(x, y, width, height) {
        return Err(invalid(field, why));
    }
    // In the capture's device pixels.
    let (device_width, device_height) =
        ((f64::from(vp.width) * vp.scale) as i64, (f64::from(vp.height) * vp.scale) as i64);
    if x >= device_width {
        return Err(invalid("x", "right of the capture"));
    }
    if width.saturating_mul(height) > device_width * device_height / 2 {
        return Err(invalid(
            "width",
            "larger than half the viewport: it would hide most changes (use hide:, selector: or a narrower mask)",
        ));
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
    match store.add_mask(&mask).await? {
        MaskAdded::Added => {
            tracing::info!(monitor = %name, %viewport, x, y, width, height, %by, "mask drawn");
            Ok(mask)
        }
        MaskAdded::Duplicate => {
            let same = |m: &DrawnMask| (m.x, m.y, m.width, m.height) == (x, y, width, height);
            let drawn = store.masks_of(name, Some(viewport)).await?;
            drawn.into_iter().find(same).ok_or(ApiError::Internal)
        }
        MaskAdded::Full => Err(ApiError::Conflict {
            code: "too_many_masks",
            message: format!(
                "this viewport has {MAX_MASKS} masks already: remove some, or move them into the config"
            ),
        }),
    }
}

async fn draw(
    auth: Authenticated,
    State(state): State<MasksApi>,
    Path(name): Path<String>,
    Json(body): Json<Draw>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = monitor(&name)?;
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
    let name = monitor(&name)?;
    let id: MaskId = id.parse().map_err(|_| ApiError::NotFound("no such mask"))?;
    match state.store.remove_mask(&name, &id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound("no such mask")),
    }
}
