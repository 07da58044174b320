//! The life of a capture's tab (docs/capture.md): its browser context is closed on every path,
//! with every popup it opened; JavaScript dialogs are answered at once and reported; the
//! monitor's secret headers go to its own origin only.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams as FetchEnableParams, EventRequestPaused, FailRequestParams,
    HeaderEntry, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::network::{ClearBrowserCacheParams, ErrorReason};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, CaptureScreenshotFormat, CaptureScreenshotParams, DialogType,
    EventFrameNavigated, EventJavascriptDialogOpening, HandleJavaScriptDialogParams,
    ResetNavigationHistoryParams,
};
use chromiumoxide::cdp::browser_protocol::storage::{ClearCookiesParams, ClearDataForOriginParams};
use chromiumoxide::cdp::browser_protocol::target::{CloseTargetParams, EventTargetCreated};
use futures_util::StreamExt;

use super::browser::LiveBrowser;
use super::error::CaptureError;
use super::request::CaptureSpec;
use crate::config::Format;

/// Whether a capture may use and leave a warm tab: not one whose requests carry the monitor's
/// secrets (`headers`, `basic_auth`: an interception lives on the tab), nor one with a user
/// agent of its own (it stays on the tab), nor a PDF.
pub(super) fn warmable(spec: &CaptureSpec) -> bool {
    let p = &spec.page;
    let emulated = p.timezone.is_some() || p.locale.is_some() || p.geolocation.is_some();
    spec.headers.is_empty()
        && spec.basic_auth.is_none()
        && spec.user_agent.is_none()
        && spec.format == Format::Png
        && !emulated
        && p.block_requests.is_empty()
        && p.session.is_none()
}

/// How long the picture of a failed capture's page may take.
const FAILING_STATE_WITHIN: Duration = Duration::from_secs(3);
/// Filled values this short are not looked for in the page's text (a user name's initials would
/// match everywhere).
const SHORTEST_LOOKED_FOR: usize = 4;

/// Readies the page for the picture of its failing state, in the page and every same-origin
/// frame and open shadow root: each field's text drawn as dots and its caret hidden (inline and
/// `!important`: no stylesheet of the page and no content security policy undoes it), the
/// monitor's `hide` selectors hidden. False when a field with text is still not drawn as dots,
/// or a filled value shows in the page's text: then no picture is taken.
const READY_FOR_PICTURE: &str = r#"(({hide, filled}) => {
  const docs = [document];
  for (const f of document.querySelectorAll('iframe')) { try { if (f.contentDocument) docs.push(f.contentDocument); } catch (_) {} }
  const roots = [];
  const walk = (root) => { roots.push(root); for (const el of root.querySelectorAll('*')) if (el.shadowRoot) walk(el.shadowRoot); };
  docs.forEach(walk);
  const FIELDS = 'input, textarea, [contenteditable]';
  for (const root of roots) {
    for (const el of root.querySelectorAll(FIELDS)) {
      el.style.setProperty('-webkit-text-security', 'disc', 'important');
      el.style.setProperty('caret-color', 'transparent', 'important');
    }
    for (const s of hide) { try { for (const el of root.querySelectorAll(s)) el.style.setProperty('visibility', 'hidden', 'important'); } catch (_) {} }
  }
  for (const root of roots) for (const el of root.querySelectorAll(FIELDS)) {
    const text = el.matches('[contenteditable]') ? el.textContent : el.value;
    if (text && el.type !== 'hidden' && getComputedStyle(el).webkitTextSecurity !== 'disc') return false;
  }
  const said = docs.map(d => d.body ? d.body.innerText : '').join(' ');
  return !filled.some(v => said.includes(v));
})"#;

/// The page as a failed step, sign-in or wait left it, as a viewport PNG for the review page
/// ([`READY_FOR_PICTURE`]: no field's text, no `hide` element, no filled value in it). Nothing
/// when it cannot be made safe, or drawn by `until` and within a few seconds.
pub(super) async fn failing_state(
    page: &Page,
    spec: &CaptureSpec,
    until: std::time::Instant,
) -> Option<Vec<u8>> {
    let session_steps = spec.page.session.iter().flat_map(|s| s.steps.iter());
    let filled: Vec<&str> = spec
        .page
        .steps
        .iter()
        .chain(session_steps)
        .filter_map(|s| match &s.action {
            crate::config::page::Action::Fill { value, .. } => Some(value.expose()),
            _ => None,
        })
        .filter(|v| v.chars().count() >= SHORTEST_LOOKED_FOR)
        .collect();
    let args = serde_json::json!({"hide": spec.hide, "filled": filled});
    let shot = async {
        let ready = format!("{READY_FOR_PICTURE}({args})");
        if !super::prepare::eval::<bool>(page, &ready).await.ok()? {
            tracing::info!(
                "a field's text or a filled value would show in the failed page's picture; none is kept"
            );
            return None;
        }
        let params = CaptureScreenshotParams {
            format: Some(CaptureScreenshotFormat::Png),
            from_surface: Some(true),
            ..Default::default()
        };
        let r = page.execute(params).await.ok()?;
        let data: &str = r.result.data.as_ref();
        base64::engine::general_purpose::STANDARD.decode(data).ok()
    };
    let until = until.min(std::time::Instant::now() + FAILING_STATE_WITHIN);
    tokio::time::timeout_at(until.into(), shot).await.ok().flatten()
}

