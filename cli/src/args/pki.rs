//! Arguments of `persys pki`: a cluster's certificates made from local files before
//! any component runs (the Docker Compose stack's init service uses it, see
//! `docs/compose-stack.md`).

use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;

/// `persys pki ...`
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create etcd's own PKI in DIR, keeping what exists (as `persys dev` makes it for
    /// its etcd): its CA `ca.crt`, one certificate for every member `server.crt`
    /// (server and client usage, so it is the peer certificate too) naming every
    /// `--san`, and the etcd client certificates `scheduler.crt` and `gateway.crt`.
    Etcd {
        /// The directory (created if absent).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// DNS names and IP addresses of the etcd members (repeatable or comma
        /// separated).
        #[arg(
            long = "san",
            value_name = "NAME",
            value_delimiter = ',',
            required = true
        )]
        sans: Vec<String>,
    },
    /// Create the cluster CA, the admin client certificate and the join token in a
    /// scheduler data dir, keeping what exists, as the scheduler's first start makes
    /// them: schedulers started on DIR load them, and agents can take `DIR/join-token`
    /// before any scheduler runs. Run it before the schedulers start.
    Cluster {
        /// The scheduler's `--data-dir` (created if absent).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Issue a client certificate of the cluster CA in a scheduler data dir, written
    /// to OUT.crt and OUT.key (kept when both exist). `--identity scheduler` is what a
    /// Prometheus scraping the agents' /metrics presents.
    Client {
        /// The scheduler's `--data-dir` holding `ca.crt` and `ca.key`.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Whose certificate.
        #[arg(long, value_enum)]
        identity: ClientIdentity,
        /// Path prefix of the files (`OUT.crt`, `OUT.key`).
        #[arg(long, value_name = "OUT")]
        out: PathBuf,
    },
}

/// The identities `persys pki client` issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientIdentity {
    /// `spiffe://persys/scheduler/persys-scheduler` (client usage only).
    Scheduler,
    /// `spiffe://persys/user/admin`.
    Admin,
}
