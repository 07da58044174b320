//! Login sessions (docs/monitors.md, `sessions:`): a capture whose monitor names a session
//! starts with the session's kept state (its cookies, and the `localStorage` of the origin the
//! sign-in ended on); if the monitor's page then does not show the session's `check`, the
//! sign-in steps run from the session's `url`, the monitor's page is loaded again and must show
//! it, and the context's cookies and that storage become the session's new state (kept
//! encrypted by the worker: [`Sealer`]). A sign-in that fails is `login_failed`.

use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::network::{CookieParam, SetCookiesParams};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, RemoveScriptToEvaluateOnNewDocumentParams,
};
use chromiumoxide::cdp::browser_protocol::storage::{
    ClearCookiesParams, ClearDataForOriginParams, GetCookiesParams,
};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use super::browser::LiveBrowser;
use super::error::CaptureError;
use super::load::{Quiet, Refused, navigate};
use super::prepare::shows;
use super::request::CaptureSpec;
use crate::config::page::{LoginSession, WaitFor};

/// How long a page with the kept state may take to show the check before the sign-in runs.
const CHECK_KEPT: Duration = Duration::from_secs(3);
/// How long the monitor's page may take to show the check after a sign-in.
const CHECK_AFTER: Duration = Duration::from_secs(10);
/// Cookies kept per session, at most.
const MAX_COOKIES: usize = 500;
/// `localStorage` kept per session, at most (keys and values, in UTF-16 code units as the
/// browser counts them; a browser allows about 5 MB per origin). It is put back by a script
/// every document of the capture parses, so a token's storage, not an app's cache.
const MAX_STORAGE_UNITS: usize = 1 << 18;

/// What a session keeps between captures, sealed: its cookies, and the `localStorage` of the
/// origin its sign-in ended on (where a single-page app keeps its token).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoginState {
    pub cookies: Vec<CookieParam>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<OriginStorage>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OriginStorage {
    /// `https://app.example` (scheme, host, port).
    pub origin: String,
    pub items: Vec<(String, String)>,
}

impl LoginState {
    fn is_empty(&self) -> bool {
        self.cookies.is_empty() && self.storage.is_none()
    }
}

/// What a signed-in navigation leaves: the quiet window of the monitor's page (`networkidle`),
/// and the session's new state when it signed in.
pub(super) struct SignedIn {
    pub quiet: Option<Quiet>,
    pub new_state: Option<LoginState>,
}

/// Puts the kept `localStorage` back before any of the page's scripts run, on every document of
/// its origin that does not have the item already; the identifier of the script.
async fn restore_storage(page: &Page, storage: &OriginStorage) -> Result<String, CaptureError> {
    let origin = serde_json::to_string(&storage.origin).expect("serialises");
    let items = serde_json::to_string(&storage.items).expect("serialises");
    let js = format!(
        "(() => {{ try {{ if (location.origin !== {origin}) return;
           for (const [k, v] of {items}) if (localStorage.getItem(k) === null) localStorage.setItem(k, v);
         }} catch (_) {{}} }})()"
    );
    let added = page.execute(AddScriptToEvaluateOnNewDocumentParams::new(js)).await?;
    Ok(added.result.identifier.inner().clone())
}

