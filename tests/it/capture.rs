//! The capture service end to end: real Chromium, real HTTP on loopback, pages from a local
//! test site, webhooks to a local receiver verified with an independent Standard Webhooks
//! implementation.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestReceiver, TestSite, wait_for};

const TOKEN: &str = "test-token-0123456789";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The test config; `extra_capture` adds keys to `capture:` (or replaces the job timeout).
fn config(extra_capture: &str) -> String {
    let timeout = if extra_capture.contains("job_timeout") { "" } else { "  job_timeout: 60s\n" };
    format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\ncapture:\n  workers: 2\n  allow_private: [\"127.0.0.0/8\"]\n  stability_timeout: 3s\n{timeout}{extra_capture}webhook:\n  secret: {SECRET}\n  retry_schedule: [0s, 100ms, 100ms, 100ms, 100ms]\n"
    )
}

async fn spawn() -> TestApp {
    TestApp::spawn(Backend::Sqlite, &config("")).await
}

const RED_BOX: &str = "<html><body style='margin:0;background:#ffffff'>\
<div style='position:absolute;left:0;top:0;width:100px;height:50px;background:rgb(255,0,0)'></div></body></html>";

async fn submit(app: &TestApp, body: Value) -> reqwest::Response {
    app.client.post(app.url("/v1/capture")).bearer_auth(TOKEN).json(&body).send().await.unwrap()
}

/// Waits for the receiver to have `n` requests.
async fn received(r: &TestReceiver, n: usize) -> Vec<crate::helpers::site::Received> {
    wait_for(&format!("{n} webhook(s)"), Duration::from_secs(60), || {
        let all = r.all();
        async move { (all.len() >= n).then_some(all) }
    })
    .await
}

fn pixel(png: &[u8], x: u32, y: u32) -> [u8; 4] {
    let img = vigil::diff::decode_png(png, &Default::default()).unwrap();
    let i = ((y * img.width() + x) * 4) as usize;
    img.data()[i..i + 4].try_into().unwrap()
}

