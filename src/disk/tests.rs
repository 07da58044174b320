use std::collections::HashMap;
use std::io::{Error, ErrorKind};
use std::sync::Mutex;

use super::*;

/// A file system whose answers a test sets: space per directory, and a failing write.
#[derive(Default)]
struct Faults {
    space: Mutex<HashMap<PathBuf, Space>>,
    write_error: Mutex<Option<ErrorKind>>,
}

impl Probe for Arc<Faults> {
    fn space(&self, dir: &Path) -> std::io::Result<Space> {
        self.space.lock().unwrap().get(dir).copied().ok_or_else(|| Error::from(ErrorKind::PermissionDenied))
    }

    fn write_test(&self, _: &Path) -> std::io::Result<()> {
        match *self.write_error.lock().unwrap() {
            Some(kind) => Err(Error::from(kind)),
            None => Ok(()),
        }
    }
}

fn setup(min_free: MinFree) -> (DiskHealth, Arc<Faults>, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let faults = Arc::new(Faults::default());
    faults
        .space
        .lock()
        .unwrap()
        .insert(dir.clone(), Space { free: 50 << 20, total: 100 << 20, read_only: false });
    let health = DiskHealth::with_probe(
        vec![Volume { name: "data", dir: dir.clone() }],
        min_free,
        Box::new(faults.clone()),
    );
    (health, faults, dir)
}

#[test]
fn a_volume_below_the_mark_is_low_and_refuses_captures_until_space_returns() {
    let (health, faults, dir) = setup(MinFree::Bytes(10 << 20));
    assert_eq!(health.check().trouble(), None);
    assert!(health.refusal().is_none());
    let started = Timestamp::now();
    assert!(health.troubled_since(started).is_none());

    faults.space.lock().unwrap().get_mut(&dir).unwrap().free = 200 << 10;
    let h = health.check();
    let v = h.trouble().expect("low");
    assert_eq!((v.condition, v.free_bytes, v.min_free_bytes), (Condition::Low, 200 << 10, 10 << 20));
    let (condition, why) = health.refusal().expect("refused");
    assert_eq!(condition.code(), "storage_low");
    assert!(why.contains("200.0 KiB free, below the 10.0 MiB mark"), "{why}");
    assert_eq!(health.troubled_since(started), Some(Condition::Low));

    faults.space.lock().unwrap().get_mut(&dir).unwrap().free = 60 << 20;
    assert_eq!(health.check().trouble(), None);
    assert!(health.refusal().is_none());
    // The trouble is remembered for the runs that started before it ended.
    assert_eq!(health.troubled_since(started).map(Condition::run_code), Some("storage_full"));
}

#[test]
fn failing_writes_are_seen_even_when_the_free_space_looks_fine() {
    let (health, faults, dir) = setup(MinFree::Default);
    for (kind, condition) in [
        (ErrorKind::StorageFull, Condition::Low),
        (ErrorKind::ReadOnlyFilesystem, Condition::ReadOnly),
        (ErrorKind::Other, Condition::Failing),
    ] {
        *faults.write_error.lock().unwrap() = Some(kind);
        let h = health.check();
        let v = h.trouble().expect("trouble");
        assert_eq!(v.condition, condition, "{kind:?}");
        assert!(v.detail.as_deref().unwrap().starts_with("a test write failed"), "{v:?}");
    }
    *faults.write_error.lock().unwrap() = None;
    faults.space.lock().unwrap().get_mut(&dir).unwrap().read_only = true;
    assert_eq!(health.check().trouble().map(|v| v.condition), Some(Condition::ReadOnly));
    assert_eq!(Condition::ReadOnly.run_code(), "storage_error");
    faults.space.lock().unwrap().clear();
    let h = health.check();
    let v = h.trouble().expect("statvfs failed");
    assert_eq!(v.condition, Condition::Failing);
    assert!(v.describe().contains("cannot read the free space"), "{}", v.describe());
}

#[test]
fn the_worst_volume_is_the_one_reported() {
    let h = Health {
        volumes: [Condition::Low, Condition::ReadOnly, Condition::Ok]
            .into_iter()
            .map(|condition| VolumeState {
                name: "v",
                path: "/v".into(),
                condition,
                free_bytes: 0,
                total_bytes: 0,
                min_free_bytes: 0,
                detail: None,
                device: 0,
            })
            .collect(),
    };
    assert_eq!(h.trouble().unwrap().condition, Condition::ReadOnly);
}

