//! One alert for one change: the same header change on five pages in one tick is one Slack
//! message listing the five, with one *Approve all* button, and one signed event per
//! destination listing the five runs; the review page shows them as a group.

use std::time::Duration;

use serde_json::{Value, json};
use vigil::time::Timestamp;

use crate::helpers::site::TestReceiver;
use crate::helpers::slack::{BOT_TOKEN, CHANNEL_ID, FakeSlack};
use crate::helpers::{Backend, TestApp, TestSite, wait_for};
use crate::monitoring::{TOKEN, api, run_now, verdict_of};
use crate::review::{SIGNING_SECRET, slack_click};
use crate::ui::signed_in;

const OPS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PAGES: [&str; 5] = ["home", "pricing", "docs", "blog", "about"];

/// A page of the site: the shared header, then the page's own words.
fn page(header: &str, name: &str) -> String {
    format!(
        "<html><body style='margin:0;font:16px sans-serif;background:#fff'>\
         <header style='padding:10px 20px;background:#eef'><strong>{header}</strong> · Products · Docs</header>\
         <h1 style='padding:0 20px'>The {name} page</h1><p style='padding:0 20px'>Words of {name} alone.</p>\
         </body></html>"
    )
}

/// Every page run at once, as a tick does; their verdicts.
async fn tick(app: &TestApp) -> Vec<Value> {
    let mut runs = Vec::new();
    for name in PAGES {
        runs.push(run_now(app, name).await);
    }
    let mut verdicts = Vec::new();
    for run in &runs {
        verdicts.push(verdict_of(app, run).await);
    }
    verdicts
}

#[tokio::test]
async fn the_same_change_on_five_pages_is_one_alert_one_event_and_one_approval() {
    let site = TestSite::start().await;
    for name in PAGES {
        site.set(name, &page("Acme", name));
    }
    let slack = FakeSlack::start().await;
    let ops = TestReceiver::start().await;
    let mut yaml = format!(
        "auth:\n  api_tokens: [{{name: Dana Reviewer, token: \"{TOKEN}\"}}]\n\
         capture:\n  workers: 2\n  allow_private: [\"127.0.0.1/32\"]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  signing_secret: {SIGNING_SECRET}\n  api_url: {}/\n\
         alerts:\n  ops:\n    webhook: {}\n    secret: {OPS_SECRET}\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [640x240]\n  full_page: false\n  wait_until: load\n  retries_on_diff: 0\n\
         monitors:\n",
        slack.api_url, ops.url
    );
    for name in PAGES {
        yaml.push_str(&format!("  - name: {name}\n    url: {}\n", site.url(name)));
    }
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    for v in tick(&app).await {
        assert_eq!(v["verdict"], "baseline_created", "{v}");
    }

    // The shared header changes: five changes in one tick, one message.
    for name in PAGES {
        site.set(name, &page("Apex", name));
    }
    let changes = tick(&app).await;
    for v in &changes {
        assert_eq!(
            (v["verdict"].as_str(), v["headline"].as_str()),
            (Some("changed"), Some("Acme → Apex")),
            "{v}"
        );
    }
    let event = wait_for("the group's event", Duration::from_secs(120), || async {
        ops.all().into_iter().find(|r| r.status == 200)
    })
    .await;
    standardwebhooks::Webhook::new(OPS_SECRET).unwrap().verify(&event.body, &event.headers).unwrap();
    let event: Value = serde_json::from_slice(&event.body).unwrap();
    assert_eq!(event["type"], "run.changed");
    let mut listed: Vec<&str> =
        event["data"]["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    let mut ids: Vec<&str> = changes.iter().map(|v| v["id"].as_str().unwrap()).collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids, "{event}");
    assert!(
        event["data"]["summary"].as_str().unwrap().starts_with("5 pages changed the same way: Acme → Apex"),
        "{event}"
    );

    let message = wait_for("the Slack message", Duration::from_secs(60), || async {
        slack.posted().into_iter().next()
    })
    .await;
    assert!(message.text.starts_with("5 pages changed the same way: Acme → Apex ("), "{}", message.text);
    let blocks = message.blocks.to_string();
    for v in &changes {
        assert!(
            blocks.contains(&format!(
                "/runs/{}|{} 640x240>",
                v["id"].as_str().unwrap(),
                v["monitor"].as_str().unwrap()
            )),
            "{blocks}"
        );
    }
    let actions = message.blocks.as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap().clone();
    assert_eq!(actions["elements"][0]["action_id"], "vigil_approve_all");

    // The store agrees: every alert sent, four of them as part of the first one's message, and
    // one event for ops.
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let grouped = wait_for("every alert sent", Duration::from_secs(60), || async {
        let mut grouped = 0;
        for v in &changes {
            let alerts = store.alerts_for_run(&v["id"].as_str().unwrap().parse().unwrap()).await.unwrap();
            assert_eq!(alerts.len(), 1);
            if alerts[0].status != vigil::store::OutboxStatus::Sent {
                return None;
            }
            grouped += usize::from(alerts[0].grouped_into.is_some());
        }
        Some(grouped)
    })
    .await;
    assert_eq!(grouped, 4);
    assert_eq!(slack.shared().len(), 3, "the first page's images, once");
    let events = store.list_deliveries(vigil::store::OutboxStatus::Sent, 100).await.unwrap();
    assert_eq!(events.iter().filter(|d| d.sender == "ops").count(), 1, "{events:?}");
    assert_eq!(slack.posted().len(), 1);

    // The review page of any of them shows the group.
    let (client, cookie) = signed_in(&app).await;
    let last = changes[4]["id"].as_str().unwrap();
    let html = client
        .get(app.url(&format!("/runs/{last}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("The same change on 5 pages"), "{html}");
    for v in &changes {
        assert!(html.contains(&format!("href=\"/runs/{}\"", v["id"].as_str().unwrap())), "{html}");
    }

    // And its API document lists the group, the first run first.
    let (_, doc) = api(&app, reqwest::Method::GET, &format!("/api/runs/{last}")).await;
    let mut group: Vec<&str> = doc["group"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(group[0], actions["elements"][0]["value"], "{doc}");
    group.sort();
    assert_eq!(group, ids, "{doc}");

    // Approve all, from Slack: the five captures become their pages' baselines.
    let click = json!({
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice", "name": "alice"},
        "container": {"type": "message", "channel_id": CHANNEL_ID, "message_ts": message.ts},
        "message": {"ts": message.ts, "text": message.text, "blocks": message.blocks},
        "response_url": slack.response_url(),
        "actions": [{"action_id": "vigil_approve_all", "value": actions["elements"][0]["value"], "type": "button"}],
    });
    let r = slack_click(&app, &click, Timestamp::now().millis() / 1000).await;
    assert_eq!(r.status(), 200);
    for v in &changes {
        let id = v["id"].as_str().unwrap();
        let approved = wait_for("approved", Duration::from_secs(30), || async {
            let (_, run) = api(&app, reqwest::Method::GET, &format!("/api/runs/{id}")).await;
            (run["verdict"] == "approved").then_some(run)
        })
        .await;
        assert_eq!(approved["reviewed_by"], "slack:@alice (U0ALICE)");
    }
    let update = wait_for("the message updated", Duration::from_secs(30), || async {
        slack.updates().into_iter().next()
    })
    .await;
    assert!(update.2.contains("5 of 5 approved as baselines by <@U0ALICE>"), "{update:?}");
    // And the next tick is quiet.
    for v in tick(&app).await {
        assert_eq!(v["verdict"], "unchanged", "{v}");
    }
}
