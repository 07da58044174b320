//! The conformance story's reads for review and dashboards, the approval transaction, and what
//! retention may delete.

use vigil::ids::{MessageId, RunId};
use vigil::store::*;

use super::{name, t};

/// A finished run of `docs` at `at`, judged `verdict`, with `current` as its capture.
async fn finished(
    store: &dyn InspectStore,
    viewport: &str,
    at: i64,
    verdict: Verdict,
    current: Option<char>,
) -> Run {
    let new = NewRun {
        id: RunId::new(),
        monitor: name("docs"),
        viewport: viewport.into(),
        scheduled_for: t(at),
        trigger: Trigger::Schedule,
        now: t(at),
    };
    let run = store.insert_run(&new).await.unwrap().expect("inserted");
    let outcome = RunOutcome {
        verdict: Some(verdict),
        current_sha256: current.map(|c| c.to_string().repeat(64)),
        ..Default::default()
    };
    assert!(store.complete_run(&run.id, &outcome, t(at + 1)).await.unwrap());
    store.get_run(&run.id).await.unwrap().unwrap()
}

pub async fn review_reads(store: &dyn InspectStore) {
    let docs = name("docs");
    let unchanged = finished(store, "1280x800", 50_000, Verdict::Unchanged, Some('u')).await;
    let failed = finished(store, "1280x800", 51_000, Verdict::Failed, None).await;
    let changed = finished(store, "1280x800", 52_000, Verdict::Changed, Some('x')).await;
    let mobile = finished(store, "390x844", 53_000, Verdict::Changed, Some('y')).await;

    // Failure streaks: the verdict of the run before.
    assert_eq!(
        store.previous_verdict(&docs, "1280x800", changed.created_at).await.unwrap(),
        Some(Verdict::Failed)
    );
    assert_eq!(
        store.previous_verdict(&docs, "1280x800", failed.created_at).await.unwrap(),
        Some(Verdict::Unchanged)
    );
    assert_eq!(store.previous_verdict(&docs, "1280x800", unchanged.created_at).await.unwrap(), None);
    // Unsettled streaks: the verdicts before, newest first, as many as asked for.
    assert_eq!(
        store.previous_verdicts(&docs, "1280x800", mobile.created_at, 5).await.unwrap(),
        [Verdict::Changed, Verdict::Failed, Verdict::Unchanged]
    );
    assert_eq!(
        store.previous_verdicts(&docs, "1280x800", mobile.created_at, 2).await.unwrap(),
        [Verdict::Changed, Verdict::Failed]
    );

    // Changes awaiting review, newest first, by monitor and paginated.
    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_changes(Some(&docs), None, 10).await.unwrap()),
        [mobile.id.clone(), changed.id.clone()]
    );
    assert_eq!(
        ids(store.list_changes(None, Some(mobile.created_at), 10).await.unwrap()),
        std::slice::from_ref(&changed.id)
    );
    assert!(
        store.list_changes(Some(&name("home")), None, 10).await.unwrap().is_empty(),
        "home's change was approved"
    );
    assert_eq!(store.changes_by_monitor().await.unwrap(), [(docs.clone(), 2)]);

    // The dashboard: the newest run of every monitor and viewport.
    let latest = store.latest_runs().await.unwrap();
    let of_docs: Vec<_> = latest.iter().filter(|r| r.monitor == docs).map(|r| r.id.clone()).collect();
    assert_eq!(of_docs, [changed.id.clone(), mobile.id.clone()], "ordered by monitor, viewport");

    // Approval: the newest captured run, then one transaction for the version and the run.
    let pending = NewRun {
        id: RunId::new(),
        monitor: docs.clone(),
        viewport: "1280x800".into(),
        scheduled_for: t(54_000),
        trigger: Trigger::Manual,
        now: t(54_000),
    };
    store.insert_run(&pending).await.unwrap().unwrap();
    let captured = store.latest_captured_run(&docs, "1280x800").await.unwrap().expect("a captured run");
    assert_eq!(captured.id, changed.id, "pending and failed runs have no capture");
    let version = NewBaseline {
        monitor: docs.clone(),
        viewport: "1280x800".into(),
        sha256: "x".repeat(64),
        run_id: Some(changed.id.clone()),
        source: BaselineSource::Api,
        approved_by: "carol".into(),
        now: t(55_000),
    };
    let event = NewDelivery {
        id: MessageId::new(),
        subject: changed.id.to_string(),
        url: "http://127.0.0.1:1/events".into(),
        sender: "ops".into(),
        payload: r#"{"type":"baseline.approved"}"#.into(),
        now: t(55_000),
    };
    let baseline = store.approve_run(&changed.id, &version, std::slice::from_ref(&event)).await.unwrap();
    let queued = store.get_delivery(&event.id).await.unwrap().expect("queued with the approval");
    assert_eq!(queued.sender, "ops");
    assert!(baseline.active);
    assert_eq!(store.current_baseline(&docs, "1280x800").await.unwrap().unwrap().id, baseline.id);
    let approved = store.get_run(&changed.id).await.unwrap().unwrap();
    assert_eq!((approved.verdict, approved.reviewed_by.as_deref()), (Some(Verdict::Approved), Some("carol")));
    assert_eq!(store.changes_by_monitor().await.unwrap(), [(docs.clone(), 1)]);
}

pub async fn retention(store: &dyn InspectStore) {
    let (old, diff, kept) = ("e".repeat(64), "f".repeat(64), "x".repeat(64));
    let run = NewRun {
        id: RunId::new(),
        monitor: name("docs"),
        viewport: "800x600".into(),
        scheduled_for: t(100_000),
        trigger: Trigger::Schedule,
        now: t(100_000),
    };
    store.insert_run(&run).await.unwrap().unwrap();
    let outcome = RunOutcome {
        verdict: Some(Verdict::Unchanged),
        current_sha256: Some(old.clone()),
        diff_sha256: Some(diff.clone()),
        ..Default::default()
    };
    store.complete_run(&run.id, &outcome, t(100_001)).await.unwrap();
    assert!(store.blob_referenced(&old).await.unwrap());
    assert!(!store.blob_referenced(&"0".repeat(64)).await.unwrap());

    // Before the runs that use them: nothing expires.
    assert!(!store.expired_blobs(t(100_000), 1000).await.unwrap().contains(&old));
    let cutoff = t(200_000);
    let expired = store.expired_blobs(cutoff, 1000).await.unwrap();
    assert!(expired.contains(&old) && expired.contains(&diff), "{expired:?}");
    assert!(!expired.contains(&kept), "a baseline's blob never expires");
    assert_eq!(store.expired_blobs(cutoff, 1).await.unwrap().len(), 1, "limited");

    assert!(store.forget_blob(&old, cutoff).await.unwrap());
    let forgotten = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(
        (forgotten.current_sha256, forgotten.verdict),
        (None, Some(Verdict::Unchanged)),
        "the run keeps its verdict"
    );
    assert!(!store.blob_referenced(&old).await.unwrap());
    assert!(!store.forget_blob(&kept, cutoff).await.unwrap(), "in use by a baseline: kept");
    assert!(store.blob_referenced(&kept).await.unwrap());
}
