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
    if let Some(tz) = &spec.timezone {
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
        grant.origin = Some(spec.url.origin().ascii_serialization());
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
    for (i, step) in setup.steps.iter().enumerate() {
        let until = deadline.min(Instant::now() + step.timeout);
        let failed = |reason: String| CaptureError::StepFailed {
            step: format!("step {} ({})", i + 1, step.kind()),
            target: step.target(),
            reason,
        };
        // The step's own waits end at `until` with their reason; this is the net under them.
        match tokio::time::timeout_at((until + Duration::from_secs(1)).into(), run(page, step, until)).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(failed(reason)),
            Err(_) => return Err(failed(format!("not done within {}", human(step.timeout)))),
        }
    }
    if !setup.steps.is_empty() {
        out_of_the_way(page, setup, deadline).await?;
    }
    if let Some(js) = &setup.inject_js {
        let failed =
            |reason| CaptureError::StepFailed { step: "inject_js".into(), target: String::new(), reason };
        let run = with_navigation(page, deadline, async {
            eval::<serde_json::Value>(page, &guarded(js)).await.map_err(|e| e.to_string())?;
            Ok(())
        });
        run.await.map_err(failed)?;
    }
    Ok(())
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A script's own result, or its exception as text.
fn guarded(js: &str) -> String {
    format!(
        "(async () => {{ try {{ return {{ok: await (0, eval)({})}}; }} catch (e) {{ return {{error: String(e)}}; }} }})()",
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
            "(() => {{ for (const s of {list}) {{ let e; try {{ e = document.querySelector(s); }} catch (_) {{ return {{bad: s}}; }}
               if (e && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden') return {{found: s}}; }}
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
                    let el = page.find_element(s.clone()).await.map_err(|e| e.to_string())?;
                    el.click().await.map_err(|e| e.to_string())?;
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
async fn run(page: &Page, step: &Step, until: Instant) -> Result<(), String> {
    match &step.action {
        Action::Click(sel) => {
            visible(page, sel, until).await?;
            with_navigation(page, until, async {
                page.find_element(sel.clone()).await.map_err(cdp)?.click().await.map_err(cdp)?;
                Ok(())
            })
            .await
        }
        Action::Hover(sel) => {
            visible(page, sel, until).await?;
            page.find_element(sel.clone()).await.map_err(cdp)?.hover().await.map_err(cdp)?;
            Ok(())
        }
        Action::ScrollTo(sel) => {
            present(page, sel, until).await?;
            page.find_element(sel.clone()).await.map_err(cdp)?.scroll_into_view().await.map_err(cdp)?;
            Ok(())
        }
        Action::Fill { selector, value } => {
            visible(page, selector, until).await?;
            let clear = format!(
                "(() => {{ const e = document.querySelector({s}); e.focus();
                   if (e instanceof HTMLInputElement || e instanceof HTMLTextAreaElement) {{ e.select(); e.value = ''; }}
                   else if (e.isContentEditable) e.textContent = '';
                   else return false;
                   e.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()",
                s = js_string(selector)
            );
            if !eval::<bool>(page, &clear).await.map_err(|e| e.to_string())? {
                return Err("the element is not a text field".into());
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
            with_navigation(page, until, async {
                let r: serde_json::Value = eval(page, &guarded(js)).await.map_err(|e| e.to_string())?;
                match (&r["error"], &r["ok"]) {
                    (serde_json::Value::String(e), _) => Err(format!("the script threw {e}")),
                    (_, serde_json::Value::Bool(false)) => Err("the script returned false".into()),
                    _ => Ok(()),
                }
            })
            .await
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

/// An element of `sel` that is drawn: a box, not `visibility: hidden`.
async fn visible(page: &Page, sel: &str, until: Instant) -> Result<(), String> {
    let js = format!(
        "Array.from(document.querySelectorAll({})).some(e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden')",
        js_string(sel)
    );
    present(page, sel, until).await?;
    poll(page, &js, until, "the element matched but was not visible").await
}

/// Does `act`, and if it started a navigation of the page, waits for the new page's load.
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
    match tokio::time::timeout_at(until.into(), loaded.next()).await {
        Ok(_) => Ok(()),
        Err(_) => Err("the page it led to did not finish loading".into()),
    }
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
