//! The web UI as a person uses it: real Chromium signs in, reviews a change with the buttons
//! and the keyboard, reverts from the monitor page; and the protections (sign-in, CSRF) over
//! plain HTTP.

use std::time::Duration;

use chromiumoxide::Page;
use serde_json::Value;
use vigil::capture::browser::{BrowserPool, BrowserSettings};

use crate::helpers::{Backend, TestApp, wait_for};
use crate::monitoring::{TOKEN, api, image, run_now, verdict_of};
use crate::review::{HomeChanged, home_changed};

/// Evaluates `expression` in the page until it is true.
pub(crate) async fn until(page: &Page, what: &str, expression: &str) {
    wait_for(what, Duration::from_secs(20), || async {
        let v: Value = page.evaluate(expression).await.ok()?.into_value().ok()?;
        (v == Value::Bool(true)).then_some(())
    })
    .await;
}

/// The daemon's own browser pool, as a person's browser for these tests.
pub(crate) fn browser_pool(profiles: &std::path::Path) -> BrowserPool {
    BrowserPool::new(BrowserSettings {
        chromium_path: None,
        profile_root: profiles.to_owned(),
        recycle_after: 100,
        page_memory: 1 << 30,
    })
}

/// A tab of that browser, its connections allowed to the test daemon on loopback; the proxy
/// lives as long as the tab is used.
pub(crate) async fn person_tab(
    browser: &vigil::capture::browser::LiveBrowser,
) -> (vigil::capture::egress::Proxy, Page) {
    let policy = vigil::capture::egress::Policy::system(&["127.0.0.0/8".parse().unwrap()]);
    let proxy = vigil::capture::egress::Proxy::start(policy).await.unwrap();
    let (_, tab) = browser.open_page(&proxy.url()).await.unwrap();
    (proxy, tab)
}

async fn text_of(page: &Page, selector: &str) -> String {
    page.find_element(selector).await.unwrap().inner_text().await.unwrap().unwrap_or_default()
}

