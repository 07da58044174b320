//! The asynchronous capture pipeline: the API only writes job rows; a pool of workers claims
//! them with a lease, captures in headless Chromium, stores the asset and queues the signed
//! completion webhook in the same transaction as the job's completion.

pub mod api;
pub mod browser;
pub mod client;
pub mod document;
pub mod egress;
pub mod engine;
pub mod error;
mod load;
pub mod login;
pub mod policy;
mod prepare;
pub mod profile;
pub mod request;
pub mod tab;
mod words;
pub mod worker;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Notify;

pub use api::{CaptureApi, router};
pub use document::AssetUrls;

/// What the API and the workers share.
pub struct CaptureService {
    pub asset_urls: AssetUrls,
    /// Woken when a job is queued, so idle workers start at once instead of on their next poll.
    pub jobs_ready: Arc<Notify>,
    pub pool: browser::BrowserPool,
    pub metrics: CaptureMetrics,
}

type Labels = Vec<(String, String)>;

#[derive(Clone)]
pub struct CaptureMetrics {
    /// Finished attempts by outcome: completed, retried, failed.
    pub attempts: Family<Labels, Counter>,
    pub duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// Jobs by state, refreshed from the database when /metrics is scraped.
    pub jobs: Family<Labels, prometheus_client::metrics::gauge::Gauge>,
    /// Successful captures by the tab they ran in: fresh, or warm (kept from the last capture).
    pub tabs: Family<Labels, Counter>,
}

impl CaptureMetrics {
    pub fn new(registry: &crate::http::Metrics, pool: &browser::BrowserPool) -> Self {
        let m = CaptureMetrics {
            attempts: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0])
            }),
            jobs: Family::default(),
            tabs: Family::default(),
        };
        registry.register("capture_jobs", "Capture jobs by state", m.jobs.clone());
        registry.register("capture_attempts", "Capture attempts by outcome", m.attempts.clone());
        crate::http::Metrics::seed(&m.attempts, "outcome", &["completed", "retried", "failed"]);
        registry.register("capture_duration_seconds", "Duration of successful captures", m.duration.clone());
        registry.register("capture_tabs", "Successful captures by the tab they ran in", m.tabs.clone());
        crate::http::Metrics::seed(&m.tabs, "tab", &["fresh", "warm"]);
        registry.register(
            "browser_launches",
            "Chromium launches (first start and relaunches)",
            pool.launches.clone(),
        );
        m
    }
}

impl CaptureService {
    /// Updates the gauges that come from the database.
    pub async fn refresh_gauges(&self, store: &dyn crate::store::Store) {
        if let Ok(counts) = store.count_jobs().await {
            for status in ["queued", "running", "completed", "failed"] {
                let n = counts.iter().find(|(s, _)| s.as_str() == status).map_or(0, |(_, n)| *n);
                self.metrics.jobs.get_or_create(&vec![("state".into(), status.into())]).set(n);
            }
        }
    }

    pub fn new(asset_urls: AssetUrls, pool: browser::BrowserPool, metrics: CaptureMetrics) -> Arc<Self> {
        Arc::new(Self { asset_urls, jobs_ready: Arc::new(Notify::new()), pool, metrics })
    }
}
