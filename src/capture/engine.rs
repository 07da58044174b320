//! One capture in a browser context of its own (fresh, or the worker's warm tab of the same
//! origin, cleared: [`Tab`]): emulate, navigate, wait, stabilise, shoot.
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
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::network::{CookieParam, SetCookiesParams};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, EventFrameNavigated, PrintToPdfParams, Viewport,
};
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;

use super::browser::LiveBrowser;
use super::error::{CaptureError, CaptureFailure};
use super::load::{Refused, navigate};
use super::prepare::{eval, js_string, wait_for_selector};
use super::request::CaptureSpec;
use super::tab::Tab;
use crate::config::Format;
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
    /// Two shots in a row were identical; `None` when not checked (a zero stability timeout).
    pub stable: Option<bool>,
    /// The page was taller than `max_height` and was cut there.
    pub clipped: bool,
    /// JavaScript dialogs the page opened (dismissed, so the capture went on).
    pub dialogs: Vec<super::tab::Dialog>,
    /// It ran in a warm tab, kept from the worker's previous capture.
    pub warm: bool,
    pub timings: Timings,
    /// The session's cookies after it signed in (`sessions:`), for the worker to keep.
    pub login_state: Option<super::login::LoginState>,
}

/// Where a capture's time went, in milliseconds (`vigil capture --timings`, and the capture
/// worker's `capture timings` debug line; docs/benchmarks.md).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    /// The capture's proxy, browser context and tab; for a warm tab, checking and clearing it.
    pub open: u64,
    /// Viewport, media features, user agent, cookies.
    pub emulate: u64,
    /// Navigation until `wait_until` (`networkidle`: the load event, then the quiet window,
    /// unless the page was prepared during the window: then only until the load event).
    pub load: u64,
    /// Animations stopped, fonts and images awaited (a full page scrolled through), `wait_for`
    /// and `delay`; when a viewport shot was prepared during the quiet window, that window too.
    pub settle: u64,
    /// Every screenshot until two in a row were identical (or PDF printing).
    pub shoot: u64,
    /// Screenshots taken once the page was ready; an early shot from the quiet window that was
    /// kept counts as one of them.
    pub shots: u32,
    /// Reading the page's words and writing them into the PNG (`text`; part of `shoot`).
    pub words: u64,
    /// Closing the context and its tabs, or parking a warm tab.
    pub close: u64,
}

/// How long a preparation begun during `networkidle`'s quiet window may go on after the window
/// ended, before it is dropped (and done again, as without the overlap).
const EARLY_GRACE: Duration = Duration::from_millis(250);

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The limits and the way out every capture has (docs/capture.md).
#[derive(Debug, Clone)]
pub struct Containment {
    /// Where the page's connections may go.
    pub policy: super::egress::Policy,
    /// Device pixels a screenshot may have (`capture.max_pixels`).
    pub max_pixels: u64,
    /// The capture, tabs closed included, ends within this (`capture.job_timeout`).
    pub deadline: Duration,
}

const FREEZE_CSS: &str = "*,*::before,*::after{animation-delay:0s!important;animation-duration:0s!important;\
animation-iteration-count:1!important;transition:none!important;caret-color:transparent!important;\
scroll-behavior:auto!important}*:focus,*:focus-visible{outline:none!important}";

