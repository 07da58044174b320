//! Fault injection against the real binary (issue 7). Each test runs `vigil run` as a
//! subprocess, injects one kind of fault, and ends with an exact accounting read from the
//! database and the fakes: every run has one verdict, every baseline is written once, every
//! alert is posted once. Retry schedules and timeouts are scaled down in the config, never by
//! sleeping.

use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

use crate::helpers::daemon::{
    Daemon, DbProxy, TriplingProxy, browsers_running, free_port, kill_browsers, rows, scalar,
};
use crate::helpers::slack::{BOT_TOKEN, CHANNEL_ID, FakeSlack, HANG};
use crate::helpers::{Backend, TestDb, TestReceiver, TestSite, wait_for};
use crate::monitoring::{TOKEN, page};

/// Long enough for the slowest condition here on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(240);

/// What survives a restart: config file, database, directories, port.
struct Home {
    dir: tempfile::TempDir,
    db: TestDb,
    port: u16,
    config: PathBuf,
}

impl Home {
    async fn new(backend: Backend, body: &str) -> Home {
        let db = TestDb::create(backend).await;
        let url = db.url.clone();
        Self::with_database(db, &url, "", body)
    }

    /// `database_url` may differ from `db.url` (a proxy in between); `server` adds server keys.
    fn with_database(db: TestDb, database_url: &str, server: &str, body: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("vigil.yaml");
        let yaml = format!(
            "server:\n  listen: 127.0.0.1:{port}\n  shutdown_timeout: 2s\n{server}\
             storage:\n  database_url: \"{database_url}\"\n  data_dir: \"{}\"\n  baselines_dir: \"{}\"\n  min_free: 8MiB\n{body}",
            dir.path().join("data").display(),
            dir.path().join("baselines").display(),
        );
        std::fs::write(&config, yaml).unwrap();
        Home { dir, db, port, config }
    }

