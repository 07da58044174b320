//! Capture workers: claim a job (with a lease longer than the hard per-job timeout, so a live
//! worker never loses its job and a dead worker's job is reclaimed), capture, store the asset,
//! complete the job and queue its webhook in one transaction; retry retryable failures with
//! backoff up to `capture.max_attempts`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use super::CaptureService;
use super::document::{StoredResult, document};
use super::error::{CaptureError, CaptureFailure};
use crate::ids::{AssetId, MessageId};
use crate::queue::backoff::Exponential;
use crate::queue::{self, Next, Pacing, QueueWorker, WorkError};
use crate::store::blobs::BlobStore;
use crate::store::{Asset, CaptureJob, JobFailure, NewDelivery, Store, StoreError};
use crate::time::Timestamp;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Timeouts, limits and the address policy come from here.
    pub config: Arc<crate::config::Config>,
    pub delivery_ready: Arc<tokio::sync::Notify>,
    /// While a volume is in trouble no job is started: queued jobs wait for the space.
    pub disk: crate::disk::DiskHealth,
    /// Seals and opens the kept state of login sessions.
    pub sealer: Arc<super::login::Sealer>,
}

pub struct Worker {
    pub id: String,
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub service: Arc<CaptureService>,
    pub settings: Arc<WorkerSettings>,
    /// The tab kept from the last capture (docs/capture.md, "Warm tabs").
    pub warm: Arc<std::sync::Mutex<Option<super::tab::Tab>>>,
}

/// Backoff before attempt `n + 1` after `n` failed attempts: 2 s, 4 s, 8 s … capped at 5 min.
const RETRY: Exponential = Exponential::new(Duration::from_secs(2), Duration::from_secs(300));
/// After a session's sign-in was refused: 5 minutes, doubling per refusal in a row, at most an
/// hour, before it signs in again.
const SIGN_IN_BACKOFF: Exponential = Exponential::new(Duration::from_secs(300), Duration::from_secs(3600));

/// Idle workers look for due retries this often (a new job wakes them at once).
pub const POLL: Duration = Duration::from_millis(500);
/// When the database cannot be read: 1 s, 2 s, 4 s … 30 s.
const TROUBLE: Exponential = Exponential::new(Duration::from_secs(1), Duration::from_secs(30));

impl Worker {
    /// Runs until `stop`: claims jobs, wakes when one is queued.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let wake = self.service.jobs_ready.clone();
        let slot = self.warm.clone();
        queue::run(self, Pacing::new(POLL, TROUBLE), Some(wake), stop).await;
        // Before the pool closes the browser: the warm tab holds it.
        let warm = slot.lock().expect("not poisoned").take();
        if let Some(tab) = warm {
            tab.close().await;
        }
    }

    /// Longer than the hard timeout (a live worker never loses its job), short enough that a
    /// dead worker's job comes back soon.
    fn lease(&self) -> Duration {
        let job_timeout = self.settings.config.capture.job_timeout;
        // At least 15 s past it: a capture's tabs may take 5 s to close, 10 s for a warm tab.
        job_timeout + job_timeout.clamp(Duration::from_secs(15), Duration::from_secs(30))
    }
}

#[async_trait::async_trait]
impl QueueWorker for Worker {
    type Item = CaptureJob;
    const NAME: &'static str = "capture";

    async fn claim(&self) -> Result<Option<CaptureJob>, WorkError> {
        if self.settings.disk.refusal().is_some() {
            return Ok(None);
        }
        Ok(self.store.claim_job(&self.id, Timestamp::now(), self.lease()).await?)
    }

    async fn work(&self, job: CaptureJob) -> Result<Next, WorkError> {
        self.process(job).await?;
        Ok(Next::Continue)
    }

    async fn idle(&self) {
        self.expire_abandoned().await;
        // A warm tab of a browser that was replaced would keep that browser running.
        let warm = self.warm.lock().expect("not poisoned").take();
        if let Some(tab) = warm {
            match self.service.pool.is_current(tab.browser()).await {
                true => *self.warm.lock().expect("not poisoned") = Some(tab),
                false => tab.close().await,
            }
        }
    }
}

