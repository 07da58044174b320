//! The services a process builds once, whatever roles it runs, and the roles that start from
//! them: each role adds its routes to the router and its loops to the background tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::RunError;
use super::keys;
use crate::alert::email::Mailer;
use crate::alert::events::Events;
use crate::alert::interactions::{Interactions, SlackHooks};
use crate::alert::run_alerts::RunAlerts;
use crate::alert::{Alerter, SlackSender};
use crate::baseline::Baselines;
use crate::capture::browser::{BrowserPool, BrowserSettings};
use crate::capture::client::CaptureClient;
use crate::capture::worker::Worker;
use crate::capture::{AssetUrls, CaptureApi, CaptureMetrics, CaptureService};
use crate::config::{Config, LiveMonitors, Secret, Target};
use crate::disk::DiskHealth;
use crate::http::client::client;
use crate::http::rate_limit::RateLimiter;
use crate::http::{Auth, Metrics};
use crate::pipeline::runs::Runs;
use crate::pipeline::{MonitorsApi, Processor, Reconciler};
use crate::retention::Pruner;
use crate::review::{Reviewer, api::ReviewApi};
use crate::scheduler::Scheduler;
use crate::signing::SigningKey;
use crate::store::blobs::{BaselineFiles, BlobStore};
use crate::store::{MonitorUpsert, Store};
use crate::time::Timestamp;
use crate::webhook::delivery::{Deliverer, Sender};
use crate::webhook::receiver::Receiver;

/// What every role draws on.
pub struct Services {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub baselines: Baselines,
    pub reviewer: Reviewer,
    pub metrics: Arc<Metrics>,
    /// The monitors in force; replaced on reload.
    pub monitors: LiveMonitors,
    pub auth: Auth,
    /// Signs outgoing webhooks (and, derived, asset links).
    pub webhook_key: SigningKey,
    /// Seals the kept state of login sessions.
    pub login_sealer: Arc<crate::capture::login::Sealer>,
    /// Starts runs and submits their captures.
    pub runs: Arc<Runs>,
    /// Woken when a capture result is stored, for the processor.
    pub results: Arc<Notify>,
    /// Woken when an alert is queued, for the alerter.
    pub alerts: Arc<Notify>,
    /// Woken when a webhook delivery (a capture result, an event) is queued, for the deliverer.
    pub deliveries: Arc<Notify>,
    /// Events for the `alerts:` destinations.
    pub events: Events,
    pub slack: Option<Arc<SlackSender>>,
    /// The volumes vigil writes: checked at start, then by [`Services::watch_disk`].
    pub disk: DiskHealth,
    /// The monitors this process defines differently than the database does.
    pub agreement: crate::config::Agreement,
}

/// The background tasks of the roles, and the signal that stops them.
pub struct Background {
    pub tasks: JoinSet<()>,
    pub stop: watch::Receiver<bool>,
}

