//! Errors of the etcd store.

use std::time::Duration;

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// etcd cannot be reached (connection refused, timeout, no leader).
    #[error("etcd is unavailable: {0}")]
    Unavailable(String),
    /// A compare-and-swap lost against concurrent writers too many times.
    #[error("concurrent updates to {key} kept conflicting")]
    Conflict {
        /// The contended key.
        key: String,
    },
    /// A stored value is not the JSON we expect.
    #[error("stored value at {key} is not valid: {source}")]
    Corrupt {
        /// The key holding the bad value.
        key: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be serialized.
    #[error("cannot encode value for {key}: {source}")]
    Encode {
        /// The key being written.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The watch was compacted past our revision: re-list.
    #[error("watch revision {0} was compacted")]
    Compacted(i64),
    /// Any other etcd error.
    #[error("etcd error: {0}")]
    Etcd(String),
    /// A record write was refused because this scheduler replica is not (or no longer)
    /// the leader: the write fence did not hold.
    #[error("this scheduler replica is not the leader")]
    NotLeader,
}

impl StoreError {
    /// The same failure again, for each member of a batch that failed as a whole
    /// (JSON errors, which cannot be copied, keep their message).
    pub fn replicate(&self) -> Self {
        match self {
            Self::Unavailable(m) => Self::Unavailable(m.clone()),
            Self::Conflict { key } => Self::Conflict { key: key.clone() },
            Self::Compacted(r) => Self::Compacted(*r),
            Self::Etcd(m) => Self::Etcd(m.clone()),
            Self::NotLeader => Self::NotLeader,
            Self::Corrupt { .. } | Self::Encode { .. } => Self::Etcd(self.to_string()),
        }
    }

    /// Whether the error means etcd is down (503 for clients).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<etcd_client::Error> for StoreError {
    fn from(e: etcd_client::Error) -> Self {
        use etcd_client::Error as E;
        match e {
            E::TransportError(t) => Self::Unavailable(t.to_string()),
            E::IoError(io) => Self::Unavailable(io.to_string()),
            E::GRpcStatus(s) => match i32::from(s.code()) {
                // tonic reports request timeouts as Cancelled and dial failures as
                // Unavailable/Unknown; all of them mean "etcd cannot answer now".
                grpc_code::CANCELLED
                | grpc_code::UNKNOWN
                | grpc_code::DEADLINE_EXCEEDED
                | grpc_code::UNAVAILABLE => Self::Unavailable(s.message().to_string()),
                _ => Self::Etcd(format!("{}: {}", s.code(), s.message())),
            },
            other => Self::Etcd(other.to_string()),
        }
    }
}

/// gRPC status codes by value (etcd-client does not re-export tonic's `Code`).
mod grpc_code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const UNAVAILABLE: i32 = 14;
}

/// Per-request timeout: short so that an etcd outage answers 503 quickly.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 keep-alive ping interval towards etcd.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
