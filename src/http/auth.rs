//! Bearer-token authentication for `/v1` and `/api` (`auth.api_tokens`), compared in constant
//! time.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;

/// Proof that the request carried a configured token; `index` says which (to scope
/// idempotency keys per client).
#[derive(Debug, Clone, Copy)]
pub struct Authenticated {
    pub index: usize,
}

pub struct Unauthorized;

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": {"code": "unauthorized", "message": "a valid bearer token is required"}})),
        )
            .into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(given) = bearer.map(str::trim) else {
            // The web UI's images: a signed-in browser may read (never change) through the API.
            if matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD)
                && let Some(index) = crate::ui::signed_in(parts, state)
            {
                return Ok(Authenticated { index });
            }
            return Err(Unauthorized);
        };
        token_index(&state.config.auth.api_tokens, given)
            .map(|index| Authenticated { index })
            .ok_or(Unauthorized)
    }
}

/// Which configured token `given` is. Every token is compared, in constant time, so the time
/// taken does not say which one matched (the API's bearer check and the UI's sign-in).
pub fn token_index(tokens: &[crate::config::Secret], given: &str) -> Option<usize> {
    let mut found = None;
    for (i, t) in tokens.iter().enumerate() {
        let eq: bool = t.expose().as_bytes().ct_eq(given.as_bytes()).into();
        if eq && found.is_none() {
            found = Some(i);
        }
    }
    found
}

/// Names a token without revealing it: the first 8 bytes of its SHA-256, in hex. Scopes
/// idempotency keys, identifies reviewers in the baseline history, and ties a UI session to its
/// token.
pub fn token_fingerprint(token: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(token.as_bytes())[..8])
}

impl Authenticated {
    /// The fingerprint of the token this request used.
    pub fn fingerprint(&self, state: &AppState) -> String {
        token_fingerprint(state.config.auth.api_tokens[self.index].expose())
    }
}
