//! Alerts (docs/architecture.md §7): the processor queues one per (run, kind) in the `alerts` outbox; the
//! [`Alerter`] sends them — to Slack when `slack:` is configured, to the log otherwise — and
//! retries what failed for a reason that can pass (429 with `Retry-After`, 5xx, network), so
//! none is lost and none is sent twice.
//!
//! A Slack alert is two steps: `chat.postMessage`, then the images uploaded into its thread
//! (`files.getUploadURLExternal`, upload, `files.completeUploadExternal`). The message's
//! channel and `ts` are stored as soon as it is posted, so a retry only redoes the uploads.
//!
//! Slack's API has no idempotency key, so a post whose answer never came back (a timeout, a
//! crash between Slack's answer and our write) may or may not have landed. Every message carries
//! the alert id in its metadata, and the channel is recorded before posting; an attempt that
//! finds a channel but no `ts` first looks for its message in the channel's history
//! (`conversations.history`) and only posts when it is not there. That needs the channel's ID
//! in the config (`C…`): history cannot be read by channel name, and then the post is retried
//! (at least once).

pub mod chat;
mod connector;
pub mod email;
pub mod events;
pub mod group;
pub mod interactions;
pub mod message;
pub mod operator;
pub mod run_alerts;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::sync::{Notify, watch};

pub use self::message::{APPROVE_ACTION, AlertImage, AlertPayload, MUTE_ACTION, REJECT_ACTION, alert_kind};
use crate::config::SlackConfig;
use crate::queue::backoff::Exponential;
use crate::queue::{self, Next, Pacing, QueueWorker, WorkError};
use crate::store::blobs::BlobStore;
use crate::store::{Alert, AlertKind, Attempt, Store, StoreError};
use crate::time::Timestamp;

/// Slack calls one alert may make at most (history, message, three per image, completion),
/// times the per-call timeout: how long before another sender may take the alert over.
const CALLS_PER_ALERT: u32 = 12;
/// The lease when alerts only go to the log.
const LOG_LEASE: Duration = Duration::from_secs(30);
/// Retry delay when alerts only go to the log (writing them does not fail; reading may).
const LOG_RETRY: [Duration; 1] = [Duration::from_secs(5)];
/// Attempts before an alert is dead-lettered (about a day with the default schedule).
const MAX_ATTEMPTS: i32 = 30;
/// `metadata.event_type` of our messages; `event_payload.alert_id` is the alert's id.
const METADATA_EVENT: &str = "vigil_alert";
/// History pages (of 200 messages) searched for an earlier attempt's message.
const HISTORY_PAGES: usize = 5;
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
    /// Builds the events of a grouped change.
    pub events: events::Events,
    /// Wakes the webhook deliverer when a group's events are queued.
    pub deliveries: Arc<Notify>,
}

pub struct SlackSender {
    client: Slack,
    token: SlackApiToken,
    default_channel: String,
    timeout: Duration,
    retry_schedule: Vec<Duration>,
}

