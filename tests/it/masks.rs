//! Masks drawn from the review page: a rectangle drawn (or typed) on a capture is left out of
//! that monitor and viewport's comparison from the next run on, listed on the monitor's page and
//! by the API as YAML to paste into the config, and removable.

use serde_json::{Value, json};

use crate::helpers::slack::FakeSlack;
use crate::helpers::{Backend, TestApp, TestSite};
use crate::monitoring::{TOKEN, api, config, page, run_now, verdict_of};
use crate::ui::{Urlencoded, csrf_in, signed_in};

#[tokio::test]
async fn a_drawn_mask_hides_a_moving_box_until_it_is_removed() {
    let site = TestSite::start().await;
    for name in ["home", "pricing", "about"] {
        site.set(name, &page(name, "rgb(255,0,0)"));
    }
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &config(&site, &slack, "")).await;
    let first = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(first["verdict"], "baseline_created");
    let id = first["id"].as_str().unwrap();

    // Drawn on the review page (the form the drag fills), by a signed-in reviewer.
    let (client, cookie) = signed_in(&app).await;
    let html = client
        .get(app.url(&format!("/runs/{id}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("action=\"/runs/{id}/mask\"")), "{html}");
    let csrf = csrf_in(&html);
    let draw = |fields: Vec<(&'static str, String)>| {
        client.post(app.url(&format!("/runs/{id}/mask"))).header("cookie", &cookie).urlencoded(&fields).send()
    };
    let field = |v: i64| v.to_string();
    let r = draw(vec![
        ("csrf", csrf.clone()),
        ("x", field(0)),
        ("y", field(0)),
        ("width", field(200)),
        ("height", field(150)),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let forged = draw(vec![
        ("csrf", "0".repeat(32)),
        ("x", field(0)),
        ("y", field(0)),
        ("width", field(5)),
        ("height", field(5)),
    ]);
    assert_eq!(forged.await.unwrap().status(), 403);
    let empty = draw(vec![
        ("csrf", csrf.clone()),
        ("x", field(0)),
        ("y", field(0)),
        ("width", field(0)),
        ("height", field(5)),
    ]);
    assert_eq!(empty.await.unwrap().status(), 422);

    // The box changes colour under the mask: unchanged.
    site.set("home", &page("home", "rgb(0,0,255)"));
    let masked = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(
        (masked["verdict"].as_str(), masked["diff_pixels"].as_i64()),
        (Some("unchanged"), Some(0)),
        "{masked}"
    );

    // Listed, with the YAML to paste into the config.
    let (status, listed) = api(&app, reqwest::Method::GET, "/api/monitors/home/masks").await;
    assert_eq!(status, 200);
    let mask: &Value = &listed["masks"][0];
    assert_eq!((mask["viewport"].as_str(), mask["width"].as_i64()), (Some("320x200"), Some(200)), "{listed}");
    assert!(mask["created_by"].as_str().unwrap().starts_with("ui token "), "who drew it: {listed}");
    assert!(
        listed["yaml"]
            .as_str()
            .unwrap()
            .contains("mask:\n  # drawn on 320x200\n  - {x: 0, y: 0, width: 200, height: 150}\n"),
        "{listed}"
    );
    let page_html = client
        .get(app.url("/monitors/home"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page_html.contains("{x: 0, y: 0, width: 200, height: 150}"), "{page_html}");

    // Through the API: a viewport the monitor does not have, a rectangle of nothing: refused.
    let post = |body: Value| {
        app.client.post(app.url("/api/monitors/home/masks")).bearer_auth(TOKEN).json(&body).send()
    };
    let r = post(json!({"viewport": "1280x800", "x": 0, "y": 0, "width": 5, "height": 5})).await.unwrap();
    assert_eq!(r.status(), 422);
    let r = post(json!({"viewport": "320x200", "x": -1, "y": 0, "width": 5, "height": 5})).await.unwrap();
    assert_eq!(r.status(), 422);
    let all =
        post(json!({"viewport": "320x200", "x": 0, "y": 0, "width": 320, "height": 200})).await.unwrap();
    assert_eq!(all.status(), 422, "a mask over half the page would hide most changes");
    let refused: Value = all.json().await.unwrap();
    assert_eq!(refused["error"]["field"], "width", "{refused}");
    let same =
        post(json!({"viewport": "320x200", "x": 0, "y": 0, "width": 200, "height": 150})).await.unwrap();
    assert_eq!(same.status(), 201);
    assert_eq!(same.json::<Value>().await.unwrap()["mask"]["id"], mask["id"], "drawn again: the same mask");
    let r = post(json!({"viewport": "320x200", "x": 300, "y": 180, "width": 20, "height": 20, "by": "ci"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let second: Value = r.json().await.unwrap();

    // Removed (one from the monitor's page, one through the API): the change shows again.
    let csrf = csrf_in(&page_html);
    let r = client
        .post(app.url(&format!("/monitors/home/masks/{}/remove", mask["id"].as_str().unwrap())))
        .header("cookie", &cookie)
        .urlencoded(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let url = format!("/api/monitors/home/masks/{}", second["mask"]["id"].as_str().unwrap());
    assert_eq!(app.client.delete(app.url(&url)).bearer_auth(TOKEN).send().await.unwrap().status(), 204);
    assert_eq!(app.client.delete(app.url(&url)).bearer_auth(TOKEN).send().await.unwrap().status(), 404);
    let (_, listed) = api(&app, reqwest::Method::GET, "/api/monitors/home/masks").await;
    assert_eq!(listed, json!({"masks": [], "yaml": ""}));
    site.set("home", &page("home", "rgb(0,160,0)"));
    assert_eq!(verdict_of(&app, &run_now(&app, "home").await).await["verdict"], "changed");
}
