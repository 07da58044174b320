//! Capture containment (issue 12, docs/capture.md): hostile pages served on loopback try every
//! channel a page has to reach an address the policy refuses, and the refused address must see
//! nothing. The whole of 127.0.0.0/8 is local on Linux, so 127.0.0.2 stands in for a private
//! network, while `allow_private` lists the addresses of the test's own servers.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, wait_for};
use crate::monitoring::{TOKEN, run_now, verdict_of};

/// A page.
fn html(body: &str) -> (u16, &'static str, String) {
    (200, "text/html", body.to_owned())
}

/// What a server answers for a path (without the query).
type Pages = fn(&str) -> (u16, &'static str, String);

/// Every request a [`Server`] got: its path and headers.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// A server on `ip` that answers through `pages` and records every request it gets.
#[derive(Clone)]
struct Server {
    addr: SocketAddr,
    seen: Seen,
}

async fn answer(State((pages, seen)): State<(Pages, Seen)>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    seen.lock().unwrap().push((path.clone(), req.headers().clone()));
    let (status, content_type, body) = pages(&path);
    let mut r = (axum::http::StatusCode::from_u16(status).unwrap(), body).into_response();
    r.headers_mut().insert("content-type", content_type.parse().unwrap());
    if status == 302 {
        r.headers_mut().insert("location", body_location(&path).parse().unwrap());
    }
    r
}

/// Where `/bounce…` redirects: the third-party server, whose port is in the path.
fn body_location(path: &str) -> String {
    let port = path.trim_start_matches("/bounce/");
    format!("http://127.0.0.3:{port}/bounced.png")
}

impl Server {
    async fn start(ip: &str, pages: Pages) -> Server {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().fallback(answer).with_state((pages, seen.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, seen }
    }

    fn paths(&self) -> BTreeSet<String> {
        self.seen.lock().unwrap().iter().map(|(p, _)| p.clone()).collect()
    }
}

/// A sink: records every TCP connection (its request line; each is answered 204) and counts
/// every UDP datagram that reaches it.
struct Sink {
    tcp: SocketAddr,
    udp: SocketAddr,
    connections: Arc<Mutex<Vec<String>>>,
    datagrams: Arc<std::sync::atomic::AtomicUsize>,
}

impl Sink {
    async fn start(ip: &str) -> Sink {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let tcp = listener.local_addr().unwrap();
        let socket = tokio::net::UdpSocket::bind((ip, 0)).await.unwrap();
        let udp = socket.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let datagrams = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                    let first = match n {
                        Ok(Ok(n)) => {
                            String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned()
                        }
                        _ => String::new(),
                    };
                    seen.lock().unwrap().push(first);
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        let count = datagrams.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while socket.recv_from(&mut buf).await.is_ok() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Sink { tcp, udp, connections, datagrams }
    }

    fn paths(&self) -> BTreeSet<String> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|p| p.trim_start_matches("http://").split_once('/').map_or(p, |(_, p)| p).to_owned())
            .map(|p| p.split('?').next().unwrap_or_default().trim_start_matches('/').to_owned())
            .collect()
    }
}

/// The hostile page: every channel at once, then `#done`.
const CHANNELS: &str = r#"<!doctype html><html><body style="margin:0;background:#fff"><h1>channels</h1><script>
const q = new URLSearchParams(location.search);
const sink = q.get('sink'), udp = q.get('udp'), frame = q.get('frame');
const S = 'http://' + sink;
new Image().src = S + '/img';
fetch(S + '/fetch', {mode: 'no-cors'}).catch(() => {});
navigator.sendBeacon(S + '/beacon', 'x');
try { new EventSource(S + '/eventsource'); } catch (e) {}
try { const ws = new WebSocket('ws://' + sink + '/websocket'); ws.onerror = () => {}; } catch (e) {}
const l = document.createElement('link'); l.rel = 'prefetch'; l.href = S + '/prefetch'; document.head.appendChild(l);
window.open(S + '/popup');
const f = document.createElement('iframe'); f.src = 'http://' + frame + '/frame?sink=' + sink; document.body.appendChild(f);
new Worker('/worker.js?sink=' + sink);
new SharedWorker('/shared.js?sink=' + sink);
navigator.serviceWorker.register('/sw.js?sink=' + sink).catch(() => {});
try {
  const pc = new RTCPeerConnection({iceServers: [{urls: 'stun:' + udp}]});
  pc.createDataChannel('x');
  pc.createOffer().then(o => pc.setLocalDescription(o));
} catch (e) {}
setTimeout(() => { const d = document.createElement('div'); d.id = 'done'; document.body.appendChild(d); }, 2500);
</script></body></html>"#;

