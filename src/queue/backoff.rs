//! Retry timing shared by the queues: jitter, exponential backoff with a cap (loop failures,
//! capture job retries, tick recording), and outbox schedules (a list of delays, `Retry-After`
//! honoured) that end dead-lettered. Pure: no clock, no I/O.

use std::time::Duration;

/// The longest `Retry-After` a schedule waits for before giving the schedule the say again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

/// `base` ± 20 %.
pub fn jitter(base: Duration) -> Duration {
    let factor: f64 = rand::random_range(0.8..=1.2);
    base.mul_f64(factor)
}

/// Doubling delays from `first`, capped at `max`: `first`, 2×`first`, 4×`first`, … `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exponential {
    pub first: Duration,
    pub max: Duration,
}

impl Exponential {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The delay after `failures` consecutive failures (1 = the first failure).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// What to do after an attempt of an outbox item (a webhook delivery, an alert).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Done,
    RetryIn(Duration),
    /// Out of attempts, or refused for good: dead-lettered, kept and replayable.
    Dead,
}

/// The next step after attempt number `attempts` (1-based) that did not succeed, on a schedule
/// of delays (its length is the number of attempts; each delay gets ±20 % jitter). A
/// `retry_after` the peer asked for lengthens the planned delay (up to [`MAX_RETRY_AFTER`]) but
/// never shortens it: a peer answering `Retry-After: 3` to every attempt would otherwise use up
/// a schedule meant to span hours in seconds.
pub fn on_schedule(schedule: &[Duration], attempts: usize, retry_after: Option<Duration>) -> Step {
    if attempts >= schedule.len() {
        return Step::Dead;
    }
    let planned = jitter(schedule[attempts]);
    match retry_after {
        Some(after) => Step::RetryIn(after.min(MAX_RETRY_AFTER).max(planned)),
        None => Step::RetryIn(planned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn exponential_doubles_up_to_its_cap() {
        let b = Exponential::new(secs(2), secs(300));
        let delays: Vec<u64> = (1..=10).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(b.delay(0), secs(2), "no failure yet counts as the first");
        assert_eq!(b.delay(u32::MAX), secs(300), "no overflow");
    }

    #[test]
    fn schedules_end_dead_and_honour_retry_after() {
        let schedule = [Duration::ZERO, secs(5), secs(300)];
        let Step::RetryIn(d) = on_schedule(&schedule, 1, None) else { panic!() };
        assert!((secs(4)..=secs(6)).contains(&d), "{d:?}");
        assert_eq!(on_schedule(&schedule, 1, Some(secs(60))), Step::RetryIn(secs(60)));
        assert_eq!(on_schedule(&schedule, 1, Some(secs(86_400))), Step::RetryIn(MAX_RETRY_AFTER));
        // A shorter Retry-After does not cut the schedule short: its span is kept.
        let Step::RetryIn(d) = on_schedule(&schedule, 2, Some(secs(3))) else { panic!() };
        assert!(d >= secs(240), "{d:?}");
        assert_eq!(on_schedule(&schedule, 3, None), Step::Dead);
        assert_eq!(on_schedule(&schedule, 3, Some(secs(1))), Step::Dead, "no attempts left");
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let d = jitter(secs(100));
            assert!(d >= secs(80) && d <= secs(120), "{d:?}");
        }
    }
}
