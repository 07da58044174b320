//! Storage health: the free space and writability of every volume vigil writes (the SQLite
//! database's directory, `storage.data_dir`, `storage.baselines_dir`, and a `storage.blobs`
//! directory outside `data_dir`), checked every few
//! seconds. Below `storage.min_free`, or read-only, or failing writes, a volume is in trouble,
//! and while one is:
//!
//! - no capture starts: a scheduled tick is recorded as a `skipped` run (reason `storage_low`,
//!   `storage_read_only` or `storage_error`), "run now" and `POST /v1/capture` answer 503;
//! - `/readyz` answers 503 naming the volume;
//! - the operator hears it once (log and Slack), with what an emergency prune freed, and once
//!   more when the volume is healthy again.
//!
//! The checks read `statvfs` and write (then delete) a one-byte probe file, so a volume that
//! turned read-only or fails writes is seen even when `statvfs` looks fine.
//!
//! A volume can also fill to the last byte faster than a check (another program writing), and
//! then the database cannot even record that the runs in flight failed. For that moment vigil
//! keeps a **ballast** ([`Ballast`]): a file in `data_dir` holding a quarter of the low-water
//! mark (at most 16 MiB), deleted when a volume is nearly full so that the runs in flight can be
//! recorded (failed or done), and written again once the space is back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, MinFree};
use crate::time::Timestamp;

mod ballast;
pub use ballast::Ballast;

/// How often the volumes are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The probe file written at each check.
const PROBE: &str = ".vigil-write-probe";

/// A directory vigil writes, by the name it is reported under.
#[derive(Debug, Clone)]
pub struct Volume {
    pub name: &'static str,
    pub dir: PathBuf,
}

/// The volumes `config` makes vigil write: the SQLite file's directory (none for PostgreSQL),
/// the data directory and the baselines directory.
pub fn volumes(config: &Config) -> Vec<Volume> {
    let mut out = Vec::new();
    if let Some(file) = crate::store::sqlite_file(config.storage.database_url.expose()) {
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        out.push(Volume { name: "database", dir: dir.to_owned() });
    }
    out.push(Volume { name: "data", dir: config.storage.data_dir.clone() });
    out.push(Volume { name: "baselines", dir: config.storage.baselines_dir.clone() });
    // Images in a directory of their own (`storage.blobs: file://…` outside `data_dir`); a
    // bucket is looked at by `/readyz`.
    if let crate::config::BlobLocation::Files(dir) = &config.storage.blobs
        && !dir.starts_with(&config.storage.data_dir)
    {
        out.push(Volume { name: "blobs", dir: dir.clone() });
    }
    out
}

/// How a volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Ok,
    /// Free space below `storage.min_free` (or a write answered "no space").
    Low,
    ReadOnly,
    /// `statvfs` or the probe write failed for another reason (I/O error, permissions).
    Failing,
}

impl Condition {
    /// The reason given for a skipped tick and the code of a 503.
    pub fn code(self) -> &'static str {
        match self {
            Condition::Ok => "ok",
            Condition::Low => "storage_low",
            Condition::ReadOnly => "storage_read_only",
            Condition::Failing => "storage_error",
        }
    }

    /// The code of a run that could not be stored because of this.
    pub fn run_code(self) -> &'static str {
        match self {
            Condition::Low => "storage_full",
            _ => "storage_error",
        }
    }
}

/// One volume at the last check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeState {
    pub name: &'static str,
    pub path: String,
    pub condition: Condition,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub min_free_bytes: u64,
    /// What went wrong, when the condition is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The file system's device id: volumes on the same device share their space.
    #[serde(skip)]
    pub device: u64,
}

/// Every volume at the last check.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Health {
    pub volumes: Vec<VolumeState>,
}

impl Health {
    /// The volume in the worst trouble, if any is.
    pub fn trouble(&self) -> Option<&VolumeState> {
        let rank = |c: Condition| match c {
            Condition::Ok => 0,
            Condition::Low => 1,
            Condition::Failing => 2,
            Condition::ReadOnly => 3,
        };
        self.volumes.iter().filter(|v| v.condition != Condition::Ok).max_by_key(|v| rank(v.condition))
    }

    /// Why captures are refused now: the code and a sentence for people.
    pub fn refusal(&self) -> Option<(Condition, String)> {
        self.trouble().map(|v| (v.condition, v.describe()))
    }

    /// A volume low with less free than the ballast holds: what is left is for the runs in flight.
    pub fn nearly_full(&self) -> bool {
        self.volumes
            .iter()
            .any(|v| v.condition == Condition::Low && v.free_bytes < Ballast::size(v.min_free_bytes))
    }
}

