//! `POST /hooks/slack`: the alert's *Approve as baseline*, *Reject* and *Mute 24 h* buttons. Slack's signature
//! (`v0=` HMAC-SHA256 of `v0:{timestamp}:{raw body}` with `slack.signing_secret`) and its
//! 5-minute window are checked before anything is parsed (slack-morphism's verifier, constant
//! time); a request seen before is refused as a replay. The decision is recorded with the Slack
//! user, Slack gets its acknowledgement at once, and the alert message is then updated to say
//! who decided (`chat.update`), or why it could not be done (a reply through `response_url`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

use super::group::APPROVE_ALL_ACTION;
use super::{APPROVE_ACTION, MUTE_ACTION, REJECT_ACTION, SlackSender};
use crate::http::Metrics;
use crate::review::Reviewer;
use crate::store::BaselineSource;

/// How long *Mute 24 h* mutes.
const MUTE_FOR: Duration = Duration::from_secs(24 * 3600);
/// Interaction payloads are a few kilobytes.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Signatures remembered against replays: the verifier accepts timestamps 5 minutes either side
/// of now, so a request stays replayable for 10 minutes; plus a margin.
const REPLAY_WINDOW: Duration = Duration::from_secs(11 * 60);

/// What `/hooks/slack` reaches.
#[derive(Clone)]
pub struct Interactions {
    /// `None` without `slack.signing_secret`: every request is refused.
    pub hooks: Option<Arc<SlackHooks>>,
    pub reviewer: Reviewer,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: Interactions) -> Router {
    Router::new()
        .route("/hooks/slack", post(receive).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
        .with_state(state)
}

/// The Slack side of `/hooks/slack`: the signature verifier, replay memory, and the client that updates messages.
pub struct SlackHooks {
    verifier: SlackEventSignatureVerifier,
    seen: Mutex<HashMap<String, Instant>>,
    sender: Option<Arc<SlackSender>>,
    http: reqwest::Client,
}

impl SlackHooks {
    /// `None` without `slack.signing_secret`: the endpoint then refuses every request.
    pub fn new(config: &crate::config::SlackConfig, sender: Option<Arc<SlackSender>>) -> Option<Self> {
        let secret = config.signing_secret.as_ref()?;
        Some(Self {
            verifier: SlackEventSignatureVerifier::new(&SlackSigningSecret::new(secret.expose().to_owned())),
            seen: Mutex::new(HashMap::new()),
            sender,
            http: crate::http::client::client(Duration::from_secs(10)),
        })
    }

    /// `true` the first time a signature is seen within the window.
    fn first_time(&self, signature: &str, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, at| now.duration_since(*at) < REPLAY_WINDOW);
        seen.insert(signature.to_owned(), now).is_none()
    }
}

