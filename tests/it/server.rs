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

/// A database that still answers reads but refuses writes (switched to read-only, as a standby
/// or an operator would) is not ready: `/readyz` writes, it does not only ping (issue 13,
/// finding 8: it said ready while writes failed).
#[tokio::test]
async fn readyz_reports_a_database_that_refuses_writes() {
    let app = TestApp::spawn(Backend::Postgres, "").await;
    let mut admin = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&crate::helpers::db::admin_url()).await.unwrap()
    };
    let name = app.db.url.rsplit('/').next().unwrap().to_owned();
    // New sessions start read-only; the daemon's current connections are cut so it opens new ones.
    sqlx::query(&format!("ALTER DATABASE {name} SET default_transaction_read_only = on"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let body =
        crate::helpers::wait_for("readyz to see the refused writes", Duration::from_secs(30), || async {
            let r = app.client.get(app.url("/readyz")).send().await.ok()?;
            if r.status() != 503 {
                return None;
            }
            r.json::<serde_json::Value>().await.ok()
        })
        .await;
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_ne!(body["database"], "ok", "{body}");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200, "still alive");
}

/// Runs the real binary on a config, returns the child and the address it listens on, and
/// whether it warned that it accepts the example's token.
fn start_binary(
    dir: &std::path::Path,
    database_url: &str,
) -> (std::process::Child, String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
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
        .env_remove("VIGIL_API_TOKEN")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let warned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = warned.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("WARN") && line.contains("the example's token") {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(addr) = v["address"].as_str()
            {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).expect("the daemon logged its address");
    (child, addr, warned)
}

async fn binary_starts_and_stops_on_sigterm(backend: Backend) {
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, warned) = start_binary(dir.path(), &db.url);
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
    // The example's well-known token is accepted, and the log says so.
    crate::helpers::wait_for("the warning about the example's token", Duration::from_secs(10), || {
        let seen = warned.load(std::sync::atomic::Ordering::SeqCst);
        async move { seen.then_some(()) }
    })
    .await;
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
    let (mut child, addr, _) = start_binary(dir.path(), "");
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

/// Reads from a raw connection until the server closes it; what it answered before closing.
async fn until_closed(stream: &mut tokio::net::TcpStream, deadline: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(deadline, stream.read_to_end(&mut answer))
        .await
        .expect("the server should have closed the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// A silent client, one that sends its head a byte now and then, one that never finishes its
/// body, and a kept-alive connection left idle: each is closed within the configured bounds
/// instead of holding a connection (and its memory) for ever.
#[tokio::test]
async fn slow_silent_and_idle_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let app =
        TestApp::spawn_with_server(Backend::Sqlite, "  header_timeout: 1s\n  body_timeout: 1s\n", "").await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut slow_head = TcpStream::connect(&addr).await.unwrap();
    slow_head.write_all(b"GET /healthz HTTP/1.1\r\nHost: vigil\r\n").await.unwrap();
    let mut slow_body = TcpStream::connect(&addr).await.unwrap();
    slow_body
        .write_all(b"POST /hooks/capture HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"type\"")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: vigil\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the kept-alive connection's first request is answered");

    let started = Instant::now();
    until_closed(&mut silent, Duration::from_secs(20)).await;
    until_closed(&mut slow_head, Duration::from_secs(20)).await;
    let answer = until_closed(&mut slow_body, Duration::from_secs(20)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    until_closed(&mut idle, Duration::from_secs(20)).await;
    // Each bound is 1 s; all four are gone long before the 80 s the finding saw them live.
    assert!(started.elapsed() < Duration::from_secs(20));
    app.stop().await.expect("clean shutdown");
}

/// At `max_connections`, a new connection waits in the backlog until one closes; it is then
/// served. Before the cap, 220 slow connections were all held open at once.
#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let app =
        TestApp::spawn_with_server(Backend::Sqlite, "  max_connections: 3\n  header_timeout: 120s\n", "")
            .await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    // Three silent connections take every slot (the readiness check's kept-alive one may hold
    // one of them; the rest then wait in the backlog, which changes nothing below).
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut waiting = TcpStream::connect(&addr).await.unwrap();
    waiting.write_all(b"GET /healthz HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n").await.unwrap();
    let early =
        tokio::time::timeout(Duration::from_millis(800), until_closed(&mut waiting, Duration::MAX)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    drop(holders);
    let answer = until_closed(&mut waiting, Duration::from_secs(20)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    app.stop().await.expect("clean shutdown");
}

/// Every error vigil answers has the one JSON shape, whoever produced it: a path no route has,
/// a method the route does not take, axum's extractor rejections, a body over the limit, the
/// Slack hook's refusals.
#[tokio::test]
async fn every_error_has_the_one_json_shape() {
    const TOKEN: &str = "an-api-token-long-enough-to-be-accepted";
    let app = TestApp::spawn(Backend::Sqlite, &format!("auth:\n  api_tokens: [\"{TOKEN}\"]\n")).await;
    let c = &app.client;
    let api = |r: reqwest::RequestBuilder| r.bearer_auth(TOKEN);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("unknown path", c.get(app.url("/no/such/page")), 404, "not_found"),
        ("wrong method", c.delete(app.url("/healthz")), 405, "method_not_allowed"),
        (
            "malformed JSON",
            api(c.post(app.url("/api/runs/approve")))
                .header("content-type", "application/json")
                .body("{\"run_ids\": ["),
            400,
            "bad_request",
        ),
        (
            "no content type",
            api(c.post(app.url("/api/runs/approve"))).body("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            "JSON of the wrong shape",
            api(c.post(app.url("/api/runs/approve"))).json(&serde_json::json!({"run_ids": 7})),
            422,
            "invalid_request",
        ),
        (
            "body over the route's limit",
            c.post(app.url("/hooks/slack")).body(vec![b'x'; 300 * 1024]),
            413,
            "payload_too_large",
        ),
        ("bad query", api(c.get(app.url("/api/changes?limit=lots"))), 400, "bad_request"),
        ("unsigned Slack hook", c.post(app.url("/hooks/slack")).body("payload=%7B%7D"), 401, "unauthorized"),
        ("no token", c.get(app.url("/api/monitors")), 401, "unauthorized"),
    ];
    for (what, request, status, code) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let kind = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        if status == 405 {
            assert!(r.headers().get("allow").is_some(), "{what}: Allow header kept");
        }
        assert_eq!(kind.as_deref(), Some("application/json"), "{what}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    }
    app.stop().await.expect("clean shutdown");
}

/// A client that asks and never reads the answers (pipelined requests for a large document)
/// leaves the server blocked writing to it; the write timeout ends that connection. Before, it
/// held its connection slot for ever: 512 such clients shut the server.
#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let app = TestApp::spawn_with_server(
        Backend::Sqlite,
        "  max_connections: 1\n  header_timeout: 2s\n  body_timeout: 1s\n",
        "",
    )
    .await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    // 300 × the OpenAPI document is far more than the socket buffers hold.
    let ask = "GET /openapi.json HTTP/1.1\r\nHost: vigil\r\n\r\n".repeat(300);
    stalled.write_all(ask.as_bytes()).await.unwrap();
    // The only slot is the stalled client's until the write timeout ends it; then this one
    // is served.
    let mut next = TcpStream::connect(&addr).await.unwrap();
    next.write_all(b"GET /healthz HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut next, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(stalled);
    app.stop().await.expect("clean shutdown");
}
