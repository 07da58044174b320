//! Capture quality on the run: a page that never settles (its shots keep changing) is judged
//! `unstable`, not `changed`, and alerts once when it has been so for `unstable_alert_after` runs
//! in a row; `stable` and `clipped` are on the run.

use std::time::Duration;

use crate::helpers::slack::{BOT_TOKEN, FakeSlack};
use crate::helpers::{Backend, TestApp, TestSite, wait_for};
use crate::monitoring::{TOKEN, run_now, verdict_of};

#[tokio::test]
async fn a_page_that_never_settles_is_unstable_and_alerts_once_a_streak() {
    let site = TestSite::start().await;
    // Noise drawn on a canvas at every frame: no stabilising CSS stops a script, every
    // screenshot waits for a new frame, and two frames of noise differ in most of their pixels.
    site.set(
        "moving",
        "<html><body style='margin:0'><canvas id=c width=200 height=100></canvas><script>\
         const g = document.getElementById('c').getContext('2d'); const img = g.createImageData(200, 100);\
         const draw = () => { for (let i = 0; i < img.data.length; i++) img.data[i] = i % 4 == 3 ? 255 : Math.random() * 256;\
         g.putImageData(img, 0, 0); requestAnimationFrame(draw); }; draw();</script></body></html>",
    );
    site.set(
        "tall",
        "<html><body style='margin:0'><div style='height:2000px;background:#08f'></div></body></html>",
    );
    let slack = FakeSlack::start().await;
    let yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 2\n  stability_timeout: 500ms\n  allow_private: [\"127.0.0.1/32\"]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  api_url: {}/\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [320x200]\n  wait_until: load\n\
         monitors:\n  - name: moving\n    url: {}\n    full_page: false\n    unstable_alert_after: 2\n\
         \x20 - name: tall\n    url: {}\n    max_height: 300\n",
        slack.api_url,
        site.url("moving"),
        site.url("tall")
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;

    let tall = verdict_of(&app, &run_now(&app, "tall").await).await;
    assert_eq!((tall["stable"].as_bool(), tall["clipped"].as_bool()), (Some(true), Some(true)), "{tall}");

    let first = verdict_of(&app, &run_now(&app, "moving").await).await;
    assert_eq!(first["verdict"], "baseline_created", "{first}");
    assert_eq!(first["stable"], false, "{first}");
    let mut verdicts = Vec::new();
    for round in 0..3 {
        let v = verdict_of(&app, &run_now(&app, "moving").await).await;
        assert_eq!(v["verdict"], "unstable", "round {round}: {v}");
        assert_eq!(
            (v["stable"].as_bool(), v["attempt"].as_i64()),
            (Some(false), Some(0)),
            "not re-captured: {v}"
        );
        verdicts.push(v);
        if round == 0 {
            // One unsettled capture alerts no one (the alert is queued with the verdict).
            assert!(slack.posted().is_empty(), "{:#?}", slack.posted());
        }
    }
    let posted = wait_for("the unstable alert", Duration::from_secs(30), || async {
        let p = slack.posted();
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(posted[0].blocks[0]["text"]["text"], "Capture not settling: moving");
    assert!(
        posted[0].text.starts_with("moving (320x200) never settled in 2 captures in a row"),
        "{}",
        posted[0].text
    );
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let alerted: Vec<usize> = {
        let mut out = Vec::new();
        for (i, v) in verdicts.iter().enumerate() {
            let id = v["id"].as_str().unwrap().parse().unwrap();
            if !store.alerts_for_run(&id).await.unwrap().is_empty() {
                out.push(i);
            }
        }
        out
    };
    assert_eq!(alerted, [1], "the second unsettled run in a row alerts, the third does not");
    assert_eq!(slack.posted().len(), 1);
    // No change awaits review: an unsettled capture is not a change.
    let (_, changes) = crate::monitoring::api(&app, reqwest::Method::GET, "/api/changes").await;
    assert_eq!(changes["changes"].as_array().map(Vec::len), Some(0), "{changes}");
}
