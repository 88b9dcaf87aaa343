//! Certificate signing requests: a node generates its key and a CSR, the CA signs
//! the public key with the identity the CA decides (never what the CSR asks for).

use crate::identity::Identity;
use crate::issue::{leaf_params, Usage, DEFAULT_LEAF_VALIDITY};
use crate::{CertError, CertificateAuthority};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, KeyPair,
};

/// Largest CSR accepted; a real one is well under 2 KiB.
const MAX_CSR_PEM_BYTES: usize = 16 * 1024;

/// Generates a new key pair and a CSR for it. Returns `(csr_pem, key_pem)`;
/// the key stays with the caller.
pub fn generate_csr(common_name: &str, sans: &[String]) -> Result<(String, String), CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

impl CertificateAuthority {
    /// Signs a PEM CSR. The identity is forced to `identity`, the SANs to `sans` and
    /// the usage to client + server, whatever the CSR requests: only its public key
    /// (proven by its signature) is taken. Returns the certificate PEM.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        sans: &[String],
    ) -> Result<String, CertError> {
        self.sign_csr_valid_for(csr_pem, identity, sans, DEFAULT_LEAF_VALIDITY)
    }

    /// [`CertificateAuthority::sign_csr`], valid for `validity` (from a minute before
    /// now, for clocks a little behind).
    pub fn sign_csr_valid_for(
        &self,
        csr_pem: &str,
        identity: &Identity,
        sans: &[String],
        validity: std::time::Duration,
    ) -> Result<String, CertError> {
        if csr_pem.len() > MAX_CSR_PEM_BYTES {
            return Err(CertError::Csr(format!(
                "larger than {MAX_CSR_PEM_BYTES} bytes"
            )));
        }
        // from_pem verifies the CSR's self-signature (proof of key possession).
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CertError::Csr(e.to_string()))?;
        let params = leaf_params(identity, sans, Usage::Dual, validity)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer, &self.key)?;
        Ok(cert.pem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_csr_forces_cn_and_sans_and_keeps_csr_key() {
        let ca = CertificateAuthority::generate("ca").expect("ca");
        let (csr, key_pem) = generate_csr("evil-admin", &["evil.example".into()]).expect("csr");
        let cert_pem = ca
            .sign_csr(
                &csr,
                &Identity::node("node-1"),
                &["10.0.0.5".into(), "node-1.local".into()],
            )
            .expect("sign");
        let der = crate::pem::parse_certs(&cert_pem).expect("pem")[0].to_vec();
        assert_eq!(crate::common_name(&der).as_deref(), Some("node-1"));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let names: Vec<String> = cert
            .subject_alternative_name()
            .expect("ext")
            .expect("san")
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(names.iter().any(|n| n.contains("node-1.local")));
        assert!(!names.iter().any(|n| n.contains("evil")));
        let key = KeyPair::from_pem(&key_pem).expect("key");
        assert_eq!(cert.public_key().raw, key.public_key_der().as_slice());
        let eku = cert.extended_key_usage().expect("ext").expect("eku").value;
        assert!(eku.client_auth && eku.server_auth);
    }

    #[test]
    fn signed_csr_verifies_against_the_ca() {
        let ca = CertificateAuthority::generate("ca").expect("ca");
        let (csr, _) = generate_csr("n", &[]).expect("csr");
        let cert_pem = ca
            .sign_csr(&csr, &Identity::node("n"), &["n.local".into()])
            .expect("sign");
        let leaf = crate::pem::parse_certs(&cert_pem).expect("pem").remove(0);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).expect("leaf");
        let (_, ca_cert) = x509_parser::parse_x509_certificate(ca.cert_der()).expect("ca");
        leaf.verify_signature(Some(ca_cert.public_key()))
            .expect("signature verifies with the CA key");
        assert_eq!(leaf.issuer(), ca_cert.subject());
    }

    #[test]
    fn sign_csr_rejects_garbage_and_oversized_requests() {
        let ca = CertificateAuthority::generate("ca").expect("ca");
        assert!(matches!(
            ca.sign_csr("nope", &Identity::node("n"), &[]),
            Err(CertError::Csr(_))
        ));
        let huge = "A".repeat(MAX_CSR_PEM_BYTES + 1);
        assert!(matches!(
            ca.sign_csr(&huge, &Identity::node("n"), &[]),
            Err(CertError::Csr(_))
        ));
    }
}
