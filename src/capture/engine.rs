//! One capture in a fresh browser context: emulate, navigate, wait, stabilise, shoot.
//!
//! Stability: CSS that stops animations, transitions and the caret; finite Web Animations
//! finished and infinite ones cancelled; fonts and images awaited (a full page is scrolled through
//! once so lazy images load); then shots are taken until two in a row are identical, up to
//! `stability_timeout` (the result says `stable: false` when it gave up).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDeviceMetricsOverrideParams, SetEmulatedMediaParams, SetFocusEmulationEnabledParams,
    SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams as FetchEnableParams, EventRequestPaused, FailRequestParams,
    RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::network::ErrorReason;
use chromiumoxide::cdp::browser_protocol::network::{
    CookieParam, EventResponseReceived, Headers, ResourceType, SetExtraHttpHeadersParams,
};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, EventLifecycleEvent, NavigateParams, PrintToPdfParams,
    SetLifecycleEventsEnabledParams, Viewport,
};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;

use super::browser::LiveBrowser;
use super::error::CaptureError;
use super::request::CaptureSpec;
use crate::config::{Format, WaitUntil};
use crate::diff::Region;

/// What a capture produced.
#[derive(Debug, Clone)]
pub struct CaptureOutput {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Mask rectangles in image coordinates (CSS pixels × scale), for the diff.
    pub masks: Vec<Region>,
    pub stable: bool,
    /// The page was taller than `max_height` and was cut there.
    pub clipped: bool,
}

const FREEZE_CSS: &str = "*,*::before,*::after{animation-delay:0s!important;animation-duration:0s!important;\
animation-iteration-count:1!important;transition:none!important;caret-color:transparent!important;\
scroll-behavior:auto!important}";

/// `guard`: for untrusted (API-submitted) captures, the private ranges they may reach; every
/// request the page makes, redirects included, is checked against the address policy before it
/// leaves. `None` for monitors of the YAML file, which are trusted.
pub async fn capture(
    live: &Arc<LiveBrowser>,
    spec: &CaptureSpec,
    stability_timeout: Duration,
    guard: Option<&[ipnet::IpNet]>,
) -> Result<CaptureOutput, CaptureError> {
    let t0 = Instant::now();
    let (ctx, page) = live.open_page().await?;
    let t_page = t0.elapsed();
    let work = async {
        let mut crashed = page.event_listener::<EventTargetCrashed>().await?;
        let refused = Arc::new(std::sync::Mutex::new(None));
        let guard_task = match guard {
            Some(allow) => Some(start_guard(&page, allow.to_vec(), refused.clone()).await?),
            None => None,
        };
        tracing::debug!(?t_page, guarded = ?t0.elapsed(), "page opened");
        let r = tokio::select! {
            r = in_page(&page, spec, stability_timeout) => r,
            Some(_) = crashed.next() => Err(CaptureError::BrowserGone),
        };
        if let Some(t) = guard_task {
            t.abort();
        }
        // A navigation that failed because the guard refused it says why.
        match (r, refused.lock().expect("not poisoned").take()) {
            (Err(_), Some(policy)) => Err(CaptureError::Policy(policy)),
            (r, _) => r,
        }
    };
    // A dead browser never answers: stop waiting for it at once.
    let result = tokio::select! {
        r = work => r,
        () = live.died() => Err(CaptureError::BrowserGone),
    };
    // Disposing the context closes its page; nobody waits for that.
    if live.is_alive() {
        let live = live.clone();
        tokio::spawn(async move {
            let _ = live.browser.dispose_browser_context(ctx).await;
        });
    }
    if result.is_err() && !live.is_alive() {
        return Err(CaptureError::BrowserGone);
    }
    result
}

