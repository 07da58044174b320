//! Browser sessions for the web UI: sign in once with an API token, then a signed cookie.
//! The cookie carries its expiry, the token's fingerprint (never the token) and a random id,
//! signed with a key of its own (`data_dir/ui-secret`). A session ends when it expires, when its
//! token is removed from `auth.api_tokens` (at the next restart: `auth` is not hot-reloaded), or
//! when it signs out: its id is then kept in the database until its expiry
//! ([`crate::store::SessionStore`]). The CSRF token of a session is a second HMAC of the cookie,
//! so every form can be checked without server-side state. Pure: no I/O, time passed in.

use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::signing::SigningKey;

pub const COOKIE: &str = "vigil_session";

use super::auth::token_fingerprint as fingerprint;

/// A new session cookie value for the token at `index`, valid until `expires` (Unix seconds).
pub fn issue(key: &SigningKey, token: &str, expires: i64) -> String {
    let nonce = hex::encode(rand::random::<[u8; 12]>());
    let body = format!("{expires}.{}.{nonce}", fingerprint(token));
    let sig = hex::encode(key.hmac(format!("session:{body}").as_bytes()));
    format!("{body}.{sig}")
}

/// The index of the token a valid, unexpired cookie belongs to. A cookie claiming to live longer
/// than `max_ttl` seconds from now is refused too.
pub fn verify(key: &SigningKey, value: &str, tokens: &[Secret], now: i64, max_ttl: i64) -> Option<usize> {
    let (body, sig) = value.rsplit_once('.')?;
    let expected = hex::encode(key.hmac(format!("session:{body}").as_bytes()));
    if !bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
        return None;
    }
    let mut parts = body.split('.');
    let expires: i64 = parts.next()?.parse().ok()?;
    let fp = parts.next()?;
    if expires <= now || expires > now + max_ttl {
        return None;
    }
    tokens.iter().position(|t| fingerprint(t.expose()) == fp)
}

/// A cookie's random id and expiry (Unix seconds), as written by [`issue`]; meaningful only for
/// a cookie [`verify`] accepted.
pub fn id_and_expiry(value: &str) -> Option<(&str, i64)> {
    let mut parts = value.split('.');
    let expires = parts.next()?.parse().ok()?;
    let _fingerprint = parts.next()?;
    Some((parts.next()?, expires))
}

/// The CSRF token forms of this session must carry.
pub fn csrf(key: &SigningKey, cookie: &str) -> String {
    hex::encode(&key.hmac(format!("csrf:{cookie}").as_bytes())[..16])
}

pub fn csrf_ok(key: &SigningKey, cookie: &str, given: &str) -> bool {
    csrf(key, cookie).as_bytes().ct_eq(given.as_bytes()).into()
}

/// The cookie's value in a `Cookie` header, if present.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').map(str::trim).find_map(|c| c.strip_prefix(COOKIE)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_secret("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap().derive("ui")
    }

    #[test]
    fn a_cookie_is_valid_until_it_expires_or_its_token_goes() {
        let tokens = vec![Secret::new("first-token-0123456789"), Secret::new("second-token-0123456789")];
        let cookie = issue(&key(), "second-token-0123456789", 1_000);
        assert_eq!(verify(&key(), &cookie, &tokens, 999, 3600), Some(1));
        assert_eq!(verify(&key(), &cookie, &tokens, 1_000, 3600), None, "expired");
        assert_eq!(verify(&key(), &cookie, &tokens, 10, 60), None, "lives longer than a session may");
        assert_eq!(verify(&key(), &cookie, &tokens[..1], 999, 3600), None, "token removed from the config");
        let tampered = cookie.replacen("1000.", "9999.", 1);
        assert_eq!(verify(&key(), &tampered, &tokens, 999, 3600), None, "expiry edited");
        let other_key = SigningKey::from_secret("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
            .unwrap()
            .derive("x");
        assert_eq!(verify(&other_key, &cookie, &tokens, 999, 3600), None);
        let (id, expires) = id_and_expiry(&cookie).unwrap();
        assert_eq!((id.len(), expires), (24, 1_000));
        assert_ne!(id, id_and_expiry(&issue(&key(), "second-token-0123456789", 1_000)).unwrap().0);
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let (a, b) = (issue(&key(), "t-0123456789abcdef", 10), issue(&key(), "t-0123456789abcdef", 10));
        assert!(csrf_ok(&key(), &a, &csrf(&key(), &a)));
        assert!(!csrf_ok(&key(), &a, &csrf(&key(), &b)));
        assert!(!csrf_ok(&key(), &a, ""));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(from_cookie_header("a=1; vigil_session=abc.def; b=2"), Some("abc.def"));
        assert_eq!(from_cookie_header("vigil_sessionx=1"), None);
    }
}
