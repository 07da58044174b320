//! The web UI (docs/architecture.md §8), server-rendered with askama: sign in with an API token, the
//! dashboard, a monitor's history, and the review page (side by side, swipe, overlay, diff only,
//! zoom to a region, approve / reject, keyboard `a` `r` `j` `k`). Every form carries the
//! session's CSRF token; the only script is `/ui/review.js`, and the review still works without it
//! (plain forms and links).

mod ignored;
mod masks;
mod views;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Form, FromRequest, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::config::{LiveMonitors, MonitorName};
use crate::http::{Auth, session};
use crate::ids::RunId;
use crate::review::{ReviewError, Reviewer};
use crate::store::{BaselineSource, Run, Store, Verdict};
use crate::time::Timestamp;
use views::*;

/// Monitors per dashboard page.
const PAGE_SIZE: usize = 50;

/// What the web UI reaches.
#[derive(Clone)]
pub struct Ui {
    pub store: Arc<dyn Store>,
    /// The monitors in force; replaced on reload.
    pub monitors: LiveMonitors,
    pub reviewer: Reviewer,
    pub auth: Auth,
    /// Session cookies get `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// Sign-in attempts per client address: see [`sign_in_limiter`].
    pub sign_in: Arc<crate::http::rate_limit::RateLimiter>,
}

/// Failed sign-ins per client address: ten at once, then one every 5 s. Enough for a person, a
/// crawl for anyone guessing tokens (500 guesses took 0.16 s without it, 40 min with it). Only
/// wrong tokens are charged, so people signing in behind one proxy address do not use up each
/// other's attempts.
pub fn sign_in_limiter() -> crate::http::rate_limit::RateLimiter {
    crate::http::rate_limit::RateLimiter::with_burst(0.2, 10)
}

pub fn router(state: Ui) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/monitors/{name}", get(monitor_page))
        .route("/monitors/{name}/approve-all", post(approve_all))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/approve", post(approve))
        .route("/runs/{id}/reject", post(reject))
        .route("/runs/{id}/approve-group", post(approve_group))
        .route("/baselines/{monitor}/{viewport}/revert", post(revert))
        .route("/ui/review.js", get(script))
        .merge(ignored::routes())
        .merge(masks::routes())
        .with_state(state)
}

/// A signed-in browser. A browser without one is sent to the sign-in form; a client that does
/// not take HTML (a script, an API fuzzer) gets 401, as the API answers it.
pub struct Session {
    index: usize,
    csrf: String,
    cookie: String,
}

impl FromRequestParts<Ui> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Ui) -> Result<Self, Self::Rejection> {
        let cookie = parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(session::from_cookie_header)
            .map(str::to_owned);
        let index = state.auth.signed_in(parts).await;
        match (cookie, index) {
            (Some(cookie), Some(index)) => {
                Ok(Session { index, csrf: session::csrf(&state.auth.session_key, &cookie), cookie })
            }
            _ if !takes_html(&parts.headers) => Err(crate::http::auth::Unauthorized.into_response()),
            _ => {
                // After signing in the browser GETs `next`: a form's POST target would be a 405.
                let next = match parts.method {
                    axum::http::Method::GET => parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                    _ => "/",
                };
                let to = format!(
                    "/login?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                Err(Redirect::to(&to).into_response())
            }
        }
    }
}

/// Whether the client reads HTML: browsers say so in `Accept` for pages and forms alike.
fn takes_html(headers: &axum::http::HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/html"))
}

/// A signed-in browser's form whose CSRF token belongs to its session: what every UI route that
/// changes something takes (as its last argument: it reads the body).
pub struct Verified(Session);

impl FromRequest<Ui> for Verified {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &Ui) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let req = axum::extract::Request::from_parts(parts, body);
        let Form(form) =
            Form::<CsrfForm>::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        if !session::csrf_ok(&state.auth.session_key, &session.cookie, &form.csrf) {
            return Err((
                StatusCode::FORBIDDEN,
                "missing or invalid CSRF token; reload the page and try again",
            )
                .into_response());
        }
        Ok(Verified(session))
    }
}

impl Session {
    /// Who is acting, for the baseline history.
    fn actor(&self, state: &Ui) -> String {
        state.auth.reviewer(self.index, "ui")
    }
}

/// An HTML page with the headers every UI page gets.
fn html(page: impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut r = (StatusCode::OK, axum::response::Html(body)).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; form-action 'self'; frame-ancestors 'none'",
                ),
            );
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn failure(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "UI request failed");
    (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; try again").into_response()
}

