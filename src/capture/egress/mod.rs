//! The one way out (docs/capture.md): every connection a captured page makes, and every request
//! vigil itself makes to a URL a client gave, is resolved once, checked against the address
//! policy, and connected to the address that was checked. A name therefore cannot answer an
//! allowed address to the check and a refused one to the connection (DNS rebinding).
//!
//! For pages this is a forward proxy inside vigil, one per capture, that the capture's browser
//! context is created with: subresources, popups, frames in and out of process, workers,
//! WebSockets, beacons and prefetches all leave through it (CONNECT for TLS and WebSockets,
//! absolute-form requests for plain HTTP). It lives as long as its capture: when the capture
//! ends, every connection it carried is cut. For vigil's own requests it is a reqwest resolver
//! ([`GuardedClient`]).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::TcpStream;
use url::Url;

use super::policy::{self, Class, PolicyError};

/// How long a connection to an upstream may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub type Resolving = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Name resolution; the system's, or in tests one that answers differently each time.
pub trait Resolve: Send + Sync {
    fn resolve(&self, host: &str, port: u16) -> Resolving;
}

/// The operating system's resolver (`getaddrinfo`).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Resolving {
        let host = host.to_owned();
        Box::pin(async move {
            let _slot = LOOKUPS.acquire().await.map_err(io::Error::other)?;
            let lookup = tokio::net::lookup_host((host.as_str(), port));
            match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                Ok(addrs) => Ok(addrs?.map(|a| a.ip()).collect()),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "name lookup timed out")),
            }
        })
    }
}

/// The address policy with the resolver it resolves through.
#[derive(Clone)]
pub struct Policy {
    allow_private: Arc<[IpNet]>,
    resolver: Arc<dyn Resolve>,
    /// Loopback ports no page reaches even when loopback is allowed: vigil's own listener and
    /// the browser's DevTools port. Live capture proxies are added by themselves.
    reserved: Arc<[u16]>,
}

/// The ports of the capture proxies running now: one page may not use another's way out.
pub(super) static LIVE_PROXIES: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Lookups run on blocking threads, and a name server that never answers keeps one each: at
/// most this many at once, each given up after [`LOOKUP_TIMEOUT`].
static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(16);
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("allow_private", &self.allow_private).finish_non_exhaustive()
    }
}

/// Why the proxy could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Refused(#[from] PolicyError),
    #[error("cannot connect to {host}: {error}")]
    Io { host: String, error: io::Error },
}

impl Policy {
    pub fn new(allow_private: &[IpNet], resolver: Arc<dyn Resolve>) -> Self {
        Self { allow_private: allow_private.into(), resolver, reserved: Arc::new([]) }
    }

    /// The same policy, refusing these loopback ports too.
    pub fn reserving(mut self, ports: &[u16]) -> Self {
        self.reserved = self.reserved.iter().chain(ports).copied().collect();
        self
    }

    fn check_port(&self, host: &str, addr: SocketAddr) -> Result<(), PolicyError> {
        let reserved = self.reserved.contains(&addr.port())
            || LIVE_PROXIES.lock().expect("not poisoned").contains(&addr.port());
        if reserved && policy::is_loopback(addr.ip()) {
            return Err(PolicyError::Reserved { host: host.to_owned(), port: addr.port() });
        }
        Ok(())
    }

    /// With the system's resolver.
    pub fn system(allow_private: &[IpNet]) -> Self {
        Self::new(allow_private, Arc::new(SystemResolver))
    }

    /// Whether `ip` may be reached.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), PolicyError> {
        match policy::allowed(ip, &self.allow_private) {
            Ok(()) => Ok(()),
            Err(Class::Forbidden) => Err(PolicyError::Forbidden { host: host.to_owned(), ip }),
            Err(_) => Err(PolicyError::Private { host: host.to_owned(), ip }),
        }
    }

    /// The addresses `host` may be reached at, resolved once. One refused address refuses the
    /// name: which address a connection would use is not the page's to choose.
    pub async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, PolicyError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ips = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self
                .resolver
                .resolve(host, port)
                .await
                .map_err(|_| PolicyError::Unresolvable { host: host.to_owned() })?,
        };
        if ips.is_empty() {
            return Err(PolicyError::Unresolvable { host: host.to_owned() });
        }
        let mut addrs = Vec::with_capacity(ips.len());
        for ip in ips {
            self.check_ip(host, ip)?;
            let addr = SocketAddr::new(ip, port);
            self.check_port(host, addr)?;
            addrs.push(addr);
        }
        Ok(addrs)
    }

    /// Checks an http(s) URL: its scheme, and every address its host resolves to.
    pub async fn check_url(&self, url: &Url) -> Result<(), PolicyError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PolicyError::Scheme);
        }
        let host = url.host_str().unwrap_or_default();
        self.addresses(host, url.port_or_known_default().unwrap_or(80)).await.map(|_| ())
    }

    /// A connection to `host:port`, at an address that was checked.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let addrs = self.addresses(host, port).await?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
            }
        }
        Err(ConnectError::Io { host: host.to_owned(), error: last })
    }
}

