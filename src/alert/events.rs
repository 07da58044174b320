//! Events for the `alerts:` destinations (docs/architecture.md §7): a run's alert, or an approval, as a
//! message for each destination the monitor routes to and that takes the event — a Standard
//! Webhooks body, an email, or a Discord or Teams message. They go through the webhook outbox (webhooks signed per attempt with the destination's secret,
//! retried on the schedule, dead-lettered, replayable) and are queued in the same transaction as
//! the verdict's alert or the approval, so none is lost to a crash.
//!
//! A message's id is derived from what it is about (run, event, destination): queuing it again
//! after a crash adds nothing, and the receiver sees one `webhook-id` for every retry.

use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::group::GroupMember;
use super::{AlertPayload, chat};
use crate::config::{AlertDestination, EventType, LiveMonitors, SLACK_DESTINATION, Target};
use crate::ids::MessageId;
use crate::review::ApprovalEvents;
use crate::store::{AlertKind, NewBaseline, NewDelivery, Run};
use crate::time::Timestamp;

/// The event a run alert stands for.
pub fn event_type(kind: AlertKind) -> EventType {
    match kind {
        AlertKind::Changed => EventType::RunChanged,
        AlertKind::Failed => EventType::RunFailed,
        AlertKind::Recovered => EventType::RunRecovered,
        AlertKind::Unstable => EventType::RunUnstable,
    }
}

/// Builds events for the destinations in force, routed by the monitors in force.
#[derive(Clone)]
pub struct Events {
    destinations: Arc<[AlertDestination]>,
    pub(super) monitors: LiveMonitors,
    public_url: url::Url,
}

impl Events {
    pub fn new(destinations: &[AlertDestination], monitors: LiveMonitors, public_url: url::Url) -> Self {
        Self { destinations: destinations.into(), monitors, public_url }
    }

    /// The messages of a run's alert.
    pub fn for_alert(&self, payload: &AlertPayload, now: Timestamp) -> Vec<NewDelivery> {
        let event = event_type(payload.kind);
        let data = run_data(payload, &self.public_url);
        self.deliveries(&payload.monitor, &payload.run_id, event, &payload.run_id, data, now)
    }

    /// The messages of a group of alerts of the same change (the first one's message stands for
    /// them all): one per destination that takes the event and that any of their monitors
    /// routes to, about the first run routed there, its `runs` listing every run routed there.
    /// A group of one gives what [`Events::for_alert`] gives.
    pub fn for_group(&self, group: &[AlertPayload], now: Timestamp) -> Vec<NewDelivery> {
        let Some(first) = group.first() else { return Vec::new() };
        let event = event_type(first.kind);
        let routes: Vec<Vec<String>> = group
            .iter()
            .map(|p| self.monitors.find_str(&p.monitor).map(|m| m.alerts).unwrap_or_default())
            .collect();
        let mut out = Vec::new();
        for d in self.destinations.iter().filter(|d| d.events.contains(&event)) {
            let routed: Vec<&AlertPayload> =
                group.iter().zip(&routes).filter(|(_, r)| r.contains(&d.name)).map(|(p, _)| p).collect();
            let Some(primary) = routed.first() else { continue };
            // Its summary tells of the group, as the Slack message does.
            let mut told = (*primary).clone();
            told.group = Some(routed.iter().map(|p| GroupMember::of(p)).collect());
            let mut data = run_data(&told, &self.public_url);
            data["runs"] = routed.iter().map(|p| run_ref(p)).collect();
            let body = json!({"type": event.as_str(), "timestamp": now, "data": data});
            out.push(self.delivery(d, event, &primary.run_id, &primary.run_id, &body, now));
        }
        out
    }

    fn deliveries(
        &self,
        monitor: &str,
        subject: &str,
        event: EventType,
        key: &str,
        data: Value,
        now: Timestamp,
    ) -> Vec<NewDelivery> {
        let Some(routes) = self.monitors.find_str(monitor).map(|m| m.alerts) else { return Vec::new() };
        for name in routes.iter().filter(|r| *r != SLACK_DESTINATION) {
            if !self.destinations.iter().any(|d| &d.name == name) {
                // Monitors reload live; the alerts: section only at a restart.
                tracing::warn!(%monitor, destination = %name, "no such destination in force; restart to apply alerts: changes");
            }
        }
        let event_body = json!({"type": event.as_str(), "timestamp": now, "data": data});
        self.destinations
            .iter()
            .filter(|d| routes.contains(&d.name) && d.events.contains(&event))
            .map(|d| self.delivery(d, event, subject, key, &event_body, now))
            .collect()
    }

    /// One destination's message of an event; its id derived from (event, `key`, destination).
    fn delivery(
        &self,
        d: &AlertDestination,
        event: EventType,
        subject: &str,
        key: &str,
        event_body: &Value,
        now: Timestamp,
    ) -> NewDelivery {
        // Chat services get their own format, rendered now and sent as it is.
        let (url, payload) = match &d.target {
            Target::Webhook { url, .. } => (url.to_string(), event_body.to_string()),
            Target::Email(mail) => (mail.address(), event_body.to_string()),
            Target::Discord(url) => (url.to_string(), chat::discord(event_body).to_string()),
            Target::Teams(url) => (url.to_string(), chat::teams(event_body).to_string()),
        };
        NewDelivery {
            id: message_id(&[event.as_str(), key, &d.name]),
            subject: subject.to_owned(),
            url,
            sender: d.name.clone(),
            payload,
            now,
        }
    }
}

