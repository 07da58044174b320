//! Roles (`vigil run --roles …`) and capture providers: one vigil's monitors captured by the
//! capture API of another process — a vigil running only the capture role — over HTTP, with
//! the completion webhooks signed by the shared secret. And the refusals at start: a monitor role
//! with no capture API to call, a capture role with no Chromium.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::slack::FakeSlack;
use crate::helpers::{Backend, TestApp, TestSite, wait_for};
use crate::monitoring::{config, page, run_now, verdict_of};

const SHARED_SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const PROVIDER_KEY: &str = "provider-key-0123456789";

/// A second vigil as a capture provider: a capture API with workers and no monitors, signing
/// with the shared secret; the pages and the callback are on loopback, which it must be allowed
/// to reach. `extra_webhook` goes into its `webhook:` section.
async fn spawn_provider(extra_webhook: &str) -> TestApp {
    spawn_provider_with(extra_webhook, None).await
}

async fn spawn_provider_with(extra_webhook: &str, roles: Option<&str>) -> TestApp {
    let yaml = format!(
        "auth:\n  api_tokens: [\"{PROVIDER_KEY}\"]\ncapture:\n  workers: 1\n  stability_timeout: 1s\n  allow_private: [127.0.0.0/8]\n\
         webhook:\n  secret: \"{SHARED_SECRET}\"\n{extra_webhook}"
    );
    match roles {
        Some(roles) => TestApp::spawn_with_roles(Backend::Sqlite, &yaml, roles).await,
        None => TestApp::spawn(Backend::Sqlite, &yaml).await,
    }
}

/// The story's config, captured by `provider` (plus `extra_capture`), verifying its webhooks.
fn config_using(provider: &TestApp, site: &TestSite, slack: &FakeSlack, extra_capture: &str) -> String {
    let capture = format!(
        "  provider: {{url: \"{}/\", api_key: \"{PROVIDER_KEY}\"}}\n{extra_capture}",
        provider.base_url
    );
    config(site, slack, &capture).replacen(
        "slack:",
        &format!("webhook:\n  secret: \"{SHARED_SECRET}\"\nslack:"),
        1,
    )
}

/// `capture.provider`: the monitors of one vigil are captured by another vigil's capture API,
/// which signs its webhooks with the shared `webhook.secret`.
#[tokio::test]
async fn an_external_capture_provider_captures_the_monitors() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let provider = spawn_provider("").await;
    let yaml = config_using(&provider, &site, &slack, "");
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let run = run_now(&app, "home").await;
    assert_eq!(verdict_of(&app, &run).await["verdict"], "baseline_created");
    // The capture happened at the provider: its job, its asset.
    let store = vigil::store::connect_for_inspection(&provider.db.url, 1).await.unwrap();
    let jobs = store.count_jobs().await.unwrap();
    assert_eq!(jobs, [(vigil::store::JobStatus::Completed, 1)], "{jobs:?}");
    site.set("home", &page("home", "rgb(0,0,255)"));
    let run = run_now(&app, "home").await;
    assert_eq!(verdict_of(&app, &run).await["verdict"], "changed");
}

/// The daemon dies (`kill -9` as far as it can tell: its task is aborted) after submitting a
/// capture; the capture completes while it is down. After the restart the run is judged once
/// and alerted once.
#[tokio::test]
async fn a_capture_that_completes_while_the_daemon_is_down_is_judged_once_after_restart() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let provider = spawn_provider("  retry_schedule: [0s, 1s]\n").await;
    let yaml = config_using(&provider, &site, &slack, "  reconcile_after: 1s\n")
        .replace("  threshold: 1%\n", "  threshold: 1%\n  retries_on_diff: 0\n");
    let yaml = &yaml[..yaml.find("  - name: pricing").unwrap()];
    let app = TestApp::spawn(Backend::Sqlite, yaml).await;
    assert_eq!(verdict_of(&app, &run_now(&app, "home").await).await["verdict"], "baseline_created");

    site.set("home", &page("home", "rgb(0,0,255)"));
    let run = run_now(&app, "home").await;
    let (db, dir) = app.kill().await;
    let provider_store = vigil::store::connect_for_inspection(&provider.db.url, 1).await.unwrap();
    wait_for("the capture to complete at the provider", Duration::from_secs(60), || async {
        let jobs = provider_store.count_jobs().await.ok()?;
        jobs.contains(&(vigil::store::JobStatus::Completed, 2)).then_some(())
    })
    .await;

    // Back up (on another port: the webhook the provider keeps sending goes nowhere, so the
    // reconciler has to find the result).
    let app = TestApp::spawn_on(db, dir, yaml).await;
    let v = verdict_of(&app, &run).await;
    assert_eq!(v["verdict"], "changed", "{v}");
    wait_for("the alert", Duration::from_secs(30), || async { (slack.posted().len() == 1).then_some(()) })
        .await;
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let alerts = store.alerts_for_run(&run.parse().unwrap()).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    // Judged once: the run's verdict is final, and its webhook (stored by the reconciler) is
    // processed exactly once.
    wait_for("everything processed", Duration::from_secs(30), || async {
        store.unprocessed_webhooks(10, vigil::time::Timestamp::now()).await.ok().filter(|w| w.is_empty())
    })
    .await;
    assert_eq!(slack.posted().len(), 1);
}

