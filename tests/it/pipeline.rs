//! From capture to verdict: a monitor's capture comes back through vigil's own signed webhook,
//! is stored and compared with the approved baseline.

use std::time::Duration;

use serde_json::Value;
use vigil::ids::{JobId, RunId};
use vigil::store::{Run, Store, Trigger, Verdict};

use crate::helpers::{Backend, TestApp, TestSite, wait_for};

const TOKEN: &str = "test-token-0123456789";
const RED: &str = "<html><body style='margin:0;background:#fff'><div style='width:100px;height:50px;background:rgb(255,0,0)'></div></body></html>";
const BLUE: &str = "<html><body style='margin:0;background:#fff'><div style='width:100px;height:50px;background:rgb(0,0,255)'></div></body></html>";

/// Starts a run of `monitor` now through the API: the monitor role writes the run row and
/// submits the capture to the capture API with its own token, vigil's own receiver as the
/// webhook. (A client may not name that receiver: issue 12.)
async fn start_run(app: &TestApp, monitor: &vigil::config::Monitor) -> RunId {
    let r = app
        .client
        .post(app.url(&format!("/api/monitors/{}/runs", monitor.name)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    body["run_ids"][0].as_str().unwrap().parse().unwrap()
}

async fn verdict(store: &dyn Store, id: &RunId) -> Run {
    wait_for("the run's verdict", Duration::from_secs(60), || async {
        store.get_run(id).await.ok().flatten().filter(|r| r.verdict.is_some())
    })
    .await
}

#[tokio::test]
async fn captures_are_judged_against_the_baseline() {
    let site = TestSite::start().await;
    site.set("home", RED);
    let yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\ncapture:\n  workers: 1\n  stability_timeout: 1s\n  allow_private: [\"127.0.0.1/32\"]\n\
         monitors:\n  - name: home\n    url: {}\n    viewports: [320x200]\n    full_page: false\n    wait_until: load\n    threshold: 1%\n\
         \x20 - name: broken\n    url: {}\n    viewports: [320x200]\n    selector: \"#nope\"\n",
        site.url("home"),
        site.url("home")
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let config = vigil::config::parse(&yaml, "t.yaml", &|_| None).unwrap();
    let (home, broken) = (&config.monitors[0], &config.monitors[1]);
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let baseline_file = app.dir.path().join("baselines/home/320x200.png");

    // First capture: it becomes the baseline, as a plain file too.
    let first = verdict(&*store, &start_run(&app, home).await).await;
    assert_eq!(first.verdict, Some(Verdict::BaselineCreated));
    let file = std::fs::read(&baseline_file).expect("baseline file written");
    assert_eq!(vigil::store::blobs::sha256_hex(&file), first.current_sha256.clone().unwrap());

    // The page changes: over the 1 % threshold, with the diff stored and regions reported.
    site.set("home", BLUE);
    let changed = verdict(&*store, &start_run(&app, home).await).await;
    assert_eq!(changed.verdict, Some(Verdict::Changed), "{changed:?}");
    assert_eq!(changed.diff_pixels, Some(5000), "the 100x50 box changed colour");
    assert_eq!(changed.total_pixels, Some(64_000));
    let regions: Value = serde_json::from_str(changed.regions.as_deref().unwrap()).unwrap();
    assert_eq!(regions, serde_json::json!([{"x": 0, "y": 0, "width": 100, "height": 50}]));
    let blobs = vigil::store::blobs::FileBlobs::new(&app.data_dir());
    let diff = blobs.get(changed.diff_sha256.as_deref().unwrap()).expect("diff image stored");
    assert!(diff.starts_with(b"\x89PNG"));
    assert_eq!(std::fs::read(&baseline_file).unwrap(), file, "a change does not touch the baseline");

    // Back to the approved look: unchanged.
    site.set("home", RED);
    let same = verdict(&*store, &start_run(&app, home).await).await;
    assert_eq!((same.verdict, same.diff_pixels), (Some(Verdict::Unchanged), Some(0)));

    // A capture that fails gives a failed verdict with the reason.
    let failed = verdict(&*store, &start_run(&app, broken).await).await;
    assert_eq!(failed.verdict, Some(Verdict::Failed));
    assert!(failed.error.as_deref().unwrap().contains("selector_not_found"), "{failed:?}");
    // Every received webhook was processed.
    wait_for("all webhooks processed", Duration::from_secs(10), || async {
        store.unprocessed_webhooks(10, vigil::time::Timestamp::now()).await.ok().filter(|w| w.is_empty())
    })
    .await;
}

#[tokio::test]
async fn monitors_run_on_their_schedule() {
    let site = TestSite::start().await;
    site.set("home", RED);
    let yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\ncapture:\n  workers: 1\n  stability_timeout: 1s\n  allow_private: [\"127.0.0.1/32\"]\n\
         monitors:\n  - name: home\n    url: {url}\n    schedule: \"*/2 * * * * *\"\n    viewports: [320x200]\n    full_page: false\n    wait_until: load\n\
         \x20 - name: off\n    url: {url}\n    schedule: \"* * * * * *\"\n    enabled: false\n",
        url = site.url("home")
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let home: vigil::config::MonitorName = "home".parse().unwrap();
    // (A tick that comes while the first capture, which starts the browser, is still running is
    // skipped as `previous_run_pending`: on a loaded machine that can take more than 2 s.)
    let runs = wait_for("a baseline and an unchanged scheduled run", Duration::from_secs(60), || async {
        let runs = store.list_runs(&home, None, 20).await.ok()?;
        let judged: Vec<Run> = runs.into_iter().filter(|r| r.verdict.is_some()).collect();
        judged.iter().any(|r| r.verdict == Some(Verdict::Unchanged)).then_some(judged)
    })
    .await;
    // Newest first: the oldest became the baseline, a later one matched it.
    let oldest = runs.last().unwrap();
    assert_eq!(oldest.verdict, Some(Verdict::BaselineCreated));
    assert!(runs.iter().rev().skip(1).any(|r| r.verdict == Some(Verdict::Unchanged)), "{runs:#?}");
    assert!(runs.iter().all(|r| r.trigger == Trigger::Schedule && r.viewport == "320x200"));
    let mut ticks: Vec<_> = runs.iter().map(|r| r.scheduled_for).collect();
    ticks.dedup();
    assert_eq!(ticks.len(), runs.len(), "one run per tick");
    assert!(ticks.iter().all(|t| t.millis() % 2000 == 0), "on the even seconds: {ticks:?}");
    let off: vigil::config::MonitorName = "off".parse().unwrap();
    assert!(store.list_runs(&off, None, 10).await.unwrap().is_empty(), "disabled monitors do not run");
}

/// A capture API that takes every job and never finishes one: `GET` answers "running" for ever.
async fn capture_api_that_never_finishes() -> String {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/v1/capture",
            post(|| async {
                let job = JobId::new();
                (
                    axum::http::StatusCode::ACCEPTED,
                    axum::Json(serde_json::json!({"job_id": job, "status": "queued"})),
                )
            }),
        )
        .route(
            "/v1/capture/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
                axum::Json(serde_json::json!({"job_id": id, "status": "running"}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Nothing stays pending for ever: a run whose capture never finishes is failed at
/// `capture.run_deadline` with `run_deadline_exceeded`, its failure alert is sent once, and the
/// monitor takes runs again.
#[tokio::test]
async fn a_run_that_never_finishes_is_failed_at_its_deadline_and_alerted_once() {
    let slack = crate::helpers::slack::FakeSlack::start().await;
    let provider = capture_api_that_never_finishes().await;
    let yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  provider: {{url: \"{provider}\", api_key: provider-key}}\n  job_timeout: 5s\n  max_attempts: 1\n  reconcile_after: 1s\n  run_deadline: 10s\n\
         slack:\n  bot_token: {}\n  channel: {}\n  api_url: {}/\n\
         monitors:\n  - name: home\n    url: https://example.com/\n    schedule: \"0 0 1 1 *\"\n    viewports: [320x200]\n",
        crate::helpers::slack::BOT_TOKEN,
        crate::helpers::slack::CHANNEL_ID,
        slack.api_url,
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let started = std::time::Instant::now();
    let (status, body) = crate::monitoring::api(&app, reqwest::Method::POST, "/api/monitors/home/runs").await;
    assert_eq!(status, 202, "{body}");
    let run = body["run_ids"][0].as_str().unwrap().to_owned();
    let (status, _) = crate::monitoring::api(&app, reqwest::Method::POST, "/api/monitors/home/runs").await;
    assert_eq!(status, 409, "pending until its deadline");
    let failed = wait_for("the run failed at its deadline", Duration::from_secs(60), || async {
        let (_, v) = crate::monitoring::api(&app, reqwest::Method::GET, &format!("/api/runs/{run}")).await;
        (v["status"] == "done").then_some(v)
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(10), "not before the deadline");
    assert_eq!(failed["verdict"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "run_deadline_exceeded", "{failed}");
    wait_for("the failure alert", Duration::from_secs(30), || async {
        (slack.posted().len() == 1).then_some(())
    })
    .await;
    assert!(slack.posted()[0].text.contains("home"), "{:?}", slack.posted()[0].text);
    let (status, body) = crate::monitoring::api(&app, reqwest::Method::POST, "/api/monitors/home/runs").await;
    assert_eq!(status, 202, "the monitor runs again: {body}");
    assert_eq!(slack.posted().len(), 1, "one alert");
}
