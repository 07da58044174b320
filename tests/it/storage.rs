//! A full disk (issue 19): vigil's whole working directory (SQLite database, `data_dir`,
//! `baselines_dir`) on a small tmpfs that the test fills while runs are in flight, first below
//! the low-water mark, then to the last byte, and frees again. Mounting needs root; as another
//! user the test says so and passes without running.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use vigil::disk::{FileSystem, Probe};

use crate::helpers::daemon::{Daemon, free_port, rows, scalar};
use crate::helpers::pg::is_root;
use crate::helpers::slack::{BOT_TOKEN, CHANNEL_ID, FakeSlack};
use crate::helpers::{TestSite, wait_for};
use crate::monitoring::{TOKEN, page};

const DEADLINE: Duration = Duration::from_secs(120);
/// `capture.run_deadline` of the test: above its floor (job_timeout × max_attempts + 2 ×
/// reconcile_after = 8 s × 2 + 2 × 2 s).
const RUN_DEADLINE: Duration = Duration::from_secs(25);

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Volume {
    dir: tempfile::TempDir,
}

impl Volume {
    fn mount(size: &str) -> Option<Volume> {
        if !is_root() {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed");
        Some(Volume { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        FileSystem.space(self.path()).unwrap().free
    }

    /// Writes a filler file until only `leave` bytes are free (0: until the volume refuses).
    fn fill(&self, name: &str, leave: u64) -> PathBuf {
        let path = self.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0x5a; 64 * 1024];
        loop {
            let free = self.free();
            if leave > 0 && free <= leave {
                break;
            }
            let n = if leave > 0 { chunk.len().min((free - leave) as usize) } else { chunk.len() };
            if f.write_all(&chunk[..n]).and_then(|()| f.flush()).is_err() {
                // Full: the last bytes of a partial chunk, then stop.
                let byte = [0u8; 1];
                while f.write_all(&byte).is_ok() {}
                break;
            }
        }
        path
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

async fn run_now(d: &Daemon, monitor: &str) -> (u16, Value) {
    let r = d
        .client
        .post(d.url(&format!("/api/monitors/{monitor}/runs")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let r = d.client.get(d.url(path)).bearer_auth(TOKEN).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn done(d: &Daemon, run: &str, within: Duration) -> Value {
    wait_for(&format!("run {run} to finish\n{}", d.log_tail()), within, || async {
        let (_, v) = get(d, &format!("/api/runs/{run}")).await;
        (v["status"] == "done").then_some(v)
    })
    .await
}

fn posted_text(slack: &FakeSlack, needle: &str) -> usize {
    slack.posted().iter().filter(|p| p.text.contains(needle)).count()
}

#[tokio::test]
async fn a_full_disk_is_seen_survived_and_recovered_from_without_a_person() {
    let Some(volume) = Volume::mount("24m") else { return };
    let site = TestSite::start().await;
    let slack = FakeSlack::start().await;
    for (name, colour) in [("home", "#0a0"), ("slow", "#00a"), ("ticker", "#a00")] {
        site.set(name, &page(name, colour));
    }
    let port = free_port();
    let root = volume.path();
    let db_url = format!("sqlite://{}/vigil.db", root.display());
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:{port}\n  shutdown_timeout: 2s\n\
         storage:\n  database_url: \"{db_url}\"\n  data_dir: \"{root}/data\"\n  baselines_dir: \"{root}/baselines\"\n  min_free: 4MiB\n\
         auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 1\n  stability_timeout: 0s\n  job_timeout: 8s\n  max_attempts: 2\n  reconcile_after: 2s\n  run_deadline: 25s\n  allow_private: [\"127.0.0.0/8\"]\n\
         slack:\n  bot_token: {BOT_TOKEN}\n  channel: {CHANNEL_ID}\n  api_url: {}/\n  timeout: 1s\n  retry_schedule: [300ms]\n\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [320x200]\n  full_page: false\n  wait_until: load\n  threshold: 1%\n  timeout: 4s\n\
         monitors:\n  - name: home\n    url: {}\n  - name: slow\n    url: {}\n  - name: ticker\n    url: {}\n    schedule: \"*/2 * * * * *\"\n",
        slack.api_url,
        site.url("home"),
        site.url("slow"),
        site.url("ticker"),
        root = root.display(),
    );
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("vigil.yaml");
    std::fs::write(&config, yaml).unwrap();
    let d = Daemon::start(&config, port, &root.join("data")).await;

    let (status, body) = run_now(&d, "home").await;
    assert_eq!(status, 202, "{body}");
    let first = body["run_ids"][0].as_str().unwrap().to_owned();
    assert_eq!(done(&d, &first, DEADLINE).await["verdict"], "baseline_created");
    let baseline_file = root.join("baselines/home/320x200.png");
    let baseline = std::fs::read(&baseline_file).unwrap();
    let mut accepted = vec![first];

    // The volume fills to the last byte while a capture is in flight (the page takes 1.5 s).
    let (status, body) = run_now(&d, "slow").await;
    assert_eq!(status, 202, "{body}");
    let in_flight = body["run_ids"][0].as_str().unwrap().to_owned();
    accepted.push(in_flight.clone());
    let below = volume.fill("filler-1", 1 << 20);
    let full = volume.fill("filler-2", 0);
    assert!(volume.free() < 64 * 1024, "the volume is full ({} bytes free)", volume.free());
    let readiness = wait_for("/readyz to name storage", DEADLINE, || async {
        let r = d.client.get(d.url("/readyz")).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        // (The database's write check may say `storage_full` a moment before the volume
        // check, every 5 s, names the volume: wait for the volume.)
        (status == 503 && v["storage"]["status"] != "ok").then_some(v)
    })
    .await;
    assert_eq!(readiness["storage"]["status"], "storage_low", "{readiness}");
    assert!(
        readiness["storage"]["message"].as_str().unwrap().contains("below the 4.0 MiB mark"),
        "{readiness}"
    );
    let (status, body) = run_now(&d, "home").await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("storage_low")), "{body}");
    wait_for("the operator notice", DEADLINE, || async {
        (posted_text(&slack, "low on space") == 1).then_some(())
    })
    .await;
    let capture = serde_json::json!({"url": site.url("home")});
    let r = d.client.post(d.url("/v1/capture")).bearer_auth(TOKEN).json(&capture).send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("storage_low")),
        "the capture API too: {body}"
    );
    let metrics = d.client.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vigil_storage_free_bytes{volume=\"data\"}"), "{metrics}");
    assert!(metrics.contains("vigil_storage_healthy{volume=\"data\"} 0"), "{metrics}");
    // Whatever was in flight ends within its deadline, with the disk still full.
    let pending = rows(&db_url, "SELECT id FROM runs WHERE status = 'pending'").await;
    for run in pending.iter().chain([&in_flight]) {
        let v = done(&d, run, RUN_DEADLINE + DEADLINE).await;
        eprintln!("run {run} in flight when the disk filled: {} {}", v["verdict"], v["error"]);
        match v["verdict"].as_str() {
            Some("unchanged" | "baseline_created" | "skipped") => {}
            Some("failed") => {
                let code = v["error"]["code"].as_str().unwrap_or_default().to_owned();
                assert!(["storage_full", "storage_error"].contains(&code.as_str()), "{v}");
            }
            other => panic!("run {run} ended {other:?}: {v}"),
        }
    }

    // Some space back, still below the mark: ticks are recorded as skipped, not captured.
    std::fs::remove_file(full).unwrap();
    wait_for("a tick recorded as skipped", DEADLINE, || async {
        let n = scalar(
            &db_url,
            "SELECT count(*) FROM runs WHERE verdict = 'skipped' AND error LIKE '%storage_low%'",
        )
        .await;
        (n > 0).then_some(())
    })
    .await;
    assert_eq!(d.client.get(d.url("/readyz")).send().await.unwrap().status(), 503);
    assert_eq!(posted_text(&slack, "low on space"), 1, "one notice, however long it lasts");

    // Space returns: within a minute vigil is ready, says so, and captures again.
    std::fs::remove_file(below).unwrap();
    let recovered_at = d.log_lines().len();
    let space_back = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    wait_for("/readyz 200 after the space returned", Duration::from_secs(60), || async {
        let r = d.client.get(d.url("/readyz")).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
    wait_for("the recovery notice", Duration::from_secs(60), || async {
        (posted_text(&slack, "storage recovered") == 1).then_some(())
    })
    .await;
    let (status, body) = run_now(&d, "home").await;
    assert_eq!(status, 202, "{body}");
    let after = body["run_ids"][0].as_str().unwrap().to_owned();
    assert_eq!(done(&d, &after, Duration::from_secs(60)).await["verdict"], "unchanged");
    accepted.push(after);

    // Nothing acknowledged was lost, nothing stays pending, nothing is damaged.
    for run in &accepted {
        assert_eq!(get(&d, &format!("/api/runs/{run}")).await.0, 200, "run {run} answered 202 is readable");
    }
    // Every run started before the space came back (the ticker's too) has ended.
    let stuck = format!("SELECT count(*) FROM runs WHERE status = 'pending' AND created_at < {space_back}");
    wait_for("no run left pending from the full disk", RUN_DEADLINE + DEADLINE, || async {
        (scalar(&db_url, &stuck).await == 0).then_some(())
    })
    .await;
    let summary = rows(
        &db_url,
        "SELECT monitor || ' ' || COALESCE(verdict, 'pending') || ' ' || COALESCE(json_extract(error, '$.code'), '') || ': ' || count(*) \
         FROM runs GROUP BY monitor, verdict, json_extract(error, '$.code')",
    )
    .await;
    eprintln!("runs:\n{}", summary.join("\n"));
    let errors: Vec<String> = d.log_lines()[recovered_at..]
        .iter()
        .filter(|l| l.contains("database_error") || l.contains("InvalidSavePoint"))
        .cloned()
        .collect();
    assert!(errors.is_empty(), "database errors after the recovery:\n{}", errors.join("\n"));
    assert!(d.stop().success());
    let check = rows(&db_url, "PRAGMA integrity_check").await;
    assert_eq!(check, ["ok"]);
    assert_eq!(std::fs::read(&baseline_file).unwrap(), baseline, "the approved baseline is intact");
    let active = scalar(&db_url, "SELECT count(*) FROM baselines WHERE active AND monitor = 'home'").await;
    assert_eq!(active, 1);
}

/// A write whose COMMIT fails on a full disk can leave its connection inside a transaction
/// (SQLite rolls back by itself, sqlx still counts one open). With a pool of one connection, that
/// connection is the next writer's: it must have been closed, not handed back.
#[tokio::test]
async fn a_write_that_failed_on_a_full_disk_leaves_no_broken_connection_behind() {
    use vigil::store::MonitorUpsert;
    let Some(volume) = Volume::mount("2m") else { return };
    let url = format!("sqlite://{}/vigil.db", volume.path().display());
    let store = vigil::store::connect(&url, 1).await.unwrap();
    let monitors = |prefix: &str, n: usize| -> Vec<MonitorUpsert> {
        (0..n)
            .map(|j| MonitorUpsert {
                name: format!("{prefix}-{j}").parse().unwrap(),
                url: "https://example.com/".into(),
                config: "x".repeat(4000),
                enabled: true,
            })
            .collect()
    };
    let filler = volume.fill("filler", 256 << 10);
    let mut failures = Vec::new();
    for i in 0..200 {
        if let Err(e) =
            store.sync_monitors(&monitors(&format!("m{i}"), 20), vigil::time::Timestamp::now()).await
        {
            failures.push(e.code());
            if failures.len() == 3 {
                break;
            }
        }
    }
    assert_eq!(failures, ["storage_full"; 3], "writes on a full disk fail as storage_full");
    std::fs::remove_file(filler).unwrap();
    store
        .sync_monitors(&monitors("after", 1), vigil::time::Timestamp::now())
        .await
        .expect("a write once space is back");
    // Committed, not stuck in a transaction only that connection sees.
    assert_eq!(scalar(&url, "SELECT count(*) FROM monitors WHERE name = 'after-0'").await, 1);
    store.close().await;
}
