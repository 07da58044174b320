//! Alerts (DESIGN §7): the processor queues one per (run, kind) in the `alerts` outbox; the
//! [`Alerter`] sends them — to Slack when `slack:` is configured, to the log otherwise — and
//! retries what failed for a reason that can pass (429 with `Retry-After`, 5xx, network), so
//! none is lost and none is sent twice.
//!
//! A Slack alert is two steps: `chat.postMessage`, then the images uploaded into its thread
//! (`files.getUploadURLExternal`, upload, `files.completeUploadExternal`). The message's
//! channel and `ts` are stored as soon as it is posted, so a retry only redoes the uploads.

mod connector;
pub mod message;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::sync::{Notify, watch};

pub use self::message::{APPROVE_ACTION, AlertImage, AlertPayload};
use crate::config::SlackConfig;
use crate::store::blobs::BlobStore;
use crate::store::{Alert, Attempt, Store};
use crate::time::Timestamp;

/// How long one alert may take (message and uploads) before another sender may take it over.
const LEASE: Duration = Duration::from_secs(120);
/// Backoff after a failure Slack gives no `Retry-After` for; the last entry repeats.
const BACKOFF: [Duration; 6] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
];
/// Attempts before an alert is dead-lettered (about a day with the backoff above).
const MAX_ATTEMPTS: i32 = 30;
/// When Slack says 429 without `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

pub type Slack = SlackClient<connector::ReqwestConnector>;

/// Sends queued alerts.
pub struct Alerter {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    /// `None`: alerts are written to the log.
    pub slack: Option<Arc<SlackSender>>,
    pub ready: Arc<Notify>,
    pub outcomes: Family<Vec<(String, String)>, Counter>,
}

pub struct SlackSender {
    client: Slack,
    token: SlackApiToken,
    default_channel: String,
}

impl SlackSender {
    pub fn new(config: &SlackConfig, http: reqwest::Client) -> Self {
        Self {
            client: SlackClient::new(connector::ReqwestConnector::new(http, &config.api_url)),
            token: SlackApiToken::new(config.bot_token.expose().to_owned().into()),
            default_channel: config.channel.clone(),
        }
    }

    pub fn session(&self) -> SlackClientSession<'_, connector::ReqwestConnector> {
        self.client.open_session(&self.token)
    }
}

/// Why a send did not finish, and whether trying again can help.
#[derive(Debug)]
enum SendError {
    Retry { after: Option<Duration>, error: String },
    Fatal(String),
}

