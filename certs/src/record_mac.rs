//! Credential records in etcd carry a MAC made with a key only the scheduler and the
//! gateway can derive (from the cluster CA's private key, which never leaves their
//! data directory), so that a raw write to etcd cannot mint a token: a record whose
//! MAC does not verify is no credential.

use crate::{constant_time_eq, CertificateAuthority};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key that signs credential records.
#[derive(Clone)]
pub struct RecordKey([u8; 32]);

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKey(..)")
    }
}

/// Domain separation: this key signs nothing else.
const CONTEXT: &[u8] = b"persys credential records v1";

impl RecordKey {
    /// The key of `ca`'s cluster.
    pub fn of(ca: &CertificateAuthority) -> Self {
        let mut mac = hmac(ca.key_pem().as_bytes());
        mac.update(CONTEXT);
        Self(mac.finalize().into_bytes().into())
    }

    /// The MAC (hex) of a record made of `fields` (its etcd key first), in order.
    pub fn sign(&self, fields: &[&str]) -> String {
        let mut mac = hmac(&self.0);
        for f in fields {
            // Length-prefixed, so that no two field lists sign alike.
            mac.update(&(f.len() as u64).to_be_bytes());
            mac.update(f.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `mac` is the MAC of `fields`.
    pub fn verify(&self, fields: &[&str], mac: &str) -> bool {
        constant_time_eq(self.sign(fields).as_bytes(), mac.as_bytes())
    }
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_bind_every_field_and_the_cluster() {
        let ca = CertificateAuthority::generate("a").expect("ca");
        let other = CertificateAuthority::generate("b").expect("ca");
        let k = RecordKey::of(&ca);
        let mac = k.sign(&["hash", "api", "id", "ci", "admin"]);
        assert!(k.verify(&["hash", "api", "id", "ci", "admin"], &mac));
        assert!(!k.verify(&["hash", "api", "id", "ci", "viewer"], &mac));
        assert!(!k.verify(&["hash", "api", "idc", "i", "admin"], &mac));
        assert!(!RecordKey::of(&other).verify(&["hash", "api", "id", "ci", "admin"], &mac));
        assert_eq!(RecordKey::of(&ca).sign(&["x"]), k.sign(&["x"]));
    }
}
