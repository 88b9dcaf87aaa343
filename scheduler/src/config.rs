//! Command-line flags and their `PERSYS_*` environment twins (see `docs/interfaces.md`).

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default scheduler API address (mTLS).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8085";
/// Default bootstrap address (TLS, server certificate only).
pub const DEFAULT_BOOTSTRAP_LISTEN: &str = "0.0.0.0:8084";

/// Configuration of `persys-scheduler`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "persys-scheduler",
    version,
    about = "persys scheduler: API, placement, dispatch, liveness"
)]
pub struct Config {
    /// etcd endpoints, comma separated.
    #[arg(
        long,
        env = "PERSYS_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,

    /// TLS and credentials towards etcd.
    #[command(flatten)]
    pub etcd: persys_certs::etcd::EtcdFlags,

    /// Address of the mTLS API.
    #[arg(long, env = "PERSYS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Address of the bootstrap port (register, healthz, readyz, metrics).
    #[arg(long, env = "PERSYS_BOOTSTRAP_LISTEN", default_value = DEFAULT_BOOTSTRAP_LISTEN)]
    pub bootstrap_listen: SocketAddr,

    /// Directory holding the CA, the scheduler's and admin's certificates and the join token.
    #[arg(
        long,
        env = "PERSYS_DATA_DIR",
        default_value = "/var/lib/persys/scheduler"
    )]
    pub data_dir: PathBuf,

    /// Join token to accept (default: generated at first start into `<data-dir>/join-token`).
    #[arg(long, env = "PERSYS_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,

    /// Extra subject alternative names for the server certificate.
    #[arg(long = "tls-san", env = "PERSYS_TLS_SANS", value_delimiter = ',')]
    pub tls_sans: Vec<String>,

    /// A node without a heartbeat for this long becomes Inactive.
    #[arg(long, env = "PERSYS_NODE_TIMEOUT_MS", default_value_t = 2000)]
    pub node_timeout_ms: u64,

    /// Heartbeat interval told to agents at registration.
    #[arg(long, env = "PERSYS_HEARTBEAT_INTERVAL_MS", default_value_t = 500)]
    pub heartbeat_interval_ms: u64,

    /// A node whose heartbeat stream breaks (its agent died: connection reset) becomes
    /// Inactive unless a heartbeat arrives within this long.
    #[arg(long, env = "PERSYS_SUSPECT_CONFIRM_MS", default_value_t = 800)]
    pub suspect_confirm_ms: u64,

    /// Interval of the backstop reconcile (full container list of every node).
    #[arg(long, env = "PERSYS_MONITOR_INTERVAL_MS", default_value_t = 30000)]
    pub monitor_interval_ms: u64,

    /// Placement strategy: `spread` or `binpack`.
    #[arg(long, env = "PERSYS_PLACEMENT", default_value = "spread")]
    pub placement: String,

    /// Cluster DNS domain (node names are `<node id>.<domain>`).
    #[arg(
        long,
        env = "PERSYS_CLUSTER_DOMAIN",
        default_value = "cluster.local.dev"
    )]
    pub cluster_domain: String,

    /// Largest accepted request body (default `persys_proto::limits::MAX_REQUEST_BYTES`).
    #[arg(long, env = "PERSYS_MAX_BODY_BYTES", default_value_t = persys_proto::limits::MAX_REQUEST_BYTES)]
    pub max_body_bytes: usize,

    /// Failed registrations (bad join token) one source address may make per window
    /// before it gets 429; 0 disables the limit.
    #[arg(long, env = "PERSYS_JOIN_FAILURE_LIMIT", default_value_t = 10)]
    pub join_failure_limit: u32,

    /// The window of `--join-failure-limit`, ms.
    #[arg(long, env = "PERSYS_JOIN_FAILURE_WINDOW_MS", default_value_t = 60_000)]
    pub join_failure_window_ms: u64,

    /// How long a write waits out an etcd stall or a change of leader (retrying inside
    /// the scheduler) before it is answered 503.
    #[arg(long, env = "PERSYS_WRITE_DEADLINE_MS", default_value_t = 5000)]
    pub write_deadline_ms: u64,

    /// How often the autoscaler looks at each autoscaled service, ms (the HPA's sync
    /// period).
    #[arg(long, env = "PERSYS_AUTOSCALE_INTERVAL_MS", default_value_t = 15_000)]
    pub autoscale_interval_ms: u64,

    /// How long the scheduler's own certificate is valid (`7d`, ...): issued at every
    /// start and renewed after two thirds of it, without a restart.
    #[arg(long, env = "PERSYS_CERT_VALIDITY", default_value = "7d", value_parser = humantime::parse_duration)]
    pub cert_validity: Duration,

    /// How long the certificates signed for nodes are valid (`7d`, `12h`, ...). Agents
    /// renew theirs after two thirds of it, without a restart.
    #[arg(long, env = "PERSYS_NODE_CERT_VALIDITY", default_value = "7d", value_parser = humantime::parse_duration)]
    pub node_cert_validity: Duration,

    /// Write periodic snapshots of the cluster state into this directory (the leader
    /// does; see `persys snapshot`). None without it.
    #[arg(long, env = "PERSYS_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,

    /// How often the leader writes a snapshot into `--snapshot-dir` (`10m`, `1h`, ...).
    #[arg(long, env = "PERSYS_SNAPSHOT_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub snapshot_interval: Duration,

    /// How many periodic snapshots are kept (the oldest go).
    #[arg(long, env = "PERSYS_SNAPSHOT_RETAIN", default_value_t = 24)]
    pub snapshot_retain: usize,

    /// This replica's id in the leader election (unique per replica); default
    /// `<host name>:<API port>`.
    #[arg(long, env = "PERSYS_REPLICA_ID")]
    pub replica_id: Option<String>,

    /// URL other replicas reach this one's mTLS API at (published while it leads;
    /// followers forward writes there); default `https://127.0.0.1:<API port>`.
    #[arg(long, env = "PERSYS_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// URL other replicas reach this one's bootstrap port at (registrations are
    /// forwarded there); default: the host of `--advertise-url` with the bootstrap port.
    #[arg(long, env = "PERSYS_ADVERTISE_BOOTSTRAP_URL")]
    pub advertise_bootstrap_url: Option<String>,

    /// Timeouts and the connection cap of each listener (API and bootstrap).
    #[command(flatten)]
    pub listener: persys_certs::ListenerFlags,

    /// Log line format.
    #[command(flatten)]
    pub log: persys_http::logging::LogFlags,
}