impl VolumeState {
    fn unknown(volume: &Volume) -> VolumeState {
        VolumeState {
            name: volume.name,
            path: volume.dir.display().to_string(),
            condition: Condition::Ok,
            free_bytes: 0,
            total_bytes: 0,
            min_free_bytes: 0,
            detail: None,
            device: 0,
        }
    }

    pub fn describe(&self) -> String {
        let free = human_bytes(self.free_bytes);
        match self.condition {
            Condition::Ok => format!("{} volume ({}): {free} free", self.name, self.path),
            Condition::Low => format!(
                "{} volume ({}) is low on space: {free} free, below the {} mark (storage.min_free){}",
                self.name,
                self.path,
                human_bytes(self.min_free_bytes),
                self.detail.as_deref().map(|d| format!("; {d}")).unwrap_or_default()
            ),
            Condition::ReadOnly => format!("{} volume ({}) is read-only", self.name, self.path),
            Condition::Failing => format!(
                "{} volume ({}) fails writes: {}",
                self.name,
                self.path,
                self.detail.as_deref().unwrap_or("unknown error")
            ),
        }
    }
}

/// `1.5 GiB`, `200 KiB`, `17 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Space on a volume, as `statvfs` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    pub total: u64,
    pub read_only: bool,
}

/// The storage boundary the checks go through: the real file system, or a test's faults.
pub trait Probe: Send + Sync + 'static {
    fn space(&self, dir: &Path) -> std::io::Result<Space>;
    /// Writes and removes a small file in `dir`.
    fn write_test(&self, dir: &Path) -> std::io::Result<()>;
}

/// The file system itself.
pub struct FileSystem;

impl Probe for FileSystem {
    fn space(&self, dir: &Path) -> std::io::Result<Space> {
        let s = rustix::fs::statvfs(dir)?;
        Ok(Space {
            free: s.f_bavail.saturating_mul(s.f_frsize),
            total: s.f_blocks.saturating_mul(s.f_frsize),
            read_only: s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
        })
    }

    fn write_test(&self, dir: &Path) -> std::io::Result<()> {
        let path = dir.join(PROBE);
        let written =
            std::fs::File::create(&path).and_then(|mut f| f.write_all(b"v").and_then(|()| f.sync_all()));
        let _ = std::fs::remove_file(&path);
        written
    }
}

/// The checks' results, shared by everything that must not write into a full volume.
#[derive(Clone)]
pub struct DiskHealth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DiskHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskHealth").field("state", &*self.inner.state.borrow()).finish_non_exhaustive()
    }
}

struct Inner {
    volumes: Vec<Volume>,
    min_free: MinFree,
    probe: Box<dyn Probe>,
    state: watch::Sender<Health>,
    /// The last time a check found trouble, and the worst trouble it found.
    last_trouble: Mutex<Option<(Timestamp, Condition)>>,
}

impl DiskHealth {
    pub fn new(volumes: Vec<Volume>, min_free: MinFree) -> Self {
        Self::with_probe(volumes, min_free, Box::new(FileSystem))
    }

    pub fn with_probe(volumes: Vec<Volume>, min_free: MinFree, probe: Box<dyn Probe>) -> Self {
        let (state, _) = watch::channel(Health::default());
        DiskHealth {
            inner: Arc::new(Inner { volumes, min_free, probe, state, last_trouble: Mutex::new(None) }),
        }
    }

    /// Looks at every volume now (blocking file system calls) and publishes the result. A
    /// volume that was low counts as recovered only with [`recovery_margin`] above the mark, so
    /// one that hovers at the mark does not flap between the two every few seconds.
    pub fn check(&self) -> Health {
        let inner = &self.inner;
        let before = self.current();
        let mut volumes: Vec<VolumeState> =
            inner.volumes.iter().map(|v| assess(&*inner.probe, v, inner.min_free)).collect();
        for v in &mut volumes {
            let was_low = before.volumes.iter().any(|b| b.name == v.name && b.condition == Condition::Low);
            let short = v.min_free_bytes.saturating_add(recovery_margin(v.min_free_bytes));
            if was_low && v.condition == Condition::Ok && v.free_bytes < short {
                v.condition = Condition::Low;
                v.detail = Some(format!("recovers once {} are free", human_bytes(short)));
            }
        }
        self.publish(Health { volumes })
    }

    /// A check that did not finish (a hung file system): every volume is failing.
    pub fn hung(&self, why: &str) -> Health {
        let mut health = self.current();
        if health.volumes.is_empty() {
            health.volumes = self.inner.volumes.iter().map(VolumeState::unknown).collect();
        }
        for v in &mut health.volumes {
            v.condition = Condition::Failing;
            v.detail = Some(why.to_owned());
        }
        self.publish(health)
    }

