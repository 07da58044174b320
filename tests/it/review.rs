//! The review step as a user meets it: approve, reject, revert and the changes list over the
//! API; approval from the Slack button (a signed `block_actions` payload, as Slack sends it).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil::ids::RunId;
use vigil::store::{NewRun, RunOutcome, Trigger, Verdict};
use vigil::time::Timestamp;

use crate::helpers::slack::{CHANNEL_ID, FakeSlack};
use crate::helpers::{Backend, TestApp, TestSite, wait_for};
use crate::monitoring::{TOKEN, api, config, image, page, run_now, verdict_of};

pub(crate) const SIGNING_SECRET: &str = "slack-signing-secret-for-tests";

/// Only the `home` monitor, no re-capture on a change, and Slack with a signing secret.
pub(crate) fn only_home(site: &TestSite, slack: &FakeSlack) -> String {
    let yaml =
        config(site, slack, "").replace("  threshold: 1%\n", "  threshold: 1%\n  retries_on_diff: 0\n");
    let yaml = yaml.replacen(
        "  channel: \"#visual\"\n",
        &format!("  channel: \"#visual\"\n  signing_secret: {SIGNING_SECRET}\n"),
        1,
    );
    yaml[..yaml.find("  - name: pricing").unwrap()].to_owned()
}

/// A daemon watching `home` (alerting `slack`): its first run made the baseline
/// (`first_baseline`, the file's bytes), its second saw the page turn blue (`change`).
pub(crate) struct HomeChanged {
    pub slack: FakeSlack,
    pub app: TestApp,
    pub first_baseline: Vec<u8>,
    pub change: Value,
}

pub(crate) async fn home_changed() -> HomeChanged {
    home_changed_with(|_| String::new()).await
}