async fn layout(state: &Ui, session: &Session) -> Layout {
    let pending = state.store.changes_by_monitor().await.map(|c| c.iter().map(|(_, n)| n).sum()).unwrap_or(0);
    Layout { csrf: session.csrf.clone(), pending }
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

/// Only paths of this site: no `//host`, no scheme, and nothing a browser would strip or
/// reinterpret (`/\t/evil.example` becomes `//evil.example` once the tab is dropped).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

async fn login_page(Query(q): Query<Next>) -> Response {
    html(LoginPage { error: None, next: safe_next(q.next.as_deref()) })
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(
    State(state): State<Ui>,
    extensions: axum::http::Extensions,
    Form(form): Form<LoginForm>,
) -> Response {
    let client = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    if let Some(addr) = client
        && let Err(wait) = state.sign_in.peek(addr, std::time::Instant::now())
    {
        tracing::warn!(client = %addr, "sign-in attempts too fast; refused");
        let mut r = html(LoginPage {
            error: Some("Too many sign-in attempts. Wait a moment and try again.".into()),
            next: safe_next(form.next.as_deref()),
        });
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        let secs = wait.as_secs().max(1).to_string();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_str(&secs).expect("digits"));
        return r;
    }
    let Some(index) = crate::http::auth::token_index(&state.auth.tokens, form.token.trim()) else {
        tracing::warn!(client = ?client, "sign-in with a token that is not valid");
        if let Some(addr) = client {
            let _ = state.sign_in.check(addr, std::time::Instant::now());
        }
        let mut r = html(LoginPage {
            error: Some("That token is not valid.".into()),
            next: safe_next(form.next.as_deref()),
        });
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    let ttl = state.auth.session_ttl.as_secs() as i64;
    let token = state.auth.tokens[index].expose();
    let value = session::issue(&state.auth.session_key, token, Timestamp::now().millis() / 1000 + ttl);
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let cookie =
        format!("{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={ttl}{secure}", session::COOKIE);
    let mut r = Redirect::to(&safe_next(form.next.as_deref())).into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ASCII"));
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(state): State<Ui>, Verified(session): Verified) -> Response {
    // Remembered server-side too: a copy of the cookie (another tab, a stolen one) no longer
    // works either.
    if let Err(e) = state.auth.sign_out(&session.cookie).await {
        return failure(e);
    }
    let mut r = Redirect::to("/login").into_response();
    let cookie = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", session::COOKIE);
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ASCII"));
    r
}

#[derive(Deserialize)]
struct DashboardQuery {
    status: Option<String>,
    page: Option<usize>,
}

async fn dashboard(State(state): State<Ui>, session: Session, Query(q): Query<DashboardQuery>) -> Response {
    let monitors = state.monitors.current();
    let (latest, changes) = match (state.store.latest_runs().await, state.store.changes_by_monitor().await) {
        (Ok(l), Ok(c)) => (l, c),
        (Err(e), _) | (_, Err(e)) => return failure(e),
    };
    let mutes = match state.store.active_mutes(crate::time::Timestamp::now()).await {
        Ok(m) => m,
        Err(e) => return failure(e),
    };
    let filter = q.status.clone().filter(|s| !s.is_empty());
    let rows: Vec<MonitorRow> = monitors
        .iter()
        .map(|m| {
            let mine: Vec<&crate::store::Run> = latest.iter().filter(|r| r.monitor == m.name).collect();
            let waiting = changes.iter().find(|(n, _)| n == &m.name).map_or(0, |(_, c)| *c);
            MonitorRow::new(m, &mine, waiting, mutes.iter().find(|x| x.monitor == m.name))
        })
        .filter(|row| filter.as_deref().is_none_or(|f| row.status == f))
        .collect();
    let pages = rows.len().div_ceil(PAGE_SIZE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let shown = rows.len();
    let rows: Vec<MonitorRow> = rows.into_iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE).collect();
    // The header's count comes from the same query as the rows'.
    let layout = Layout { csrf: session.csrf.clone(), pending: changes.iter().map(|(_, n)| n).sum() };
    html(Dashboard {
        layout,
        rows,
        filter: filter.unwrap_or_default(),
        filters: FILTERS,
        page,
        pages,
        shown,
        total: monitors.len(),
    })
}

#[derive(Deserialize)]
struct MonitorQuery {
    before: Option<RunId>,
}

async fn monitor_page(
    State(state): State<Ui>,
    session: Session,
    Path(name): Path<String>,
    Query(q): Query<MonitorQuery>,
) -> Response {
    let Some(monitor) = state.monitors.find_str(&name) else {
        return (StatusCode::NOT_FOUND, "no such monitor").into_response();
    };
    let before = match &q.before {
        Some(id) => state.store.get_run(id).await.ok().flatten().map(|r| r.created_at),
        None => None,
    };
    let runs = match state.store.list_runs(&monitor.name, before, 50).await {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    let mut histories = Vec::new();
    for vp in &monitor.viewports {
        let key = vp.key();
        match state.store.baseline_history(&monitor.name, &key).await {
            Ok(h) => histories.push(HistoryView::new(&monitor.name, &key, &h)),
            Err(e) => return failure(e),
        }
    }
    let changes = runs.iter().filter(|r| r.verdict == Some(Verdict::Changed)).count();
    let drawn = match state.store.masks_of(&monitor.name, None).await {
        Ok(m) => m,
        Err(e) => return failure(e),
    };
    let older = (runs.len() == 50).then(|| runs.last().map(|r| r.id.to_string())).flatten();
    let layout = layout(&state, &session).await;
    html(MonitorPage {
        layout,
        name: monitor.name.to_string(),
        url: monitor.url.to_string(),
        schedule: monitor.schedule.source.clone(),
        runs: runs.iter().map(RunRow::new).collect(),
        histories,
        changes,
        older,
        masks: {
            let viewports: Vec<String> = monitor.viewports.iter().map(|v| v.key()).collect();
            drawn.iter().map(|m| MaskRow::new(m, &viewports)).collect()
        },
        masks_yaml: crate::masks::yaml(&drawn),
    })
}

async fn run_page(State(state): State<Ui>, session: Session, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<RunId>() else {
        return (StatusCode::NOT_FOUND, "no such run").into_response();
    };
    let run = match state.store.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such run").into_response(),
        Err(e) => return failure(e),
    };
    let changes = match state.store.list_changes(None, None, QUEUE_WINDOW).await {
        Ok(c) => c,
        Err(e) => return failure(e),
    };
    let (newer, older) = match neighbours(&*state.store, &run, &changes).await {
        Ok(n) => n,
        Err(e) => return failure(e),
    };
    let url = state.monitors.find(&run.monitor).map(|m| m.url.to_string()).unwrap_or_default();
    let monitor_changes = changes.iter().filter(|c| c.monitor == run.monitor).count();
    let (group, group_total) = match group_of(&state, &run).await {
        Ok(g) => g,
        Err(e) => return failure(e),
    };
    let masks = match state.store.masks_of(&run.monitor, Some(&run.viewport)).await {
        Ok(m) => m.iter().map(views::rect).collect(),
        Err(e) => return failure(e),
    };
    let layout = layout(&state, &session).await;
    html(ReviewPage {
        layout,
        run: RunDetail::new(&run, url),
        newer: newer.map(|r| r.to_string()),
        older: older.map(|r| r.to_string()),
        monitor_changes,
        group,
        group_total,
        masks,
    })
}

/// The runs alerted as one with `run`, when there were several (the first 100), and how many.
async fn group_of(state: &Ui, run: &Run) -> Result<(Vec<views::GroupLink>, usize), crate::store::StoreError> {
    let runs = match state.reviewer.alert_group_runs(&run.id).await {
        Ok(runs) => runs,
        Err(crate::review::ReviewError::Store(e)) => return Err(e),
        Err(_) => Vec::new(),
    };
    let mut group = Vec::new();
    for id in runs.iter().take(if runs.len() > 1 { 100 } else { 0 }) {
        if let Some(r) = state.store.get_run(id).await? {
            group.push(views::GroupLink::new(&r));
        }
    }
    Ok((group, runs.len()))
}

/// The newest changes the review page reads: its neighbours and the per-monitor count.
const QUEUE_WINDOW: i64 = 500;

/// A run's place in the review queue: (created_at, id), the order of `list_changes`.
fn queue_key(r: &Run) -> (Timestamp, &RunId) {
    (r.created_at, &r.id)
}

/// The change of `changes` that comes right after `key` in the queue.
fn next_newer<'a>(changes: &'a [Run], key: (Timestamp, &RunId)) -> Option<&'a Run> {
    changes.iter().filter(|c| queue_key(c) > key).min_by(|a, b| queue_key(a).cmp(&queue_key(b)))
}

