//! The pages teams really have (docs/monitors.md): a page behind a sign-in form reached by
//! steps, a step that fails as `step_failed` rather than as a visual change, consent banners
//! clicked away or removed with no false alert over five runs, the browser's time zone, locale
//! and position, blocked requests, and quiet hours that hold or drop alerts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::helpers::slack::{BOT_TOKEN, FakeSlack};
use crate::helpers::{Backend, TestApp, wait_for};
use crate::monitoring::{TOKEN, api, image, run_now, verdict_of};

/// A small site with a sign-in form, a page with a consent banner and a page that reports what
/// the browser told it.
#[derive(Clone, Default)]
struct Site {
    base: String,
    logins: Arc<Mutex<Vec<String>>>,
    /// The session id a sign-in gets and the account page accepts; changed to expire sessions.
    sid: Arc<Mutex<String>>,
    reports: Arc<Mutex<Vec<HashMap<String, String>>>>,
    /// `Accept-Language` of each `/probe` load.
    languages: Arc<Mutex<Vec<String>>>,
    trackers: Arc<Mutex<usize>>,
    /// Loads of the single-page app's sign-in page.
    spa_logins: Arc<Mutex<usize>>,
}

const SIGNED_IN: &str = "<html><body style='margin:0;background:#0a0'><h1 style='margin:0;font:20px sans-serif;color:#fff'>Welcome back, ana</h1></body></html>";
const LOGIN: &str = "<html><body style='margin:0;background:#fff;font:16px sans-serif'><form method='post' action='/login'>\
  <input id='user' name='user'> <input id='password' name='password' type='password'> <button type='submit'>Sign in</button></form>{}</body></html>";

async fn login_page() -> Html<String> {
    Html(LOGIN.replace("{}", ""))
}

async fn login(State(site): State<Site>, Form(f): Form<HashMap<String, String>>) -> Response {
    let (user, password) =
        (f.get("user").cloned().unwrap_or_default(), f.get("password").cloned().unwrap_or_default());
    site.logins.lock().unwrap().push(user.clone());
    if user == "ana" && password == "hunter2" {
        let cookie = format!("sid={}; Path=/; HttpOnly", site.sid.lock().unwrap());
        let headers = [(header::SET_COOKIE, cookie), (header::LOCATION, "/account".to_owned())];
        return (StatusCode::SEE_OTHER, headers).into_response();
    }
    Html(LOGIN.replace("{}", "<p>Wrong user name or password</p>")).into_response()
}

async fn account(State(site): State<Site>, headers: HeaderMap) -> Response {
    let sid = format!("sid={}", site.sid.lock().unwrap());
    let signed_in = headers.get_all(header::COOKIE).iter().any(|c| c.to_str().unwrap_or("").contains(&sid));
    match signed_in {
        true => Html(SIGNED_IN).into_response(),
        false => (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response(),
    }
}

/// Content, and a consent banner a CMP script shows 150 ms after the load on a first visit (no
/// `consent` cookie): fixed at the bottom, red, locking the page's scrolling; `?id=` names the
/// banner's element (`onetrust-banner-sdk` is one `block_banners` knows). `window.bannerShown`
/// says the banner was added, for a step to wait on.
async fn banner(Query(q): Query<HashMap<String, String>>) -> Html<String> {
    let id = q.get("id").map_or("consent", String::as_str);
    Html(format!(
        "<html><body style='margin:0;background:#fff'><h1 style='margin:0;font:20px sans-serif'>Our products</h1>\
         <script>setTimeout(() => {{ if (document.cookie.includes('consent=')) return;
           const b = document.createElement('div'); b.id = '{id}';
           b.style = 'position:fixed;left:0;right:0;bottom:0;height:60px;background:#d00';
           b.innerHTML = '<button id=\"accept\" style=\"margin:10px\">Accept all</button>';
           document.body.appendChild(b); document.body.style.overflow = 'hidden'; window.bannerShown = true;
           b.querySelector('#accept').onclick = () => {{ document.cookie = 'consent=yes'; b.remove(); document.body.style.overflow = ''; }};
         }}, 150);</script></body></html>"
    ))
}

