//! A capture's forward proxy: plain-HTTP requests in absolute form, each forwarded on a fresh
//! connection, and CONNECT tunnels (TLS, WebSockets), every one connected through the
//! [`Policy`]. It lives as long as its tab (one capture, or a warm tab's captures; parked,
//! it lets nothing through).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{ConnectError, LIVE_PROXIES, Policy};
use crate::capture::policy::PolicyError;

/// Hosts whose refusal a proxy remembers.
const MAX_REFUSED_HOSTS: usize = 64;

/// A capture's proxy. Dropping it cuts every connection it carries.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    policy: Policy,
    /// Refusals by host (the first of each, a bounded number), to say why a navigation failed.
    refused: Mutex<Vec<(String, PolicyError)>>,
    /// Hosts and ports that could not be reached (connection refused, no route, a timeout; a
    /// name that does not resolve is the policy's `dns_failure`),
    /// with the error: the page then gets a 502 from this proxy, which is not the site's answer.
    unreachable: Mutex<Vec<(String, u16, String)>>,
    /// Connections refused, for one log line per capture rather than one per request.
    refusals: std::sync::atomic::AtomicUsize,
    /// The accept loop.
    tasks: Mutex<JoinSet<()>>,
    /// The connections and the tunnels.
    connections: Mutex<JoinSet<()>>,
    /// Between two captures of a warm tab: nothing goes through.
    parked: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.connections.lock().expect("not poisoned");
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Response<Body>> {
        if self.parked.load(std::sync::atomic::Ordering::Acquire) {
            return Err(plain(StatusCode::SERVICE_UNAVAILABLE, "the capture ended"));
        }
        match self.policy.connect(host, port).await {
            Ok(stream) => Ok(stream),
            Err(ConnectError::Refused(e)) => {
                tracing::debug!(host, port, reason = %e, "capture request refused");
                self.refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let message = format!("refused by vigil's address policy: {e}");
                let mut refused = self.refused.lock().expect("not poisoned");
                if refused.len() < MAX_REFUSED_HOSTS && !refused.iter().any(|(h, _)| h == host) {
                    refused.push((host.to_owned(), e));
                }
                Err(plain(StatusCode::FORBIDDEN, message))
            }
            Err(e @ ConnectError::Io { .. }) => {
                let mut unreachable = self.unreachable.lock().expect("not poisoned");
                let seen = unreachable.iter().any(|(h, p, _)| h == host && *p == port);
                if unreachable.len() < MAX_REFUSED_HOSTS && !seen {
                    unreachable.push((host.to_owned(), port, e.to_string()));
                }
                Err(plain(StatusCode::BAD_GATEWAY, e.to_string()))
            }
        }
    }
}

