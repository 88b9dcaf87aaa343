//! Logging an outage once. Loops that retry every few hundred milliseconds while etcd
//! is down warn at the first failure, stay quiet (debug) while it lasts, and say when
//! it is over, instead of a warning per attempt.

use std::fmt::Display;
use std::time::Duration;
use tokio::time::Instant;

/// The failure state of one loop's repeated attempt.
#[derive(Debug, Default)]
pub struct OutageLog {
    since: Option<Instant>,
    failures: u64,
}

impl OutageLog {
    /// A new log, not failing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the attempt is failing now.
    pub fn is_failing(&self) -> bool {
        self.since.is_some()
    }

    /// Record a failed attempt at `what`; warns only at the first failure of an outage.
    /// Returns whether it warned.
    pub fn failed(&mut self, what: &str, error: &dyn Display) -> bool {
        self.failures += 1;
        if self.since.is_some() {
            tracing::debug!(error = %error, failures = self.failures, "{what} still failing");
            return false;
        }
        self.since = Some(Instant::now());
        tracing::warn!(error = %error, "{what} failed; retrying quietly until it works again");
        true
    }

    /// Record a successful attempt; when it ends an outage, logs how long it lasted and
    /// returns that.
    pub fn succeeded(&mut self, what: &str) -> Option<Duration> {
        let since = self.since.take()?;
        let lasted = since.elapsed();
        tracing::info!(
            failures = self.failures,
            lasted_ms = lasted.as_millis() as u64,
            "{what} works again"
        );
        self.failures = 0;
        Some(lasted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_outage_warns_once_and_reports_its_end() {
        let mut log = OutageLog::new();
        assert_eq!(
            log.succeeded("x"),
            None,
            "nothing to report without an outage"
        );
        assert!(log.failed("x", &"etcd down"));
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(200)).await;
            assert!(!log.failed("x", &"etcd down"), "quiet while it lasts");
        }
        assert!(log.is_failing());
        assert_eq!(log.succeeded("x"), Some(Duration::from_secs(2)));
        assert!(!log.is_failing());
        assert!(log.failed("x", &"etcd down"), "a new outage warns again");
    }
}
