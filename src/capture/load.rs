//! Loading the page: navigate, then wait for the monitor's `wait_until` condition.
//!
//! `networkidle` is vigil's own: the page's `load` event, then no request of the page in flight
//! for [`QUIET_WINDOW`], and none started by the time the page's main thread is idle. Chromium's `networkIdle` lifecycle event waits 500 ms of quiet, which on
//! a 20-page cycle is 10 s of doing nothing; it still ends the wait if it comes first (a request
//! whose end this session never saw cannot keep a capture waiting longer than it did before).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::network::LoaderId;
use chromiumoxide::cdp::browser_protocol::network::{
    EventLoadingFailed, EventLoadingFinished, EventRequestWillBeSent, EventResponseReceived, RequestId,
    ResourceType,
};
use chromiumoxide::cdp::browser_protocol::page::{EventLifecycleEvent, FrameId, NavigateParams};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use futures_util::{FutureExt, StreamExt};

use super::error::CaptureError;
use super::request::CaptureSpec;
use crate::config::WaitUntil;

/// How long no request may be in flight before the network counts as idle.
pub const QUIET_WINDOW: Duration = Duration::from_millis(200);

/// Why the proxy did not connect the page to a host (and port), if it did not: the address
/// policy refused the host (`url_not_allowed`), or the host and port could not be reached
/// (`navigation_failed`).
pub(super) type Refused<'a> = dyn Fn(&str, u16) -> Option<CaptureError> + Send + Sync + 'a;

/// Loads the page, up to its `load` (or `DOMContentLoaded`) event. For `networkidle` the rest of
/// the wait is returned as a [`Quiet`] unless Chromium already said the network was idle: the
/// caller may prepare the picture meanwhile. A navigation that fails because the proxy did not
/// connect a host of its redirect chain says why (`url_not_allowed`, or `navigation_failed` for
/// a host it could not reach), rather than what the browser made of the proxy's answer (a 502
/// from the proxy is not the site's).
pub(super) async fn navigate(
    page: &Page,
    spec: &CaptureSpec,
    deadline: Instant,
    refused: &Refused<'_>,
) -> Result<Option<Quiet>, CaptureError> {
    let mut requests = page.event_listener::<EventRequestWillBeSent>().await?;
    let r = load(page, spec, deadline).await;
    if r.is_ok() {
        return r;
    }
    // Only where the proxy's own answer could be what failed: its 502, or the browser's error
    // for a tunnel it refused (a 404 or a 401 is the site's, whatever else failed).
    let proxied =
        matches!(&r, Err(CaptureError::HttpStatus { status: 502, .. } | CaptureError::Navigation(_)));
    // The main frame's documents: the URL and every redirect's target.
    let main = page.mainframe().await.ok().flatten();
    while let Some(Some(ev)) = requests.next().now_or_never() {
        if ev.r#type == Some(ResourceType::Document) && ev.frame_id.is_some() && ev.frame_id == main {
            let Ok(url) = url::Url::parse(&ev.request.url) else { continue };
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else { continue };
            match refused(host, port) {
                Some(why @ CaptureError::Policy(_)) => return Err(why),
                Some(why) if proxied => return Err(why),
                _ => {}
            }
        }
    }
    r
}

async fn load(page: &Page, spec: &CaptureSpec, deadline: Instant) -> Result<Option<Quiet>, CaptureError> {
    let mut events = page.event_listener::<EventLifecycleEvent>().await?;
    let mut responses = page.event_listener::<EventResponseReceived>().await?;
    let mut traffic = Traffic::listen(page).await?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    let nav = tokio::time::timeout(remaining, page.execute(NavigateParams::new(spec.url.to_string())))
        .await
        .map_err(|_| CaptureError::NavigationTimeout(spec.timeout))??;
    if let Some(err) = &nav.result.error_text {
        return Err(CaptureError::Navigation(err.clone()));
    }
    let frame = nav.result.frame_id.clone();
    let loader = nav.result.loader_id.clone();
    traffic.main_frame = Some(frame.clone());
    let ours = |ev: &EventLifecycleEvent| of_document(ev, &frame, loader.as_ref());
    let wait = async {
        let wanted = match spec.wait_until {
            WaitUntil::Load | WaitUntil::Networkidle => "load",
            WaitUntil::Domcontentloaded => "DOMContentLoaded",
        };
        let mut idle = false;
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(ev) if ours(&ev) && ev.name == wanted => return Some(idle),
                    // Chromium's own verdict counts even when it comes before `load`.
                    Some(ev) if ours(&ev) && ev.name == "networkIdle" => idle = true,
                    Some(_) => {}
                    None => return None,
                },
                () = traffic.track() => {}
            }
        }
    };
    let idle = match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), wait).await {
        Ok(Some(idle)) => idle,
        Ok(None) => return Err(CaptureError::BrowserGone),
        Err(_) => return Err(CaptureError::NavigationTimeout(spec.timeout)),
    };
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
    let rest = spec.wait_until == WaitUntil::Networkidle && !idle;
    Ok(rest.then(|| Quiet { events, traffic, frame, loader, timeout: spec.timeout }))
}