/// Captures `spec` in a browser context whose connections all go through a proxy of its own
/// ([`super::egress`]): a fresh one, or `warm` — the tab this worker kept from its last capture
/// — when that was of the same origin, cleared first ([`Tab`]). Whatever happens — success,
/// failure, timeout — every target the page opened (popups) is closed before this returns; the
/// context and the proxy too, unless the capture went well and the tab is kept in `warm`.
pub async fn capture(
    live: &Arc<LiveBrowser>,
    spec: &CaptureSpec,
    stability_timeout: Duration,
    limits: &Containment,
    mut warm: Option<&mut Option<Tab>>,
) -> Result<CaptureOutput, CaptureFailure> {
    let t0 = Instant::now();
    let kills_before = live.memory_kills();
    let warmable = super::tab::warmable(spec) && warm.is_some();
    let reused = match warm.as_mut().and_then(|w| w.take()) {
        Some(tab) if warmable => tab.reuse(live, &spec.url).await,
        Some(tab) => {
            tab.close().await;
            None
        }
        None => None,
    };
    let tab = match reused {
        Some(tab) => tab,
        None => {
            let policy =
                limits.policy.clone().reserving(&live.devtools_port().into_iter().collect::<Vec<_>>());
            Tab::open(live, policy).await?
        }
    };
    let opened = t0.elapsed();
    let warm_tab = !tab.is_fresh();
    let page = tab.page.clone();
    let dialogs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut navigated = page.event_listener::<EventFrameNavigated>().await.map_err(CaptureError::from)?;
    let work = async {
        let mut crashed = page.event_listener::<EventTargetCrashed>().await?;
        let dialog_task = super::tab::dismiss_dialogs(&tab, dialogs.clone()).await?;
        let secrets = super::tab::secret_headers(spec);
        let secrets_task = match secrets.is_some() || !spec.page.block_requests.is_empty() {
            true => Some(super::tab::intercept(&page, &spec.url, secrets, &spec.page.block_requests).await?),
            false => None,
        };
        super::prepare::emulate(live, &page, tab.context_id(), spec).await?;
        let refused = |host: &str, port: u16| {
            (tab.proxy.refusal(host).map(CaptureError::Policy))
                .or_else(|| tab.proxy.unreachable(host, port).map(CaptureError::Navigation))
        };
        let r = tokio::select! {
            r = in_page(live, (&page, tab.context_id()), spec, stability_timeout, limits.max_pixels, &refused) => r,
            Some(_) = crashed.next() => Err(CaptureError::BrowserGone),
        };
        // While dialogs are still answered (a page may `alert` its error), before the deadline.
        let picture = match &r {
            Err(e) if e.shows_failing_state() => {
                let until = (t0 + limits.deadline).checked_sub(Duration::from_millis(250)).unwrap_or(t0);
                super::tab::failing_state(&page, spec, until).await
            }
            _ => None,
        };
        dialog_task.abort();
        if let Some(t) = secrets_task {
            t.abort();
        }
        Ok::<_, CaptureError>((r, picture))
    };
    // A dead browser never answers: stop waiting for it at once.
    let remaining = limits.deadline.saturating_sub(t0.elapsed());
    let (result, failing_state) = tokio::select! {
        r = tokio::time::timeout(remaining, work) => match r {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => (Err(e), None),
            Err(_) => (Err(CaptureError::JobTimeout(limits.deadline)), None),
        },
        () = live.died() => (Err(CaptureError::BrowserGone), None),
    };
    let closing = Instant::now();
    let (refused, first) = tab.proxy.refusals();
    // A page that opened a dialog is not trusted with the next capture, nor one that went to
    // another origin (whose storage the next capture's clearing would not reach).
    let mut strayed = false;
    while let Some(Some(ev)) = navigated.next().now_or_never() {
        let elsewhere = url::Url::parse(&ev.frame.url).is_ok_and(|u| u.origin() != spec.url.origin());
        strayed |= ev.frame.parent_id.is_none() && ev.frame.url != "about:blank" && elsewhere;
    }
    let clean = result.is_ok() && !strayed && dialogs.lock().expect("not poisoned").is_empty();
    match warm {
        Some(slot) if clean && warmable && live.is_alive() => *slot = tab.park(&spec.url).await,
        _ => tab.close().await,
    }
    let closed = closing.elapsed();
    if let Some(first) = &first {
        tracing::info!(refused, first = %first, "the address policy refused connections of the page");
    }
    match result {
        Ok(mut out) => {
            out.dialogs = std::mem::take(&mut *dialogs.lock().expect("not poisoned"));
            out.timings.open = ms(opened);
            out.warm = warm_tab;
            out.timings.close = ms(closed);
            Ok(out)
        }
        // The tab crashed while the browser lives on, and the watchdog killed a renderer.
        Err(CaptureError::BrowserGone) if live.is_alive() && live.memory_kills() > kills_before => {
            Err(CaptureError::PageMemory.into())
        }
        Err(_) if !live.is_alive() => Err(CaptureError::BrowserGone.into()),
        Err(error) => Err(CaptureFailure { error, failing_state }),
    }
}

