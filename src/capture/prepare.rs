//! What a monitor does to its page between the load and the capture (docs/monitors.md): the
//! browser's time zone, locale and position; banners clicked away or removed; CSS injected;
//! the steps (a sign-in, a search, a wait); and a script last. A step that cannot be done
//! fails the capture with `step_failed`, naming the step and what it waited for, never a
//! picture of a half-done page that would read as a visual change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::browser::{
    BrowserContextId, PermissionDescriptor, PermissionSetting, SetPermissionParams,
};
use chromiumoxide::cdp::browser_protocol::emulation::{
    SetGeolocationOverrideParams, SetLocaleOverrideParams, SetTimezoneOverrideParams,
    SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::input::InsertTextParams;
use chromiumoxide::cdp::browser_protocol::page::{EventFrameStartedLoading, EventLoadEventFired};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use futures_util::StreamExt;

use super::browser::LiveBrowser;
use super::error::CaptureError;
use super::request::CaptureSpec;
use crate::config::page::{Action, BANNER_SELECTORS, PageSetup, Step, WaitFor};

/// How long after a click, a key or a script a navigation it started must have shown.
const NAVIGATION_SHOWS: Duration = Duration::from_millis(250);
/// How long a `click_accept` banner may take to appear after the load.
const BANNER_APPEARS: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);

/// The time zone, locale and position of the page's browser context.
pub(super) async fn emulate(
    live: &Arc<LiveBrowser>,
    page: &Page,
    context: Option<BrowserContextId>,
    spec: &CaptureSpec,
) -> Result<(), CaptureError> {
    if let Some(tz) = &spec.page.timezone {
        page.execute(SetTimezoneOverrideParams::new(tz.clone())).await?;
    }
    if let Some(locale) = &spec.page.locale {
        page.execute(SetLocaleOverrideParams { locale: Some(locale.replace('-', "_")) }).await?;
        let user_agent = match &spec.user_agent {
            Some(ua) => ua.clone(),
            None => live.browser.version().await?.user_agent,
        };
        let lang = locale.split('-').next().unwrap_or(locale);
        let accept = if lang == locale { locale.clone() } else { format!("{locale},{lang};q=0.9") };
        let mut ua = SetUserAgentOverrideParams::new(user_agent);
        ua.accept_language = Some(accept);
        page.execute(ua).await?;
    }
    if let Some(g) = &spec.page.geolocation {
        let permission = PermissionDescriptor::new("geolocation");
        let mut grant = SetPermissionParams::new(permission, PermissionSetting::Granted);
        // The whole context: it is this capture's alone, and a redirect changes the origin.
        grant.browser_context_id = context;
        live.browser.execute(grant).await?;
        let position = SetGeolocationOverrideParams::builder()
            .latitude(g.latitude)
            .longitude(g.longitude)
            .accuracy(g.accuracy)
            .build();
        page.execute(position).await?;
    }
    Ok(())
}

/// Banners, CSS, steps and the script, in that order (banners again after steps, which may
/// have loaded a page that shows one). Within `deadline`, the capture's own.
pub(super) async fn prepare(page: &Page, spec: &CaptureSpec, deadline: Instant) -> Result<(), CaptureError> {
    let setup = &spec.page;
    if !setup.touches_page() {
        return Ok(());
    }
    out_of_the_way(page, setup, deadline).await?;
    let mut allowed = origins(&spec.url, &setup.steps);
    allowed.extend(setup.session.as_ref().map(|s| s.url.origin()));
    steps(page, &setup.steps, &allowed, deadline).await?;
    if !setup.steps.is_empty() {
        out_of_the_way(page, setup, deadline).await?;
    }
    if let Some(js) = &setup.inject_js {
        let failed =
            |reason| CaptureError::StepFailed { step: "inject_js".into(), target: String::new(), reason };
        let run = with_navigation(page, deadline, script(page, js, false));
        match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(r) => r.map_err(failed)?,
            Err(_) => return Err(failed("not done before the capture's timeout".into())),
        }
    }
    Ok(())
}

/// Runs a script (`evaluate`, `inject_js`): a throw is its failure, and `false` too when
/// `false_fails` (an `evaluate` step, not `inject_js`, whose last statement may well be false).
async fn script(page: &Page, js: &str, false_fails: bool) -> Result<(), String> {
    let r: serde_json::Value = eval(page, &guarded(js)).await.map_err(|e| e.to_string())?;
    match (&r["error"], &r["ok"]) {
        (serde_json::Value::String(e), _) => Err(format!("the script threw {e}")),
        (_, serde_json::Value::Bool(false)) if false_fails => Err("the script returned false".into()),
        _ => Ok(()),
    }
}