    fn publish(&self, health: Health) -> Health {
        if let Some(v) = health.trouble() {
            *self.inner.last_trouble.lock().expect("not poisoned") = Some((Timestamp::now(), v.condition));
        }
        self.inner.state.send_replace(health.clone());
        health
    }

    /// The result of the last check.
    pub fn current(&self) -> Health {
        self.inner.state.borrow().clone()
    }

    /// Why captures are refused now, if they are.
    pub fn refusal(&self) -> Option<(Condition, String)> {
        self.inner.state.borrow().refusal()
    }

    /// Whether a check found trouble at or after `since` (a run started then that never
    /// finished is counted as the disk's doing).
    pub fn troubled_since(&self, since: Timestamp) -> Option<Condition> {
        let (last, condition) = (*self.inner.last_trouble.lock().expect("not poisoned"))?;
        (last >= since).then_some(condition)
    }
}

/// How far above the mark a low volume must get before it counts as recovered: 5 % of the
/// mark, at least 1 MiB.
pub fn recovery_margin(mark: u64) -> u64 {
    (mark / 20).max(1 << 20)
}

/// One volume's condition. A directory not created yet is judged by its nearest existing
/// parent (that is where its files will go).
fn assess(probe: &dyn Probe, volume: &Volume, min_free: MinFree) -> VolumeState {
    let dir = existing_ancestor(&volume.dir);
    let mut state = VolumeState::unknown(volume);
    state.device = device(&dir);
    match probe.space(&dir) {
        Ok(space) => {
            state.free_bytes = space.free;
            state.total_bytes = space.total;
            state.min_free_bytes = min_free.bytes(space.total);
            if space.read_only {
                state.condition = Condition::ReadOnly;
                return state;
            }
        }
        Err(e) => {
            state.condition = Condition::Failing;
            state.detail = Some(format!("cannot read the free space: {e}"));
            return state;
        }
    }
    if let Err(e) = probe.write_test(&dir) {
        use std::io::ErrorKind::{QuotaExceeded, ReadOnlyFilesystem, StorageFull};
        state.condition = match e.kind() {
            StorageFull | QuotaExceeded => Condition::Low,
            ReadOnlyFilesystem => Condition::ReadOnly,
            _ => Condition::Failing,
        };
        state.detail = Some(format!("a test write failed: {e}"));
    } else if state.free_bytes < state.min_free_bytes {
        state.condition = Condition::Low;
    }
    state
}

#[cfg(unix)]
fn device(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).map_or(0, |m| m.dev())
}

#[cfg(not(unix))]
fn device(_: &Path) -> u64 {
    0
}

fn existing_ancestor(dir: &Path) -> PathBuf {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    dir.ancestors().find(|d| d.is_dir()).unwrap_or(Path::new(".")).to_owned()
}

/// What the watcher does on a change of the disk's health: free space, tell people.
#[async_trait::async_trait]
pub trait OnTrouble: Send + Sync + 'static {
    /// Frees what can go; says what it freed.
    async fn emergency_prune(&self) -> Option<String>;
    /// Every volume is healthy again: redo what the trouble left undone.
    async fn recovered(&self) {}
}

/// Looks at the volumes every [`CHECK_EVERY`], keeps the gauges, and tells the operator when
/// trouble starts and ends.
pub struct Watcher {
    pub health: DiskHealth,
    /// `vigil_storage_free_bytes{volume}`, `vigil_storage_size_bytes{volume}` and
    /// `vigil_storage_healthy{volume}` (1, or 0 while low, read-only or failing).
    pub free: Family<Vec<(String, String)>, Gauge>,
    pub size: Family<Vec<(String, String)>, Gauge>,
    pub healthy: Family<Vec<(String, String)>, Gauge>,
    /// Operator notices, posted in order (log always, Slack when configured).
    pub notices: mpsc::Sender<String>,
    /// What to do when trouble starts and ends; `None`: nothing but tell.
    pub upkeep: Option<Arc<dyn OnTrouble>>,
    /// Released when a volume is nearly full; `None`: no ballast (a process that stores nothing).
    pub ballast: Option<Arc<Ballast>>,
    /// A check that takes longer is a hung file system ([`CHECK_TIMEOUT`]).
    pub check_timeout: Duration,
}

/// A pruning pass while the disk stays low, at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How long the operator notice waits for the emergency prune's result.
const PRUNE_WAIT: Duration = Duration::from_secs(60);
/// A check (statvfs and a probe write per volume) that takes longer is a hung file system.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

