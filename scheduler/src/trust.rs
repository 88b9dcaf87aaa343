//! What the scheduler trusts and signs with, held for the handlers that admit nodes:
//! the cluster CA (to sign CSRs and hand its certificate to joining agents), the key
//! that signs credential records in etcd, and the join-guessing limiter.

use persys_certs::auth_failures::AuthFailures;
use persys_certs::{CertificateAuthority, RecordKey, SnapshotKey};

/// The cluster's trust material (see the module comment).
pub struct Trust {
    ca: CertificateAuthority,
    ca_pem: String,
    ca_hash: String,
    record_key: RecordKey,
    snapshot_key: SnapshotKey,
    join_failures: AuthFailures,
}

impl Trust {
    /// From the PKI loaded at start and the join limiter's settings.
    pub fn new(pki: crate::pki::Pki, join_failures: AuthFailures) -> Self {
        Self {
            ca_pem: pki.ca.cert_pem().to_string(),
            ca_hash: pki.ca.fingerprint(),
            record_key: pki.record_key(),
            snapshot_key: SnapshotKey::of(&pki.ca),
            ca: pki.ca,
            join_failures,
        }
    }

    /// The CA, for signing agents' CSRs.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The CA certificate (PEM), returned to registering agents.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Hash of the CA certificate (what join tokens carry).
    pub fn ca_hash(&self) -> &str {
        &self.ca_hash
    }

    /// The key credential records in etcd are signed with.
    pub fn record_key(&self) -> &RecordKey {
        &self.record_key
    }

    /// The key snapshots are sealed with.
    pub fn snapshot_key(&self) -> &SnapshotKey {
        &self.snapshot_key
    }

    /// Failed joins per source address (guessing the join token is rate limited).
    pub fn join_failures(&self) -> &AuthFailures {
        &self.join_failures
    }
}
