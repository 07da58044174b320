//! Delivering webhooks from the outbox (DESIGN §5): each attempt is signed anew (fresh
//! timestamp, same `webhook-id`), has a timeout, does not follow redirects, and only 2xx counts.
//! 410 stops at once; 429/503 `Retry-After` is honoured; otherwise the next attempt follows the
//! schedule with ±20 % jitter, and after the last one the delivery is dead-lettered (kept,
//! listable, replayable).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Notify, watch};

use super::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SigningKey};
use crate::store::{Attempt, Delivery, Store};
use crate::time::Timestamp;

/// The longest `Retry-After` we wait for before giving the schedule the say again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

pub struct Deliverer {
    pub store: Arc<dyn Store>,
    pub key: SigningKey,
    pub client: reqwest::Client,
    /// Delay before each attempt; its length is the number of attempts.
    pub schedule: Vec<Duration>,
    pub timeout: Duration,
    pub ready: Arc<Notify>,
    pub outcomes: Family<Vec<(String, String)>, Counter>,
}

/// A client for webhooks: no redirects, per-attempt timeout.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a TLS provider is installed at start")
}

/// `base` ± 20 %.
pub fn jitter(base: Duration) -> Duration {
    let factor: f64 = rand::random_range(0.8..=1.2);
    base.mul_f64(factor)
}

/// What to do after attempt number `attempts` (1-based) got `status`.
pub fn next_step(
    schedule: &[Duration],
    attempts: usize,
    status: Option<u16>,
    retry_after: Option<Duration>,
) -> Step {
    match status {
        Some(s) if (200..300).contains(&s) => return Step::Done,
        Some(410) => return Step::Dead,
        _ => {}
    }
    if attempts >= schedule.len() {
        return Step::Dead;
    }
    let planned = jitter(schedule[attempts]);
    match (status, retry_after) {
        (Some(429 | 503), Some(after)) => Step::RetryIn(after.min(MAX_RETRY_AFTER)),
        _ => Step::RetryIn(planned),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Done,
    RetryIn(Duration),
    Dead,
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Deliverer {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // The attempt is bounded by the client's timeout; the rest is recording it.
        let lease = self.timeout + self.timeout.min(Duration::from_secs(30));
        loop {
            if *stop.borrow() {
                return;
            }
            match self.store.claim_delivery(Timestamp::now(), lease).await {
                Ok(Some(d)) => self.attempt(d).await,
                Ok(None) => {
                    tokio::select! {
                        _ = self.ready.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "cannot read the webhook outbox; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    async fn attempt(&self, d: Delivery) {
        let ts = Timestamp::now().millis() / 1000;
        let signature = self.key.sign(d.id.as_str(), ts, d.payload.as_bytes());
        let sent = self
            .client
            .post(&d.url)
            .header(HEADER_ID, d.id.as_str())
            .header(HEADER_TIMESTAMP, ts.to_string())
            .header(HEADER_SIGNATURE, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(d.payload.clone())
            .send()
            .await;
        let (status, after, error) = match &sent {
            Ok(r) => (Some(r.status().as_u16()), retry_after(r.headers()), format!("HTTP {}", r.status())),
            Err(e) if e.is_timeout() => (None, None, "timed out".to_owned()),
            Err(e) => (None, None, format!("request failed: {}", error_chain(e))),
        };
        let attempts = d.attempts as usize + 1;
        let step = next_step(&self.schedule, attempts, status, after);
        let now = Timestamp::now();
        let code = status.map(i32::from);
        let (attempt, outcome) = match step {
            Step::Done => (Attempt::Sent { status: code, reference: None }, "delivered"),
            Step::RetryIn(wait) => {
                (Attempt::Retry { at: now.plus(wait), status: code, error: error.clone() }, "retry")
            }
            Step::Dead => (Attempt::Dead { status: code, error: error.clone() }, "dead"),
        };
        match step {
            Step::Done => tracing::info!(delivery = %d.id, job = %d.job_id, attempts, "webhook delivered"),
            Step::RetryIn(wait) => {
                tracing::info!(delivery = %d.id, attempts, %error, retry_in = ?wait, "webhook not accepted; will retry")
            }
            Step::Dead => {
                tracing::warn!(delivery = %d.id, attempts, %error, "webhook dead-lettered (vigil deliveries replay)")
            }
        }
        self.outcomes.get_or_create(&vec![("outcome".into(), outcome.into())]).inc();
        if let Err(e) = self.store.record_delivery_attempt(&d.id, &attempt, now).await {
            // The lease runs out and the delivery is attempted again: at least once, never lost.
            tracing::error!(error = ?e, delivery = %d.id, "cannot record the delivery attempt");
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let d = jitter(secs(100));
            assert!(d >= secs(80) && d <= secs(120));
        }
    }
}
