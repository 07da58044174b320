//! Several replicas on one PostgreSQL database and one object store (issue 14): three `vigil
//! run` processes behind a load balancer, started at once, one killed with SIGKILL mid-tick and
//! restarted, with an exact account of runs, captures, alerts and baselines; and replicas whose
//! configs differ, which do not judge each other's monitors differently.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::cluster::{Balancer, S3Server};
use crate::helpers::daemon::{Daemon, free_port, rows, scalar};
use crate::helpers::slack::{BOT_TOKEN, CHANNEL_ID, FakeSlack};
use crate::helpers::{Backend, TestApp, TestDb, TestSite, wait_for};
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

/// Ticks every 15 s: three or four of them fit a minute of test.
const EVERY: i64 = 15;
const MONITORS: usize = 20;
const DEADLINE: Duration = Duration::from_secs(240);

/// One replica's home: its own port, data and baselines directories and config file; the
/// database, the bucket and the public URL (the balancer) are everyone's.
struct Replica {
    port: u16,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Replica {
    fn new(db: &str, s3: &S3Server, public_url: &str, body: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("vigil.yaml");
        let yaml = format!(
            "server:\n  listen: 127.0.0.1:{port}\n  public_url: {public_url}\n  shutdown_timeout: 2s\n\
             storage:\n  database_url: \"{db}\"\n  data_dir: \"{}\"\n  baselines_dir: \"{}\"\n  min_free: 8MiB\n{}{body}",
            dir.path().join("data").display(),
            dir.path().join("baselines").display(),
            s3.storage_yaml("cluster"),
        );
        std::fs::write(&config, yaml).unwrap();
        Replica { port, dir, config }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn start(&self) -> Daemon {
        Daemon::start(&self.config, self.port, &self.dir.path().join("data")).await
    }
}

fn cluster_config(site: &TestSite, slack: &FakeSlack) -> String {
    // No `webhook.secret`: the replicas share the one the first of them generated.
    let mut yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 1\n  stability_timeout: 0s\n  job_timeout: 8s\n  max_attempts: 3\n  reconcile_after: 10s\n  allow_private: [\"127.0.0.0/8\"]\n\
         webhook:\n  timeout: 2s\n  retry_schedule: [0s, 500ms, 1s, 2s, 2s, 2s, 2s, 2s, 2s, 2s]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: {CHANNEL_ID}\n  api_url: {}/\n  timeout: 2s\n  retry_schedule: [500ms]\n\
         defaults:\n  schedule: \"*/{EVERY} * * * * *\"\n  viewports: [320x200]\n  full_page: false\n  wait_until: load\n  threshold: 1%\n  timeout: 5s\n\
         monitors:\n",
        slack.api_url
    );
    for i in 0..MONITORS {
        yaml.push_str(&format!("  - name: m{i:02}\n    url: {}\n", site.url(&format!("m{i:02}"))));
    }
    yaml
}

/// Waits until `sql` counts at least `n`.
async fn at_least(db: &str, sql: &str, n: i64) {
    wait_for(&format!("{sql} >= {n}"), DEADLINE, || async { (scalar(db, sql).await >= n).then_some(()) })
        .await;
}

/// The ticks whose runs have all been judged (every monitor has a verdict for them).
async fn judged_ticks(db: &str) -> Vec<i64> {
    let sql = format!(
        "SELECT scheduled_for::text FROM runs WHERE trigger = 'schedule' GROUP BY scheduled_for \
         HAVING count(*) FILTER (WHERE verdict IS NOT NULL) = {MONITORS} ORDER BY scheduled_for"
    );
    rows(db, &sql).await.iter().map(|r| r.parse().unwrap()).collect()
}

/// Three replicas, 20 monitors every 15 s, a fake Slack, one PostgreSQL, one bucket, and a
/// balancer as the public URL. They start at once on a fresh database; one page changes and is
/// approved through one replica while the next run is judged by whichever; one replica is
/// killed with SIGKILL while a tick is in flight and started again. The account must be exact.
#[tokio::test]
async fn three_replicas_on_one_database_and_one_bucket_account_for_every_tick() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let s3 = S3Server::start().await;
    let db = TestDb::create(Backend::Postgres).await;
    let url = db.url.clone();
    for i in 0..MONITORS {
        site.set(&format!("m{i:02}"), &page(&format!("m{i:02}"), "#0a0"));
    }
    let balancer = Balancer::start(Vec::new()).await;
    let public_url = format!("{}/", balancer.url());
    let body = cluster_config(&site, &slack);
    let homes: Vec<Replica> = (0..3).map(|_| Replica::new(&url, &s3, &public_url, &body)).collect();
    balancer.set(homes.iter().map(Replica::addr).collect());

    // All three at once on an empty database: migrations, monitors and keys under the lock.
    let (a, b, c) = tokio::join!(homes[0].start(), homes[1].start(), homes[2].start());
    let mut replicas = vec![Some(a), Some(b), Some(c)];

    // Two ticks judged: every monitor has its first baseline, then an `unchanged`.
    wait_for("two ticks judged", DEADLINE, || async {
        let t = judged_ticks(&url).await;
        (t.len() >= 2).then_some(t)
    })
    .await;

    // A change on one page: alerted once, whichever replica judged it.
    site.set("m00", &page("m00", "#a00"));
    at_least(&url, "SELECT count(*) FROM runs WHERE monitor = 'm00' AND verdict = 'changed'", 1).await;
    let changed = rows(
        &url,
        "SELECT id FROM runs WHERE monitor = 'm00' AND verdict = 'changed' ORDER BY scheduled_for",
    )
    .await;
    wait_for("the alert posted", DEADLINE, || async { (!slack.posted().is_empty()).then_some(()) }).await;

    // Approved through the second replica; the runs after it are judged against the new
    // baseline by whichever replica takes them.
    let d1 = replicas[1].as_ref().unwrap();
    let r =
        d1.client.post(d1.url(&format!("/api/runs/{}/approve", changed[0]))).bearer_auth(TOKEN).send().await;
    assert_eq!(r.unwrap().status(), 200);
    let approved_at = scalar(&url, "SELECT max(created_at) FROM baselines").await;

    // SIGKILL the third replica while it holds a capture job, then start it again.
    let pid = replicas[2].as_ref().unwrap().pid();
    let held =
        format!("SELECT id FROM capture_jobs WHERE status = 'running' AND lease_owner LIKE '%-{pid}-%'");
    let orphaned = wait_for("the third replica to hold a capture", DEADLINE, || async {
        let jobs = rows(&url, &held).await;
        (!jobs.is_empty()).then_some(jobs)
    })
    .await;
    replicas[2].take().unwrap().kill9();
    let killed_at = scalar(&url, "SELECT (extract(epoch from now()) * 1000)::bigint").await;
    // The survivors take its work over within one lease, without it.
    wait_for("a tick started after the kill judged", DEADLINE, || async {
        let t = judged_ticks(&url).await;
        (t.iter().filter(|&&t| t > killed_at).count() >= 1).then_some(())
    })
    .await;
    replicas[2] = Some(homes[2].start().await);
    let restarted_at = scalar(&url, "SELECT (extract(epoch from now()) * 1000)::bigint").await;
    wait_for("two ticks after the restart judged", DEADLINE, || async {
        let t = judged_ticks(&url).await;
        (t.iter().filter(|&&t| t > restarted_at).count() >= 2).then_some(())
    })
    .await;

    // Every run of every tick but the newest judged: nothing was lost to the kill.
    wait_for("every run before the newest tick judged", DEADLINE, || async {
        let sql = "SELECT count(*) FROM runs WHERE status = 'pending' \
                   AND scheduled_for < (SELECT max(scheduled_for) FROM runs)";
        (scalar(&url, sql).await == 0).then_some(())
    })
    .await;
    let logs: Vec<Vec<String>> = replicas
        .into_iter()
        .map(|d| {
            let d = d.unwrap();
            let lines = d.log_lines();
            assert!(d.stop().success());
            lines
        })
        .collect();

    // One run per monitor per tick, and every tick from its first to its last, for every
    // monitor: none lost to the kill, none doubled by the restart's catch-up. (The first and
    // the last tick may be partial: one fell while the replicas were starting, the other while
    // they were stopping.)
    let step = EVERY * 1000;
    let ticks: BTreeSet<i64> =
        rows(&url, "SELECT DISTINCT scheduled_for::text FROM runs WHERE trigger = 'schedule'")
            .await
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
    let (lo, hi) = (*ticks.first().unwrap(), *ticks.last().unwrap());
    assert_eq!(ticks.len() as i64, (hi - lo) / step + 1, "no tick lost: {ticks:?}");
    assert!(ticks.iter().all(|t| t % step == 0), "ticks on the schedule's instants: {ticks:?}");
    let per_monitor = rows(
        &url,
        "SELECT monitor || ' ' || count(*) || ' ' || min(scheduled_for) || ' ' || max(scheduled_for) \
         FROM runs WHERE trigger = 'schedule' GROUP BY monitor ORDER BY monitor",
    )
    .await;
    assert_eq!(per_monitor.len(), MONITORS, "{per_monitor:?}");
    for line in &per_monitor {
        let f: Vec<i64> = line.split(' ').skip(1).map(|v| v.parse().unwrap()).collect();
        let (count, first, last) = (f[0], f[1], f[2]);
        let why = rows(&url, "SELECT monitor || ' ' || scheduled_for || ' ' || COALESCE(verdict, 'pending') || ' ' || COALESCE(error, '') FROM runs ORDER BY monitor, scheduled_for").await;
        assert_eq!(count, (last - first) / step + 1, "one run per tick: {line}\n{why:#?}");
        assert!(first <= lo + step && last >= hi - step, "{line}: from {lo} to {hi}");
    }
    assert!(ticks.len() >= 6, "{ticks:?}");
    // A tick that came while the previous run was still pending (the killed replica's work,
    // waiting for its lease) is recorded as skipped; nothing else skips.
    let skipped = rows(&url, "SELECT error FROM runs WHERE verdict = 'skipped'").await;
    assert!(skipped.iter().all(|e| e.contains("previous_run_pending")), "{skipped:?}");
    // Its jobs were taken over and finished by the others, within one lease (a job's is 23 s
    // here, a claimed result's 60 s) and the time to judge.
    let list = orphaned.iter().map(|j| format!("'{j}'")).collect::<Vec<_>>().join(", ");
    let finished = rows(
        &url,
        &format!("SELECT status || ' ' || COALESCE(lease_owner, '-') FROM capture_jobs WHERE id IN ({list})"),
    )
    .await;
    assert!(
        finished.iter().all(|f| f.starts_with("completed ") && !f.contains(&format!("-{pid}-"))),
        "the killed replica's jobs: {finished:?}"
    );
    let recovered = scalar(
        &url,
        &format!("SELECT COALESCE(max(completed_at), 0) FROM runs WHERE created_at < {killed_at} AND completed_at > {killed_at}"),
    )
    .await;
    assert!(recovered - killed_at < 90_000, "judged {} ms after the kill", recovered - killed_at);
    eprintln!(
        "{} ticks, {} runs, {} skipped; the runs in flight at the kill were judged within {} ms of it",
        ticks.len(),
        scalar(&url, "SELECT count(*) FROM runs").await,
        skipped.len(),
        (recovered - killed_at).max(0)
    );

    // One capture per run that did not change (a change is looked at twice, retries_on_diff).
    let doubled = rows(
        &url,
        "SELECT r.id || ' ' || r.verdict || ' ' || count(j.id) FROM runs r JOIN capture_jobs j \
         ON (j.request::json -> 'metadata' ->> 'run_id') = r.id \
         WHERE r.verdict IN ('unchanged', 'baseline_created') GROUP BY r.id, r.verdict HAVING count(j.id) <> 1",
    )
    .await;
    assert!(doubled.is_empty(), "runs captured more than once: {doubled:?}");

    // One baseline per monitor, plus the approval; one active each.
    assert_eq!(scalar(&url, "SELECT count(*) FROM baselines").await, MONITORS as i64 + 1);
    assert_eq!(scalar(&url, "SELECT count(*) FROM baselines WHERE active").await, MONITORS as i64);
    // Every run of m00 after the approval was judged against the new baseline.
    let after = rows(
        &url,
        &format!("SELECT COALESCE(verdict, 'pending') FROM runs WHERE monitor = 'm00' AND created_at > {approved_at}"),
    )
    .await;
    assert!(
        after.iter().any(|v| v == "unchanged")
            && after.iter().all(|v| v == "unchanged" || v == "pending" || v == "skipped"),
        "{after:?}"
    );

    // The change was seen on m00 only, until its approval; one alert for each run that saw
    // it, each posted to Slack exactly once.
    let changes = rows(&url, "SELECT monitor FROM runs WHERE verdict IN ('changed', 'approved')").await;
    assert!(!changes.is_empty() && changes.iter().all(|m| m == "m00"), "{changes:?}");
    let alerts = scalar(&url, "SELECT count(*) FROM alerts").await;
    let detail = rows(
        &url,
        "SELECT a.kind || ' ' || a.monitor || ' ' || COALESCE(r.verdict, '-') || ' ' || COALESCE(r.error, '') \
         FROM alerts a JOIN runs r ON r.id = a.run_id ORDER BY a.created_at",
    )
    .await;
    assert_eq!(alerts, changes.len() as i64, "one alert per changed run: {detail:#?}");
    let posted: Vec<String> = slack
        .posted()
        .iter()
        .map(|p| p.metadata["event_payload"]["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(posted.len() as i64, alerts, "each alert posted once: {posted:?}");
    assert_eq!(posted.iter().collect::<BTreeSet<_>>().len(), posted.len(), "{posted:?}");

    // The images are in the bucket, none on a replica's disk.
    assert!(s3.keys("cluster/sha256/").await.len() > MONITORS, "captures and the new baseline in the bucket");
    for home in &homes {
        assert!(!home.dir.path().join("data/blobs").exists(), "no blob on a replica's disk");
    }
    let mut by_replica: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, log) in logs.iter().enumerate() {
        let bad: Vec<&String> = log
            .iter()
            .filter(|l| {
                l.contains("duplicate key") || l.contains("panicked") || l.contains("baselines_one_active")
            })
            .collect();
        assert!(bad.is_empty(), "replica {i}: {bad:?}");
        *by_replica.entry(i).or_default() += log.iter().filter(|l| l.contains("run judged")).count();
    }
    assert!(by_replica.values().filter(|&&n| n > 0).count() >= 2, "the judging was shared: {by_replica:?}");
}

/// A bucket that is not there (or refuses the credentials) stops `vigil run` at start with a
/// message naming it, instead of failing every capture later.
#[tokio::test]
async fn a_missing_bucket_stops_the_daemon_at_start_and_says_which() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vigil.yaml");
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nstorage:\n  database_url: \"sqlite://{d}/v.db\"\n  data_dir: \"{d}/data\"\n  baselines_dir: \"{d}/b\"\n{}monitors: []\n",
        s3.storage_yaml("x").replace("s3://vigil/", "s3://no-such-bucket/"),
        d = dir.path().display(),
    );
    std::fs::write(&config, yaml).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out).await.expect("exits").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot use the blob store") && stderr.contains("s3://no-such-bucket/x"),
        "{stderr}"
    );
}

