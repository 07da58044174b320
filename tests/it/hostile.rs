//! Hostile input (issue 7): every request here is refused with its status code, and afterwards
//! nothing is stored — no row in any table, no file under the data and baseline directories, the
//! active baseline untouched.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use vigil::store::InspectStore;

use crate::helpers::daemon::scalar;
use crate::helpers::slack::{BOT_TOKEN, FakeSlack};
use crate::helpers::{Backend, TestApp, TestSite, wait_for};
use crate::monitoring::{TOKEN, page, run_now, verdict_of};
use crate::ui::Urlencoded;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TABLES: [&str; 8] = [
    "runs",
    "capture_jobs",
    "assets",
    "webhook_deliveries",
    "received_webhooks",
    "baselines",
    "alerts",
    "monitors",
];

fn now() -> i64 {
    vigil::time::Timestamp::now().millis() / 1000
}

/// Every row count and every file: what "nothing stored" is checked against.
async fn stored(app: &TestApp) -> (Vec<(String, i64)>, Vec<String>) {
    let mut counts = Vec::new();
    for t in TABLES {
        counts.push((t.to_owned(), scalar(&app.db.url, &format!("SELECT count(*) FROM {t}")).await));
    }
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                // Chromium's throwaway profiles are not vigil's storage.
                if !p.file_name().unwrap().to_string_lossy().starts_with("chromium-") {
                    walk(&p, out);
                }
            } else {
                out.push(format!("{} {}", p.display(), e.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    let mut files = Vec::new();
    walk(app.dir.path(), &mut files);
    files.retain(|f| !f.contains("vigil.db")); // the database file itself grows with its WAL
    // The storage check's one-byte test write, there for an instant every few seconds.
    files.retain(|f| !f.contains("/.vigil-write-probe "));
    files.sort();
    (counts, files)
}

fn signed(client: &reqwest::Client, url: &str, id: &str, ts: i64, body: &str) -> reqwest::RequestBuilder {
    let sig = standardwebhooks::Webhook::new(SECRET).unwrap().sign(id, ts, body.as_bytes()).unwrap();
    client
        .post(url)
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .header("content-type", "application/json")
        .body(body.to_owned())
}

/// A real PNG (1×1) whose header then claims `width`×`height`, CRC fixed up so only the size
/// is wrong.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, 1, 1);
        e.set_color(png::ColorType::Rgba);
        e.write_header().unwrap().write_image_data(&[0, 0, 0, 255]).unwrap();
    }
    // Signature (8), IHDR length (4) and type (4), then width and height.
    out[16..20].copy_from_slice(&width.to_be_bytes());
    out[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Serves `bytes` as image/png at the returned URL.
async fn serve_png(bytes: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/huge.png", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/huge.png",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { ([("content-type", "image/png")], bytes) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn hostile_requests_are_refused_and_store_nothing() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    site.set("home", &page("home", "#0a0"));
    let yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 2\n  stability_timeout: 0s\n  allow_private: [\"127.0.0.1/32\"]\n\
         webhook:\n  secret: {SECRET}\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  api_url: {}/\n  signing_secret: slack-signing-secret\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [320x200]\n  full_page: false\n  wait_until: load\n\
         monitors:\n  - name: home\n    url: {}\n  - name: stuck\n    url: {}/hang\n    timeout: 60s\n",
        slack.api_url,
        site.url("home"),
        site.base_url,
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let baseline = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(baseline["verdict"], "baseline_created");
    // A run in flight whose capture never finishes: the target of the forged results below.
    let stuck = run_now(&app, "stuck").await;
    let store: std::sync::Arc<dyn InspectStore> =
        vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let stuck_run = store.get_run(&stuck.parse().unwrap()).await.unwrap().unwrap();
    let job = wait_for("the stuck run's job", Duration::from_secs(20), || async {
        store.get_run(&stuck_run.id).await.unwrap().unwrap().job_id
    })
    .await;

    // A real asset of this daemon, to tamper with.
    let r = app
        .client
        .post(app.url("/v1/capture"))
        .bearer_auth(TOKEN)
        .json(&json!({"url": site.url("home"), "viewport": {"width": 100, "height": 100}}))
        .send()
        .await
        .unwrap();
    let api_job = r.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_owned();
    let captured = app.capture_finished(TOKEN, &api_job).await;
    assert_eq!(captured["status"], "completed", "{captured}");
    let asset_url = captured["asset_url"].as_str().unwrap().to_owned();
    let asset_id = asset_url.split("/v1/assets/").nth(1).unwrap().split('?').next().unwrap().to_owned();
    let expired = vigil::capture::AssetUrls {
        base: url::Url::parse(&format!("{}/", app.base_url)).unwrap(),
        key: vigil::signing::SigningKey::from_secret(SECRET).unwrap().derive("vigil asset urls"),
        ttl: Duration::ZERO,
    }
    .sign(&asset_id.parse().unwrap(), now() - 3600)
    .0;
    assert_eq!(app.client.get(&asset_url).send().await.unwrap().status(), 200, "the untampered URL works");

    // A signed-in reviewer's session, for the CSRF case.
    let no_redirects =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirects
        .post(app.url("/login"))
        .urlencoded(&[("token", TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();

    let before = stored(&app).await;
    let c = &app.client;
    let hook = app.url("/hooks/capture");
    let ts = now();
    let result = json!({"type": "capture.completed", "job_id": job, "status": "completed",
                        "asset_url": site.url("home"), "metadata": {"run_id": stuck}})
    .to_string();
    let other_secret =
        standardwebhooks::Webhook::new("whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCB5b3Ugd2FudA==").unwrap();
    let forged = other_secret.sign("msg_forged", ts, result.as_bytes()).unwrap();
    let big = format!(r#"{{"job_id":"{job}","pad":"{}"}}"#, "x".repeat(1024 * 1024));
    let tampered = asset_url.replace("sig=", "sig=0");
    let capture = |url: &str| c.post(app.url("/v1/capture")).bearer_auth(TOKEN).json(&json!({"url": url}));

    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        // The capture webhook.
        ("webhook without signature", c.post(&hook).body(result.clone()), 401),
        (
            "webhook signed with another secret",
            c.post(&hook)
                .header("webhook-id", "msg_forged")
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", forged)
                .body(result.clone()),
            401,
        ),
        (
            "webhook with a malformed signature",
            c.post(&hook)
                .header("webhook-id", "msg_x")
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", "v1,!!!not-base64")
                .body(result.clone()),
            401,
        ),
        ("webhook signed an hour ago", signed(c, &hook, "msg_stale", ts - 3600, &result), 401),
        ("webhook signed for the future", signed(c, &hook, "msg_future", ts + 3600, &result), 401),
        (
            "valid signature, mutated body",
            signed(c, &hook, "msg_mut", ts, &result).body(result.replace("completed\"", "failed\"")),
            401,
        ),
        ("oversize body", signed(c, &hook, "msg_big", ts, &big), 413),
        ("malformed JSON, validly signed", signed(c, &hook, "msg_json", ts, "{\"job_id\": "), 400),
        // The capture API.
        (
            "capture without a token",
            c.post(app.url("/v1/capture")).json(&json!({"url": site.url("home")})),
            401,
        ),
        (
            "capture with a wrong token",
            c.post(app.url("/v1/capture"))
                .bearer_auth("wrong-token-0123456789")
                .json(&json!({"url": site.url("home")})),
            401,
        ),
        ("file: URL", capture("file:///etc/passwd"), 422),
        ("javascript: URL", capture("javascript:alert(1)"), 422),
        ("chrome: URL", capture("chrome://settings"), 422),
        ("data: URL", capture("data:text/html,<h1>hi</h1>"), 422),
        ("metadata address", capture("http://169.254.169.254/latest/meta-data/"), 422),
        ("link-local IPv6", capture("http://[fe80::1]/"), 422),
        ("private range not allowed", capture("http://10.0.0.1/"), 422),
        ("other private range", capture("http://192.168.1.1/"), 422),
        ("loopback outside allow_private", capture("http://127.0.0.2/"), 422),
        (
            "webhook_url at vigil's own receiver, from a client (it would sign the client's capture)",
            c.post(app.url("/v1/capture"))
                .bearer_auth(TOKEN)
                .json(&json!({"url": site.url("home"), "webhook_url": app.url("/hooks/capture")})),
            422,
        ),
        (
            "webhook_url at the metadata address",
            c.post(app.url("/v1/capture"))
                .bearer_auth(TOKEN)
                .json(&json!({"url": site.url("home"), "webhook_url": "http://169.254.169.254/hook"})),
            422,
        ),
        (
            "malformed capture JSON",
            c.post(app.url("/v1/capture"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("{\"url\": "),
            422,
        ),
        // Paths and ids with ../
        (
            "monitor name with ../",
            c.get(app.url("/api/monitors/..%2F..%2Fetc%2Fpasswd")).bearer_auth(TOKEN),
            404,
        ),
        ("run now on ../", c.post(app.url("/api/monitors/..%2Fhome/runs")).bearer_auth(TOKEN), 404),
        ("run id with ../", c.get(app.url("/api/runs/..%2F..%2Fwebhook-secret")).bearer_auth(TOKEN), 404),
        ("approve run id with ../", c.post(app.url("/api/runs/..%2Fx/approve")).bearer_auth(TOKEN), 404),
        (
            "revert with ../ viewport",
            c.post(app.url("/api/baselines/home/..%2F..%2Fx/revert")).bearer_auth(TOKEN),
            404,
        ),
        ("job id with ../", c.get(app.url("/v1/capture/..%2F..%2Fetc")).bearer_auth(TOKEN), 404),
        (
            "asset id with ../",
            c.get(app.url("/v1/assets/..%2F..%2Fwebhook-secret?exp=9999999999&sig=00")),
            403,
        ),
        // Asset URLs.
        ("tampered asset signature", c.get(&tampered), 403),
        ("expired asset URL, validly signed", c.get(&expired), 403),
        ("asset URL without signature", c.get(app.url(&format!("/v1/assets/{asset_id}"))), 403),
        // Review.
        ("approve without a token", c.post(app.url(&format!("/api/runs/{stuck}/approve"))), 401),
        ("list monitors without a token", c.get(app.url("/api/monitors")), 401),
        (
            "UI approve without a session or CSRF token",
            no_redirects.post(app.url(&format!("/runs/{stuck}/approve"))).urlencoded(&[("csrf", "0")]),
            401,
        ),
        (
            "UI approve without a session, from a browser",
            no_redirects
                .post(app.url(&format!("/runs/{stuck}/approve")))
                .header("accept", "text/html")
                .urlencoded(&[("csrf", "0")]),
            303,
        ),
        (
            "UI approve in a session, without the CSRF token",
            no_redirects
                .post(app.url(&format!("/runs/{stuck}/approve")))
                .header("cookie", &session)
                .urlencoded(&[("x", "1")]),
            403,
        ),
        (
            "UI approve in a session, with a made-up CSRF token",
            no_redirects
                .post(app.url(&format!("/runs/{stuck}/approve")))
                .header("cookie", &session)
                .urlencoded(&[("csrf", "0".repeat(32))]),
            403,
        ),
        (
            "Slack button without a signature",
            c.post(app.url("/hooks/slack")).urlencoded(&[("payload", "{}")]),
            401,
        ),
    ];
    for (what, request, status) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}: {}", r.text().await.unwrap_or_default());
        assert_eq!(stored(&app).await, before, "{what} stored something");
    }

    // A URL that is fine until it redirects to the metadata address: accepted, then failed
    // before any request leaves for it, and no image stored.
    let r = capture(&format!("{}/go?to=http://169.254.169.254/latest/meta-data/", site.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let redirected = r.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_owned();
    let failed = app.capture_finished(TOKEN, &redirected).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "url_not_allowed", "{failed}");
    let now_stored = stored(&app).await;
    assert_eq!(now_stored.1, before.1, "no file written");
    let assets = |s: &(Vec<(String, i64)>, Vec<String>)| s.0.iter().find(|(t, _)| t == "assets").unwrap().1;
    assert_eq!(assets(&now_stored), assets(&before), "no asset recorded");
    let before = now_stored;

    // A validly signed result whose image claims 1,000,000 × 1,000,000 pixels: the run fails and
    // the image is stored nowhere (and so never becomes a baseline).
    let huge = serve_png(png_claiming(1_000_000, 1_000_000)).await;
    let result = json!({"type": "capture.completed", "job_id": job, "status": "completed",
                        "asset_url": huge, "metadata": {"run_id": stuck}})
    .to_string();
    let r = signed(c, &hook, "msg_huge", now(), &result).send().await.unwrap();
    assert_eq!(r.status(), 204, "a well-signed result is accepted");
    let v = verdict_of(&app, &stuck).await;
    assert_eq!(
        (v["verdict"].as_str(), v["error"]["code"].as_str()),
        (Some("failed"), Some("image_too_large")),
        "{v}"
    );
    let after = stored(&app).await;
    assert_eq!(after.1, before.1, "no file written");
    for (table, n) in &after.0 {
        let was = before.0.iter().find(|(t, _)| t == table).unwrap().1;
        // The accepted webhook is recorded, and the failure alert queued; nothing else.
        let expected = match table.as_str() {
            "received_webhooks" | "alerts" => was + 1,
            _ => was,
        };
        assert_eq!(*n, expected, "{table}");
    }
    assert_eq!(scalar(&app.db.url, "SELECT count(*) FROM baselines WHERE monitor = 'stuck'").await, 0);
}

/// A signed result whose capture cannot be downloaded (issue 13, finding 1). A link that
/// answers 404 — expired while vigil was down, pruned — is asked for once: the capture API is
/// asked for a fresh link, and when it has none the run fails with `asset_unavailable`, for
/// good. A server that fails for now (503) is asked again with a growing backoff, and the run
/// waits. Before, both were fetched hundreds of times a second and the run stayed pending.
#[tokio::test]
async fn a_capture_that_cannot_be_downloaded_fails_its_run_once_without_spinning() {
    let site = TestSite::start().await;
    let yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 2\n  stability_timeout: 0s\n  allow_private: [\"127.0.0.1/32\"]\n\
         webhook:\n  secret: {SECRET}\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [320x200]\n  timeout: 60s\n\
         monitors:\n  - name: gone\n    url: {0}/hang\n  - name: down\n    url: {0}/hang\n",
        site.base_url,
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let store: std::sync::Arc<dyn InspectStore> =
        vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let mut jobs = Vec::new();
    for monitor in ["gone", "down"] {
        let run = run_now(&app, monitor).await;
        let job = wait_for("the run's job", Duration::from_secs(20), || async {
            store.get_run(&run.parse().unwrap()).await.unwrap().unwrap().job_id
        })
        .await;
        jobs.push((run, job));
    }
    let post = |(run, job): &(String, vigil::ids::JobId), asset_url: String| {
        let body = json!({"type": "capture.completed", "job_id": job, "status": "completed",
                          "asset_url": asset_url, "metadata": {"run_id": run}})
        .to_string();
        signed(&app.client, &app.url("/hooks/capture"), &format!("msg_{job}"), now(), &body).send()
    };
    assert_eq!(post(&jobs[0], site.url("missing")).await.unwrap().status(), 204);
    assert_eq!(post(&jobs[1], format!("{}/status/503", site.base_url)).await.unwrap().status(), 204);

    let v = verdict_of(&app, &jobs[0].0).await;
    assert_eq!(v["verdict"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "asset_unavailable", "{v}");
    // The server that fails for now: asked again after 2 s, then 4 s …, the run still waiting.
    wait_for("a second try of the failing server", Duration::from_secs(30), || async {
        (site.hits("/status/503") >= 2).then_some(())
    })
    .await;
    let tries = site.hits("/status/503");
    assert!(tries <= 3, "{tries} downloads in a few seconds: no backoff");
    let down = store.get_run(&jobs[1].0.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(down.verdict, None, "a server failing for now does not fail the run at once");
    assert_eq!(site.hits("missing"), 1, "a link that is gone is not asked again");
    let attempts = scalar(
        &app.db.url,
        &format!("SELECT attempts FROM received_webhooks WHERE job_id = '{}'", jobs[1].1),
    )
    .await;
    assert!(attempts >= 1, "the failures are counted towards the terminal state");
    let downloads = scalar(
        &app.db.url,
        &format!("SELECT fetch_failures FROM received_webhooks WHERE job_id = '{}'", jobs[1].1),
    )
    .await;
    assert_eq!(downloads, attempts, "each of them a failed download");
    app.stop().await.expect("clean shutdown");
}
