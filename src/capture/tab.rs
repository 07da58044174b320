//! The life of a capture's tab (docs/capture.md): its browser context is closed on every path,
//! with every popup it opened; JavaScript dialogs are answered at once and reported; the
//! monitor's secret headers go to its own origin only.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams as FetchEnableParams, EventRequestPaused, HeaderEntry,
    RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, DialogType, EventJavascriptDialogOpening,
    HandleJavaScriptDialogParams,
};
use chromiumoxide::cdp::browser_protocol::target::{CloseTargetParams, EventTargetCreated};
use futures_util::StreamExt;

use super::browser::LiveBrowser;
use super::error::CaptureError;
use super::request::CaptureSpec;

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
/// A capture's browser context, closed on every path: awaited by [`OpenContext::close`], or
/// in the background if the capture's future is dropped.
pub(super) struct OpenContext {
    pub(super) live: Arc<LiveBrowser>,
    pub(super) ctx: Option<BrowserContextId>,
}

impl OpenContext {
    /// Disposes the context, which closes every target in it. A browser that cannot do that in
    /// time is replaced: a tab it could not close may still be running.
    pub(super) async fn close(mut self) {
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
    page: &Page,
    seen: Arc<std::sync::Mutex<Vec<Dialog>>>,
) -> Result<tokio::task::JoinHandle<()>, CaptureError> {
    let mut opened = page.event_listener::<EventJavascriptDialogOpening>().await?;
    page.execute(AddScriptToEvaluateOnNewDocumentParams::new("window.print = () => {};")).await?;
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

/// Adds the secret headers to the requests of the page's own origin, and only to those: every
/// request the page makes is paused, and one to another origin continues with those header
/// names taken out (Chromium keeps headers added to a request across its redirects). Requests
/// this session does not see — other tabs, out-of-process frames, workers — never get them.
pub(super) async fn send_secrets_to_origin(
    page: &Page,
    url: &url::Url,
    secrets: Vec<(String, String)>,
) -> Result<tokio::task::JoinHandle<()>, CaptureError> {
    let mut paused = page.event_listener::<EventRequestPaused>().await?;
    let pattern = RequestPattern {
        url_pattern: Some("*".into()),
        resource_type: None,
        request_stage: Some(RequestStage::Request),
    };
    page.execute(FetchEnableParams { patterns: Some(vec![pattern]), handle_auth_requests: None }).await?;
    let origin = url.origin();
    let page = page.clone();
    Ok(tokio::spawn(async move {
        while let Some(ev) = paused.next().await {
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
pub(super) async fn close_popups(
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