/// A search field; with `?echo` the page repeats what is typed below it.
async fn form(Query(q): Query<HashMap<String, String>>) -> Html<String> {
    let echo = if q.contains_key("echo") {
        "q.oninput = () => { e.textContent = 'You typed ' + q.value; };"
    } else {
        ""
    };
    Html(format!(
        "<html><body style='margin:0;background:#fff'><input id='q' style='width:300px;font:20px monospace'>\
         <p id='e' style='font:20px monospace'></p><script>{echo}</script></body></html>"
    ))
}

/// A single-page app that keeps its sign-in in `localStorage`, not in a cookie: green and
/// "Welcome back" with the token the site issues now (`sid`), "Please sign in" without it.
async fn spa(State(site): State<Site>) -> Html<String> {
    let token = site.sid.lock().unwrap().clone();
    Html(format!(
        "<html><body style='margin:0;background:#fff;font:20px sans-serif'><p id='s' style='margin:0'>loading</p>\
         <script>const ok = localStorage.getItem('token') === '{token}';
           document.getElementById('s').textContent = ok ? 'Welcome back' : 'Please sign in';
           if (ok) document.body.style.background = '#0a0';</script></body></html>"
    ))
}

/// The app's sign-in: a button that stores the token and goes to the app.
async fn spa_login(State(site): State<Site>) -> Html<String> {
    *site.spa_logins.lock().unwrap() += 1;
    let token = site.sid.lock().unwrap().clone();
    Html(format!(
        "<html><body><button id='go' onclick=\"localStorage.setItem('token', '{token}'); location = '/spa';\">Sign in</button></body></html>"
    ))
}

/// Reports the browser's zone, language and position to `/report`, then says "reported"; loads
/// a tracker script.
async fn probe(State(site): State<Site>, headers: HeaderMap) -> Html<&'static str> {
    let lang = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    site.languages.lock().unwrap().push(lang);
    Html(
        "<html><body style='margin:0;background:#fff;font:16px sans-serif'><p id='state'>probing</p>\
         <script src='/tracker.js'></script><script>
         const q = new URLSearchParams({tz: Intl.DateTimeFormat().resolvedOptions().timeZone, lang: navigator.language});
         const send = () => fetch('/report?' + q).then(() => { document.getElementById('state').textContent = 'reported'; });
         navigator.geolocation.getCurrentPosition(p => { q.set('lat', p.coords.latitude); q.set('lon', p.coords.longitude); send(); },
                                                  e => { q.set('geo_error', e.code); send(); });
         </script></body></html>",
    )
}

async fn report(State(site): State<Site>, Query(q): Query<HashMap<String, String>>) -> &'static str {
    site.reports.lock().unwrap().push(q);
    "ok"
}

async fn tracker(State(site): State<Site>) -> Response {
    *site.trackers.lock().unwrap() += 1;
    ([(header::CONTENT_TYPE, "text/javascript")], "window.tracked = true;").into_response()
}

