//! The storage conformance story: every `Store` method, in the order the daemon uses them,
//! run on a fresh SQLite database and a fresh PostgreSQL database.

use std::sync::Arc;
use std::time::Duration;

use vigil::config::MonitorName;
use vigil::ids::{AlertId, AssetId, JobId, MessageId, RunId};
use vigil::store::*;
use vigil::time::Timestamp;

use crate::helpers::{Backend, TestDb};

mod reads;

pub fn name(s: &str) -> MonitorName {
    s.parse().unwrap()
}

pub fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000 + ms)
}

async fn story(backend: Backend) {
    let db = TestDb::create(backend).await;
    let store = vigil::store::connect_for_inspection(&db.url, 5).await.expect("connect and migrate");
    assert_eq!(store.backend() == vigil::store::Backend::Postgres, backend == Backend::Postgres);
    store.ping().await.unwrap();
    store.check_writable(Timestamp::now()).await.unwrap();
    store.check_writable(Timestamp::now()).await.unwrap(); // the one row is updated, not added
    let depths = store.queue_depths().await.unwrap();
    assert_eq!(depths.len(), 6);
    assert!(depths.iter().all(|(_, n)| *n == 0), "a fresh database has no work: {depths:?}");
    // Migrations are idempotent: connecting again is fine.
    let again = vigil::store::connect_for_inspection(&db.url, 1).await.expect("second connect");
    again.close().await;

    replicas_starting_together(&db.url).await;
    monitors(&*store).await;
    runs(&*store).await;
    jobs(&*store).await;
    concurrent_claims(store.clone()).await;
    deliveries(&*store).await;
    sessions(&*store).await;
    received(&*store).await;
    let depth = |depths: Vec<(&str, i64)>, q: &str| depths.into_iter().find(|(n, _)| *n == q).unwrap().1;
    assert_eq!(depth(store.queue_depths().await.unwrap(), "webhooks_unprocessed"), 2);
    assert_eq!(depth(store.queue_depths().await.unwrap(), "deliveries_dead"), 0);
    results_judged_once(&db.url).await;
    baselines(&*store).await;
    alerts(&*store).await;
    reads::review_reads(&*store).await;
    reads::retention(&*store).await;
    alert_groups(&*store).await;
    ignores(&*store).await;
    masks(&*store).await;
    store.close().await;
}

/// Three replicas starting at once on a fresh database each record the same monitors: none
/// fails (issue 14 saw `duplicate key … monitors_pkey` in 3 of 6 trials), and each monitor is
/// one row. The rows are removed again for the rest of the story.
async fn replicas_starting_together(url: &str) {
    let monitors: Vec<MonitorUpsert> = (0..20)
        .map(|i| MonitorUpsert {
            name: name(&format!("replica-{i:02}")),
            url: format!("https://example.com/{i}"),
            config: "{}".into(),
            enabled: true,
        })
        .collect();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(vigil::store::connect_for_inspection(url, 2).await.unwrap());
    }
    let syncs = replicas.iter().map(|r| r.sync_monitors(&monitors, Timestamp::now()));
    let summaries = futures_util::future::join_all(syncs).await;
    let added: u64 = summaries.into_iter().map(|s| s.expect("every replica starts").added).sum();
    assert_eq!(added, 20, "each monitor added once, by whichever replica came first");
    let summary = replicas[0].sync_monitors(&[], Timestamp::now()).await.unwrap();
    assert_eq!(summary.removed, 20);
    for r in replicas {
        r.close().await;
    }
}

async fn monitors(store: &dyn InspectStore) {
    let m = |n: &str, url: &str| MonitorUpsert {
        name: name(n),
        url: url.into(),
        config: format!("{{\"url\":\"{url}\"}}"),
        enabled: true,
    };
    let s = store.sync_monitors(&[m("home", "https://a/"), m("docs", "https://b/")], t(0)).await.unwrap();
    assert_eq!(s, SyncSummary { added: 2, updated: 0, removed: 0 });
    // Mutes: in force until their time, replaced by a second one, ended at once by unmute.
    let mute = Mute { monitor: name("home"), until: t(1000), muted_by: "alice".into(), created_at: t(0) };
    store.mute(&mute).await.unwrap();
    assert_eq!(store.mute_of(&name("home"), t(999)).await.unwrap().as_ref(), Some(&mute));
    assert_eq!(store.mute_of(&name("home"), t(1000)).await.unwrap(), None, "over at its time");
    assert_eq!(store.mute_of(&name("docs"), t(0)).await.unwrap(), None);
    assert_eq!(store.active_mutes(t(999)).await.unwrap().as_slice(), std::slice::from_ref(&mute));
    assert!(store.active_mutes(t(1000)).await.unwrap().is_empty());
    let longer = Mute { until: t(5000), muted_by: "bob".into(), ..mute.clone() };
    store.mute(&longer).await.unwrap();
    assert_eq!(store.mute_of(&name("home"), t(1000)).await.unwrap().map(|m| m.muted_by), Some("bob".into()));
    assert!(store.unmute(&name("home")).await.unwrap());
    assert!(!store.unmute(&name("home")).await.unwrap(), "nothing left to end");
    assert_eq!(store.mute_of(&name("home"), t(0)).await.unwrap(), None);
    // Same config again: nothing changes.
    let s = store.sync_monitors(&[m("home", "https://a/"), m("docs", "https://b/")], t(1)).await.unwrap();
    assert_eq!(s, SyncSummary::default());
    let s = store.sync_monitors(&[m("home", "https://a2/")], t(2)).await.unwrap();
    assert_eq!(s, SyncSummary { added: 0, updated: 1, removed: 1 });
    // What replicas compare their definitions with: the last one written; none for a removed one.
    assert_eq!(
        store.monitor_config(&name("home")).await.unwrap().as_deref(),
        Some("{\"url\":\"https://a2/\"}")
    );
    assert_eq!(store.monitor_config(&name("docs")).await.unwrap(), None);
    let listed = store.list_monitors().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].url, "https://a2/");
    assert_eq!(listed[0].created_at, t(0));
    assert_eq!(listed[0].updated_at, t(2));
    let docs = store.get_monitor(&name("docs")).await.unwrap().expect("removed monitors keep their row");
    assert_eq!(docs.removed_at, Some(t(2)));
    // Coming back clears removed_at.
    let s = store.sync_monitors(&[m("home", "https://a2/"), m("docs", "https://b/")], t(3)).await.unwrap();
    assert_eq!(s, SyncSummary { added: 0, updated: 1, removed: 0 });
    assert_eq!(store.get_monitor(&name("docs")).await.unwrap().unwrap().removed_at, None);
    assert!(store.get_monitor(&name("nope")).await.unwrap().is_none());
}