#[derive(Deserialize)]
struct Interaction {
    #[serde(rename = "type")]
    kind: String,
    user: Option<User>,
    #[serde(default)]
    actions: Vec<Action>,
    container: Option<Container>,
    message: Option<serde_json::Value>,
    response_url: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
    username: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Action {
    action_id: String,
    value: Option<String>,
}

#[derive(Deserialize)]
struct Container {
    channel_id: Option<String>,
    message_ts: Option<String>,
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let code = if status == StatusCode::UNAUTHORIZED { "unauthorized" } else { "bad_request" };
    (status, axum::Json(serde_json::json!({"error": {"code": code, "message": message}}))).into_response()
}

async fn receive(State(state): State<Interactions>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(hooks) = state.hooks.clone() else {
        return refuse(StatusCode::UNAUTHORIZED, "slack.signing_secret is not configured");
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
        header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
    ) else {
        return refuse(StatusCode::UNAUTHORIZED, "missing Slack signature");
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return refuse(StatusCode::UNAUTHORIZED, "invalid body");
    };
    // The window first, with arithmetic that cannot overflow on a hostile timestamp.
    let now = crate::time::Timestamp::now().millis() / 1000;
    let fresh = timestamp.trim().parse::<i64>().is_ok_and(|t| now.abs_diff(t) <= 300);
    if !fresh {
        state.metrics.webhooks_refused.get_or_create(&vec![("reason".into(), "slack_stale".into())]).inc();
        return refuse(StatusCode::UNAUTHORIZED, "stale or malformed Slack timestamp");
    }
    if let Err(e) = hooks.verifier.verify(signature, text, timestamp) {
        tracing::warn!(error = %e, "Slack request refused");
        state
            .metrics
            .webhooks_refused
            .get_or_create(&vec![("reason".into(), "slack_signature".into())])
            .inc();
        return refuse(StatusCode::UNAUTHORIZED, "invalid or stale Slack signature");
    }
    if !hooks.first_time(signature, Instant::now()) {
        tracing::warn!("Slack request replayed; refused");
        state.metrics.webhooks_refused.get_or_create(&vec![("reason".into(), "slack_replay".into())]).inc();
        return refuse(StatusCode::UNAUTHORIZED, "replayed request");
    }
    let interaction =
        serde_urlencoded_payload(text).and_then(|p| serde_json::from_str::<Interaction>(&p).ok());
    let Some(interaction) = interaction else {
        return refuse(StatusCode::BAD_REQUEST, "expected an interaction payload");
    };
    let ours = |a: &&Action| {
        [APPROVE_ACTION, APPROVE_ALL_ACTION, REJECT_ACTION, MUTE_ACTION].contains(&a.action_id.as_str())
    };
    let Some(action) = interaction.actions.iter().find(ours) else {
        // Other buttons (Open review is a link) need nothing from us.
        return StatusCode::OK.into_response();
    };
    if interaction.kind != "block_actions" {
        return StatusCode::OK.into_response();
    }
    let value = action.value.as_deref().unwrap_or_default();
    let user = interaction.user.as_ref();
    let handle =
        user.and_then(|u| u.username.clone().or_else(|| u.name.clone())).unwrap_or_else(|| "someone".into());
    // Recorded by the user's ID (which Slack does not let anyone else take) with their handle.
    let handle = crate::diff::text::clean(&handle);
    let by = match user.map(|u| u.id.to_string()) {
        Some(id) => format!("slack:@{handle} ({id})"),
        None => format!("slack:@{handle}"),
    };
    let reviewer = &state.reviewer;
    let who = mention(user.map(|u| u.id.as_str()), &handle);
    // Deciding is quick (a transaction and one file); the message update runs after the ack.
    if action.action_id == MUTE_ACTION {
        let answer = mute(reviewer, value, &by).await;
        tokio::spawn(async move { reply(&hooks, &interaction, &answer).await });
        return StatusCode::OK.into_response();
    }
    let Ok(run) = value.parse::<crate::ids::RunId>() else {
        return refuse(StatusCode::BAD_REQUEST, "the button carries no run id");
    };
    if action.action_id == APPROVE_ALL_ACTION {
        // Several approvals (a transaction and a file each): after the acknowledgement, which
        // Slack wants within 3 s.
        let reviewer = reviewer.clone();
        tokio::spawn(async move {
            let (emoji, text) = approve_all(&reviewer, &run, &by, &who).await;
            update_message(&hooks, &interaction, emoji, &text).await;
        });
        return StatusCode::OK.into_response();
    }
    let decided = if action.action_id == REJECT_ACTION {
        match reviewer.reject(&run, &by).await {
            Ok(r) if r.reviewed_by.as_deref().is_some_and(|first| first != by) => {
                // (Escaped: a name given through the API could hold Slack markup.)
                let first = super::message::escape(r.reviewed_by.as_deref().unwrap_or_default());
                Ok((":x:", format!("Already rejected by {first}")))
            }
            Ok(_) => Ok((":x:", format!("Rejected by {who}; the baseline stays"))),
            Err(e) => Err(format!("Could not reject: {e}")),
        }
    } else {
        match reviewer.approve(&run, &by, BaselineSource::Slack).await {
            Ok(a) if a.already => {
                Ok((":white_check_mark:", format!("Already the baseline — confirmed by {who}")))
            }
            Ok(_) => Ok((":white_check_mark:", format!("Approved as baseline by {who}"))),
            Err(e) => Err(format!("Could not approve: {e}")),
        }
    };
    tokio::spawn(async move {
        match decided {
            Ok((emoji, text)) => update_message(&hooks, &interaction, emoji, &text).await,
            Err(text) => {
                tracing::warn!(%run, error = %text, "a decision from Slack failed");
                reply(&hooks, &interaction, &text).await;
            }
        }
    });
    StatusCode::OK.into_response()
}

/// The *Approve all* button of a grouped alert (its value: the first run): the runs of the
/// group still awaiting review become their pages' baselines; what to say.
async fn approve_all(
    reviewer: &Reviewer,
    first: &crate::ids::RunId,
    by: &str,
    who: &str,
) -> (&'static str, String) {
    match reviewer.approve_group(first, by, BaselineSource::Slack).await {
        Ok(done) if done.skipped.is_empty() => (
            ":white_check_mark:",
            format!("{} of {} approved as baselines by {who}", done.approved, done.runs),
        ),
        Ok(done) => {
            let skipped: Vec<String> =
                done.skipped.iter().map(|(run, why)| format!("`{run}`: {why}")).collect();
            let text = format!(
                "{} of {} approved as baselines by {who}; not approved: {}",
                done.approved,
                done.runs,
                skipped.join(", ")
            );
            (":warning:", super::message::truncate(&text, 2_500))
        }
        Err(e) => (":warning:", format!("Could not approve: {e}")),
    }
}

/// The *Mute 24 h* button: the monitor's alerts stop for a day; what to tell the user.
async fn mute(reviewer: &Reviewer, monitor: &str, by: &str) -> String {
    let Ok(name) = monitor.parse::<crate::config::MonitorName>() else {
        return "Could not mute: the button carries no monitor".into();
    };
    match reviewer.store.monitor_config(&name).await {
        Ok(Some(_)) => {}
        Ok(None) => return format!("Could not mute: there is no monitor {monitor} any more"),
        Err(_) => return "Could not mute: the database did not answer; try again".into(),
    }
    let now = crate::time::Timestamp::now();
    // A longer mute in force stays (a day's click does not cut a week's mute short).
    if let Ok(Some(longer)) = reviewer.store.mute_of(&name, now.plus(MUTE_FOR)).await {
        let by = super::message::escape(&longer.muted_by);
        return format!(":mute: {monitor} is muted already, until {} (UTC), by {by}", longer.until);
    }
    let mute = crate::store::Mute {
        monitor: name,
        until: now.plus(MUTE_FOR),
        muted_by: by.to_owned(),
        created_at: now,
    };
    match reviewer.store.mute(&mute).await {
        Ok(()) => {
            tracing::info!(%monitor, until = %mute.until, %by, "monitor muted from Slack");
            format!(":mute: {monitor} is muted until {} (UTC); no alerts until then", mute.until)
        }
        Err(e) => {
            tracing::warn!(%monitor, error = ?e, "cannot mute from Slack");
            "Could not mute: the database did not take it; try again".into()
        }
    }
}

fn serde_urlencoded_payload(body: &str) -> Option<String> {
    url::form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "payload").map(|(_, v)| v.into_owned())
}

