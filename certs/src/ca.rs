//! The cluster certificate authority: one self-signed CA whose key signs every
//! certificate in the cluster. Its certificate's sha256 is the hash in join tokens.

use crate::pem::{fingerprint_der, parse_certs, write_private, write_public};
use crate::CertError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::fmt;
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// File name of the CA certificate in a data directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key in a data directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// How long a generated CA is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Backdating absorbs clock skew between the machines of the cluster.
pub(crate) const BACKDATE: Duration = Duration::hours(1);

/// The cluster CA: its certificate (as issued, for fingerprints and trust) and its key.
pub struct CertificateAuthority {
    pub(crate) cert_pem: String,
    pub(crate) cert_der: Vec<u8>,
    /// rcgen's view of the CA, only used as the issuer of new certificates
    /// (its own DER is a re-signature and is never published).
    pub(crate) issuer: rcgen::Certificate,
    pub(crate) key: KeyPair,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("CertificateAuthority")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Generates a new self-signed CA (ECDSA P-256, valid ten years).
    pub fn generate(common_name: &str) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "persys");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(crate::issue::random_serial());
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().to_vec();
        Ok(Self {
            cert_pem,
            cert_der,
            issuer: cert,
            key,
        })
    }

    /// Loads a CA from its certificate and key PEM. Checks the key belongs to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let der = parse_certs(cert_pem)?.swap_remove(0);
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::Pem {
            what: "CA private key",
            reason: e.to_string(),
        })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| CertError::Certificate(e.to_string()))?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(CertError::KeyMismatch);
        }
        // rcgen needs a Certificate to sign with: rebuild one from the parsed
        // params (same subject and key identifier, so issued certs chain to the original).
        let params = CertificateParams::from_ca_cert_der(&der)?;
        let issuer = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            cert_der: der.to_vec(),
            issuer,
            key,
        })
    }

    /// Loads `<dir>/ca.crt` and `<dir>/ca.key`, or generates a CA and writes them
    /// (the directory is created with mode 0700 and the key with mode 0600).
    /// Refuses to proceed when only one of the two files exists.
    pub fn load_or_generate(dir: &Path) -> Result<Self, CertError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CertError::Io { path, source }
        };
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
                let key = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
                Self::from_pem(&cert, &key)
            }
            (true, false) => Err(CertError::IncompleteCa {
                dir: dir.to_path_buf(),
                missing: CA_KEY_FILE,
            }),
            (false, true) => Err(CertError::IncompleteCa {
                dir: dir.to_path_buf(),
                missing: CA_CERT_FILE,
            }),
            (false, false) => {
                create_private_dir(dir).map_err(io(dir))?;
                let ca = Self::generate("persys cluster CA")?;
                // Key first: a crash in between leaves "key without cert", which is
                // refused loudly instead of silently minting a second CA.
                write_private(&key_path, &ca.key.serialize_pem()).map_err(io(&key_path))?;
                write_public(&cert_path, &ca.cert_pem).map_err(io(&cert_path))?;
                tracing::info!(dir = %dir.display(), fingerprint = %ca.fingerprint(), "generated cluster CA");
                Ok(ca)
            }
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA private key, PEM (to persist it; handle with care).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Hex sha256 of the CA certificate DER (the hash in join tokens).
    pub fn fingerprint(&self) -> String {
        fingerprint_der(&self.cert_der)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_from_generate_through_pem() {
        let ca = CertificateAuthority::generate("test CA").expect("generate");
        let reloaded =
            CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).expect("from_pem");
        assert_eq!(ca.fingerprint(), reloaded.fingerprint());
        assert_eq!(
            ca.fingerprint(),
            crate::fingerprint_pem(ca.cert_pem()).expect("fingerprint_pem")
        );
        assert_eq!(ca.fingerprint().len(), 64);
    }

    #[test]
    fn from_pem_rejects_key_of_another_ca() {
        let a = CertificateAuthority::generate("a").expect("a");
        let b = CertificateAuthority::generate("b").expect("b");
        assert!(matches!(
            CertificateAuthority::from_pem(a.cert_pem(), &b.key_pem()),
            Err(CertError::KeyMismatch)
        ));
    }

    #[test]
    fn load_or_generate_writes_once_then_loads_same_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("pki");
        let first = CertificateAuthority::load_or_generate(&sub).expect("generate");
        let second = CertificateAuthority::load_or_generate(&sub).expect("load");
        assert_eq!(first.fingerprint(), second.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(sub.join(CA_KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn load_or_generate_refuses_key_without_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        CertificateAuthority::load_or_generate(dir.path()).expect("generate");
        std::fs::remove_file(dir.path().join(CA_CERT_FILE)).expect("rm");
        assert!(matches!(
            CertificateAuthority::load_or_generate(dir.path()),
            Err(CertError::IncompleteCa {
                missing: CA_CERT_FILE,
                ..
            })
        ));
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let ca = CertificateAuthority::generate("dbg").expect("generate");
        let shown = format!("{ca:?}");
        assert!(!shown.contains("PRIVATE"));
        assert!(shown.contains(&ca.fingerprint()));
    }
}
