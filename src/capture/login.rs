//! Login sessions (docs/monitors.md, `sessions:`): a capture whose monitor names a session
//! starts with the session's kept cookies; if the monitor's page then does not show the
//! session's `check`, the sign-in steps run from the session's `url`, the monitor's page is
//! loaded again and must show it, and the context's cookies become the session's new state
//! (kept encrypted by the worker: [`Sealer`]). A sign-in that fails is `login_failed`.

use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::network::{CookieParam, SetCookiesParams};
use chromiumoxide::cdp::browser_protocol::storage::{ClearCookiesParams, GetCookiesParams};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use super::browser::LiveBrowser;
use super::error::CaptureError;
use super::load::{Quiet, Refused, navigate};
use super::prepare::shows;
use super::request::CaptureSpec;
use crate::config::page::{LoginSession, WaitFor};

/// How long a page with kept cookies may take to show the check before the sign-in runs.
const CHECK_KEPT: Duration = Duration::from_secs(3);
/// How long the monitor's page may take to show the check after a sign-in.
const CHECK_AFTER: Duration = Duration::from_secs(10);
/// Cookies kept per session, at most.
const MAX_COOKIES: usize = 500;

/// What a signed-in navigation leaves: the quiet window of the monitor's page (`networkidle`),
/// and the session's new cookies when it signed in.
pub(super) struct SignedIn {
    pub quiet: Option<Quiet>,
    pub new_state: Option<Vec<CookieParam>>,
}

/// Loads the monitor's page signed in through `session`, with `kept` cookies if any.
pub(super) async fn navigate_signed_in(
    live: &LiveBrowser,
    page: &Page,
    context: Option<BrowserContextId>,
    spec: &CaptureSpec,
    session: &LoginSession,
    deadline: Instant,
    refused: &Refused<'_>,
) -> Result<SignedIn, CaptureError> {
    let failed = |e: CaptureError| CaptureError::LoginFailed {
        session: session.name.clone(),
        retryable: e.is_retryable(),
        reason: e.to_string(),
    };
    if let Some(kept) = spec.login_state.as_ref().filter(|k| !k.is_empty()) {
        // Whatever goes wrong with the kept cookies (refused, a 401, a page that does not show
        // the check) is a reason to sign in again, not to fail.
        let kept_ok = async {
            page.execute(SetCookiesParams::new(kept.clone())).await?;
            let quiet = navigate(page, spec, deadline, refused).await?;
            let signed_in = shows(page, &session.check, deadline.min(Instant::now() + CHECK_KEPT)).await;
            Ok::<_, CaptureError>(signed_in.then_some(quiet))
        };
        match kept_ok.await {
            Ok(Some(quiet)) => return Ok(SignedIn { quiet, new_state: None }),
            Ok(None) => {
                tracing::info!(session = %session.name, "the kept session is signed out; signing in again")
            }
            Err(e) => {
                tracing::info!(session = %session.name, error = %e, "the kept session does not work; signing in again")
            }
        }
        // From a clean slate: a half-valid session could send the sign-in page elsewhere.
        live.browser.execute(ClearCookiesParams { browser_context_id: context.clone() }).await?;
    }
    // Signing in, from the session's page, in the capture's own context (its proxy, its policy).
    let mut at_login = spec.clone();
    at_login.url = session.url.clone();
    at_login.wait_until = crate::config::WaitUntil::Load;
    if let Some(quiet) = navigate(page, &at_login, deadline, refused).await.map_err(failed)? {
        quiet.wait(page, deadline).await?;
    }
    let origins = super::prepare::origins(&session.url, &session.steps);
    super::prepare::steps(page, &session.steps, &origins, deadline).await.map_err(failed)?;
    // The cookies of the sign-in alone, before the monitor's page adds its own (a cart, a
    // variant): the session's other monitors start from them.
    let cookies =
        live.browser.execute(GetCookiesParams { browser_context_id: context }).await?.result.cookies;
    // Still turned away (401, 403) is the sign-in's failure; any other error is the page's own
    // (a 404, a timeout) and must not count against the session or wipe its cookies.
    let quiet = navigate(page, spec, deadline, refused).await.map_err(|e| match e {
        CaptureError::HttpStatus { status: 401 | 403, .. } => failed(e),
        other => other,
    })?;
    let check_until = deadline.min(Instant::now() + CHECK_AFTER);
    if !shows(page, &session.check, check_until).await {
        let what = match &session.check {
            WaitFor::Text(t) => format!("text {t:?}"),
            WaitFor::Selector(s) => format!("selector {s:?}"),
            WaitFor::Duration(_) => "check".to_owned(),
        };
        let reason = format!("after signing in, the page does not show the {what} of a signed-in page");
        return Err(CaptureError::LoginFailed { session: session.name.clone(), reason, retryable: false });
    }
    let state: Vec<CookieParam> = cookies
        .into_iter()
        .take(MAX_COOKIES)
        .map(|c| {
            let mut p = CookieParam::new(c.name, c.value);
            p.domain = Some(c.domain);
            p.path = Some(c.path);
            p.secure = Some(c.secure);
            p.http_only = Some(c.http_only);
            p.same_site = c.same_site;
            // A session cookie (no expiry) is kept as long as the session is.
            p.expires = (!c.session)
                .then(|| chromiumoxide::cdp::browser_protocol::network::TimeSinceEpoch::new(c.expires));
            p
        })
        .collect();
    Ok(SignedIn { quiet, new_state: Some(state) })
}