impl Proxy {
    /// Listens on a fresh loopback port.
    pub async fn start(policy: Policy) -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        LIVE_PROXIES.lock().expect("not poisoned").push(addr.port());
        let shared = Arc::new(Shared {
            policy,
            refused: Mutex::new(Vec::new()),
            unreachable: Mutex::new(Vec::new()),
            refusals: Default::default(),
            tasks: Mutex::new(JoinSet::new()),
            connections: Mutex::new(JoinSet::new()),
            parked: Default::default(),
        });
        let weak = Arc::downgrade(&shared);
        shared.tasks.lock().expect("not poisoned").spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Some(shared) = weak.upgrade() else { break };
                let _ = stream.set_nodelay(true);
                shared.clone().spawn(serve(stream, Arc::downgrade(&shared)));
            }
        });
        Ok(Proxy { addr, shared })
    }

    /// `http://127.0.0.1:port`, for `--proxy-server` or a browser context.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Why connections to `host` were refused, if they were.
    pub fn refusal(&self, host: &str) -> Option<PolicyError> {
        let refused = self.shared.refused.lock().expect("not poisoned");
        refused.iter().find(|(h, _)| bare(h) == bare(host)).map(|(_, e)| e.clone())
    }

    /// Why `host`:`port` could not be reached, if it could not (the proxy answered 502 for it).
    pub fn unreachable(&self, host: &str, port: u16) -> Option<String> {
        let unreachable = self.shared.unreachable.lock().expect("not poisoned");
        unreachable.iter().find(|(h, p, _)| bare(h) == bare(host) && *p == port).map(|(_, _, e)| e.clone())
    }

    /// Between two captures of a warm tab: every connection and tunnel is cut, and none is
    /// made until [`Proxy::resume`] (what the parked page or its workers still send fails).
    pub fn park(&self) {
        self.shared.parked.store(true, std::sync::atomic::Ordering::Release);
        self.shared.connections.lock().expect("not poisoned").abort_all();
    }

    /// Lets connections through again, with the count of refusals started again.
    pub fn resume(&self) {
        self.forget_refusals();
        self.shared.parked.store(false, std::sync::atomic::Ordering::Release);
    }

    /// Starts the count of refusals again, for the next capture through this proxy.
    fn forget_refusals(&self) {
        self.shared.refused.lock().expect("not poisoned").clear();
        self.shared.unreachable.lock().expect("not poisoned").clear();
        self.shared.refusals.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many connections were refused, and the first refusal.
    pub fn refusals(&self) -> (usize, Option<PolicyError>) {
        let first = self.shared.refused.lock().expect("not poisoned").first().map(|(_, e)| e.clone());
        (self.shared.refusals.load(std::sync::atomic::Ordering::Relaxed), first)
    }
}

/// A host as a URL writes it or as a `CONNECT` names it: an IPv6 address without its brackets.
fn bare(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.tasks.lock().expect("not poisoned").abort_all();
        self.shared.connections.lock().expect("not poisoned").abort_all();
        LIVE_PROXIES.lock().expect("not poisoned").retain(|p| *p != self.addr.port());
    }
}