async fn runs(store: &dyn InspectStore) {
    let new = |vp: &str, at: i64| NewRun {
        id: RunId::new(),
        monitor: name("home"),
        viewport: vp.into(),
        scheduled_for: t(at),
        trigger: Trigger::Schedule,
        now: t(at),
    };
    let first = new("1280x800", 1000);
    let run = store.insert_run(&first).await.unwrap().expect("inserted");
    assert_eq!((run.status, run.verdict, run.attempt), (RunStatus::Pending, None, 0));
    // The same tick again (another replica): a no-op.
    assert!(store.insert_run(&new("1280x800", 1000)).await.unwrap().is_none());
    // Another viewport of the same tick is its own run.
    let mobile = store.insert_run(&new("390x844", 1000)).await.unwrap().expect("other viewport");
    assert!(store.pending_run_exists(&name("home"), "1280x800").await.unwrap());
    assert!(!store.pending_run_exists(&name("home"), "800x600").await.unwrap());

    let job = JobId::new();
    assert!(store.set_run_job(&run.id, &job, t(1001)).await.unwrap());
    assert_eq!(store.run_for_job(&job).await.unwrap().unwrap().id, run.id);
    let job2 = JobId::new();
    assert!(store.recapture_run(&run.id, &job2, t(1002)).await.unwrap());
    let r = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!((r.attempt, r.job_id.as_ref()), (1, Some(&job2)));

    // Stale pending runs, oldest first, for the reconciler.
    let stale = store.stale_pending_runs(t(1002), 10).await.unwrap();
    assert_eq!(stale.iter().map(|r| &r.id).collect::<Vec<_>>(), [&mobile.id]);

    let outcome = RunOutcome {
        verdict: Some(Verdict::Changed),
        current_sha256: Some("c".repeat(64)),
        baseline_sha256: Some("b".repeat(64)),
        diff_sha256: Some("d".repeat(64)),
        diff_pixels: Some(1234),
        total_pixels: Some(1_024_000),
        diff_ratio: Some(0.0012),
        size_changed: Some(false),
        regions: Some(r#"[{"x":1,"y":2,"width":3,"height":4}]"#.into()),
        text_changes: Some(r#"[{"region":{"x":1,"y":2,"width":3,"height":4},"text":[]}]"#.into()),
        pages: Some(r#"{"before":2,"after":3,"changed":[3]}"#.into()),
        stable: Some(false),
        clipped: Some(true),
        error: None,
    };
    assert!(store.complete_run(&run.id, &outcome, t(2000)).await.unwrap());
    // Processing the same webhook twice cannot record two verdicts.
    assert!(
        !store
            .complete_run(
                &run.id,
                &RunOutcome { verdict: Some(Verdict::Unchanged), ..Default::default() },
                t(2001)
            )
            .await
            .unwrap()
    );
    let done = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Done);
    assert_eq!(done.verdict, Some(Verdict::Changed));
    assert_eq!(done.diff_pixels, Some(1234));
    assert_eq!(done.diff_ratio, Some(0.0012));
    assert_eq!(done.size_changed, Some(false));
    assert_eq!(done.regions.as_deref(), outcome.regions.as_deref());
    assert_eq!(done.text_changes.as_deref(), outcome.text_changes.as_deref());
    assert_eq!(done.pages.as_deref(), outcome.pages.as_deref());
    assert_eq!((done.stable, done.clipped), (Some(false), Some(true)));
    assert_eq!(done.completed_at, Some(t(2000)));
    assert!(!store.pending_run_exists(&name("home"), "1280x800").await.unwrap());
    assert!(!store.set_run_job(&run.id, &JobId::new(), t(2002)).await.unwrap(), "done runs take no new job");

    assert!(store.review_run(&run.id, Verdict::Approved, "alice", t(3000)).await.unwrap());
    let reviewed = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!((reviewed.verdict, reviewed.reviewed_by.as_deref()), (Some(Verdict::Approved), Some("alice")));
    assert!(
        !store.review_run(&run.id, Verdict::Rejected, "bob", t(3001)).await.unwrap(),
        "an approved run is not rejected behind the approver's back"
    );
    assert!(
        !store.review_run(&mobile.id, Verdict::Approved, "alice", t(3000)).await.unwrap(),
        "pending runs cannot be reviewed"
    );

    // Listing: newest first, paginated by creation time.
    for i in 0..3 {
        store.insert_run(&new("1280x800", 5000 + i)).await.unwrap().unwrap();
    }
    let page = store.list_runs(&name("home"), None, 2).await.unwrap();
    assert_eq!(page.iter().map(|r| r.scheduled_for).collect::<Vec<_>>(), [t(5002), t(5001)]);
    let next = store.list_runs(&name("home"), Some(page[1].created_at), 10).await.unwrap();
    assert_eq!(next.len(), 3);
    assert_eq!(next[0].scheduled_for, t(5000));
    assert!(store.list_runs(&name("docs"), None, 10).await.unwrap().is_empty());

    // A tick skipped for the disk: done at once with its reason, never pending; the same tick
    // again is a no-op; it is no verdict to compare against.
    let skip = store.insert_skipped_run(&new("1280x800", 9000), r#"{"code":"storage_low"}"#).await.unwrap();
    let skip = skip.expect("recorded");
    assert_eq!(
        (skip.status, skip.verdict, skip.completed_at),
        (RunStatus::Done, Some(Verdict::Skipped), Some(t(9000)))
    );
    assert_eq!(skip.error.as_deref(), Some(r#"{"code":"storage_low"}"#));
    assert!(store.insert_skipped_run(&new("1280x800", 9000), "{}").await.unwrap().is_none());
    assert!(store.insert_run(&new("1280x800", 9000)).await.unwrap().is_none(), "the tick has its run");
    assert_eq!(
        store.previous_verdict(&name("home"), "1280x800", t(9999)).await.unwrap(),
        Some(Verdict::Approved),
        "the skipped run is passed over: the verdict before it counts"
    );
}

async fn jobs(store: &dyn InspectStore) {
    let lease = Duration::from_secs(60);
    let new = |key: Option<&str>, at: i64| NewJob {
        id: JobId::new(),
        request: r#"{"url":"https://example.com/"}"#.into(),
        idempotency_key: key.map(Into::into),
        max_attempts: 2,
        now: t(at),
    };
    let JobInsert::Created(a) = store.insert_job(&new(Some("key-1"), 0), t(-1)).await.unwrap() else {
        panic!("created")
    };
    assert_eq!((a.status, a.attempts), (JobStatus::Queued, 0));
    // The same idempotency key within its window answers with the first job.
    match store.insert_job(&new(Some("key-1"), 10), t(-1)).await.unwrap() {
        JobInsert::Existing(e) => assert_eq!(e.id, a.id),
        other => panic!("expected the existing job, got {other:?}"),
    }
    assert_eq!(store.get_job(&a.id).await.unwrap().unwrap().request, a.request);

    // Claim: leased to the worker, attempt counted; nothing else is ready.
    let claimed = store.claim_job("w1", t(100), lease).await.unwrap().expect("a ready job");
    assert_eq!(claimed.id, a.id);
    assert_eq!((claimed.status, claimed.attempts), (JobStatus::Running, 1));
    assert_eq!(claimed.lease_owner.as_deref(), Some("w1"));
    assert_eq!(claimed.lease_expires_at, Some(t(100).plus(lease)));
    assert!(store.claim_job("w2", t(101), lease).await.unwrap().is_none());
    assert!(store.extend_job_lease(&a.id, "w1", t(120_000)).await.unwrap());
    assert!(!store.extend_job_lease(&a.id, "w2", t(120_000)).await.unwrap(), "only the owner extends");

    // A retryable failure queues it again for later.
    assert!(
        store
            .fail_job(&a.id, "w1", r#"{"code":"navigation_timeout"}"#, JobFailure::RetryAt(t(5000)), t(200))
            .await
            .unwrap()
    );
    assert!(store.claim_job("w1", t(4999), lease).await.unwrap().is_none(), "not due yet");
    let again = store.claim_job("w2", t(5000), lease).await.unwrap().expect("due again");
    assert_eq!((again.attempts, again.lease_owner.as_deref()), (2, Some("w2")));
    assert!(
        !store.complete_job(&a.id, "w1", "{}", None, None, t(5001)).await.unwrap(),
        "a stale worker cannot complete"
    );
    let asset = AssetId::new();
    store
        .insert_asset(&Asset {
            id: asset.clone(),
            job_id: a.id.clone(),
            sha256: "a".repeat(64),
            content_type: "image/png".into(),
            width: Some(1280),
            height: Some(5120),
            size: 12345,
            created_at: t(5001),
        })
        .await
        .unwrap();
    // Completing queues the webhook in the same transaction.
    let hook = NewDelivery {
        id: MessageId::new(),
        subject: a.id.to_string(),
        url: "http://127.0.0.1:1/hook".into(),
        sender: String::new(),
        payload: r#"{"status":"completed"}"#.into(),
        now: t(5002),
    };
    let completed = store
        .complete_job(&a.id, "w2", r#"{"status":"completed"}"#, Some(&asset), Some(&hook), t(5002))
        .await
        .unwrap();
    assert!(completed);
    let queued = store.get_delivery(&hook.id).await.unwrap().expect("webhook queued with the completion");
    assert_eq!((queued.status, queued.subject.as_str()), (OutboxStatus::Pending, a.id.as_str()));
    let sent = Attempt::Sent { status: Some(200), reference: None };
    store.record_delivery_attempt(&hook.id, &sent, t(5003)).await.unwrap();
    let done = store.get_job(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.asset_id.as_ref(), done.completed_at),
        (JobStatus::Completed, Some(&asset), Some(t(5002)))
    );
    let stored = store.get_asset(&asset).await.unwrap().unwrap();
    assert_eq!((stored.width, stored.height, stored.size), (Some(1280), Some(5120), 12345));
    assert!(store.get_asset(&AssetId::new()).await.unwrap().is_none());

    // A dead worker's job is reclaimed when its lease expires...
    let JobInsert::Created(b) = store.insert_job(&new(None, 6000), t(-1)).await.unwrap() else { panic!() };
    let first = store.claim_job("dies", t(6000), lease).await.unwrap().unwrap();
    assert_eq!(first.id, b.id);
    assert!(store.claim_job("w3", t(6000 + 59_999), lease).await.unwrap().is_none(), "lease still valid");
    let reclaimed = store.claim_job("w3", t(6000 + 60_000), lease).await.unwrap().expect("lease expired");
    assert_eq!((reclaimed.id.clone(), reclaimed.attempts), (b.id.clone(), 2));
    // ... and once out of attempts it is failed, not retried forever.
    assert!(store.claim_job("w4", t(6000 + 120_000), lease).await.unwrap().is_none());
    let abandoned = store.fail_abandoned_jobs(t(6000 + 120_000), r#"{"code":"worker_lost"}"#).await.unwrap();
    assert_eq!(abandoned.iter().map(|j| &j.id).collect::<Vec<_>>(), [&b.id]);
    assert_eq!(abandoned[0].status, JobStatus::Failed);

    // A permanent failure.
    let JobInsert::Created(c) = store.insert_job(&new(None, 7000), t(-1)).await.unwrap() else { panic!() };
    store.claim_job("w1", t(500_000), lease).await.unwrap().unwrap();
    assert!(
        store
            .fail_job(
                &c.id,
                "w1",
                r#"{"code":"invalid_url"}"#,
                JobFailure::Final { failing_state: None, delivery: None },
                t(500_001)
            )
            .await
            .unwrap()
    );
    let failed = store.get_job(&c.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (JobStatus::Failed, Some(r#"{"code":"invalid_url"}"#))
    );

    // A job its client gave up on (`run --once` interrupted): cancelled while queued, and while
    // running (its worker then finds it no longer its own); a finished job stays as it is.
    let cancel = r#"{"code":"cancelled"}"#;
    let JobInsert::Created(d) = store.insert_job(&new(None, 8000), t(-1)).await.unwrap() else { panic!() };
    assert!(store.cancel_job(&d.id, cancel, t(500_002)).await.unwrap());
    let cancelled = store.get_job(&d.id).await.unwrap().unwrap();
    assert_eq!((cancelled.status, cancelled.error.as_deref()), (JobStatus::Failed, Some(cancel)));
    assert!(!store.cancel_job(&c.id, cancel, t(500_003)).await.unwrap(), "a failed job stays failed");
    let JobInsert::Created(e) = store.insert_job(&new(None, 8001), t(-1)).await.unwrap() else { panic!() };
    assert_eq!(store.claim_job("w5", t(500_010), lease).await.unwrap().unwrap().id, e.id);
    assert!(store.cancel_job(&e.id, cancel, t(500_011)).await.unwrap());
    let retry = JobFailure::RetryAt(t(500_020));
    assert!(!store.fail_job(&e.id, "w5", "{}", retry, t(500_012)).await.unwrap(), "no longer w5's");

    let counts = store.count_jobs().await.unwrap();
    assert_eq!(store.waiting_jobs().await.unwrap(), 0, "finished jobs are not waiting");
    assert_eq!(counts, [(JobStatus::Completed, 1), (JobStatus::Failed, 4)]);

    // An expired idempotency key is released for a new request.
    match store.insert_job(&new(Some("key-1"), 90_000_000), t(80_000_000)).await.unwrap() {
        JobInsert::Created(j) => assert_ne!(j.id, a.id),
        other => panic!("expected a new job, got {other:?}"),
    }
    assert_eq!(store.waiting_jobs().await.unwrap(), 1, "the new job is queued");
}

/// Several workers claiming while clients insert (with idempotency keys, which read before they
/// write) never get the same job, and no call fails with a lock error: on SQLite a deferred
/// transaction that reads and then writes would fail at once with `database is locked`.
async fn concurrent_claims(store: Arc<dyn InspectStore>) {
    const INSERTERS: usize = 4;
    const PER_INSERTER: usize = 15;
    let now = t(1_000_000);
    let claimed_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut inserters = Vec::new();
    for i in 0..INSERTERS {
        let store = store.clone();
        inserters.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..PER_INSERTER {
                let j = NewJob {
                    id: JobId::new(),
                    request: "{}".into(),
                    idempotency_key: Some(format!("client-{i}-{n}")),
                    max_attempts: 3,
                    now,
                };
                store.insert_job(&j, now).await.unwrap();
                ids.push(j.id);
            }
            ids
        }));
    }
    let mut claimers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        let claimed_count = claimed_count.clone();
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while claimed_count.load(std::sync::atomic::Ordering::SeqCst) < INSERTERS * PER_INSERTER {
                assert!(std::time::Instant::now() < deadline, "claims did not drain the queue");
                match store.claim_job(&format!("w{w}"), now, Duration::from_secs(60)).await.unwrap() {
                    Some(j) => {
                        claimed_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        got.push(j.id);
                    }
                    None => tokio::task::yield_now().await,
                }
            }
            got
        }));
    }
    let mut ids = Vec::new();
    for task in inserters {
        ids.extend(task.await.unwrap());
    }
    let mut claimed = Vec::new();
    for task in claimers {
        claimed.extend(task.await.unwrap());
    }
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids, "each job claimed exactly once");
}

async fn deliveries(store: &dyn InspectStore) {
    let lease = Duration::from_secs(30);
    let id = MessageId::new();
    let payload = r#"{"type":"capture.completed","metadata":{"b":1,"a":[2, 3]}}"#;
    store
        .enqueue_delivery(&NewDelivery {
            id: id.clone(),
            subject: JobId::new().to_string(),
            url: "http://127.0.0.1:1/hooks/capture".into(),
            sender: String::new(),
            payload: payload.into(),
            now: t(0),
        })
        .await
        .unwrap();
    let capture = [String::new()];
    assert!(
        store.claim_delivery(t(0), lease, &["ops".to_owned()], t(0)).await.unwrap().is_none(),
        "a process claims only the senders it holds"
    );
    let d = store.claim_delivery(t(0), lease, &capture, t(0)).await.unwrap().expect("due now");
    assert_eq!(d.payload, payload, "payload is kept byte for byte");
    assert!(store.claim_delivery(t(1), lease, &capture, t(0)).await.unwrap().is_none(), "leased");
    store
        .record_delivery_attempt(
            &id,
            &Attempt::Retry { at: t(5000), status: Some(503), error: "503 Service Unavailable".into() },
            t(2),
        )
        .await
        .unwrap();
    let d = store.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!(
        (d.status, d.attempts, d.last_status, d.next_attempt_at),
        (OutboxStatus::Pending, 1, Some(503), t(5000))
    );
    assert!(store.claim_delivery(t(4999), lease, &capture, t(0)).await.unwrap().is_none());
    store.claim_delivery(t(5000), lease, &capture, t(0)).await.unwrap().expect("due after the backoff");
    store
        .record_delivery_attempt(&id, &Attempt::Dead { status: Some(410), error: "gone".into() }, t(5001))
        .await
        .unwrap();
    let dead = store.list_deliveries(OutboxStatus::Dead, 10).await.unwrap();
    assert_eq!(dead.iter().map(|d| &d.id).collect::<Vec<_>>(), [&id]);
    assert!(
        store.claim_delivery(t(9_999_999), lease, &capture, t(0)).await.unwrap().is_none(),
        "dead letters are not retried"
    );
    assert!(store.replay_delivery(&id, t(6000)).await.unwrap());
    assert!(!store.replay_delivery(&id, t(6000)).await.unwrap(), "only dead deliveries are replayed");
    let d = store.claim_delivery(t(6000), lease, &capture, t(0)).await.unwrap().expect("replayed");
    assert_eq!(d.attempts, 0);
    store
        .record_delivery_attempt(&id, &Attempt::Sent { status: Some(204), reference: None }, t(6001))
        .await
        .unwrap();
    let d = store.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!((d.status, d.delivered_at), (OutboxStatus::Sent, Some(t(6001))));
    assert!(store.list_deliveries(OutboxStatus::Dead, 10).await.unwrap().is_empty());
}

async fn received(store: &dyn InspectStore) {
    assert!(store.record_received_webhook("msg_1", "job_1", "{\"a\":1}", t(0)).await.unwrap());
    assert!(
        !store.record_received_webhook("msg_1", "job_1", "{\"a\":1}", t(1)).await.unwrap(),
        "same webhook-id"
    );
    assert!(
        !store.record_received_webhook("msg_2", "job_1", "{\"a\":1}", t(2)).await.unwrap(),
        "same job, new id"
    );
    assert!(store.record_received_webhook("msg_3", "job_3", "{}", t(3)).await.unwrap());
    let todo = store.unprocessed_webhooks(10, Timestamp::now()).await.unwrap();
    assert_eq!(todo.iter().map(|w| w.webhook_id.as_str()).collect::<Vec<_>>(), ["msg_1", "msg_3"]);
    store.mark_webhook_processed("msg_1", t(4)).await.unwrap();
    let done = store.get_received_webhook("msg_1").await.unwrap().unwrap();
    assert_eq!(
        (done.job_id.as_str(), done.payload.as_str(), done.processed_at),
        ("job_1", "{\"a\":1}", Some(t(4)))
    );
    assert!(store.get_received_webhook("msg_2").await.unwrap().is_none());
    let todo = store.unprocessed_webhooks(10, Timestamp::now()).await.unwrap();
    assert_eq!(todo.iter().map(|w| w.webhook_id.as_str()).collect::<Vec<_>>(), ["msg_3"]);
    // Back in the queue (once: a waiting one is not "requeued").
    assert!(store.requeue_webhook_of_job("job_1").await.unwrap());
    assert!(!store.requeue_webhook_of_job("job_1").await.unwrap());
    assert!(!store.requeue_webhook_of_job("job_3").await.unwrap(), "still waiting");
    assert!(!store.requeue_webhook_of_job("job_none").await.unwrap());
    let todo = store.unprocessed_webhooks(10, Timestamp::now()).await.unwrap();
    assert_eq!(todo.iter().map(|w| w.webhook_id.as_str()).collect::<Vec<_>>(), ["msg_1", "msg_3"]);
    // A result that failed waits out its backoff, counted; the others are not held up.
    let now = Timestamp::now();
    store.defer_webhook("msg_1", now.plus(std::time::Duration::from_secs(60)), true).await.unwrap();
    let todo = store.unprocessed_webhooks(10, now).await.unwrap();
    assert_eq!(todo.iter().map(|w| w.webhook_id.as_str()).collect::<Vec<_>>(), ["msg_3"]);
    let later = store.unprocessed_webhooks(10, now.plus(std::time::Duration::from_secs(61))).await.unwrap();
    assert_eq!(
        later.iter().map(|w| (w.webhook_id.as_str(), w.attempts, w.fetch_failures)).collect::<Vec<_>>(),
        [("msg_1", 1, 1), ("msg_3", 0, 0)]
    );
    // A failure that is not a download (a busy database) backs off without using the budget.
    store.defer_webhook("msg_3", now, false).await.unwrap();
    let msg_3 = store.get_received_webhook("msg_3").await.unwrap().unwrap();
    assert_eq!((msg_3.attempts, msg_3.fetch_failures), (1, 0));
    // A requeued result starts afresh.
    store.mark_webhook_processed("msg_1", now).await.unwrap();
    assert!(store.requeue_webhook_of_job("job_1").await.unwrap());
    let msg_1 = store.get_received_webhook("msg_1").await.unwrap().unwrap();
    assert_eq!((msg_1.attempts, msg_1.fetch_failures, msg_1.retry_at), (0, 0, None));
}

/// Three replicas' processors claiming received results at once: each result is leased by
/// exactly one of them (issue 14: every replica processed every result), a leased result is not
/// handed out again until its lease runs out, and a deferred one comes back after its backoff.
async fn results_judged_once(url: &str) {
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(vigil::store::connect_for_inspection(url, 2).await.unwrap());
    }
    let now = Timestamp::now();
    for i in 0..30 {
        let id = format!("msg_claim_{i:02}");
        assert!(
            replicas[0].record_received_webhook(&id, &format!("job_claim_{i:02}"), "{}", now).await.unwrap()
        );
    }
    let lease = Duration::from_secs(300);
    let claimers = replicas.iter().map(|r| async move {
        let mut mine = Vec::new();
        // Bounded: claims that did not lease would hand the same results out for ever.
        for _ in 0..20 {
            let batch = r.claim_webhooks(4, now, lease).await.unwrap();
            if batch.is_empty() {
                break;
            }
            mine.extend(batch.into_iter().map(|w| w.webhook_id));
        }
        mine
    });
    let mut all: Vec<String> = futures_util::future::join_all(claimers).await.into_iter().flatten().collect();
    // (The story's own two waiting results are claimed too.)
    all.retain(|id| id.starts_with("msg_claim_"));
    let claimed = all.len();
    all.sort();
    all.dedup();
    assert_eq!((claimed, all.len()), (30, 30), "every result claimed, none twice");
    // Leased: nobody gets them again until the lease runs out (or it is given back).
    assert!(replicas[1].claim_webhooks(50, now, lease).await.unwrap().is_empty());
    replicas[0].release_webhook("msg_claim_29", now).await.unwrap();
    let given_back = replicas[1].claim_webhooks(50, now, lease).await.unwrap();
    assert_eq!(given_back.iter().map(|w| w.webhook_id.as_str()).collect::<Vec<_>>(), ["msg_claim_29"]);
    let msg_29 = replicas[1].get_received_webhook("msg_claim_29").await.unwrap().unwrap();
    assert_eq!(msg_29.attempts, 0, "given back, not failed");
    let after = now.plus(lease + Duration::from_secs(1));
    let back = replicas[2].claim_webhooks(50, after, lease).await.unwrap();
    assert_eq!(back.iter().filter(|w| w.webhook_id.starts_with("msg_claim_")).count(), 30);
    // Deferred: out of the lease, due again after its backoff.
    replicas[0].defer_webhook("msg_claim_00", after.plus(Duration::from_secs(2)), false).await.unwrap();
    let due = replicas[1].claim_webhooks(50, after.plus(Duration::from_secs(3)), lease).await.unwrap();
    assert_eq!(due.iter().map(|w| w.webhook_id.as_str()).collect::<Vec<_>>(), ["msg_claim_00"]);
    for id in all {
        replicas[0].mark_webhook_processed(&id, now).await.unwrap();
    }
    for r in replicas {
        r.close().await;
    }
}