async fn in_page(
    live: &LiveBrowser,
    (page, context): (&Page, Option<chromiumoxide::cdp::browser_protocol::browser::BrowserContextId>),
    spec: &CaptureSpec,
    stability_timeout: Duration,
    max_pixels: u64,
    refused: &Refused<'_>,
) -> Result<CaptureOutput, CaptureError> {
    let start = Instant::now();
    let deadline = start + spec.timeout;
    emulate(page, spec).await?;
    let emulated = start.elapsed();
    let (quiet, login_state) = match &spec.page.session {
        Some(s) => {
            let signed =
                super::login::navigate_signed_in(live, page, context, spec, s, deadline, refused).await?;
            (signed.quiet, signed.new_state)
        }
        None => (navigate(page, spec, deadline, refused).await?, None),
    };
    // With `networkidle`, a viewport shot is prepared and taken while the network has its quiet
    // window. After the window the page is stabilised again as always (undoing what it did in
    // the window: a focus, an animation, a scroll), and the early shot counts as the first of
    // the two identical shots if no request began since it was prepared; one more shot must
    // equal it. The overlap is left out where preparing could make requests or
    // fail on a page still being built (a full page is scrolled through; a selector may not be
    // there yet), and for `wait_for`, `delay` and a zero stability timeout.
    let overlap = spec.wait_for.is_none()
        && spec.delay.is_zero()
        && spec.format == Format::Png
        && !spec.full_page
        && spec.selector.is_none()
        && !spec.page.touches_page()
        && spec.page.session.is_none()
        && !stability_timeout.is_zero();
    let mut early = None;
    let mut loaded = start.elapsed();
    if let Some(quiet) = quiet {
        if overlap {
            // A request that began within a few ms of this moment counts as after it.
            let began = super::load::now_epoch() - 0.005;
            let prepare = async {
                stabilise(page, spec).await?;
                let shot = Shot::prepare(page, spec, max_pixels).await?;
                shot.take(page).await
            };
            // Only the wait's errors count, at once: a preparation that failed, or is still
            // waiting for fonts or images shortly after the network went quiet, is dropped and
            // done again after the window.
            tokio::pin!(prepare);
            let wait = quiet.wait(page, deadline);
            tokio::pin!(wait);
            let (last_request, prepared) = tokio::select! {
                r = &mut wait => (r?, tokio::time::timeout(EARLY_GRACE, &mut prepare).await.ok()),
                p = &mut prepare => (wait.await?, Some(p)),
            };
            match prepared {
                Some(Ok(prepared)) if last_request.is_none_or(|t| t < began) => early = Some(prepared),
                Some(Ok(_)) => {
                    tracing::debug!("a request during the quiet window: its early shot is dropped")
                }
                Some(Err(e)) => tracing::debug!(error = %e, "preparing during the quiet window failed"),
                None => tracing::debug!("preparing outlasted the quiet window: its early shot is dropped"),
            }
        } else {
            quiet.wait(page, deadline).await?;
            loaded = start.elapsed();
        }
    }
    if let Some(sel) = &spec.wait_for {
        wait_for_selector(page, sel, deadline).await?;
    }
    super::prepare::prepare(page, spec, deadline).await?;
    stabilise(page, spec).await?;
    if !spec.delay.is_zero() {
        tokio::time::sleep(spec.delay).await;
    }
    let settled = start.elapsed();
    let mut timings = Timings {
        emulate: ms(emulated),
        load: ms(loaded - emulated),
        settle: ms(settled - loaded),
        ..Timings::default()
    };
    let mut out = match spec.format {
        Format::Pdf => {
            let params = PrintToPdfParams { print_background: Some(true), ..Default::default() };
            let bytes = page.pdf(params).await?;
            timings.shoot = ms(start.elapsed() - settled);
            CaptureOutput {
                bytes,
                content_type: "application/pdf",
                width: None,
                height: None,
                masks: Vec::new(),
                stable: None,
                clipped: false,
                dialogs: Vec::new(),
                warm: false,
                timings,
                login_state: None,
            }
        }
        Format::Png => {
            let mut out = shoot_png(page, spec, stability_timeout, max_pixels, early).await?;
            timings.shoot = ms(start.elapsed() - settled);
            timings.shots = out.timings.shots;
            timings.words = out.timings.words;
            out.timings = timings;
            out
        }
    };
    out.login_state = login_state;
    Ok(out)
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
    // With a locale, the override (user agent and language together) is prepare::emulate's.
    if let Some(ua) = spec.user_agent.as_ref().filter(|_| spec.page.locale.is_none()) {
        page.execute(SetUserAgentOverrideParams::new(ua.clone())).await?;
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
        // Straight to the protocol: chromiumoxide's `set_cookies` refuses any cookie while the
        // tab shows `about:blank`, which a tab always does before its navigation.
        page.execute(SetCookiesParams::new(cookies)).await?;
    }
    Ok(())
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
  }}
  window.scrollTo(0, 0);
  // Images in the picture: a lazy image outside a viewport shot (below it, or to the side in a
  // carousel) never loads.
  const shown = i => {{ const r = i.getBoundingClientRect();
    return r.bottom > 0 && r.top < window.innerHeight && r.right > 0 && r.left < window.innerWidth; }};
  const imgs = Array.from(document.images).filter(i => !i.complete && ({full_page} || i.loading !== 'lazy' || shown(i)));
  // Listeners, not `onload`: the page's own handlers must still run.
  const done = i => new Promise(r => {{ i.addEventListener('load', r, {{once: true}}); i.addEventListener('error', r, {{once: true}}); }});
  await settle(Promise.all(imgs.map(done)), 5000);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r())));
  // Autofocus happens at a rendering update, which may come after the blur above.
  if (document.activeElement && document.activeElement !== document.body && document.activeElement.blur) {{
    document.activeElement.blur();
    await new Promise(r => requestAnimationFrame(() => r()));
  }}
  return true;
}})()"#,
        css = js_string(&css),
        max = spec.max_height,
    );
    eval::<bool>(page, &js).await?;
    Ok(())
}