    async fn start(&self) -> Daemon {
        Daemon::start(&self.config, self.port, &self.data_dir()).await
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn count(&self, sql: &str) -> i64 {
        scalar(&self.db.url, sql).await
    }

    /// Waits until `sql` counts at least `n`; on timeout, fails with the state of the work and
    /// the daemon's last log lines.
    async fn wait_count(&self, d: &Daemon, sql: &str, n: i64) {
        let start = std::time::Instant::now();
        while self.count(sql).await < n {
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {sql} >= {n} (it is {})\n{}\n--- log ---\n{}",
                    self.count(sql).await,
                    self.state().await,
                    d.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where every run, job, delivery and alert stands.
    async fn state(&self) -> String {
        let mut out = Vec::new();
        for sql in [
            "SELECT 'runs ' || status || ' ' || COALESCE(verdict, '-') || ': ' || count(*) FROM runs GROUP BY status, verdict",
            "SELECT 'jobs ' || status || ': ' || count(*) FROM capture_jobs GROUP BY status",
            "SELECT 'deliveries ' || status || ': ' || count(*) FROM webhook_deliveries GROUP BY status",
            "SELECT 'unprocessed webhooks: ' || count(*) FROM received_webhooks WHERE processed_at IS NULL",
            "SELECT 'alert ' || id || ' ' || status || ' attempts ' || attempts || ' channel ' || COALESCE(slack_channel, '-') \
             || ' ts ' || COALESCE(slack_ts, '-') || ' ' || COALESCE(last_error, '') FROM alerts WHERE status <> 'sent'",
            "SELECT 'pending run ' || id || ' ' || monitor || ' job ' || COALESCE(job_id, '-') || ' attempt ' || attempt FROM runs WHERE status = 'pending'",
        ] {
            out.extend(crate::helpers::daemon::rows(&self.db.url, sql).await);
        }
        out.join("\n")
    }
}

/// Config shared by the tests: fast retries and timeouts, Slack on `slack`, monitors on `site`;
/// each change alerted alone (`group_window: 0s`: these count one message per changed page, and
/// their pages change alike; tests/it/groups.rs has grouping).
fn config(slack: &FakeSlack, site: &TestSite, monitors: &[&str]) -> String {
    let mut yaml = format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 2\n  stability_timeout: 0s\n  job_timeout: 8s\n  max_attempts: 2\n  reconcile_after: 5s\n  allow_private: [\"127.0.0.0/8\"]\n\
         webhook:\n  timeout: 2s\n  retry_schedule: [0s, 200ms, 500ms, 1s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: {CHANNEL_ID}\n  api_url: {}/\n  timeout: 1s\n  retry_schedule: [300ms]\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [320x200]\n  full_page: false\n  wait_until: load\n  threshold: 1%\n  timeout: 4s\n  group_window: 0s\n\
         monitors:\n",
        slack.api_url
    );
    for name in monitors {
        yaml.push_str(&format!("  - name: {name}\n    url: {}\n", site.url(name)));
    }
    yaml
}

async fn run_now(d: &Daemon, monitor: &str) -> Result<String, u16> {
    let r = d.client.post(d.url(&format!("/api/monitors/{monitor}/runs"))).bearer_auth(TOKEN).send().await;
    let r = r.unwrap();
    match r.status().as_u16() {
        202 => Ok(r.json::<Value>().await.unwrap()["run_ids"][0].as_str().unwrap().to_owned()),
        other => Err(other),
    }
}

async fn run(d: &Daemon, path: &str) -> Value {
    d.client.get(d.url(path)).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
}

async fn verdict(d: &Daemon, run_id: &str) -> Value {
    wait_for(&format!("a verdict for {run_id}"), DEADLINE, || async {
        let v = run(d, &format!("/api/runs/{run_id}")).await;
        (!v["verdict"].is_null()).then_some(v)
    })
    .await
}

/// Alert ids in the metadata of the messages Slack got.
fn posted_alert_ids(slack: &FakeSlack) -> Vec<String> {
    slack
        .posted()
        .iter()
        .map(|p| p.metadata["event_payload"]["alert_id"].as_str().expect("alert id in metadata").to_owned())
        .collect()
}

fn distinct(items: &[String]) -> usize {
    items.iter().collect::<std::collections::BTreeSet<_>>().len()
}

#[tokio::test]
async fn kill_9_at_three_points_loses_nothing_and_sends_nothing_twice() {
    const N: usize = 50;
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let names: Vec<String> = (0..N).map(|i| format!("m{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for n in &names {
        site.set(n, &page(n, "#0a0"));
    }
    // A third attempt for a capture a loaded machine times out: the story is about the kills.
    let yaml = config(&slack, &site, &refs).replace("max_attempts: 2", "max_attempts: 3");
    let home = Home::new(Backend::Sqlite, &yaml).await;
    // Random points, printed; VIGIL_KILL_POINTS=k1,k2,k3 replays a run.
    let mut rng = rand::rng();
    let (k1, k2, k3) = match std::env::var("VIGIL_KILL_POINTS") {
        Ok(v) => {
            let k: Vec<i64> =
                v.split(',').map(|x| x.trim().parse().expect("VIGIL_KILL_POINTS=k1,k2,k3")).collect();
            (k[0], k[1], k[2] as usize)
        }
        Err(_) => (rng.random_range(3..=15), rng.random_range(20..=35), rng.random_range(5..=35)),
    };
    eprintln!(
        "kill -9 points: {k1} captures done; {k2} runs judged; {k3} alerts posted (VIGIL_KILL_POINTS={k1},{k2},{k3})"
    );

    // Round 1: 50 first runs in flight; each must create its baseline, once.
    let d = home.start().await;
    for n in &names {
        run_now(&d, n).await.unwrap();
    }
    home.wait_count(&d, "SELECT count(*) FROM capture_jobs WHERE status = 'completed'", k1).await;
    d.kill9();
    let d = home.start().await;
    home.wait_count(&d, "SELECT count(*) FROM runs WHERE verdict IS NOT NULL", k2).await;
    d.kill9();
    let d = home.start().await;
    home.wait_count(&d, "SELECT count(*) FROM runs WHERE verdict IS NOT NULL", N as i64).await;
    assert_eq!(home.count("SELECT count(*) FROM runs").await, N as i64, "no run lost or added");
    let others = rows(
        &home.db.url,
        "SELECT monitor || ': ' || verdict || ' ' || COALESCE(error, '') FROM runs WHERE verdict <> 'baseline_created'",
    )
    .await;
    assert!(
        others.is_empty(),
        "every first run makes its baseline: {others:#?}\n--- log ---\n{}",
        d.log_tail()
    );
    assert_eq!(home.count("SELECT count(*) FROM baselines").await, N as i64, "each baseline written once");
    assert_eq!(home.count("SELECT count(DISTINCT monitor) FROM baselines WHERE active").await, N as i64);
    for n in &names {
        let file = home.dir.path().join("baselines").join(n).join("320x200.png");
        assert!(file.is_file(), "{} missing", file.display());
    }

    // Round 2: every page changes; 50 runs, 50 alerts, killed while the alerts go out.
    for n in &names {
        site.set(n, &page(n, "#a00"));
    }
    let mut second = Vec::new();
    for n in &names {
        second.push(run_now(&d, n).await.unwrap());
    }
    wait_for("alerts being posted", DEADLINE, || async { (slack.posted().len() >= k3).then_some(()) }).await;
    d.kill9();
    let d = home.start().await;
    home.wait_count(&d, "SELECT count(*) FROM alerts WHERE status = 'sent'", N as i64).await;

    assert_eq!(home.count("SELECT count(*) FROM runs WHERE verdict IS NULL").await, 0, "every run judged");
    assert_eq!(home.count("SELECT count(*) FROM runs WHERE verdict = 'changed'").await, N as i64);
    assert_eq!(home.count("SELECT count(*) FROM alerts").await, N as i64, "one alert per changed run");
    let ids = posted_alert_ids(&slack);
    assert_eq!((ids.len(), distinct(&ids)), (N, N), "each alert posted exactly once");
    for run_id in &second {
        let with_it =
            slack.posted().iter().filter(|p| p.blocks.to_string().contains(run_id.as_str())).count();
        assert_eq!(with_it, 1, "run {run_id} in {with_it} messages");
    }
    assert!(slack.refused().is_empty(), "{:?}", slack.refused());
    // The profiles of the three killed browsers were cleaned up at the restarts.
    let profiles = std::fs::read_dir(home.data_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("chromium-"))
        .count();
    assert!(profiles <= 1, "{profiles} browser profiles left");
    assert!(d.stop().success());
}

#[tokio::test]
async fn slack_500_429_and_a_timeout_still_post_each_alert_exactly_once() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let names = ["a", "b", "c"];
    for n in names {
        site.set(n, &page(n, "#0a0"));
    }
    let home = Home::new(Backend::Sqlite, &config(&slack, &site, &names)).await;
    let d = home.start().await;
    for n in names {
        let id = run_now(&d, n).await.unwrap();
        assert_eq!(verdict(&d, &id).await["verdict"], "baseline_created");
    }
    // 500, then 429 with Retry-After: 1, then a post Slack makes but never answers (timeout).
    slack.script(&[(500, None), (429, Some(1)), (HANG, None)]);
    for n in names {
        site.set(n, &page(n, "#a00"));
        run_now(&d, n).await.unwrap();
    }
    home.wait_count(&d, "SELECT count(*) FROM alerts WHERE status = 'sent'", 3).await;

    let ids = posted_alert_ids(&slack);
    assert_eq!((ids.len(), distinct(&ids)), (3, 3), "each alert posted exactly once: {ids:?}");
    assert_eq!(slack.failed_calls("chat.postMessage"), 3, "the 500, the 429 and the timeout");
    assert!(slack.calls("conversations.history") >= 1, "the timed-out post was looked up, not repeated");
    assert_eq!(slack.shared().len(), 9, "three images per alert, each shared once");
    assert_eq!(home.count("SELECT count(*) FROM alerts WHERE status <> 'sent'").await, 0);
    assert!(slack.refused().is_empty(), "{:?}", slack.refused());
}

#[tokio::test]
async fn each_webhook_delivered_three_times_at_once_is_processed_once() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let proxy = TriplingProxy::start().await;
    let names = ["a", "b", "c", "d"];
    for n in names {
        site.set(n, &page(n, "#0a0"));
    }
    let db = TestDb::create(Backend::Postgres).await;
    let url = db.url.clone();
    let server = format!("  public_url: {}/\n", proxy.url);
    let home = Home::with_database(db, &url, &server, &config(&slack, &site, &names));
    let d = home.start().await;
    proxy.point_at(&d.base_url);
    let mut runs = Vec::new();
    for n in names {
        runs.push(run_now(&d, n).await.unwrap());
    }
    for r in &runs {
        assert_eq!(verdict(&d, r).await["verdict"], "baseline_created");
    }
    for n in names {
        site.set(n, &page(n, "#a00"));
        runs.push(run_now(&d, n).await.unwrap());
    }
    for r in &runs[names.len()..] {
        assert_eq!(verdict(&d, r).await["verdict"], "changed");
    }
    home.wait_count(&d, "SELECT count(*) FROM alerts WHERE status = 'sent'", 4).await;

    // One webhook per capture job (a changed page is captured twice: retries_on_diff).
    let jobs = home.count("SELECT count(*) FROM capture_jobs").await;
    let answers = proxy.answers.lock().unwrap().clone();
    let mut per_id = std::collections::BTreeMap::<String, Vec<u16>>::new();
    for (id, status) in answers {
        per_id.entry(id).or_default().push(status);
    }
    assert_eq!(per_id.len() as i64, jobs, "{per_id:?}");
    for (id, statuses) in &per_id {
        assert_eq!(statuses.len(), 3, "{id}: {statuses:?}");
        assert!(
            statuses.iter().all(|s| (200..300).contains(s)),
            "duplicates acknowledged: {id}: {statuses:?}"
        );
    }
    assert_eq!(home.count("SELECT count(*) FROM received_webhooks").await, jobs, "each stored once");
    assert_eq!(home.count("SELECT count(*) FROM runs").await, runs.len() as i64);
    assert_eq!(home.count("SELECT count(*) FROM baselines").await, names.len() as i64);
    assert_eq!(home.count("SELECT count(*) FROM alerts").await, names.len() as i64);
    let ids = posted_alert_ids(&slack);
    assert_eq!((ids.len(), distinct(&ids)), (names.len(), names.len()));
}

#[tokio::test]
async fn chromium_killed_mid_capture_is_relaunched_and_the_run_completes() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let home = Home::new(Backend::Sqlite, &config(&slack, &site, &["slow"])).await;
    let d = home.start().await;
    let first = run_now(&d, "slow").await.unwrap();
    // The page takes 1.5 s to answer: kill the browser while it waits.
    wait_for("the capture to start", DEADLINE, || async { (site.hits("slow") >= 1).then_some(()) }).await;
    assert!(kill_browsers(&home.data_dir()), "a Chromium was running");
    assert_eq!(verdict(&d, &first).await["verdict"], "baseline_created");
    assert!(site.hits("slow") >= 2, "the job was tried again");
    assert!(home.count("SELECT max(attempts) FROM capture_jobs").await >= 2);
    // The pool serves the next job with a new browser.
    let second = run_now(&d, "slow").await.unwrap();
    assert_eq!(verdict(&d, &second).await["verdict"], "unchanged");
}

#[tokio::test]
async fn hostile_pages_fail_in_bounded_time_while_the_pool_keeps_serving() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    site.set("plain", &page("plain", "#0a0"));
    site.set(
        "tall",
        "<html><body style='margin:0'><div style='height:20000px;background:linear-gradient(#00f,#f00)'></div></body></html>",
    );
    let base = site.base_url.clone();
    let mut yaml = config(&slack, &site, &["plain"]);
    yaml.push_str(&format!(
        "  - {{name: hang, url: \"{base}/hang\"}}\n  - {{name: loop, url: \"{base}/loop\", timeout: 7s}}\n  \
         - {{name: error, url: \"{base}/status/500\"}}\n  - {{name: missing, url: \"{base}/status/404\"}}\n  \
         - {{name: tall, url: \"{}\", full_page: true, max_height: 4000}}\n  \
         - {{name: down, url: \"http://127.0.0.1:{}/\"}}\n",
        site.url("tall"),
        free_port()
    ));
    let home = Home::new(Backend::Sqlite, &yaml).await;
    let d = home.start().await;
    let hang = run_now(&d, "hang").await.unwrap();
    let rest: Vec<String> = {
        let mut v = Vec::new();
        for m in ["loop", "error", "missing", "tall", "plain", "down"] {
            v.push(run_now(&d, m).await.unwrap());
        }
        v
    };
    let hung = verdict(&d, &hang).await;
    // Chromium gives up a redirect loop after 20 hops, about 2.5 s here when the machine is
    // idle: the loop has 7 s (within job_timeout) so that a loaded machine still sees its error.
    let [looped, error, missing, tall, plain, down] = &rest[..] else { unreachable!() };
    let (looped, error, missing) =
        (verdict(&d, looped).await, verdict(&d, error).await, verdict(&d, missing).await);
    let (tall, plain) = (verdict(&d, tall).await, verdict(&d, plain).await);
    let down = verdict(&d, down).await;