impl Config {
    /// How long a suspected node has to show a heartbeat.
    pub fn suspect_confirm(&self) -> Duration {
        Duration::from_millis(self.suspect_confirm_ms.max(1))
    }

    /// Node timeout as a duration.
    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }

    /// How to reach etcd, from the `--etcd-*` flags.
    pub fn etcd_access(&self) -> Result<persys_certs::etcd::Access, persys_certs::CertError> {
        self.etcd.access()
    }

    /// Write deadline as a duration.
    pub fn write_deadline(&self) -> Duration {
        Duration::from_millis(self.write_deadline_ms.max(1))
    }

    /// Backstop reconcile interval as a duration.
    pub fn monitor_interval(&self) -> Duration {
        Duration::from_millis(self.monitor_interval_ms.max(100))
    }

    /// A configuration for tests: ports 0 on loopback, the given etcd and data dir.
    pub fn for_test(etcd: &str, data_dir: PathBuf) -> Self {
        Self {
            etcd_endpoints: vec![etcd.to_string()],
            etcd: Default::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bootstrap_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            join_token: None,
            tls_sans: Vec::new(),
            node_timeout_ms: 2000,
            heartbeat_interval_ms: 500,
            suspect_confirm_ms: 800,
            monitor_interval_ms: 30000,
            placement: "spread".into(),
            cluster_domain: "cluster.local.dev".into(),
            max_body_bytes: persys_proto::limits::MAX_REQUEST_BYTES,
            write_deadline_ms: 5000,
            autoscale_interval_ms: 1000,
            snapshot_dir: None,
            node_cert_validity: Duration::from_secs(7 * 24 * 3600),
            cert_validity: Duration::from_secs(7 * 24 * 3600),
            snapshot_interval: Duration::from_secs(600),
            snapshot_retain: 24,
            join_failure_limit: 10,
            join_failure_window_ms: 60_000,
            replica_id: None,
            advertise_url: None,
            advertise_bootstrap_url: None,
            listener: persys_certs::ListenerFlags::defaults(),
            log: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_interfaces_doc() {
        let c = Config::try_parse_from(["persys-scheduler"]).expect("parses");
        assert_eq!(c.listen.port(), 8085);
        assert_eq!(c.bootstrap_listen.port(), 8084);
        assert_eq!(c.etcd_endpoints, vec!["http://127.0.0.1:2379".to_string()]);
        assert_eq!(c.node_timeout_ms, 2000);
        assert_eq!(c.placement, "spread");
        assert_eq!(c.max_body_bytes, persys_proto::limits::MAX_REQUEST_BYTES);
    }

    #[test]
    fn endpoints_and_sans_are_comma_separated() {
        let c = Config::try_parse_from([
            "persys-scheduler",
            "--etcd-endpoints",
            "http://a:1,http://b:2",
            "--tls-san",
            "x.example,10.0.0.1",
        ])
        .expect("parses");
        assert_eq!(c.etcd_endpoints.len(), 2);
        assert_eq!(
            c.tls_sans,
            vec!["x.example".to_string(), "10.0.0.1".to_string()]
        );
    }
}
