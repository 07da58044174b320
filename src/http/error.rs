//! The one HTTP error type: a status, a stable machine-readable `code`, and a message that never
//! leaks internals on 5xx (the log gets the full cause).

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(&'static str),
    #[error("authentication required")]
    Unauthorized,
    #[error("the link is invalid or has expired")]
    Forbidden,
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("internal error")]
    Internal,
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// 400: the request could not be read as sent.
    #[error("{message}")]
    BadRequest { message: String },
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 429: too much at once; `retry_after` seconds is when to try again.
    #[error("{message}")]
    TooMany { code: &'static str, message: String, retry_after: u64 },
    /// 503: the service cannot take this now (its disk is full, say); try again later.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    #[error("storage unavailable")]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Store(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::Refused { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Unavailable { code, .. }
            | ApiError::TooMany { code, .. } => code,
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::Internal => "internal",
            ApiError::Invalid { .. } => "invalid_request",
            ApiError::Store(e) => e.code(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            // Expected while it lasts, and said once by whoever found it (the disk check).
            ApiError::Unavailable { .. } => tracing::debug!(code = self.code(), "request refused: {self}"),
            _ if status.is_server_error() => {
                tracing::error!(error = ?self, code = self.code(), "request failed")
            }
            _ => {}
        }
        let mut body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        if let ApiError::Invalid { field, .. } = &self {
            body["error"]["field"] = json!(field);
        }
        let mut response = (status, Json(body)).into_response();
        let retry_after = match &self {
            ApiError::TooMany { retry_after, .. } => Some(*retry_after),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(5),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// The `code` of an error answer that carries none of its own (axum's rejections, a route
/// that does not exist, a method the route does not take).
fn status_code_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// Gives every error answer the one JSON shape `{"error": {"code", "message"}}`: axum's
/// extractor rejections (plain text), 404 for a path no route has and 405 for a method the route
/// does not take (empty bodies), and any plain-text refusal a handler makes. JSON answers pass
/// as they are, and so do the review UI's HTML pages, which are meant for a person. Headers such
/// as `Allow`, `Retry-After` and `WWW-Authenticate` are kept.
pub async fn uniform(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let kind = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if kind.starts_with("application/json") || kind.starts_with("text/html") {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // A rejection's text says what was wrong with the request; a server error's may name
    // internals, so it gets the status's reason instead.
    let text = match status.is_server_error() {
        true => Default::default(),
        false => axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default(),
    };
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        t => t.to_owned(),
    };
    let body = json!({ "error": { "code": status_code_name(status), "message": message } }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(body))
}
