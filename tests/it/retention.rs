//! Retention as an operator meets it: old captures and diffs go, baselines stay.

use std::time::Duration;

use vigil::ids::RunId;
use vigil::store::{NewRun, Trigger};
use vigil::time::Timestamp;

use crate::helpers::slack::FakeSlack;
use crate::helpers::{Backend, TestApp, TestSite, wait_for};
use crate::monitoring::{api, config, page, run_now, verdict_of};

/// Captures and diffs older than `storage.retention` are deleted at start (and hourly);
/// baselines, and blobs something newer still uses, stay.
#[tokio::test]
async fn old_captures_are_pruned_and_baselines_kept_sqlite() {
    pruning(Backend::Sqlite).await;
}

#[tokio::test]
async fn old_captures_are_pruned_and_baselines_kept_postgres() {
    pruning(Backend::Postgres).await;
}

async fn pruning(backend: Backend) {
    let site = TestSite::start().await;
    site.set("home", &page("home", "rgb(255,0,0)"));
    let slack = FakeSlack::start().await;
    let yaml = config(&site, &slack, "");
    let yaml = &yaml[..yaml.find("  - name: pricing").unwrap()];
    let app = TestApp::spawn(backend, yaml).await;
    let first = verdict_of(&app, &run_now(&app, "home").await).await;
    assert_eq!(first["verdict"], "baseline_created");
    let store = vigil::store::connect_for_inspection(&app.db.url, 1).await.unwrap();
    let blobs = vigil::store::blobs::FileBlobs::new(&app.data_dir());
    let baseline = store.current_baseline(&"home".parse().unwrap(), "320x200").await.unwrap().unwrap().sha256;
    let old_capture = blobs.put(b"an old capture").unwrap();
    let old_diff = blobs.put(b"an old diff").unwrap();
    let shared = blobs.put(b"a capture an old and a new run share").unwrap();
    let forty_days_ago = Timestamp::now().minus(Duration::from_secs(40 * 24 * 3600));
    let add_run = async |created: Timestamp, current: &str, diff: Option<&str>| {
        let run = store
            .insert_run(&NewRun {
                id: RunId::new(),
                monitor: "home".parse().unwrap(),
                viewport: "320x200".into(),
                scheduled_for: created,
                trigger: Trigger::Schedule,
                now: created,
            })
            .await
            .unwrap()
            .unwrap();
        let outcome = vigil::store::RunOutcome {
            verdict: Some(vigil::store::Verdict::Changed),
            current_sha256: Some(current.into()),
            baseline_sha256: Some(baseline.clone()),
            diff_sha256: diff.map(Into::into),
            diff_pixels: Some(10),
            ..Default::default()
        };
        store.complete_run(&run.id, &outcome, created).await.unwrap();
        run.id
    };
    let expired = add_run(forty_days_ago, &old_capture, Some(&old_diff)).await;
    // (Distinct ticks: a run is unique per monitor, viewport and tick.)
    let same_as_baseline = add_run(forty_days_ago.plus(Duration::from_secs(1)), &baseline, None).await;
    add_run(forty_days_ago.plus(Duration::from_secs(2)), &shared, None).await;
    add_run(Timestamp::now(), &shared, None).await;
    // Files no row refers to: an old orphan (a crash between forgetting and deleting, a capture
    // replaced before it was recorded) and an interrupted write go; a new orphan stays (it may be
    // about to be recorded). The baseline's file is as old, and stays.
    let orphan = blobs.put(b"an old capture nothing refers to").unwrap();
    let new_orphan = blobs.put(b"a capture about to be recorded").unwrap();
    let age = |path: &std::path::Path| {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(40 * 24 * 3600)).unwrap();
    };
    age(&blobs.path(&orphan).unwrap());
    age(&blobs.path(&baseline).unwrap());
    // Written when their runs were (an expired blob that was stored again since stays).
    age(&blobs.path(&old_capture).unwrap());
    age(&blobs.path(&old_diff).unwrap());
    let tmp = blobs.path(&orphan).unwrap().with_file_name(".tmp-interrupted");
    std::fs::write(&tmp, b"half a capture").unwrap();
    age(&tmp);

    // The pruner runs at start.
    let (db, dir) = app.kill().await;
    let app = TestApp::spawn_on(db, dir, yaml).await;
    wait_for("the old capture and diff deleted", Duration::from_secs(20), || async {
        (!blobs.contains(&old_capture) && !blobs.contains(&old_diff)).then_some(())
    })
    .await;
    wait_for("the orphans deleted", Duration::from_secs(20), || async {
        (!blobs.contains(&orphan) && !tmp.exists()).then_some(())
    })
    .await;
    assert!(blobs.contains(&new_orphan), "a recent file stays");
    assert!(blobs.contains(&baseline), "a baseline is never pruned");
    assert!(blobs.contains(&shared), "a blob a recent run uses stays");
    let (_, run) = api(&app, reqwest::Method::GET, &format!("/api/runs/{expired}")).await;
    assert_eq!((run["verdict"].as_str(), run["diff_pixels"].as_i64()), (Some("changed"), Some(10)), "{run}");
    assert!(run["images"]["current"].is_null() && run["images"]["diff"].is_null(), "{run}");
    let (_, run) = api(&app, reqwest::Method::GET, &format!("/api/runs/{same_as_baseline}")).await;
    assert!(!run["images"]["current"].is_null(), "still the baseline's blob: {run}");
}