/// A JavaScript dialog (`alert`, `confirm`, `prompt`, `beforeunload`) the page opened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dialog {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// Dialogs recorded per capture; a page opening more is not remembered further.
pub(super) const MAX_DIALOGS: usize = 20;
/// How long closing a capture's tabs may take before the browser is replaced instead.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long clearing a warm tab for its next capture may take; past it a fresh one is opened.
const CLEAR_TIMEOUT: Duration = Duration::from_secs(5);
/// Captures a warm tab serves before it is closed and a fresh one opened.
const MAX_USES: u32 = 100;

/// A capture's tab: a fresh browser context with one page, whose every connection goes through
/// a proxy of its own ([`super::egress`]), and a watch that closes the tabs the page opens.
///
/// After a clean capture a worker may keep it *warm* for its next capture of the same origin
/// (docs/capture.md, "Warm tabs"): the page is left for `about:blank`, and before it is used
/// again the context's cookies, the origin's storage (service workers and caches included),
/// its session storage and the HTTP cache are cleared. The renderer process, the context and
/// the proxy are reused; a new renderer per capture was most of a capture's CPU time.
pub struct Tab {
    live: Arc<LiveBrowser>,
    pub(super) proxy: super::egress::Proxy,
    context: OpenContext,
    pub(super) page: Page,
    popups: Option<tokio::task::JoinHandle<()>>,
    /// The origin of the last capture, once parked.
    origin: Option<url::Origin>,
    uses: u32,
}

impl Tab {
    /// A fresh context and page, with a proxy for `policy`.
    pub(super) async fn open(
        live: &Arc<LiveBrowser>,
        policy: super::egress::Policy,
    ) -> Result<Tab, CaptureError> {
        let proxy = super::egress::Proxy::start(policy).await.map_err(CaptureError::Egress)?;
        let (ctx, page) = live.open_page(&proxy.url()).await?;
        let popups = close_popups(live, ctx.clone()).await.ok();
        let context = OpenContext { live: live.clone(), ctx: Some(ctx) };
        Ok(Tab { live: live.clone(), proxy, context, page, popups, origin: None, uses: 0 })
    }

    /// Whether this tab was opened new for the capture in progress.
    pub(super) fn is_fresh(&self) -> bool {
        self.uses == 0
    }

    /// This warm tab, cleared for a capture of `url` in `live`; `None` when it cannot serve
    /// (another origin or browser, worn out, or the clearing failed: it is closed).
    pub(super) async fn reuse(mut self, live: &Arc<LiveBrowser>, url: &url::Url) -> Option<Tab> {
        let fits = self.serves(live) && self.uses < MAX_USES && self.origin.as_ref() == Some(&url.origin());
        if !fits {
            self.close().await;
            return None;
        }
        match tokio::time::timeout(CLEAR_TIMEOUT, self.clear(url)).await {
            Ok(Ok(())) => {
                self.proxy.resume();
                self.uses += 1;
                Some(self)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot clear a warm tab; opening a fresh one");
                self.close().await;
                None
            }
            Err(_) => {
                tracing::debug!("clearing a warm tab timed out; opening a fresh one");
                self.close().await;
                None
            }
        }
    }

    /// Service workers (which could set cookies) go before the cookies; nothing reaches the
    /// network meanwhile (the proxy is parked). The page must still be the blank it was left on.
    /// The HTTP cache is emptied alongside (no order matters there: it is the slowest step).
    async fn clear(&self, url: &url::Url) -> Result<(), chromiumoxide::error::CdpError> {
        let here = self.page.url().await?;
        if here.as_deref() != Some("about:blank") {
            return Err(chromiumoxide::error::CdpError::msg(format!("the parked tab shows {here:?}")));
        }
        let origin = url.origin().ascii_serialization();
        let ctx = self.context.ctx.clone();
        let storage = async {
            self.page.execute(ClearDataForOriginParams::new(origin, "all")).await?;
            self.live.browser.execute(ClearCookiesParams { browser_context_id: ctx }).await
        };
        let (storage, cache) =
            futures_util::join!(storage, self.page.execute(ClearBrowserCacheParams::default()));
        storage?;
        cache?;
        Ok(())
    }