impl From<SlackClientError> for SendError {
    fn from(e: SlackClientError) -> Self {
        match &e {
            SlackClientError::RateLimitError(r) => SendError::Retry {
                after: Some(r.retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
                error: e.to_string(),
            },
            SlackClientError::HttpError(h)
                if h.status_code.is_server_error() || h.status_code.as_u16() == 408 =>
            {
                SendError::Retry { after: None, error: e.to_string() }
            }
            SlackClientError::ApiError(a)
                if matches!(
                    a.code.as_str(),
                    "ratelimited"
                        | "internal_error"
                        | "fatal_error"
                        | "service_unavailable"
                        | "request_timeout"
                ) =>
            {
                SendError::Retry { after: None, error: e.to_string() }
            }
            SlackClientError::HttpProtocolError(_) | SlackClientError::EndOfStream(_) => {
                SendError::Retry { after: None, error: e.to_string() }
            }
            // invalid_auth, channel_not_found, not_in_channel, missing_scope…: a person has to act.
            _ => SendError::Fatal(e.to_string()),
        }
    }
}

impl Alerter {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            match self.store.claim_alert(Timestamp::now(), LEASE).await {
                Ok(Some(alert)) => {
                    self.attempt(alert).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = ?e, "cannot read the alert outbox; retrying"),
            }
            tokio::select! {
                _ = self.ready.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn attempt(&self, alert: Alert) {
        let payload: AlertPayload = match serde_json::from_str(&alert.payload) {
            Ok(p) => p,
            Err(e) => {
                let attempt = Attempt::Dead { status: None, error: format!("unreadable alert payload: {e}") };
                self.record(&alert, &attempt, "dead").await;
                return;
            }
        };
        let result = match &self.slack {
            None => {
                tracing::warn!(
                    alert = %alert.id, run = %payload.run_id, kind = %payload.kind, review = %payload.review_url,
                    "ALERT {}", payload.summary()
                );
                Ok(None)
            }
            Some(slack) => self.send_to_slack(slack, &alert, &payload).await.map(Some),
        };
        let now = Timestamp::now();
        let (attempt, outcome) = match result {
            Ok(ts) => {
                tracing::info!(alert = %alert.id, run = %payload.run_id, kind = %payload.kind, "alert sent");
                (Attempt::Sent { status: None, reference: ts }, "sent")
            }
            Err(SendError::Retry { after, error }) if alert.attempts + 1 < MAX_ATTEMPTS => {
                let wait = after.unwrap_or_else(|| {
                    crate::webhook::delivery::jitter(
                        BACKOFF[(alert.attempts as usize).min(BACKOFF.len() - 1)],
                    )
                });
                tracing::warn!(alert = %alert.id, %error, retry_in = ?wait, "alert not sent; will retry");
                (Attempt::Retry { at: now.plus(wait), status: None, error }, "retry")
            }
            Err(SendError::Retry { error, .. } | SendError::Fatal(error)) => {
                tracing::error!(alert = %alert.id, run = %payload.run_id, %error, "alert cannot be sent; dead-lettered");
                (Attempt::Dead { status: None, error }, "dead")
            }
        };
        self.record(&alert, &attempt, outcome).await;
    }

    async fn record(&self, alert: &Alert, attempt: &Attempt, outcome: &str) {
        self.outcomes.get_or_create(&vec![("outcome".into(), outcome.into())]).inc();
        if let Err(e) = self.store.record_alert_attempt(&alert.id, attempt, Timestamp::now()).await {
            // The lease runs out and the alert is tried again: a rare duplicate, never a loss.
            tracing::warn!(alert = %alert.id, error = ?e, "cannot record the alert attempt");
        }
    }

    /// Posts the message (unless an earlier attempt did) and uploads the images into its thread.
    /// Returns the message `ts`.
    async fn send_to_slack(
        &self,
        slack: &SlackSender,
        alert: &Alert,
        payload: &AlertPayload,
    ) -> Result<String, SendError> {
        let session = slack.session();
        let (channel, ts) = match (&alert.slack_channel, &alert.slack_ts) {
            (Some(c), Some(ts)) => (SlackChannelId(c.clone()), SlackTs(ts.clone())),
            _ => {
                let channel = payload.channel.clone().unwrap_or_else(|| slack.default_channel.clone());
                let content =
                    SlackMessageContent::new().with_text(payload.summary()).with_blocks(payload.blocks());
                let request = SlackApiChatPostMessageRequest::new(SlackChannelId(channel), content)
                    .with_unfurl_links(false)
                    .with_unfurl_media(false);
                let posted = session.chat_post_message(&request).await?;
                if let Err(e) = self
                    .store
                    .mark_alert_posted(&alert.id, &posted.channel.0, &posted.ts.0, Timestamp::now())
                    .await
                {
                    tracing::warn!(alert = %alert.id, error = ?e, "cannot record the posted message");
                }
                (posted.channel, posted.ts)
            }
        };
        if !payload.images.is_empty() {
            let mut files = Vec::new();
            for image in &payload.images {
                let blobs = self.blobs.clone();
                let sha = image.sha256.clone();
                let bytes = tokio::task::spawn_blocking(move || blobs.get(&sha))
                    .await
                    .expect("blob reads do not panic")
                    .map_err(|e| SendError::Fatal(format!("image {} unavailable: {e}", image.filename)))?;
                let url = session
                    .get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
                        image.filename.clone(),
                        bytes.len(),
                    ))
                    .await?;
                session
                    .files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
                        url.upload_url,
                        bytes,
                        "image/png".into(),
                    ))
                    .await?;
                files.push(SlackApiFilesComplete::new(url.file_id).with_title(image.title.clone()));
            }
            // Completing with the channel and thread shares the files there; without a channel
            // they would stay private to the bot.
            session
                .files_complete_upload_external(
                    &SlackApiFilesCompleteUploadExternalRequest::new(files)
                        .with_channel_id(channel.clone())
                        .with_thread_ts(ts.clone()),
                )
                .await?;
        }
        Ok(ts.0)
    }
}