impl Services {
    /// Opens the database (running migrations, and recording the monitors unless the process
    /// only captures) and builds the services.
    pub async fn build(mut config: Config, roles: super::Roles) -> Result<Services, RunError> {
        let url = config.storage.database_url.expose();
        let store = crate::store::connect(url, config.storage.max_connections)
            .await
            .map_err(|source| RunError::OpenStore { location: crate::store::describe_url(url), source })?;
        // A capture-only process serves whoever submits; its `monitors:` (if any) are not the
        // monitoring's, and must not mark the monitoring processes' monitors removed.
        if roles.records_monitors() {
            Self::sync_monitors(&*store, &config).await?;
        }
        let metrics = Metrics::new();
        metrics.monitors.set(config.monitors.len() as i64);
        let webhook_key = keys::webhook_key(&config, &*store).await?;
        let session_key = keys::session_key(&config, &*store).await?;
        let login_sealer = Arc::new(keys::login_sealer(&config)?);
        // The monitor role calls the built-in capture API (at the public URL: any replica) like
        // any client, with the token the replicas share; or the external provider, with its key.
        // (`run --once` calls its own loopback port for both.)
        let own_url = config.server.internal_url.clone().unwrap_or_else(|| config.server.public_url.clone());
        let (capture_base, token, internal) = match &config.capture.provider {
            Some(p) => (p.url.clone(), p.api_key.expose().to_owned(), None),
            None => {
                let token = keys::internal_token(&*store).await?;
                config.auth.api_tokens.push(Secret::new(token.clone()));
                (own_url.clone(), token, Some(config.auth.api_tokens.len() - 1))
            }
        };
        let capture = CaptureClient {
            client: client(Duration::from_secs(15)),
            capture_url: capture_base.join("v1/capture").expect("valid URL").to_string(),
            token,
            webhook_url: own_url.join("hooks/capture").expect("valid URL").to_string(),
        };
        let results = Arc::new(Notify::new());
        let disk = DiskHealth::new(crate::disk::volumes(&config), config.storage.min_free);
        let health = disk.check();
        if let Some(v) = health.trouble() {
            tracing::error!(
                volume = v.name,
                condition = v.condition.code(),
                "{}; no capture starts until it is fixed",
                v.describe()
            );
        }
        for v in health.volumes.iter().filter(|v| v.total_bytes > 0 && v.min_free_bytes >= v.total_bytes) {
            tracing::error!(
                volume = v.name,
                "storage.min_free ({}) is not below the size of the {} volume ({}): no capture will ever start; lower it",
                crate::disk::human_bytes(v.min_free_bytes),
                v.name,
                crate::disk::human_bytes(v.total_bytes)
            );
        }
        let runs =
            Arc::new(Runs { store: store.clone(), capture, results: results.clone(), disk: disk.clone() });
        let blobs = BlobStore::open(&config.storage.blobs).map_err(RunError::Blobs)?;
        // A bucket that is missing or refuses the credentials is a setup error: said now, not
        // at the first capture.
        blobs.check().await.map_err(|e| RunError::Blobs(format!("{}: {}", blobs.location(), e.detail())))?;
        tracing::info!(blobs = %blobs.location(), "blob store");
        let files = BaselineFiles::new(&config.storage.baselines_dir);
        let baselines = Baselines { store: store.clone(), blobs: blobs.clone(), files };
        let auth = Auth {
            tokens: Arc::new(config.auth.api_tokens.clone()),
            names: Arc::new(config.auth.reviewers.clone()),
            internal,
            session_key,
            session_ttl: config.auth.session_ttl,
            sessions: store.clone(),
        };
        let slack = config.slack.as_ref().map(|s| Arc::new(SlackSender::new(s, client(s.timeout))));
        let monitors = LiveMonitors::new(config.monitors.clone());
        let deliveries = Arc::new(Notify::new());
        let events = Events::new(&config.alerts, monitors.clone(), config.server.public_url.clone());
        Ok(Services {
            reviewer: Reviewer {
                store: store.clone(),
                baselines: baselines.clone(),
                events: Arc::new(events.clone()),
                deliveries: deliveries.clone(),
            },
            monitors,
            events,
            deliveries,
            config: Arc::new(config),
            store,
            blobs,
            baselines,
            metrics,
            auth,
            webhook_key,
            login_sealer,
            runs,
            results,
            alerts: Arc::new(Notify::new()),
            slack,
            disk,
            agreement: Default::default(),
        })
    }

    /// Refreshes the queue-depth gauges before every scrape of `/metrics`.
    pub fn watch_queues(&self) {
        // The gauge family, not the registry: a hook that held `Metrics` would keep it (and,
        // through the other hooks, the browser) alive for ever.
        let (store, queues) = (self.store.clone(), self.metrics.queues.clone());
        self.metrics.before_scrape(Box::new(move || {
            let (store, queues) = (store.clone(), queues.clone());
            Box::pin(async move {
                if let Ok(depths) = store.queue_depths().await {
                    for (queue, n) in depths {
                        queues.get_or_create(&vec![("queue".into(), queue.into())]).set(n);
                    }
                }
            })
        }));
    }

