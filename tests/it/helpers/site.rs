//! A local test site whose pages the tests control, and a webhook receiver that records what it
//! gets and answers with scripted status codes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

/// Serves `/page/{name}` from a map the test can change, plus a few built-in pages.
#[derive(Clone, Default)]
pub struct TestSite {
    pub pages: Arc<Mutex<std::collections::HashMap<String, String>>>,
    pub hits: Arc<Mutex<Vec<String>>>,
    pub base_url: String,
}

async fn page(State(site): State<TestSite>, Path(name): Path<String>) -> Response {
    site.hits.lock().unwrap().push(name.clone());
    if name == "slow" {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    match site.pages.lock().unwrap().get(&name) {
        // A script any cache may keep for an hour.
        Some(js) if name.ends_with(".js") => (
            [(header::CONTENT_TYPE, "text/javascript"), (header::CACHE_CONTROL, "public, max-age=3600")],
            js.clone(),
        )
            .into_response(),
        Some(html) => Html(html.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}

/// `/hang` never answers (its hits are counted as "/hang"); `/loop` redirects to itself forever;
/// `/status/{code}` answers that status with an HTML error page (its hits are counted as
/// "/status/{code}").
async fn hang(State(site): State<TestSite>) -> Response {
    site.hits.lock().unwrap().push("/hang".into());
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    (StatusCode::OK, "too late").into_response()
}

async fn redirect_loop() -> Response {
    (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response()
}

async fn status_page(State(site): State<TestSite>, Path(code): Path<u16>) -> Response {
    site.hits.lock().unwrap().push(format!("/status/{code}"));
    let html = format!("<html><body style='background:#f00'><h1>Error {code}</h1></body></html>");
    (StatusCode::from_u16(code).unwrap(), Html(html)).into_response()
}

/// `/font.ttf`: a TrueType font of the machine's, 300 ms late (a web font that arrives after the
/// page's first paint).
async fn font(State(site): State<TestSite>) -> Response {
    site.hits.lock().unwrap().push("font.ttf".into());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let bytes = tokio::task::spawn_blocking(|| std::fs::read(system_font()).unwrap()).await.unwrap();
    ([(header::CONTENT_TYPE, "font/ttf")], bytes).into_response()
}

/// The first `.ttf` file under `/usr/share/fonts` (Chromium needs fonts; Debian's come with it).
pub fn system_font() -> std::path::PathBuf {
    fn find(dir: &std::path::Path) -> Option<std::path::PathBuf> {
        let mut entries: Vec<_> =
            std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        entries
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "ttf"))
            .cloned()
            .or_else(|| entries.iter().filter(|p| p.is_dir()).find_map(|p| find(p)))
    }
    find(std::path::Path::new("/usr/share/fonts")).expect("a .ttf font under /usr/share/fonts")
}

/// `/go?to=URL` answers 302 to URL.
async fn redirect(
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, q.get("to").cloned().unwrap_or_default())]).into_response()
}

impl TestSite {
    pub async fn start() -> TestSite {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let site =
            TestSite { base_url: format!("http://{}", listener.local_addr().unwrap()), ..Default::default() };
        site.set("slow", "<html><body style='margin:0;background:#0000ff'>slow</body></html>");
        let app = Router::new()
            .route("/page/{name}", get(page))
            .route("/go", get(redirect))
            .route("/hang", get(hang))
            .route("/font.ttf", get(font))
            .route("/loop", get(redirect_loop))
            .route("/status/{code}", get(status_page))
            .with_state(site.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        site
    }

    pub fn set(&self, name: &str, html: &str) {
        self.pages.lock().unwrap().insert(name.to_owned(), html.to_owned());
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/page/{name}", self.base_url)
    }

    pub fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().iter().filter(|h| *h == name).count()
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: u16,
}

/// Records every webhook; answers with the scripted statuses in order, then 200.
#[derive(Clone, Default)]
pub struct TestReceiver {
    pub received: Arc<Mutex<Vec<Received>>>,
    pub script: Arc<Mutex<VecDeque<u16>>>,
    pub url: String,
}

async fn receive(State(r): State<TestReceiver>, headers: HeaderMap, body: Bytes) -> Response {
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    r.received.lock().unwrap().push(Received { headers, body, status });
    let mut resp = (StatusCode::from_u16(status).unwrap(), "").into_response();
    if status == 302 {
        resp.headers_mut().insert(header::LOCATION, "http://127.0.0.1:1/elsewhere".parse().unwrap());
    }
    resp
}

impl TestReceiver {
    pub async fn start() -> TestReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = TestReceiver {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            ..Default::default()
        };
        let app = Router::new().route("/hook", post(receive)).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    /// Answer these statuses to the next requests, in order.
    pub fn script(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses.iter().copied());
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}
