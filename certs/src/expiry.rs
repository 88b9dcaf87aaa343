//! The validity of the certificates a component serves or trusts, as the metrics
//! `persys_certificate_expiry_timestamp_seconds{component, cert}` (unix time of the
//! certificate's `notAfter`) and `persys_certificate_not_before_timestamp_seconds`
//! (its `notBefore`). Every component registers one [`CertificateExpiry`] and sets it
//! whenever it loads a certificate (at start, and after a renewal: call
//! [`CertificateExpiry::set_from_pem`] with the new PEM). Alerts compare the time
//! left with `time()` and with the certificate's lifetime (node certificates live
//! days, others a year).

use crate::pem::parse_certs;
use crate::CertError;
use prometheus::{IntGaugeVec, Opts, Registry};

/// Name of the expiry metric.
pub const METRIC: &str = "persys_certificate_expiry_timestamp_seconds";
/// Name of the not-before metric.
pub const NOT_BEFORE_METRIC: &str = "persys_certificate_not_before_timestamp_seconds";

/// The `cert` label of the certificate a component presents on its listeners.
pub const SERVING: &str = "serving";
/// The `cert` label of the cluster CA certificate it trusts.
pub const CA: &str = "ca";

/// The unix times (seconds) of the `notBefore` and `notAfter` of the first certificate
/// in `cert_pem`.
pub fn validity_unix(cert_pem: &str) -> Result<(i64, i64), CertError> {
    let der = parse_certs(cert_pem)?.swap_remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// The unix time (seconds) of the `notAfter` of the first certificate in `cert_pem`.
pub fn not_after_unix(cert_pem: &str) -> Result<i64, CertError> {
    Ok(validity_unix(cert_pem)?.1)
}

/// The validity gauges of one component (`component` is a constant label value:
/// `scheduler`, `gateway`, `agent`).
#[derive(Debug, Clone)]
pub struct CertificateExpiry {
    gauge: IntGaugeVec,
    not_before: IntGaugeVec,
    component: String,
}

impl CertificateExpiry {
    /// The gauges for `component`; register them with [`CertificateExpiry::register`].
    pub fn new(component: &str) -> Result<Self, prometheus::Error> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                METRIC,
                "Unix time at which a certificate the component uses expires (notAfter)",
            ),
            &["component", "cert"],
        )?;
        let not_before = IntGaugeVec::new(
            Opts::new(
                NOT_BEFORE_METRIC,
                "Unix time from which a certificate the component uses is valid (notBefore)",
            ),
            &["component", "cert"],
        )?;
        Ok(Self {
            gauge,
            not_before,
            component: component.to_string(),
        })
    }

    /// Registers both gauges on `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.gauge.clone()))?;
        registry.register(Box::new(self.not_before.clone()))
    }

    /// Set the validity of certificate `cert` (a constant such as [`SERVING`]) to
    /// `not_before..not_after` (unix seconds).
    pub fn set(&self, cert: &str, not_before: i64, not_after: i64) {
        let labels = [self.component.as_str(), cert];
        self.not_before.with_label_values(&labels).set(not_before);
        self.gauge.with_label_values(&labels).set(not_after);
    }

    /// Set the validity of `cert` from its PEM (the first certificate of a chain); the
    /// `notAfter` it read. Call it again with the new PEM after a renewal.
    pub fn set_from_pem(&self, cert: &str, pem: &str) -> Result<i64, CertError> {
        let (not_before, not_after) = validity_unix(pem)?;
        self.set(cert, not_before, not_after);
        Ok(not_after)
    }

    /// [`CertificateExpiry::set_from_pem`] that logs (warn) instead of failing: the
    /// metric is not a reason to refuse a certificate the TLS layer accepted.
    pub fn observe_pem(&self, cert: &str, pem: &str) {
        if let Err(e) = self.set_from_pem(cert, pem) {
            tracing::warn!(cert, error = %e, "cannot read the certificate's expiry for the metric");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertificateAuthority, Identity};
    use prometheus::{Encoder, TextEncoder};

    #[test]
    fn the_gauge_carries_the_not_after_of_the_certificate() {
        let ca = CertificateAuthority::generate("test").expect("ca");
        let leaf = ca
            .issue_server(&Identity::gateway(), &["localhost".into()])
            .expect("leaf");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let leaf_after = not_after_unix(&leaf.cert_pem).expect("parses");
        // Leaves are valid for a year, the CA for ten.
        assert!(
            (leaf_after - now - 365 * 86400).abs() < 86400,
            "{leaf_after}"
        );
        assert!(not_after_unix(ca.cert_pem()).expect("ca parses") > leaf_after);
        let registry = Registry::new();
        let m = CertificateExpiry::new("gateway").expect("metric");
        m.register(&registry).expect("registers");
        assert_eq!(
            m.set_from_pem(SERVING, &leaf.cert_pem).expect("set"),
            leaf_after
        );
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .expect("encodes");
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains(&format!(
                "{METRIC}{{cert=\"serving\",component=\"gateway\"}} {leaf_after}"
            )),
            "{text}"
        );
        let (before, _) = validity_unix(&leaf.cert_pem).expect("parses");
        assert!(before <= now && before > now - 86400, "{before}");
        assert!(
            text.contains(&format!(
                "{NOT_BEFORE_METRIC}{{cert=\"serving\",component=\"gateway\"}} {before}"
            )),
            "{text}"
        );
        assert!(not_after_unix("not a pem").is_err());
    }
}
