//! Errors of the PKI.

use std::path::PathBuf;

/// Everything that can go wrong creating, loading or using certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused to build or sign a certificate or key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM document could not be read.
    #[error("invalid PEM ({what}): {reason}")]
    Pem {
        /// What was being read (e.g. "certificate", "private key").
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A certificate could not be parsed as X.509.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// A certificate signing request was malformed or its signature is wrong.
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    /// The CA key does not belong to the CA certificate.
    #[error("CA private key does not match the CA certificate")]
    KeyMismatch,
    /// A join token or CA hash was malformed.
    #[error("invalid join token: {0}")]
    InvalidToken(String),
    /// A subject alternative name was not a valid DNS name or IP address.
    #[error("invalid subject alternative name {0:?}")]
    InvalidSan(String),
    /// rustls refused the configuration.
    #[error("tls configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Reading or writing a PKI file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// TLS settings that do not fit together.
    #[error("{0}")]
    Config(String),
    /// Only one of the CA files exists; refusing to overwrite the other.
    #[error("incomplete CA in {}: {missing} is missing while its pair exists", dir.display())]
    IncompleteCa {
        /// The CA directory.
        dir: PathBuf,
        /// The missing file name.
        missing: &'static str,
    },
}
