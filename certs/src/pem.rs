//! PEM and DER helpers: parsing, fingerprints, common names, private file writes.

use crate::CertError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// All certificates in a PEM document, in order. Errors if there are none.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem {
            what: "certificate",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            what: "certificate",
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) in a PEM document.
pub fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| CertError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?
        .ok_or(CertError::Pem {
            what: "private key",
            reason: "no PRIVATE KEY block found".into(),
        })
}

/// Hex sha256 of a DER certificate.
pub fn fingerprint_der(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Hex sha256 of the first certificate's DER in a PEM document.
pub fn fingerprint_pem(cert_pem: &str) -> Result<String, CertError> {
    let certs = parse_certs(cert_pem)?;
    Ok(fingerprint_der(&certs[0]))
}

/// Common name of the subject of a DER certificate, if it parses and has one.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// Writes a file readable only by its owner (mode 0600), atomically: a reader
/// never sees a half-written key, and an existing file is replaced whole.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    // A stale temp file may predate us with wider permissions: mode only applies on create.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Writes a public file (certificates, tokens are not public: use [`write_private`]) atomically.
pub fn write_public(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_private_creates_owner_only_file_and_replaces_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        write_private(&path, "one").expect("write");
        write_private(&path, "two").expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!dir.path().join("k.key.tmp").exists());
    }

    #[test]
    fn parse_certs_rejects_pem_without_certificate() {
        assert!(matches!(
            parse_certs("hello"),
            Err(CertError::Pem {
                what: "certificate",
                ..
            })
        ));
    }

    #[test]
    fn parse_key_rejects_pem_without_key() {
        assert!(parse_key("-----BEGIN NOTHING-----\n-----END NOTHING-----\n").is_err());
    }

    #[test]
    fn common_name_of_garbage_is_none() {
        assert_eq!(common_name(b"not a certificate"), None);
    }
}