fn channel_pages(path: &str) -> (u16, &'static str, String) {
    let worker = |name: &str| {
        format!(
            "const s = new URLSearchParams(self.location.search).get('sink');\n\
             fetch('http://' + s + '/{name}', {{mode: 'no-cors'}}).catch(() => {{}});"
        )
    };
    match path {
        "/worker.js" => (200, "text/javascript", worker("worker")),
        "/shared.js" => (200, "text/javascript", worker("shared-worker")),
        "/sw.js" => (
            200,
            "text/javascript",
            "self.addEventListener('install', e => e.waitUntil(fetch('http://' + \
             new URLSearchParams(self.location.search).get('sink') + '/service-worker', {mode: 'no-cors'}).catch(() => {})));"
                .to_owned(),
        ),
        _ => html(CHANNELS),
    }
}

fn frame_pages(_: &str) -> (u16, &'static str, String) {
    html(
        "<!doctype html><body><script>const s = new URLSearchParams(location.search).get('sink');\
         const i = new Image(); i.src = 'http://' + s + '/oopif';</script></body>",
    )
}

/// Submits a capture with the client's token and waits for its job to finish; its document.
async fn finished(app: &TestApp, body: Value) -> Value {
    let r = app.client.post(app.url("/v1/capture")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    let accepted: Value = r.json().await.unwrap();
    let job = accepted["job_id"].as_str().unwrap_or_else(|| panic!("{accepted}")).to_owned();
    app.capture_finished(TOKEN, &job).await
}

async fn capture(app: &TestApp, url: &str) -> Value {
    let body = json!({"url": url, "viewport": {"width": 320, "height": 200}, "wait_until": "load",
                      "wait_for": "#done", "timeout": "30s"});
    finished(app, body).await
}

fn config(allow: &str, extra_capture: &str) -> String {
    format!(
        "auth:\n  api_tokens: [\"{TOKEN}\"]\n\
         capture:\n  workers: 1\n  stability_timeout: 0s\n  max_attempts: 1\n  allow_private: [{allow}]\n{extra_capture}\
         defaults:\n  schedule: \"0 0 1 1 *\"\n  viewports: [320x200]\n  full_page: false\n  wait_until: load\n"
    )
}

/// Every channel a page has, tried twice: towards an allowed sink (each channel must reach it,
/// or the test proves nothing) and towards a refused one (nothing may reach it, not even a UDP
/// datagram).
#[tokio::test]
async fn no_channel_of_a_page_reaches_a_refused_address() {
    let pages = Server::start("127.0.0.1", channel_pages).await;
    let frames = Server::start("127.0.0.3", frame_pages).await;
    let allowed = Sink::start("127.0.0.4").await;
    let refused = Sink::start("127.0.0.2").await;
    let app =
        TestApp::spawn(Backend::Sqlite, &config("\"127.0.0.1/32\", \"127.0.0.3/32\", \"127.0.0.4/32\"", ""))
            .await;
    let url = |sink: &Sink| {
        format!("http://{}/channels?sink={}&udp={}&frame={}", pages.addr, sink.tcp, sink.udp, frames.addr)
    };

    let done = capture(&app, &url(&allowed)).await;
    assert_eq!(done["status"], "completed", "{done}");
    // (The page registers a service worker too, but in a fresh context it does not reach its
    // install step within the capture, so it cannot be asserted on here. Its popup does not
    // open: the popup blocker is on, and a tab that opens anyway is closed at once.)
    let channels = [
        "img",
        "fetch",
        "beacon",
        "eventsource",
        "websocket",
        "prefetch",
        "oopif",
        "worker",
        "shared-worker",
    ];
    let reached = wait_for("every channel at the allowed sink", Duration::from_secs(10), || async {
        let paths = allowed.paths();
        channels.iter().all(|c| paths.contains(*c)).then_some(paths)
    })
    .await;
    assert!(frames.paths().contains("/frame"), "the cross-site frame loaded: {reached:?}");

    let done = capture(&app, &url(&refused)).await;
    assert_eq!(done["status"], "completed", "a refused subresource does not fail the capture: {done}");
    assert_eq!(
        *refused.connections.lock().unwrap(),
        Vec::<String>::new(),
        "connections to a refused address"
    );
    for sink in [&allowed, &refused] {
        let udp = sink.datagrams.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(udp, 0, "WebRTC sent UDP around the proxy");
    }
    app.stop().await.expect("clean shutdown");
}

fn secret_pages(path: &str) -> (u16, &'static str, String) {
    match path {
        p if p.starts_with("/bounce/") => (302, "text/plain", String::new()),
        "/own.png" | "/third.png" | "/bounced.png" => (404, "text/plain", String::new()),
        p => {
            // The page is /page/<third-party port>.
            let port = p.trim_start_matches("/page/");
            html(&format!(
                "<!doctype html><body><img src='/own.png'><img src='http://127.0.0.3:{port}/third.png'>\
                 <img src='/bounce/{port}'></body>"
            ))
        }
    }
}

/// A monitor's `headers` and `basic_auth` go to its own origin, and to no third party: not to
/// a subresource of another origin, not to where its own origin redirects.
#[tokio::test]
async fn a_monitors_secrets_go_only_to_its_own_origin() {
    let own = Server::start("127.0.0.1", secret_pages).await;
    let third = Server::start("127.0.0.3", secret_pages).await;
    let yaml = format!(
        "{}monitors:\n  - name: private\n    url: http://{}/page/{}\n    headers: {{X-Api-Key: key-sekrit}}\n    \
         basic_auth: {{username: robot, password: pass-sekrit}}\n",
        config("\"127.0.0.1/32\", \"127.0.0.3/32\"", ""),
        own.addr,
        third.addr.port()
    );
    let app = TestApp::spawn(Backend::Sqlite, &yaml).await;
    let run = run_now(&app, "private").await;
    assert_eq!(verdict_of(&app, &run).await["verdict"], "baseline_created");

    let seen = |s: &Server| s.seen.lock().unwrap().clone();
    let own_seen = seen(&own);
    for path in ["/own.png", "/bounce/"] {
        let (_, headers) = own_seen.iter().find(|(p, _)| p.starts_with(path)).expect("requested");
        assert_eq!(headers["x-api-key"], "key-sekrit", "{path}");
        assert!(headers["authorization"].to_str().unwrap().starts_with("Basic "), "{path}");
    }
    let third_seen = seen(&third);
    let paths: BTreeSet<&str> = third_seen.iter().map(|(p, _)| p.as_str()).collect();
    assert!(paths.contains("/third.png") && paths.contains("/bounced.png"), "{paths:?}");
    for (path, headers) in &third_seen {
        assert!(headers.get("x-api-key").is_none(), "{path} got the monitor's header");
        assert!(headers.get("authorization").is_none(), "{path} got the monitor's credentials");
    }
    app.stop().await.expect("clean shutdown");
}

fn dialog_pages(path: &str) -> (u16, &'static str, String) {
    match path {
        "/alert" => html(
            "<!doctype html><body style='background:#0a0'><script>window.open('/nagging'); alert('hello'); \
             confirm('sure?'); window.print(); document.body.append('after');</script></body>",
        ),
        // A same-site popup shares the page's renderer: its dialogs would stop the page too.
        "/nagging" => html("<!doctype html><script>for (;;) alert('again');</script>"),
        _ => (
            200,
            "text/html",
            // Spins, after opening popups that spin too.
            "<!doctype html><body><script>onload = () => { for (let i = 0; i < 5; i++) window.open('/spin');\
             setTimeout(() => { for (;;) {} }, 0); };</script></body>"
                .to_owned(),
        ),
    }
}

/// CPU time (user + system, in clock ticks) of the renderer processes of the daemon's
/// Chromium: found by its profile directory under the data directory.
fn renderer_cpu(data_dir: &std::path::Path) -> u64 {
    let profile = format!("--user-data-dir={}", data_dir.join("chromium-").display());
    let mut stats = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let fields: Vec<String> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let ppid: u32 = fields.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        let cpu: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        stats.push((pid, ppid, cpu, cmdline));
    }
    let mut tree: Vec<u32> = stats.iter().filter(|s| s.3.contains(&profile)).map(|s| s.0).collect();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(stats.iter().filter(|s| s.1 == parent).map(|s| s.0));
        i += 1;
    }
    stats.iter().filter(|s| tree.contains(&s.0) && s.3.contains("--type=renderer")).map(|s| s.2).sum()
}