async fn baselines(store: &dyn InspectStore) {
    let (m, vp) = (name("home"), "1280x800");
    assert!(store.current_baseline(&m, vp).await.unwrap().is_none());
    assert!(store.revert_baseline(&m, vp, "bob", t(0)).await.unwrap().is_none(), "nothing to revert");
    let new = |sha: char, source, by: &str, at| NewBaseline {
        monitor: m.clone(),
        viewport: vp.into(),
        sha256: sha.to_string().repeat(64),
        run_id: Some(RunId::new()),
        source,
        approved_by: by.into(),
        now: t(at),
    };
    let first = store.set_baseline(&new('1', BaselineSource::FirstCapture, "vigil", 10)).await.unwrap();
    assert!(first.active);
    assert!(store.revert_baseline(&m, vp, "bob", t(11)).await.unwrap().is_none(), "no older version");
    assert_eq!(
        store.current_baseline(&m, vp).await.unwrap().unwrap().id,
        first.id,
        "a refused revert changes nothing"
    );
    let second = store.set_baseline(&new('2', BaselineSource::Ui, "alice", 20)).await.unwrap();
    let current = store.current_baseline(&m, vp).await.unwrap().unwrap();
    assert_eq!(
        (current.id.clone(), current.sha256.clone(), current.approved_by.clone()),
        (second.id.clone(), "2".repeat(64), "alice".into())
    );
    // Another viewport is independent.
    store
        .set_baseline(&NewBaseline { viewport: "390x844".into(), ..new('9', BaselineSource::Api, "ci", 21) })
        .await
        .unwrap();

    let restored = store.revert_baseline(&m, vp, "bob", t(30)).await.unwrap().expect("reverted");
    assert_eq!(
        (restored.sha256.clone(), restored.source, restored.approved_by.clone()),
        ("1".repeat(64), BaselineSource::Revert, "bob".into())
    );
    assert_eq!(restored.run_id, first.run_id);
    assert_eq!(store.current_baseline(&m, vp).await.unwrap().unwrap().id, restored.id);
    let history = store.baseline_history(&m, vp).await.unwrap();
    assert_eq!(history.iter().map(|b| b.sha256.chars().next().unwrap()).collect::<String>(), "121");
    assert_eq!(history.iter().filter(|b| b.active).count(), 1);
    assert_eq!(history[1].reverted_at, Some(t(30)));
    assert_eq!(store.current_baseline(&m, "390x844").await.unwrap().unwrap().sha256, "9".repeat(64));
    // The newest active versions, one per viewport: the restored one (t=30), then 390x844 (t=21).
    let recent = store.recent_baselines(10).await.unwrap();
    assert_eq!(
        recent.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
        [restored.id.clone(), recent[1].id.clone()]
    );
    assert_eq!(recent[1].viewport, "390x844");
    assert_eq!(store.recent_baselines(1).await.unwrap().len(), 1);
}

