//! The daemon's HTTP skeleton and process lifecycle, on both backends.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Backend, TestApp, TestDb};

async fn health_and_metrics(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["database"], "ok");

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(r#"vigil_http_requests_total{method="GET",route="/readyz",status="200"}"#),
        "{text}"
    );
    assert!(text.contains("vigil_build_info"), "{text}");

    let r = app.client.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Made-up methods (no authentication needed) share one label: the registry stays small.
    for i in 0..50 {
        let method =
            reqwest::Method::from_bytes(format!("MADEUP{i}{}", "X".repeat(2000)).as_bytes()).unwrap();
        app.client.request(method, app.url("/healthz")).send().await.unwrap();
    }
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("MADEUP"), "a label per made-up method");
    assert!(
        text.contains(r#"vigil_http_requests_total{method="other",route="/healthz",status="405"} 50"#),
        "{text}"
    );
    // The database and directories exist where the config says.
    assert!(app.data_dir().is_dir());
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn health_and_metrics_sqlite() {
    health_and_metrics(Backend::Sqlite).await;
}

#[tokio::test]
async fn health_and_metrics_postgres() {
    health_and_metrics(Backend::Postgres).await;
}

#[tokio::test]
async fn readyz_reports_an_unreachable_database() {
    let app = TestApp::spawn(Backend::Postgres, "").await;
    // Take the app's own database away underneath it.
    let mut admin = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&crate::helpers::db::admin_url()).await.unwrap()
    };
    let name = app.db.url.rsplit('/').next().unwrap().to_owned();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "liveness does not depend on the database");
}

/// Runs the real binary on a config, returns the child and the address it listens on.
fn start_binary(dir: &std::path::Path, database_url: &str) -> (std::process::Child, String) {
    let config = dir.join("monitors.yaml");
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/monitors.example.yaml")).unwrap();
    std::fs::write(&config, example.replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .current_dir(dir)
        .env("VIGIL_DATABASE_URL", database_url)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(addr) = v["address"].as_str()
            {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).expect("the daemon logged its address");
    (child, addr)
}

async fn binary_starts_and_stops_on_sigterm(backend: Backend) {
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_binary(dir.path(), &db.url);
    vigil::init_tls();
    let client = reqwest::Client::new();
    let ready =
        crate::helpers::wait_for("readyz 200", Duration::from_secs(20), || {
            let (client, addr) = (client.clone(), addr.clone());
            async move {
                client.get(format!("http://{addr}/readyz")).send().await.ok().filter(|r| r.status() == 200)
            }
        })
        .await;
    assert_eq!(ready.status(), 200);
    assert_eq!(client.get(format!("http://{addr}/healthz")).send().await.unwrap().status(), 200);
    if backend == Backend::Sqlite {
        assert!(dir.path().join("vigil.db").exists() || db.url.contains("vigil.db"));
    }

    // SIGHUP reloads the config (an unchanged file still counts as a reload) and does not stop it.
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    crate::helpers::wait_for("the SIGHUP reload", Duration::from_secs(20), || {
        let (client, addr) = (client.clone(), addr.clone());
        async move {
            let metrics =
                client.get(format!("http://{addr}/metrics")).send().await.ok()?.text().await.ok()?;
            metrics.contains("vigil_config_reloads_total{outcome=\"applied\"} 1").then_some(())
        }
    })
    .await;
    assert!(child.try_wait().unwrap().is_none(), "still running after SIGHUP");

    let sent = Instant::now();
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = crate::helpers::wait_for("the daemon to exit", Duration::from_secs(5), || {
        let r = child.try_wait().unwrap();
        async move { r }
    })
    .await;
    assert!(exit.success(), "exit status {exit:?}");
    assert!(sent.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn binary_runs_example_config_and_stops_on_sigterm_sqlite() {
    binary_starts_and_stops_on_sigterm(Backend::Sqlite).await;
}

#[tokio::test]
async fn binary_runs_example_config_and_stops_on_sigterm_postgres() {
    binary_starts_and_stops_on_sigterm(Backend::Postgres).await;
}

#[tokio::test]
async fn binary_creates_the_default_sqlite_database() {
    // No database URL given: the example's default, sqlite://vigil.db in the working directory.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_binary(dir.path(), "");
    vigil::init_tls();
    let client = reqwest::Client::new();
    crate::helpers::wait_for("readyz 200", Duration::from_secs(20), || {
        let (client, addr) = (client.clone(), addr.clone());
        async move {
            client
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        }
    })
    .await;
    assert!(dir.path().join("vigil.db").is_file());
    assert!(dir.path().join("baselines").is_dir());
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let exit = crate::helpers::wait_for("the daemon to exit", Duration::from_secs(5), || {
        let r = child.try_wait().unwrap();
        async move { r }
    })
    .await;
    assert!(exit.success());
}
