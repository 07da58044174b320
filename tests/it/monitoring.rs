//! The product as a user meets it: monitors from YAML, "run now" over the API, real Chromium,
//! every capture back through the signed webhook, a verdict per run, and the Slack alert (against
//! a fake Slack API on loopback) with the three images in its thread.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil::ids::{JobId, RunId};
use vigil::store::{NewRun, Trigger};
use vigil::time::Timestamp;

use crate::helpers::slack::{BOT_TOKEN, CHANNEL_ID, FakeSlack};
use crate::helpers::{Backend, TestApp, TestSite, wait_for};

pub(crate) const TOKEN: &str = "test-token-0123456789";
const PAGE: &str = "<html><body style='margin:0;background:#fff'><h1 style='margin:0;font:20px sans-serif'>{}</h1>\
                    <div style='width:100px;height:50px;background:{}'></div></body></html>";

pub(crate) fn page(title: &str, colour: &str) -> String {
    PAGE.replacen("{}", title, 1).replacen("{}", colour, 1)
}

pub(crate) fn config(site: &TestSite, slack: &FakeSlack, extra_capture: &str) -> String {
    let mut yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 2\n  stability_timeout: 1s\n  allow_private: [\"127.0.0.1/32\"]\n{extra_capture}\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  api_url: {}/\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [320x200]\n  full_page: false\n  wait_until: load\n  threshold: 1%\n\
         monitors:\n",
        slack.api_url
    );
    for name in ["home", "pricing", "about"] {
        yaml.push_str(&format!("  - name: {name}\n    url: {}\n", site.url(name)));
    }
    yaml
}