/// The change of `changes` that comes right before `key` in the queue.
fn next_older<'a>(changes: &'a [Run], key: (Timestamp, &RunId)) -> Option<&'a Run> {
    changes.iter().filter(|c| queue_key(c) < key).max_by(|a, b| queue_key(a).cmp(&queue_key(b)))
}

/// The changes awaiting review just after and just before `run`: `(newer, older)`. Found by
/// creation time rather than by `run`'s index in the queue, because a run already approved or
/// rejected is no longer in it (taking the queue's head there linked "older" to the newest
/// change, of any monitor). `window` is the newest [`QUEUE_WINDOW`] changes; past it, the
/// older one is read from `run`'s own time on, and the newer one is the oldest in the window
/// (newer than `run`, if not the very next).
async fn neighbours(
    store: &dyn Store,
    run: &Run,
    window: &[Run],
) -> crate::store::Result<(Option<RunId>, Option<RunId>)> {
    let key = queue_key(run);
    let newer = next_newer(window, key).map(|c| c.id.clone());
    let mut older = next_older(window, key).map(|c| c.id.clone());
    if older.is_none() && window.len() as i64 == QUEUE_WINDOW {
        // `before` is exclusive and the runs of one tick share their creation time: start a
        // millisecond later and let the key drop `run` and the same-time runs after it.
        let before = run.created_at.plus(std::time::Duration::from_millis(1));
        let earlier = store.list_changes(None, Some(before), QUEUE_WINDOW).await?;
        older = next_older(&earlier, key).map(|c| c.id.clone());
    }
    Ok((newer, older))
}