/// Seals and opens a session's kept cookies: ChaCha20-Poly1305 under a 256-bit key, a random
/// nonce per seal, the session's name and definition as associated data (a row moved to another
/// session, or a definition changed, does not open).
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    /// From `capture.session_key` (any text of 16 characters or more, hashed to a key), or the
    /// 32 random bytes of a key file.
    pub fn new(material: &[u8]) -> Sealer {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(material);
        let key = UnboundKey::new(&CHACHA20_POLY1305, &digest).expect("32 bytes");
        Sealer { key: LessSafeKey::new(key) }
    }

    fn aad(session: &LoginSession) -> Vec<u8> {
        format!("vigil login state\0{}\0{}", session.name, session.fingerprint()).into_bytes()
    }

    pub fn seal(&self, session: &LoginSession, cookies: &[CookieParam]) -> Vec<u8> {
        let mut data = serde_json::to_vec(cookies).expect("serialises");
        let nonce: [u8; NONCE_LEN] = rand::random();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(session)),
                &mut data,
            )
            .expect("sealing cannot fail for this size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        out
    }

    /// The cookies, or `None` when the row was sealed with another key or for another definition.
    pub fn open(&self, session: &LoginSession, sealed: &[u8]) -> Option<Vec<CookieParam>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(Self::aad(session)), &mut data).ok()?;
        serde_json::from_slice(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(password: &str) -> LoginSession {
        let wire: crate::config::page::LoginWire = serde_json::from_value(serde_json::json!({
            "name": "shop", "url": "https://shop.example/login",
            "steps": [{"fill": "#pw", "value": password}], "check": {"text": "Sign out"}
        }))
        .unwrap();
        wire.validate().unwrap()
    }

    #[test]
    fn kept_cookies_open_only_with_the_key_and_the_definition_they_were_sealed_for() {
        let sealer = Sealer::new(b"a key of sixteen or more");
        let cookies = vec![CookieParam::new("sid", "s3cret-session")];
        let sealed = sealer.seal(&session("hunter2"), &cookies);
        assert!(!sealed.windows(14).any(|w| w == b"s3cret-session"), "not in clear");
        let opened = sealer.open(&session("hunter2"), &sealed).unwrap();
        assert_eq!((opened[0].name.as_str(), opened[0].value.as_str()), ("sid", "s3cret-session"));
        assert!(sealer.open(&session("changed"), &sealed).is_none(), "another definition");
        assert!(Sealer::new(b"another key, sixteen+").open(&session("hunter2"), &sealed).is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(sealer.open(&session("hunter2"), &tampered).is_none());
        assert!(sealer.open(&session("hunter2"), &sealed[..5]).is_none());
        // A fresh nonce each time.
        assert_ne!(sealer.seal(&session("hunter2"), &cookies), sealed);
    }
}
