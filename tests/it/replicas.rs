//! Several replicas on one PostgreSQL database (issue 14). The parts that hold so far: replicas
//! whose configs differ do not judge each other's monitors differently.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::slack::{BOT_TOKEN, FakeSlack};
use crate::helpers::{Backend, TestApp, TestSite, wait_for};
use crate::monitoring::{TOKEN, page, run_now, verdict_of};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(site: &TestSite, slack: &FakeSlack, threshold: &str) -> String {
    format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 1\n  stability_timeout: 0s\n  allow_private: [\"127.0.0.1/32\"]\n\
         webhook:\n  secret: {SECRET}\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  api_url: {}/\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [320x200]\n  full_page: false\n  wait_until: load\n\
         monitors:\n  - name: home\n    url: {}\n    threshold: {threshold}\n",
        slack.api_url,
        site.url("home"),
    )
}

/// One replica was given `threshold: 50%`, the other (started last, so the database has its
/// definition) `1%`. A real change of 8 % of the page must be judged `changed` whichever
/// processor picks the result up; before, whichever came first decided, and 50 % said
/// `unchanged`. The replica that differs says so in `/readyz` and its metrics.
#[tokio::test]
async fn a_replica_whose_config_differs_leaves_the_monitor_to_those_that_agree() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    site.set("home", &page("home", "rgb(0,160,0)"));
    let lenient = TestApp::spawn(Backend::Postgres, &config(&site, &slack, "50%")).await;
    let strict =
        TestApp::spawn_replica(&lenient, &config(&site, &slack, "1%"), Some("monitor,capture")).await;

    let first = run_now(&lenient, "home").await;
    assert_eq!(verdict_of(&lenient, &first).await["verdict"], "baseline_created");
    site.set("home", &page("home", "rgb(160,0,0)"));
    let second = run_now(&lenient, "home").await;
    let v = verdict_of(&lenient, &second).await;
    assert_eq!(v["verdict"], "changed", "judged by the replica that agrees with the database: {v}");

    let readyz = |app: &TestApp| {
        let request = app.client.get(app.url("/readyz"));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // The lenient replica is woken by its own receiver, so it meets the results first.
    let disagreement =
        wait_for("the lenient replica to report the disagreement", Duration::from_secs(20), || async {
            let r = readyz(&lenient).await;
            (r["config"]["status"] == "disagrees").then_some(r)
        })
        .await;
    assert_eq!(disagreement["status"], "ready", "it still serves: {disagreement}");
    assert_eq!(disagreement["config"]["monitors"], serde_json::json!(["home"]));
    let metrics = lenient.client.get(lenient.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vigil_monitor_config_disagreements 1"), "{metrics}");
    assert_eq!(readyz(&strict).await["config"]["status"], "ok");
    strict.stop().await.expect("clean shutdown");
    lenient.stop().await.expect("clean shutdown");
}