    /// Keeps the tab for the next capture of `url`'s origin. The page leaves itself for
    /// `about:blank`: a blank document of the same origin, so the renderer stays (a navigation
    /// from here would start a new one) and the page's scripts and timers stop. There its
    /// `window.name` and the tab's session storage are cleared (after the page's unload
    /// handlers, and only a document of the origin can), the tab's history is reset, and the
    /// proxy is parked: every connection cut, none made until the next capture. `None` when the
    /// page did not end on the origin or any of that fails: the tab is closed.
    pub(super) async fn park(mut self, url: &url::Url) -> Option<Tab> {
        let origin = url.origin();
        let leave = async {
            let here = self.page.url().await?.and_then(|u| url::Url::parse(&u).ok()).map(|u| u.origin());
            if here.as_ref() != Some(&origin) || self.live.is_condemned() {
                return Ok(false);
            }
            let mut navigated = self.page.event_listener::<EventFrameNavigated>().await?;
            self.page.evaluate_expression("location.replace('about:blank')").await?;
            let mut blank = false;
            while let Some(ev) = navigated.next().await {
                if ev.frame.parent_id.is_none() && ev.frame.url == "about:blank" {
                    blank = true;
                    break;
                }
            }
            if !blank {
                return Ok(false);
            }
            self.page.evaluate_expression("window.name = ''; sessionStorage.clear(); true").await?;
            self.page.execute(ResetNavigationHistoryParams::default()).await?;
            Ok::<_, chromiumoxide::error::CdpError>(true)
        };
        match tokio::time::timeout(CLOSE_TIMEOUT, leave).await {
            Ok(Ok(true)) => {
                self.proxy.park();
                self.origin = Some(origin);
                Some(self)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot keep the tab warm");
                self.close().await;
                None
            }
            _ => {
                self.close().await;
                None
            }
        }
    }

    /// Whether the tab's browser is still one to capture with (alive, not condemned, and `live`).
    pub(super) fn serves(&self, live: &Arc<LiveBrowser>) -> bool {
        Arc::ptr_eq(&self.live, live) && live.is_alive() && !live.is_condemned()
    }

    /// Its browser context.
    pub(super) fn context_id(&self) -> Option<BrowserContextId> {
        self.context.ctx.clone()
    }

    /// The browser this tab lives in.
    pub(super) fn browser(&self) -> &Arc<LiveBrowser> {
        &self.live
    }

    /// Closes the context (every tab in it) and then the proxy with its connections.
    pub(super) async fn close(mut self) {
        if let Some(task) = self.popups.take() {
            task.abort();
        }
        self.context.close().await;
    }
}

impl Drop for Tab {
    fn drop(&mut self) {
        if let Some(task) = self.popups.take() {
            task.abort();
        }
    }
}
/// A capture's browser context, closed on every path: awaited by [`OpenContext::close`], or
/// in the background if the capture's future is dropped.
pub(super) struct OpenContext {
    pub(super) live: Arc<LiveBrowser>,
    pub(super) ctx: Option<BrowserContextId>,
}

impl OpenContext {
    /// Disposes the context, which closes every target in it. A browser that cannot do that in
    /// time is replaced: a tab it could not close may still be running.
    pub(super) async fn close(&mut self) {
        let Some(ctx) = self.ctx.take() else { return };
        if !self.live.is_alive() {
            return;
        }
        match tokio::time::timeout(CLOSE_TIMEOUT, self.live.browser.dispose_browser_context(ctx)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot close a capture's tabs; replacing the browser");
                self.live.condemn();
            }
            Err(_) => {
                tracing::warn!("closing a capture's tabs timed out; replacing the browser");
                self.live.condemn();
            }
        }
    }
}

impl Drop for OpenContext {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            let live = self.live.clone();
            tokio::spawn(async move {
                if tokio::time::timeout(CLOSE_TIMEOUT, live.browser.dispose_browser_context(ctx))
                    .await
                    .is_err()
                {
                    live.condemn();
                }
            });
        }
    }
}

