//! `/metrics`, in OpenMetrics or the Prometheus text format 0.0.4 as the scraper's `Accept`
//! asks. Feature modules register their own metrics in the shared registry, and seed the label
//! values they know of so that every family is there from the start, at zero; this module adds
//! the HTTP request metrics every route gets.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
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
        Self::seed(
            &webhooks_refused,
            "reason",
            &[
                "missing_signature",
                "malformed_signature",
                "stale_timestamp",
                "invalid_signature",
                "rate_limited",
                "slack_stale",
                "slack_signature",
                "slack_replay",
            ],
        );
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

    /// Creates `family`'s series for each of `values` of `label`, at zero, so that the family is
    /// scraped (and alert rules on it work) before its first event.
    pub fn seed<M: prometheus_client::metrics::TypedMetric + Default>(
        family: &Family<Vec<(String, String)>, M>,
        label: &str,
        values: &[&str],
    ) {
        for value in values {
            let _ = family.get_or_create(&vec![(label.to_owned(), (*value).to_owned())]);
        }
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

async fn scrape(State(metrics): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let refreshes: Vec<_> = {
        let hooks = metrics.before_scrape.lock().expect("metrics hooks poisoned");
        hooks.iter().map(|hook| hook()).collect()
    };
    futures_util::future::join_all(refreshes).await;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (kind, body) = match wants_openmetrics(accept) {
        true => (OPENMETRICS, metrics.encode()),
        false => (PROMETHEUS_TEXT, to_prometheus_text(&metrics.encode())),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, kind), (header::VARY, "accept")], body).into_response()
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether `accept` prefers OpenMetrics to the Prometheus text format (Prometheus itself sends
/// `application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`);
/// anything else, curl's `*/*` included, gets the text format every consumer reads.
fn wants_openmetrics(accept: &str) -> bool {
    let quality = |wanted: &str| {
        accept
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';').map(str::trim);
                let kind = parts.next()?;
                let q = parts
                    .filter_map(|p| p.strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                kind.eq_ignore_ascii_case(wanted).then_some(q)
            })
            .fold(0.0_f32, f32::max)
    };
    let openmetrics = quality("application/openmetrics-text");
    openmetrics > 0.0 && openmetrics >= quality("text/plain")
}

/// The Prometheus text format 0.0.4 from OpenMetrics: a counter's HELP and TYPE name its
/// `_total` series, an info metric becomes a gauge named `_info`, and the `# UNIT` and `# EOF`
/// lines, which that format does not have, go. The series lines are the same in both.
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // OpenMetrics gives HELP before TYPE; the name it should carry is known at TYPE.
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').map_or("", |(_, text)| text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some(text) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if !(line == "# EOF" || line.starts_with("# UNIT ")) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_each_counter_by_its_series() {
        let om = "# HELP vigil_alerts Alert send attempts.\n# TYPE vigil_alerts counter\n\
                  vigil_alerts_total{outcome=\"sent\"} 1\n# HELP vigil_up Up.\n# TYPE vigil_up gauge\n\
                  # UNIT vigil_up seconds\nvigil_up 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP vigil_alerts_total Alert send attempts.\n# TYPE vigil_alerts_total counter\n\
             vigil_alerts_total{outcome=\"sent\"} 1\n# HELP vigil_up Up.\n# TYPE vigil_up gauge\nvigil_up 1\n"
        );
    }

    #[test]
    fn accept_picks_openmetrics_only_when_preferred() {
        // What Prometheus sends, curl's default, and a text-only scraper.
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics(""));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(!wants_openmetrics("text/plain, application/openmetrics-text;q=0.5"));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
    }
}