/// The capture API cannot be reached: the run fails (not pending forever) and the failure
/// alerts, like any failed capture.
#[tokio::test]
async fn a_capture_api_that_cannot_be_reached_fails_the_run_and_alerts() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let yaml =
        config(&site, &slack, "  provider: {url: \"http://127.0.0.1:9/\", api_key: unused-key-0123456789}\n");
    let yaml = &yaml[..yaml.find("  - name: pricing").unwrap()];
    let app = TestApp::spawn(Backend::Sqlite, yaml).await;
    let v = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(v["verdict"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "submit_failed", "{v}");
    let alert = wait_for("the failure alert", Duration::from_secs(30), || async {
        slack.posted().into_iter().next()
    })
    .await;
    assert!(alert.text.starts_with("home (320x200) cannot be captured"), "{}", alert.text);
}

/// `--roles capture` on one process, `--roles monitor,api` on another: each serves only its
/// own routes, and together they monitor as one daemon does.
#[tokio::test]
async fn a_capture_role_and_a_monitor_role_in_two_processes() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    // Its own `monitors:` are not the monitoring's: a capture-only process records none.
    let provider = spawn_provider_with(
        "monitors:\n  - name: elsewhere\n    url: http://127.0.0.1:9/\n",
        Some("capture"),
    )
    .await;
    let yaml = config_using(&provider, &site, &slack, "");
    let app = TestApp::spawn_with_roles(Backend::Sqlite, &yaml, "monitor,api").await;

    let status = |app: &TestApp, method: reqwest::Method, path: &str| {
        let request = app.client.request(method, app.url(path)).bearer_auth(PROVIDER_KEY);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    use reqwest::Method;
    // The capture process: the capture API, health and metrics; nothing else.
    assert_eq!(status(&provider, Method::GET, "/openapi.json").await, 200);
    assert_eq!(status(&provider, Method::GET, "/metrics").await, 200);
    assert_eq!(status(&provider, Method::GET, "/api/monitors").await, 404, "no api role");
    assert_eq!(status(&provider, Method::GET, "/login").await, 404, "no ui role");
    assert_eq!(status(&provider, Method::POST, "/hooks/capture").await, 404, "no monitor role");
    // The monitor process: the receiver and the API; no capture API, no UI.
    assert_eq!(status(&app, Method::POST, "/v1/capture").await, 404, "no capture role");
    assert_eq!(status(&app, Method::GET, "/login").await, 404, "no ui role");
    assert_eq!(status(&app, Method::POST, "/hooks/capture").await, 401, "the receiver wants a signature");

    let run = run_now(&app, "home").await;
    assert_eq!(verdict_of(&app, &run).await["verdict"], "baseline_created");
    site.set("home", &page("home", "rgb(0,0,255)"));
    let run = run_now(&app, "home").await;
    assert_eq!(verdict_of(&app, &run).await["verdict"], "changed");
    wait_for("the alert", Duration::from_secs(30), || async { (!slack.posted().is_empty()).then_some(()) })
        .await;
    let store = vigil::store::connect_for_inspection(&provider.db.url, 1).await.unwrap();
    assert!(store.list_monitors().await.unwrap().is_empty(), "a capture-only process records no monitors");
    let jobs = store.count_jobs().await.unwrap();
    // The first capture, the change, and its second look (`retries_on_diff: 1`, the default).
    assert_eq!(jobs, [(vigil::store::JobStatus::Completed, 3)], "captured by the capture process: {jobs:?}");
}