impl Worker {
    /// Jobs whose worker died on the last attempt: fail them and tell their clients.
    async fn expire_abandoned(&self) {
        let error = CaptureError::BrowserGone.to_api();
        let error = serde_json::to_string(&error).expect("serialises");
        if let Ok(jobs) = self.store.fail_abandoned_jobs(Timestamp::now(), &error).await {
            for job in jobs {
                tracing::warn!(job = %job.id, "capture job abandoned by its worker after the last attempt");
                if let Some(d) = self.webhook_for(&job) {
                    let _ = self.store.enqueue_delivery(&d).await;
                    self.settings.delivery_ready.notify_one();
                }
            }
        }
    }

    /// The completion webhook of a finished job, if the client asked for one.
    fn webhook_for(&self, job: &CaptureJob) -> Option<NewDelivery> {
        let req = super::request::parse(job.request.as_bytes()).ok()?;
        let url = req.webhook_url?;
        let doc = document(job, &self.service.asset_urls, Timestamp::now().millis() / 1000);
        Some(NewDelivery {
            id: MessageId::new(),
            subject: job.id.to_string(),
            url,
            sender: String::new(),
            payload: serde_json::to_string(&doc).expect("serialises"),
            now: Timestamp::now(),
        })
    }

    /// Captures the job and records the outcome; an error when it cannot be recorded (the job
    /// comes back when its lease ends).
    async fn process(&self, job: CaptureJob) -> Result<(), StoreError> {
        let span = tracing::info_span!("capture", job = %job.id, attempt = job.attempts);
        self.process_in_span(job).instrument(span).await
    }

    async fn process_in_span(&self, job: CaptureJob) -> Result<(), StoreError> {
        let started = Instant::now();
        let job_timeout = self.settings.config.capture.job_timeout;
        // The engine ends the capture (its tabs closed) within the job timeout; this bound is
        // for the rest (launching the browser, storing the image).
        let outcome = tokio::time::timeout(job_timeout + Duration::from_secs(30), self.capture(&job))
            .await
            .unwrap_or_else(|_| Err(CaptureError::JobTimeout(job_timeout).into()));
        let now = Timestamp::now();
        let metrics = &self.service.metrics;
        match outcome {
            Ok((asset, result)) => {
                metrics.attempts.get_or_create(&vec![("outcome".into(), "completed".into())]).inc();
                metrics.duration.get_or_create(&vec![]).observe(started.elapsed().as_secs_f64());
                let result_json = serde_json::to_string(&result).expect("serialises");
                let mut done = job.clone();
                done.status = crate::store::JobStatus::Completed;
                done.asset_id = Some(asset.clone());
                done.result = Some(result_json.clone());
                let hook = self.webhook_for(&done);
                match self
                    .store
                    .complete_job(&job.id, &self.id, &result_json, Some(&asset), hook.as_ref(), now)
                    .await
                {
                    Ok(true) => {
                        tracing::info!(ms = result.duration_ms, width = ?result.width, height = ?result.height, stable = ?result.stable, "captured");
                        self.settings.delivery_ready.notify_one();
                    }
                    Ok(false) => {
                        tracing::warn!(
                            "the job is no longer this worker's (its lease expired and another took it, or its client cancelled it); result dropped"
                        )
                    }
                    Err(e) => {
                        tracing::error!(error = ?e, "cannot record the capture result; the job will be retried");
                        return Err(e);
                    }
                }
            }
            Err(CaptureFailure { error: e, failing_state }) => {
                let retry = e.is_retryable() && job.attempts < job.max_attempts;
                let api_error = serde_json::to_string(&e.to_api()).expect("serialises");
                let (outcome, retry_at) = if retry {
                    ("retried", Some(now.plus(RETRY.delay(job.attempts.max(1) as u32))))
                } else {
                    ("failed", None)
                };
                metrics.attempts.get_or_create(&vec![("outcome".into(), outcome.into())]).inc();
                let error = crate::http::client::error_chain(&e);
                tracing::warn!(%error, code = e.code(), retry, "capture failed");
                // The page as the failure left it, kept with the job for the last attempt only.
                let picture = match failing_state {
                    Some(png) if !retry => self.keep_failing_state(&job, png).await,
                    _ => None,
                };
                let hook = if retry {
                    None
                } else {
                    let mut failed = job.clone();
                    failed.status = crate::store::JobStatus::Failed;
                    failed.error = Some(api_error.clone());
                    failed.asset_id = picture.clone();
                    self.webhook_for(&failed)
                };
                let then = match retry_at {
                    Some(at) => JobFailure::RetryAt(at),
                    None => JobFailure::Final { failing_state: picture.as_ref(), delivery: hook.as_ref() },
                };
                if let Err(err) = self.store.fail_job(&job.id, &self.id, &api_error, then, now).await {
                    tracing::error!(error = ?err, "cannot record the capture failure; the job will be retried");
                    return Err(err);
                }
                if hook.is_some() {
                    self.settings.delivery_ready.notify_one();
                }
            }
        }
        Ok(())
    }

