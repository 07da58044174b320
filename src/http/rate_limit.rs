//! A token bucket per client address: `rate` requests a second, bursts of `2 × rate`. Pure
//! bookkeeping (the caller passes the time), so it is unit-tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked before idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            rate: f64::from(per_second),
            burst: 2.0 * f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// `per_second` (may be below one) with bursts of `burst`.
    pub fn with_burst(per_second: f64, burst: u32) -> Self {
        Self { rate: per_second, burst: f64::from(burst), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `addr`; `Err(wait)` says how long until one is available.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        self.bucket(addr, now, 1.0)
    }

    /// Whether `addr` has a token, without taking it: for limits that charge only failures
    /// (the sign-in form charges a wrong token, not a right one).
    pub fn peek(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        self.bucket(addr, now, 0.0)
    }

    /// Refills `addr`'s bucket to `now`; takes `cost` tokens if one is there.
    fn bucket(&self, addr: IpAddr, now: Instant, cost: f64) -> Result<(), Duration> {
        let addr = client_key(addr);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&addr) {
            // A full bucket refills in burst / rate seconds; older entries are full again anyway.
            let full_after = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full_after);
            if buckets.len() >= MAX_TRACKED {
                // Still full: a spray of fresh addresses. Start over rather than grow or scan on
                // every request; the cost is one fresh burst for everyone, memory stays bounded.
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(addr).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// One bucket per IPv4 address, and per /64 for IPv6 (one host usually holds a whole /64).
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(10).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(limiter.check(a, t0).is_ok());
        }
        let wait = limiter.check(a, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO, "{wait:?}");
        // A tenth of a second later, one more.
        assert!(limiter.check(a, t0 + Duration::from_millis(100)).is_ok());
        assert!(limiter.check(a, t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn one_address_does_not_use_up_another() {
        let limiter = RateLimiter::new(1).unwrap();
        let t0 = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(limiter.check(a, t0).is_ok() && limiter.check(a, t0).is_ok());
        assert!(limiter.check(a, t0).is_err());
        assert!(limiter.check(b, t0).is_ok());
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_memory_stays_bounded() {
        let limiter = RateLimiter::new(1).unwrap();
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert!(limiter.check(a, t0).is_ok() && limiter.check(b, t0).is_ok());
        assert!(limiter.check(a, t0).is_err(), "same /64, one bucket");
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let _ = limiter.check(IpAddr::V4(std::net::Ipv4Addr::from(i)), t0);
        }
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_TRACKED);
    }

    #[test]
    fn a_slow_rate_with_a_burst() {
        let limiter = RateLimiter::with_burst(0.2, 10);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..10).all(|_| limiter.check(a, t0).is_ok()));
        assert_eq!(limiter.check(a, t0).unwrap_err(), Duration::from_secs(5));
        assert!(limiter.check(a, t0 + Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn peeking_takes_nothing() {
        let limiter = RateLimiter::with_burst(0.2, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..10).all(|_| limiter.peek(a, t0).is_ok()));
        assert!(limiter.check(a, t0).is_ok() && limiter.check(a, t0).is_ok());
        assert_eq!(limiter.peek(a, t0).unwrap_err(), Duration::from_secs(5));
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(RateLimiter::new(0).is_none());
    }
}
