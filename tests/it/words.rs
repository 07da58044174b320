//! What changed, in words: a pricing page whose price goes from $49 to $79 — 0.03 % of its
//! pixels, under the default threshold — is a change, and the alert, the run's API document and
//! the review page say `$49 → $79`; a change without text under the threshold is not; pages that
//! animate, blink a caret or load a web font stay unchanged run after run.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::slack::{BOT_TOKEN, FakeSlack};
use crate::helpers::{Backend, TestApp, TestSite, wait_for};
use crate::monitoring::{TOKEN, api, run_now, verdict_of};
use crate::ui::{Urlencoded, cookie_of};

/// Monitors at the default settings (full page, 1280x800, `networkidle`, threshold 0.1 %,
/// one re-capture before alerting), only a schedule that does not fire during the test.
fn config(site: &TestSite, slack: &FakeSlack, names: &[&str]) -> String {
    let mut yaml = format!(
        "auth:\n  api_tokens: [{{name: Dana Reviewer, token: \"{TOKEN}\"}}]\n\
         capture:\n  workers: 2\n  allow_private: [\"127.0.0.1/32\"]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  api_url: {}/\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\nmonitors:\n",
        slack.api_url
    );
    for name in names {
        yaml.push_str(&format!("  - name: {name}\n    url: {}\n", site.url(name)));
    }
    yaml
}

/// A pricing page whose scripts break what a word reader in the page's own world would call.
fn pricing(pro: &str, badge: &str) -> String {
    format!(
        "<html><head><style>body{{margin:0;font:16px sans-serif;color:#222;background:#fff}}\
         header{{padding:20px 40px;background:#f4f4f8}} .plans{{display:flex;gap:24px;padding:0 40px}}\
         .plan{{flex:1;border:1px solid #ddd;border-radius:8px;padding:24px}} .price{{font-size:32px;font-weight:bold}}\
         .badge{{display:inline-block;width:8px;height:8px;background:{badge}}}</style></head><body>\
         <header><strong>Acme</strong> · Product · Pricing · Docs <span class=badge></span></header>\
         <h1 style='padding:0 40px'>Simple pricing</h1><div class=plans>\
         <div class=plan><h2>Starter</h2><p><span class=price>$19</span>/month</p><ul><li>1 project</li><li>Email support</li></ul></div>\
         <div class=plan><h2>Pro</h2><p><span class=price>{pro}</span>/month</p><ul><li>10 projects</li><li>Priority support</li></ul></div>\
         <div class=plan><h2>Enterprise</h2><p><span class=price>Contact sales</span></p><ul><li>Unlimited projects</li><li>SSO</li></ul></div>\
         </div><footer style='padding:40px'>© 2026 Acme Inc.</footer>\
         <script>Range.prototype.getBoundingClientRect = () => {{ throw new Error('no'); }};\
         Element.prototype.checkVisibility = () => false;</script></body></html>"
    )
}