impl Site {
    async fn start() -> Site {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let site = Site { base: format!("http://{}", listener.local_addr().unwrap()), ..Default::default() };
        *site.sid.lock().unwrap() = "s-1".into();
        let app = Router::new()
            .route("/login", get(login_page).post(login))
            .route("/account", get(account))
            .route("/banner", get(banner))
            .route("/spa", get(spa))
            .route("/form", get(form))
            .route("/spa-login", get(spa_login))
            .route("/probe", get(probe))
            .route("/report", get(report))
            .route("/tracker.js", get(tracker))
            .fallback(|| async { (StatusCode::NOT_FOUND, Html("<h1>Not found</h1>")) })
            .with_state(site.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        site
    }
}

fn config(slack: &FakeSlack, monitors: &str) -> String {
    config_with(slack, "", monitors)
}

fn config_with(slack: &FakeSlack, top: &str, monitors: &str) -> String {
    format!(
        "{top}auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 2\n  stability_timeout: 1s\n  allow_private: [\"127.0.0.1/32\"]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  api_url: {}/\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [320x200]\n  full_page: false\n  wait_until: load\n  retries_on_diff: 0\n\
         monitors:\n{monitors}",
        slack.api_url
    )
}

/// The RGBA of pixel (x, y) of the run's current capture.
async fn pixel(app: &TestApp, run: &Value, x: u32, y: u32) -> [u8; 4] {
    let bytes = image(app, run["images"]["current"].as_str().unwrap()).await;
    let img = vigil::diff::decode_png(&bytes, &vigil::diff::Limits::default()).unwrap();
    let i = ((y * img.width() + x) * 4) as usize;
    img.data()[i..i + 4].try_into().unwrap()
}

async fn run(app: &TestApp, monitor: &str) -> Value {
    verdict_of(app, &run_now(app, monitor).await).await
}

#[tokio::test]
async fn steps_sign_in_and_a_step_that_cannot_be_done_fails_the_run_naming_it() {
    let site = Site::start().await;
    let slack = FakeSlack::start().await;
    let steps = |password: &str| {
        format!(
            "    steps:\n      - fill: \"#user\"\n        value: ana\n      - fill: \"#password\"\n        value: {password}\n\
             \x20     - click: \"button[type=submit]\"\n      - wait_for: {{text: \"Welcome back\"}}\n        timeout: 3s\n"
        )
    };
    let monitors = format!(
        "  - name: account\n    url: {0}/account\n{1}  - name: wrong\n    url: {0}/account\n{2}\
         \x20 - name: broken\n    url: {0}/login\n    steps: [{{click: \"button[\"}}]\n",
        site.base,
        steps("hunter2"),
        steps("nope")
    );
    let app = TestApp::spawn(Backend::Sqlite, &config(&slack, &monitors)).await;

    // Signed in through the form: the capture is the account page, not the form.
    let first = run(&app, "account").await;
    assert_eq!(first["verdict"], "baseline_created", "{first}");
    assert_eq!(pixel(&app, &first, 300, 190).await, [0, 0xaa, 0, 255], "the signed-in page is green");
    let again = run(&app, "account").await;
    assert_eq!(again["verdict"], "unchanged", "{again}");
    assert_eq!(*site.logins.lock().unwrap(), ["ana", "ana"]);

    // A wrong password: the run fails at the step that waited, and says what it waited for;
    // no picture of the form is compared, and the password is nowhere in the message.
    let wrong = run(&app, "wrong").await;
    assert_eq!(
        (wrong["verdict"].as_str(), wrong["error"]["code"].as_str()),
        (Some("failed"), Some("step_failed")),
        "{wrong}"
    );
    let message = wrong["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("step 4 (wait_for) on text \"Welcome back\": the text did not appear"),
        "{message}"
    );
    assert!(!message.contains("nope"), "{message}");
    assert!(wrong["diff_pixels"].is_null(), "{wrong}");
    // The page as the failed step left it (the white form, not the green account page) is kept
    // for the review page and sent with the failure's alert, and can never be approved.
    assert_eq!(pixel(&app, &wrong, 300, 190).await, [255, 255, 255, 255], "the sign-in form: {wrong}");
    let id = wrong["id"].as_str().unwrap();
    let (status, refused) = api(&app, reqwest::Method::POST, &format!("/api/runs/{id}/approve")).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("nothing_to_approve")), "{refused}");
    let (client, cookie) = crate::ui::signed_in(&app).await;
    let page = client.get(app.url(&format!("/runs/{id}"))).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    let figure = html.split("id=\"failing-state\"").nth(1).expect("the review page shows the failing state");
    assert!(figure.contains(&format!("/api/runs/{id}/current.png")), "{html}");
    let shared = wait_for("the failure's alert with its picture", Duration::from_secs(30), || async {
        let shared = slack.shared();
        shared.iter().any(|f| f.filename == "wrong-320x200-failed.png").then_some(shared)
    })
    .await;
    let sent = shared.iter().find(|f| f.filename == "wrong-320x200-failed.png").unwrap();
    assert_eq!(sent.bytes, image(&app, wrong["images"]["current"].as_str().unwrap()).await, "{shared:?}");

    // A selector the browser cannot parse says so at once.
    let broken = run(&app, "broken").await;
    assert_eq!(broken["error"]["code"], "step_failed", "{broken}");
    let message = broken["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("step 1 (click) on selector \"button[\": SyntaxError"), "{message}");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn consent_banners_are_clicked_away_or_removed_with_no_false_alert_in_five_runs() {
    let site = Site::start().await;
    let slack = FakeSlack::start().await;
    // The banner comes on a timer, which a loaded machine may run after a capture that does not
    // wait for it: `plain` waits for the banner, so its picture has it; `removes` waits until
    // the banner was added (hidden or not), so its white picture is the removal's doing, not an
    // early shot's. `accepts` relies on click_accept's own wait for a banner after the load.
    let monitors = format!(
        "  - name: accepts\n    url: {0}/banner\n    click_accept: [\"#accept\"]\n\
         \x20 - name: removes\n    url: {0}/banner?id=onetrust-banner-sdk\n    block_banners: true\n\
         \x20   steps: [{{evaluate: \"new Promise(r => {{ const t = () => window.bannerShown ? r(true) : setTimeout(t, 20); t(); }})\"}}]\n\
         \x20 - name: plain\n    url: {0}/banner\n    steps: [{{wait_for: {{selector: \"#consent\"}}}}]\n",
        site.base
    );
    let app = TestApp::spawn(Backend::Sqlite, &config(&slack, &monitors)).await;
    const RED: [u8; 4] = [0xdd, 0, 0, 255];
    // Without either, the banner is in the picture: the check below can tell.
    let plain = run(&app, "plain").await;
    assert_eq!(pixel(&app, &plain, 160, 190).await, RED, "{plain}");
    for name in ["accepts", "removes"] {
        let first = run(&app, name).await;
        assert_eq!(first["verdict"], "baseline_created", "{first}");
        assert_eq!(pixel(&app, &first, 160, 190).await, [255, 255, 255, 255], "{name}: the banner is gone");
        for i in 0..5 {
            let v = run(&app, name).await;
            assert_eq!(
                (v["verdict"].as_str(), v["diff_pixels"].as_i64()),
                (Some("unchanged"), Some(0)),
                "{name} run {i}: {v}"
            );
        }
    }
    assert!(slack.posted().is_empty(), "no alert");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_browser_has_the_monitors_zone_language_and_position_and_blocked_requests_never_leave() {
    let site = Site::start().await;
    let slack = FakeSlack::start().await;
    let monitors = format!(
        "  - name: probe\n    url: {0}/probe\n    page_timezone: Asia/Tokyo\n    timezone: Europe/Berlin\n    locale: de-DE\n\
         \x20   geolocation: {{latitude: 52.52, longitude: 13.405}}\n    block_requests: [\"*/tracker.js\"]\n\
         \x20   steps: [{{wait_for: {{text: reported}}}}]\n\
         \x20 - name: bare\n    url: {0}/probe\n    steps: [{{wait_for: {{text: reported}}}}]\n",
        site.base
    );
    let app = TestApp::spawn(Backend::Sqlite, &config(&slack, &monitors)).await;
    let v = run(&app, "probe").await;
    assert_eq!(v["verdict"], "baseline_created", "{v}");
    let report = site.reports.lock().unwrap()[0].clone();
    assert_eq!(report.get("tz").map(String::as_str), Some("Asia/Tokyo"), "{report:?}");
    assert_eq!(report.get("lang").map(String::as_str), Some("de-DE"), "{report:?}");
    assert_eq!(
        (report.get("lat").map(String::as_str), report.get("lon").map(String::as_str)),
        (Some("52.52"), Some("13.405"))
    );
    assert!(site.languages.lock().unwrap()[0].starts_with("de-DE"), "{:?}", site.languages.lock().unwrap());
    assert_eq!(*site.trackers.lock().unwrap(), 0, "the blocked script was never requested");
    // Its monitor's API view says the zone of its schedule.
    let (_, m) = api(&app, reqwest::Method::GET, "/api/monitors/probe").await;
    assert_eq!(m["timezone"], "Europe/Berlin", "{m}");

    // The same page without them: the machine's zone, no position, the tracker loaded.
    let bare = run(&app, "bare").await;
    assert_eq!(bare["verdict"], "baseline_created", "{bare}");
    let report = site.reports.lock().unwrap()[1].clone();
    assert!(report.contains_key("geo_error"), "{report:?}");
    assert_ne!(report.get("tz").map(String::as_str), Some("Asia/Tokyo"));
    assert_eq!(*site.trackers.lock().unwrap(), 1);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn quiet_hours_hold_an_alert_to_the_windows_end_or_drop_it() {
    let site = crate::helpers::TestSite::start().await;
    for name in ["held", "skipped"] {
        site.set(name, &crate::monitoring::page(name, "rgb(255,0,0)"));
    }
    let slack = FakeSlack::start().await;
    // A window from two hours ago to two hours from now, in Tokyo time.
    let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
    let local = chrono::Utc::now().with_timezone(&tokyo);
    let at = |h: i64| (local + chrono::TimeDelta::hours(h)).format("%H:%M").to_string();
    let monitors = format!(
        "  - name: held\n    url: {}\n    timezone: Asia/Tokyo\n    quiet_hours: {{from: \"{}\", to: \"{}\"}}\n\
         \x20 - name: skipped\n    url: {}\n    timezone: Asia/Tokyo\n    quiet_hours: [{{from: \"{}\", to: \"{}\", alerts: skip}}]\n",
        site.url("held"),
        at(-2),
        at(2),
        site.url("skipped"),
        at(-2),
        at(2),
    );
    let app = TestApp::spawn(Backend::Sqlite, &config(&slack, &monitors)).await;
    let (_, m) = api(&app, reqwest::Method::GET, "/api/monitors/held").await;
    let until = chrono::DateTime::parse_from_rfc3339(m["quiet_until"].as_str().unwrap()).unwrap();
    let ahead = until.to_utc() - chrono::Utc::now();
    assert!(ahead > chrono::TimeDelta::minutes(118) && ahead <= chrono::TimeDelta::minutes(121), "{m}");
    for name in ["held", "skipped"] {
        assert_eq!(run(&app, name).await["verdict"], "baseline_created");
        site.set(name, &crate::monitoring::page(name, "rgb(0,0,255)"));
    }
    let held = run(&app, "held").await;
    let skipped = run(&app, "skipped").await;
    assert_eq!((held["verdict"].as_str(), skipped["verdict"].as_str()), (Some("changed"), Some("changed")));

    // Held: the alert waits, unsent, until the window ends. Skipped: there is none.
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let id = held["id"].as_str().unwrap().parse().unwrap();
    let alert = wait_for("the held alert deferred to the window's end", Duration::from_secs(30), || async {
        let alerts = store.alerts_for_run(&id).await.unwrap();
        alerts
            .into_iter()
            .find(|a| a.next_attempt_at.to_datetime() >= until.to_utc() - chrono::TimeDelta::seconds(1))
    })
    .await;
    assert_eq!((alert.status, alert.attempts), (vigil::store::OutboxStatus::Pending, 0));
    let id = skipped["id"].as_str().unwrap().parse().unwrap();
    assert!(store.alerts_for_run(&id).await.unwrap().is_empty());
    assert!(slack.posted().is_empty());
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_session_signs_in_once_reuses_its_cookies_signs_in_again_when_they_expire_and_fails_once() {
    let site = Site::start().await;
    let slack = FakeSlack::start().await;
    let sign_in = |password: &str| {
        format!(
            "    url: {}/login\n    check: {{text: \"Welcome back\"}}\n    reuse: 1h\n    steps:\n\
             \x20     - {{fill: \"#user\", value: ana}}\n      - {{fill: \"#password\", value: {password}}}\n\
             \x20     - {{click: \"button[type=submit]\"}}\n",
            site.base
        )
    };
    let sessions = format!("sessions:\n  shop:\n{}  stale:\n{}", sign_in("hunter2"), sign_in("nope"));
    let monitors = format!(
        "  - name: account\n    url: {0}/account\n    session: shop\n\
         \x20 - name: billing\n    url: {0}/account\n    session: stale\n\
         \x20 - name: invoices\n    url: {0}/account\n    session: stale\n\
         \x20 - name: gone\n    url: {0}/nowhere\n    session: shop\n",
        site.base
    );
    let yaml = config_with(&slack, &sessions, &monitors);
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let logins = || site.logins.lock().unwrap().len();
    let parsed = vigil::config::parse(&yaml, "t.yaml", &|_| None).unwrap();
    let shop = parsed.monitors[0].page.session.clone().unwrap();

    let first = run(&app, "account").await;
    assert_eq!(first["verdict"], "baseline_created", "{first}");
    assert_eq!(pixel(&app, &first, 300, 190).await, [0, 0xaa, 0, 255], "signed in");
    assert_eq!(logins(), 1);
    // Kept sealed: the session id is not in the database in clear.
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let (sealed, _) = store.login_state(&shop.store_key()).await.unwrap().expect("kept");
    assert!(!sealed.windows(3).any(|w| w == b"s-1"), "sealed");

    // The next run reuses the cookies: no sign-in.
    assert_eq!(run(&app, "account").await["verdict"], "unchanged");
    assert_eq!(logins(), 1, "reused");

    // The site ends the session: the kept cookies fail the check, and the steps sign in again.
    *site.sid.lock().unwrap() = "s-2".into();
    let again = run(&app, "account").await;
    assert_eq!(again["verdict"], "unchanged", "{again}");
    assert_eq!(logins(), 2, "signed in again");
    // … and kept that sign-in for the next run.
    assert_eq!(run(&app, "account").await["verdict"], "unchanged");
    assert_eq!(logins(), 2, "the new cookies were kept");

    // A page of the session that is gone is that page's failure, not the session's.
    let gone = run(&app, "gone").await;
    assert_eq!(gone["error"]["code"], "http_error", "{gone}");
    assert!(store.login_state(&shop.store_key()).await.unwrap().is_some(), "the session's cookies stay");

    // A wrong password: each monitor of the session fails with login_failed, one alert in all;
    // the refused password is not tried again at once (the second monitor does not sign in),
    // so that it does not lock the account.
    let before = logins();
    let billing = run(&app, "billing").await;
    assert_eq!(logins(), before + 1);
    let invoices = run(&app, "invoices").await;
    assert_eq!(logins(), before + 1, "not signed in again: {invoices}");
    for (v, why) in [(&billing, "after signing in"), (&invoices, "1 sign-in(s) in a row were refused")] {
        assert_eq!(
            (v["verdict"].as_str(), v["error"]["code"].as_str()),
            (Some("failed"), Some("login_failed")),
            "{v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("signing in through session \"stale\" failed: {why}")),
            "{message}"
        );
    }
    let message = invoices["error"]["message"].as_str().unwrap();
    assert!(message.contains("not signing in again before"), "{message}");
    let mut alerts = 0;
    for v in [&billing, &invoices] {
        alerts += store.alerts_for_run(&v["id"].as_str().unwrap().parse().unwrap()).await.unwrap().len();
    }
    assert_eq!(alerts, 1, "one alert for the session");
    let posted = wait_for("the session's alert", Duration::from_secs(30), || async {
        slack.posted().into_iter().find(|p| p.text.contains("stale"))
    })
    .await;
    assert!(posted.text.contains("stale"), "{}", posted.text);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_throwing_script_a_step_to_an_error_page_and_a_value_for_another_origin_fail_the_run() {
    let site = Site::start().await;
    let other = Site::start().await;
    let slack = FakeSlack::start().await;
    let monitors = format!(
        "  - name: throws\n    url: {0}/login\n    inject_js: \"throw new Error('hiding failed')\"\n\
         \x20 - name: missing\n    url: {0}/login\n    steps: [{{goto: \"{0}/nowhere\"}}]\n\
         \x20 - name: elsewhere\n    url: {1}/login\n    steps: [{{evaluate: \"location.assign('{0}/login')\"}}, {{fill: \"#password\", value: hunter2}}]\n",
        site.base, other.base
    );
    let app = TestApp::spawn(Backend::Sqlite, &config(&slack, &monitors)).await;
    let message = |v: &Value| v["error"]["message"].as_str().unwrap_or_default().to_owned();
    let throws = run(&app, "throws").await;
    assert_eq!(throws["error"]["code"], "step_failed", "{throws}");
    assert!(message(&throws).starts_with("inject_js: the script threw Error: hiding failed"), "{throws}");
    let missing = run(&app, "missing").await;
    assert_eq!(missing["error"]["code"], "step_failed", "{missing}");
    assert!(message(&missing).ends_with("the page it led to answered HTTP 404"), "{missing}");
    // Another port is another origin: the password is not typed there.
    let elsewhere = run(&app, "elsewhere").await;
    assert_eq!(elsewhere["error"]["code"], "step_failed", "{elsewhere}");
    assert!(message(&elsewhere).contains("nothing is typed"), "{elsewhere}");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_session_kept_in_local_storage_is_restored_and_signed_in_again_when_it_no_longer_works() {
    let site = Site::start().await;
    let slack = FakeSlack::start().await;
    let sessions = format!(
        "sessions:\n  app:\n    url: {0}/spa-login\n    check: {{text: \"Welcome back\"}}\n    reuse: 1h\n\
         \x20   steps: [{{click: \"#go\"}}]\n",
        site.base
    );
    let monitors = format!("  - name: spa\n    url: {}/spa\n    session: app\n", site.base);
    let app = TestApp::spawn(Backend::Sqlite, &config_with(&slack, &sessions, &monitors)).await;
    let logins = || *site.spa_logins.lock().unwrap();

    let first = run(&app, "spa").await;
    assert_eq!(first["verdict"], "baseline_created", "{first}");
    assert_eq!(pixel(&app, &first, 300, 190).await, [0, 0xaa, 0, 255], "signed in");
    assert_eq!(logins(), 1);
    // No cookie at all: only the kept localStorage signs the next capture in.
    let second = run(&app, "spa").await;
    assert_eq!(second["verdict"], "unchanged", "{second}");
    assert_eq!(logins(), 1, "restored from the kept storage");
    // The app no longer takes the kept token: signed in again, and the new token kept.
    *site.sid.lock().unwrap() = "s-2".into();
    let third = run(&app, "spa").await;
    assert_eq!(third["verdict"], "unchanged", "{third}");
    assert_eq!(logins(), 2, "signed in again");
    assert_eq!(run(&app, "spa").await["verdict"], "unchanged");
    assert_eq!(logins(), 2, "the new token was kept");
    assert!(slack.posted().is_empty(), "no alert");
    app.stop().await.expect("clean shutdown");
}

/// The picture of a failed step's page never shows what a `fill` typed: two values of one length
/// give the same picture (the field's text drawn as dots), and a page that repeats the value in
/// its text gets no picture at all.
#[tokio::test]
async fn the_failing_state_never_shows_a_filled_value() {
    let site = Site::start().await;
    let slack = FakeSlack::start().await;
    let monitor = |name: &str, path: &str, value: &str| {
        format!(
            "  - name: {name}\n    url: {}{path}\n    steps:\n      - {{fill: \"#q\", value: {value}}}\n\
             \x20     - {{wait_for: {{text: \"never shown\"}}, timeout: 1s}}\n",
            site.base
        )
    };
    let monitors = [
        monitor("first", "/form", "SECRETVALUE1"),
        monitor("second", "/form", "XXXXXXXXXXXX"),
        monitor("echoed", "/form?echo", "SECRETVALUE1"),
    ]
    .concat();
    let app = TestApp::spawn(Backend::Sqlite, &config(&slack, &monitors)).await;
    let mut pictures = Vec::new();
    for name in ["first", "second", "echoed"] {
        let v = run(&app, name).await;
        assert_eq!(v["error"]["code"], "step_failed", "{v}");
        pictures.push(v["images"]["current"].as_str().map(str::to_owned));
    }
    let first = image(&app, pictures[0].as_deref().expect("a picture of the first")).await;
    let second = image(&app, pictures[1].as_deref().expect("a picture of the second")).await;
    assert!(first == second, "the typed value is not in the picture");
    assert_eq!(pictures[2], None, "a page that repeats the value gets no picture");
    app.stop().await.expect("clean shutdown");
}