#[derive(Deserialize)]
pub(super) struct Rect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl Rect {
    /// This page rectangle in the image of `clip` at `scale`, cut to it, widened to whole pixels;
    /// `None` when nothing of it is in the picture (or the page made up a NaN).
    pub(super) fn in_image(&self, clip: &Rect, scale: f64) -> Option<Region> {
        let x0 = ((self.x - clip.x).max(0.0) * scale).floor();
        let y0 = ((self.y - clip.y).max(0.0) * scale).floor();
        let x1 = ((self.x + self.width - clip.x).min(clip.width) * scale).ceil();
        let y1 = ((self.y + self.height - clip.y).min(clip.height) * scale).ceil();
        let (width, height) = ((x1 - x0) as u32, (y1 - y0) as u32);
        (x1 > x0 && y1 > y0).then_some(Region { x: x0 as u32, y: y0 as u32, width, height })
    }
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
    out.extend(rects.iter().filter_map(|r| r.in_image(clip, s)));
    Ok(out)
}

/// What a PNG shot of the page covers: computed from the page as it is laid out now.
struct Shot {
    params: CaptureScreenshotParams,
    clip: Rect,
    masks: Vec<Region>,
    clipped: bool,
}

impl Shot {
    async fn prepare(page: &Page, spec: &CaptureSpec, max_pixels: u64) -> Result<Shot, CaptureError> {
        // A popup the page opened is in front now, and a tab behind draws no frames: the
        // screenshot would wait for one until the capture times out.
        page.bring_to_front().await?;
        let (clip, clipped) = clip_rect(page, spec).await?;
        // Checked before the browser draws it: an image is held whole, in Chromium and here.
        let pixels = (clip.width * spec.scale).ceil() * (clip.height * spec.scale).ceil();
        if pixels > max_pixels as f64 {
            return Err(CaptureError::TooLarge { pixels: pixels as u64, max: max_pixels });
        }
        let masks = mask_rects(page, spec, &clip).await?;
        let params = CaptureScreenshotParams {
            format: Some(CaptureScreenshotFormat::Png),
            quality: None,
            clip: Some(Viewport { x: clip.x, y: clip.y, width: clip.width, height: clip.height, scale: 1.0 }),
            from_surface: Some(true),
            // Beyond the viewport only when the picture is: otherwise Chromium lays the page
            // out again at the clip's size for every shot.
            capture_beyond_viewport: Some(spec.full_page || spec.selector.is_some()),
            optimize_for_speed: Some(true),
        };
        Ok(Shot { params, clip, masks, clipped })
    }