#[tokio::test]
async fn a_person_reviews_a_change_in_the_browser() {
    let HomeChanged { app, first_baseline, change, .. } = home_changed().await;
    let run_id = change["id"].as_str().unwrap().to_owned();

    let profiles = tempfile::tempdir().unwrap();
    let pool = browser_pool(profiles.path());
    let browser = pool.get().await.unwrap();
    let (_proxy, tab) = person_tab(&browser).await;

    // The review page asks to sign in first, then comes back.
    tab.goto(app.url(&format!("/runs/{run_id}"))).await.unwrap();
    until(&tab, "the sign-in form", "!!document.querySelector('#token')").await;
    tab.find_element("#token").await.unwrap().click().await.unwrap().type_str(TOKEN).await.unwrap();
    tab.find_element("button[type=submit]").await.unwrap().click().await.unwrap();
    // review.js is deferred: the elements exist before it has run; `complete` comes after it.
    until(
        &tab,
        "the review page",
        "!!document.querySelector('#approve') && document.readyState === 'complete'",
    )
    .await;
    assert_eq!(text_of(&tab, "#verdict").await, "changed");
    // Its views: three images side by side, and the swipe / overlay modes.
    assert_eq!(tab.find_elements("#side img").await.unwrap().len(), 3);
    tab.find_element("input[value=overlay]").await.unwrap().click().await.unwrap();
    until(&tab, "the overlay view", "!document.querySelector('#stack').hidden && document.querySelector('#stack-cur').style.opacity === '0.5'").await;
    tab.find_element("input[value=side]").await.unwrap().click().await.unwrap();
    // Drawing a mask: a drag on the current capture fills the form, in the capture's pixels.
    let (left, top, width, height): (f64, f64, f64, f64) = tab
        .evaluate(
            "(() => { const i = document.querySelector('#current-img'); i.scrollIntoView(); \
             const r = i.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()",
        )
        .await
        .unwrap()
        .into_value()
        .unwrap();
    use chromiumoxide::cdp::browser_protocol::input::{
        DispatchMouseEventParams, DispatchMouseEventType, MouseButton,
    };
    for (kind, fx, fy) in [
        (DispatchMouseEventType::MousePressed, 0.1, 0.1),
        (DispatchMouseEventType::MouseMoved, 0.4, 0.3),
        (DispatchMouseEventType::MouseMoved, 0.6, 0.5),
        (DispatchMouseEventType::MouseReleased, 0.6, 0.5),
    ] {
        let event = DispatchMouseEventParams::builder()
            .r#type(kind)
            .x(left + width * fx)
            .y(top + height * fy)
            .button(MouseButton::Left)
            .buttons(1)
            .click_count(1)
            .build()
            .unwrap();
        tab.execute(event).await.unwrap();
    }
    until(&tab, "the mask form filled by the drag", "document.querySelector('#mask-width').value !== ''")
        .await;
    let drawn: Vec<i64> = tab
        .evaluate("['x', 'y', 'width', 'height'].map(f => +document.querySelector('#mask-' + f).value)")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    // 320x200 capture: from 10 % to 60 % across, 10 % to 50 % down (a pixel either way).
    for (got, want) in drawn.iter().zip([32, 20, 160, 80]) {
        assert!((got - want).abs() <= 1, "drawn {drawn:?}, expected about [32, 20, 160, 80]");
    }
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("review-page.png");
    tab.save_screenshot(chromiumoxide::page::ScreenshotParams::builder().full_page(true).build(), &shot)
        .await
        .unwrap();
    eprintln!("review page screenshot: {}", shot.display());

    // Approve: the page says so, and the capture is the baseline file.
    tab.find_element("#approve").await.unwrap().click().await.unwrap();
    until(&tab, "the approved page", "document.querySelector('#verdict')?.textContent === 'approved'").await;
    let current = image(&app, change["images"]["current"].as_str().unwrap()).await;
    assert_eq!(std::fs::read(app.dir.path().join("baselines/home/320x200.png")).unwrap(), current);
    assert_eq!(verdict_of(&app, &run_now(&app, "home").await).await["verdict"], "unchanged");

    // Revert from the monitor page: the first baseline is back, the next run is a change again.
    tab.goto(app.url("/monitors/home")).await.unwrap();
    until(&tab, "the monitor page", "!!document.querySelector('form[action$=\"/revert\"] button')").await;
    tab.find_element("form[action$=\"/revert\"] button").await.unwrap().click().await.unwrap();
    wait_for("the reverted baseline file", Duration::from_secs(20), || async {
        let now = std::fs::read(app.dir.path().join("baselines/home/320x200.png")).ok()?;
        (now == first_baseline).then_some(())
    })
    .await;
    let again = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(again["verdict"], "changed");

    // The keyboard: `r` rejects.
    tab.goto(app.url(&format!("/runs/{}", again["id"].as_str().unwrap()))).await.unwrap();
    until(
        &tab,
        "the review page",
        "!!document.querySelector('#reject') && document.readyState === 'complete'",
    )
    .await;
    tab.find_element("body").await.unwrap().press_key("r").await.unwrap();
    until(&tab, "the rejected page", "document.querySelector('#verdict')?.textContent === 'rejected'").await;

    // The dashboard lists the monitor with its latest verdict and a thumbnail.
    tab.goto(app.url("/")).await.unwrap();
    until(&tab, "the dashboard", "!!document.querySelector('tr[data-monitor=home]')").await;
    let row = text_of(&tab, "tr[data-monitor=home]").await;
    assert!(row.contains("rejected"), "{row}");
    assert_eq!(tab.find_elements("tr[data-monitor=home] img.thumb").await.unwrap().len(), 1);
    drop(tab);
    drop(browser);
    pool.shutdown().await;
}

/// A form post, as a browser sends it.
pub(crate) trait Urlencoded {
    fn urlencoded<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self;
}

impl Urlencoded for reqwest::RequestBuilder {
    fn urlencoded<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            body.append_pair(k.as_ref(), v.as_ref());
        }
        self.header("content-type", "application/x-www-form-urlencoded").body(body.finish())
    }
}

/// A client that does not follow redirects, as a browser's forms are checked, signed in with
/// the token: the client and its session cookie.
pub(crate) async fn signed_in(app: &crate::helpers::TestApp) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login =
        client.post(app.url("/login")).urlencoded(&[("token", TOKEN), ("next", "/")]).send().await.unwrap();
    let cookie = cookie_of(&login);
    (client, cookie)
}

/// The CSRF token in a page's forms.
pub(crate) fn csrf_in(html: &str) -> String {
    html.split("name=\"csrf\" value=\"").nth(1).expect("a form").split('"').next().unwrap().to_owned()
}