fn review_failure(e: ReviewError) -> Response {
    match e {
        ReviewError::NoSuchRun => (StatusCode::NOT_FOUND, "no such run").into_response(),
        ReviewError::NoSuchViewport => (StatusCode::NOT_FOUND, "no such viewport").into_response(),
        ReviewError::Store(e) => failure(e),
        ReviewError::File(e) => failure(e),
        other => (StatusCode::CONFLICT, other.to_string()).into_response(),
    }
}

async fn approve(State(state): State<Ui>, Path(id): Path<String>, Verified(session): Verified) -> Response {
    let Ok(run) = id.parse::<RunId>() else { return (StatusCode::NOT_FOUND, "no such run").into_response() };
    match state.reviewer.approve(&run, &session.actor(&state), BaselineSource::Ui).await {
        Ok(_) => Redirect::to(&format!("/runs/{run}")).into_response(),
        Err(e) => review_failure(e),
    }
}

async fn reject(State(state): State<Ui>, Path(id): Path<String>, Verified(session): Verified) -> Response {
    let Ok(run) = id.parse::<RunId>() else { return (StatusCode::NOT_FOUND, "no such run").into_response() };
    match state.reviewer.reject(&run, &session.actor(&state)).await {
        Ok(_) => Redirect::to(&format!("/runs/{run}")).into_response(),
        Err(e) => review_failure(e),
    }
}

/// Approves every change of the monitor, oldest first, so the newest capture of each viewport
/// ends up as its baseline.
async fn approve_all(
    State(state): State<Ui>,
    Path(name): Path<String>,
    Verified(session): Verified,
) -> Response {
    let Ok(monitor) = name.parse::<MonitorName>() else {
        return (StatusCode::NOT_FOUND, "no such monitor").into_response();
    };
    let changes = match state.store.list_changes(Some(&monitor), None, 1000).await {
        Ok(c) => c,
        Err(e) => return failure(e),
    };
    let reviewer = &state.reviewer;
    for run in changes.iter().rev() {
        if let Err(e) = reviewer.approve(&run.id, &session.actor(&state), BaselineSource::Ui).await {
            return review_failure(e);
        }
    }
    Redirect::to(&format!("/monitors/{monitor}")).into_response()
}

/// *Approve all* of a change group: every run alerted with this one becomes its baseline.
async fn approve_group(
    State(state): State<Ui>,
    Path(id): Path<String>,
    Verified(session): Verified,
) -> Response {
    let Ok(id) = id.parse::<RunId>() else {
        return (StatusCode::NOT_FOUND, "no such run").into_response();
    };
    // Runs decided since, or with a newer capture, are left as they are: the page lists them.
    match state.reviewer.approve_group(&id, &session.actor(&state), BaselineSource::Ui).await {
        Ok(_) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Err(e) => review_failure(e),
    }
}

async fn revert(
    State(state): State<Ui>,
    Path((monitor, viewport)): Path<(String, String)>,
    Verified(session): Verified,
) -> Response {
    let Ok(name) = monitor.parse::<MonitorName>() else {
        return (StatusCode::NOT_FOUND, "no such monitor").into_response();
    };
    match state.reviewer.revert(&name, &viewport, &session.actor(&state)).await {
        Ok(_) => Redirect::to(&format!("/monitors/{name}")).into_response(),
        Err(e) => review_failure(e),
    }
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        include_str!("review.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/runs/run_1?x=1")), "/runs/run_1?x=1");
        for hostile in [
            "//evil.example",
            "/\t/evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/ /x",
            "/\n/evil",
            "",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/", "{hostile:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
