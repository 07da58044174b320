//! Bearer-token authentication for `/v1` and `/api` (`auth.api_tokens`), compared in constant
//! time; a signed-in browser's session cookie ([`super::session`]) counts for reading.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::session;
use crate::config::Secret;
use crate::signing::SigningKey;
use crate::store::SessionStore;
use crate::time::Timestamp;

/// What checking a request's credentials needs; every feature state that has authenticated
/// routes provides it (`FromRef`).
#[derive(Clone)]
pub struct Auth {
    /// `auth.api_tokens` (and the internal token the monitor role uses).
    pub tokens: Arc<Vec<Secret>>,
    /// The names of the tokens (`{name, token}`), by index; shorter than `tokens` when the last
    /// ones have none.
    pub names: Arc<Vec<Option<String>>>,
    /// The index in `tokens` of the monitor role's own token, when it calls this process.
    pub internal: Option<usize>,
    /// Signs web UI session cookies and CSRF tokens.
    pub session_key: SigningKey,
    /// `auth.session_ttl`.
    pub session_ttl: Duration,
    /// Where signed-out sessions are remembered.
    pub sessions: Arc<dyn SessionStore>,
}

impl Auth {
    /// The token index of a valid session cookie in `parts`: signed, unexpired, its token still
    /// configured, and not signed out. A database that cannot say counts as signed out.
    pub async fn signed_in(&self, parts: &Parts) -> Option<usize> {
        let cookie = parts.headers.get(header::COOKIE)?.to_str().ok()?;
        let value = session::from_cookie_header(cookie)?;
        let now = Timestamp::now().millis() / 1000;
        let index =
            session::verify(&self.session_key, value, &self.tokens, now, self.session_ttl.as_secs() as i64)?;
        let (id, _) = session::id_and_expiry(value)?;
        match self.sessions.session_revoked(id).await {
            Ok(false) => Some(index),
            Ok(true) => None,
            Err(e) => {
                tracing::warn!(error = ?e, "cannot check the session against the sign-outs; refusing it");
                None
            }
        }
    }

    /// Ends the session of `cookie` (its value) for good, on every replica.
    pub async fn sign_out(&self, cookie: &str) -> Result<(), crate::store::StoreError> {
        let Some((id, expires)) = session::id_and_expiry(cookie) else { return Ok(()) };
        self.sessions.revoke_session(id, expires, Timestamp::now().millis() / 1000).await
    }

    /// The fingerprint of the token at `index`.
    pub fn fingerprint(&self, index: usize) -> String {
        token_fingerprint(self.tokens[index].expose())
    }

    /// Who acts through the API with the token at `index`, saying they are `by` (a body's
    /// optional field): `by (via <token's name>)`, or the token's name alone.
    pub fn actor(&self, index: usize, by: Option<&str>) -> String {
        let token = self.reviewer(index, "api");
        // No control or format characters (a bidi override), at most 100 characters.
        let by = crate::diff::text::clean(by.unwrap_or(""));
        match by.trim() {
            "" => token,
            by if by == token => token,
            by => format!("{by} (via {token})"),
        }
    }

    /// Who acts with the token at `index`, for the review history: its name, else `{kind} token`
    /// and the first 8 characters of its fingerprint (never the token).
    pub fn reviewer(&self, index: usize, kind: &str) -> String {
        match self.names.get(index).cloned().flatten() {
            Some(name) => name,
            None => format!("{kind} token {}", &self.fingerprint(index)[..8]),
        }
    }
}

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

impl<S> FromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Auth: FromRef<S>,
{
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_ref(state);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(given) = bearer.map(str::trim) else {
            // The web UI's images: a signed-in browser may read (never change) through the API.
            if matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD)
                && let Some(index) = auth.signed_in(parts).await
            {
                return Ok(Authenticated { index });
            }
            return Err(Unauthorized);
        };
        token_index(&auth.tokens, given).map(|index| Authenticated { index }).ok_or(Unauthorized)
    }
}

/// Which configured token `given` is. Every token is compared, in constant time, so the time
/// taken does not say which one matched (the API's bearer check and the UI's sign-in).
pub fn token_index(tokens: &[Secret], given: &str) -> Option<usize> {
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
    pub fn fingerprint(&self, auth: &Auth) -> String {
        auth.fingerprint(self.index)
    }
}