pub(crate) fn cookie_of(r: &reqwest::Response) -> String {
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn pages_need_a_session_and_forms_their_csrf_token() {
    let HomeChanged { app, change, .. } = home_changed().await;
    let id = change["id"].as_str().unwrap();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // No session: a browser goes to the sign-in form, and back afterwards; a client that does
    // not read HTML is told 401, as by the API.
    let r = client.get(app.url(&format!("/runs/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "unauthorized");
    let r = client.get(app.url(&format!("/runs/{id}"))).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("/login?next=%2Fruns%2F{id}"));
    let r = client
        .post(app.url("/login"))
        .urlencoded(&[("token", "wrong-token-0123456789"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("That token is not valid."));
    // An open redirect is not offered.
    let r = client
        .post(app.url("/login"))
        .urlencoded(&[("token", TOKEN), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
    let r = client
        .post(app.url("/login"))
        .urlencoded(&[("token", TOKEN), ("next", &format!("/runs/{id}"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = cookie_of(&r);

    // The page carries its CSRF token and security headers.
    let r = client.get(app.url(&format!("/runs/{id}"))).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let body = r.text().await.unwrap();
    let csrf = body.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    // A form without its token, or with another session's, changes nothing.
    let r = client
        .post(app.url(&format!("/runs/{id}/approve")))
        .header("cookie", &cookie)
        .urlencoded(&[("x", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(app.url(&format!("/runs/{id}/approve")))
        .header("cookie", &cookie)
        .urlencoded(&[("csrf", "0".repeat(32))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, run) = api(&app, reqwest::Method::GET, &format!("/api/runs/{id}")).await;
    assert_eq!(run["verdict"], "changed");
    // The session reads images but cannot change anything through the API.
    let r = client
        .get(app.url(&format!("/api/runs/{id}/current.png")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(app.url(&format!("/api/runs/{id}/approve")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // With the token: approved, and signing out ends the session.
    let r = client
        .post(app.url(&format!("/runs/{id}/approve")))
        .header("cookie", &cookie)
        .urlencoded(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (_, run) = api(&app, reqwest::Method::GET, &format!("/api/runs/{id}")).await;
    assert_eq!(run["verdict"], "approved");
    assert!(run["reviewed_by"].as_str().unwrap().starts_with("ui token "), "{run}");
    let r = client
        .post(app.url("/logout"))
        .header("cookie", &cookie)
        .urlencoded(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    // Signed out for good: a copy of the old cookie (another tab, a stolen one) is refused too,
    // on the pages and on the API's images.
    let r = client
        .get(app.url(&format!("/runs/{id}")))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the signed-out cookie still opens pages");
    let r = client
        .get(app.url(&format!("/api/runs/{id}/current.png")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the signed-out cookie still reads images");
}

/// The dashboard with 10,000 monitors: paginated, and timed (the figure goes in the docs).
#[tokio::test]
async fn the_dashboard_pages_through_ten_thousand_monitors() {
    let mut yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\ncapture:\n  workers: 1\ndefaults:\n  schedule: \"0 0 1 1 *\"\nmonitors:\n"
    );
    for i in 0..10_000 {
        yaml.push_str(&format!("  - {{name: m{i:05}, url: \"https://example.com/{i}\"}}\n"));
    }
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r =
        client.post(app.url("/login")).urlencoded(&[("token", TOKEN), ("next", "/")]).send().await.unwrap();
    let cookie = cookie_of(&r);
    let started = std::time::Instant::now();
    let r = client.get(app.url("/?page=200")).header("cookie", &cookie).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Page 200 of 200") && body.contains("m09999") && !body.contains("m09949<"),
        "last page"
    );
    assert_eq!(body.matches("<tr data-monitor=").count(), 50);
    eprintln!("dashboard page of 10,000 monitors (debug build): {took:?}");
}

/// Guessing tokens at the sign-in form: ten tries at once, then one every 5 s per address
/// (500 guesses took 0.16 s before); each failure is logged.
#[tokio::test]
async fn sign_in_guesses_are_throttled() {
    let app = crate::helpers::TestApp::spawn(
        crate::helpers::Backend::Sqlite,
        &format!("auth:\n  api_tokens: [\"{TOKEN}\"]\nmonitors: []\n"),
    )
    .await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let attempt = |token: &'static str| {
        client.post(app.url("/login")).urlencoded(&[("token", token), ("next", "/")]).send()
    };
    // Signing in with the right token is not charged (people behind one proxy share an address).
    for _ in 0..15 {
        assert_eq!(attempt(TOKEN).await.unwrap().status(), 303);
    }
    for _ in 0..10 {
        assert_eq!(attempt("wrong-token-0123456789").await.unwrap().status(), 401);
    }
    let r = attempt("wrong-token-0123456789").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert!(r.text().await.unwrap().contains("Too many sign-in attempts"));
    // Once the wrong ones have used the bucket up, even the right token waits its turn.
    assert_eq!(attempt(TOKEN).await.unwrap().status(), 429);
}