async fn alerts(store: &dyn InspectStore) {
    let lease = Duration::from_secs(30);
    let run = RunId::new();
    let a = NewAlert {
        id: AlertId::new(),
        run_id: run.clone(),
        monitor: name("home"),
        kind: AlertKind::Changed,
        payload: "{}".into(),
        now: t(0),
        events: vec![NewDelivery {
            id: MessageId::new(),
            subject: run.to_string(),
            url: "http://127.0.0.1:1/events".into(),
            sender: "ops".into(),
            payload: r#"{"type":"run.changed"}"#.into(),
            now: t(0),
        }],
        fingerprint: None,
    };
    assert!(store.enqueue_alert(&a).await.unwrap());
    let event = store.get_delivery(&a.events[0].id).await.unwrap().expect("queued with the alert");
    assert_eq!((event.sender.as_str(), event.subject.as_str()), ("ops", run.as_str()));
    assert!(
        !store.enqueue_alert(&NewAlert { id: AlertId::new(), ..a.clone() }).await.unwrap(),
        "one alert per run and kind"
    );
    let pending = store.list_deliveries(OutboxStatus::Pending, 100).await.unwrap();
    assert_eq!(pending.iter().filter(|d| d.id == a.events[0].id).count(), 1, "and its events once");
    // A row of a destination no process has is claimed once it has been untouched long enough.
    let nobody = ["nobody".to_owned()];
    assert!(store.claim_delivery(t(0), lease, &nobody, t(0)).await.unwrap().is_none(), "not yet an orphan");
    let orphan = store.claim_delivery(t(0), lease, &nobody, t(1)).await.unwrap().expect("an orphan");
    assert_eq!(orphan.id, a.events[0].id);
    let claimed = store.claim_alert(t(0), lease).await.unwrap().expect("due");
    assert_eq!(claimed.id, a.id);
    assert!(store.claim_alert(t(1), lease).await.unwrap().is_none(), "leased");
    store
        .record_alert_attempt(
            &a.id,
            &Attempt::Retry { at: t(2000), status: Some(429), error: "rate limited".into() },
            t(2),
        )
        .await
        .unwrap();
    assert!(store.claim_alert(t(1999), lease).await.unwrap().is_none());
    store.claim_alert(t(2000), lease).await.unwrap().expect("retry due");
    store
        .record_alert_attempt(
            &a.id,
            &Attempt::Sent { status: Some(200), reference: Some("1700000000.000100".into()) },
            t(2001),
        )
        .await
        .unwrap();
    let sent = store.get_alert(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (sent.status, sent.attempts, sent.slack_ts.as_deref(), sent.sent_at),
        (OutboxStatus::Sent, 2, Some("1700000000.000100"), Some(t(2001)))
    );
    assert!(
        store.claim_alert(t(9_999_999), lease).await.unwrap().is_none(),
        "sent alerts are never sent again"
    );
    assert!(store.get_alert(&AlertId::new()).await.unwrap().is_none());

    // Posting to Slack: the channel before the post, then channel and ts once posted.
    let b = NewAlert { id: AlertId::new(), kind: AlertKind::Failed, now: t(3000), ..a.clone() };
    assert!(store.enqueue_alert(&b).await.unwrap());
    store.mark_alert_posting(&b.id, "C0123", t(3001)).await.unwrap();
    let posting = store.get_alert(&b.id).await.unwrap().unwrap();
    assert_eq!((posting.slack_channel.as_deref(), posting.slack_ts.as_deref()), (Some("C0123"), None));
    store.mark_alert_posted(&b.id, "C0123", "1700000001.000200", t(3002)).await.unwrap();
    store.mark_alert_posting(&b.id, "C0999", t(3003)).await.unwrap();
    let posted = store.get_alert(&b.id).await.unwrap().unwrap();
    assert_eq!(
        (posted.slack_channel.as_deref(), posted.slack_ts.as_deref()),
        (Some("C0123"), Some("1700000001.000200")),
        "a posted alert keeps its channel"
    );
    let of_run = store.alerts_for_run(&run).await.unwrap();
    assert_eq!(of_run.iter().map(|a| a.kind).collect::<Vec<_>>(), [AlertKind::Changed, AlertKind::Failed]);
    assert!(store.alerts_for_run(&RunId::new()).await.unwrap().is_empty());

    // A run past its deadline: failed and alerted in one transaction, once.
    let new_run = NewRun {
        id: RunId::new(),
        monitor: name("home"),
        viewport: "640x480".into(),
        scheduled_for: t(7000),
        trigger: Trigger::Schedule,
        now: t(7000),
    };
    let pending = store.insert_run(&new_run).await.unwrap().expect("inserted");
    let alert = NewAlert {
        id: AlertId::new(),
        run_id: pending.id.clone(),
        kind: AlertKind::Failed,
        now: t(7100),
        ..a.clone()
    };
    let error = r#"{"code":"run_deadline_exceeded"}"#;
    // Both or neither: an alert that cannot be written (its id is taken) leaves the run pending.
    let clash = NewAlert { id: a.id.clone(), ..alert.clone() };
    assert!(store.fail_run_alerting(&pending.id, error, t(7050), Some(&clash)).await.is_err());
    assert_eq!(store.get_run(&pending.id).await.unwrap().unwrap().status, RunStatus::Pending);
    assert!(store.fail_run_alerting(&pending.id, error, t(7100), Some(&alert)).await.unwrap());
    let failed = store.get_run(&pending.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.verdict, failed.completed_at),
        (RunStatus::Done, Some(Verdict::Failed), Some(t(7100)))
    );
    assert_eq!(failed.error.as_deref(), Some(error));
    let again = NewAlert { id: AlertId::new(), ..alert.clone() };
    assert!(
        !store.fail_run_alerting(&pending.id, "{}", t(7200), Some(&again)).await.unwrap(),
        "done already"
    );
    assert_eq!(store.alerts_for_run(&pending.id).await.unwrap().len(), 1, "and no second alert");
}

