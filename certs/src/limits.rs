//! Connection limits of every persys listener: how long a client may take for its TLS
//! handshake and its request headers, how long a connection may stay idle, and how
//! many connections may be open at once. The flags are shared by every binary
//! ([`ListenerFlags`]), the metrics by every service ([`ConnectionMetrics`]).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::time::Duration;

/// Default time a client has to finish its TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Default time a client has to send a request's headers (HTTP/1.1, also between
/// keep-alive requests).
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default time a connection may stay open with no request in flight.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 90_000;
/// Default connection cap of the gateway (the public front door).
pub const DEFAULT_MAX_CONNECTIONS_GATEWAY: usize = 4096;
/// Default connection cap of each scheduler listener (agents, gateways, CLIs).
pub const DEFAULT_MAX_CONNECTIONS_SCHEDULER: usize = 1024;
/// Default connection cap of the agent API (only schedulers connect).
pub const DEFAULT_MAX_CONNECTIONS_AGENT: usize = 256;

/// Limits applied to every connection of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A client that has not finished its TLS handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// An HTTP/1.1 client that has not sent a request's headers by then is dropped.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight (no request being handled and no answer
    /// being streamed) for this long is closed gracefully. Streams are not cut.
    pub idle_timeout: Duration,
    /// Connections open at once; the ones beyond are closed at once, unread.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The defaults with a connection cap of `max_connections`.
    pub fn with_max_connections(max_connections: usize) -> Self {
        Self {
            handshake_timeout: Duration::from_millis(DEFAULT_HANDSHAKE_TIMEOUT_MS),
            header_read_timeout: Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            max_connections,
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::with_max_connections(DEFAULT_MAX_CONNECTIONS_SCHEDULER)
    }
}

/// The connection flags every persys binary takes (`#[command(flatten)]`), each with
/// its `PERSYS_*` environment twin. The cap's default depends on the binary.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ListenerFlags {
    /// Time a client has to finish its TLS handshake, ms.
    #[arg(long, env = "PERSYS_TLS_HANDSHAKE_TIMEOUT_MS", default_value_t = DEFAULT_HANDSHAKE_TIMEOUT_MS)]
    pub tls_handshake_timeout_ms: u64,

    /// Time an HTTP/1.1 client has to send a request's headers (also between
    /// keep-alive requests), ms.
    #[arg(long, env = "PERSYS_HEADER_READ_TIMEOUT_MS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_MS)]
    pub header_read_timeout_ms: u64,

    /// A connection with no request in flight for this long is closed, ms (streamed
    /// answers such as log follow and events count as in flight).
    #[arg(long, env = "PERSYS_IDLE_TIMEOUT_MS", default_value_t = DEFAULT_IDLE_TIMEOUT_MS)]
    pub idle_timeout_ms: u64,

    /// Connections open at once per listener; beyond, new ones are closed at once
    /// (default: 4096 on the gateway, 1024 on the scheduler, 256 on the agent).
    #[arg(long, env = "PERSYS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
}

impl ListenerFlags {
    /// The flags' defaults (what a binary gets without any of them).
    pub fn defaults() -> Self {
        Self {
            tls_handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            max_connections: None,
        }
    }

    /// The limits these flags ask for, with `default_max` when no cap is given.
    /// Zero timeouts are raised to 1 ms and a zero cap to 1 (never "unlimited").
    pub fn limits(&self, default_max: usize) -> ConnectionLimits {
        ConnectionLimits {
            handshake_timeout: Duration::from_millis(self.tls_handshake_timeout_ms.max(1)),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            max_connections: self.max_connections.unwrap_or(default_max).max(1),
        }
    }
}

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Over the connection cap: closed at once.
    Refused,
    /// The TLS handshake took too long.
    HandshakeTimeout,
    /// The request headers took too long (HTTP/1.1).
    HeaderTimeout,
    /// No request in flight for the idle timeout.
    Idle,
}

impl Closed {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::HeaderTimeout => "header_timeout",
            Self::Idle => "idle",
        }
    }
}

/// Connection metrics of a service, labelled by listener (`api`, `bootstrap`, ...).
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    open: IntGaugeVec,
    closed: IntCounterVec,
}

