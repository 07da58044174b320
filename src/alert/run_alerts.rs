//! Queuing the alerts a finished run calls for ([`alert_kind`]), wherever the run was finished:
//! the processor judging a capture, the reconciler failing a run past its deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::events::Events;
use super::{AlertPayload, alert_kind};
use crate::config::{LiveMonitors, QuietAction};
use crate::ids::AlertId;
use crate::store::{AlertKind, NewAlert, Run, Store, StoreError, Verdict};
use crate::time::Timestamp;

#[derive(Clone)]
pub struct RunAlerts {
    pub store: Arc<dyn Store>,
    /// The monitors in force, for the alert's text.
    pub monitors: LiveMonitors,
    /// `server.public_url`, for the review links in alerts.
    pub public_url: url::Url,
    /// Wakes the alerter when an alert is queued.
    pub ready: Arc<Notify>,
    /// The alert's events for the `alerts:` destinations.
    pub events: Events,
    /// Wakes the webhook deliverer when events are queued.
    pub deliveries: Arc<Notify>,
}

impl RunAlerts {
    /// Queues the alerts `run` calls for; queuing twice is a no-op (one per run and kind).
    pub async fn queue(&self, run: &Run) -> Result<(), StoreError> {
        let Some(alert) = self.alert_for(run).await? else { return Ok(()) };
        if self.store.enqueue_alert(&alert).await? {
            tracing::info!(run = %run.id, monitor = %run.monitor, kind = %alert.kind, events = alert.events.len(), "alert queued");
            self.ready.notify_one();
        }
        if !alert.events.is_empty() {
            self.deliveries.notify_one();
        }
        Ok(())
    }

    /// The alert a finished `run` calls for, if any, to be written with its verdict.
    pub async fn alert_for(&self, run: &Run) -> Result<Option<NewAlert>, StoreError> {
        let Some(verdict) = run.verdict else { return Ok(None) };
        let monitor = self.monitors.find(&run.monitor);
        let unstable_after = monitor.as_ref().map_or(3, |m| m.unstable_alert_after);
        let previous = match verdict {
            Verdict::Changed | Verdict::Approved | Verdict::Rejected | Verdict::Skipped => Vec::new(),
            // The streak of unsettled captures this one ends, up to the length that alerts.
            Verdict::Unstable => {
                let limit = i64::from(unstable_after);
                self.store.previous_verdicts(&run.monitor, &run.viewport, run.created_at, limit).await?
            }
            _ => self.store.previous_verdicts(&run.monitor, &run.viewport, run.created_at, 1).await?,
        };
        let Some(kind) = alert_kind(verdict, &previous, unstable_after) else { return Ok(None) };
        // Muted (API, CLI, Slack): nothing is sent, but a recovery (what ends an outage someone
        // may have opened on `run.failed`); the run stays in the review queue.
        let muted = match kind {
            AlertKind::Recovered => None,
            _ => self.store.mute_of(&run.monitor, Timestamp::now()).await?,
        };
        if let Some(mute) = muted {
            tracing::info!(run = %run.id, monitor = %run.monitor, %kind, until = %mute.until, by = %mute.muted_by, "monitor muted; no alert");
            return Ok(None);
        }
        let mut payload = AlertPayload::for_run(run, monitor.as_ref(), kind, &self.public_url);
        let now = Timestamp::now();
        // A quiet window (`quiet_hours:`): held to its end (and looked at again then), or
        // dropped as a mute drops (a recovery still goes: it closes what a failure opened).
        let quiet = monitor.as_ref().and_then(|m| m.quiet_at(now.to_datetime()));
        match quiet {
            Some((_, QuietAction::Skip)) if kind != AlertKind::Recovered => {
                tracing::info!(run = %run.id, monitor = %run.monitor, %kind, "quiet hours; alert skipped");
                return Ok(None);
            }
            Some((end, QuietAction::Hold)) => {
                tracing::info!(run = %run.id, monitor = %run.monitor, %kind, until = %end, "quiet hours; alert held");
                payload.hold_until = Some(Timestamp::from_datetime(end).millis());
            }
            _ => {}
        }
        // A session's failed sign-in alerts once (the first monitor's run to tell of it), not
        // once per monitor signing in through it, until a sign-in works again.
        let login_failed = run.error.as_deref().is_some_and(|e| {
            serde_json::from_str::<serde_json::Value>(e).is_ok_and(|v| v["code"] == "login_failed")
        });
        if kind == AlertKind::Failed
            && login_failed
            && let Some(session) = monitor.as_ref().and_then(|m| m.page.session.as_ref())
            && !self.store.note_login_failure(&session.store_key(), Timestamp::now()).await?
        {
            tracing::info!(run = %run.id, monitor = %run.monitor, session = %session.name, "the session's failed sign-in was alerted already");
            return Ok(None);
        }
        // Its events leave with it: due when it is.
        let due = payload.hold_until.map_or(now, Timestamp::from_millis);
        // A change that may be the same on other pages of its tick waits to go out with them;
        // its events are queued when its group is formed (`group`).
        let window = monitor.as_ref().map_or(Duration::ZERO, |m| m.group_window);
        // A held alert goes alone: grouped, another monitor's message would take it out at night.
        let grouped = !window.is_zero() && payload.hold_until.is_none();
        let fingerprint = grouped.then(|| super::group::fingerprint(&payload)).flatten();
        if fingerprint.is_some() {
            payload.group_until = Some(now.plus(window).millis());
        }
        Ok(Some(NewAlert {
            events: match fingerprint {
                Some(_) => Vec::new(),
                None => self.events.for_alert(&payload, due),
            },
            fingerprint,
            id: AlertId::new(),
            run_id: run.id.clone(),
            monitor: run.monitor.clone(),
            kind,
            payload: serde_json::to_string(&payload).expect("serialises"),
            now,
        }))
    }
}
