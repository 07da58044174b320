//! `POST /hooks/capture`: where finished captures arrive (docs/architecture.md §5).
//!
//! The signature is checked over the raw bytes before anything is parsed, in constant time,
//! with a 5-minute timestamp window. A verified webhook is stored (deduplicated on its
//! `webhook-id` and on its `job_id`) and only then answered 2xx; processing happens later, from
//! the table. 4xx only for what will never be accepted (bad signature, malformed body); 5xx
//! (with `Retry-After`) when storage is in trouble, so the sender retries.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use crate::config::WebhookConfig;
use crate::http::rate_limit::RateLimiter;
use crate::http::{ApiError, Metrics};
use crate::signing::{self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SigningKey};
use crate::store::Store;
use crate::time::Timestamp;

/// Webhook bodies are small documents; anything larger is refused unread.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the receiver reaches.
#[derive(Clone)]
pub struct Receiver {
    pub store: Arc<dyn Store>,
    /// `webhook:` (tolerance, the provider's hex signature header).
    pub config: Arc<WebhookConfig>,
    /// Keys that verify incoming capture webhooks: the current secret first, then previous ones.
    pub keys: Arc<Vec<SigningKey>>,
    /// Woken when a new capture result is stored, for the processor.
    pub received: Arc<tokio::sync::Notify>,
    /// `webhook.rate_limit`; `None` when off.
    pub limiter: Option<Arc<RateLimiter>>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: Receiver) -> Router {
    Router::new()
        .route("/hooks/capture", post(receive).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
        .with_state(state)
}

/// `webhook.rate_limit` per client address, checked before the body is read (and before any
/// HMAC is computed): over it, 429 with `Retry-After`, which a well-behaved sender honours.
pub struct WithinRateLimit;

impl FromRequestParts<Receiver> for WithinRateLimit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Receiver) -> Result<Self, Self::Rejection> {
        let (Some(limiter), Some(ConnectInfo(addr))) =
            (&state.limiter, parts.extensions.get::<ConnectInfo<SocketAddr>>())
        else {
            return Ok(WithinRateLimit);
        };
        match limiter.check(addr.ip(), std::time::Instant::now()) {
            Ok(()) => Ok(WithinRateLimit),
            Err(wait) => {
                state
                    .metrics
                    .webhooks_refused
                    .get_or_create(&vec![("reason".into(), "rate_limited".into())])
                    .inc();
                let mut r =
                    refuse(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; retry later");
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                r.headers_mut().insert(header::RETRY_AFTER, secs.into());
                Err(r)
            }
        }
    }
}

/// The fields the receiver needs before storing; the rest is read by the processor.
#[derive(Deserialize)]
struct Envelope {
    job_id: String,
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

async fn receive(
    _: WithinRateLimit,
    State(state): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let webhook = &state.config;
    let now = Timestamp::now().millis() / 1000;
    // An external provider's plain hex HMAC, when configured and present; otherwise Standard
    // Webhooks.
    let hex_header = webhook.hex_signature_header.as_deref().filter(|h| headers.contains_key(*h));
    let verified = match hex_header {
        Some(h) => signing::verify_hex(state.keys[0].raw(), header(h), &body),
        None => signing::verify(
            &state.keys,
            header(HEADER_ID),
            header(HEADER_TIMESTAMP),
            header(HEADER_SIGNATURE),
            &body,
            now,
            webhook.tolerance.as_secs() as i64,
        ),
    };
    if let Err(e) = verified {
        tracing::warn!(reason = %e, "capture webhook refused");
        state.metrics.webhooks_refused.get_or_create(&vec![("reason".into(), e.code().into())]).inc();
        return Ok(refuse(StatusCode::UNAUTHORIZED, e.code(), &e.to_string()));
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            "expected a capture result document with a job_id",
        ));
    };
    let Ok(payload) = std::str::from_utf8(&body) else {
        return Ok(refuse(StatusCode::BAD_REQUEST, "malformed_body", "the body is not UTF-8"));
    };
    // Our own deliveries carry webhook-id; a provider signing with a hex HMAC may not, then the
    // job id is the key.
    let webhook_id = header(HEADER_ID).map_or_else(|| format!("job:{}", envelope.job_id), str::to_owned);
    let fresh =
        state.store.record_received_webhook(&webhook_id, &envelope.job_id, payload, Timestamp::now()).await?;
    if fresh {
        tracing::info!(webhook = %webhook_id, job = %envelope.job_id, "capture webhook stored");
        state.received.notify_one();
    } else {
        tracing::debug!(webhook = %webhook_id, job = %envelope.job_id, "duplicate capture webhook acknowledged");
    }
    Ok((StatusCode::NO_CONTENT, ()).into_response())
}