    /// What a capture through `session` starts from: its kept state, if any; or, while its
    /// refused sign-ins in a row wait out [`SIGN_IN_BACKOFF`], `login_failed` without trying
    /// (a wrong password tried on every run of every monitor would lock the account).
    async fn session_state(
        &self,
        session: &crate::config::page::LoginSession,
    ) -> Result<Option<super::login::LoginState>, CaptureError> {
        let refused = self.store.refused_sign_ins(&session.store_key()).await.unwrap_or_else(|e| {
            tracing::warn!(session = %session.name, error = ?e, "cannot read the session's refused sign-ins");
            None
        });
        if let Some((n, last)) = refused {
            let next = last.plus(SIGN_IN_BACKOFF.delay(n));
            let now = Timestamp::now();
            let refuse = |reason: String| CaptureError::LoginFailed {
                session: session.name.clone(),
                reason,
                retryable: false,
            };
            if next > now {
                return Err(refuse(format!(
                    "{n} sign-in(s) in a row were refused, the last at {last}; not signing in again before {next}, \
                     so that a wrong password does not lock the account (a changed session definition signs in at once)"
                )));
            }
            // The wait is over: one capture, of all replicas and workers, tries.
            let claimed =
                self.store.claim_sign_in(&session.store_key(), last, now).await.unwrap_or_else(|e| {
                    tracing::warn!(session = %session.name, error = ?e, "cannot claim the session's sign-in");
                    false
                });
            if !claimed {
                return Err(refuse(format!(
                    "{n} sign-in(s) in a row were refused; another capture is trying the next one"
                )));
            }
        }
        Ok(self.kept_login(session).await)
    }