impl SlackSender {
    /// `http` must time out each request after `config.timeout`.
    pub fn new(config: &SlackConfig, http: reqwest::Client) -> Self {
        Self {
            client: SlackClient::new(connector::ReqwestConnector::new(http, &config.api_url)),
            token: SlackApiToken::new(config.bot_token.expose().to_owned().into()),
            default_channel: config.channel.clone(),
            timeout: config.timeout,
            retry_schedule: config.retry_schedule.clone(),
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

/// The longest quiet hours hold an alert, windows that follow on included.
const MAX_HOLD: Duration = Duration::from_secs(7 * 24 * 3600);

/// When the outbox cannot be read or an attempt cannot be recorded: 1 s, 2 s, 4 s … 30 s.
const TROUBLE: Exponential = Exponential::new(Duration::from_secs(1), Duration::from_secs(30));

impl Alerter {
    /// Runs until `stop`: claims due alerts, wakes when one is queued.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let wake = self.ready.clone();
        queue::run(self, Pacing::new(Duration::from_secs(1), TROUBLE), Some(wake), stop).await
    }
}

#[async_trait::async_trait]
impl QueueWorker for Alerter {
    type Item = Alert;
    const NAME: &'static str = "alerts";

    async fn claim(&self) -> Result<Option<Alert>, WorkError> {
        let lease = self.slack.as_ref().map_or(LOG_LEASE, |s| s.timeout * CALLS_PER_ALERT);
        Ok(self.store.claim_alert(Timestamp::now(), lease).await?)
    }

    async fn work(&self, alert: Alert) -> Result<Next, WorkError> {
        self.attempt(alert).await?;
        Ok(Next::Continue)
    }
}

impl Alerter {
    async fn attempt(&self, alert: Alert) -> Result<(), StoreError> {
        let mut payload: AlertPayload = match serde_json::from_str(&alert.payload) {
            Ok(p) => p,
            Err(e) => {
                let attempt = Attempt::Dead { status: None, error: format!("unreadable alert payload: {e}") };
                return self.record(&alert, &attempt, "dead").await;
            }
        };
        if let Some(until) = payload.hold_until {
            let now = Timestamp::now();
            if until > now.millis() {
                return self.store.defer_alert(&alert.id, Timestamp::from_millis(until), now).await;
            }
            // The window ended: a window that follows on, or a mute set meanwhile, still counts.
            let monitor = self.events.monitors.find_str(&payload.monitor);
            match monitor.as_ref().and_then(|m| m.quiet_at(now.to_datetime())) {
                // Windows that follow on for a week (a rule that is quiet all the time) hold no
                // longer: the alert goes out.
                Some((end, crate::config::QuietAction::Hold)) if now.minus(MAX_HOLD) < alert.created_at => {
                    return self.store.defer_alert(&alert.id, Timestamp::from_datetime(end), now).await;
                }
                Some((_, crate::config::QuietAction::Skip)) if payload.kind != AlertKind::Recovered => {
                    let error = "not sent: its quiet hours ended in a window that skips alerts".to_owned();
                    return self.record(&alert, &Attempt::Dead { status: None, error }, "dead").await;
                }
                _ => {}
            }
            if let Some(name) = monitor.map(|m| m.name)
                && payload.kind != AlertKind::Recovered
                && let Some(mute) = self.store.mute_of(&name, now).await?
            {
                let error = format!(
                    "not sent: muted until {} by {} when its quiet hours ended",
                    mute.until, mute.muted_by
                );
                return self.record(&alert, &Attempt::Dead { status: None, error }, "dead").await;
            }
        }
        if payload.group_until.is_some() && payload.group.is_none() {
            match self.form_group(&alert, &mut payload).await? {
                group::Grouping::Wait(at) => {
                    return self.store.defer_alert(&alert.id, at, Timestamp::now()).await;
                }
                group::Grouping::Absorbed => return Ok(()),
                group::Grouping::Formed => {}
            }
        }
        let result = match &self.slack {
            // The monitor routes its alerts elsewhere only (its `alerts:` has no `slack`).
            _ if !payload.slack => {
                tracing::info!(alert = %alert.id, run = %payload.run_id, kind = %payload.kind, "not routed to Slack: {}", payload.summary());
                Ok(None)
            }
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
                    let schedule = self.slack.as_ref().map_or(&LOG_RETRY[..], |s| &s.retry_schedule[..]);
                    crate::queue::backoff::jitter(schedule[(alert.attempts as usize).min(schedule.len() - 1)])
                });
                tracing::warn!(alert = %alert.id, %error, retry_in = ?wait, "alert not sent; will retry");
                (Attempt::Retry { at: now.plus(wait), status: None, error }, "retry")
            }
            Err(SendError::Retry { error, .. } | SendError::Fatal(error)) => {
                tracing::error!(alert = %alert.id, run = %payload.run_id, %error, "alert cannot be sent; dead-lettered");
                (Attempt::Dead { status: None, error }, "dead")
            }
        };
        self.record(&alert, &attempt, outcome).await
    }

    async fn record(&self, alert: &Alert, attempt: &Attempt, outcome: &str) -> Result<(), StoreError> {
        self.outcomes.get_or_create(&vec![("outcome".into(), outcome.into())]).inc();
        let recorded = self.store.record_alert_attempt(&alert.id, attempt, Timestamp::now()).await;
        if let Err(e) = &recorded {
            // The lease runs out and the alert is tried again: a rare duplicate, never a loss.
            tracing::warn!(alert = %alert.id, error = ?e, "cannot record the alert attempt");
        }
        recorded
    }

    /// Posts the message (unless an earlier attempt did) and uploads the images into its thread.
    /// Returns the message `ts`.
    async fn send_to_slack(
        &self,
        slack: &SlackSender,
        alert: &Alert,
        payload: &AlertPayload,
    ) -> Result<String, SendError> {
        let (channel, ts) = match (&alert.slack_channel, &alert.slack_ts) {
            (Some(c), Some(ts)) => (SlackChannelId(c.clone()), SlackTs(ts.clone())),
            (earlier, _) => {
                let found = match earlier {
                    Some(channel) => find_posted(&slack.session(), channel, alert).await,
                    None => None,
                };
                let (channel, ts) = match found {
                    Some(found) => {
                        tracing::info!(alert = %alert.id, "an earlier attempt posted the message; not posting again");
                        found
                    }
                    None => self.post(slack, alert, payload).await?,
                };
                if let Err(e) =
                    self.store.mark_alert_posted(&alert.id, &channel.0, &ts.0, Timestamp::now()).await
                {
                    tracing::warn!(alert = %alert.id, error = ?e, "cannot record the posted message");
                }
                (channel, ts)
            }
        };
        if !payload.images.is_empty() {
            self.upload_images(slack, &channel, &ts, payload).await?;
        }
        Ok(ts.0)
    }

    /// `chat.postMessage`, after recording the channel (without that record a crash after the
    /// post would post it twice), with the alert id in the message's metadata.
    async fn post(
        &self,
        slack: &SlackSender,
        alert: &Alert,
        payload: &AlertPayload,
    ) -> Result<(SlackChannelId, SlackTs), SendError> {
        let channel = payload.channel.clone().unwrap_or_else(|| slack.default_channel.clone());
        self.store.mark_alert_posting(&alert.id, &channel, Timestamp::now()).await.map_err(|e| {
            SendError::Retry { after: None, error: format!("cannot record the attempt: {e}") }
        })?;
        let metadata = SlackMessageMetadata {
            event_type: METADATA_EVENT.into(),
            event_payload: Some([("alert_id".to_owned(), alert.id.to_string())].into()),
        };
        let content = SlackMessageContent::new()
            .with_text(payload.fallback_text())
            .with_blocks(payload.blocks())
            .with_metadata(metadata);
        let request = SlackApiChatPostMessageRequest::new(SlackChannelId(channel), content)
            .with_unfurl_links(false)
            .with_unfurl_media(false);
        let posted = slack.session().chat_post_message(&request).await?;
        Ok((posted.channel, posted.ts))
    }

    /// The images, uploaded and shared into the message's thread.
    async fn upload_images(
        &self,
        slack: &SlackSender,
        channel: &SlackChannelId,
        ts: &SlackTs,
        payload: &AlertPayload,
    ) -> Result<(), SendError> {
        let session = slack.session();
        let mut files = Vec::new();
        for image in &payload.images {
            let bytes = self.blobs.get(&image.sha256).await.map_err(|e| {
                let error = format!("image {} unavailable: {}", image.filename, e.detail());
                // A bucket that does not answer now may later; a pruned image will not.
                match e.is_retryable() {
                    true => SendError::Retry { after: None, error },
                    false => SendError::Fatal(error),
                }
            })?;
            let request = SlackApiFilesGetUploadUrlExternalRequest::new(image.filename.clone(), bytes.len());
            let url = session.get_upload_url_external(&request).await?;
            let upload = SlackApiFilesUploadViaUrlRequest::new(url.upload_url, bytes, "image/png".into());
            session.files_upload_via_url(&upload).await?;
            files.push(SlackApiFilesComplete::new(url.file_id).with_title(image.title.clone()));
        }
        // Completing with the channel and thread shares the files there; without a channel they
        // would stay private to the bot.
        let complete = SlackApiFilesCompleteUploadExternalRequest::new(files)
            .with_channel_id(channel.clone())
            .with_thread_ts(ts.clone());
        session.files_complete_upload_external(&complete).await?;
        Ok(())
    }
}