/// Now, as the browser stamps a request's start: seconds since the Unix epoch. Browser and
/// daemon share the machine's clock.
pub(super) fn now_epoch() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The rest of a `networkidle` wait after the `load` event.
pub(super) struct Quiet {
    events: chromiumoxide::listeners::EventStream<EventLifecycleEvent>,
    traffic: Traffic,
    frame: FrameId,
    loader: Option<LoaderId>,
    timeout: Duration,
}

impl Quiet {
    /// Waits until no request of the page was in flight for [`QUIET_WINDOW`] and none started by
    /// the time the page's main thread is idle (or Chromium's `networkIdle` came). Returns when
    /// the page's last request began (see [`now_epoch`]), if it made any.
    pub(super) async fn wait(mut self, page: &Page, deadline: Instant) -> Result<Option<f64>, CaptureError> {
        let wait = async {
            loop {
                let quiet_at = self.traffic.quiet_at();
                tokio::select! {
                    ev = self.events.next() => match ev {
                        Some(ev) if self.ours(&ev) && ev.name == "networkIdle" => return true,
                        Some(_) => {}
                        None => return false,
                    },
                    () = self.traffic.track() => {}
                    () = tokio::time::sleep_until(quiet_at.unwrap_or_else(tokio::time::Instant::now)), if quiet_at.is_some() => {
                        if self.traffic.page_is_idle_too(page).await {
                            return true;
                        }
                    }
                }
            }
        };
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), wait).await {
            Ok(true) => Ok(self.traffic.last_start),
            Ok(false) => Err(CaptureError::BrowserGone),
            Err(_) => Err(CaptureError::NavigationTimeout(self.timeout)),
        }
    }

    fn ours(&self, ev: &EventLifecycleEvent) -> bool {
        of_document(ev, &self.frame, self.loader.as_ref())
    }
}

/// Is the lifecycle event about the navigated document (its frame, and its loader when known)?
fn of_document(ev: &EventLifecycleEvent, frame: &FrameId, loader: Option<&LoaderId>) -> bool {
    ev.frame_id == *frame && loader.is_none_or(|l| *l == ev.loader_id)
}

/// The page's requests in flight, from this session's Network events.
struct Traffic {
    started: chromiumoxide::listeners::EventStream<EventRequestWillBeSent>,
    finished: chromiumoxide::listeners::EventStream<EventLoadingFinished>,
    failed: chromiumoxide::listeners::EventStream<EventLoadingFailed>,
    in_flight: InFlight,
    /// When the last request in flight ended (or tracking began).
    since: tokio::time::Instant,
    /// Requests seen starting.
    started_count: u64,
    /// When the last of them began, in seconds since the Unix epoch (the browser's clock).
    last_start: Option<f64>,
    /// The page's main frame, once navigation has begun.
    main_frame: Option<FrameId>,
}

impl Traffic {
    async fn listen(page: &Page) -> Result<Traffic, CaptureError> {
        Ok(Traffic {
            started: page.event_listener::<EventRequestWillBeSent>().await?,
            finished: page.event_listener::<EventLoadingFinished>().await?,
            failed: page.event_listener::<EventLoadingFailed>().await?,
            in_flight: InFlight::default(),
            since: tokio::time::Instant::now(),
            started_count: 0,
            last_start: None,
            main_frame: None,
        })
    }