/// The `localStorage` of the page's origin, within [`MAX_STORAGE_UNITS`]; nothing for an
/// opaque origin or an empty storage.
async fn read_storage(page: &Page, session: &str) -> Option<OriginStorage> {
    let js = "(() => { try { return {origin: location.origin, items: Object.entries(localStorage)}; } catch (_) { return null; } })()";
    let found: Option<OriginStorage> = match super::prepare::eval(page, js).await {
        Ok(found) => found,
        // (A lone surrogate in a value is not JSON that can be read.)
        Err(e) => {
            tracing::warn!(session, error = %e, "cannot read the sign-in's localStorage; only its cookies are kept");
            None
        }
    };
    let mut found = found.filter(|s| s.origin != "null" && !s.items.is_empty())?;
    let mut units = 0;
    let whole = found.items.len();
    found.items.retain(|(k, v)| {
        units += k.encode_utf16().count() + v.encode_utf16().count();
        units <= MAX_STORAGE_UNITS
    });
    if found.items.len() < whole {
        tracing::warn!(
            session,
            kept = found.items.len(),
            of = whole,
            "the sign-in's localStorage is larger than vigil keeps; the rest is dropped"
        );
    }
    Some(found)
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
        // Whatever goes wrong with the kept state (refused, a 401, a page that does not show
        // the check) is a reason to sign in again, not to fail.
        let mut restoring = None;
        let kept_ok = async {
            if !kept.cookies.is_empty() {
                page.execute(SetCookiesParams::new(kept.cookies.clone())).await?;
            }
            if let Some(storage) = &kept.storage {
                restoring = Some(restore_storage(page, storage).await?);
            }
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
        if let (Some(id), Some(storage)) = (restoring, &kept.storage) {
            // Left in place, the old token would only be replaced by the sign-in's: no reason
            // to fail the capture.
            let removed = page.execute(RemoveScriptToEvaluateOnNewDocumentParams::new(id)).await;
            let cleared =
                page.execute(ClearDataForOriginParams::new(storage.origin.clone(), "local_storage")).await;
            if let Some(e) = removed.err().or(cleared.err()) {
                tracing::info!(session = %session.name, error = %e, "cannot clear the kept localStorage; signing in over it");
            }
        }
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
    // The state of the sign-in alone, before the monitor's page adds its own (a cart, a
    // variant): the session's other monitors start from it.
    let cookies =
        live.browser.execute(GetCookiesParams { browser_context_id: context }).await?.result.cookies;
    let storage = read_storage(page, &session.name).await;
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
    let cookies: Vec<CookieParam> = cookies
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
    Ok(SignedIn { quiet, new_state: Some(LoginState { cookies, storage }) })
}

/// Seals and opens a session's kept state: ChaCha20-Poly1305 under a 256-bit key, a random
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

    pub fn seal(&self, session: &LoginSession, state: &LoginState) -> Vec<u8> {
        let mut data = serde_json::to_vec(state).expect("serialises");
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

    /// The state, or `None` when the row was sealed with another key or for another definition.
    /// (A row of vigil 0.x before `localStorage` was kept holds the cookies alone.)
    pub fn open(&self, session: &LoginSession, sealed: &[u8]) -> Option<LoginState> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(Self::aad(session)), &mut data).ok()?;
        serde_json::from_slice(plain).ok().or_else(|| {
            let cookies = serde_json::from_slice(plain).ok()?;
            Some(LoginState { cookies, storage: None })
        })
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
        let storage = OriginStorage {
            origin: "https://shop.example".into(),
            items: vec![("token".into(), "jwt-of-ana".into())],
        };
        let cookies =
            LoginState { cookies: vec![CookieParam::new("sid", "s3cret-session")], storage: Some(storage) };
        let sealed = sealer.seal(&session("hunter2"), &cookies);
        assert!(!sealed.windows(14).any(|w| w == b"s3cret-session"), "not in clear");
        assert!(!sealed.windows(10).any(|w| w == b"jwt-of-ana"), "not in clear");
        assert_eq!(sealer.open(&session("hunter2"), &sealed), Some(cookies.clone()));
        assert!(sealer.open(&session("changed"), &sealed).is_none(), "another definition");
        assert!(Sealer::new(b"another key, sixteen+").open(&session("hunter2"), &sealed).is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(sealer.open(&session("hunter2"), &tampered).is_none());
        assert!(sealer.open(&session("hunter2"), &sealed[..5]).is_none());
        // A fresh nonce each time.
        assert_ne!(sealer.seal(&session("hunter2"), &cookies), sealed);
    }

    #[test]
    fn a_row_sealed_before_storage_was_kept_opens_as_its_cookies() {
        let sealer = Sealer::new(b"a key of sixteen or more");
        let shop = session("hunter2");
        // What an earlier vigil sealed: the cookies' JSON array alone.
        let mut data = serde_json::to_vec(&[CookieParam::new("sid", "s-1")]).unwrap();
        let nonce = [7u8; NONCE_LEN];
        let aad = Aad::from(Sealer::aad(&shop));
        sealer.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad, &mut data).unwrap();
        let old = [nonce.as_slice(), &data].concat();
        let opened = sealer.open(&shop, &old).unwrap();
        assert_eq!((opened.cookies[0].value.as_str(), opened.storage), ("s-1", None));
    }
}