async fn serve(stream: TcpStream, shared: std::sync::Weak<Shared>) {
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move {
            let Some(shared) = shared.upgrade() else {
                return Ok::<_, Infallible>(plain(StatusCode::SERVICE_UNAVAILABLE, "the capture ended"));
            };
            Ok(handle(req, shared).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Response<Body> {
    if req.method() == Method::CONNECT {
        let Some(authority) = req.uri().authority().cloned() else {
            return plain(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        let port = authority.port_u16().unwrap_or(443);
        let mut upstream = match shared.connect(authority.host(), port).await {
            Ok(s) => s,
            Err(refusal) => return refusal,
        };
        shared.spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(req).await {
                let mut client = TokioIo::new(upgraded);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
        return Response::new(Body::empty());
    }
    forward(req, &shared).await
}

/// Headers that describe one hop, not the request.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::UPGRADE,
];

/// A plain-HTTP request in absolute form, sent on a fresh connection to the checked address.
async fn forward(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let uri = req.uri();
    if uri.scheme_str() != Some("http") {
        return plain(StatusCode::BAD_REQUEST, "only absolute http:// requests and CONNECT are proxied");
    }
    let Some(host) = uri.host().map(str::to_owned) else {
        return plain(StatusCode::BAD_REQUEST, "no host in the request");
    };
    let port = uri.port_u16().unwrap_or(80);
    let upstream = match shared.connect(&host, port).await {
        Ok(s) => s,
        Err(refusal) => return refusal,
    };
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
        Ok(pair) => pair,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    shared.spawn(async move {
        let _ = connection.await;
    });
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().map(|a| a.to_string()).unwrap_or_default();
    parts.uri =
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).parse().expect("a path is a valid URI");
    strip_hop_by_hop(&mut parts.headers);
    // The upstream sees the host it was connected for, whatever the client's header said.
    if let Ok(v) = authority.parse() {
        parts.headers.insert(header::HOST, v);
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => plain(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP.iter() {
        headers.remove(name);
    }
    for name in listed {
        headers.remove(name.as_str());
    }
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Body::from(message.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::egress::tests::{allow, tls};
    use crate::capture::egress::{Resolve, Resolving};
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers `first` on the first lookup and `then` on every later one: a rebinding name.
    struct Rebinding {
        first: IpAddr,
        then: IpAddr,
        lookups: AtomicUsize,
    }

    impl Resolve for Rebinding {
        fn resolve(&self, _host: &str, _port: u16) -> Resolving {
            let n = self.lookups.fetch_add(1, Ordering::SeqCst);
            let ip = if n == 0 { self.first } else { self.then };
            Box::pin(async move { Ok(vec![ip]) })
        }
    }

    /// A server that answers every connection with `body` and counts them.
    async fn server(ip: &str, body: &'static str) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        (port, hits)
    }

    async fn get_via(proxy: &Proxy, url: &str) -> (u16, String) {
        tls();
        let client =
            reqwest::Client::builder().proxy(reqwest::Proxy::all(proxy.url()).unwrap()).build().unwrap();
        let r = client.get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    #[tokio::test]
    async fn a_rebinding_name_is_connected_at_the_address_that_was_checked() {
        let (allowed_port, allowed_hits) = server("127.0.0.1", "allowed").await;
        // The refused host listens on the same port number, on another loopback address.
        let refused = TcpListener::bind(("127.0.0.2", allowed_port)).await.unwrap();
        let resolver = Arc::new(Rebinding {
            first: "127.0.0.1".parse().unwrap(),
            then: "127.0.0.2".parse().unwrap(),
            lookups: AtomicUsize::new(0),
        });
        let policy = Policy::new(&allow(&["127.0.0.1/32"]), resolver.clone());
        let proxy = Proxy::start(policy.clone()).await.unwrap();
        let (status, body) = get_via(&proxy, &format!("http://rebind.test:{allowed_port}/")).await;
        assert_eq!((status, body.as_str()), (200, "allowed"));
        assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);
        // The next lookup answers the refused address: refused, and nothing reaches it.
        let (status, body) = get_via(&proxy, &format!("http://rebind.test:{allowed_port}/")).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("127.0.0.2"), "{body}");
        assert!(matches!(proxy.refusal("rebind.test"), Some(PolicyError::Private { .. })));
        assert_eq!(proxy.refusals().0, 1);
        let nothing = tokio::time::timeout(Duration::from_millis(200), refused.accept()).await;
        assert!(nothing.is_err(), "the refused address saw a connection");
        assert_eq!(
            resolver.lookups.load(Ordering::SeqCst),
            2,
            "one lookup per request, used for the connection"
        );
    }

    #[tokio::test]
    async fn connect_tunnels_are_checked_like_plain_requests() {
        let (port, hits) = server("127.0.0.1", "tunnelled").await;
        let proxy = Proxy::start(Policy::system(&allow(&["127.0.0.1/32"]))).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut head = vec![0u8; 1024];
        let n = s.read(&mut head).await.unwrap();
        assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.ends_with("tunnelled"), "{reply}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        for target in ["127.0.0.2:80", "169.254.169.254:80", "[::ffff:169.254.169.254]:80", "10.0.0.1:443"] {
            let mut s = TcpStream::connect(proxy.addr).await.unwrap();
            s.write_all(format!("CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let n = s.read(&mut head).await.unwrap();
            assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 403"), "{target}");
        }
    }

    #[tokio::test]
    async fn dropping_the_proxy_cuts_its_tunnels() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy::start(Policy::system(&allow(&["127.0.0.1/32"]))).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (mut upstream, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 256];
        let _ = s.read(&mut head).await.unwrap();
        drop(proxy);
        // The upstream side sees the tunnel close.
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), upstream.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(n, 0, "the tunnel outlived its capture");
    }
}