/// The page is on one of `origins`, or what it is on.
async fn on_origin(page: &Page, origins: &[url::Origin]) -> Result<(), String> {
    let here: String = eval(page, "location.origin").await.map_err(|e| e.to_string())?;
    match origins.iter().any(|o| o.ascii_serialization() == here) {
        true => Ok(()),
        false => Err(format!(
            "the page is on {here}, not the origin of the monitor's (or session's) URL or of a goto step: nothing is typed or run"
        )),
    }
}

/// The origins a step may type a value on: the page it starts from and those its `goto`s load.
pub(super) fn origins(start: &url::Url, steps: &[Step]) -> Vec<url::Origin> {
    let gotos = steps.iter().filter_map(|s| match &s.action {
        Action::Goto(u) => Some(u.origin()),
        _ => None,
    });
    std::iter::once(start.origin()).chain(gotos).collect()
}

/// Does `steps` in order, each within its timeout and `deadline`.
pub(super) async fn steps(
    page: &Page,
    steps: &[Step],
    origins: &[url::Origin],
    deadline: Instant,
) -> Result<(), CaptureError> {
    for (i, step) in steps.iter().enumerate() {
        let until = deadline.min(Instant::now() + step.timeout);
        let failed = |reason: String| CaptureError::StepFailed {
            step: format!("step {} ({})", i + 1, step.kind()),
            target: step.target(),
            reason,
        };
        // The step's own waits end at `until` with their reason; this is the net under them.
        let done = run(page, step, origins, until);
        match tokio::time::timeout_at((until + Duration::from_secs(1)).into(), done).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(failed(reason)),
            Err(_) => return Err(failed(format!("not done within {}", human(step.timeout)))),
        }
    }
    Ok(())
}

/// Whether the page shows `check` (a visible element, or the text) before `until`.
pub(super) async fn shows(page: &Page, check: &WaitFor, until: Instant) -> bool {
    match check {
        WaitFor::Selector(sel) => visible(page, sel, until).await.is_ok(),
        WaitFor::Text(text) => {
            let js = format!("!!document.body && document.body.innerText.includes({})", js_string(text));
            poll(page, &js, until, "").await.is_ok()
        }
        WaitFor::Duration(_) => false,
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A script's own result, or its exception as text.
fn guarded(js: &str) -> String {
    format!(
        "(async () => {{ try {{ return {{ok: (await (0, eval)({})) !== false}}; }} catch (e) {{ return {{error: String(e)}}; }} }})()",
        js_string(js)
    )
}

/// `click_accept` (clicked when shown; the first second after the load is waited for one),
/// `remove` and `block_banners` (removed now and hidden if they come back), `inject_css`.
async fn out_of_the_way(page: &Page, setup: &PageSetup, deadline: Instant) -> Result<(), CaptureError> {
    let bad = |what: &str, reason: String| CaptureError::StepFailed {
        step: what.into(),
        target: String::new(),
        reason,
    };
    if !setup.click_accept.is_empty() {
        let until = deadline.min(Instant::now() + BANNER_APPEARS);
        let list = serde_json::to_string(&setup.click_accept).expect("serialises");
        // The first selector with a visible element, or an invalid one.
        let find = format!(
            "(() => {{ for (const s of {list}) {{ let all; try {{ all = Array.from(document.querySelectorAll(s)); }} catch (_) {{ return {{bad: s}}; }}
               if (all.some({VISIBLE})) return {{found: s}}; }}
               return {{}}; }})()"
        );
        loop {
            let r: serde_json::Value = eval(page, &find).await?;
            if let Some(s) = r["bad"].as_str() {
                return Err(bad("click_accept", format!("{s:?} is not a valid CSS selector")));
            }
            if let Some(s) = r["found"].as_str() {
                let s = s.to_owned();
                let click = async {
                    first_visible(page, &s).await?.click().await.map_err(cdp)?;
                    Ok(())
                };
                // A banner that moved away under the mouse is no reason to fail the capture.
                if let Err(reason) = with_navigation(page, deadline, click).await {
                    tracing::debug!(selector = %s, %reason, "click_accept: the click did not land");
                }
                break;
            }
            if Instant::now() >= until {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let mut gone: Vec<&str> = setup.remove.iter().map(String::as_str).collect();
    if setup.block_banners {
        gone.extend(BANNER_SELECTORS);
    }
    if gone.is_empty() && setup.inject_css.is_none() {
        return Ok(());
    }
    let css = setup.inject_css.clone().unwrap_or_default();
    let js = format!(
        r#"(() => {{
  let removed = 0;
  const hide = [];
  for (const s of {gone}) {{
    let found;
    try {{ found = document.querySelectorAll(s); }} catch (_) {{ return {{bad: s}}; }}
    for (const e of found) {{ e.remove(); removed++; }}
    hide.push(s + '{{display:none!important}}');
  }}
  const style = document.createElement('style');
  style.textContent = hide.join('') + {css};
  (document.head || document.documentElement).appendChild(style);
  // A banner that locked scrolling leaves it locked when it goes: unlock it.
  if (removed && {banners}) for (const e of [document.documentElement, document.body]) {{
    if (e && getComputedStyle(e).overflow === 'hidden') e.style.setProperty('overflow', 'visible', 'important');
  }}
  return {{removed}};
}})()"#,
        gone = serde_json::to_string(&gone).expect("serialises"),
        css = js_string(&css),
        banners = setup.block_banners,
    );
    let r: serde_json::Value = eval(page, &js).await?;
    match r["bad"].as_str() {
        Some(s) => Err(bad("remove", format!("{s:?} is not a valid CSS selector"))),
        None => Ok(()),
    }
}

