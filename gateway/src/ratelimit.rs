//! Per-credential rate limit (token bucket via `governor`), keyed by
//! [`crate::auth::Subject::limit_key`].

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::time::Duration;

/// A rate limit per credential, or none.
#[derive(Debug)]
pub struct RateLimit {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl RateLimit {
    /// `per_second` sustained with bursts of `burst`; `per_second == 0` disables it.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self { limiter }
    }

    /// `Ok` when `key` may make a request now; otherwise how long until it may.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&key.to_string())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets buckets that are full again, so the key set stays small.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Whole seconds for `Retry-After` (rounded up, at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_allowed_then_refused_per_key() {
        let rl = RateLimit::new(1, 3);
        for _ in 0..3 {
            assert!(rl.check("token:a").is_ok());
        }
        let wait = rl.check("token:a").expect_err("limited");
        assert!(wait <= Duration::from_secs(1));
        // Another credential has its own bucket.
        assert!(rl.check("token:b").is_ok());
    }

    #[test]
    fn zero_rate_disables_the_limit() {
        let rl = RateLimit::new(0, 0);
        for _ in 0..1000 {
            assert!(rl.check("k").is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
