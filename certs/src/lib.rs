//! persys cluster PKI.
//!
//! - [`identity`]: who a certificate speaks for (`spiffe://persys/<role>/<name>`).
//! - [`etcd`]: etcd's own PKI (TLS and client-certificate auth for the store).
//! - [`ca`]: the cluster certificate authority (generate, load, persist).
//! - [`issue`]: server, client and dual-use leaf certificates signed by the CA.
//! - [`csr`]: certificate signing requests (agents keep their keys; the CA signs).
//! - [`token`]: join tokens `PERSYS1.<ca-hash>.<secret>`.
//! - [`tls`]: rustls client and server configurations (ring provider, no global state).
//! - [`serve`]: serving an axum `Router` over TLS with the peer's identity and the
//!   connection limits of every listener ([`limits`]); [`activity`] (requests in
//!   flight, for the idle timeout) and [`drain`] (unread request bodies) serve it.
//! - [`record_mac`]: MACs on credential records in etcd (a raw write mints nothing).
//! - [`request_meta`]: bounded metric labels and log-safe paths of requests.
//! - [`auth_failures`]: failed authentications (API tokens, joins) limited per source
//!   address.
//! - [`pem`]: PEM/DER helpers, fingerprints, private file writes.
//! - [`expiry`]: the certificate-expiry metric every component exports.

pub mod activity;
pub mod auth_failures;
pub mod ca;
pub mod csr;
pub mod drain;
pub mod error;
pub mod etcd;
pub mod expiry;
pub mod identity;
pub mod issue;
pub mod limits;
pub mod pem;
pub mod record_mac;
pub mod renew;
pub mod request_meta;
pub mod serve;
pub mod snapshot_key;
pub mod tls;
pub mod token;

pub use ca::CertificateAuthority;
pub use csr::generate_csr;
pub use error::CertError;
pub use expiry::CertificateExpiry;
pub use identity::{Expected, Identity, PeerIdentity, Role};
pub use issue::IssuedCert;
pub use limits::{ConnectionLimits, ConnectionMetrics, ListenerFlags, ListenerMetrics};
pub use pem::{common_name, fingerprint_der, fingerprint_pem, write_private};
pub use record_mac::RecordKey;
pub use serve::{serve_tls, serve_tls_with, ServeOptions, ServerTls, ServerTlsSender};
pub use snapshot_key::{SealError, SnapshotKey};
pub use tls::{
    client_config, client_config_pinned, server_config, server_config_bootstrap,
    server_config_mtls, server_config_optional_client_auth,
};
pub use token::{constant_time_eq, hash_secret, JoinToken};