/// Does `step`; the reason it could not.
async fn run(page: &Page, step: &Step, origins: &[url::Origin], until: Instant) -> Result<(), String> {
    match &step.action {
        Action::Click(sel) => {
            visible(page, sel, until).await?;
            with_navigation(page, until, async {
                first_visible(page, sel).await?.click().await.map_err(cdp)?;
                Ok(())
            })
            .await
        }
        Action::Hover(sel) => {
            visible(page, sel, until).await?;
            first_visible(page, sel).await?.hover().await.map_err(cdp)?;
            Ok(())
        }
        Action::ScrollTo(sel) => {
            present(page, sel, until).await?;
            page.find_element(sel.clone()).await.map_err(cdp)?.scroll_into_view().await.map_err(cdp)?;
            Ok(())
        }
        Action::Fill { selector, value } => {
            visible(page, selector, until).await?;
            // Typed only on the origins the monitor names: a redirect elsewhere gets nothing.
            on_origin(page, origins).await?;
            let clear = format!(
                "(() => {{ const e = Array.from(document.querySelectorAll({s})).find({VISIBLE}); e.focus();
                   if (document.activeElement !== e) return 'the element cannot take the focus';
                   if (e instanceof HTMLInputElement || e instanceof HTMLTextAreaElement) {{ e.select(); e.value = ''; }}
                   else if (e.isContentEditable) e.textContent = '';
                   else return 'the element is not a text field';
                   e.dispatchEvent(new Event('input', {{bubbles: true}})); return ''; }})()",
                s = js_string(selector)
            );
            match eval::<String>(page, &clear).await.map_err(|e| e.to_string())?.as_str() {
                "" => {}
                why => return Err(why.to_owned()),
            }
            page.execute(InsertTextParams::new(value.expose())).await.map_err(cdp)?;
            let changed = "document.activeElement && document.activeElement.dispatchEvent(new Event('change', {bubbles: true}))";
            eval::<bool>(page, changed).await.map_err(|e| e.to_string())?;
            Ok(())
        }
        Action::Press(key) => {
            if chromiumoxide::keys::get_key_definition(key).is_none() {
                return Err(format!("{key:?} is not a key name (e.g. Enter, Tab, Escape, ArrowDown, a)"));
            }
            with_navigation(page, until, async {
                page.find_element(":root").await.map_err(cdp)?.press_key(key).await.map_err(cdp)?;
                Ok(())
            })
            .await
        }
        Action::Select { selector, value } => {
            present(page, selector, until).await?;
            let js = format!(
                "(() => {{ const e = document.querySelector({s}); if (!(e instanceof HTMLSelectElement)) return 'not a <select>';
                   const o = Array.from(e.options).find(o => o.value === {v}) || Array.from(e.options).find(o => o.label === {v});
                   if (!o) return 'no option with that value or label';
                   e.value = o.value; e.dispatchEvent(new Event('input', {{bubbles: true}}));
                   e.dispatchEvent(new Event('change', {{bubbles: true}})); return ''; }})()",
                s = js_string(selector),
                v = js_string(value)
            );
            with_navigation(page, until, async {
                match eval::<String>(page, &js).await.map_err(|e| e.to_string())?.as_str() {
                    "" => Ok(()),
                    why => Err(why.to_owned()),
                }
            })
            .await
        }
        Action::WaitFor(WaitFor::Selector(sel)) => visible(page, sel, until).await,
        Action::WaitFor(WaitFor::Text(text)) => {
            let js = format!("!!document.body && document.body.innerText.includes({})", js_string(text));
            poll(page, &js, until, "the text did not appear").await
        }
        Action::WaitFor(WaitFor::Duration(d)) => {
            tokio::time::sleep_until(until.min(Instant::now() + *d).into()).await;
            Ok(())
        }
        Action::Evaluate(js) => {
            // A script may carry an interpolated secret: only for the monitor's own origins.
            on_origin(page, origins).await?;
            with_navigation(page, until, script(page, js, true)).await
        }
        Action::Goto(url) => {
            with_navigation(page, until, async {
                eval::<bool>(page, &format!("location.assign({}), true", js_string(url.as_str())))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            })
            .await
        }
    }
}