/// Tabs that end: an `alert()` does not stop a capture (the dialogs are reported), nor does a
/// popup that nags; and a page that spins, with its popups, stops using the CPU once its
/// capture timed out.
#[tokio::test]
async fn dialogs_are_dismissed_and_a_spinning_tab_ends_with_its_capture() {
    let pages = Server::start("127.0.0.1", dialog_pages).await;
    let app = TestApp::spawn(Backend::Sqlite, &config("\"127.0.0.1/32\"", "  job_timeout: 5s\n")).await;
    let page = |path: &str| {
        json!({"url": format!("http://{}{path}", pages.addr), "viewport": {"width": 320, "height": 200},
               "wait_until": "load"})
    };

    let done = finished(&app, page("/alert")).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["dialogs"],
        json!([{"type": "alert", "message": "hello"}, {"type": "confirm", "message": "sure?"}]),
        "{done}"
    );

    let done = finished(&app, page("/spin")).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "capture_timeout", "{done}");
    // A spinning tab uses a core; once it is closed, the renderers are idle.
    let ticks = 100; // USER_HZ on Linux
    wait_for("the spinning tabs to stop using the CPU", Duration::from_secs(20), || async {
        let before = renderer_cpu(&app.data_dir());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let used = renderer_cpu(&app.data_dir()).saturating_sub(before);
        (used * 5 < ticks).then_some(())
    })
    .await;
    app.stop().await.expect("clean shutdown");
}

