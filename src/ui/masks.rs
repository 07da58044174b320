//! The web UI's side of drawn masks ([`crate::masks`]): the review page's *Mask a region* form
//! (filled by dragging on the capture, or typed) and the monitor page's *Remove* buttons.

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use serde::Deserialize;

use super::{Session, Ui, Verified, failure};
use crate::http::{ApiError, session};
use crate::ids::{MaskId, RunId};

pub(super) fn routes() -> Router<Ui> {
    Router::new()
        .route("/runs/{id}/mask", post(draw))
        .route("/monitors/{name}/masks/{id}/remove", post(remove))
}

#[derive(Deserialize)]
struct MaskForm {
    #[serde(default)]
    csrf: String,
    x: i64,
    y: i64,
    width: i64,
    height: i64,
}

/// *Mask this region*: for the run's monitor and viewport, from the next run on.
async fn draw(
    State(state): State<Ui>,
    Path(id): Path<String>,
    session: Session,
    Form(form): Form<MaskForm>,
) -> Response {
    if !session::csrf_ok(&state.auth.session_key, &session.cookie, &form.csrf) {
        return (StatusCode::FORBIDDEN, "missing or invalid CSRF token; reload the page and try again")
            .into_response();
    }
    let Ok(id) = id.parse::<RunId>() else { return (StatusCode::NOT_FOUND, "no such run").into_response() };
    let run = match state.store.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such run").into_response(),
        Err(e) => return failure(e),
    };
    let rect = (form.x, form.y, form.width, form.height);
    let by = session.actor(&state);
    match crate::masks::api::add(&*state.store, &state.monitors, &run.monitor, &run.viewport, rect, &by).await
    {
        Ok(_) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Err(ApiError::Invalid { message, .. }) => (StatusCode::UNPROCESSABLE_ENTITY, message).into_response(),
        Err(ApiError::Store(e)) => failure(e),
        Err(e) => e.into_response(),
    }
}

async fn remove(
    State(state): State<Ui>,
    Path((name, id)): Path<(String, String)>,
    Verified(session): Verified,
) -> Response {
    let (Ok(monitor), Ok(id)) = (name.parse(), id.parse::<MaskId>()) else {
        return (StatusCode::NOT_FOUND, "no such mask").into_response();
    };
    match state.store.remove_mask(&monitor, &id).await {
        Ok(true) => {
            tracing::info!(%monitor, mask = %id, by = %session.actor(&state), "drawn mask removed");
            Redirect::to(&format!("/monitors/{monitor}#masks")).into_response()
        }
        Ok(false) => (StatusCode::NOT_FOUND, "no such mask").into_response(),
        Err(e) => failure(e),
    }
}