pub(crate) async fn api(app: &TestApp, method: reqwest::Method, path: &str) -> (u16, Value) {
    let r = app.client.request(method, app.url(path)).bearer_auth(TOKEN).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Run now → the run ids (one viewport each here).
pub(crate) async fn run_now(app: &TestApp, monitor: &str) -> String {
    let (status, body) = api(app, reqwest::Method::POST, &format!("/api/monitors/{monitor}/runs")).await;
    assert_eq!(status, 202, "{body}");
    body["run_ids"][0].as_str().unwrap().to_owned()
}

pub(crate) async fn verdict_of(app: &TestApp, run: &str) -> Value {
    wait_for(&format!("a verdict for {run}"), Duration::from_secs(90), || async {
        let (_, body) = api(app, reqwest::Method::GET, &format!("/api/runs/{run}")).await;
        (!body["verdict"].is_null()).then_some(body)
    })
    .await
}

pub(crate) async fn image(app: &TestApp, url: &str) -> Vec<u8> {
    let r = app.client.get(app.url(url)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(r.headers()["content-type"], "image/png");
    r.bytes().await.unwrap().to_vec()
}

async fn story(backend: Backend) {
    let site = TestSite::start().await;
    for name in ["home", "pricing", "about"] {
        site.set(name, &page(name, "rgb(255,0,0)"));
    }
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(backend, &config(&site, &slack, "")).await;
    let cycle = Instant::now();

    // Run now: three baselines, written as files, and no alert.
    let mut first = Vec::new();
    for name in ["home", "pricing", "about"] {
        first.push((name, run_now(&app, name).await));
    }
    for (name, run) in &first {
        let v = verdict_of(&app, run).await;
        assert_eq!(v["verdict"], "baseline_created", "{v}");
        assert_eq!(v["monitor"], *name);
        let file = app.dir.path().join(format!("baselines/{name}/320x200.png"));
        assert_eq!(
            std::fs::read(&file).expect("baseline file"),
            image(&app, v["images"]["current"].as_str().unwrap()).await
        );
    }
    let first_cycle = cycle.elapsed();

    // One page changes: exactly that monitor changes, with one Slack message and three uploads.
    site.set("pricing", &page("pricing", "rgb(0,0,255)"));
    let cycle = Instant::now();
    let mut second = Vec::new();
    for name in ["home", "pricing", "about"] {
        second.push((name, run_now(&app, name).await));
    }
    let mut changed = Value::Null;
    for (name, run) in &second {
        let v = verdict_of(&app, run).await;
        if *name == "pricing" {
            assert_eq!(v["verdict"], "changed", "{v}");
            assert_eq!(v["diff_pixels"], 5000, "the 100x50 box changed colour: {v}");
            assert_eq!(v["diff_ratio"], json!(5000.0 / 64000.0));
            let regions = v["regions"].as_array().unwrap();
            assert_eq!(regions.len(), 1, "one changed region: {v}");
            assert_eq!((&regions[0]["width"], &regions[0]["height"]), (&json!(100), &json!(50)));
            changed = v;
        } else {
            assert_eq!(v["verdict"], "unchanged", "{v}");
        }
    }
    let second_cycle = cycle.elapsed();
    let shared = wait_for("three images in the alert's thread", Duration::from_secs(30), || async {
        let s = slack.shared();
        (s.len() >= 3).then_some(s)
    })
    .await;
    let posted = slack.posted();
    assert_eq!(posted.len(), 1, "one message: {posted:#?}");
    let message = &posted[0];
    assert_eq!(message.channel, "#visual");
    assert!(message.text.starts_with("pricing changed (320x200): 7.81%"), "{}", message.text);
    let blocks = message.blocks.to_string();
    assert!(blocks.contains(&site.url("pricing")), "{blocks}");
    assert!(blocks.contains(&format!("/runs/{}", changed["id"].as_str().unwrap())), "review link: {blocks}");
    let approve = message.blocks.as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap();
    assert_eq!(approve["elements"][0]["value"], changed["id"]);
    assert_eq!(shared.len(), 3);
    for (file, kind) in shared.iter().zip(["baseline", "current", "diff"]) {
        assert_eq!((file.channel_id.as_str(), file.thread_ts.as_str()), (CHANNEL_ID, message.ts.as_str()));
        assert_eq!(file.filename, format!("pricing-320x200-{kind}.png"));
        assert_eq!(file.title, format!("pricing 320x200 — {kind}"));
        assert_eq!(
            file.bytes.to_vec(),
            image(&app, changed["images"][kind].as_str().unwrap()).await,
            "{kind}"
        );
    }

    // The changed run's webhook delivered again, three times at once: processed once. A forged
    // and a six-minute-old signature: 401. None of it changes anything.
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let changed_run =
        store.get_run(&changed["id"].as_str().unwrap().parse().unwrap()).await.unwrap().unwrap();
    let delivery = store
        .list_deliveries(vigil::store::OutboxStatus::Sent, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|d| changed_run.job_id.as_ref().is_some_and(|j| d.subject == j.as_str()))
        .expect("the changed run's webhook was delivered");
    let secret = std::fs::read_to_string(app.data_dir().join("webhook-secret")).unwrap();
    let signer = standardwebhooks::Webhook::new(secret.trim()).unwrap();
    let post = |id: String, ts: i64, signature: String| {
        app.client
            .post(app.url("/hooks/capture"))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
    };
    let now = Timestamp::now().millis() / 1000;
    let id = delivery.id.to_string();
    let signature = signer.sign(&id, now, delivery.payload.as_bytes()).unwrap();
    let replays =
        futures_util::future::join_all((0..3).map(|_| post(id.clone(), now, signature.clone()))).await;
    assert!(replays.iter().all(|r| r.as_ref().unwrap().status() == 204), "{replays:?}");
    let forged = post("msg_forged".into(), now, "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into())
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let old = now - 6 * 60;
    let stale =
        post("msg_stale".into(), old, signer.sign("msg_stale", old, delivery.payload.as_bytes()).unwrap());
    assert_eq!(stale.await.unwrap().status(), 401);
    assert!(store.get_received_webhook("msg_forged").await.unwrap().is_none());
    assert!(store.get_received_webhook("msg_stale").await.unwrap().is_none());
    let again = store.get_run(&changed_run.id).await.unwrap().unwrap();
    assert_eq!((again.verdict, again.completed_at), (changed_run.verdict, changed_run.completed_at));
    assert_eq!(store.alerts_for_run(&changed_run.id).await.unwrap().len(), 1);

    // Slack rate-limits the next alert: it is sent once, after Retry-After.
    slack.script(&[(429, Some(1))]);
    site.set("pricing", &page("pricing", "rgb(0,160,0)"));
    let run = run_now(&app, "pricing").await;
    assert_eq!(verdict_of(&app, &run).await["verdict"], "changed");
    wait_for("the rate-limited alert", Duration::from_secs(30), || async {
        (slack.posted().len() == 2).then_some(())
    })
    .await;
    assert_eq!(slack.failed_calls("chat.postMessage"), 1, "429 answered once");
    wait_for("its images", Duration::from_secs(30), || async { (slack.shared().len() == 6).then_some(()) })
        .await;

    // Nothing more: no alert for the unchanged runs, none twice.
    let (_, monitors) = api(&app, reqwest::Method::GET, "/api/monitors").await;
    let latest: Vec<(String, String)> = monitors["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (m["name"].as_str().unwrap().to_owned(), m["latest"][0]["verdict"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        latest,
        [
            ("home".into(), "unchanged".into()),
            ("pricing".into(), "changed".into()),
            ("about".into(), "unchanged".into())
        ]
    );
    let (_, pricing) = api(&app, reqwest::Method::GET, "/api/monitors/pricing").await;
    assert_eq!(pricing["runs"].as_array().unwrap().len(), 3, "{pricing}");
    assert_eq!(slack.posted().len(), 2);
    assert!(slack.refused().is_empty(), "requests Slack would refuse: {:?}", slack.refused());
    let expected = [
        "vigil_runs_judged_total{verdict=\"baseline_created\"} 3",
        "vigil_runs_judged_total{verdict=\"changed\"} 2",
        "vigil_runs_judged_total{verdict=\"unchanged\"} 2",
        "vigil_alerts_total{outcome=\"sent\"} 2",
        "vigil_alerts_total{outcome=\"retry\"} 1",
        "vigil_queue_depth{queue=\"alerts_pending\"} 0",
        "vigil_queue_depth{queue=\"runs_pending\"} 0",
        "vigil_queue_depth{queue=\"webhooks_unprocessed\"} 0",
    ];
    // Slack has the last image before vigil records the alert as sent: wait for the record.
    let metrics_url = app.url("/metrics");
    let mut metrics = String::new();
    let settled = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            metrics = app.client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
            if expected.iter().all(|line| metrics.lines().any(|l| l == *line)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "{expected:?} in\n{metrics}");
    eprintln!(
        "{backend:?}: first cycle (3 baselines) {first_cycle:?}, second cycle (3 diffs + alert) {second_cycle:?}"
    );
}

#[tokio::test]
async fn monitoring_story_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn monitoring_story_postgres() {
    story(Backend::Postgres).await;
}

#[tokio::test]
async fn run_now_answers_404_for_unknown_monitors_and_needs_a_token() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &config(&site, &slack, "")).await;
    let (status, body) = api(&app, reqwest::Method::POST, "/api/monitors/nope/runs").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let r = app.client.post(app.url("/api/monitors/home/runs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (status, _) = api(&app, reqwest::Method::GET, "/api/runs/run_01JXXXXXXXXXXXXXXXXXXXXXXX").await;
    assert_eq!(status, 404);
}

/// A change must persist through `retries_on_diff` re-captures before it alerts.
#[tokio::test]
async fn retries_on_diff_captures_again_before_alerting() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let yaml =
        config(&site, &slack, "").replace("  threshold: 1%\n", "  threshold: 1%\n  retries_on_diff: 2\n");
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    assert_eq!(verdict_of(&app, &run_now(&app, "home").await).await["verdict"], "baseline_created");
    site.set("home", &page("home", "rgb(0,0,255)"));
    let hits_before = site.hits("home");
    let v = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(v["verdict"], "changed");
    assert_eq!(v["attempt"], 2, "captured twice more before judging: {v}");
    assert!(site.hits("home") >= hits_before + 3, "three captures of the page");
    wait_for("the alert", Duration::from_secs(30), || async { (slack.posted().len() == 1).then_some(()) })
        .await;
}

/// Nothing stays pending: a run whose webhook never comes, one whose job the capture API does not
/// know, and one never submitted are all completed by the reconciler.
#[tokio::test]
async fn reconciler_completes_runs_whose_webhook_never_arrives() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    site.set("pricing", &page("pricing", "rgb(255,0,0)"));
    site.set("about", &page("about", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &config(&site, &slack, "  reconcile_after: 1s\n")).await;
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let cfg = vigil::config::parse(&config(&site, &slack, ""), "t.yaml", &|_| None).unwrap();
    let new_run = |m: &vigil::config::Monitor| NewRun {
        id: RunId::new(),
        monitor: m.name.clone(),
        viewport: m.viewports[0].key(),
        scheduled_for: Timestamp::now(),
        trigger: Trigger::Manual,
        now: Timestamp::now(),
    };

    // 1. Captured without a webhook: only GET /v1/capture/{id} can tell the result.
    let home = &cfg.monitors[0];
    let run = new_run(home);
    store.insert_run(&run).await.unwrap().unwrap();
    let mut body = vigil::capture::client::capture_request(
        home,
        &home.viewports[0],
        &run.id,
        &app.url("/hooks/capture"),
    );
    body.as_object_mut().unwrap().remove("webhook_url");
    let (status, job) = {
        let r = app.client.post(app.url("/v1/capture")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 202, "{job}");
    let job: JobId = job["job_id"].as_str().unwrap().parse().unwrap();
    store.set_run_job(&run.id, &job, Timestamp::now()).await.unwrap();

    // 2. A job the capture API never heard of.
    let pricing = &cfg.monitors[1];
    let lost = new_run(pricing);
    store.insert_run(&lost).await.unwrap().unwrap();
    store.set_run_job(&lost.id, &JobId::new(), Timestamp::now()).await.unwrap();

    // 3. Recorded but never submitted (a crash in between).
    let unsent = new_run(&cfg.monitors[2]);
    store.insert_run(&unsent).await.unwrap().unwrap();

    for id in [&run.id, &lost.id, &unsent.id] {
        assert_eq!(verdict_of(&app, id.as_str()).await["verdict"], "baseline_created", "{id}");
    }
    assert!(store.stale_pending_runs(Timestamp::now(), 10).await.unwrap().is_empty());
}

/// A crash between a re-capture's submission and its record leaves the run pointing at the old
/// job while the new one finishes; the new job's result is set aside as superseded, and becomes
/// the run's own when the re-capture is submitted again (idempotently) and recorded. The
/// reconciler puts it back in the queue.
#[tokio::test]
async fn a_result_set_aside_as_superseded_is_judged_once_it_is_the_runs_own() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let yaml = config(&site, &slack, "  reconcile_after: 1s\n");
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let cfg = vigil::config::parse(&yaml, "t.yaml", &|_| None).unwrap();
    let home = &cfg.monitors[0];
    let run = NewRun {
        id: RunId::new(),
        monitor: home.name.clone(),
        viewport: home.viewports[0].key(),
        scheduled_for: Timestamp::now(),
        trigger: Trigger::Manual,
        now: Timestamp::now(),
    };
    let mut body = vigil::capture::client::capture_request(
        home,
        &home.viewports[0],
        &run.id,
        &app.url("/hooks/capture"),
    );
    body.as_object_mut().unwrap().remove("webhook_url");
    let r = app.client.post(app.url("/v1/capture")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    let job: JobId = r.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().parse().unwrap();
    let doc = app.capture_finished(TOKEN, job.as_str()).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    // Its result came while the run pointed elsewhere: stored, and set aside as processed.
    store
        .record_received_webhook("msg_set_aside", job.as_str(), &doc.to_string(), Timestamp::now())
        .await
        .unwrap();
    store.mark_webhook_processed("msg_set_aside", Timestamp::now()).await.unwrap();
    store.insert_run(&run).await.unwrap().unwrap();
    store.set_run_job(&run.id, &job, Timestamp::now()).await.unwrap();

    assert_eq!(verdict_of(&app, run.id.as_str()).await["verdict"], "baseline_created");
    assert_eq!(store.alerts_for_run(&run.id).await.unwrap().len(), 0);
}

/// Failures alert once when a streak starts and once when it ends, not on every tick.
#[tokio::test]
async fn a_failure_streak_alerts_once_and_its_recovery_once() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let yaml = config(&site, &slack, "  max_attempts: 1\n")
        .replace("  threshold: 1%\n", "  threshold: 1%\n  selector: div\n");
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    assert_eq!(verdict_of(&app, &run_now(&app, "home").await).await["verdict"], "baseline_created");
    // The element to capture disappears: the capture fails, three ticks in a row.
    site.set("home", "<html><body>gone</body></html>");
    for _ in 0..3 {
        let v = verdict_of(&app, &run_now(&app, "home").await).await;
        assert_eq!(v["verdict"], "failed", "{v}");
    }
    site.set("home", &page("home", "rgb(255,0,0)"));
    assert_eq!(verdict_of(&app, &run_now(&app, "home").await).await["verdict"], "unchanged");
    let posted = wait_for("two alerts", Duration::from_secs(30), || async {
        let p = slack.posted();
        (p.len() >= 2).then_some(p)
    })
    .await;
    assert!(posted[0].text.starts_with("home (320x200) cannot be captured"), "{}", posted[0].text);
    assert_eq!(posted[1].text, "home (320x200) is captured again");
    // The store agrees: nothing else is queued.
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    assert!(store.claim_alert(Timestamp::now(), Duration::from_secs(1)).await.unwrap().is_none());
    assert_eq!(slack.posted().len(), 2);
}

/// `vigil run --once`, the binary as a CI job runs it: exit 0 on a new baseline, 1 after the
/// page changed (with the alert sent before it exits, its review link on `server.public_url`,
/// not on the pass's private port), 0 again once nothing changed.
#[tokio::test]
async fn run_once_exits_non_zero_on_a_change() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    site.set("pricing", &page("pricing", "rgb(255,0,0)"));
    site.set("about", &page("about", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "server:\n  public_url: https://vigil.example.com/\n\
         storage:\n  database_url: \"sqlite://{db}\"\n  data_dir: \"{data}\"\n  baselines_dir: \"{baselines}\"\n{rest}",
        db = dir.path().join("vigil.db").display(),
        data = dir.path().join("data").display(),
        baselines = dir.path().join("baselines").display(),
        rest = config(&site, &slack, "")
    );
    let file = dir.path().join("monitors.yaml");
    std::fs::write(&file, yaml).unwrap();
    let once = || {
        let file = file.clone();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
                .args(["run", "--once", "--config"])
                .arg(&file)
                .output()
                .await
                .unwrap();
            let (stdout, stderr) =
                (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
            (out.status.code(), stdout, stderr)
        }
    };
    let (code, out, err) = once().await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.starts_with("MONITOR"), "{out}");
    assert!(out.contains("3 runs in") && out.contains("3 new baselines"), "{out}");
    assert!(err.contains("[3/3]"), "progress shown: {err}");

    site.set("about", &page("about", "rgb(0,0,255)"));
    let (code, out, err) = once().await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    let about = out.lines().find(|l| l.starts_with("about")).unwrap();
    assert!(about.contains("changed") && about.contains("7.81%"), "{out}");
    assert!(out.contains("2 unchanged, 0 new baselines, 1 changed, 0 failed"), "{out}");
    assert_eq!(slack.posted().len(), 1, "the alert went out before the command exited");
    let alert = slack.posted()[0].blocks.to_string();
    assert!(alert.contains("https://vigil.example.com/runs/run_"), "{alert}");

    site.set("about", &page("about", "rgb(255,0,0)"));
    let (code, out, err) = once().await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("3 unchanged"), "{out}");
}