    /// Takes the next Network event into account; pending forever once the streams end.
    async fn track(&mut self) {
        let was_idle = self.in_flight.is_idle();
        tokio::select! {
            Some(ev) = self.started.next() => {
                // A frame's own document may be loaded by another process (a cross-site frame),
                // whose end this session never sees: only the main frame's document counts.
                let frame_document = ev.r#type == Some(ResourceType::Document)
                    && ev.frame_id.is_some()
                    && ev.frame_id.as_ref() != self.main_frame.as_ref();
                if !frame_document {
                    self.started_count += 1;
                    // The browser's wall clock when the request began: this stream may be read
                    // late, and the caller compares it with a moment of its own.
                    let at = *ev.wall_time.inner();
                    self.last_start = Some(self.last_start.map_or(at, |t: f64| t.max(at)));
                    self.in_flight.started(&ev.request_id);
                }
            }
            Some(ev) = self.finished.next() => self.in_flight.ended(&ev.request_id),
            Some(ev) = self.failed.next() => self.in_flight.ended(&ev.request_id),
            else => std::future::pending().await,
        }
        if !(was_idle && self.in_flight.is_idle()) {
            self.since = tokio::time::Instant::now();
        }
    }

    /// Quiet by the clock; quiet by the page too? On a loaded machine the page's timers run
    /// late, and a `setTimeout(fetch, 50)` after the load event may not have run in the quiet
    /// window. The page is asked for an idle callback, which it runs after its due timers: a
    /// request started by one of them is seen (the CDP session delivers its event before the
    /// answer) and the wait goes on.
    async fn page_is_idle_too(&mut self, page: &Page) -> bool {
        let started = self.started_count;
        // Bounded: the page's own scripts could replace `requestIdleCallback` with one that
        // never calls back. Whatever the probe's outcome, the requests seen decide.
        let probe = tokio::time::timeout(
            Duration::from_millis(1500),
            page.evaluate_expression(
                EvaluateParams::builder()
                    .expression("new Promise(r => requestIdleCallback(() => r(true), {timeout: 1000}))")
                    .await_promise(true)
                    .build()
                    .expect("expression is set"),
            ),
        );
        tokio::pin!(probe);
        loop {
            tokio::select! {
                _ = &mut probe => break,
                () = self.track() => {}
            }
        }
        while let Some(()) = self.track().now_or_never() {}
        self.started_count == started && self.in_flight.is_idle()
    }

    /// When the network counts as idle if nothing starts before: none while a request is in
    /// flight.
    fn quiet_at(&self) -> Option<tokio::time::Instant> {
        self.in_flight.is_idle().then_some(self.since + QUIET_WINDOW)
    }
}

/// Requests started and not yet ended. The three event streams are separate channels, so an
/// end may be read before its start: an ended request is remembered and its start ignored.
/// A redirect is a second start of the same request, ended once.
#[derive(Default)]
struct InFlight {
    open: HashSet<RequestId>,
    ended: HashSet<RequestId>,
}

impl InFlight {
    fn started(&mut self, id: &RequestId) {
        if !self.ended.contains(id) {
            self.open.insert(id.clone());
        }
    }

    fn ended(&mut self, id: &RequestId) {
        self.open.remove(id);
        self.ended.insert(id.clone());
    }

    fn is_idle(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> RequestId {
        RequestId::new(s)
    }

    #[test]
    fn a_request_is_in_flight_from_its_start_to_its_end() {
        let mut f = InFlight::default();
        assert!(f.is_idle());
        f.started(&id("1"));
        f.started(&id("2"));
        f.ended(&id("1"));
        assert!(!f.is_idle());
        f.ended(&id("2"));
        assert!(f.is_idle());
    }

    #[test]
    fn a_redirect_is_one_request() {
        let mut f = InFlight::default();
        f.started(&id("1"));
        f.started(&id("1"));
        f.ended(&id("1"));
        assert!(f.is_idle());
    }

    #[test]
    fn an_end_read_before_its_start_leaves_nothing_in_flight() {
        let mut f = InFlight::default();
        f.ended(&id("1"));
        f.started(&id("1"));
        assert!(f.is_idle());
    }
}
