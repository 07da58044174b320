//! PDF monitors (docs/monitors.md): a report page printed by Chromium, its pages rendered and
//! compared; a change on one page is reported as that page, a page added as a new page count.

use std::time::Duration;

use crate::helpers::site::TestSite;
use crate::helpers::slack::{BOT_TOKEN, FakeSlack};
use crate::helpers::{Backend, TestApp, wait_for};
use crate::monitoring::{TOKEN, image, run_now, verdict_of};

/// A report of one page per colour, each page broken before the next.
fn report(colours: &[&str]) -> String {
    let pages: Vec<String> = colours
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "<section style='break-after:page;height:200px;background:{c}'><h1 style='margin:0;font:24px sans-serif'>Page {}</h1></section>",
                i + 1
            )
        })
        .collect();
    format!("<html><body style='margin:0'>{}</body></html>", pages.concat())
}

#[tokio::test]
async fn a_pdf_monitor_reports_the_page_that_changed_and_a_page_added() {
    let site = TestSite::start().await;
    site.set("report", &report(&["#cfc", "#ccf", "#fcc"]));
    let slack = FakeSlack::start().await;
    let config = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 1\n  allow_private: [\"127.0.0.1/32\"]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  api_url: {}/\n\
         monitors:\n  - name: report\n    url: {}\n    schedule: \"0 0 1 1 *\"\n    format: pdf\n    wait_until: load\n    retries_on_diff: 0\n",
        slack.api_url,
        site.url("report")
    );
    let app = TestApp::spawn(Backend::Sqlite, &config).await;

    // The first capture is the baseline: the three pages rendered one under the other.
    let first = verdict_of(&app, &run_now(&app, "report").await).await;
    assert_eq!(first["verdict"], "baseline_created", "{first}");
    let png = image(&app, first["images"]["current"].as_str().unwrap()).await;
    let img = vigil::diff::decode_png(&png, &vigil::diff::Limits::default()).unwrap();
    let heights = vigil::diff::pdf::page_heights(&png).expect("a rendered PDF carries its pages");
    assert_eq!(heights.len(), 3, "{heights:?}");
    assert_eq!(img.height(), heights.iter().sum::<u32>());
    let again = verdict_of(&app, &run_now(&app, "report").await).await;
    assert_eq!(
        (again["verdict"].as_str(), again["diff_pixels"].as_i64()),
        (Some("unchanged"), Some(0)),
        "{again}"
    );

    // Page 2 changes colour: the run says page 2 of 3, and so does the alert.
    site.set("report", &report(&["#cfc", "#fcf", "#fcc"]));
    let changed = verdict_of(&app, &run_now(&app, "report").await).await;
    assert_eq!(changed["verdict"], "changed", "{changed}");
    assert_eq!(changed["pages"], serde_json::json!({"before": 3, "after": 3, "changed": [2]}), "{changed}");
    let posted = wait_for("the change alert", Duration::from_secs(30), || async {
        let p = slack.posted();
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert!(posted[0].text.contains("page 2 of 3 changed"), "{}", posted[0].text);
    assert!(posted[0].blocks.to_string().contains("*PDF*: page 2 of 3 changed."), "{}", posted[0].blocks);
    // The review page says it too.
    let id = changed["id"].as_str().unwrap();
    let (client, cookie) = crate::ui::signed_in(&app).await;
    let r = client.get(app.url(&format!("/runs/{id}"))).header("cookie", &cookie).send().await.unwrap();
    let html = r.text().await.unwrap();
    assert!(html.contains("PDF: page 2 of 3 changed"), "{html}");

    // Approved, and then the report grows a fourth page: the new page count is reported.
    let r = app
        .client
        .post(app.url(&format!("/api/runs/{id}/approve")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    site.set("report", &report(&["#cfc", "#fcf", "#fcc", "#ffc"]));
    let longer = verdict_of(&app, &run_now(&app, "report").await).await;
    assert_eq!(
        (longer["verdict"].as_str(), longer["size_changed"].as_bool()),
        (Some("changed"), Some(true)),
        "{longer}"
    );
    assert_eq!(longer["pages"], serde_json::json!({"before": 3, "after": 4, "changed": [4]}), "{longer}");
    app.stop().await.expect("clean shutdown");
}
