//! The processor: takes stored capture webhooks, fetches the capture, stores it as a blob, diffs
//! it against the approved baseline of (monitor, viewport) and records the run's verdict.
//!
//! Every step is idempotent: a webhook is marked processed only after the run has its verdict,
//! and `complete_run` only changes a pending run, so a crash in between processes it again
//! without a second verdict.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, watch};

mod failure;

use super::runs::Runs;
use crate::alert::run_alerts::RunAlerts;
use crate::baseline::{BaselineError, Baselines};
use crate::config::{LiveMonitors, Mask, Monitor};
use crate::diff::{DiffError, DiffOptions, Limits, Region, compare_png, decode_png, pdf, text};
use crate::http::client::BodyError;
use crate::ids::RunId;
use crate::queue::backoff::Exponential;
use crate::queue::{self, Next, Pacing, QueueWorker, WorkError};
use crate::store::blobs::BlobStore;
use crate::store::{
    BaselineSource, NewBaseline, ReceivedWebhook, Run, RunOutcome, RunStatus, Store, Verdict,
};
use crate::time::Timestamp;

/// Largest capture we download.
const MAX_ASSET_BYTES: usize = 64 * 1024 * 1024;

pub struct Processor {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    /// Writes the first capture of a monitor and viewport as its baseline.
    pub baselines: Baselines,
    /// The monitors in force; replaced on reload.
    pub monitors: LiveMonitors,
    pub client: crate::capture::egress::GuardedClient,
    pub ready: Arc<Notify>,
    /// Re-captures for `retries_on_diff`.
    pub runs: Arc<Runs>,
    /// Queues the alerts of the runs it judges.
    pub alerts: RunAlerts,
    /// Runs judged, by verdict.
    pub verdicts: prometheus_client::metrics::family::Family<
        Vec<(String, String)>,
        prometheus_client::metrics::counter::Counter,
    >,
    /// The monitors defined differently here than in the database, and their count.
    pub agreement: crate::config::Agreement,
    pub disagreements: prometheus_client::metrics::gauge::Gauge,
}