/// A tick that passed while the daemon was down runs once at start — once, however many
/// restarts follow.
#[tokio::test]
async fn a_tick_missed_while_down_runs_once_at_start() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    // Only `home`, on a yearly schedule: its latest tick is 1 January, 00:00 UTC.
    let yaml = config(&site, &slack, "");
    let yaml = &yaml[..yaml.find("  - name: pricing").unwrap()];
    let app = TestApp::spawn(Backend::Sqlite, yaml).await;
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let home: vigil::config::MonitorName = "home".parse().unwrap();
    let cfg = vigil::config::parse(yaml, "t.yaml", &|_| None).unwrap();
    let tick = cfg.monitors[0].schedule.previous_fire(chrono::Utc::now()).unwrap();
    // The last run was before that tick (the daemon was down since).
    let long_ago = Timestamp::from_datetime(tick - chrono::TimeDelta::days(30));
    let old = store
        .insert_run(&NewRun {
            id: RunId::new(),
            monitor: home.clone(),
            viewport: "320x200".into(),
            scheduled_for: long_ago,
            trigger: Trigger::Schedule,
            now: long_ago,
        })
        .await
        .unwrap()
        .unwrap();
    let outcome =
        vigil::store::RunOutcome { verdict: Some(vigil::store::Verdict::Unchanged), ..Default::default() };
    assert!(store.complete_run(&old.id, &outcome, long_ago).await.unwrap());
    let (db, dir) = app.kill().await;
    let app = TestApp::spawn_on(db, dir, yaml).await;
    let caught_up = wait_for("the missed tick's run", Duration::from_secs(60), || async {
        let runs = store.list_runs(&home, None, 10).await.ok()?;
        runs.into_iter().find(|r| r.scheduled_for == Timestamp::from_datetime(tick) && r.verdict.is_some())
    })
    .await;
    assert_eq!(caught_up.trigger, Trigger::Schedule);
    // Another restart: the tick has its run, so only the run started by hand is added.
    let (db, dir) = app.kill().await;
    let app = TestApp::spawn_on(db, dir, yaml).await;
    verdict_of(&app, &run_now(&app, "home").await).await;
    let (_, body) = api(&app, reqwest::Method::GET, "/api/monitors/home").await;
    let triggers: Vec<&str> =
        body["runs"].as_array().unwrap().iter().map(|r| r["trigger"].as_str().unwrap()).collect();
    assert_eq!(triggers, ["manual", "schedule", "schedule"], "{body}");
}

