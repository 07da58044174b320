//! Ignoring a change: a banner that flips between two pictures alerts once; its reviewer ignores
//! that change (from the review page, with a time), and while the ignore lasts the same change
//! is judged `ignored` (no alert, not in the queue, counted on the Ignored page) while any other
//! change still alerts; stopping the ignore brings the alert back.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::slack::{BOT_TOKEN, FakeSlack};
use crate::helpers::{Backend, TestApp, TestSite, wait_for};
use crate::monitoring::{TOKEN, api, run_now, verdict_of};
use crate::ui::{Urlencoded, csrf_in, signed_in};

fn banner(sale: &str) -> String {
    format!(
        "<html><body style='margin:0;font:16px sans-serif;background:#fff'>\
         <div style='padding:10px 20px;background:#ffe'><strong>{sale} sale</strong> — 20% off</div>\
         <h1 style='padding:0 20px'>Acme shop</h1></body></html>"
    )
}

async fn posted(slack: &FakeSlack, count: usize) {
    wait_for(&format!("{count} Slack messages"), Duration::from_secs(60), || async {
        (slack.posted().len() >= count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_ignored_change_is_quiet_until_the_ignore_ends_and_other_changes_still_alert() {
    let site = TestSite::start().await;
    site.set("shop", &banner("Spring"));
    let slack = FakeSlack::start().await;
    let yaml = format!(
        "auth:\n  api_tokens: [{{name: Dana Reviewer, token: \"{TOKEN}\"}}]\n\
         capture:\n  workers: 1\n  allow_private: [\"127.0.0.1/32\"]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  api_url: {}/\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [640x200]\n  full_page: false\n  wait_until: load\n  retries_on_diff: 0\n\
         monitors:\n  - name: shop\n    url: {}\n",
        slack.api_url,
        site.url("shop")
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let tick = |sale: &'static str| {
        site.set("shop", &banner(sale));
        let app = &app;
        async move { verdict_of(app, &run_now(app, "shop").await).await }
    };
    let first = tick("Spring").await;
    assert_eq!(first["verdict"], "baseline_created");
    let summer = tick("Summer").await;
    assert_eq!(
        (summer["verdict"].as_str(), summer["headline"].as_str()),
        (Some("changed"), Some("Spring → Summer"))
    );
    posted(&slack, 1).await;

    // The reviewer ignores it from the review page, for 30 days.
    let (client, cookie) = signed_in(&app).await;
    let id = summer["id"].as_str().unwrap();
    let page = client.get(app.url(&format!("/runs/{id}"))).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("action=\"/runs/{id}/ignore?days=30\"")), "{html}");
    let csrf = csrf_in(&html);
    let r = client
        .post(app.url(&format!("/runs/{id}/ignore?days=30")))
        .header("cookie", &cookie)
        .urlencoded(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (_, run) = api(&app, reqwest::Method::GET, &format!("/api/runs/{id}")).await;
    assert_eq!(
        (run["verdict"].as_str(), run["reviewed_by"].as_str()),
        (Some("ignored"), Some("Dana Reviewer")),
        "{run}"
    );
    let (_, changes) = api(&app, reqwest::Method::GET, "/api/changes").await;
    assert_eq!(changes["changes"], json!([]), "out of the review queue");

    // The banner flips back and forth: the same change again is ignored, silently.
    assert_eq!(tick("Spring").await["verdict"], "unchanged");
    let again = tick("Summer").await;
    assert_eq!(again["verdict"], "ignored", "{again}");
    // Another change of the same page alerts.
    let autumn = tick("Autumn").await;
    assert_eq!(autumn["verdict"], "changed", "{autumn}");
    posted(&slack, 2).await;
    assert!(slack.posted()[1].text.contains("Spring → Autumn"), "{:?}", slack.posted()[1].text);
    assert_eq!(slack.posted().len(), 2, "nothing for the ignored run");

    // Listed with its count, through the API and on the Ignored page.
    let (_, ignores) = api(&app, reqwest::Method::GET, "/api/ignores").await;
    let ignore: &Value = &ignores["ignores"][0];
    assert_eq!(
        (
            ignore["monitor"].as_str(),
            ignore["description"].as_str(),
            ignore["matched"].as_i64(),
            ignore["active"].as_bool()
        ),
        (Some("shop"), Some("Spring → Summer"), Some(1), Some(true)),
        "{ignores}"
    );
    let until = ignore["until"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert_eq!((until - chrono::Utc::now()).num_days(), 29, "{ignore}");
    let html =
        client.get(app.url("/ignored")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Spring → Summer") && html.contains("<td>1</td>"), "{html}");

    // A wrong length, a run that is no change: refused, saying why.
    let r = app
        .client
        .post(app.url(&format!("/api/runs/{}/ignore", autumn["id"].as_str().unwrap())))
        .bearer_auth(TOKEN)
        .json(&json!({"days": 91}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .client
        .post(app.url(&format!("/api/runs/{}/ignore", first["id"].as_str().unwrap())))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let refused: Value = r.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "not_a_change", "{refused}");

    // Stopped: the same change alerts again.
    let r = app
        .client
        .delete(app.url(&format!("/api/ignores/{}", ignore["id"].as_str().unwrap())))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let rejected =
        api(&app, reqwest::Method::POST, &format!("/api/runs/{}/reject", autumn["id"].as_str().unwrap()))
            .await;
    assert_eq!(rejected.0, 200);
    assert_eq!(tick("Spring").await["verdict"], "unchanged");
    assert_eq!(tick("Summer").await["verdict"], "changed");
    posted(&slack, 3).await;
}