fn heavy_pages(path: &str) -> (u16, &'static str, String) {
    match path {
        "/tall" => html("<!doctype html><body style='margin:0'><div style='height:20000px'></div></body>"),
        _ => html(
            "<!doctype html><body><script>window.keep = []; for (let i = 0; i < 40; i++) \
             window.keep.push(new Uint8Array(25e6).fill(i + 1));</script><div id=done>done</div></body>",
        ),
    }
}

/// Bounded memory: a capture larger than `capture.max_pixels` fails before the screenshot (or
/// is refused at once when its viewport alone is), and a page that allocates past
/// `capture.page_memory` is stopped.
#[tokio::test]
async fn captures_and_pages_stay_within_their_memory_bounds() {
    let pages = Server::start("127.0.0.1", heavy_pages).await;
    let app = TestApp::spawn(
        Backend::Sqlite,
        &config("\"127.0.0.1/32\"", "  max_pixels: 1000000\n  page_memory: 300MiB\n  job_timeout: 60s\n"),
    )
    .await;
    let submit = |body: Value| app.client.post(app.url("/v1/capture")).bearer_auth(TOKEN).json(&body).send();

    let r = submit(json!({"url": format!("http://{}/tall", pages.addr), "viewport": {"width": 1000, "height": 1000, "scale": 2}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "capture_too_large");

    let tall = json!({"url": format!("http://{}/tall", pages.addr), "full_page": true,
                      "viewport": {"width": 320, "height": 200}, "max_height": 65536});
    let done = finished(&app, tall).await;
    assert_eq!(done["error"]["code"], "capture_too_large", "{done}");

    let allocate = json!({"url": format!("http://{}/allocate", pages.addr),
                          "viewport": {"width": 320, "height": 200}, "wait_until": "load"});
    let done = finished(&app, allocate).await;
    assert_eq!(done["status"], "failed", "a page holding 1 GB completed: {done}");
    assert_eq!(done["error"]["code"], "page_memory_exceeded", "{done}");
    app.stop().await.expect("clean shutdown");
}

/// The same bound in the binary users run, which started Chromium from another environment
/// than the in-process daemon above: `vigil` re-executed itself with `GLIBC_TUNABLES`, Chromium
/// inherited it, its renderers could not rename themselves, and the memory watch, which looked
/// for `--type=renderer`, never found one (a page holding 1 GB was captured). Also with a
/// `GLIBC_TUNABLES` the user set, which vigil leaves alone.
#[tokio::test]
async fn the_binary_stops_a_page_past_its_memory_bound() {
    let pages = Server::start("127.0.0.1", heavy_pages).await;
    for tunables in [None, Some("glibc.malloc.hugetlb=1")] {
        let out =
            run_once_binary(pages.addr, &[("allocate", "/allocate")], "  page_memory: 300MiB\n", |once| {
                once.env_remove("GLIBC_TUNABLES");
                if let Some(t) = tunables {
                    once.env("GLIBC_TUNABLES", t);
                }
            })
            .await;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let line = stdout.lines().find(|l| l.starts_with("allocate")).unwrap_or_default();
        assert!(
            line.contains("failed") && line.contains("capture.page_memory"),
            "{tunables:?}: {stdout}\n{stderr}"
        );
        assert_eq!(out.status.code(), Some(1), "{tunables:?}: {stdout}");
    }
}

/// A sign-in form (Autofill's server would be asked about it) with one image at a refused
/// address.
fn form_pages(_: &str) -> (u16, &'static str, String) {
    html(
        "<html><body><form><input name=email autocomplete=email autofocus value=\"ann@example.com\">\
         <input type=password name=password autocomplete=current-password></form>\
         <img src=\"http://127.0.0.2:8089/tracker.png\"></body></html>",
    )
}

/// Chromium's own calls home (Autofill's server on a form, the search engine's preconnect, AI
/// mode's eligibility) are made in the capture's context, so through the page's proxy: with
/// the internet they would leave the monitoring host towards Google, without it they were
/// reported as the page's refused connections. Only the page's own refused request is reported.
#[tokio::test]
async fn the_browsers_own_requests_are_not_the_pages() {
    let pages = Server::start("127.0.0.1", form_pages).await;
    let out = run_once_binary(pages.addr, &[("signin", "/signin"), ("again", "/again")], "", |once| {
        once.env("RUST_LOG", "vigil=info").env("NO_COLOR", "1");
    })
    .await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let reports: Vec<&str> =
        stderr.lines().filter(|l| l.contains("refused connections of the page")).collect();
    assert_eq!(reports.len(), 2, "one report for each capture: {stderr}");
    for line in reports {
        assert!(line.contains("refused=1") && line.contains("127.0.0.2"), "{line}");
    }
}

/// The browser holds no page but the captures': without `--no-startup-window`, headless
/// Chromium opens its New Tab page (a WebUI renderer, with a frame in another) and keeps it for
/// its life, about 80 MiB on every monitoring host. After a capture only the worker's warm tab,
/// parked on `about:blank`, is left.
#[tokio::test]
async fn the_browser_holds_no_page_but_the_captures() {
    let pages = Server::start("127.0.0.1", |_| html("<p id=done>a page</p>")).await;
    let app = TestApp::spawn(Backend::Sqlite, &config("\"127.0.0.1/32\"", "")).await;
    let done = capture(&app, &format!("http://{}/page", pages.addr)).await;
    assert_eq!(done["status"], "completed", "{done}");

    let profile = std::fs::read_dir(app.data_dir())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("chromium-"))
        .expect("the browser's profile")
        .path();
    let active = std::fs::read_to_string(profile.join("DevToolsActivePort")).unwrap();
    let port = active.lines().next().unwrap();
    let targets: Vec<Value> = app
        .client
        .get(format!("http://127.0.0.1:{port}/json/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown: Vec<(&str, &str)> =
        targets.iter().map(|t| (t["type"].as_str().unwrap(), t["url"].as_str().unwrap())).collect();
    assert_eq!(shown, [("page", "about:blank")], "the browser's targets: {targets:#?}");
    app.stop().await.expect("clean shutdown");
}

/// Chromium writes nothing outside the data directory: crashpad kept its database of crash
/// reports in `~/.config/chromium/Crash Reports` (for ever, however full the disk) and GTK its
/// settings cache in `~/.cache`. A pass with an empty home directory leaves it empty.
#[tokio::test]
async fn the_browser_writes_nothing_in_the_home_directory() {
    let pages = Server::start("127.0.0.1", |_| html("<p id=done>a page</p>")).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let out = run_once_binary(pages.addr, &[("page", "/page")], "", |once| {
        once.env("HOME", &home);
        for var in ["XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "BREAKPAD_DUMP_LOCATION"] {
            once.env_remove(var);
        }
    })
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let written: Vec<_> = walk(&home);
    assert!(written.is_empty(), "written in the home directory: {written:?}");
}

/// Every path under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(entry.path());
        if entry.path().is_dir() {
            out.extend(walk(&entry.path()));
        }
    }
    out
}

/// `vigil run --once`, the binary users run (not the in-process daemon), on `monitors` (a name
/// and a path on `pages`) in a directory of its own, with `extra_capture` keys; `env` sets its
/// environment. Its output, within 120 s.
async fn run_once_binary(
    pages: SocketAddr,
    monitors: &[(&str, &str)],
    extra_capture: &str,
    env: impl FnOnce(&mut tokio::process::Command),
) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = format!(
        "storage:\n  database_url: \"sqlite://{db}\"\n  data_dir: \"{data}\"\n  baselines_dir: \"{baselines}\"\n{rest}\
         monitors:\n",
        db = dir.path().join("vigil.db").display(),
        data = dir.path().join("data").display(),
        baselines = dir.path().join("baselines").display(),
        rest = config("\"127.0.0.1/32\"", extra_capture),
    );
    for (name, path) in monitors {
        yaml.push_str(&format!("  - name: {name}\n    url: \"http://{pages}{path}\"\n"));
    }
    let file = dir.path().join("vigil.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut once = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"));
    once.args(["run", "--once", "--config"]).arg(&file);
    env(&mut once);
    tokio::time::timeout(Duration::from_secs(120), once.output()).await.expect("the pass ends").unwrap()
}