/// Editing the config file takes effect without a restart: a monitor added is scheduled, an
/// invalid file changes nothing, a monitor removed stops.
#[tokio::test]
async fn config_changes_apply_without_a_restart() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    site.set("pricing", &page("pricing", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let full = config(&site, &slack, "");
    let only_home = &full[..full.find("  - name: pricing").unwrap()];
    let app = TestApp::spawn_watching(Backend::Sqlite, only_home).await;
    let names = |app: &TestApp| {
        let app_url = app.url("/api/monitors");
        let client = app.client.clone();
        async move {
            let body: Value = client.get(app_url).bearer_auth(TOKEN).send().await.ok()?.json().await.ok()?;
            Some(
                body["monitors"]
                    .as_array()?
                    .iter()
                    .map(|m| m["name"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(names(&app).await.unwrap(), ["home"]);

    // Added, on a 1-second schedule: listed, and captured by the scheduler.
    app.rewrite_config(&format!(
        "{only_home}  - name: pricing\n    url: {}\n    schedule: \"* * * * * *\"\n",
        site.url("pricing")
    ));
    wait_for("pricing in force", Duration::from_secs(20), || async {
        names(&app).await.filter(|n| n == &["home", "pricing"])
    })
    .await;
    let scheduled = wait_for("a scheduled run of pricing", Duration::from_secs(30), || async {
        let (_, body) = api(&app, reqwest::Method::GET, "/api/monitors/pricing").await;
        body["runs"]
            .as_array()?
            .iter()
            // (Ticks that came while the first run was pending are recorded as skipped.)
            .find(|r| r["trigger"] == "schedule" && !r["verdict"].is_null() && r["verdict"] != "skipped")
            .cloned()
    })
    .await;
    assert_eq!(scheduled["verdict"], "baseline_created");

    // An invalid file: rejected, the running monitors stay.
    app.rewrite_config(&format!(
        "{only_home}  - name: pricing\n    url: {}\n    threshold: two\n",
        site.url("pricing")
    ));
    wait_for("the invalid file rejected", Duration::from_secs(20), || async {
        let metrics = app.client.get(app.url("/metrics")).send().await.ok()?.text().await.ok()?;
        metrics.contains("vigil_config_reloads_total{outcome=\"rejected\"} 1").then_some(())
    })
    .await;
    assert_eq!(names(&app).await.unwrap(), ["home", "pricing"]);

    // Removed: gone from the API, and its schedule stops.
    app.rewrite_config(only_home);
    wait_for("pricing removed", Duration::from_secs(20), || async {
        names(&app).await.filter(|n| n == &["home"])
    })
    .await;
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let pricing: vigil::config::MonitorName = "pricing".parse().unwrap();
    // A fire already under way when the file changed may still finish; after that, nothing.
    let settled = wait_for("in-flight pricing runs to finish", Duration::from_secs(30), || async {
        let runs = store.list_runs(&pricing, None, 1000).await.ok()?;
        runs.iter().all(|r| r.verdict.is_some()).then_some(runs.len())
    })
    .await;
    // Two seconds of a once-a-second schedule, measured by the home monitor's own run.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        verdict_of(&app, &run_now(&app, "home").await).await;
    }
    assert_eq!(store.list_runs(&pricing, None, 1000).await.unwrap().len(), settled, "no runs after removal");
}