    /// Checks the volumes every few seconds (gauges, operator notices). The monitor role prunes
    /// at once while a volume is low; every role that writes baselines rewrites the files the
    /// trouble left unwritten once it ends; the roles that store captures keep the ballast.
    pub fn watch_disk(&self, bg: &mut Background, roles: super::Roles) {
        let free = Family::default();
        self.metrics.register("storage_free_bytes", "Free bytes on each volume vigil writes", free.clone());
        let size = Family::default();
        self.metrics.register("storage_size_bytes", "Size of each volume vigil writes", size.clone());
        let healthy = Family::default();
        self.metrics.register(
            "storage_healthy",
            "1 when a volume vigil writes is above storage.min_free and writable, else 0",
            healthy.clone(),
        );
        let (notices, rx) = tokio::sync::mpsc::channel(crate::alert::operator::BACKLOG);
        bg.tasks.spawn(crate::alert::operator::run(rx, self.slack.clone(), bg.stop.clone()));
        let writes_baselines = roles.api || roles.ui || roles.monitor;
        let upkeep = writes_baselines.then(|| {
            let pruner = roles.monitor.then(|| self.pruner());
            Arc::new(DiskUpkeep { pruner, baselines: self.baselines.clone() })
                as Arc<dyn crate::disk::OnTrouble>
        });
        let stores_captures = roles.capture || roles.monitor;
        let ballast =
            stores_captures.then(|| Arc::new(crate::disk::Ballast::in_dir(&self.config.storage.data_dir)));
        let watcher = crate::disk::Watcher {
            health: self.disk.clone(),
            free,
            size,
            healthy,
            notices,
            upkeep,
            ballast,
            check_timeout: crate::disk::CHECK_TIMEOUT,
        };
        bg.tasks.spawn(watcher.run(bg.stop.clone()));
    }

    fn run_alerts(&self) -> RunAlerts {
        RunAlerts {
            store: self.store.clone(),
            monitors: self.monitors.clone(),
            public_url: self.config.server.public_url.clone(),
            ready: self.alerts.clone(),
            events: self.events.clone(),
            deliveries: self.deliveries.clone(),
        }
    }

    /// A client for URLs peers give (webhook deliveries, capture links), through the address
    /// policy except for vigil's own endpoints.
    fn guarded_client(&self, timeout: Duration) -> crate::capture::egress::GuardedClient {
        let policy = crate::capture::egress::Policy::system(&self.config.capture.allow_private);
        crate::capture::egress::GuardedClient::new(timeout, policy, &self.config.own_endpoints())
    }

    fn pruner(&self) -> Pruner {
        Pruner {
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            retention: self.config.storage.retention,
        }
    }

    /// The capture role: the capture API and its workers (their webhooks go through
    /// [`Services::start_deliveries`]).
    /// Returns the routes and the service (its browser is closed at shutdown).
    pub fn start_capture(&self, bg: &mut Background) -> (Router, Arc<CaptureService>) {
        let config = &self.config;
        let pool = BrowserPool::new(BrowserSettings {
            chromium_path: config.capture.chromium_path.clone(),
            profile_root: config.storage.data_dir.clone(),
            recycle_after: config.capture.recycle_after,
            page_memory: config.capture.page_memory,
        });
        // For the capture API's clients: in `run --once`, this process's own monitor role.
        let asset_urls = AssetUrls {
            base: config.server.internal_url.clone().unwrap_or_else(|| config.server.public_url.clone()),
            key: self.webhook_key.derive("vigil asset urls"),
            ttl: config.capture.asset_ttl,
        };
        let capture_metrics = CaptureMetrics::new(&self.metrics, &pool);
        let service = CaptureService::new(asset_urls, pool, capture_metrics);
        // Weak: the metrics must not keep the browser alive once the role is gone.
        let (store, gauges) = (self.store.clone(), Arc::downgrade(&service));
        self.metrics.before_scrape(Box::new(move || {
            let (store, gauges) = (store.clone(), gauges.upgrade());
            Box::pin(async move {
                if let Some(gauges) = gauges {
                    gauges.refresh_gauges(&*store).await
                }
            })
        }));
        let settings = Arc::new(crate::capture::worker::WorkerSettings {
            config: config.clone(),
            delivery_ready: self.deliveries.clone(),
            disk: self.disk.clone(),
            sealer: self.login_sealer.clone(),
        });
        for i in 0..config.capture.workers {
            let worker = Worker {
                id: format!("{}-{}-{i}", hostname(), std::process::id()),
                store: self.store.clone(),
                blobs: self.blobs.clone(),
                service: service.clone(),
                settings: settings.clone(),
                warm: Default::default(),
            };
            bg.tasks.spawn(worker.run(bg.stop.clone()));
        }
        let api = CaptureApi {
            config: config.clone(),
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            capture: service.clone(),
            auth: self.auth.clone(),
            disk: self.disk.clone(),
        };
        (crate::capture::router(api), service)
    }