/// The message an earlier attempt of `alert` posted to `channel`, if Slack has it: searched by
/// the alert id in the messages' metadata, newest first, back to when the alert was queued.
/// `None` when it is not there or the history cannot be read (then the caller posts).
async fn find_posted(
    session: &SlackClientSession<'_, connector::ReqwestConnector>,
    channel: &str,
    alert: &Alert,
) -> Option<(SlackChannelId, SlackTs)> {
    let channel_id = SlackChannelId(channel.to_owned());
    // A minute of leeway for the clocks of Slack and of this machine.
    let oldest = SlackTs(format!(
        "{}.000000",
        alert.created_at.minus(Duration::from_secs(60)).millis().div_euclid(1000)
    ));
    let mut cursor = None;
    for _ in 0..HISTORY_PAGES {
        let request = SlackApiConversationsHistoryRequest::new()
            .with_channel(channel_id.clone())
            .with_oldest(oldest.clone())
            .with_limit(200)
            .with_include_all_metadata(true)
            .opt_cursor(cursor);
        let page = match session.conversations_history(&request).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(alert = %alert.id, %channel, error = %e,
                    "cannot read the channel history to check an earlier attempt; posting (may duplicate). \
                     Configure the channel by ID and grant channels:history for exactly-once alerts");
                return None;
            }
        };
        let ours = page.messages.iter().find(|m| {
            m.content.metadata.as_ref().is_some_and(|md| {
                md.event_type == METADATA_EVENT
                    && md.event_payload.as_ref().and_then(|p| p.get("alert_id")).map(String::as_str)
                        == Some(alert.id.as_str())
            })
        });
        if let Some(m) = ours {
            return Some((channel_id, m.origin.ts.clone()));
        }
        cursor = page.response_metadata.and_then(|r| r.next_cursor).filter(|c| !c.0.is_empty());
        if cursor.is_none() {
            break;
        }
    }
    None
}
