//! The key that seals cluster snapshots. A snapshot holds every record as stored,
//! secret values included, so it leaves the scheduler sealed (ChaCha20-Poly1305) with a
//! key derived from the cluster CA's private key: only a scheduler of the same cluster
//! can read or restore it, and a changed byte is refused rather than restored.

use crate::CertificateAuthority;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// Domain separation: this key seals nothing else.
const CONTEXT: &[u8] = b"persys snapshots v1";

/// Why a sealed line does not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Too short, not this cluster's key, or changed.
    #[error("the snapshot line does not open with this cluster's key (another cluster's snapshot, or changed)")]
    Open,
    /// The system's random source failed.
    #[error("no random nonce available")]
    Random,
}

/// The snapshot key of one cluster.
pub struct SnapshotKey {
    key: LessSafeKey,
    id: String,
    random: SystemRandom,
}

impl std::fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotKey({})", self.id)
    }
}

impl SnapshotKey {
    /// The key of `ca`'s cluster.
    pub fn of(ca: &CertificateAuthority) -> Self {
        Self::from_secret(ca.key_pem().as_bytes())
    }

    fn from_secret(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(CONTEXT);
        let bytes: [u8; 32] = mac.finalize().into_bytes().into();
        let id = hex::encode(&Sha256::digest(bytes)[..8]);
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .unwrap_or_else(|_| unreachable!("a 32-byte key is a ChaCha20 key"));
        Self {
            key: LessSafeKey::new(unbound),
            id,
            random: SystemRandom::new(),
        }
    }

    /// A public name of the key (a hash), so that a snapshot says which cluster it is of.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `plain` sealed: a random nonce, then the ciphertext and its tag.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut out = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut out)
            .map_err(|_| SealError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&out);
        Ok(sealed)
    }

    /// What [`SnapshotKey::seal`] sealed.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_line_opens_only_with_its_clusters_key_and_unchanged() {
        let a = SnapshotKey::from_secret(b"cluster a");
        let b = SnapshotKey::from_secret(b"cluster b");
        let sealed = a.seal(b"{\"secretEnv\": \"hunter2\"}").expect("sealed");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "no plaintext");
        assert_eq!(
            a.open(&sealed).expect("opens"),
            b"{\"secretEnv\": \"hunter2\"}"
        );
        assert_eq!(b.open(&sealed), Err(SealError::Open));
        let mut changed = sealed.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert_eq!(a.open(&changed), Err(SealError::Open));
        assert_ne!(a.id(), b.id());
        assert_ne!(
            a.seal(b"x").expect("sealed"),
            a.seal(b"x").expect("sealed"),
            "fresh nonces"
        );
    }
}
