//! Prometheus metrics, served at `/metrics` on `--metrics-listen` when given.

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::RecordType;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// The responder's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Queries answered, by question type and response code (both from a fixed set).
    pub queries: IntCounterVec,
    /// Records in the zone.
    pub records: IntGauge,
    /// The etcd revision the zone is current to.
    pub revision: IntGauge,
    /// Times the zone was listed again after the watch or etcd failed.
    pub resyncs: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let queries = IntCounterVec::new(
            Opts::new("persys_dns_queries_total", "DNS queries answered"),
            &["type", "rcode"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let records = IntGauge::new("persys_dns_records", "Records in the zone")
            .unwrap_or_else(|_| unreachable_metric());
        let revision = IntGauge::new(
            "persys_dns_etcd_revision",
            "The etcd revision the zone is current to",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let resyncs = IntCounter::new(
            "persys_dns_resyncs_total",
            "Times the zone was listed again after the watch or etcd failed",
        )
        .unwrap_or_else(|_| unreachable_metric());
        for c in [
            Box::new(queries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(records.clone()),
            Box::new(revision.clone()),
            Box::new(resyncs.clone()),
        ] {
            registry
                .register(c)
                .unwrap_or_else(|_| unreachable_metric());
        }
        Self {
            registry,
            queries,
            records,
            revision,
            resyncs,
        }
    }

    /// Count one answered query.
    pub fn query(&self, qtype: Option<RecordType>, rcode: ResponseCode) {
        self.queries
            .with_label_values(&[type_label(qtype), rcode_label(rcode)])
            .inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn type_label(t: Option<RecordType>) -> &'static str {
    match t {
        Some(RecordType::A) => "A",
        Some(RecordType::AAAA) => "AAAA",
        Some(RecordType::SRV) => "SRV",
        Some(RecordType::SOA) => "SOA",
        Some(RecordType::NS) => "NS",
        Some(RecordType::ANY) => "ANY",
        Some(_) => "other",
        None => "none",
    }
}

fn rcode_label(r: ResponseCode) -> &'static str {
    match r {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::NotImp => "NOTIMP",
        _ => "other",
    }
}

fn unreachable_metric() -> ! {
    panic!("invalid metric definition")
}

/// Serve `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move { m.render() }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Bind the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_counted_by_type_and_code() {
        let m = Metrics::new();
        m.query(Some(RecordType::A), ResponseCode::NoError);
        m.query(Some(RecordType::A), ResponseCode::NoError);
        m.query(Some(RecordType::MX), ResponseCode::NXDomain);
        let text = m.render();
        assert!(
            text.contains(r#"persys_dns_queries_total{rcode="NOERROR",type="A"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"persys_dns_queries_total{rcode="NXDOMAIN",type="other"} 1"#),
            "{text}"
        );
        assert!(text.contains("persys_dns_records 0"), "{text}");
    }
}