/// [`home_changed`], with more monitors (`extra`'s YAML lines, given the site) in the config.
pub(crate) async fn home_changed_with(extra: impl FnOnce(&TestSite) -> String) -> HomeChanged {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &(only_home(&site, &slack) + &extra(&site))).await;
    verdict_of(&app, &run_now(&app, "home").await).await;
    let first_baseline = std::fs::read(app.dir.path().join("baselines/home/320x200.png")).unwrap();
    site.set("home", &page("home", "rgb(0,0,255)"));
    let change = verdict_of(&app, &run_now(&app, "home").await).await;
    HomeChanged { slack, app, first_baseline, change }
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = app.client.post(app.url(path)).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn review_story(backend: Backend) {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(backend, &only_home(&site, &slack)).await;
    let file = app.dir.path().join("baselines/home/320x200.png");
    let first = verdict_of(&app, &run_now(&app, "home").await).await;
    let first_png = std::fs::read(&file).unwrap();

    site.set("home", &page("home", "rgb(0,0,255)"));
    let change = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(change["verdict"], "changed");
    let id = change["id"].as_str().unwrap();
    let (_, changes) = api(&app, reqwest::Method::GET, "/api/changes").await;
    assert_eq!(changes["changes"][0]["id"], id, "{changes}");

    // Approve: the capture is the baseline file now, recorded with who approved.
    let (status, body) = post(&app, &format!("/api/runs/{id}/approve"), json!({"by": "alice"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["already_approved"].as_bool(), body["older_than_latest"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(body["run"]["verdict"], "approved");
    let current = image(&app, change["images"]["current"].as_str().unwrap()).await;
    assert_eq!(std::fs::read(&file).unwrap(), current, "baseline file rewritten");
    assert!(body["baseline"]["approved_by"].as_str().unwrap().starts_with("alice (via api token "), "{body}");
    assert_eq!(body["baseline"]["run_id"], id);
    let (_, changes) = api(&app, reqwest::Method::GET, "/api/changes").await;
    assert_eq!(changes["changes"], json!([]));
    // Twice: nothing new.
    let (status, again) = post(&app, &format!("/api/runs/{id}/approve"), json!({})).await;
    assert_eq!((status, again["already_approved"].as_bool()), (200, Some(true)), "{again}");
    assert_eq!(again["baseline"]["id"], body["baseline"]["id"]);
    // The next run matches the new baseline.
    assert_eq!(verdict_of(&app, &run_now(&app, "home").await).await["verdict"], "unchanged");

    // Undo: the first baseline is back, and the page (still blue) is a change again.
    let (status, reverted) = post(&app, "/api/baselines/home/320x200/revert", json!({})).await;
    assert_eq!(status, 200, "{reverted}");
    assert_eq!(std::fs::read(&file).unwrap(), first_png);
    assert_eq!(reverted["baseline"]["source"], "revert");
    let again = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(again["verdict"], "changed");

    // Reject: the baseline stays, the change leaves the list; twice is fine; not for non-changes.
    let again_id = again["id"].as_str().unwrap();
    let (status, rejected) = post(&app, &format!("/api/runs/{again_id}/reject"), json!({})).await;
    assert_eq!((status, rejected["run"]["verdict"].as_str()), (200, Some("rejected")), "{rejected}");
    assert_eq!(post(&app, &format!("/api/runs/{again_id}/reject"), json!({})).await.0, 200);
    let (status, refused) =
        post(&app, &format!("/api/runs/{}/reject", first["id"].as_str().unwrap()), json!({})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("not_a_change")));
    assert_eq!(std::fs::read(&file).unwrap(), first_png, "a rejection keeps the baseline");

    // Approving an older run than the latest is allowed, and said.
    site.set("home", &page("home", "rgb(0,160,0)"));
    assert_eq!(verdict_of(&app, &run_now(&app, "home").await).await["verdict"], "changed");
    let (status, older) = post(&app, &format!("/api/runs/{again_id}/approve"), json!({})).await;
    assert_eq!((status, older["older_than_latest"].as_bool()), (200, Some(true)), "{older}");
    assert!(older["message"].as_str().unwrap().contains("newer run"));

    // Unknown runs, pending nothing, no token.
    assert_eq!(post(&app, "/api/runs/run_01JXXXXXXXXXXXXXXXXXXXXXXX/approve", json!({})).await.0, 404);
    let r = app.client.post(app.url(&format!("/api/runs/{id}/approve"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (status, _) = post(&app, "/api/baselines/nope/320x200/revert", json!({})).await;
    assert_eq!(status, 409, "nothing to revert for a monitor without baselines");
}

#[tokio::test]
async fn review_story_sqlite() {
    review_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn review_story_postgres() {
    review_story(Backend::Postgres).await;
}

fn slack_signature(timestamp: i64, body: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts `payload` to `/hooks/slack` as Slack would, signed for `timestamp`.
pub(crate) async fn slack_click(app: &TestApp, payload: &Value, timestamp: i64) -> reqwest::Response {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    app.client
        .post(app.url("/hooks/slack"))
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header("x-slack-signature", slack_signature(timestamp, &body))
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_slack_button_approves_and_the_message_says_who() {
    let HomeChanged { slack, app, change, .. } = home_changed().await;
    let run_id = change["id"].as_str().unwrap().to_owned();
    let alert =
        wait_for("the alert", Duration::from_secs(30), || async { slack.posted().into_iter().next() }).await;

    // What Slack posts when the button is clicked.
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice", "name": "alice"},
        "team": {"id": "T0TEAM"},
        "api_app_id": "A0VIGIL",
        "container": {"type": "message", "channel_id": CHANNEL_ID, "message_ts": alert.ts},
        "message": {"ts": alert.ts, "text": alert.text, "blocks": alert.blocks},
        "response_url": slack.response_url(),
        "actions": [{"action_id": "vigil_approve", "block_id": "b", "value": run_id, "type": "button"}],
    });
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let send = |timestamp: i64, signature: String| {
        app.client
            .post(app.url("/hooks/slack"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", signature)
            .body(body.clone())
            .send()
    };
    let now = Timestamp::now().millis() / 1000;

    // Forged and stale: refused, nothing changes.
    let forged = send(now, slack_signature(now, "something else")).await.unwrap();
    assert_eq!(forged.status(), 401);
    let stale = send(now - 600, slack_signature(now - 600, &body)).await.unwrap();
    assert_eq!(stale.status(), 401);
    let (_, run) = api(&app, reqwest::Method::GET, &format!("/api/runs/{run_id}")).await;
    assert_eq!(run["verdict"], "changed");

    // Genuine: acknowledged at once, approved by the Slack user, the message updated.
    let started = Instant::now();
    let ok = send(now, slack_signature(now, &body)).await.unwrap();
    assert_eq!(ok.status(), 200);
    let acked_in = started.elapsed();
    let (_, run) = api(&app, reqwest::Method::GET, &format!("/api/runs/{run_id}")).await;
    assert_eq!(
        (run["verdict"].as_str(), run["reviewed_by"].as_str()),
        (Some("approved"), Some("slack:@alice (U0ALICE)")),
        "{run}"
    );
    let file = app.dir.path().join("baselines/home/320x200.png");
    assert_eq!(
        std::fs::read(file).unwrap(),
        image(&app, change["images"]["current"].as_str().unwrap()).await
    );
    let update = wait_for("the message update", Duration::from_secs(10), || async {
        slack.updates().into_iter().next()
    })
    .await;
    assert_eq!((update.0.as_str(), update.1.as_str()), (CHANNEL_ID, alert.ts.as_str()));
    assert!(update.2.contains("Approved as baseline by <@U0ALICE>"), "{}", update.2);
    let blocks = update.3.to_string();
    assert!(!blocks.contains("vigil_approve"), "the button is gone: {blocks}");
    assert!(blocks.contains("Approved as baseline by <@U0ALICE>"));

    // The same request again: a replay.
    assert_eq!(send(now, slack_signature(now, &body)).await.unwrap().status(), 401);
    assert_eq!(slack.updates().len(), 1);
    // A button whose run is gone: the user is told, in a reply only they see.
    let mut gone = payload.clone();
    gone["actions"][0]["value"] = json!("run_01JXXXXXXXXXXXXXXXXXXXXXXX");
    let r = slack_click(&app, &gone, now).await;
    assert_eq!(r.status(), 200);
    let reply =
        wait_for("the reply", Duration::from_secs(10), || async { slack.replies().into_iter().next() }).await;
    assert_eq!(reply["text"], "Could not approve: no such run");
    assert_eq!(reply["response_type"], "ephemeral");
    eprintln!("Slack approval acknowledged in {acked_in:?}");
}

#[tokio::test]
async fn the_slack_reject_button_keeps_the_baseline_and_the_message_says_who() {
    let HomeChanged { slack, app, change, .. } = home_changed().await;
    let run_id = change["id"].as_str().unwrap().to_owned();
    let alert =
        wait_for("the alert", Duration::from_secs(30), || async { slack.posted().into_iter().next() }).await;
    let file = app.dir.path().join("baselines/home/320x200.png");
    let before = std::fs::read(&file).unwrap();
    let actions = alert.blocks.to_string();
    assert!(actions.contains("vigil_approve") && actions.contains("vigil_reject"), "{actions}");
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U0BOB", "username": "bob", "name": "bob"},
        "container": {"type": "message", "channel_id": CHANNEL_ID, "message_ts": alert.ts},
        "message": {"ts": alert.ts, "text": alert.text, "blocks": alert.blocks},
        "response_url": slack.response_url(),
        "actions": [{"action_id": "vigil_reject", "block_id": "b", "value": run_id, "type": "button"}],
    });
    let now = Timestamp::now().millis() / 1000;
    let r = slack_click(&app, &payload, now).await;
    assert_eq!(r.status(), 200);
    let (_, run) = api(&app, reqwest::Method::GET, &format!("/api/runs/{run_id}")).await;
    assert_eq!(
        (run["verdict"].as_str(), run["reviewed_by"].as_str()),
        (Some("rejected"), Some("slack:@bob (U0BOB)")),
        "{run}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), before, "the baseline stays");
    let update = wait_for("the message update", Duration::from_secs(10), || async {
        slack.updates().into_iter().next()
    })
    .await;
    assert!(update.2.contains("Rejected by <@U0BOB>"), "{}", update.2);
    let blocks = update.3.to_string();
    assert!(!blocks.contains("vigil_reject") && !blocks.contains("vigil_approve"), "buttons gone: {blocks}");

    // Mute 24 h: the monitor is muted as the Slack user, who is told until when.
    let mut mute = payload.clone();
    mute["actions"][0] =
        json!({"action_id": "vigil_mute", "block_id": "b", "value": "home", "type": "button"});
    let r = slack_click(&app, &mute, now).await;
    assert_eq!(r.status(), 200);
    let reply =
        wait_for("the reply", Duration::from_secs(10), || async { slack.replies().into_iter().next() }).await;
    assert!(reply["text"].as_str().unwrap().contains("home is muted until"), "{reply}");
    let (_, home) = api(&app, reqwest::Method::GET, "/api/monitors/home").await;
    assert_eq!(home["muted_by"], "slack:@bob (U0BOB)", "{home}");
    let until = home["muted_until"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let hours = (until - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{home}");
}

/// Bulk approval of 100 pending changes through the API (the figure goes in the docs).
#[tokio::test]
async fn bulk_approval_of_100_changes() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &only_home(&site, &slack)).await;
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let blobs = vigil::store::blobs::FileBlobs::new(&app.data_dir());
    let start = Timestamp::now().minus(Duration::from_secs(3600));
    let mut ids = Vec::new();
    for i in 0..100u64 {
        let at = start.plus(Duration::from_secs(i));
        let run = store
            .insert_run(&NewRun {
                id: RunId::new(),
                monitor: "home".parse().unwrap(),
                viewport: "320x200".into(),
                scheduled_for: at,
                trigger: Trigger::Schedule,
                now: at,
            })
            .await
            .unwrap()
            .unwrap();
        let sha = blobs.put(format!("capture {i}").as_bytes()).unwrap();
        let outcome =
            RunOutcome { verdict: Some(Verdict::Changed), current_sha256: Some(sha), ..Default::default() };
        store.complete_run(&run.id, &outcome, at).await.unwrap();
        ids.push(run.id.to_string());
    }
    let (_, changes) = api(&app, reqwest::Method::GET, "/api/changes?limit=500").await;
    assert_eq!(changes["changes"].as_array().unwrap().len(), 100);
    let started = Instant::now();
    let (status, body) = post(&app, "/api/runs/approve", json!({"run_ids": ids})).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["approved"].as_array().unwrap().len(), 100, "{body}");
    assert_eq!(body["errors"], json!([]));
    let (_, changes) = api(&app, reqwest::Method::GET, "/api/changes").await;
    assert_eq!(changes["changes"], json!([]));
    // The last one approved is the baseline.
    let file = std::fs::read(app.dir.path().join("baselines/home/320x200.png")).unwrap();
    assert_eq!(file, b"capture 99");
    eprintln!("bulk approval of 100 changes: {took:?}");
}

/// Runs the binary with `args` (and the app's config) while a write lock is held on its SQLite
/// database, until the command says the database is busy (however long it took to start); then
/// the lock is released. Its exit code, stdout and stderr.
async fn under_write_lock(app: &TestApp, args: &[&str]) -> (Option<i32>, String, String) {
    let mut locker = {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect(&app.db.url).await.unwrap()
    };
    sqlx::Executor::execute(&mut locker, "BEGIN IMMEDIATE").await.unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .arg("--config")
        .arg(app.config_file.as_ref().unwrap())
        .env("USER", "carol")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        use std::io::Read;
        let (mut pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    wait_for("the command to report the busy database", Duration::from_secs(60), || async {
        stderr.lock().unwrap().contains("the database is busy").then_some(())
    })
    .await;
    sqlx::Executor::execute(&mut locker, "COMMIT").await.unwrap();
    let done = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    reader.join().unwrap();
    let err = stderr.lock().unwrap().clone();
    (done.status.code(), String::from_utf8(done.stdout).unwrap(), err)
}

/// `vigil status` and `vigil approve MONITOR`, the binary run next to the daemon.
#[tokio::test]
async fn approve_and_status_from_the_command_line() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn_watching(Backend::Sqlite, &only_home(&site, &slack)).await;
    verdict_of(&app, &run_now(&app, "home").await).await;
    site.set("home", &page("home", "rgb(0,0,255)"));
    let change = verdict_of(&app, &run_now(&app, "home").await).await;
    let file = app.config_file.clone().unwrap();
    let vigil = move |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(args)
            .arg("--config")
            .arg(&file)
            .env("USER", "carol")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (code, out, err) = vigil(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    let row = out.lines().find(|l| l.starts_with("home")).unwrap();
    assert!(
        row.contains("320x200") && row.contains("changed") && row.contains("7.81%") && row.ends_with('1'),
        "{out}"
    );
    assert!(out.contains("1 change awaiting review"), "{out}");

    // The daemon's write lock held past SQLite's 5 s busy timeout (a loaded machine): the
    // command says the database is busy and tries again instead of failing.
    let (code, out, err) = under_write_lock(&app, &["approve", "home"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("the database is busy"), "{err}");
    assert!(
        out.contains(&format!("home 320x200 approved as baseline from {}", change["id"].as_str().unwrap())),
        "{out}"
    );
    let baseline = std::fs::read(app.dir.path().join("baselines/home/320x200.png")).unwrap();
    assert_eq!(baseline, image(&app, change["images"]["current"].as_str().unwrap()).await);
    let (_, run) =
        api(&app, reqwest::Method::GET, &format!("/api/runs/{}", change["id"].as_str().unwrap())).await;
    assert_eq!(run["reviewed_by"], "cli:carol");

    let (_, out, _) = vigil(&["status"]);
    assert!(out.contains("0 changes awaiting review"), "{out}");
    let (code, _, err) = vigil(&["approve", "home"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no change awaiting review"), "{err}");
    let (code, _, err) = vigil(&["approve", "run_01JXXXXXXXXXXXXXXXXXXXXXXX"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no such run"), "{err}");
    // `--config` after the subcommand's own subcommand, as every other command takes it.
    let (code, out, err) = vigil(&["deliveries", "list"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = vigil(&["approve", "nope"]);
    assert_eq!((code, err.trim()), (Some(1), "error: no monitor nope in the config"));
    // Muting waits out a busy database too (it failed with a bare "database error").
    let (code, out, err) = under_write_lock(&app, &["mute", "home", "2h"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("home: the database is busy") && out.contains("home: muted until"), "{out}{err}");

    // Mute from the shell: the API shows it; off ends it; nonsense is refused.
    let (code, out, err) = vigil(&["mute", "home", "2h"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("home: muted until"), "{out}");
    let (_, home) = api(&app, reqwest::Method::GET, "/api/monitors/home").await;
    assert_eq!(home["muted_by"], "cli:carol", "{home}");
    let (code, _, err) = vigil(&["mute", "home", "forever"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("expected a duration"), "{err}");
    assert_eq!(vigil(&["mute", "nope", "2h"]).0, Some(1));
    let (code, out, _) = vigil(&["mute", "home", "off"]);
    assert_eq!((code, out.trim()), (Some(0), "home: unmuted; alerts are sent again"));
    let (_, home) = api(&app, reqwest::Method::GET, "/api/monitors/home").await;
    assert_eq!(home["muted_until"], Value::Null, "{home}");
}
