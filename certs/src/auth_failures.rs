//! Failed authentication limited per source address: after `max` failures from one
//! client address within `window`, that address gets 429 for the rest of the window,
//! before any token is looked at. Other addresses are not affected. IPv6 clients are
//! keyed by their /64 (one host usually holds a whole /64). Pure: time comes in as a
//! parameter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most source addresses remembered; past it, windows that are over are forgotten
/// first, then the oldest window goes.
const MAX_SOURCES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failed authentications per source address in fixed windows.
#[derive(Debug)]
pub struct AuthFailures {
    max: u32,
    window: Duration,
    sources: Mutex<HashMap<IpAddr, Window>>,
}

impl AuthFailures {
    /// At most `max` failures per `window` from one source; `max == 0` disables it.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window: window.max(Duration::from_millis(1)),
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when `source` may try to authenticate at `now`; otherwise how long until
    /// its window ends.
    pub fn check(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.max == 0 {
            return Ok(());
        }
        let sources = self.lock();
        match sources.get(&key(source)) {
            Some(w) if w.failures >= self.max => {
                let ends = w.started + self.window;
                if now < ends {
                    Err(ends - now)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts one failed authentication of `source` at `now`.
    pub fn record_failure(&self, source: IpAddr, now: Instant) {
        if self.max == 0 {
            return;
        }
        let mut sources = self.lock();
        if sources.len() >= MAX_SOURCES {
            Self::forget_over(&mut sources, self.window, now);
            if sources.len() >= MAX_SOURCES {
                if let Some(oldest) = sources
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| *k)
                {
                    sources.remove(&oldest);
                }
            }
        }
        let window = self.window;
        let w = sources.entry(key(source)).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.saturating_duration_since(w.started) >= window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// Forgets the windows that are over (call now and then: memory stays bounded by
    /// the sources of one window).
    pub fn forget_old(&self, now: Instant) {
        let mut sources = self.lock();
        Self::forget_over(&mut sources, self.window, now);
        sources.shrink_to_fit();
    }

    /// Source addresses remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no source is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn forget_over(sources: &mut HashMap<IpAddr, Window>, window: Duration, now: Instant) {
        sources.retain(|_, w| now.saturating_duration_since(w.started) < window);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        // The map holds counters only; a panic elsewhere leaves it usable.
        self.sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// IPv4 addresses as they are, IPv6 by their /64 (IPv4-mapped ones as IPv4).
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_source_is_refused_after_max_failures_until_its_window_ends() {
        let limiter = AuthFailures::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for i in 0..3 {
            assert_eq!(limiter.check(a, t0), Ok(()), "failure {i} is let through");
            limiter.record_failure(a, t0 + Duration::from_secs(i));
        }
        assert_eq!(
            limiter.check(a, t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn other_sources_are_not_affected() {
        let limiter = AuthFailures::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..5 {
            limiter.record_failure(ip("10.0.0.1"), t0);
        }
        assert!(limiter.check(ip("10.0.0.1"), t0).is_err());
        assert_eq!(limiter.check(ip("10.0.0.2"), t0), Ok(()));
        assert_eq!(limiter.check(ip("2001:db8::1"), t0), Ok(()));
    }

    #[test]
    fn failures_of_an_old_window_do_not_count() {
        let limiter = AuthFailures::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        limiter.record_failure(a, t0);
        limiter.record_failure(a, t0 + Duration::from_secs(11));
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(12)), Ok(()));
        limiter.record_failure(a, t0 + Duration::from_secs(12));
        assert!(limiter.check(a, t0 + Duration::from_secs(12)).is_err());
    }

    #[test]
    fn ipv6_sources_share_their_64_and_mapped_ipv4_is_ipv4() {
        let limiter = AuthFailures::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        limiter.record_failure(ip("2001:db8:1:2::1"), t0);
        limiter.record_failure(ip("2001:db8:1:2::ffff"), t0);
        assert!(limiter.check(ip("2001:db8:1:2::42"), t0).is_err());
        assert_eq!(limiter.check(ip("2001:db8:1:3::1"), t0), Ok(()));
        limiter.record_failure(ip("::ffff:10.0.0.9"), t0);
        limiter.record_failure(ip("10.0.0.9"), t0);
        assert!(limiter.check(ip("10.0.0.9"), t0).is_err());
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = AuthFailures::new(0, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..100 {
            limiter.record_failure(ip("10.0.0.1"), t0);
        }
        assert_eq!(limiter.check(ip("10.0.0.1"), t0), Ok(()));
        assert!(limiter.is_empty());
    }

    #[test]
    fn finished_windows_are_forgotten() {
        let limiter = AuthFailures::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        limiter.record_failure(ip("10.0.0.1"), t0);
        limiter.record_failure(ip("10.0.0.2"), t0 + Duration::from_secs(5));
        limiter.forget_old(t0 + Duration::from_secs(12));
        assert_eq!(limiter.len(), 1);
    }
}