/// Runs the real binary on `yaml` with `args`, with PATH set to `path`; its exit code and stderr.
fn refused_at_start(yaml: &str, args: &[&str], path: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("monitors.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--config"])
        .arg(&config)
        .args(args)
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("CHROME_PATH")
        .env_remove("VIGIL_ROLES")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

const LOOPBACK_ONLY: &str = "server:\n  listen: 127.0.0.1:0\nmonitors: []\n";

#[test]
fn without_chromium_the_capture_role_refuses_to_start_in_one_line() {
    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = refused_at_start(LOOPBACK_ONLY, &[], &empty.path().display().to_string());
    assert_eq!(code, Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("no Chromium found") && errors[0].contains("apt-get install chromium"),
        "{stderr}"
    );
    // Without the capture role, Chromium is not needed.
    let (code, stderr) =
        refused_at_start(LOOPBACK_ONLY, &["--roles", "monitor"], &empty.path().display().to_string());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("Chromium"), "{stderr}");
}

/// A database that cannot be opened stops the start with one line that names it and says why
/// once, and no "listening" before it; a SQLite file in a directory not made yet is made.
#[test]
fn a_database_that_cannot_be_opened_is_named_and_a_missing_directory_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![b'x'; 8192]).unwrap();
    let yaml = format!("storage:\n  database_url: \"sqlite://{}\"\n{LOOPBACK_ONLY}", corrupt.display());
    let (code, stderr) = refused_at_start(&yaml, &[], "/usr/bin:/bin");
    assert_eq!(code, Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let error = errors[0];
    assert!(
        error.starts_with(&format!("error: cannot open the database {}: ", corrupt.display())),
        "{stderr}"
    );
    assert_eq!(error.matches("file is not a database").count(), 1, "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");

    let file = dir.path().join("not/yet/made/vigil.db");
    let yaml = format!("storage:\n  database_url: \"sqlite://{}\"\n{LOOPBACK_ONLY}", file.display());
    let config = dir.path().join("made.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--once", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(file.exists(), "{stderr}");
}

#[test]
fn the_monitor_role_alone_needs_a_capture_api() {
    let (code, stderr) = refused_at_start(LOOPBACK_ONLY, &["--roles", "monitor"], "/usr/bin:/bin");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("capture.provider"), "{stderr}");
    let (code, stderr) = refused_at_start(LOOPBACK_ONLY, &["--roles", "monitor,scheduler"], "/usr/bin:/bin");
    assert_eq!(code, Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("unknown role \"scheduler\""), "{stderr}");
}

/// A capture result whose link is dead (here 404; in life, expired while vigil was down) is not
/// the end: the processor asks the capture API for the job again (`GET /v1/capture/{id}` signs
/// a fresh link), fetches that one and judges the run. The provider's own webhooks cannot get
/// through here (another secret), so only the forged result with the dead link arrives.
#[tokio::test]
async fn a_dead_capture_link_is_refreshed_through_the_capture_api() {
    const OWN_SECRET: &str = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCB5b3Ugd2FudA==";
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let provider = spawn_provider("").await;
    let capture = format!("  provider: {{url: \"{}/\", api_key: \"{PROVIDER_KEY}\"}}\n", provider.base_url);
    let yaml = config(&site, &slack, &capture).replacen(
        "slack:",
        &format!("webhook:\n  secret: \"{OWN_SECRET}\"\nslack:"),
        1,
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let run = run_now(&app, "home").await;
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let job = wait_for("the run's job", Duration::from_secs(20), || async {
        store.get_run(&run.parse().unwrap()).await.unwrap().unwrap().job_id
    })
    .await;
    assert_eq!(provider.capture_finished(PROVIDER_KEY, job.as_str()).await["status"], "completed");
    let body = serde_json::json!({"type": "capture.completed", "job_id": job, "status": "completed",
                                  "asset_url": site.url("missing"), "metadata": {"run_id": run}})
    .to_string();
    let ts = vigil::time::Timestamp::now().millis() / 1000;
    let sig = standardwebhooks::Webhook::new(OWN_SECRET)
        .unwrap()
        .sign("msg_dead_link", ts, body.as_bytes())
        .unwrap();
    let r = app
        .client
        .post(app.url("/hooks/capture"))
        .header("webhook-id", "msg_dead_link")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let v = verdict_of(&app, &run).await;
    assert_eq!(v["verdict"], "baseline_created", "{v}");
    assert_eq!(site.hits("missing"), 1, "the dead link was tried once");
}
