//! Events beyond Slack: `alerts:` destinations get Standard Webhooks events for changes,
//! failures, recoveries and approvals, signed with their own secret (verified here with the
//! official `standardwebhooks` library), retried through the outbox with one `webhook-id`, and
//! routed per monitor — a monitor without `slack` in its `alerts:` posts nothing to Slack.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::site::{Received, TestReceiver};
use crate::helpers::slack::{BOT_TOKEN, FakeSlack};
use crate::helpers::{Backend, TestApp, TestSite, wait_for};
use crate::monitoring::{TOKEN, page, run_now, verdict_of};

const OPS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const AUDIT_SECRET: &str = "whsec_dGhlIGF1ZGl0IHRlYW0ncyBvd24gc2VjcmV0IQ==";

fn verified(secret: &str, r: &Received) -> Value {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&r.body, &r.headers)
        .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&r.body)));
    serde_json::from_slice(&r.body).unwrap()
}

async fn events_of(receiver: &TestReceiver, secret: &str, count: usize) -> Vec<Value> {
    wait_for(&format!("{count} events"), Duration::from_secs(60), || async {
        let all = receiver.all();
        let ok: Vec<_> = all.iter().filter(|r| r.status == 200).collect();
        (ok.len() >= count).then(|| ok.iter().map(|r| verified(secret, r)).collect())
    })
    .await
}

