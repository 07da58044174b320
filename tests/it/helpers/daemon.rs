//! The real `vigil` binary as a subprocess, for the fault-injection suite: started from a config
//! file on a port chosen up front (so a restart keeps its public URL, as a real deployment does),
//! killed with SIGKILL at any point, restarted on the same database and directories. Plus the
//! two loopback proxies the faults need: one that delivers every webhook three times at once,
//! one that cuts the database connection.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Daemon {
    child: Child,
    pub base_url: String,
    pub client: reqwest::Client,
    data_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `vigil run --config <config>` (which must listen on `port` and keep its data in
    /// `data_dir`) and waits until it answers `/readyz`.
    pub async fn start(config: &Path, port: u16, data_dir: &Path) -> Daemon {
        vigil::init_tls();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "vigil=info".into()))
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the vigil binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut d = Daemon {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            data_dir: data_dir.to_owned(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("vigil exited ({status}) before it was ready:\n{}", d.log_tail());
            }
            let ready = d.client.get(d.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return d;
            }
            assert!(Instant::now() < deadline, "vigil not ready within 30 s:\n{}", d.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The last lines the daemon logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(40)..].join("\n")
    }

    /// The process id (capture workers lease jobs as `<host>-<pid>-<n>`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no shutdown code runs, whatever was in flight is cut. Its Chromium processes die
    /// with it, as the service manager (systemd's control group, a container) kills them.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        kill_browsers(&self.data_dir);
    }

    /// SIGKILL of vigil alone, outside a service manager: its Chromium runs on, orphaned.
    pub fn kill9_alone(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the exit status once it stopped (within 20 s).
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                kill_browsers(&self.data_dir);
                panic!("vigil did not stop within 20 s of SIGTERM:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            kill_browsers(&self.data_dir);
        }
    }
}

/// SIGKILLs the Chromium processes whose profile lives in `data_dir`. Whether any was found.
pub fn kill_browsers(data_dir: &Path) -> bool {
    Command::new("pkill")
        .args(["-9", "-f", &format!("user-data-dir={}/chromium-", data_dir.display())])
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a Chromium process whose profile lives in `data_dir` is running.
pub fn browsers_running(data_dir: &Path) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("user-data-dir={}/chromium-", data_dir.display())])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One number from the database the daemon uses, read behind its back (the accounting).
pub async fn scalar(database_url: &str, sql: &str) -> i64 {
    if database_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    } else {
        let mut c = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// The first column of every row of `sql`, as text (for failure messages).
pub async fn rows(database_url: &str, sql: &str) -> Vec<String> {
    if database_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    } else {
        let mut c = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// An HTTP proxy in front of the daemon that sends every `POST /hooks/capture` to it three
/// times at once (a retrying sender racing itself) and everything else once.
#[derive(Clone)]
pub struct TriplingProxy {
    pub url: String,
    /// Statuses the daemon answered to the copies, per webhook-id.
    pub answers: Arc<Mutex<Vec<(String, u16)>>>,
    target: Arc<Mutex<String>>,
    client: reqwest::Client,
}

async fn forward(State(p): State<TriplingProxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let target = format!("{}{}", p.target.lock().unwrap(), parts.uri);
    let copies = if parts.uri.path() == "/hooks/capture" { 3 } else { 1 };
    let send = |body: Bytes| {
        let mut r = p.client.request(parts.method.clone(), &target);
        for (name, value) in &parts.headers {
            if name != "host" && name != "content-length" {
                r = r.header(name, value);
            }
        }
        r.body(body).send()
    };
    let answers = futures_util::future::join_all((0..copies).map(|_| send(body.clone()))).await;
    let id = parts.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut last = (StatusCode::BAD_GATEWAY, Bytes::new(), None);
    for a in answers {
        let Ok(a) = a else { continue };
        let status = a.status();
        if copies == 3 {
            p.answers.lock().unwrap().push((id.clone(), status.as_u16()));
        }
        let content_type = a.headers().get("content-type").cloned();
        last = (status, a.bytes().await.unwrap_or_default(), content_type);
    }
    let mut response = (last.0, last.1).into_response();
    if let Some(ct) = last.2 {
        response.headers_mut().insert("content-type", ct);
    }
    response
}

impl TriplingProxy {
    pub async fn start() -> TriplingProxy {
        vigil::init_tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = TriplingProxy {
            url: format!("http://{}", listener.local_addr().unwrap()),
            answers: Arc::default(),
            target: Arc::default(),
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        };
        let app = axum::Router::new().fallback(forward).with_state(p.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        p
    }

    pub fn point_at(&self, base_url: &str) {
        *self.target.lock().unwrap() = base_url.to_owned();
    }
}

/// A TCP proxy to the database that can be cut (open connections reset, new ones refused
/// until restored): the database going away under the daemon.
#[derive(Clone)]
pub struct DbProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<JoinSet<()>>>,
}

impl DbProxy {
    pub async fn start(upstream: SocketAddr) -> DbProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = DbProxy {
            addr: listener.local_addr().unwrap(),
            up: Arc::new(AtomicBool::new(true)),
            conns: Arc::default(),
        };
        let proxy = p.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if !proxy.up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                proxy.conns.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        p
    }

    /// Resets every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.conns.lock().unwrap().abort_all();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