impl ApprovalEvents for Events {
    /// The messages of an approval: `run`'s capture became the baseline.
    fn for_approval(&self, run: &Run, baseline: &NewBaseline) -> Vec<NewDelivery> {
        let review_url = self.public_url.join(&format!("runs/{}", run.id)).expect("valid").to_string();
        let data = json!({
            "run_id": run.id,
            "monitor": run.monitor,
            "viewport": run.viewport,
            "sha256": baseline.sha256,
            "approved_by": baseline.approved_by,
            "source": baseline.source,
            "review_url": review_url,
        });
        // One approval of a run per moment: approving it again after a revert is a new event.
        let key = format!("{}@{}", run.id, baseline.now.millis());
        self.deliveries(
            run.monitor.as_str(),
            run.id.as_str(),
            EventType::BaselineApproved,
            &key,
            data,
            baseline.now,
        )
    }
}

/// The `data` of a run event: what the alert says, as JSON.
fn run_data(p: &AlertPayload, public_url: &url::Url) -> Value {
    let image = |name: &str| {
        public_url.join(&format!("api/runs/{}/{name}.png", p.run_id)).expect("valid").to_string()
    };
    // The images the run has (a size change may have no diff image).
    let mut images = serde_json::Map::new();
    // (A failed run's picture of its page, `-failed.png` in Slack, is its `current.png`.)
    for (name, file) in
        [("baseline", "baseline"), ("current", "current"), ("current", "failed"), ("diff", "diff")]
    {
        if p.images.iter().any(|i| i.filename.ends_with(&format!("-{file}.png"))) {
            images.insert(name.into(), image(name).into());
        }
    }
    let images = if images.is_empty() { Value::Null } else { Value::Object(images) };
    let error = p.error.as_deref().map(capture_error);
    json!({
        "run_id": p.run_id,
        "monitor": p.monitor,
        "url": p.url,
        "viewport": p.viewport,
        "summary": p.summary(),
        "headline": p.headline,
        "text_changes": p.changes,
        "diff_pixels": p.diff_pixels,
        "diff_ratio": p.diff_ratio,
        "size_changed": p.size_changed,
        "pages": p.pages,
        "regions": p.regions,
        "clipped": p.clipped,
        "unstable_runs": p.unstable_runs,
        "error": error,
        "review_url": p.review_url,
        "images": images,
        "runs": [run_ref(p)],
    })
}

/// A run in an event's `runs`: every run the event stands for (several for one change seen on
/// several pages in the same tick).
fn run_ref(p: &AlertPayload) -> Value {
    json!({
        "run_id": p.run_id,
        "monitor": p.monitor,
        "viewport": p.viewport,
        "url": p.url,
        "diff_ratio": p.diff_ratio,
        "review_url": p.review_url,
    })
}

/// A capture error as `{code, message, retryable}`, whatever shape the capture provider gave
/// it, its message cut to 2,000 characters.
fn capture_error(raw: &str) -> Value {
    let v: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
    let code = v["code"].as_str().unwrap_or("capture_failed");
    let message =
        v["message"].as_str().map_or_else(|| if v.is_object() { "" } else { raw }.to_owned(), str::to_owned);
    json!({
        "code": code.chars().take(100).collect::<String>(),
        "message": message.chars().take(2000).collect::<String>(),
        "retryable": v["retryable"].as_bool().unwrap_or(false),
    })
}

/// `msg_` and a ULID made of the first 16 bytes of the SHA-256 of `parts`.
fn message_id(parts: &[&str]) -> MessageId {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let bytes: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
    format!("msg_{}", ulid::Ulid::from_bytes(bytes)).parse().expect("a valid id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_errors_have_one_shape() {
        let given = capture_error(r#"{"code":"navigation_timeout","message":"took 30 s","retryable":true}"#);
        assert_eq!(given, json!({"code": "navigation_timeout", "message": "took 30 s", "retryable": true}));
        assert_eq!(capture_error(r#"{"code":"capture_failed"}"#)["message"], "");
        let text = capture_error("the provider said no");
        assert_eq!(
            (text["code"].as_str(), text["message"].as_str()),
            (Some("capture_failed"), Some("the provider said no"))
        );
        assert_eq!(
            capture_error(&format!("[{}]", "1,".repeat(3000) + "1"))["message"].as_str().unwrap().len(),
            2000
        );
    }

    #[test]
    fn message_ids_are_stable_valid_and_distinct() {
        let a = message_id(&["run.changed", "run_1", "ops"]);
        assert_eq!(a, message_id(&["run.changed", "run_1", "ops"]));
        assert_ne!(a, message_id(&["run.changed", "run_1", "dev"]));
        assert_ne!(a, message_id(&["run.changed", "run_1o", "ps"]), "parts are separated");
        assert!(a.as_str().parse::<MessageId>().is_ok());
    }
}