/// The parts of the capture result the processor reads.
#[derive(Deserialize)]
struct Result_ {
    job_id: String,
    status: String,
    asset_url: Option<String>,
    #[serde(default)]
    masks: Vec<Region>,
    /// Absent from another provider's result: taken as settled and not cut.
    #[serde(default)]
    stable: Option<bool>,
    #[serde(default)]
    clipped: Option<bool>,
    error: Option<serde_json::Value>,
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    run_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error("storage")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot fetch the capture: {0}")]
    Fetch(FetchError),
    #[error("blob store: {}", .0.detail())]
    Blob(#[from] crate::store::blobs::BlobError),
    #[error("baseline")]
    Baseline(#[from] BaselineError),
    /// A change to confirm with another capture while no capture may start (the disk): the
    /// result waits, rather than alerting on an unconfirmed change.
    #[error("{0}")]
    Paused(String),
    /// This process defines the run's monitor differently than the database (another
    /// replica's config): the result waits for a replica that agrees.
    #[error("monitor {0} is defined differently here than in the database; left to a replica that agrees")]
    Disagrees(String),
}

/// Why a capture could not be downloaded.
#[derive(Debug)]
struct FetchError {
    message: String,
    /// The link answered that the asset is not there (403, 404, 410: expired, pruned, never
    /// there); asking again will not change that, a fresh link may.
    gone: bool,
    /// No later attempt can succeed: the capture API has no capture for the job, or the file
    /// is over the size limit. The run fails at once.
    terminal: bool,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl FetchError {
    fn transient(message: impl Into<String>) -> ProcessError {
        ProcessError::Fetch(FetchError { message: message.into(), gone: false, terminal: false })
    }

    fn terminal(message: impl Into<String>) -> ProcessError {
        ProcessError::Fetch(FetchError { message: message.into(), gone: false, terminal: true })
    }
}

/// Results leased per claim: one, so each gets the whole lease.
const BATCH: i64 = 1;
/// How long a claimed result is a processor's. A processor killed while judging (kill -9, a
/// lost machine) gives it back when it runs out, so this bounds the recovery; it is twice the
/// download timeout (a dead link and its fresh one).
const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// A result of a monitor this replica defines differently waits this (plus up to a second)
/// for a replica that agrees, and comes back here if none took it.
const DISAGREEMENT_RETRY: Duration = Duration::from_secs(3);
/// A result that cannot be processed waits its own backoff (2 s, 4 s … 5 min) while the others
/// go on; after this many failed downloads of its capture (about 20 minutes; other failures,
/// such as a busy database or a paused disk, do not count) its run fails with
/// `asset_unavailable`.
const ITEM_BACKOFF: Exponential = Exponential::new(Duration::from_secs(2), Duration::from_secs(300));
const MAX_FETCH_ATTEMPTS: i32 = 10;
/// After a batch in which even a result's retry could not be recorded (the database): 1 s, 2 s,
/// 4 s … 30 s before the next look, unless a new result wakes the processor.
const TROUBLE: Exponential = Exponential::new(Duration::from_secs(1), Duration::from_secs(30));

impl Processor {
    /// Runs until `stop`: processes received results, wakes when one is stored.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let wake = self.ready.clone();
        queue::run(self, Pacing::new(Duration::from_secs(1), TROUBLE), Some(wake), stop).await
    }
}

#[async_trait::async_trait]
impl QueueWorker for Processor {
    type Item = Vec<ReceivedWebhook>;
    const NAME: &'static str = "processor";

    async fn claim(&self) -> Result<Option<Vec<ReceivedWebhook>>, WorkError> {
        // Leased: with several replicas on one database, exactly one judges each result.
        let batch = self.store.claim_webhooks(BATCH, Timestamp::now(), CLAIM_LEASE).await?;
        Ok((!batch.is_empty()).then_some(batch))
    }

    /// Each result of the batch; one that fails is left unprocessed and waits its own backoff
    /// (the batch as a whole backs off only when even that cannot be recorded).
    async fn work(&self, batch: Vec<ReceivedWebhook>) -> Result<Next, WorkError> {
        let mut failed = 0;
        let mut left = 0;
        for hook in batch {
            match self.process(&hook).await {
                // Another replica's to judge: given back without an attempt counted, due again
                // after a few seconds and a random part of one (so that its due time does not
                // fall on this processor's own polls, which would win every race for it), and
                // out of the way of the results behind it meanwhile.
                Err(ProcessError::Disagrees(_)) => {
                    left += 1;
                    let jitter = Duration::from_millis(rand::random_range(0..1000));
                    let retry_at = Timestamp::now().plus(DISAGREEMENT_RETRY + jitter);
                    if let Err(e) = self.store.release_webhook(&hook.webhook_id, retry_at).await {
                        tracing::warn!(error = ?e, "cannot give the result back; its lease will run out");
                    }
                }
                Ok(()) => {
                    if let Err(e) =
                        self.store.mark_webhook_processed(&hook.webhook_id, Timestamp::now()).await
                    {
                        tracing::warn!(error = ?e, "cannot mark the webhook processed; it will be seen again");
                        failed += 1;
                    }
                }
                // Transient (database, network): left unprocessed and tried again later.
                Err(e) => {
                    let wait = ITEM_BACKOFF.delay(hook.attempts.max(0) as u32 + 1);
                    let download = matches!(e, ProcessError::Fetch(_));
                    tracing::warn!(error = %e, webhook = %hook.webhook_id, attempts = hook.attempts + 1, retry_in = ?wait, "processing failed; will retry");
                    let retry_at = Timestamp::now().plus(wait);
                    if let Err(e) = self.store.defer_webhook(&hook.webhook_id, retry_at, download).await {
                        tracing::warn!(error = ?e, "cannot record the retry; the result will be seen again");
                        failed += 1;
                    }
                }
            }
        }
        match failed {
            0 if left == 0 => Ok(Next::Continue),
            0 => Ok(Next::Wait),
            n => Err(format!("{n} capture results not processed").into()),
        }
    }
}

impl Processor {
    /// Whether this process defines `monitor` as the database does. Replicas with different
    /// configs would judge its runs differently (a 50 % threshold here, 1 % there): only those
    /// that agree with the database — which the last replica to start or reload wrote — judge.
    async fn agrees_on(&self, monitor: &crate::config::MonitorName) -> Result<bool, ProcessError> {
        let mine = self.monitors.find(monitor).map(|m| {
            let rows = crate::store::MonitorUpsert::from_monitors(std::slice::from_ref(&m));
            rows.into_iter().next().map(|r| r.config).unwrap_or_default()
        });
        let theirs = self.store.monitor_config(monitor).await?;
        // A monitor one side has and the other has not (a rollout adding or removing it) is a
        // disagreement too: the side without it would judge with defaults.
        let agrees = mine == theirs;
        if self.agreement.set(monitor.as_str(), agrees) {
            self.disagreements.set(self.agreement.disagreeing().len() as i64);
            match agrees {
                true => {
                    tracing::info!(%monitor, "this process's definition of the monitor agrees with the database again")
                }
                false => tracing::error!(
                    %monitor,
                    "this process defines the monitor differently than the database (another replica's config): its runs are left to the replicas that agree; give every replica the same config"
                ),
            }
        }
        Ok(agrees)
    }

    async fn process(&self, hook: &ReceivedWebhook) -> Result<(), ProcessError> {
        let Ok(result) = serde_json::from_str::<Result_>(&hook.payload) else {
            tracing::warn!(webhook = %hook.webhook_id, "unreadable capture result; dropped");
            return Ok(());
        };
        let run_id =
            result.metadata.as_ref().and_then(|m| m.run_id.as_deref()).and_then(|r| r.parse::<RunId>().ok());
        let run = match run_id {
            Some(id) => self.store.get_run(&id).await?,
            None => match result.job_id.parse() {
                Ok(job) => self.store.run_for_job(&job).await?,
                Err(_) => None,
            },
        };
        let Some(run) = run else {
            tracing::info!(job = %result.job_id, "capture result for no run of ours; ignored");
            return Ok(());
        };
        if run.status != RunStatus::Pending {
            // Judged already; a crash may have come between the verdict and its alert.
            return Ok(self.alerts.queue(&run).await?);
        }
        if run.job_id.as_ref().is_some_and(|j| j.as_str() != result.job_id) {
            // The result of a capture this run has replaced (a re-capture, a resubmission).
            tracing::info!(run = %run.id, job = %result.job_id, "result of a superseded capture; ignored");
            return Ok(());
        }
        let outcome = match (result.status.as_str(), result.asset_url.as_deref()) {
            ("completed", Some(url)) => {
                // (A failed capture is failed whatever the config says.)
                if !self.agrees_on(&run.monitor).await? {
                    return Err(ProcessError::Disagrees(run.monitor.to_string()));
                }
                let judged = match self.judge(&run, url, &result).await {
                    Err(ProcessError::Fetch(e)) if e.gone => {
                        self.judge_fresh_link(&run, &result, url, e).await
                    }
                    other => other,
                };
                match judged {
                    Err(ProcessError::Fetch(e))
                        if e.terminal || hook.fetch_failures + 1 >= MAX_FETCH_ATTEMPTS =>
                    {
                        asset_unavailable(&e)
                    }
                    other => other?,
                }
            }
            _ => self.failed(&result).await,
        };
        // A change a person said to ignore (or an unsettled capture of it): judged `ignored`, not
        // captured again, not alerted.
        let ignored = crate::ignore::matching(&*self.store, &run, &outcome).await?;
        let outcome = match &ignored {
            Some(_) => RunOutcome { verdict: Some(Verdict::Ignored), ..outcome },
            None => outcome,
        };
        let verdict = outcome.verdict;
        let monitor = self.monitors.find(&run.monitor);
        let monitor = monitor.as_ref();
        if verdict == Some(Verdict::Changed)
            && let Some(monitor) = monitor
            && run.attempt < monitor.retries_on_diff as i32
            && let Some(viewport) = monitor.viewports.iter().find(|v| v.key() == run.viewport)
        {
            // `retries_on_diff`: look again before alerting; only a change that persists counts.
            if let Some((condition, why)) = self.runs.disk.refusal() {
                return Err(ProcessError::Paused(format!(
                    "a change waits for its confirming capture ({}): {why}",
                    condition.code()
                )));
            }
            match self.runs.recapture(monitor, viewport, &run).await {
                Ok(job) => {
                    tracing::info!(run = %run.id, monitor = %run.monitor, %job, attempt = run.attempt + 1, diff_pixels = ?outcome.diff_pixels, "change seen; capturing again before alerting");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(run = %run.id, error = %e, "re-capture failed; judging this capture")
                }
            }
        }
        if self.store.complete_run(&run.id, &outcome, Timestamp::now()).await? {
            if let Some(v) = verdict {
                self.verdicts.get_or_create(&vec![("verdict".into(), v.as_str().into())]).inc();
            }
            tracing::info!(run = %run.id, monitor = %run.monitor, viewport = %run.viewport, ?verdict, diff_pixels = ?outcome.diff_pixels, "run judged");
            if let Some(ignore) = &ignored
                && let Err(e) = self.store.count_ignored(&ignore.id, Timestamp::now()).await
            {
                // The verdict stands; only the ignore's count misses this run.
                tracing::warn!(run = %run.id, ignore = %ignore.id, error = ?e, "cannot count the ignored run");
            }
        }
        match self.store.get_run(&run.id).await? {
            Some(done) => Ok(self.alerts.queue(&done).await?),
            None => Ok(()),
        }
    }

    /// The capture's link said it is gone (expired while vigil was down, pruned): asks the
    /// capture API for the job again (`GET /v1/capture/{id}` signs a fresh link) and judges
    /// that. When the API has no capture to give, that is final; any other failure counts as
    /// one failed download.
    async fn judge_fresh_link(
        &self,
        run: &Run,
        result: &Result_,
        stale: &str,
        gone: FetchError,
    ) -> Result<RunOutcome, ProcessError> {
        let no_capture =
            || FetchError::terminal(format!("{gone}, and the capture API has no capture for the job"));
        let Ok(job) = result.job_id.parse() else { return Err(no_capture()) };
        let doc = self.runs.capture.lookup(&job).await.map_err(FetchError::transient)?;
        let fresh = doc.as_ref().filter(|d| d["status"] == "completed").and_then(|d| d["asset_url"].as_str());
        match fresh {
            Some(url) if url != stale => {
                tracing::info!(run = %run.id, job = %job, "capture link gone; fetching through a fresh one");
                self.judge(run, url, result).await
            }
            // The same link (a provider whose links do not expire): gone for now, maybe not for good.
            Some(_) => Err(ProcessError::Fetch(gone)),
            None => Err(no_capture()),
        }
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, ProcessError> {
        // A capture link is fetched like any URL a peer gave: through the address policy, unless
        // it is on vigil's own capture API or the configured provider.
        let client = self
            .client
            .for_url(url)
            .map_err(|e| FetchError::terminal(format!("capture link refused: {e}")))?;
        let r =
            client.get(url).send().await.map_err(|e| {
                match crate::capture::egress::refused_by_policy(&e) {
                    Some(refusal) => FetchError::terminal(format!("capture link refused: {refusal}")),
                    None => FetchError::transient(crate::http::client::error_chain(&e)),
                }
            })?;
        let status = r.status();
        if !status.is_success() {
            let gone = matches!(status.as_u16(), 403 | 404 | 410);
            return Err(ProcessError::Fetch(FetchError {
                message: format!("HTTP {status}"),
                gone,
                terminal: false,
            }));
        }
        match crate::http::client::body_within(r, MAX_ASSET_BYTES).await {
            Ok(bytes) => Ok(bytes),
            Err(e @ BodyError::TooLarge(_)) => Err(FetchError::terminal(e.to_string())),
            Err(e) => Err(FetchError::transient(e.to_string())),
        }
    }

    /// Stores a blob (off the async threads); its digest.
    async fn put(&self, bytes: Vec<u8>) -> Result<String, ProcessError> {
        Ok(self.blobs.put(bytes).await?)
    }

    /// Compares the capture with the baseline (the first capture becomes it) and stores it.
    ///
    /// A capture provider is not trusted with the disk: what is not a PNG within the diff's
    /// limits (a huge declared size, a truncated or corrupt stream) fails the run and is stored
    /// nowhere, so it can never become a baseline. The comparison decodes it anyway; only a
    /// first capture is decoded just to check it.
    async fn judge(&self, run: &Run, url: &str, result: &Result_) -> Result<RunOutcome, ProcessError> {
        let reported_masks = &result.masks;
        let quality =
            |outcome: RunOutcome| RunOutcome { stable: result.stable, clipped: result.clipped, ..outcome };
        let started = std::time::Instant::now();
        let png = self.fetch(url).await?;
        let monitor = self.monitors.find(&run.monitor);
        let monitor = monitor.as_ref();
        // A PDF monitor's capture is compared, stored and shown as its pages rendered to one PNG;
        // only a PDF monitor's (rendering is the costly part a provider's bytes could reach).
        let format = monitor.map_or(crate::config::Format::Png, |m| m.format);
        let png = match as_png(png, format).await {
            Ok(png) => png,
            Err(e) => return Ok(unusable(&e)),
        };
        let fetched = started.elapsed();
        let Some(baseline) = self.store.current_baseline(&run.monitor, &run.viewport).await? else {
            let (checked, png) =
                tokio::task::spawn_blocking(move || (decode_png(&png, &Limits::default()).map(drop), png))
                    .await
                    .expect("the decoder does not panic");
            if let Err(e) = checked {
                return Ok(unusable(&e));
            }
            let sha = self.put(png.clone()).await?;
            let first = NewBaseline {
                monitor: run.monitor.clone(),
                viewport: run.viewport.clone(),
                sha256: sha.clone(),
                run_id: Some(run.id.clone()),
                source: BaselineSource::FirstCapture,
                approved_by: "vigil".into(),
                now: Timestamp::now(),
            };
            self.baselines.create(&first, png).await?;
            return Ok(quality(RunOutcome {
                verdict: Some(Verdict::BaselineCreated),
                current_sha256: Some(sha.clone()),
                baseline_sha256: Some(sha),
                ..Default::default()
            }));
        };
        if baseline.source == BaselineSource::FirstCapture && baseline.run_id.as_ref() == Some(&run.id) {
            // This run made the baseline, and the process died before the run's verdict was
            // recorded: its verdict is the one it would have had, not "unchanged" against itself.
            return Ok(quality(RunOutcome {
                verdict: Some(Verdict::BaselineCreated),
                current_sha256: Some(baseline.sha256.clone()),
                baseline_sha256: Some(baseline.sha256),
                ..Default::default()
            }));
        }
        let base_png = self.baselines.blob(&baseline.sha256).await?;
        // With the rectangles reviewers drew on this page's captures (the review page, the API).
        let drawn = self.store.masks_of(&run.monitor, Some(&run.viewport)).await?;
        let mut options = diff_options(monitor, reported_masks);
        options.masks.extend(drawn.iter().filter_map(crate::masks::region));
        let compared = tokio::task::spawn_blocking(move || {
            let (report, diff_png) = compare_png(&base_png, &png, &options, &Limits::default(), true)?;
            // What the words in the changed regions say changed, when both sides have words
            // (read only when something changed).
            let changes = match (text::has_words(&base_png), text::has_words(&png)) {
                (true, true) if report.regions.is_empty() => Some(Vec::new()),
                (true, true) => match (text::extract(&base_png), text::extract(&png)) {
                    (Some(before), Some(after)) => {
                        Some(text::compare(&report.regions, &options.masks, &before, &after))
                    }
                    _ => None,
                },
                _ => None,
            };
            let pages = pdf::compare_pages(&base_png, &png, &report.regions);
            let page_height = pdf::tallest_page(&base_png, &png);
            Ok::<_, DiffError>(((report, diff_png, changes, pages, page_height), png))
        })
        .await
        .expect("the diff does not panic");
        let ((report, diff_png, changes, pages, page_height), png) = match compared {
            Ok(r) => r,
            Err(e) => return Ok(RunOutcome { baseline_sha256: Some(baseline.sha256), ..unusable(&e) }),
        };
        let compared = started.elapsed();
        let sha = self.put(png).await?;
        let diff_sha = match diff_png {
            Some(d) => Some(self.put(d).await?),
            None => None,
        };
        tracing::debug!(
            run = %run.id,
            fetch = fetched.as_millis() as u64,
            compare = (compared - fetched).as_millis() as u64,
            store = (started.elapsed() - compared).as_millis() as u64,
            "judge timings (ms)"
        );
        let threshold = monitor.map(|m| m.threshold).unwrap_or(crate::config::Threshold {
            ratio: Some(crate::config::DEFAULT_THRESHOLD_RATIO),
            max_diff_pixels: None,
        });
        // Any changed word is a change (docs/diff.md), unless the monitor leaves it to the threshold.
        let words_changed = changes.iter().flatten().any(|c| !c.text.is_empty());
        let by_words = words_changed && monitor.is_none_or(|m| m.alert_on_text_change);
        // A PDF's threshold is a share of one page, not of the whole stack: a price changed on
        // page 2 of 30 must not drown in the other 29.
        let judged_pixels =
            page_height.map_or(report.total_pixels, |h| u64::from(report.width) * u64::from(h));
        let changed =
            report.size_changed || threshold.is_exceeded(report.diff_pixels, judged_pixels) || by_words;
        // A change seen on a capture that never settled may be the page moving, not changed;
        // unless a settled capture saw it first (this is its `retries_on_diff` confirmation).
        let verdict = match (changed, result.stable) {
            (true, Some(false)) if run.attempt == 0 => Verdict::Unstable,
            (true, _) => Verdict::Changed,
            (false, _) => Verdict::Unchanged,
        };
        Ok(quality(RunOutcome {
            verdict: Some(verdict),
            current_sha256: Some(sha),
            baseline_sha256: Some(baseline.sha256),
            diff_sha256: diff_sha,
            diff_pixels: Some(report.diff_pixels as i64),
            total_pixels: Some(report.total_pixels as i64),
            diff_ratio: Some(report.diff_ratio),
            size_changed: Some(report.size_changed),
            regions: Some(serde_json::to_string(&report.regions).expect("serialises")),
            text_changes: changes.map(|c| serde_json::to_string(&c).expect("serialises")),
            pages: pages.map(|p| serde_json::to_string(&p).expect("serialises")),
            ..Default::default()
        }))
    }
}

/// The verdict of a run whose capture cannot be downloaded: failed, for good.
fn asset_unavailable(e: &FetchError) -> RunOutcome {
    let error = serde_json::json!({
        "code": "asset_unavailable",
        "message": format!("the capture could not be downloaded: {e}"),
        "retryable": false,
    });
    RunOutcome { verdict: Some(Verdict::Failed), error: Some(error.to_string()), ..Default::default() }
}

/// The capture as the PNG that is compared: a PDF (a `format: pdf` monitor) has its pages
/// rendered and stacked (`crate::diff::pdf`), off the async threads; anything else is left as it
/// is, for the PNG decoder to judge.
async fn as_png(capture: Vec<u8>, format: crate::config::Format) -> Result<Vec<u8>, DiffError> {
    use crate::config::Format;
    let invalid = |reason: &str| DiffError::InvalidPdf { reason: reason.to_owned() };
    match (format, pdf::is_pdf(&capture)) {
        (Format::Png, false) => Ok(capture),
        (Format::Png, true) => Err(invalid("the monitor's format is png, and the capture is a PDF")),
        (Format::Pdf, false) => Err(invalid("the capture is not a PDF (the monitor's format is pdf)")),
        (Format::Pdf, true) => tokio::task::spawn_blocking(move || {
            pdf::rasterise(&capture, &Limits::default()).and_then(|r| pdf::encode(&r))
        })
        .await
        .unwrap_or_else(|_| Err(invalid("the renderer failed"))),
    }
}

/// The verdict on a capture that cannot be compared (not a PNG within the limits, nor a PDF
/// that renders).
fn unusable(e: &DiffError) -> RunOutcome {
    let message = format!("the capture is unusable: {e}");
    RunOutcome {
        verdict: Some(Verdict::Failed),
        error: Some(
            serde_json::json!({"code": e.code(), "message": message, "retryable": false}).to_string(),
        ),
        ..Default::default()
    }
}

/// The monitor's comparison options, with its rectangle masks and the ones the capture reported
/// (its selector masks, resolved in the page).
fn diff_options(monitor: Option<&Monitor>, reported: &[Region]) -> DiffOptions {
    let mut masks: Vec<Region> = reported.to_vec();
    if let Some(m) = monitor {
        for mask in &m.mask {
            if let Mask::Rect { x, y, width, height } = mask
                && !masks.iter().any(|r| (r.x, r.y, r.width, r.height) == (*x, *y, *width, *height))
            {
                masks.push(Region { x: *x, y: *y, width: *width, height: *height });
            }
        }
    }
    DiffOptions { threshold: monitor.map_or(0.1, |m| m.pixel_threshold), masks, ..DiffOptions::default() }
}