    async fn take(&self, page: &Page) -> Result<Vec<u8>, CaptureError> {
        let r = page.execute(self.params.clone()).await?;
        let data: &str = r.result.data.as_ref();
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| CaptureError::Navigation(format!("bad screenshot data: {e}")))
    }
}

/// Shoots until two consecutive shots are identical. `early` is a viewport shot taken during the
/// network's quiet window: the first of them (the rectangle is the viewport; the masks are
/// measured now).
async fn shoot_png(
    page: &Page,
    spec: &CaptureSpec,
    stability_timeout: Duration,
    max_pixels: u64,
    early: Option<Vec<u8>>,
) -> Result<CaptureOutput, CaptureError> {
    let shot = Shot::prepare(page, spec, max_pixels).await?;
    // A zero stability timeout takes one shot (and cannot claim it was stable).
    let until = Instant::now() + stability_timeout;
    let mut last = match early {
        Some(bytes) => bytes,
        None => shot.take(page).await?,
    };
    let mut shots = 1;
    let mut stable = false;
    // The words are read while the first shot that may prove the page stable is taken: they are
    // the words of that picture if it equals the one before (else once more, at the end).
    let read_words = || super::words::read_within(page, &shot.clip, spec.scale);
    let mut words = None;
    while !stability_timeout.is_zero() {
        let (next, read) = match spec.text && shots == 1 {
            true => {
                let (next, read) = tokio::join!(shot.take(page), read_words());
                (next?, Some(read))
            }
            false => (shot.take(page).await?, None),
        };
        shots += 1;
        if next == last {
            stable = true;
            words = read;
            break;
        }
        last = next;
        if Instant::now() >= until {
            break;
        }
    }
    let (width, height) = crate::diff::png_dimensions(&last, &crate::diff::Limits::default())
        .map_err(CaptureError::BadImage)?;
    // One shot, or shots that never settled: the words of the page as it is now.
    let (read, reading) = match (spec.text, words) {
        (true, None) => read_words().await,
        (_, words) => words.unwrap_or((None, 0)),
    };
    if let Some(with) = read.and_then(|w| crate::diff::text::embed(&last, &w)) {
        last = with;
    }
    Ok(CaptureOutput {
        bytes: last,
        content_type: "image/png",
        width: Some(width),
        height: Some(height),
        masks: shot.masks,
        stable: (!stability_timeout.is_zero()).then_some(stable),
        clipped: shot.clipped,
        dialogs: Vec::new(),
        warm: false,
        timings: Timings { shots, words: reading, ..Timings::default() },
        login_state: None,
    })
}