fn mention(user_id: Option<&str>, handle: &str) -> String {
    match user_id {
        Some(id) => format!("<@{id}>"),
        None => format!("@{handle}"),
    }
}

/// Rewrites the alert: its blocks without the buttons, plus a line saying who decided what.
async fn update_message(hooks: &SlackHooks, interaction: &Interaction, emoji: &str, text: &str) {
    let (Some(sender), Some(container)) = (&hooks.sender, &interaction.container) else { return };
    let (Some(channel), Some(ts)) = (&container.channel_id, &container.message_ts) else { return };
    let mut blocks: Vec<SlackBlock> = interaction
        .message
        .as_ref()
        .and_then(|m| serde_json::from_value(m["blocks"].clone()).ok())
        .unwrap_or_default();
    blocks.retain(|b| !matches!(b, SlackBlock::Actions(_)));
    blocks.push(
        SlackSectionBlock::new()
            .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(format!("{emoji} {text}"))))
            .into(),
    );
    let fallback = interaction.message.as_ref().and_then(|m| m["text"].as_str()).unwrap_or("vigil alert");
    let request = SlackApiChatUpdateRequest::new(
        SlackChannelId(channel.clone()),
        SlackMessageContent::new().with_text(format!("{fallback} — {text}")).with_blocks(blocks),
        SlackTs(ts.clone()),
    );
    if let Err(e) = sender.session().chat_update(&request).await {
        tracing::warn!(error = %e, "cannot update the Slack message; replying instead");
        reply(hooks, interaction, text).await;
    }
}

/// A message only the clicking user sees, through the interaction's `response_url`.
async fn reply(hooks: &SlackHooks, interaction: &Interaction, text: &str) {
    let Some(url) = &interaction.response_url else { return };
    let body = serde_json::json!({"response_type": "ephemeral", "replace_original": false, "text": text});
    if let Err(e) = hooks.http.post(url).json(&body).send().await {
        tracing::warn!(error = %e, "cannot answer through Slack's response_url");
    }
}