#[tokio::test]
async fn capture_is_delivered_signed_and_the_asset_is_the_page() {
    let site = TestSite::start().await;
    site.set("red", RED_BOX);
    let receiver = TestReceiver::start().await;
    let app = spawn().await;

    // Metadata is echoed byte for byte: odd spacing and key order included.
    let body = format!(
        r#"{{"url": "{}", "viewport": {{"width": 320, "height": 200}}, "webhook_url": "{}",
            "metadata": {{"monitor":"home",  "b": [1, 2.50], "a": "x"}}}}"#,
        site.url("red"),
        receiver.url
    );
    let r = app
        .client
        .post(app.url("/v1/capture"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = r.json().await.unwrap();
    assert_eq!(accepted["status"], "queued");
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/capture/{job_id}"));

    let hooks = received(&receiver, 1).await;
    let hook = &hooks[0];
    standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(&hook.body, &hook.headers)
        .expect("signature verifies");
    let text = std::str::from_utf8(&hook.body).unwrap();
    assert!(text.contains(r#""metadata":{"monitor":"home",  "b": [1, 2.50], "a": "x"}"#), "{text}");
    let doc: Value = serde_json::from_str(text).unwrap();
    assert_eq!(doc["type"], "capture.completed");
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["job_id"], job_id.as_str());
    assert_eq!((doc["width"].as_u64(), doc["height"].as_u64()), (Some(320), Some(200)));
    assert_eq!(doc["stable"], true);
    assert_eq!(hook.headers["webhook-id"].to_str().unwrap().len(), 30);

    let png = app.client.get(doc["asset_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    let png = png.bytes().await.unwrap();
    assert_eq!(doc["sha256"].as_str().unwrap(), vigil::store::blobs::sha256_hex(&png));
    assert_eq!(pixel(&png, 10, 10), [255, 0, 0, 255]);
    assert_eq!(pixel(&png, 200, 150), [255, 255, 255, 255]);

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"vigil_capture_jobs{state="completed"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"vigil_capture_attempts_total{outcome="completed"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"vigil_webhook_deliveries_total{outcome="delivered"} 1"#), "{metrics}");
    assert!(metrics.contains("vigil_browser_launches_total 1"), "{metrics}");

    // Polling gives the same document with a fresh asset link.
    let polled: Value =
        app.client.get(app.url(&location)).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(polled["status"], "completed");
    assert_eq!(polled["sha256"], doc["sha256"]);

    // A tampered or expired asset link is refused.
    let url = doc["asset_url"].as_str().unwrap();
    let tampered = url.replace("sig=", "sig=0");
    assert_eq!(app.client.get(&tampered).send().await.unwrap().status(), 403);
    let exp_swapped = regex_replace_exp(url);
    assert_eq!(app.client.get(&exp_swapped).send().await.unwrap().status(), 403);
    let no_sig = url.split('?').next().unwrap();
    assert_eq!(app.client.get(no_sig).send().await.unwrap().status(), 403);

    // A clean shutdown leaves no browser process behind.
    let profile = app.data_dir().join("chromium-");
    app.stop().await.expect("clean shutdown");
    let left = std::process::Command::new("pgrep").arg("-f").arg(&profile).output().unwrap();
    assert!(left.stdout.is_empty(), "Chromium still running: {}", String::from_utf8_lossy(&left.stdout));
}

/// The same link with a later expiry: the signature no longer matches.
fn regex_replace_exp(url: &str) -> String {
    let (head, query) = url.split_once('?').unwrap();
    let parts: Vec<String> = query
        .split('&')
        .map(|p| match p.strip_prefix("exp=") {
            Some(e) => format!("exp={}", e.parse::<i64>().unwrap() + 3600),
            None => p.to_owned(),
        })
        .collect();
    format!("{head}?{}", parts.join("&"))
}

#[tokio::test]
async fn requests_are_validated_field_by_field() {
    // Tokens, schemes and addresses: tests/it/hostile.rs.
    let app = spawn().await;
    let r = submit(&app, json!({"url": "https://example.com/", "viewport": {"width": "wide", "height": 1}}))
        .await;
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["field"], "viewport.width");

    let big = "x".repeat(300 * 1024);
    let r = app
        .client
        .post(app.url("/v1/capture"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(format!(r#"{{"url": "https://example.com/", "wait_for": "{big}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    let r = app
        .client
        .get(app.url("/v1/capture/job_01JXXXXXXXXXXXXXXXXXXXXXXX"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer() {
    let site = TestSite::start().await;
    site.set("red", RED_BOX);
    let app = spawn().await;
    let send = || {
        app.client
            .post(app.url("/v1/capture"))
            .bearer_auth(TOKEN)
            .header("idempotency-key", "order-42")
            .json(&json!({"url": site.url("red"), "viewport": {"width": 320, "height": 200}}))
            .send()
    };
    let a: Value = send().await.unwrap().json().await.unwrap();
    let b = send().await.unwrap();
    assert_eq!(b.status(), 202);
    let b: Value = b.json().await.unwrap();
    // The same job; its status is whatever it has reached by now.
    assert_eq!(a["job_id"], b["job_id"]);
}

#[tokio::test]
async fn full_page_hide_mask_and_pdf() {
    let site = TestSite::start().await;
    site.set("tall", "<html><body style='margin:0'><div style='height:6000px;background:linear-gradient(#fff,#000)'></div></body></html>");
    site.set(
        "huge",
        "<html><body style='margin:0'><div style='height:40000px;background:#eee'></div></body></html>",
    );
    site.set(
        "parts",
        "<html><body style='margin:0;background:#fff'>\
         <div class='banner' style='position:absolute;left:0;top:0;width:100px;height:100px;background:rgb(255,0,0)'></div>\
         <div id='clock' style='position:absolute;left:200px;top:20px;width:50px;height:30px;background:rgb(0,0,255)'></div></body></html>",
    );
    let receiver = TestReceiver::start().await;
    let app = spawn().await;
    let vp = json!({"width": 400, "height": 300});
    for (page, extra) in [
        ("tall", json!({"full_page": true})),
        ("huge", json!({"full_page": true})),
        (
            "parts",
            json!({"hide": [".banner"], "mask": ["#clock", {"x": 1, "y": 2, "width": 3, "height": 4}]}),
        ),
        ("parts", json!({"format": "pdf"})),
    ] {
        let mut body = json!({"url": site.url(page), "viewport": vp, "webhook_url": receiver.url, "metadata": {"page": page}});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        assert_eq!(submit(&app, body).await.status(), 202);
    }
    let hooks = received(&receiver, 4).await;
    let docs: Vec<Value> = hooks.iter().map(|h| serde_json::from_slice(&h.body).unwrap()).collect();
    let find = |page: &str, pdf: bool| {
        docs.iter()
            .find(|d| d["metadata"]["page"] == page && (d["content_type"] == "application/pdf") == pdf)
            .unwrap_or_else(|| panic!("no result for {page}: {docs:#?}"))
            .clone()
    };
    let tall = find("tall", false);
    assert_eq!(
        (tall["width"].as_u64(), tall["height"].as_u64(), tall["clipped"].as_bool()),
        (Some(400), Some(6000), Some(false))
    );
    let huge = find("huge", false);
    assert_eq!((huge["height"].as_u64(), huge["clipped"].as_bool()), (Some(16384), Some(true)));

    let parts = find("parts", false);
    let png =
        app.client.get(parts["asset_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(pixel(&png, 50, 50), [255, 255, 255, 255], "the hidden banner is not painted");
    assert_eq!(pixel(&png, 210, 30), [0, 0, 255, 255], "masked elements stay visible");
    let masks = parts["masks"].as_array().unwrap();
    assert!(masks.contains(&json!({"x": 1, "y": 2, "width": 3, "height": 4})), "{masks:?}");
    assert!(masks.contains(&json!({"x": 200, "y": 20, "width": 50, "height": 30})), "{masks:?}");

    let pdf = find("parts", true);
    let bytes =
        app.client.get(pdf["asset_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF"));
}

#[tokio::test]
async fn animations_and_the_caret_do_not_change_the_picture() {
    let site = TestSite::start().await;
    site.set(
        "anim",
        "<html><head><style>@keyframes spin{from{transform:rotate(0)}to{transform:rotate(360deg)}}\
         .s{width:80px;height:80px;background:#c00;animation:spin 1s linear infinite}\
         .f{width:80px;height:20px;background:#0c0;transition:width 5s}</style></head>\
         <body style='margin:10px'><div class='s'></div><div class='f' id='f'></div>\
         <input id='i' value='typing here' autofocus>\
         <script>document.getElementById('i').focus();setTimeout(()=>{document.getElementById('f').style.width='300px'},10)</script>\
         </body></html>",
    );
    let receiver = TestReceiver::start().await;
    let app = spawn().await;
    // The page starts its transition 10 ms after load; the delay makes sure that has happened
    // before the first shot even on a loaded machine (else one capture can be stable before
    // the transition starts and the other after: two different, correct pictures).
    for _ in 0..2 {
        let body = json!({"url": site.url("anim"), "viewport": {"width": 400, "height": 200}, "delay": "500ms", "webhook_url": receiver.url});
        assert_eq!(submit(&app, body).await.status(), 202);
    }
    let hooks = received(&receiver, 2).await;
    let docs: Vec<Value> = hooks.iter().map(|h| serde_json::from_slice(&h.body).unwrap()).collect();
    assert_eq!(docs[0]["sha256"], docs[1]["sha256"], "two captures of an animated page are identical");
    assert!(docs.iter().all(|d| d["stable"] == true));
}

/// `networkidle` waits for a request the page starts after its load event (vigil tracks the
/// page's requests itself, with a quiet window shorter than Chromium's 500 ms); a lazy image
/// outside a viewport shot, which never loads, is not waited for.
#[tokio::test]
async fn networkidle_waits_for_a_request_started_after_load() {
    let site = TestSite::start().await;
    site.set(
        "late",
        "<html><body style='margin:0;background:#ffffff'>\
         <img loading='lazy' src='/hang' style='margin-top:3000px' width='10' height='10'>\
         <script>addEventListener('load', () => setTimeout(() => fetch('/page/slow')\
         .then(() => { document.body.style.background = 'rgb(0,0,255)'; }), 50));</script></body></html>",
    );
    let receiver = TestReceiver::start().await;
    let app = spawn().await;
    let body = json!({"url": site.url("late"), "viewport": {"width": 320, "height": 200}, "full_page": false,
                      "wait_until": "networkidle", "webhook_url": receiver.url});
    assert_eq!(submit(&app, body).await.status(), 202);
    let hooks = received(&receiver, 1).await;
    let doc: Value = serde_json::from_slice(&hooks[0].body).unwrap();
    assert_eq!(doc["status"], "completed", "{doc}");
    let png = app.client.get(doc["asset_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(site.hits("slow"), 1);
    assert_eq!(pixel(&png, 10, 10), [0, 0, 255, 255], "the page after its late request");
    assert_eq!(doc["stable"], true);
}

/// With `networkidle` a viewport shot is prepared and taken during the network's quiet window;
/// what the page does in that window (recolours itself, focuses a field, starts an endless
/// animation, moves a masked element, grows; an image's own error handler) is in the picture,
/// or undone, as if the page had been prepared after the window. Each page holds the window open
/// with a request begun while it is parsed (1.5 s: before the preparation, so the early shot may
/// be kept) and acts 300 ms after its load event, inside the window.
#[tokio::test]
async fn a_page_that_changes_in_the_quiet_window_is_shot_as_the_window_ends() {
    let site = TestSite::start().await;
    let windowed = |head: &str, body: &str, late: &str| {
        format!(
            "<html><head><style>{head}</style></head><body style='margin:0;background:#ffffff'>{body}\
             <script>fetch('/page/slow'); addEventListener('load', () => setTimeout(() => {{ {late} }}, 300));\
             </script></body></html>"
        )
    };
    let field =
        "<input id=q value='search'><div id=d style='width:50px;height:20px;background:rgb(0,0,255)'></div>";
    let focus_style = "input:focus{box-shadow:0 0 0 6px rgb(255,0,0)}";
    site.set("recolour", &windowed("", "", "document.body.style.background = 'rgb(255,0,0)';"));
    site.set("calm", &windowed(focus_style, field, ""));
    site.set(
        "busy",
        &windowed(
            focus_style,
            field,
            "q.focus(); d.animate([{opacity: 1}, {opacity: 0}], {duration: 400, iterations: Infinity});",
        ),
    );
    site.set(
        "moving",
        &windowed(
            "",
            "<div id=m style='position:absolute;left:0;top:0;width:20px;height:20px;background:#000'></div>",
            "m.style.top = '50px';",
        ),
    );
    site.set(
        "handler",
        "<html><body style='margin:0;background:#ffffff'><script>addEventListener('load', () => {\
         const i = new Image(); i.onerror = () => { document.body.style.background = 'rgb(0,255,0)'; };\
         i.src = '/page/slow'; document.body.appendChild(i); });</script></body></html>",
    );
    site.set(
        "grow",
        &windowed(
            "",
            "<div id=g style='height:100px'></div>",
            "g.style.height = '300px'; g.style.background = 'linear-gradient(#fff 200px, rgb(0,0,255) 200px)';",
        ),
    );
    let receiver = TestReceiver::start().await;
    let app = spawn().await;
    let mut docs = std::collections::HashMap::new();
    let pages = ["recolour", "calm", "busy", "moving", "handler", "grow"];
    for (i, page) in pages.into_iter().enumerate() {
        let body = json!({"url": site.url(page), "viewport": {"width": 320, "height": 100},
                          "full_page": page == "grow", "mask": ["#m"], "wait_until": "networkidle",
                          "webhook_url": receiver.url});
        assert_eq!(submit(&app, body).await.status(), 202);
        let hooks = received(&receiver, i + 1).await;
        let doc: Value = serde_json::from_slice(&hooks[i].body).unwrap();
        assert_eq!((&doc["status"], &doc["stable"]), (&json!("completed"), &json!(true)), "{page}: {doc}");
        let png =
            app.client.get(doc["asset_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
        docs.insert(page, (doc, png));
    }
    assert_eq!(pixel(&docs["recolour"].1, 10, 10), [255, 0, 0, 255], "recoloured in the window");
    assert_eq!(docs["calm"].0["sha256"], docs["busy"].0["sha256"], "focus and animation undone");
    assert_eq!(docs["moving"].0["masks"], json!([{"x": 0, "y": 50, "width": 20, "height": 20}]));
    assert_eq!(pixel(&docs["handler"].1, 300, 90), [0, 255, 0, 255], "the page's own onerror ran");
    assert_eq!(docs["grow"].0["height"], 300, "{}", docs["grow"].0);
    assert_eq!(pixel(&docs["grow"].1, 10, 250), [0, 0, 255, 255], "the part added in the window");
}

/// A worker keeps its tab for its next capture of the same origin ("warm tabs"), and nothing a
/// page left — cookies (its own and the monitor's), local and session storage (also written as
/// it is left), `window.name`, a script the HTTP cache may keep for an hour — reaches the next
/// capture. A page that opened a dialog does not leave its tab to anyone.
#[tokio::test]
async fn a_warm_tab_keeps_nothing_of_the_previous_capture() {
    let site = TestSite::start().await;
    // Green when the page finds nothing of an earlier visit, red otherwise, and a blue band at
    // the bottom when the monitor's cookie came with it; then it leaves all it can.
    site.set(
        "state",
        "<html><body style='margin:0'><div id=b style='position:absolute;top:150px;height:50px;width:100%'></div><script>\
         const found = document.cookie.includes('left=') || localStorage.getItem('left')\
           || sessionStorage.getItem('left') || window.name === 'left';\
         document.body.style.background = found ? 'rgb(255,0,0)' : 'rgb(0,255,0)';\
         document.getElementById('b').style.background = document.cookie.includes('given=') ? 'rgb(0,0,255)' : 'rgb(255,255,255)';\
         document.cookie = 'left=1; max-age=3600'; localStorage.setItem('left', '1');\
         sessionStorage.setItem('left', '1'); window.name = 'left';\
         addEventListener('pagehide', () => sessionStorage.setItem('left', '1'));</script>\
         <script src='/page/band.js'></script></body></html>",
    );
    // Draws a band; its colour changes on the server before each capture after the first.
    let band = |rgb: &str| format!("document.getElementById('b').style.borderTop = '10px solid {rgb}';");
    site.set("alerting", "<html><body><script>alert('hello')</script></body></html>");
    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &config("").replace("workers: 2", "workers: 1")).await;
    let mut docs = Vec::new();
    for (i, (page, cookies)) in [
        ("state", json!([{"name": "given", "value": "1"}])),
        ("state", json!([])),
        ("alerting", json!([])),
        ("state", json!([])),
    ]
    .into_iter()
    .enumerate()
    {
        site.set("band.js", &band(["rgb(255,255,0)", "rgb(0,255,255)", "rgb(0,0,0)", "rgb(255,0,255)"][i]));
        let body = json!({"url": site.url(page), "viewport": {"width": 320, "height": 200}, "cookies": cookies,
                          "wait_until": "load", "webhook_url": receiver.url});
        assert_eq!(submit(&app, body).await.status(), 202);
        let hooks = received(&receiver, i + 1).await;
        let doc: Value = serde_json::from_slice(&hooks[i].body).unwrap();
        assert_eq!(doc["status"], "completed", "{doc}");
        docs.push(doc);
    }
    for i in [0, 1, 3] {
        let png = app
            .client
            .get(docs[i]["asset_url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(pixel(&png, 10, 10), [0, 255, 0, 255], "capture {i} found state an earlier capture left");
        // Only the first capture was given the cookie.
        let band = if i == 0 { [0, 0, 255, 255] } else { [255, 255, 255, 255] };
        assert_eq!(pixel(&png, 10, 170), band, "capture {i}: the monitor's cookie");
        let script = [[255, 255, 0, 255], [0, 255, 255, 255], [0, 0, 0, 255], [255, 0, 255, 255]][i];
        assert_eq!(pixel(&png, 10, 155), script, "capture {i}: the script as the server has it now");
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    // 1 fresh; 2 and 3 warm; 3 opened a dialog, so 4 is fresh again.
    assert!(metrics.contains(r#"vigil_capture_tabs_total{tab="warm"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"vigil_capture_tabs_total{tab="fresh"} 2"#), "{metrics}");
}

/// A field that takes the focus late (an `autofocus` processed after vigil's blur, or a
/// script's `focus()` in a later frame) looks the same as one that never had it: no focus ring.
#[tokio::test]
async fn a_late_focus_does_not_change_the_picture() {
    let site = TestSite::start().await;
    let page = |script: &str| {
        format!(
            "<html><body style='margin:10px'><input id=q value='search' style='width:200px'>\
             <script>{script}</script></body></html>"
        )
    };
    site.set("plain", &page(""));
    site.set("focused", &page("addEventListener('load', () => setTimeout(() => q.focus(), 150));"));
    let receiver = TestReceiver::start().await;
    let app = spawn().await;
    for name in ["plain", "focused"] {
        let body = json!({"url": site.url(name), "viewport": {"width": 320, "height": 100}, "wait_until": "load",
                          "webhook_url": receiver.url});
        assert_eq!(submit(&app, body).await.status(), 202);
    }
    let hooks = received(&receiver, 2).await;
    let docs: Vec<Value> = hooks.iter().map(|h| serde_json::from_slice(&h.body).unwrap()).collect();
    assert_eq!(docs[0]["sha256"], docs[1]["sha256"], "{docs:?}");
}

#[tokio::test]
async fn deliveries_retry_until_accepted_and_stop_on_410() {
    let site = TestSite::start().await;
    site.set("red", RED_BOX);
    let app = spawn().await;

    let flaky = TestReceiver::start().await;
    flaky.script(&[500, 500, 500]);
    let body =
        json!({"url": site.url("red"), "viewport": {"width": 320, "height": 200}, "webhook_url": flaky.url});
    assert_eq!(submit(&app, body).await.status(), 202);
    let hooks = received(&flaky, 4).await;
    assert_eq!(hooks.iter().map(|h| h.status).collect::<Vec<_>>(), [500, 500, 500, 200]);
    let ids: Vec<_> = hooks.iter().map(|h| h.headers["webhook-id"].clone()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "the same webhook-id on every attempt");
    for h in &hooks {
        standardwebhooks::Webhook::new(SECRET).unwrap().verify(&h.body, &h.headers).unwrap();
    }

    let gone = TestReceiver::start().await;
    gone.script(&[410]);
    let body =
        json!({"url": site.url("red"), "viewport": {"width": 320, "height": 200}, "webhook_url": gone.url});
    assert_eq!(submit(&app, body).await.status(), 202);
    received(&gone, 1).await;
    // Dead-lettered after that one attempt, so nothing more can be sent.
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let dead = wait_for("the delivery to be dead-lettered", Duration::from_secs(10), || {
        let store = store.clone();
        async move {
            store.list_deliveries(vigil::store::OutboxStatus::Dead, 10).await.ok().filter(|d| !d.is_empty())
        }
    })
    .await;
    assert_eq!((dead.len(), dead[0].attempts, dead[0].last_status), (1, 1, Some(410)));
    assert_eq!(gone.all().len(), 1, "410 stops delivery");

    // Redirects are not followed: the attempt is a failure and is retried.
    let moved = TestReceiver::start().await;
    moved.script(&[302]);
    let body =
        json!({"url": site.url("red"), "viewport": {"width": 320, "height": 200}, "webhook_url": moved.url});
    assert_eq!(submit(&app, body).await.status(), 202);
    let hooks = received(&moved, 2).await;
    assert_eq!((hooks[0].status, hooks[1].status), (302, 200));
}

#[tokio::test]
async fn a_browser_crash_mid_capture_is_retried() {
    let site = TestSite::start().await;
    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &config("  max_attempts: 3\n")).await;
    let body = json!({"url": site.url("slow"), "viewport": {"width": 320, "height": 200}, "webhook_url": receiver.url});
    assert_eq!(submit(&app, body).await.status(), 202);
    // The page is being loaded (it answers after 1.5 s): kill Chromium now.
    wait_for("the page request", Duration::from_secs(30), || {
        let hits = site.hits("slow");
        async move { (hits >= 1).then_some(()) }
    })
    .await;
    // Only this daemon's browser: its profile lives in the app's data directory.
    let profile = app.data_dir().join("chromium-");
    let killed = std::process::Command::new("pkill").args(["-9", "-f"]).arg(&profile).status().unwrap();
    assert!(killed.success(), "a Chromium process was running");
    let hooks = received(&receiver, 1).await;
    let doc: Value = serde_json::from_slice(&hooks[0].body).unwrap();
    assert_eq!(doc["status"], "completed", "{doc}");
    assert!(doc["attempts"].as_i64().unwrap() >= 2, "{doc}");
    let png = app.client.get(doc["asset_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(pixel(&png, 100, 100), [0, 0, 255, 255]);
}

#[tokio::test]
async fn redirects_and_subresources_are_checked_against_the_address_policy() {
    let site = TestSite::start().await;
    site.set("red", RED_BOX);
    let port = site.base_url.rsplit(':').next().unwrap().to_owned();
    // 127.0.0.2 is loopback too (so nothing leaves this machine even if the guard failed), but
    // this app only allows 127.0.0.1.
    let other = format!("http://127.0.0.2:{port}/page/red");
    site.set(
        "embeds",
        &format!("<html><body style='margin:0'><img src='{other}' width=50 height=50></body></html>"),
    );
    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn(
        Backend::Sqlite,
        &config("").replace("allow_private: [\"127.0.0.0/8\"]", "allow_private: [\"127.0.0.1/32\"]"),
    )
    .await;
    let redirect = format!("{}/go?to={}", site.base_url, other);
    for url in [redirect.as_str(), &site.url("embeds")] {
        let body =
            json!({"url": url, "viewport": {"width": 320, "height": 200}, "webhook_url": receiver.url});
        assert_eq!(submit(&app, body).await.status(), 202);
    }
    let hooks = received(&receiver, 2).await;
    let docs: Vec<Value> = hooks.iter().map(|h| serde_json::from_slice(&h.body).unwrap()).collect();
    let failed = docs.iter().find(|d| d["status"] == "failed").expect("the redirect is refused");
    assert_eq!(failed["error"]["code"], "url_not_allowed", "{failed}");
    assert_eq!(failed["error"]["retryable"], false);
    let page = docs.iter().find(|d| d["status"] == "completed").expect("the page itself is captured");
    let png =
        app.client.get(page["asset_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_ne!(pixel(&png, 10, 10), [255, 0, 0, 255], "the image from a refused address is not loaded");
    assert_eq!(site.hits("red"), 0, "no request reached the refused address");
}

#[tokio::test]
async fn a_crash_with_jobs_in_flight_loses_none() {
    let site = TestSite::start().await;
    site.set("red", RED_BOX);
    let receiver = TestReceiver::start().await;
    let yaml = config("  job_timeout: 10s\n");
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let mut jobs = Vec::new();
    for i in 0..6 {
        let body = json!({"url": site.url("red"), "viewport": {"width": 320, "height": 200 + i}, "webhook_url": receiver.url});
        let r: Value = submit(&app, body).await.json().await.unwrap();
        jobs.push(r["job_id"].as_str().unwrap().to_owned());
    }
    // Crash while the work is under way.
    received(&receiver, 1).await;
    let (db, dir) = app.kill().await;
    let app = TestApp::spawn_on(db, dir, &yaml).await;

    let all = wait_for("a webhook for every job", Duration::from_secs(90), || {
        let all = receiver.all();
        let docs: Vec<Value> = all.iter().map(|h| serde_json::from_slice(&h.body).unwrap()).collect();
        let done =
            jobs.iter().all(|j| docs.iter().any(|d| d["job_id"] == j.as_str() && d["status"] == "completed"));
        async move { done.then_some(all) }
    })
    .await;
    // Delivery is at least once: a crash between the receiver's 2xx and our record of it sends
    // the same message (same webhook-id) again, which receivers dedupe. What must never happen is
    // two different messages for one job.
    for job in &jobs {
        let ids: std::collections::BTreeSet<String> = all
            .iter()
            .filter(|h| serde_json::from_slice::<Value>(&h.body).unwrap()["job_id"] == job.as_str())
            .map(|h| h.headers["webhook-id"].to_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 1, "job {job} produced {ids:?}");
    }
    drop(app);
}

#[tokio::test]
async fn a_selector_captures_one_element() {
    let site = TestSite::start().await;
    site.set(
        "el",
        "<html><body style='margin:0;background:#fff'><div style='height:30px'></div>\
         <div id='box' style='margin-left:20px;width:100px;height:50px;background:rgb(0,128,0)'></div></body></html>",
    );
    let receiver = TestReceiver::start().await;
    let app = spawn().await;
    let body = json!({"url": site.url("el"), "viewport": {"width": 320, "height": 200}, "selector": "#box", "webhook_url": receiver.url});
    assert_eq!(submit(&app, body).await.status(), 202);
    let doc: Value = serde_json::from_slice(&received(&receiver, 1).await[0].body).unwrap();
    assert_eq!((doc["width"].as_u64(), doc["height"].as_u64()), (Some(100), Some(50)), "{doc}");
    let png = app.client.get(doc["asset_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(pixel(&png, 0, 0), [0, 128, 0, 255]);
    assert_eq!(pixel(&png, 99, 49), [0, 128, 0, 255]);
}

#[tokio::test]
async fn the_openapi_document_matches_the_request_type() {
    let app = spawn().await;
    let spec: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    for path in ["/v1/capture", "/v1/capture/{id}", "/v1/assets/{id}"] {
        assert!(spec["paths"][path].is_object(), "{path} documented");
    }
    // Every request field the server accepts is documented, and nothing else.
    let documented: std::collections::BTreeSet<String> =
        spec["components"]["schemas"]["CaptureRequest"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    let fields = serde_json::to_value(vigil::capture::request::CaptureRequest::default()).unwrap();
    let accepted: std::collections::BTreeSet<String> = fields.as_object().unwrap().keys().cloned().collect();
    assert_eq!(documented, accepted);
}

/// A daemon whose runtime goes away without a shutdown (a test that ends, an embedding that
/// drops it) takes its Chromium with it: nothing may keep the browser alive past the daemon, or
/// its processes outlive the program (the test suite once left 80 behind this way).
#[test]
fn a_daemon_dropped_without_shutdown_takes_its_browser_with_it() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (profile, dirs) = runtime.block_on(async {
        let site = TestSite::start().await;
        site.set("red", RED_BOX);
        let app = spawn().await;
        let r =
            submit(&app, json!({"url": site.url("red"), "viewport": {"width": 320, "height": 200}})).await;
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        wait_for("the capture", Duration::from_secs(60), || {
            let request = app.client.get(app.url(&location)).bearer_auth(TOKEN);
            async move {
                let doc: Value = request.send().await.ok()?.json().await.ok()?;
                (doc["status"] == "completed").then_some(())
            }
        })
        .await;
        let profile = app.data_dir().join("chromium-");
        let db_dir =
            std::path::Path::new(app.db.url.trim_start_matches("sqlite://")).parent().unwrap().to_owned();
        let dirs = [app.dir.path().to_owned(), db_dir];
        // The daemon keeps running (no shutdown is sent): the runtime is dropped under it.
        std::mem::forget(app);
        (profile, dirs)
    });
    let running = || {
        let out = std::process::Command::new("pgrep").arg("-f").arg(&profile).output().unwrap();
        !out.stdout.is_empty()
    };
    assert!(running(), "the capture ran in this daemon's browser");
    drop(runtime);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running() {
        assert!(std::time::Instant::now() < deadline, "Chromium outlived its daemon");
        std::thread::sleep(Duration::from_millis(50));
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Ten client endpoints on one server that never answers (each held until the 15 s webhook
/// timeout) do not hold up another client's result: deliveries run side by side, one per origin
/// at a time, so that server holds one of the eight slots however many URLs it has. With one
/// deliverer, the last result waited 10 × 15 s (issue 13, finding 4).
#[tokio::test]
async fn slow_webhook_receivers_do_not_hold_up_the_others() {
    let site = TestSite::start().await;
    site.set("red", RED_BOX);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = format!("http://{}", listener.local_addr().unwrap());
    let never = axum::Router::new().route(
        "/slow/{n}",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "too late"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, never).await.unwrap() });
    let fast = TestReceiver::start().await;
    let app = spawn().await;
    let capture = |hook: String| json!({"url": site.url("red"), "viewport": {"width": 100, "height": 100}, "webhook_url": hook});
    for n in 0..10 {
        assert_eq!(submit(&app, capture(format!("{slow}/slow/{n}"))).await.status(), 202);
    }
    let r = submit(&app, capture(fast.url.clone())).await;
    let job = r.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_owned();
    assert_eq!(app.capture_finished(TOKEN, &job).await["status"], "completed");
    // Within the first slow attempt's timeout: nothing waited for the six.
    wait_for("the fast receiver's webhook", Duration::from_secs(10), || async {
        (!fast.all().is_empty()).then_some(())
    })
    .await;
}

/// An Idempotency-Key replayed with the same request gives the same job; with another request
/// it is refused (422 `idempotency_key_reused`) instead of silently answering with a job for a
/// different page. Beyond `capture.max_queued` waiting jobs, a new one is refused with 429
/// `queue_full` and `Retry-After` (a fuzz run had queued 1,057).
#[tokio::test]
async fn idempotency_keys_and_the_queue_limit() {
    let site = TestSite::start().await;
    let monitor = format!(
        "monitors:\n  - name: watched\n    url: {}/hang\n    schedule: \"0 0 1 1 *\"\n",
        site.base_url
    );
    let app = TestApp::spawn(Backend::Sqlite, &format!("{}{monitor}", config("  max_queued: 2\n"))).await;
    let post = |body: Value, key: &str| {
        app.client
            .post(app.url("/v1/capture"))
            .bearer_auth(TOKEN)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let hang = json!({"url": format!("{}/hang", site.base_url), "timeout": "60s"});
    let first = post(hang.clone(), "key-1").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again: Value = post(hang.clone(), "key-1").await.unwrap().json().await.unwrap();
    assert_eq!(again["job_id"], first["job_id"], "a replay is the same job");
    let other = post(json!({"url": site.url("elsewhere")}), "key-1").await.unwrap();
    assert_eq!(other.status(), 422);
    assert_eq!(other.json::<Value>().await.unwrap()["error"]["code"], "idempotency_key_reused");

    assert_eq!(post(hang.clone(), "key-2").await.unwrap().status(), 202);
    let full = post(hang, "key-3").await.unwrap();
    assert_eq!(full.status(), 429);
    assert!(full.headers().contains_key("retry-after"));
    assert_eq!(full.json::<Value>().await.unwrap()["error"]["code"], "queue_full");
    // A client that copies a monitor's name and URL into its metadata is a client still
    // (issue 12): trust never comes from what a request says about itself.
    let posing = json!({"url": format!("{}/hang", site.base_url), "metadata": {"monitor": "watched"}});
    assert_eq!(post(posing, "key-4").await.unwrap().status(), 429);
    // The monitor's own capture, submitted with the monitor role's token, still goes in: a
    // full queue must not fail every monitor.
    let run = crate::monitoring::run_now(&app, "watched").await;
    let store: std::sync::Arc<dyn vigil::store::InspectStore> =
        vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    wait_for("the monitor's capture job", Duration::from_secs(20), || async {
        store.get_run(&run.parse().unwrap()).await.unwrap().unwrap().job_id
    })
    .await;
}