impl ConnectionMetrics {
    /// `<namespace>_connections_open{listener}` and
    /// `<namespace>_connections_closed_total{listener,reason}` (reason: refused,
    /// handshake_timeout, header_timeout, idle); an empty namespace leaves the prefix
    /// to the registry.
    pub fn new(namespace: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| {
            let o = Opts::new(name, help);
            if namespace.is_empty() {
                o
            } else {
                o.namespace(namespace)
            }
        };
        Ok(Self {
            open: IntGaugeVec::new(
                opts("connections_open", "Connections open, by listener"),
                &["listener"],
            )?,
            closed: IntCounterVec::new(
                opts(
                    "connections_closed_total",
                    "Connections the server closed on its own: over the cap (refused), handshake or header timeout, idle",
                ),
                &["listener", "reason"],
            )?,
        })
    }

    /// Registers both metrics on `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.open.clone()))?;
        registry.register(Box::new(self.closed.clone()))
    }

    /// The metrics of one listener (every reason starts at 0, so it is exported).
    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        let closed = |c: Closed| self.closed.with_label_values(&[listener, c.as_str()]);
        ListenerMetrics {
            open: Some(self.open.with_label_values(&[listener])),
            refused: Some(closed(Closed::Refused)),
            handshake_timeout: Some(closed(Closed::HandshakeTimeout)),
            header_timeout: Some(closed(Closed::HeaderTimeout)),
            idle: Some(closed(Closed::Idle)),
        }
    }
}

/// The connection metrics of one listener; the default counts nothing.
#[derive(Debug, Clone, Default)]
pub struct ListenerMetrics {
    open: Option<IntGauge>,
    refused: Option<IntCounter>,
    handshake_timeout: Option<IntCounter>,
    header_timeout: Option<IntCounter>,
    idle: Option<IntCounter>,
}

impl ListenerMetrics {
    pub(crate) fn opened(&self) {
        if let Some(g) = &self.open {
            g.inc();
        }
    }

    pub(crate) fn ended(&self) {
        if let Some(g) = &self.open {
            g.dec();
        }
    }

    pub(crate) fn closed(&self, why: Closed) {
        let counter = match why {
            Closed::Refused => &self.refused,
            Closed::HandshakeTimeout => &self.handshake_timeout,
            Closed::HeaderTimeout => &self.header_timeout,
            Closed::Idle => &self.idle,
        };
        if let Some(c) = counter {
            c.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        listener: ListenerFlags,
    }

    #[test]
    fn flags_default_to_the_documented_limits_with_the_binarys_cap() {
        let cli = Cli::parse_from(["x"]);
        assert_eq!(cli.listener, ListenerFlags::defaults());
        let limits = cli.listener.limits(DEFAULT_MAX_CONNECTIONS_GATEWAY);
        assert_eq!(
            limits,
            ConnectionLimits::with_max_connections(DEFAULT_MAX_CONNECTIONS_GATEWAY)
        );
        assert_eq!(limits.handshake_timeout, Duration::from_secs(10));
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, Duration::from_secs(90));
    }

    #[test]
    fn flags_override_every_limit_and_zero_never_means_unlimited() {
        let cli = Cli::parse_from([
            "x",
            "--tls-handshake-timeout-ms",
            "500",
            "--header-read-timeout-ms",
            "0",
            "--idle-timeout-ms",
            "2000",
            "--max-connections",
            "0",
        ]);
        let limits = cli.listener.limits(100);
        assert_eq!(limits.handshake_timeout, Duration::from_millis(500));
        assert_eq!(limits.header_read_timeout, Duration::from_millis(1));
        assert_eq!(limits.idle_timeout, Duration::from_secs(2));
        assert_eq!(limits.max_connections, 1);
    }

    #[test]
    fn listener_metrics_export_every_reason_from_zero() {
        let registry = Registry::new();
        let m = ConnectionMetrics::new("persys_test").expect("metrics");
        m.register(&registry).expect("register");
        let api = m.listener("api");
        api.opened();
        api.closed(Closed::Refused);
        let families = registry.gather();
        let names: Vec<_> = families.iter().map(|f| f.get_name().to_string()).collect();
        assert_eq!(
            names,
            [
                "persys_test_connections_closed_total",
                "persys_test_connections_open"
            ]
        );
        assert_eq!(families[0].get_metric().len(), 4, "one series per reason");
        let refused = families[0]
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.get_value() == "refused"))
            .expect("refused series");
        assert_eq!(refused.get_counter().get_value() as u64, 1);
        assert_eq!(
            families[1].get_metric()[0].get_gauge().get_value() as i64,
            1
        );
    }
}
