//! The one shape of vigil's background work: a loop that claims the next due item, works on it
//! and records the outcome, then claims again; when there is nothing to do it waits for a
//! wake-up (a [`Notify`] the producer pokes) or its poll interval, and after a failure it backs
//! off exponentially instead of trying again at once. It stops when shutdown is signalled,
//! finishing the item in hand.
//!
//! Capture workers, webhook delivery, the processor, alerts, the reconciler and retention all
//! run through [`run`]; what differs is what they claim and how they record. The durable
//! state (leases, attempt counts, next-attempt times, dead letters) lives in each queue's table,
//! and the delays in [`backoff`].

pub mod backoff;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use backoff::Exponential;

/// Why a claim or a piece of work could not be done (logged; the loop backs off).
pub type WorkError = Box<dyn std::error::Error + Send + Sync>;

/// What the loop does after a piece of work that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Claim again at once: there may be more.
    Continue,
    /// Wait for a wake-up or the poll interval (periodic passes).
    Wait,
}

/// One background queue: what to claim and how to work on it.
#[async_trait]
pub trait QueueWorker: Send + Sync + 'static {
    type Item: Send;

    /// Names the loop in logs.
    const NAME: &'static str;

    /// Takes the next due item (leased, where the queue has leases), or `None` when idle.
    async fn claim(&self) -> Result<Option<Self::Item>, WorkError>;

    /// Works on the item and records the outcome. An error means it could not be recorded or
    /// must be tried again: the item stays due (or comes back when its lease ends).
    async fn work(&self, item: Self::Item) -> Result<Next, WorkError>;

    /// Housekeeping when the queue is empty, before waiting.
    async fn idle(&self) {}
}

/// How a loop waits.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// How long an idle loop waits before it looks again without a wake-up.
    pub poll: Duration,
    /// The delay after consecutive failures (of a claim or of the work).
    pub backoff: Exponential,
}

impl Pacing {
    pub const fn new(poll: Duration, backoff: Exponential) -> Self {
        Self { poll, backoff }
    }
}

/// Runs `worker` until `stop` turns true. `wake` ends a wait early (new work was queued).
pub async fn run<W: QueueWorker>(
    worker: W,
    pacing: Pacing,
    wake: Option<Arc<Notify>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match worker.claim().await {
            Ok(Some(item)) => match worker.work(item).await {
                Ok(Next::Continue) => {
                    failures = 0;
                    continue;
                }
                Ok(Next::Wait) => {
                    failures = 0;
                    pacing.poll
                }
                Err(e) => back_off::<W>(&mut failures, pacing, "work failed", &*e),
            },
            Ok(None) => {
                failures = 0;
                worker.idle().await;
                pacing.poll
            }
            Err(e) => back_off::<W>(&mut failures, pacing, "cannot claim work", &*e),
        };
        let woken = async {
            match &wake {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

fn back_off<W: QueueWorker>(
    failures: &mut u32,
    pacing: Pacing,
    what: &str,
    error: &(dyn std::error::Error + Send + Sync),
) -> Duration {
    *failures = failures.saturating_add(1);
    let wait = pacing.backoff.delay(*failures);
    tracing::warn!(queue = W::NAME, error = %crate::http::client::error_chain(error), failures = *failures, retry_in = ?wait, "{what}; backing off");
    wait
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Fails its first `fail` claims, then hands out `items` one by one.
    struct Script {
        fail: Mutex<u32>,
        items: Mutex<Vec<u32>>,
        done: Mutex<Vec<u32>>,
        claims: Mutex<u32>,
    }

    #[async_trait]
    impl QueueWorker for Script {
        type Item = u32;
        const NAME: &'static str = "test";

        async fn claim(&self) -> Result<Option<u32>, WorkError> {
            *self.claims.lock().unwrap() += 1;
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err("database unavailable".into());
            }
            Ok(self.items.lock().unwrap().pop())
        }

        async fn work(&self, item: u32) -> Result<Next, WorkError> {
            self.done.lock().unwrap().push(item);
            Ok(Next::Continue)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_then_work_drains_and_stop_ends_the_loop() {
        let script = Arc::new(Script {
            fail: Mutex::new(3),
            items: Mutex::new(vec![3, 2, 1]),
            done: Mutex::new(Vec::new()),
            claims: Mutex::new(0),
        });
        let (stop_tx, stop) = watch::channel(false);
        let pacing = Pacing::new(
            Duration::from_secs(10),
            Exponential::new(Duration::from_secs(1), Duration::from_secs(60)),
        );
        let started = tokio::time::Instant::now();
        let handle = tokio::spawn(run(Shared(script.clone()), pacing, None, stop));
        // Three failures wait 1 + 2 + 4 s; then the three items go at once and the loop idles.
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(*script.done.lock().unwrap(), [1, 2, 3]);
        assert_eq!(*script.claims.lock().unwrap(), 3 + 4, "no claim between the backoff delays");
        assert!(started.elapsed() >= Duration::from_secs(7));
        stop_tx.send(true).unwrap();
        handle.await.unwrap();
    }

    struct Shared(Arc<Script>);

    #[async_trait]
    impl QueueWorker for Shared {
        type Item = u32;
        const NAME: &'static str = "test";

        async fn claim(&self) -> Result<Option<u32>, WorkError> {
            self.0.claim().await
        }

        async fn work(&self, item: u32) -> Result<Next, WorkError> {
            self.0.work(item).await
        }
    }
}
