//! Delivering the outbox (docs/architecture.md §5, §7): capture results and events for `alerts:`
//! destinations. A webhook attempt is signed anew (fresh timestamp, same `webhook-id`; a
//! Discord or Teams message is not signed, an email is sent over SMTP), has a timeout, does not
//! follow redirects, and only 2xx counts.
//! 410 stops at once; 429/503 `Retry-After` is honoured; otherwise the next attempt follows the
//! schedule with ±20 % jitter, and after the last one the delivery is dead-lettered (kept,
//! listable, replayable).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::Mutex;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::alert::email::{MailError, Mailer};
use crate::queue::backoff::{self, Exponential, Step};
use crate::queue::{self, Next, Pacing, QueueWorker, WorkError};
use crate::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SigningKey};
use crate::store::{Attempt, Delivery, Store, StoreError};
use crate::time::Timestamp;

pub struct Deliverer {
    pub store: Arc<dyn Store>,
    /// Signs capture results.
    pub key: SigningKey,
    /// Sends events, by `alerts:` destination.
    pub senders: HashMap<String, Sender>,
    /// The `sender`s of the rows this process claims: `""` (capture results) in the capture
    /// role, and the names in `senders` where the roles judge or approve.
    pub claims: Vec<String>,
    /// For the diff image an email carries.
    pub blobs: crate::store::blobs::BlobStore,
    /// For capture results: URLs a client gave, through the address policy.
    pub client: crate::capture::egress::GuardedClient,
    /// For events: URLs the operator configured, reached wherever they are (like Slack's).
    pub operator: reqwest::Client,
    /// Delay before each attempt; its length is the number of attempts.
    pub schedule: Vec<Duration>,
    pub timeout: Duration,
    pub ready: Arc<Notify>,
    pub outcomes: Family<Vec<(String, String)>, Counter>,
    /// Deliveries in flight at once (`webhook.max_in_flight`).
    pub max_in_flight: usize,
}

/// How the events of one `alerts:` destination are sent.
pub enum Sender {
    /// POSTed to `url`, signed with `key`.
    Webhook {
        key: SigningKey,
        url: String,
    },
    /// POSTed to `url` as rendered for a chat service (Discord, Teams), unsigned: their
    /// incoming webhooks verify nothing, the secret is in the URL.
    Chat {
        url: String,
    },
    Email(Box<Mailer>),
}

/// The delivery loop: one claimer (one poll of the outbox, however many are in flight), each
/// claimed delivery sent in a task of its own while a slot is free. The claim skips an origin
/// that already has a delivery in flight, so one slow receiver holds one slot, never all of
/// them.
struct Deliveries {
    deliverer: Arc<Deliverer>,
    slots: Arc<Semaphore>,
    in_flight: Arc<Mutex<JoinSet<()>>>,
}

