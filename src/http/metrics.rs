//! `/metrics` in the Prometheus text format. Feature modules register their own metrics in the
//! shared registry; this module adds the HTTP request metrics every route gets.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Work done before each scrape: gauges read from the database.
pub type ScrapeHook = Box<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// The registry and the metrics this module owns.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pub monitors: Gauge,
    /// Capture webhooks refused by the receiver, by reason (bad signature, stale, …).
    pub webhooks_refused: Family<Vec<(String, String)>, Counter>,
    /// Work waiting, by queue (read from the database at each scrape).
    pub queues: Family<Vec<(String, String)>, Gauge>,
    before_scrape: Mutex<Vec<ScrapeHook>>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("vigil");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])
        });
        registry.register("http_request_duration_seconds", "HTTP request latency", latency.clone());
        let monitors = Gauge::default();
        registry.register("monitors", "Monitors in the loaded configuration", monitors.clone());
        let build = Family::<Vec<(String, String)>, Gauge>::default();
        build.get_or_create(&vec![("version".into(), env!("CARGO_PKG_VERSION").into())]).set(1);
        registry.register("build_info", "vigil version", build);
        let webhooks_refused = Family::default();
        registry.register(
            "webhooks_refused",
            "Capture webhooks refused by the receiver, by reason",
            webhooks_refused.clone(),
        );
        let queues = Family::default();
        registry.register("queue_depth", "Work waiting, by queue", queues.clone());
        Arc::new(Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            monitors,
            webhooks_refused,
            queues,
            before_scrape: Mutex::new(Vec::new()),
        })
    }

    /// Lets feature modules add their metrics.
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        self.registry.lock().expect("metrics registry poisoned").register(name, help, metric);
    }

    /// Runs `hook` before every scrape (to refresh gauges that come from the database).
    pub fn before_scrape(&self, hook: ScrapeHook) {
        self.before_scrape.lock().expect("metrics hooks poisoned").push(hook);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry poisoned");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> Response {
    let refreshes: Vec<_> = {
        let hooks = metrics.before_scrape.lock().expect("metrics hooks poisoned");
        hooks.iter().map(|hook| hook()).collect()
    };
    futures_util::future::join_all(refreshes).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics.encode(),
    )
        .into_response()
}

/// The method as a label: the standard ones by name, anything else a client made up as `other`
/// (a label per made-up method would let unauthenticated requests grow the registry without
/// bound).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Counts and times every request by its route pattern (not the raw path, which would let
/// clients create unbounded label values).
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method()).to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let m = &metrics;
    m.latency.get_or_create(&RouteLabels { route: route.clone() }).observe(start.elapsed().as_secs_f64());
    m.requests.get_or_create(&RequestLabels { method, route, status: response.status().as_u16() }).inc();
    response
}