/// Pauses every request of the page and lets it continue only if its URL passes the policy.
async fn start_guard(
    page: &Page,
    allow: Vec<ipnet::IpNet>,
    refused: Arc<std::sync::Mutex<Option<super::policy::PolicyError>>>,
) -> Result<tokio::task::JoinHandle<()>, CaptureError> {
    let mut paused = page.event_listener::<EventRequestPaused>().await?;
    let pattern = RequestPattern {
        url_pattern: Some("*".into()),
        resource_type: None,
        request_stage: Some(RequestStage::Request),
    };
    page.execute(FetchEnableParams { patterns: Some(vec![pattern]), handle_auth_requests: None }).await?;
    let page = page.clone();
    Ok(tokio::spawn(async move {
        let mut verdicts: std::collections::HashMap<String, Result<(), super::policy::PolicyError>> =
            Default::default();
        while let Some(ev) = paused.next().await {
            let verdict = match url::Url::parse(&ev.request.url) {
                Ok(u) if matches!(u.scheme(), "data" | "blob" | "about") => Ok(()),
                Ok(u) => {
                    let key = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
                    match verdicts.get(&key) {
                        Some(v) => v.clone(),
                        None => {
                            let v = super::policy::check_url(&u, false, &allow).await;
                            verdicts.insert(key, v.clone());
                            v
                        }
                    }
                }
                Err(_) => Err(super::policy::PolicyError::Scheme),
            };
            let sent = match verdict {
                Ok(()) => page.execute(ContinueRequestParams::new(ev.request_id.clone())).await.map(|_| ()),
                Err(e) => {
                    tracing::warn!(url = %ev.request.url, reason = %e, "capture request refused");
                    refused.lock().expect("not poisoned").get_or_insert(e);
                    page.execute(FailRequestParams::new(ev.request_id.clone(), ErrorReason::BlockedByClient))
                        .await
                        .map(|_| ())
                }
            };
            if sent.is_err() {
                break;
            }
        }
    }))
}

async fn in_page(
    page: &Page,
    spec: &CaptureSpec,
    stability_timeout: Duration,
) -> Result<CaptureOutput, CaptureError> {
    let start = Instant::now();
    let deadline = start + spec.timeout;
    emulate(page, spec).await?;
    let emulated = start.elapsed();
    navigate(page, spec, deadline).await?;
    let loaded = start.elapsed();
    if let Some(sel) = &spec.wait_for {
        wait_for_selector(page, sel, deadline).await?;
    }
    stabilise(page, spec).await?;
    tracing::debug!(?emulated, ?loaded, stabilised = ?start.elapsed(), "page ready");
    if !spec.delay.is_zero() {
        tokio::time::sleep(spec.delay).await;
    }
    match spec.format {
        Format::Pdf => {
            let params = PrintToPdfParams { print_background: Some(true), ..Default::default() };
            let bytes = page.pdf(params).await?;
            Ok(CaptureOutput {
                bytes,
                content_type: "application/pdf",
                width: None,
                height: None,
                masks: Vec::new(),
                stable: true,
                clipped: false,
            })
        }
        Format::Png => shoot_png(page, spec, stability_timeout).await,
    }
}

