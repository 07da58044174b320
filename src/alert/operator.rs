//! Notices for the operator about vigil itself (its disk is full, and recovered), as opposed to
//! the alerts about monitored pages. They do not go through the `alerts` outbox: the reason for
//! one may be that nothing can be written. Each is logged by its sender and posted to the Slack
//! channel in order, tried a bounded number of times with backoff, then given up (it is in the
//! log).

use std::sync::Arc;
use std::time::Duration;

use slack_morphism::prelude::*;
use tokio::sync::{mpsc, watch};

use super::SlackSender;
use crate::queue::backoff::Exponential;

/// Notices waiting to be posted before new ones are dropped (and only logged).
pub const BACKLOG: usize = 16;
/// Attempts at posting one notice: 1 s, 2 s, 4 s … 60 s apart (about 3 minutes).
const ATTEMPTS: u32 = 8;
const RETRY: Exponential = Exponential::new(Duration::from_secs(1), Duration::from_secs(60));

/// Posts the notices of `rx` to Slack until `stop` (or every sender is gone). Without Slack,
/// notices are only in the log, where their senders wrote them.
pub async fn run(
    mut rx: mpsc::Receiver<String>,
    slack: Option<Arc<SlackSender>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let text = tokio::select! {
            t = rx.recv() => match t { Some(t) => t, None => return },
            _ = stop.changed() => return,
        };
        let Some(slack) = &slack else { continue };
        for attempt in 1..=ATTEMPTS {
            match post(slack, &text).await {
                Ok(()) => break,
                Err(e) if attempt < ATTEMPTS => {
                    let wait = RETRY.delay(attempt);
                    tracing::warn!(error = %e, retry_in = ?wait, "cannot post an operator notice to Slack; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, notice = %text, "cannot post an operator notice to Slack; given up")
                }
            }
        }
    }
}

/// Slack's limit on a section's text.
const SECTION_MAX: usize = 3000;

async fn post(slack: &SlackSender, text: &str) -> Result<(), String> {
    let mut text = super::message::escape(text);
    if text.len() > SECTION_MAX {
        let mut cut = SECTION_MAX - 1;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    let section = SlackSectionBlock::new().with_text(md!("{}", text));
    let content = SlackMessageContent::new().with_text(text).with_blocks(slack_blocks![some_into(section)]);
    let request = SlackApiChatPostMessageRequest::new(SlackChannelId(slack.default_channel.clone()), content)
        .with_unfurl_links(false)
        .with_unfurl_media(false);
    let session = slack.session();
    let call = session.chat_post_message(&request);
    match tokio::time::timeout(slack.timeout, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {:?}", slack.timeout)),
    }
}