#[tokio::test]
async fn changes_and_approvals_reach_signed_webhooks_routed_per_monitor() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    site.set("report", &page("report", "rgb(0,0,255)"));
    let slack = FakeSlack::start().await;
    let ops = TestReceiver::start().await;
    let audit = TestReceiver::start().await;
    let discord = TestReceiver::start().await;
    let teams = TestReceiver::start().await;
    // The first change event is refused once: retried with the same id.
    ops.script(&[503]);
    let yaml = format!(
        "auth:\n  api_tokens: [{{name: Dana Reviewer, token: \"{TOKEN}\"}}]\n\
         capture:\n  allow_private: [\"127.0.0.1/32\"]\n\
         webhook:\n  retry_schedule: [0s, 200ms, 200ms, 200ms]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  api_url: {}/\n\
         alerts:\n  ops:\n    webhook: {}\n    secret: {OPS_SECRET}\n  \
         audit:\n    webhook: {}\n    secret: {AUDIT_SECRET}\n    events: [baseline.approved]\n  \
         chat:\n    discord: {}\n    events: [run.changed]\n  \
         team-chat:\n    teams: {}\n    events: [run.changed]\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  retries_on_diff: 0\nmonitors:\n\
         \x20 - name: home\n    url: {}\n\
         \x20 - name: report\n    url: {}\n    alerts: [ops]\n",
        slack.api_url,
        ops.url,
        audit.url,
        discord.url,
        teams.url,
        site.url("home"),
        site.url("report"),
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    for name in ["home", "report"] {
        assert_eq!(verdict_of(&app, &run_now(&app, name).await).await["verdict"], "baseline_created");
    }
    site.set("home", &page("home", "rgb(0,160,0)"));
    site.set("report", &page("report", "rgb(0,160,0)"));
    let home = verdict_of(&app, &run_now(&app, "home").await).await;
    let report = verdict_of(&app, &run_now(&app, "report").await).await;
    assert_eq!((home["verdict"].as_str(), report["verdict"].as_str()), (Some("changed"), Some("changed")));

    // Both changes reach ops, signed with its secret; the refused one came again, same id.
    let events = events_of(&ops, OPS_SECRET, 2).await;
    let attempts = ops.all();
    assert_eq!(attempts[0].status, 503);
    let first_id = attempts[0].headers["webhook-id"].clone();
    assert_eq!(attempts.iter().filter(|r| r.headers["webhook-id"] == first_id).count(), 2, "retried once");
    let mut monitors: Vec<_> = events.iter().map(|e| e["data"]["monitor"].as_str().unwrap()).collect();
    monitors.sort();
    assert_eq!(monitors, ["home", "report"]);
    let event = events.iter().find(|e| e["data"]["monitor"] == "home").unwrap();
    assert_eq!(event["type"], "run.changed");
    assert_eq!(event["data"]["run_id"], home["id"]);
    assert_eq!(event["data"]["diff_pixels"], home["diff_pixels"]);
    assert!(
        event["data"]["review_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/runs/{}", home["id"].as_str().unwrap()))
    );
    assert!(event["data"]["images"]["diff"].as_str().unwrap().ends_with("/diff.png"), "{event}");
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'), "{event}");

    // Slack heard of home only: report routes to ops alone.
    let posted = wait_for("home's Slack alert", Duration::from_secs(30), || async {
        let posted = slack.posted();
        (!posted.is_empty()).then_some(posted)
    })
    .await;
    assert!(posted.iter().all(|p| p.text.contains("home") && !p.text.contains("report")), "{posted:?}");

    // Discord and Teams hear of home's change (report routes to ops alone), in their own
    // formats, unsigned, with nobody mentioned and the review linked.
    let review_url = event["data"]["review_url"].clone();
    for (receiver, name) in [(&discord, "discord"), (&teams, "teams")] {
        let got = wait_for(&format!("{name}'s message"), Duration::from_secs(30), || async {
            receiver.all().into_iter().find(|r| r.status == 200)
        })
        .await;
        assert!(got.headers.get("webhook-signature").is_none(), "{name}");
        let body: Value = serde_json::from_slice(&got.body).unwrap();
        if name == "discord" {
            assert_eq!(body["allowed_mentions"]["parse"], json!([]), "{body}");
            assert_eq!(body["embeds"][0]["url"], review_url, "{body}");
            assert!(body["embeds"][0]["title"].as_str().unwrap().starts_with("home changed"), "{body}");
        } else {
            let card = &body["attachments"][0];
            assert_eq!(card["contentType"], "application/vnd.microsoft.card.adaptive", "{body}");
            assert_eq!(card["content"]["actions"][0]["url"], review_url, "{body}");
        }
        assert_eq!(receiver.all().len(), 1, "{name}: one message, home's");
    }

    // Approving home: baseline.approved to ops and to audit (which takes only that event),
    // with the reviewer's name.
    let r = app
        .client
        .post(app.url(&format!("/api/runs/{}/approve", home["id"].as_str().unwrap())))
        .bearer_auth(TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let approved = events_of(&audit, AUDIT_SECRET, 1).await;
    assert_eq!(approved[0]["type"], "baseline.approved");
    assert_eq!(approved[0]["data"]["run_id"], home["id"]);
    assert_eq!(approved[0]["data"]["approved_by"], "Dana Reviewer");
    assert_eq!(approved[0]["data"]["source"], "api");
    let ops_events = events_of(&ops, OPS_SECRET, 3).await;
    assert_eq!(ops_events[2]["type"], "baseline.approved");
    // The audit secret does not verify ops' messages, nor the other way round.
    let (ops_approval, audit_approval) = (ops.all().pop().unwrap(), audit.all().pop().unwrap());
    let audit_key = standardwebhooks::Webhook::new(AUDIT_SECRET).unwrap();
    assert!(audit_key.verify(&ops_approval.body, &ops_approval.headers).is_err());
    let ops_key = standardwebhooks::Webhook::new(OPS_SECRET).unwrap();
    assert!(ops_key.verify(&audit_approval.body, &audit_approval.headers).is_err());

    // Each event once: no duplicate ids among the delivered messages.
    let ids: std::collections::HashSet<_> =
        ops.all().iter().filter(|r| r.status == 200).map(|r| r.headers["webhook-id"].clone()).collect();
    assert_eq!((ids.len(), ops.all().iter().filter(|r| r.status == 200).count()), (3, 3), "{ids:?}");
    assert_eq!(audit.all().len(), 1, "audit takes baseline.approved only");
}