async fn emulate(page: &Page, spec: &CaptureSpec) -> Result<(), CaptureError> {
    page.execute(SetDeviceMetricsOverrideParams::new(
        spec.width as i64,
        spec.height as i64,
        spec.scale,
        spec.mobile,
    ))
    .await?;
    // Unfocused tabs count as hidden: animation frames stop and shots differ.
    page.execute(SetFocusEmulationEnabledParams::new(true)).await?;
    let features = vec![
        MediaFeature::new("prefers-color-scheme", if spec.dark_mode { "dark" } else { "light" }),
        MediaFeature::new(
            "prefers-reduced-motion",
            if spec.reduced_motion { "reduce" } else { "no-preference" },
        ),
    ];
    page.execute(SetEmulatedMediaParams { media: None, features: Some(features) }).await?;
    if let Some(ua) = &spec.user_agent {
        page.execute(SetUserAgentOverrideParams::new(ua.clone())).await?;
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in &spec.headers {
        headers.insert(k.clone(), v.clone().into());
    }
    if let Some(auth) = &spec.basic_auth {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", auth.username, auth.password));
        headers.insert("Authorization".into(), format!("Basic {token}").into());
    }
    if !headers.is_empty() {
        page.execute(SetExtraHttpHeadersParams::new(Headers::new(serde_json::Value::Object(headers))))
            .await?;
    }
    if !spec.cookies.is_empty() {
        let cookies = spec
            .cookies
            .iter()
            .map(|c| {
                let mut p = CookieParam::new(c.name.clone(), c.value.clone());
                match &c.domain {
                    Some(d) => p.domain = Some(d.clone()),
                    None => p.url = Some(spec.url.to_string()),
                }
                p.path = c.path.clone();
                p
            })
            .collect();
        page.set_cookies(cookies).await?;
    }
    page.execute(SetLifecycleEventsEnabledParams::new(true)).await?;
    Ok(())
}

async fn navigate(page: &Page, spec: &CaptureSpec, deadline: Instant) -> Result<(), CaptureError> {
    let mut events = page.event_listener::<EventLifecycleEvent>().await?;
    let mut responses = page.event_listener::<EventResponseReceived>().await?;
    let wanted = match spec.wait_until {
        WaitUntil::Load => "load",
        WaitUntil::Domcontentloaded => "DOMContentLoaded",
        WaitUntil::Networkidle => "networkIdle",
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let nav = tokio::time::timeout(remaining, page.execute(NavigateParams::new(spec.url.to_string())))
        .await
        .map_err(|_| CaptureError::NavigationTimeout(spec.timeout))??;
    if let Some(err) = &nav.result.error_text {
        return Err(CaptureError::Navigation(err.clone()));
    }
    let frame = nav.result.frame_id.clone();
    let loader = nav.result.loader_id.clone();
    let wait = async {
        while let Some(ev) = events.next().await {
            let same_loader = loader.as_ref().is_none_or(|l| *l == ev.loader_id);
            if ev.frame_id == frame && same_loader && ev.name == wanted {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), wait).await {
        Ok(true) => {}
        Ok(false) => return Err(CaptureError::BrowserGone),
        Err(_) => return Err(CaptureError::NavigationTimeout(spec.timeout)),
    }
    // The main document's final response (after redirects), which Chromium reports before the
    // page's lifecycle events: an error page is not a picture of the site.
    while let Some(Some(r)) = responses.next().now_or_never() {
        let same_loader = loader.as_ref().is_none_or(|l| *l == r.loader_id);
        if r.r#type == ResourceType::Document && r.frame_id.as_ref() == Some(&frame) && same_loader {
            if r.response.status >= 400 {
                let text = r.response.status_text.clone();
                return Err(CaptureError::HttpStatus { status: r.response.status as u16, text });
            }
            break;
        }
    }
    Ok(())
}

async fn eval<T: serde::de::DeserializeOwned>(page: &Page, js: &str) -> Result<T, CaptureError> {
    let params = EvaluateParams::builder()
        .expression(js)
        .await_promise(true)
        .return_by_value(true)
        .build()
        .expect("expression is set");
    let r = page.evaluate_expression(params).await?;
    r.into_value().map_err(|e| CaptureError::Navigation(format!("unexpected script result: {e}")))
}

fn js_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

async fn wait_for_selector(page: &Page, selector: &str, deadline: Instant) -> Result<(), CaptureError> {
    let js = format!("document.querySelector({}) !== null", js_string(selector));
    loop {
        if eval::<bool>(page, &js).await.unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CaptureError::WaitForTimeout(selector.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stabilise(page: &Page, spec: &CaptureSpec) -> Result<(), CaptureError> {
    let mut css = FREEZE_CSS.to_owned();
    for sel in &spec.hide {
        css.push_str(&format!("{sel}{{visibility:hidden!important}}"));
    }
    let full_page = spec.full_page && spec.selector.is_none();
    let js = format!(
        r#"(async () => {{
  const style = document.createElement('style');
  style.textContent = {css};
  (document.head || document.documentElement).appendChild(style);
  for (const a of document.getAnimations()) {{
    try {{ a.finish(); }} catch (e) {{ a.cancel(); }}
  }}
  if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
  const settle = (p, ms) => Promise.race([p, new Promise(r => setTimeout(r, ms))]);
  await settle(document.fonts.ready, 3000);
  if ({full_page}) {{
    const step = Math.max(window.innerHeight, 200);
    const limit = Math.min(document.documentElement.scrollHeight, {max});
    for (let y = 0; y < limit; y += step) {{ window.scrollTo(0, y); await new Promise(r => requestAnimationFrame(() => r())); }}
    window.scrollTo(0, 0);
  }}
  const imgs = Array.from(document.images).filter(i => !i.complete);
  await settle(Promise.all(imgs.map(i => new Promise(r => {{ i.onload = i.onerror = r; }}))), 5000);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r())));
  return true;
}})()"#,
        css = js_string(&css),
        max = spec.max_height,
    );
    eval::<bool>(page, &js).await?;
    Ok(())
}

#[derive(Deserialize)]
struct Rect {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
}

