//! Test fixtures: a daemon on a random port with its own database, fresh databases on both
//! backends, and waiting on conditions with a deadline (never fixed sleeps).

pub mod cluster;
pub mod daemon;
pub mod db;
pub mod pg;
pub mod site;
pub mod slack;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use db::{Backend, TestDb};
pub use site::{TestReceiver, TestSite};

/// Where `scripts/dev tools` installed the test tools (`VIGIL_TEST_TOOLS` names another place).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("VIGIL_TEST_TOOLS")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools"), PathBuf::from)
}

/// A tool the suite needs: missing is a failure that says how to install it, never a skip.
pub fn tool(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `scripts/dev tools` (scripts/dev test does it first)",
        path.display()
    );
    path
}

/// A tool the suite needs from the system's packages, found on `PATH` (see [`tool`]).
pub fn tool_on_path(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.exists()));
    tool(found.unwrap_or_else(|| PathBuf::from(format!("{name} (on PATH)"))))
}

/// Polls `check` until it returns `Some`, or panics after `deadline` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The daemon running in this process on 127.0.0.1:<random>, with its own database and
/// directories; stopped (gracefully) on drop of the shutdown sender.
pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub db: TestDb,
    /// The config file the daemon watches (see [`TestApp::spawn_watching`]).
    pub config_file: Option<PathBuf>,
    /// The generated part of the config (server and storage), before the test's own YAML.
    header: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), vigil::RunError>>>,
}

impl TestApp {
    /// Starts the daemon with `extra_yaml` appended to a config that points at a fresh database.
    pub async fn spawn(backend: Backend, extra_yaml: &str) -> TestApp {
        let db = TestDb::create(backend).await;
        let dir = tempfile::tempdir().expect("temp dir");
        Self::spawn_on(db, dir, extra_yaml).await
    }

    /// Starts the daemon from a config file it watches for changes (hot reload).
    pub async fn spawn_watching(backend: Backend, extra_yaml: &str) -> TestApp {
        let db = TestDb::create(backend).await;
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start(db, dir, extra_yaml, true, None).await
    }

    /// Starts the daemon with `server_yaml` (indented keys) added to its `server:` section.
    pub async fn spawn_with_server(backend: Backend, server_yaml: &str, extra_yaml: &str) -> TestApp {
        let db = TestDb::create(backend).await;
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_with(db, dir, server_yaml, extra_yaml, false, None).await
    }

    /// Starts the daemon with only `roles` (`vigil run --roles …`).
    pub async fn spawn_with_roles(backend: Backend, extra_yaml: &str, roles: &str) -> TestApp {
        let db = TestDb::create(backend).await;
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start(db, dir, extra_yaml, false, Some(roles.parse().expect("valid roles"))).await
    }

    /// Another replica on `other`'s database, with a directory and a config of its own, and
    /// only `roles` if given.
    pub async fn spawn_replica(other: &TestApp, extra_yaml: &str, roles: Option<&str>) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let roles = roles.map(|r| r.parse().expect("valid roles"));
        Self::start(TestDb::sharing(&other.db.url), dir, extra_yaml, false, roles).await
    }

    /// Replaces the watched config file with the generated header and `extra_yaml`, atomically
    /// (as editors and config-map updates do).
    pub fn rewrite_config(&self, extra_yaml: &str) {
        let path = self.config_file.as_ref().expect("started with spawn_watching");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{}{extra_yaml}", self.header)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// Starts the daemon on an existing database and directory (a restart).
    pub async fn spawn_on(db: TestDb, dir: tempfile::TempDir, extra_yaml: &str) -> TestApp {
        Self::start(db, dir, extra_yaml, false, None).await
    }

    async fn start(
        db: TestDb,
        dir: tempfile::TempDir,
        extra_yaml: &str,
        watch: bool,
        roles: Option<vigil::Roles>,
    ) -> TestApp {
        Self::start_with(db, dir, "", extra_yaml, watch, roles).await
    }

    async fn start_with(
        db: TestDb,
        dir: tempfile::TempDir,
        server_yaml: &str,
        extra_yaml: &str,
        watch: bool,
        roles: Option<vigil::Roles>,
    ) -> TestApp {
        vigil::init_tls();
        // RUST_LOG=vigil=debug cargo test … shows the daemon's log for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let header = format!(
            "server:\n  listen: 127.0.0.1:0\n  shutdown_timeout: 5s\n{server_yaml}storage:\n  database_url: \"{}\"\n  data_dir: \"{}\"\n  baselines_dir: \"{}\"\n  min_free: 8MiB\n",
            db.url,
            dir.path().join("data").display(),
            dir.path().join("baselines").display(),
        );
        let yaml = format!("{header}{extra_yaml}");
        let config_file = watch.then(|| {
            let path = dir.path().join("monitors.yaml");
            std::fs::write(&path, &yaml).unwrap();
            path
        });
        let config = vigil::config::parse(&yaml, "test.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let options = vigil::RunOptions { config_path: config_file.clone(), roles, ..Default::default() };
        let task = tokio::spawn(vigil::run_with(
            config,
            listener,
            async {
                let _ = rx.await;
            },
            options,
        ));
        let app = TestApp {
            base_url,
            client: reqwest::Client::new(),
            dir,
            db,
            config_file,
            header,
            shutdown: Some(tx),
            task: Some(task),
        };
        // Ready once the database is open and migrated.
        let url = app.url("/readyz");
        let client = app.client.clone();
        wait_for("the daemon to become ready", Duration::from_secs(20), || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(&url).send().await.ok().filter(|r| r.status() == 200) }
        })
        .await;
        app
    }

    /// Polls `GET /v1/capture/{job}` (with `token`) until the job has completed or failed; its
    /// document.
    pub async fn capture_finished(&self, token: &str, job: &str) -> serde_json::Value {
        wait_for(&format!("capture job {job} to finish"), Duration::from_secs(60), || async {
            let d: serde_json::Value = self
                .client
                .get(self.url(&format!("/v1/capture/{job}")))
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (d["status"] == "completed" || d["status"] == "failed").then_some(d)
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the daemon abruptly, as a crash would: its task is aborted mid-work (its Chromium
    /// is killed with it). Returns the database and directory for a restart.
    pub async fn kill(mut self) -> (TestDb, tempfile::TempDir) {
        self.shutdown.take();
        let task = self.task.take().expect("running");
        task.abort();
        let _ = task.await;
        let db = std::mem::replace(&mut self.db, TestDb::placeholder());
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        (db, dir)
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), vigil::RunError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("daemon stopped within 10 s")
            .expect("daemon task did not panic")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