    /// The webhook outbox's sender: capture results (the capture role) and events for the
    /// `alerts:` destinations (the roles that judge and approve). One per process.
    pub fn start_deliveries(&self, bg: &mut Background, capture: bool, events: bool) {
        let config = &self.config;
        let senders = if events { self.senders() } else { HashMap::new() };
        let mut claims: Vec<String> = senders.keys().cloned().collect();
        if capture {
            claims.push(String::new());
        }
        let outcomes = Family::default();
        self.metrics.register("webhook_deliveries", "Webhook delivery attempts by outcome", outcomes.clone());
        Metrics::seed(&outcomes, "outcome", &["delivered", "retry", "dead"]);
        let deliverer = Deliverer {
            store: self.store.clone(),
            key: self.webhook_key.clone(),
            senders,
            claims,
            blobs: self.blobs.clone(),
            operator: client(config.webhook.timeout),
            client: self.guarded_client(config.webhook.timeout),
            schedule: config.webhook.retry_schedule.clone(),
            timeout: config.webhook.timeout,
            ready: self.deliveries.clone(),
            outcomes,
            max_in_flight: config.webhook.max_in_flight,
        };
        bg.tasks.spawn(deliverer.run(bg.stop.clone()));
    }

    /// How each `alerts:` destination is reached; one whose mailer cannot be set up is left
    /// out (logged), and its events wait for a process that has it.
    fn senders(&self) -> HashMap<String, Sender> {
        let mut senders = HashMap::new();
        for d in &self.config.alerts {
            let sender = match &d.target {
                Target::Webhook { url, secret } => Sender::Webhook {
                    key: SigningKey::from_secret(secret.expose()).expect("checked by the config"),
                    url: url.to_string(),
                },
                Target::Discord(url) | Target::Teams(url) => Sender::Chat { url: url.to_string() },
                Target::Email(mail) => match Mailer::new(mail, self.config.webhook.timeout) {
                    Ok(m) => Sender::Email(Box::new(m)),
                    Err(e) => {
                        tracing::error!(destination = %d.name, error = %e, "cannot set up the mailer");
                        continue;
                    }
                },
            };
            senders.insert(d.name.clone(), sender);
        }
        senders
    }

    /// The monitor role: the receiver, the processor, the reconciler, alerts and retention;
    /// and the scheduler when `schedule`. Returns the routes and the scheduler.
    pub async fn start_monitor(
        &self,
        bg: &mut Background,
        schedule: bool,
    ) -> Result<(Router, Option<Arc<Scheduler>>), RunError> {
        let config = &self.config;
        let verdicts = Family::default();
        self.metrics.register("runs_judged", "Runs judged, by verdict", verdicts.clone());
        Metrics::seed(
            &verdicts,
            "verdict",
            &["baseline_created", "unchanged", "changed", "failed", "skipped", "unstable", "ignored"],
        );
        let processor = Processor {
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            baselines: self.baselines.clone(),
            monitors: self.monitors.clone(),
            client: self.guarded_client(Duration::from_secs(30)),
            ready: self.results.clone(),
            runs: self.runs.clone(),
            alerts: self.run_alerts(),
            verdicts,
            agreement: self.agreement.clone(),
            disagreements: {
                let gauge = prometheus_client::metrics::gauge::Gauge::default();
                self.metrics.register(
                    "monitor_config_disagreements",
                    "Monitors defined differently in this process than in the database (another replica's config); their runs are left to the replicas that agree",
                    gauge.clone(),
                );
                gauge
            },
        };
        bg.tasks.spawn(processor.run(bg.stop.clone()));
        let reconciler = Reconciler {
            store: self.store.clone(),
            runs: self.runs.clone(),
            after: config.capture.reconcile_after,
            monitors: self.monitors.clone(),
            webhook_received: self.results.clone(),
            deadline: config.capture.run_deadline,
            disk: self.disk.clone(),
            alerts: self.run_alerts(),
        };
        bg.tasks.spawn(reconciler.run(bg.stop.clone()));
        bg.tasks.spawn(self.pruner().run(bg.stop.clone()));
        let outcomes = Family::default();
        self.metrics.register("alerts", "Alert send attempts by outcome", outcomes.clone());
        Metrics::seed(&outcomes, "outcome", &["sent", "retry", "dead"]);
        let alerter = Alerter {
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            slack: self.slack.clone(),
            ready: self.alerts.clone(),
            outcomes,
            events: self.events.clone(),
            deliveries: self.deliveries.clone(),
        };
        bg.tasks.spawn(alerter.run(bg.stop.clone()));
        let receiver = Receiver {
            store: self.store.clone(),
            config: Arc::new(config.webhook.clone()),
            keys: Arc::new(keys::webhook_keys(config, &self.webhook_key)),
            received: self.results.clone(),
            limiter: RateLimiter::new(config.webhook.rate_limit).map(Arc::new),
            metrics: self.metrics.clone(),
        };
        let cron = match schedule {
            true => Some(Scheduler::start(self.monitors.clone(), self.runs.clone()).await?),
            false => None,
        };
        Ok((crate::webhook::receiver::router(receiver), cron))
    }