fn cdp(e: chromiumoxide::error::CdpError) -> String {
    e.to_string()
}

/// Until `js` is true; an invalid selector inside it ends the wait at once.
async fn poll(page: &Page, js: &str, until: Instant, timed_out: &str) -> Result<(), String> {
    let guarded =
        format!("(() => {{ try {{ return ({js}) ? 'yes' : 'no'; }} catch (e) {{ return String(e); }} }})()");
    loop {
        // While a navigation replaces the document an evaluation may fail: that is "not yet".
        match eval::<String>(page, &guarded).await.as_deref() {
            Ok("yes") => return Ok(()),
            Ok("no") | Err(_) => {}
            Ok(thrown) => return Err(thrown.to_owned()),
        }
        if Instant::now() >= until {
            return Err(timed_out.to_owned());
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn present(page: &Page, sel: &str, until: Instant) -> Result<(), String> {
    let js = format!("document.querySelector({}) !== null", js_string(sel));
    poll(page, &js, until, "no element matched").await
}

/// Whether an element is drawn: a box, not `visibility: hidden`.
const VISIBLE: &str = "e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden'";

/// An element of `sel` that is drawn.
async fn visible(page: &Page, sel: &str, until: Instant) -> Result<(), String> {
    let js = format!("Array.from(document.querySelectorAll({})).some({VISIBLE})", js_string(sel));
    present(page, sel, until).await?;
    poll(page, &js, until, "the element matched but was not visible").await
}

/// The first element of `sel` that is drawn (sites often have a hidden copy first).
async fn first_visible(page: &Page, sel: &str) -> Result<chromiumoxide::Element, String> {
    let js = format!("Array.from(document.querySelectorAll({})).findIndex({VISIBLE})", js_string(sel));
    let i: i64 = eval(page, &js).await.map_err(|e| e.to_string())?;
    let all = page.find_elements(sel.to_owned()).await.map_err(cdp)?;
    usize::try_from(i)
        .ok()
        .and_then(|i| all.into_iter().nth(i))
        .ok_or_else(|| "the element went away".to_owned())
}

/// Does `act`, and if it started a navigation of the page, waits for the new page's load, which
/// must be a page: not the browser's error page (a refused host, a network error), not an HTTP
/// error status.
async fn with_navigation(
    page: &Page,
    until: Instant,
    act: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    let mut started = page.event_listener::<EventFrameStartedLoading>().await.map_err(cdp)?;
    let mut loaded = page.event_listener::<EventLoadEventFired>().await.map_err(cdp)?;
    let main = page.mainframe().await.map_err(cdp)?;
    act.await?;
    let shows = async {
        while let Some(ev) = started.next().await {
            if main.as_ref().is_none_or(|m| *m == ev.frame_id) {
                return true;
            }
        }
        false
    };
    if !tokio::time::timeout(NAVIGATION_SHOWS, shows).await.unwrap_or(false) {
        return Ok(());
    }
    if tokio::time::timeout_at(until.into(), loaded.next()).await.is_err() {
        return Err("the page it led to did not finish loading".into());
    }
    let js =
        "[location.protocol, ((performance.getEntriesByType('navigation')[0]) || {}).responseStatus || 0]";
    let (protocol, status): (String, u16) = eval(page, js).await.map_err(|e| e.to_string())?;
    if protocol == "chrome-error:" {
        return Err(
            "the page it led to did not load (an HTTP error without a page, a network error, or an address the policy refuses)"
                .into(),
        );
    }
    if status >= 400 {
        return Err(format!("the page it led to answered HTTP {status}"));
    }
    Ok(())
}

pub(super) async fn eval<T: serde::de::DeserializeOwned>(page: &Page, js: &str) -> Result<T, CaptureError> {
    let params = EvaluateParams::builder()
        .expression(js)
        .await_promise(true)
        .return_by_value(true)
        .build()
        .expect("expression is set");
    let r = page.evaluate_expression(params).await?;
    r.into_value().map_err(|e| CaptureError::Navigation(format!("unexpected script result: {e}")))
}

pub(super) fn js_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

pub(super) async fn wait_for_selector(
    page: &Page,
    selector: &str,
    deadline: Instant,
) -> Result<(), CaptureError> {
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
