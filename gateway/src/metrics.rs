//! Prometheus metrics of the gateway, on its own registry (no global state).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The gateway's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route pattern, method and status.
    pub requests: IntCounterVec,
    /// Time until the scheduler's answer head arrived, by route pattern.
    pub upstream_latency: HistogramVec,
    /// Authentication and authorization decisions, by decision and role.
    pub auth_decisions: IntCounterVec,
    /// Whether each scheduler answered its last probe (1) or not (0).
    pub upstream_healthy: IntGaugeVec,
    /// Failovers from one scheduler to the next, by the URL given up on.
    pub failovers: IntCounterVec,
    /// GitHub webhook deliveries, by event and outcome.
    pub webhooks: IntCounterVec,
    /// Failed authentications, by reason (`missing_credential`,
    /// `malformed_authorization`, `invalid_token`).
    pub auth_failures: IntCounterVec,
    /// Connections of the HTTPS listener (open, closed by the server and why).
    pub connections: persys_certs::ConnectionMetrics,
    /// Expiry of the HTTPS certificate and of the cluster CA.
    pub certificate_expiry: persys_certs::CertificateExpiry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric on a new registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "persys_gateway_requests_total",
                "Requests answered by the gateway",
            ),
            &["route", "method", "status"],
        )?;
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "persys_gateway_upstream_latency_seconds",
                "Time from forwarding a request to the scheduler's answer head",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )?;
        let auth_decisions = IntCounterVec::new(
            Opts::new(
                "persys_gateway_auth_decisions_total",
                "Access decisions: allowed, unauthenticated, forbidden, rate_limited",
            ),
            &["decision", "role"],
        )?;
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "persys_gateway_upstream_healthy",
                "Whether the scheduler answered its last health probe",
            ),
            &["upstream"],
        )?;
        let failovers = IntCounterVec::new(
            Opts::new(
                "persys_gateway_upstream_failovers_total",
                "Requests moved to the next scheduler after a connection error",
            ),
            &["upstream"],
        )?;
        let webhooks = IntCounterVec::new(
            Opts::new(
                "persys_gateway_webhook_deliveries_total",
                "GitHub webhook deliveries",
            ),
            &["event", "outcome"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "persys_gateway_auth_failures_total",
                "Failed authentications, by reason",
            ),
            &["reason"],
        )?;
        // Every reason from zero, so that a rate over them exists before the first.
        for reason in crate::auth::Unauthenticated::REASONS {
            auth_failures.with_label_values(&[reason]);
        }
        let connections = persys_certs::ConnectionMetrics::new("persys_gateway")?;
        connections.register(&registry)?;
        let certificate_expiry = persys_certs::CertificateExpiry::new("gateway")?;
        certificate_expiry.register(&registry)?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(upstream_latency.clone()))?;
        registry.register(Box::new(auth_decisions.clone()))?;
        registry.register(Box::new(upstream_healthy.clone()))?;
        registry.register(Box::new(failovers.clone()))?;
        registry.register(Box::new(webhooks.clone()))?;
        Ok(Self {
            registry,
            requests,
            upstream_latency,
            auth_decisions,
            upstream_healthy,
            failovers,
            webhooks,
            auth_failures,
            connections,
            certificate_expiry,
        })
    }

    /// Set `persys_certificate_expiry_timestamp_seconds{component="gateway"}` from the
    /// HTTPS certificate (`cert="serving"`) and the cluster CA (`cert="ca"`). Call it
    /// again with the new PEMs whenever the certificate is replaced (renewal).
    pub fn set_certificates(&self, serving_pem: &str, ca_pem: &str) {
        self.certificate_expiry
            .observe_pem(persys_certs::expiry::SERVING, serving_pem);
        self.certificate_expiry
            .observe_pem(persys_certs::expiry::CA, ca_pem);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_metrics_name_routes_and_decisions() {
        let m = Metrics::new().expect("metrics");
        m.requests
            .with_label_values(&["/workloads/{id}", "GET", "200"])
            .inc();
        m.auth_decisions
            .with_label_values(&["forbidden", "viewer"])
            .inc();
        let text = m.render();
        assert!(text.contains(r#"persys_gateway_requests_total{method="GET",route="/workloads/{id}",status="200"} 1"#), "{text}");
        assert!(text.contains("persys_gateway_auth_decisions_total"));
        assert!(
            text.contains(r#"persys_gateway_auth_failures_total{reason="invalid_token"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn certificate_expiry_is_exported_once_set() {
        let m = Metrics::new().expect("metrics");
        let ca = persys_certs::CertificateAuthority::generate("t").expect("ca");
        let leaf = ca
            .issue_server(&persys_certs::Identity::gateway(), &["localhost".into()])
            .expect("leaf");
        m.set_certificates(&leaf.cert_pem, ca.cert_pem());
        let text = m.render();
        for cert in ["serving", "ca"] {
            let series = format!(
                r#"persys_certificate_expiry_timestamp_seconds{{cert="{cert}",component="gateway"}}"#
            );
            assert!(text.contains(&series), "{series} in {text}");
        }
    }
}