/// Python's own mail parser on what aiosmtpd stored: subject, recipients, and the inline image.
const READ_MAIL: &str = r#"
import email, email.policy, hashlib, json, sys
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)
parts = [p for p in m.walk() if not p.is_multipart()]
image = next((p for p in parts if p.get_content_type() == 'image/png'), None)
text = next(p for p in parts if p.get_content_type() == 'text/plain').get_content()
html = next(p for p in parts if p.get_content_type() == 'text/html').get_content()
print(json.dumps({
  'subject': str(m['subject']), 'to': str(m['to']), 'from': str(m['from']), 'text': text, 'html': html,
  'image_cid': image and image['content-id'], 'image_disposition': image and image.get_content_disposition(),
  'image_sha256': image and hashlib.sha256(image.get_content()).hexdigest(),
}))
"#;

/// aiosmtpd, the SMTP server from PyPI, storing what it receives in a maildir.
struct Smtp {
    child: std::process::Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Smtp {
    async fn start() -> Smtp {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let maildir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(crate::helpers::tool(
            crate::helpers::tools_dir().join("venv/bin/python"),
        ))
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir.path().join("mail"))
        .spawn()
        .expect("Python in .tools/venv (scripts/dev tools)");
        wait_for(
            "aiosmtpd to listen (if it is missing: scripts/dev tools)",
            Duration::from_secs(30),
            || async { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ()) },
        )
        .await;
        Smtp { child, port, maildir }
    }

    /// The messages received so far, as Python's parser reads them.
    fn messages(&self) -> Vec<Value> {
        let dir = self.maildir.path().join("mail/new");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        entries
            .map(|e| {
                let out = std::process::Command::new(crate::helpers::tool(
                    crate::helpers::tools_dir().join("venv/bin/python"),
                ))
                .args(["-c", READ_MAIL])
                .arg(e.unwrap().path())
                .output()
                .unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                serde_json::from_slice(&out.stdout).unwrap()
            })
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_change_is_mailed_with_the_diff_image_inline() {
    let smtp = Smtp::start().await;
    let site = TestSite::start().await;
    site.set("pricing", &page("Pro $49", "rgb(255,0,0)"));
    let yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  allow_private: [\"127.0.0.1/32\"]\n\
         alerts:\n  team:\n    email:\n      server: 127.0.0.1\n      port: {}\n      tls: none\n      \
         from: \"vigil <vigil@example.com>\"\n      to: [web@example.com, \"Ops <ops@example.com>\"]\n    \
         events: [run.changed]\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  retries_on_diff: 0\nmonitors:\n\
         \x20 - name: pricing\n    url: {}\n",
        smtp.port,
        site.url("pricing"),
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    assert_eq!(verdict_of(&app, &run_now(&app, "pricing").await).await["verdict"], "baseline_created");
    site.set("pricing", &page("Pro $79", "rgb(255,0,0)"));
    let run = verdict_of(&app, &run_now(&app, "pricing").await).await;
    assert_eq!(run["verdict"], "changed", "{run}");

    let mails = wait_for("the email", Duration::from_secs(60), || async {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    let subject = mail["subject"].as_str().unwrap();
    assert!(subject.starts_with("[vigil] pricing changed (1280x800): $49 → $79"), "{mail}");
    assert!(mail["to"].as_str().unwrap().contains("web@example.com"), "{mail}");
    assert!(mail["to"].as_str().unwrap().contains("ops@example.com"), "{mail}");
    let review = format!("/runs/{}", run["id"].as_str().unwrap());
    assert!(mail["text"].as_str().unwrap().contains(&review), "{mail}");
    assert!(mail["html"].as_str().unwrap().contains("cid:diff"), "{mail}");
    assert_eq!(mail["image_cid"], "<diff>", "{mail}");
    assert_eq!(mail["image_disposition"], "inline", "{mail}");
    // The very diff image the API serves.
    let diff = app
        .client
        .get(app.url(&format!("/api/runs/{}/diff.png", run["id"].as_str().unwrap())))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(mail["image_sha256"].as_str().unwrap(), vigil::store::blobs::sha256_hex(&diff), "{mail}");
}

#[tokio::test]
async fn a_muted_monitor_sends_nothing_until_it_is_unmuted() {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let ops = TestReceiver::start().await;
    let yaml = format!(
        "auth:\n  api_tokens: [{{name: Dana Reviewer, token: \"{TOKEN}\"}}]\n\
         capture:\n  allow_private: [\"127.0.0.1/32\"]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: \"#visual\"\n  api_url: {}/\n\
         alerts:\n  ops:\n    webhook: {}\n    secret: {OPS_SECRET}\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  retries_on_diff: 0\nmonitors:\n\
         \x20 - name: home\n    url: {}\n",
        slack.api_url,
        ops.url,
        site.url("home"),
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    assert_eq!(verdict_of(&app, &run_now(&app, "home").await).await["verdict"], "baseline_created");

    // Muted for an hour: a change is judged, waits for review, and tells no one.
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let r = app
        .client
        .post(app.url("/api/monitors/home/mute"))
        .bearer_auth(TOKEN)
        .json(&json!({"until": until, "by": "oncall"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let muted: Value = r.json().await.unwrap();
    assert_eq!(muted["muted_by"], "oncall (via Dana Reviewer)", "{muted}");
    let bad = app
        .client
        .post(app.url("/api/monitors/home/mute"))
        .bearer_auth(TOKEN)
        .json(&json!({"until": "tomorrow"}));
    assert_eq!(bad.send().await.unwrap().status(), 422);
    let (_, home) = crate::monitoring::api(&app, reqwest::Method::GET, "/api/monitors/home").await;
    assert!(home["muted_until"].is_string(), "{home}");

    site.set("home", &page("home", "rgb(0,160,0)"));
    let quiet = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(quiet["verdict"], "changed");
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    // Once its capture result is processed, the alert would have been queued: there is none.
    wait_for("the result processed", Duration::from_secs(30), || async {
        store.unprocessed_webhooks(10, vigil::time::Timestamp::now()).await.ok().filter(|w| w.is_empty())
    })
    .await;
    let quiet_id = quiet["id"].as_str().unwrap().parse().unwrap();
    assert!(store.alerts_for_run(&quiet_id).await.unwrap().is_empty());
    for status in [vigil::store::OutboxStatus::Pending, vigil::store::OutboxStatus::Sent] {
        let rows = store.list_deliveries(status, 100).await.unwrap();
        assert!(!rows.iter().any(|d| d.subject == quiet["id"].as_str().unwrap()), "no event either");
    }
    assert!(ops.all().is_empty() && slack.posted().is_empty(), "nothing reached anyone");
    let (_, changes) = crate::monitoring::api(&app, reqwest::Method::GET, "/api/changes").await;
    assert!(changes.to_string().contains(quiet["id"].as_str().unwrap()), "still awaiting review: {changes}");

    // A mute for ever is a year; one in the past ends the mute (so does DELETE, below).
    let post = |until: &str| {
        app.client
            .post(app.url("/api/monitors/home/mute"))
            .bearer_auth(TOKEN)
            .json(&json!({"until": until}))
            .send()
    };
    let long: Value = post("9999-12-31T23:59:59-01:00").await.unwrap().json().await.unwrap();
    let until = long["muted_until"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!((until - chrono::Utc::now()).num_days() <= 366, "{long}");
    assert_eq!(post("2000-01-01T00:00:00Z").await.unwrap().status(), 200);
    let (_, home) = crate::monitoring::api(&app, reqwest::Method::GET, "/api/monitors/home").await;
    assert_eq!(home["muted_until"], Value::Null, "{home}");
    let again = post(&(chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()).await.unwrap();
    assert_eq!(again.status(), 200);

    // Unmuted: the next change alerts as usual.
    let r = app.client.delete(app.url("/api/monitors/home/mute")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["was_muted"], true);
    site.set("home", &page("home", "rgb(0,0,255)"));
    let loud = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(loud["verdict"], "changed");
    let events = events_of(&ops, OPS_SECRET, 1).await;
    assert_eq!(events[0]["data"]["run_id"], loud["id"]);
    wait_for("the Slack alert", Duration::from_secs(30), || async {
        (slack.posted().len() == 1).then_some(())
    })
    .await;
    assert!(slack.posted()[0].text.contains("home changed"));
}