/// The policy's refusal inside a failed request, if that is why it failed.
pub fn refused_by_policy<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e PolicyError> {
    let mut source = Some(e);
    while let Some(e) = source {
        if let Some(p) = e.downcast_ref::<PolicyError>() {
            return Some(p);
        }
        source = e.source();
    }
    None
}

/// reqwest resolves through the policy: what it connects to is what was checked.
impl reqwest::dns::Resolve for Policy {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.clone();
        Box::pin(async move {
            let addrs = policy.addresses(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client for URLs a client gave (webhook deliveries, capture downloads): their hosts
/// resolve through the policy, except vigil's own endpoints (`server.public_url`, the capture
/// provider), which the operator configured and may well be on a private network.
#[derive(Clone)]
pub struct GuardedClient {
    guarded: reqwest::Client,
    plain: reqwest::Client,
    policy: Policy,
    own: Arc<[url::Origin]>,
}

impl GuardedClient {
    pub fn new(timeout: Duration, policy: Policy, own: &[Url]) -> Self {
        let guarded = crate::http::client::builder(timeout)
            .no_proxy()
            .dns_resolver(Arc::new(policy.clone()))
            .build()
            .expect("a TLS provider is installed at start");
        Self {
            guarded,
            plain: crate::http::client::client(timeout),
            policy,
            own: own.iter().map(Url::origin).collect(),
        }
    }

    /// The client to reach `url` with, or why it may not be reached. A name is checked when the
    /// request resolves it; an address in the URL is checked here.
    pub fn for_url(&self, url: &str) -> Result<&reqwest::Client, PolicyError> {
        let u = Url::parse(url).map_err(|_| PolicyError::Scheme)?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(PolicyError::Scheme);
        }
        if self.own.contains(&u.origin()) {
            return Ok(&self.plain);
        }
        match u.host() {
            Some(url::Host::Ipv4(ip)) => self.policy.check_ip(&ip.to_string(), ip.into())?,
            Some(url::Host::Ipv6(ip)) => self.policy.check_ip(&ip.to_string(), ip.into())?,
            Some(url::Host::Domain(_)) => {}
            None => return Err(PolicyError::Scheme),
        }
        Ok(&self.guarded)
    }

    /// Whether `url` may be reached, resolving it now (for refusing a request up front).
    pub async fn check(&self, url: &Url) -> Result<(), PolicyError> {
        if self.own.contains(&url.origin()) {
            return Ok(());
        }
        self.policy.check_url(url).await
    }
}

mod proxy;
pub use proxy::Proxy;

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn tls() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    pub(super) fn allow(nets: &[&str]) -> Vec<IpNet> {
        nets.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn a_name_with_one_refused_address_is_refused() {
        struct Both;
        impl Resolve for Both {
            fn resolve(&self, _: &str, _: u16) -> Resolving {
                Box::pin(async { Ok(vec!["127.0.0.1".parse().unwrap(), "169.254.169.254".parse().unwrap()]) })
            }
        }
        let policy = Policy::new(&allow(&["127.0.0.0/8"]), Arc::new(Both));
        assert!(matches!(policy.addresses("mixed.test", 80).await, Err(PolicyError::Forbidden { .. })));
    }

    #[tokio::test]
    async fn the_guarded_client_refuses_addresses_in_urls_and_allows_vigils_own() {
        tls();
        let own: Url = "http://127.0.0.1:8080/".parse().unwrap();
        let c = GuardedClient::new(Duration::from_secs(5), Policy::system(&[]), &[own]);
        assert!(c.for_url("http://127.0.0.1:8080/hooks/capture").is_ok());
        assert!(matches!(c.for_url("http://127.0.0.1:9090/"), Err(PolicyError::Private { .. })));
        assert!(matches!(c.for_url("http://[fe80::1]/"), Err(PolicyError::Forbidden { .. })));
        assert!(matches!(c.for_url("file:///etc/passwd"), Err(PolicyError::Scheme)));
        // A name is resolved through the policy when the request is made.
        let refused = c.for_url("http://localhost:9/").unwrap().get("http://localhost:9/").send().await;
        let e = refused.unwrap_err();
        assert!(crate::http::client::error_chain(&e).contains("private address"), "{e:?}");
    }
}