/// Answers every JavaScript dialog at once (an `alert` would otherwise stop the page until the
/// capture times out) and records it; `window.print` does nothing.
pub(super) async fn dismiss_dialogs(
    tab: &Tab,
    seen: Arc<std::sync::Mutex<Vec<Dialog>>>,
) -> Result<tokio::task::JoinHandle<()>, CaptureError> {
    let page = &tab.page;
    let mut opened = page.event_listener::<EventJavascriptDialogOpening>().await?;
    if tab.is_fresh() {
        // Once per tab: it stays for every later document.
        page.execute(AddScriptToEvaluateOnNewDocumentParams::new("window.print = () => {};")).await?;
    }
    let page = page.clone();
    Ok(tokio::spawn(async move {
        while let Some(ev) = opened.next().await {
            let kind = ev.r#type.as_ref().to_owned();
            // OK on an alert or a "leave the page?"; Cancel on a question.
            let accept = matches!(ev.r#type, DialogType::Alert | DialogType::Beforeunload);
            {
                let mut seen = seen.lock().expect("not poisoned");
                if seen.len() < MAX_DIALOGS {
                    seen.push(Dialog { kind, message: ev.message.chars().take(200).collect() });
                }
            }
            if page.execute(HandleJavaScriptDialogParams::new(accept)).await.is_err() {
                break;
            }
        }
    }))
}

/// The monitor's `headers` and `basic_auth`, as headers.
pub(super) fn secret_headers(spec: &CaptureSpec) -> Option<Vec<(String, String)>> {
    let mut headers: Vec<(String, String)> =
        spec.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(auth) = &spec.basic_auth {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", auth.username, auth.password));
        headers.push(("Authorization".into(), format!("Basic {token}")));
    }
    (!headers.is_empty()).then_some(headers)
}

/// Fails the requests `block_requests` names, and adds the secret headers to the requests of
/// the page's own origin, and only to those: with secrets every request the page makes is
/// paused, and one to another origin continues with those header names taken out (Chromium
/// keeps headers added to a request across its redirects). Requests this session does not
/// see — other tabs, out-of-process frames, workers — never get them.
pub(super) async fn intercept(
    page: &Page,
    url: &url::Url,
    secrets: Option<Vec<(String, String)>>,
    blocked: &[String],
) -> Result<tokio::task::JoinHandle<()>, CaptureError> {
    let mut paused = page.event_listener::<EventRequestPaused>().await?;
    let pattern = |p: &str| RequestPattern {
        url_pattern: Some(p.into()),
        resource_type: None,
        request_stage: Some(RequestStage::Request),
    };
    // Fetch's own wildcards are `*` and `?`: a wider net than ours, narrowed below.
    let patterns = match secrets {
        Some(_) => vec![pattern("*")],
        None => blocked.iter().map(|p| pattern(p)).collect(),
    };
    let secrets = secrets.unwrap_or_default();
    let blocked = blocked.to_vec();
    page.execute(FetchEnableParams { patterns: Some(patterns), handle_auth_requests: None }).await?;
    let origin = url.origin();
    let page = page.clone();
    Ok(tokio::spawn(async move {
        while let Some(ev) = paused.next().await {
            if blocked.iter().any(|p| crate::config::page::matches_pattern(p, &ev.request.url)) {
                tracing::debug!(url = %ev.request.url, "blocked by block_requests");
                let fail = FailRequestParams::new(ev.request_id.clone(), ErrorReason::BlockedByClient);
                if page.execute(fail).await.is_err() {
                    break;
                }
                continue;
            }
            let own = url::Url::parse(&ev.request.url).is_ok_and(|u| u.origin() == origin);
            let mut headers: Vec<HeaderEntry> = ev
                .request
                .headers
                .inner()
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(name, _)| !secrets.iter().any(|(s, _)| s.eq_ignore_ascii_case(name)))
                .map(|(name, value)| HeaderEntry::new(name.clone(), value.as_str().unwrap_or_default()))
                .collect();
            if own {
                headers.extend(secrets.iter().map(|(k, v)| HeaderEntry::new(k.clone(), v.clone())));
            }
            let mut next = ContinueRequestParams::new(ev.request_id.clone());
            next.headers = Some(headers);
            if page.execute(next).await.is_err() {
                break;
            }
        }
    }))
}

/// Closes every tab the page opens (`window.open`, `target=_blank`) as soon as it appears: a
/// popup is not part of the picture, a dialog in it would stop the page's shared renderer, and
/// in front it would stop the page from drawing. Its connections went through the capture's
/// proxy for as long as it lived.
async fn close_popups(
    live: &Arc<LiveBrowser>,
    ctx: BrowserContextId,
) -> Result<tokio::task::JoinHandle<()>, CaptureError> {
    let mut created = live.browser.event_listener::<EventTargetCreated>().await?;
    let live = live.clone();
    Ok(tokio::spawn(async move {
        while let Some(ev) = created.next().await {
            let info = &ev.target_info;
            if info.browser_context_id.as_ref() == Some(&ctx) && info.opener_id.is_some() {
                tracing::debug!(url = %info.url, "closing a tab the page opened");
                let _ = live.browser.execute(CloseTargetParams::new(info.target_id.clone())).await;
            }
        }
    }))
}
