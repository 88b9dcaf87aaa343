//! Leaf certificates signed by the cluster CA.

use crate::ca::BACKDATE;
use crate::identity::Identity;
use crate::{CertError, CertificateAuthority};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// How long a leaf certificate is valid unless its issuer says otherwise. Agents
/// rotate theirs at every start and before two thirds of their lifetime have passed
/// ([`crate::renew`]); the scheduler signs theirs for `--node-cert-validity`.
pub const DEFAULT_LEAF_VALIDITY: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 3600);

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// What a leaf certificate may be used for (its extended key usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// TLS server only.
    Server,
    /// TLS client only.
    Client,
    /// Both (agents and the scheduler act as both).
    Dual,
}

impl CertificateAuthority {
    /// Issues a server certificate (serverAuth) of `identity` for `sans` (DNS names or
    /// IP addresses).
    pub fn issue_server(
        &self,
        identity: &Identity,
        sans: &[String],
    ) -> Result<IssuedCert, CertError> {
        self.issue(identity, sans, Usage::Server)
    }

    /// Issues a client certificate (clientAuth) of `identity`.
    pub fn issue_client(&self, identity: &Identity) -> Result<IssuedCert, CertError> {
        self.issue(identity, &[], Usage::Client)
    }

    /// Issues a certificate of `identity` usable both as server (for `sans`) and as client.
    pub fn issue_dual(
        &self,
        identity: &Identity,
        sans: &[String],
    ) -> Result<IssuedCert, CertError> {
        self.issue(identity, sans, Usage::Dual)
    }

    /// Issues a certificate with a fresh key pair.
    pub fn issue(
        &self,
        identity: &Identity,
        sans: &[String],
        usage: Usage,
    ) -> Result<IssuedCert, CertError> {
        self.issue_valid_for(identity, sans, usage, DEFAULT_LEAF_VALIDITY)
    }

    /// [`CertificateAuthority::issue`], valid for `validity`.
    pub fn issue_valid_for(
        &self,
        identity: &Identity,
        sans: &[String],
        usage: Usage,
        validity: std::time::Duration,
    ) -> Result<IssuedCert, CertError> {
        let key = KeyPair::generate()?;
        let params = leaf_params(identity, sans, usage, validity)?;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Parameters of a leaf certificate: subject CN (the identity's name), the identity
/// URI SAN, the other SANs, usages, validity, random serial.
pub(crate) fn leaf_params(
    identity: &Identity,
    sans: &[String],
    usage: Usage,
    validity: std::time::Duration,
) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.name.as_str());
    params.distinguished_name = dn;
    let uri = identity
        .uri()
        .try_into()
        .map_err(|_| CertError::InvalidSan(identity.uri()))?;
    params.subject_alt_names = std::iter::once(Ok(SanType::URI(uri)))
        .chain(sans.iter().map(|s| san(s)))
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    // ECDSA keys only sign; KeyEncipherment would be meaningless (it is for RSA key transport).
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Dual => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::try_from(validity).unwrap_or(Duration::days(365));
    params.serial_number = Some(random_serial());
    Ok(params)
}

/// An IP literal becomes an IP SAN, anything else a DNS SAN.
fn san(s: &str) -> Result<SanType, CertError> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '_'));
    if !valid {
        return Err(CertError::InvalidSan(s.to_owned()));
    }
    let name = s
        .to_owned()
        .try_into()
        .map_err(|_| CertError::InvalidSan(s.to_owned()))?;
    Ok(SanType::DnsName(name))
}

/// 127 random bits, positive as RFC 5280 requires.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;

    fn parse(pem: &str) -> Vec<u8> {
        crate::pem::parse_certs(pem).expect("pem")[0].to_vec()
    }

    #[test]
    fn server_cert_carries_cn_and_ip_and_dns_sans() {
        let ca = CertificateAuthority::generate("ca").expect("ca");
        let issued = ca
            .issue_server(
                &Identity::scheduler(),
                &["localhost".into(), "127.0.0.1".into(), "::1".into()],
            )
            .expect("issue");
        let der = parse(&issued.cert_pem);
        assert_eq!(
            crate::common_name(&der).as_deref(),
            Some("persys-scheduler")
        );
        assert_eq!(Identity::of_certificate(&der), Some(Identity::scheduler()));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let san = cert
            .subject_alternative_name()
            .expect("ext")
            .expect("san present");
        let names = &san.value.general_names;
        assert!(names.contains(&GeneralName::DNSName("localhost")));
        assert!(names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
        let eku = cert.extended_key_usage().expect("ext").expect("eku").value;
        assert!(eku.server_auth && !eku.client_auth);
    }

    #[test]
    fn client_cert_has_client_auth_only() {
        let ca = CertificateAuthority::generate("ca").expect("ca");
        let issued = ca.issue_client(&Identity::admin()).expect("issue");
        let der = parse(&issued.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let eku = cert.extended_key_usage().expect("ext").expect("eku").value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!cert.is_ca());
    }

    #[test]
    fn serials_differ_between_certificates() {
        let ca = CertificateAuthority::generate("ca").expect("ca");
        let a = parse(&ca.issue_client(&Identity::user("x")).expect("a").cert_pem);
        let b = parse(&ca.issue_client(&Identity::user("x")).expect("b").cert_pem);
        let serial = |der: &[u8]| {
            x509_parser::parse_x509_certificate(der)
                .expect("x509")
                .1
                .serial
                .clone()
        };
        assert_ne!(serial(&a), serial(&b));
    }

    #[test]
    fn invalid_san_is_rejected_with_its_value() {
        let ca = CertificateAuthority::generate("ca").expect("ca");
        let err = ca
            .issue_server(&Identity::gateway(), &["not a host".into()])
            .expect_err("must fail");
        assert!(matches!(err, CertError::InvalidSan(s) if s == "not a host"));
    }
}