    assert_eq!(
        (hung["verdict"].as_str(), hung["error"]["code"].as_str()),
        (Some("failed"), Some("navigation_timeout")),
        "{hung}"
    );
    assert_eq!(looped["verdict"], "failed", "{looped}");
    assert!(looped["error"]["message"].as_str().unwrap().contains("ERR_TOO_MANY_REDIRECTS"), "{looped}");
    assert_eq!(
        (error["verdict"].as_str(), error["error"]["code"].as_str()),
        (Some("failed"), Some("http_error")),
        "{error}"
    );
    assert!(error["error"]["message"].as_str().unwrap().contains("500"), "{error}");
    assert_eq!(missing["error"]["code"], "http_error", "{missing}");
    // A server that is down is not a 502 (the one vigil's egress proxy answered the browser).
    assert_eq!(down["error"]["code"], "navigation_failed", "{down}");
    let message = down["error"]["message"].as_str().unwrap();
    assert!(message.contains("cannot connect to 127.0.0.1") && message.contains("refused"), "{down}");
    assert_eq!(tall["verdict"], "baseline_created", "{tall}");
    let png =
        d.client.get(d.url(tall["images"]["current"].as_str().unwrap())).bearer_auth(TOKEN).send().await;
    let png = png.unwrap().bytes().await.unwrap();
    let header = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap().info().clone();
    assert_eq!((header.width, header.height), (320, 4000), "cut at max_height");
    assert_eq!(plain["verdict"], "baseline_created");
    // The hanging page held one tab for its timeouts; the other served the rest meanwhile.
    assert!(plain["completed_at"].as_str() < hung["completed_at"].as_str(), "{plain} / {hung}");
    // A 404 is not retried; a 500 is (max_attempts: 2).
    assert_eq!(site.hits("/status/404"), 1);
    assert_eq!(site.hits("/status/500"), 2);
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_delivery_afterwards() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    site.set("p", &page("p", "#00f"));
    let receiver = TestReceiver::start().await;
    // 503 for the first 12 attempts: about 4 failures per job, well within the 14 attempts.
    receiver.script(&[503; 12]);
    let home = Home::new(Backend::Sqlite, &config(&slack, &site, &[])).await;
    let d = home.start().await;
    let mut jobs = Vec::new();
    for i in 0..3 {
        let body = json!({"url": site.url("p"), "viewport": {"width": 200, "height": 100 + i}, "webhook_url": receiver.url});
        let r = d.client.post(d.url("/v1/capture")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 202);
        jobs.push(r.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_owned());
    }
    let all = wait_for("every job delivered", DEADLINE, || async {
        let all = receiver.all();
        let ok = all.iter().filter(|h| h.status == 200).count();
        (ok == jobs.len()).then_some(all)
    })
    .await;
    assert_eq!(all.iter().filter(|h| h.status == 503).count(), 12);
    for job in &jobs {
        let mine: Vec<_> = all
            .iter()
            .filter(|h| serde_json::from_slice::<Value>(&h.body).unwrap()["job_id"] == job.as_str())
            .collect();
        let ids: std::collections::BTreeSet<_> =
            mine.iter().map(|h| h.headers["webhook-id"].clone()).collect();
        assert_eq!(ids.len(), 1, "one message per job, retried under one webhook-id");
        assert_eq!(mine.iter().filter(|h| h.status == 200).count(), 1, "delivered once");
        assert_eq!(mine.last().unwrap().status, 200, "nothing after the success");
    }
    assert_eq!(home.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'dead'").await, 0);
    assert_eq!(home.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'sent'").await, 3);
}

/// The database refuses writes (SQLite locked by another process) or is gone (PostgreSQL cut):
/// requests get 503 and write nothing, a run in flight completes once it is back.
async fn database_outage(home: Home, outage: impl AsyncFnOnce(), recovery: impl AsyncFnOnce()) {
    let d = home.start().await;
    let first = run_now(&d, "home").await.unwrap();
    assert_eq!(verdict(&d, &first).await["verdict"], "baseline_created");

    let in_flight = run_now(&d, "home").await.unwrap();
    outage().await;
    // Refused, not hung: 503 once the busy/acquire timeout (5 s) runs out.
    let refused = run_now(&d, "other").await;
    assert_eq!(refused, Err(503), "{}", d.log_tail());
    recovery().await;
    assert_eq!(verdict(&d, &in_flight).await["verdict"], "unchanged");
    let after = run_now(&d, "other").await.unwrap();
    assert_eq!(verdict(&d, &after).await["verdict"], "baseline_created");
    assert_eq!(home.count("SELECT count(*) FROM runs").await, 3, "the refused request wrote no run");
    assert_eq!(home.count("SELECT count(*) FROM capture_jobs").await, 3, "nor a job");
    assert_eq!(home.count("SELECT count(*) FROM runs WHERE verdict IS NULL").await, 0);
    assert!(d.stop().success());
}

/// Two monitors on a local site for [`database_outage`]: the site, Slack and the config.
async fn outage_setup() -> (TestSite, FakeSlack, String) {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    site.set("home", &page("home", "#0a0"));
    site.set("other", &page("other", "#00a"));
    let yaml = config(&slack, &site, &["home", "other"]);
    (site, slack, yaml)
}

#[tokio::test]
async fn a_locked_sqlite_database_answers_503_and_work_resumes() {
    use sqlx::Connection;
    let (_site, _slack, yaml) = outage_setup().await;
    let home = Home::new(Backend::Sqlite, &yaml).await;
    // Another process holds the write lock (as a backup tool or a `sqlite3` shell can).
    let url = home.db.url.clone();
    let lock = std::sync::Arc::new(tokio::sync::Mutex::new(None::<sqlx::SqliteConnection>));
    let (l1, l2) = (lock.clone(), lock.clone());
    database_outage(
        home,
        async move || {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN EXCLUSIVE").execute(&mut c).await.unwrap();
            *l1.lock().await = Some(c);
        },
        async move || {
            let mut c = l2.lock().await.take().unwrap();
            sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_postgres_answers_503_and_work_resumes() {
    let (_site, _slack, yaml) = outage_setup().await;
    let db = TestDb::create(Backend::Postgres).await;
    let mut url = url::Url::parse(&db.url).unwrap();
    let upstream = tokio::net::lookup_host((url.host_str().unwrap(), url.port().unwrap_or(5432)))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = DbProxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    let home = Home::with_database(db, url.as_str(), "", &yaml);
    let (p1, p2) = (proxy.clone(), proxy.clone());
    database_outage(home, async move || p1.cut(), async move || p2.restore()).await;
}

/// `vigil run --once` stopped by SIGTERM (a CI job's timeout, a supervisor) while a capture is in
/// flight shuts down as the daemon does: it says so, exits 2, and leaves no Chromium running.
/// (Without handlers it died at once and its browser ran on, orphaned, with its renderers.)
/// Its run without a verdict is closed as skipped, so the next pass checks every monitor (it
/// used to find that run pending, start nothing for it, and exit 0); a monitor whose run is
/// still pending elsewhere is not checked, and the pass says so and exits 1.
#[tokio::test]
async fn run_once_stopped_by_sigterm_closes_its_browser() {
    let (stderr, home, site) = run_once_stopped(false).await;
    assert!(stderr.contains("interrupted") && !stderr.contains("exiting now"), "{stderr}");
    // (`home`'s capture may have been judged before the signal, or not.)
    assert!(stderr.contains("without a verdict recorded as skipped (interrupted)"), "{stderr}");
    let interrupted = "SELECT count(*) FROM runs WHERE monitor = 'hang' AND verdict = 'skipped' AND error LIKE '%\"interrupted\"%'";
    assert_eq!(home.count(interrupted).await, 1, "{}", home.state().await);
    assert_eq!(home.count("SELECT count(*) FROM runs WHERE status = 'pending'").await, 0);
    // Its capture job is cancelled: no later daemon on this database captures it for nobody.
    let waiting = "SELECT count(*) FROM capture_jobs WHERE status IN ('queued', 'running')";
    assert_eq!(home.count(waiting).await, 0, "{}", home.state().await);
    let cancelled = "SELECT count(*) FROM capture_jobs WHERE error LIKE '%\"cancelled\"%'";
    assert!(home.count(cancelled).await >= 1, "{}", home.state().await);

    // The next pass, the page answering now: both monitors checked.
    let config = std::fs::read_to_string(&home.config).unwrap();
    std::fs::write(&home.config, config.replace(&format!("{}/hang", site.base_url), &site.url("home")))
        .unwrap();
    let once = || async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["run", "--once", "--config"])
            .arg(&home.config)
            .output()
            .await
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (code, out, err) = once().await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("2 runs in") && !out.contains("not started"), "{out}\n{err}");

    // A run of `home` pending, as if a daemon on this database were capturing it.
    let store = vigil::store::connect_for_inspection(&home.db.url, 1).await.unwrap();
    let now = vigil::time::Timestamp::now();
    let pending = vigil::store::NewRun {
        id: vigil::ids::RunId::new(),
        monitor: "home".parse().unwrap(),
        viewport: "320x200".into(),
        scheduled_for: now,
        trigger: vigil::store::Trigger::Schedule,
        now,
    };
    store.insert_run(&pending).await.unwrap().unwrap();
    let skipped = "SELECT count(*) FROM runs WHERE monitor = 'home' AND verdict = 'skipped'";
    let skipped_before = home.count(skipped).await;
    let (code, out, err) = once().await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    let row = out.lines().find(|l| l.starts_with("home")).unwrap_or_default();
    assert!(row.contains("not started") && row.contains("run pending"), "{out}");
    assert!(out.contains("1 run in") && out.contains("1 monitor not checked"), "{out}");
    // "Run now" refused writes no row (it wrote a skipped one, which hid the real verdict).
    assert_eq!(home.count(skipped).await, skipped_before, "{}", home.state().await);

    // With a second viewport, `home` is started but not whole: still not checked.
    let config = std::fs::read_to_string(&home.config).unwrap();
    let url = format!("url: {}\n", site.url("home"));
    let two = format!("{url}    viewports: [320x200, 400x300]\n");
    std::fs::write(&home.config, config.replacen(&url, &two, 1)).unwrap();
    let (code, out, err) = once().await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    let row = out.lines().find(|l| l.starts_with("home") && l.contains("not started")).unwrap_or_default();
    assert!(row.contains("1 of 2 viewports have a run still pending"), "{out}");
    assert!(out.contains("2 runs in") && out.contains("1 monitor not checked"), "{out}");
}

/// A second SIGTERM while the pass shuts down (here it would wait up to a minute for the capture
/// in hand) exits at once, and still leaves no Chromium running.
#[tokio::test]
async fn run_once_exits_at_once_on_a_second_signal() {
    let (stderr, ..) = run_once_stopped(true).await;
    assert!(stderr.contains("second signal; exiting now"), "{stderr}");
}

/// Runs `vigil run --once` on a page that never answers, sends SIGTERM once the capture is in
/// flight (twice with `second`), and checks the exit: code 2, no browser left. Its stderr, and
/// where it ran.
async fn run_once_stopped(second: bool) -> (String, Home, TestSite) {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let mut yaml = config(&slack, &site, &["home"]);
    yaml.push_str(&format!("  - {{name: hang, url: \"{}/hang\"}}\n", site.base_url));
    let home = Home::new(Backend::Sqlite, &yaml).await;
    if second {
        let config = std::fs::read_to_string(&home.config).unwrap();
        std::fs::write(&home.config, config.replace("shutdown_timeout: 2s", "shutdown_timeout: 60s"))
            .unwrap();
    }
    site.set("home", &page("home", "rgb(255,0,0)"));
    // Whatever happens below, no browser of this test outlives it.
    struct Reap(PathBuf);
    impl Drop for Reap {
        fn drop(&mut self) {
            kill_browsers(&self.0);
        }
    }
    let _reap = Reap(home.data_dir());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--once", "--config"])
        .arg(&home.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let reader = tokio::spawn({
        let lines = lines.clone();
        async move {
            let mut line = String::new();
            while tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line).await.is_ok_and(|n| n > 0) {
                lines.lock().unwrap().push_str(&std::mem::take(&mut line));
            }
        }
    });
    // The page never answers: the browser is up and the capture in flight.
    wait_for("the capture to start", DEADLINE, || async { (site.hits("/hang") >= 1).then_some(()) }).await;
    assert!(browsers_running(&home.data_dir()), "a Chromium is running");
    let pid = child.id().unwrap().to_string();
    let term =
        || assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    term();
    if second {
        wait_for("the first signal taken", DEADLINE, || async {
            lines.lock().unwrap().contains("interrupted").then_some(())
        })
        .await;
        term();
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("exits").unwrap();
    reader.await.unwrap();
    let stderr = lines.lock().unwrap().clone();
    assert_eq!(status.code(), Some(2), "{stderr}");
    wait_for("no Chromium left", Duration::from_secs(10), || async {
        (!browsers_running(&home.data_dir())).then_some(())
    })
    .await;
    (stderr, home, site)
}

/// vigil killed with SIGKILL outside a service manager leaves its Chromium running, orphaned
/// (nothing can run in a process killed so). The next start kills that browser before it removes
/// the profile (it used to remove the profile only: the browser ran on for good, with its 200 MB).
#[tokio::test]
async fn a_browser_left_by_a_killed_daemon_is_killed_at_the_next_start() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let home = Home::new(Backend::Sqlite, &config(&slack, &site, &["slow"])).await;
    struct Reap(PathBuf);
    impl Drop for Reap {
        fn drop(&mut self) {
            kill_browsers(&self.0);
        }
    }
    let _reap = Reap(home.data_dir());
    let d = home.start().await;
    let killed = d.pid();
    run_now(&d, "slow").await.unwrap();
    wait_for("the capture to start", DEADLINE, || async { (site.hits("slow") >= 1).then_some(()) }).await;
    d.kill9_alone();
    let orphans = format!("user-data-dir={}/chromium-{killed}-", home.data_dir().display());
    let running = |pattern: &str| {
        std::process::Command::new("pgrep").args(["-f", pattern]).output().unwrap().status.success()
    };
    assert!(running(&orphans), "the killed vigil's browser runs on");
    let d = home.start().await;
    wait_for("the orphaned browser killed", DEADLINE, || async { (!running(&orphans)).then_some(()) }).await;
    assert!(
        d.log_lines().iter().any(|l| l.contains("killed a browser left running by a vigil that was killed")),
        "{}",
        d.log_tail()
    );
    assert!(d.stop().success());
}

/// The daemon stopped by SIGTERM while a capture is in flight closes its browser too.
#[tokio::test]
async fn the_daemon_stopped_by_sigterm_closes_its_browser() {
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    let home = Home::new(Backend::Sqlite, &config(&slack, &site, &["slow"])).await;
    let d = home.start().await;
    run_now(&d, "slow").await.unwrap();
    wait_for("the capture to start", DEADLINE, || async { (site.hits("slow") >= 1).then_some(()) }).await;
    assert!(browsers_running(&home.data_dir()), "a Chromium is running");
    assert!(d.stop().success());
    let gone = async {
        while browsers_running(&home.data_dir()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let gone = tokio::time::timeout(Duration::from_secs(10), gone).await;
    kill_browsers(&home.data_dir());
    assert!(gone.is_ok(), "a Chromium outlived the daemon by 10 s");
}