#[tokio::test]
async fn a_price_change_is_told_in_words_at_the_default_settings() {
    let site = TestSite::start().await;
    site.set("pricing", &pricing("$49", "rgb(0,128,0)"));
    let slack = FakeSlack::start().await;
    // `quiet` watches the same page with the words left out of the verdict.
    let yaml = config(&site, &slack, &["pricing"])
        + &format!("  - name: quiet\n    url: {}\n    alert_on_text_change: false\n", site.url("pricing"));
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    for name in ["pricing", "quiet"] {
        let first = verdict_of(&app, &run_now(&app, name).await).await;
        assert_eq!(first["verdict"], "baseline_created", "{first}");
    }

    // A graphic change under the threshold (the 8x8 badge recolours): no words changed, no alert;
    // its region is told as a change without text.
    site.set("pricing", &pricing("$49", "rgb(200,0,0)"));
    let badge = verdict_of(&app, &run_now(&app, "pricing").await).await;
    assert_eq!(badge["verdict"], "unchanged", "{badge}");
    assert!(badge["diff_pixels"].as_i64().unwrap() > 0, "{badge}");
    let changes = badge["text_changes"].as_array().expect("both sides have words");
    assert!(!changes.is_empty() && changes.iter().all(|c| c["text"] == Value::Array(vec![])), "{badge}");
    assert_eq!(badge["headline"], Value::Null);

    // The price: a change, though far under the threshold.
    site.set("pricing", &pricing("$79", "rgb(200,0,0)"));
    let price = verdict_of(&app, &run_now(&app, "pricing").await).await;
    assert_eq!(price["verdict"], "changed", "{price}");
    let ratio = price["diff_ratio"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio < 0.001, "under the default 0.1 %: {price}");
    assert_eq!(price["headline"], "$49 → $79", "{price}");
    let quiet = verdict_of(&app, &run_now(&app, "quiet").await).await;
    assert_eq!(
        (&quiet["verdict"], &quiet["headline"]),
        (&json!("unchanged"), &json!("$49 → $79")),
        "{quiet}"
    );
    let said: Vec<&Value> = price["text_changes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["text"].as_array().unwrap())
        .collect();
    assert_eq!(said, [&json!({"kind": "replaced", "before": "$49", "after": "$79"})], "{price}");

    // The capture with its words is a valid PNG to a checker vigil did not write, which sees the
    // chunk.
    let png = crate::monitoring::image(&app, price["images"]["current"].as_str().unwrap()).await;
    let file = app.dir.path().join("current.png");
    std::fs::write(&file, &png).unwrap();
    let check = std::process::Command::new(crate::helpers::tool_on_path("pngcheck"))
        .arg("-v")
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "pngcheck: {said}");
    assert!(said.contains("iTXt") && said.contains("keyword: vigil:text"), "{said}");

    // The alert's first line, and its header.
    let posted = wait_for("the alert", Duration::from_secs(30), || async {
        let p = slack.posted();
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(posted.len(), 1, "one alert, for the price: {posted:#?}");
    let first_line = posted[0].text.lines().next().unwrap();
    assert!(first_line.contains("$49 → $79"), "{first_line}");
    assert_eq!(posted[0].blocks[0]["text"]["text"], "pricing: $49 → $79");

    // The review page.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login =
        client.post(app.url("/login")).urlencoded(&[("token", TOKEN), ("next", "/")]).send().await.unwrap();
    let cookie = cookie_of(&login);
    let id = price["id"].as_str().unwrap();
    let page = client.get(app.url(&format!("/runs/{id}"))).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<strong>What changed:</strong> $49 → $79"), "{html}");

    // The new price approved: the next capture is unchanged, its words now the baseline's.
    let (status, approved) = api(&app, reqwest::Method::POST, &format!("/api/runs/{id}/approve")).await;
    assert_eq!(status, 200);
    assert_eq!(approved["run"]["reviewed_by"], "Dana Reviewer", "the token's name: {approved}");
    assert_eq!(approved["baseline"]["approved_by"], "Dana Reviewer");
    let after = verdict_of(&app, &run_now(&app, "pricing").await).await;
    assert_eq!(after["verdict"], "unchanged", "{after}");
    assert_eq!(slack.posted().len(), 1);
}

/// A page with endless animations and a transition, one with a focused field's caret, one whose
/// web font arrives after the first paint, and the pricing page: unchanged over 10 runs each,
/// with no alert.
#[tokio::test]
async fn busy_pages_stay_unchanged_over_ten_runs() {
    let site = TestSite::start().await;
    site.set(
        "animated",
        "<html><head><style>@keyframes spin{from{transform:rotate(0)}to{transform:rotate(360deg)}}\
         @keyframes pulse{from{opacity:.2}to{opacity:1}}\
         .s{width:80px;height:80px;background:#c00;animation:spin 1s linear infinite}\
         .p{animation:pulse .7s ease-in-out infinite alternate}\
         .f{width:80px;height:20px;background:#0c0;transition:width 5s}</style></head>\
         <body style='margin:10px;font:16px sans-serif'><div class='s'></div><p class='p'>Live now</p><div class='f' id='f'></div>\
         <script>setTimeout(()=>{document.getElementById('f').style.width='300px'},10);\
         document.body.animate([{transform:'translateX(0)'},{transform:'translateX(5px)'}],{duration:400,iterations:Infinity});</script>\
         </body></html>",
    );
    site.set(
        "caret",
        "<html><body style='margin:10px;font:16px sans-serif'><label>Search <input id='q' value='typing here' autofocus></label>\
         <textarea>notes</textarea><script>document.getElementById('q').focus()</script></body></html>",
    );
    site.set(
        "font",
        "<html><head><style>@font-face{font-family:Late;src:url(/font.ttf);font-display:swap}\
         body{margin:10px;font:24px Late, monospace}</style></head><body><h1>Quarterly report</h1>\
         <p>Revenue grew 12% to $4.2M.</p></body></html>",
    );
    site.set("pricing", &pricing("$49", "rgb(0,128,0)"));
    let names = ["animated", "caret", "font", "pricing"];
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &config(&site, &slack, &names)).await;
    for round in 0..11 {
        let runs: Vec<(&str, String)> =
            futures_util::future::join_all(names.iter().map(|n| async { (*n, run_now(&app, n).await) }))
                .await;
        for (name, run) in runs {
            let v = verdict_of(&app, &run).await;
            let expected = if round == 0 { "baseline_created" } else { "unchanged" };
            assert_eq!(v["verdict"], expected, "{name}, round {round}: {v}");
            if round > 0 {
                assert_eq!(v["diff_pixels"], 0, "{name}, round {round}: {v}");
            }
        }
    }
    assert!(slack.posted().is_empty(), "{:#?}", slack.posted());
    assert!(site.hits("font.ttf") >= 11, "the web font was loaded by every capture");
}