/// One daemon on a bucket: its captures are objects (none on its disk), its run images are
/// served from there, and when the store stops answering `/readyz` says so within one check.
#[tokio::test]
async fn images_live_in_the_bucket_and_readyz_says_when_it_is_gone() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let s3 = S3Server::start().await;
    site.set("home", &page("home", "rgb(0,160,0)"));
    let yaml = format!("{}{}", s3.storage_yaml("one"), config(&site, &slack, "1%"));
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let first = run_now(&app, "home").await;
    let v = verdict_of(&app, &first).await;
    assert_eq!(v["verdict"], "baseline_created", "{v}");
    let r =
        app.client.get(app.url(&format!("/api/runs/{first}/current.png"))).bearer_auth(TOKEN).send().await;
    let png = r.unwrap().bytes().await.unwrap();
    let sha = vigil::store::blobs::sha256_hex(&png);
    let keys = s3.keys("one/sha256/").await;
    assert!(keys.contains(&format!("one/sha256/{}/{}/{sha}", &sha[0..2], &sha[2..4])), "{keys:?}");
    assert!(!app.data_dir().join("blobs").exists(), "nothing on the disk");

    drop(s3);
    let readyz = wait_for("/readyz to report the store gone", Duration::from_secs(60), || async {
        let r = app.client.get(app.url("/readyz")).send().await.ok()?;
        let status = r.status();
        let body: Value = r.json().await.ok()?;
        (status == 503 && body["blobs"]["status"] == "unreachable").then_some(body)
    })
    .await;
    assert_eq!(readyz["status"], "unavailable", "{readyz}");
    assert!(
        !readyz.to_string().contains("127.0.0.1"),
        "no address of the store in a public answer: {readyz}"
    );
    app.stop().await.expect("clean shutdown");
}