#[test]
fn the_real_file_system_reports_space_and_takes_a_probe_write() {
    let dir = tempfile::tempdir().unwrap();
    let space = FileSystem.space(dir.path()).unwrap();
    assert!(space.total > 0 && space.free <= space.total && !space.read_only, "{space:?}");
    FileSystem.write_test(dir.path()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe file is removed");
    // A directory not made yet is judged by the parent it will be made in.
    let health =
        DiskHealth::new(vec![Volume { name: "data", dir: dir.path().join("a/b") }], MinFree::Bytes(0));
    assert_eq!(health.check().trouble(), None);
}

#[test]
fn volumes_are_the_sqlite_directory_the_data_and_the_baselines() {
    let yaml = "storage:\n  database_url: sqlite:///srv/vigil/db/vigil.db?mode=rwc\n  data_dir: /srv/data\n";
    let config = crate::config::parse(yaml, "m.yaml", &|_| None).unwrap();
    let v: Vec<_> = volumes(&config).into_iter().map(|v| (v.name, v.dir)).collect();
    assert_eq!(
        v,
        [
            ("database", PathBuf::from("/srv/vigil/db")),
            ("data", PathBuf::from("/srv/data")),
            ("baselines", PathBuf::from("baselines")),
        ]
    );
    assert_eq!(crate::store::sqlite_file("sqlite://vigil.db"), Some(PathBuf::from("vigil.db")));
    assert_eq!(crate::store::sqlite_file("sqlite::memory:"), None);
    assert_eq!(crate::store::sqlite_file("postgres://h/db"), None);
    assert_eq!(human_bytes(17), "17 B");
    assert_eq!(human_bytes(3 << 29), "1.5 GiB");
}

struct CountingPrune(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl OnTrouble for CountingPrune {
    async fn emergency_prune(&self) -> Option<String> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some("3 captures deleted".into())
    }
}

#[tokio::test(start_paused = true)]
async fn the_operator_hears_once_when_trouble_starts_and_once_when_it_ends() {
    let (health, faults, dir) = setup(MinFree::Bytes(10 << 20));
    let (notices, mut rx) = mpsc::channel(16);
    let prune = Arc::new(CountingPrune(Default::default()));
    let free = Family::<Vec<(String, String)>, Gauge>::default();
    let watcher = Watcher {
        health: health.clone(),
        free: free.clone(),
        size: Family::default(),
        healthy: Family::default(),
        notices,
        upkeep: Some(prune.clone()),
        ballast: None,
        check_timeout: CHECK_TIMEOUT,
    };
    let (stop, stop_rx) = watch::channel(false);
    faults.space.lock().unwrap().get_mut(&dir).unwrap().free = 100 << 10;
    let task = tokio::spawn(watcher.run(stop_rx));
    let low = rx.recv().await.unwrap();
    assert!(low.contains("low on space") && low.contains("Emergency prune: 3 captures deleted"), "{low}");
    // Still low for a while: no second notice, and no second prune within PRUNE_EVERY.
    tokio::time::sleep(CHECK_EVERY * 10).await;
    assert!(rx.try_recv().is_err());
    assert_eq!(prune.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    faults.space.lock().unwrap().get_mut(&dir).unwrap().free = 60 << 20;
    let recovered = rx.recv().await.unwrap();
    assert!(recovered.contains("storage recovered, captures resume"), "{recovered}");
    let labels = vec![("volume".to_owned(), "data".to_owned())];
    assert_eq!(free.get_or_create(&labels).get(), 60 << 20);
    stop.send(true).unwrap();
    task.await.unwrap();
}

fn volume(name: &'static str, condition: Condition, free: u64, mark: u64) -> VolumeState {
    VolumeState {
        name,
        path: format!("/{name}"),
        condition,
        free_bytes: free,
        total_bytes: 100 << 20,
        min_free_bytes: mark,
        detail: None,
        device: 1,
    }
}

#[test]
fn the_ballast_is_written_with_room_to_spare_and_released_when_a_volume_is_nearly_full() {
    let dir = tempfile::tempdir().unwrap();
    let ballast = Ballast { path: dir.path().join("data").join(Ballast::FILE), max: 1 << 20 };
    let healthy = |free| Health { volumes: vec![volume("data", Condition::Ok, free, 8 << 20)] };
    // A quarter of the mark, capped at `max`; only with room to spare.
    assert_eq!(ballast.adjust(&healthy(9 << 20)), None);
    assert!(!ballast.path.exists(), "no room to spare: no ballast");
    assert_eq!(ballast.adjust(&healthy(50 << 20)), None);
    assert_eq!(std::fs::metadata(&ballast.path).unwrap().len(), 1 << 20);
    // Low but with more free than the ballast holds: kept.
    let low = |free| Health {
        volumes: vec![
            volume("database", Condition::Low, free, 8 << 20),
            volume("data", Condition::Ok, 50 << 20, 8 << 20),
        ],
    };
    assert_eq!(ballast.adjust(&low(2 << 20)), None);
    assert!(ballast.path.exists());
    // Read-only, or on another file system: deleting the ballast would not help.
    let read_only = Health {
        volumes: vec![
            volume("database", Condition::ReadOnly, 0, 8 << 20),
            volume("data", Condition::Ok, 50 << 20, 8 << 20),
        ],
    };
    assert_eq!(ballast.adjust(&read_only), None);
    let mut elsewhere = low(10 << 10);
    elsewhere.volumes[0].device = 2;
    assert_eq!(ballast.adjust(&elsewhere), None);
    assert!(ballast.path.exists());
    // What releases the ballast also stops new rows (skipped ticks) from eating what it freed.
    assert!(!low(2 << 20).nearly_full() && !healthy(50 << 20).nearly_full() && !read_only.nearly_full());
    assert!(low(10 << 10).nearly_full());
    let released = ballast.adjust(&low(10 << 10)).expect("released");
    assert!(released.contains("released the 1.0 MiB ballast"), "{released}");
    assert!(!ballast.path.exists());
    // Not written again while any volume is in trouble.
    assert_eq!(ballast.adjust(&low(10 << 20)), None);
    assert!(!ballast.path.exists());
}

#[test]
fn a_low_volume_recovers_only_with_a_margin_above_the_mark() {
    let (health, faults, dir) = setup(MinFree::Bytes(10 << 20));
    let set_free = |free: u64| faults.space.lock().unwrap().get_mut(&dir).unwrap().free = free;
    let condition = |h: Health| h.trouble().map(|v| v.condition);
    set_free(9 << 20);
    assert_eq!(condition(health.check()), Some(Condition::Low));
    // Back above the mark, but not by the margin (1 MiB here): still low, and it says why.
    set_free((10 << 20) + (512 << 10));
    let h = health.check();
    assert_eq!(condition(h.clone()), Some(Condition::Low));
    assert!(
        h.trouble().unwrap().describe().ends_with("recovers once 11.0 MiB are free"),
        "{}",
        h.trouble().unwrap().describe()
    );
    set_free((11 << 20) + 1);
    assert_eq!(condition(health.check()), None);
    // Healthy volumes need only be above the mark.
    set_free((10 << 20) + (512 << 10));
    assert_eq!(condition(health.check()), None);
    assert_eq!(recovery_margin(1 << 30), (1 << 30) / 20);
}

#[test]
fn a_check_that_never_finishes_marks_every_volume_failing() {
    let (health, _, _) = setup(MinFree::Bytes(0));
    assert!(health.check().trouble().is_none());
    let h = health.hung("the storage check did not finish within 30s");
    assert!(h.volumes.iter().all(|v| v.condition == Condition::Failing));
    let (condition, why) = health.refusal().expect("refused");
    assert_eq!(condition.code(), "storage_error");
    assert!(why.contains("did not finish"), "{why}");
    assert_eq!(
        health.troubled_since(Timestamp::now().minus(Duration::from_secs(1))),
        Some(Condition::Failing)
    );
}

/// A file system whose every call waits until the test lets it go (a hung NFS mount).
struct Hung(Mutex<std::sync::mpsc::Receiver<()>>);

impl Probe for Hung {
    fn space(&self, _: &Path) -> std::io::Result<Space> {
        let _ = self.0.lock().unwrap().recv();
        Ok(Space { free: 50 << 20, total: 100 << 20, read_only: false })
    }

    fn write_test(&self, _: &Path) -> std::io::Result<()> {
        Ok(())
    }
}

/// Real time: paused time does not advance while a blocking task runs.
#[tokio::test]
async fn a_hung_check_marks_the_volumes_failing_until_it_returns() {
    let (release, blocked) = std::sync::mpsc::channel();
    let health = DiskHealth::with_probe(
        vec![Volume { name: "data", dir: PathBuf::from("/") }],
        MinFree::Bytes(0),
        Box::new(Hung(Mutex::new(blocked))),
    );
    let (notices, mut rx) = mpsc::channel(16);
    let watcher = Watcher {
        health: health.clone(),
        free: Family::default(),
        size: Family::default(),
        healthy: Family::default(),
        notices,
        upkeep: None,
        ballast: None,
        check_timeout: Duration::from_millis(200),
    };
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(watcher.run(stop_rx));
    let hung = rx.recv().await.unwrap();
    assert!(hung.contains("did not finish within 200ms"), "{hung}");
    assert_eq!(health.refusal().map(|(c, _)| c.code()), Some("storage_error"));
    // The stuck check is waited for again, not started twice; once it returns, all is well.
    release.send(()).unwrap();
    let recovered = rx.recv().await.unwrap();
    assert!(recovered.contains("storage recovered"), "{recovered}");
    assert!(health.refusal().is_none());
    stop.send(true).unwrap();
    drop(release);
    task.await.unwrap();
}
