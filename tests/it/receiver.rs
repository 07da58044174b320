//! `POST /hooks/capture`: signed, deduplicated, stored before the 2xx.

use std::time::Duration;

use serde_json::json;
use vigil::store::InspectStore;

use crate::helpers::{Backend, TestApp, TestSite, wait_for};

const TOKEN: &str = "test-token-0123456789";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(extra_webhook: &str) -> String {
    format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\ncapture:\n  workers: 1\n  allow_private: [\"127.0.0.0/8\"]\n  stability_timeout: 1s\nwebhook:\n  secret: {SECRET}\n  retry_schedule: [0s, 100ms, 100ms]\n{extra_webhook}"
    )
}

async fn store(app: &TestApp) -> std::sync::Arc<dyn InspectStore> {
    vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap()
}

fn now() -> i64 {
    vigil::time::Timestamp::now().millis() / 1000
}

/// Posts `body` signed (by the independent standardwebhooks crate) as message `id` at `ts`.
async fn post_signed(app: &TestApp, id: &str, ts: i64, body: &str) -> reqwest::Response {
    let sig = standardwebhooks::Webhook::new(SECRET).unwrap().sign(id, ts, body.as_bytes()).unwrap();
    app.client
        .post(app.url("/hooks/capture"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn our_own_captures_arrive_through_the_signed_receiver() {
    let site = TestSite::start().await;
    site.set("p", "<html><body style='background:#0f0'></body></html>");
    let monitor = format!(
        "monitors:\n  - name: x\n    url: {}\n    schedule: \"0 0 1 1 *\"\n    viewports: [200x100]\n",
        site.url("p")
    );
    let app = TestApp::spawn(Backend::Sqlite, &format!("{}{monitor}", config(""))).await;
    // The monitor role submits with its own token; a client may not name this receiver.
    let run = crate::monitoring::run_now(&app, "x").await;
    let store = store(&app).await;
    let sent = wait_for("the webhook to be delivered", Duration::from_secs(60), || {
        let store = store.clone();
        async move {
            store.list_deliveries(vigil::store::OutboxStatus::Sent, 10).await.ok().filter(|d| !d.is_empty())
        }
    })
    .await;
    let stored =
        store.get_received_webhook(sent[0].id.as_str()).await.unwrap().expect("stored under its webhook-id");
    let job = store.get_run(&run.parse().unwrap()).await.unwrap().unwrap().job_id.expect("the run's job");
    assert_eq!(stored.job_id, job.as_str());
    let doc: serde_json::Value = serde_json::from_str(&stored.payload).unwrap();
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["metadata"]["monitor"], "x");
    assert_eq!(doc["metadata"]["run_id"], run.as_str());
    // A client naming vigil's own receiver as its webhook is refused (issue 12).
    let body = json!({"url": site.url("p"), "webhook_url": app.url("/hooks/capture")});
    let r = app.client.post(app.url("/v1/capture")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn retries_and_replays_are_stored_once() {
    let app = TestApp::spawn(Backend::Postgres, &config("")).await;
    let body =
        r#"{"type":"capture.completed","job_id":"job_01JBBBBBBBBBBBBBBBBBBBBBBB","status":"completed"}"#;
    let ts = now();
    // The same message three times at once, as a sender retrying concurrently would.
    let (a, b, c) = tokio::join!(
        post_signed(&app, "msg_1", ts, body),
        post_signed(&app, "msg_1", ts, body),
        post_signed(&app, "msg_1", ts + 1, body)
    );
    for r in [a, b, c] {
        assert_eq!(r.status(), 204, "duplicates are acknowledged");
    }
    // A different message id about the same job is a duplicate too.
    assert_eq!(post_signed(&app, "msg_2", ts, body).await.status(), 204);
    let store = store(&app).await;
    assert!(store.get_received_webhook("msg_1").await.unwrap().is_some());
    assert!(store.get_received_webhook("msg_2").await.unwrap().is_none(), "one row per job");
}

#[tokio::test]
async fn external_providers_can_sign_with_a_hex_hmac_header() {
    let app = TestApp::spawn(Backend::Sqlite, &config("  hex_signature_header: X-Signature\n")).await;
    let body = r#"{"job_id":"ext-123","status":"completed"}"#;
    let key = vigil::signing::SigningKey::from_secret(SECRET).unwrap();
    let good = hex::encode(hmac_sha256(key.raw(), body.as_bytes()));
    let send =
        |sig: String| app.client.post(app.url("/hooks/capture")).header("X-Signature", sig).body(body).send();
    assert_eq!(send("00".repeat(32)).await.unwrap().status(), 401);
    assert_eq!(send(good).await.unwrap().status(), 204);
    let stored = store(&app).await.get_received_webhook("job:ext-123").await.unwrap().expect("stored");
    assert_eq!(stored.job_id, "ext-123");
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A flood from one address is cut off with 429 before any signature work; a signed webhook
/// sent after the wait is accepted.
#[tokio::test]
async fn a_flood_is_rate_limited_per_address() {
    let app = TestApp::spawn(Backend::Sqlite, &config("  rate_limit: 2\n")).await;
    let body =
        r#"{"type":"capture.completed","job_id":"job_01JBBBBBBBBBBBBBBBBBBBBBBB","status":"completed"}"#;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..12 {
        let r = app.client.post(app.url("/hooks/capture")).body(body).send().await.unwrap();
        if r.status() == 429 {
            retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        }
        statuses.push(r.status().as_u16());
    }
    // A burst of 2 × 2: the first four are judged (unsigned: 401), the rest refused unread.
    let judged = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!((4..=5).contains(&judged) && judged + limited == 12, "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(&format!("vigil_webhooks_refused_total{{reason=\"rate_limited\"}} {limited}")),
        "{metrics}"
    );
    // Within the rate again, a properly signed webhook is taken.
    let r = wait_for("a token to come back", Duration::from_secs(5), || async {
        let r = post_signed(&app, "msg_after_flood", now(), body).await;
        (r.status() != 429).then_some(r)
    })
    .await;
    assert_eq!(r.status(), 204);
    assert!(store(&app).await.get_received_webhook("msg_after_flood").await.unwrap().is_some());
}