impl Watcher {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut was: Option<Condition> = None;
        let mut pruned_at: Option<tokio::time::Instant> = None;
        // A check that outlived its timeout: awaited again instead of starting another.
        let mut stuck: Option<tokio::task::JoinHandle<(Health, Option<String>)>> = None;
        loop {
            let mut check = stuck.take().unwrap_or_else(|| self.spawn_check());
            let now = match tokio::time::timeout(self.check_timeout, &mut check).await {
                Ok(Ok((now, released))) => {
                    if let Some(released) = released {
                        tracing::warn!("{released}");
                        self.notify(format!(":warning: vigil: a volume is full; {released}."));
                    }
                    now
                }
                Ok(Err(e)) => self.health.hung(&format!("the storage check failed: {e}")),
                Err(_) => {
                    stuck = Some(check);
                    let why = format!(
                        "the storage check did not finish within {:?} (a hung file system?)",
                        self.check_timeout
                    );
                    self.health.hung(&why)
                }
            };
            self.record(&now);
            let trouble = now.trouble().cloned();
            let condition = trouble.as_ref().map(|v| v.condition);
            let any_low = now.volumes.iter().any(|v| v.condition == Condition::Low);
            let prune_due = any_low && pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
            match (&trouble, was) {
                (Some(v), prev) if prev != Some(v.condition) => {
                    tracing::error!(volume = v.name, path = %v.path, condition = v.condition.code(), free_bytes = v.free_bytes, "{}; captures are paused", v.describe());
                    let mut text = format!(
                        ":warning: vigil: the {}. New captures are paused until it is fixed; runs that cannot be stored end `failed` ({}).",
                        v.describe(),
                        v.condition.run_code()
                    );
                    if prune_due {
                        pruned_at = Some(tokio::time::Instant::now());
                        if let Some(freed) = self.prune().await {
                            text.push_str(&format!(" Emergency prune: {freed}."));
                        }
                    }
                    self.notify(text);
                }
                (Some(v), _) if prune_due => {
                    pruned_at = Some(tokio::time::Instant::now());
                    if let Some(freed) = self.prune().await {
                        tracing::warn!(volume = v.name, "still low on space; emergency prune: {freed}");
                    }
                }
                (None, Some(_)) => {
                    let summary: Vec<String> = now.volumes.iter().map(VolumeState::describe).collect();
                    tracing::info!("storage recovered; captures resume ({})", summary.join("; "));
                    self.notify(format!(
                        ":white_check_mark: vigil: storage recovered, captures resume ({}).",
                        summary.join("; ")
                    ));
                    if let Some(upkeep) = self.upkeep.clone() {
                        tokio::spawn(async move { upkeep.recovered().await });
                    }
                }
                _ => {}
            }
            was = condition;
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn spawn_check(&self) -> tokio::task::JoinHandle<(Health, Option<String>)> {
        let (health, ballast) = (self.health.clone(), self.ballast.clone());
        tokio::task::spawn_blocking(move || {
            let now = health.check();
            let released = ballast.and_then(|b| b.adjust(&now));
            (now, released)
        })
    }

    fn record(&self, health: &Health) {
        for v in &health.volumes {
            let labels = vec![("volume".to_owned(), v.name.to_owned())];
            self.free.get_or_create(&labels).set(v.free_bytes.min(i64::MAX as u64) as i64);
            self.size.get_or_create(&labels).set(v.total_bytes.min(i64::MAX as u64) as i64);
            self.healthy.get_or_create(&labels).set(i64::from(v.condition == Condition::Ok));
        }
    }

    /// The emergency prune, waited for at most [`PRUNE_WAIT`] (it goes on after that, and its
    /// result is logged).
    async fn prune(&self) -> Option<String> {
        let upkeep = self.upkeep.clone()?;
        let mut task = tokio::spawn(async move { upkeep.emergency_prune().await });
        match tokio::time::timeout(PRUNE_WAIT, &mut task).await {
            Ok(Ok(freed)) => freed,
            Ok(Err(e)) => Some(format!("the prune failed ({e})")),
            Err(_) => {
                tokio::spawn(async move {
                    if let Ok(Some(freed)) = task.await {
                        tracing::warn!("emergency prune: {freed}");
                    }
                });
                Some("still running (its result will be in the log)".into())
            }
        }
    }

    fn notify(&self, text: String) {
        if self.notices.try_send(text).is_err() {
            tracing::warn!("operator notices are backed up; one was dropped (it is in this log)");
        }
    }
}

#[cfg(test)]
mod tests;