/// What to do after attempt number `attempts` (1-based) got `status`: only 2xx succeeds, 410
/// stops at once, 429 and 503 honour `Retry-After`, anything else follows the schedule.
pub fn next_step(
    schedule: &[Duration],
    attempts: usize,
    status: Option<u16>,
    retry_after: Option<Duration>,
) -> Step {
    match status {
        Some(s) if (200..300).contains(&s) => Step::Done,
        Some(410) => Step::Dead,
        Some(429 | 503) => backoff::on_schedule(schedule, attempts, retry_after),
        _ => backoff::on_schedule(schedule, attempts, None),
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Beyond the schedule's longest wait (with its jitter), how long an event row no process here
/// can send waits before it is dead-lettered as an orphan.
const ORPHAN_MARGIN: Duration = Duration::from_secs(3600);

/// When the outbox cannot be read or an attempt cannot be recorded: 1 s, 2 s, 4 s … 30 s.
const TROUBLE: Exponential = Exponential::new(Duration::from_secs(1), Duration::from_secs(30));

impl Deliverer {
    /// Runs until `stop`: claims due deliveries while a slot is free, wakes when one is queued
    /// or a slot frees; then lets the attempts in flight finish.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let wake = self.ready.clone();
        let in_flight = Arc::new(Mutex::new(JoinSet::new()));
        let deliveries = Deliveries {
            slots: Arc::new(Semaphore::new(self.max_in_flight.max(1))),
            deliverer: Arc::new(self),
            in_flight: in_flight.clone(),
        };
        queue::run(deliveries, Pacing::new(Duration::from_millis(500), TROUBLE), Some(wake), stop).await;
        let mut in_flight = std::mem::take(&mut *in_flight.lock().expect("not poisoned"));
        while in_flight.join_next().await.is_some() {}
    }
}

#[async_trait::async_trait]
impl QueueWorker for Deliveries {
    type Item = (Delivery, OwnedSemaphorePermit);
    const NAME: &'static str = "webhook_delivery";

    async fn claim(&self) -> Result<Option<Self::Item>, WorkError> {
        // Every slot busy: wait; a finishing attempt wakes the loop.
        let Ok(slot) = self.slots.clone().try_acquire_owned() else { return Ok(None) };
        // The attempt is bounded by the client's timeout; the rest is recording it.
        let timeout = self.deliverer.timeout;
        let lease = timeout + timeout.min(Duration::from_secs(30));
        let now = Timestamp::now();
        // Untouched for longer than the schedule's longest wait: no process can send it.
        let longest =
            self.deliverer.schedule.iter().max().copied().unwrap_or_default().max(backoff::MAX_RETRY_AFTER);
        let orphaned_before =
            Timestamp::from_millis(now.millis() - (longest.mul_f64(1.2) + ORPHAN_MARGIN).as_millis() as i64);
        let claims = &self.deliverer.claims;
        let claimed = self.deliverer.store.claim_delivery(now, lease, claims, orphaned_before).await?;
        Ok(claimed.map(|d| (d, slot)))
    }

    async fn work(&self, (d, slot): Self::Item) -> Result<Next, WorkError> {
        let deliverer = self.deliverer.clone();
        let mut in_flight = self.in_flight.lock().expect("not poisoned");
        while in_flight.try_join_next().is_some() {}
        in_flight.spawn(async move {
            // An attempt that cannot be recorded is logged; its lease runs out and it is
            // attempted again (at least once, never lost).
            let _ = deliverer.attempt(d).await;
            drop(slot);
            deliverer.ready.notify_one();
        });
        Ok(Next::Continue)
    }
}

impl Deliverer {
    /// POSTs a capture result or a webhook event: the HTTP status, `Retry-After`, and what
    /// happened in words.
    async fn post(&self, d: &Delivery) -> (Option<u16>, Option<Duration>, String) {
        let ts = Timestamp::now().millis() / 1000;
        let target = if d.sender.is_empty() {
            // The URL is a client's: resolved through the address policy at every attempt, so
            // a name that pointed elsewhere when the capture was accepted gets nothing now.
            self.client.for_url(&d.url).map(|c| (Some(&self.key), c)).map_err(|e| format!("refused: {e}"))
        } else {
            // An event, signed with its destination's secret, and only to the URL it was queued
            // for: a destination that now points elsewhere (a changed config, a replica that
            // defines the name differently) gets no message signed for another. Retried on the
            // schedule, then dead-lettered (replayable).
            match self.senders.get(&d.sender) {
                Some(Sender::Webhook { key, url }) if *url == d.url => Ok((Some(key), &self.operator)),
                Some(Sender::Chat { url }) if *url == d.url => Ok((None, &self.operator)),
                // (Not the URL: a chat service's URL is its secret.)
                Some(_) => Err(format!("destination \"{}\" now points elsewhere than when queued", d.sender)),
                None => Err(format!("no destination \"{}\" in alerts: here", d.sender)),
            }
        };
        match target {
            Err(e) => (None, None, e),
            Ok((key, client)) => {
                let mut request = client.post(&d.url);
                if let Some(key) = key {
                    request = request
                        .header(HEADER_ID, d.id.as_str())
                        .header(HEADER_TIMESTAMP, ts.to_string())
                        .header(HEADER_SIGNATURE, key.sign(d.id.as_str(), ts, d.payload.as_bytes()));
                }
                let sent = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(d.payload.clone())
                    .send()
                    .await;
                match &sent {
                    Ok(r) => {
                        (Some(r.status().as_u16()), retry_after(r.headers()), format!("HTTP {}", r.status()))
                    }
                    Err(e) if e.is_timeout() => (None, None, "timed out".to_owned()),
                    Err(e) => {
                        let text = crate::http::client::error_chain(e);
                        // An event's URL may carry a secret (Discord, Teams): kept out of the error.
                        let text = if d.sender.is_empty() {
                            text
                        } else {
                            text.replace(&d.url, "<the destination>")
                        };
                        (None, None, format!("request failed: {text}"))
                    }
                }
            }
        }
    }

    /// The diff image of the run an event is about, for an email; none when the event has
    /// none or it cannot be read (the message goes without it).
    async fn diff_image(&self, d: &Delivery) -> Option<Vec<u8>> {
        let event: serde_json::Value = serde_json::from_str(&d.payload).ok()?;
        event["data"]["images"].as_object()?;
        let run = self.store.get_run(&d.subject.parse().ok()?).await.ok()??;
        match self.blobs.get(run.diff_sha256.as_deref()?).await {
            Ok(png) => Some(png),
            Err(e) => {
                tracing::warn!(delivery = %d.id, error = %e, "the diff image cannot be read; mailed without it");
                None
            }
        }
    }

    async fn attempt(&self, d: Delivery) -> Result<(), StoreError> {
        let attempts = d.attempts as usize + 1;
        let (step, code, error) = match self.senders.get(&d.sender) {
            // Claimed as an orphan: its destination is in no config that claimed it for hours.
            None if !d.sender.is_empty() => {
                (Step::Dead, None, format!("no process has the destination \"{}\" any more", d.sender))
            }
            Some(Sender::Email(mailer)) if mailer.address() == d.url => {
                // The image read counts against the same bound, which the lease covers.
                let send = async { mailer.send(&d.payload, self.diff_image(&d).await).await };
                let sent = tokio::time::timeout(self.timeout, send).await;
                match sent.unwrap_or_else(|_| Err(MailError::Retry("timed out".into()))) {
                    Ok(()) => (Step::Done, None, String::new()),
                    Err(MailError::Fatal(e)) => (Step::Dead, None, e),
                    Err(MailError::Retry(e)) => {
                        (backoff::on_schedule(&self.schedule, attempts, None), None, e)
                    }
                }
            }
            _ => {
                let (status, after, error) = self.post(&d).await;
                (next_step(&self.schedule, attempts, status, after), status.map(i32::from), error)
            }
        };
        let now = Timestamp::now();
        let (attempt, outcome) = match step {
            Step::Done => (Attempt::Sent { status: code, reference: None }, "delivered"),
            Step::RetryIn(wait) => {
                (Attempt::Retry { at: now.plus(wait), status: code, error: error.clone() }, "retry")
            }
            Step::Dead => (Attempt::Dead { status: code, error: error.clone() }, "dead"),
        };
        match step {
            Step::Done => {
                tracing::info!(delivery = %d.id, about = %d.subject, sender = %d.sender, attempts, "delivered")
            }
            Step::RetryIn(wait) => {
                tracing::info!(delivery = %d.id, sender = %d.sender, attempts, %error, retry_in = ?wait, "delivery not accepted; will retry")
            }
            Step::Dead => {
                tracing::warn!(delivery = %d.id, sender = %d.sender, attempts, %error, "delivery dead-lettered (vigil deliveries replay)")
            }
        }
        self.outcomes.get_or_create(&vec![("outcome".into(), outcome.into())]).inc();
        if let Err(e) = self.store.record_delivery_attempt(&d.id, &attempt, now).await {
            // The lease runs out and the delivery is attempted again: at least once, never lost.
            tracing::error!(error = ?e, delivery = %d.id, "cannot record the delivery attempt");
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::backoff::MAX_RETRY_AFTER;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn steps_follow_the_schedule() {
        let schedule = crate::config::DEFAULT_RETRY_SCHEDULE.to_vec();
        assert_eq!(next_step(&schedule, 1, Some(200), None), Step::Done);
        assert_eq!(next_step(&schedule, 1, Some(204), None), Step::Done);
        assert_eq!(next_step(&schedule, 1, Some(410), None), Step::Dead);
        // Redirects are not followed and do not count as success.
        let Step::RetryIn(d) = next_step(&schedule, 1, Some(302), None) else { panic!() };
        assert!(d >= secs(4) && d <= secs(6), "{d:?}");
        let Step::RetryIn(d) = next_step(&schedule, 2, None, None) else { panic!() };
        assert!(d >= secs(240) && d <= secs(360), "{d:?}");
        assert_eq!(next_step(&schedule, 8, Some(500), None), Step::Dead);
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503() {
        let schedule = vec![Duration::ZERO, secs(5), secs(300)];
        assert_eq!(next_step(&schedule, 1, Some(429), Some(secs(120))), Step::RetryIn(secs(120)));
        assert_eq!(next_step(&schedule, 1, Some(503), Some(secs(60))), Step::RetryIn(secs(60)));
        // Only for those statuses.
        let Step::RetryIn(d) = next_step(&schedule, 1, Some(500), Some(secs(120))) else { panic!() };
        assert!(d <= secs(6));
        // Capped.
        assert_eq!(next_step(&schedule, 1, Some(429), Some(secs(86_400))), Step::RetryIn(MAX_RETRY_AFTER));
    }
}