    /// The session's kept state, if it is still valid and open with this key and definition.
    async fn kept_login(
        &self,
        session: &crate::config::page::LoginSession,
    ) -> Option<super::login::LoginState> {
        let (sealed, expires) = match self.store.login_state(&session.store_key()).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(session = %session.name, error = ?e, "cannot read the session's cookies; signing in");
                return None;
            }
        };
        if expires <= Timestamp::now() {
            return None;
        }
        let opened = self.settings.sealer.open(session, &sealed);
        if opened.is_none() {
            tracing::info!(session = %session.name, "the kept state does not open (another key, or the session changed); signing in");
        }
        opened
    }

    /// Stores the picture of a failed capture's page as the job's asset; a picture that cannot be
    /// stored is only a warning (the failure is what matters).
    async fn keep_failing_state(&self, job: &CaptureJob, png: Vec<u8>) -> Option<AssetId> {
        let limits = crate::diff::Limits::default();
        let (width, height) = match crate::diff::png_dimensions(&png, &limits) {
            Ok(size) => size,
            Err(e) => {
                tracing::warn!(error = %e, "the picture of the failed page is no PNG within the limits; not kept");
                return None;
            }
        };
        let size = png.len() as i64;
        let kept = async {
            let sha256 = self.blobs.put(png).await.map_err(CaptureError::from)?;
            let asset = Asset {
                id: AssetId::new(),
                job_id: job.id.clone(),
                sha256,
                content_type: "image/png".into(),
                width: Some(width as i32),
                height: Some(height as i32),
                size,
                created_at: Timestamp::now(),
            };
            self.store.insert_asset(&asset).await?;
            Ok::<_, CaptureError>(asset.id)
        };
        match kept.await {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep the picture of the failed page");
                None
            }
        }
    }

    async fn capture(&self, job: &CaptureJob) -> Result<(AssetId, StoredResult), CaptureFailure> {
        let started = Instant::now();
        let req = super::request::parse(job.request.as_bytes())
            .map_err(|e| CaptureError::Navigation(format!("stored request unreadable: {e}")))?;
        let mut spec = req.validate().map_err(|e| CaptureError::Navigation(e.to_string()))?;
        if let Some(session) = &spec.page.session {
            spec.login_state = self.session_state(session).await?;
        }
        // Checked again here to fail early with a clear error (DNS may have changed since the
        // request was accepted); the page's every connection is checked again by its proxy.
        let capture = &self.settings.config.capture;
        let policy = super::egress::Policy::system(&capture.allow_private).reserving(&[self
            .settings
            .config
            .server
            .listen
            .port()]);
        policy.check_url(&spec.url).await.map_err(CaptureError::from)?;
        let t = Instant::now();
        let live = self.service.pool.get().await?;
        let limits = super::engine::Containment {
            policy,
            max_pixels: capture.max_pixels,
            deadline: capture.job_timeout,
        };
        // The tab this worker kept from its last capture, if any: taken for this one, and what
        // this capture leaves is kept for the next.
        let mut warm = self.warm.lock().expect("not poisoned").take();
        let slot = capture.warm_tabs.then_some(&mut warm);
        let out = super::engine::capture(&live, &spec, capture.stability_timeout, &limits, slot).await;
        *self.warm.lock().expect("not poisoned") = warm;
        if let (
            Some(session),
            Err(CaptureFailure { error: CaptureError::LoginFailed { retryable: false, .. }, .. }),
        ) = (&spec.page.session, &out)
        {
            // Lost, the next capture may try a refused password once more: a warning.
            if let Err(e) = self.store.note_refused_sign_in(&session.store_key(), Timestamp::now()).await {
                tracing::warn!(session = %session.name, error = ?e, "cannot record the refused sign-in");
            }
        }
        let out = out?;
        drop(live);
        if let (Some(session), Some(state)) = (&spec.page.session, &out.login_state) {
            let sealed = self.settings.sealer.seal(session, state);
            let now = Timestamp::now();
            // Lost, the next capture signs in again: a warning, not a failed capture.
            if let Err(e) =
                self.store.keep_login_state(&session.store_key(), &sealed, now.plus(session.reuse), now).await
            {
                tracing::warn!(session = %session.name, error = ?e, "cannot keep the session's cookies");
            }
        }
        let captured = t.elapsed();
        let bytes = out.bytes;
        let size = bytes.len() as i64;
        let tab = if out.warm { "warm" } else { "fresh" };
        self.service.metrics.tabs.get_or_create(&vec![("tab".into(), tab.into())]).inc();
        let sha256 = self.blobs.put(bytes).await.map_err(CaptureError::from)?;
        let asset = Asset {
            id: AssetId::new(),
            job_id: job.id.clone(),
            sha256: sha256.clone(),
            content_type: out.content_type.to_owned(),
            width: out.width.map(|w| w as i32),
            height: out.height.map(|h| h as i32),
            size,
            created_at: Timestamp::now(),
        };
        self.store.insert_asset(&asset).await.map_err(CaptureError::from)?;
        let timings = &out.timings;
        tracing::debug!(
            open = timings.open,
            emulate = timings.emulate,
            load = timings.load,
            settle = timings.settle,
            shoot = timings.shoot,
            shots = timings.shots,
            words = timings.words,
            close = timings.close,
            store = (t.elapsed() - captured).as_millis() as u64,
            "capture timings (ms)"
        );
        Ok((
            asset.id,
            StoredResult {
                duration_ms: started.elapsed().as_millis() as u64,
                width: out.width,
                height: out.height,
                sha256,
                content_type: out.content_type.to_owned(),
                masks: out.masks,
                stable: out.stable,
                clipped: out.clipped,
                dialogs: out.dialogs,
            },
        ))
    }
}