/// One alert for one change: the oldest queued alert of a fingerprint gathers the others.
async fn alert_groups(store: &dyn InspectStore) {
    const T: i64 = 100_000_000;
    let changed = |fingerprint: &str, at: i64| NewAlert {
        id: AlertId::new(),
        run_id: RunId::new(),
        monitor: name("home"),
        kind: AlertKind::Changed,
        payload: "{}".into(),
        now: t(T + at),
        events: Vec::new(),
        fingerprint: Some(fingerprint.into()),
    };
    let same: Vec<NewAlert> = (0..4).map(|i| changed("f00d", i)).collect();
    let other = changed("beef", 0);
    for a in same.iter().chain([&other]) {
        assert!(store.enqueue_alert(a).await.unwrap());
    }
    let get = |id: AlertId| async move { store.get_alert(&id).await.unwrap().unwrap() };
    // One begun posting (it may be in Slack) is left alone; one held by another sender is not.
    store.mark_alert_posting(&same[2].id, "C0123", t(T + 5)).await.unwrap();
    for a in [&same[0], &same[1], &same[2], &other] {
        store.defer_alert(&a.id, t(T + 1_000_000), t(T + 6)).await.unwrap();
    }
    let mut held = None;
    for _ in 0..20 {
        let claimed = store.claim_alert(t(T + 100), Duration::from_secs(30)).await.unwrap().expect("due");
        if claimed.id == same[3].id {
            held = Some(claimed);
            break;
        }
    }
    assert!(held.is_some(), "the one not deferred is claimed");

    let event = NewDelivery {
        id: MessageId::new(),
        subject: same[0].run_id.to_string(),
        url: "http://127.0.0.1:1/events".into(),
        sender: "ops".into(),
        payload: r#"{"type":"run.changed"}"#.into(),
        now: t(T + 11),
    };
    let seen = std::sync::Mutex::new(Vec::new());
    let build = |leader: &Alert, members: &[Alert]| {
        seen.lock()
            .unwrap()
            .push((leader.id.clone(), members.iter().map(|m| m.id.clone()).collect::<Vec<_>>()));
        (r#"{"group":[]}"#.to_owned(), vec![event.clone()])
    };
    let second = get(same[1].id.clone()).await;
    assert!(
        matches!(store.form_alert_group(&second, t(T + 10), true, &build).await.unwrap(), GroupForming::Wait),
        "an older one of the same change is queued: it gathers this one"
    );
    assert!(seen.lock().unwrap().is_empty());
    let first = get(same[0].id.clone()).await;
    let GroupForming::Formed(formed) = store.form_alert_group(&first, t(T + 10), true, &build).await.unwrap()
    else {
        panic!("the oldest forms the group")
    };
    // Gathered whoever holds it (its own attempt then finds it gone), but not one posting.
    assert_eq!(
        seen.lock().unwrap().clone(),
        [(same[0].id.clone(), vec![same[1].id.clone(), same[3].id.clone()])]
    );
    assert_eq!((formed.payload.as_str(), formed.fingerprint.as_deref()), (r#"{"group":[]}"#, None));
    let saved = get(same[0].id.clone()).await;
    assert_eq!((saved.payload.as_str(), saved.fingerprint.as_deref()), (r#"{"group":[]}"#, None));
    assert!(store.get_delivery(&event.id).await.unwrap().is_some(), "its events queued with it");
    for member in [&same[1], &same[3]] {
        let gathered = get(member.id.clone()).await;
        assert_eq!(
            (gathered.status, gathered.grouped_into.clone(), gathered.sent_at),
            (OutboxStatus::Sent, Some(same[0].id.clone()), Some(t(T + 10)))
        );
    }
    let held = held.unwrap();
    assert!(
        matches!(
            store.form_alert_group(&held, t(T + 12), false, &build).await.unwrap(),
            GroupForming::Absorbed
        ),
        "its holder sends nothing"
    );
    // An attempt that failed to record its answer finds the group formed, and builds nothing.
    assert!(matches!(
        store.form_alert_group(&first, t(T + 12), true, &build).await.unwrap(),
        GroupForming::Formed(a) if a.payload == r#"{"group":[]}"#
    ));
    assert_eq!(seen.lock().unwrap().len(), 1);
    // A sent member's attempt records nothing over it.
    let retry = Attempt::Retry { at: t(T + 99), status: None, error: "x".into() };
    store.record_alert_attempt(&same[1].id, &retry, t(T + 13)).await.unwrap();
    assert_eq!(get(same[1].id.clone()).await.status, OutboxStatus::Sent);
    assert_eq!(get(same[2].id.clone()).await.status, OutboxStatus::Pending, "posting: left alone");
    assert_eq!(get(other.id.clone()).await.grouped_into, None, "another change");
    let group: Vec<AlertId> =
        store.alert_group(&same[1].id).await.unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(group, [same[0].id.clone(), same[1].id.clone(), same[3].id.clone()], "the leader first");
    assert_eq!(store.alert_group(&other.id).await.unwrap().len(), 1, "alone");
    assert!(store.alert_group(&AlertId::new()).await.unwrap().is_empty());

    // The same page's next change is another alert, even with the same fingerprint.
    let mut page = Vec::new();
    for at in [200, 201] {
        let new_run = NewRun {
            id: RunId::new(),
            monitor: name("home"),
            viewport: "1280x800".into(),
            scheduled_for: t(T + at),
            trigger: Trigger::Schedule,
            now: t(T + at),
        };
        let run = store.insert_run(&new_run).await.unwrap().expect("inserted");
        let alert = NewAlert { run_id: run.id, ..changed("abcd", at) };
        assert!(store.enqueue_alert(&alert).await.unwrap());
        page.push(alert);
    }
    let alone = get(page[0].id.clone()).await;
    assert!(matches!(
        store.form_alert_group(&alone, t(T + 210), true, &build).await.unwrap(),
        GroupForming::Formed(_)
    ));
    assert_eq!(seen.lock().unwrap().last().unwrap().1, Vec::<AlertId>::new());
    let next = get(page[1].id.clone()).await;
    assert!(matches!(
        store.form_alert_group(&next, t(T + 211), true, &build).await.unwrap(),
        GroupForming::Formed(_)
    ));

    // Waiting is not an attempt.
    store.defer_alert(&other.id, t(T + 50_000), t(T + 20)).await.unwrap();
    let waiting = get(other.id.clone()).await;
    assert_eq!(
        (waiting.attempts, waiting.next_attempt_at, waiting.lease_expires_at),
        (0, t(T + 50_000), None)
    );
    let run = NewRun {
        id: RunId::new(),
        monitor: name("home"),
        viewport: "640x480".into(),
        scheduled_for: t(T + 30),
        trigger: Trigger::Schedule,
        now: t(T + 30),
    };
    store.insert_run(&run).await.unwrap().expect("inserted");
    let awaiting =
        |since: i64, until: i64| store.runs_awaiting_alert_since(t(T + since), t(T + until), t(T + 41));
    assert_eq!(awaiting(30, 30).await.unwrap(), 1, "pending");
    assert_eq!(awaiting(31, 99).await.unwrap(), 0, "begun before");
    assert_eq!(awaiting(0, 29).await.unwrap(), 0, "begun after");
    let outcome = RunOutcome { verdict: Some(Verdict::Changed), ..Default::default() };
    assert!(store.complete_run(&run.id, &outcome, t(T + 40)).await.unwrap());
    assert_eq!(awaiting(0, 99).await.unwrap(), 1, "changed, its alert not yet queued");
    let later = store.runs_awaiting_alert_since(t(T), t(T + 99), t(T + 40 + 2001)).await.unwrap();
    assert_eq!(later, 0, "judged seconds ago without an alert: it gets none (it was muted)");
    let mute = Mute { monitor: name("home"), until: t(T + 42), muted_by: "ops".into(), created_at: t(T) };
    store.mute(&mute).await.unwrap();
    assert_eq!(awaiting(0, 99).await.unwrap(), 0, "muted: it will queue none");
    store.unmute(&name("home")).await.unwrap();
    let its = NewAlert { run_id: run.id.clone(), ..changed("cafe", 41) };
    assert!(store.enqueue_alert(&its).await.unwrap());
    assert_eq!(awaiting(0, 99).await.unwrap(), 0, "alerted");
}

/// Ignored changes: per monitor and viewport, in force until their time, counting what they
/// spared; ignoring marks the run, stopping gives it back to review.
async fn ignores(store: &dyn InspectStore) {
    const T: i64 = 200_000_000;
    let mut runs = Vec::new();
    for at in [0, 1] {
        let new_run = NewRun {
            id: RunId::new(),
            monitor: name("home"),
            viewport: "1280x800".into(),
            scheduled_for: t(T + at),
            trigger: Trigger::Schedule,
            now: t(T + at),
        };
        let run = store.insert_run(&new_run).await.unwrap().expect("inserted");
        let outcome = RunOutcome { verdict: Some(Verdict::Changed), ..Default::default() };
        assert!(store.complete_run(&run.id, &outcome, t(T + at + 1)).await.unwrap());
        runs.push(run);
    }
    let ignore = Ignore {
        id: vigil::ids::IgnoreId::new(),
        monitor: name("home"),
        viewport: "1280x800".into(),
        fingerprint: "k1".into(),
        regions: r#"[{"x":0,"y":0,"width":10,"height":10}]"#.into(),
        diff_pixels: 100,
        description: "$49 → $79".into(),
        until: t(T + 1000),
        created_by: "alice".into(),
        created_at: t(T + 2),
        run_id: runs[0].id.clone(),
        matched: 0,
        last_matched_at: None,
    };
    assert_eq!(store.ignore_change(&ignore, None).await.unwrap(), Some(ignore.clone()));
    let judged = store.get_run(&runs[0].id).await.unwrap().unwrap();
    assert_eq!((judged.verdict, judged.reviewed_by.as_deref()), (Some(Verdict::Ignored), Some("alice")));
    let active = |monitor: &'static str, viewport: &'static str, key: &'static str, at: i64| async move {
        store.active_ignores(&name(monitor), viewport, key, t(T + at)).await
    };
    assert_eq!(active("home", "1280x800", "k1", 999).await.unwrap(), std::slice::from_ref(&ignore));
    assert!(active("home", "1280x800", "k1", 1000).await.unwrap().is_empty(), "ended");
    assert!(active("home", "1280x800", "k2", 5).await.unwrap().is_empty(), "other words");
    assert!(active("home", "390x844", "k1", 5).await.unwrap().is_empty(), "another viewport");
    assert!(active("about", "1280x800", "k1", 5).await.unwrap().is_empty(), "another monitor");
    store.count_ignored(&ignore.id, t(T + 10)).await.unwrap();
    store.count_ignored(&ignore.id, t(T + 11)).await.unwrap();
    // Extended from another run of the same change (by someone else, for longer): its count kept.
    let again = Ignore {
        id: vigil::ids::IgnoreId::new(),
        until: t(T + 5000),
        created_by: "bob".into(),
        run_id: runs[1].id.clone(),
        ..ignore.clone()
    };
    let stored = store.ignore_change(&again, Some(&ignore.id)).await.unwrap().expect("a change");
    assert_eq!(
        (stored.id.clone(), stored.until, stored.created_by.as_str(), stored.matched, stored.last_matched_at),
        (ignore.id.clone(), t(T + 5000), "bob", 2, Some(t(T + 11)))
    );
    assert_eq!(store.get_run(&runs[1].id).await.unwrap().unwrap().verdict, Some(Verdict::Ignored));
    // A run decided meanwhile: nothing written.
    store.review_run(&runs[1].id, Verdict::Approved, "carol", t(T + 12)).await.unwrap();
    let late = Ignore { id: vigil::ids::IgnoreId::new(), run_id: runs[1].id.clone(), ..ignore.clone() };
    assert_eq!(store.ignore_change(&late, None).await.unwrap(), None);
    let other = Ignore {
        id: vigil::ids::IgnoreId::new(),
        fingerprint: "k2".into(),
        created_at: t(T + 3),
        until: t(T + 50),
        run_id: runs[0].id.clone(),
        ..ignore.clone()
    };
    store.ignore_change(&other, None).await.unwrap().expect("stored");
    let listed: Vec<_> = store.list_ignores(t(T + 40)).await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(listed, [other.id.clone(), ignore.id.clone()], "newest first");
    assert_eq!(store.list_ignores(t(T + 60)).await.unwrap().len(), 1, "ended before: left out");
    // Stopped: the run it was made from awaits review again.
    assert!(store.remove_ignore(&ignore.id, t(T + 20)).await.unwrap());
    assert!(!store.remove_ignore(&ignore.id, t(T + 21)).await.unwrap());
    assert!(active("home", "1280x800", "k1", 5).await.unwrap().is_empty());
    let back = store.get_run(&runs[0].id).await.unwrap().unwrap();
    assert_eq!((back.verdict, back.reviewed_by), (Some(Verdict::Changed), None));
}

/// Drawn masks: per monitor, by viewport, removed only through their monitor.
async fn masks(store: &dyn InspectStore) {
    let mask = |viewport: &str, x: i64, at: i64| DrawnMask {
        id: vigil::ids::MaskId::new(),
        monitor: name("home"),
        viewport: viewport.into(),
        x,
        y: 2,
        width: 30,
        height: 40,
        created_by: "alice".into(),
        created_at: t(300_000_000 + at),
    };
    let (a, b) = (mask("1280x800", 1, 0), mask("390x844", 2, 1));
    assert_eq!(store.add_mask(&a).await.unwrap(), MaskAdded::Added);
    assert_eq!(store.add_mask(&b).await.unwrap(), MaskAdded::Added);
    let again = DrawnMask { id: vigil::ids::MaskId::new(), ..a.clone() };
    assert_eq!(store.add_mask(&again).await.unwrap(), MaskAdded::Duplicate, "the same rectangle");
    assert_eq!(store.masks_of(&name("home"), None).await.unwrap(), [a.clone(), b.clone()]);
    assert_eq!(store.masks_of(&name("home"), Some("390x844")).await.unwrap(), std::slice::from_ref(&b));
    assert!(store.masks_of(&name("about"), None).await.unwrap().is_empty());
    assert!(!store.remove_mask(&name("about"), &a.id).await.unwrap(), "another monitor's");
    assert!(store.remove_mask(&name("home"), &a.id).await.unwrap());
    assert!(!store.remove_mask(&name("home"), &a.id).await.unwrap());
    assert_eq!(store.masks_of(&name("home"), None).await.unwrap(), std::slice::from_ref(&b));
    // At most MAX_MASKS a viewport.
    for x in 0..MAX_MASKS - 1 {
        assert_eq!(store.add_mask(&mask("390x844", 100 + x, 2)).await.unwrap(), MaskAdded::Added);
    }
    assert_eq!(store.add_mask(&mask("390x844", 999, 3)).await.unwrap(), MaskAdded::Full);
    assert_eq!(
        store.add_mask(&mask("1280x800", 999, 3)).await.unwrap(),
        MaskAdded::Added,
        "another viewport"
    );
    assert_eq!(store.masks_of(&name("home"), Some("390x844")).await.unwrap().len() as i64, MAX_MASKS);
}

async fn sessions(store: &dyn InspectStore) {
    assert!(!store.session_revoked("abc").await.unwrap());
    store.revoke_session("abc", 2_000, 1_000).await.unwrap();
    store.revoke_session("abc", 2_000, 1_000).await.unwrap(); // signing out twice is fine
    assert!(store.session_revoked("abc").await.unwrap());
    assert!(!store.session_revoked("abd").await.unwrap());
    // Once the cookie has expired anyway, its row goes at the next sign-out.
    store.revoke_session("xyz", 9_000, 2_000).await.unwrap();
    assert!(!store.session_revoked("abc").await.unwrap(), "expired rows are forgotten");
    assert!(store.session_revoked("xyz").await.unwrap());
    // The first replica's key is everyone's.
    assert_eq!(store.shared_secret("ui", "first").await.unwrap(), "first");
    assert_eq!(store.shared_secret("ui", "second").await.unwrap(), "first");
    assert_eq!(store.shared_secret("other", "second").await.unwrap(), "second");

    // Login sessions: kept until a failure, which alerts once until the next sign-in.
    let t = vigil::time::Timestamp::from_millis;
    assert_eq!(store.login_state("shop").await.unwrap(), None);
    store.keep_login_state("shop", b"sealed-1", t(9_000), t(1_000)).await.unwrap();
    store.keep_login_state("shop", b"sealed-2", t(9_500), t(1_500)).await.unwrap();
    assert_eq!(store.login_state("shop").await.unwrap(), Some((b"sealed-2".to_vec(), t(9_500))));
    assert!(store.note_login_failure("shop", t(2_000)).await.unwrap(), "the first failure alerts");
    assert_eq!(store.login_state("shop").await.unwrap(), None, "a failed session keeps nothing");
    assert!(!store.note_login_failure("shop", t(3_000)).await.unwrap(), "the next does not");
    assert!(store.note_login_failure("blog", t(3_000)).await.unwrap(), "per session");
    store.keep_login_state("shop", b"sealed-3", t(9_900), t(4_000)).await.unwrap();
    assert!(store.note_login_failure("shop", t(5_000)).await.unwrap(), "a new streak after a sign-in");
    // Refused sign-ins count in a row (for the capture side's backoff) until one works; the
    // alerting streak is not touched by them.
    assert_eq!(store.refused_sign_ins("shop").await.unwrap(), None);
    store.keep_login_state("shop", b"sealed-4", t(9_900), t(5_500)).await.unwrap();
    store.note_refused_sign_in("shop", t(6_000)).await.unwrap();
    store.note_refused_sign_in("shop", t(7_000)).await.unwrap();
    assert_eq!(store.refused_sign_ins("shop").await.unwrap(), Some((2, t(7_000))));
    assert_eq!(store.login_state("shop").await.unwrap(), None, "a refused sign-in keeps nothing");
    assert!(store.note_login_failure("shop", t(7_100)).await.unwrap(), "its first failure still alerts");
    // One claim of the sign-in after the wait wins; the others see the moved time.
    assert!(store.claim_sign_in("shop", t(7_000), t(8_000)).await.unwrap());
    assert!(!store.claim_sign_in("shop", t(7_000), t(8_001)).await.unwrap(), "claimed already");
    assert_eq!(store.refused_sign_ins("shop").await.unwrap(), Some((2, t(8_000))));
    store.note_refused_sign_in("new", t(7_000)).await.unwrap();
    assert_eq!(store.refused_sign_ins("new").await.unwrap(), Some((1, t(7_000))), "a first row");
    store.keep_login_state("shop", b"sealed-5", t(9_900), t(8_500)).await.unwrap();
    assert_eq!(store.refused_sign_ins("shop").await.unwrap(), None, "a sign-in that works resets them");
}

#[tokio::test]
async fn conformance_story_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn conformance_story_postgres() {
    story(Backend::Postgres).await;
}

#[tokio::test]
async fn unsupported_database_url_is_refused() {
    let err = vigil::store::connect_for_inspection("mysql://localhost/x", 1).await.err().expect("refused");
    assert_eq!(err.code(), "unsupported_database_url");
}

/// A database file vigil may not write (opened read-only here; a read-only mount or a full disk
/// alike) answers writes with a storage code, retryable: a 503, not a 500.
#[tokio::test]
async fn a_database_that_refuses_writes_reports_a_storage_fault() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/vigil.db", dir.path().display());
    vigil::store::connect(&url, 1).await.unwrap().close().await;
    let store = vigil::store::connect(&format!("{url}?mode=ro"), 1).await.unwrap();
    let monitors = [MonitorUpsert {
        name: name("home"),
        url: "https://example.com/".into(),
        config: "{}".into(),
        enabled: true,
    }];
    let err = store.sync_monitors(&monitors, t(0)).await.expect_err("read-only");
    assert_eq!((err.code(), err.is_retryable()), ("storage_error", true), "{err:?}");
    store.close().await;
}

/// The SQLite file holds monitor headers and cookies: others may not read it (nor its WAL).
#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_file_is_not_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vigil.db");
    let store = vigil::store::connect(&format!("sqlite://{}", file.display()), 1).await.unwrap();
    let monitors = [MonitorUpsert {
        name: name("home"),
        url: "https://example.com/".into(),
        config: "{}".into(),
        enabled: true,
    }];
    store.sync_monitors(&monitors, t(0)).await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", file.display());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "{path} is {mode:o}");
    }
    store.close().await;
}
