//! rustls configurations, all built on the ring provider explicitly so that no
//! process-wide default provider has to be installed.

use crate::identity::{Expected, Identity};
use crate::pem::{fingerprint_der, parse_certs, parse_key};
use crate::CertError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::sync::{Arc, OnceLock};

/// ALPN protocols offered by servers: HTTP/2 preferred, HTTP/1.1 for everyone else.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The ring crypto provider, shared.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A server that REQUIRES a client certificate issued by the CA in `ca_pem`.
/// Which identities (common names) are allowed is the application's decision,
/// made from [`crate::PeerIdentity`].
pub fn server_config_mtls(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, CertError> {
    let roots = Arc::new(root_store(ca_pem)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(parse_certs(cert_pem)?, parse_key(key_pem)?)?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A server where a client certificate is OPTIONAL: a client that presents one must
/// present a certificate issued by the CA in `ca_pem` (otherwise the handshake fails),
/// and a client that presents none is admitted and authenticates some other way (e.g.
/// a bearer token). Used by the gateway, which serves both persysctl (certificates)
/// and token clients on one port.
pub fn server_config_optional_client_auth(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, CertError> {
    let roots = Arc::new(root_store(ca_pem)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(parse_certs(cert_pem)?, parse_key(key_pem)?)?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The scheduler's bootstrap port: anyone may connect (a new node has no certificate
/// yet), a node renewing its certificate presents its current one (verified against
/// `ca_pem`), and the CA certificate is appended to the chain so that a client pinning
/// the CA hash finds it.
pub fn server_config_bootstrap(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, CertError> {
    let roots = Arc::new(root_store(ca_pem)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .allow_unauthenticated()
        .build()?;
    let mut chain = parse_certs(cert_pem)?;
    chain.extend(parse_certs(ca_pem)?);
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, parse_key(key_pem)?)?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A server without client authentication. `chain_extra_pem` (the CA certificate)
/// is appended to the presented chain so that a client pinning the CA hash can
/// find and verify against it.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    chain_extra_pem: Option<&str>,
) -> Result<Arc<ServerConfig>, CertError> {
    let mut chain = parse_certs(cert_pem)?;
    if let Some(extra) = chain_extra_pem {
        chain.extend(parse_certs(extra)?);
    }
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, parse_key(key_pem)?)?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client that trusts only the CA in `ca_pem` and only a server whose certificate
/// is `expected` (its identity URI SAN, see [`crate::identity`]), presenting
/// `identity` (`(cert_pem, key_pem)`) when given. No ALPN is set (HTTP/1.1); set
/// `alpn_protocols` on the result to offer HTTP/2.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    expected: Expected,
) -> Result<ClientConfig, CertError> {
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(ca_pem)?), provider())
            .build()
            .map_err(|e| CertError::Tls(rustls::Error::General(format!("server verifier: {e}"))))?;
    let verifier = IdentityVerifier {
        inner: webpki,
        expected,
        provider: provider(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    Ok(match identity {
        Some((cert_pem, key_pem)) => {
            builder.with_client_auth_cert(parse_certs(cert_pem)?, parse_key(key_pem)?)?
        }
        None => builder.with_no_client_auth(),
    })
}

/// TLS sessions a client that only ever talks to one server keeps for resumption.
const ONE_SERVER_SESSIONS: usize = 2;

/// `config` for a client of a single server (the scheduler's client of one node): its
/// resumption cache holds a couple of sessions instead of rustls' default 256 server
/// names, which it allocates up front and which, times a thousand per-node clients,
/// was most of the scheduler's memory besides its records.
pub fn for_one_server(mut config: ClientConfig) -> ClientConfig {
    config.resumption = rustls::client::Resumption::in_memory_sessions(ONE_SERVER_SESSIONS);
    config
}

/// A client for bootstrapping (no CA file yet, only the hash from a join token):
/// trusts a server whose presented chain contains a certificate whose sha256 is
/// `ca_hash`, whose leaf verifies against that certificate (host name checked) and
/// is `expected`. Presents `identity` when given (a node renewing its certificate).
pub fn client_config_pinned(
    ca_hash: &str,
    expected: Expected,
    identity: Option<(&str, &str)>,
) -> Result<ClientConfig, CertError> {
    let verifier = PinnedCaVerifier {
        ca_hash: crate::token::validate_ca_hash(ca_hash)?,
        expected,
        provider: provider(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    Ok(match identity {
        Some((cert_pem, key_pem)) => {
            builder.with_client_auth_cert(parse_certs(cert_pem)?, parse_key(key_pem)?)?
        }
        None => builder.with_no_client_auth(),
    })
}

/// The handshake signature checks of a verifier with a `provider` field: those of the
/// crypto provider (shared by every verifier here).
macro_rules! provider_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// Whether the server's leaf is the identity the client expects.
fn check_identity(
    end_entity: &CertificateDer<'_>,
    expected: &Expected,
) -> Result<(), rustls::Error> {
    match Identity::of_certificate(end_entity) {
        Some(found) if expected.admits(&found) => Ok(()),
        found => {
            tracing::debug!(expected = %expected, found = ?found.map(|f| f.to_string()), "server certificate is not the expected identity");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

/// The CA's chain and host name checks (webpki), then the identity check.
#[derive(Debug)]
struct IdentityVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: Expected,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for IdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        check_identity(end_entity, &self.expected)?;
        Ok(verified)
    }

    provider_signatures!();
}

fn root_store(ca_pem: &str) -> Result<RootCertStore, CertError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// Verifies a server against the CA certificate it presents itself, accepted only
/// if that certificate's sha256 matches the pinned hash.
#[derive(Debug)]
struct PinnedCaVerifier {
    ca_hash: String,
    expected: Expected,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The hash is public (it is in every join token), so a plain comparison is fine.
        let Some(ca) = intermediates
            .iter()
            .find(|c| fingerprint_der(c) == self.ca_hash)
        else {
            tracing::debug!(pinned = %self.ca_hash, "server chain has no certificate with the pinned CA hash");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(format!("pinned CA verifier: {e}")))?;
        let verified =
            webpki.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        check_identity(end_entity, &self.expected)?;
        Ok(verified)
    }

    provider_signatures!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertificateAuthority;

    #[test]
    fn pinned_config_rejects_malformed_hash() {
        assert!(matches!(
            client_config_pinned("abc", Expected::role(crate::Role::Scheduler), None),
            Err(CertError::InvalidToken(_))
        ));
    }

    #[test]
    fn server_configs_offer_h2_and_http11() {
        let ca = CertificateAuthority::generate("ca").expect("ca");
        let srv = ca
            .issue_server(&Identity::scheduler(), &["localhost".into()])
            .expect("srv");
        let mtls = server_config_mtls(ca.cert_pem(), &srv.cert_pem, &srv.key_pem).expect("mtls");
        assert_eq!(
            mtls.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let plain = server_config(&srv.cert_pem, &srv.key_pem, Some(ca.cert_pem())).expect("tls");
        assert_eq!(plain.alpn_protocols.len(), 2);
    }

    #[test]
    fn optional_client_auth_config_builds_with_h2_and_http11() {
        let ca = CertificateAuthority::generate("ca").expect("ca");
        let srv = ca
            .issue_server(&Identity::scheduler(), &["localhost".into()])
            .expect("srv");
        let config = server_config_optional_client_auth(ca.cert_pem(), &srv.cert_pem, &srv.key_pem)
            .expect("config");
        // Whether a certificate is optional is exercised over real TLS in the gateway's tests.
        assert_eq!(config.alpn_protocols.len(), 2);
    }

    #[test]
    fn server_config_rejects_key_of_other_certificate() {
        let ca = CertificateAuthority::generate("ca").expect("ca");
        let a = ca
            .issue_server(&Identity::scheduler(), &["localhost".into()])
            .expect("a");
        let b = ca
            .issue_server(&Identity::gateway(), &["localhost".into()])
            .expect("b");
        assert!(server_config(&a.cert_pem, &b.key_pem, None).is_err());
    }
}
