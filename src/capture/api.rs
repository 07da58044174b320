//! The capture API: `POST /v1/capture` (validate, write the job row, answer 202),
//! `GET /v1/capture/{id}` (the result document, polling fallback), and
//! `GET /v1/assets/{id}?exp&sig` (signed, expiring links to the images).

use axum::body::Bytes;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::CaptureService;
use super::document::document;
use super::request::{self, MAX_BODY_BYTES};
use crate::config::Config;
use crate::http::{ApiError, Auth, Authenticated};
use crate::ids::{AssetId, JobId};
use crate::store::blobs::BlobStore;
use crate::store::{JobInsert, NewJob, Store};
use crate::time::Timestamp;

/// How long an `Idempotency-Key` replays the first answer.
const IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What the capture API's handlers reach.
#[derive(Clone)]
pub struct CaptureApi {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub capture: Arc<CaptureService>,
    pub auth: Auth,
    /// Captures are refused (503) while the volume they are stored on is in trouble.
    pub disk: crate::disk::DiskHealth,
}

impl FromRef<CaptureApi> for Auth {
    fn from_ref(state: &CaptureApi) -> Auth {
        state.auth.clone()
    }
}

pub fn router(state: CaptureApi) -> Router {
    Router::new()
        .route("/v1/capture", post(create).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
        .route("/v1/capture/{id}", get(show))
        .route("/v1/assets/{id}", get(asset))
        .with_state(state)
}

/// The OpenAPI 3.1 description of this API.
fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::Invalid { field: field.into(), message: message.into() }
}

async fn create(
    State(state): State<CaptureApi>,
    auth: Authenticated,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = request::parse(&body).map_err(|e| invalid(e.field, e.message))?;
    if let Some((condition, why)) = state.disk.refusal() {
        return Err(ApiError::Unavailable {
            code: condition.code(),
            message: format!("captures are paused: {why}"),
        });
    }
    let spec = req.validate().map_err(|e| invalid(e.field, e.message))?;
    let capture = &state.config.capture;
    let pixels = (f64::from(spec.width) * spec.scale).ceil() * (f64::from(spec.height) * spec.scale).ceil();
    if pixels > capture.max_pixels as f64 {
        return Err(ApiError::Refused {
            code: "capture_too_large",
            message: format!(
                "the viewport is {pixels} device pixels; capture.max_pixels allows {}",
                capture.max_pixels
            ),
        });
    }
    // One policy for every capture, a monitor's or a client's; checked here to refuse early,
    // and again on every connection the page makes.
    let policy = super::egress::Policy::system(&capture.allow_private);
    policy
        .check_url(&spec.url)
        .await
        .map_err(|e| ApiError::Refused { code: e.code(), message: e.to_string() })?;
    // The webhook is a request we make on the client's behalf: the same policy applies to it,
    // here and again at every delivery attempt. A host that does not resolve is refused too.
    // vigil's own endpoints take results signed with its own key: only its monitor role (its
    // own token) has its captures delivered there, never a client, whose capture would be
    // taken for a monitor's.
    let internal = state.auth.internal == Some(auth.index);
    if let Some(hook) = req.webhook_url.as_deref().and_then(|u| url::Url::parse(u).ok()) {
        let own = state.config.own_endpoints().iter().any(|u| u.origin() == hook.origin());
        if own && !internal {
            return Err(ApiError::Refused {
                code: "url_not_allowed",
                message: "webhook_url: this vigil's own endpoints take only its own monitors' captures"
                    .into(),
            });
        }
        if !own {
            policy
                .check_url(&hook)
                .await
                .map_err(|e| ApiError::Refused { code: e.code(), message: format!("webhook_url: {e}") })?;
        }
    }
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map_err(|_| invalid("Idempotency-Key", "must be visible ASCII")))
        .transpose()?
        .map(|k| {
            // Scoped per client: two clients may use the same key. The monitor role's scope is
            // one for all replicas (each mints its own token), so a run re-submitted by another
            // replica is the same job (issue 14).
            let scope = if internal { "monitor".to_owned() } else { auth.fingerprint(&state.auth) };
            format!("{scope}:{k}")
        });
    // The monitor role's captures (its own token, not anything in the request) are not
    // refused: a client filling the queue must not make every monitor fail and alert.
    // (Replays of an existing key count against the limit too.)
    let waiting = if internal { 0 } else { state.store.waiting_jobs().await? };
    if waiting >= i64::from(state.config.capture.max_queued) {
        return Err(ApiError::TooMany {
            code: "queue_full",
            message: format!(
                "{waiting} captures are waiting (capture.max_queued is {}); try again later",
                state.config.capture.max_queued
            ),
            retry_after: 30,
        });
    }
    let now = Timestamp::now();
    let job = NewJob {
        id: JobId::new(),
        request: String::from_utf8(body.to_vec()).map_err(|_| invalid("", "the body must be UTF-8 JSON"))?,
        idempotency_key: key,
        max_attempts: state.config.capture.max_attempts as i32,
        now,
    };
    let job = match state.store.insert_job(&job, now.minus(IDEMPOTENCY_WINDOW)).await? {
        JobInsert::Created(job) => {
            state.capture.jobs_ready.notify_one();
            job
        }
        JobInsert::Existing(job) => {
            // The same key with another request is a client's mistake, not a replay: say so
            // rather than hand back a job for a different page.
            let same = serde_json::from_slice::<serde_json::Value>(&body).ok()
                == serde_json::from_str::<serde_json::Value>(&job.request).ok();
            if !same {
                return Err(ApiError::Refused {
                    code: "idempotency_key_reused",
                    message: format!(
                        "this Idempotency-Key was used for job {} with another request body",
                        job.id
                    ),
                });
            }
            job
        }
    };
    let location = format!("/v1/capture/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(json!({ "job_id": job.id, "status": job.status.as_str() })),
    )
        .into_response())
}

async fn show(
    State(state): State<CaptureApi>,
    _auth: Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: JobId = id.parse().map_err(|_| ApiError::NotFound("no such capture job"))?;
    let job = state.store.get_job(&id).await?.ok_or(ApiError::NotFound("no such capture job"))?;
    let doc = document(&job, &state.capture.asset_urls, Timestamp::now().millis() / 1000);
    Ok(Json(doc).into_response())
}

#[derive(Deserialize)]
struct AssetQuery {
    exp: Option<i64>,
    sig: Option<String>,
}

async fn asset(
    State(state): State<CaptureApi>,
    Path(id): Path<String>,
    Query(q): Query<AssetQuery>,
) -> Result<Response, ApiError> {
    let (Some(exp), Some(sig)) = (q.exp, q.sig) else { return Err(ApiError::Forbidden) };
    if !state.capture.asset_urls.verify(&id, exp, &sig, Timestamp::now().millis() / 1000) {
        return Err(ApiError::Forbidden);
    }
    let id: AssetId = id.parse().map_err(|_| ApiError::NotFound("no such asset"))?;
    let asset = state.store.get_asset(&id).await?.ok_or(ApiError::NotFound("no such asset"))?;
    let bytes = state.blobs.get(&asset.sha256).await.map_err(|e| {
        tracing::error!(error = ?e, asset = %id, "asset blob unreadable");
        ApiError::Internal
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
        ],
        bytes,
    )
        .into_response())
}
