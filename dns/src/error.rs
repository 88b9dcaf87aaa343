//! Errors of the responder.

use std::path::PathBuf;

/// What can stop `persys-dns`, or make it list its records again.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The `--etcd-*` flags do not make a valid client (unreadable or mismatched files).
    #[error("etcd access: {0}")]
    Access(#[from] persys_certs::CertError),
    /// etcd failed or is unreachable.
    #[error("etcd: {0}")]
    Etcd(Box<etcd_client::Error>),
    /// The watch was compacted past our revision or cancelled: list again.
    #[error("etcd watch lost: {0}")]
    WatchLost(String),
    /// `--domain` is not a DNS name.
    #[error("--domain {0:?} is not a valid DNS name")]
    Domain(String),
    /// A listener cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// `--addr-file` cannot be written.
    #[error("{}: {source}", path.display())]
    AddrFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The DNS server stopped with an error.
    #[error("DNS server: {0}")]
    Serve(String),
}

impl From<etcd_client::Error> for DnsError {
    fn from(e: etcd_client::Error) -> Self {
        Self::Etcd(Box::new(e))
    }
}