    /// The api role's routes: monitors and runs, review, and the Slack button.
    pub fn api_routes(&self) -> Router {
        let monitors = MonitorsApi {
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            monitors: self.monitors.clone(),
            runs: self.runs.clone(),
            auth: self.auth.clone(),
        };
        let review = ReviewApi { reviewer: self.reviewer.clone(), auth: self.auth.clone() };
        let slack = self.config.slack.as_ref();
        let interactions = Interactions {
            hooks: slack.and_then(|s| SlackHooks::new(s, self.slack.clone())).map(Arc::new),
            reviewer: self.reviewer.clone(),
            metrics: self.metrics.clone(),
        };
        let ignores = crate::ignore::api::IgnoreApi { store: self.store.clone(), auth: self.auth.clone() };
        crate::pipeline::api::router(monitors)
            .merge(crate::review::api::router(review))
            .merge(crate::ignore::api::router(ignores))
            .merge(crate::masks::api::router(crate::masks::api::MasksApi {
                store: self.store.clone(),
                monitors: self.monitors.clone(),
                auth: self.auth.clone(),
            }))
            .merge(crate::alert::interactions::router(interactions))
    }

    /// The ui role's routes.
    pub fn ui_routes(&self) -> Router {
        crate::ui::router(crate::ui::Ui {
            store: self.store.clone(),
            monitors: self.monitors.clone(),
            reviewer: self.reviewer.clone(),
            auth: self.auth.clone(),
            secure_cookies: self.config.server.public_url.scheme() == "https",
            sign_in: Arc::new(crate::ui::sign_in_limiter()),
        })
    }

    /// Rewrites baseline files a crash left behind the database (the newest ones).
    pub async fn repair_baseline_files(&self) {
        match self.baselines.repair_files(crate::baseline::REPAIR_AT_START).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(files = n, "baseline files repaired from the database"),
            Err(e) => tracing::error!(error = %e, "cannot check the baseline files"),
        }
    }

    /// Records the monitors of `config` in the database.
    pub async fn sync_monitors(store: &dyn Store, config: &Config) -> Result<(), crate::store::StoreError> {
        let summary =
            store.sync_monitors(&MonitorUpsert::from_monitors(&config.monitors), Timestamp::now()).await?;
        tracing::info!(
            backend = ?store.backend(),
            monitors = config.monitors.len(),
            added = summary.added,
            updated = summary.updated,
            removed = summary.removed,
            "database ready"
        );
        Ok(())
    }
}

/// What a process does about a volume in trouble: prune at once (the monitor role, which runs
/// retention); once it recovers, rewrite the baseline files that could not be written meanwhile.
struct DiskUpkeep {
    pruner: Option<Pruner>,
    baselines: Baselines,
}

#[async_trait::async_trait]
impl crate::disk::OnTrouble for DiskUpkeep {
    async fn emergency_prune(&self) -> Option<String> {
        self.pruner.as_ref()?.emergency_prune().await
    }

    async fn recovered(&self) {
        match self.baselines.repair_files(crate::baseline::REPAIR_AT_START).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(files = n, "baseline files written after the storage recovered"),
            Err(e) => {
                tracing::error!(error = %e, "cannot check the baseline files after the storage recovered")
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "vigil".into())
}
