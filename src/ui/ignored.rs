//! The web UI's side of ignoring a change ([`crate::ignore`]): the review page's *Ignore this
//! change* buttons and the *Ignored* page, which lists the ignores with what each spared.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Layout, Session, Ui, Verified, failure, html, layout};
use crate::ids::{IgnoreId, RunId};
use crate::ignore::{DEFAULT_DAYS, IgnoreError, ignore_run};
use crate::store::Ignore;
use crate::time::Timestamp;

pub(super) fn routes() -> Router<Ui> {
    Router::new()
        .route("/runs/{id}/ignore", post(ignore))
        .route("/ignored", get(page))
        .route("/ignored/{id}/remove", post(remove))
}

#[derive(Deserialize)]
struct Days {
    days: Option<u32>,
}

/// *Ignore this change for N days* (N in the form's action: one button per choice).
async fn ignore(
    State(state): State<Ui>,
    Path(id): Path<String>,
    Query(q): Query<Days>,
    Verified(session): Verified,
) -> Response {
    let Ok(run) = id.parse::<RunId>() else { return (StatusCode::NOT_FOUND, "no such run").into_response() };
    let by = session.actor(&state);
    match ignore_run(&*state.store, &run, q.days.unwrap_or(DEFAULT_DAYS), &by).await {
        Ok(_) => Redirect::to(&format!("/runs/{run}")).into_response(),
        Err(IgnoreError::NoSuchRun) => (StatusCode::NOT_FOUND, "no such run").into_response(),
        Err(IgnoreError::Store(e)) => failure(e),
        Err(IgnoreError::Days) => {
            (StatusCode::UNPROCESSABLE_ENTITY, IgnoreError::Days.to_string()).into_response()
        }
        Err(other) => (StatusCode::CONFLICT, other.to_string()).into_response(),
    }
}

#[derive(Template)]
#[template(path = "ignored.html")]
struct IgnoredPage {
    layout: Layout,
    ignores: Vec<IgnoreRow>,
}

struct IgnoreRow {
    id: String,
    monitor: String,
    description: String,
    run_id: String,
    until: String,
    active: bool,
    matched: i64,
    last_matched: String,
    created_by: String,
}

impl IgnoreRow {
    fn new(i: &Ignore, now: Timestamp) -> Self {
        let when = |t: Timestamp| super::views::short_time(&t.to_string());
        IgnoreRow {
            id: i.id.to_string(),
            monitor: i.monitor.to_string(),
            description: i.description.clone(),
            run_id: i.run_id.to_string(),
            until: when(i.until),
            active: i.until.millis() > now.millis(),
            matched: i.matched,
            last_matched: i.last_matched_at.map(when).unwrap_or_else(|| "never".into()),
            created_by: i.created_by.clone(),
        }
    }
}

async fn page(State(state): State<Ui>, session: Session) -> Response {
    let now = Timestamp::now();
    let ignores = match crate::ignore::listed(&*state.store, now).await {
        Ok(i) => i,
        Err(e) => return failure(e),
    };
    let layout = layout(&state, &session).await;
    html(IgnoredPage { layout, ignores: ignores.iter().map(|i| IgnoreRow::new(i, now)).collect() })
}

/// *Stop ignoring*: the change alerts again from the next run that shows it.
async fn remove(State(state): State<Ui>, Path(id): Path<String>, Verified(session): Verified) -> Response {
    let Ok(id) = id.parse::<IgnoreId>() else {
        return (StatusCode::NOT_FOUND, "no such ignore").into_response();
    };
    match state.store.remove_ignore(&id, Timestamp::now()).await {
        Ok(true) => {
            tracing::info!(ignore = %id, by = %session.actor(&state), "ignore stopped");
            Redirect::to("/ignored").into_response()
        }
        Ok(false) => (StatusCode::NOT_FOUND, "no such ignore").into_response(),
        Err(e) => failure(e),
    }
}