/// The rectangle to shoot, in page CSS pixels, and whether the page was cut at `max_height`.
async fn clip_rect(page: &Page, spec: &CaptureSpec) -> Result<(Rect, bool), CaptureError> {
    if let Some(sel) = &spec.selector {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return []; const r = e.getBoundingClientRect();\
             return [{{x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}}]; }})()",
            js_string(sel)
        );
        // An array: a `null` result does not come back as a value.
        let rects: Vec<Rect> = eval(page, &js).await?;
        let r = rects
            .into_iter()
            .next()
            .filter(|r| r.width >= 1.0 && r.height >= 1.0)
            .ok_or_else(|| CaptureError::SelectorNotFound(sel.clone()))?;
        let clipped = r.height > f64::from(spec.max_height);
        return Ok((Rect { height: r.height.min(f64::from(spec.max_height)), ..r }, clipped));
    }
    let (w, h) = (f64::from(spec.width), f64::from(spec.height));
    if !spec.full_page {
        return Ok((Rect { x: 0.0, y: 0.0, width: w, height: h }, false));
    }
    let page_height: f64 = eval(
        page,
        "Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0, window.innerHeight)",
    )
    .await?;
    let max = f64::from(spec.max_height);
    Ok((Rect { x: 0.0, y: 0.0, width: w, height: page_height.min(max).max(h.min(max)) }, page_height > max))
}

async fn mask_rects(page: &Page, spec: &CaptureSpec, clip: &Rect) -> Result<Vec<Region>, CaptureError> {
    let mut out = spec.mask_rects.clone();
    if spec.mask_selectors.is_empty() {
        return Ok(out);
    }
    let sels = serde_json::to_string(&spec.mask_selectors).expect("serialises");
    let js = format!(
        "{sels}.flatMap(s => Array.from(document.querySelectorAll(s))).map(e => {{ const r = e.getBoundingClientRect();\
         return {{x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}}; }})"
    );
    let rects: Vec<Rect> = eval(page, &js).await?;
    let s = spec.scale;
    for r in rects {
        let x0 = ((r.x - clip.x).max(0.0) * s).floor();
        let y0 = ((r.y - clip.y).max(0.0) * s).floor();
        let x1 = ((r.x + r.width - clip.x).min(clip.width) * s).ceil();
        let y1 = ((r.y + r.height - clip.y).min(clip.height) * s).ceil();
        if x1 > x0 && y1 > y0 {
            out.push(Region {
                x: x0 as u32,
                y: y0 as u32,
                width: (x1 - x0) as u32,
                height: (y1 - y0) as u32,
            });
        }
    }
    Ok(out)
}

async fn shoot_png(
    page: &Page,
    spec: &CaptureSpec,
    stability_timeout: Duration,
) -> Result<CaptureOutput, CaptureError> {
    let shot_started = Instant::now();
    let (clip, clipped) = clip_rect(page, spec).await?;
    let masks = mask_rects(page, spec, &clip).await?;
    let params = CaptureScreenshotParams {
        format: Some(CaptureScreenshotFormat::Png),
        quality: None,
        clip: Some(Viewport { x: clip.x, y: clip.y, width: clip.width, height: clip.height, scale: 1.0 }),
        from_surface: Some(true),
        capture_beyond_viewport: Some(true),
        optimize_for_speed: Some(true),
    };
    let shoot = || async {
        let r = page.execute(params.clone()).await?;
        let data: &str = r.result.data.as_ref();
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| CaptureError::Navigation(format!("bad screenshot data: {e}")))
    };
    // Shoot until two consecutive shots are identical; a zero stability timeout takes one shot
    // (and cannot claim it was stable).
    let until = Instant::now() + stability_timeout;
    let mut last = shoot().await?;
    let mut stable = false;
    while !stability_timeout.is_zero() {
        let next = shoot().await?;
        if next == last {
            stable = true;
            break;
        }
        last = next;
        if Instant::now() >= until {
            break;
        }
    }
    tracing::debug!(shot = ?shot_started.elapsed(), stable, "screenshot taken");
    let (width, height) = crate::diff::png_dimensions(&last, &crate::diff::Limits::default())
        .map_err(CaptureError::BadImage)?;
    Ok(CaptureOutput {
        bytes: last,
        content_type: "image/png",
        width: Some(width),
        height: Some(height),
        masks,
        stable,
        clipped,
    })
}
