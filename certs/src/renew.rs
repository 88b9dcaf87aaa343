//! When a leaf certificate is renewed: once two thirds of its intended lifetime have
//! passed (its issuer backdates `notBefore` by [`crate::ca::BACKDATE`] for clocks a
//! little behind; that margin is not lifetime). With a week's validity a node renews
//! about two days and a third before expiry, so one failed renewal leaves a long time to
//! retry.

use crate::pem::parse_certs;
use crate::CertError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The certificate's `(notBefore, notAfter)`, unix seconds.
pub fn validity_unix(cert_pem: &str) -> Result<(i64, i64), CertError> {
    let der = parse_certs(cert_pem)?.swap_remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// How long from `now` until `cert_pem` is due for renewal (zero when it is due).
pub fn renew_in(cert_pem: &str, now: SystemTime) -> Result<Duration, CertError> {
    let (not_before, not_after) = validity_unix(cert_pem)?;
    Ok(due_in(not_before, not_after, now))
}

fn due_in(not_before: i64, not_after: i64, now: SystemTime) -> Duration {
    let backdate = crate::ca::BACKDATE.whole_seconds();
    let span = not_after - not_before;
    // Certificates of other issuers may not be backdated.
    let lifetime = if span > backdate {
        span - backdate
    } else {
        span
    } as f64;
    let due = not_after as f64 - lifetime / 3.0;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    Duration::from_secs_f64((due - now).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_intended_lifetime() {
        let backdate = crate::ca::BACKDATE.whole_seconds();
        // Issued at 10,000 for 9 s (notBefore backdated): due at 10,006.
        let (nb, na) = (10_000 - backdate, 10_009);
        assert_eq!(due_in(nb, na, at(10_000)), Duration::from_secs(6));
        assert_eq!(due_in(nb, na, at(10_006)), Duration::ZERO);
        assert_eq!(
            due_in(nb, na, at(20_000)),
            Duration::ZERO,
            "expired: at once"
        );
        // A week: about 2.33 days before expiry.
        let week = 7 * 24 * 3600;
        let d = due_in(-backdate, week, at(0));
        assert!(
            (d.as_secs_f64() - week as f64 * 2.0 / 3.0).abs() < 1.0,
            "{d:?}"
        );
    }

    #[test]
    fn a_signed_certificate_says_when_to_renew_it() {
        let ca = crate::CertificateAuthority::generate("test").expect("ca");
        let (csr, _key) = crate::generate_csr("n1", &[]).expect("csr");
        let pem = ca
            .sign_csr_valid_for(
                &csr,
                &crate::Identity::node("n1"),
                &[],
                Duration::from_secs(90),
            )
            .expect("signed");
        let d = renew_in(&pem, SystemTime::now()).expect("parses");
        assert!(
            d > Duration::from_secs(55) && d <= Duration::from_secs(60),
            "{d:?}"
        );
    }
}
